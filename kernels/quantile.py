"""Rolling median and quantiles by sample count.

Short windows (up to ``_SORTED_UP_TO`` samples) keep the valid samples in one
sorted array: see ``_move_quantile_sorted``. Longer ones, in O(n log w): two
8-ary indexed heaps hold the valid samples of the window: ``lo`` the
smallest ones (a max-heap, stored negated as a min-heap) and ``hi`` the
rest. In a window with a result ``lo`` holds exactly
``floor(q * (count - 1)) + 1`` samples, so its top and ``hi``'s top are the
two order statistics the quantile interpolates between; windows without a
result leave the sizes as they fall. Each window slot knows its heap and
position, so the entering sample takes the leaving one's node in
O(log w), as in bottleneck's double heap.

Distribution kind: **window**, like :mod:`kernels.rolling`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._wrap import JIT_OPTIONS, apply_last_axis, as_float_array, check_window
from .distribution import Window, distributed
from .parallel import Scratch
from .rolling import block_of

_NONE = -1
# windows up to this many samples use the sorted-array loop, longer ones the heaps
_SORTED_UP_TO = 192


# The heaps are 8-ary, as bottleneck's: a node's children are 8 neighbours
# in memory, and a window of 512 samples is 3 levels deep instead of 9. The
# sifts carry the moving node in registers and shift the others into the
# hole it leaves, writing it once at its final place.
_ARITY = 8


@njit(inline="always")
def _shift(kh, sh, pos, hole, src):
    """Move the node at `src` into the hole at `hole` (kh, sh: one heap's
    keys and slots)."""
    kh[hole] = kh[src]
    moved = sh[src]
    sh[hole] = moved
    pos[moved] = hole


@njit(inline="always")
def _sift_up(kh, sh, pos, i):
    k = kh[i]
    s = sh[i]
    while i > 0:
        parent = (i - 1) // _ARITY
        if not k < kh[parent]:
            break
        _shift(kh, sh, pos, i, parent)
        i = parent
    kh[i] = k
    sh[i] = s
    pos[s] = i


@njit(inline="always")
def _sift_down(kh, sh, pos, n, i):
    k = kh[i]
    s = sh[i]
    while True:
        first = _ARITY * i + 1
        if first >= n:
            break
        # the smallest child, with selects instead of branches; a full
        # family has a fixed count, which the compiler unrolls (measured: 5%
        # faster than one loop to min(first + _ARITY, n))
        child = first
        below = kh[first]
        if first + _ARITY <= n:
            for c in range(first + 1, first + _ARITY):
                smaller = kh[c] < below
                child = c if smaller else child
                below = kh[c] if smaller else below
        else:
            for c in range(first + 1, n):
                smaller = kh[c] < below
                child = c if smaller else child
                below = kh[c] if smaller else below
        if not below < k:
            break
        _shift(kh, sh, pos, i, child)
        i = child
    kh[i] = k
    sh[i] = s
    pos[s] = i


# Pushes, removals and moves across (a NaN entering or leaving) are compiled
# as calls, not inlined: inlined, their code made the replacing path that
# runs for almost every sample 1.8x slower, though they run for one in 20.
@njit(**JIT_OPTIONS)
def _push(key, slot, pos, heap_of, size, h, k, s):
    i = size[h]
    key[h, i] = k
    slot[h, i] = s
    pos[s] = i
    heap_of[s] = h
    size[h] += 1
    _sift_up(key[h], slot[h], pos, i)


@njit(**JIT_OPTIONS)
def _remove(key, slot, pos, heap_of, size, s):
    h = heap_of[s]
    i = pos[s]
    last = size[h] - 1
    size[h] = last
    heap_of[s] = _NONE
    if i != last:
        key[h, i] = key[h, last]
        slot[h, i] = slot[h, last]
        pos[slot[h, i]] = i
        _sift_up(key[h], slot[h], pos, i)
        _sift_down(key[h], slot[h], pos, size[h], pos[slot[h, i]])


@njit(**JIT_OPTIONS)
def _move_top(key, slot, pos, heap_of, size, src):
    # the top of heap src changes sides; keys are negated in lo (heap 0)
    s = slot[src, 0]
    k = -key[src, 0]
    _remove(key, slot, pos, heap_of, size, s)
    _push(key, slot, pos, heap_of, size, 1 - src, k, s)


@njit(inline="always")
def _replace(key, slot, pos, heap_of, size, s, v):
    # the leaving sample's node takes the entering value (bottleneck's way:
    # one sift instead of a removal, a push and a move across), up if it
    # beats its parent, else down
    h = heap_of[s]
    i = pos[s]
    kh = key[h]
    sh = slot[h]
    k = -v if h == 0 else v
    kh[i] = k
    if i > 0 and k < kh[(i - 1) // _ARITY]:
        _sift_up(kh, sh, pos, i)
    else:
        _sift_down(kh, sh, pos, size[h], i)
    if pos[s] == 0 and size[0] > 0 and size[1] > 0 and -key[0, 0] > key[1, 0]:
        # only a new top can be on the wrong side: the two tops trade
        # places, which restores "every value in lo <= every value in hi"
        s0 = slot[0, 0]
        s1 = slot[1, 0]
        k0 = -key[0, 0]
        key[0, 0] = -key[1, 0]
        slot[0, 0] = s1
        heap_of[s1] = 0
        key[1, 0] = k0
        slot[1, 0] = s0
        heap_of[s0] = 1
        pos[s0] = 0
        pos[s1] = 0
        _sift_down(key[0], slot[0], pos, size[0], 0)
        _sift_down(key[1], slot[1], pos, size[1], 0)


@njit(**JIT_OPTIONS)
def _move_quantile(a, window, min_count, q, key, slot, pos, heap_of, size, out):
    for r in range(a.shape[0]):
        x = a[r]
        size[0] = 0
        size[1] = 0
        heap_of[:] = _NONE
        count = 0
        s = -1
        for i in range(x.shape[0]):
            # the entering sample takes the leaving one's slot, i % window
            s = s + 1 if s + 1 < window else 0
            v = x[i]
            if heap_of[s] != _NONE:
                if v == v:
                    _replace(key, slot, pos, heap_of, size, s, v)
                else:
                    _remove(key, slot, pos, heap_of, size, s)
                    count -= 1
            elif v == v:
                if size[0] > 0 and v <= -key[0, 0]:
                    _push(key, slot, pos, heap_of, size, 0, -v, s)
                else:
                    _push(key, slot, pos, heap_of, size, 1, v, s)
                count += 1
            if count < min_count or count == 0:
                # no result: the heaps need not be balanced (every value in
                # lo is still <= every value in hi); the next result moves
                # the tops across, at most one move per sample pushed since
                out[r, i] = np.nan
                continue
            h = q * (count - 1)
            below = int(math.floor(h))
            target = below + 1  # samples that belong in lo
            while size[0] > target:
                _move_top(key, slot, pos, heap_of, size, 0)
            while size[0] < target:
                _move_top(key, slot, pos, heap_of, size, 1)
            low = -key[0, 0]
            out[r, i] = _between(low, key[1, 0], h - below, size[1] > 0)


@njit(inline="always")
def _between(low, high, frac, has_high):
    """Linear interpolation from the order statistic ``low`` towards ``high``."""
    if frac == 0.0 or not has_high or high == low:
        return low
    if frac == 0.5:
        return 0.5 * (low + high)  # the median of numpy and bottleneck
    if low - low != 0.0 or high - high != 0.0:
        # an infinite end dominates (-inf and +inf give nan)
        return (1.0 - frac) * low + frac * high
    return low + frac * (high - low)


@njit(**JIT_OPTIONS)
def _move_quantile_sorted(a, window, min_count, q, out):
    # For windows up to _SORTED_UP_TO samples: the valid samples of the window
    # kept sorted in one array. A sample that replaces a leaving one slides
    # from the leaving one's place (found by bisection) to its own, moving the
    # values in between by one; that is O(window) per sample in the worst
    # case, but a short, predictable loop over a few cache lines, where the
    # two heaps pay for scattered indirect accesses. Above the threshold
    # the heaps' O(log window) wins.
    n_time = a.shape[1]
    buf = np.empty(window)
    pad = np.empty(window, dtype=a.dtype)
    pad[:] = np.nan
    for r in range(a.shape[0]):
        x = a[r]
        o = out[r]
        m = 0
        start = 0
        while start < n_time:
            # the first window, whose leaving samples are NaN, then the rest
            stop, leaving = block_of(x, pad, start, window, n_time)
            xb = x[start:stop]
            ob = o[start:stop]
            for j in range(stop - start):
                u = leaving[j]
                v = xb[j]
                if u == u:
                    # the leaving value's place: the number of values below
                    # it, counted without a branch (a loop the compiler runs
                    # on vector units; a bisection's dependent loads and
                    # unpredictable branches cost several times more here)
                    p = 0
                    for t in range(m):
                        p += buf[t] < u
                    if v == v:
                        if v > u:
                            while p + 1 < m and buf[p + 1] < v:
                                buf[p] = buf[p + 1]
                                p += 1
                        else:
                            while p > 0 and buf[p - 1] > v:
                                buf[p] = buf[p - 1]
                                p -= 1
                        buf[p] = v
                    else:
                        for t in range(p, m - 1):
                            buf[t] = buf[t + 1]
                        m -= 1
                elif v == v:
                    p = m
                    while p > 0 and buf[p - 1] > v:
                        buf[p] = buf[p - 1]
                        p -= 1
                    buf[p] = v
                    m += 1
                if m < min_count or m == 0:
                    ob[j] = np.nan
                else:
                    h = q * (m - 1)
                    below = int(math.floor(h))
                    has_high = below + 1 < m
                    ob[j] = _between(buf[below], buf[below + 1] if has_high else np.nan,
                                     h - below, has_high)
            start = stop


@distributed(Window(before="window", before_add=-1))
def move_quantile(a, window: int, q: float, min_count: int | None = None, axis: int = -1):
    """The ``q`` quantile over a trailing window of ``window`` samples, ignoring NaN.

    Linear interpolation between the two nearest order statistics, as
    :func:`numpy.quantile` and pandas do; when one of the two is infinite the
    result is that infinity (NaN between -inf and +inf).

    Windows of up to 192 samples keep the window's values in one sorted
    array (O(window) per sample, but short loops over a few cache lines);
    longer windows use two indexed heaps, O(n log window).

    Parameters
    ----------
    a : array_like
        Values; NaN means missing.
    window : int
        Samples in the window.
    q : float
        The quantile, in [0, 1].
    min_count : int, optional
        Fewest valid samples for a result; default ``window``.
    axis : int
        The time axis.

    Examples
    --------
    >>> move_quantile([1.0, 5.0, 2.0, 4.0, 3.0], window=3, q=0.25)
    array([nan, nan, 1.5, 3. , 2.5])
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be between 0 and 1, got q={q!r}")
    arr = as_float_array(a)
    window, min_count = check_window(window, min_count)
    if window <= _SORTED_UP_TO:
        return apply_last_axis(_move_quantile_sorted, arr, axis, np.int64(window),
                               np.int64(min_count), float(q))
    key = np.empty((2, window))
    slot = np.empty((2, window), dtype=np.int64)
    pos = np.empty(window, dtype=np.int64)
    heap_of = np.empty(window, dtype=np.int64)
    size = np.zeros(2, dtype=np.int64)
    return apply_last_axis(_move_quantile, arr, axis, np.int64(window), np.int64(min_count),
                           float(q), Scratch(key), Scratch(slot), Scratch(pos),
                           Scratch(heap_of), Scratch(size))


@distributed(Window(before="window", before_add=-1))
def move_median(a, window: int, min_count: int | None = None, axis: int = -1):
    """Median over a trailing window of ``window`` samples, ignoring NaN.

    :func:`move_quantile` with ``q=0.5``.

    Examples
    --------
    >>> move_median([1.0, 5.0, np.nan, 4.0, 3.0], window=3, min_count=1)
    array([1. , 3. , 3. , 4.5, 3.5])
    """
    return move_quantile(a, window, 0.5, min_count, axis)
