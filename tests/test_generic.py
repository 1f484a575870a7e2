"""fastsoft._generic (every public function on an array namespace `xp`) against the same
references as the CPU kernels, and against the CPU kernels themselves, with NumPy and
array-api-strict as the namespace.

Forward results are checked with `_arrays.assert_matches_reference` (the reference of
fastsoft._reference); backward results with test_backward's `assert_matches_formula`
(tests/_grad_reference.py); cross-entropy with the reference of tests/_grad_reference.py.
Agreement with the CPU kernels is "a few ulps": twice the spec's error bound (each side is
within it of the exact value), exact for NaN, infinities and masked entries.

array-api-strict has no float16: its float16 cases are skipped (NumPy runs them).  It is
an optional test dependency; its parameters skip when it is not installed.
"""

import re
import warnings

import numpy as np
import pytest
from numpy.exceptions import AxisError

import _grad_reference as ref
import fastsoft as fs
from _arrays import (
    FLOAT_DTYPES, INPUT_DTYPES, MASK_KINDS, NAMES, REGISTRY, TRANSFORMS,
    arrays, assert_matches_reference, make_mask, reference_result,
    result_dtype, tolerance,
)
from fastsoft import _generic, _reference
from test_backward import assert_matches_formula, named_cases, regular_cases, selected
from test_cross_entropy import (
    ACTIVATIONS, IGNORE_MODES, REDUCTIONS, RTOL, SHAPES, assert_close, make_logits,
    make_prob_target, make_problem, make_weight, options, reference_cross_entropy,
)

try:
    import array_api_strict
except ImportError:
    array_api_strict = None

NAMESPACES = [
    pytest.param(np, id="numpy"),
    pytest.param(array_api_strict, id="strict",
                 marks=pytest.mark.skipif(array_api_strict is None,
                                          reason="array-api-strict is not installed")),
]


@pytest.fixture(params=NAMESPACES)
def xp(request):
    return request.param


def axes_of(ndim):
    return [None, *range(-ndim, ndim)]


def dtype_id(dtype):
    return np.dtype(dtype).name


def supports(xp, dtype):
    return getattr(xp, np.dtype(dtype).name, None) is not None


def skip_unsupported(xp, *dtypes):
    for dtype in dtypes:
        if not supports(xp, dtype):
            pytest.skip(f"{xp.__name__} has no {np.dtype(dtype).name}")


def to_xp(xp, a):
    """A NumPy array (or None / Python value) as an array of xp."""
    if a is None or xp is np:
        return a
    a = np.asarray(a)
    # C order, native byte order, 0-d kept 0-d (np.ascontiguousarray would make it 1-d)
    return xp.asarray(np.array(a, dtype=a.dtype.newbyteorder("="), order="C"))


def to_np(a):
    """A result of any namespace as NumPy (NumPy scalars stay scalars)."""
    if isinstance(a, (np.ndarray, np.generic)):
        return a
    return np.from_dlpack(a)


def generic(name):
    return getattr(_generic, name)


def call(xp, name, x, axis=-1, **kwargs):
    """_generic.<name>(xp, x, ...) on NumPy inputs, the result as NumPy."""
    if "where" in kwargs:
        kwargs["where"] = to_xp(xp, kwargs["where"])
    return to_np(generic(name)(xp, to_xp(xp, x), axis=axis, **kwargs))


def assert_close_to_cpu(name, got, cpu, x, axis=-1, where=None, keepdims=False, factor=8.0):
    """`got` agrees with the CPU kernels' `cpu`: the same dtype and shape, the same NaN,
    infinities and masked entries, and finite values within the spec's bound."""
    got, cpu = np.asarray(got), np.asarray(cpu)
    assert got.dtype == cpu.dtype and got.shape == cpu.shape, (got.dtype, cpu.dtype,
                                                               got.shape, cpu.shape)
    special = ~np.isfinite(cpu)
    assert np.array_equal(got[special], cpu[special], equal_nan=True), (name, got, cpu)
    _, logs, _ = reference_result(name, x, axis, where, keepdims)
    with np.errstate(invalid="ignore"):
        bound = tolerance(REGISTRY[name].kind, cpu.astype(np.float64), logs, cpu.dtype, factor)
        error = np.abs(got.astype(np.float64) - cpu.astype(np.float64))
    wrong = ~special & ~(error <= bound)
    assert not wrong.any(), (f"{name}: differs from the CPU kernels\ngot {got!r}\n"
                             f"cpu {cpu!r}\naxis={axis} where={where!r}")


# ---------------------------------------------------------------------------------------
# Forward: reference and CPU over the adversarial arrays, every axis


