"""Data-parallel Region Fusion: an exact-ℓ0 solver written on torch tensors.

Same objective and threshold schedule as the sequential
:func:`napari_dip_l0.core.l0.region_fusion` (Nguyen & Brown 2015), but every
step works on whole arrays, so one code path runs on CUDA, MPS and all CPU
cores. The sequential solver visits groups one by one and merges greedily; here,
at each threshold, every group picks its best mergeable neighbour at once and
the picks are resolved as stars (Borůvka-style hooking), checked in ratio order
against the growing group's mean so no star merges more than the sequential
rule would allow. Groups and their adjacency are kept as compact lists that
shrink as groups merge, so late thresholds are cheap.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["parallel_fusion"]

_HASH_MASK = (1 << 62) - 1
_DEBUG = None


def _edge_hash(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random non-negative int64 per (a, b) pair (splitmix-style mixing).

    Why: ties between equal merge costs are common (flat regions); breaking them by
    id makes long pointer chains (one merge per round), a hash makes short trees.
    """
    x = a * -7046029254386353131 + b * 7640891576956012809  # wraps modulo 2**64
    x = x ^ (x >> 31)
    x = x * -4658895280553007687
    x = x ^ (x >> 29)
    return x & _HASH_MASK


def _segment_starts(keys: torch.Tensor) -> torch.Tensor:
    """Index, for each position of a sorted key array, of the first position of its run."""
    n = keys.shape[0]
    first = torch.ones(n, dtype=torch.bool, device=keys.device)
    first[1:] = keys[1:] != keys[:-1]
    pos = torch.arange(n, device=keys.device)
    return torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), 0).values


