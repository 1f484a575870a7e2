"""fastsoft's public functions on any array namespace: CuPy on a GPU, NumPy or
array-api-strict on the CPU.

Design:
1. Each function takes the namespace `xp` first, then the public function's arguments, and
   validates them like the CPU path: the same helpers of `_validation`, exception types
   and messages, in the same order (so the same call fails the same way on either path).
2. The computation uses only whole-array operations of the array API standard: `max`,
   `sum`, `exp`, `log1p`, `where`, `take_along_axis`, `astype`, `reshape`, creation
   functions and operators (cross_entropy also `arange` for its one-hot column, and
   `argmax` to locate a bad label in its error message).  Nothing converts an `xp` array
   to NumPy, so on CuPy every step runs on the device.
3. Rows are never laid out: every reduction runs along `axis` (``None``: the whole array)
   with ``keepdims=True`` and the row quantities broadcast back.  `out=` is written once,
   at the end, with ``out[...] = result``, so it may be any input.
4. Special values come from the kernels' own arithmetic: masked entries become -inf (no
   part in the max or the sums) and are set to exactly 0 / -inf at the end; the max term
   is taken out of the sum, ties counted, and the log taken with log1p; a +inf max makes
   log_softmax's normaliser NaN.  `xp.max` propagates NaN where the kernels skip it,
   which changes no result: a row holding a NaN is NaN either way, and the one place that
   needs a NaN-free max (a backward row "has a member") tests ``x > -inf`` instead.
5. Precision follows the kernels (docs/numerics.md): float16 runs the float32 path and is
   rounded at the end; softmax's exponentials (and logsumexp_backward's) are taken in
   the row's dtype; every sum, log output, sigsoftmax gap, backward product and
   cross-entropy value is formed in float64 and rounded once to the work dtype.
6. NumPy warns on inf - inf or 0/0, which here give the NaN the specification asks for,
   so the functions run under ``np.errstate(all="ignore")`` (it only affects NumPy and
   namespaces built on it, such as array-api-strict).
"""

import functools
import math

import numpy as np

from ._config import _check_thread_count
from ._validation import (
    broadcasts_to,
    check_loss_options,
    check_out,
    dtype_policy,
    kind_and_itemsize,
    normalize_axis,
    unsupported_dtype,
    where_shape_error,
)

__all__ = [
    "softmax", "log_softmax", "logsumexp", "sigsoftmax", "log_sigsoftmax",
    "softmax_backward", "log_softmax_backward", "logsumexp_backward",
    "sigsoftmax_backward", "log_sigsoftmax_backward", "cross_entropy",
]

_INF = math.inf
_NAN = math.nan


