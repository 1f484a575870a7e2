"""Argument checks shared by every public function: every user-facing error is raised here.

dtype policy: float32 and float64 are computed as they are; float16 is computed in float32
and returned as float16; bool and integer inputs are computed and returned in float64;
anything else (complex, longdouble, object, strings, datetimes) is a TypeError.
"""

import operator

import numpy as np
from numpy.exceptions import AxisError


# The dtype policy as names, for any array namespace: kind and itemsize as NumPy spells them.
_STANDARD_DTYPES = (
    ("bool", "b", 1),
    ("int8", "i", 1), ("int16", "i", 2), ("int32", "i", 4), ("int64", "i", 8),
    ("uint8", "u", 1), ("uint16", "u", 2), ("uint32", "u", 4), ("uint64", "u", 8),
    ("float16", "f", 2), ("float32", "f", 4), ("float64", "f", 8),
)


def dtype_policy(kind, itemsize):
    """(work dtype name, result dtype name) for a dtype of this NumPy kind and itemsize,
    or None when fastsoft does not compute on it."""
    if kind == "f" and itemsize in (4, 8):
        name = f"float{8 * itemsize}"
        return name, name
    if kind == "f" and itemsize == 2:
        return "float32", "float16"
    if kind in ("b", "i", "u"):
        return "float64", "float64"
    return None


def unsupported_dtype(name, dtype):
    """The TypeError of an input dtype outside the policy."""
    return TypeError(
        f"{name}: unsupported dtype {dtype} (fastsoft computes on float32 and float64; "
        "float16 is computed in float32, bool and integers in float64)"
    )


def kind_and_itemsize(dtype, xp=None):
    """(NumPy kind, itemsize) of a dtype of any array namespace; (None, None) if unknown.

    NumPy and CuPy dtypes carry both (byte-swapped ones included); dtype objects of
    other namespaces (array-api-strict) are matched against `xp`'s standard dtypes.
    """
    kind, itemsize = getattr(dtype, "kind", None), getattr(dtype, "itemsize", None)
    if isinstance(kind, str) and isinstance(itemsize, int):
        return kind, itemsize
    for dtype_name, kind, itemsize in _STANDARD_DTYPES:
        candidate = getattr(xp, dtype_name, None)
        if candidate is not None and dtype == candidate:
            return kind, itemsize
    return None, None


def broadcasts_to(shape, target):
    """Whether an array of `shape` broadcasts to `target` (without changing `target`)."""
    if len(shape) > len(target):
        return False
    return all(n == 1 or n == m for n, m in zip(reversed(shape), reversed(target)))


def where_shape_error(name, where_shape, shape):
    """The ValueError of a where= mask that does not broadcast to the input."""
    return ValueError(
        f"{name}: where of shape {tuple(where_shape)} cannot be broadcast to the input's "
        f"shape {tuple(shape)}"
    )


def as_float_array(x, name):
    """(x as a native float32/float64 ndarray to compute on, dtype of the result)."""
    x = np.asarray(x)
    policy = dtype_policy(x.dtype.kind, x.dtype.itemsize)
    if policy is None:
        raise unsupported_dtype(name, x.dtype)
    work_dtype, result_dtype = np.dtype(policy[0]), np.dtype(policy[1])  # native byte order
    if x.dtype != work_dtype:
        x = x.astype(work_dtype)
    return x, result_dtype


def normalize_axis(axis, ndim, name):
    """axis as a non-negative int, or None (the whole array as one row)."""
    if axis is None:
        return None
    if isinstance(axis, bool):
        raise TypeError(f"{name}: axis must be an integer or None, not bool")
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(
            f"{name}: axis must be an integer or None, not {type(axis).__name__}"
        ) from None
    if not -ndim <= axis < ndim:
        raise AxisError(axis, ndim)
    return axis % ndim


