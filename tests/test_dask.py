"""The Dask backend (fastsoft._dask) against the NumPy path and the references.

Every public function takes Dask arrays chunked in every way that matters: rows split,
the computed axis split (the two-stage plan), both, ragged chunks and chunks of size 1;
the forward results are checked against fastsoft._reference with the core tests'
tolerances (tests/_arrays.py), the backward passes and cross_entropy against the NumPy
path with the tolerances of tests/test_backward.py and tests/test_cross_entropy.py.
Whole-row chunkings run the very kernels of the NumPy path, so they must agree bit for
bit.  Most tests use the synchronous scheduler (cheap on 2 cores); the cluster tests are
in test_dask_cluster.py.
"""

import math

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import _grad_reference as grad_ref  # noqa: E402
import fastsoft as fs  # noqa: E402
from _arrays import NAMES, arrays, assert_matches_reference, make_mask  # noqa: E402


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def chunkings(shape, axis):
    """(name, chunks) pairs splitting an array of `shape` along/around `axis` (None: all)."""
    ndim = len(shape)
    axes = range(ndim) if axis is None else [axis % ndim]
    others = [k for k in range(ndim) if k not in axes]

    def halves(n):
        return max(1, -(-n // 2))

    def spec(split_axes, split_others, size=None):
        return tuple((size or halves(n)) if (k in axes and split_axes)
                     or (k in others and split_others) else n
                     for k, n in enumerate(shape))

    yield "rows", spec(False, True)
    yield "classes", spec(True, False)
    yield "both", spec(True, True)
    yield "ones", spec(True, True, size=1)
    # ragged: unequal chunks along every split axis
    ragged = []
    for n in shape:
        ragged.append((n,) if n < 3 else (1, n - 3, 2) if n > 3 else (1, 2))
    yield "ragged", tuple(ragged)


def splits(chunks, shape, axis):
    """Whether `chunks` split the computed axis (or axes) over several blocks."""
    blocks = da.empty(shape, chunks=chunks).numblocks
    axes = range(len(shape)) if axis is None else [axis % len(shape)]
    return any(blocks[k] > 1 for k in axes)


def forward(name, x, axis, where=None):
    return getattr(fs, name)(x, axis=axis, where=where)


def cases(dtype):
    """(label, array, axis) of the adversarial arrays: the last axis and None, and for
    N-D arrays also a leading axis (not last)."""
    for label, x in arrays(dtype):
        if x.size == 0:
            continue          # test_empty_inputs
        axes = [-1, None] if x.ndim < 3 else [0, 1]
        for axis in axes:
            yield label, x, axis


def lazy_chunkings(x, axis, index):
    """(name, chunks) to try on the `index`-th case: one kind in turn (so that every kind
    meets every sort of array over the run, at a cost the 2-core CI can afford), and the
    class-axis split on every other case as well."""
    kinds = dict(chunkings(x.shape, axis))
    names = list(kinds)
    chosen = [names[index % len(names)]]
    if index % 2 and "classes" not in chosen:
        chosen.append("classes")
    return [(name, kinds[name]) for name in chosen]


# ---------------------------------------------------------------------------------------
# Forward functions


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_reference(dtype):
    checked = 0
    for index, (label, x, axis) in enumerate(cases(dtype)):
        expected = {name: forward(name, x, axis) for name in NAMES}
        kinds = dict(lazy_chunkings(x, axis, index))
        lazy = {(kind, name): forward(name, da.from_array(x, chunks=chunks), axis)
                for kind, chunks in kinds.items() for name in NAMES}
        assert all(isinstance(value, da.Array) for value in lazy.values())
        (results,) = dask.compute(lazy)      # one scheduler run per array
        for (kind, name), got in results.items():
            what = f"{name} {label} axis={axis} chunks={kind}"
            assert got.shape == np.shape(expected[name]), what
            try:
                assert_matches_reference(name, got, x, axis=axis)
            except AssertionError as error:
                raise AssertionError(f"{what}: {error}") from None
            if not splits(kinds[kind], x.shape, axis):
                # whole rows: the NumPy path's own kernel calls
                assert np.array_equal(got, expected[name], equal_nan=True), what
            checked += 1
    assert checked > 400


@pytest.mark.parametrize("name", NAMES)
def test_float16_and_integer_inputs(name):
    rng = np.random.default_rng(3)
    for x in (rng.standard_normal((5, 8)).astype(np.float16),
              rng.integers(-5, 5, size=(5, 8)).astype(np.int32)):
        got = forward(name, da.from_array(x, chunks=(2, 3)), -1).compute()
        assert_matches_reference(name, got, x, axis=-1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["random", "full_rows", "broadcast_row", "broadcast_rows",
                                  "all_false"])
@pytest.mark.parametrize("lazy_mask", [True, False], ids=["dask_mask", "numpy_mask"])
def test_where_across_class_chunks(name, kind, lazy_mask):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 3, 10)) * 4
    for axis in (2, 1):
        mask = make_mask(kind, x.shape, axis, seed=5)
        where = da.from_array(mask, chunks=2) if lazy_mask else mask
        got = forward(name, da.from_array(x, chunks=(4, 2, 3)), axis, where).compute()
        assert_matches_reference(name, got, x, axis=axis, where=mask)