def _quiet(func):
    """Run func with NumPy's floating-point warnings off (special values are results)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return func(*args, **kwargs)
    return wrapper


# ---------------------------------------------------------------------------------------
# Arguments


def _astype(xp, a, dtype):
    """a as `dtype` (a itself when it already is)."""
    if a.dtype == dtype:
        return a
    astype = getattr(xp, "astype", None)   # CuPy before 13.x has only the method
    return astype(a, dtype) if astype is not None else a.astype(dtype)


@functools.lru_cache(maxsize=None)
def _array_type(xp):
    """The array class of a namespace (what out= and grad_out must be)."""
    return type(xp.asarray(0.0))


def _as_input(xp, a, name):
    """(a as an xp array of its work dtype, work dtype, result dtype): the dtype policy."""
    a = xp.asarray(a)
    kind, itemsize = kind_and_itemsize(a.dtype, xp)
    policy = None if kind is None else dtype_policy(kind, itemsize)
    if policy is None:
        raise unsupported_dtype(name, a.dtype)
    work = getattr(xp, policy[0])
    return _astype(xp, a, work), work, getattr(xp, policy[1])


def _common_inputs(xp, name, arrays):
    """The backward functions' inputs in one work dtype, and the result dtype: float64
    if any input computes in float64; float16 only if every input is float16."""
    converted = [_as_input(xp, a, name) for a in arrays]
    work = xp.float64 if any(w == xp.float64 for _, w, _ in converted) else xp.float32
    half = getattr(xp, "float16", None)
    all_half = half is not None and all(r == half for _, _, r in converted)
    return [_astype(xp, a, work) for a, _, _ in converted], work, (half if all_half else work)


def _mask(xp, where, shape, name):
    """The where= mask as an xp bool array broadcastable to `shape`, or None (no mask)."""
    if where is None:
        return None
    where = xp.asarray(where)
    if kind_and_itemsize(where.dtype, xp)[0] != "b":
        raise TypeError(f"{name}: where must be a boolean array, not {where.dtype}")
    if where.ndim == 0 and bool(where):
        return None
    if not broadcasts_to(tuple(where.shape), tuple(shape)):
        raise where_shape_error(name, where.shape, shape)
    return where


def _check_threads(num_threads):
    """num_threads is validated as on the CPU (at the same point of the call), then unused."""
    if num_threads is not None:
        _check_thread_count(num_threads, "num_threads")


def _finish(xp, values, work, result_dtype, out, scalar=False):
    """Round float64 (or work dtype) values once to the work dtype, then to the result
    dtype; write them into out, or return them (0-d NumPy results as NumPy scalars when
    `scalar`, as the CPU path does)."""
    values = _astype(xp, _astype(xp, values, work), result_dtype)
    if out is not None:
        out[...] = values
        return out
    if scalar and isinstance(values, np.ndarray) and values.ndim == 0:
        return values[()]
    return values


def _empty_result(xp, shape, result_dtype, out):
    return out if out is not None else xp.empty(shape, dtype=result_dtype)


# ---------------------------------------------------------------------------------------
# Row quantities (reductions along `axis`, kept as length 1)


def _sum(xp, a, axis):
    return xp.sum(a, axis=axis, keepdims=True, dtype=xp.float64)


def _exp_sums(xp, values, row_max, axis):
    """(exp(values - row_max), Σ of it over the entries below the max, count of the
    entries at the max); exponentials in values' dtype, sums in float64.

    Σ exp(values - row_max) = count + that sum, with the max terms (exactly 1) left out:
    summing the small terms among themselves and adding the 1s once loses nothing to a
    running total of 1 + tiny terms, which a plain (or pairwise) float64 sum drifts on by
    several ulps (the kernels use compensated sums there), and log1p(count - 1 + sum)
    keeps a sum far below 1 (logsumexp([0, -40]) = 4.25e-18, not 0).  A NaN in the row
    reaches the sum; an all--inf row counts every entry as a tie.
    """
    exps = xp.exp(values - row_max)
    at_max = values == row_max
    sum_off_max = _sum(xp, xp.where(at_max, 0.0, exps), axis)
    return exps, sum_off_max, _sum(xp, _astype(xp, at_max, xp.float64), axis)


def _log_normalizer(xp, values, row_max, axis):
    """log Σ exp(values - row_max) = log1p((count at max - 1) + Σ below max), float64."""
    _, sum_off_max, ties = _exp_sums(xp, values, row_max, axis)
    return xp.log1p(sum_off_max + (ties - 1.0))


def _negative_part(xp, z):
    """min(z, 0) (0 for NaN, as the kernels' z < 0 ? z : 0)."""
    return xp.where(z < 0, z, 0.0)


def _softplus_tail(xp, z):
    """log1p(exp(-|z|)), in [0, log 2]."""
    return xp.log1p(xp.exp(xp.where(z < 0, z, -z)))


def _sigmoid(xp, z):
    """1/(1+e^-z) for z >= 0, e^z/(1+e^z) otherwise, through e^-|z| (no overflow)."""
    t = xp.exp(xp.where(z >= 0, -z, z))
    return xp.where(z >= 0, 1.0, t) / (1.0 + t)


def _sigsoftmax_gaps(xp, z, axis):
    """w(z) - max w, w(z) = z + log sigmoid(z), in float64 (docs/numerics.md).

    w increases with z, so max w = w(M) for the row's largest z = M; the unbounded parts
    z - M and min(z, 0) - min(M, 0) are differenced exactly and only the bounded softplus
    tails evaluated, so rows around -300 or 1e30 in float32 are fine.
    """
    z = _astype(xp, z, xp.float64)
    z_max = xp.max(z, axis=axis, keepdims=True)
    return (((z - z_max) + (_negative_part(xp, z) - _negative_part(xp, z_max)))
            - (_softplus_tail(xp, z) - _softplus_tail(xp, z_max)))


# ---------------------------------------------------------------------------------------
# Forward transforms


def _softmax_values(xp, x, axis):
    row_max = xp.max(x, axis=axis, keepdims=True)
    exps, sum_off_max, ties = _exp_sums(xp, x, row_max, axis)   # exps in the row's dtype
    # +inf in the row: NaN (inf - inf), which the +inf entry's tie would leave out
    total = xp.where(row_max == _INF, _NAN, sum_off_max + ties)
    if x.dtype == xp.float64:
        return exps / total
    return _astype(xp, exps, xp.float64) * (1.0 / total)   # double reciprocal, rounded once


def _log_softmax_values(xp, x, axis):
    row_max = xp.max(x, axis=axis, keepdims=True)
    log_norm = _log_normalizer(xp, x, row_max, axis)
    # +inf in the row: NaN, as softmax's inf - inf
    log_norm = xp.where(row_max == _INF, _NAN, log_norm)
    return (_astype(xp, x, xp.float64) - _astype(xp, row_max, xp.float64)) - log_norm


def _sigsoftmax_values(xp, x, axis):
    exps, sum_off_max, ties = _exp_sums(xp, _sigsoftmax_gaps(xp, x, axis), 0.0, axis)
    return exps / (sum_off_max + ties)


def _log_sigsoftmax_values(xp, x, axis):
    # the max's own gap is exactly 0; +inf or NaN logits make gaps NaN, and the row NaN
    gaps = _sigsoftmax_gaps(xp, x, axis)
    return gaps - _log_normalizer(xp, gaps, 0.0, axis)


def _transform(xp, name, values_of, fill, x, axis, out, where, num_threads):
    """Shared driver of the four shape-preserving transforms (validation as the CPU's)."""
    x, work, result_dtype = _as_input(xp, x, name)
    axis = normalize_axis(axis, x.ndim, name)
    out = check_out(out, x.shape, result_dtype, name, _array_type(xp))
    mask = _mask(xp, where, x.shape, name)
    if math.prod(x.shape) == 0:
        return _empty_result(xp, x.shape, result_dtype, out)
    _check_threads(num_threads)
    if mask is not None:
        x = xp.where(mask, x, -_INF)   # masked entries: no part in the max or the sums
    result = values_of(xp, x, axis)
    if mask is not None:
        result = xp.where(mask, result, fill)   # exact even where the row is NaN
    return _finish(xp, result, work, result_dtype, out)


@_quiet
def softmax(xp, x, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.softmax` on arrays of the namespace `xp` (same arguments after `xp`).

    >>> import numpy as np
    >>> from fastsoft import _generic
    >>> _generic.softmax(np, np.array([1.0, 2.0, 3.0]))
    array([0.09003057, 0.24472847, 0.66524096])
    """
    return _transform(xp, "softmax", _softmax_values, 0.0, x, axis, out, where, num_threads)


@_quiet
def log_softmax(xp, x, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.log_softmax` on arrays of the namespace `xp`.

    >>> import numpy as np
    >>> from fastsoft import _generic
    >>> float(_generic.log_softmax(np, np.array([0.0, -40.0]))[0])
    -4.248354255291589e-18
    """
    return _transform(xp, "log_softmax", _log_softmax_values, -_INF, x, axis, out, where,
                      num_threads)


@_quiet
def sigsoftmax(xp, x, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.sigsoftmax` on arrays of the namespace `xp`.

    >>> import numpy as np
    >>> from fastsoft import _generic
    >>> _generic.sigsoftmax(np, np.array([-300.0, -301.0], dtype=np.float32))
    array([0.8807971 , 0.11920292], dtype=float32)
    """
    return _transform(xp, "sigsoftmax", _sigsoftmax_values, 0.0, x, axis, out, where,
                      num_threads)


@_quiet
def log_sigsoftmax(xp, x, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.log_sigsoftmax` on arrays of the namespace `xp`.

    >>> import numpy as np
    >>> from fastsoft import _generic
    >>> _generic.log_sigsoftmax(np, np.array([1e30, 1e30], dtype=np.float32))
    array([-0.6931472, -0.6931472], dtype=float32)
    """
    return _transform(xp, "log_sigsoftmax", _log_sigsoftmax_values, -_INF, x, axis, out,
                      where, num_threads)


@_quiet
def logsumexp(xp, x, axis=-1, *, keepdims=False, out=None, where=None, num_threads=None):
    """`fastsoft.logsumexp` on arrays of the namespace `xp`.

    A 0-d result without `out` is a NumPy scalar for NumPy arrays (as `fastsoft.logsumexp`
    returns) and a 0-d array for other namespaces.

    >>> import numpy as np
    >>> from fastsoft import _generic
    >>> float(_generic.logsumexp(np, np.array([0.0, -40.0])))
    4.248354255291589e-18
    """
    name = "logsumexp"
    x, work, result_dtype = _as_input(xp, x, name)
    axis = normalize_axis(axis, x.ndim, name)
    shape = tuple(x.shape)
    if axis is None:
        kept_shape = (1,) * x.ndim
        reduced_shape = kept_shape if keepdims else ()
    else:
        kept_shape = shape[:axis] + (1,) + shape[axis + 1:]
        reduced_shape = kept_shape if keepdims else shape[:axis] + shape[axis + 1:]
    out = check_out(out, reduced_shape, result_dtype, name, _array_type(xp))
    mask = _mask(xp, where, shape, name)
    n_cols = math.prod(shape) if axis is None else shape[axis]
    if math.prod(reduced_shape) == 0:        # no rows
        return _empty_result(xp, reduced_shape, result_dtype, out)
    if n_cols == 0:                          # empty rows: the log of an empty sum
        result = xp.full(reduced_shape, -_INF, dtype=work)
    else:
        _check_threads(num_threads)
        if mask is not None:
            x = xp.where(mask, x, -_INF)
        row_max = xp.max(x, axis=axis, keepdims=True)
        # a fully masked or all--inf row: -inf + log1p(n - 1) = -inf
        result = _astype(xp, row_max, xp.float64) + _log_normalizer(xp, x, row_max, axis)
        result = xp.reshape(result, reduced_shape)
    return _finish(xp, result, work, result_dtype, out, scalar=True)


# ---------------------------------------------------------------------------------------
# Backward passes


def _vjp(xp, name, kind, arrays, axis, out, where, num_threads):
    """Shared driver of the four transforms' VJPs; kind: softmax, log_softmax,
    sigsoftmax, log_sigsoftmax.  Values in float64, rounded once."""
    arrays, work, result_dtype = _common_inputs(xp, name, arrays)
    shape = tuple(arrays[0].shape)
    for a in arrays[1:]:
        if tuple(a.shape) != shape:
            raise ValueError(f"{name}: inputs have different shapes {shape} and "
                             f"{tuple(a.shape)}")
    axis = normalize_axis(axis, len(shape), name)
    out = check_out(out, shape, result_dtype, name, _array_type(xp))
    mask = _mask(xp, where, shape, name)
    if math.prod(shape) == 0:
        return _empty_result(xp, shape, result_dtype, out)
    _check_threads(num_threads)
    g, y = (_astype(xp, a, xp.float64) for a in arrays[:2])
    takes_product = kind in ("softmax", "sigsoftmax")
    terms = g * y if takes_product else g
    if mask is not None:
        terms = xp.where(mask, terms, 0.0)
    reduced = xp.sum(terms, axis=axis, keepdims=True)
    inner = y * (g - reduced) if takes_product else g - xp.exp(y) * reduced
    if len(arrays) == 3:
        z = arrays[2]
        zd = _astype(xp, z, xp.float64)
        result = (2.0 - _sigmoid(xp, zd)) * inner
        # a row without an unmasked logit above -inf (all -inf, all NaN or fully masked)
        # gets exactly 0: the forward is constant or undefined there
        member = z > -_INF
        if mask is not None:
            member = member & mask
        has_member = xp.max(_astype(xp, member, xp.int8), axis=axis, keepdims=True) > 0
        result = xp.where(has_member, result, 0.0)
    else:
        result = inner
    if mask is not None:
        result = xp.where(mask, result, 0.0)
    return _finish(xp, result, work, result_dtype, out)


@_quiet
def softmax_backward(xp, grad_output, output, axis=-1, *, out=None, where=None,
                     num_threads=None):
    """`fastsoft.softmax_backward` on arrays of the namespace `xp`."""
    return _vjp(xp, "softmax_backward", "softmax", (grad_output, output), axis, out, where,
                num_threads)


@_quiet
def log_softmax_backward(xp, grad_output, output, axis=-1, *, out=None, where=None,
                         num_threads=None):
    """`fastsoft.log_softmax_backward` on arrays of the namespace `xp`."""
    return _vjp(xp, "log_softmax_backward", "log_softmax", (grad_output, output), axis, out,
                where, num_threads)


@_quiet
def sigsoftmax_backward(xp, grad_output, output, x, axis=-1, *, out=None, where=None,
                        num_threads=None):
    """`fastsoft.sigsoftmax_backward` on arrays of the namespace `xp`."""
    return _vjp(xp, "sigsoftmax_backward", "sigsoftmax", (grad_output, output, x), axis, out,
                where, num_threads)


@_quiet
def log_sigsoftmax_backward(xp, grad_output, output, x, axis=-1, *, out=None, where=None,
                            num_threads=None):
    """`fastsoft.log_sigsoftmax_backward` on arrays of the namespace `xp`."""
    return _vjp(xp, "log_sigsoftmax_backward", "log_sigsoftmax", (grad_output, output, x),
                axis, out, where, num_threads)


@_quiet
def logsumexp_backward(xp, grad_output, x, result, axis=-1, *, out=None, where=None,
                       num_threads=None):
    """`fastsoft.logsumexp_backward` on arrays of the namespace `xp`."""
    name = "logsumexp_backward"
    (x, g, r), work, result_dtype = _common_inputs(xp, name, (x, grad_output, result))
    axis = normalize_axis(axis, x.ndim, name)
    shape = tuple(x.shape)
    reduced_shape = () if axis is None else shape[:axis] + shape[axis + 1:]
    kept_shape = (1,) * x.ndim if axis is None else shape[:axis] + (1,) + shape[axis + 1:]
    if tuple(r.shape) not in (reduced_shape, kept_shape):
        raise ValueError(f"{name}: result has shape {tuple(r.shape)}; logsumexp of x along "
                         f"axis {axis} has shape {reduced_shape} (or {kept_shape} with "
                         "keepdims)")
    if not broadcasts_to(tuple(g.shape), tuple(r.shape)):
        raise ValueError(f"{name}: grad_output of shape {tuple(g.shape)} cannot be "
                         f"broadcast to the result's shape {tuple(r.shape)}")
    out = check_out(out, shape, result_dtype, name, _array_type(xp))
    mask = _mask(xp, where, shape, name)
    if math.prod(shape) == 0:
        return _empty_result(xp, shape, result_dtype, out)
    _check_threads(num_threads)
    if tuple(g.shape) != tuple(r.shape):
        g = g * xp.ones(r.shape, dtype=work)     # broadcast (x * 1 keeps every value)
    g = xp.reshape(g, kept_shape)
    r = xp.reshape(r, kept_shape)
    # exp in the work dtype, as the kernel; a -inf logit gets exactly 0, also where the
    # result is -inf too (exp(-inf - -inf) would be NaN)
    grad = xp.where(x == -_INF, 0.0, g * xp.exp(x - r))
    if mask is not None:
        grad = xp.where(mask, grad, 0.0)
    return _finish(xp, grad, work, result_dtype, out)


# ---------------------------------------------------------------------------------------
# cross_entropy


def _index_labels(xp, target, batch_shape, n_classes, ignore_index, name):
    """(labels as int64 with ignored rows set to 0, rows not ignored); IndexError naming
    the first label outside [0, n_classes) that is not ignore_index."""
    if tuple(target.shape) != batch_shape:
        raise ValueError(f"{name}: class-index target has shape {tuple(target.shape)}; the "
                         f"logits without the class axis have shape {batch_shape}")
    info = xp.iinfo(target.dtype)
    # Python ints outside the dtype's range are not comparable with it in every namespace
    # (array-api-strict refuses): such comparisons are decided here instead.
    can_be_ignored = info.min <= ignore_index <= info.max
    kept = (target != ignore_index) if can_be_ignored else xp.ones(batch_shape, dtype=xp.bool)
    bad = None
    if info.min < 0:
        bad = target < 0
    if n_classes <= info.max:
        bad = (target >= n_classes) if bad is None else (bad | (target >= n_classes))
    if bad is not None and math.prod(batch_shape):
        flat_bad = xp.reshape(_astype(xp, bad & kept, xp.int8), (-1,))
        first = int(xp.argmax(flat_bad))       # the first bad label, if there is one
        if int(flat_bad[first]):
            value = int(xp.reshape(target, (-1,))[first])
            position = []
            for size in reversed(batch_shape):
                first, index = divmod(first, size)
                position.append(index)
            position = tuple(reversed(position))
            raise IndexError(f"{name}: target {value} at position {position} is outside "
                             f"[0, {n_classes}) and is not ignore_index ({ignore_index})")
    labels = xp.where(kept, _astype(xp, target, xp.int64), 0)
    return labels, kept


def _class_weights(xp, weight, n_classes, name):
    """(per-class weights in float64, their sum) — ones when unweighted."""
    if weight is None:
        return xp.ones((n_classes,), dtype=xp.float64), float(n_classes)
    weight = xp.asarray(weight)
    kind, itemsize = kind_and_itemsize(weight.dtype, xp)
    if kind not in ("b", "i", "u", "f") or itemsize > 8:
        raise TypeError(f"{name}: weight must be a real array, not {weight.dtype}")
    if tuple(weight.shape) != (n_classes,):
        raise ValueError(f"{name}: weight has shape {tuple(weight.shape)}, expected "
                         f"({n_classes},)")
    weight = _astype(xp, weight, xp.float64)
    return weight, xp.sum(weight)


def _grad_scale(xp, grad_output, reduction, batch_shape, denominator, name):
    """The factor each row's gradient is multiplied by: per row (batch shape) for
    "none", else a 0-d float64 array."""
    if reduction == "none":
        if grad_output is None:
            return xp.ones(batch_shape, dtype=xp.float64)
        g = _astype(xp, xp.asarray(grad_output), xp.float64)
        if not broadcasts_to(tuple(g.shape), batch_shape):
            raise ValueError(f"{name}: grad_output of shape {tuple(g.shape)} does not match "
                             f"the loss's shape {batch_shape}")
        return g * xp.ones(batch_shape, dtype=xp.float64)
    g = xp.asarray(1.0 if grad_output is None else grad_output)
    if g.ndim != 0:
        raise ValueError(f"{name}: grad_output must be a scalar for reduction={reduction!r}")
    g = _astype(xp, g, xp.float64)
    if reduction == "sum":
        return g
    # mean: when every row is ignored the denominator is 0; those rows' gradients are 0
    # whatever the factor, so keep it finite
    return xp.where(denominator != 0, g / denominator, 0.0)


@_quiet
def cross_entropy(xp, logits, target, *, axis=-1, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, activation="softmax",
                  return_grad=False, grad_output=None, grad_out=None, num_threads=None):
    """`fastsoft.cross_entropy` on arrays of the namespace `xp`.

    With B_j the target weights and A = Σ_j B_j (docs/gradients.md), a row's loss is
    ``A log S + Σ_j B_j (-d_j)`` (d the shifted logits or sigsoftmax gaps, S = Σ exp d)
    and its gradient ``s (A p_j - B_j)`` (times 2 - σ(x_j) for sigsoftmax).  The reduced
    loss is a 0-d array of the result dtype (a NumPy scalar for NumPy arrays).

    >>> import numpy as np
    >>> from fastsoft import _generic
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    >>> float(_generic.cross_entropy(np, logits, np.array([0, 2])))
    0.16811712653905897
    """
    name = "cross_entropy"
    x, work, result_dtype = _as_input(xp, logits, name)
    shape = tuple(x.shape)
    axis, smoothing, ignore_index = check_loss_options(
        name, shape, axis, reduction, activation, label_smoothing, ignore_index,
        return_grad, grad_output, grad_out)
    n_classes = shape[axis]
    batch_shape = shape[:axis] + shape[axis + 1:]
    kept_shape = shape[:axis] + (1,) + shape[axis + 1:]
    class_shape = tuple(n_classes if k == axis else 1 for k in range(len(shape)))
    n_rows = math.prod(batch_shape)
    target = xp.asarray(target)
    target_kind = kind_and_itemsize(target.dtype, xp)[0]
    if target_kind in ("i", "u"):
        labels, kept = _index_labels(xp, target, batch_shape, n_classes, ignore_index, name)
        q = None
    elif target_kind == "f":
        if tuple(target.shape) != shape:
            raise ValueError(f"{name}: probability target has shape {tuple(target.shape)}, "
                             f"the logits {shape}")
        # rounded to the logits' work dtype first, as the CPU path does
        q = _astype(xp, _astype(xp, target, work), xp.float64)
        labels = kept = label_weight = None
    else:
        raise TypeError(f"{name}: target must hold integer class indices or float "
                        f"probabilities, not {target.dtype}")
    weight, weight_total = _class_weights(xp, weight, n_classes, name)

    if q is None:
        label_weight = xp.take_along_axis(weight, xp.reshape(labels, (-1,)), axis=0)
        denominator = xp.sum(xp.where(xp.reshape(kept, (-1,)), label_weight, 0.0))
        label_weight = xp.reshape(label_weight, kept_shape)
    else:
        denominator = xp.asarray(float(n_rows), dtype=xp.float64)
    check_out(grad_out, shape, result_dtype, name, _array_type(xp), what="grad_out")
    scale = (_grad_scale(xp, grad_output, reduction, batch_shape, denominator, name)
             if return_grad else None)

    if n_rows == 0:
        losses = xp.zeros(batch_shape, dtype=xp.float64)
        grad = xp.zeros(shape, dtype=xp.float64) if return_grad else None
    else:
        _check_threads(num_threads)
        losses, grad = _cross_entropy_values(
            xp, x, axis, labels, kept, label_weight, q, weight,
            weight_total, smoothing, activation == "sigsoftmax", kept_shape, class_shape,
            None if scale is None else (xp.reshape(scale, kept_shape) if scale.ndim
                                        else scale))
        losses = xp.reshape(losses, batch_shape)

    if reduction == "none":
        loss = _astype(xp, losses, result_dtype)
    else:
        total = xp.sum(xp.reshape(losses, (-1,)))
        if reduction == "mean":
            total = xp.where(denominator != 0, total / denominator, _NAN)
        loss = _finish(xp, total, result_dtype, result_dtype, None, scalar=True)
    if not return_grad:
        return loss
    return loss, _finish(xp, grad, work, result_dtype, grad_out)


def _cross_entropy_values(xp, x, axis, labels, kept, label_weight, q, weight, weight_total,
                          smoothing, sigsoftmax, kept_shape, class_shape, scale):
    """(row losses, gradient or None) in float64, rows as the kept shape; ignored rows 0."""
    if sigsoftmax:
        gaps = _sigsoftmax_gaps(xp, x, axis)
        exps, sum_off_max, ties = _exp_sums(xp, gaps, 0.0, axis)
        neg_gaps = -gaps
    else:
        row_max = xp.max(x, axis=axis, keepdims=True)
        exps, sum_off_max, ties = _exp_sums(xp, x, row_max, axis)   # in the row's dtype
        exps = _astype(xp, exps, xp.float64)
        # +inf in the row: loss and gradient NaN (sigsoftmax's gaps are NaN there already)
        sum_off_max = xp.where(row_max == _INF, _NAN, sum_off_max)
        neg_gaps = _astype(xp, row_max, xp.float64) - _astype(xp, x, xp.float64)
    log_s = xp.log1p(sum_off_max + (ties - 1.0))
    keep, per_class = 1.0 - smoothing, smoothing / x.shape[axis]
    class_weight = xp.reshape(weight, class_shape)

    if q is None:
        labels = xp.reshape(labels, kept_shape)
        kept = xp.reshape(kept, kept_shape)
        target_gap = -xp.take_along_axis(neg_gaps, labels, axis=axis)
        total_weight = keep * label_weight + per_class * weight_total
        gap_total = 0.0
        if smoothing != 0:
            smooth_weight = per_class * class_weight
            # 0 * log 0 = 0: a zero weight never meets a -inf gap
            gap_total = _sum(xp, xp.where(smooth_weight == 0, 0.0, smooth_weight * neg_gaps),
                             axis)
        losses = (keep * label_weight * (log_s - target_gap)
                  + (per_class * weight_total * log_s + gap_total))
        losses = xp.where(kept, losses, 0.0)
    else:
        target_weight = class_weight * (keep * q + per_class)
        total_weight = _sum(xp, target_weight, axis)
        weighted_gaps = xp.where(target_weight == 0, 0.0, target_weight * neg_gaps)
        losses = total_weight * log_s + _sum(xp, weighted_gaps, axis)
    if scale is None:
        return losses, None

    probabilities = exps * (1.0 / (sum_off_max + ties))
    if q is None:
        smooth_weight = per_class * class_weight
        classes = xp.reshape(xp.arange(x.shape[axis], dtype=xp.int64), class_shape)
        target_weight = xp.where(classes == labels,
                                 smooth_weight + keep * label_weight, smooth_weight)
    step = total_weight * probabilities - target_weight
    if sigsoftmax:
        grad = (scale * (2.0 - _sigmoid(xp, _astype(xp, x, xp.float64)))) * step
    else:
        grad = scale * step
    if kept is not None:
        grad = xp.where(kept, grad, 0.0)
    return losses, grad
