"""Region Fusion, sequential (Nguyen & Brown, ICCV 2015): the reference ℓ0 solver.

Groups start as pixels; at each threshold of the schedule (:mod:`.rules`) every
group in turn absorbs each neighbour whose merge cost is below the threshold
times their shared edges, greedily, one after another. Neighbour lists live in
one flat pool (:func:`_push`).
"""

from __future__ import annotations

import numba
import numpy as np

from .rules import nb_threshold

__all__ = ["region_fusion"]


@numba.njit(cache=True, nogil=True)
def _push(nb, cnt, start, size, cap, pool_end, g, other, count):
    """Append ``(other, count)`` to group ``g``'s neighbour list.

    Lists live in one flat pool; a full list moves to a block twice its size at
    the pool's end, and a full pool is compacted into a larger one.
    Returns the (possibly new) pool arrays and pool end.
    """
    if size[g] == cap[g]:
        new_cap = max(2 * cap[g], 4)
        if pool_end + new_cap > nb.shape[0]:
            # Compact: copy every non-empty list into a fresh pool, each with room
            # to double, so compactions stay rare (each one visits every group).
            used = 0
            for h in range(start.shape[0]):
                used += size[h]
            new_len = 4 * used + 2 * new_cap + 1024
            nb2 = np.empty(new_len, nb.dtype)
            cnt2 = np.empty(new_len, cnt.dtype)
            end = 0
            for h in range(start.shape[0]):
                if size[h] == 0 and h != g:
                    cap[h] = 0
                    start[h] = 0
                    continue
                s = start[h]
                for q in range(size[h]):
                    nb2[end + q] = nb[s + q]
                    cnt2[end + q] = cnt[s + q]
                start[h] = end
                cap[h] = new_cap if h == g else 2 * size[h]
                end += cap[h]
            nb, cnt, pool_end = nb2, cnt2, end
        else:
            s = start[g]
            for q in range(size[g]):
                nb[pool_end + q] = nb[s + q]
                cnt[pool_end + q] = cnt[s + q]
            start[g] = pool_end
            cap[g] = new_cap
            pool_end += new_cap
    nb[start[g] + size[g]] = other
    cnt[start[g] + size[g]] = count
    size[g] += 1
    return nb, cnt, pool_end


@numba.njit(cache=True, nogil=True)
def _grid_lists(H, W):
    """Each pixel's 4-neighbour list (right, down, left, up; one shared edge each) in a fresh pool."""
    n = H * W
    cap0 = 4
    nb = np.empty(n * cap0, np.int32)
    cnt = np.empty(n * cap0, np.int32)
    start = np.arange(n) * cap0
    size = np.zeros(n, np.int64)
    cap = np.full(n, cap0, np.int64)
    for y in range(H):
        for x in range(W):
            p = y * W + x
            s = start[p]
            k = 0
            if x + 1 < W:
                nb[s + k] = p + 1
                cnt[s + k] = 1
                k += 1
            if y + 1 < H:
                nb[s + k] = p + W
                cnt[s + k] = 1
                k += 1
            if x > 0:
                nb[s + k] = p - 1
                cnt[s + k] = 1
                k += 1
            if y > 0:
                nb[s + k] = p - W
                cnt[s + k] = 1
                k += 1
            size[p] = k
    return nb, cnt, start, size, cap, n * cap0


@numba.njit(cache=True, nogil=True, inline="always")
def _absorb(i, j, q, Y, sumY, w, parent, nb, cnt, start, size, cap, pool_end, slot):
    """Merge group j (entry ``q`` of i's list) into i: statistics, then j's neighbours move to i.

    Returns the (possibly moved) pool arrays and pool end.
    """
    C = Y.shape[1]
    s = start[i]
    w[i] = w[i] + w[j]
    for b in range(C):
        sumY[i, b] += sumY[j, b]
        Y[i, b] = sumY[i, b] / w[i]
    w[j] = 0
    parent[j] = i
    last = size[i] - 1
    if q != last:
        nb[s + q] = nb[s + last]
        cnt[s + q] = cnt[s + last]
        slot[nb[s + q]] = q
    size[i] = last
    slot[j] = -1
    for t in range(size[j]):
        # start[j] is re-read: a pool compaction in _push moves every list.
        a = nb[start[j] + t]
        la = cnt[start[j] + t]
        if a == i:
            continue
        sa = start[a]
        f = slot[a]
        if f >= 0:
            # Common neighbour: add the shared edges, drop j from a's list.
            total = cnt[start[i] + f] + la
            cnt[start[i] + f] = total
            pos_j = -1
            for r in range(size[a]):
                other = nb[sa + r]
                if other == i:
                    cnt[sa + r] = total
                elif other == j:
                    pos_j = r
            la_last = size[a] - 1
            nb[sa + pos_j] = nb[sa + la_last]
            cnt[sa + pos_j] = cnt[sa + la_last]
            size[a] = la_last
        else:
            nb, cnt, pool_end = _push(nb, cnt, start, size, cap, pool_end, i, a, la)
            slot[a] = size[i] - 1
            sa = start[a]
            for r in range(size[a]):
                if nb[sa + r] == j:
                    nb[sa + r] = i
                    break
    size[j] = 0
    return nb, cnt, pool_end


