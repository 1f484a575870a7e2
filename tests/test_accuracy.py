"""Accuracy against exact values: mpmath (60 digits) for rows up to 1000 values,
np.longdouble (64-bit significand on x86) for rows of 10^5, 3·10^5 (past the 1 MiB where
rows are taken in chunks) and 10^6 values.

Bounds, with u = 2**-24 (float32) or 2**-53 (float64):

* probabilities p_i >= tiny: |error| <= 4u (1 + |d_i|) p_i, with d_i = x_i - max (softmax)
  or w_i - w_max (sigsoftmax, w = z + log sigmoid(z));
* logarithms (log_softmax, log_sigsoftmax, logsumexp): |error| <= 4u max(1, |exact|).

Run with ``-s`` to see the worst errors measured, in ulps and as a fraction of the bound.
"""

import warnings

import numpy as np
import pytest

import fastsoft as fs
from _arrays import REGISTRY, unit_roundoff
from fastsoft import _reference

mpmath = pytest.importorskip("mpmath")

DIGITS = 60
FACTOR = 4.0
DTYPES = (np.float32, np.float64)
MPMATH_LENGTHS = (1, 2, 7, 100, 1000)
LONGDOUBLE_LENGTHS = (100_000, 300_000)   # 300_000: past LONG_ROW_BYTES, in chunks
SLOW_LENGTHS = (1_000_000,)

# the worst error seen per (function, dtype): ulps, fraction of the bound(s)
WORST = {}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if not WORST:
        return
    lines = ["", "worst errors: ulp = |error| / spacing of the exact value (of max(1, |value|)"
             " for logarithms); ulp/(1+|d|) divides by the condition; bound = |error| / the "
             "4u bound (<= 1)",
             f"{'function':<16}{'dtype':<9}{'max ulp':>10}{'max ulp/(1+|d|)':>18}"
             f"{'bound':>9}  worst case"]
    for (name, dtype), entry in sorted(WORST.items()):
        lines.append(f"{name:<16}{dtype:<9}{entry['ulp']:>10.3g}{entry['ulp_scaled']:>18.3g}"
                     f"{entry['bound']:>9.3g}  {entry['case']}")
    print("\n".join(lines))


# ---------------------------------------------------------------------------------------
# Rows


def rows(n, dtype, seed=0):
    """(name, row) pairs of length n: random and adversarial rows."""
    rng = np.random.default_rng(seed + n)
    wide = 80.0 if dtype == np.float32 else 700.0
    candidates = {
        "normal": rng.standard_normal(n),
        "normal*10": 10 * rng.standard_normal(n),
        "wide": -wide * rng.random(n),
        "dominant": np.concatenate([[0.0], -40 + 0.01 * rng.standard_normal(n - 1)]),
        "offset+1e4": 1e4 + 3 * rng.standard_normal(n),
        "offset-300": -300 + rng.standard_normal(n),
        "ties": np.full(n, 0.75),
        "near_ties": 1 + float(np.finfo(dtype).eps) * rng.integers(-3, 4, n),
        "moderate_sig": rng.uniform(-40, 40, n),
        "around+1e30": 1e30 * (1 + 1e-6 * rng.standard_normal(n)),
        # clusters where log sigmoid(z) is neither 0 nor z: w is inexact there
        "cluster+17": 17 + 0.01 * rng.standard_normal(n),
        "cluster-17": -17 + 0.01 * rng.standard_normal(n),
        "cluster-30": -30 + 0.3 * rng.standard_normal(n),
    }
    if n >= 100_000:
        keep = ("normal", "wide", "dominant", "moderate_sig", "offset-300", "cluster-17")
        candidates = {k: v for k, v in candidates.items() if k in keep}
    return [(name, row.astype(dtype)) for name, row in candidates.items()]


# ---------------------------------------------------------------------------------------
# Exact values


def _to_longdouble(values):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.array([np.longdouble(mpmath.nstr(v, 40)) if mpmath.isfinite(v)
                         else np.longdouble(str(float(v))) for v in values], dtype=np.longdouble)


def exact_mpmath(row, sig):
    """Exact (probabilities, log-probabilities, logsumexp, d = logit - max) of a row."""
    with mpmath.workdps(DIGITS):
        z = [mpmath.mpf(float(v)) for v in row]
        # log sigmoid(z) = -log(1 + exp(-z)); exact enough at 60 digits for any float z
        logits = [v - mpmath.log1p(mpmath.exp(-v)) for v in z] if sig else z
        top = max(logits)
        shifted = [v - top for v in logits]
        total = mpmath.fsum(mpmath.exp(v) for v in shifted)
        log_total = mpmath.log(total)
        probs = [mpmath.exp(v) / total for v in shifted]
        logs = [v - log_total for v in shifted]
        return (_to_longdouble(probs), _to_longdouble(logs),
                _to_longdouble([top + log_total])[0], _to_longdouble(shifted))