@pytest.mark.parametrize("name", NAMES)
def test_fully_masked_row_across_chunks(name):
    x = np.arange(24.0).reshape(3, 8)
    x[1, 5] = -np.inf
    x[2] = -np.inf                       # unmasked, all -inf: NaN (logsumexp: -inf)
    mask = np.ones_like(x, dtype=bool)
    mask[0] = False                      # fully masked: exact fill, never NaN
    mask[1, :4] = False                  # the first class chunk of row 1 masked
    got = forward(name, da.from_array(x, chunks=(1, 4)), -1,
                  da.from_array(mask, chunks=(2, 4))).compute()
    expected = forward(name, x, -1, mask)
    assert_matches_reference(name, got, x, axis=-1, where=mask)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert not np.isnan(got[0]).any()


def test_logsumexp_keepdims_and_zero_d():
    x = np.random.default_rng(6).standard_normal((4, 5, 6))
    dx = da.from_array(x, chunks=(3, 2, 4))
    for axis in (None, 0, 1, 2):
        got = fs.logsumexp(dx, axis=axis, keepdims=True)
        assert got.shape == fs.logsumexp(x, axis=axis, keepdims=True).shape
        assert_matches_reference("logsumexp", got.compute(), x, axis=axis, keepdims=True)
    scalar = fs.logsumexp(dx, axis=None)
    assert isinstance(scalar, da.Array) and scalar.shape == ()
    assert_matches_reference("logsumexp", scalar.compute(), x, axis=None)


def test_empty_inputs():
    for shape, chunks in [((0, 5), (1, 2)), ((3, 0), (2, 1)), ((2, 0, 3), (1, 1, 2))]:
        x = np.zeros(shape)
        for name in NAMES:
            for axis in (None, -1, 0):
                got = forward(name, da.from_array(x, chunks=chunks), axis).compute()
                expected = forward(name, x, axis)
                assert got.shape == np.shape(expected), (name, shape, axis)
                np.testing.assert_array_equal(got, expected)


def test_mixed_chunkings_of_mask_and_input():
    x = np.random.default_rng(7).standard_normal((9, 12))
    mask = np.random.default_rng(8).random((9, 12)) < 0.6
    got = fs.log_softmax(da.from_array(x, chunks=(4, 5)),
                         where=da.from_array(mask, chunks=(3, 7))).compute()
    assert_matches_reference("log_softmax", got, x, where=mask)


def test_threaded_scheduler_and_num_threads():
    x = np.random.default_rng(9).standard_normal((64, 600)).astype(np.float32)
    with dask.config.set(scheduler="threads"):
        for chunks in [(16, 600), (16, 128)]:
            got = fs.softmax(da.from_array(x, chunks=chunks), num_threads=2).compute()
            assert_matches_reference("softmax", got, x)


def test_tree_reduction_depth():
    # many class chunks: the merge runs as a tree of several levels
    x = np.random.default_rng(10).standard_normal((3, 200)) * 20
    x[:, 150] = 60.0
    dx = da.from_array(x, chunks=(3, 3))
    for name in NAMES:
        assert_matches_reference(name, forward(name, dx, -1).compute(), x, axis=-1)


# ---------------------------------------------------------------------------------------
# The plan: no task ever holds a whole row