@numba.njit(cache=True, nogil=True)
def _paint(parent, Y, H, W):
    """Each pixel coloured with the mean of its group's root, with path compression."""
    n, C = Y.shape
    out = np.empty((n, C), np.float64)
    for p in range(n):
        r = p
        while parent[r] != r:
            r = parent[r]
        q = p
        while parent[q] != r and q != r:  # path compression
            nxt = parent[q]
            parent[q] = r
            q = nxt
        for b in range(C):
            out[p, b] = Y[r, b]
    return out.reshape(H, W, C)


@numba.njit(cache=True, nogil=True)
def _region_fusion_kernel(img, lam, max_loop, gamma):
    """Region Fusion (Nguyen & Brown 2015) on ``img`` of shape (H, W, C), float64."""
    H, W, C = img.shape
    n = H * W
    flat = img.reshape(n, C)
    sumY = flat.copy()
    Y = flat.copy()
    w = np.ones(n, np.int64)
    parent = np.arange(n)
    nb, cnt, start, size, cap, pool_end = _grid_lists(H, W)
    slot = np.full(n, -1, np.int64)  # position of a group in the current group's list
    # Smallest threshold at which group i merges with a neighbour, as of its last
    # scan; 0 = unknown. Skipping groups with need > thresh changes no result.
    need = np.zeros(n, np.float64)
    live = np.arange(n)
    n_live = n
    for it in range(max_loop + 1):
        if n_live <= 1:
            break
        thresh = nb_threshold(lam, it, max_loop, gamma)
        for idx in range(n_live):
            i = live[idx]
            if w[i] == 0 or need[i] > thresh:
                continue  # merged earlier in this pass, or nothing can merge yet
            marked = False  # slots are filled on the first merge: most scans merge nothing
            lowest = np.inf
            n_fixed = size[i]  # neighbours gained by merging wait for the next pass
            q = 0
            while q < n_fixed:
                s = start[i]
                j = nb[s + q]
                c = cnt[s + q]
                d = 0.0
                for b in range(C):
                    t = Y[i, b] - Y[j, b]
                    d += t * t
                wi = w[i]
                wj = w[j]
                if d * wi * wj > thresh * c * (wi + wj):
                    ratio = d * wi * wj / (c * (wi + wj))
                    if ratio < lowest:
                        lowest = ratio
                    q += 1
                    continue
                if not marked:
                    for r in range(size[i]):
                        slot[nb[s + r]] = r
                    marked = True
                # Merge j into i: the data cost of merging is below the ℓ0 saving.
                if size[i] - 1 < n_fixed:  # j leaves i's list (its neighbours join at the end, for the next pass)
                    n_fixed = size[i] - 1
                nb, cnt, pool_end = _absorb(i, j, q, Y, sumY, w, parent, nb, cnt, start, size, cap, pool_end, slot)
                # q is not advanced: the entry swapped into slot q is checked next.
            if marked:
                # i changed: its own and its neighbours' cached thresholds are stale.
                need[i] = 0.0
                s = start[i]
                for q in range(size[i]):
                    slot[nb[s + q]] = -1
                    need[nb[s + q]] = 0.0
            else:
                need[i] = lowest
        k = 0
        for idx in range(n_live):
            if w[live[idx]] > 0:
                live[k] = live[idx]
                k += 1
        n_live = k
    return _paint(parent, Y, H, W)


def region_fusion(
    image: np.ndarray, lam: float, *, max_loop: int = 100, gamma: float = 2.2
) -> np.ndarray:
    """ℓ0 gradient smoothing by Region Fusion (Nguyen & Brown, ICCV 2015).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Float image on the [0, 1] scale.
    lam : float
        Weight of the ℓ0 term: cost of one 4-neighbour pair that differs.
    max_loop : int
        Number of passes ``K`` of the growing threshold.
    gamma : float
        Threshold schedule ``beta_k = (k / K) ** gamma * lam``; the paper uses
        2.2, the authors' released code 1.

    Returns
    -------
    ndarray
        Piecewise-constant float64 image of ``image``'s shape.
    """
    img = np.asarray(image, dtype=np.float64)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[..., None]
    out = _region_fusion_kernel(np.ascontiguousarray(img), float(lam), int(max_loop), float(gamma))
    return out[..., 0] if squeeze else out
