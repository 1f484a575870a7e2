"""Bad arguments raise the documented exception, for every public function."""

import numpy as np
import pytest
from numpy.exceptions import AxisError

import fastsoft as fs
from _arrays import NAMES, REGISTRY, result_dtype


def call(name, x, *args, **kwargs):
    return getattr(fs, name)(x, *args, **kwargs)


X = np.arange(12.0).reshape(3, 4) / 7


# ---------------------------------------------------------------------------------------
# dtypes

REJECTED_DTYPES = [np.complex64, np.complex128, object, np.str_, np.bytes_, np.longdouble]


@pytest.mark.parametrize("dtype", REJECTED_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_rejected_dtypes(name, dtype):
    x = np.ones((2, 3)).astype(dtype)
    with pytest.raises(TypeError):
        call(name, x)
    with pytest.raises(TypeError):
        call(name, x, axis=None)


@pytest.mark.parametrize("name", NAMES)
def test_rejected_python_objects(name):
    with pytest.raises(TypeError):
        call(name, [1.0 + 2.0j, 3.0])
    with pytest.raises(TypeError):
        call(name, ["a", "b"])


@pytest.mark.parametrize("name", NAMES)
def test_rejected_empty_complex(name):
    """The dtype is checked before the early return of zero-size inputs."""
    with pytest.raises(TypeError):
        call(name, np.empty((0, 3), dtype=np.complex128))


# ---------------------------------------------------------------------------------------
# axis


@pytest.mark.parametrize("name", NAMES)
def test_axis_out_of_range(name):
    for axis in (2, -3, 100):
        with pytest.raises(AxisError):
            call(name, X, axis=axis)
    with pytest.raises(AxisError):
        call(name, np.ones(3), axis=1)


@pytest.mark.parametrize("name", NAMES)
def test_axis_not_an_integer(name):
    for axis in (1.5, "a", 1.0, [0], (0, 1)):
        with pytest.raises(TypeError):
            call(name, X, axis=axis)


@pytest.mark.parametrize("name", NAMES)
def test_axis_integer_like(name):
    assert np.array_equal(call(name, X, axis=np.int64(0)), call(name, X, axis=0))
    assert np.array_equal(call(name, X, axis=np.intp(-1)), call(name, X, axis=1))


@pytest.mark.parametrize("name", NAMES)
def test_0d_input_needs_axis_none(name):
    for axis in (-1, 0):
        with pytest.raises(AxisError):
            call(name, np.float64(1.0), axis=axis)
    with pytest.raises(AxisError):
        call(name, 2.0)   # default axis=-1


@pytest.mark.parametrize("name", NAMES)
def test_axis_checked_for_empty_arrays(name):
    with pytest.raises(AxisError):
        call(name, np.empty((0, 3)), axis=2)


# ---------------------------------------------------------------------------------------
# out=


def result_shape(name, x, axis=-1, keepdims=False):
    if not REGISTRY[name].reduces:
        return np.shape(x)
    if axis is None:
        return (1,) * np.ndim(x) if keepdims else ()
    shape = list(np.shape(x))
    if keepdims:
        shape[axis] = 1
    else:
        del shape[axis]
    return tuple(shape)


@pytest.mark.parametrize("name", NAMES)
def test_out_wrong_dtype(name):
    shape = result_shape(name, X)
    for dtype in (np.float32, np.float16, np.int64, np.complex128, np.longdouble):
        with pytest.raises(TypeError):
            call(name, X, out=np.empty(shape, dtype=dtype))
    # float16 input: the result (and out=) is float16, not the float32 it computes in
    with pytest.raises(TypeError):
        call(name, X.astype(np.float16), out=np.empty(shape, dtype=np.float32))
    # integer input: the result is float64
    with pytest.raises(TypeError):
        call(name, np.ones((3, 4), dtype=np.int64), out=np.empty(shape, dtype=np.int64))


@pytest.mark.parametrize("name", NAMES)
def test_out_wrong_shape(name):
    shape = result_shape(name, X)
    wrong_shapes = [shape[::-1] + (1,), (12,), (3, 4, 1), (1, 3, 4), (4, 3)]
    if REGISTRY[name].reduces:
        wrong_shapes = [(4,), (3, 1), (1, 3), ()]
    for wrong in wrong_shapes:
        if wrong == shape:
            continue
        with pytest.raises(ValueError):
            call(name, X, out=np.empty(wrong))


def test_logsumexp_out_respects_keepdims():
    with pytest.raises(ValueError):
        fs.logsumexp(X, axis=1, keepdims=True, out=np.empty(3))
    with pytest.raises(ValueError):
        fs.logsumexp(X, axis=1, keepdims=False, out=np.empty((3, 1)))
    with pytest.raises(ValueError):
        fs.logsumexp(X, axis=None, out=np.empty(1))


@pytest.mark.parametrize("name", NAMES)
def test_out_not_an_ndarray(name):
    shape = result_shape(name, X)
    for out in (np.zeros(shape).tolist(), 0.0, memoryview(np.zeros(shape))):
        with pytest.raises(TypeError):
            call(name, X, out=out)


@pytest.mark.parametrize("name", NAMES)
def test_out_read_only(name):
    out = np.empty(result_shape(name, X))
    out.flags.writeable = False
    with pytest.raises(ValueError):
        call(name, X, out=out)


@pytest.mark.parametrize("name", NAMES)
def test_out_for_0d_result(name):
    x = np.float64(2.0)
    out = np.empty(())
    assert call(name, x, axis=None, out=out) is out
    assert out[()] == {"prob": 1.0, "log": 0.0, "reduce": 2.0}[REGISTRY[name].kind]


@pytest.mark.parametrize("name", NAMES)
def test_failed_call_leaves_out_alone(name):
    """A call that raises does not write into out=."""
    out = np.full(result_shape(name, X), 7.0)
    with pytest.raises(TypeError):
        call(name, X, out=out, where=np.ones((3, 4), dtype=np.int8))
    with pytest.raises(ValueError):
        call(name, X, out=out, num_threads=0)
    assert np.all(out == 7.0)


# ---------------------------------------------------------------------------------------
# where=


@pytest.mark.parametrize("name", NAMES)
def test_where_not_boolean(name):
    for where in (np.ones((3, 4), dtype=np.int64), np.ones((3, 4)), np.ones(4, dtype=np.uint8),
                  np.array([[1, 0, 1, 0]] * 3, dtype=np.int8)):
        with pytest.raises(TypeError):
            call(name, X, where=where)


@pytest.mark.parametrize("name", NAMES)
def test_where_not_broadcastable(name):
    for shape in ((3,), (4, 3), (2, 3, 4), (3, 2), (5,)):
        with pytest.raises(ValueError):
            call(name, X, where=np.ones(shape, dtype=bool))


@pytest.mark.parametrize("name", NAMES)
def test_where_must_not_broadcast_x(name):
    """where= broadcasts to x, never x to where (the result keeps x's shape)."""
    x = np.ones((1, 4))
    with pytest.raises(ValueError):
        call(name, x, where=np.ones((3, 4), dtype=bool))


# ---------------------------------------------------------------------------------------
# num_threads


@pytest.mark.parametrize("name", NAMES)
def test_num_threads_value(name):
    for bad in (0, -1, -8):
        with pytest.raises(ValueError):
            call(name, X, num_threads=bad)


@pytest.mark.parametrize("name", NAMES)
def test_num_threads_type(name):
    for bad in (1.5, 2.0, "2", [2]):
        with pytest.raises(TypeError):
            call(name, X, num_threads=bad)


@pytest.mark.parametrize("name", NAMES)
def test_num_threads_integer_like(name):
    expected = call(name, X)
    assert np.array_equal(call(name, X, num_threads=np.int64(2)), expected)
    assert np.array_equal(call(name, X, num_threads=1), expected)


# ---------------------------------------------------------------------------------------
# the signature: keyword-only arguments


@pytest.mark.parametrize("name", NAMES)
def test_keyword_only(name):
    out = np.empty(result_shape(name, X))
    with pytest.raises(TypeError):
        call(name, X, -1, out)


def test_keepdims_only_for_logsumexp():
    for name in NAMES:
        if not REGISTRY[name].reduces:
            with pytest.raises(TypeError):
                call(name, X, keepdims=True)


@pytest.mark.parametrize("name", NAMES)
def test_result_dtype_for_lists(name):
    assert np.asarray(call(name, [[1, 2], [3, 4]])).dtype == result_dtype(np.int64)
    assert np.asarray(call(name, [0.5, 1.5])).dtype == np.float64


def test_rows_with_a_step_of_minus_one_element():
    """Reversed rows of one element have a row step of -1, which the kernels once took for
    an error marker (SystemError); likewise a reversed per-row vector."""
    column = np.arange(3.0).reshape(3, 1)[::-1]
    np.testing.assert_array_equal(fs.softmax(column), np.ones((3, 1)))
    np.testing.assert_array_equal(fs.logsumexp(column), [2.0, 1.0, 0.0])
    out = np.empty(6)[::-2]
    assert fs.logsumexp(column, out=out) is out
    np.testing.assert_array_equal(out, [2.0, 1.0, 0.0])
    loss, grad = fs.cross_entropy(column, np.zeros(3, dtype=int), reduction="none",
                                  label_smoothing=0.1, return_grad=True)
    np.testing.assert_array_equal(loss, np.zeros(3))
    np.testing.assert_array_equal(grad, np.zeros((3, 1)))
    reversed_ones = np.ones(3)[::-1]
    x = np.random.default_rng(0).standard_normal((3, 4))
    np.testing.assert_allclose(fs.logsumexp_backward(reversed_ones, x, fs.logsumexp(x)),
                               fs.softmax(x), rtol=1e-15)
