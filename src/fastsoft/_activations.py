"""softmax, log_softmax, logsumexp, sigsoftmax, log_sigsoftmax: validate, lay out, run."""

import math

import numpy as np

from . import _kernels
from ._kernels._buffers import empty as empty_result
from ._backend import dispatch
from ._config import resolve_threads
from ._layout import mask_rows, result_rows, rows_of, rows_shape, write_back
from ._validation import as_float_array, check_out, check_where, normalize_axis

_COMMON_PARAMETERS = """\
x : array_like
    Input values.  float32 and float64 are computed in their own precision; float16 is
    computed in float32 and returned as float16; bool and integer input is computed and
    returned in float64.  Complex, longdouble, object and string input raise TypeError.
    A CuPy array runs on its GPU (docs/gpu.md); a Dask array gives a lazy Dask array
    chunked like it, with the axis split over chunks or not (docs/scaling.md).
axis : int or None, optional
    Axis along which the rows are taken (default: the last).  Negative values count from
    the end.  ``None`` treats the whole array as a single row.
out : ndarray, optional
    Array of the result's shape and dtype to write into (it may be `x` itself, or any
    strided view); it is returned.  Not supported for Dask arrays (TypeError)."""

_WHERE_THREADS = """\
where : array_like of bool, optional
    Mask broadcastable to `x`: only entries where it is True take part in the max and the
    sum.  {masked}
num_threads : int, optional
    Threads for this call (default: `get_num_threads`; for Dask arrays, threads of each
    block's call, default 1).  Small inputs run on one thread; the result never depends
    on the thread count."""

_RAISES = """\
Raises
------
TypeError
    Unsupported dtype of `x`; `out` of the wrong dtype or not an ndarray; a non-boolean
    `where`; a non-integer `axis` or `num_threads`.
ValueError
    `out` of the wrong shape; `where` not broadcastable to `x`; `num_threads` < 1.
numpy.exceptions.AxisError
    `axis` out of range."""


def _document(masked_note):
    """Fill the shared parameter/raises sections into a public function's docstring."""
    def decorate(func):
        sections = {
            "{common}": _COMMON_PARAMETERS,
            "{where_threads}": _WHERE_THREADS.replace("{masked}", masked_note),
            "{raises}": _RAISES,
        }
        for key, text in sections.items():
            func.__doc__ = func.__doc__.replace(key, text.replace("\n", "\n" + " " * 4))
        return func
    return decorate


# ops of the column kernel (softmax along a non-last axis of C-ordered data, no copy)
_COLUMN_OPS = {"softmax": 0, "log_softmax": 1, "logsumexp": 2}


def _column_layout(name, x, axis, target, mask):
    """(x, target) as (outer, n, inner) views for the column kernel, or None.

    Taken for softmax, log_softmax and logsumexp along a non-last axis of a C-contiguous
    array without a mask, writing a C-contiguous target of the work dtype that is either
    x itself or separate from it: a transposed copy (PyTorch's trap with dim=0) would
    cost as much as the computation.
    """
    if (mask is not None or axis is None or axis == x.ndim - 1 or name not in _COLUMN_OPS
            or not (x.flags.c_contiguous and x.flags.aligned and x.dtype.isnative)
            or target.dtype != x.dtype or not target.flags.c_contiguous
            or not target.flags.aligned or x.shape[axis] == 0):
        return None
    if target is not x and np.may_share_memory(target, x):
        return None
    outer = math.prod(x.shape[:axis])
    inner = math.prod(x.shape[axis + 1:])
    x3 = x.reshape(outer, x.shape[axis], inner)
    if name == "logsumexp":
        return x3, target.reshape(outer, inner)
    return x3, target.reshape(x3.shape)


