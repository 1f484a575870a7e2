"""The five *_backward vector-Jacobian products against their formulas (the NumPy
reference, tests/_grad_reference.py), 4th-order finite differences of the forward
functions, and PyTorch autograd; over dtypes, axes, layouts, masks, out= and threads;
the special values one by one; argument errors.
"""

from dataclasses import dataclass

import numpy as np
import pytest
from numpy.exceptions import AxisError

import _grad_reference as ref
import fastsoft as fs
from _arrays import MASK_KINDS, arrays, make_mask

# ---------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class Op:
    name: str             # the forward; fs.<name>_backward is under test
    reference: object     # the VJP reference
    forward: object       # the forward reference (for finite differences)
    sees_x: bool          # the backward takes the logits x
    reduces: bool         # logsumexp: grad_output and result have the reduced shape

    @property
    def backward(self):
        return getattr(fs, self.name + "_backward")


OPS = {
    op.name: op
    for op in (
        Op("softmax", ref.softmax_backward, ref.softmax, False, False),
        Op("log_softmax", ref.log_softmax_backward, ref.log_softmax, False, False),
        Op("logsumexp", ref.logsumexp_backward, ref.logsumexp, True, True),
        Op("sigsoftmax", ref.sigsoftmax_backward, ref.sigsoftmax, True, False),
        Op("log_sigsoftmax", ref.log_sigsoftmax_backward, ref.log_sigsoftmax, True, False),
    )
}
NAMES = tuple(OPS)
FLOATS = (np.float16, np.float32, np.float64)


def axes_of(ndim):
    return [None, *range(-ndim, ndim)]


def forward(name, x, axis=-1, where=None, keepdims=False):
    """fastsoft's forward result: the `output` / `result` argument of the backward."""
    func = getattr(fs, name)
    if OPS[name].reduces:
        return func(x, axis=axis, where=where, keepdims=keepdims)
    return func(x, axis=axis, where=where)


def backward(name, g, x, y, axis=-1, **kwargs):
    """fs.<name>_backward with its arguments in their order."""
    func = OPS[name].backward
    if name == "logsumexp":
        return func(g, x, y, axis, **kwargs)
    if OPS[name].sees_x:
        return func(g, y, x, axis, **kwargs)
    return func(g, y, axis, **kwargs)


def reference(name, g, x, y, axis=-1, where=None, dtype=None):
    op = OPS[name]
    if name == "logsumexp":
        return op.reference(g, x, y, axis, where, dtype)
    if op.sees_x:
        return op.reference(g, y, x, axis, where, dtype)
    return op.reference(g, y, axis, where, dtype)


def error_scale(name, g, x, y, axis, where):
    if name == "logsumexp":
        return ref.backward_error_scale(name, g, x=x, result=y, axis=axis, where=where)
    return ref.backward_error_scale(name, g, y=y, x=x, axis=axis, where=where)


def random_like(a, dtype=None, seed=0):
    """grad_output: standard normal values of `a`'s shape (0-d for a scalar)."""
    a = np.asarray(a)
    rng = np.random.default_rng(seed)
    return rng.standard_normal(a.shape).astype(dtype or a.dtype)


def result_dtype(*inputs):
    """float64 if any input is float64; float16 only if all are float16 (native order)."""
    return np.result_type(*[np.asarray(a).dtype for a in inputs]).newbyteorder("=")


# ---------------------------------------------------------------------------------------
# Comparison with the formula


