"""Mixtures of softmax (MoS) and of sigsoftmax (MoSS): log-probabilities and cross-entropy.

A mixture row is a K x C block of component logits with K prior logits; the component
and class axes are moved last and the block rows handed to the fused kernels in
_kernels/_mixture.pxi (docs/gradients.md derives what they compute).
"""

import functools
import math
import operator

import numpy as np

from . import _kernels
from ._backend import dispatch
from ._config import resolve_threads
from ._layout import output_rows, rows_of, rows_view, write_back
from ._validation import (
    REDUCTIONS,
    as_float_array,
    check_mixture_axes,
    check_mixture_prior,
    check_out,
)

# Array libraries whose backends (fastsoft._cupy, fastsoft._dask) have no mixture yet.
_UNSUPPORTED_ARRAY_LIBRARIES = ("cupy", "dask")


def _numpy_only(func):
    """Route through `dispatch` like every public function, but refuse CuPy and Dask arrays
    with a TypeError first: their backends do not implement the mixtures, and dispatch
    would otherwise fail with an AttributeError inside the backend module."""
    routed = dispatch(func)

    @functools.wraps(func)
    def guarded(*args, **kwargs):
        for value in (*args, *kwargs.values()):
            library = type(value).__module__.partition(".")[0]
            if library in _UNSUPPORTED_ARRAY_LIBRARIES:
                raise TypeError(
                    f"{func.__name__}: {library} arrays are not supported (the mixture "
                    "functions run on NumPy arrays only; convert with cupy.asnumpy() or "
                    "dask's .compute() first)")
        return routed(*args, **kwargs)

    return guarded


def _removed(shape, axis):
    return shape[:axis] + shape[axis + 1:]


def _moved_last(a, axis, component_axis):
    """a with its component and class axes last (a itself when they are: the default
    layout skips np.moveaxis, which cost microseconds a call)."""
    if component_axis == a.ndim - 2 and axis == a.ndim - 1:
        return a
    return np.moveaxis(a, (component_axis, axis), (-2, -1))


def _block_view(a, axis, component_axis, n_rows):
    """a as (n_rows, K, C) blocks with contiguous class rows, without copying, or None."""
    moved = _moved_last(a, axis, component_axis)
    K, C = moved.shape[-2], moved.shape[-1]
    try:
        blocks = np.reshape(moved, (n_rows, K, C), copy=False)
    except ValueError:
        return None
    itemsize = blocks.itemsize
    if C > 1 and blocks.strides[2] != itemsize:
        return None
    if blocks.strides[0] % itemsize or blocks.strides[1] % itemsize or not blocks.flags.aligned:
        return None
    return blocks


def _blocks_of(a, axis, component_axis, n_rows):
    """a as kernel blocks: a view when possible, else a C-contiguous copy."""
    blocks = _block_view(a, axis, component_axis, n_rows)
    if blocks is None:
        moved = _moved_last(a, axis, component_axis)
        blocks = np.require(moved, requirements=["C", "A"]).reshape(
            n_rows, a.shape[component_axis], a.shape[axis])
    return blocks


def _prior_rows(prior, prior_component_axis, n_rows):
    """Prior logits as C-contiguous (n_rows, K) rows (a small copy at most)."""
    moved = (prior if prior_component_axis == prior.ndim - 1
             else np.moveaxis(prior, prior_component_axis, -1))
    return np.require(moved, requirements=["C", "A"]).reshape(n_rows, prior.shape[prior_component_axis])


def _prepare(name, logits, prior_logits, axis, component_axis, activation):
    x, result_dtype = as_float_array(logits, name)
    axis, component_axis = check_mixture_axes(name, x.shape, axis, component_axis, activation)
    prior = check_mixture_prior(prior_logits, name, _removed(x.shape, axis), x.dtype)
    prior_component_axis = component_axis if component_axis < axis else component_axis - 1
    batch_shape = _removed(_removed(x.shape, max(axis, component_axis)),
                           min(axis, component_axis))
    return x, result_dtype, axis, component_axis, prior, prior_component_axis, batch_shape


