"""Mathematical properties on hypothesis-generated rows.

The settings profile (max_examples, deadline=None) is chosen in conftest.py; set
FASTSOFT_HYPOTHESIS_PROFILE=ci for a longer run.
"""

import numpy as np
import pytest

import fastsoft as fs
from _arrays import unit_roundoff

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

DTYPES = st.sampled_from([np.float32, np.float64])


@st.composite
def matrices(draw, dtype=None, low=-1e4, high=1e4, max_cols=40):
    """2-D finite arrays (at least one row and column) of float32 or float64."""
    dtype = draw(DTYPES) if dtype is None else dtype
    shape = (draw(st.integers(1, 5)), draw(st.integers(1, max_cols)))
    width = 32 if dtype == np.float32 else 64
    low, high = float(dtype(low)), float(dtype(high))   # bounds exact in the dtype
    elements = st.floats(low, high, allow_nan=False, allow_infinity=False, width=width)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def dyadic_matrices(draw):
    """Multiples of 1/8 in [-100, 100]: x + c is exact for integer |c| <= 1e4 in both dtypes."""
    dtype = draw(DTYPES)
    shape = (draw(st.integers(1, 5)), draw(st.integers(1, 40)))
    values = draw(hnp.arrays(np.int32, shape, elements=st.integers(-800, 800)))
    return (values / 8).astype(dtype)


def log_prob_scale(x):
    """1 + |x_i - max_j x_j| per entry: the condition of softmax_i."""
    x = x.astype(np.float64)
    return 1 + (x.max(axis=-1, keepdims=True) - x)


@given(dyadic_matrices(), st.integers(-10_000, 10_000))
def test_shift_invariance(x, shift):
    shifted = (x.astype(np.float64) + shift).astype(x.dtype)
    assert np.array_equal(shifted.astype(np.float64), x.astype(np.float64) + shift)  # exact
    u = unit_roundoff(x.dtype)
    tiny = np.finfo(x.dtype).tiny
    p, q = fs.softmax(x), fs.softmax(shifted)
    # both within 4u(1 + |d|) of the same exact value
    assert np.all(np.abs(p - q) <= 8 * u * log_prob_scale(x) * np.maximum(p, q) + tiny)
    lp, lq = fs.log_softmax(x), fs.log_softmax(shifted)
    assert np.all(np.abs(lp - lq) <= 8 * u * np.maximum(1, np.abs(lp)))
    # the test's own subtraction of the shift rounds at the scale of logsumexp(x)
    lse_x = fs.logsumexp(x).astype(np.float64)
    lse_shifted = fs.logsumexp(shifted).astype(np.float64)
    scale = np.maximum(1, np.maximum(np.abs(lse_shifted), np.abs(lse_x)))
    assert np.all(np.abs((lse_shifted - shift) - lse_x) <= 8 * u * scale)


@given(matrices())
def test_rows_sum_to_one(x):
    n = x.shape[-1]
    u = unit_roundoff(x.dtype)
    for name in ("softmax", "sigsoftmax"):
        p = getattr(fs, name)(x)
        assert np.all((p >= 0) & (p <= 1))
        total = p.astype(np.float64).sum(axis=-1)
        # each p_i within 4u(1 + |d_i|) p_i, and sum p_i |d_i| <= log n
        assert np.all(np.abs(total - 1) <= 4 * u * (n + 1 + np.log(n))), (name, total)


@given(matrices())
def test_log_softmax_is_log_of_softmax(x):
    u = unit_roundoff(x.dtype)
    tiny = np.finfo(x.dtype).tiny
    for prob_name, log_name in (("softmax", "log_softmax"), ("sigsoftmax", "log_sigsoftmax")):
        p = getattr(fs, prob_name)(x).astype(np.float64)
        logs = getattr(fs, log_name)(x).astype(np.float64)
        normal = p >= tiny
        with np.errstate(divide="ignore"):
            log_p = np.log(p)
        difference = np.abs(log_p - logs)[normal]
        assert np.all(difference <= 16 * u * np.maximum(1, np.abs(logs[normal]))), prob_name
        # below tiny, exp(log_softmax) is below tiny too (up to rounding)
        assert np.all(logs[~normal] <= np.log(tiny) + 1), prob_name


@given(matrices(low=-1e30, high=1e30))
def test_logsumexp_bounds(x):
    lse = fs.logsumexp(x).astype(np.float64)
    row_max = x.max(axis=-1).astype(np.float64)
    assert np.all(lse >= row_max)
    u = unit_roundoff(x.dtype)
    slack = 4 * u * np.maximum(1, np.abs(row_max))
    assert np.all(lse <= row_max + np.log(x.shape[-1]) + slack)