def widest_task_results(lazy):
    """((width along axis 1, key), rows) of every 2-D array a task of `lazy` produced,
    and the computed results."""
    from dask.callbacks import Callback

    widths = []

    def record(key, result, dsk, state, worker_id):
        values = result if isinstance(result, (tuple, list)) else (result,)
        for value in values:
            if isinstance(value, np.ndarray) and value.ndim == 2:
                widths.append(((value.shape[1], key), value.shape[0]))

    with Callback(posttask=record):
        persisted = dask.persist(*lazy)      # blocks kept apart: no final concatenation
    return widths, dask.compute(*persisted)


SPLIT_PLANS = {
    "softmax": lambda x, labels: (fs.softmax(x, where=x > -3),),
    "log_sigsoftmax": lambda x, labels: (fs.log_sigsoftmax(x),),
    "logsumexp": lambda x, labels: (fs.logsumexp(x, keepdims=True),),
    "softmax_backward": lambda x, labels: (fs.softmax_backward(x, fs.softmax(x)),),
    "cross_entropy": lambda x, labels: fs.cross_entropy(x, labels, return_grad=True,
                                                        label_smoothing=0.1),
}


@pytest.mark.parametrize("plan", list(SPLIT_PLANS))
def test_class_split_never_materialises_a_row(plan):
    n_rows, n_cols, block = 8, 12, 4
    x = da.random.default_rng(0).standard_normal((n_rows, n_cols), chunks=(4, block))
    labels = da.arange(n_rows, chunks=4) % n_cols
    widths, results = widest_task_results(SPLIT_PLANS[plan](x, labels))
    assert widths, "no task results recorded"
    # rows of the logits (and of anything shaped like them); cross_entropy's class
    # weights, one (1, C) vector, are the only full-width array allowed
    too_wide = [key for (width, key), rows in widths if width >= n_cols and rows > 1]
    assert not too_wide, f"tasks holding a whole row: {too_wide}"
    assert max(width for (width, _), rows in widths if rows > 1) <= block
    # and the plan computed the right thing
    x_np, labels_np = dask.compute(x, labels)
    expected = SPLIT_PLANS[plan](x_np, labels_np)
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_class_split_keeps_chunks():
    x = da.ones((6, 10), chunks=(3, 4))
    for name in NAMES:
        if name != "logsumexp":
            assert forward(name, x, -1).chunks == x.chunks
    loss, grad = fs.cross_entropy(x, da.zeros(6, dtype=int, chunks=2), return_grad=True)
    assert grad.chunks == x.chunks and loss.shape == ()


# ---------------------------------------------------------------------------------------
# Backward passes


BACKWARD_U = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float64): 2.0**-53}


def backward_inputs(name, x, axis, where, rng):
    """(arguments of fs.<name>_backward, keyword arguments) from the NumPy forward."""
    g = rng.standard_normal(x.shape).astype(x.dtype)
    if name == "logsumexp":
        result = fs.logsumexp(x, axis=axis, where=where)
        g = rng.standard_normal(np.shape(result)).astype(x.dtype)
        return (g, x, np.asarray(result)), {}
    y = forward(name, x, axis, where)
    return ((g, y, x) if name.startswith(("sig", "log_sig")) else (g, y)), {}


def assert_backward_close(name, got, expected, args, axis, where, what):
    """got within (4 + n) u * scale of the NumPy path (tests/test_backward.py's bound)."""
    expected = np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if name == "logsumexp":
        g, x, result = args
        scale = grad_ref.backward_error_scale(name, g, x=x, result=result, axis=axis,
                                              where=where)
    else:
        scale = grad_ref.backward_error_scale(name, args[0], y=args[1],
                                              x=args[2] if len(args) == 3 else None,
                                              axis=axis, where=where)
    scale = np.where(np.isnan(scale), 0.0, scale)   # no scale (0 * inf): exact values
    n = got.size if axis is None else got.shape[axis]
    bound = 2 * (4 + n) * BACKWARD_U[got.dtype] * scale + np.finfo(got.dtype).tiny
    with np.errstate(invalid="ignore"):
        special = ~np.isfinite(expected)
        wrong = special & ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
        wrong |= ~special & ~(np.abs(got - expected) <= bound)
    assert not wrong.any(), (name, what, axis, got[wrong], expected[wrong])


