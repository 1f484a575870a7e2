"""The Dask backend: fastsoft's public functions on Dask arrays, lazily.

fastsoft._backend sends a call here when one of its array arguments is a
``dask.array.Array``; the functions have the public functions' signatures and semantics
(docs/numerics.md, docs/gradients.md) and return lazy Dask arrays chunked like the input.
docs/scaling.md explains the design and how to run it on a cluster.

Design:
1. Only the router imports this module, and only once ``dask.array`` is in
   ``sys.modules``; Dask itself is imported inside the functions.  Arguments are checked
   eagerly with _validation's helpers (same exceptions and messages as the NumPy path)
   from metadata alone; nothing is computed at call time.  Class labels are checked
   when their blocks are computed (an IndexError naming the label and its position).
2. Every block is NumPy: a Dask array whose blocks are CuPy (or anything else) is a
   TypeError, as is `out=` / `grad_out=` (a lazy result has no buffer to write into;
   store it with ``da.store`` or ``to_zarr``).  NumPy arguments next to a Dask array
   (a target, a mask, a weight) are wrapped and chunked to match it.
3. When each block holds whole rows (the computed axis in one chunk), every block is one
   call of the NumPy function, i.e. of the compiled kernels: results are those of the
   NumPy path bit for bit.
4. When the axis is split over chunks, nothing ever holds a whole row.  Stage 1, per
   block and row: the block maximum m and l = log Σ exp(x - m) (the compiled logsumexp
   on the float64 differences, which are exact for float32 input); for sigsoftmax x is
   the log-domain pre-activation w = 2z - softplus(z), differenced against the block's
   largest z exactly as the NumPy path does against the row's.  Stage 2, a tree
   reduction (``da.reduction``) merging the pairs of a few blocks at a time exactly
   (the compiled logsumexp over the shifted l's); for two:
       M = max(m1, m2),   L = logaddexp(l1 + (m1 - M), l2 + (m2 - M)),
   where a pair whose m equals M gets a shift of exactly 0 (so -inf and +inf maxima never
   form inf - inf), NaN propagates through the max, and a block with no member has
   m = l = -inf.  Stage 3, per block: log p = (x - M) - L, p = exp(log p), in float64
   and rounded once; a +inf maximum makes the row NaN, a -inf one (no member) leaves
   the -inf - -inf NaN the NumPy path also gives, and masked entries get the exact fill.
5. Backward passes: the row sums they need (Σ g y, Σ g, "has a member") are Dask
   reductions along the axis; the rest is per block in float64, rounded once.
   logsumexp_backward is elementwise given the result, so it is always one NumPy call
   per block.
6. cross_entropy: with whole rows per block, one fused kernel call per block returns
   the block's float64 row losses and its gradient together (one task, two outputs).
   With the class axis split, stages 1 and 2 as in 4, then per block the gradient
   s (A p - B) and the block's part Σ B_j (M - x_j) of each row's loss (0 where
   B_j = 0), summed over the class blocks and added to A L; B (the target weights of
   docs/gradients.md) is never formed for class indices, only eps/C w plus one entry
   per row.  The labels' weights, checked labels and the "mean" denominator are Dask
   computations on the targets; the reduced loss is a lazy 0-d array, summed in
   float64 and rounded once.
7. num_threads: each block call runs on ``num_threads`` threads, 1 by default, because
   Dask already runs one task per core (threaded scheduler) or per worker thread.
8. NumPy warns on inf - inf and 0/0, which are results here; np.errstate is
   thread-local, so every block function sets it itself.
"""

import functools
import math

import numpy as np