def assert_matches_formula(name, got, g, x, y, axis=-1, where=None, factor=None):
    """`got` is the formula's value on these very inputs, to the rounding of the compute
    precision (float32 for float16/float32 results) on the terms the formula adds.

    Bound: factor * u * scale + tiny, plus the rounding to the result dtype; with
    factor = 4 + (row length) for the sums.  The reference runs in long double for a
    float64 result.  NaN and infinities must match exactly.
    """
    inputs = (g, y, x) if OPS[name].sees_x else (g, y)
    out_dtype = result_dtype(*inputs)
    got_arr = np.asarray(got)
    assert got_arr.dtype == out_dtype, (got_arr.dtype, out_dtype)
    shape = np.shape(x if OPS[name].sees_x else y)
    assert got_arr.shape == shape, (got_arr.shape, shape)
    work = np.longdouble if out_dtype == np.float64 else np.float64
    compute = np.float32 if out_dtype != np.float64 else np.float64
    expected = reference(name, g, x, y, axis, where, dtype=work)
    scale = error_scale(name, g, x, y, axis, where)
    n_cols = int(np.prod(shape)) if axis is None else shape[axis]
    if factor is None:
        factor = 4 + n_cols
    u = float(np.finfo(compute).epsneg)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = expected.astype(out_dtype)
        special = ~np.isfinite(rounded)
        wrong = special & ~((got_arr == rounded) | (np.isnan(got_arr) & np.isnan(rounded)))
        # a float16 result is rounded twice (float32, then float16): the first rounding
        # may push it across a float16 midpoint, which the second then doubles
        twice = 2 if out_dtype != compute else 1
        bound = (twice * factor * u * scale + float(np.finfo(compute).tiny)
                 + float(np.finfo(out_dtype).tiny)
                 + np.abs(rounded.astype(work) - expected))
        error = np.abs(got_arr.astype(work) - expected)
        wrong |= ~special & ~(error <= bound)
    if wrong.any():
        index = tuple(int(k) for k in np.argwhere(wrong)[0]) if wrong.ndim else ()
        raise AssertionError(
            f"{name}_backward: {int(wrong.sum())} of {wrong.size} values wrong; first at "
            f"{index}: got {got_arr[index]!r}, expected {expected[index]!r} (error "
            f"{error[index]!r}, bound {bound[index]!r})\naxis={axis} where={where!r}\n"
            f"x={np.asarray(x)!r}\ngrad_output={np.asarray(g)!r}\noutput={np.asarray(y)!r}")


