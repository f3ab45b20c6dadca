"""The numba form of parallel Region Fusion (:mod:`.parallel`), for the CPU.

The same steps as :mod:`.parallel_torch`, as loops: torch on a few CPU cores
spends most of its time launching ~40 small operations per round, and the
scatter-min of the best-neighbour step is a plain loop here. Decisions use the
same keys (:mod:`.rules`: cost ratio, edge hash, neighbour id), so the result
does not depend on the order edges are stored in.
"""

from __future__ import annotations

import numba
import numpy as np

from .rules import STRIP_ROWS, nb_edge_hash, nb_merge_cost, nb_threshold


@numba.njit(cache=True, nogil=True, inline="always")
def _pair_cost(Y, wgt, a, b):
    """Merge cost of groups a and b (:func:`.rules.merge_cost`)."""
    d = 0.0
    for ch in range(Y.shape[1]):
        t = Y[a, ch] - Y[b, ch]
        d += t * t
    return nb_merge_cost(d, wgt[a], wgt[b])


@numba.njit(cache=True, nogil=True)
def _ratios(Y, wgt, ea, eb, ec, r, lo, hi):
    for e in range(lo, hi):
        r[e] = _pair_cost(Y, wgt, ea[e], eb[e]) / ec[e]


@numba.njit(cache=True, nogil=True)
def _is_fixed(tgt, g):
    # A group stays put this round if it picked nobody, or is the lower id of a mutual pair.
    t = tgt[g]
    return t < 0 or (tgt[t] == g and g < t)


@numba.njit(cache=True, nogil=True)
def _grid_state(pix, h, w):
    """Pixel-level state of one h×w image: every pixel a group, every 4-neighbour pair an edge."""
    n, C = pix.shape
    n_edges = h * (w - 1) + (h - 1) * w
    ea = np.empty(n_edges, np.int32)
    eb = np.empty(n_edges, np.int32)
    e = 0
    for y in range(h):
        for x in range(w - 1):
            ea[e] = y * w + x
            eb[e] = ea[e] + 1
            e += 1
    for y in range(h - 1):
        for x in range(w):
            ea[e] = y * w + x
            eb[e] = ea[e] + w
            e += 1
    return pix.copy(), pix.copy(), np.ones(n), np.arange(n, dtype=np.int32), ea, eb, np.ones(n_edges, np.int32)


@numba.njit(cache=True, nogil=True)
def _coalesce(ca, cb, cc, nc, G, ea, eb, ec, q, deg, sa, sb, sc, mark):
    """Append the ``nc`` pairs (ca < cb, cc shared edges) to ``ea``/``eb``/``ec`` from ``q`` on, equal pairs
    summed; returns the new end.

    A counting sort by the lower group (sequential scatters, as pairs come in
    near-spatial order), then one pass that sums equal pairs within each run.
    ``mark`` (one entry per group) is all -1 on entry and on return.
    """
    for g in range(G + 1):
        deg[g] = 0
    for i in range(nc):
        deg[ca[i] + 1] += 1
    for g in range(G):
        deg[g + 1] += deg[g]
    for i in range(nc):
        p = deg[ca[i]]
        deg[ca[i]] = p + 1
        sa[p] = ca[i]
        sb[p] = cb[i]
        sc[p] = cc[i]
    i = 0
    while i < nc:
        lo = sa[i]
        j0 = i
        while i < nc and sa[i] == lo:
            hi = sb[i]
            if mark[hi] >= 0:
                ec[mark[hi]] += sc[i]
            else:
                mark[hi] = q
                ea[q] = lo
                eb[q] = hi
                ec[q] = sc[i]
                q += 1
            i += 1
        for j in range(j0, i):
            mark[sb[j]] = -1
    return q


@numba.njit(cache=True, nogil=True)
def _pick(E, r, ea, eb, ec, rep, rep_off, beta, bestr, besth, tgt, cnt):
    """Each group's best mergeable neighbour: least ratio, then least hash, then highest id (as the torch
    form). ``bestr``/``tgt`` are +inf/-1 for every group on entry. Returns how many pairs were mergeable."""
    n_sel = 0
    for e in range(E):
        re = r[e]
        if re > beta:
            continue
        n_sel += 1
        a = ea[e]
        bb = eb[e]
        hs = nb_edge_hash(np.int64(rep[a] + rep_off), np.int64(rep[bb] + rep_off))
        if re < bestr[a] or (re == bestr[a] and (hs < besth[a] or (hs == besth[a] and bb > tgt[a]))):
            bestr[a] = re
            besth[a] = hs
            tgt[a] = bb
            cnt[a] = ec[e]
        if re < bestr[bb] or (re == bestr[bb] and (hs < besth[bb] or (hs == besth[bb] and a > tgt[bb]))):
            bestr[bb] = re
            besth[bb] = hs
            tgt[bb] = a
            cnt[bb] = ec[e]
    return n_sel


