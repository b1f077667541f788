"""Trailing-window statistics by sample count.

sum, mean, var, std, z-score, min, max and count.

Distribution kind over chunks of the time axis: **window** -- a result at
sample ``t`` needs the samples ``t - window + 1 .. t`` (the z-score also
needs ``t - window``), so a chunk needs an overlap of ``window`` samples from
its predecessor.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._wrap import (
    JIT_OPTIONS,
    apply_last_axis,
    as_float_array,
    as_series,
    check_window,
    from_series,
)
from .distribution import Window, distributed
from .parallel import Rows, run_rows

# statistic codes of the moments loops (_make_moments)
_SUM, _MEAN, _VAR, _STD, _ZSCORE = 0, 1, 2, 3, 4

# The shifted sums are rebuilt from the window's values every
# max(window, _REBUILD_EVERY) samples. Rebuilding costs `window` additions, so
# rebuilding every `window` samples doubled the work; between rebuilds the
# rounding of adding and removing grows only like sqrt(steps) * eps.
_REBUILD_EVERY = 1024
# (window mean - k)**2 / variance above which the sums are rebuilt early: the
# relative error of the variance grows like eps times this ratio
_CANCELLATION = 1e6


@njit(inline="always")
def first_finite(x):
    """The first finite value of a series (0.0 when it has none): the first
    shift of the shifted sums."""
    for j in range(x.shape[0]):
        if x[j] - x[j] == 0.0:
            return x[j]
    return 0.0


@njit(inline="always")
def block_of(x, pad, start, window, length):
    """End and leaving samples of the block of a series that starts at `start`.

    The first window is one block, whose leaving samples come from `pad` (all
    NaN, `window` long); after it, blocks of up to `length` samples leave the
    samples `window` before them. Loops over such a block index slices from
    0, so the compiled loop carries no negative-index handling.
    """
    if start >= window:
        stop = min(start + length, x.shape[0])
        return stop, x[start - window:stop - window]
    stop = min(window, x.shape[0])
    return stop, pad[start:stop]


@njit(inline="always")
def _statistic(stat, n, s1, s2, k, min_count, ddof, pos_inf, neg_inf, constant,
               last_valid):
    """One statistic of a window from its shifted sums (see _make_moments)."""
    n_inf = pos_inf + neg_inf
    count = n + n_inf
    if count < min_count:
        return np.nan
    if stat == _SUM or stat == _MEAN:
        if pos_inf and neg_inf:
            return np.nan
        if pos_inf:
            return np.inf
        if neg_inf:
            return -np.inf
        if constant:
            return last_valid if stat == _MEAN else last_valid * n
        return k + s1 / n if stat == _MEAN else k * n + s1
    if n_inf or count - ddof <= 0:
        return np.nan
    if constant:
        return 0.0
    # rounding can leave the difference a hair below zero
    var = max(s2 - s1 * s1 / n, 0.0) / (n - ddof)
    return np.sqrt(var) if stat == _STD else var


@njit(inline="always")
def _enter(v, k, n, s1, s2, n_pos, n_neg):
    """Add ``v`` to a window's sums shifted by ``k``; infinities are counted
    aside, never put into the sums (``v - v == 0`` tells a finite v in one test)."""
    if v - v == 0.0:
        d = v - k
        return n + 1, s1 + d, s2 + d * d, n_pos, n_neg
    if v == v:
        if v > 0:
            return n, s1, s2, n_pos + 1, n_neg
        return n, s1, s2, n_pos, n_neg + 1
    return n, s1, s2, n_pos, n_neg


@njit(inline="always")
def _leave(u, k, n, s1, s2, n_pos, n_neg):
    """Remove ``u`` from the shifted sums (the inverse of :func:`_enter`)."""
    if u - u == 0.0:
        d = u - k
        n -= 1
        if n == 0:  # an empty window forgets its rounding residue
            return 0, 0.0, 0.0, n_pos, n_neg
        return n, s1 - d, s2 - d * d, n_pos, n_neg
    if u == u:
        if u > 0:
            return n, s1, s2, n_pos - 1, n_neg
        return n, s1, s2, n_pos, n_neg - 1
    return n, s1, s2, n_pos, n_neg


@njit(inline="always")
def _track_run(v, i, last_change, run, last_valid):
    """The newest run of equal valid samples: where it started and its length."""
    if v == v:
        if v != last_valid:
            last_change = i
            run = 0
        run += 1
        last_valid = v
    return last_change, run, last_valid


@njit(inline="always")
def _needs_rebuild(n, s1, s2):
    """Whether the window mean moved more than 1000 standard deviations from
    the shift: the variance would then lose digits to cancellation (s2 and
    s1**2/n nearly equal). (mean - k)**2 > C * var, multiplied out: no
    division per step."""
    return n > 1 and s1 * s1 * (1.0 + _CANCELLATION) > _CANCELLATION * n * s2


@njit(inline="always")
def _rebuild(x, lo, hi, n, k, s1, s2):
    """Re-shift the sums at the window mean and add ``x[lo:hi]`` up afresh, so
    the rounding of adding and removing never accumulates for long."""
    if n == 0:
        return k, s1, s2
    k = k + s1 / n
    s1 = 0.0
    s2 = 0.0
    for j in range(lo, hi):
        u = x[j]
        if u - u == 0.0:
            d = u - k
            s1 += d
            s2 += d * d
    return k, s1, s2


def _make_moments(stat):
    # One compiled loop per statistic: `stat` is a constant of the closure, so
    # the branches of the other statistics (and the squared sums of a mean)
    # compile away. Numba keys its cache on closure values: each loop caches
    # apart.
    @njit(**JIT_OPTIONS)
    def _move_moments(a, window, min_count, ddof, out):
        every = max(window, _REBUILD_EVERY)
        for r in range(a.shape[0]):
            x = a[r]
            # Sums of (x - k) and (x - k)**2 over the window, shifted by k (the
            # first finite sample, later a recent window mean): 1e5 + noise keeps
            # its digits because x - k is small, and exact when x and k are close.
            # Every `every` samples the sums are rebuilt from the window's values
            # around a fresh k, so the rounding of adding and removing never
            # accumulates for long.
            k = first_finite(x)
            n = 0
            s1 = 0.0
            s2 = 0.0
            n_pos = 0  # infinities are counted aside, never put into the sums
            n_neg = 0
            # The newest run of equal valid samples starts at last_change and has
            # `run` valid samples. When it started before the window, or when all
            # valid samples of the window belong to it, they all equal last_valid
            # and mean and var are exact.
            last_change = 0
            run = 0
            last_valid = np.nan
            next_rebuild = every
            for i in range(x.shape[0]):
                v = x[i]
                if stat == _ZSCORE:
                    # z[i] compares x[i] with the window before it, the state the
                    # previous step left
                    constant = last_change <= i - window or run == n
                    if n_pos + n_neg or n < min_count or n <= ddof:
                        out[r, i] = np.nan
                    elif constant:
                        out[r, i] = (v - last_valid) / 0.0
                    else:
                        # (v - k) first: forming the mean near a large offset would
                        # round away the digits of a small deviation
                        std = np.sqrt(max(s2 - s1 * s1 / n, 0.0) / (n - ddof))
                        out[r, i] = ((v - k) - s1 / n) / std
                n, s1, s2, n_pos, n_neg = _enter(v, k, n, s1, s2, n_pos, n_neg)
                last_change, run, last_valid = _track_run(v, i, last_change, run, last_valid)
                if i >= window:  # the sample leaving
                    n, s1, s2, n_pos, n_neg = _leave(x[i - window], k, n, s1, s2, n_pos, n_neg)
                constant = last_change <= i - window + 1 or run == n
                # rebuild on schedule, or at once when cancellation threatens
                if i == next_rebuild or (stat != _SUM and stat != _MEAN and not constant
                                         and _needs_rebuild(n, s1, s2)):
                    next_rebuild = i + every
                    k, s1, s2 = _rebuild(x, i - window + 1, i + 1, n, k, s1, s2)
                if stat != _ZSCORE:
                    if n >= min_count and n_pos + n_neg == 0 and not constant and n > ddof:
                        # the common case in one test; _statistic sorts out the rest
                        if stat == _MEAN:
                            out[r, i] = k + s1 / n
                        elif stat == _SUM:
                            out[r, i] = k * n + s1
                        else:
                            var = max(s2 - s1 * s1 / n, 0.0) / (n - ddof)
                            out[r, i] = np.sqrt(var) if stat == _STD else var
                    else:
                        out[r, i] = _statistic(stat, n, s1, s2, k, min_count, ddof, n_pos,
                                               n_neg, constant, last_valid)

    return _move_moments


_MOMENTS = {stat: _make_moments(stat) for stat in (_SUM, _MEAN, _VAR, _STD, _ZSCORE)}


@njit(**JIT_OPTIONS)
def _recentre(x, i, window, n, k, s1, s2):
    """Shift sums of the window ending at ``i`` about a new k, their mean.

    Also returns the largest squared deviation from the new k in the window.
    """
    k = k + s1 / n
    s1 = 0.0
    s2 = 0.0
    largest = 0.0
    for j in range(max(i - window + 1, 0), i + 1):
        u = x[j]
        if u == u:
            d = u - k
            s1 += d
            s2 += d * d
            largest = max(largest, d * d)
    return k, s1, s2, largest


@njit(**JIT_OPTIONS)
def _redo_block(x, xb, xl, ob, start, window, k, state, inv, inv_res, inv_dof):
    """Redo a block of the lean var/std loop sample by sample from the state
    before it, recentring the sums at every window with a result whose
    variance would lose digits. (Apart from the lean loop: a loop that can
    change k within a block made the lean one about 1.6x slower.)"""
    n, s1, s2, run, last_valid, largest = state
    for j in range(xb.shape[0]):
        v = xb[j]
        u = xl[j]
        d = v - k if v == v else 0.0
        e = u - k if u == u else 0.0
        n += np.int64(v == v) - np.int64(u == u)
        s1 += d - e
        s2 += d * d - e * e
        largest = max(largest, d * d)
        changed = (v < last_valid) | (v > last_valid)
        run = 1 if changed else run + (v == v)
        last_valid = v if changed else last_valid
        centred = s2 - s1 * s1 * inv[n]
        if run < n and _CANCELLATION * centred * inv_res[n] < largest:
            k, s1, s2, largest = _recentre(x, start + j, window, n, k, s1, s2)
            centred = s2 - s1 * s1 * inv[n]
        ob[j] = 0.0 * inv_dof[n] if run >= n else max(centred, 0.0) * inv_dof[n]
    return n, s1, s2, run, last_valid, largest, k


@njit(inline="always")
def _deviations(v, u, k):
    """The entering and leaving samples' deviations from the shift k (NaN: 0),
    and the entering one squared."""
    d = v - k if v == v else 0.0
    e = u - k if u == u else 0.0
    return d, e, d * d


@njit(inline="always")
def _may_hold_equal_window(x, lo, stop, half):
    """Whether a window of ``2 * half`` samples or more inside ``x[lo:stop]``
    may have all its valid samples equal.

    Such a window holds a whole stretch ``x[q * half:(q + 1) * half]`` (its
    first aligned start is at most ``half - 1`` in, and ends at most
    ``2 * half - 2`` in), and no two neighbours in that stretch are valid and
    different. So when every such stretch in ``x[lo:stop]`` holds two valid
    different neighbours, no window can: False. The scan of a stretch stops at
    its first such pair, at once on most data. True (the caller takes the
    careful way) when ``half < 2``.
    """
    if half < 2:
        return True
    s = (lo + half - 1) // half * half
    while s + half <= stop:
        j = s + 1
        while j < s + half and not ((x[j] < x[j - 1]) | (x[j] > x[j - 1])):
            j += 1
        if j == s + half:
            return True
        s += half
    return False


def _make_fast_moments(stat):
    # The loop for the sum and the mean of a series without infinities. It
    # is lean because everything the careful loop (_make_moments) tracks per
    # sample is either cheap here or caught afterwards:
    # - Each block of the series is walked twice. The first pass forms every
    #   sample's increments of the sum (entering minus leaving, NaN as 0)
    #   with no carried state, so the compiler runs it on vector registers;
    #   the second carries the sums and writes the results. The second pass
    #   then does only what depends on the samples before.
    # - An infinity is NOT left out, so it turns the sums into inf or NaN,
    #   where they stay until the next rebuild. The sums are checked before
    #   every rebuild and at the end; a series whose sums went non-finite is
    #   marked in `bad` and redone by the careful loop (sums that overflow
    #   land there too).
    # - A window whose valid samples are all equal (or that holds one) must
    #   give that value exactly, which the sums do not promise. The careful
    #   second pass knows such windows from `run`, the valid samples since
    #   the newest change of value: when they are at least the window's
    #   valid samples, every valid sample in it is equal. Tracking `run`
    #   costs 15% of the loop, so a block takes the careful pass only when
    #   it may hold such a window (_may_hold_equal_window, a scan that stops
    #   at the first two different neighbours) and the lean pass, sums
    #   alone, otherwise. Both give the same results bit for bit: they
    #   differ only where a window is constant.
    # - Too few samples give NaN through tables by count (1/n and 1 are NaN
    #   below min_count), so the results are selected, not branched to.
    # - The sums are rebuilt around a fresh k every `every` samples.
    # - The counts are unsigned (a change of -1 wraps around), which spares
    #   every table lookup by count the negative-index fix-up.
    # - The samples leaving the first window come from a slice of NaN
    #   (block_of), so one loop body serves and slices index from 0.
    @njit(**JIT_OPTIONS)
    def _fast_moments(a, window, min_count, ddof, out, bad):
        n_time = a.shape[1]
        every = max(window, _REBUILD_EVERY)
        pad = np.empty(window, dtype=a.dtype)
        pad[:] = np.nan
        # tables by count: a multiplication instead of a division per sample,
        # NaN below min_count
        inv_res = np.empty(window + 1)
        one = np.empty(window + 1)
        count = np.empty(window + 1)
        for c in range(window + 1):
            due = c >= min_count
            inv_res[c] = 1.0 / c if due else np.nan
            one[c] = 1.0 if due else np.nan
            count[c] = c if due else np.nan
        half = window // 2  # the stretches _may_hold_equal_window looks at
        inc = np.empty(every)  # increments of s1 (entering minus leaving)
        dcount = np.empty(every, dtype=np.uint64)  # changes of n, modulo 2**64
        for r in range(a.shape[0]):
            x = a[r]
            o = out[r]
            k = first_finite(x)
            n = np.uint64(0)
            s1 = 0.0
            start = 0
            while start < n_time:
                if s1 - s1 != 0.0:
                    break  # an infinity: the careful loop takes over
                if start >= window and n > 0:
                    k, s1, _, _ = _recentre(x, start - 1, window, n, k, s1, 0.0)
                stop, xl = block_of(x, pad, start, window, every)
                xb = x[start:stop]
                ob = o[start:stop]
                m = stop - start
                # first pass: increments, no carried state
                for j in range(m):
                    v = xb[j]
                    u = xl[j]
                    d, e, _ = _deviations(v, u, k)
                    inc[j] = d - e
                    dcount[j] = np.uint64(v == v) - np.uint64(u == u)
                # second pass: the sums and the results
                if start < window or _may_hold_equal_window(x, start + 1 - window, stop, half):
                    run_before, last_valid = _run_before(x, start, window, k)
                    run = np.uint64(run_before)
                    for j in range(m):
                        v = xb[j]
                        n += dcount[j]
                        s1 += inc[j]
                        # NaN is neither a change nor a value
                        changed = (v < last_valid) | (v > last_valid)
                        run = np.uint64(1) if changed else run + np.uint64(v == v)
                        last_valid = v if changed else last_valid
                        constant = run >= n
                        if stat == _MEAN:
                            ob[j] = last_valid * one[n] if constant else k + s1 * inv_res[n]
                        else:
                            ob[j] = last_valid * count[n] if constant else k * count[n] + s1
                else:
                    for j in range(m):
                        n += dcount[j]
                        s1 += inc[j]
                        if stat == _MEAN:
                            ob[j] = k + s1 * inv_res[n]
                        else:
                            ob[j] = k * count[n] + s1
                start = stop
            bad[r] = s1 - s1 != 0.0

    return _fast_moments


@njit(**JIT_OPTIONS)
def _run_before(x, start, window, k):
    """The careful loop's run of equal valid samples before ``start``: its
    length (counted back at most ``window`` samples, which is all a window
    ahead can hold) and its value (``k`` when there is none in reach)."""
    lo = max(start - window, 0)
    last_valid = k
    run = 0
    j = start - 1
    while j >= lo:
        if x[j] == x[j]:
            last_valid = x[j]
            break
        j -= 1
    while j >= lo:
        v = x[j]
        if v == v:
            if v != last_valid:
                break
            run += 1
        j -= 1
    return run, last_valid


def _make_fast_spread(is_std):
    # The loop for the variance and the standard deviation of a series
    # without infinities. Each block is walked three times:
    # - first, every sample's increments of the shifted sums (entering minus
    #   leaving, NaN as 0) and its squared deviation, with no carried state,
    #   so the compiler runs it on vector registers;
    # - second, the carried sums (the only serial work) and each window's
    #   variance from its count table;
    # - third, the check and the square root, on vector registers again.
    # The check asks that the window's centred sum lie far above the
    # rounding the sums may hold, eps * n * the largest squared deviation
    # added since the last rebuild (here the block's largest, which can only
    # send more blocks to the redo). It is made on the variance, with a
    # limit raised by need / (need - ddof), so that every window whose
    # centred sum fails it fails too (a few more may: they are redone
    # exactly). So the serial pass no longer forms a ratio per window, and
    # the largest squared deviation is taken on vector registers: five
    # fewer of its twenty-odd instructions per sample (0.347 -> 0.321 s for
    # the std of (200, 500000) at min_count 2, one thread, identical
    # results). A window of equal values has a centred
    # sum of rounding only, so it fails the check too (unless every value
    # in play equals the shift k, when the sums are exactly 0): a block with a failing
    # window is redone sample by sample from the state before it
    # (_redo_block), which recentres the sums where the variance would lose
    # digits and gives exactly 0 where the window is constant. Series whose
    # sums went non-finite (an infinity, an overflow) are marked in `bad`
    # for the careful loop, as in _make_fast_moments.
    # A block after one in which fewer than a quarter of the windows had a
    # result (min_count near the window, NaN about: with 5 % NaN, 95 % of
    # 60-sample windows are short of 60) is walked once instead, the result
    # computed only where it is due: the same sums and the same check, so
    # the same results bit for bit (0.33 -> 0.27 s for that case, measured).
    # The second pass is bound by how many instructions it issues, not by
    # its chains of additions, so it is kept lean: the count is unsigned
    # (its changes of -1 wrap around), which spares every table lookup the
    # negative-index fix-up, and n as a float comes from a table rather than
    # a conversion per sample (together 10% of the whole loop, measured).
    @njit(**JIT_OPTIONS)
    def _fast_spread(a, window, min_count, ddof, out, bad):
        n_time = a.shape[1]
        every = max(window, _REBUILD_EVERY)
        need = max(min_count, ddof + 1)
        need_u = np.uint64(need)  # compared with the unsigned count
        pad = np.empty(window, dtype=a.dtype)
        pad[:] = np.nan
        # tables by count, NaN below `need`: for the second pass, n as a
        # float, the variance and the check's ratio from n * the centred
        # sum; for the redo, 1/n and 1/(n - ddof)
        fcount = np.arange(window + 1).astype(np.float64)
        to_var = np.empty(window + 1)
        to_ratio = np.empty(window + 1)
        inv = np.empty(window + 1)
        inv_res = np.empty(window + 1)
        inv_dof = np.empty(window + 1)
        for c in range(window + 1):
            due = c >= need
            to_var[c] = 1.0 / (c * (c - ddof)) if due else np.nan
            to_ratio[c] = 1.0 / (c * c) if due else np.nan
            inv[c] = 1.0 / c if c > 0 else np.nan
            inv_res[c] = 1.0 / c if due else np.nan
            inv_dof[c] = 1.0 / (c - ddof) if due else np.nan
        inc = np.empty(every)  # increments of s1, then each window's variance
        inc2 = np.empty(every)  # increments of s2
        dcount = np.empty(every, dtype=np.uint64)  # changes of n, modulo 2**64
        sq = np.empty(every)  # squared deviations entering
        sq_bits = sq.view(np.int64)
        box_bits = np.zeros(1, dtype=np.int64)  # an integer read back as a float
        box = box_bits.view(np.float64)
        # (n - ddof) / n is at least (need - ddof) / need over the windows with
        # a result, so the centred sum's ratio is at least var / var_limit
        var_limit = need / (need - ddof)
        for r in range(a.shape[0]):
            x = a[r]
            o = out[r]
            k = first_finite(x)
            n = np.uint64(0)
            s1 = 0.0
            s2 = 0.0
            largest = 0.0  # the largest squared deviation added since the last rebuild
            start = 0
            due = 0  # windows with a result in the last block, of last_m
            last_m = 0
            while start < n_time:
                if s1 - s1 != 0.0 or s2 - s2 != 0.0:
                    break  # an infinity: the careful loop takes over
                if start >= window and n > 0:
                    k, s1, s2, largest = _recentre(x, start - 1, window, n, k, s1, s2)
                stop, xl = block_of(x, pad, start, window, every)
                xb = x[start:stop]
                ob = o[start:stop]
                m = stop - start
                before = (n, s1, s2, largest)
                if start >= window and 4 * due < last_m:
                    # few windows had a result in the last block: one pass,
                    # the result computed only where it is due
                    due = 0
                    least = np.inf  # the smallest ratio of a window with a result
                    for j in range(m):
                        v = xb[j]
                        u = xl[j]
                        d, e, dd = _deviations(v, u, k)
                        largest = dd if dd > largest else largest
                        n += np.uint64(v == v) - np.uint64(u == u)
                        s1 += d - e
                        s2 += dd - e * e
                        if n >= need_u:
                            centred_n = s2 * fcount[n] - s1 * s1
                            var = centred_n * to_var[n]
                            ratio = centred_n * to_ratio[n]
                            least = ratio if ratio < least else least
                            var = 0.0 if var < 0.0 else var
                            ob[j] = np.sqrt(var) if is_std else var
                            due += 1
                        else:
                            ob[j] = np.nan
                    fails = least < largest * (1.0 / _CANCELLATION)
                else:
                    for j in range(m):
                        v = xb[j]
                        u = xl[j]
                        d, e, dd = _deviations(v, u, k)
                        sq[j] = dd
                        inc[j] = d - e
                        inc2[j] = dd - e * e
                        dcount[j] = np.uint64(v == v) - np.uint64(u == u)
                    # the block's largest squared deviation: squares are >= 0
                    # (or inf), which order as their bits do, and a maximum
                    # of integers runs on vector registers
                    big = np.int64(0)
                    for j in range(m):
                        b = sq_bits[j]
                        big = b if b > big else big
                    box_bits[0] = big
                    largest = box[0] if box[0] > largest else largest
                    for j in range(m):
                        n += dcount[j]
                        s1 += inc[j]
                        s2 += inc2[j]
                        centred_n = s2 * fcount[n] - s1 * s1  # n times the centred sum
                        inc[j] = centred_n * to_var[n]
                    # the check, on the variance: (centred / n) * C < largest
                    # whenever var * C < largest * var_limit, so no window that
                    # fails it escapes; NaN (no result due) never fails
                    limit = largest * (1.0 / _CANCELLATION) * var_limit
                    fails = False
                    due = 0
                    for j in range(m):
                        fails |= inc[j] < limit
                        var = inc[j]
                        due += var == var
                        var = 0.0 if var < 0.0 else var  # rounding below 0; NaN stays
                        ob[j] = np.sqrt(var) if is_std else var
                last_m = m
                if fails:
                    run, last_valid = _run_before(x, start, window, k)
                    n0, s10, s20, largest0 = before
                    n, s1, s2, _, _, largest, k = _redo_block(
                        x, xb, xl, ob, start, window, k,
                        (np.int64(n0), s10, s20, run, last_valid, largest0), inv, inv_res, inv_dof)
                    n = np.uint64(n)
                    if is_std:
                        for j in range(m):
                            ob[j] = np.sqrt(ob[j])
                start = stop
            bad[r] = s1 - s1 != 0.0 or s2 - s2 != 0.0

    return _fast_spread


_FAST_MOMENTS = {_SUM: _make_fast_moments(_SUM), _MEAN: _make_fast_moments(_MEAN),
                 _VAR: _make_fast_spread(False), _STD: _make_fast_spread(True)}


@njit(inline="always")
def _better(is_max, a, b):
    """The larger (smaller) of a and b ignoring NaN: NaN only when both are."""
    if is_max:
        return b if (b > a) | (a != a) else a
    return b if (b < a) | (a != a) else a


def _make_extreme(is_max):
    # (The closure holds only the flag: numba keys its cache on the closure's
    # values, and a compiled helper held there missed the cache every time.)
    # van Herk / Gil-Werman: cut the series into blocks of `window` samples;
    # within each block keep the running extreme from the left (prefix, in
    # `out`) and from the right (suffix). A window ending at i covers the
    # tail of one block and the head of the next, so its extreme is that of
    # suffix[i - window + 1] and prefix[i]. Three extremes per sample,
    # whatever the window (O(n)), with no data-dependent branch -- a
    # monotone deque (bottleneck's way) mispredicts its pops.
    @njit(**JIT_OPTIONS)
    def _move_extreme(a, window, min_count, out):
        n_time = a.shape[1]
        suffix = np.empty(n_time, dtype=a.dtype)
        for r in range(a.shape[0]):
            x = a[r]
            o = out[r]
            for b0 in range(0, n_time, window):
                b1 = min(b0 + window, n_time)
                xb = x[b0:b1]
                ob = o[b0:b1]
                sb = suffix[b0:b1]
                m = xb[0]
                ob[0] = m
                for j in range(1, xb.shape[0]):
                    m = _better(is_max, m, xb[j])
                    ob[j] = m
                last = xb.shape[0] - 1
                m = xb[last]
                sb[last] = m
                for j in range(last):
                    m = _better(is_max, m, xb[last - 1 - j])
                    sb[last - 1 - j] = m
            # the first window - 1 results are prefixes of the first block
            count = 0
            for i in range(min(window - 1, n_time)):
                count += x[i] == x[i]
                if count < min_count:
                    o[i] = np.nan
            if n_time >= window:
                # slices from 0: no negative-index handling in the loop
                results = o[window - 1:]
                suffixes = suffix[:n_time - window + 1]
                entering = x[window - 1:]
                leaving = x[:n_time - window + 1]
                for j in range(results.shape[0]):
                    v = entering[j]
                    count += v == v
                    res = _better(is_max, suffixes[j], results[j])
                    results[j] = res if count >= min_count else np.nan
                    u = leaving[j]
                    count -= u == u

    return _move_extreme


_EXTREME = {is_max: _make_extreme(is_max) for is_max in (False, True)}


@njit(**JIT_OPTIONS)
def _move_count(a, window, out):
    for r in range(a.shape[0]):
        x = a[r]
        count = 0
        for i in range(x.shape[0]):
            if x[i] == x[i]:
                count += 1
            if i >= window and x[i - window] == x[i - window]:
                count -= 1
            out[r, i] = count


@distributed(Window(before="window", before_add=-1))
def move_min(a, window: int, min_count: int | None = None, axis: int = -1):
    """Minimum over a trailing window of ``window`` samples, ignoring NaN.

    O(n) whatever the window (van Herk/Gil-Werman blocks). Parameters and result as in
    :func:`move_sum`.

    Examples
    --------
    >>> move_min([3.0, 1.0, np.nan, 4.0, 2.0], window=2, min_count=1)
    array([3., 1., 1., 4., 2.])
    """
    return _extreme(a, window, min_count, axis, False)


@distributed(Window(before="window", before_add=-1))
def move_max(a, window: int, min_count: int | None = None, axis: int = -1):
    """Maximum over a trailing window of ``window`` samples, ignoring NaN.

    O(n) whatever the window (van Herk/Gil-Werman blocks). Parameters and result as in
    :func:`move_sum`.

    Examples
    --------
    >>> move_max([3.0, 1.0, np.nan, 4.0, 2.0], window=3)
    array([nan, nan, nan, nan, nan])
    >>> move_max([3.0, 1.0, np.nan, 4.0, 2.0], window=3, min_count=2)
    array([nan, 3., 3., 4., 4.])
    """
    return _extreme(a, window, min_count, axis, True)


@distributed(Window(before="window", before_add=-1))
def move_count(a, window: int, axis: int = -1):
    """Number of valid (non-NaN) samples in a trailing window of ``window`` samples.

    The result has the float dtype of ``a``, so that it lines up with the
    other moving statistics.

    Examples
    --------
    >>> move_count([1.0, np.nan, 3.0, 4.0], window=2)
    array([1., 1., 1., 2.])
    """
    arr = as_float_array(a)
    window, _ = check_window(window, None)
    return apply_last_axis(_move_count, arr, axis, np.int64(window))


def _extreme(a, window, min_count, axis, is_max):
    arr = as_float_array(a)
    window, min_count = check_window(window, min_count)
    return apply_last_axis(_EXTREME[is_max], arr, axis, np.int64(window),
                           np.int64(min_count))


def _moments(a, window, min_count, axis, stat, ddof=0):
    arr = as_float_array(a)
    window, min_count = check_window(window, min_count)
    params = (np.int64(window), np.int64(min_count), np.int64(ddof))
    if stat == _ZSCORE:
        return apply_last_axis(_MOMENTS[stat], arr, axis, *params)
    series, shape = as_series(arr, axis)
    out = np.empty(series.shape, dtype=arr.dtype)
    if series.size:
        bad = np.zeros(series.shape[0], dtype=np.bool_)
        run_rows(_FAST_MOMENTS[stat], Rows(series), *params, Rows(out), Rows(bad))
        if bad.any():
            # series with an infinity (or sums overflowing): the careful loop
            rows = np.flatnonzero(bad)
            redo = np.empty((rows.size, series.shape[1]), dtype=arr.dtype)
            run_rows(_MOMENTS[stat], Rows(series[rows]), *params, Rows(redo))
            out[rows] = redo
    return from_series(out, shape, axis)


@distributed(Window(before="window", before_add=-1))
def move_sum(a, window: int, min_count: int | None = None, axis: int = -1):
    """Sum over a trailing window of ``window`` samples, ignoring NaN.

    Parameters
    ----------
    a : array_like
        Input values; NaN means missing. float32 stays float32.
    window : int
        Number of samples in the window, ending at (and including) each sample.
    min_count : int, optional
        Fewest valid (non-NaN) samples a window needs for a result; fewer give
        NaN. Defaults to ``window``, as in pandas and bottleneck.
    axis : int
        The time axis. Default: the last.

    Returns
    -------
    numpy.ndarray
        Same shape and float dtype as ``a``.

    Examples
    --------
    >>> move_sum([1.0, 2.0, np.nan, 4.0], window=2, min_count=1)
    array([1., 3., 2., 4.])
    """
    return _moments(a, window, min_count, axis, _SUM)


@distributed(Window(before="window", before_add=-1))
def move_mean(a, window: int, min_count: int | None = None, axis: int = -1):
    """Mean over a trailing window of ``window`` samples, ignoring NaN.

    Parameters and result as in :func:`move_sum`.

    Examples
    --------
    >>> move_mean([1.0, 2.0, np.nan, 4.0], window=2, min_count=1)
    array([1. , 1.5, 2. , 4. ])
    >>> move_mean([1.0, 2.0, 3.0], window=2)
    array([nan, 1.5, 2.5])
    """
    return _moments(a, window, min_count, axis, _MEAN)


@distributed(Window(before="window", before_add=-1))
def move_var(
    a, window: int, min_count: int | None = None, axis: int = -1, ddof: int = 1
):
    """Variance over a trailing window of ``window`` samples, ignoring NaN.

    Parameters as in :func:`move_sum`, plus ``ddof`` (delta degrees of
    freedom; 1 gives the sample variance, as pandas does by default). A window
    with ``ddof`` or fewer valid samples gives NaN. A window whose valid
    samples are all equal gives exactly 0.

    Examples
    --------
    >>> move_var([1.0, 2.0, 4.0, 4.0, 4.0], window=3)
    array([       nan,        nan, 2.33333333, 1.33333333, 0.        ])
    """
    return _moments(a, window, min_count, axis, _VAR, _check_ddof(ddof))


@distributed(Window(before="window", before_add=-1))
def move_std(
    a, window: int, min_count: int | None = None, axis: int = -1, ddof: int = 1
):
    """Standard deviation over a trailing window; see :func:`move_var`.

    Examples
    --------
    >>> move_std([1.0, 2.0, 3.0, np.nan, 5.0], window=3, min_count=2)
    array([       nan, 0.70710678, 1.        , 0.70710678, 1.41421356])
    """
    return _moments(a, window, min_count, axis, _STD, _check_ddof(ddof))


@distributed(Window(before="window"))  # the reference ends before each sample
def move_zscore(
    a, window: int, min_count: int | None = None, axis: int = -1, ddof: int = 1
):
    """How far each sample lies from the window of samples before it.

    ``z[t] = (a[t] - mean(a[t-window:t])) / std(a[t-window:t])`` -- the
    reference window ends *before* ``t``, so an outlier does not pull its own
    reference towards itself. NaN where the reference window has fewer than
    ``min_count`` valid samples (or at most ``ddof``), or holds an infinity.
    A constant reference window gives ``±inf`` for a different value and NaN
    for an equal one.

    Parameters
    ----------
    a : array_like
        Input values; NaN means missing.
    window : int
        Number of samples in the reference window.
    min_count : int, optional
        Fewest valid samples the reference window needs. Default ``window``.
    axis : int
        The time axis. Default: the last.
    ddof : int
        Delta degrees of freedom of the reference standard deviation.

    Examples
    --------
    >>> move_zscore([1.0, 2.0, 1.0, 2.0, 9.0], window=4)
    array([       nan,        nan,        nan,        nan, 12.99038106])
    """
    return _moments(a, window, min_count, axis, _ZSCORE, _check_ddof(ddof))


def _check_ddof(ddof) -> int:
    if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or ddof < 0:
        raise ValueError(f"ddof must be a whole number >= 0, got ddof={ddof!r}")
    return int(ddof)