def check_out(out, shape, dtype, name, array_type=np.ndarray, what="out"):
    """out itself after checking it can hold the result (shape and dtype exactly).

    `array_type` is the array class `out` must be (another namespace's for _generic);
    `what` names the argument in the messages (cross_entropy's gradient buffer: grad_out).
    """
    if out is None:
        return None
    if not isinstance(out, array_type):
        raise TypeError(f"{name}: {what} must be a {array_type.__module__.split('.')[0]}."
                        f"{array_type.__name__}, not {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name}: {what} has dtype {out.dtype}, the result needs {dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name}: {what} has shape {tuple(out.shape)}, the result needs "
                         f"{tuple(shape)}")
    if not getattr(getattr(out, "flags", None), "writeable", True):
        raise ValueError(f"{name}: {what} is read-only")
    return out


def check_where(where, shape, name):
    """The mask broadcast to `shape` (a read-only view), or None when it masks nothing."""
    if where is None:
        return None
    where = np.asarray(where)
    if where.dtype != np.bool_:
        raise TypeError(f"{name}: where must be a boolean array, not {where.dtype}")
    if where.ndim == 0 and where:
        return None
    try:
        return np.broadcast_to(where, shape)
    except ValueError:
        raise where_shape_error(name, where.shape, shape) from None


REDUCTIONS = ("none", "mean", "sum")
ACTIVATIONS = ("softmax", "sigsoftmax")


def check_loss_options(name, shape, axis, reduction, activation, label_smoothing,
                       ignore_index, return_grad, grad_output, grad_out):
    """cross_entropy's options checked alike on every path: (axis, smoothing, ignore_index)."""
    if len(shape) == 0:
        raise ValueError(f"{name}: logits need a class axis")
    if axis is None:
        raise TypeError(f"{name}: axis must be an integer (the class axis), not None")
    axis = normalize_axis(axis, len(shape), name)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, not {reduction!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{name}: activation must be one of {ACTIVATIONS}, not {activation!r}")
    smoothing = float(label_smoothing)
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing}")
    ignore_index = operator.index(ignore_index)
    if not return_grad and (grad_output is not None or grad_out is not None):
        raise ValueError(f"{name}: grad_output and grad_out need return_grad=True")
    if shape[axis] == 0:
        raise ValueError(f"{name}: the class axis has length 0")
    return axis, smoothing, ignore_index


def check_mixture_axes(name, shape, axis, component_axis, activation):
    """log_mixture's and mixture_cross_entropy's axes and activation, checked alike:
    (class axis, component axis) as non-negative ints."""
    if len(shape) < 2:
        raise ValueError(f"{name}: logits need a component axis and a class axis "
                         f"(got shape {tuple(shape)})")
    for label, value in (("axis", axis), ("component_axis", component_axis)):
        if value is None:
            raise TypeError(f"{name}: {label} must be an integer, not None")
    axis = normalize_axis(axis, len(shape), name)
    component_axis = normalize_axis(component_axis, len(shape), name)
    if axis == component_axis:
        raise ValueError(f"{name}: axis and component_axis are the same axis ({axis})")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{name}: activation must be one of {ACTIVATIONS}, not {activation!r}")
    if shape[component_axis] == 0:
        raise ValueError(f"{name}: the component axis has length 0")
    if shape[axis] == 0:
        raise ValueError(f"{name}: the class axis has length 0")
    return axis, component_axis


def check_mixture_prior(prior_logits, name, expected_shape, dtype):
    """The prior logits as an ndarray of `dtype` (the logits' work dtype) and `expected_shape`
    (the logits' shape without the class axis)."""
    prior = np.asarray(prior_logits)
    if dtype_policy(prior.dtype.kind, prior.dtype.itemsize) is None:
        raise unsupported_dtype(name, prior.dtype)
    if tuple(prior.shape) != tuple(expected_shape):
        raise ValueError(f"{name}: prior_logits has shape {tuple(prior.shape)}; the logits "
                         f"without the class axis have shape {tuple(expected_shape)}")
    return prior.astype(dtype, copy=False)