def named_cases(dtype):
    """This file's own small arrays by name (the shared generator's names may change)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(123)
    spread = {2: 20.0, 4: 110.0, 8: 760.0}[dtype.itemsize]
    ties = rng.standard_normal((4, 6))
    ties[:, [1, 4]] = ties.max(axis=1, keepdims=True) + 1
    neg_inf_2d = rng.standard_normal((4, 5))
    neg_inf_2d[1, [0, 3]] = -np.inf
    neg_inf_3d = rng.standard_normal((2, 3, 4))
    neg_inf_3d[1, 2, [1, 2]] = -np.inf
    neg_inf_3d[0, :, 0] = -np.inf
    all_neg_inf = rng.standard_normal((3, 4))
    all_neg_inf[2] = -np.inf
    made = {
        "normal(7,)": rng.standard_normal(7),
        "normal(3,5)": rng.standard_normal((3, 5)),
        "normal(2,3,4)": rng.standard_normal((2, 3, 4)),
        "normal(4,1)": rng.standard_normal((4, 1)),
        "normal(1,4)": rng.standard_normal((1, 4)),
        "normal(33,)": rng.standard_normal(33),
        "normal*30(4,9)": 30 * rng.standard_normal((4, 9)),
        "ties(4,6)": ties,
        "near+300(3,5)": 300 + 3 * rng.standard_normal((3, 5)),
        "offset-1e4(4,6)": -1e4 + 10 * rng.standard_normal((4, 6)),
        "spread(3,40)": -spread * rng.random((3, 40)),
        "neg_inf_entries(4,5)": neg_inf_2d,
        "neg_inf_entries(2,3,4)": neg_inf_3d,
        "all_neg_inf_row(3,4)": all_neg_inf,
        "empty(2,0,3)": np.zeros((2, 0, 3)),
        "empty(3,0)": np.zeros((3, 0)),
        "empty(0,5)": np.zeros((0, 5)),
    }
    return {name: values.astype(dtype) for name, values in made.items()}


def selected(dtype, names):
    cases = named_cases(dtype)
    return [(name, cases[name]) for name in names]


def regular_cases(dtype):
    """The shared adversarial arrays without NaN or +inf (whose gradients are not
    specified); -inf entries and all--inf rows stay."""
    for case, x in arrays(dtype):
        with np.errstate(invalid="ignore"):
            if np.isnan(x).any() or (x == np.inf).any():
                continue
        yield case, x


# ---------------------------------------------------------------------------------------
# (a) the formula, over the adversarial arrays, every axis, every float dtype


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_matches_formula(name, dtype):
    for case, x in regular_cases(dtype):
        for axis in axes_of(x.ndim):
            for keepdims in ((False, True) if OPS[name].reduces else (False,)):
                y = forward(name, x, axis, keepdims=keepdims)
                g = random_like(y, seed=len(case))
                got = backward(name, g, x, y, axis)
                assert_matches_formula(name, got, g, x, y, axis)


# ulps of u = eps/2 that the exponential's term of the log kinds may be off by: measured
# 1.3 (log_softmax, both dtypes), 2.0 (float32 log_sigsoftmax) and 4.2 (float64
# log_sigsoftmax: the sigmoid's error enters through 2 - sigmoid) on these inputs
EXP_TERM_ULPS = {("log_softmax", np.float32): 2, ("log_softmax", np.float64): 2,
                 ("log_sigsoftmax", np.float32): 3, ("log_sigsoftmax", np.float64): 5}


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ("log_softmax", "log_sigsoftmax"))
@pytest.mark.parametrize("n_cols", (7, 33, 1000, 5003))
def test_log_kinds_exp_term_to_a_few_ulps(name, dtype, n_cols):
    """With grad_output a one-hot row, sum(g) = 1 exactly and every other entry of the
    log kinds' VJP is -exp(y) (times 2 - sigmoid(x) for log_sigsoftmax): a direct check
    of the kernel's exponential of y, which test_matches_formula bounds only by the
    row's sum, (4 + n) u, on long rows."""
    rng = np.random.default_rng(n_cols)
    x = (rng.standard_normal((96, n_cols)) * 8).astype(dtype)
    y = getattr(fs, name)(x)
    g = np.zeros_like(x)
    g[:, 0] = 1
    got = fs.log_softmax_backward(g, y) if name == "log_softmax" else \
        fs.log_sigsoftmax_backward(g, y, x)
    exact = np.exp(y[:, 1:].astype(np.longdouble))
    if name == "log_sigsoftmax":
        exact *= 2 - 1 / (1 + np.exp(-x[:, 1:].astype(np.longdouble)))
    u = float(np.finfo(dtype).eps) / 2
    normal = exact > 4 * np.finfo(dtype).tiny
    error = np.abs(got[:, 1:].astype(np.longdouble) + exact)[normal] / (exact[normal] * u)
    assert normal.sum() > normal.size // 2
    assert error.max() <= EXP_TERM_ULPS[name, dtype], float(error.max())


@pytest.mark.parametrize("name", NAMES)
def test_python_scalars_and_lists(name):
    x = [[0.5, -1.0, 2.0], [3.0, 3.0, -4.0]]
    y = forward(name, np.asarray(x), -1)
    g = random_like(y, np.float64)
    got = backward(name, g.tolist(), x, np.asarray(y).tolist(), -1)
    assert_matches_formula(name, got, g, np.asarray(x), np.asarray(y), -1)


@pytest.mark.parametrize("name", NAMES)
def test_inputs_not_modified(name):
    for case, x in regular_cases(np.float64):
        y = np.asarray(forward(name, x, -1))
        g = random_like(y)
        saved = [a.copy() for a in (g, x, y)]
        backward(name, g, x, y, -1)
        for before, after in zip(saved, (g, x, y)):
            assert np.array_equal(before, after, equal_nan=True), case


# ---------------------------------------------------------------------------------------
# (b) finite differences of the forward (the reference, in long double)

FD_CASES = ("normal(7,)", "normal(3,5)", "normal(2,3,4)", "ties(4,6)", "near+300(3,5)",
            "normal(4,1)")