@pytest.mark.parametrize("dtype", INPUT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", NAMES)
def test_forward(xp, name, dtype):
    skip_unsupported(xp, dtype)
    for case, x in arrays(dtype):
        for axis in axes_of(x.ndim):
            for keepdims in ((False, True) if REGISTRY[name].reduces else (False,)):
                kwargs = {"keepdims": keepdims} if REGISTRY[name].reduces else {}
                got = call(xp, name, x, axis, **kwargs)
                assert_matches_reference(name, got, x, axis, keepdims=keepdims)
                cpu = getattr(fs, name)(x, axis=axis, **kwargs)
                assert_close_to_cpu(name, got, cpu, x, axis, keepdims=keepdims)


MASK_CASES = ("normal_3x5", "normal_2x3x4", "normal_33", "normal*30_4x9",
              "neg_inf_entries_4x5", "all_neg_inf_row_3x4", "pos_inf_row_3x4",
              "nan_row_4x5", "ties_at_max_4x6", "random_2x3x4", "empty_3x0", "empty_0x5")


def assert_masked_entries(name, got, x, where):
    if REGISTRY[name].reduces or where is None:
        return
    masked = np.asarray(got)[~np.broadcast_to(where, np.shape(x))]
    fill = 0.0 if REGISTRY[name].kind == "prob" else -np.inf
    assert np.all(masked == fill), (name, masked)
    assert not np.signbit(masked[masked == 0]).any(), "masked entries must be +0.0"


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("dtype", (np.float16, np.float32, np.float64, np.int64),
                         ids=dtype_id)
@pytest.mark.parametrize("name", NAMES)
def test_forward_where(xp, name, dtype, kind):
    skip_unsupported(xp, dtype)
    checked = 0
    for case, x in arrays(dtype):
        if case not in MASK_CASES:
            continue
        for axis in axes_of(x.ndim):
            where = make_mask(kind, x.shape, axis, seed=len(case))
            got = call(xp, name, x, axis, where=where)
            assert_matches_reference(name, got, x, axis, where=where)
            assert_masked_entries(name, got, x, where)
            cpu = getattr(fs, name)(x, axis=axis, where=where)
            assert_close_to_cpu(name, got, cpu, x, axis, where)
            checked += 1
    assert checked


def make_out(xp, kind, shape, dtype):
    """(out array of xp, the NumPy buffer around it or None): fresh, Fortran or a strided
    view (the latter two NumPy only)."""
    if kind == "fresh":
        return to_xp(xp, np.full(shape, 7.0, dtype=dtype)), None
    if kind == "fortran":
        out = np.full(shape, 7.0, dtype=dtype, order="F")
        return out, None
    big = np.full(tuple(2 * n + 1 for n in shape), 7.0, dtype=dtype)
    return big[tuple(slice(None, 0, -2) for _ in shape) + (Ellipsis,)], big


OUT_CASES = ("normal_7", "normal_3x5", "normal_2x3x4", "offset+1e+04_4x6", "ties_at_max_4x6",
             "neg_inf_entries_2x3x4", "all_neg_inf_row_3x4", "nan_row_4x5", "random_3x5",
             "random_2x3x4", "extremes_2x3", "empty_2x0x3", "empty_0x5")
OUT_PARAMS = [
    pytest.param(name, dtype, kind, id=f"{name}-{dtype_id(dtype)}-{kind}")
    for name in NAMES
    for dtype in (np.float16, np.float32, np.float64, np.int64)
    for kind in ("fresh", "fortran", "strided", "inplace")
    # in place needs an input of the result's shape and dtype
    if kind != "inplace" or (np.dtype(dtype).kind == "f" and not REGISTRY[name].reduces)
]


@pytest.mark.parametrize("name, dtype, kind", OUT_PARAMS)
def test_forward_out(xp, name, dtype, kind):
    """out= is returned, holds exactly the result without out=, and nothing outside it
    is written; in place (out=x) gives the same values."""
    skip_unsupported(xp, dtype)
    if kind in ("fortran", "strided") and xp is not np:
        pytest.skip("memory layouts are NumPy's")
    func = generic(name)
    for case, x in arrays(dtype):
        if case not in OUT_CASES:
            continue
        for axis in axes_of(x.ndim):
            for mask_kind in ("none", "full_rows"):
                where = to_xp(xp, make_mask(mask_kind, x.shape, axis))
                expected = to_np(func(xp, to_xp(xp, x), axis=axis, where=where))
                if kind == "inplace":
                    out = to_xp(xp, x.copy())
                    got = func(xp, out, axis=axis, where=where, out=out)
                    assert got is out
                    assert np.array_equal(to_np(out), expected, equal_nan=True), (case, axis)
                    continue
                out, big = make_out(xp, kind, np.shape(expected), expected.dtype)
                before = None if big is None else big.copy()
                got = func(xp, to_xp(xp, x), axis=axis, where=where, out=out)
                assert got is out
                assert np.array_equal(to_np(out), expected, equal_nan=True), (case, axis)
                if big is not None:
                    untouched = np.ones(big.shape, dtype=bool)
                    untouched[tuple(slice(None, 0, -2) for _ in np.shape(expected))] = False
                    assert np.all(big[untouched] == before[untouched])


# ---------------------------------------------------------------------------------------
# Forward special values


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", NAMES)
def test_fully_masked_rows(xp, name, dtype):
    """Masked values are NaN, +inf, -inf: no part taken; fully masked rows 0 / -inf."""
    skip_unsupported(xp, dtype)
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
        got = np.asarray(call(xp, name, x, -1, where=where))
    assert not np.isnan(got).any()
    if REGISTRY[name].reduces:
        assert got[1] == got[2] == -np.inf
    else:
        assert np.all(got[1:3] == (0.0 if REGISTRY[name].kind == "prob" else -np.inf))
    assert_matches_reference(name, got, x, -1, where=where)
    assert_masked_entries(name, got, x, where)
    everything = np.asarray(call(xp, name, x, None, where=np.zeros(x.shape, dtype=bool)))
    assert not np.isnan(everything).any()


@pytest.mark.parametrize("name", TRANSFORMS)
def test_masked_entries_of_undefined_rows(xp, name):
    x = np.array([[np.nan, 1.0, 2.0], [np.inf, 1.0, 2.0], [-np.inf, -np.inf, 2.0]])
    got = np.asarray(call(xp, name, x, -1, where=np.array([True, True, False])))
    assert np.isnan(got[:, :2]).all()
    assert np.all(got[:, 2] == (0.0 if REGISTRY[name].kind == "prob" else -np.inf))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", NAMES)
def test_special_rows(xp, name, dtype):
    """The NaN / inf table of docs/numerics.md, row by row."""
    skip_unsupported(xp, dtype)
    x = np.array([[-np.inf] * 4,                     # only -inf
                  [1.0, np.inf, 0.0, -np.inf],       # a +inf
                  [np.inf, np.inf, 1.0, 2.0],        # two +inf
                  [np.nan, 1.0, np.inf, 0.0],        # NaN beside +inf
                  [-np.inf, 0.0, -np.inf, 1.0],      # -inf among finite values
                  [2.0, -np.inf, -np.inf, -np.inf]], dtype=dtype)
    got = np.asarray(call(xp, name, x, -1))
    if REGISTRY[name].reduces:
        assert got[0] == -np.inf and got[1] == got[2] == np.inf and np.isnan(got[3])
        assert got[5] == 2.0
    else:
        assert np.isnan(got[:4]).all() and not np.isnan(got[4:]).any()
        inf_value = 0.0 if REGISTRY[name].kind == "prob" else -np.inf
        assert np.all(got[4:][x[4:] == -np.inf] == inf_value)
        assert got[5, 0] == (1.0 if REGISTRY[name].kind == "prob" else 0.0)
    assert_matches_reference(name, got, x, -1)
    assert_close_to_cpu(name, got, getattr(fs, name)(x, axis=-1), x)


def test_logsumexp_constants(xp):
    """The max term taken out of the sum, log1p: exact to the last bit."""
    got = call(xp, "logsumexp", np.array([0.0, -40.0]))
    assert float(got) == 4.248354255291589e-18
    got = call(xp, "log_softmax", np.array([0.0, -40.0]))
    assert float(got[0]) == -4.248354255291589e-18
    got = call(xp, "logsumexp", np.array([[1000.0, 1000.0, -np.inf]]))
    assert got[0] == 1000.0 + np.log(2.0)


SIGSOFTMAX_ROWS = {
    "around-300": [-300.0, -301.0, -299.5, -310.0],
    "around+1e30": [1e30, 1e30, 9.99e29, 1.01e30],
    "around-1e30": [-1e30, -1.001e30, -1e30, -2e30],
    "mixed": [-1e30, 0.0, 1e30, -300.0],
}


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=dtype_id)
@pytest.mark.parametrize("name", ("sigsoftmax", "log_sigsoftmax"))
def test_sigsoftmax_extreme_logits(xp, name, dtype):
    for row in SIGSOFTMAX_ROWS.values():
        x = np.array([row, np.linspace(-1, 1, 4)], dtype=dtype)
        got = np.asarray(call(xp, name, x, -1))
        assert np.isfinite(got).all(), got
        assert_matches_reference(name, got, x, -1)
        assert_close_to_cpu(name, got, getattr(fs, name)(x), x)
    big = float(np.finfo(dtype).max)
    x = np.array([[-0.9 * big, -0.8 * big, -0.85 * big]], dtype=dtype)
    got = np.asarray(call(xp, name, x, -1))
    assert not np.isnan(got).any()
    assert_matches_reference(name, got, x, -1)


