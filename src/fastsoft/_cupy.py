"""The CuPy backend: fastsoft's public functions on CuPy (GPU) arrays.

fastsoft._backend sends a call here when its array arguments are CuPy arrays; the
functions have the public functions' signatures and semantics (docs/numerics.md).

Design:
1. Only the router imports this module, and only once ``cupy`` is in ``sys.modules``;
   CuPy itself is imported inside the functions, so importing this module (pytest's
   doctest collection does) never needs it.
2. Arguments are validated by the helpers fastsoft._generic uses (and _validation's),
   in the same order, so a bad call raises the same exception with the same message on
   every path; cross_entropy's labels are checked (IndexError naming the value and its
   position) before any kernel runs.
3. The computed axis is moved last and the data made C-contiguous on the device as
   (n_rows, n_cols) rows (no copy when it already is); results are written straight
   into a C-contiguous `out` of the work dtype that is the input itself or does not
   overlap it, and otherwise through a temporary.
4. The forward functions and cross_entropy run the fused kernels of ``fastsoft/_cuda``
   (one thread block per row), compiled by NVRTC through ``cupy.RawModule`` on first use
   and cached per (device, source file); the backward passes run fastsoft._generic with
   ``xp=cupy`` (whole-array CuPy operations).
5. No call waits for the device except where Python needs a value: the where=True
   shortcut and cross_entropy's label check (as in _generic).  The mean's denominator
   and the gradient factors stay in device memory and the kernels read them there.
"""

import importlib.resources
import math
import re
import threading

import numpy as np

from . import _generic
from ._layout import rows_shape
from ._validation import check_loss_options, check_out, normalize_axis

__all__ = [
    "softmax", "log_softmax", "logsumexp", "sigsoftmax", "log_sigsoftmax",
    "softmax_backward", "log_softmax_backward", "logsumexp_backward",
    "sigsoftmax_backward", "log_sigsoftmax_backward", "cross_entropy", "device_info",
]

_CUDA_PACKAGE = "fastsoft._cuda"
_HEADER = "fs_device.cuh"
_INCLUDE = re.compile(r'^#include "fs_device\.cuh"[ \t]*$', re.MULTILINE)
# NVRTC options: C++17 and IEEE division and square root (never fast math, which breaks
# NaN and inf and the accuracy bounds).  CuPy appends -ftz=true to every compilation, and
# NVRTC honours the last occurrence, so float32 arithmetic flushes subnormal inputs and
# results to zero: a float32 probability below 2**-126 comes out as 0 (docs/numerics.md
# promises nothing relative below the normal range) and subnormal logits act as 0.
# double arithmetic is not affected.
_NVRTC_OPTIONS = ("-std=c++17", "--prec-div=true", "--prec-sqrt=true")
_MAX_GRID = 2**31 - 1      # blocks; the kernels loop over the rows beyond it
_NULL = np.uint64(0)       # a NULL device pointer as a kernel argument (8 zero bytes)

_modules = {}              # (device id, source file) -> cupy.RawModule
_functions = {}            # (device id, kernel name) -> cupy.RawKernel
_lock = threading.Lock()


def _cupy():
    import cupy

    return cupy


# ---------------------------------------------------------------------------------------
# Kernels: sources, compilation, launch shape


def _read_source(name):
    return importlib.resources.files(_CUDA_PACKAGE).joinpath(name).read_text(encoding="utf-8")


def kernel_source(filename):
    """The CUDA source of `filename` (in fastsoft/_cuda) with fs_device.cuh pasted in.

    NVRTC sees no files, so the header is inlined at its #include line; ``#line``
    directives keep compiler messages pointing at the right file and line.
    """
    code = _read_source(filename)
    header = _read_source(_HEADER)
    match = _INCLUDE.search(code)
    if match is None:
        raise RuntimeError(f"{filename} does not include {_HEADER}")
    line = code.count("\n", 0, match.start()) + 2
    return (code[:match.start()] + f'#line 1 "{_HEADER}"\n' + header
            + f'\n#line {line} "{filename}"' + code[match.end():])


def _header_constant(name):
    match = re.search(rf"^#define {name} (\d+)", _read_source(_HEADER), re.MULTILINE)
    return int(match.group(1))


_MAX_THREADS = _header_constant("FS_MAX_THREADS")
_ROW_ITEMS = _header_constant("FS_ROW_ITEMS")


def _kernel(cupy, filename, name):
    """The compiled kernel `name` of `filename` for the current device (cached)."""
    device = cupy.cuda.runtime.getDevice()
    function = _functions.get((device, name))
    if function is None:
        with _lock:
            module = _modules.get((device, filename))
            if module is None:
                module = cupy.RawModule(code=kernel_source(filename), options=_NVRTC_OPTIONS)
                _modules[(device, filename)] = module
            function = _functions[(device, name)] = module.get_function(name)
    return function


