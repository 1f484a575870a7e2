"""Every public function against the NumPy reference, over dtypes, axes, layouts,
masks and out= arrays; and the special-value semantics one by one.
"""

import warnings

import numpy as np
import pytest

import fastsoft as fs
from _arrays import (
    FLOAT_DTYPES, INPUT_DTYPES, MASK_KINDS, NAMES, REGISTRY, TRANSFORMS,
    arrays, assert_matches_reference, layouts, make_mask, native_contiguous, result_dtype,
)

DTYPE_IDS = [np.dtype(d).name for d in INPUT_DTYPES]


def axes_of(ndim):
    """Every valid axis of an ndim array, negative ones included, and None."""
    return [None, *range(-ndim, ndim)]


def call(name, x, axis=-1, **kwargs):
    return getattr(fs, name)(x, axis=axis, **kwargs)


# ---------------------------------------------------------------------------------------
# Reference comparison over the adversarial arrays and every axis.


CASES = [
    pytest.param(dtype, case, id=f"{np.dtype(dtype).name}-{case}")
    for dtype in INPUT_DTYPES for case, _ in arrays(dtype)
]


@pytest.mark.parametrize("dtype, case", CASES)
@pytest.mark.parametrize("name", NAMES)
def test_matches_reference(name, dtype, case):
    x = dict(arrays(dtype))[case]
    for axis in axes_of(x.ndim):
        if REGISTRY[name].reduces:
            for keepdims in (False, True):
                got = call(name, x, axis, keepdims=keepdims)
                assert_matches_reference(name, got, x, axis, keepdims=keepdims)
        else:
            got = call(name, x, axis)
            assert_matches_reference(name, got, x, axis)


@pytest.mark.parametrize("name", NAMES)
def test_input_not_modified(name):
    for case, x in arrays(np.float64):
        before = x.copy()
        call(name, x, -1)
        assert np.array_equal(x, before, equal_nan=True), case


@pytest.mark.parametrize("name", NAMES)
def test_python_lists(name):
    for data in ([1.0, 2.0, 3.0], [[1, 2, 3], [4, 5, -6]], [[True, False], [False, False]]):
        got = call(name, data, -1)
        assert_matches_reference(name, got, np.asarray(data), -1)
        assert np.asarray(got).dtype == np.float64


# ---------------------------------------------------------------------------------------
# Layouts: a row's result does not depend on how the array is laid out in memory.

LAYOUT_DTYPES = (np.float16, np.float32, np.float64, np.int32)
LAYOUT_CASES = ("normal_3x5", "normal_2x3x4", "normal_7", "offset-1e+04_4x6",
                "neg_inf_entries_2x3x4", "nan_row_2x3x4", "all_neg_inf_row_3x4",
                "ties_at_max_4x6", "random_3x5", "random_2x3x4", "empty_2x0x3")
