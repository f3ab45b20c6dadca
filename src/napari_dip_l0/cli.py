"""The ``dip-l0`` command line: smooth, deblock, batch, l0, demo and gui."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .core.admm import iter_dip_l0
from .core.api import l0_smooth
from .core.l0 import L0_SOLVERS
from .core.imageio import check_writable, guess_channel_axis, join_alpha, read_image, split_png_alpha, write_image
from .core.presets import PRESETS

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
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dip-l0",
        description="Edge-preserving smoothing and JPEG deblocking by DIP-ℓ0 (deep image prior + ℓ0 gradient prior).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def io_args(p):
        p.add_argument("input", type=Path, help="input image (.tif/.tiff, .png, .jpg)")
        p.add_argument("-o", "--output", type=Path, required=True, help="output image; TIFF keeps the input's dtype")
        p.add_argument("--channel-axis", type=_channel_axis, default="auto",
                       help="axis of colour/channels: a number, 'none', or 'auto' (last axis if it has 3 or 4 entries)")

    for mode, text in (("smooth", "edge-preserving smoothing"), ("deblock", "JPEG artifact removal")):
        preset = PRESETS[mode]
        p = sub.add_parser(mode, help=f"DIP-ℓ0 {text}", description=f"DIP-ℓ0 {text}.")
        io_args(p)
        p.add_argument("--lam", type=_nonneg_float, default=None, help=f"ℓ0 weight on the [0, 1] scale (default {preset.lam})")
        p.add_argument("--iterations", type=_positive_int, default=None,
                       help=f"ADMM iterations per plane (default {preset.iterations})")
        p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
        if mode == "smooth":
            p.add_argument("--l0-solver", choices=L0_SOLVERS, default="region_fusion", help="v-step solver")
        p.add_argument("--tile-size", type=_int_at_least(64), default=None,
                       help="planes with a side above this are processed in blended tiles (default 1024)")
        p.add_argument("--cold-start", action="store_true",
                       help="fit every plane of a stack afresh, with the full iterations (default: each plane "
                            "starts from the previous one's network, with a third of them)")
        p.add_argument("--save-every", type=_nonneg_int, default=0, metavar="N",
                       help="also write the estimate every N iterations as OUTPUT_iterNNNNN.ext (0: never)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "batch", help="DIP-ℓ0 on many files (or planes) on dask.distributed; resumable",
        description="Run DIP-ℓ0 on many files, or on the planes of stacks, as tasks on dask.distributed: a "
                    "LocalCluster by default, an existing scheduler with --scheduler. Outputs already in OUTDIR are "
                    "skipped, so rerunning an interrupted batch resumes it. A file that fails is reported and "
                    "skipped. Exit status 0 when every input is done, 1 when some failed.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files, or folders of them")
    p.add_argument("-o", "--outdir", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--mode", choices=sorted(PRESETS), default="smooth", help="preset (default smooth)")
    p.add_argument("--lam", type=_nonneg_float, default=None, help="ℓ0 weight on the [0, 1] scale (default: the preset's)")
    p.add_argument("--iterations", type=_positive_int, default=None, help="ADMM iterations per plane (default: the preset's)")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--channel-axis", type=_channel_axis, default="auto",
                   help="axis of colour/channels: a number, 'none', or 'auto' (last axis if it has 3 or 4 entries)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto, on every worker")
    p.add_argument("--tile-size", type=_int_at_least(64), default=None, help="tile side for large planes (default 1024)")
    p.add_argument("--format", choices=["tif", "png", "jpg"], default=None,
                   help="output file type (default: the input's)")
    p.add_argument("--split-planes", action="store_true",
                   help="one task per plane of a stack (parallel, but each plane starts cold instead of from the "
                        "previous one)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="address of a running dask scheduler")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="LocalCluster worker processes (default: one per core, as memory allows)")
    p.add_argument("--threads-per-task", type=_positive_int, default=None,
                   help="torch threads per task (default: a worker host's cores shared among its tasks)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("l0", help="ℓ0 gradient smoothing alone (fast)", description="ℓ0 gradient smoothing alone.")
    io_args(p)
    p.add_argument("--lam", type=_nonneg_float, required=True, help="ℓ0 weight on the [0, 1] scale")
    p.add_argument("--method", choices=L0_SOLVERS, default="region_fusion")

    p = sub.add_parser("demo", help="run DIP-ℓ0 on a bundled sample and write a side-by-side picture",
                       description="Run DIP-ℓ0 on a bundled textured cartoon image.")
    p.add_argument("-o", "--output", type=Path, default=Path("demo-output"), help="output folder (default demo-output)")
    p.add_argument("--size", type=_positive_int, default=192, help="side of the sample image (default 192)")
    p.add_argument("--iterations", type=_positive_int, default=None, help="ADMM iterations (default: the preset's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("gui", help="open napari with a sample image and the DIP-ℓ0 widget",
                       description="Open napari with a sample image loaded and the DIP-ℓ0 widget docked.")
    p.add_argument("--sample", choices=["textured_cartoon", "jpeg_q10", "microscopy"], default="textured_cartoon")
    return parser


def _resolve_channel_axis(image: np.ndarray, requested, path: Path):
    if requested == "auto":
        return guess_channel_axis(image)
    if requested is not None and not -image.ndim <= requested < image.ndim:
        raise CLIError(f"--channel-axis {requested} is out of range for {path} with shape {image.shape}")
    return requested


def _read_input(args) -> np.ndarray:
    """Check both paths, read the input and check the output can hold its dtype, before any work."""
    if not args.input.is_file():
        raise CLIError(f"input file not found: {args.input}")
    if args.output.resolve() == args.input.resolve():
        raise CLIError("output would overwrite the input; choose another file name")
    image = read_image(args.input)
    check_writable(args.output, image.dtype)
    return image


def _progress(total: int, quiet: bool, desc: str, unit: str = "it"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, file=sys.stderr, dynamic_ncols=True)


def _run_dip(image, channel_axis, *, mode, lam, iterations, seed, device, l0_solver, quiet, on_snapshot=None,
             tile_size=None, warm_start=True):
    """Consume the DIP-ℓ0 generator with a progress bar; Ctrl-C keeps the estimate so far."""
    snapshots = iter_dip_l0(image, mode, lam=lam, iterations=iterations, channel_axis=channel_axis,
                            seed=seed, device=device, l0_solver=l0_solver, tile_size=tile_size,
                            warm_start=warm_start)
    last = None
    bar = None
    interrupted = False
    try:
        for snap in snapshots:
            if bar is None:
                bar = _progress(snap.total, quiet, f"DIP-ℓ0 {mode}")
            bar.update(snap.iteration - bar.n)
            if snap.losses:
                extra = {"tile": f"{snap.tile + 1}/{snap.tiles}"} if snap.tiles > 1 else {}
                bar.set_postfix(loss=f"{snap.losses['loss']:.2e}", plane=f"{snap.plane + 1}/{snap.planes}", **extra,
                                refresh=False)
            last = snap
            if on_snapshot is not None:
                on_snapshot(snap)
    except KeyboardInterrupt:
        interrupted = True
        snapshots.close()
    finally:
        if bar is not None:
            bar.close()
    return last, interrupted


def _cmd_dip(args) -> int:
    image = _read_input(args)
    channel_axis = _resolve_channel_axis(image, args.channel_axis, args.input)
    colour, alpha = split_png_alpha(image, channel_axis, args.input)
    out = args.output

    def save_every(snap):
        if args.save_every and snap.iteration and snap.iteration % args.save_every == 0 and not snap.done:
            name = out.with_name(f"{out.stem}_iter{snap.iteration:05d}{out.suffix}")
            write_image(name, join_alpha(snap.image, alpha, channel_axis))

    last, interrupted = _run_dip(
        colour, channel_axis, mode=args.command, lam=args.lam, iterations=args.iterations, seed=args.seed,
        device=args.device, l0_solver=getattr(args, "l0_solver", "region_fusion"), quiet=args.quiet,
        on_snapshot=save_every, tile_size=args.tile_size, warm_start=not args.cold_start,
    )
    if last is None:
        raise CLIError("interrupted before the first estimate")
    write_image(out, join_alpha(last.image, alpha, channel_axis))
    if interrupted:
        print(f"dip-l0: interrupted at iteration {last.iteration}/{last.total}; wrote the estimate so far to {out}",
              file=sys.stderr)
        return 130
    print(f"wrote {out} ({last.seconds:.1f} s)", file=sys.stderr)
    return 0


def _cmd_batch(args) -> int:
    from .batch import BatchOptions, find_inputs, plan, run_batch

    if args.scheduler is not None and args.workers is not None:
        raise CLIError("--workers sets up a local cluster; with --scheduler the cluster's own workers are used")
    inputs = find_inputs(args.inputs)
    args.outdir.mkdir(parents=True, exist_ok=True)
    options = BatchOptions(mode=args.mode, lam=args.lam, iterations=args.iterations, seed=args.seed,
                           channel_axis=args.channel_axis, device=args.device, tile_size=args.tile_size)
    tasks, summary = plan(inputs, args.outdir, options=options, split_planes=args.split_planes, fmt=args.format)
    if summary.skipped:
        print(f"dip-l0: {len(summary.skipped)} output(s) already in {args.outdir}: skipped", file=sys.stderr)
    bar = _progress(len(tasks), args.quiet or not tasks, "DIP-ℓ0 batch", unit="task")
    code = 0
    try:
        if tasks:
            for task, result in run_batch(tasks, options, summary, scheduler=args.scheduler, workers=args.workers,
                                          threads_per_task=args.threads_per_task):
                if task.plane is not None or task.planes == 1:
                    bar.update(1)
                if result["status"] == "failed":
                    bar.write(f"dip-l0: failed: {task.input}: {result['message']}", file=sys.stderr)
                bar.set_postfix(failed=len(summary.failed), refresh=False)
    except KeyboardInterrupt:
        code = 130
    finally:
        bar.close()
    for line in summary.lines():
        print(line, file=sys.stderr)
    return code or (1 if summary.failed else 0)


def _cmd_l0(args) -> int:
    image = _read_input(args)
    channel_axis = _resolve_channel_axis(image, args.channel_axis, args.input)
    colour, alpha = split_png_alpha(image, channel_axis, args.input)
    result = l0_smooth(colour, args.lam, method=args.method, channel_axis=channel_axis)
    write_image(args.output, join_alpha(result, alpha, channel_axis))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _cmd_demo(args) -> int:
    from skimage.metrics import peak_signal_noise_ratio as psnr
    from skimage.util import img_as_ubyte

    from .data import cartoon_example

    out_dir = args.output
    out_dir.mkdir(parents=True, exist_ok=True)
    noisy, truth = cartoon_example("astronaut", "gravel", args.size)
    noisy8 = img_as_ubyte(noisy)
    lam = PRESETS["smooth"].lam
    l0_only = l0_smooth(noisy8, lam, channel_axis=-1)
    last, interrupted = _run_dip(noisy8, -1, mode="smooth", lam=None, iterations=args.iterations, seed=0,
                                 device="auto", l0_solver="region_fusion", quiet=args.quiet)
    if last is None:
        raise CLIError("interrupted before the first estimate")
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
          f"ℓ0 alone (Region Fusion, λ={lam}) {psnr(truth8, l0_only):.2f} dB, "
          f"DIP-ℓ0 {psnr(truth8, result):.2f} dB ({last.seconds:.0f} s)")
    print(f"wrote {out_dir}/side_by_side.png (input | ℓ0 alone | DIP-ℓ0 | ground truth)")
    return 130 if interrupted else 0


def open_viewer(sample: str = "textured_cartoon"):
    """A napari viewer with ``sample`` loaded and the DIP-ℓ0 widget docked; returns (viewer, widget)."""
    import napari

    viewer = napari.Viewer(title="napari-dip-l0")
    viewer.open_sample("napari-dip-l0", sample)
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip-l0", "DIP-ℓ0")
    if sample == "jpeg_q10":
        widget.mode.value = "JPEG deblocking"
    return viewer, widget


def _cmd_gui(args) -> int:
    try:
        import napari
    except ImportError:
        raise CLIError("napari is not installed: pip install 'napari-dip-l0[all]'") from None
    open_viewer(args.sample)
    napari.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    commands = {"smooth": _cmd_dip, "deblock": _cmd_dip, "batch": _cmd_batch, "l0": _cmd_l0, "demo": _cmd_demo,
                "gui": _cmd_gui}
    try:
        return commands[args.command](args)
    except (CLIError, ValueError, TypeError, OSError, MemoryError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"dip-l0: error: {first}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