def test_float16_computes_in_float32():
    x = np.random.default_rng(3).standard_normal((5, 50)).astype(np.float16) * 8
    for name in NAMES:
        half = np.asarray(generic(name)(np, x, -1))
        single = np.asarray(generic(name)(np, x.astype(np.float32), -1))
        assert half.dtype == np.float16
        assert np.array_equal(half, single.astype(np.float16)), name


@pytest.mark.parametrize("name", NAMES)
def test_shapes(xp, name):
    """Zero rows, zero-length axis, axis=None, 0-d input, keepdims."""
    reduces = REGISTRY[name].reduces
    got = call(xp, name, np.empty((0, 5), dtype=np.float32), -1)
    assert got.dtype == np.float32 and got.shape == ((0,) if reduces else (0, 5))
    got = call(xp, name, np.empty((3, 0)), -1)
    assert got.shape == ((3,) if reduces else (3, 0))
    if reduces:
        assert np.all(got == -np.inf)
        assert call(xp, name, np.empty((3, 0)), None) == -np.inf
        assert call(xp, name, np.empty((3, 0)), -1, keepdims=True).shape == (3, 1)
    for value in (np.float64(3.5), np.array(-2.0, dtype=np.float32)):
        got = np.asarray(call(xp, name, np.asarray(value), None))
        assert got.shape == ()
        assert got == {"prob": 1.0, "log": 0.0}.get(REGISTRY[name].kind, float(value))
        assert got.dtype == result_dtype(np.asarray(value).dtype)
    x = np.random.default_rng(5).standard_normal((3, 4, 2))
    flat = np.asarray(call(xp, name, x.ravel(), -1))
    whole = np.asarray(call(xp, name, x, None))
    assert np.array_equal(whole, flat if reduces else flat.reshape(x.shape))


def test_logsumexp_scalar_result(xp):
    """A 0-d logsumexp: a NumPy scalar for NumPy (as fs.logsumexp), a 0-d array else."""
    x = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    got = _generic.logsumexp(xp, to_xp(xp, x), None)
    if xp is np:
        assert isinstance(got, np.float32) and got == fs.logsumexp(x, None)
    else:
        assert got.ndim == 0 and got.dtype == xp.float32
    out = to_xp(xp, np.empty((), dtype=np.float32))
    assert _generic.logsumexp(xp, to_xp(xp, x), None, out=out) is out


