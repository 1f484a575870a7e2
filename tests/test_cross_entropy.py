"""fastsoft.cross_entropy: loss and gradient against PyTorch, the NumPy reference
(tests/_grad_reference.py) and 4th-order finite differences; grad_output, grad_out,
threads, special values and argument errors.

Expectations never come from fastsoft: PyTorch's F.cross_entropy with autograd (for
sigsoftmax, F.cross_entropy of 2z - softplus(z), whose log-softmax is log sigsoftmax(z)),
or the reference, computed in long double when the result under test is float64.
"""

import re

import numpy as np
import pytest
from numpy.exceptions import AxisError

import _grad_reference as ref
import fastsoft as fs

REDUCTIONS = ("none", "mean", "sum")
ACTIVATIONS = ("softmax", "sigsoftmax")
DTYPES = (np.float32, np.float64)
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
N_CLASSES = 5
# logits' shapes with the class axis at 1 (PyTorch's layout): 2-D and N-D
SHAPES = {"2d": (6, N_CLASSES), "nd": (3, N_CLASSES, 2, 3)}
# ignore_index modes: (ignore_index passed or None for the default, which labels to ignore)
IGNORE_MODES = ("default", "inside", "negative", "all")


def torch_or_skip():
    torch = pytest.importorskip("torch")
    # one thread: on these tiny problems PyTorch's thread pool costs ~100x the work
    torch.set_num_threads(1)
    return torch


def dtype_id(dtype):
    return np.dtype(dtype).name


def work_dtype(dtype):
    """The reference's precision for logits of `dtype` (far below the result's rounding;
    integer logits give float64 results)."""
    dtype = np.dtype(dtype)
    return np.longdouble if dtype == np.float64 or dtype.kind in "iub" else np.float64


# ---------------------------------------------------------------------------------------
# Problems


def make_logits(shape, dtype, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal(shape)).astype(dtype)


def make_weight(kind, dtype, seed=1, n_classes=N_CLASSES):
    if kind is None:
        return None
    return np.random.default_rng(seed).uniform(0.2, 2.0, n_classes).astype(dtype)


def make_index_target(shape, mode, seed=2, n_classes=N_CLASSES, axis=1):
    """(target, ignore_index or None) for logits of `shape` with classes on `axis`."""
    rng = np.random.default_rng(seed)
    index_shape = shape[:axis] + shape[axis + 1:]
    target = rng.integers(0, n_classes, size=index_shape)
    flat = target.reshape(-1)
    if mode == "default":
        return target, None
    if mode == "all":
        flat[:] = -100
        return target, None
    ignore_index = {"inside": 3, "negative": -1}[mode]
    flat[::3] = ignore_index                    # some rows ignored ...
    flat[1::3] = (ignore_index + 1) % n_classes  # ... and some not
    return target, ignore_index


def make_prob_target(shape, dtype, seed=3, axis=1):
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(np.ones(shape[axis]), size=shape[:axis] + shape[axis + 1:])
    return np.moveaxis(q, -1, axis).astype(dtype)


def make_problem(shape, dtype, target_kind, weight_kind, mode, seed=0):
    logits = make_logits(shape, dtype, seed)
    weight = make_weight(weight_kind, dtype, seed + 1)
    target, ignore_index = make_index_target(shape, mode, seed + 2)
    if target_kind == "prob":
        target = make_prob_target(shape, dtype, seed + 3)
    return logits, target, weight, ignore_index


def options(weight, ignore_index, reduction, label_smoothing, activation):
    kwargs = {"weight": weight, "reduction": reduction, "label_smoothing": label_smoothing,
              "activation": activation}
    if ignore_index is not None:
        kwargs["ignore_index"] = ignore_index
    return kwargs


# ---------------------------------------------------------------------------------------
# The three sources of expectations


def torch_cross_entropy(logits, target, axis=1, weight=None, ignore_index=None,
                        reduction="mean", label_smoothing=0.0, activation="softmax",
                        grad_output=None):
    """(loss, grad) from F.cross_entropy and autograd, classes moved to axis 1."""
    torch = torch_or_skip()
    functional = torch.nn.functional
    z = torch.tensor(np.array(np.moveaxis(logits, axis, 1)), requires_grad=True)
    target = np.asarray(target)
    if target.dtype.kind == "f":
        target_t = torch.tensor(np.array(np.moveaxis(target, axis, 1)))
        ignore_index = None      # PyTorch refuses ignore_index >= 0 with probabilities
    else:
        target_t = torch.tensor(target.astype(np.int64))
    kwargs = {} if ignore_index is None else {"ignore_index": ignore_index}
    inputs = z if activation == "softmax" else 2 * z - functional.softplus(z)
    loss = functional.cross_entropy(
        inputs, target_t, weight=None if weight is None else torch.tensor(weight),
        reduction=reduction, label_smoothing=label_smoothing, **kwargs)
    go = torch.ones_like(loss) if grad_output is None else torch.tensor(
        np.array(grad_output, dtype=logits.dtype))
    (grad,) = torch.autograd.grad(loss, z, grad_outputs=go)
    return loss.detach().numpy(), np.moveaxis(grad.numpy(), 1, axis)


def reference_cross_entropy(logits, target, axis, dtype=None, **kwargs):
    """(loss, grad, loss scale, grad scale) from the NumPy reference."""
    kwargs.pop("num_threads", None)
    loss, grad = ref.cross_entropy(logits, target, axis=axis,
                                   dtype=dtype or work_dtype(logits.dtype), **kwargs)
    loss_scale, grad_scale = ref.cross_entropy_error_scales(logits, target, axis=axis,
                                                            **kwargs)
    return loss, grad, loss_scale, grad_scale