from . import _activations, _backward, _kernels
from ._config import _check_thread_count
from ._layout import rows_of
from ._validation import (
    broadcasts_to,
    check_loss_options,
    dtype_policy,
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
# a row's merged statistics: its maximum and the log of its shifted sum
_STATS = np.dtype([("m", np.float64), ("l", np.float64)])


def _da():
    import dask.array

    return dask.array


def _quiet(func):
    """Run a block function with NumPy's floating-point warnings off (see design 8)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return func(*args, **kwargs)
    return wrapper


def _numpy_function(name):
    """The NumPy path of public function `name`, without the router in front of it."""
    module = _backward if name.endswith("_backward") else _activations
    return getattr(module, name).__wrapped__


# ---------------------------------------------------------------------------------------
# Arguments


def _as_dask(da, a, name, what="input"):
    """a as a Dask array of NumPy blocks (NumPy-like input in one chunk)."""
    if isinstance(a, da.Array):
        if not isinstance(a._meta, np.ndarray):
            raise TypeError(f"{name}: the Dask backend computes on NumPy blocks; this "
                            f"{what}'s blocks are {type(a._meta).__module__}."
                            f"{type(a._meta).__name__}")
        return a
    return da.from_array(np.asarray(a), chunks=-1)


def _input(da, a, name):
    """(a as a Dask array, its work dtype, the result dtype): the dtype policy."""
    a = _as_dask(da, a, name)
    policy = dtype_policy(a.dtype.kind, a.dtype.itemsize)
    if policy is None:
        raise unsupported_dtype(name, a.dtype)
    return a, np.dtype(policy[0]), np.dtype(policy[1])


def _no_out(out, name, what="out"):
    if out is not None:
        raise TypeError(f"{name}: {what}= is not supported for Dask arrays (the result is "
                        "lazy; write it with dask.array.store or to_zarr instead)")


def _threads(num_threads):
    """Threads of each block call: 1 unless asked (Dask runs blocks in parallel)."""
    return 1 if num_threads is None else _check_thread_count(num_threads, "num_threads")


def _axes(axis, ndim):
    return tuple(range(ndim)) if axis is None else (axis,)


def _whole_rows(x, axes):
    """Whether every block of x holds whole rows along `axes`."""
    return all(len(x.chunks[k]) == 1 for k in axes)


def _aligned(da, a, shape, chunks):
    """a (Dask or NumPy) of len(shape) dims as a Dask array chunked like `chunks` where
    it has the full length and in one chunk where it has length 1 (Dask's map_blocks
    broadcasts those blocks; nothing is materialised at the full shape)."""
    want = tuple(c if n == full else (n,) for n, full, c in zip(a.shape, shape, chunks))
    if isinstance(a, da.Array):
        return a.rechunk(want)
    return da.from_array(np.asarray(a), chunks=want)


def _leading_ones(a, ndim):
    """a (Dask or NumPy) with length-1 axes in front up to `ndim` dims."""
    missing = ndim - a.ndim
    return a[(None,) * missing] if missing else a


def _mask(da, where, x, name):
    """The where= mask aligned with x (length 1 where it broadcasts), or None."""
    if where is None:
        return None
    if not isinstance(where, da.Array):
        where = np.asarray(where)
    else:
        _as_dask(da, where, name, "where")
    if where.dtype != np.bool_:
        raise TypeError(f"{name}: where must be a boolean array, not {where.dtype}")
    if isinstance(where, np.ndarray) and where.ndim == 0 and where:
        return None
    if not broadcasts_to(tuple(where.shape), tuple(x.shape)):
        raise where_shape_error(name, where.shape, x.shape)
    return _aligned(da, _leading_ones(where, x.ndim), x.shape, x.chunks)


def _meta(ndim, dtype):
    return np.empty((0,) * ndim, dtype=dtype)


# ---------------------------------------------------------------------------------------
# Row statistics: stage 1 (per block) and stage 2 (the exact merge)


def _kernel_axis(axes):
    """The `axis` argument of a NumPy call reducing over `axes` (several: all, None)."""
    return axes[0] if len(axes) == 1 else None


def _negative_part(z):
    return np.where(z < 0, z, 0.0)


def _softplus_tail(z):
    return np.log1p(np.exp(np.where(z < 0, z, -z)))


def _sig_gap(z, z_max):
    """w(z) - w(z_max) for w(z) = 2z - softplus(z), the unbounded parts differenced
    exactly (the NumPy path's gaps, against any reference point z_max >= z)."""
    return (((z - z_max) + (_negative_part(z) - _negative_part(z_max)))
            - (_softplus_tail(z) - _softplus_tail(z_max)))


def _gap(x, m, sigsoftmax):
    return _sig_gap(x, m) if sigsoftmax else x - m


@_quiet
def _stats_chunk(x, axis, keepdims, sigsoftmax=False, threads=1):
    """Stage 1 on one block: (m, l) per row, m the block max (NaN if a NaN is present),
    l = log Σ exp(gap) by the compiled logsumexp; no member: m = l = -inf."""
    stats = np.empty(tuple(1 if k in axis else n for k, n in enumerate(x.shape)), _STATS)
    if x.size == 0:
        stats["m"] = stats["l"] = -_INF
    else:
        x64 = x.astype(np.float64)      # exact: the differences below lose nothing more
        m = np.max(x64, axis=axis, keepdims=True)
        gaps = _sig_gap(x64, m) if sigsoftmax else np.subtract(x64, m, out=x64)
        log_sum = _numpy_function("logsumexp")(gaps, axis=_kernel_axis(axis),
                                               keepdims=True, num_threads=threads)
        stats["m"] = m
        stats["l"] = np.where(m == -_INF, -_INF, log_sum)
    return stats if keepdims else stats.squeeze(axis)


@_quiet
def _stats_combine(stats, axis, keepdims, sigsoftmax=False):
    """Stage 2: merge the (m, l) pairs along `axis` exactly (see the module doc)."""
    m, log_sum = stats["m"], stats["l"]
    merged_max = np.max(m, axis=axis, keepdims=True)
    shift = np.where(m == merged_max, 0.0, _gap(m, merged_max, sigsoftmax))
    merged = np.empty(merged_max.shape, _STATS)
    merged["m"] = merged_max
    merged["l"] = _numpy_function("logsumexp")(shift + log_sum, axis=_kernel_axis(axis),
                                                keepdims=True, num_threads=1)
    return merged if keepdims else merged.squeeze(axis)


def _row_stats(da, x, axes, sigsoftmax, threads=1, split_every=None):
    """(M, L) of every row as a structured Dask array of x's shape with `axes` length 1."""
    chunk = functools.partial(_stats_chunk, sigsoftmax=sigsoftmax, threads=threads)
    combine = functools.partial(_stats_combine, sigsoftmax=sigsoftmax)
    return da.reduction(x, chunk, combine, combine=combine, axis=axes, keepdims=True,
                        dtype=_STATS, split_every=split_every, concatenate=True,
                        meta=_meta(x.ndim, _STATS), name="fastsoft-row-stats")


# ---------------------------------------------------------------------------------------
# Forward functions


def _numpy_block(*blocks, name, has_mask, kwargs):
    """One call of the NumPy function on a block (and its mask block)."""
    where = blocks[-1] if has_mask else None
    return _numpy_function(name)(*blocks[:len(blocks) - has_mask], where=where, **kwargs)


def _map_numpy(da, name, arrays, mask, dtype, ndim, **kwargs):
    func = functools.partial(_numpy_block, name=name, has_mask=mask is not None,
                             kwargs=kwargs)
    extra = () if mask is None else (mask,)
    return da.map_blocks(func, *arrays, *extra, dtype=dtype, meta=_meta(ndim, dtype),
                         token=f"fastsoft-{name}")


@_quiet
def _fill_masked(x, mask):
    return np.where(mask, x, -_INF)


@_quiet
def _normalise_block(x, stats, *mask, sigsoftmax, log_output, fill, work, result):
    """Stage 3: log p = gap(x, M) - L (p = exp of it), rounded once."""
    row_max, log_sum = stats["m"], stats["l"]
    values = _gap(x.astype(np.float64), row_max, sigsoftmax) - log_sum
    if not log_output:
        values = np.exp(values)
    values = np.where(row_max == _INF, np.nan, values)   # +inf in the row: NaN
    if mask:
        values = np.where(mask[0], values, fill)
    return values.astype(work).astype(result)


_TRANSFORMS = {
    # name: (sigsoftmax, log output, masked value)
    "softmax": (False, False, 0.0),
    "log_softmax": (False, True, -_INF),
    "sigsoftmax": (True, False, 0.0),
    "log_sigsoftmax": (True, True, -_INF),
}


def _transform(name, x, axis, out, where, num_threads):
    da = _da()
    x, work, result_dtype = _input(da, x, name)
    axis = normalize_axis(axis, x.ndim, name)
    _no_out(out, name)
    mask = _mask(da, where, x, name)
    threads = _threads(num_threads)
    axes = _axes(axis, x.ndim)
    if x.size == 0 or _whole_rows(x, axes):
        return _map_numpy(da, name, (x,), mask, result_dtype, x.ndim, axis=axis,
                          num_threads=threads)
    sigsoftmax, log_output, fill = _TRANSFORMS[name]
    x = x.astype(work)
    if mask is not None:
        x = da.map_blocks(_fill_masked, x, mask, dtype=work, meta=_meta(x.ndim, work))
    stats = _row_stats(da, x, axes, sigsoftmax, threads)
    extra = () if mask is None else (mask,)
    block = functools.partial(_normalise_block, sigsoftmax=sigsoftmax, log_output=log_output,
                              fill=fill, work=work, result=result_dtype)
    return da.map_blocks(block, x, stats, *extra, dtype=result_dtype,
                         meta=_meta(x.ndim, result_dtype), token=f"fastsoft-{name}")


def softmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.softmax` on Dask arrays (lazy, chunked like `x`)."""
    return _transform("softmax", x, axis, out, where, num_threads)


def log_softmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.log_softmax` on Dask arrays."""
    return _transform("log_softmax", x, axis, out, where, num_threads)


def sigsoftmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.sigsoftmax` on Dask arrays."""
    return _transform("sigsoftmax", x, axis, out, where, num_threads)


def log_sigsoftmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.log_sigsoftmax` on Dask arrays."""
    return _transform("log_sigsoftmax", x, axis, out, where, num_threads)


@_quiet
def _finish_logsumexp(stats, work, result):
    row_max, log_sum = stats["m"], stats["l"]
    values = np.where(row_max == -_INF, -_INF,
                      np.where(row_max == _INF, _INF, row_max + log_sum))
    return values.astype(work).astype(result)


def _kept_chunks(chunks, axes):
    return tuple((1,) * len(c) if k in axes else c for k, c in enumerate(chunks))


def logsumexp(x, axis=-1, *, keepdims=False, out=None, where=None, num_threads=None):
    """`fastsoft.logsumexp` on Dask arrays; a 0-d result is a lazy 0-d Dask array."""
    da = _da()
    name = "logsumexp"
    x, work, result_dtype = _input(da, x, name)
    axis = normalize_axis(axis, x.ndim, name)
    _no_out(out, name)
    mask = _mask(da, where, x, name)
    threads = _threads(num_threads)
    axes = _axes(axis, x.ndim)
    if x.size == 0:
        # nothing to compute: one chunk along the axes keeps the block shapes simple
        x = x.rechunk(tuple(-1 if k in axes else c for k, c in enumerate(x.chunks)))
        mask = None if mask is None else mask.rechunk(
            tuple(-1 if k in axes else c for k, c in enumerate(mask.chunks)))
    if _whole_rows(x, axes):
        func = functools.partial(_numpy_block, name=name, has_mask=mask is not None,
                                 kwargs={"axis": axis, "keepdims": True,
                                         "num_threads": threads})
        extra = () if mask is None else (mask,)
        result = da.map_blocks(func, x, *extra, chunks=_kept_chunks(x.chunks, axes),
                               dtype=result_dtype, meta=_meta(x.ndim, result_dtype),
                               token="fastsoft-logsumexp")
    else:
        x = x.astype(work)
        if mask is not None:
            x = da.map_blocks(_fill_masked, x, mask, dtype=work, meta=_meta(x.ndim, work))
        stats = _row_stats(da, x, axes, False, threads)
        result = da.map_blocks(_finish_logsumexp, stats, work=work, result=result_dtype,
                               dtype=result_dtype, meta=_meta(x.ndim, result_dtype),
                               token="fastsoft-logsumexp")
    return result if keepdims else result.squeeze(axis=axes)


# ---------------------------------------------------------------------------------------
# Backward passes


def _common_inputs(da, name, arrays):
    """The inputs as Dask arrays, the work dtype and the result dtype (as the NumPy path:
    float64 if any input computes in float64; float16 only if every input is float16),
    and the position of the first input that was a Dask array (whose chunks rule)."""
    converted = [_input(da, a, name) for a in arrays]
    work = np.result_type(*(w for _, w, _ in converted))
    all_half = all(r == np.float16 for _, _, r in converted)
    lead = next((k for k, a in enumerate(arrays) if isinstance(a, da.Array)), 0)
    return ([a for a, _, _ in converted], work, np.dtype(np.float16) if all_half else work,
            lead)


@_quiet
def _product_terms(g, y, *mask, takes_product):
    terms = g.astype(np.float64) * y if takes_product else g.astype(np.float64)
    return np.where(mask[0], terms, 0.0) if mask else terms


@_quiet
def _members(z, *mask):
    member = z > -_INF
    return member & mask[0] if mask else member


@_quiet
def _vjp_block(g, y, reduced, *rest, takes_product, sees_x, has_mask, work, result):
    g, y = g.astype(np.float64), y.astype(np.float64)
    inner = y * (g - reduced) if takes_product else g - np.exp(y) * reduced
    if sees_x:
        z, has_member = rest[0].astype(np.float64), rest[1]
        t = np.exp(np.where(z >= 0, -z, z))
        sigmoid = np.where(z >= 0, 1.0, t) / (1.0 + t)
        # no unmasked logit above -inf: the forward is constant or undefined there
        inner = np.where(has_member, (2.0 - sigmoid) * inner, 0.0)
    if has_mask:
        inner = np.where(rest[-1], inner, 0.0)
    return inner.astype(work).astype(result)


def _vjp(name, kind, arrays, axis, out, where, num_threads):
    da = _da()
    arrays, work, result_dtype, lead = _common_inputs(da, name, arrays)
    shape = tuple(arrays[0].shape)
    for a in arrays[1:]:
        if tuple(a.shape) != shape:
            raise ValueError(f"{name}: inputs have different shapes {shape} and "
                             f"{tuple(a.shape)}")
    axis = normalize_axis(axis, len(shape), name)
    _no_out(out, name)
    chunks = arrays[lead].chunks
    arrays = [a.rechunk(chunks) for a in arrays]
    first = arrays[0]
    mask = _mask(da, where, first, name)
    threads = _threads(num_threads)
    axes = _axes(axis, first.ndim)
    if first.size == 0 or _whole_rows(first, axes):
        return _map_numpy(da, name, arrays, mask, result_dtype, first.ndim, axis=axis,
                          num_threads=threads)
    takes_product = kind in ("softmax", "sigsoftmax")
    g, y = arrays[:2]
    extra = () if mask is None else (mask,)
    terms = da.map_blocks(functools.partial(_product_terms, takes_product=takes_product),
                          g, y, *extra, dtype=np.float64, meta=_meta(first.ndim, np.float64))
    reduced = terms.sum(axis=axes, keepdims=True, dtype=np.float64)
    rest = []
    if len(arrays) == 3:
        members = da.map_blocks(_members, arrays[2], *extra, dtype=bool,
                                meta=_meta(first.ndim, bool))
        rest = [arrays[2], members.any(axis=axes, keepdims=True)]
    block = functools.partial(_vjp_block, takes_product=takes_product,
                              sees_x=len(arrays) == 3, has_mask=mask is not None,
                              work=work, result=result_dtype)
    return da.map_blocks(block, g, y, reduced, *rest, *extra, dtype=result_dtype,
                         meta=_meta(first.ndim, result_dtype), token=f"fastsoft-{name}")


def softmax_backward(grad_output, output, axis=-1, *, out=None, where=None, num_threads=None):
    """`fastsoft.softmax_backward` on Dask arrays."""
    return _vjp("softmax_backward", "softmax", (grad_output, output), axis, out, where,
                num_threads)


def log_softmax_backward(grad_output, output, axis=-1, *, out=None, where=None,
                         num_threads=None):
    """`fastsoft.log_softmax_backward` on Dask arrays."""
    return _vjp("log_softmax_backward", "log_softmax", (grad_output, output), axis, out,
                where, num_threads)


def sigsoftmax_backward(grad_output, output, x, axis=-1, *, out=None, where=None,
                        num_threads=None):
    """`fastsoft.sigsoftmax_backward` on Dask arrays."""
    return _vjp("sigsoftmax_backward", "sigsoftmax", (grad_output, output, x), axis, out,
                where, num_threads)


def log_sigsoftmax_backward(grad_output, output, x, axis=-1, *, out=None, where=None,
                            num_threads=None):
    """`fastsoft.log_sigsoftmax_backward` on Dask arrays."""
    return _vjp("log_sigsoftmax_backward", "log_sigsoftmax", (grad_output, output, x), axis,
                out, where, num_threads)


def logsumexp_backward(grad_output, x, result, axis=-1, *, out=None, where=None,
                       num_threads=None):
    """`fastsoft.logsumexp_backward` on Dask arrays: one NumPy call per block of `x`
    (the gradient g exp(x - r) needs no row reduction once r is known)."""
    da = _da()
    name = "logsumexp_backward"
    (x, g, r), work, result_dtype, _ = _common_inputs(da, name, (x, grad_output, result))
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
    _no_out(out, name)
    mask = _mask(da, where, x, name)
    threads = _threads(num_threads)
    if tuple(g.shape) != tuple(r.shape):
        g = da.broadcast_to(_leading_ones(g, r.ndim), r.shape)
    # every block gets its rows' results in the kept shape: the formula is elementwise
    # once the result is known, so a block holding part of a row is no different
    g = _aligned(da, g.reshape(kept_shape), shape, x.chunks)
    r = _aligned(da, r.reshape(kept_shape), shape, x.chunks)
    return _map_numpy(da, name, (g, x, r), mask, result_dtype, x.ndim, axis=axis,
                      num_threads=threads)


# ---------------------------------------------------------------------------------------
# cross_entropy


def _check_labels(labels, n_classes, ignore_index, offset, name):
    """IndexError for a label outside [0, n_classes) that is not ignore_index, naming its
    position in the whole target (`offset`: the position of the block's first label)."""
    bad = ((labels < 0) | (labels >= n_classes)) & (labels != ignore_index)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        position = tuple(i + o for i, o in zip(index, offset))
        raise IndexError(f"{name}: target {labels[index]} at position {position} is outside "
                         f"[0, {n_classes}) and is not ignore_index ({ignore_index})")


def _label_offset(block_info, axis):
    """Position in the target (the logits' shape without `axis`) of a block's first row."""
    start = [begin for begin, _ in block_info[None]["array-location"]]
    return tuple(start[:axis] + start[axis + 1:])


@_quiet
def _label_weights(labels, weight, *, axis, n_classes, ignore_index, block_info=None):
    """weight[label] of each row (0 where ignored), kept shape; checks the labels."""
    batch = labels.squeeze(axis)
    _check_labels(batch, n_classes, ignore_index, _label_offset(block_info, axis),
                  "cross_entropy")
    kept = labels != ignore_index
    flat_weight = weight.reshape(-1)
    return np.where(kept, flat_weight[np.where(kept, labels, 0)], 0.0)


@_quiet
def _probability_weights(q, weight, *, smoothing, n_classes, work):
    """B_j = w_j ((1 - eps) q_j + eps / C) of probability targets (q rounded to work)."""
    q = q.astype(work).astype(np.float64)
    return weight * ((1.0 - smoothing) * q + smoothing / n_classes)


@_quiet
def _whole_row_losses(x, target, weight, *scale, axis, ignore_index, smoothing, sigsoftmax,
                      index_target, want_grad, scale_value, work, result, threads,
                      block_info=None):
    """Rows whole in the block: one fused kernel call.  (float64 row losses in the kept
    shape, gradient block or None)."""
    x = x.astype(work, copy=False)
    n_classes = x.shape[axis]
    kept_shape = x.shape[:axis] + (1,) + x.shape[axis + 1:]
    n_rows = math.prod(kept_shape)
    weight = np.ascontiguousarray(weight.reshape(-1), dtype=np.float64)
    labels = q_rows = None
    if index_target:
        # the kernel trusts its labels: check them first
        _check_labels(target.squeeze(axis), n_classes, ignore_index,
                      _label_offset(block_info, axis), "cross_entropy")
        labels = np.require(target, np.int64, ["C", "A"]).reshape(-1)
    else:
        q_rows = rows_of(target.astype(work, copy=False), axis, threads)
    losses = np.zeros(n_rows, dtype=np.float64)
    grad_rows = scales = None
    if want_grad:
        grad_rows = np.empty((n_rows, n_classes), dtype=work)
        if scale:
            scales = np.ascontiguousarray(np.broadcast_to(scale[0], kept_shape),
                                          dtype=np.float64).reshape(-1)
    if n_rows:
        _kernels.core.cross_entropy_rows(
            rows_of(x, axis, threads), labels, ignore_index, q_rows, weight, smoothing,
            sigsoftmax, losses, grad_rows, scales, scale_value, threads)
    grad = None
    if want_grad:
        batch_shape = x.shape[:axis] + x.shape[axis + 1:]
        grad = np.moveaxis(grad_rows.reshape(batch_shape + (n_classes,)), -1, axis)
        grad = grad.astype(result)
    return losses.reshape(kept_shape), grad


def _sigsoftmax_factor(x):
    """2 - sigmoid(x) in float64, through e^-|x| (no overflow)."""
    t = np.exp(-np.abs(x))
    return 2.0 - np.where(x >= 0, 1.0, t) / (1.0 + t)


@_quiet
def _split_row_parts(x, stats, target, weight, total_weight, *rest, axis, ignore_index,
                     smoothing, sigsoftmax, index_target, n_classes, want_grad, scale_value,
                     work, result, block_info=None):
    """Class axis split: (this block's part Σ B_j (M - x_j) of each row's loss, kept
    shape; the gradient block s (A p - B), or None).  `rest`: label weights (class
    indices), then the per-row gradient factors when they vary.  Class-index targets
    never form B as an array: it is eps/C w_j plus one entry per row."""
    row_max, log_sum = stats["m"], stats["l"]
    x64 = x.astype(np.float64)
    if sigsoftmax:
        gaps = _sig_gap(x64, row_max)
    else:
        gaps = np.subtract(x64, row_max, out=x64)
    keep, per_class = 1.0 - smoothing, smoothing / n_classes
    # 0 log 0 = 0: a zero weight never meets an infinite gap
    weight_gaps = gaps if np.all(weight != 0) else np.where(weight == 0, 0.0, gaps)
    if index_target:
        label_weight, rest = rest[0], rest[1:]
        first = block_info[None]["array-location"][axis][0]
        column = target - first
        here = (target != ignore_index) & (column >= 0) & (column < x.shape[axis])
        column = np.where(here, column, 0)
        label_term = keep * label_weight
        target_gap = np.take_along_axis(gaps, column, axis=axis)
        part = np.where(here & (label_term != 0), -label_term * target_gap, 0.0)
        if per_class:
            part -= per_class * np.sum(weight * weight_gaps, axis=axis, keepdims=True)
        part = np.where(target != ignore_index, part, 0.0)
    else:
        target_weight = _probability_weights(target, weight, smoothing=smoothing,
                                             n_classes=n_classes, work=work)
        part = -np.sum(np.where(target_weight == 0, 0.0, target_weight * gaps), axis=axis,
                       keepdims=True)
    if not want_grad:
        return part, None
    grad = np.subtract(gaps, log_sum, out=gaps)
    grad = np.exp(grad, out=grad)                       # the probabilities
    grad *= total_weight
    if index_target:
        if per_class:
            grad -= per_class * weight
        rows = np.broadcast_to(here, grad.shape[:axis] + (1,) + grad.shape[axis + 1:])
        at_label = np.take_along_axis(grad, column, axis=axis)
        np.put_along_axis(grad, column, np.where(rows, at_label - label_term, at_label),
                          axis=axis)
    else:
        grad -= target_weight
    if sigsoftmax:
        grad *= _sigsoftmax_factor(x.astype(np.float64))
    grad *= rest[0] if rest else scale_value
    if np.any(row_max == _INF):                          # +inf in the row: NaN
        grad = np.where(row_max == _INF, np.nan, grad)
    if index_target:
        np.copyto(grad, 0.0, where=target == ignore_index)
    grad = grad.astype(work)
    return part, grad if result == work else grad.astype(result)


@_quiet
def _combine_losses(total_weight, stats, parts, *kept):
    """A L + Σ parts per row (kept shape, float64); ignored rows 0, +inf rows NaN."""
    losses = total_weight * stats["l"] + parts
    losses = np.where(stats["m"] == _INF, np.nan, losses)
    return np.where(kept[0], losses, 0.0) if kept else losses


@_quiet
def _not_ignored(labels, ignore_index):
    return labels != ignore_index


@_quiet
def _safe_ratio(numerator, denominator, fallback):
    numerator, denominator = np.asarray(numerator), np.asarray(denominator)
    return np.where(denominator != 0, numerator / denominator, fallback)


def _pick(pair, index):
    return pair[index]


def _class_weights(da, weight, n_classes, name):
    """(weight as float64 (NumPy or Dask), its sum as a float or a lazy 0-d array)."""
    if weight is None:
        return np.ones(n_classes), float(n_classes)
    if isinstance(weight, da.Array):
        _as_dask(da, weight, name, "weight")
    else:
        weight = np.asarray(weight)
    if weight.dtype.kind not in "biuf" or weight.dtype.itemsize > 8:
        raise TypeError(f"{name}: weight must be a real array, not {weight.dtype}")
    if tuple(weight.shape) != (n_classes,):
        raise ValueError(f"{name}: weight has shape {tuple(weight.shape)}, expected "
                         f"({n_classes},)")
    weight = weight.astype(np.float64)
    if isinstance(weight, np.ndarray):
        return weight, float(weight.sum())
    return weight, weight.sum()


def cross_entropy(logits, target, *, axis=-1, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, activation="softmax",
                  return_grad=False, grad_output=None, grad_out=None, num_threads=None):
    """`fastsoft.cross_entropy` on Dask arrays.

    The loss is lazy: a 0-d Dask array for "mean" and "sum", the per-row losses for
    "none"; the gradient is chunked like the logits.  Compute both together
    (``dask.compute(loss, grad)``) so the logits are read once.
    """
    da = _da()
    name = "cross_entropy"
    x, work, result_dtype = _input(da, logits, name)
    shape = tuple(x.shape)
    axis, smoothing, ignore_index = check_loss_options(
        name, shape, axis, reduction, activation, label_smoothing, ignore_index,
        return_grad, grad_output, grad_out)
    ndim = x.ndim
    n_classes = shape[axis]
    batch_shape = shape[:axis] + shape[axis + 1:]
    kept_shape = shape[:axis] + (1,) + shape[axis + 1:]
    class_shape = tuple(n_classes if k == axis else 1 for k in range(ndim))
    kept_chunks = _kept_chunks(x.chunks, (axis,))
    sigsoftmax = activation == "sigsoftmax"
    target = _as_dask(da, target, name, "target") if isinstance(target, da.Array) \
        else np.asarray(target)
    index_target = target.dtype.kind in "iu"
    if index_target:
        if tuple(target.shape) != batch_shape:
            raise ValueError(f"{name}: class-index target has shape {tuple(target.shape)}; "
                             f"the logits without the class axis have shape {batch_shape}")
        target = _aligned(da, target.reshape(kept_shape), shape, x.chunks)
    elif target.dtype.kind == "f":
        if tuple(target.shape) != shape:
            raise ValueError(f"{name}: probability target has shape {tuple(target.shape)}, "
                             f"the logits {shape}")
        target = _aligned(da, target, shape, x.chunks)
    else:
        raise TypeError(f"{name}: target must hold integer class indices or float "
                        f"probabilities, not {target.dtype}")
    weight, weight_total = _class_weights(da, weight, n_classes, name)
    weight = _aligned(da, weight.reshape(class_shape), shape, x.chunks)
    _no_out(grad_out, name, "grad_out")
    threads = _threads(num_threads)

    label_weight = kept = None
    if index_target:
        whole_weight = weight.rechunk(-1)
        label_weight = da.map_blocks(
            functools.partial(_label_weights, axis=axis, n_classes=n_classes,
                              ignore_index=ignore_index),
            target, whole_weight, chunks=target.chunks, dtype=np.float64,
            meta=_meta(ndim, np.float64), token="fastsoft-label-weights")
        kept = da.map_blocks(_not_ignored, target, ignore_index, dtype=bool,
                             meta=_meta(ndim, bool))
        denominator = label_weight.sum(dtype=np.float64)
    else:
        denominator = float(math.prod(batch_shape))

    scale_arrays, scale_value = (), 0.0
    if return_grad:
        if reduction == "none":
            if grad_output is None:
                scale_value = 1.0
            else:
                g = grad_output if isinstance(grad_output, da.Array) else np.asarray(
                    grad_output, dtype=np.float64)
                if not broadcasts_to(tuple(g.shape), batch_shape):
                    raise ValueError(f"{name}: grad_output of shape {tuple(g.shape)} does "
                                     f"not match the loss's shape {batch_shape}")
                g = _leading_ones(g, len(batch_shape)).astype(np.float64)
                g = g.reshape(g.shape[:axis] + (1,) + g.shape[axis:])
                scale_arrays = (_aligned(da, g, shape, x.chunks),)
        else:
            g = 1.0 if grad_output is None else grad_output
            if np.ndim(g) != 0:
                raise ValueError(f"{name}: grad_output must be a scalar for "
                                 f"reduction={reduction!r}")
            if reduction == "mean":
                # all rows ignored: denominator 0, the gradients are 0 whatever the factor
                if isinstance(denominator, float) and not isinstance(g, da.Array):
                    g = float(g) / denominator if denominator != 0 else 0.0
                else:
                    g = da.map_blocks(_safe_ratio, da.asarray(g, dtype=np.float64),
                                      denominator, 0.0, dtype=np.float64,
                                      meta=_meta(0, np.float64))
            if isinstance(g, da.Array):
                scale_arrays = (g.astype(np.float64).reshape((1,) * ndim),)
            else:
                scale_value = float(g)

    common = dict(axis=axis, want_grad=return_grad, scale_value=scale_value, work=work,
                  result=result_dtype)
    if _whole_rows(x, (axis,)):
        pairs = da.map_blocks(
            functools.partial(_whole_row_losses, ignore_index=ignore_index,
                              smoothing=smoothing, sigsoftmax=sigsoftmax,
                              index_target=index_target, threads=threads, **common),
            x, target, weight, *scale_arrays, chunks=x.chunks, dtype=object,
            meta=_meta(ndim, object), token="fastsoft-cross-entropy")
        losses = pairs.map_blocks(_pick, 0, chunks=kept_chunks, dtype=np.float64,
                                  meta=_meta(ndim, np.float64))
    else:
        x = x.astype(work)
        stats = _row_stats(da, x, (axis,), sigsoftmax, threads)
        if index_target:
            total_weight = (1.0 - smoothing) * label_weight + (smoothing / n_classes) * \
                weight_total
            per_row = (label_weight,)
        else:
            total_weight = da.map_blocks(
                functools.partial(_probability_weights, smoothing=smoothing,
                                  n_classes=n_classes, work=work),
                target, weight, dtype=np.float64, meta=_meta(ndim, np.float64),
            ).sum(axis=axis, keepdims=True, dtype=np.float64)
            per_row = ()
        pairs = da.map_blocks(
            functools.partial(_split_row_parts, ignore_index=ignore_index,
                              smoothing=smoothing, sigsoftmax=sigsoftmax,
                              index_target=index_target, n_classes=n_classes, **common),
            x, stats, target, weight, total_weight, *per_row, *scale_arrays,
            chunks=x.chunks, dtype=object, meta=_meta(ndim, object),
            token="fastsoft-cross-entropy")
        parts = pairs.map_blocks(
            _pick, 0, chunks=_kept_chunks(x.chunks, (axis,)), dtype=np.float64,
            meta=_meta(ndim, np.float64)).sum(axis=axis, keepdims=True, dtype=np.float64)
        losses = da.map_blocks(_combine_losses, total_weight, stats, parts,
                               *(() if kept is None else (kept,)), dtype=np.float64,
                               meta=_meta(ndim, np.float64))

    if reduction == "none":
        loss = losses.squeeze(axis=axis).astype(result_dtype)
    else:
        total = losses.sum(dtype=np.float64)
        if reduction == "mean":
            total = da.map_blocks(_safe_ratio, total, denominator, np.nan, dtype=np.float64,
                                  meta=_meta(0, np.float64))
        loss = total.astype(result_dtype)
    if not return_grad:
        return loss
    grad = pairs.map_blocks(_pick, 1, chunks=x.chunks, dtype=result_dtype,
                            meta=_meta(ndim, result_dtype))
    return loss, grad
