"""NumPy references for fastsoft's gradients and cross-entropy: the gradient tests' oracle.

Written to read like the formulas, not to be fast, and independent of the package (it
does not import fastsoft).  Everything is computed in float64, or in the ``dtype=`` given
(the tests pass ``np.longdouble`` when the result under test is float64, so that the
reference's own rounding stays far below the tolerance).

1. Forward functions (needed by the finite differences and by the loss), with the
   ``where=`` mask: masked entries take no part and give -inf (logarithms) or 0.
2. Vector-Jacobian products, one line of formula each:

   * softmax:        y * (g - sum(g * y))
   * log_softmax:    g - exp(y) * sum(g)
   * logsumexp:      g * exp(x - logsumexp(x))
   * sigsoftmax:     (2 - sigmoid(x)) * y * (g - sum(g * y))
   * log_sigsoftmax: (2 - sigmoid(x)) * (g - exp(y) * sum(g))

   with sums over the unmasked entries of a row, and the special-value rules spelled out
   instead of left to IEEE arithmetic: masked entries get 0; a -inf logit gets the limit
   of the formula (0, g_i, 0, 0, 2 g_i); a row whose unmasked logits are all -inf gets 0
   from the three functions that see the logits.
3. Cross-entropy with PyTorch's semantics (``torch.nn.functional.cross_entropy``): the
   loss is taken from the log-probabilities; its gradient is the chain rule, the
   log-(sig)softmax VJP above applied to d loss / d log p.
4. ``finite_difference_gradient``: 4th-order central differences.
5. ``relayout``: the same values in another memory layout.
"""

import numpy as np

__all__ = [
    "log_sigmoid", "sigmoid", "sigsoftmax_logits",
    "log_softmax", "softmax", "logsumexp", "log_sigsoftmax", "sigsoftmax",
    "softmax_backward", "log_softmax_backward", "logsumexp_backward",
    "sigsoftmax_backward", "log_sigsoftmax_backward", "backward_error_scale",
    "cross_entropy", "cross_entropy_error_scales", "finite_difference_gradient",
    "LAYOUTS", "relayout",
]


def _work(a, dtype):
    return np.asarray(a).astype(np.float64 if dtype is None else dtype)


def _mask(where, shape):
    if where is None:
        return np.ones(shape, dtype=bool)
    return np.broadcast_to(np.asarray(where, dtype=bool), shape)


def _row_sum(a, axis):
    """Sum along `axis` (None: everything) keeping a length-1 axis, to broadcast back."""
    return np.sum(a, axis=axis, keepdims=True)


def _expand_reduced(r, axis, shape):
    """A logsumexp-shaped array (axis removed, kept with length 1, or a scalar for
    axis=None) broadcast back to the input's `shape`."""
    r = np.asarray(r)
    if axis is not None and r.ndim == len(shape) - 1:
        r = np.expand_dims(r, axis)
    return np.broadcast_to(r, shape)


# ---------------------------------------------------------------------------------------
# 1. Forward functions.


def log_sigmoid(z):
    """log sigmoid(z) = min(z, 0) - log1p(exp(-|z|)), finite for every finite z."""
    return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))


def sigmoid(z):
    return np.exp(log_sigmoid(z))


def sigsoftmax_logits(z):
    """w = 2z - softplus(z) = z + log sigmoid(z): sigsoftmax(z) = softmax(w)."""
    return z + log_sigmoid(z)


def _shifted_log_sum(x, mask, axis):
    """(x - m, log(sum exp(x - m))) over the unmasked entries, m the row max (0 for rows
    without a finite max).  Results are formed from x - m, never by subtracting a large
    logsumexp from x, so their error does not grow with |x|."""
    with np.errstate(divide="ignore", invalid="ignore"):
        row_max = np.max(np.where(mask, x, -np.inf), axis=axis, keepdims=True,
                         initial=-np.inf)
        shift = np.where(np.isfinite(row_max), row_max, 0)
        shifted = x - shift
        log_sum = np.log(_row_sum(np.where(mask, np.exp(shifted), 0), axis))
    return shifted, log_sum, shift


def logsumexp(x, axis=-1, where=None, keepdims=False, dtype=None):
    """m + log(sum exp(x - m)) over the unmasked entries (-inf for an empty row)."""
    x = _work(x, dtype)
    _, log_sum, shift = _shifted_log_sum(x, _mask(where, x.shape), axis)
    result = shift + log_sum
    if keepdims:
        return result
    return result.reshape(()) if axis is None else np.squeeze(result, axis)


