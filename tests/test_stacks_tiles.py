"""Stacks (warm start), tiles (blending, memory estimate) and lazy input."""

import dask.array as da
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio as psnr

from napari_dip_l0 import DipL0Run, iter_dip_l0
from napari_dip_l0.core.memory import estimate_memory
from napari_dip_l0.core.presets import PRESETS
from napari_dip_l0.core.tiling import blend_weights, tile_grid


def _final(snapshots):
    last = None
    for last in snapshots:
        pass
    return last


def _scene(size=96, seed=0):
    """(noisy, truth): flat regions with a ramp, float32 grayscale."""
    rng = np.random.default_rng(seed)
    truth = np.full((size, size), 0.2)
    truth[10:60, 15:70] = 0.8
    truth[50:90, 40:85] = 0.5
    truth += np.linspace(0, 0.1, size)[None, :]
    noisy = np.clip(truth + rng.normal(0, 0.05, truth.shape), 0, 1).astype(np.float32)
    return noisy, truth


@pytest.mark.parametrize("shape, tile, overlap", [((100, 100), 40, 8), ((257, 64), 64, 16), ((30, 500), 128, 32)])
def test_tile_grid_covers_with_overlap_and_equal_tiles(shape, tile, overlap):
    h, w = shape
    windows = tile_grid(h, w, tile, overlap)
    sizes = {(r.stop - r.start, c.stop - c.start) for r, c in windows}
    assert len(sizes) == 1  # equal tiles: one network input shape, warm starts apply
    th, tw = sizes.pop()
    assert th <= tile and tw <= tile
    wsum = np.zeros(shape)
    for win in windows:
        wsum[win] += blend_weights(win, h, w, overlap)
    assert wsum.min() > 0  # every pixel covered with a positive weight
    for starts, side in (({r.start for r, _ in windows}, th), ({c.start for _, c in windows}, tw)):
        starts = sorted(starts)
        assert starts[0] == 0 and starts[-1] + side in shape
        assert all(b - a <= side - overlap for a, b in zip(starts, starts[1:]))


def test_tiled_matches_untiled_without_seams():
    noisy, truth = _scene(96)
    whole = _final(iter_dip_l0(noisy, lam=0.03, iterations=25, tile_size=128, tile_overlap=16))
    tiled = _final(iter_dip_l0(noisy, lam=0.03, iterations=25, tile_size=64, tile_overlap=16))
    assert whole.tiles == 1 and tiled.tiles == 4
    assert tiled.total == 4 * 25  # tiles of one plane each get the full iterations
    p_whole, p_tiled = psnr(truth, whole.image, data_range=1), psnr(truth, tiled.image, data_range=1)
    assert p_whole > psnr(truth, noisy, data_range=1) + 3
    # Tiling costs nothing (at 25 iterations the smaller tiles fit further: +0.6 to +1.7 dB over seeds 0-3).
    assert p_tiled > p_whole - 1.0
    # No seam: across the tiles' overlap (columns 40-56) the tiled result changes no more than the untiled one.
    for cut in range(40, 56):
        jump_t = np.abs(np.diff(tiled.image[:, cut - 1 : cut + 1], axis=1)).mean()
        jump_w = np.abs(np.diff(whole.image[:, cut - 1 : cut + 1], axis=1)).mean()
        assert jump_t <= jump_w + 0.01


def test_tiled_preview_shows_input_outside_done_tiles():
    noisy, _ = _scene(96)
    gen = iter_dip_l0(noisy, lam=0.03, iterations=3, tile_size=64, tile_overlap=16)
    first = next(gen)
    assert first.tile == 0 and first.tiles == 4
    # Far from the first tile nothing is fitted yet: the input shows.
    np.testing.assert_allclose(first.image[80:, 80:], noisy[80:, 80:], atol=1e-6)
    gen.close()


def test_memory_estimate_refuses_before_work():
    img = np.zeros((256, 256, 3), np.uint8)
    img[50:100] = 200
    with pytest.raises(MemoryError, match=r"needs about .* only .* allowed \(max_memory\)"):
        iter_dip_l0(img, channel_axis=-1, max_memory=50 * 1024**2)
    big = estimate_memory((4096, 4096, 3), 2, 1, PRESETS["smooth"], 4096, 64)
    tiled = estimate_memory((4096, 4096, 3), 2, 1, PRESETS["smooth"], 1024, 64)
    assert big > 8 * tiled  # tiling bounds the network's memory
    with pytest.raises(ValueError, match="max_memory"):
        iter_dip_l0(img, channel_axis=-1, max_memory=-1)
    with pytest.raises(ValueError, match="tile_size"):
        iter_dip_l0(img, channel_axis=-1, tile_size=8)
    with pytest.raises(ValueError, match="tile_overlap"):
        iter_dip_l0(img, channel_axis=-1, tile_size=64, tile_overlap=40)


