"""Scans of raw text for the loaders, each one compiled pass over a block's bytes.

Not time-series kernels (they have no distribution kind): the CSV loader
calls them in its parse tasks.

- :func:`line_ends` counts the line ends of a block (instead of two or three
  passes of ``bytes.count`` over a copy of it).
- :func:`parse_long` reads a long-layout block (device, ISO 8601 time,
  metric, value). It takes only text that it reads exactly as pyarrow's CSV
  reader does, and says when it meets other text (a quote, a number outside
  the exact fast path, another form of time, an empty key): the loader then
  gives the whole block to pyarrow.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from ._wrap import JIT_OPTIONS


@njit(**JIT_OPTIONS)
def _count_ends(b):
    lf = 0
    cr = 0
    for i in range(b.shape[0]):
        c = b[i]
        lf += np.int64(c == 10)
        cr += np.int64(c == 13)
    return lf, cr


@njit(**JIT_OPTIONS)
def _crlf(b):
    n = 0
    for i in range(b.shape[0] - 1):
        n += np.int64((b[i] == 13) & (b[i + 1] == 10))
    return n


def line_ends(buf) -> tuple[int, int]:
    """The line feeds in ``buf``, and its carriage returns that are not
    followed by a line feed (lone CRs).

    Parameters
    ----------
    buf : bytes-like
        Bytes, a memoryview (of a memory-mapped file, say) or a uint8 array;
        not copied.

    Returns
    -------
    (int, int)
        ``(line feeds, lone carriage returns)``.

    Examples
    --------
    >>> line_ends(b"a,1\\r\\nb,2\\nc,3\\r")
    (2, 1)
    >>> line_ends(b"")
    (0, 0)
    """
    b = np.frombuffer(buf, dtype=np.uint8)
    lf, cr = _count_ends(b)  # one pass that the compiler vectorises
    return int(lf), int(cr - _crlf(b)) if cr else 0


#: why :func:`parse_long` leaves a block to pyarrow (0: it read it)
OK, FIELDS, KEY, TIME, NUMBER, ODD, GROW = range(7)
_WHY = {FIELDS: "a line with another number of fields", KEY: "an empty device or metric",
        ODD: "a quote or a non-ASCII byte",
        TIME: "a time outside the exact ISO 8601 form",
        NUMBER: "a value outside the exact number form"}
#: the exact powers of ten of a float64 (10**22 is the largest)
_POW10 = np.array([10.0 ** k for k in range(23)])
_MAX_MANTISSA = 2**53


@njit(**JIT_OPTIONS)
def _days_from_civil(y, m, d):
    # days from 1970-01-01 to a proleptic Gregorian date
    y -= np.int64(m <= 2)
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(**JIT_OPTIONS)
def _digits(b, i, k):
    # the k ASCII digits at b[i:i + k] as an integer, or -1
    out = np.int64(0)
    for j in range(i, i + k):
        c = np.int64(b[j]) - 48
        if c < 0 or c > 9:
            return np.int64(-1)
        out = out * 10 + c
    return out


@njit(**JIT_OPTIONS)
def _iso_ns(b, i, j, zoned):
    """ns since the epoch of ``YYYY-MM-DD[T ]hh:mm:ss[.f]`` (1 to 9 digits of
    fraction) then ``Z`` or ``+hh:mm`` when ``zoned``, nothing when not; ok."""
    if j - i < 19 or b[i + 4] != 45 or b[i + 7] != 45 or (b[i + 10] != 84 and b[i + 10] != 32) \
            or b[i + 13] != 58 or b[i + 16] != 58:
        return np.int64(0), False
    y = _digits(b, i, 4)
    mo = _digits(b, i + 5, 2)
    d = _digits(b, i + 8, 2)
    hh = _digits(b, i + 11, 2)
    mi = _digits(b, i + 14, 2)
    ss = _digits(b, i + 17, 2)
    if y < 0 or mo < 1 or mo > 12 or d < 1 or hh < 0 or hh > 23 or mi < 0 or mi > 59 \
            or ss < 0 or ss > 59:
        return np.int64(0), False
    days_in_month = 31
    if mo == 2:
        days_in_month = 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    elif mo == 4 or mo == 6 or mo == 9 or mo == 11:
        days_in_month = 30
    if d > days_in_month:
        return np.int64(0), False
    k = i + 19
    frac = np.int64(0)
    if k < j and b[k] == 46:
        k += 1
        start = k
        while k < j and 48 <= b[k] <= 57 and k - start < 9:
            frac = frac * 10 + (np.int64(b[k]) - 48)
            k += 1
        if k == start:
            return np.int64(0), False
        for _ in range(9 - (k - start)):
            frac *= 10
    offset = np.int64(0)
    if zoned:
        if k < j and b[k] == 90:  # Z
            k += 1
        elif k + 6 == j and (b[k] == 43 or b[k] == 45) and b[k + 3] == 58:
            oh = _digits(b, k + 1, 2)
            om = _digits(b, k + 4, 2)
            if oh < 0 or oh > 23 or om < 0 or om > 59:
                return np.int64(0), False
            offset = (oh * 3600 + om * 60) * (1 if b[k] == 43 else -1)
            k += 6
        else:
            return np.int64(0), False
    if k != j:
        return np.int64(0), False
    secs = _days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - offset
    return secs * 1_000_000_000 + frac, True


@njit(**JIT_OPTIONS)
def _number_rest(b, i, j, k, mant, digits, scale, neg, whole, nulls, null_ends):
    """The rest of a value field ``b[i:j]`` that the main loop's plain-decimal
    parse did not finish (it stopped at ``k`` with ``mant``, its significant
    ``digits`` and ``scale`` digits after the mark; ``whole``: digits before
    the mark, and after it if there is one): an empty field or a null text
    (NaN), or an exponent. The float64 when one product or quotient of exact
    numbers gives it (digits at most 2**53 as an integer, a power of ten of
    at most 22); ok."""
    if i == j:
        return np.nan, True
    if not whole:  # a null text, or pyarrow's to judge ("-", "1.", ".5", "inf")
        lo = 0
        for t in range(null_ends.shape[0]):
            hi = null_ends[t]
            if hi - lo == j - i:
                same = True
                for q in range(j - i):
                    if b[i + q] != nulls[lo + q]:
                        same = False
                        break
                if same:
                    return np.nan, True
            lo = hi
        return np.nan, False
    exp10 = -scale
    if k < j and (b[k] == 101 or b[k] == 69):  # e, E
        k += 1
        sign = 1
        if k < j and (b[k] == 45 or b[k] == 43):
            sign = -1 if b[k] == 45 else 1
            k += 1
        start = k
        e = 0
        while k < j and 48 <= b[k] <= 57 and k - start < 4:
            e = e * 10 + (np.int64(b[k]) - 48)
            k += 1
        if k == start:
            return np.nan, False
        exp10 += sign * e
    if k != j or digits > 16 or mant > _MAX_MANTISSA or exp10 > 22 or exp10 < -22:
        return np.nan, False
    x = np.float64(mant)
    x = x * _POW10[exp10] if exp10 >= 0 else x / _POW10[-exp10]
    return (-x if neg else x), True


_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DB_TABLE = np.zeros(64, np.int64)
for _i in range(64):
    _DB_TABLE[((1 << _i) * 0x03F79D71B4CB0A89 & (2**64 - 1)) >> 58] = _i


@intrinsic
def _load8(typingctx, arr, pos):
    # the 8 bytes of a uint8 array from byte `pos` on as one unaligned load, in
    # the machine's order (pos + 8 <= len(arr))
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        word = context.get_value_type(types.uint64).as_pointer()
        at = builder.bitcast(builder.gep(data, [args[1]]), word)
        return builder.load(at, align=1)
    return types.uint64(arr, pos), codegen


@njit(inline="always")
def _word(b, end8, a):
    # the 8 bytes from byte a on, little-endian, zero past the end of b:
    # near the end, the last 8 bytes shifted down (end8 = len(b) - 8 >= 0)
    p = min(a, end8)
    s = a - p
    v = _load8(b, p)
    return v >> np.uint64(8 * s) if s < 8 else np.uint64(0)


@njit(**JIT_OPTIONS)
def _mix(h):
    # a 64-bit finaliser: every bit of h moves the low bits (murmur3's constants)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


@njit(**JIT_OPTIONS)
def _first_byte(m):
    # the index of the lowest byte whose high bit is set in m (m != 0)
    low = m & (~m + np.uint64(1))
    return _DB_TABLE[(low * _DEBRUIJN) >> np.uint64(58)] >> 3


@njit(**JIT_OPTIONS)
def _keep_low(v, width):
    # the low `width` bytes of v (width 0..8)
    if width >= 8:
        return v
    return v & ((np.uint64(1) << np.uint64(8 * width)) - np.uint64(1))


# One function, written out: a call to a helper that takes an array costs
# reference counting (about 20 ns, as much as a field's parse), so the helpers
# it calls take numbers, or serve only the rare steps (a new time, the rest
# of an unusual number).
@njit(**JIT_OPTIONS)
def _parse_long(b, size, n_cols, c_dev, c_time, c_met, c_val, sep, decimal, zoned, nulls,
                null_ends, max_rows, entries, table):
    dev = np.empty(max_rows, np.int32)
    met = np.empty(max_rows, np.int32)
    times = np.empty(max_rows, np.int64)
    values = np.empty(max_rows, np.float64)
    sep8 = _ONES * np.uint64(sep)
    lf8 = _ONES * np.uint64(10)
    quote8 = _ONES * np.uint64(34)
    n_entries = 0
    n_kind = np.zeros(2, np.int64)
    mask = table.shape[0] - 1
    last_dev = -1
    last_met = -1
    next_met = np.full(entries.shape[0], -1, np.int64)
    last_t0 = -1
    last_t1 = -1
    last_time = np.int64(0)
    n = size  # the block's bytes; b may hold zeros after them
    end8 = b.shape[0] - 8
    row = 0
    pos = 0
    status = OK
    while pos < n and status == OK:
        if b[pos] == 10 or (b[pos] == 13 and (pos + 1 == n or b[pos + 1] == 10)):
            pos += 1 if b[pos] == 10 else 2  # a blank line: pyarrow skips it
            continue
        col = 0
        f0 = pos
        last = False
        while not last:
            # a device or time equal to the last row's, or the metric that
            # followed the last row's metric the last time, is matched whole,
            # word by word; any other field is scanned 8 bytes at a time
            q = -1
            k0 = -1
            width = 0
            guess = -1
            if col == c_dev and last_dev >= 0:
                guess = last_dev
            elif col == c_met and last_met >= 0:
                guess = next_met[last_met]
            if guess >= 0:
                k0 = entries[guess, 0]
                width = entries[guess, 1] - k0
            elif col == c_time and last_t0 >= 0:
                k0 = last_t0
                width = last_t1 - last_t0
            if k0 >= 0 and f0 + width < n and (b[f0 + width] == sep or b[f0 + width] == 10):
                q = f0 + width
                for k in range(0, width, 8):
                    a = f0 + k
                    c = k0 + k
                    va = _word(b, end8, a)
                    vc = _word(b, end8, c)
                    if _keep_low(va ^ vc, width - k) != np.uint64(0):
                        q = -1
                        break
            same = q >= 0
            if not same:
                q = f0
                odd = np.uint64(0)
                while q < n:
                    v = _word(b, end8, q)
                    x = v ^ sep8
                    y = v ^ lf8
                    z = v ^ quote8
                    m = (((x - _ONES) & ~x) | ((y - _ONES) & ~y)) & _HIGH
                    # a quote or a byte >= 128 (exact for the lowest one, the
                    # only one that matters: a field stops at its first)
                    o = (((z - _ONES) & ~z) | v) & _HIGH
                    if m != np.uint64(0):
                        t = _first_byte(m)
                        odd |= _keep_low(o, t)
                        q += t
                        break
                    odd |= o
                    q += 8
                if odd != np.uint64(0):
                    status = ODD
                    break
                if q > n:
                    q = n
            last = q >= n or b[q] == 10
            f1 = q - 1 if last and q > f0 and b[q - 1] == 13 else q  # CRLF
            if col >= n_cols:
                status = FIELDS
                break
            if col == c_dev or col == c_met:
                if f1 == f0:
                    status = KEY
                    break
                kind = 0 if col == c_dev else 1
                code = guess if same else -1
                if code < 0:  # the open-addressing table of devices and metrics
                    h = np.uint64(kind + 1)
                    for k in range(0, f1 - f0, 8):
                        a = f0 + k
                        v = _keep_low(_word(b, end8, a), f1 - a)
                        h = (h ^ v) * np.uint64(0x9E3779B97F4A7C15)
                        h ^= h >> np.uint64(32)
                    slot = np.int64(_mix(h) & np.uint64(mask))
                    while True:
                        code = table[slot]
                        if code < 0:
                            break
                        c0 = entries[code, 0]
                        if entries[code, 2] == kind and entries[code, 1] - c0 == f1 - f0:
                            equal = True
                            for k in range(0, f1 - f0, 8):
                                a = f0 + k
                                c = c0 + k
                                va = _word(b, end8, a)
                                vc = _word(b, end8, c)
                                if _keep_low(va ^ vc, f1 - a) != np.uint64(0):
                                    equal = False
                                    break
                            if equal:
                                break
                        slot = (slot + 1) & mask
                    if code < 0:
                        if 2 * (n_entries + 1) > table.shape[0]:
                            status = GROW
                            break
                        code = n_entries
                        entries[code, 0] = f0
                        entries[code, 1] = f1
                        entries[code, 2] = kind
                        entries[code, 3] = n_kind[kind]
                        n_kind[kind] += 1
                        table[slot] = code
                        n_entries += 1
                if kind == 0:
                    dev[row] = entries[code, 3]
                    last_dev = code
                else:
                    met[row] = entries[code, 3]
                    if last_met >= 0:
                        next_met[last_met] = code
                    last_met = code
            elif col == c_time:
                if not same:
                    t, ok = _iso_ns(b, f0, f1, zoned)
                    if not ok:
                        status = TIME
                        break
                    last_time = t
                    last_t0 = f0
                    last_t1 = f1
                times[row] = last_time
            elif col == c_val:
                k = f0
                neg = k < f1 and b[k] == 45
                if neg:
                    k += 1
                mant = np.int64(0)
                digits = 0
                scale = 0
                start = k
                while k < f1 and 48 <= b[k] <= 57 and digits <= 16:
                    mant = mant * 10 + (np.int64(b[k]) - 48)
                    digits += np.int64(mant > 0)
                    k += 1
                whole = k > start
                if whole and k < f1 and b[k] == decimal:
                    k += 1
                    start = k
                    while k < f1 and 48 <= b[k] <= 57 and digits <= 16:
                        mant = mant * 10 + (np.int64(b[k]) - 48)
                        digits += np.int64(mant > 0)
                        scale += 1
                        k += 1
                    whole = k > start
                if whole and k == f1 and digits <= 16 and mant <= _MAX_MANTISSA and scale <= 22:
                    value = np.float64(mant) / _POW10[scale] if scale else np.float64(mant)
                    values[row] = -value if neg else value
                else:  # an empty field, a null text, an exponent, or pyarrow's
                    value, ok = _number_rest(b, f0, f1, k, mant, digits, scale, neg, whole,
                                             nulls, null_ends)
                    if not ok:
                        status = NUMBER
                        break
                    values[row] = value
            col += 1
            f0 = q + 1
        if status == OK:
            if col != n_cols:
                status = FIELDS
                break
            row += 1
            pos = f0
    return dev, met, times, values, row, n_entries, status, pos


def parse_long(buf, *, columns: int, device: int, time: int, metric: int, value: int,
               sep: str = ",", decimal: str = ".", zoned: bool = True, nulls=("",),
               lines: int | None = None):
    """Read a long-layout CSV block (no header) in one compiled pass.

    Each line holds ``columns`` fields split at ``sep``; the four at
    ``device``, ``time``, ``metric`` and ``value`` are read, the others
    skipped. Lines end at LF or CRLF; blank lines are skipped. It takes
    only text that pyarrow's reader reads to the same result, and names the
    first text it does not take:

    - times ``YYYY-MM-DDThh:mm:ss`` (or a space for the ``T``) with 0 to 9
      digits of fraction, then ``Z`` or ``+hh:mm`` when ``zoned`` (converted
      to UTC), nothing when not;
    - values that are decimal numbers (an optional ``-``, digits, an
      optional fraction and exponent) whose digits as an integer are at most
      2**53 and whose power of ten is at most 22 in size: one product or
      quotient of two exact float64 then gives the correctly rounded value,
      as pyarrow's parser does; an empty field or one of ``nulls`` is NaN;
    - devices and metrics that are not empty or one of ``nulls``; ASCII text
      without quotes.

    Fields are found 8 bytes at a time, and a device or time equal to the
    previous row's (or the metric that last followed the previous row's) is
    matched whole: a 64 MiB block of a gateway's log takes about two thirds
    of the time of pyarrow's reader and its conversion to arrays, on one
    thread. Values with more than 15 or 16 significant digits (a float's
    shortest repr) are not taken: such blocks are pyarrow's.

    Parameters
    ----------
    buf : bytes-like
        The block's bytes after any header (not copied).
    columns, device, time, metric, value : int
        The number of fields, and where the four read ones are.
    sep, decimal : str
        One-byte field separator and decimal mark.
    zoned : bool
        Whether every time carries a zone, or none does.
    nulls : sequence of str
        Value texts that mean missing.
    lines : int, optional
        At least the line feeds in ``buf`` (the rows are at most one more), when
        the caller has counted them.

    Returns
    -------
    dict or str
        ``devices`` and ``metrics`` (names in order of first appearance),
        ``device_codes``, ``metric_codes`` (int32), ``times`` (int64 ns,
        UTC) and ``values`` (float64), one per row; or, for a block with
        text outside these forms, a sentence that says which.

    Examples
    --------
    >>> out = parse_long(b"d1,2026-01-05T00:00:00Z,t,20.5\\nd2,2026-01-05T00:01:00.5Z,t,\\n",
    ...                  columns=4, device=0, time=1, metric=2, value=3)
    >>> out["devices"], out["device_codes"].tolist(), out["values"].tolist()
    (['d1', 'd2'], [0, 1], [20.5, nan])
    >>> int(out["times"][1] - out["times"][0])
    60500000000
    >>> parse_long(b"d1,2026-01-05,t,1\\n", columns=4, device=0, time=1, metric=2, value=3)
    'a time outside the exact ISO 8601 form (line 1)'
    """
    if len(sep.encode()) != 1 or len(decimal.encode()) != 1:
        return "a separator or decimal mark of more than one byte"
    b = np.frombuffer(buf, dtype=np.uint8)
    size = b.size
    if size < 8:  # a word's load needs 8 bytes: a shorter block is read from a padded copy
        b = np.concatenate([b, np.zeros(8 - size, np.uint8)])
    texts = [t.encode() for t in nulls if t]
    null_bytes = np.frombuffer(b"".join(texts) or b"\\0", np.uint8)
    null_ends = np.cumsum([len(t) for t in texts], dtype=np.int64)
    if lines is None:
        lines, _ = line_ends(buf)
    capacity = 4096
    while True:  # one table for devices and metrics, made larger when half full
        entries = np.empty((capacity, 4), np.int64)
        table = np.full(2 * capacity, -1, np.int64)
        dev, met, times, values, n, n_entries, status, at = _parse_long(
            b, size, columns, device, time, metric, value, ord(sep), ord(decimal), zoned,
            null_bytes, null_ends, lines + 1, entries, table)
        if status != GROW:
            break
        capacity *= 8
    if status != OK:
        return f"{_WHY[status]} (line {int(_count_ends(b[:at])[0]) + 1})"
    names: tuple[list, list] = ([], [])
    for i, j, kind, _ in entries[:n_entries]:  # codes count up by kind
        names[kind].append(b[i:j].tobytes().decode())
    if set(nulls) & set(names[0] + names[1]):
        return "a device or metric that reads as missing"
    return {"devices": names[0], "metrics": names[1], "device_codes": dev[:n],
            "metric_codes": met[:n], "times": times[:n], "values": values[:n]}


__all__ = ["line_ends", "parse_long"]