def log_softmax(x, axis=-1, where=None, dtype=None):
    """x_i - logsumexp(x), as (x_i - m) - log(sum exp(x - m)); masked entries -inf."""
    x = _work(x, dtype)
    mask = _mask(where, x.shape)
    shifted, log_sum, _ = _shifted_log_sum(x, mask, axis)
    with np.errstate(invalid="ignore"):
        return np.where(mask, shifted - log_sum, -np.inf)


def softmax(x, axis=-1, where=None, dtype=None):
    return np.exp(log_softmax(x, axis, where, dtype))


def log_sigsoftmax(z, axis=-1, where=None, dtype=None):
    """w - logsumexp(w), w = 2z - softplus(z)."""
    z = _work(z, dtype)
    return log_softmax(sigsoftmax_logits(z), axis, where, z.dtype)


def sigsoftmax(z, axis=-1, where=None, dtype=None):
    return np.exp(log_sigsoftmax(z, axis, where, dtype))


# ---------------------------------------------------------------------------------------
# 2. Vector-Jacobian products.  g is grad_output, y the forward's output.


def _has_member(x, mask, axis):
    """Rows (kept as length 1) with an unmasked logit that is not -inf."""
    return np.any(mask & (x != -np.inf), axis=axis, keepdims=True)


def softmax_backward(g, y, axis=-1, where=None, dtype=None):
    """y * (g - sum(g * y))."""
    g, y = _work(g, dtype), _work(y, dtype)
    mask = _mask(where, y.shape)
    with np.errstate(invalid="ignore"):
        inner = _row_sum(np.where(mask, g * y, 0), axis)
        return np.where(mask, y * (g - inner), 0)


def log_softmax_backward(g, y, axis=-1, where=None, dtype=None):
    """g - exp(y) * sum(g)."""
    g, y = _work(g, dtype), _work(y, dtype)
    mask = _mask(where, y.shape)
    with np.errstate(invalid="ignore"):
        total = _row_sum(np.where(mask, g, 0), axis)
        return np.where(mask, g - np.exp(y) * total, 0)


def logsumexp_backward(g, x, result, axis=-1, where=None, dtype=None):
    """g * exp(x - logsumexp(x)); 0 at -inf logits (so all -inf rows give 0)."""
    x = _work(x, dtype)
    g = _expand_reduced(_work(g, dtype), axis, x.shape)
    result = _expand_reduced(_work(result, dtype), axis, x.shape)
    mask = _mask(where, x.shape)
    with np.errstate(invalid="ignore"):
        return np.where(mask & (x != -np.inf), g * np.exp(x - result), 0)


def sigsoftmax_backward(g, y, x, axis=-1, where=None, dtype=None):
    """(2 - sigmoid(x)) * y * (g - sum(g * y)); 0 for rows without a finite logit."""
    g, y, x = _work(g, dtype), _work(y, dtype), _work(x, dtype)
    mask = _mask(where, x.shape)
    with np.errstate(invalid="ignore"):
        inner = _row_sum(np.where(mask, g * y, 0), axis)
        grad = (2 - sigmoid(x)) * y * (g - inner)
    return np.where(mask & _has_member(x, mask, axis), grad, 0)


def log_sigsoftmax_backward(g, y, x, axis=-1, where=None, dtype=None):
    """(2 - sigmoid(x)) * (g - exp(y) * sum(g)); 0 for rows without a finite logit."""
    g, y, x = _work(g, dtype), _work(y, dtype), _work(x, dtype)
    mask = _mask(where, x.shape)
    with np.errstate(invalid="ignore"):
        total = _row_sum(np.where(mask, g, 0), axis)
        grad = (2 - sigmoid(x)) * (g - np.exp(y) * total)
    return np.where(mask & _has_member(x, mask, axis), grad, 0)


def backward_error_scale(name, g, y=None, x=None, result=None, axis=-1, where=None):
    """Size of the terms a backward formula adds, entry by entry (float64).

    A backward computed in a precision with unit roundoff u is within a small multiple
    of ``u * scale`` of the exact value of its formula: every rounding error is relative
    to one of these terms, and cancellation between them is what this bound allows for.
    For logsumexp the rounding of ``x - result`` costs ``u |x - result|`` relative.
    """
    g = np.abs(_work(g, None))
    with np.errstate(invalid="ignore", over="ignore"):
        if name == "logsumexp":
            x = _work(x, None)
            mask = _mask(where, x.shape)
            g = _expand_reduced(g, axis, x.shape)
            result = _expand_reduced(_work(result, None), axis, x.shape)
            gap = np.where(x == -np.inf, 0, np.abs(x - result))
            scale = g * np.exp(np.where(x == -np.inf, -np.inf, x - result)) * (2 + gap)
            return np.where(mask, scale, 0)
        y = _work(y, None)
        mask = _mask(where, y.shape)
        if name in ("softmax", "sigsoftmax"):
            p = np.abs(y)
            scale = p * (g + _row_sum(np.where(mask, g * p, 0), axis))
        else:
            scale = g + np.exp(y) * _row_sum(np.where(mask, g, 0), axis)
        if name.startswith(("sig", "log_sig")):
            scale = scale * (2 - sigmoid(_work(x, None)))
        # NaN outputs (all--inf rows) have no scale: the value is checked exactly
        return np.where(mask & ~np.isnan(scale), scale, 0)


