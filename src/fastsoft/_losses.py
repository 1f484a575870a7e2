"""cross_entropy: the fused loss (and gradient) over softmax or sigsoftmax."""

import functools
import math

import numpy as np

from . import _kernels
from ._kernels._buffers import empty as empty_result
from ._backend import dispatch
from ._config import resolve_threads
from ._layout import result_rows, rows_of, write_back
from ._validation import as_float_array, check_loss_options, check_out



def _index_targets(target, batch_shape, n_classes, ignore_index, weight, name):
    """(validated class indices as a contiguous int64 vector, one per row; the "mean"
    denominator: the summed weight of the targets that are not ignored)."""
    if target.shape != batch_shape:
        raise ValueError(f"{name}: class-index target has shape {target.shape}; the logits "
                         f"without the class axis have shape {batch_shape}")
    if target.dtype == np.uint64 and target.size and target.max() > np.iinfo(np.int64).max:
        bad = int(np.argmax(target > np.iinfo(np.int64).max))
    else:
        if not (target.dtype == np.int64 and target.flags.c_contiguous and target.flags.aligned):
            target = np.require(target, np.int64, ["C", "A"])
        bad, denominator = _kernels.core.index_target_check(
            target, n_classes, ignore_index, weight)
    if bad >= 0:
        position = tuple(int(i) for i in np.unravel_index(bad, batch_shape))
        raise IndexError(f"{name}: target {target[position]} at position {position} is "
                         f"outside [0, {n_classes}) and is not ignore_index ({ignore_index})")
    return target.reshape(-1), denominator


@functools.lru_cache(maxsize=16)
def _ones(n_classes):
    """Read-only unit class weights, shared between calls."""
    ones = np.ones(n_classes)
    ones.flags.writeable = False
    return ones


def _class_weights(weight, n_classes, name):
    if weight is None:
        # the kernel always reads a weight per class: ones keep its loads unconditional
        return _ones(n_classes)
    weight = np.asarray(weight)
    if weight.dtype.kind not in "biuf" or weight.dtype.itemsize > 8:
        raise TypeError(f"{name}: weight must be a real array, not {weight.dtype}")
    if weight.shape != (n_classes,):
        raise ValueError(f"{name}: weight has shape {weight.shape}, expected ({n_classes},)")
    return np.require(weight, np.float64, ["C", "A"])


def _grad_scales(grad_output, reduction, loss_shape, denominator, name):
    """(per-row gradient factors or None, the common factor) for the kernel."""
    if reduction == "none":
        g = np.ones(loss_shape) if grad_output is None else np.asarray(grad_output, np.float64)
        try:
            g = np.broadcast_to(g, loss_shape)
        except ValueError:
            raise ValueError(f"{name}: grad_output of shape {g.shape} does not match the "
                             f"loss's shape {loss_shape}") from None
        return np.require(g, np.float64, ["C", "A"]).reshape(-1), 0.0
    g = 1.0
    if grad_output is not None:
        g = np.asarray(grad_output, np.float64)
        if g.ndim != 0:
            raise ValueError(f"{name}: grad_output must be a scalar for reduction={reduction!r}")
        g = float(g)
    if reduction == "sum":
        return None, g
    # mean: when every row is ignored the denominator is 0; those rows' gradients are 0
    # whatever the factor, so keep it finite
    return None, (g / denominator if denominator != 0 else 0.0)