@given(matrices(low=-1e30, high=1e30))
def test_log_softmax_nonpositive_and_max_near_zero(x):
    for name in ("log_softmax", "log_sigsoftmax"):
        logs = getattr(fs, name)(x)
        assert np.all(logs <= 0), name
        # the largest entry's log-probability is at least -log(n)
        u = unit_roundoff(x.dtype)
        assert np.all(logs.max(axis=-1) >= -np.log(x.shape[-1]) * (1 + 4 * u) - 4 * u), name


@given(matrices(low=-1e30, high=1e30))
def test_sigsoftmax_monotone(x):
    """z_i < z_j  =>  f_i <= f_j (up to rounding)."""
    u = unit_roundoff(x.dtype)
    f = fs.sigsoftmax(x).astype(np.float64)
    logs = fs.log_sigsoftmax(x).astype(np.float64)
    order = np.argsort(x, axis=-1, kind="stable")
    z_sorted = np.take_along_axis(x, order, axis=-1)
    f_sorted = np.take_along_axis(f, order, axis=-1)
    log_sorted = np.take_along_axis(logs, order, axis=-1)
    increasing = z_sorted[:, 1:] > z_sorted[:, :-1]
    # f_sorted[k] <= f_sorted[k+1] (1 + 8u(1 + |log f|))
    scale = 1 + 8 * u * (1 + np.abs(np.where(np.isfinite(log_sorted), log_sorted, 0)))
    assert np.all(~increasing | (f_sorted[:, :-1] <= f_sorted[:, 1:] * scale[:, 1:]))
    assert np.all(~increasing | (log_sorted[:, :-1]
                                 <= log_sorted[:, 1:] + 8 * u * np.maximum(1, np.abs(log_sorted[:, 1:]))))


def softplus(z):
    """log(1 + exp(z)) in float64 without overflow."""
    return np.logaddexp(0.0, z)


@given(matrices(low=-200, high=200))
def test_sigsoftmax_is_softmax_of_transformed_logits(x):
    """sigsoftmax(z) == softmax(2z - softplus(z)); the right side computed in float64."""
    z = x.astype(np.float64)
    w = 2 * z - softplus(z)
    u = unit_roundoff(x.dtype)
    tiny = np.finfo(x.dtype).tiny
    expected = fs.softmax(w)
    got = fs.sigsoftmax(x).astype(np.float64)
    # w in float64 is rounded by 2^-53 |w|; the fs.softmax of it by 4u(1 + |d|)
    scale = 1 + (w.max(axis=-1, keepdims=True) - w) + np.abs(w).max(axis=-1, keepdims=True)
    bound = (4 * u + 8 * 2.0**-53) * scale * np.maximum(expected, got) + tiny
    assert np.all(np.abs(got - expected) <= bound)
    log_expected = fs.log_softmax(w)
    log_got = fs.log_sigsoftmax(x).astype(np.float64)
    assert np.all(np.abs(log_got - log_expected)
                  <= (4 * u + 8 * 2.0**-53) * (np.maximum(1, np.abs(log_expected)) + scale))


@given(matrices(), st.data())
def test_where_equals_dropping_entries(x, data):
    """Masking entries out of a row gives the softmax of the remaining entries."""
    mask = data.draw(hnp.arrays(np.bool_, x.shape))
    u = unit_roundoff(x.dtype)
    tiny = np.finfo(x.dtype).tiny
    for name in ("softmax", "log_softmax", "sigsoftmax", "log_sigsoftmax", "logsumexp"):
        got = getattr(fs, name)(x, where=mask)
        for row in range(x.shape[0]):
            kept = x[row][mask[row]]
            if kept.size == 0:
                continue
            expected = getattr(fs, name)(kept).astype(np.float64)
            # the same values at other positions: equal up to the summation order
            if name in ("softmax", "sigsoftmax"):
                logs = getattr(fs, "log_" + name)(kept).astype(np.float64)
                bound = 8 * u * (1 + np.abs(logs)) * expected + tiny
                assert np.all(np.abs(got[row][mask[row]] - expected) <= bound), name
                assert np.all(got[row][~mask[row]] == 0), name
            else:
                values = got[row][mask[row]] if name != "logsumexp" else got[row]
                assert np.all(np.abs(values - expected) <= 8 * u * np.maximum(1, np.abs(expected))), name


@given(matrices(max_cols=12), st.permutations(range(12)))
def test_permutation_equivariance(x, permutation):
    """Permuting a row permutes softmax; logsumexp changes by rounding only."""
    permutation = [k for k in permutation if k < x.shape[-1]]
    u = unit_roundoff(x.dtype)
    p = fs.softmax(x)
    q = fs.softmax(x[:, permutation])
    tiny = np.finfo(x.dtype).tiny
    assert np.all(np.abs(q - p[:, permutation])
                  <= 8 * u * log_prob_scale(x)[:, permutation] * np.maximum(q, p[:, permutation]) + tiny)
    lse_p, lse_q = fs.logsumexp(x), fs.logsumexp(x[:, permutation])
    assert np.all(np.abs(lse_p - lse_q) <= 8 * u * np.maximum(1, np.abs(lse_p)))