LAYOUT_NAMES = ("C", "F", "transposed", "stepped", "negative", "reversed_last",
                "stepped_reversed", "byteswapped", "unaligned")


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
@pytest.mark.parametrize("dtype", LAYOUT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_layout_invariance(name, dtype, layout):
    checked = 0
    for case, x in arrays(dtype):
        if case not in LAYOUT_CASES:
            continue
        views = dict(layouts(x))
        if layout not in views:
            continue
        view = views[layout]
        contiguous = native_contiguous(view)
        assert np.array_equal(view, contiguous, equal_nan=True)
        for axis in axes_of(view.ndim):
            got = call(name, view, axis)
            expected = call(name, contiguous, axis)
            assert np.asarray(got).dtype.type is np.asarray(expected).dtype.type
            assert np.array_equal(got, expected, equal_nan=True), (case, layout, axis)
            assert_matches_reference(name, got, contiguous, axis)
        checked += 1
    assert checked


# ---------------------------------------------------------------------------------------
# where=


MASK_CASES = ("normal_3x5", "normal_2x3x4", "normal_33", "normal*30_4x9",
              "neg_inf_entries_4x5", "all_neg_inf_row_3x4", "pos_inf_row_3x4",
              "nan_row_4x5", "ties_at_max_4x6", "random_2x3x4", "empty_3x0", "empty_0x5")


def assert_masked_entries(name, got, x, axis, where):
    """Masked-out entries are exactly 0 (probabilities) or -inf (logarithms)."""
    if REGISTRY[name].reduces or where is None:
        return
    mask = np.broadcast_to(where, np.shape(x))
    fill = 0.0 if REGISTRY[name].kind == "prob" else -np.inf
    masked = np.asarray(got)[~mask]
    assert np.all(masked == fill), (name, masked)
    if fill == 0.0:
        assert not np.signbit(masked).any(), "masked entries must be +0.0"


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("dtype", (np.float16, np.float32, np.float64, np.int64),
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_where(name, dtype, kind):
    checked = 0
    for case, x in arrays(dtype):
        if case not in MASK_CASES:
            continue
        for axis in axes_of(x.ndim):
            where = make_mask(kind, x.shape, axis, seed=len(case))
            got = call(name, x, axis, where=where)
            assert_matches_reference(name, got, x, axis, where=where)
            assert_masked_entries(name, got, x, axis, where)
            checked += 1
    assert checked


@pytest.mark.parametrize("name", NAMES)
def test_where_all_true_is_no_mask(name):
    for case, x in arrays(np.float64):
        if x.size:
            mask = np.ones(x.shape, dtype=bool)
            assert np.array_equal(call(name, x, -1, where=mask), call(name, x, -1),
                                  equal_nan=True), case


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_fully_masked_rows(name, dtype):
    """Fully masked rows: all 0 / all -inf / logsumexp -inf; no NaN, no warning.

    The masked values are the worst possible (NaN, +inf, -inf): they must take no part.
    """
    x = np.array([[1.0, 2.0, 3.0, 4.0],
                  [np.nan, np.inf, -np.inf, 1.0],
                  [-np.inf, -np.inf, -np.inf, -np.inf],
                  [0.5, np.nan, np.inf, -2.0]], dtype=dtype)
    where = np.array([[True, False, True, False],
                      [False, False, False, False],
                      [False, False, False, False],
                      [True, False, False, True]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = np.asarray(call(name, x, -1, where=where))
    assert not np.isnan(got).any()
    if REGISTRY[name].reduces:
        assert got[1] == got[2] == -np.inf
    else:
        fill = 0.0 if REGISTRY[name].kind == "prob" else -np.inf
        assert np.all(got[1:3] == fill)
    assert_matches_reference(name, got, x, -1, where=where)
    assert_masked_entries(name, got, x, -1, where)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_masked_entries_of_undefined_rows(name):
    """Masked-out entries are 0 / -inf even in a row that is NaN (the where= rule wins).

    Rows: an unmasked NaN, an unmasked +inf, all unmasked entries -inf.  The masked entry
    holds an ordinary value; the unmasked entries are NaN.
    """
    x = np.array([[np.nan, 1.0, 2.0], [np.inf, 1.0, 2.0], [-np.inf, -np.inf, 2.0]])
    where = np.array([True, True, False])
    got = np.asarray(call(name, x, -1, where=where))
    assert np.isnan(got[:, :2]).all()
    fill = 0.0 if REGISTRY[name].kind == "prob" else -np.inf
    assert np.all(got[:, 2] == fill), got


@pytest.mark.parametrize("name", NAMES)
def test_fully_masked_axis_none(name):
    x = np.arange(6.0).reshape(2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = np.asarray(call(name, x, None, where=np.zeros((2, 3), dtype=bool)))
    if REGISTRY[name].reduces:
        assert got.shape == () and got == -np.inf
    else:
        fill = 0.0 if REGISTRY[name].kind == "prob" else -np.inf
        assert got.shape == (2, 3) and np.all(got == fill)


# ---------------------------------------------------------------------------------------
# out=

OUT_KINDS = ("fresh", "fortran", "strided", "inplace")


def make_out(kind, x, shape, dtype):
    """An out= array of `kind` (filled with a sentinel), and the buffer around it."""
    if kind == "inplace":
        return x, None
    if kind == "fresh":
        out = np.full(shape, 7.0, dtype=dtype)
        return out, out
    if kind == "fortran":
        out = np.full(shape, 7.0, dtype=dtype, order="F")
        return out, out
    big = np.full(tuple(2 * n + 1 for n in shape), 7.0, dtype=dtype)
    return big[tuple(slice(None, 0, -2) for _ in shape) + (Ellipsis,)], big


OUT_PARAMS = [
    pytest.param(name, dtype, kind, id=f"{name}-{np.dtype(dtype).name}-{kind}")
    for name in NAMES
    for dtype in (np.float16, np.float32, np.float64, np.int64, np.bool_)
    for kind in OUT_KINDS
    # in place needs an input of the result's shape and dtype
    if kind != "inplace" or (np.dtype(dtype).kind == "f" and not REGISTRY[name].reduces)
]


@pytest.mark.parametrize("name, dtype, kind", OUT_PARAMS)
def test_out(name, dtype, kind):
    spec = REGISTRY[name]
    checked = 0
    for case, x in arrays(dtype):
        if x.ndim < 2 and case not in ("normal_7", "random_7"):
            continue
        for axis in axes_of(x.ndim):
            for mask_kind in ("none", "full_rows"):
                where = make_mask(mask_kind, x.shape, axis)
                expected = np.asarray(call(name, x, axis, where=where))
                if kind == "inplace" and (spec.reduces or x.dtype != expected.dtype):
                    continue
                source = x.copy() if kind == "inplace" else x
                out, buffer = make_out(kind, source, expected.shape, expected.dtype)
                before = None if buffer is None else buffer.copy()
                got = call(name, source, axis, out=out, where=where)
                assert got is out
                assert np.array_equal(out, expected, equal_nan=True), (case, axis, mask_kind)
                if kind == "strided":
                    # nothing outside the out= view is written
                    untouched = np.ones(buffer.shape, dtype=bool)
                    untouched[tuple(slice(None, 0, -2) for _ in expected.shape)] = False
                    assert np.all(buffer[untouched] == before[untouched])
                checked += 1
    assert checked


@pytest.mark.parametrize("keepdims", (False, True))
def test_logsumexp_out_shape(keepdims):
    x = np.random.default_rng(1).standard_normal((3, 4, 5))
    for axis in axes_of(3):
        expected = fs.logsumexp(x, axis, keepdims=keepdims)
        out = np.empty(np.shape(expected))
        assert fs.logsumexp(x, axis, keepdims=keepdims, out=out) is out
        assert np.array_equal(out, expected)


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", TRANSFORMS)
def test_in_place_every_layout(name, dtype):
    """fs.f(x, out=x) is x, with the values fs.f(x) has, whatever x's strides."""
    base = np.random.default_rng(2).standard_normal((3, 4, 5)).astype(dtype) * 4
    base[1, 2, 3] = -np.inf
    for axis in axes_of(3):
        for layout, _ in layouts(base):
            if layout == "byteswapped":
                continue
            # layouts() of a fresh copy: views of new memory, so writes stay local
            view = dict(layouts(base.copy()))[layout]
            expected = np.asarray(call(name, native_contiguous(view), axis))
            got = call(name, view, axis, out=view)
            assert got is view
            assert np.array_equal(view, expected, equal_nan=True), (layout, axis)


# ---------------------------------------------------------------------------------------
# dtype policy

@pytest.mark.parametrize("dtype", INPUT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_result_dtype(name, dtype):
    x = np.ones((2, 3), dtype=dtype)
    for axis in (-1, None):
        got = call(name, x, axis)
        assert np.asarray(got).dtype == result_dtype(dtype)


def test_float16_computes_in_float32():
    """float16 is computed in float32 and rounded once: it matches the float32 result."""
    x = np.random.default_rng(3).standard_normal((5, 50)).astype(np.float16) * 8
    for name in NAMES:
        half = np.asarray(call(name, x, -1))
        single = np.asarray(call(name, x.astype(np.float32), -1))
        assert half.dtype == np.float16
        assert np.array_equal(half, single.astype(np.float16)), name


def test_integers_compute_in_float64():
    x = np.array([[2**53 + 1, 2**53, 0]], dtype=np.int64)
    for name in NAMES:
        assert np.array_equal(call(name, x, -1), call(name, x.astype(np.float64), -1)), name


# ---------------------------------------------------------------------------------------
# Special values, one semantic each.

@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_all_neg_inf_row(name, dtype):
    x = np.array([[-np.inf] * 5, [0.0, 1.0, -np.inf, 2.0, -1.0]], dtype=dtype)
    got = np.asarray(call(name, x, -1))
    if REGISTRY[name].reduces:
        assert got[0] == -np.inf
    else:
        assert np.isnan(got[0]).all()
        assert not np.isnan(got[1]).any()
    assert_matches_reference(name, got, x, -1)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_pos_inf_row(name, dtype):
    for row in ([1.0, np.inf, 0.0, -np.inf], [np.inf, np.inf, 1.0, 2.0], [np.inf] * 4):
        x = np.array([row, [0.0, 1.0, 2.0, 3.0]], dtype=dtype)
        got = np.asarray(call(name, x, -1))
        if REGISTRY[name].reduces:
            assert got[0] == np.inf
        else:
            assert np.isnan(got[0]).all(), got
        assert_matches_reference(name, got, x, -1)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_nan_stays_in_its_row(name, dtype):
    rng = np.random.default_rng(4)
    for position in (0, 3, 8, 299):   # first, inside, past a SIMD width, last
        x = rng.standard_normal((4, 300)).astype(dtype)
        x[1, position] = np.nan
        x[2, position] = np.inf   # NaN beside +inf is NaN too
        x[2, (position + 1) % 300] = np.nan
        got = np.asarray(call(name, x, -1))
        assert np.isnan(got[1:3]).all()
        assert not np.isnan(got[[0, 3]]).any()
        assert_matches_reference(name, got, x, -1)
        clean = np.asarray(call(name, x[[0, 3]], -1))
        assert np.array_equal(got[[0, 3]], clean)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_neg_inf_entries(name, dtype):
    x = np.array([[-np.inf, 0.0, -np.inf, 1.0], [2.0, -np.inf, -np.inf, -np.inf]], dtype=dtype)
    got = np.asarray(call(name, x, -1))
    if REGISTRY[name].kind == "prob":
        assert np.all(got[x == -np.inf] == 0.0)
        assert got[1, 0] == 1.0
    elif REGISTRY[name].kind == "log":
        assert np.all(got[x == -np.inf] == -np.inf)
        assert got[1, 0] == 0.0
    else:
        assert got[1] == 2.0
    assert_matches_reference(name, got, x, -1)


@pytest.mark.parametrize("name", NAMES)
def test_length_one_rows(name):
    x = np.array([[3.0], [-1e300], [0.0]])
    got = np.asarray(call(name, x, -1))
    expected = {"prob": 1.0, "log": 0.0}.get(REGISTRY[name].kind)
    if expected is None:
        assert np.array_equal(got, x[:, 0])
    else:
        assert np.all(got == expected)


# ---------------------------------------------------------------------------------------
# Shapes: empty arrays, axis=None, keepdims, 0-d input.


@pytest.mark.parametrize("dtype", (np.float32, np.float64, np.int64), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_zero_rows(name, dtype):
    x = np.empty((0, 5), dtype=dtype)
    got = np.asarray(call(name, x, -1))
    assert got.dtype == result_dtype(dtype)
    assert got.shape == ((0,) if REGISTRY[name].reduces else (0, 5))


@pytest.mark.parametrize("name", NAMES)
def test_zero_length_axis(name):
    x = np.empty((3, 0), dtype=np.float32)
    got = np.asarray(call(name, x, -1))
    assert got.dtype == np.float32
    if REGISTRY[name].reduces:
        assert got.shape == (3,) and np.all(got == -np.inf)
        assert fs.logsumexp(x, -1, keepdims=True).shape == (3, 1)
    else:
        assert got.shape == (3, 0)
    # an empty row of an axis=None call: the whole empty array
    total = np.asarray(call(name, x, None))
    assert total.shape == (() if REGISTRY[name].reduces else (3, 0))
    if REGISTRY[name].reduces:
        assert total == -np.inf


@pytest.mark.parametrize("name", NAMES)
def test_axis_none_is_one_row(name):
    x = np.random.default_rng(5).standard_normal((3, 4, 2))
    got = np.asarray(call(name, x, None))
    flat = np.asarray(call(name, x.ravel(), -1))
    if REGISTRY[name].reduces:
        assert got.shape == ()
        assert got == flat
    else:
        assert got.shape == x.shape
        assert np.array_equal(got, flat.reshape(x.shape))
    assert_matches_reference(name, got, x, None)


def test_logsumexp_keepdims():
    x = np.random.default_rng(6).standard_normal((2, 3, 4))
    for axis in range(-3, 3):
        got = fs.logsumexp(x, axis, keepdims=True)
        expected_shape = list(x.shape)
        expected_shape[axis] = 1
        assert got.shape == tuple(expected_shape)
        assert np.array_equal(got, np.expand_dims(fs.logsumexp(x, axis), axis))
    got = fs.logsumexp(x, None, keepdims=True)
    assert got.shape == (1, 1, 1)
    assert got.ravel()[0] == fs.logsumexp(x, None)


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=lambda d: np.dtype(d).name)
def test_logsumexp_axis_none_is_0d(dtype):
    x = np.random.default_rng(7).standard_normal((3, 4)).astype(dtype)
    got = fs.logsumexp(x, None)
    assert np.ndim(got) == 0
    assert np.asarray(got).dtype == dtype
    assert_matches_reference("logsumexp", got, x, None)


@pytest.mark.parametrize("name", NAMES)
def test_0d_input_axis_none(name):
    for value in (np.float64(3.5), np.array(-2.0, dtype=np.float32), 7):
        got = np.asarray(call(name, value, None))
        assert got.shape == ()
        expected = {"prob": 1.0, "log": 0.0}.get(REGISTRY[name].kind, float(value))
        assert got == expected
        assert got.dtype == result_dtype(np.asarray(value).dtype)


# ---------------------------------------------------------------------------------------
# sigsoftmax far from 0: where exp(z) * sigmoid(z) over- or underflows.

SIGSOFTMAX_ROWS = {
    "around-300": [-300.0, -301.0, -299.5, -310.0],
    "around+1e30": [1e30, 1e30, 9.99e29, 1.01e30],
    "around-1e30": [-1e30, -1.001e30, -1e30, -2e30],
    "around+88": [88.0, 89.0, 90.0, 87.5],
    "around-90": [-90.0, -91.0, -89.0, -120.0],
    "mixed": [-1e30, 0.0, 1e30, -300.0],
}


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("row", SIGSOFTMAX_ROWS, ids=str)
@pytest.mark.parametrize("name", ("sigsoftmax", "log_sigsoftmax"))
def test_sigsoftmax_extreme_logits(name, row, dtype):
    x = np.array([SIGSOFTMAX_ROWS[row], np.linspace(-1, 1, 4)], dtype=dtype)
    got = np.asarray(call(name, x, -1))
    assert np.isfinite(got).all(), got
    assert_matches_reference(name, got, x, -1)


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ("sigsoftmax", "log_sigsoftmax"))
def test_sigsoftmax_near_float_max(name, dtype):
    """z = -0.9 * max: 2z overflows the dtype; the true result is still well defined."""
    big = float(np.finfo(dtype).max)
    x = np.array([[-0.9 * big, -0.8 * big, -0.85 * big]], dtype=dtype)
    got = np.asarray(call(name, x, -1))
    assert not np.isnan(got).any(), got
    assert_matches_reference(name, got, x, -1)
