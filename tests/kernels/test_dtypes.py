"""Every kernel family on any real numeric array: non-native byte order,
float16, integers and non-contiguous views give the result of the same
values in native float64; what cannot be a number is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

import kernels

T = np.arange(40, dtype=np.int64) * 60 + np.array([0, 3, 5, 9] * 10)  # irregular times
T_DT = T.astype("datetime64[s]").astype("datetime64[ns]")

# name -> kernel on a (series, time) array, time last; flags and indices included
FAMILIES = {
    "move_sum": lambda a: kernels.move_sum(a, 5, 3),
    "move_mean": lambda a: kernels.move_mean(a, 5, 3),
    "move_var": lambda a: kernels.move_var(a, 5, 3),
    "move_std": lambda a: kernels.move_std(a, 5, 3),
    "move_min": lambda a: kernels.move_min(a, 5, 3),
    "move_max": lambda a: kernels.move_max(a, 5, 3),
    "move_count": lambda a: kernels.move_count(a, 5),
    "move_zscore": lambda a: kernels.move_zscore(a, 5, 3),
    "move_median": lambda a: kernels.move_median(a, 5, 3),
    "move_quantile": lambda a: kernels.move_quantile(a, 5, 0.3, 3),
    "time_rolling": lambda a: kernels.time_rolling(a, T, 200, "std", min_count=2),
    "ewm_mean": lambda a: kernels.ewm_mean(a, halflife=3),
    "ewm_std": lambda a: kernels.ewm_std(a, span=4),
    "ffill": lambda a: kernels.ffill(a, 2),
    "interpolate": lambda a: kernels.interpolate(a, 3),
    "gross_range": lambda a: kernels.gross_range(a, (-50, 50), (-10, 10)),
    "spike": lambda a: kernels.spike(a, 3.0, 8.0),
    "flat_line": lambda a: kernels.flat_line(a, 0.0, 2, 3),
    "rate_of_change": lambda a: kernels.rate_of_change(a, 0.05, times=T),
    "robust_zscore": lambda a: kernels.robust_zscore(a, 6, 3.0, 3),
    "hampel": lambda a: kernels.hampel(a, 3, 3.0, 3),
    "cusum": lambda a: kernels.cusum(a, 0.0, 2.0),
    "drift": lambda a: kernels.drift(a, 6, 0.5, 3),
    "lttb": lambda a: kernels.lttb(a, 8),
    "bin_rows": lambda a: kernels.bin_rows(a, T_DT, start=T_DT[0],
                                          step=np.timedelta64(300, "s"), n_bins=8),
    "bin_samples": lambda a: kernels.bin_samples(T_DT, a[0], start=T_DT[0],
                                                 step=np.timedelta64(300, "s"), n_bins=8).mean,
}


def _values() -> np.ndarray:
    """Two series of small integers and halves (exact in float16), NaN runs,
    a stuck stretch and a spike."""
    rng = np.random.default_rng(7)
    x = rng.integers(-8, 9, size=(2, 40)) / 2.0
    x[0, 5:8] = np.nan
    x[1, 20:26] = 1.5
    x[1, 30] = 40.0
    x[0, -1] = np.nan
    return x


def _results(out):
    return out if isinstance(out, tuple) else (out,)


def _check(got, expected, name, dtype_label):
    for g, e in zip(_results(got), _results(expected), strict=True):
        g, e = np.asarray(g), np.asarray(e)
        assert g.shape == e.shape, (name, dtype_label)
        if g.dtype.kind == "f":
            assert g.dtype.isnative, f"{name} on {dtype_label} returned {g.dtype}"
            # float32 output rounds what the loops computed in float64
            rtol = 0 if g.dtype == np.float64 else 2e-6
            np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-5 if rtol else 0,
                                       equal_nan=True, err_msg=f"{name} on {dtype_label}")
        else:
            np.testing.assert_array_equal(g, e, err_msg=f"{name} on {dtype_label}")


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("dtype", [">f8", ">f4", "<f4", "float16"])
def test_byte_order_and_float16_give_the_float64_result(name, dtype):
    x = _values()
    func = FAMILIES[name]
    expected = func(x)
    got = func(x.astype(dtype))
    _check(got, expected, name, dtype)
    # the dtypes of the native twin: float64 for >f8, float32 for >f4 and
    # float16 (computed in float32 and returned so, as documented)
    twin = func(x.astype(np.float64 if dtype == ">f8" else np.float32))
    assert [np.asarray(r).dtype for r in _results(got)] == \
        [np.asarray(r).dtype for r in _results(twin)], (name, dtype)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_non_contiguous_views_and_integers(name):
    x = _values()
    func = FAMILIES[name]
    expected = func(x)
    wide = np.full((4, 80), 99.0)
    wide[::2, ::2] = x  # a strided view of the same values
    view = wide[::2, ::2]
    assert not view.flags.c_contiguous
    _check(func(view), expected, name, "a strided view")
    fortran = np.asfortranarray(x)
    _check(func(fortran), expected, name, "Fortran order")
    ints = np.nan_to_num(x * 2).astype(">i4")  # integers, big-endian too
    _check(func(ints), func(ints.astype(np.float64)), name, ">i4")


@pytest.mark.parametrize("bad", [np.zeros((1, 5), complex), np.array([["a"] * 5]),
                                 np.array([[object()] * 5]),
                                 np.zeros((1, 5), "datetime64[ns]")])
def test_what_is_not_a_number_is_refused_by_dtype(bad):
    with pytest.raises(TypeError, match=str(bad.dtype).replace("[", r"\[")):
        kernels.move_mean(bad, 3)