def _transform(name, kernel, log_output, x, axis, out, where, num_threads):
    """Shared driver of the four shape-preserving transforms."""
    x, result_dtype = as_float_array(x, name)
    axis = normalize_axis(axis, x.ndim, name)
    out = check_out(out, x.shape, result_dtype, name)
    mask = check_where(where, x.shape, name)
    target = empty_result(x.shape, result_dtype) if out is None else out
    if x.size == 0:
        return target
    columns = _column_layout(name, x, axis, target, mask)
    if columns is not None:
        _kernels.core.columns_forward(*columns, _COLUMN_OPS[name],
                                      resolve_threads(num_threads, x.size))
        return target
    threads = resolve_threads(num_threads, x.size)
    x_rows = rows_of(x, axis, threads)
    rows, direct = result_rows(target, axis, x.dtype, out is None, x_rows)
    kernel(x_rows, rows, None if mask is None else mask_rows(mask, axis, rows), log_output,
           threads)
    if not direct:
        write_back(target, axis, rows, threads)
    return target


@dispatch(small_call=_kernels.core.small_call_entry)
@_document("Masked-out entries of the result are exactly 0; a fully masked row is all 0.")
def softmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    r"""Softmax along an axis: exponentials normalised to sum to 1.

    .. math::

        \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}},
        \qquad m = \max_j x_j

    Subtracting the row maximum first keeps every exponential in [0, 1], so nothing
    overflows; the sum is accumulated in double precision.

    Parameters
    ----------
    {common}
    {where_threads}

    Returns
    -------
    ndarray
        Probabilities of `x`'s shape (or `out`), summing to 1 along `axis`.

    {raises}

    See Also
    --------
    log_softmax, sigsoftmax, scipy.special.softmax

    Notes
    -----
    Special values, row by row (a row never affects another): a NaN makes its row NaN;
    a ``+inf`` makes its row NaN; a row of only ``-inf`` is NaN (as in SciPy and
    PyTorch) -- use `where` to mask entries instead, which gives exact zeros and never
    NaN, even for a fully masked row.  ``-inf`` among finite values gives 0.  A
    zero-length `axis` gives an empty result.

    Accuracy: each probability not below the dtype's smallest normal is within
    ``4 u (1 + |x_i - m|)`` relative of the exact value (u = 2**-24 for float32, 2**-53
    for float64); measured figures are in docs/numerics.md.

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> fs.softmax(np.array([1.0, 2.0, 3.0]))
    array([0.09003057, 0.24472847, 0.66524096])
    >>> fs.softmax(np.array([[1.0, 1.0], [0.0, 1000.0]], dtype=np.float32))
    array([[0.5, 0.5],
           [0. , 1. ]], dtype=float32)
    >>> fs.softmax([1.0, 2.0, 3.0], where=np.array([True, True, False]))
    array([0.26894142, 0.73105858, 0.        ])
    """
    return _transform("softmax", _kernels.core.softmax_rows, False,
                      x, axis, out, where, num_threads)


@dispatch(small_call=_kernels.core.small_call_entry)
@_document("Masked-out entries of the result are exactly -inf; a fully masked row is all -inf.")
def log_softmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    r"""Logarithm of the softmax along an axis, computed without forming the softmax.

    .. math::

        \log \operatorname{softmax}(x)_i = (x_i - m) - \log\Bigl(1 + \sum_{j \ne k}
        e^{x_j - m}\Bigr), \qquad m = x_k = \max_j x_j

    The maximum term (exactly 1) is taken out of the sum and the logarithm is taken with
    ``log1p`` (Blanchard, Higham & Higham 2021), so the largest entry of
    ``log_softmax([0, -40])`` is ``-4.25e-18`` rather than 0.

    Parameters
    ----------
    {common}
    {where_threads}

    Returns
    -------
    ndarray
        Log-probabilities of `x`'s shape (or `out`).

    {raises}

    See Also
    --------
    softmax, logsumexp, log_sigsoftmax, scipy.special.log_softmax

    Notes
    -----
    Special values follow `softmax`: NaN or ``+inf`` in a row, or a row of only ``-inf``,
    make the row NaN; masked entries are ``-inf``.  Accuracy: within
    ``4 u max(1, |value|)`` absolute (docs/numerics.md).

    References
    ----------
    P. Blanchard, D. J. Higham, N. J. Higham, "Accurately computing the log-sum-exp and
    softmax functions", IMA Journal of Numerical Analysis 41(4), 2021.

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> fs.log_softmax(np.array([1.0, 2.0, 3.0]))
    array([-2.40760596, -1.40760596, -0.40760596])
    >>> float(fs.log_softmax(np.array([0.0, -40.0]))[0])
    -4.248354255291589e-18
    """
    return _transform("log_softmax", _kernels.core.softmax_rows, True,
                      x, axis, out, where, num_threads)