@numba.njit(cache=True, nogil=True)
def _stars(G, tgt, head, nxt, centres):
    """Link each leaf (a group whose pick stays put) into its centre's list; returns the number of centres.

    Leaves are linked in descending id, so each list comes out ascending.
    """
    n_cen = 0
    for g in range(G - 1, -1, -1):
        t = tgt[g]
        if t >= 0 and not _is_fixed(tgt, g) and _is_fixed(tgt, t):
            if head[t] < 0:
                centres[n_cen] = t
                n_cen += 1
            nxt[g] = head[t]
            head[t] = g
    return n_cen


@numba.njit(cache=True, nogil=True)
def _grow_stars(n_cen, centres, head, nxt, buf, bestr, cnt, beta, S, Y, wgt, rep, uf, merged, touched, accepted,
                cen_of):
    """Each centre takes its leaves in (ratio, id) order while the grown group still passes the test;
    returns the number of leaves taken (listed in ``accepted``, their centres in ``cen_of``)."""
    C = S.shape[1]
    n_acc = 0
    for ci in range(n_cen - 1, -1, -1):
        c = centres[ci]
        m = 0
        v = head[c]
        head[c] = -1
        while v >= 0:  # insertion sort by (ratio, id): stars are small
            p = m - 1
            while p >= 0 and bestr[buf[p]] > bestr[v]:
                buf[p + 1] = buf[p]
                p -= 1
            buf[p + 1] = v
            m += 1
            v = nxt[v]
        for q in range(m):
            leaf = buf[q]
            wl = wgt[leaf]
            wc = wgt[c]
            if _pair_cost(Y, wgt, leaf, c) > beta * cnt[leaf]:
                break  # the grown group no longer takes this leaf, nor the later ones
            wgt[c] = wc + wl
            for ch in range(C):
                S[c, ch] += S[leaf, ch]
                Y[c, ch] = S[c, ch] / wgt[c]
            merged[leaf] = True
            touched[leaf] = True
            touched[c] = True
            uf[rep[leaf]] = rep[c]
            accepted[n_acc] = leaf
            cen_of[leaf] = c
            n_acc += 1
    return n_acc


@numba.njit(cache=True, nogil=True)
def _relabel(G, merged, newid, S, Y, wgt, rep, bestr, tgt):
    """Number the groups that were not merged in order (moving their state down) and reset the picks for
    the next round; returns the new group count."""
    C = S.shape[1]
    G2 = 0
    for g in range(G):
        bestr[g] = np.inf
        tgt[g] = -1
        if not merged[g]:
            newid[g] = G2
            if G2 != g:
                for ch in range(C):
                    S[G2, ch] = S[g, ch]
                    Y[G2, ch] = Y[g, ch]
                wgt[G2] = wgt[g]
                rep[G2] = rep[g]
            G2 += 1
    return G2


@numba.njit(cache=True, nogil=True)
def _split_edges(E, ea, eb, ec, r, touched, newid, ca, cb, cc):
    """Edges between untouched groups, renumbered, stay in place with their ratio (returns their count
    ``q``); the others, renumbered, go to ``ca``/``cb``/``cc`` unless now inside one group (count ``nc``)."""
    q = 0
    nc = 0
    for e in range(E):
        a = ea[e]
        bb = eb[e]
        if not touched[a] and not touched[bb]:
            ea[q] = newid[a]
            eb[q] = newid[bb]
            ec[q] = ec[e]
            r[q] = r[e]
            q += 1
        else:
            a2 = newid[a]
            b2 = newid[bb]
            if a2 != b2:
                ca[nc] = min(a2, b2)
                cb[nc] = max(a2, b2)
                cc[nc] = ec[e]
                nc += 1
    return q, nc