def test_no_warnings():
    """fastsoft never warns: inf - inf and 0/0 give their NaN silently."""
    x = np.array([[np.inf, 1.0], [-np.inf, -np.inf], [np.nan, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in NAMES:
            generic(name)(np, x)
        _generic.cross_entropy(np, x, np.array([0, 1, -100]), return_grad=True)


# ---------------------------------------------------------------------------------------
# Forward argument errors


X = np.arange(12.0).reshape(3, 4) / 7


def result_shape(name, axis=-1):
    return (3,) if REGISTRY[name].reduces else (3, 4)


@pytest.mark.parametrize("name", NAMES)
def test_forward_errors(xp, name):
    func = generic(name)
    x = to_xp(xp, X)
    shape = result_shape(name)
    for bad in (np.complex128, np.complex64):
        with pytest.raises(TypeError):
            func(xp, to_xp(xp, np.ones((2, 3), dtype=bad)))
    if xp is np:
        for bad in (object, np.str_, np.longdouble):
            with pytest.raises(TypeError):
                func(xp, np.ones((2, 3)).astype(bad))
        with pytest.raises(TypeError):
            func(xp, np.empty((0, 3), dtype=np.complex128))
    for axis in (2, -3, 100):
        with pytest.raises(AxisError):
            func(xp, x, axis=axis)
    with pytest.raises(AxisError):
        func(xp, to_xp(xp, np.array(1.0)), axis=-1)
    for axis in (1.5, "a", [0], True):
        with pytest.raises(TypeError):
            func(xp, x, axis=axis)
    assert np.array_equal(to_np(func(xp, x, axis=np.int64(0))), to_np(func(xp, x, axis=0)))
    # out=: dtype, shape, type, read-only
    for dtype in (np.float32, np.int64):
        with pytest.raises(TypeError):
            func(xp, x, out=to_xp(xp, np.empty(shape, dtype=dtype)))
    with pytest.raises(TypeError):
        func(xp, to_xp(xp, X.astype(np.float32)), out=to_xp(xp, np.empty(shape)))
    for wrong in ((12,), (4, 3) if len(shape) == 2 else (4,), (1, 3, 4)):
        with pytest.raises(ValueError):
            func(xp, x, out=to_xp(xp, np.empty(wrong)))
    for out in (np.zeros(shape).tolist(), 0.0):
        with pytest.raises(TypeError):
            func(xp, x, out=out)
    if xp is not np:
        with pytest.raises(TypeError):   # a NumPy array is not an out= for another namespace
            func(xp, x, out=np.zeros(shape))
    else:
        read_only = np.empty(shape)
        read_only.flags.writeable = False
        with pytest.raises(ValueError):
            func(xp, x, out=read_only)
    # where=, num_threads=; nothing written on failure
    out = to_xp(xp, np.full(shape, 7.0))
    for where in (np.ones((3, 4), dtype=np.int64), np.ones((3, 4))):
        with pytest.raises(TypeError):
            func(xp, x, where=to_xp(xp, where), out=out)
    for where_shape in ((3,), (4, 3), (2, 3, 4)):
        with pytest.raises(ValueError):
            func(xp, x, where=to_xp(xp, np.ones(where_shape, dtype=bool)), out=out)
    with pytest.raises(ValueError):   # where= broadcasts to x, never x to where
        func(xp, to_xp(xp, np.ones((1, 4))), where=to_xp(xp, np.ones((3, 4), dtype=bool)))
    for bad in (0, -1):
        with pytest.raises(ValueError):
            func(xp, x, num_threads=bad, out=out)
    for bad in (1.5, "2"):
        with pytest.raises(TypeError):
            func(xp, x, num_threads=bad, out=out)
    assert np.all(to_np(out) == 7.0)
    assert np.array_equal(to_np(func(xp, x, num_threads=2)), to_np(func(xp, x)))
    with pytest.raises(TypeError):
        func(xp, x, -1, out)            # keyword-only
    if not REGISTRY[name].reduces:
        with pytest.raises(TypeError):
            func(xp, x, keepdims=True)


def test_error_messages_name_the_function(xp):
    with pytest.raises(TypeError, match="^log_softmax: "):
        _generic.log_softmax(xp, to_xp(xp, np.ones(3, dtype=np.complex128)))
    with pytest.raises(ValueError, match="^sigsoftmax: out "):
        _generic.sigsoftmax(xp, to_xp(xp, X), out=to_xp(xp, np.empty(3)))
    with pytest.raises(TypeError, match="^softmax_backward: "):
        _generic.softmax_backward(xp, to_xp(xp, X), to_xp(xp, X), out=to_xp(xp, np.empty(
            (3, 4), dtype=np.float32)))
    with pytest.raises(ValueError, match="^cross_entropy: "):
        _generic.cross_entropy(xp, to_xp(xp, X), to_xp(xp, np.zeros(3, dtype=np.int64)),
                               reduction="avg")


# ---------------------------------------------------------------------------------------
# Backward


BACKWARD = {
    # name: (sees the logits, reduces)
    "softmax": (False, False), "log_softmax": (False, False), "logsumexp": (True, True),
    "sigsoftmax": (True, False), "log_sigsoftmax": (True, False),
}


def backward(xp, name, g, x, y, axis=-1, *, cpu=False, **kwargs):
    """<name>_backward with its arguments in their order, NumPy in and out; cpu: fs's."""
    sees_x, _ = BACKWARD[name]
    if name == "logsumexp":
        args = (g, x, y)
    else:
        args = (g, y, x) if sees_x else (g, y)
    if cpu:
        return getattr(fs, name + "_backward")(*args, axis, **kwargs)
    if "where" in kwargs:
        kwargs["where"] = to_xp(xp, kwargs["where"])
    func = generic(name + "_backward")
    return to_np(func(xp, *(to_xp(xp, a) for a in args), axis, **kwargs))


def forward(name, x, axis=-1, where=None, keepdims=False):
    func = getattr(fs, name)
    if BACKWARD[name][1]:
        return np.asarray(func(x, axis=axis, where=where, keepdims=keepdims))
    return func(x, axis=axis, where=where)


def random_like(a, seed=0):
    a = np.asarray(a)
    return np.random.default_rng(seed).standard_normal(a.shape).astype(a.dtype)


def assert_backward_close_to_cpu(got, cpu, scale, factor=8):
    """Within factor * u * (the formula's term sizes) of the CPU's, specials exact."""
    got, cpu = np.asarray(got), np.asarray(cpu)
    assert got.dtype == cpu.dtype and got.shape == cpu.shape
    special = ~np.isfinite(cpu)
    assert np.array_equal(got[special], cpu[special], equal_nan=True), (got, cpu)
    u = float(np.finfo(np.float32 if cpu.dtype != np.float64 else np.float64).epsneg)
    if cpu.dtype == np.float16:
        u = float(np.finfo(np.float16).epsneg)
    bound = factor * u * (np.abs(scale) + np.abs(cpu)) + float(np.finfo(cpu.dtype).tiny)
    error = np.abs(got.astype(np.float64) - cpu.astype(np.float64))
    assert np.all(special | (error <= bound)), (got, cpu)


def backward_scale(name, g, x, y, axis, where):
    if name == "logsumexp":
        return ref.backward_error_scale(name, g, x=x, result=y, axis=axis, where=where)
    return ref.backward_error_scale(name, g, y=y, x=x, axis=axis, where=where)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", tuple(BACKWARD))
def test_backward(xp, name, dtype):
    skip_unsupported(xp, dtype)
    for case, x in regular_cases(dtype):
        for axis in axes_of(x.ndim):
            for keepdims in ((False, True) if BACKWARD[name][1] else (False,)):
                y = forward(name, x, axis, keepdims=keepdims)
                g = random_like(y, seed=len(case))
                got = backward(xp, name, g, x, y, axis)
                assert_matches_formula(name, got, g, x, y, axis)
                cpu = backward(xp, name, g, x, y, axis, cpu=True)
                assert_backward_close_to_cpu(got, cpu, backward_scale(name, g, x, y, axis,
                                                                      None))


BACKWARD_MASK_CASES = ("normal(3,5)", "normal(2,3,4)", "normal*30(4,9)",
                       "neg_inf_entries(4,5)", "all_neg_inf_row(3,4)", "ties(4,6)",
                       "empty(3,0)", "empty(0,5)")


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", tuple(BACKWARD))
def test_backward_where(xp, name, dtype, kind):
    skip_unsupported(xp, dtype)
    for case, x in selected(dtype, BACKWARD_MASK_CASES):
        for axis in axes_of(x.ndim):
            where = make_mask(kind, x.shape, axis, seed=len(case))
            y = forward(name, x, axis, where=where)
            g = random_like(y, seed=len(case) + 1)
            got = backward(xp, name, g, x, y, axis, where=where)
            assert_matches_formula(name, got, g, x, y, axis, where)
            if where is not None:
                assert np.all(got[~np.broadcast_to(where, x.shape)] == 0)
            cpu = backward(xp, name, g, x, y, axis, cpu=True, where=where)
            assert_backward_close_to_cpu(got, cpu, backward_scale(name, g, x, y, axis, where))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=dtype_id)
def test_backward_special_values(xp, dtype):
    """-inf logits: 0, g, 0, 0, 2g; all--inf rows: 0 where x is seen, NaN otherwise;
    fully masked rows 0 even with NaN/inf in the masked inputs."""
    skip_unsupported(xp, dtype)
    x = np.array([[0.5, -np.inf, 1.5, -np.inf, -2.0],
                  [-np.inf] * 5,
                  [1.0, 2.0, 3.0, 4.0, 5.0]], dtype=dtype)
    at_inf = {"softmax": 0, "sigsoftmax": 0, "logsumexp": 0, "log_softmax": 1,
              "log_sigsoftmax": 2}
    for name in BACKWARD:
        y = forward(name, x, -1)
        g = random_like(y, seed=5)
        got = backward(xp, name, g, x, y, -1)
        g_full = np.broadcast_to(g[:, None], x.shape) if BACKWARD[name][1] else g
        assert np.array_equal(got[0][x[0] == -np.inf], at_inf[name] * g_full[0][x[0] == -np.inf])
        assert np.all(np.isfinite(got[[0, 2]]))
        if name in ("softmax", "log_softmax"):
            assert np.all(np.isnan(got[1]))
        else:
            assert np.all(got[1] == 0)
        assert_matches_formula(name, got, g, x, y, -1)

    x = np.array([[1.0, 2.0, 3.0, 4.0],
                  [np.nan, np.inf, -np.inf, 1.0],
                  [-np.inf, -np.inf, -np.inf, -np.inf],
                  [0.5, np.nan, np.inf, -2.0]], dtype=dtype)
    where = np.array([[True, False, True, False], [False] * 4, [False] * 4,
                      [True, False, False, True]])
    for name in BACKWARD:
        y = forward(name, x, -1, where=where)
        g = random_like(y, seed=8)
        if not BACKWARD[name][1]:
            g[~where] = np.array([np.nan, np.inf, -np.inf, 1e4], dtype=dtype)[
                np.arange((~where).sum()) % 4]
        got = backward(xp, name, g, x, y, -1, where=where)
        assert not np.isnan(got).any() and np.all(got[~where] == 0), (name, got)
        assert_matches_formula(name, got, g, x, y, -1, where)


@pytest.mark.parametrize("name", tuple(BACKWARD))
def test_backward_out_and_errors(xp, name):
    x = named_cases(np.float64)["normal(2,3,4)"]
    for axis in axes_of(3):
        y = forward(name, x, axis)
        g = random_like(y, seed=16)
        expected = backward(xp, name, g, x, y, axis)
        out = to_xp(xp, np.full(x.shape, 7.0))
        got_out = backward(xp, name, g, x, y, axis, out=out)
        assert np.array_equal(got_out, expected)
        if not BACKWARD[name][1]:     # out is grad_output itself
            sees_x = BACKWARD[name][0]
            g_xp = to_xp(xp, g)
            args = (g_xp, to_xp(xp, y), to_xp(xp, x)) if sees_x else (g_xp, to_xp(xp, y))
            assert generic(name + "_backward")(xp, *args, axis, out=g_xp) is g_xp
            assert np.array_equal(to_np(g_xp), expected)
    x = np.random.default_rng(17).standard_normal((3, 5))
    y = forward(name, x, -1)
    g = random_like(y)
    out = to_xp(xp, np.full((3, 5), 7.0))
    for bad, error in ((np.zeros((3, 4)), ValueError), (np.zeros((3, 5), np.float32), TypeError)):
        with pytest.raises(error):
            backward(xp, name, g, x, y, -1, out=to_xp(xp, bad))
    for axis in (2, -3):
        with pytest.raises(AxisError):
            backward(xp, name, g, x, y, axis, out=out)
    with pytest.raises(TypeError):
        backward(xp, name, g, x, y, 1.0, out=out)
    with pytest.raises(ValueError):
        backward(xp, name, g, x, y, -1, where=np.ones((2, 5), dtype=bool), out=out)
    with pytest.raises(TypeError):
        backward(xp, name, g, x, y, -1, where=np.ones((3, 5)), out=out)
    with pytest.raises(ValueError):
        backward(xp, name, g, x, y, -1, num_threads=0, out=out)
    with pytest.raises(TypeError):
        backward(xp, name, g.astype(np.complex128), x, y, -1)
    # shape mismatches
    if BACKWARD[name][1]:
        mismatches = [(g[:2], x, y, -1), (g, x, y[:2], -1), (np.zeros(5), x, y, -1),
                      (np.zeros((3, 1, 1)), x, y, -1), (g, x, np.float64(1.0), -1),
                      (g, x, y, None)]
    else:
        mismatches = [(g[:, :4], x, y, -1), (g.T, x, y, -1), (g[:1], x, y, -1),
                      (g, x, y[0], -1)]
        if BACKWARD[name][0]:
            mismatches.append((g, x[:1], y, -1))
    for bad_g, bad_x, bad_y, axis in mismatches:
        with pytest.raises(ValueError):
            backward(xp, name, bad_g, bad_x, bad_y, axis, out=out)
    assert np.all(to_np(out) == 7.0)


def test_backward_dtypes(xp):
    """float64 if any input is; float16 only if all are; values as the formula."""
    x64 = np.random.default_rng(12).standard_normal((3, 6))
    dtypes = [d for d in FLOAT_DTYPES if supports(xp, d)]
    for name in BACKWARD:
        y64 = np.asarray(forward(name, x64, -1))
        g64 = random_like(y64, seed=13)
        for g_dtype in dtypes:
            for y_dtype in dtypes:
                for x_dtype in (dtypes if BACKWARD[name][0] else (np.float64,)):
                    g, y, x = g64.astype(g_dtype), y64.astype(y_dtype), x64.astype(x_dtype)
                    got = backward(xp, name, g, x, y, -1)
                    assert_matches_formula(name, got, g, x, y, -1)
                    cpu = backward(xp, name, g, x, y, -1, cpu=True)
                    assert got.dtype == cpu.dtype


def test_logsumexp_backward_reduced_shapes(xp):
    x = np.random.default_rng(14).standard_normal((3, 4, 5))
    for axis in range(-3, 3):
        r = fs.logsumexp(x, axis=axis)
        g = random_like(r, seed=15)
        expected = backward(xp, "logsumexp", g, x, r, axis)
        got = backward(xp, "logsumexp", np.expand_dims(g, axis), x,
                       fs.logsumexp(x, axis=axis, keepdims=True), axis)
        assert np.array_equal(got, expected)
    r = fs.logsumexp(x, axis=None)
    expected = backward(xp, "logsumexp", np.float64(0.75), x, r, None)
    assert_matches_formula("logsumexp", expected, np.float64(0.75), x, r, None)
    # grad_output broadcast to the result's shape
    r = fs.logsumexp(x, axis=1)
    got = backward(xp, "logsumexp", np.float64(0.5), x, r, 1)
    assert np.array_equal(got, backward(xp, "logsumexp", np.full(r.shape, 0.5), x, r, 1))


# ---------------------------------------------------------------------------------------
# cross_entropy


def ce(xp, logits, target, **kwargs):
    """_generic.cross_entropy on NumPy inputs; (loss, grad) as NumPy."""
    for key in ("weight", "grad_output", "grad_out"):
        if isinstance(kwargs.get(key), np.ndarray):
            kwargs[key] = to_xp(xp, kwargs[key])
    result = _generic.cross_entropy(xp, to_xp(xp, logits), to_xp(xp, target), **kwargs)
    if kwargs.get("return_grad"):
        return to_np(result[0]), to_np(result[1])
    return to_np(result)


def cpu_rtol(dtype):
    return 8 * float(np.finfo(dtype).epsneg)


def cpu_gradient_rtol(logits, dtype, activation):
    """cpu_rtol, widened for float32 sigsoftmax by the spec's (1 + |gap|) factor: the CPU
    kernels form float32 gaps in float, each probability within 4u (1 + |g|)
    (docs/numerics.md), where the generic path works in the row's dtype differently."""
    rtol = cpu_rtol(dtype)
    if activation == "sigsoftmax" and np.dtype(dtype) == np.float32:
        with np.errstate(all="ignore"):
            gaps = np.abs(_reference.log_sigsoftmax(logits.astype(np.float64), axis=1))
        rtol *= 1 + float(np.max(gaps[np.isfinite(gaps)], initial=0.0))
    return rtol


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=dtype_id)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("target_kind", ("index", "prob"))
def test_cross_entropy(xp, target_kind, activation, dtype):
    """The whole option grid against the reference and the CPU kernels."""
    rtol = RTOL[np.dtype(dtype)]
    for shape_kind in SHAPES:
        for weight_kind in (None, "random"):
            for mode in IGNORE_MODES:
                logits, target, weight, ignore_index = make_problem(
                    SHAPES[shape_kind], dtype, target_kind, weight_kind, mode, seed=11)
                for label_smoothing in (0.0, 0.1):
                    for reduction in REDUCTIONS:
                        kwargs = options(weight, ignore_index, reduction, label_smoothing,
                                         activation)
                        loss, grad = ce(xp, logits, target, axis=1, return_grad=True,
                                        **kwargs)
                        what = f"{shape_kind} {weight_kind} {mode} {kwargs}"
                        expected = reference_cross_entropy(logits, target, 1, **kwargs)
                        assert_close(loss, expected[0], rtol, expected[2], "loss " + what)
                        assert_close(grad, expected[1], rtol, expected[3], "grad " + what)
                        cpu_loss, cpu_grad = fs.cross_entropy(logits, target, axis=1,
                                                              return_grad=True, **kwargs)
                        assert loss.dtype == cpu_loss.dtype and grad.dtype == cpu_grad.dtype
                        if xp is np:
                            assert type(loss) is type(cpu_loss)
                        assert_close(loss, cpu_loss, cpu_rtol(dtype), expected[2],
                                     "loss vs cpu " + what)
                        assert_close(grad, cpu_grad, cpu_gradient_rtol(logits, dtype, activation),
                                     expected[3], "grad vs cpu " + what)
                        only_loss = ce(xp, logits, target, axis=1, **kwargs)
                        assert np.array_equal(only_loss, loss, equal_nan=True)
                        if mode == "all" and target_kind == "index":
                            if reduction == "mean":
                                assert np.isnan(loss)
                            assert np.all(grad == 0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_cross_entropy_axes_and_grad_output(xp, activation):
    logits, target, weight, ignore_index = make_problem(SHAPES["nd"], np.float64, "index",
                                                        "random", "inside", seed=51)
    q = make_prob_target(SHAPES["nd"], np.float64, seed=52)
    loss_shape = target.shape
    per_row = np.random.default_rng(4).uniform(-3, 3, loss_shape)
    for tgt in (target, q):
        for reduction, go in (("mean", 2.5), ("sum", -0.75), ("none", per_row),
                              ("none", 1.0), ("mean", np.float64(3.0))):
            kwargs = options(weight, ignore_index, reduction, 0.1, activation)
            loss, grad = ce(xp, logits, tgt, axis=1, return_grad=True, grad_output=go,
                            **kwargs)
            expected = reference_cross_entropy(logits, tgt, 1, grad_output=go, **kwargs)
            assert_close(loss, expected[0], 1e-12, expected[2], "loss")
            assert_close(grad, expected[1], 1e-12, expected[3], "grad")
            cpu = fs.cross_entropy(logits, tgt, axis=1, return_grad=True, grad_output=go,
                                   **kwargs)
            assert_close(grad, cpu[1], cpu_rtol(np.float64), expected[3], "grad vs cpu")
        kwargs = options(weight, ignore_index, "mean", 0.1, activation)
        loss, grad = ce(xp, logits, tgt, axis=1, return_grad=True, **kwargs)
        for position in (0, 2, 3, -1):
            moved = np.moveaxis(logits, 1, position)
            moved_target = np.moveaxis(tgt, 1, position) if tgt is q else tgt
            got_loss, got_grad = ce(xp, moved, moved_target, axis=position, return_grad=True,
                                    **kwargs)
            assert_close(got_loss, loss, 1e-12, None, f"loss axis={position}")
            assert_close(np.moveaxis(got_grad, position, 1), grad, 1e-12, 1.0,
                         f"grad axis={position}")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_cross_entropy_grad_out(xp, activation):
    """grad_out: a fresh buffer, and the logits themselves (the loss is unchanged)."""
    logits, target, weight, ignore_index = make_problem(SHAPES["nd"], np.float32, "index",
                                                        "random", "negative", seed=41)
    kwargs = options(weight, ignore_index, "mean", 0.1, activation)
    loss, grad = ce(xp, logits, target, axis=1, return_grad=True, **kwargs)
    fresh = to_xp(xp, np.full(logits.shape, 7.0, dtype=np.float32))
    result = _generic.cross_entropy(xp, to_xp(xp, logits), to_xp(xp, target), axis=1,
                                    return_grad=True, grad_out=fresh,
                                    **dict(kwargs, weight=to_xp(xp, weight)))
    assert result[1] is fresh and np.array_equal(to_np(fresh), grad)
    buffer = to_xp(xp, logits.copy())
    result = _generic.cross_entropy(xp, buffer, to_xp(xp, target), axis=1, return_grad=True,
                                    grad_out=buffer, **dict(kwargs, weight=to_xp(xp, weight)))
    assert result[1] is buffer
    assert np.array_equal(to_np(result[0]), loss) and np.array_equal(to_np(buffer), grad)
    if xp is np:      # a strided view of the logits, overwritten in place
        big = np.zeros(tuple(2 * n + 1 for n in logits.shape), dtype=np.float32)
        view = big[tuple(slice(1, None, 2) for _ in logits.shape)]
        view[...] = logits
        result = _generic.cross_entropy(np, view, target, axis=1, return_grad=True,
                                        grad_out=view, **kwargs)
        assert result[1] is view and np.array_equal(view, grad)


def test_cross_entropy_dtypes(xp):
    """Loss and gradient take the logits' result dtype (float16 computed in float32,
    integers in float64), whatever the weight's and probability target's dtype."""
    rng = np.random.default_rng(62)
    pairs = ((np.float32, np.float64), (np.float64, np.float32), (np.float16, np.float64),
             (np.int64, np.float32))
    for logits_dtype, other_dtype in pairs:
        if not supports(xp, logits_dtype):
            continue
        logits = (4 * rng.standard_normal((4, 5))).astype(logits_dtype)
        weight = rng.uniform(0.5, 1.5, 5).astype(other_dtype)
        q = rng.dirichlet(np.ones(5), 4).astype(other_dtype)
        for target in (np.array([0, 4, 2, 1]), q):
            for reduction in REDUCTIONS:
                kwargs = options(weight, None, reduction, 0.1, "softmax")
                loss, grad = ce(xp, logits, target, return_grad=True, **kwargs)
                cpu_loss, cpu_grad = fs.cross_entropy(logits, target, return_grad=True,
                                                      **kwargs)
                assert loss.dtype == cpu_loss.dtype and grad.dtype == cpu_grad.dtype
                assert np.shape(loss) == np.shape(cpu_loss)
                out_dtype = cpu_grad.dtype
                rtol = 2.0 ** -10 if out_dtype == np.float16 else cpu_rtol(out_dtype)
                _, _, loss_scale, grad_scale = reference_cross_entropy(logits, target, 1,
                                                                       **kwargs)
                assert_close(loss, cpu_loss, rtol, loss_scale, "loss")
                assert_close(grad, cpu_grad, rtol,
                             np.asarray(grad_scale) + np.finfo(out_dtype).tiny / rtol, "grad")
    # every integer dtype of the labels gives the same loss and gradient
    logits = rng.standard_normal((2, 3))
    loss, grad = ce(xp, logits, np.array([0, 2]), return_grad=True)
    for dtype in (np.int8, np.uint8, np.int16, np.uint32, np.uint64):
        got_loss, got_grad = ce(xp, logits, np.array([0, 2], dtype=dtype), return_grad=True)
        assert np.array_equal(got_loss, loss) and np.array_equal(got_grad, grad), dtype


def test_cross_entropy_special_values(xp):
    """-inf logits; 0 * log 0 = 0 for probability targets; extreme sigsoftmax logits;
    the empty batch."""
    logits = make_logits((4, 5), np.float64, seed=91)
    logits[0, 2] = -np.inf
    logits[1, [0, 4]] = -np.inf
    logits[2, 1] = -np.inf
    target = np.array([1, 4, 3, 0])
    for activation in ACTIVATIONS:
        for reduction in REDUCTIONS:
            kwargs = options(make_weight("random", np.float64), 3, reduction, 0.1,
                             activation)
            loss, grad = ce(xp, logits, target, return_grad=True, **kwargs)
            expected = reference_cross_entropy(logits, target, 1, **kwargs)
            assert_close(loss, expected[0], 1e-12, expected[2], "loss")
            assert_close(grad, expected[1], 1e-12, expected[3], "grad")
            assert np.all(np.isfinite(grad))
    q = make_prob_target((4, 5), np.float64, seed=93)
    q[0, 2] = q[1, 0] = q[1, 4] = q[2, 1] = 0.0
    for activation in ACTIVATIONS:
        loss, grad = ce(xp, logits, q, return_grad=True, reduction="none",
                        activation=activation)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        assert grad[0, 2] == 0 and grad[1, 0] == 0
        cpu = fs.cross_entropy(logits, q, return_grad=True, reduction="none",
                               activation=activation)
        assert_close(loss, cpu[0], 1e-14, 1.0, "loss vs cpu")
        assert_close(grad, cpu[1], 1e-14, 1.0, "grad vs cpu")
    for dtype in (np.float32, np.float64):
        for offset in (-1e30, -300.0, 1e4):
            z = (offset + make_logits((4, 5), np.float64, seed=95)).astype(dtype)
            kwargs = options(None, None, "mean", 0.1, "sigsoftmax")
            loss, grad = ce(xp, z, np.array([0, 1, 2, 3]), return_grad=True, **kwargs)
            expected = reference_cross_entropy(z, np.array([0, 1, 2, 3]), 1, **kwargs)
            assert_close(loss, expected[0], RTOL[np.dtype(dtype)], expected[2], "loss")
            assert_close(grad, expected[1], RTOL[np.dtype(dtype)], expected[3], "grad")
    for empty_target in (np.zeros(0, dtype=np.int64), np.zeros((0, 5))):
        for reduction in REDUCTIONS:
            loss, grad = ce(xp, np.zeros((0, 5)), empty_target, reduction=reduction,
                            return_grad=True)
            cpu_loss, _ = fs.cross_entropy(np.zeros((0, 5)), empty_target,
                                           reduction=reduction, return_grad=True)
            assert np.array_equal(loss, cpu_loss, equal_nan=True) and grad.shape == (0, 5)


def test_cross_entropy_undefined_rows(xp):
    """Rows with a NaN or +inf logit have NaN loss and gradient (the whole row, as the
    forward's NaN rows; docs/gradients.md); so has a row of only -inf.  The other rows are
    untouched, and every row without +inf matches the CPU kernels NaN for NaN."""
    x = np.array([[1.0, np.inf, 0.0], [np.nan, 1.0, 2.0], [1.0, 2.0, 3.0], [np.inf, 0, 1],
                  [-np.inf] * 3, [-np.inf, 0.0, 1.0]])
    t = np.array([0, 1, 2, 0, 1, 2])
    q = make_prob_target((6, 3), np.float64, seed=3)
    undefined, regular = [0, 1, 3, 4], [2, 5]
    without_pos_inf = [1, 2, 4, 5]
    for activation in ACTIVATIONS:
        for smoothing in (0.0, 0.1):
            for target in (t, q):
                kwargs = dict(reduction="none", activation=activation,
                              label_smoothing=smoothing, return_grad=True)
                loss, grad = ce(xp, x, target, **kwargs)
                assert np.isnan(loss[undefined]).all(), (kwargs, loss)
                assert np.isnan(grad[undefined]).all(), (kwargs, grad)
                assert not np.isnan(loss[regular]).any() and not np.isnan(grad[regular]).any()
                cpu_loss, cpu_grad = fs.cross_entropy(x, target, **kwargs)
                rows = without_pos_inf
                assert np.array_equal(np.isnan(loss[rows]), np.isnan(cpu_loss[rows]))
                assert np.array_equal(np.isnan(grad[rows]), np.isnan(cpu_grad[rows]))
                assert_close(loss[regular], cpu_loss[regular], 1e-14, 1.0, "loss")
                assert_close(grad[regular], cpu_grad[regular], 1e-14, 1.0, "grad")


@pytest.mark.parametrize("bad", (5, -2, 1000, -101))
def test_label_out_of_range(xp, bad):
    logits, target, _, _ = make_problem(SHAPES["nd"], np.float64, "index", None, "default",
                                        seed=111)
    target[2, 1, 0] = bad
    target[2, 1, 2] = 7       # a later bad label: the first is named
    with pytest.raises(IndexError) as info:
        ce(xp, logits, target, axis=1)
    message = str(info.value)
    assert message.startswith("cross_entropy: ")
    assert re.search(rf"(?<![\d.]){re.escape(str(bad))}(?![\d.])", message), message
    assert re.search(r"(?<![\d.])2\W+1\W+0(?![\d.])", message), message
    buffer = to_xp(xp, logits.copy())
    with pytest.raises(IndexError):
        _generic.cross_entropy(xp, buffer, to_xp(xp, target), axis=1, return_grad=True,
                               grad_out=buffer)
    assert np.array_equal(to_np(buffer), logits), "written before the error"
    # a label equal to ignore_index is not checked, wherever it lies
    target[2, 1, 2] = 1
    assert np.isfinite(ce(xp, logits, target, axis=1, ignore_index=bad))


def test_cross_entropy_argument_errors(xp):
    logits, target, weight, _ = make_problem(SHAPES["2d"], np.float64, "index", "random",
                                             "default", seed=121)
    q = make_prob_target(SHAPES["2d"], np.float64, seed=122)
    grad_out = to_xp(xp, np.full(logits.shape, 7.0))
    for kwargs in (dict(reduction="avg"), dict(activation="relu"), dict(label_smoothing=-0.1),
                   dict(label_smoothing=float("nan")), dict(weight=np.ones(6)),
                   dict(weight=np.ones((5, 1)))):
        for tgt in (target, q):
            with pytest.raises(ValueError):
                ce(xp, logits, tgt, return_grad=True, grad_out=grad_out, **kwargs)
    for bad_target in (q[:, :-1], q[:-1], target[:-1], target[:, None]):
        with pytest.raises(ValueError):
            ce(xp, logits, bad_target)
    with pytest.raises((ValueError, TypeError)):
        ce(xp, logits, target.astype(np.float64))
    with pytest.raises(TypeError):
        ce(xp, logits, target.astype(bool))
    with pytest.raises(TypeError):
        ce(xp, logits, target, weight=np.ones(5, dtype=np.complex128))
    with pytest.raises(ValueError):
        ce(xp, logits, target, grad_output=2.0)
    with pytest.raises(ValueError):
        ce(xp, logits, target, grad_out=grad_out)
    for reduction, go in (("none", np.ones(5)), ("mean", np.ones(6))):
        with pytest.raises(ValueError):
            ce(xp, logits, target, reduction=reduction, grad_output=go, return_grad=True,
               grad_out=grad_out)
    for bad, error in ((np.zeros((6, 6)), ValueError), (np.zeros((6, 5), np.float32), TypeError)):
        with pytest.raises(error):
            ce(xp, logits, target, return_grad=True, grad_out=bad)
    with pytest.raises(TypeError):
        ce(xp, logits, target, return_grad=True, grad_out=np.zeros((6, 5)).tolist())
    for axis in (2, -3):
        with pytest.raises(AxisError):
            ce(xp, logits, target, axis=axis)
    with pytest.raises(TypeError):
        ce(xp, logits, target, axis=None)
    with pytest.raises(ValueError):
        ce(xp, np.float64(1.0), np.int64(0))
    with pytest.raises(ValueError):
        ce(xp, np.zeros((3, 0)), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError):
        ce(xp, logits, target, num_threads=0)
    assert np.all(to_np(grad_out) == 7.0)