@pytest.mark.parametrize("mask_kind", ("none", "random", "full_rows", "broadcast_rows"))
@pytest.mark.parametrize("name", NAMES)
def test_finite_differences(name, mask_kind):
    """grad_output . J (the VJP) against 4th-order central differences of
    sum(v * forward(x)) over the unmasked entries, in long double."""
    op = OPS[name]
    rtol = 1e-11 if np.finfo(np.longdouble).eps < 1e-17 else 1e-8
    for case, x in selected(np.float64, FD_CASES):
        for axis in axes_of(x.ndim):
            where = make_mask(mask_kind, x.shape, axis, seed=len(case))
            y = forward(name, x, axis, where=where)
            v = random_like(y, seed=3)
            got = backward(name, v, x, y, axis, where=where)
            if op.reduces:   # rows with a member (a fully masked row's -inf is constant)
                taking_part = np.isfinite(op.forward(x, axis=axis, where=where))
            else:            # unmasked entries (masked ones are constant 0 or -inf)
                taking_part = np.broadcast_to(True if where is None else where, x.shape)

            def objective(z, v=v, axis=axis, where=where, taking_part=taking_part):
                value = op.forward(z, axis=axis, where=where, dtype=np.longdouble)
                return np.sum(np.where(taking_part, v * value, 0))

            step = 2.0 ** -10
            expected = ref.finite_difference_gradient(objective, x.astype(np.longdouble),
                                                      step)
            # the differences' own rounding: a few ulps of the objective's terms, over h
            value = op.forward(x, axis=axis, where=where, dtype=np.longdouble)
            terms = np.sum(np.where(taking_part, np.abs(v * value), 0))
            fd_error = 64 * float(np.finfo(np.longdouble).eps) * terms / step
            scale = np.maximum(np.abs(expected), error_scale(name, v, x, y, axis, where))
            error = np.abs(np.asarray(got, dtype=np.longdouble) - expected)
            assert np.all(error <= rtol * scale + fd_error), (
                f"{name}_backward vs finite differences: {case} axis={axis} "
                f"where={where!r}\ngot {got!r}\nexpected {expected!r}")


# ---------------------------------------------------------------------------------------
# (c) PyTorch autograd


def torch_vjp(name, x, g, axis):
    """x.grad after backward(g) through PyTorch's version of fs.<name>(x, axis)."""
    torch = pytest.importorskip("torch")
    # one thread: on these tiny problems PyTorch's thread pool costs ~100x the work
    torch.set_num_threads(1)
    functional = torch.nn.functional
    x_t = torch.tensor(x, requires_grad=True)
    flat = x_t.reshape(-1) if axis is None else x_t
    dim = 0 if axis is None else axis
    if name == "softmax":
        value = torch.softmax(flat, dim)
    elif name == "log_softmax":
        value = torch.log_softmax(flat, dim)
    elif name == "logsumexp":
        value = torch.logsumexp(flat, dim)
    else:
        w = 2 * flat - functional.softplus(flat)
        value = torch.softmax(w, dim) if name == "sigsoftmax" else torch.log_softmax(w, dim)
    g_t = torch.tensor(np.asarray(g)).reshape(value.shape)
    value.backward(g_t)
    return x_t.grad.numpy()


TORCH_CASES = ("normal(7,)", "normal(3,5)", "normal(2,3,4)", "normal*30(4,9)", "ties(4,6)",
               "near+300(3,5)", "neg_inf_entries(4,5)", "neg_inf_entries(2,3,4)",
               "spread(3,40)", "normal(1,4)")


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_against_torch(name, dtype):
    pytest.importorskip("torch")
    rtol = {np.float32: 1e-5, np.float64: 1e-12}[dtype]
    checked = 0
    for case, x in selected(dtype, TORCH_CASES):
        if name.startswith(("sig", "log_sig")) and np.abs(x[np.isfinite(x)]).max() >= 20:
            # PyTorch's softplus turns linear above 20, which moves its gradient by
            # ~exp(-20); stay below
            continue
        for axis in axes_of(x.ndim):
            if x.size and np.any(np.all(x == -np.inf, axis=axis)):
                continue   # all--inf rows: PyTorch's NaN differs by design (test_all_neg_inf_row)
            y = forward(name, x, axis)
            g = random_like(y, seed=checked)
            got = backward(name, g, x, y, axis)
            expected = torch_vjp(name, x, g, axis)
            scale = np.maximum(np.abs(expected), error_scale(name, g, x, y, axis, None))
            error = np.abs(np.asarray(got, dtype=np.float64) - expected)
            # plus the smallest normal: no relative promise for subnormal gradients
            assert np.all(error <= rtol * scale + np.finfo(dtype).tiny), (
                f"{name}_backward vs torch: {case} axis={axis}\ngot {got!r}\n"
                f"expected {expected!r}")
            checked += 1
    assert checked


