"""The torch form of parallel Region Fusion (:mod:`.parallel`): whole-array operations on any device.

Each step of a round is one function over the compact group state: min/max
scatters pick each group's best neighbour, sorts and prefix sums grow the
stars, and a relabel coalesces the changed edges. Only order-independent
reductions (min/max) decide merges, so the result does not depend on how the
edges are stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .rules import HASH_MASK, STRIP_ROWS, edge_hash, merge_cost, threshold

_NO_HASH = HASH_MASK + 1  # above every hash: marks "not a tie"


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    # index_select, not x[idx]: advanced indexing is several times slower on the CPU.
    return x.index_select(0, idx)


def _where(mask: torch.Tensor) -> torch.Tensor:
    return mask.nonzero().squeeze(1)


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


@dataclass
class _Groups:
    """The compact state: per group its pixel sum ``S``, count ``wgt`` and representative pixel ``rep``
    (an id within its image for tie-breaks that does not change when groups are renumbered); per adjacent
    pair (``ea`` < ``eb``) its shared pixel edges ``ec`` and cost ratio ``r``."""

    S: torch.Tensor
    wgt: torch.Tensor
    rep: torch.Tensor
    ea: torch.Tensor
    eb: torch.Tensor
    ec: torch.Tensor
    r: torch.Tensor
    g: int

    def ratios(self, a, b, c):
        # Merge criterion: merge cost ≤ β c, as one ratio ≤ β.
        wa, wb = _take(self.wgt, a), _take(self.wgt, b)
        diff = _take(self.S, a) / wa[:, None] - _take(self.S, b) / wb[:, None]
        return merge_cost((diff * diff).sum(1), wa, wb) / c


def _pick(st: _Groups, beta: float, strip: torch.Tensor | None):
    """Each group's best mergeable neighbour, resolved as stars.

    Returns ``(leaves, centres, best ratio per group, shared edges with the pick per group)``,
    or None when no pair is mergeable.
    """
    g, dt, device = st.g, st.S.dtype, st.S.device
    ok = st.r <= beta
    if strip is not None:
        ok &= _take(strip, st.ea) == _take(strip, st.eb)
    sel = _where(ok)
    if sel.shape[0] == 0:
        return None
    ma, mb, mr, mc = _take(st.ea, sel), _take(st.eb, sel), _take(st.r, sel), _take(st.ec, sel)
    ends = torch.cat([ma, mb])
    other = torch.cat([mb, ma])
    rr = torch.cat([mr, mr])
    # Least ratio, ties by edge hash, then by id. Only min/max reductions: their result does not depend
    # on the order.
    bestr = torch.full((g,), math.inf, dtype=dt, device=device).scatter_reduce_(0, ends, rr, "amin")
    tie = rr == _take(bestr, ends)
    hh = edge_hash(_take(st.rep, ma), _take(st.rep, mb)).repeat(2)
    hkey = torch.where(tie, hh, _NO_HASH)
    besth = torch.full((g,), _NO_HASH, device=device).scatter_reduce_(0, ends, hkey, "amin")
    chosen = _where(tie & (hh == _take(besth, ends)))
    cends = _take(ends, chosen)
    tgt = torch.full((g,), -1, device=device).scatter_reduce_(0, cends, _take(other, chosen), "amax")
    cnt = torch.zeros(g, dtype=dt, device=device).scatter_reduce_(0, cends, _take(mc.repeat(2), chosen), "amax")
    has = tgt >= 0
    ar = torch.arange(g, device=device)
    t = torch.where(has, tgt, ar)
    mutual = has & (_take(t, t) == ar)
    # Stars: a group hooks onto its pick if the pick stays put (has no pick, or is the lower id of a
    # mutual pair); chains wait for a later round.
    fixed = ~has | (mutual & (ar < t))
    leaves = _where(~fixed & _take(fixed, t))
    return leaves, _take(t, leaves), bestr, cnt


def _grow_stars(st: _Groups, leaves, cen, bestr, cnt, beta: float):
    """The leaves each star takes: in ratio order, the prefix whose incremental merges each pass the test
    against the grown group's mean, as the sequential solver would take them greedily."""
    wgt, S = st.wgt, st.S
    lr = _take(bestr, leaves)
    o1 = torch.argsort(lr, stable=True)
    o2 = torch.argsort(_take(cen, o1), stable=True)
    order = _take(o1, o2)
    leaves, cen = _take(leaves, order), _take(cen, order)
    lw, lS, lc = _take(wgt, leaves), _take(S, leaves), _take(cnt, leaves)
    seg = _segment_starts(cen)
    cw = torch.cumsum(lw, 0)
    # Scan along a contiguous axis: a scan down the rows of (L, C) is slow on CUDA.
    cS = torch.cumsum(lS.t().contiguous(), 1).t()
    # Exclusive, per-star prefix sums of the leaves before each one.
    pw = cw - lw - (_take(cw, seg) - _take(lw, seg)) + _take(wgt, cen)
    pS = cS - lS - (_take(cS, seg) - _take(lS, seg)) + _take(S, cen)
    diff = lS / lw[:, None] - pS / pw[:, None]
    inc = merge_cost((diff * diff).sum(1), lw, pw)
    fail = (inc > beta * lc).to(torch.int64)
    cf = torch.cumsum(fail, 0)
    acc = _where((cf - (_take(cf, seg) - _take(fail, seg))) == 0)
    return _take(leaves, acc), _take(cen, acc)