# ---------------------------------------------------------------------------------------
# 3. Cross-entropy, PyTorch's semantics.


def cross_entropy(logits, target, axis=-1, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, activation="softmax",
                  grad_output=None, dtype=None):
    """(loss, d loss / d logits * grad_output) of torch.nn.functional.cross_entropy.

    Index targets, per position n (ignored positions contribute 0):

        loss_n = (1 - eps) * (-w[t_n] log p[n, t_n]) + (eps / C) * (-sum_c w_c log p[n, c])

    and "mean" divides the sum by sum_n w[t_n] over the positions not ignored.
    Probability targets q:  loss_n = -sum_c w_c q'_c log p[n, c],  q' = (1 - eps) q + eps/C,
    and "mean" divides by the number of positions.  A zero weight (w_c q'_c, w_c, or
    (1 - eps) w[t_n]) times log p = -inf counts as 0 (PyTorch gives NaN there).
    log p is log_softmax(z) or log_sigsoftmax(z) along `axis`.
    """
    parts = _cross_entropy_parts(logits, target, axis, weight, ignore_index, reduction,
                                 label_smoothing, activation, grad_output, dtype)
    return parts["loss"], parts["grad"]


def cross_entropy_error_scales(logits, target, axis=-1, weight=None, ignore_index=-100,
                               reduction="mean", label_smoothing=0.0,
                               activation="softmax", grad_output=None):
    """(loss scale, gradient scale): size of the terms the loss and each gradient entry
    are made of (float64), for tolerances.

    log p_c is computed from z_c - max z, so it carries an error of order
    u (1 + |z_c - max z|) (w for sigsoftmax); a gradient entry (2 - sigma) (A p_c - B_c)
    loses u (A p_c + B_c) to cancellation.
    """
    parts = _cross_entropy_parts(logits, target, axis, weight, ignore_index, reduction,
                                 label_smoothing, activation, grad_output, np.float64)
    return parts["loss_scale"], parts["grad_scale"]