@dispatch(small_call=_kernels.core.small_call_entry)
@_document("A fully masked row is exactly 0 (it has no member).")
def sigsoftmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    r"""Sigsoftmax along an axis (Kanai et al., NeurIPS 2018).

    .. math::

        \operatorname{sigsoftmax}(z)_i = \frac{e^{z_i}\,\sigma(z_i)}
        {\sum_m e^{z_m}\,\sigma(z_m)}, \qquad \sigma(z) = \frac{1}{1 + e^{-z}}

    It is computed in the log domain, as the softmax of
    :math:`w = 2z - \operatorname{softplus}(z) = z + \log\sigma(z)`, with the unbounded
    part of :math:`\log\sigma(z) = \min(z, 0) - \log(1 + e^{-|z|})` differenced exactly
    against the row's largest entry.  Nothing overflows or underflows to 0/0 for logits
    anywhere in the dtype's range (rows around -300 in float32, or around 1e30), where
    ``exp(z) * sigmoid(z)`` or "max-shift, then multiply by sigmoid" fail.

    Unlike softmax, sigsoftmax is not shift invariant: the sigmoid makes
    :math:`\log` sigsoftmax nonlinear in `z`, which is what lets it break the softmax
    bottleneck (the paper's Theorem 3).

    Parameters
    ----------
    {common}
    {where_threads}

    Returns
    -------
    ndarray
        Probabilities of `x`'s shape (or `out`), summing to 1 along `axis`.

    {raises}

    See Also
    --------
    log_sigsoftmax, softmax

    Notes
    -----
    Special values follow `softmax`: NaN or ``+inf`` in a row, or a row of only ``-inf``,
    make the row NaN; masked entries are 0.  Internally the log-domain gaps are computed
    in double precision for both dtypes.  Accuracy: within ``4 u (1 + |w_i - max w|)``
    relative (docs/numerics.md).

    References
    ----------
    S. Kanai, Y. Fujiwara, Y. Yamanaka, S. Adachi, "Sigsoftmax: Reanalysis of the Softmax
    Bottleneck", NeurIPS 2018.

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> fs.sigsoftmax(np.array([1.0, 2.0, 3.0]))
    array([0.07192671, 0.23556371, 0.69250958])
    >>> fs.sigsoftmax(np.array([-300.0, -301.0], dtype=np.float32))
    array([0.8807971 , 0.11920292], dtype=float32)
    """
    return _transform("sigsoftmax", _kernels.core.sigsoftmax_rows, False,
                      x, axis, out, where, num_threads)


@dispatch(small_call=_kernels.core.small_call_entry)
@_document("Masked-out entries of the result are exactly -inf; a fully masked row is all -inf.")
def log_sigsoftmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    r"""Logarithm of sigsoftmax along an axis (Kanai et al., NeurIPS 2018).

    .. math::

        \log \operatorname{sigsoftmax}(z) = w - \operatorname{logsumexp}(w), \qquad
        w = 2z - \operatorname{softplus}(z)

    computed from the gaps :math:`w_i - \max w` as in `sigsoftmax`, with the largest term
    taken out of the sum and ``log1p`` as in `log_softmax`.

    Parameters
    ----------
    {common}
    {where_threads}

    Returns
    -------
    ndarray
        Log-probabilities of `x`'s shape (or `out`).

    {raises}

    See Also
    --------
    sigsoftmax, log_softmax

    Notes
    -----
    Special values follow `softmax`.  Accuracy: within ``4 u max(1, |value|)`` absolute
    (docs/numerics.md).

    References
    ----------
    S. Kanai, Y. Fujiwara, Y. Yamanaka, S. Adachi, "Sigsoftmax: Reanalysis of the Softmax
    Bottleneck", NeurIPS 2018.

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> fs.log_sigsoftmax(np.array([1.0, 2.0, 3.0]))
    array([-2.63210755, -1.44577387, -0.36743321])
    >>> fs.log_sigsoftmax(np.array([1e30, 1e30], dtype=np.float32))
    array([-0.6931472, -0.6931472], dtype=float32)
    """
    return _transform("log_sigsoftmax", _kernels.core.sigsoftmax_rows, True,
                      x, axis, out, where, num_threads)


