"""The ``dip-l0`` command line: smooth, denoise, deblock, batch, l0, demo and gui."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from .core.io import FileInfo

# numpy, torch and the core are imported inside the functions, after main() has taken over Ctrl-C, so an
# interrupt while they load is noted like any other instead of ending in a KeyboardInterrupt traceback.

__all__ = ["main"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _channel_axis(text: str):
    if text.lower() == "auto":
        return "auto"
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an axis number, 'auto' or 'none', got {text!r}") from None


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _lam(text: str) -> float | str:
    return "auto" if text.strip().lower() == "auto" else _nonneg_float(text)


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _int_in(minimum: int, maximum: int, why: str = ""):
    """A whole number from ``minimum`` to ``maximum``, refused at parse time (``why``: what sets the top)."""
    def parse(text: str) -> int:
        value = _int_at_least(-math.inf)(text)
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"expected a number from {minimum} to {maximum}{why}, got {text!r}")
        return value

    return parse


def _source(text: str):
    """An input: a path, or a URL kept as written (a Path would fold its ``//``) for fsspec to open."""
    return text if "://" in text else Path(text)


def _seed(text: str) -> int:
    from .core.validation import check_seed

    value = _nonneg_int(text)
    try:
        return check_seed(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


MAX_THREADS = 1024  # torch threads per task: more is a typo, and torch's own limit (a C int) is far above it


def _cold_start(p) -> None:
    p.add_argument("--cold-start", action="store_true",
                   help="fit every plane of a stack afresh, with the full iterations (default: each plane starts "
                        "from the previous one's network, with a third of them, or 50 in denoise)")


def _stack_args(p) -> None:
    """Options of an OME-Zarr, Zarr or TIFF stack written to OME-Zarr (docs/large-data.md)."""
    from .stream import DEFAULT_CHAIN

    p.add_argument("--axes", default=None, metavar="AXES",
                   help="axes of a plain Zarr array (or of a TIFF's unnamed axes) from t, c, z, y, x, e.g. zyx "
                        "(OME-Zarr names its own)")
    p.add_argument("--level", type=_nonneg_int, default=0, help="level of a multiscale input (default 0, the finest)")
    p.add_argument("--chain", type=_positive_int, default=DEFAULT_CHAIN, metavar="N",
                   help=f"with an OME-Zarr output: planes per chain, each run warm-started from the previous plane "
                        f"(default {DEFAULT_CHAIN})")


def _add_batch(sub) -> None:
    from .core.l0 import L0_SOLVERS
    from .core.presets import PRESETS

    p = sub.add_parser(
        "batch", help="DIP-ℓ0 on many files (or planes) on dask.distributed; resumable",
        description="Run DIP-ℓ0 on many files, or on the planes of stacks, as tasks on dask.distributed: a "
                    "LocalCluster by default, an existing scheduler with --scheduler. Outputs already in OUTDIR are "
                    "skipped, so rerunning an interrupted batch resumes it. A file that fails is reported and "
                    "skipped. Exit status 0 when every input is done, 1 when some failed.")
    p.add_argument("inputs", nargs="+", type=_source, metavar="INPUT",
                   help="image files, or folders of them; or one OME-Zarr/Zarr/TIFF stack (path or URL) with an "
                        "OUTDIR ending in .zarr")
    p.add_argument("-o", "--outdir", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--mode", choices=sorted(PRESETS), default="smooth",
                   help="preset (default smooth; deblock uses a JPEG input's quantisation tables)")
    p.add_argument("--lam", type=_lam, default="auto",
                   help="ℓ0 weight on the [0, 1] scale, or 'auto' (default: auto, the preset's choice)")
    p.add_argument("--iterations", type=_positive_int, default=None, help="ADMM iterations per plane (default: the preset's)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed, 0 to 2**64 - 1 (default 0)")
    p.add_argument("--channel-axis", type=_channel_axis, default="auto",
                   help="axis of colour/channels: a number, 'none', or 'auto' (last axis if it has 3 or 4 entries)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto, on every worker")
    p.add_argument("--tile-size", type=_int_at_least(64), default=None, help="tile side for large planes (default 1024)")
    p.add_argument("--format", choices=["tif", "png", "jpg"], default=None,
                   help="output file type (default: the input's)")
    p.add_argument("--l0-solver", choices=L0_SOLVERS, default=None, help="ℓ0 step solver (default: the preset's)")
    _cold_start(p)
    p.add_argument("--split-planes", action="store_true",
                   help="one task per plane of a stack (parallel, but each plane starts cold instead of from the "
                        "previous one)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="address of a running dask scheduler")
    p.add_argument("--workers", type=_int_in(1, _cores(), " (this machine's cores)"), default=None,
                   help="LocalCluster worker processes, at most one per core (default: one per core, as memory "
                        "allows)")
    p.add_argument("--threads-per-task", type=_int_in(1, MAX_THREADS), default=None,
                   help="torch threads per task (default: a worker host's cores shared among its tasks)")
    _stack_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# One flat declaration of the commands and their shared options, so --help reads as the code does: long
# by the number of options, not by logic.
def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .core.io import SUPPORTED
    from .core.l0 import L0_SOLVERS
    from .core.presets import FILE_PRESETS, PRESETS

    parser = argparse.ArgumentParser(
        prog="dip-l0",
        description="Edge-preserving smoothing, denoising and JPEG deblocking by DIP-ℓ0 (deep image prior + ℓ0 gradient prior).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def io_args(p):
        p.add_argument("input", type=_source, help=f"input image ({', '.join(SUPPORTED)}), or for smooth and denoise an "
                                                   f"OME-Zarr/Zarr store (path or URL) or TIFF stack with an output "
                                                   f"ending in .ome.zarr")
        p.add_argument("-o", "--output", type=Path, required=True,
                       help="output image; TIFF keeps the input's dtype (denoise: float32 for integer images, whose "
                            "denoised values lie between their levels; PNG rounds them)")
        p.add_argument("--channel-axis", type=_channel_axis, default="auto",
                       help="axis of colour/channels: a number, 'none', or 'auto' (last axis if it has 3 or 4 entries)")

    for mode, text in (("smooth", "edge-preserving smoothing"),
                       ("denoise", "camera-noise removal (fluorescence, photon-limited data)"),
                       ("deblock", "JPEG artifact removal")):
        preset = PRESETS[mode]
        p = sub.add_parser(mode, help=f"DIP-ℓ0 {text}", description=f"DIP-ℓ0 {text}.")
        io_args(p)
        filed = FILE_PRESETS.get(mode)
        auto = ("from the image's noise level" if preset.lam_noise else
                f"{filed.lam_step:g} × the JPEG file's luma DC quantisation step / 255 with its tables, "
                f"{preset.lam} for pixels alone" if filed
                else f"the preset's, {preset.lam}")
        scale = "the shot-noise-stabilised [0, 1] scale" if preset.stabilise else "the [0, 1] scale"
        p.add_argument("--lam", type=_lam, default="auto",
                       help=f"ℓ0 weight on {scale}, or 'auto' (default: auto, {auto})")
        cap = ", a cap: each plane stops by itself once it starts fitting the noise" if preset.patience else ""
        its = (f"{filed.iterations} with the JPEG file's tables, a cap: the run stops by itself once it starts "
               f"fitting the artefacts; {preset.iterations} for pixels alone" if filed
               else f"{preset.iterations}{cap}")
        p.add_argument("--iterations", type=_positive_int, default=None,
                       help=f"ADMM iterations per plane (default {its})")
        p.add_argument("--seed", type=_seed, default=0, help="random seed, 0 to 2**64 - 1 (default 0)")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
        p.add_argument("--l0-solver", choices=L0_SOLVERS, default=None,
                       help=f"ℓ0 step solver (default: the preset's, {preset.l0_solver})")
        p.add_argument("--tile-size", type=_int_at_least(64), default=None,
                       help="planes with a side above this are processed in blended tiles (default 1024)")
        _cold_start(p)
        p.add_argument("--save-every", type=_nonneg_int, default=0, metavar="N",
                       help="also write the estimate every N iterations as OUTPUT_iterNNNNN.ext (0: never)")
        if mode != "deblock":
            _stack_args(p)
        if mode == "deblock":
            p.add_argument("--pixels-only", action="store_true",
                           help="ignore a JPEG input's quantisation tables and deblock its decoded pixels alone "
                                "(default: a .jpg/.jpeg input's coefficients bound every estimate, and those "
                                "an input's pixels show, read back from them, where it has no file)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    _add_batch(sub)

    p = sub.add_parser("l0", help="ℓ0 gradient smoothing alone (fast)", description="ℓ0 gradient smoothing alone.")
    io_args(p)
    p.add_argument("--lam", type=_nonneg_float, required=True, help="ℓ0 weight on the [0, 1] scale")
    p.add_argument("--method", choices=L0_SOLVERS, default="parallel_fusion",
                   help="parallel_fusion (Region Fusion on every core; default), region_fusion (sequential) or fft")

    p = sub.add_parser("demo", help="run DIP-ℓ0 on a bundled sample and write a side-by-side picture",
                       description="Run DIP-ℓ0 on a bundled textured cartoon image.")
    p.add_argument("-o", "--output", type=Path, default=Path("demo-output"), help="output folder (default demo-output)")
    p.add_argument("--size", type=_int_in(32, 1024), default=192, help="side of the sample image, 32 to 1024 "
                                                                       "(default 192)")
    p.add_argument("--iterations", type=_positive_int, default=None, help="ADMM iterations (default: the preset's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("gui", help="open napari with a sample image and the DIP-ℓ0 widget",
                       description="Open napari with a sample image loaded and the DIP-ℓ0 widget docked.")
    p.add_argument("--sample", choices=SAMPLE_KEYS, default="textured_cartoon",
                   help="sample to open (default textured_cartoon)")
    return parser


class Interrupts:
    """Ctrl-C (SIGINT) noted, not raised, while a command runs.

    A ``KeyboardInterrupt`` raised inside numba's Region Fusion kernel comes
    out as a ``SystemError`` with the work lost, and one raised inside a
    write could leave half a file; so SIGINT only sets a flag, which the
    commands check where stopping is safe: between DIP-ℓ0 iterations (the
    estimate so far is written), before a write (nothing is written), and
    while ``l0`` waits for its solver thread (which is left behind).
    """

    def __init__(self, after=None):
        self.count = 0
        self._previous = None
        self._after = after  # the handler to leave in place at the end (default: the one found)

    def __enter__(self) -> "Interrupts":
        try:
            self._previous = signal.signal(signal.SIGINT, self._note)
        except ValueError:  # not the main thread: signals go elsewhere
            self._previous = None
        return self

    def _note(self, signum, frame) -> None:
        self.count += 1

    def __bool__(self) -> bool:
        return self.count > 0

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous if self._after is None else self._after)


class Interrupted(Exception):
    """Raised by a command that stops on Ctrl-C with nothing written; its text is the one line shown."""


def _stop_if(interrupts: Interrupts, what: str = "nothing written") -> None:
    if interrupts:
        raise Interrupted(f"interrupted; {what}")


def _prepare(args, *, mode: str | None, snapshots: bool = False) -> tuple[FileInfo, int | None, np.dtype]:
    """Everything that can be refused, from the input's header and before any pixel is decoded.

    The input's description and channel axis, and the dtype to write
    (:func:`.core.io.output_dtype`); the output's type, folder and
    name (never an input, nor a ``--save-every`` name that is one); the
    memory of the decode and the run.
    """
    from .core.io import check_output, describe, output_dtype
    from .core.memory import check_run_memory

    info = describe(args.input)
    axis = info.channel_axis(args.channel_axis)
    dtype = info.dtype if mode is None else output_dtype(args.output, info.shape, info.dtype, mode)
    check_output(args.output, info.shape, dtype, inputs=[args.input], snapshots=snapshots)
    check_run_memory(info, axis, mode=mode, tile_size=getattr(args, "tile_size", None))
    return info, axis, dtype


def _unreached(snap) -> str:
    """Which planes of a stack an interrupted run left as they were (its result holds the input there)."""
    first = snap.plane + 2  # 1-based, after the plane that was being fitted
    if snap.done or first > snap.planes:
        return ""
    which = f"plane {first}" if first == snap.planes else f"planes {first}-{snap.planes}"
    return f" ({which} of {snap.planes} not reached: the input's values)"


def _progress(total: int, quiet: bool, desc: str, unit: str = "it"):
    from tqdm import tqdm

    # miniters=1: tqdm otherwise learns its redraw step from the jump of a plane its stopping rule ended early,
    # and the short warm planes after it never reach that step (the bar froze at plane 1 of a stack).
    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, file=sys.stderr, dynamic_ncols=True, miniters=1)


def _run_dip(image, channel_axis, *, mode, quiet, interrupts: Interrupts, on_snapshot=None, jpeg_path=None,
             tables_from_pixels=True, **settings):
    """Drive a :class:`DipL0Run` with a progress bar until it ends or Ctrl-C; returns its last snapshot.

    ``jpeg_path``: the JPEG file ``image`` was read from, to deblock from where it can be used;
    ``tables_from_pixels``: else within the quantisation the pixels show, if any."""
    from .core.jpeg import run_from_file_or_pixels

    # Checks every setting, before any work.
    run, why_not = run_from_file_or_pixels(image, mode, jpeg_path, channel_axis=channel_axis,
                                           tables_from_pixels=tables_from_pixels, **settings)
    if mode == "deblock":
        _jpeg_note(jpeg_path and Path(jpeg_path), why_not, run.jpeg)
    _stop_if(interrupts)
    bar = _progress(run.total, quiet, f"DIP-ℓ0 {mode}")
    try:
        for snap in run:
            bar.update(snap.iteration - bar.n)
            if snap.losses:
                extra = {"tile": f"{snap.tile + 1}/{snap.tiles}"} if snap.tiles > 1 else {}
                bar.set_postfix(loss=f"{snap.losses['loss']:.2e}", plane=f"{snap.plane + 1}/{snap.planes}", **extra,
                                refresh=False)
            if on_snapshot is not None:
                on_snapshot(snap)
            if interrupts:
                break
    finally:
        bar.close()
    return run.last


def _cmd_dip(args, interrupts: Interrupts) -> int:
    from .core.io import join_alpha, read, snapshot_path, split_alpha, write_image
    from .core.io.ngff import is_zarr

    if is_zarr(args.input) or is_zarr(args.output):
        return _cmd_stream(args, interrupts)

    info, axis, dtype = _prepare(args, mode=args.command, snapshots=args.save_every > 0)
    image = read(info)
    _stop_if(interrupts)
    colour, alpha = split_alpha(image, info, axis)
    out = args.output

    def save_every(snap):
        if args.save_every and snap.iteration and snap.iteration % args.save_every == 0 and not snap.done:
            write_image(snapshot_path(out, snap.iteration), join_alpha(snap.image, alpha))

    settings = dict(lam=args.lam, iterations=args.iterations, seed=args.seed, device=args.device,
                    l0_solver=args.l0_solver, tile_size=args.tile_size, warm_start=not args.cold_start, dtype=dtype)
    pixels_only = args.command == "deblock" and args.pixels_only
    from_file = args.command == "deblock" and not pixels_only and info.kind == "jpeg"
    last = _run_dip(colour, axis, mode=args.command, quiet=args.quiet, interrupts=interrupts,
                    on_snapshot=save_every, jpeg_path=info.path if from_file else None,
                    tables_from_pixels=not pixels_only, **settings)
    write_image(out, join_alpha(last.image, alpha))
    if interrupts:
        print(f"dip-l0: interrupted at iteration {last.iteration}/{last.total}; wrote the estimate so far to {out}"
              f"{_unreached(last)}", file=sys.stderr)
        return 130
    # Which iteration the stopping rule kept in a single-plane, untiled run (a stack has one per plane).
    kept = f", kept iteration {last.kept} (stopping rule)" if last.kept and last.planes * last.tiles == 1 else ""
    scale = " on the shot-noise-stabilised scale" if last.noise_model else ""
    print(f"wrote {out} ({last.seconds:.1f} s, λ={last.preset.lam:.3g}{scale}{kept})", file=sys.stderr)
    return 0


def _stack_options(args, mode: str):
    from .batch import BatchOptions

    return BatchOptions(mode=mode, lam=args.lam, iterations=args.iterations, seed=args.seed, device=args.device,
                        tile_size=args.tile_size, l0_solver=args.l0_solver, warm_start=not args.cold_start)


def _open_stack(args, inputs, output, options, interrupts: Interrupts):
    """The input stack, the output's writer (new or resumed) and the stack's settings, refused before any work."""
    from .core.io.ngff import is_zarr, open_image
    from .stream import measure, open_output, resume_line, todo

    if options.mode == "deblock":
        raise CLIError("deblock needs a JPEG file; a Zarr or TIFF stack is smoothed or denoised")
    if len(inputs) != 1:
        raise CLIError("an OME-Zarr output takes one input stack")
    if not is_zarr(output):
        raise CLIError(f"a Zarr input is written as OME-Zarr: name the output with .zarr (e.g. {Path(output).stem}"
                       f".ome.zarr)")
    source = inputs[0]
    if not (is_zarr(source) or Path(source).suffix.lower() in (".tif", ".tiff")):
        raise CLIError(f"{source}: only OME-Zarr, Zarr and TIFF inputs are written to OME-Zarr")
    image = open_image(source, level=args.level, axes=args.axes)
    writer = open_output(image, output, options, args.chain)
    missing, found = todo(writer, image)
    if found:
        print(f"dip-l0: {resume_line(found, found + len(missing))}", file=sys.stderr)
    _stop_if(interrupts, "nothing new written")
    # One pass over the data for its range, then a few planes; not needed when every plane is done.
    settings = measure(image, options) if missing else None
    _stop_if(interrupts, "nothing new written")
    return image, writer, settings, found, len(missing)


def _finished(writer, found: int):
    """The summary of a rerun that found every plane done (it only finishes the output, if it was not)."""
    from .stream import StreamSummary

    return StreamSummary(total=found, found=found, complete=writer.close())


def _cmd_stream(args, interrupts: Interrupts) -> int:
    """``dip-l0 smooth|denoise STACK -o OUT.ome.zarr``: chain after chain in this process, plane by plane."""
    from .stream import stream

    if args.save_every:
        raise CLIError("--save-every is for single images; an OME-Zarr output is written plane by plane")
    if args.channel_axis != "auto":
        raise CLIError("--channel-axis: a stack's channel axis is the c of its axes (its metadata, or --axes)")
    image, writer, settings, found, left = _open_stack(args, [str(args.input)], args.output,
                                                       _stack_options(args, args.command), interrupts)
    if not left:
        summary = _finished(writer, found)
    else:
        bar = _progress(found + left, args.quiet, f"DIP-ℓ0 {args.command}", unit="plane")
        bar.update(found)
        try:
            summary = stream(image, writer, settings, chain=args.chain, stop=lambda: bool(interrupts),
                             on_plane=lambda index: bar.update(1))
        finally:
            bar.close()
    for line in summary.lines(args.output):
        print(f"dip-l0: {line.strip()}", file=sys.stderr)
    return 130 if summary.interrupted else 0


def _cmd_batch_stack(args, options, interrupts: Interrupts) -> int:
    """``dip-l0 batch STACK -o OUT.ome.zarr``: chains of planes as tasks on dask.distributed."""
    from .stream import run_chains

    if args.split_planes or args.format:
        raise CLIError("--split-planes and --format are for files; a stack to OME-Zarr is split into chains (--chain)")
    image, writer, settings, found, left = _open_stack(args, [str(p) for p in args.inputs], args.outdir, options,
                                                       interrupts)
    if not left:
        summary = _finished(writer, found)
        for line in summary.lines(args.outdir):
            print(f"dip-l0: {line.strip()}", file=sys.stderr)
        return 0
    bar = _progress(found + left, args.quiet, "DIP-ℓ0 batch", unit="plane")
    bar.update(found)
    summary = None
    try:
        for done, summary in run_chains(image, writer, settings, chain=args.chain, scheduler=args.scheduler,
                                        workers=args.workers, threads_per_task=args.threads_per_task,
                                        stop=lambda: bool(interrupts)):
            bar.update(done - bar.n)
            bar.set_postfix(failed=len(summary.failed), refresh=False)
    finally:
        bar.close()
    for line in summary.lines(args.outdir):
        print(f"dip-l0: {line.strip()}", file=sys.stderr)
    return 130 if summary.interrupted or interrupts else (1 if summary.failed else 0)


def _jpeg_note(path: Path | None, why_not: str, qcs) -> None:
    """One line on what bounds a deblocking run: the JPEG file's tables (the default), the quantisation its
    pixels show, or nothing (said only for a JPEG input)."""
    shown = qcs is not None and qcs.quality is not None
    within = (f"the pixels show a JPEG's quantisation (quality {qcs.quality}): every estimate stays within it "
              f"(--pixels-only to ignore it)") if shown else ""
    if why_not:
        print(f"dip-l0: note: not using the JPEG file's quantisation tables ({why_not}); "
              f"{within or 'deblocking its pixels alone'}", file=sys.stderr)
    elif shown:
        print(f"dip-l0: note: {within}", file=sys.stderr)
    elif qcs is not None:
        print(f"dip-l0: using the quantisation tables of {path.name}: every estimate stays consistent with the "
              f"file (--pixels-only to ignore them)", file=sys.stderr)


def _cmd_batch(args, interrupts: Interrupts) -> int:
    from .batch import BatchOptions, find_inputs, plan, run_batch
    from .core.device import resolve_device
    from .core.io import check_output

    if args.scheduler is not None and args.workers is not None:
        raise CLIError("--workers sets up a local cluster; with --scheduler the cluster's own workers are used")
    # Everything a batch needs is checked before the output folder is made or any task is sent: the settings,
    # dask.distributed, and (for a local cluster, which computes here) the device.
    options = BatchOptions(mode=args.mode, lam=args.lam, iterations=args.iterations, seed=args.seed,
                           channel_axis=args.channel_axis, device=args.device, tile_size=args.tile_size,
                           l0_solver=args.l0_solver, warm_start=not args.cold_start)
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise CLIError("batch runs need dask.distributed: pip install 'napari-dip-l0[batch]'") from None
    if args.scheduler is None:
        resolve_device(args.device)
    from .core.io.ngff import is_zarr

    if is_zarr(args.outdir) or any(is_zarr(p) for p in args.inputs):
        return _cmd_batch_stack(args, options, interrupts)
    inputs = find_inputs(args.inputs)
    if args.outdir.exists() and not args.outdir.is_dir():
        raise CLIError(f"output folder {args.outdir} is a file")
    args.outdir.mkdir(parents=True, exist_ok=True)
    check_output(args.outdir / "probe.tif", (2, 2), "uint8")  # the folder takes new files
    tasks, summary = plan(inputs, args.outdir, options=options, split_planes=args.split_planes, fmt=args.format)
    if summary.skipped:
        print(f"dip-l0: {len(summary.skipped)} output(s) already in {args.outdir}: skipped", file=sys.stderr)
    for path, why in summary.failed.items():
        print(f"dip-l0: refused: {path}: {why}", file=sys.stderr)
    bar = _progress(len(tasks), args.quiet or not tasks, "DIP-ℓ0 batch", unit="task")
    try:
        if tasks and not interrupts:
            for task, result in run_batch(tasks, options, summary, scheduler=args.scheduler, workers=args.workers,
                                          threads_per_task=args.threads_per_task, stop=lambda: bool(interrupts)):
                if task.plane is not None or task.planes == 1:
                    bar.update(1)
                if result["status"] == "failed":
                    bar.write(f"dip-l0: failed: {task.input}: {result['message']}", file=sys.stderr)
                bar.set_postfix(failed=len(summary.failed), refresh=False)
    finally:
        bar.close()
    summary.interrupted = summary.interrupted or bool(interrupts)
    for line in summary.lines():
        print(line, file=sys.stderr)
    return 130 if summary.interrupted else (1 if summary.failed else 0)


_ABANDONED: list[threading.Thread] = []  # solver threads left running after a Ctrl-C


def _in_thread(work, interrupts: Interrupts):
    """``work()`` on a daemon thread, waited for so that Ctrl-C is seen at once; None if interrupted first.

    Region Fusion runs in numba without the GIL, but a signal handler only
    runs between Python bytecodes of the main thread, so the main thread
    waits here instead of in the solver. An interrupted solver thread is
    left to finish on its own; its result is dropped.
    """
    box: dict = {}

    def target():
        try:
            box["result"] = work()
        except BaseException as exc:  # handed to the main thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="dip-l0-l0", daemon=True)
    thread.start()
    while thread.is_alive():
        if interrupts:
            _ABANDONED.append(thread)
            return None
        thread.join(0.05)
    if "error" in box:
        raise box["error"]
    return box["result"]


def _cmd_l0(args, interrupts: Interrupts) -> int:
    from .core.api import l0_smooth
    from .core.io import join_alpha, read, split_alpha, write_image

    info, axis, _ = _prepare(args, mode=None)
    image = read(info)
    _stop_if(interrupts)
    colour, alpha = split_alpha(image, info, axis)
    result = _in_thread(lambda: l0_smooth(colour, args.lam, method=args.method, channel_axis=axis), interrupts)
    _stop_if(interrupts, f"nothing written ({args.output} left as it was)")
    write_image(args.output, join_alpha(result, alpha))
    if interrupts:
        print(f"dip-l0: interrupted after the result was written to {args.output}", file=sys.stderr)
        return 130
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _cmd_demo(args, interrupts: Interrupts) -> int:
    import numpy as np
    from skimage.metrics import peak_signal_noise_ratio as psnr
    from skimage.util import img_as_ubyte

    from .core.api import l0_smooth
    from .core.io import write_image
    from .core.presets import PRESETS
    from .data import cartoon_example

    out_dir = args.output
    out_dir.mkdir(parents=True, exist_ok=True)
    noisy, truth = cartoon_example("astronaut", "gravel", args.size)
    noisy8 = img_as_ubyte(noisy)
    lam = PRESETS["smooth"].lam
    l0_only = l0_smooth(noisy8, lam, channel_axis=-1)
    _stop_if(interrupts)
    last = _run_dip(noisy8, -1, mode="smooth", quiet=args.quiet, interrupts=interrupts, iterations=args.iterations,
                    seed=0, device="auto")
    result = last.image
    truth8 = img_as_ubyte(truth)
    write_image(out_dir / "input.png", noisy8)
    write_image(out_dir / "l0_only.png", l0_only)
    write_image(out_dir / "dip_l0.png", result)
    write_image(out_dir / "ground_truth.png", truth8)
    gap = np.full((args.size, 4, 3), 255, np.uint8)
    side = np.concatenate([noisy8, gap, l0_only, gap, result, gap, truth8], axis=1)
    write_image(out_dir / "side_by_side.png", side)
    print(f"PSNR against the ground truth: input {psnr(truth8, noisy8):.2f} dB, "
          f"ℓ0 alone (parallel Region Fusion, λ={lam}) {psnr(truth8, l0_only):.2f} dB, "
          f"DIP-ℓ0 {psnr(truth8, result):.2f} dB ({last.seconds:.0f} s)")
    print(f"wrote {out_dir}/side_by_side.png (input | ℓ0 alone | DIP-ℓ0 | ground truth)")
    return 130 if interrupts else 0


SAMPLE_KEYS = ["nuclei_camera", "histology_jpeg", "textured_cartoon"]  # the manifest's sample_data keys


def open_viewer(sample: str = "textured_cartoon"):
    """A napari viewer with ``sample`` loaded and the DIP-ℓ0 widget docked in the sample's mode; (viewer, widget)."""
    import napari

    from ._widget.job import MODE_KEY, MODES

    viewer = napari.Viewer(title="napari-dip-l0")
    layers = viewer.open_sample("napari-dip-l0", sample)
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip-l0", "DIP-ℓ0")
    mode = layers[0].metadata.get(MODE_KEY)
    names = {key: name for name, key in MODES.items()}
    if mode in names:
        widget.mode.value = names[mode]
    return viewer, widget


def check_display(environ=None, platform: str | None = None) -> None:
    """Refuse (:class:`CLIError`) to start a GUI where Qt would find no screen and abort the process.

    Qt's xcb platform plugin calls ``abort()`` when it cannot open a display:
    a core dump, not an exception. So the check is made before Qt is
    imported: on Linux (and other X11/Wayland systems) a GUI needs
    ``DISPLAY`` or ``WAYLAND_DISPLAY``, unless ``QT_QPA_PLATFORM`` names a
    platform that needs no screen (offscreen, minimal, vnc, ...).
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform in ("win32", "darwin"):
        return
    qpa = environ.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if qpa and qpa not in ("xcb", "wayland", "wayland-egl"):
        return  # offscreen, minimal, eglfs, vnc, ...: Qt does not need a display server
    if not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        raise CLIError("no display: `dip-l0 gui` needs a screen (DISPLAY or WAYLAND_DISPLAY is not set); "
                       "headless, use `dip-l0 smooth|denoise|deblock` or run it under xvfb-run")


def _cmd_gui(args, interrupts: Interrupts) -> int:
    check_display()
    try:
        import napari
    except ImportError:
        raise CLIError("napari is not installed: pip install 'napari-dip-l0[all]'") from None
    open_viewer(args.sample)
    napari.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``dip-l0`` command line; returns the exit status (130 after Ctrl-C)."""
    commands = {"smooth": _cmd_dip, "denoise": _cmd_dip, "deblock": _cmd_dip, "batch": _cmd_batch, "l0": _cmd_l0, "demo": _cmd_demo}
    # First of all: from here on a Ctrl-C is noted, never a traceback. For the console script, one that
    # comes after the command, while the interpreter exits, is too late to matter and is ignored.
    with Interrupts(after=signal.SIG_IGN if argv is None else None) as interrupts:
        args = _parser().parse_args(argv)
        if args.command in commands:
            code = _report(lambda: commands[args.command](args, interrupts))
    if args.command == "gui":  # napari's event loop handles Ctrl-C its own way
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return _report(lambda: _cmd_gui(args, Interrupts()))
    if argv is None and any(t.is_alive() for t in _ABANDONED):
        # An abandoned solver thread would hold up the interpreter's exit for as long as it runs;
        # everything this process wrote is complete and closed, so leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _report(command) -> int:
    """Run a command; a refusal or failure becomes one line on stderr and exit status 2."""
    try:
        return command()
    except Interrupted as exc:
        print(f"dip-l0: {exc}", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, OSError, MemoryError, ImportError) as exc:
        from .core.validation import first_line

        print(f"dip-l0: error: {first_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