def exact_longdouble(row, sig):
    """The same from the reference evaluated in np.longdouble (long rows)."""
    ref = REGISTRY["sigsoftmax" if sig else "softmax"].reference
    log_ref = REGISTRY["log_sigsoftmax" if sig else "log_softmax"].reference
    x = row.astype(np.longdouble)
    probs = ref(x, dtype=np.longdouble)
    logs = log_ref(x, dtype=np.longdouble)
    lse = REGISTRY["logsumexp"].reference(x, dtype=np.longdouble)
    if sig:
        w = x + _reference.log_sigmoid(x)
        shifted = w - w.max()
    else:
        shifted = x - x.max()
    return probs, logs, lse, shifted


# ---------------------------------------------------------------------------------------
# Measuring


def measure(name, dtype, case, got, exact, d):
    """Check `got` against `exact` (longdouble); record the worst errors."""
    u = unit_roundoff(dtype)
    kind = REGISTRY[name].kind
    got = np.asarray(got).astype(np.longdouble)
    exact = np.asarray(exact, dtype=np.longdouble)
    finite = np.isfinite(exact)
    if kind == "prob":
        finite &= exact >= np.finfo(dtype).tiny
    assert np.all(np.isfinite(got[finite])), (name, case)
    error = np.abs(got - exact)[finite]
    value = exact[finite]
    # ulps of the value (probabilities) or of max(1, |value|) (logarithms: the bound is
    # absolute below 1, and log p of p near 1 is tiny)
    magnitude = np.abs(value) if kind == "prob" else np.maximum(1, np.abs(value))
    spacing = np.spacing(magnitude.astype(dtype)).astype(np.longdouble)
    if kind == "prob":
        condition = 1 + np.abs(np.asarray(d, dtype=np.longdouble)[finite])
        bound = FACTOR * u * condition * value
        scaled_ulps = error / spacing / condition
    else:
        bound = FACTOR * u * np.maximum(1, np.abs(value))
        scaled_ulps = error / spacing
    if error.size:
        entry = WORST.setdefault((name, np.dtype(dtype).name),
                                 {"ulp": 0.0, "ulp_scaled": 0.0, "bound": 0.0, "case": ""})
        fraction = float(np.max(error / bound))
        if fraction >= entry["bound"]:
            entry["case"] = case
        entry["ulp"] = max(entry["ulp"], float(np.max(error / spacing)))
        entry["ulp_scaled"] = max(entry["ulp_scaled"], float(np.max(scaled_ulps)))
        entry["bound"] = max(entry["bound"], fraction)
    bad = error > bound
    assert not bad.any(), (
        f"{name} {np.dtype(dtype).name} {case}: {int(bad.sum())} values beyond the bound; "
        f"worst {float(np.max(error / bound)):.3g} x bound, at exact value "
        f"{value[np.argmax(error / bound)]!r}")


def check_row(dtype, case, row, exact):
    for sig in (False, True):
        probs, logs, lse, d = exact(row, sig)
        prob_name, log_name = ("sigsoftmax", "log_sigsoftmax") if sig else ("softmax", "log_softmax")
        measure(prob_name, dtype, case, getattr(fs, prob_name)(row), probs, d)
        measure(log_name, dtype, case, getattr(fs, log_name)(row), logs, d)
        if not sig:
            measure("logsumexp", dtype, case, fs.logsumexp(row), np.array([lse]).reshape(()), d)


