"""Pure NumPy reference implementation of fastsoft: the test suite's oracle.

Nothing in the package calls this module; the tests compare every compiled
function against it.  It is written to read like the specification rather than
to be fast:

1. The input is converted to float64 (or to the ``dtype=`` given, e.g.
   ``np.longdouble`` for accuracy tests), the reduced axis is moved last
   (``axis=None`` makes the whole array one row) and ``where`` is broadcast to
   the input's shape.
2. Every row is classified *before* any arithmetic, so that the special-value
   rules below are implemented explicitly instead of emerging from IEEE
   arithmetic:

   * entries with ``where`` False take no part in the max or the sum and give
     exactly 0 (probabilities) or -inf (logarithms);
   * a row with no unmasked entry gives 0 / -inf everywhere and a logsumexp of
     -inf;
   * a row whose unmasked entries are all -inf gives NaN at its unmasked
     entries and a logsumexp of -inf;
   * a row with a +inf unmasked entry gives NaN at its unmasked entries and a
     logsumexp of +inf;
   * a row with a NaN unmasked entry gives NaN at its unmasked entries and a
     logsumexp of NaN (NaN wins over +inf).

3. Regular rows use the max-shift: with ``m`` the row max,
   ``logsumexp = m + log1p(sum_{j != argmax} exp(x_j - m))`` (the max term,
   exactly 1, is taken out of the sum so that tiny sums are not lost),
   ``log_softmax = x - logsumexp`` evaluated as ``(x - m) - log1p(...)`` and
   ``softmax = exp(x - m) / sum_j exp(x_j - m)``.
4. sigsoftmax (Kanai et al., 2018) is softmax of ``w = z + log(sigmoid(z))``
   (``= 2z - softplus(z)``), with ``log(sigmoid(z)) = min(z, 0) -
   log1p(exp(-|z|))``, which is finite for every finite ``z``.  ``w`` is an
   increasing function of ``z``, equal to -inf, +inf or NaN exactly when ``z``
   is, so the rules above carry over unchanged.  Each row's ``w`` is formed
   already shifted by its max, ``(z - z_max) + (log sigmoid(z) - log sigmoid(z_max))``,
   so ``2z`` is never formed and nothing overflows for ``z`` near -max.
"""

import numpy as np
from numpy.lib.array_utils import normalize_axis_index

__all__ = ["softmax", "log_softmax", "logsumexp", "sigsoftmax", "log_sigsoftmax"]


def softmax(x, axis=-1, where=None, dtype=None):
    """softmax_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j."""
    rows, mask, restore = _as_rows(x, axis, where, dtype)
    return restore(_softmax_rows(rows, mask))


def log_softmax(x, axis=-1, where=None, dtype=None):
    """log_softmax_i = x_i - logsumexp(x)."""
    rows, mask, restore = _as_rows(x, axis, where, dtype)
    return restore(_log_softmax_rows(rows, mask))


def logsumexp(x, axis=-1, where=None, keepdims=False, dtype=None):
    """logsumexp(x) = m + log(sum_j exp(x_j - m)), m = max_j x_j."""
    rows, mask, _ = _as_rows(x, axis, where, dtype)
    result = _logsumexp_rows(rows, mask)
    shape = np.shape(x)
    if axis is None:
        return result.reshape((1,) * len(shape) if keepdims else ())
    axis = normalize_axis_index(axis, len(shape))
    return np.expand_dims(result, axis) if keepdims else result


def sigsoftmax(x, axis=-1, where=None, dtype=None):
    """sigsoftmax_i = exp(z_i) sigmoid(z_i) / sum_j exp(z_j) sigmoid(z_j) = softmax(w)_i."""
    rows, mask, restore = _as_rows(x, axis, where, dtype)
    return restore(_softmax_rows(_sigsoftmax_logits(rows, mask), mask))


def log_sigsoftmax(x, axis=-1, where=None, dtype=None):
    """log_sigsoftmax_i = w_i - logsumexp(w), w = z + log(sigmoid(z))."""
    rows, mask, restore = _as_rows(x, axis, where, dtype)
    return restore(_log_softmax_rows(_sigsoftmax_logits(rows, mask), mask))


def log_sigmoid(z):
    """log(sigmoid(z)) = min(z, 0) - log1p(exp(-|z|)): no overflow for any z."""
    z = np.asarray(z)
    return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))


# ---------------------------------------------------------------------------
# Row machinery.  ``rows`` has the reduced axis last; ``mask`` (same shape) is
# True where an entry takes part.