def test_dask_input_equals_numpy_and_is_read_plane_by_plane():
    stack = np.stack([_scene(64, seed=s)[0] for s in range(3)])
    reads = []

    def load(block, block_info=None):
        reads.append(block_info[None]["array-location"][0][0])  # the plane the chunk belongs to
        return block

    lazy = da.from_array(stack, chunks=(1, 32, 32)).map_blocks(load, dtype=stack.dtype)
    ref = DipL0Run(stack, lam=0.03, iterations=3).run()
    run = DipL0Run(lazy, lam=0.03, iterations=3)
    # At the call: one pass for the range and the finite check, each chunk read once.
    assert sorted(reads) == [p for p in range(3) for _ in range(4)]
    reads.clear()
    while run.step().plane == 0:  # until the first snapshot of plane 1
        pass
    assert sorted(reads) == [0] * 4 + [1] * 4  # plane 0 read once for its whole fit; plane 2 not yet
    out = run.run()
    np.testing.assert_array_equal(out, ref)
    assert sorted(reads) == [p for p in range(3) for _ in range(4)]


def _drifting_stack(planes=3, size=48, seed=0):
    rng = np.random.default_rng(seed)
    base, truth = _scene(size + 2 * planes)
    truths, noisy = [], []
    for p in range(planes):
        t = truth[2 * p : 2 * p + size, p : p + size]
        truths.append(t)
        noisy.append(np.clip(t + rng.normal(0, 0.05, t.shape), 0, 1))
    return np.stack(noisy).astype(np.float32), np.stack(truths)


def test_stack_warm_start_counts_and_converges_faster():
    stack, truth = _drifting_stack(size=96)
    warm = _final(iter_dip_l0(stack, lam=0.03, iterations=30, warm_iterations=8))
    assert warm.total == 30 + 2 * 8
    default = next(iter_dip_l0(stack, lam=0.03, iterations=30))
    assert default.total == 30 + 2 * round(PRESETS["smooth"].warm_fraction * 30)
    cold = _final(iter_dip_l0(stack, lam=0.03, iterations=8, warm_start=False))
    assert cold.total == 3 * 8
    # The same 8 iterations go further from the previous plane's network. Single planes swing by
    # dB with ulp-level changes of the input (Region Fusion's merges are discrete), so take the mean.
    gain = np.mean([psnr(truth[p], warm.image[p], data_range=1) - psnr(truth[p], cold.image[p], data_range=1)
                    for p in (1, 2)])
    assert gain > 0.5, gain
    np.testing.assert_array_equal(warm.image[0], _final(iter_dip_l0(stack[:1], lam=0.03, iterations=30,
                                                                      data_range=(stack.min(), stack.max()))).image[0])


def test_cold_stack_plane_equals_plane_with_the_stack_range():
    stack, _ = _drifting_stack()
    cold = _final(iter_dip_l0(stack, lam=0.03, iterations=5, warm_start=False)).image
    alone = _final(iter_dip_l0(stack[2], lam=0.03, iterations=5, data_range=(stack.min(), stack.max()))).image
    np.testing.assert_array_equal(cold[2], alone)


def test_data_range_clips_and_validates():
    img = (np.random.default_rng(0).random((20, 20)) * 200).astype(np.uint8)
    out = _final(iter_dip_l0(img, iterations=2, data_range=(0, 1000))).image
    assert out.dtype == np.uint8  # no wrap-around beyond the dtype
    with pytest.raises(ValueError, match="data_range"):
        iter_dip_l0(img, data_range=(5, 5))
    with pytest.raises(TypeError, match="data_range"):
        iter_dip_l0(img, data_range="wide")


@pytest.mark.parametrize("shape, tile", [((3, 40, 40), None), ((96, 96), 64)])
def test_snapshots_show_their_own_moment_whenever_rendered(shape, tile):
    img = np.random.default_rng(1).random(shape).astype(np.float32)
    kwargs = dict(lam=0.03, iterations=2, warm_iterations=2, tile_size=tile)
    early = [s.image for s in DipL0Run(img, **kwargs)]  # each rendered as it comes
    late = [s.image for s in list(DipL0Run(img, **kwargs))]  # all rendered after the run ended
    assert len(early) == len(late) > 3
    for a, b in zip(early, late):
        np.testing.assert_array_equal(a, b)


def test_on_plane_gets_every_plane_once_as_in_the_result():
    rng = np.random.default_rng(3)
    stack = (rng.random((2, 3, 24, 20, 2)) * 1000).astype(np.uint16)
    got = {}

    def keep(index, plane):
        assert index not in got
        got[index] = plane.copy()

    result = DipL0Run(stack, lam=0.03, iterations=3, channel_axis=-1, device="cpu", on_plane=keep).run()
    assert sorted(got) == [(t, z) for t in range(2) for z in range(3)]
    assert all(np.array_equal(result[i], got[i]) for i in got)
    flat = {}
    DipL0Run(np.zeros((3, 16, 16)), iterations=2, device="cpu", on_plane=flat.__setitem__).run()
    assert sorted(flat) == [(0,), (1,), (2,)] and flat[(0,)].shape == (16, 16)
    with pytest.raises(TypeError, match="on_plane"):
        DipL0Run(stack, on_plane="write", channel_axis=-1)