@_numpy_only
def log_mixture(logits, prior_logits, *, activation="softmax", axis=-1, component_axis=-2,
                out=None, num_threads=None):
    r"""Log-probabilities of a mixture of softmax (MoS) or of sigsoftmax (MoSS).

    For one mixture row, with component logits :math:`z_k \in \mathbb{R}^C` (classes
    along `axis`, components :math:`k = 1, \dots, K` along `component_axis`) and prior
    logits :math:`\rho \in \mathbb{R}^K`,

    .. math::

        \log P_j = \log \sum_{k=1}^{K} \pi_k\, f(z_k)_j
                 = \operatorname{logsumexp}_k \bigl(\log \pi_k + \log f(z_k)_j\bigr),
        \qquad \pi = f(\rho),

    where :math:`f` is softmax (MoS, Yang et al. 2018) or sigsoftmax (MoSS, Kanai et al.
    2018, eq. 19) — the same `activation` is used for the components and for the prior,
    as in the paper's MoSS.  Everything is computed in the log domain: each
    :math:`\log f(z_k)` from the logits' gaps to their row max, then a logsumexp over the
    components with the max term taken out; no probability is multiplied in linear
    space and no epsilon is added before a log.

    Parameters
    ----------
    logits : array_like
        Component logits, shape ``(..., K, C)`` by default.  float32 and float64 are
        computed as they are; float16 in float32 (returned as float16); bool and integers
        in float64; other dtypes are a TypeError.
    prior_logits : array_like
        Prior (mixture weight) logits: the shape of `logits` without the class axis
        (``(..., K)`` by default).  Cast to the logits' working dtype.
    activation : {"softmax", "sigsoftmax"}, optional
        :math:`f` for both the components and the prior.
    axis : int, optional
        The class axis of `logits` (default: the last).
    component_axis : int, optional
        The component axis of `logits` (default: the second to last).  Its position in
        `prior_logits` is the same axis with the class axis removed.
    out : ndarray, optional
        Receives the result: the logits' shape without the component axis, result dtype.
    num_threads : int, optional
        Threads for this call (default: `get_num_threads`).

    Returns
    -------
    ndarray
        :math:`\log P`, the logits' shape without the component axis.

    Raises
    ------
    TypeError
        Unsupported dtypes; `out` of the wrong dtype; CuPy or Dask arrays (the mixture
        functions run on NumPy only).
    ValueError
        Fewer than 2 dimensions, ``axis == component_axis``, an empty class or component
        axis, `prior_logits` or `out` of the wrong shape, an unknown `activation`.
    numpy.exceptions.AxisError
        `axis` or `component_axis` out of range.

    Notes
    -----
    A component whose prior is exactly 0 (a ``-inf`` prior logit) takes no part: its
    logits are not read.  A class that every component gives probability 0 (``-inf``
    logits) has :math:`\log P_j = -\infty`.  A NaN or ``+inf`` in the prior, or in a
    component that takes part, makes the row NaN.  With K = 1 the result is
    ``log_softmax`` (``log_sigsoftmax``) of the one component.

    References
    ----------
    Z. Yang, Z. Dai, R. Salakhutdinov, W. W. Cohen, "Breaking the softmax bottleneck: a
    high-rank RNN language model", ICLR 2018.  S. Kanai, Y. Fujiwara, Y. Yamanaka,
    S. Adachi, "Sigsoftmax: reanalysis of the softmax bottleneck", NeurIPS 2018.

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> logits = np.array([[[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]]])   # 1 row, K=2, C=3
    >>> log_p = fs.log_mixture(logits, np.array([[0.0, 0.0]]))    # equal priors
    >>> np.exp(log_p)        # the average of the two softmax rows
    array([[0.44674651, 0.10650698, 0.44674651]])
    >>> np.exp(fs.log_mixture(logits, np.array([[0.0, -np.inf]])))  # only component 0
    array([[0.78698604, 0.10650698, 0.10650698]])
    """
    name = "log_mixture"
    x, result_dtype, axis, component_axis, prior, prior_axis, batch_shape = _prepare(
        name, logits, prior_logits, axis, component_axis, activation)
    out_shape = _removed(x.shape, component_axis)
    out_axis = axis if axis < component_axis else axis - 1
    check_out(out, out_shape, result_dtype, name)
    target = np.empty(out_shape, dtype=result_dtype) if out is None else out
    n_rows = math.prod(batch_shape)
    if n_rows == 0:
        return target
    blocks = _blocks_of(x, axis, component_axis, n_rows)
    prior_rows = _prior_rows(prior, prior_axis, n_rows)
    rows = None
    if target.dtype == x.dtype:
        rows = (rows_view(target, out_axis) if out is None
                else output_rows(target, out_axis, blocks, prior_rows))
    direct = rows is not None
    if not direct:
        rows = np.empty((n_rows, x.shape[axis]), dtype=x.dtype)
    threads = resolve_threads(num_threads, x.size)
    _kernels.core.log_mixture_rows(blocks, prior_rows, activation == "sigsoftmax", rows,
                                   threads)
    if not direct:
        write_back(target, out_axis, rows, threads)
    return target