def _as_rows(x, axis, where, dtype):
    """Return (rows, mask, restore): x in the working dtype with ``axis`` last."""
    x = np.asarray(x).astype(np.float64 if dtype is None else dtype)
    shape = x.shape
    if where is None:
        mask = np.ones(shape, dtype=bool)
    else:
        mask = np.broadcast_to(np.asarray(where, dtype=bool), shape)
    if axis is None:
        return x.reshape(1, -1), mask.reshape(1, -1), lambda r: r.reshape(shape)
    axis = normalize_axis_index(axis, len(shape))
    return (np.moveaxis(x, axis, -1), np.moveaxis(mask, axis, -1),
            lambda r: np.moveaxis(r, -1, axis))


def _sigsoftmax_logits(z, mask):
    """w = z + log(sigmoid(z)), the logits whose softmax is sigsoftmax(z), less w_max.

    Softmax does not change when a row is shifted, and the shift keeps w finite where
    2z would overflow (z < -max/2): w increases with z, so the row's largest w is at its
    largest z, and w_i - w_max = (z_i - z_max) + (log sigmoid(z_i) - log sigmoid(z_max)).
    Rows with a NaN or an infinity keep their unshifted w: only its special values
    matter there.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        w = z + log_sigmoid(z)
        x, kinds = _classify(z, mask)
        regular = kinds["regular"][..., None]
        z_max = np.max(np.where(regular, x, 0), axis=-1, keepdims=True, initial=-np.inf)
        shifted = (z - z_max) + (log_sigmoid(z) - log_sigmoid(z_max))
    return np.where(regular, shifted, w)


def _classify(rows, mask):
    """Split rows by their unmasked entries; returns (x, kinds) with x masked to -inf."""
    x = np.where(mask, rows, -np.inf)
    has_nan = np.isnan(x).any(axis=-1)
    has_pos_inf = (x == np.inf).any(axis=-1)
    no_entry = ~mask.any(axis=-1)
    all_neg_inf = (x == -np.inf).all(axis=-1) & ~no_entry
    kinds = {
        "nan": has_nan,
        "pos_inf": has_pos_inf & ~has_nan,
        "no_entry": no_entry,
        "all_neg_inf": all_neg_inf,
    }
    kinds["regular"] = ~(has_nan | has_pos_inf | no_entry | all_neg_inf)
    return x, kinds


def _shifted(x, regular):
    """(x - m, m) with m the row max of regular rows (0 for the others)."""
    row_max = np.max(np.where(regular[..., None], x, 0), axis=-1, initial=-np.inf)
    return x - row_max[..., None], row_max


def _log_normalizer(shifted, regular):
    """log(sum_j exp(x_j - m)) of regular rows, as log1p of the non-max terms."""
    terms = np.exp(np.where(regular[..., None], shifted, -np.inf))
    if terms.shape[-1]:
        # Take one max term (exactly exp(0) = 1) out of the sum: log1p keeps
        # sums far below 1 that 1 + s would round away.
        argmax = np.argmax(np.where(regular[..., None], shifted, -np.inf), axis=-1)
        np.put_along_axis(terms, argmax[..., None], 0, axis=-1)
    return np.log1p(terms.sum(axis=-1))


def _logsumexp_rows(rows, mask):
    x, kinds = _classify(rows, mask)
    shifted, row_max = _shifted(x, kinds["regular"])
    result = row_max + _log_normalizer(shifted, kinds["regular"])
    result = np.where(kinds["no_entry"] | kinds["all_neg_inf"], -np.inf, result)
    result = np.where(kinds["pos_inf"], np.inf, result)
    return np.where(kinds["nan"], np.nan, result)


def _log_softmax_rows(rows, mask):
    # x_i - logsumexp(x) evaluated as (x_i - m) - log(sum_j exp(x_j - m)):
    # subtracting the rounded logsumexp from x_i would lose log(n) next to a
    # large m (x near 1e30 gives 0 instead of -log 2 for a tie).
    x, kinds = _classify(rows, mask)
    regular = kinds["regular"]
    shifted, _ = _shifted(x, regular)
    result = shifted - _log_normalizer(shifted, regular)[..., None]
    result = np.where(regular[..., None], result, np.nan)
    result = np.where(kinds["no_entry"][..., None], -np.inf, result)
    return np.where(mask, result, -np.inf)


def _softmax_rows(rows, mask):
    x, kinds = _classify(rows, mask)
    regular = kinds["regular"]
    shifted, _ = _shifted(x, regular)
    terms = np.exp(np.where(regular[..., None], shifted, -np.inf))
    total = terms.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):  # 0/0 in non-regular rows, overwritten
        result = terms / total
    result = np.where(regular[..., None], result, np.nan)
    result = np.where(kinds["no_entry"][..., None], 0.0, result)
    return np.where(mask, result, 0.0)