def assert_close(got, expected, rtol, scale=None, what=""):
    """|got - expected| <= rtol * max(|expected|, scale), NaN and inf matching exactly.

    `scale` (from the reference) is the size of the terms a value is made of: where
    they cancel, no precision can promise more than rtol relative to them.
    """
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    work = np.longdouble
    got_w, expected_w = got.astype(work), expected.astype(work)
    special = ~np.isfinite(expected_w)
    wrong = special & ~((got_w == expected_w) | (np.isnan(got_w) & np.isnan(expected_w)))
    magnitude = np.abs(expected_w)
    if scale is not None:
        magnitude = np.maximum(magnitude, np.abs(np.asarray(scale, dtype=work)))
    with np.errstate(invalid="ignore"):
        wrong |= ~special & ~(np.abs(got_w - expected_w) <= rtol * magnitude)
    if wrong.any():
        index = tuple(int(k) for k in np.argwhere(wrong)[0]) if wrong.ndim else ()
        raise AssertionError(
            f"{what}: {int(wrong.sum())} of {wrong.size} values differ; first at {index}: "
            f"got {got[index]!r}, expected {expected[index]!r} (rtol {rtol}, magnitude "
            f"{float(magnitude[index]):.3g})\ngot:\n{got!r}\nexpected:\n{expected!r}")


def assert_result_types(loss, grad, logits, target, reduction, dtype):
    dtype = np.dtype(dtype)
    index_shape = (target.shape if target.dtype.kind in "iu"
                   else target.shape[:1] + target.shape[2:])
    if reduction == "none":
        assert isinstance(loss, np.ndarray), type(loss)
        assert loss.shape == index_shape and loss.dtype == dtype, (loss.shape, loss.dtype)
    else:
        assert isinstance(loss, np.generic) and not isinstance(loss, np.ndarray), type(loss)
        assert loss.dtype == dtype, loss.dtype
    if grad is not None:
        assert isinstance(grad, np.ndarray)
        assert grad.shape == logits.shape and grad.dtype == dtype, (grad.shape, grad.dtype)


# ---------------------------------------------------------------------------------------
# The full grid against PyTorch