def _index_targets(target, batch_shape, n_classes, ignore_index, name):
    if tuple(target.shape) != tuple(batch_shape):
        raise ValueError(f"{name}: class-index target has shape {target.shape}; the logits "
                         f"without the class and component axes have shape {batch_shape}")
    bad = (target < 0) | (target >= n_classes)
    bad &= target != ignore_index
    if bad.any():
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        raise IndexError(f"{name}: target {target[position]} at position {position} is "
                         f"outside [0, {n_classes}) and is not ignore_index ({ignore_index})")
    return np.require(target, np.int64, ["C", "A"]).reshape(-1)


@_numpy_only
def mixture_cross_entropy(logits, prior_logits, target, *, activation="softmax", axis=-1,
                          component_axis=-2, ignore_index=-100, reduction="mean",
                          return_grad=False, num_threads=None):
    r"""Cross-entropy of a mixture of softmax (MoS) or sigsoftmax (MoSS), fused with its
    gradients.

    With :math:`\log P` as in `log_mixture`, a row's loss is :math:`L = -\log P_t` for a
    class index :math:`t`, or :math:`L = -\sum_j q_j \log P_j` for class probabilities
    :math:`q`.  With the responsibilities (the posterior of component k given class j)

    .. math::

        r_{kj} = \frac{\pi_k f(z_k)_j}{P_j} = \exp\bigl(\log\pi_k + \log f(z_k)_j
                 - \log P_j\bigr),

    and, for probability targets, :math:`R_k = \sum_j q_j r_{kj}`, :math:`A = \sum_j q_j`
    (index targets: :math:`R_k = r_{kt}`, :math:`A = 1`, :math:`q` one-hot), the
    gradients are

    .. math::

        \frac{\partial L}{\partial z_{kj}} = c(z_{kj})\,\bigl(R_k f(z_k)_j - q_j r_{kj}\bigr),
        \qquad
        \frac{\partial L}{\partial \rho_k} = c(\rho_k)\,\bigl(A \pi_k - R_k\bigr),

    with :math:`c = 1` for softmax and :math:`c(v) = 2 - \sigma(v)` for sigsoftmax
    (Kanai et al., Theorem 5).  For index targets this is
    :math:`r_{kt}(f(z_k)_j - [j = t])` and :math:`\pi_k - r_{kt}`.  docs/gradients.md
    derives them.  One visit of each row computes the normalisers (one pass per
    component), the loss, and then writes both gradients.

    Parameters
    ----------
    logits : array_like
        Component logits, shape ``(..., K, C)`` by default.  dtype rules as in
        `log_mixture` (float32/float64 kept, float16 computed in float32, bool and
        integers in float64).
    prior_logits : array_like
        Prior logits, the shape of `logits` without the class axis.
    target : array_like
        Integer class indices (the logits' shape without the class and component axes),
        or floating-point class probabilities (the shape of `log_mixture`'s result; not
        checked to sum to 1).
    activation : {"softmax", "sigsoftmax"}, optional
        :math:`f` for the components and the prior.
    axis, component_axis : int, optional
        As in `log_mixture`.
    ignore_index : int, optional
        Index targets equal to this give loss 0 and gradients 0 and are left out of the
        mean (default -100).
    reduction : {"mean", "sum", "none"}, optional
        "mean" divides the summed loss by the number of rows not ignored (NaN if every
        row is ignored; the gradients are then 0); "none" returns the per-row losses.
    return_grad : bool, optional
        Also return ``(grad_logits, grad_prior_logits)``.
    num_threads : int, optional
        Threads for this call (default: `get_num_threads`).

    Returns
    -------
    loss : NumPy scalar or ndarray
        The reduced loss (a scalar of the result dtype), or per-row losses ("none").
    grads : tuple of ndarray
        Only with ``return_grad=True``: the gradients of the loss with respect to
        `logits` and `prior_logits`, in their shapes and the result dtype.

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not `ignore_index`.
    TypeError
        Unsupported dtypes (of any argument), non-numeric targets, CuPy or Dask arrays.
    ValueError
        Shapes that do not match, equal axes, an empty class or component axis, unknown
        `reduction` or `activation`.
    numpy.exceptions.AxisError
        `axis` or `component_axis` out of range.

    Notes
    -----
    Losses are accumulated in double and rounded to the result dtype at the end.  A
    component whose prior is 0 gets gradient 0.  A target class of probability 0 under
    the whole mixture has loss ``+inf`` and NaN gradients (its responsibilities are
    0/0).  With K = 1 this is `cross_entropy` with the same activation.

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> logits = np.array([[[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]]])   # 1 row, K=2, C=3
    >>> prior = np.array([[0.0, 0.0]])
    >>> loss, (grad_z, grad_rho) = fs.mixture_cross_entropy(
    ...     logits, prior, np.array([0]), return_grad=True)
    >>> float(loss)                         # -log(0.44674651)
    0.8057639357388573
    >>> grad_rho                            # pi - r: component 0 explains class 0 best
    array([[-0.38079708,  0.38079708]])
    >>> grad_z                              # r_k (softmax(z_k) - onehot)
    array([[[-0.18762207,  0.09381104,  0.09381104],
            [-0.10650698,  0.01269594,  0.09381104]]])
    """
    name = "mixture_cross_entropy"
    x, result_dtype, axis, component_axis, prior, prior_axis, batch_shape = _prepare(
        name, logits, prior_logits, axis, component_axis, activation)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, not {reduction!r}")
    ignore_index = _as_index(ignore_index, name)
    n_classes, n_components = x.shape[axis], x.shape[component_axis]
    n_rows = math.prod(batch_shape)
    threads = resolve_threads(num_threads, x.size)
    target = np.asarray(target)
    if target.dtype.kind in "iu":
        targets = _index_targets(target, batch_shape, n_classes, ignore_index, name)
        q_rows = None
        denominator = float(np.count_nonzero(targets != ignore_index))
    elif target.dtype.kind == "f":
        out_shape = _removed(x.shape, component_axis)
        if tuple(target.shape) != tuple(out_shape):
            raise ValueError(f"{name}: probability target has shape {target.shape}; "
                             f"log_mixture's result has shape {out_shape}")
        targets = None
        q = target if target.dtype == x.dtype else target.astype(x.dtype)
        q_rows = (rows_of(q, axis if axis < component_axis else axis - 1, threads)
                  if n_rows else None)
        denominator = float(n_rows)
    else:
        raise TypeError(f"{name}: target must hold integer class indices or float "
                        f"probabilities, not {target.dtype}")

    if reduction == "mean":
        # every row ignored: the loss is 0/0 = NaN, the gradients stay finite (0)
        grad_scale = 1.0 / denominator if denominator else 0.0
    else:
        grad_scale = 1.0
    losses = np.zeros(n_rows, dtype=np.float64)
    grad_logits = grad_prior = None
    if return_grad:
        grad_logits = np.empty(x.shape, dtype=result_dtype)
        grad_prior = np.empty(prior.shape, dtype=result_dtype)
    if n_rows:
        blocks = _blocks_of(x, axis, component_axis, n_rows)
        prior_rows = _prior_rows(prior, prior_axis, n_rows)
        grad_blocks = grad_prior_rows = None
        direct = direct_prior = False
        if return_grad:
            grad_blocks = (_block_view(grad_logits, axis, component_axis, n_rows)
                           if result_dtype == x.dtype else None)
            direct = grad_blocks is not None
            if not direct:
                grad_blocks = np.empty((n_rows, n_components, n_classes), dtype=x.dtype)
            # the fresh prior gradient is C-contiguous: its rows when K is its last axis
            direct_prior = result_dtype == x.dtype and prior_axis == grad_prior.ndim - 1
            grad_prior_rows = (grad_prior.reshape(n_rows, n_components) if direct_prior
                               else np.empty((n_rows, n_components), dtype=x.dtype))
        _kernels.core.mixture_cross_entropy_rows(
            blocks, prior_rows, targets, ignore_index, q_rows, activation == "sigsoftmax",
            losses, grad_blocks, grad_prior_rows, grad_scale,
            threads)
        if return_grad and not direct:
            destination = np.moveaxis(grad_logits, (component_axis, axis), (-2, -1))
            np.copyto(destination, grad_blocks.reshape(destination.shape), casting="unsafe")
        if return_grad and not direct_prior:
            destination = np.moveaxis(grad_prior, prior_axis, -1)
            np.copyto(destination, grad_prior_rows.reshape(destination.shape),
                      casting="unsafe")

    if reduction == "none":
        loss = losses.reshape(batch_shape).astype(result_dtype)
    else:
        total = _kernels.core.loss_total(losses)     # as cross_entropy sums its rows
        if reduction == "mean":
            total = total / denominator if denominator else np.nan
        loss = result_dtype.type(total)
    return (loss, (grad_logits, grad_prior)) if return_grad else loss


def _as_index(value, name):
    if isinstance(value, bool):
        raise TypeError(f"{name}: ignore_index must be an integer, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: ignore_index must be an integer, not "
                        f"{type(value).__name__}") from None