def _suffix(dtype):
    return "f32" if np.dtype(dtype) == np.float32 else "f64"


def _launch_shape(kernel, n_rows, n_cols):
    """(grid, block): up to one block per row, enough threads to hold the row in
    registers (FS_ROW_ITEMS values each) when it fits, else the most allowed."""
    limit = min(_MAX_THREADS, int(getattr(kernel, "max_threads_per_block", _MAX_THREADS)))
    limit = max(32, limit - limit % 32)
    threads_wanted = -(-n_cols // _ROW_ITEMS)
    threads = min(limit, max(32, -(-threads_wanted // 32) * 32))
    return (min(n_rows, _MAX_GRID),), (threads,)


# ---------------------------------------------------------------------------------------
# Layout


def _moved(cupy, a, axis):
    """a with `axis` last (a view); axis None: a flattened in C order."""
    if axis is None:
        return a.reshape(-1)
    return a if axis == a.ndim - 1 else cupy.moveaxis(a, axis, -1)


def _rows(cupy, a, axis):
    """a as C-contiguous (n_rows, n_cols) rows: a view when it already is, else a copy."""
    return cupy.ascontiguousarray(_moved(cupy, a, axis)).reshape(rows_shape(a.shape, axis))


def _span(a):
    return a.data.ptr, a.data.ptr + a.nbytes


def _same_or_disjoint(rows, sources):
    """Whether C-contiguous `rows` are each source's own memory or overlap none of them."""
    start, end = _span(rows)
    for source in sources:
        if source is None:
            continue
        source_start, source_end = _span(source)
        if (source_start, source.shape) == (start, rows.shape):
            continue
        if source_start < end and start < source_end:
            return False
    return True


def _result_rows(cupy, target, axis, work, fresh, sources):
    """(rows for a kernel to write, whether they are `target`'s own memory)."""
    shape = sources[0].shape
    if (target.dtype == work and target.flags.c_contiguous
            and (axis is None or axis == target.ndim - 1)):
        rows = target.reshape(shape)
        if fresh or _same_or_disjoint(rows, sources):
            return rows, True
    return cupy.empty(shape, dtype=work), False


def _write_back(cupy, target, axis, rows):
    destination = _moved(cupy, target, axis) if axis is not None else target
    cupy.copyto(destination, rows.reshape(destination.shape), casting="unsafe")


def _pointer(array):
    return _NULL if array is None else array


# ---------------------------------------------------------------------------------------
# Forward functions


def _transform(name, kernel_name, log_output, x, axis, out, where, num_threads):
    """Shared driver of the four shape-preserving transforms (validation as _generic's)."""
    cupy = _cupy()
    x, work, result_dtype = _generic._as_input(cupy, x, name)
    axis = normalize_axis(axis, x.ndim, name)
    out = check_out(out, x.shape, result_dtype, name, cupy.ndarray)
    mask = _generic._mask(cupy, where, x.shape, name)
    target = cupy.empty(x.shape, dtype=result_dtype) if out is None else out
    if x.size == 0:
        return target
    _generic._check_threads(num_threads)
    x_rows = _rows(cupy, x, axis)
    n_rows, n_cols = x_rows.shape
    mask_rows = None if mask is None else _rows(cupy, cupy.broadcast_to(mask, x.shape), axis)
    rows, direct = _result_rows(cupy, target, axis, x.dtype, out is None, (x_rows,))
    kernel = _kernel(cupy, "softmax.cu", f"fs_{kernel_name}_rows_{_suffix(x.dtype)}")
    grid, block = _launch_shape(kernel, n_rows, n_cols)
    kernel(grid, block, (x_rows, np.int64(n_cols), rows, np.int64(n_cols),
                         _pointer(mask_rows), np.int64(n_rows), np.int64(n_cols),
                         np.int32(log_output)))
    if not direct:
        _write_back(cupy, target, axis, rows)
    return target


def softmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.softmax` on CuPy arrays (fused kernel; `num_threads` is checked, unused)."""
    return _transform("softmax", "softmax", False, x, axis, out, where, num_threads)


def log_softmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.log_softmax` on CuPy arrays."""
    return _transform("log_softmax", "softmax", True, x, axis, out, where, num_threads)


def sigsoftmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.sigsoftmax` on CuPy arrays."""
    return _transform("sigsoftmax", "sigsoftmax", False, x, axis, out, where, num_threads)


def log_sigsoftmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.log_sigsoftmax` on CuPy arrays."""
    return _transform("log_sigsoftmax", "sigsoftmax", True, x, axis, out, where, num_threads)


def logsumexp(x, axis=-1, *, keepdims=False, out=None, where=None, num_threads=None):
    """`fastsoft.logsumexp` on CuPy arrays; a 0-d result is a 0-d CuPy array."""
    cupy = _cupy()
    name = "logsumexp"
    x, work, result_dtype = _generic._as_input(cupy, x, name)
    axis = normalize_axis(axis, x.ndim, name)
    shape = tuple(x.shape)
    if axis is None:
        reduced_shape = (1,) * x.ndim if keepdims else ()
    else:
        reduced_shape = shape[:axis] + ((1,) if keepdims else ()) + shape[axis + 1:]
    out = check_out(out, reduced_shape, result_dtype, name, cupy.ndarray)
    mask = _generic._mask(cupy, where, shape, name)
    target = cupy.empty(reduced_shape, dtype=result_dtype) if out is None else out
    n_rows, n_cols = rows_shape(shape, axis)
    if n_rows == 0:
        return target
    if n_cols == 0:
        target[...] = -math.inf       # the log of an empty sum
        return target
    _generic._check_threads(num_threads)
    x_rows = _rows(cupy, x, axis)
    mask_rows = None if mask is None else _rows(cupy, cupy.broadcast_to(mask, shape), axis)
    result, direct = None, False
    if target.dtype == work and target.flags.c_contiguous:
        result = target.reshape(n_rows)
        direct = out is None or _same_or_disjoint(result, (x_rows,))
    if not direct:
        result = cupy.empty(n_rows, dtype=work)
    kernel = _kernel(cupy, "softmax.cu", f"fs_logsumexp_rows_{_suffix(work)}")
    grid, block = _launch_shape(kernel, n_rows, n_cols)
    kernel(grid, block, (x_rows, np.int64(n_cols), result, np.int64(1), _pointer(mask_rows),
                         np.int64(n_rows), np.int64(n_cols)))
    if not direct:
        cupy.copyto(target, result.reshape(reduced_shape), casting="unsafe")
    return target


# ---------------------------------------------------------------------------------------
# Backward passes: whole-array CuPy operations through _generic


def softmax_backward(grad_output, output, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.softmax_backward` on CuPy arrays."""
    return _generic.softmax_backward(_cupy(), grad_output, output, axis, out=out, where=where,
                                     num_threads=num_threads)


def log_softmax_backward(grad_output, output, axis=-1, *, out=None, where=None,
                         num_threads=None):
    """`fastsoft.log_softmax_backward` on CuPy arrays."""
    return _generic.log_softmax_backward(_cupy(), grad_output, output, axis, out=out,
                                         where=where, num_threads=num_threads)


def sigsoftmax_backward(grad_output, output, x, axis=-1, *, out=None, where=None,
                        num_threads=None):
    """`fastsoft.sigsoftmax_backward` on CuPy arrays."""
    return _generic.sigsoftmax_backward(_cupy(), grad_output, output, x, axis, out=out,
                                        where=where, num_threads=num_threads)


def log_sigsoftmax_backward(grad_output, output, x, axis=-1, *, out=None, where=None,
                            num_threads=None):
    """`fastsoft.log_sigsoftmax_backward` on CuPy arrays."""
    return _generic.log_sigsoftmax_backward(_cupy(), grad_output, output, x, axis, out=out,
                                            where=where, num_threads=num_threads)


def logsumexp_backward(grad_output, x, result, axis=-1, *, out=None, where=None,
                       num_threads=None):
    """`fastsoft.logsumexp_backward` on CuPy arrays."""
    return _generic.logsumexp_backward(_cupy(), grad_output, x, result, axis, out=out,
                                       where=where, num_threads=num_threads)


# ---------------------------------------------------------------------------------------
# Cross-entropy


def cross_entropy(logits, target, *, axis=-1, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, activation="softmax",
                  return_grad=False, grad_output=None, grad_out=None, num_threads=None):
    """`fastsoft.cross_entropy` on CuPy arrays: the fused loss (and gradient) kernel.

    The reduced loss is a 0-d CuPy array of the result dtype.
    """
    cupy = _cupy()
    name = "cross_entropy"
    x, work, result_dtype = _generic._as_input(cupy, logits, name)
    shape = tuple(x.shape)
    axis, smoothing, ignore_index = check_loss_options(
        name, shape, axis, reduction, activation, label_smoothing, ignore_index,
        return_grad, grad_output, grad_out)
    n_classes = shape[axis]
    batch_shape = shape[:axis] + shape[axis + 1:]
    n_rows = math.prod(batch_shape)
    target = cupy.asarray(target)
    target_kind = target.dtype.kind
    if target_kind in ("i", "u"):
        # IndexError for a bad label, before anything runs
        labels, kept = _generic._index_labels(cupy, target, batch_shape, n_classes,
                                              ignore_index, name)
        # ignored rows as label -1, which the kernel is told to ignore
        labels = cupy.ascontiguousarray(cupy.where(kept, labels, -1).reshape(-1))
        q = None
    elif target_kind == "f":
        if tuple(target.shape) != shape:
            raise ValueError(f"{name}: probability target has shape {tuple(target.shape)}, "
                             f"the logits {shape}")
        q = _generic._astype(cupy, target, work)   # rounded to the work dtype, as on the CPU
        labels = kept = None
    else:
        raise TypeError(f"{name}: target must hold integer class indices or float "
                        f"probabilities, not {target.dtype}")
    weight, weight_total = _generic._class_weights(cupy, weight, n_classes, name)
    weight = cupy.ascontiguousarray(weight)
    weight_total = cupy.asarray(weight_total, dtype=cupy.float64)

    if q is None:
        label_weight = weight[cupy.where(labels < 0, 0, labels)]
        denominator = cupy.sum(cupy.where(labels >= 0, label_weight, 0.0))
    else:
        denominator = cupy.asarray(float(n_rows), dtype=cupy.float64)
    check_out(grad_out, shape, result_dtype, name, cupy.ndarray, what="grad_out")
    scale = (_generic._grad_scale(cupy, grad_output, reduction, batch_shape, denominator, name)
             if return_grad else None)

    losses = cupy.zeros(n_rows, dtype=cupy.float64)
    grad_target = None
    if return_grad:
        grad_target = cupy.empty(shape, dtype=result_dtype) if grad_out is None else grad_out
    if n_rows:
        _generic._check_threads(num_threads)
        x_rows = _rows(cupy, x, axis)
        q_rows = None if q is None else _rows(cupy, q, axis)
        grad_rows, direct, scales, scale_step = None, True, None, 0
        if grad_target is not None:
            grad_rows, direct = _result_rows(cupy, grad_target, axis, work, grad_out is None,
                                             (x_rows, q_rows))
            scales = cupy.ascontiguousarray(
                cupy.broadcast_to(scale, batch_shape) if scale.ndim else scale,
                dtype=cupy.float64).reshape(-1 if scale.ndim else 1)
            scale_step = 1 if scale.ndim else 0
        kernel = _kernel(cupy, "cross_entropy.cu", f"fs_cross_entropy_rows_{_suffix(work)}")
        grid, block = _launch_shape(kernel, n_rows, n_classes)
        kernel(grid, block, (
            x_rows, np.int64(n_classes), np.int64(n_rows), np.int64(n_classes),
            _pointer(labels), np.int64(-1), _pointer(q_rows), np.int64(n_classes),
            weight, weight_total, np.float64(smoothing), np.int32(activation == "sigsoftmax"),
            losses, _pointer(grad_rows), np.int64(n_classes), _pointer(scales),
            np.int64(scale_step)))
        if grad_rows is not None and not direct:
            _write_back(cupy, grad_target, axis, grad_rows)
    elif grad_target is not None:
        grad_target[...] = 0

    if reduction == "none":
        loss = losses.reshape(batch_shape).astype(result_dtype)
    else:
        total = cupy.sum(losses)
        if reduction == "mean":
            total = cupy.where(denominator != 0, total / denominator, math.nan)
        loss = total.astype(result_dtype)   # rounded once, as on the CPU
    return (loss, grad_target) if return_grad else loss


# ---------------------------------------------------------------------------------------
# Configuration report


def device_info():
    """One line on CuPy and the current device, for fastsoft.show_config()."""
    cupy = _cupy()
    runtime = cupy.cuda.runtime
    try:
        count = runtime.getDeviceCount()
    except runtime.CUDARuntimeError as error:
        return f"CuPy {cupy.__version__}, no usable CUDA device ({error})"
    if count == 0:
        return f"CuPy {cupy.__version__}, no CUDA device"
    device = cupy.cuda.Device()
    name = runtime.getDeviceProperties(device.id)["name"]
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    capability = device.compute_capability            # e.g. "86"
    version = runtime.runtimeGetVersion()              # e.g. 12040
    return (f"CuPy {cupy.__version__} (CUDA runtime {version // 1000}.{version % 1000 // 10}), "
            f"device {device.id} of {count}: {name}, compute capability "
            f"{capability[:-1]}.{capability[-1]}")