@dispatch(small_call=_kernels.core.small_call_entry)
def cross_entropy(logits, target, *, axis=-1, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, activation="softmax",
                  return_grad=False, grad_output=None, grad_out=None, num_threads=None):
    r"""Cross-entropy of logits against targets, fused with its gradient.

    For a row of logits :math:`x` (classes along `axis`), :math:`\log p` is
    ``log_softmax(x)`` (or ``log_sigsoftmax(x)`` with ``activation="sigsoftmax"``) and the
    row's loss is :math:`L = -\sum_j B_j \log p_j` with the target weights

    .. math::

        B_j = (1-\varepsilon)\, w_t\, [j = t] + \tfrac{\varepsilon}{C} w_j
        \quad\text{(class index } t\text{)}, \qquad
        B_j = w_j \bigl((1-\varepsilon) q_j + \tfrac{\varepsilon}{C}\bigr)
        \quad\text{(class probabilities } q\text{)},

    :math:`\varepsilon` = `label_smoothing`, :math:`w` = `weight` (all 1 by default) and
    :math:`C` classes: exactly ``torch.nn.functional.cross_entropy``.  With
    :math:`A = \sum_j B_j`, the gradient is :math:`\partial L/\partial x_j = A p_j - B_j`
    for softmax (:math:`p - \text{onehot}` in the simplest case), and
    :math:`(2 - \sigma(x_j))(A f_j - B_j)` for sigsoftmax (Kanai et al., Theorem 5).
    Both come from one visit of each row: max, one pass for the loss and the
    exponentials, one pass writing the gradient, with no temporary the size of the
    logits.  docs/gradients.md derives the formulas.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores, classes along `axis`.  dtype rules as in `softmax`.
    target : array_like
        Integer class indices (the logits' shape without `axis`), or floating-point class
        probabilities (the logits' shape; they are not checked to sum to 1).
    axis : int, optional
        The class axis (default: the last).  PyTorch's layout ``(N, C, d1, ...)`` is
        ``axis=1``.
    weight : array_like, optional
        Per-class weights, shape ``(C,)``.
    ignore_index : int, optional
        Class-index targets equal to this give 0 loss and 0 gradient and are left out of
        the mean (default -100).  Not used with probability targets.
    reduction : {"mean", "sum", "none"}, optional
        "mean" divides the summed loss by the summed weight :math:`w_{t_n}` of the
        non-ignored rows (by the number of rows for probability targets); all rows
        ignored gives NaN, as in PyTorch.  "none" returns the per-row losses.
    label_smoothing : float, optional
        :math:`\varepsilon \in [0, 1]`.
    activation : {"softmax", "sigsoftmax"}, optional
    return_grad : bool, optional
        Also return the gradient with respect to `logits`.
    grad_output : float or array_like, optional
        Upstream gradient the returned gradient is multiplied by: a scalar for "mean" and
        "sum", an array of the loss's shape for "none" (default 1).
    grad_out : ndarray, optional
        Buffer of the logits' shape and result dtype that receives the gradient.  It may
        be `logits` itself: the gradient then overwrites the logits, and the call needs
        no memory the size of the logits (when the class axis is the last one and rows
        are contiguous; otherwise a temporary is used).
    num_threads : int, optional
        Threads for this call (default: `get_num_threads`).

    Returns
    -------
    loss : NumPy scalar or ndarray
        The reduced loss (a scalar of the logits' result dtype), or the per-row losses
        for ``reduction="none"``.
    grad : ndarray
        Only with ``return_grad=True``: :math:`\partial\,\text{loss}/\partial\,\text{logits}`
        times `grad_output` (it is `grad_out` when given).

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not `ignore_index` (the message names
        the value and its position); raised before anything is computed.
    ValueError
        Bad `reduction`, `activation` or `label_smoothing`; `weight`, `target`,
        `grad_output` or `grad_out` of the wrong shape; `grad_output`/`grad_out` without
        ``return_grad=True``.
    TypeError
        Unsupported dtypes; `grad_out` of the wrong dtype.
    numpy.exceptions.AxisError
        `axis` out of range.

    Notes
    -----
    Losses are accumulated in double and cast to the result dtype at the end.  A zero
    target weight times a ``-inf`` log-probability counts as 0: a zero probability, a
    zero class weight under label smoothing, or the target's own term at
    ``label_smoothing=1`` (PyTorch gives NaN there).  A row with a NaN or ``+inf`` logit
    has NaN loss and gradient.

    Dask: with Dask logits (or any Dask argument; NumPy ones are wrapped) the loss is
    lazy -- a 0-d Dask array for "mean" and "sum" -- and the gradient a lazy array
    chunked like the logits; compute them together so the logits are read once.  The
    class axis may be split over chunks.  A bad label raises IndexError when computed;
    `grad_out` is a TypeError; `num_threads` is per block call, default 1
    (docs/scaling.md).

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    >>> loss, grad = fs.cross_entropy(logits, np.array([0, 2]), return_grad=True)
    >>> float(loss)
    0.16811712653905897
    >>> grad  # (softmax(logits) - onehot) / 2
    array([[-0.10720148,  0.0876452 ,  0.01955629],
           [ 0.02263925,  0.02263925, -0.0452785 ]])
    >>> float(fs.cross_entropy(logits, np.array([0, -100])))  # second row ignored
    0.24131129665715703
    """
    name = "cross_entropy"
    x, result_dtype = as_float_array(logits, name)
    axis, smoothing, ignore_index = check_loss_options(
        name, x.shape, axis, reduction, activation, label_smoothing, ignore_index,
        return_grad, grad_output, grad_out)
    n_classes = x.shape[axis]
    batch_shape = x.shape[:axis] + x.shape[axis + 1:]
    target = np.asarray(target)
    weight = _class_weights(weight, n_classes, name)
    if target.dtype.kind in "iu":
        targets, denominator = _index_targets(
            target, batch_shape, n_classes, ignore_index,
            None if weight is _ones(n_classes) else weight, name)
        probabilities = None
    elif target.dtype.kind == "f":
        if target.shape != x.shape:
            raise ValueError(f"{name}: probability target has shape {target.shape}, the "
                             f"logits {x.shape}")
        targets = None
        probabilities = target if target.dtype == x.dtype else target.astype(x.dtype)
    else:
        raise TypeError(f"{name}: target must hold integer class indices or float "
                        f"probabilities, not {target.dtype}")
    if targets is None:
        denominator = float(math.prod(batch_shape))
    check_out(grad_out, x.shape, result_dtype, name, what="grad_out")
    grad_scales, grad_scale = (_grad_scales(grad_output, reduction, batch_shape, denominator, name)
                               if return_grad else (None, 0.0))
    if grad_out is not None:
        # the kernel reads a row's label, the class weights and the row's factor after
        # earlier rows' gradients are written: copies of any that live in grad_out's
        # memory (an overwritten label would index out of bounds)
        if targets is not None and np.may_share_memory(grad_out, targets):
            targets = targets.copy()
        if np.may_share_memory(grad_out, weight):
            weight = weight.copy()
        if grad_scales is not None and np.may_share_memory(grad_out, grad_scales):
            grad_scales = grad_scales.copy()

    n_rows = math.prod(batch_shape)
    losses = np.zeros(n_rows, dtype=np.float64)
    grad_target = None
    if return_grad:
        grad_target = empty_result(x.shape, result_dtype) if grad_out is None else grad_out
    if x.size:
        threads = resolve_threads(num_threads, x.size)
        x_rows = rows_of(x, axis, threads)
        q_rows = None if probabilities is None else rows_of(probabilities, axis, threads)
        grad_rows = direct = None
        if grad_target is not None:
            sources = (x_rows,) if q_rows is None else (x_rows, q_rows)
            grad_rows, direct = result_rows(grad_target, axis, x.dtype, grad_out is None, *sources)
        _kernels.core.cross_entropy_rows(
            x_rows, targets, ignore_index, q_rows, weight, smoothing,
            activation == "sigsoftmax", losses, grad_rows, grad_scales, grad_scale, threads)
        if grad_rows is not None and not direct:
            write_back(grad_target, axis, grad_rows, threads)
    elif grad_target is not None:
        grad_target[...] = 0

    if reduction == "none":
        loss = losses.reshape(batch_shape).astype(result_dtype)
    else:
        # Kahan lanes; one row's loss as it is
        total = _kernels.core.loss_total(losses)
        if reduction == "mean":
            total = total / denominator if denominator != 0 else np.nan
        loss = result_dtype.type(total)
    return (loss, grad_target) if return_grad else loss