@pytest.mark.parametrize("n", MPMATH_LENGTHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_short_rows_against_mpmath(dtype, n):
    for case, row in rows(n, dtype):
        check_row(dtype, f"{case} n={n}", row, exact_mpmath)


@pytest.mark.parametrize("n", LONGDOUBLE_LENGTHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_long_rows_against_longdouble(dtype, n):
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip("np.longdouble is not 80-bit extended here")
    for case, row in rows(n, dtype):
        check_row(dtype, f"{case} n={n}", row, exact_longdouble)


@pytest.mark.slow
@pytest.mark.parametrize("n", SLOW_LENGTHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_very_long_rows_against_longdouble(dtype, n):
    test_long_rows_against_longdouble(dtype, n)


def test_longdouble_reference_agrees_with_mpmath():
    """The long-row oracle is itself checked against mpmath on a shorter row."""
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip("np.longdouble is not 80-bit extended here")
    tiny = np.finfo(np.float64).tiny
    for case, row in rows(1000, np.float64):
        for sig in (False, True):
            probs, logs, lse, d = exact_longdouble(row, sig)
            exact_probs, exact_logs, exact_lse, _ = exact_mpmath(row, sig)
            # 1e-17 is 1/44 of the 4u of float64 the package is held to
            scale = 1 + np.abs(d)
            ok = (np.abs(probs - exact_probs) <= 1e-17 * scale * exact_probs) | (exact_probs < tiny)
            assert ok.all(), (case, sig, "probabilities")
            ok = np.abs(logs - exact_logs) <= 1e-17 * np.maximum(1, np.abs(exact_logs))
            assert ok.all(), (case, sig, "logs")
            if not sig:   # exact_longdouble's logsumexp is of x, never of w
                assert abs(lse - exact_lse) <= 1e-17 * max(1, abs(exact_lse)), case


# ---------------------------------------------------------------------------------------
# Constants computed with mpmath


def test_logsumexp_tiny_tail():
    """logsumexp([0, -40]) = log1p(exp(-40)) ~ 4.25e-18: a naive log(1 + s) gives 0."""
    with mpmath.workdps(DIGITS):
        exact = float(mpmath.log(1 + mpmath.exp(-40)))
    assert abs(exact - 4.248354255291589e-18) <= 1e-15 * exact
    got = fs.logsumexp(np.array([0.0, -40.0]))
    assert abs(got - exact) <= 1e-15 * exact, got
    log_probs = fs.log_softmax(np.array([0.0, -40.0]))
    assert log_probs[0] != 0.0
    assert abs(log_probs[0] + exact) <= 1e-15 * exact, log_probs[0]
    assert log_probs[1] == -40.0 - exact   # rounds to -40 exactly


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_logsumexp_tiny_tail_long(dtype):
    """Many tiny terms next to one large: the tail adds up past log1p's threshold."""
    x = np.full(1001, -30.0, dtype=dtype)
    x[0] = 0.0
    with mpmath.workdps(DIGITS):
        exact = float(mpmath.log1p(1000 * mpmath.exp(-30)))
    got = fs.logsumexp(x)
    # relative, as for [0, -40]: an absolute 4u would let log(1 + s) through
    assert abs(float(got) - exact) <= FACTOR * unit_roundoff(dtype) * exact, (got, exact)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_softmax_of_two(dtype):
    """softmax([a, b])[1] = sigmoid(b - a), from mpmath, for gaps up to underflow."""
    gaps = [0.5, 1.0, 10.0, 30.0, 80.0] + ([300.0, 700.0] if dtype == np.float64 else [])
    for gap in gaps:
        x = np.array([gap, 0.0], dtype=dtype)
        with mpmath.workdps(DIGITS):
            small = mpmath.mpf(1) / (1 + mpmath.exp(mpmath.mpf(float(x[0]))))
            large = 1 - small
        got = fs.softmax(x)
        u = unit_roundoff(dtype)
        assert abs(float(got[1]) - float(small)) <= FACTOR * u * (1 + gap) * float(small), gap
        assert abs(float(got[0]) - float(large)) <= FACTOR * u * float(large), gap


@pytest.mark.parametrize("offset, shifted_fails",
                         [(-300.0, True), (-90.0, True), (1e30, False), (3e38, False)])
def test_sigsoftmax_rows_where_naive_formulas_fail(offset, shifted_fails):
    """float32 rows where exp(z)*sigmoid(z) (0/0 or inf/inf) and, for negative rows,
    'max-shift, then multiply by an unshifted sigmoid' (sigmoid underflows to 0) break
    down, against mpmath.  Around +1e30 distinct floats are >= 7e22 apart, so the row has
    ties to keep the answer a non-trivial distribution."""
    mpmath = pytest.importorskip("mpmath")
    steps = np.array([0.0, 0.0, -0.5, -1.0, -3.0]) * max(1.0, abs(offset) * 1e-7)
    z = (offset + steps).astype(np.float32)
    with mpmath.workdps(60):
        w = [2 * mpmath.mpf(float(v)) - mpmath.log1p(mpmath.exp(mpmath.mpf(float(v))))
             for v in z]                                 # 2z - softplus(z)
        top = max(w)
        total = mpmath.fsum(mpmath.exp(v - top) for v in w)
        exact = np.array([float(mpmath.exp(v - top) / total) for v in w])
    with np.errstate(all="ignore"):
        naive = np.exp(z) * (1 / (1 + np.exp(-z)))
        naive = naive / naive.sum()
        shifted = np.exp(z - z.max()) * (1 / (1 + np.exp(-z)))
        shifted = shifted / shifted.sum()
    tolerance = 1e-6 * np.maximum(exact, np.finfo(np.float32).tiny)
    assert not np.all(np.abs(naive - exact) <= tolerance)       # the row is adversarial
    assert shifted_fails == (not np.all(np.abs(shifted - exact) <= tolerance))
    got = fs.sigsoftmax(z)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, exact, rtol=1e-6, atol=np.finfo(np.float32).tiny)