@pytest.mark.parametrize("shape_kind", tuple(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", (0.0, 0.1))
@pytest.mark.parametrize("mode", IGNORE_MODES)
@pytest.mark.parametrize("weight_kind", (None, "random"), ids=("no_weight", "weight"))
@pytest.mark.parametrize("target_kind", ("index", "prob"))
def test_against_torch(target_kind, weight_kind, mode, label_smoothing, reduction, dtype,
                       shape_kind):
    torch_or_skip()
    shape = SHAPES[shape_kind]
    logits, target, weight, ignore_index = make_problem(shape, dtype, target_kind,
                                                        weight_kind, mode)
    kwargs = options(weight, ignore_index, reduction, label_smoothing, "softmax")
    before = logits.copy()
    loss, grad = fs.cross_entropy(logits, target, axis=1, return_grad=True, **kwargs)
    assert np.array_equal(logits, before)
    assert_result_types(loss, grad, logits, target, reduction, dtype)
    only_loss = fs.cross_entropy(logits, target, axis=1, **kwargs)
    assert np.array_equal(only_loss, loss, equal_nan=True)

    expected_loss, expected_grad = torch_cross_entropy(logits, target, 1, **kwargs)
    _, _, loss_scale, grad_scale = reference_cross_entropy(logits, target, 1, **kwargs)
    rtol = RTOL[np.dtype(dtype)]
    assert_close(loss, expected_loss, rtol, loss_scale, "loss")
    assert_close(grad, expected_grad, rtol, grad_scale, "grad")
    if mode == "all" and target_kind == "index":
        if reduction == "mean":
            assert np.isnan(loss)
        assert np.all(grad == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ("index", "prob"))
def test_sigsoftmax_against_torch(target_kind, reduction, dtype):
    """F.cross_entropy of w = 2z - softplus(z) is the sigsoftmax cross-entropy of z."""
    torch_or_skip()
    for shape_kind, label_smoothing, weight_kind, mode in (
            ("2d", 0.0, None, "default"), ("nd", 0.1, "random", "inside"),
            ("2d", 0.1, "random", "negative"), ("nd", 0.0, None, "all")):
        logits, target, weight, ignore_index = make_problem(
            SHAPES[shape_kind], dtype, target_kind, weight_kind, mode, seed=7)
        kwargs = options(weight, ignore_index, reduction, label_smoothing, "sigsoftmax")
        loss, grad = fs.cross_entropy(logits, target, axis=1, return_grad=True, **kwargs)
        assert_result_types(loss, grad, logits, target, reduction, dtype)
        expected_loss, expected_grad = torch_cross_entropy(logits, target, 1, **kwargs)
        _, _, loss_scale, grad_scale = reference_cross_entropy(logits, target, 1, **kwargs)
        rtol = RTOL[np.dtype(dtype)]
        what = f"{shape_kind} {mode} eps={label_smoothing}"
        assert_close(loss, expected_loss, rtol, loss_scale, "loss " + what)
        assert_close(grad, expected_grad, rtol, grad_scale, "grad " + what)


# ---------------------------------------------------------------------------------------
# The same grid against the NumPy reference, both activations


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("target_kind", ("index", "prob"))
def test_against_reference(target_kind, activation, dtype):
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
                        loss, grad = fs.cross_entropy(logits, target, axis=1,
                                                      return_grad=True, **kwargs)
                        assert_result_types(loss, grad, logits, target, reduction, dtype)
                        expected = reference_cross_entropy(logits, target, 1, **kwargs)
                        what = f"{shape_kind} {weight_kind} {mode} {kwargs}"
                        assert_close(loss, expected[0], rtol, expected[2], "loss " + what)
                        assert_close(grad, expected[1], rtol, expected[3], "grad " + what)


def test_reference_matches_torch():
    """The oracle itself against PyTorch (float64), so the reference tests mean something."""
    torch_or_skip()
    for target_kind in ("index", "prob"):
        for activation in ACTIVATIONS:
            for weight_kind in (None, "random"):
                for mode in IGNORE_MODES:
                    for label_smoothing in (0.0, 0.1, 1.0):
                        for reduction in REDUCTIONS:
                            logits, target, weight, ignore_index = make_problem(
                                SHAPES["nd"], np.float64, target_kind, weight_kind, mode)
                            kwargs = options(weight, ignore_index, reduction,
                                             label_smoothing, activation)
                            go = 0.5 if reduction != "none" else np.linspace(
                                -1, 2, 18).reshape(3, 2, 3)
                            loss, grad = ref.cross_entropy(logits, target, axis=1,
                                                           grad_output=go, **kwargs)
                            expected = torch_cross_entropy(logits, target, 1, grad_output=go,
                                                           **kwargs)
                            np.testing.assert_allclose(loss, expected[0], rtol=1e-13,
                                                       atol=1e-15, err_msg=str(kwargs))
                            np.testing.assert_allclose(grad, expected[1], rtol=1e-13,
                                                       atol=1e-15, err_msg=str(kwargs))


# ---------------------------------------------------------------------------------------
# Finite differences of the reference loss (long double), both activations


def _fd_case(shape_kind, dtype, target_kind, weight_kind, seed):
    shape = {"2d": (4, N_CLASSES), "nd": (2, N_CLASSES, 2, 1)}[shape_kind]
    return make_problem(shape, dtype, target_kind, weight_kind, "inside", seed)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("target_kind", ("index", "prob"))
def test_gradient_finite_differences(target_kind, activation, reduction, dtype):
    """v . J of the loss, v = grad_output (random), against central differences of the
    reference loss in long double (error ~1e-15, far below float64's 1e-12)."""
    rng = np.random.default_rng(5)
    rtol = RTOL[np.dtype(dtype)]
    fd_rtol = max(rtol, 1e-10 if np.finfo(np.longdouble).eps > 1e-17 else 0)
    for shape_kind in ("2d", "nd"):
        for weight_kind, label_smoothing in ((None, 0.0), ("random", 0.1)):
            logits, target, weight, ignore_index = _fd_case(
                shape_kind, dtype, target_kind, weight_kind, seed=21)
            loss_shape = logits.shape[:1] + logits.shape[2:]
            if reduction == "none":
                go = rng.uniform(-2, 2, loss_shape).astype(dtype)
            else:
                go = dtype(rng.uniform(0.5, 2))
            kwargs = options(weight, ignore_index, reduction, label_smoothing, activation)
            loss, grad = fs.cross_entropy(logits, target, axis=1, return_grad=True,
                                          grad_output=go, **kwargs)

            def objective(z):
                value, _ = ref.cross_entropy(z, target, axis=1, dtype=np.longdouble,
                                             **kwargs)
                return np.sum(np.asarray(go, dtype=np.longdouble) * value)

            step = 2.0 ** -12
            expected = ref.finite_difference_gradient(
                objective, logits.astype(np.longdouble), step)
            _, _, loss_scale, grad_scale = reference_cross_entropy(
                logits, target, 1, grad_output=go, **kwargs)
            # the differences' own rounding: a few ulps of the objective's terms, over h
            terms = np.sum(np.abs(np.asarray(go, dtype=np.float64)) * np.asarray(loss_scale))
            fd_error = 64 * float(np.finfo(np.longdouble).eps) * terms / step
            what = f"{shape_kind} {kwargs}"
            assert_close(grad, expected, fd_rtol, np.asarray(grad_scale) + fd_error / fd_rtol,
                         "grad vs finite differences " + what)
            expected_loss, _ = ref.cross_entropy(logits, target, axis=1,
                                                 dtype=np.longdouble, **kwargs)
            assert_close(loss, expected_loss, rtol, loss_scale, "loss " + what)


# ---------------------------------------------------------------------------------------
# grad_output, grad_out


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_grad_output_scaling(activation, dtype):
    torch_or_skip()
    rtol = RTOL[np.dtype(dtype)]
    for shape_kind in SHAPES:
        logits, target, weight, ignore_index = make_problem(
            SHAPES[shape_kind], dtype, "index", "random", "inside", seed=31)
        loss_shape = target.shape
        per_row = np.random.default_rng(4).uniform(-3, 3, loss_shape).astype(dtype)
        for reduction, go in (("mean", 2.5), ("sum", -0.75), ("mean", np.array(3.0, dtype)),
                              ("sum", dtype(1.5)), ("none", per_row), ("none", 1.0)):
            kwargs = options(weight, ignore_index, reduction, 0.1, activation)
            loss, grad = fs.cross_entropy(logits, target, axis=1, return_grad=True,
                                          grad_output=go, **kwargs)
            _, unit_grad = fs.cross_entropy(logits, target, axis=1, return_grad=True,
                                            **kwargs)
            go_full = np.broadcast_to(np.asarray(go, dtype=dtype), loss_shape) \
                if reduction == "none" else go
            expected_loss, expected_grad = torch_cross_entropy(logits, target, 1,
                                                               grad_output=go_full, **kwargs)
            _, _, loss_scale, grad_scale = reference_cross_entropy(
                logits, target, 1, grad_output=go_full, **kwargs)
            what = f"{shape_kind} {reduction} grad_output={go!r}"
            assert_close(loss, expected_loss, rtol, loss_scale, "loss " + what)
            assert_close(grad, expected_grad, rtol, grad_scale, "grad " + what)
            # the loss does not depend on grad_output
            assert np.array_equal(loss, fs.cross_entropy(logits, target, axis=1, **kwargs))
            if reduction != "none" and float(go) == 1.0:
                assert np.array_equal(grad, unit_grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("target_kind", ("index", "prob"))
def test_grad_out(target_kind, activation, dtype):
    """grad_out: a fresh, a strided and a Fortran buffer, and the logits themselves."""
    for shape_kind, axis in (("2d", 1), ("nd", 1), ("2d", 0)):
        shape = SHAPES[shape_kind]
        logits, target, weight, ignore_index = make_problem(
            shape, dtype, target_kind, "random", "negative", seed=41)
        if axis == 0:      # classes first: (C, N) logits
            logits = np.ascontiguousarray(logits.T)
            if target_kind == "prob":
                target = np.ascontiguousarray(target.T)
        shape = logits.shape
        kwargs = options(weight, ignore_index, "mean", 0.1, activation)
        loss, grad = fs.cross_entropy(logits, target, axis=axis, return_grad=True, **kwargs)

        fresh = np.full(logits.shape, 7.0, dtype=dtype)
        result = fs.cross_entropy(logits, target, axis=axis, return_grad=True,
                                  grad_out=fresh, **kwargs)
        assert result[1] is fresh
        assert np.array_equal(result[0], loss) and np.array_equal(fresh, grad)

        big = np.full(tuple(2 * n + 1 for n in shape), 7.0, dtype=dtype)
        strided = big[tuple(slice(1, None, 2) for _ in shape)]
        result = fs.cross_entropy(logits, target, axis=axis, return_grad=True,
                                  grad_out=strided, **kwargs)
        assert result[1] is strided and np.array_equal(strided, grad)
        untouched = np.ones(big.shape, dtype=bool)
        untouched[tuple(slice(1, None, 2) for _ in shape)] = False
        assert np.all(big[untouched] == 7.0), "grad_out wrote outside its view"

        fortran = np.asfortranarray(np.full(logits.shape, 7.0, dtype=dtype))
        result = fs.cross_entropy(logits, target, axis=axis, return_grad=True,
                                  grad_out=fortran, **kwargs)
        assert result[1] is fortran and np.array_equal(fortran, grad)

        # the gradient overwrites the logits
        buffer = logits.copy()
        result = fs.cross_entropy(buffer, target, axis=axis, return_grad=True,
                                  grad_out=buffer, **kwargs)
        assert result[1] is buffer
        assert np.array_equal(result[0], loss), "loss changed when grad_out is the logits"
        assert np.array_equal(buffer, grad), "gradient written over the logits differs"

        # the logits as a non-contiguous view, overwritten in place
        big = np.zeros(tuple(2 * n + 1 for n in logits.shape), dtype=dtype)
        view = big[tuple(slice(1, None, 2) for _ in logits.shape)]
        view[...] = logits
        result = fs.cross_entropy(view, target, axis=axis, return_grad=True,
                                  grad_out=view, **kwargs)
        assert result[1] is view and np.array_equal(view, grad)


def test_grad_out_none_reduction_per_row_grad_output():
    logits, target, weight, _ = make_problem(SHAPES["nd"], np.float64, "index", None,
                                             "default", seed=43)
    go = np.random.default_rng(0).standard_normal(target.shape)
    _, grad = fs.cross_entropy(logits, target, axis=1, reduction="none", return_grad=True,
                               grad_output=go)
    buffer = logits.copy()
    loss, result = fs.cross_entropy(buffer, target, axis=1, reduction="none",
                                    return_grad=True, grad_output=go, grad_out=buffer)
    assert result is buffer and np.array_equal(buffer, grad)
    expected_loss, expected_grad = ref.cross_entropy(logits, target, axis=1, reduction="none",
                                                     grad_output=go, dtype=np.longdouble)
    _, grad_scale = ref.cross_entropy_error_scales(logits, target, axis=1, reduction="none",
                                                   grad_output=go)
    assert_close(grad, expected_grad, 1e-12, grad_scale, "grad")


# ---------------------------------------------------------------------------------------
# Axes, layouts, dtypes


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_any_axis_and_layout(activation):
    """The class axis anywhere, the logits in any memory layout: same values as the
    canonical (N, C, ...) call, and as the reference."""
    dtype = np.float64
    logits, target, weight, ignore_index = make_problem(SHAPES["nd"], dtype, "index",
                                                        "random", "inside", seed=51)
    q = make_prob_target(SHAPES["nd"], dtype, seed=52)
    for target_kind, tgt in (("index", target), ("prob", q)):
        for reduction in REDUCTIONS:
            kwargs = options(weight, ignore_index, reduction, 0.1, activation)
            loss, grad = fs.cross_entropy(logits, tgt, axis=1, return_grad=True, **kwargs)
            expected = reference_cross_entropy(logits, tgt, 1, **kwargs)
            assert_close(loss, expected[0], 1e-12, expected[2], "loss")
            assert_close(grad, expected[1], 1e-12, expected[3], "grad")
            for position in (0, 2, 3, -1, -3):
                moved = np.moveaxis(logits, 1, position)
                # an index target keeps its axes: the logits' without the class axis,
                # whose order moving the class axis does not change
                moved_target = np.moveaxis(tgt, 1, position) if target_kind == "prob" else tgt
                got_loss, got_grad = fs.cross_entropy(moved, moved_target, axis=position,
                                                      return_grad=True, **kwargs)
                assert_close(got_loss, loss, 1e-12, expected[2], f"loss axis={position}")
                assert_close(np.moveaxis(got_grad, position, 1), grad, 1e-12, expected[3],
                             f"grad axis={position}")
            for layout in ref.LAYOUTS:
                view = ref.relayout(logits, layout)
                got_loss, got_grad = fs.cross_entropy(view, tgt, axis=1, return_grad=True,
                                                      **kwargs)
                assert np.array_equal(got_loss, loss), layout
                assert np.array_equal(got_grad, grad), layout
                got_loss = fs.cross_entropy(logits, ref.relayout(tgt, layout), axis=1,
                                            **kwargs)
                assert np.array_equal(got_loss, loss), ("target", layout)
                if weight is not None:
                    got_loss = fs.cross_entropy(logits, tgt, axis=1, **dict(
                        kwargs, weight=ref.relayout(weight, layout)))
                    assert np.array_equal(got_loss, loss), ("weight", layout)


def test_target_integer_dtypes():
    logits, target, weight, _ = make_problem(SHAPES["2d"], np.float64, "index", "random",
                                             "default", seed=61)
    kwargs = {"weight": weight, "label_smoothing": 0.1, "return_grad": True}
    loss, grad = fs.cross_entropy(logits, target.astype(np.int64), **kwargs)
    for dtype in (np.int8, np.uint8, np.int16, np.int32, np.uint32, np.uint64, np.intp):
        got_loss, got_grad = fs.cross_entropy(logits, target.astype(dtype), **kwargs)
        assert np.array_equal(got_loss, loss) and np.array_equal(got_grad, grad), dtype
    got_loss, got_grad = fs.cross_entropy(logits, target.tolist(), **kwargs)
    assert np.array_equal(got_loss, loss) and np.array_equal(got_grad, grad), "list"


def test_result_dtype_follows_logits():
    """Loss and gradient take the logits' result dtype, whatever the weight's and the
    probability target's dtype; integer logits compute in float64."""
    rng = np.random.default_rng(62)
    for logits_dtype, other_dtype in ((np.float32, np.float64), (np.float64, np.float32),
                                      (np.float16, np.float64), (np.int64, np.float32)):
        logits = (4 * rng.standard_normal((4, N_CLASSES))).astype(logits_dtype)
        weight = rng.uniform(0.5, 1.5, N_CLASSES).astype(other_dtype)
        q = rng.dirichlet(np.ones(N_CLASSES), 4).astype(other_dtype)
        out_dtype = np.float64 if np.dtype(logits_dtype).kind == "i" else logits_dtype
        rtol = {np.float16: 2.0 ** -10, np.float32: 1e-5, np.float64: 1e-12}[out_dtype]
        for target in (np.array([0, 4, 2, 1]), q):
            for reduction in REDUCTIONS:
                kwargs = options(weight, None, reduction, 0.1, "softmax")
                loss, grad = fs.cross_entropy(logits, target, return_grad=True, **kwargs)
                assert_result_types(loss, grad, logits, target, reduction, out_dtype)
                expected = reference_cross_entropy(logits, target, 1, **kwargs)
                what = f"{np.dtype(logits_dtype)} logits, {np.dtype(other_dtype)} others"
                assert_close(loss, expected[0], rtol, expected[2], "loss " + what)
                assert_close(grad, expected[1], rtol,
                             np.asarray(expected[3]) + np.finfo(out_dtype).tiny / rtol,
                             "grad " + what)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float16(activation):
    """float16 logits: computed in float32, loss and gradient returned as float16."""
    logits, target, weight, ignore_index = make_problem(SHAPES["nd"], np.float16, "index",
                                                        "random", "inside", seed=71)
    q = make_prob_target(SHAPES["nd"], np.float16, seed=72)
    for tgt in (target, q):
        for reduction in REDUCTIONS:
            kwargs = options(weight, ignore_index, reduction, 0.1, activation)
            loss, grad = fs.cross_entropy(logits, tgt, axis=1, return_grad=True, **kwargs)
            assert_result_types(loss, grad, logits, tgt, reduction, np.float16)
            expected = reference_cross_entropy(logits, tgt, 1, **kwargs)
            rtol = 2.0 ** -10   # rounding to float16, and float32 arithmetic before that
            assert_close(loss, expected[0], rtol, expected[2], "loss")
            assert_close(grad, expected[1], rtol,
                         np.asarray(expected[3]) + np.finfo(np.float16).tiny / rtol, "grad")


def test_empty_batch():
    torch_or_skip()
    logits = np.zeros((0, N_CLASSES))
    for target in (np.zeros(0, dtype=np.int64), np.zeros((0, N_CLASSES))):
        for reduction in REDUCTIONS:
            loss, grad = fs.cross_entropy(logits, target, reduction=reduction,
                                          return_grad=True)
            expected_loss, expected_grad = torch_cross_entropy(logits, target,
                                                               reduction=reduction)
            assert_result_types(loss, grad, logits, target, reduction, np.float64)
            assert_close(loss, expected_loss, 0, what=f"{reduction} loss")
            assert grad.shape == (0, N_CLASSES)


def test_label_smoothing_one_and_custom_ignore_outside_range():
    torch_or_skip()
    logits, target, weight, _ = make_problem(SHAPES["2d"], np.float64, "index", "random",
                                             "default", seed=81)
    target[::2] = 7                      # ignore_index outside [0, C): ignored, not an error
    for label_smoothing in (0.0, 0.3, 1.0):
        for reduction in REDUCTIONS:
            kwargs = options(weight, 7, reduction, label_smoothing, "softmax")
            loss, grad = fs.cross_entropy(logits, target, return_grad=True, **kwargs)
            expected_loss, expected_grad = torch_cross_entropy(logits, target, axis=1,
                                                               **kwargs)
            _, _, loss_scale, grad_scale = reference_cross_entropy(logits, target, 1,
                                                                   **kwargs)
            assert_close(loss, expected_loss, 1e-12, loss_scale, f"loss {kwargs}")
            assert_close(grad, expected_grad, 1e-12, grad_scale, f"grad {kwargs}")


# ---------------------------------------------------------------------------------------
# Special values


def test_neg_inf_logits_index_target_against_torch():
    """-inf logits: an infinite loss only where PyTorch's is; gradients stay finite."""
    torch_or_skip()
    logits = make_logits((4, N_CLASSES), np.float64, seed=91)
    logits[0, 2] = -np.inf           # not the target
    logits[1, [0, 4]] = -np.inf      # one of them the target
    logits[2, 1] = -np.inf           # an ignored row
    target = np.array([1, 4, 3, 0])
    weight = make_weight("random", np.float64)
    for label_smoothing in (0.0, 0.1):
        for reduction in REDUCTIONS:
            for w in (None, weight):
                kwargs = options(w, 3, reduction, label_smoothing, "softmax")
                loss, grad = fs.cross_entropy(logits, target, return_grad=True, **kwargs)
                expected_loss, expected_grad = torch_cross_entropy(logits, target, 1,
                                                                   **kwargs)
                _, _, loss_scale, grad_scale = reference_cross_entropy(logits, target, 1,
                                                                       **kwargs)
                assert_close(loss, expected_loss, 1e-12, loss_scale, f"loss {kwargs}")
                assert_close(grad, expected_grad, 1e-12, grad_scale, f"grad {kwargs}")
                assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_zero_probability_times_log_zero(activation):
    """Probability targets: q_c = 0 (or w_c = 0) at a -inf logit counts 0, not NaN
    (the one deliberate deviation from PyTorch, which gives NaN)."""
    logits = make_logits((3, N_CLASSES), np.float64, seed=92)
    logits[0, 1] = -np.inf
    logits[1, [0, 3]] = -np.inf
    q = make_prob_target((3, N_CLASSES), np.float64, seed=93)
    q[0, 1] = 0.0
    q[1, [0, 3]] = 0.0
    q /= q.sum(axis=1, keepdims=True)
    weight = make_weight("random", np.float64)
    for reduction in REDUCTIONS:
        for w in (None, weight):
            kwargs = options(w, None, reduction, 0.0, activation)
            loss, grad = fs.cross_entropy(logits, q, return_grad=True, **kwargs)
            expected = reference_cross_entropy(logits, q, 1, **kwargs)
            assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)), kwargs
            assert_close(loss, expected[0], 1e-12, expected[2], f"loss {kwargs}")
            assert_close(grad, expected[1], 1e-12, expected[3], f"grad {kwargs}")
            assert np.all(grad[0, 1] == 0) and np.all(grad[1, [0, 3]] == 0)
    # a zero class weight where the smoothed target is positive and the logit -inf
    weight_zero = weight.copy()
    weight_zero[[0, 1, 3]] = 0.0
    for reduction in REDUCTIONS:
        kwargs = options(weight_zero, None, reduction, 0.1, activation)
        loss, grad = fs.cross_entropy(logits, q, return_grad=True, **kwargs)
        expected = reference_cross_entropy(logits, q, 1, **kwargs)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)), kwargs
        assert_close(loss, expected[0], 1e-12, expected[2], f"loss {kwargs}")
        assert_close(grad, expected[1], 1e-12, expected[3], f"grad {kwargs}")
    # with smoothing, the -inf logit has a positive target: an infinite loss
    kwargs = options(weight, None, "none", 0.1, activation)
    loss = fs.cross_entropy(logits, q, **kwargs)
    assert np.all(loss[:2] == np.inf) and np.isfinite(loss[2])