@numba.njit(cache=True, nogil=True)
def _rounds(S, Y, wgt, rep, uf, ea, eb, ec, G, E, k_start, k_end, lam, max_loop, gamma, max_rounds, rep_off):
    """Thresholds ``k_start <= k < k_end`` of parallel Region Fusion on the given state, in place.

    ``S``/``Y``/``wgt``: sums, means and pixel counts of the ``G`` groups; ``rep``: each
    group's representative pixel (its union-find root in ``uf``); ``ea``/``eb``/``ec``: the
    ``E`` adjacent pairs and their shared pixel edges. Pixel ids are local; ``rep_off``
    makes them the image's for the tie-break hash, so a strip decides as the whole image
    would. Returns the new ``(G, E)``.
    """
    n = S.shape[0]
    n_edges = ea.shape[0]
    r = np.empty(n_edges)
    _ratios(Y, wgt, ea, eb, ec, r, 0, E)
    bestr = np.full(n, np.inf)
    besth = np.zeros(n, np.int64)
    tgt = np.full(n, -1, np.int32)
    cnt = np.zeros(n, np.int32)
    head = np.full(n, -1, np.int32)  # a centre's leaves, as a linked list
    nxt = np.empty(n, np.int32)
    centres = np.empty(n, np.int32)
    buf = np.empty(n, np.int32)
    accepted = np.empty(n, np.int32)
    cen_of = np.empty(n, np.int32)
    merged = np.zeros(n, np.bool_)  # merged into its centre this round
    touched = np.zeros(n, np.bool_)  # merged, or a centre that took a leaf
    newid = np.empty(n, np.int32)
    mark = np.full(n, -1, np.int32)
    ca, cb, cc = np.empty(n_edges, np.int32), np.empty(n_edges, np.int32), np.empty(n_edges, np.int32)
    sa, sb, sc = np.empty(n_edges, np.int32), np.empty(n_edges, np.int32), np.empty(n_edges, np.int32)
    deg = np.empty(n + 1, np.int32)
    for k in range(k_start, k_end):
        if E == 0:
            break
        beta = nb_threshold(lam, k, max_loop, gamma)
        for _ in range(max_rounds):
            if _pick(E, r, ea, eb, ec, rep, rep_off, beta, bestr, besth, tgt, cnt) == 0:
                break
            n_cen = _stars(G, tgt, head, nxt, centres)
            n_acc = _grow_stars(n_cen, centres, head, nxt, buf, bestr, cnt, beta, S, Y, wgt, rep, uf, merged,
                                touched, accepted, cen_of)
            G2 = _relabel(G, merged, newid, S, Y, wgt, rep, bestr, tgt)
            if n_acc == 0:
                break
            for i in range(n_acc):
                leaf = accepted[i]
                newid[leaf] = newid[cen_of[leaf]]
            q, nc = _split_edges(E, ea, eb, ec, r, touched, newid, ca, cb, cc)
            for i in range(n_acc):
                leaf = accepted[i]
                merged[leaf] = False
                touched[leaf] = False
                touched[cen_of[leaf]] = False
            E = _coalesce(ca, cb, cc, nc, G2, ea, eb, ec, q, deg, sa, sb, sc, mark)
            G = G2
            _ratios(Y, wgt, ea, eb, ec, r, q, E)
    return G, E


@numba.njit(cache=True, nogil=True)
def _find(uf, p):
    root = p
    while uf[root] != root:
        root = uf[root]
    while uf[p] != root:  # path compression
        step = uf[p]
        uf[p] = root
        p = step
    return root


@numba.njit(cache=True, nogil=True)
def _strip(pix, w, y0, y1, k_end, lam, max_loop, gamma, max_rounds, prep):
    """Thresholds ``k < k_end`` on rows ``y0:y1`` alone; writes each pixel's group representative."""
    lo, hi = y0 * w, y1 * w
    S, Y, wgt, rep, ea, eb, ec = _grid_state(pix[lo:hi], y1 - y0, w)
    uf = np.arange(hi - lo, dtype=np.int32)
    _rounds(S, Y, wgt, rep, uf, ea, eb, ec, hi - lo, ea.shape[0], 0, k_end, lam, max_loop, gamma, max_rounds, lo)
    for p in range(hi - lo):
        prep[lo + p] = _find(uf, p) + lo