# ---------------------------------------------------------------------------------------
# Special values


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_neg_inf_logit(dtype):
    """A -inf logit among finite ones: 0 (softmax, sigsoftmax, logsumexp), g_i
    (log_softmax), 2 g_i (log_sigsoftmax); the rest of the row as the formula."""
    x = np.array([[0.5, -np.inf, 1.5, -np.inf, -2.0],
                  [1.0, 2.0, 3.0, 4.0, 5.0]], dtype=dtype)
    expected_at_inf = {"softmax": 0, "sigsoftmax": 0, "logsumexp": 0,
                       "log_softmax": 1, "log_sigsoftmax": 2}
    for name in NAMES:
        for axis in (-1, None):
            y = forward(name, x, axis)
            g = random_like(y, seed=5)
            got = np.asarray(backward(name, g, x, y, axis))
            assert np.all(np.isfinite(got)), (name, got)
            g_full = g if not OPS[name].reduces else np.broadcast_to(
                g if axis is None else g[:, None], x.shape)
            at_inf = x == -np.inf
            assert np.array_equal(got[at_inf], expected_at_inf[name] * g_full[at_inf]), (
                name, axis, got)
            assert_matches_formula(name, got, g, x, y, axis)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_all_neg_inf_row(dtype):
    """A row of only -inf logits: all-zero gradients from the functions that see x; the
    documented NaN (the forward's NaN output) from softmax and log_softmax."""
    x = np.array([[0.5, -1.0, 1.5, 3.0],
                  [-np.inf, -np.inf, -np.inf, -np.inf],
                  [-np.inf, 2.0, -np.inf, -np.inf]], dtype=dtype)
    for name in NAMES:
        y = forward(name, x, -1)
        g = random_like(y, seed=6)
        got = np.asarray(backward(name, g, x, y, -1))
        if name in ("softmax", "log_softmax"):
            assert np.all(np.isnan(np.asarray(y)[1]))
            assert np.all(np.isnan(got[1])), (name, got)
        else:
            assert np.all(got[1] == 0), (name, got)
        assert np.all(np.isfinite(got[[0, 2]])), (name, got)
        assert_matches_formula(name, got, g, x, y, -1)
        # every logit -inf: the whole array as one row
        x_all = np.full((2, 3), -np.inf, dtype=dtype)
        y_all = forward(name, x_all, None)
        g_all = random_like(y_all, seed=7)
        got_all = np.asarray(backward(name, g_all, x_all, y_all, None))
        if name in ("softmax", "log_softmax"):
            assert np.all(np.isnan(got_all)), (name, got_all)
        else:
            assert np.all(got_all == 0), (name, got_all)


# ---------------------------------------------------------------------------------------
# where=