def test_sigsoftmax_neg_inf_logits_against_reference():
    logits = make_logits((4, N_CLASSES), np.float64, seed=94)
    logits[0, 2] = -np.inf
    logits[1, [0, 4]] = -np.inf
    target = np.array([1, 4, 3, 0])
    weight = make_weight("random", np.float64)
    weight[2] = 0                    # at row 0's -inf logit
    for label_smoothing in (0.0, 0.1, 1.0):
        for reduction in REDUCTIONS:
            for w in (None, weight):
                kwargs = options(w, 3, reduction, label_smoothing, "sigsoftmax")
                loss, grad = fs.cross_entropy(logits, target, return_grad=True, **kwargs)
                expected = reference_cross_entropy(logits, target, 1, **kwargs)
                assert_close(loss, expected[0], 1e-12, expected[2], f"loss {kwargs}")
                assert_close(grad, expected[1], 1e-12, expected[3], f"grad {kwargs}")
                assert np.all(np.isfinite(grad))


def test_extreme_logits_sigsoftmax():
    """Logits far out (|z| ~ 1e3 .. 1e30) where exp(z) sigmoid(z) over- or underflows."""
    for dtype in DTYPES:
        for offset in (-1e30, -300.0, 300.0, 1e4):
            logits = (offset + make_logits((4, N_CLASSES), np.float64, seed=95)).astype(dtype)
            target = np.array([0, 1, 2, 3])
            for reduction in REDUCTIONS:
                kwargs = options(None, None, reduction, 0.1, "sigsoftmax")
                loss, grad = fs.cross_entropy(logits, target, return_grad=True, **kwargs)
                expected = reference_cross_entropy(logits, target, 1, **kwargs)
                rtol = RTOL[np.dtype(dtype)]
                assert_close(loss, expected[0], rtol, expected[2], f"loss {offset} {kwargs}")
                assert_close(grad, expected[1], rtol, expected[3], f"grad {offset} {kwargs}")