@numba.njit(cache=True, nogil=True)
def _state_from_reps(pix, h, w, prep):
    """Whole-image state from each pixel's group representative ``prep`` (strip phase done)."""
    n, C = pix.shape
    gid = np.full(n, -1, np.int32)
    G = 0
    for p in range(n):  # groups numbered in the order of their representatives, as in the torch form
        if prep[p] == p:
            gid[p] = G
            G += 1
    S = np.zeros((G, C))
    wgt = np.zeros(G)
    rep = np.empty(G, np.int32)
    for p in range(n):
        g = gid[prep[p]]
        rep[g] = prep[p]
        wgt[g] += 1.0
        for ch in range(C):
            S[g, ch] += pix[p, ch]
    Y = np.empty((G, C))
    for g in range(G):
        for ch in range(C):
            Y[g, ch] = S[g, ch] / wgt[g]
    # Adjacent group pairs: pixel pairs across group borders, coalesced.
    n_cross = 0
    for y in range(h):
        for x in range(w):
            p = y * w + x
            if x + 1 < w and prep[p] != prep[p + 1]:
                n_cross += 1
            if y + 1 < h and prep[p] != prep[p + w]:
                n_cross += 1
    ca = np.empty(n_cross, np.int32)
    cb = np.empty(n_cross, np.int32)
    i = 0
    for y in range(h):
        for x in range(w):
            p = y * w + x
            for q in (p + 1, p + w):
                if (q == p + 1 and x + 1 >= w) or (q == p + w and y + 1 >= h):
                    continue
                if prep[p] != prep[q]:
                    a, b = gid[prep[p]], gid[prep[q]]
                    ca[i] = min(a, b)
                    cb[i] = max(a, b)
                    i += 1
    ea, eb, ec = np.empty(n_cross, np.int32), np.empty(n_cross, np.int32), np.zeros(n_cross, np.int32)
    sa, sb, sc = np.empty(n_cross, np.int32), np.empty(n_cross, np.int32), np.empty(n_cross, np.int32)
    E = _coalesce(ca, cb, np.ones(n_cross, np.int32), n_cross, G, ea, eb, ec, 0, np.empty(G + 1, np.int32),
                  sa, sb, sc, np.full(G, -1, np.int32))
    return S, Y, wgt, rep, ea, eb, ec, G, E


@numba.njit(cache=True, nogil=True)
def _strip_bounds(h, n_strips, s):
    y0 = s * STRIP_ROWS
    y1 = h if s == n_strips - 1 else y0 + STRIP_ROWS
    return y0, y1


@numba.njit(cache=True, nogil=True)
def _finish(pix, h, w, prep, lam, max_loop, gamma, max_rounds, k0):
    """Global thresholds from ``k0`` on, after the strip phase; returns the result pixels."""
    n, C = pix.shape
    S, Y, wgt, rep, ea, eb, ec, G, E = _state_from_reps(pix, h, w, prep)
    uf = np.arange(n, dtype=np.int32)
    G, E = _rounds(S, Y, wgt, rep, uf, ea, eb, ec, G, E, k0, max_loop + 1, lam, max_loop, gamma, max_rounds, 0)
    gid = np.empty(n, np.int32)
    for g in range(G):
        gid[rep[g]] = g
    out = np.empty((n, C), pix.dtype)
    for p in range(n):
        g = gid[_find(uf, prep[p])]
        for ch in range(C):
            out[p, ch] = Y[g, ch]
    return out


@numba.njit(cache=True, nogil=True)
def fuse(pix, h, w, lam, max_loop, gamma, max_rounds, n_strips, k0):
    """One (h·w, C) float64 image on one core: strips one after another, then the global phase."""
    prep = np.arange(pix.shape[0], dtype=np.int32)
    if n_strips > 1:
        for s in range(n_strips):
            y0, y1 = _strip_bounds(h, n_strips, s)
            _strip(pix, w, y0, y1, k0, lam, max_loop, gamma, max_rounds, prep)
    return _finish(pix, h, w, prep, lam, max_loop, gamma, max_rounds, k0)


@numba.njit(cache=True, nogil=True, parallel=True)
def fuse_parallel(pix, h, w, lam, max_loop, gamma, max_rounds, n_strips, k0):
    """:func:`fuse` on each of the (b, h·w, C) images, on all CPU cores: first every
    (image, strip) pair side by side, then the images' global phases side by side.

    Images share no edges, so solving them one by one gives what one joint graph
    gives, and the strips of an image are independent until the global phase.
    """
    b = pix.shape[0]
    prep = np.empty((b, h * w), np.int32)
    for i in numba.prange(b):
        for p in range(h * w):
            prep[i, p] = p
    if n_strips > 1:
        for job in numba.prange(b * n_strips):
            i = job // n_strips
            y0, y1 = _strip_bounds(h, n_strips, job % n_strips)
            _strip(pix[i], w, y0, y1, k0, lam, max_loop, gamma, max_rounds, prep[i])
    out = np.empty_like(pix)
    for i in numba.prange(b):
        out[i] = _finish(pix[i], h, w, prep[i], lam, max_loop, gamma, max_rounds, k0)
    return out