MASK_CASES = ("normal(3,5)", "normal(2,3,4)", "normal(33,)", "normal*30(4,9)",
              "neg_inf_entries(4,5)", "all_neg_inf_row(3,4)", "ties(4,6)", "empty(3,0)",
              "empty(0,5)")


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_where(name, dtype, kind):
    """Sums over the unmasked entries only; masked entries get exactly 0."""
    for case, x in selected(dtype, MASK_CASES):
        for axis in axes_of(x.ndim):
            where = make_mask(kind, x.shape, axis, seed=len(case))
            y = forward(name, x, axis, where=where)
            g = random_like(y, seed=len(case) + 1)
            got = backward(name, g, x, y, axis, where=where)
            assert_matches_formula(name, got, g, x, y, axis, where)
            if where is not None:
                masked = np.asarray(got)[~np.broadcast_to(where, x.shape)]
                assert np.all(masked == 0), (case, axis, masked)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_fully_masked_rows(name, dtype):
    """Masked values are the worst possible (NaN, +-inf in x and in grad_output): they
    take no part; fully masked rows are all 0, never NaN."""
    x = np.array([[1.0, 2.0, 3.0, 4.0],
                  [np.nan, np.inf, -np.inf, 1.0],
                  [-np.inf, -np.inf, -np.inf, -np.inf],
                  [0.5, np.nan, np.inf, -2.0]], dtype=dtype)
    where = np.array([[True, False, True, False],
                      [False, False, False, False],
                      [False, False, False, False],
                      [True, False, False, True]])
    y = forward(name, x, -1, where=where)
    g = random_like(y, seed=8)
    if not OPS[name].reduces:
        g[~where] = np.array([np.nan, np.inf, -np.inf, 1e4], dtype=dtype)[
            np.arange((~where).sum()) % 4]
    got = np.asarray(backward(name, g, x, y, -1, where=where))
    assert not np.isnan(got).any(), got
    assert np.all(got[~where] == 0) and np.all(got[1:3] == 0), got
    assert_matches_formula(name, got, g, x, y, -1, where)
    # the whole array masked, axis=None
    where_none = np.zeros(x.shape, dtype=bool)
    y_none = forward(name, x, None, where=where_none)
    g_none = random_like(y_none, seed=9)
    got_none = np.asarray(backward(name, g_none, x, y_none, None, where=where_none))
    assert got_none.shape == x.shape and np.all(got_none == 0), got_none


# ---------------------------------------------------------------------------------------
# Layouts and dtypes


LAYOUT_NAMES = ("F", "transposed", "stepped", "negative", "reversed_last",
                "stepped_reversed", "byteswapped", "unaligned")
LAYOUT_CASES = ("normal(3,5)", "normal(2,3,4)", "normal(7,)", "neg_inf_entries(2,3,4)",
                "all_neg_inf_row(3,4)", "offset-1e4(4,6)", "empty(2,0,3)")


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_layout_invariance(name, dtype, layout):
    """Every input in another memory layout: bitwise the result of contiguous inputs."""
    for case, x in selected(dtype, LAYOUT_CASES):
        for axis in axes_of(x.ndim):
            y = np.asarray(forward(name, x, axis))
            g = random_like(y, seed=10)
            expected = backward(name, g, x, y, axis)
            views = [ref.relayout(a, layout) for a in (g, x, y)]
            got = backward(name, *views, axis)
            assert np.asarray(got).dtype == np.asarray(expected).dtype
            assert np.array_equal(got, expected, equal_nan=True), (case, axis, layout)
            # one input at a time in the layout
            for k in range(3):
                mixed = [g, x, y]
                mixed[k] = views[k]
                got = backward(name, *mixed, axis)
                assert np.array_equal(got, expected, equal_nan=True), (case, axis, k)


@pytest.mark.parametrize("name", NAMES)
def test_mixed_dtypes(name):
    """The result dtype is float64 if any input is float64 (float16 only if all are);
    values as the formula on the inputs as given."""
    x64 = np.random.default_rng(12).standard_normal((3, 6))
    y64 = np.asarray(forward(name, x64, -1))
    g64 = random_like(y64, seed=13)
    for g_dtype in FLOATS:
        for y_dtype in FLOATS:
            for x_dtype in (FLOATS if OPS[name].sees_x else (np.float64,)):
                g = g64.astype(g_dtype)
                y = y64.astype(y_dtype)
                x = x64.astype(x_dtype)
                got = backward(name, g, x, y, -1)
                assert_matches_formula(name, got, g, x, y, -1)


@pytest.mark.parametrize("name", NAMES)
def test_empty(name):
    for shape, axis in (((0, 5), -1), ((3, 0), -1), ((3, 0), 0), ((2, 0, 3), 1),
                        ((0, 4), None)):
        x = np.zeros(shape)
        y = np.asarray(forward(name, x, axis))
        g = random_like(y)
        got = backward(name, g, x, y, axis)
        assert got.shape == shape and got.dtype == np.float64