def lazy_like(a, x, chunks, axis):
    """a (x's shape, or logsumexp's reduced shape) as a Dask array chunked like x."""
    if a.shape == x.shape:
        return da.from_array(a, chunks=chunks)
    if axis is None:
        return da.from_array(a, chunks=-1)
    axis = axis % x.ndim
    return da.from_array(a, chunks=chunks[:axis] + chunks[axis + 1:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_matches_numpy_path(dtype):
    rng = np.random.default_rng(11)
    checked = 0
    for index, (label, x, axis) in enumerate(cases(dtype)):
        # the masked variant on every other float64 array (the code path is the same)
        masked = dtype == np.float64 and index % 2 == 0
        for mask_kind in ("none", "full_rows") if masked else ("none",):
            where = make_mask(mask_kind, x.shape, axis)
            inputs, expected = {}, {}
            with np.errstate(all="ignore"):
                for name in NAMES:
                    inputs[name], _ = backward_inputs(name, x, axis, where, rng)
                    expected[name] = getattr(fs, name + "_backward")(
                        *inputs[name], axis=axis, where=where)
            lazy_where = None if where is None else da.from_array(where, chunks=2)
            lazy = {(kind, name): getattr(fs, name + "_backward")(
                        *(lazy_like(a, x, chunks, axis) for a in inputs[name]),
                        axis=axis, where=lazy_where)
                    for kind, chunks in lazy_chunkings(x, axis, index) for name in NAMES}
            (results,) = dask.compute(lazy)
            for (kind, name), got in results.items():
                assert_backward_close(name, got, expected[name], inputs[name], axis,
                                      where, f"{label} {kind} {mask_kind}")
                checked += 1
    assert checked > 200


def test_backward_logsumexp_keepdims_result():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 9))
    result = fs.logsumexp(x, axis=1, keepdims=True)
    g = rng.standard_normal((4, 1))
    expected = fs.logsumexp_backward(g, x, result, axis=1)
    got = fs.logsumexp_backward(da.from_array(g, chunks=2), da.from_array(x, chunks=(2, 4)),
                                result, axis=1).compute()
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------------------------
# cross_entropy


RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def assert_close(got, expected, rtol, scale, what):
    """|got - expected| <= rtol * max(|expected|, scale); NaN and inf exactly."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype, what
    magnitude = np.maximum(np.abs(expected.astype(np.float64)), np.abs(scale))
    with np.errstate(invalid="ignore"):
        special = ~np.isfinite(expected)
        wrong = special & ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
        wrong |= ~special & ~(np.abs(got.astype(np.float64) - expected) <= rtol * magnitude)
    assert not wrong.any(), f"{what}: got {got[wrong]}, expected {expected[wrong]}"


def cross_entropy_problem(shape, axis, dtype, target_kind, ignore_index, seed=13):
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    batch = shape[:axis] + shape[axis + 1:]
    n_classes = shape[axis]
    if target_kind == "index":
        target = rng.integers(0, n_classes, size=batch)
        target.reshape(-1)[::4] = ignore_index
    else:
        target = rng.random(shape).astype(dtype)
        target /= target.sum(axis=axis, keepdims=True)
    return logits, target


CE_OPTIONS = [
    {},
    {"label_smoothing": 0.2},
    {"weight": "random"},
    {"weight": "random", "label_smoothing": 0.1, "ignore_index": 2},
    {"weight": "zeros_some"},
]
CE_SHAPES = [((7, 9), 1), ((3, 6, 2, 5), 1), ((4, 2, 7), 2)]


def weight_of(kind, n_classes):
    if kind == "random":
        return np.random.default_rng(14).random(n_classes) + 0.25
    if kind == "zeros_some":
        weight = np.ones(n_classes)
        weight[::2] = 0.0
        return weight
    return None


@pytest.mark.parametrize("target_kind", ["index", "prob"])
@pytest.mark.parametrize("activation", ["softmax", "sigsoftmax"])
def test_cross_entropy_matches_numpy_path(activation, target_kind):
    index = 0
    for dtype in (np.float32, np.float64):
        rtol = RTOL[np.dtype(dtype)]
        for reduction in ("mean", "sum", "none"):
            for shape, axis in CE_SHAPES:
                # options and chunkings in turn: each meets every other over the loop
                index += 1
                options = CE_OPTIONS[index % len(CE_OPTIONS)]
                logits, target = cross_entropy_problem(
                    shape, axis, dtype, target_kind, options.get("ignore_index", -100))
                batch = shape[:axis] + shape[axis + 1:]
                kwargs = dict(options, reduction=reduction, activation=activation)
                kwargs["weight"] = weight_of(options.get("weight"), shape[axis])
                grad_output = (np.random.default_rng(15).standard_normal(batch)
                               if reduction == "none" else 0.75)
                expected = fs.cross_entropy(logits, target, axis=axis, return_grad=True,
                                            grad_output=grad_output, **kwargs)
                scales = grad_ref.cross_entropy_error_scales(
                    logits, target, axis=axis, grad_output=grad_output, **kwargs)
                kinds = dict(chunkings(shape, axis))
                names = list(kinds)
                chosen = {names[index % len(names)]}
                lazy = {}
                for kind in chosen:
                    chunks = kinds[kind]
                    lazy_target = da.from_array(
                        target, chunks=chunks if target.ndim == len(shape)
                        else chunks[:axis] + chunks[axis + 1:])
                    lazy_logits = da.from_array(logits, chunks=chunks)
                    lazy[kind] = (fs.cross_entropy(lazy_logits, lazy_target, axis=axis,
                                                   return_grad=True, grad_output=grad_output,
                                                   **kwargs),
                                  fs.cross_entropy(lazy_logits, lazy_target, axis=axis,
                                                   **kwargs))
                (results,) = dask.compute(lazy)
                for kind, ((loss, grad), only_loss) in results.items():
                    what = f"{shape} {kind} {kwargs}"
                    assert_close(loss, expected[0], rtol, scales[0], "loss " + what)
                    assert_close(grad, expected[1], rtol, scales[1], "grad " + what)
                    assert_close(only_loss, expected[0], rtol, scales[0], "loss only " + what)
                    if not splits(kinds[kind], shape, axis):
                        assert np.array_equal(grad, expected[1], equal_nan=True), what


@pytest.mark.parametrize("activation", ["softmax", "sigsoftmax"])
def test_cross_entropy_special_logits(activation):
    logits = np.random.default_rng(16).standard_normal((6, 8))
    logits[0, 3] = -np.inf                 # a -inf logit, not the target
    logits[1, 6] = np.inf                  # +inf: NaN loss and gradient
    logits[2, 1] = np.nan
    logits[3] = -np.inf                    # no member: NaN
    logits[4] += 1e4                       # a large offset
    labels = np.array([0, 1, 2, 3, 4, 5])
    expected = fs.cross_entropy(logits, labels, activation=activation, reduction="none",
                                return_grad=True, label_smoothing=0.1)
    for chunks in [(2, 8), (3, 3), (1, 1)]:
        loss, grad = dask.compute(*fs.cross_entropy(
            da.from_array(logits, chunks=chunks), labels, activation=activation,
            reduction="none", return_grad=True, label_smoothing=0.1))
        np.testing.assert_array_equal(np.isnan(loss), np.isnan(expected[0]))
        np.testing.assert_array_equal(np.isnan(grad), np.isnan(expected[1]))
        finite = np.isfinite(expected[0])
        np.testing.assert_allclose(loss[finite], expected[0][finite], rtol=1e-12)
        np.testing.assert_allclose(grad[finite], expected[1][finite], rtol=1e-12,
                                   atol=1e-15)


def test_cross_entropy_all_rows_ignored():
    logits = da.from_array(np.ones((4, 6)), chunks=(2, 3))
    labels = np.full(4, -100)
    loss, grad = dask.compute(*fs.cross_entropy(logits, labels, return_grad=True))
    assert np.isnan(loss) and np.all(grad == 0)


def test_cross_entropy_lazy_inputs_of_every_kind():
    rng = np.random.default_rng(17)
    logits = rng.standard_normal((10, 7))
    labels = rng.integers(0, 7, 10)
    weight = rng.random(7) + 0.5
    expected = fs.cross_entropy(logits, labels, weight=weight, return_grad=True,
                                grad_output=2.0)
    lazy = fs.cross_entropy(da.from_array(logits, chunks=(3, 4)),
                            da.from_array(labels, chunks=4),
                            weight=da.from_array(weight, chunks=3), return_grad=True,
                            grad_output=da.from_array(np.float64(2.0)))
    loss, grad = dask.compute(*lazy)
    assert isinstance(lazy[0], da.Array) and lazy[0].shape == ()
    np.testing.assert_allclose(loss, expected[0], rtol=1e-13)
    np.testing.assert_allclose(grad, expected[1], rtol=1e-12, atol=1e-16)
    # NumPy logits with a Dask target: the call goes to Dask as well
    mixed = fs.cross_entropy(logits, da.from_array(labels, chunks=5), weight=weight)
    assert isinstance(mixed, da.Array)
    np.testing.assert_allclose(mixed.compute(), expected[0], rtol=1e-13)


def test_cross_entropy_float16_logits():
    logits = np.random.default_rng(18).standard_normal((6, 5)).astype(np.float16)
    labels = np.arange(6) % 5
    expected = fs.cross_entropy(logits, labels, return_grad=True)
    for chunks in [(3, 5), (3, 2)]:
        loss, grad = dask.compute(*fs.cross_entropy(da.from_array(logits, chunks=chunks),
                                                    labels, return_grad=True))
        assert loss.dtype == np.float16 and grad.dtype == np.float16
        np.testing.assert_allclose(loss, expected[0], rtol=1e-3)
        np.testing.assert_allclose(grad, expected[1], rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------
# Errors


def test_out_is_a_type_error():
    x = da.ones((2, 3), chunks=1)
    with pytest.raises(TypeError, match="out= is not supported for Dask"):
        fs.softmax(x, out=np.empty((2, 3)))
    with pytest.raises(TypeError, match="out= is not supported for Dask"):
        fs.logsumexp(x, out=np.empty(2))
    with pytest.raises(TypeError, match="out= is not supported for Dask"):
        fs.softmax_backward(x, x, out=np.empty((2, 3)))
    with pytest.raises(TypeError, match="grad_out= is not supported for Dask"):
        fs.cross_entropy(x, np.zeros(2, dtype=int), return_grad=True,
                         grad_out=np.empty((2, 3)))


def test_argument_errors_are_eager_and_match_numpy():
    from numpy.exceptions import AxisError

    x = da.ones((2, 3), chunks=1)
    with pytest.raises(TypeError, match="unsupported dtype complex128"):
        fs.softmax(x.astype(complex))
    with pytest.raises(AxisError):
        fs.log_softmax(x, axis=2)
    with pytest.raises(TypeError, match="where must be a boolean"):
        fs.softmax(x, where=da.ones((2, 3), chunks=1))
    with pytest.raises(ValueError, match="cannot be broadcast"):
        fs.softmax(x, where=np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        fs.softmax(x, num_threads=0)
    with pytest.raises(ValueError, match="different shapes"):
        fs.softmax_backward(x, da.ones((3, 3), chunks=1))
    with pytest.raises(ValueError, match="reduction must be one of"):
        fs.cross_entropy(x, np.zeros(2, dtype=int), reduction="avg")
    with pytest.raises(ValueError, match="class-index target has shape"):
        fs.cross_entropy(x, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="weight has shape"):
        fs.cross_entropy(x, np.zeros(2, dtype=int), weight=np.ones(4))


@pytest.mark.parametrize("chunks", [(1, 3), (1, 2)], ids=["whole_rows", "split_classes"])
def test_bad_label_raises_index_error_when_computed(chunks):
    labels = da.from_array(np.array([0, 1, 2, 7]), chunks=2)
    lazy = fs.cross_entropy(da.ones((4, 3), chunks=chunks), labels, reduction="sum")
    with pytest.raises(IndexError, match=r"target 7 at position \(3,\)"):
        lazy.compute()


def test_reduced_loss_is_lazy_0d_of_the_result_dtype():
    x = da.ones((4, 3), chunks=2, dtype=np.float32)
    loss = fs.cross_entropy(x, np.zeros(4, dtype=int))
    assert isinstance(loss, da.Array) and loss.shape == () and loss.dtype == np.float32
    assert math.isclose(float(loss.compute()), math.log(3), rel_tol=1e-6)


def test_backward_takes_the_chunks_of_its_dask_argument():
    rng = np.random.default_rng(19)
    x = rng.standard_normal((6, 8))
    y, g = fs.softmax(x), rng.standard_normal((6, 8))
    lazy = fs.softmax_backward(g, da.from_array(y, chunks=(3, 4)))   # NumPy g, Dask y
    assert lazy.chunks == ((3, 3), (4, 4))
    assert_backward_close("softmax", lazy.compute(), fs.softmax_backward(g, y), (g, y), -1,
                          None, "numpy grad_output")