# ---------------------------------------------------------------------------------------
# Threads


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("n_classes", (1, 3, 8, 13, 64, 1003))
def test_weighted_target_rows_against_reference(n_classes, dtype, activation):
    """Probability targets and weighted smoothing on rows long enough for the vector
    passes (the grid's rows have 5 classes): every row length's remainder, -inf logits,
    zero probabilities and zero class weights, and the gradient written over the
    logits and over the probability target itself."""
    rng = np.random.default_rng(110 + n_classes)
    n_rows = 7
    logits = make_logits((n_rows, n_classes), dtype, seed=111 + n_classes)
    logits[:, 1::5] *= 6
    if n_classes > 2:
        logits[1, 2] = -np.inf
        logits[2, :n_classes // 2] = -np.inf
    q = make_prob_target((n_rows, n_classes), dtype, seed=112 + n_classes)
    q[np.isinf(logits)] = 0
    q[3, :] = 0
    q[3, -1] = 1                                   # a one-hot row
    q /= q.sum(axis=1, keepdims=True)
    target = rng.integers(0, n_classes, n_rows)
    target[4] = -100
    target[2] = 0                                  # a -inf logit's class (n_classes > 2)
    weight = rng.uniform(0.2, 2.0, n_classes).astype(dtype)
    weight[n_classes // 3] = 0
    rtol = RTOL[np.dtype(dtype)]
    cases = [(q, w, eps) for w in (None, weight) for eps in (0.0, 0.1, 1.0)]
    cases += [(target, w, eps) for w in (None, weight) for eps in (0.1, 1.0)]
    for tgt, w, eps in cases:
        for reduction in ("none", "mean"):
            kwargs = options(w, None, reduction, eps, activation)
            what = f"{tgt.dtype} target, weight {w is not None}, eps {eps}, {reduction}"
            loss, grad = fs.cross_entropy(logits, tgt, return_grad=True, **kwargs)
            expected = reference_cross_entropy(logits, tgt, 1, **kwargs)
            assert_close(loss, expected[0], rtol, expected[2], f"loss, {what}")
            # gradients below the normal range (sigsoftmax's gaps reach -144 here) come
            # from exponentials stored in the row's type: a few of its subnormal steps
            grad_scale = np.maximum(expected[3], np.finfo(dtype).tiny)
            assert_close(grad, expected[1], rtol, grad_scale, f"grad, {what}")
            assert np.array_equal(fs.cross_entropy(logits, tgt, **kwargs), loss,
                                  equal_nan=True), what
            over_logits = logits.copy()
            result = fs.cross_entropy(over_logits, tgt, return_grad=True,
                                      grad_out=over_logits, **kwargs)
            assert np.array_equal(result[0], loss, equal_nan=True), what
            assert np.array_equal(over_logits, grad), f"over the logits, {what}"
            if tgt.dtype.kind == "f":
                over_target = tgt.copy()
                result = fs.cross_entropy(logits, over_target, return_grad=True,
                                          grad_out=over_target, **kwargs)
                assert np.array_equal(result[0], loss, equal_nan=True), what
                assert np.array_equal(over_target, grad), f"over the target, {what}"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_thread_count_invariance(dtype):
    """Bitwise the same loss (also the mean/sum over rows) and gradient on 1 and 2 threads;
    inputs large enough (> 2**15 elements) for the package to start threads."""
    rng = np.random.default_rng(101)
    # the last two: dozens of dynamically scheduled chunks (short-row lanes, row loop)
    for shape, axis in (((300, 129), 1), ((8, 10, 24, 20), 1), ((60_001, 10), 1),
                        ((3_001, 100), 1)):
        logits = (3 * rng.standard_normal(shape)).astype(dtype)
        n_classes = shape[axis]
        index_shape = shape[:axis] + shape[axis + 1:]
        target = rng.integers(0, n_classes, index_shape)
        target.reshape(-1)[::7] = -1
        q = np.moveaxis(rng.dirichlet(np.ones(n_classes), index_shape), -1, axis).astype(dtype)
        weight = rng.uniform(0.5, 1.5, n_classes).astype(dtype)
        for tgt in (target, q):
            for activation in ACTIVATIONS:
                for reduction in REDUCTIONS:
                    kwargs = dict(axis=axis, weight=weight, ignore_index=-1,
                                  reduction=reduction, label_smoothing=0.1,
                                  activation=activation, return_grad=True)
                    serial = fs.cross_entropy(logits, tgt, num_threads=1, **kwargs)
                    parallel = fs.cross_entropy(logits, tgt, num_threads=2, **kwargs)
                    what = (shape, tgt.dtype, activation, reduction)
                    assert np.array_equal(serial[0], parallel[0]), what
                    assert np.array_equal(serial[1], parallel[1]), what


# ---------------------------------------------------------------------------------------
# Argument errors, all raised before any kernel runs


def _sentinel_call(logits, target, **kwargs):
    """Call with a sentinel grad_out (when return_grad) and check it stays untouched."""
    grad_out = np.full(logits.shape, 7.0, dtype=logits.dtype)
    kwargs.setdefault("return_grad", True)
    if kwargs["return_grad"]:
        kwargs.setdefault("grad_out", grad_out)
    before = logits.copy()
    try:
        return fs.cross_entropy(logits, target, **kwargs)
    finally:
        assert np.all(grad_out == 7.0), "grad_out written before the error"
        assert np.array_equal(logits, before), "logits changed before the error"


def _index_position_pattern(position):
    """The position of a label as a message may write it: (1, 0, 2), [1, 0, 2], 1, ..."""
    numbers = r"\W+".join(str(k) for k in position)
    return re.compile(rf"(?<![\d.]){numbers}(?![\d.])")


@pytest.mark.parametrize("bad", (5, -2, 1000, -101))
def test_label_out_of_range(bad):
    logits, target, _, _ = make_problem(SHAPES["nd"], np.float64, "index", None, "default",
                                        seed=111)
    position = (2, 1, 0)
    target[position] = bad
    for activation in ACTIVATIONS:
        with pytest.raises(IndexError) as info:
            _sentinel_call(logits, target, axis=1, activation=activation)
        message = str(info.value)
        assert re.search(rf"(?<![\d.]){re.escape(str(bad))}(?![\d.])", message), message
        flat = int(np.ravel_multi_index(position, target.shape))
        assert (_index_position_pattern(position).search(message)
                or re.search(rf"(?<![\d.]){flat}(?![\d.])", message)), message
    # 2-D: the position is the row
    logits2, target2, _, _ = make_problem(SHAPES["2d"], np.float64, "index", None, "default",
                                          seed=112)
    target2[4] = bad
    buffer = logits2.copy()
    with pytest.raises(IndexError, match=rf"(?<![\d.]){re.escape(str(bad))}(?![\d.])") as info:
        fs.cross_entropy(buffer, target2, return_grad=True, grad_out=buffer,
                         weight=make_weight("random", np.float64))
    assert re.search(r"(?<![\d.])4(?![\d.])", str(info.value)), str(info.value)
    assert np.array_equal(buffer, logits2), "logits (as grad_out) written before the error"
    # the loss alone raises too
    with pytest.raises(IndexError):
        fs.cross_entropy(logits2, target2)


def test_label_equal_to_ignore_index_is_not_checked():
    logits, target, weight, _ = make_problem(SHAPES["2d"], np.float64, "index", "random",
                                             "default", seed=113)
    target[1] = -5
    loss = fs.cross_entropy(logits, target, ignore_index=-5, weight=weight)
    assert np.isfinite(loss)


def test_argument_errors():
    logits, target, weight, _ = make_problem(SHAPES["2d"], np.float64, "index", "random",
                                             "default", seed=121)
    q = make_prob_target(SHAPES["2d"], np.float64, seed=122)
    value_errors = [
        dict(reduction="avg"),
        dict(reduction=None),
        dict(activation="relu"),
        dict(activation="log_softmax"),
        dict(label_smoothing=-0.1),
        dict(label_smoothing=1.5),
        dict(label_smoothing=float("nan")),
        dict(weight=np.ones(N_CLASSES + 1)),
        dict(weight=np.ones((N_CLASSES, 1))),
        dict(weight=np.ones((1, N_CLASSES))),
    ]
    for kwargs in value_errors:
        for tgt in (target, q):
            with pytest.raises(ValueError):
                _sentinel_call(logits, tgt, **kwargs)
            with pytest.raises(ValueError):
                fs.cross_entropy(logits, tgt, **kwargs)
    # probability targets of the wrong shape; index targets of the wrong shape
    for bad_target in (q[:, :-1], q[:-1], q[..., None], np.ones((6, N_CLASSES + 1)) / 6,
                       target[:-1], target[:, None], np.zeros((6, 2), dtype=np.int64)):
        with pytest.raises(ValueError):
            _sentinel_call(logits, bad_target)
    # a float target of the index shape is a probability target of the wrong shape
    with pytest.raises((ValueError, TypeError)):
        _sentinel_call(logits, target.astype(np.float64))
    # grad_output / grad_out without return_grad
    with pytest.raises(ValueError):
        fs.cross_entropy(logits, target, grad_output=2.0)
    grad_out = np.full(logits.shape, 7.0)
    with pytest.raises(ValueError):
        fs.cross_entropy(logits, target, grad_out=grad_out)
    assert np.all(grad_out == 7.0)
    # grad_output of the wrong shape for "none", an array for "mean"
    for reduction, go in (("none", np.ones(5)), ("none", np.ones((6, 1))),
                          ("mean", np.ones(6))):
        with pytest.raises(ValueError):
            _sentinel_call(logits, target, reduction=reduction, grad_output=go)
    # grad_out of the wrong shape or dtype
    for bad in (np.zeros((6, N_CLASSES + 1)), np.zeros((N_CLASSES, 6)),
                np.zeros((6, N_CLASSES), dtype=np.float32)):
        with pytest.raises((ValueError, TypeError)):
            fs.cross_entropy(logits, target, return_grad=True, grad_out=bad)
        assert np.all(bad == 0)
    # bad axis
    for axis in (2, -3):
        with pytest.raises(AxisError):
            _sentinel_call(logits, target, axis=axis)


@pytest.mark.parametrize("activation", ["softmax", "sigsoftmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_positive_infinity_makes_the_row_nan(activation, dtype):
    """A +inf logit (target or not) makes that row's loss and gradient NaN, and only that
    row's: the documented rule, as for softmax (inf - inf)."""
    logits = np.array([[1.0, np.inf, 0.0], [0.5, 1.5, -1.0], [np.inf, 0.0, 0.0]], dtype=dtype)
    target = np.array([0, 2, 0])
    loss, grad = fs.cross_entropy(logits, target, reduction="none", return_grad=True,
                                  activation=activation)
    assert np.isnan(loss[0]) and np.isnan(loss[2]) and np.isfinite(loss[1])
    assert np.isnan(grad[0]).all() and np.isnan(grad[2]).all() and np.isfinite(grad[1]).all()