def _merge(st: _Groups, leaves, cen) -> torch.Tensor:
    """Merge the accepted leaves into their centres, in place; returns the old → new group map."""
    g, dt, device = st.g, st.S.dtype, st.S.device
    ar = torch.arange(g, device=device)
    # Relabel: merged leaves point at their centre; roots keep their order.
    parent = ar.clone()
    parent[leaves] = cen
    root = parent == ar
    newid = torch.cumsum(root.to(torch.int64), 0) - 1
    mp = _take(newid, parent)
    g2 = int(newid[-1]) + 1
    roots = _where(root)
    lnew = _take(mp, leaves)
    st.S = _take(st.S, roots).index_add_(0, lnew, _take(st.S, leaves))
    st.wgt = _take(st.wgt, roots).index_add_(0, lnew, _take(st.wgt, leaves))
    st.rep = _take(st.rep, roots)
    touched = torch.zeros(g, dtype=torch.bool, device=device)
    touched[leaves] = True
    touched[cen] = True
    ch = _take(touched, st.ea) | _take(touched, st.eb)
    keep, ch = _where(~ch), _where(ch)
    # Edges between untouched groups keep their ratio; only the others are relabelled, coalesced
    # (parallel edges summed) and re-scored.
    ka, kb = _take(newid, _take(st.ea, keep)), _take(newid, _take(st.eb, keep))
    kc, kr = _take(st.ec, keep), _take(st.r, keep)
    ca, cb, cc = _take(mp, _take(st.ea, ch)), _take(mp, _take(st.eb, ch)), _take(st.ec, ch)
    ok = _where(ca != cb)
    ca, cb, cc = _take(ca, ok), _take(cb, ok), _take(cc, ok)
    lo, hi = torch.minimum(ca, cb), torch.maximum(ca, cb)
    uniq, inv = torch.unique(lo * g2 + hi, return_inverse=True)
    cc = torch.zeros(uniq.shape[0], dtype=dt, device=device).index_add_(0, inv, cc)
    ca, cb = uniq // g2, uniq % g2
    st.g = g2
    st.ea = torch.cat([ka, ca])
    st.eb = torch.cat([kb, cb])
    st.ec = torch.cat([kc, cc])
    st.r = torch.cat([kr, st.ratios(ca, cb, cc)])
    return mp


def fuse(pix: torch.Tensor, b: int, h: int, w: int, lam: float, max_loop: int, gamma: float,
         max_rounds: int, n_strips: int, k0: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Region Fusion on ``pix`` of shape (b·h·w, C) in the working dtype.

    Returns ``(labels, sums, weights)``: pixel → group labels, and per group the
    sum of its pixels and its pixel count.
    """
    device, dt, n = pix.device, pix.dtype, pix.shape[0]
    ea, eb = _grid_edges(b, h, w, device)
    ec = torch.ones(ea.shape[0], dtype=dt, device=device)
    st = _Groups(pix.clone(), torch.ones(n, dtype=dt, device=device), torch.arange(n, device=device) % (h * w),
                 ea, eb, ec, ec, n)
    st.r = st.ratios(ea, eb, ec)
    maps: list[torch.Tensor] = []
    for k in range(max_loop + 1):
        if st.ea.shape[0] == 0:
            break
        beta = threshold(lam, k, max_loop, gamma)
        for _ in range(max_rounds):
            # First phase: pairs across row strips wait (the CPU form solves strips apart).
            strip = (torch.clamp(torch.div(st.rep, w * STRIP_ROWS, rounding_mode="floor"), max=n_strips - 1)
                     if k < k0 else None)
            picked = _pick(st, beta, strip)
            if picked is None:
                break
            leaves, cen = _grow_stars(st, *picked, beta)
            maps.append(_merge(st, leaves, cen))
    labels = torch.arange(n, device=device)
    if maps:
        labels = maps[-1]
        for mp in reversed(maps[:-1]):
            labels = _take(labels, mp)
    return labels, st.S, st.wgt