def _grid_edges(b: int, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """4-neighbour pixel pairs (a < b) of ``b`` stacked h×w images, pixel ids b·h·w + y·w + x."""
    idx = torch.arange(b * h * w, device=device).reshape(b, h, w)
    ea = torch.cat([idx[:, :, :-1].reshape(-1), idx[:, :-1, :].reshape(-1)])
    eb = torch.cat([idx[:, :, 1:].reshape(-1), idx[:, 1:, :].reshape(-1)])
    return ea, eb


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    # index_select, not x[idx]: advanced indexing is several times slower on the CPU.
    return x.index_select(0, idx)


def _where(mask: torch.Tensor) -> torch.Tensor:
    return mask.nonzero().squeeze(1)


def _fuse(pix: torch.Tensor, b: int, h: int, w: int, lam: float, max_loop: int, gamma: float,
          max_rounds: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Region Fusion on ``pix`` of shape (b·h·w, C) in the working dtype.

    Returns ``(labels, sums, weights)``: pixel → group labels, and per group the
    sum of its pixels and its pixel count.
    """
    device = pix.device
    dt = pix.dtype
    n = pix.shape[0]
    S = pix.clone()  # group sums
    wgt = torch.ones(n, dtype=dt, device=device)  # group weights (pixel counts)
    ea, eb = _grid_edges(b, h, w, device)  # adjacent group pairs, ea < eb
    ec = torch.ones(ea.shape[0], dtype=dt, device=device)  # shared pixel edges per group pair

    def ratios(a, bb, c):
        # Merge criterion w_a w_b ||Y_a - Y_b||² ≤ β c (w_a + w_b), as one ratio ≤ β.
        wa, wb = _take(wgt, a), _take(wgt, bb)
        diff = _take(S, a) / wa[:, None] - _take(S, bb) / wb[:, None]
        return (diff * diff).sum(1) * (wa * wb / (wa + wb)) / c

    r = ratios(ea, eb, ec)
    maps: list[torch.Tensor] = []
    g = n
    no_hash = _HASH_MASK + 1
    for k in range(max_loop + 1):
        if ea.shape[0] == 0:
            break
        beta = lam * (k / max_loop) ** gamma if max_loop > 0 else lam
        for _ in range(max_rounds):
            sel = _where(r <= beta)
            if _DEBUG is not None:
                _DEBUG.append((k, g, ea.shape[0], sel.shape[0]))
            if sel.shape[0] == 0:
                break
            ma, mb, mr, mc = _take(ea, sel), _take(eb, sel), _take(r, sel), _take(ec, sel)
            ends = torch.cat([ma, mb])
            other = torch.cat([mb, ma])
            rr = torch.cat([mr, mr])
            # Each group's best mergeable neighbour: least ratio, ties by edge hash, then by
            # id. Only min/max reductions: their result does not depend on the order.
            bestr = torch.full((g,), math.inf, dtype=dt, device=device).scatter_reduce_(0, ends, rr, "amin")
            tie = rr == _take(bestr, ends)
            hh = _edge_hash(ma, mb).repeat(2)
            hkey = torch.where(tie, hh, no_hash)
            besth = torch.full((g,), no_hash, device=device).scatter_reduce_(0, ends, hkey, "amin")
            chosen = _where(tie & (hh == _take(besth, ends)))
            cends = _take(ends, chosen)
            tgt = torch.full((g,), -1, device=device).scatter_reduce_(0, cends, _take(other, chosen), "amax")
            cnt = torch.zeros(g, dtype=dt, device=device).scatter_reduce_(
                0, cends, _take(mc.repeat(2), chosen), "amax")
            has = tgt >= 0
            ar = torch.arange(g, device=device)
            t = torch.where(has, tgt, ar)
            mutual = has & (_take(t, t) == ar)
            # Stars: a group hooks onto its pick if the pick stays put (has no pick, or is
            # the lower id of a mutual pair); chains wait for a later round.
            fixed = ~has | (mutual & (ar < t))
            leaves = _where(~fixed & _take(fixed, t))
            cen = _take(t, leaves)
            lr = _take(bestr, leaves)
            # Order each star's leaves by ratio, as the sequential solver would take them
            # greedily, and accept the prefix whose incremental merges each pass the test
            # against the grown group's mean.
            o1 = torch.argsort(lr, stable=True)
            o2 = torch.argsort(_take(cen, o1), stable=True)
            order = _take(o1, o2)
            leaves, cen = _take(leaves, order), _take(cen, order)
            lw, lS, lc = _take(wgt, leaves), _take(S, leaves), _take(cnt, leaves)
            seg = _segment_starts(cen)
            cw = torch.cumsum(lw, 0)
            cS = torch.cumsum(lS, 0)
            # Exclusive, per-star prefix sums of the leaves before each one.
            pw = cw - lw - (_take(cw, seg) - _take(lw, seg)) + _take(wgt, cen)
            pS = cS - lS - (_take(cS, seg) - _take(lS, seg)) + _take(S, cen)
            diff = lS / lw[:, None] - pS / pw[:, None]
            inc = (diff * diff).sum(1) * (lw * pw / (lw + pw))
            fail = (inc > beta * lc).to(torch.int64)
            cf = torch.cumsum(fail, 0)
            acc = _where((cf - (_take(cf, seg) - _take(fail, seg))) == 0)
            leaves, cen = _take(leaves, acc), _take(cen, acc)
            # Relabel: merged leaves point at their centre; roots keep their order.
            parent = ar.clone()
            parent[leaves] = cen
            root = parent == ar
            newid = torch.cumsum(root, 0) - 1
            mp = _take(newid, parent)
            g2 = int(newid[-1]) + 1
            roots = _where(root)
            lnew = _take(mp, leaves)
            S = _take(S, roots).index_add_(0, lnew, _take(S, leaves))
            wgt = _take(wgt, roots).index_add_(0, lnew, _take(wgt, leaves))
            touched = torch.zeros(g, dtype=torch.bool, device=device)
            touched[leaves] = True
            touched[cen] = True
            ch = _take(touched, ea) | _take(touched, eb)
            keep, ch = _where(~ch), _where(ch)
            # Edges between untouched groups keep their ratio; only the others are
            # relabelled, coalesced (parallel edges summed) and re-scored.
            ka, kb = _take(newid, _take(ea, keep)), _take(newid, _take(eb, keep))
            kc, kr = _take(ec, keep), _take(r, keep)
            ca, cb, cc = _take(mp, _take(ea, ch)), _take(mp, _take(eb, ch)), _take(ec, ch)
            ok = _where(ca != cb)
            ca, cb, cc = _take(ca, ok), _take(cb, ok), _take(cc, ok)
            lo, hi = torch.minimum(ca, cb), torch.maximum(ca, cb)
            uniq, inv = torch.unique(lo * g2 + hi, return_inverse=True)
            cc = torch.zeros(uniq.shape[0], dtype=dt, device=device).index_add_(0, inv, cc)
            ca, cb = uniq // g2, uniq % g2
            g = g2
            maps.append(mp)
            ea = torch.cat([ka, ca])
            eb = torch.cat([kb, cb])
            ec = torch.cat([kc, cc])
            r = torch.cat([kr, ratios(ca, cb, cc)])
    labels = torch.arange(n, device=device)
    if maps:
        labels = maps[-1]
        for mp in reversed(maps[:-1]):
            labels = _take(labels, mp)
    return labels, S, wgt


def parallel_fusion(
    image: torch.Tensor | np.ndarray,
    lam: float,
    *,
    max_loop: int = 50,
    gamma: float = 2.2,
    max_rounds: int = 1,
) -> torch.Tensor | np.ndarray:
    """ℓ0 gradient smoothing by data-parallel Region Fusion.

    Minimises ``||S - I||² + lam · #{4-neighbour pairs where S differs}`` by
    merging piecewise-constant groups under the growing threshold
    ``beta_k = (k / max_loop) ** gamma * lam`` of Region Fusion (Nguyen & Brown,
    ICCV 2015): groups i, j may merge when
    ``w_i w_j ||Y_i - Y_j||² <= beta_k c_ij (w_i + w_j)`` (``w`` pixel counts,
    ``Y`` means, ``c_ij`` shared pixel edges). At each threshold every group
    picks its best mergeable neighbour in parallel; picks resolve as stars whose
    leaves join in ratio order while each join still passes the test against the
    grown mean. The merge order differs from the sequential solver's, so pixels
    differ; the ℓ0 energy is close (see ``tests/test_fusion.py``).

    Parameters
    ----------
    image : tensor of shape (..., C, H, W), or ndarray of shape (H, W) or (H, W, C)
        Image on the [0, 1] scale. Leading tensor dimensions are independent
        images (solved together, as one disconnected graph).
    lam : float
        Weight of the ℓ0 term: cost of one 4-neighbour pair that differs.
    max_loop : int
        Number of threshold steps ``K``.
    gamma : float
        Exponent of the threshold schedule (paper: 2.2).
    max_rounds : int
        Most merge rounds per threshold step (a step also ends when a round
        merges nothing).

    Returns
    -------
    tensor or ndarray
        Piecewise-constant result, each group the mean of its input pixels.
        Tensors keep device, dtype and shape; arrays come back as float64 of
        the input's shape, like :func:`~napari_dip_l0.core.l0.region_fusion`.

    Notes
    -----
    Group statistics are accumulated in float64 (float32 on MPS). On the CPU
    every operation used is deterministic, so the same input gives a
    bit-identical result. On CUDA the merge decisions use order-independent
    reductions (min/max), but float sums (``index_add_``) use atomics, so
    the last bits of group means, and in rare near-tie cases a merge, can vary
    between runs.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> img = np.zeros((32, 32))
    >>> img[8:24, 8:24] = 0.8
    >>> out = parallel_fusion(img + rng.normal(0, 0.02, img.shape), 0.05)
    >>> len(np.unique(out))
    2
    >>> import torch
    >>> t = torch.rand(1, 3, 64, 64)
    >>> parallel_fusion(t, 0.06).shape
    torch.Size([1, 3, 64, 64])
    """
    if isinstance(image, np.ndarray):
        arr = np.asarray(image, dtype=np.float64)
        t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr[None]))
        out = parallel_fusion(t, lam, max_loop=max_loop, gamma=gamma, max_rounds=max_rounds).numpy()
        return np.moveaxis(out, 0, -1) if arr.ndim == 3 else out[0]
    if image.ndim < 3:
        raise ValueError(f"expected a tensor of shape (..., C, H, W), got {tuple(image.shape)}")
    if lam <= 0:
        return image.clone()
    *lead, c, h, w = image.shape
    b = math.prod(lead)
    work = torch.float32 if image.device.type == "mps" else torch.float64
    # (b, C, H, W) -> (b·H·W, C): one row per pixel, channels contiguous for gathers.
    pix = image.reshape(b, c, h * w).transpose(1, 2).reshape(b * h * w, c).to(work)
    labels, S, wgt = _fuse(pix, b, h, w, float(lam), int(max_loop), float(gamma), int(max_rounds))
    out = _take(S / wgt[:, None], labels)
    return out.reshape(b, h * w, c).transpose(1, 2).reshape(image.shape).to(image.dtype)