# ---------------------------------------------------------------------------------------
# logsumexp_backward's reduced arguments


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=lambda d: np.dtype(d).name)
def test_logsumexp_reduced_shapes(dtype):
    """grad_output and result both with or both without the length-1 axis: same
    gradient; axis=None takes scalars (Python, NumPy, 0-d)."""
    x = np.random.default_rng(14).standard_normal((3, 4, 5)).astype(dtype)
    for axis in range(-3, 3):
        r = fs.logsumexp(x, axis=axis)
        r_keep = fs.logsumexp(x, axis=axis, keepdims=True)
        g = random_like(r, seed=15)
        g_keep = np.expand_dims(g, axis)
        expected = fs.logsumexp_backward(g, x, r, axis)
        assert_matches_formula("logsumexp", expected, g, x, r, axis)
        got = fs.logsumexp_backward(g_keep, x, r_keep, axis)
        assert np.array_equal(got, expected), axis
    r = fs.logsumexp(x, axis=None)
    g = dtype(0.75)
    expected = fs.logsumexp_backward(g, x, r, None)
    assert_matches_formula("logsumexp", expected, g, x, r, None)
    forms = [(np.array(g), np.array(r)), (g, r), (np.array(g)[()], r)]
    if dtype == np.float64:       # Python floats are float64
        forms.append((0.75, float(r)))
    for g_form, r_form in forms:
        got = fs.logsumexp_backward(g_form, x, r_form, None)
        assert np.array_equal(got, expected), (type(g_form), type(r_form))


# ---------------------------------------------------------------------------------------
# out=

OUT_KINDS = ("fresh", "fortran", "strided", "alias_grad_output")
OUT_CASES = [(name, kind) for name in NAMES for kind in OUT_KINDS
             # logsumexp's grad_output has the reduced shape: it cannot be the out
             if not (OPS[name].reduces and kind == "alias_grad_output")]


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name, kind", OUT_CASES)
def test_out(name, dtype, kind):
    for case, x in selected(dtype, ("normal(3,5)", "normal(2,3,4)", "neg_inf_entries(2,3,4)")):
        for axis in axes_of(x.ndim):
            y = np.asarray(forward(name, x, axis))
            g = random_like(y, seed=16)
            expected = backward(name, g, x, y, axis)
            big = None
            if kind == "fresh":
                out = np.full(x.shape, 7.0, dtype=dtype)
            elif kind == "fortran":
                out = np.asfortranarray(np.full(x.shape, 7.0, dtype=dtype))
            elif kind == "strided":
                big = np.full(tuple(2 * n + 1 for n in x.shape), 7.0, dtype=dtype)
                out = big[tuple(slice(1, None, 2) for _ in x.shape)]
            else:
                out = g.copy()
                g = out
            got = backward(name, g, x, y, axis, out=out)
            assert got is out, (case, axis)
            assert np.array_equal(out, expected, equal_nan=True), (case, axis)
            if big is not None:
                untouched = np.ones(big.shape, dtype=bool)
                untouched[tuple(slice(1, None, 2) for _ in x.shape)] = False
                assert np.all(big[untouched] == 7.0), "out= wrote outside its view"


@pytest.mark.parametrize("name", NAMES)
def test_out_errors(name):
    """out= of the wrong shape or dtype raises, and nothing is written."""
    x = np.random.default_rng(17).standard_normal((3, 5))
    y = np.asarray(forward(name, x, -1))
    g = random_like(y)
    for bad, error in ((np.zeros((3, 4)), ValueError), (np.zeros((5, 3)), ValueError),
                       (np.zeros(15), ValueError), (np.zeros((3, 5), np.float32), TypeError),
                       (np.zeros((3, 5), np.float16), TypeError)):
        with pytest.raises(error):
            backward(name, g, x, y, -1, out=bad)
        assert np.all(bad == 0)
    with pytest.raises(TypeError):
        backward(name, g, x, y, -1, out=[[0.0] * 5] * 3)
    # float32 inputs: a float64 out is the wrong dtype too
    bad = np.zeros((3, 5))
    with pytest.raises(TypeError):
        backward(name, g.astype(np.float32), x.astype(np.float32), y.astype(np.float32), -1,
                 out=bad)
    assert np.all(bad == 0)


