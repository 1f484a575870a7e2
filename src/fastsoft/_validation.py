"""Argument checks shared by every public function: every user-facing error is raised here.

dtype policy: float32 and float64 are computed as they are; float16 is computed in float32
and returned as float16; bool and integer inputs are computed and returned in float64;
anything else (complex, longdouble, object, strings, datetimes) is a TypeError.
"""

import operator

import numpy as np
from numpy.exceptions import AxisError


def as_float_array(x, name):
    """(x as a native float32/float64 ndarray to compute on, dtype of the result)."""
    x = np.asarray(x)
    kind, itemsize = x.dtype.kind, x.dtype.itemsize
    if kind == "f" and itemsize in (4, 8):
        result_dtype = work_dtype = np.dtype(x.dtype.char)  # native byte order
    elif kind == "f" and itemsize == 2:
        work_dtype, result_dtype = np.dtype(np.float32), np.dtype(np.float16)
    elif kind in "biu":
        work_dtype = result_dtype = np.dtype(np.float64)
    else:
        raise TypeError(
            f"{name}: unsupported dtype {x.dtype} (fastsoft computes on float32 and float64; "
            "float16 is computed in float32, bool and integers in float64)"
        )
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


def check_out(out, shape, dtype, name):
    """out itself after checking it can hold the result (shape and dtype exactly)."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: out must be a numpy.ndarray, not {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name}: out has dtype {out.dtype}, the result needs {dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name}: out has shape {out.shape}, the result needs {tuple(shape)}")
    if not out.flags.writeable:
        raise ValueError(f"{name}: out is read-only")
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
        raise ValueError(
            f"{name}: where of shape {where.shape} cannot be broadcast to the input's shape "
            f"{tuple(shape)}"
        ) from None
