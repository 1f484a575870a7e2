"""Move the computed axis last and present the data as 2-D rows the kernels accept.

The kernels take (n_rows, n_cols) arrays whose rows are contiguous but may be separated by
any row step.  A view is used whenever the data already has that shape in memory (the
common axis=-1 case, slices of rows, negative row steps); otherwise a C-contiguous copy.
``axis=None`` makes the whole array (C order) one row.
"""

import math

import numpy as np

from . import _kernels
from ._kernels._buffers import empty as empty_result


def _moved(a, axis):
    """a with `axis` last, always a view (axis None: a itself)."""
    if axis is None or axis == a.ndim - 1:
        return a
    return np.moveaxis(a, axis, -1)


def rows_shape(shape, axis):
    """(n_rows, n_cols) of an array of `shape` computed along `axis`."""
    size = math.prod(shape)
    if axis is None:
        return 1, size  # one row, even when it is empty (logsumexp of it is -inf)
    n_cols = shape[axis]
    return (size // n_cols if n_cols else math.prod(shape[:axis] + shape[axis + 1:])), n_cols


def rows_view(a, axis):
    """a as kernel rows without copying, or None when its memory does not allow it."""
    if a.flags.c_contiguous and a.flags.aligned and (axis is None or axis == a.ndim - 1):
        return a.reshape(rows_shape(a.shape, axis))  # the common case, a view for sure
    try:
        rows = np.reshape(_moved(a, axis), rows_shape(a.shape, axis), copy=False)
    except ValueError:
        return None
    itemsize = rows.itemsize
    if rows.shape[1] > 1 and rows.strides[1] != itemsize:
        return None
    if rows.strides[0] % itemsize or not rows.flags.aligned:
        return None
    return rows


def _slabs(a, axis):
    """(outer, n, inner) of `a` along `axis` when the kernels' block transposes can move
    that axis last (a C-contiguous, aligned, native float32/float64 array, a non-last
    axis), else None."""
    if (axis is None or axis == a.ndim - 1 or a.dtype not in _MOVABLE
            or not (a.flags.c_contiguous and a.flags.aligned)):
        return None
    return math.prod(a.shape[:axis]), a.shape[axis], math.prod(a.shape[axis + 1:])


_MOVABLE = (np.dtype(np.float32), np.dtype(np.float64))


def rows_of(a, axis, n_threads):
    """a as kernel rows: a view when possible, else a C-contiguous copy (moved with
    n_threads threads, the call's own count)."""
    rows = rows_view(a, axis)
    if rows is None:
        slabs = _slabs(a, axis)
        if slabs is not None:
            # NumPy's strided copy of a 4096x1000 float32 transpose took 19 ms, the
            # kernels' block transposes about a tenth
            rows = empty_result(rows_shape(a.shape, axis), a.dtype)
            return _kernels.core.move_axis_last(a, rows, *slabs, False, n_threads)
        # aligned too: ascontiguousarray would hand back an unaligned C-contiguous array
        rows = np.require(_moved(a, axis), requirements=["C", "A"]).reshape(
            rows_shape(a.shape, axis))
    return rows


def mask_rows(mask, axis, written):
    """A broadcast boolean mask as C-contiguous kernel rows, never sharing memory with
    `written`, the array the kernel writes (a mask inside it would be overwritten before
    the rows after the first read it)."""
    rows = np.ascontiguousarray(_moved(mask, axis)).reshape(rows_shape(mask.shape, axis))
    if np.may_share_memory(rows, written):
        rows = rows.copy()
    return rows


def _address(a):
    return a.__array_interface__["data"][0]


def output_rows(target, axis, *input_rows):
    """Rows the kernel may write directly into `target`, or None if a temporary is needed.

    None when target's memory cannot be viewed as rows, or when it overlaps any input's
    rows in a way other than being exactly the same rows (in place): the kernels read an
    element before writing the same element, but know nothing of other overlaps.
    """
    rows = rows_view(target, axis)
    if rows is None:
        return None
    for source in input_rows:
        if np.may_share_memory(rows, source) and not (
            _address(rows) == _address(source) and rows.strides == source.strides
        ):
            return None
    return rows


def result_rows(target, axis, work_dtype, fresh, *input_rows):
    """(rows for the kernel to write, whether they are `target`'s own memory).

    A fresh target (allocated by the caller) is used directly whenever its dtype is the
    work dtype; a user's `out` only if it also cannot partially overlap an input.
    Otherwise a temporary of the inputs' row shape is returned, for `write_back`.
    """
    if target.dtype == work_dtype:
        rows = rows_view(target, axis) if fresh else output_rows(target, axis, *input_rows)
        if rows is not None:
            return rows, True
    return empty_result(input_rows[0].shape, work_dtype), False


def write_back(target, axis, rows, n_threads):
    """Copy computed rows into target (casting, e.g. float32 -> float16); n_threads: as in
    rows_of."""
    slabs = _slabs(target, axis)
    if slabs is not None and target.dtype == rows.dtype and rows.flags.c_contiguous:
        _kernels.core.move_axis_last(target, rows, *slabs, True, n_threads)
        return
    destination = _moved(target, axis)
    np.copyto(destination, rows.reshape(destination.shape), casting="unsafe")