# ---------------------------------------------------------------------------------------
# Argument errors, raised before any kernel runs


def _mismatches(name):
    """(description, g, x, y, axis) with the shapes of the inputs disagreeing."""
    x = np.random.default_rng(18).standard_normal((3, 5))
    y = np.asarray(forward(name, x, -1))
    g = random_like(y)
    if OPS[name].reduces:
        yield "grad_output too short", g[:2], x, y, -1
        yield "result too short", g, x, y[:2], -1
        yield "grad_output of the other axis", np.zeros(5), x, y, -1
        yield "grad_output of keepdims on the other axis", np.zeros((1, 5)), x, y, -1
        yield "grad_output with an extra axis", np.zeros((3, 1, 1)), x, y, -1
        yield "grad_output not scalar for axis=None", g, x, np.float64(1.0), None
        yield "result not scalar for axis=None", np.float64(1.0), x, y, None
        yield "x of the other shape", g, x[:, :4].T.copy(), y, -1
        return
    yield "grad_output (3, 4)", g[:, :4], x, y, -1
    yield "grad_output transposed", g.T, x, y, -1
    yield "grad_output flat", g.ravel(), x, y, -1
    yield "grad_output broadcastable (1, 5)", g[:1], x, y, -1
    yield "output (3, 4)", g, x, y[:, :4], -1
    yield "output broadcastable (5,)", g, x, y[0], -1
    if OPS[name].sees_x:
        yield "x (3, 4)", g, x[:, :4], y, -1
        yield "x broadcastable (1, 5)", g, x[:1], y, -1
        yield "x transposed", g, x.T, y, -1


@pytest.mark.parametrize("name", NAMES)
def test_shape_mismatch(name):
    for what, g, x, y, axis in _mismatches(name):
        out_shape = np.shape(y) if not OPS[name].sees_x else np.shape(x)
        out = np.full(out_shape, 7.0)
        with pytest.raises(ValueError):
            backward(name, g, x, y, axis, out=out)
            pytest.fail(what)
        assert np.all(out == 7.0), what
        with pytest.raises(ValueError):
            backward(name, g, x, y, axis)
            pytest.fail(what)


@pytest.mark.parametrize("name", NAMES)
def test_bad_axis_and_where(name):
    x = np.random.default_rng(19).standard_normal((3, 5))
    y = np.asarray(forward(name, x, -1))
    g = random_like(y)
    out = np.full((3, 5), 7.0)
    for axis in (2, -3):
        with pytest.raises(AxisError):
            backward(name, g, x, y, axis, out=out)
    with pytest.raises(TypeError):
        backward(name, g, x, y, 1.0)
    with pytest.raises(ValueError):
        backward(name, g, x, y, -1, where=np.ones((2, 5), dtype=bool), out=out)
    with pytest.raises(TypeError):
        backward(name, g, x, y, -1, where=np.ones((3, 5)), out=out)
    with pytest.raises(ValueError):
        backward(name, g, x, y, -1, num_threads=0, out=out)
    assert np.all(out == 7.0)
    with pytest.raises(TypeError):
        backward(name, g.astype(np.complex128), x, y, -1)


# ---------------------------------------------------------------------------------------
# Threads


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_thread_count_invariance(name, dtype):
    """Bitwise the same on 1 and 2 threads; > 2**15 elements so that threads start."""
    rng = np.random.default_rng(20)
    x = (4 * rng.standard_normal((256, 161))).astype(dtype)
    x[5, ::4] = -np.inf
    x[9] = -np.inf
    mask = rng.random(x.shape) < 0.8
    mask[11] = False
    for axis, where in ((-1, None), (-1, mask), (0, None), (None, None)):
        y = forward(name, x, axis, where=where)
        g = random_like(y, seed=21)
        serial = backward(name, g, x, y, axis, where=where, num_threads=1)
        parallel = backward(name, g, x, y, axis, where=where, num_threads=2)
        assert np.array_equal(serial, parallel, equal_nan=True), axis