def _cross_entropy_parts(logits, target, axis, weight, ignore_index, reduction,
                         label_smoothing, activation, grad_output, dtype):
    z = np.moveaxis(_work(logits, dtype), axis, -1)
    work = z.dtype
    n_classes = z.shape[-1]
    w = np.ones(n_classes, dtype=work) if weight is None else _work(weight, work)
    eps = label_smoothing
    if activation == "softmax":
        logits_of_softmax = z
    elif activation == "sigsoftmax":
        logits_of_softmax = sigsoftmax_logits(z)
    else:
        raise ValueError(activation)
    log_p = log_softmax(logits_of_softmax, axis=-1, dtype=work)

    target = np.asarray(target)
    if target.dtype.kind in "iu":
        kept = target != ignore_index
        label = np.where(kept, target, 0)          # never index w with ignore_index
        onehot = np.arange(n_classes) == label[..., None]
        label_weight = np.where(kept, w[label], 0)
        picked = np.take_along_axis(log_p, label[..., None], axis=-1)[..., 0]
        with np.errstate(invalid="ignore"):
            # a zero weight (class weight, or 1 - eps) at a -inf log p adds 0, as with
            # probability targets
            nll = np.where(kept & ((1 - eps) * label_weight != 0),
                           -(1 - eps) * label_weight * picked, 0)
            smooth = np.where(kept, -np.sum(np.where(w == 0, 0, w * log_p), axis=-1), 0)
        loss = nll + (eps / n_classes) * smooth if eps else nll
        # d loss_n / d log p[n, c] = -coefficient[n, c]
        coefficient = ((1 - eps) * label_weight[..., None] * onehot
                       + kept[..., None] * (eps / n_classes) * w)
        denominator = np.sum(label_weight)
    else:
        q = np.moveaxis(_work(target, work), axis, -1)
        coefficient = w * ((1 - eps) * q + eps / n_classes)
        with np.errstate(invalid="ignore"):
            terms = np.where(coefficient == 0, 0, coefficient * log_p)
        loss = -np.sum(terms, axis=-1)
        denominator = np.asarray(loss.size, dtype=work)

    # loss, and the factor each position's d loss_n / d logits is multiplied by
    go = _work(1.0 if grad_output is None else grad_output, work)
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduction == "none":
            total, row_factor = loss, go * np.ones(loss.shape, dtype=work)
        elif reduction == "sum":
            total, row_factor = np.sum(loss), np.full(loss.shape, go)
        elif reduction == "mean":
            total = np.sum(loss) / denominator
            # with every row ignored the loss is 0/0 = NaN, its gradient 0
            row_factor = np.full(loss.shape, go / denominator if denominator else 0)
        else:
            raise ValueError(reduction)

    grad_log_p = -coefficient * row_factor[..., None]
    if activation == "softmax":
        grad = log_softmax_backward(grad_log_p, log_p, axis=-1, dtype=work)
    else:
        grad = log_sigsoftmax_backward(grad_log_p, log_p, z, axis=-1, dtype=work)

    # error scales (see cross_entropy_error_scales)
    with np.errstate(invalid="ignore"):
        gaps = np.abs(logits_of_softmax - np.max(logits_of_softmax, axis=-1, keepdims=True))
        gaps = np.where(np.isfinite(gaps), gaps, 0)
        row_loss_scale = np.sum(coefficient * (1 + gaps), axis=-1)
        grad_scale = np.abs(row_factor[..., None]) * (
            np.sum(coefficient, axis=-1, keepdims=True) * np.exp(log_p) + coefficient)
        if activation == "sigsoftmax":
            grad_scale = grad_scale * (2 - sigmoid(z))
        if reduction == "none":
            loss_scale = row_loss_scale
        elif reduction == "sum" or not denominator:
            loss_scale = np.sum(row_loss_scale)
        else:
            loss_scale = np.sum(row_loss_scale) / denominator
    return {"loss": total, "grad": np.moveaxis(grad, -1, axis), "loss_scale": loss_scale,
            "grad_scale": np.moveaxis(grad_scale, -1, axis)}


# ---------------------------------------------------------------------------------------
# 4. Finite differences.


def finite_difference_gradient(func, x, step):
    """Gradient of the scalar func at x, coordinate by coordinate, to O(step**4):

        f'(x) = (8 (f(x + h) - f(x - h)) - (f(x + 2h) - f(x - 2h))) / (12 h)

    Coordinates that are not finite get 0 (func does not vary with them).
    """
    x = np.array(x)
    grad = np.zeros(x.shape, dtype=x.dtype)
    for index in np.ndindex(x.shape):
        if not np.isfinite(x[index]):
            continue
        values = []
        for k in (-2, -1, 1, 2):
            shifted = x.copy()
            shifted[index] += k * step
            values.append(func(shifted))
        minus2, minus1, plus1, plus2 = values
        # differences of neighbours first: exact for nearby values, exactly 0 for a
        # coordinate func does not depend on
        grad[index] = (8 * (plus1 - minus1) - (plus2 - minus2)) / (12 * step)
    return grad


# ---------------------------------------------------------------------------------------
# 5. Inputs in other memory layouts (for the layout-invariance tests).

LAYOUTS = ("C", "F", "transposed", "stepped", "negative", "reversed_last",
           "stepped_reversed", "byteswapped", "unaligned")


def relayout(a, layout):
    """`a`'s values (same shape), in the memory layout `layout` (one of LAYOUTS)."""
    a = np.asarray(a)
    if layout == "C":
        return np.ascontiguousarray(a)
    if a.ndim == 0 and layout in ("F", "transposed"):
        return a        # np.asfortranarray makes a 0-d array 1-d
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout == "byteswapped":
        return a.astype(a.dtype.newbyteorder())
    if layout == "unaligned":   # contiguous, not aligned to the itemsize
        raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
        view = raw[1:].view(a.dtype).reshape(a.shape)
        view[...] = a
        return view
    if a.ndim == 0:
        return a
    if layout == "negative":    # negative strides on every axis
        return np.flip(np.ascontiguousarray(np.flip(a)))
    if layout == "reversed_last":
        return np.flip(np.ascontiguousarray(np.flip(a, -1)), -1)
    big = np.zeros(tuple(2 * n + 1 for n in a.shape), dtype=a.dtype)
    if layout == "stepped":     # every axis stepped by 2 inside a larger buffer
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
    elif layout == "stepped_reversed":
        view = big[tuple(slice(None, 0, -2) for _ in a.shape)]
    else:
        raise ValueError(layout)
    view[...] = a
    return view