@dispatch(small_call=_kernels.core.small_call_entry)
@_document("A fully masked row gives -inf (the log of an empty sum).")
def logsumexp(x, axis=-1, *, keepdims=False, out=None, where=None, num_threads=None):
    r"""Logarithm of the sum of exponentials along an axis.

    .. math::

        \operatorname{logsumexp}(x) = m + \log\Bigl(1 + \sum_{j \ne k} e^{x_j - m}\Bigr),
        \qquad m = x_k = \max_j x_j

    The maximum term is taken out of the sum and ``log1p`` is used (Blanchard, Higham &
    Higham 2021), so ``logsumexp([0, -40])`` is ``4.248354255291589e-18``, accurate to the
    last bit, where ``log(sum(exp(x)))`` would give 0.

    Parameters
    ----------
    {common}
    keepdims : bool, optional
        Keep the reduced axis (axes, for ``axis=None``) with length 1.
    {where_threads}

    Returns
    -------
    ndarray or scalar
        `x`'s shape without `axis` (a NumPy scalar when that is 0-d and `out` is not
        given).

    {raises}

    See Also
    --------
    log_softmax, scipy.special.logsumexp

    Notes
    -----
    A row containing NaN gives NaN; a row containing ``+inf`` (and no NaN) gives
    ``+inf``; a row of only ``-inf``, a fully masked row, and a zero-length `axis` give
    ``-inf``.  Accuracy: within ``4 u max(1, |value|)`` absolute (docs/numerics.md).

    References
    ----------
    P. Blanchard, D. J. Higham, N. J. Higham, "Accurately computing the log-sum-exp and
    softmax functions", IMA Journal of Numerical Analysis 41(4), 2021.

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> fs.logsumexp(np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -np.inf]]))
    array([   3.40760596, 1000.69314718])
    >>> float(fs.logsumexp(np.array([0.0, -40.0])))
    4.248354255291589e-18
    >>> fs.logsumexp(np.ones((2, 3), dtype=np.float32), axis=0, keepdims=True)
    array([[1.6931472, 1.6931472, 1.6931472]], dtype=float32)
    """
    name = "logsumexp"
    x, result_dtype = as_float_array(x, name)
    axis = normalize_axis(axis, x.ndim, name)
    if axis is None:
        reduced_shape = (1,) * x.ndim if keepdims else ()
    else:
        reduced_shape = x.shape[:axis] + ((1,) if keepdims else ()) + x.shape[axis + 1:]
    out = check_out(out, reduced_shape, result_dtype, name)
    mask = check_where(where, x.shape, name)
    target = empty_result(reduced_shape, result_dtype) if out is None else out
    n_rows, n_cols = rows_shape(x.shape, axis)
    if n_rows == 0:
        pass
    elif n_cols == 0:
        target[...] = -np.inf
    elif (columns := _column_layout(name, x, axis, target, mask)) is not None:
        _kernels.core.columns_forward(*columns, _COLUMN_OPS[name],
                                      resolve_threads(num_threads, x.size))
    else:
        threads = resolve_threads(num_threads, x.size)
        x_rows = rows_of(x, axis, threads)
        direct = None
        # an `out` sharing memory with x would overwrite rows not yet read: a temporary
        if target.dtype == x.dtype and (out is None or not np.may_share_memory(out, x)):
            try:
                direct = np.reshape(target, (n_rows,), copy=False)
            except ValueError:
                pass
            if direct is not None and (direct.strides[0] % direct.itemsize
                                       or not direct.flags.aligned):
                direct = None
        result = direct if direct is not None else np.empty(n_rows, dtype=x.dtype)
        _kernels.core.logsumexp_rows(
            x_rows, result, None if mask is None else mask_rows(mask, axis, result), threads)
        if direct is None:
            np.copyto(target, result.reshape(reduced_shape), casting="unsafe")
    if out is None and target.ndim == 0:
        return target[()]
    return target
