"""Vector-Jacobian products (backward passes) of the five forward transforms."""

import numpy as np

from . import _kernels
from ._kernels._buffers import empty as empty_result
from ._backend import dispatch
from ._config import resolve_threads
from ._layout import mask_rows, result_rows, rows_of, write_back
from ._validation import as_float_array, check_out, check_where, normalize_axis

# kinds understood by the kernels' vjp_rows
_SOFTMAX, _LOG_SOFTMAX, _SIGSOFTMAX, _LOG_SIGSOFTMAX = 0, 1, 2, 3

_PARAMETERS = """\
axis : int or None, optional
    The axis the forward was computed along (default: the last; None: the whole array).
out : ndarray, optional
    Array of the result's shape and dtype to write into; it may be `grad_output` (or
    another input) itself.  It is returned.  Not supported for Dask arrays (TypeError):
    with Dask inputs the result is a lazy Dask array (docs/scaling.md).
where : array_like of bool, optional
    The mask given to the forward: masked-out entries get exactly 0 gradient, and a
    fully masked row is all 0.
num_threads : int, optional
    Threads for this call (default: `get_num_threads`; for Dask arrays, threads of each
    block's call, default 1); the result never depends on it."""

_DTYPES = """\
All inputs follow the forward's dtype rules (float16 is computed in float32, bool and
integers in float64); the computation runs in float64 if any input is float64, and the
result is float16 only if every input is float16.  Reductions accumulate in double."""

_RAISES = """\
Raises
------
ValueError
    Inputs of different shapes; `out` of the wrong shape; a bad `where`.
TypeError
    Unsupported dtypes; `out` of the wrong dtype.
numpy.exceptions.AxisError
    `axis` out of range."""


def _document(func):
    for key, text in (("{parameters}", _PARAMETERS), ("{dtypes}", _DTYPES), ("{raises}", _RAISES)):
        func.__doc__ = func.__doc__.replace(key, text.replace("\n", "\n" + " " * 4))
    return func


def _common_dtype(name, *arrays):
    """Arrays converted to one work dtype, and the result dtype (see _DTYPES)."""
    converted = [as_float_array(a, name) for a in arrays]
    work = np.result_type(*(a.dtype for a, _ in converted))
    all_half = all(result == np.float16 for _, result in converted)
    result_dtype = np.dtype(np.float16) if all_half else work
    return [a if a.dtype == work else a.astype(work) for a, _ in converted], result_dtype


def _vjp(name, kind, arrays, axis, out, where, num_threads):
    """Shared driver: validate, lay out as rows, run the VJP kernel, write back."""
    arrays, result_dtype = _common_dtype(name, *arrays)
    shape = arrays[0].shape
    for a in arrays[1:]:
        if a.shape != shape:
            raise ValueError(f"{name}: inputs have different shapes {shape} and {a.shape}")
    axis = normalize_axis(axis, len(shape), name)
    out = check_out(out, shape, result_dtype, name)
    mask = check_where(where, shape, name)
    target = empty_result(shape, result_dtype) if out is None else out
    if arrays[0].size == 0:
        return target
    threads = resolve_threads(num_threads, arrays[0].size)
    input_rows = [rows_of(a, axis, threads) for a in arrays]
    rows, direct = result_rows(target, axis, arrays[0].dtype, out is None, *input_rows)
    grad_rows, output_rows = input_rows[:2]
    logits_rows = input_rows[2] if len(input_rows) == 3 else None
    _kernels.core.vjp_rows(kind, grad_rows, output_rows, logits_rows, rows,
                           None if mask is None else mask_rows(mask, axis, rows), threads)
    if not direct:
        write_back(target, axis, rows, threads)
    return target


@dispatch(small_call=_kernels.core.small_call_entry)
@_document
def softmax_backward(grad_output, output, axis=-1, *, out=None, where=None, num_threads=None):
    r"""Backward pass of `softmax`: the vector-Jacobian product.

    .. math::

        \frac{\partial L}{\partial x_j} = y_j \Bigl(g_j - \sum_i g_i y_i\Bigr),
        \qquad y = \operatorname{softmax}(x),\; g = \partial L / \partial y

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the softmax output (`g`).
    output : array_like
        The softmax output `y` as returned by `softmax` (same shape as `grad_output`).
    {parameters}

    Returns
    -------
    ndarray
        Gradient with respect to the softmax input, of `output`'s shape.

    {raises}

    Notes
    -----
    {dtypes}

    Entries where the forward gave 0 (e.g. a ``-inf`` logit) get 0.  Only the output is
    seen here, so a row whose forward was NaN (such as a row of only ``-inf``) stays NaN;
    pass the forward's `where` mask instead of ``-inf`` logits to get exact zeros.

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> y = fs.softmax(np.array([1.0, 2.0, 3.0]))
    >>> fs.softmax_backward(np.array([1.0, 0.0, 0.0]), y)  # row of the Jacobian
    array([ 0.08192507, -0.02203304, -0.05989202])
    """
    return _vjp("softmax_backward", _SOFTMAX, (grad_output, output), axis, out, where,
                num_threads)


@dispatch(small_call=_kernels.core.small_call_entry)
@_document
def log_softmax_backward(grad_output, output, axis=-1, *, out=None, where=None, num_threads=None):
    r"""Backward pass of `log_softmax`: the vector-Jacobian product.

    .. math::

        \frac{\partial L}{\partial x_j} = g_j - e^{o_j} \sum_i g_i,
        \qquad o = \operatorname{log\_softmax}(x),\; g = \partial L / \partial o

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the log-softmax output (`g`).
    output : array_like
        The output `o` as returned by `log_softmax` (same shape as `grad_output`).
    {parameters}

    Returns
    -------
    ndarray
        Gradient with respect to the log-softmax input, of `output`'s shape.

    {raises}

    Notes
    -----
    {dtypes}

    A ``-inf`` logit (output ``-inf``) gets the finite gradient ``g_j``.  A row whose
    forward was NaN stays NaN; use the forward's `where` mask for exact zeros.

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> o = fs.log_softmax(np.array([1.0, 2.0, 3.0]))
    >>> fs.log_softmax_backward(np.array([-1.0, 0.0, 0.0]), o)  # d(-log p_0)/dx
    array([-0.90996943,  0.24472847,  0.66524096])
    """
    return _vjp("log_softmax_backward", _LOG_SOFTMAX, (grad_output, output), axis, out, where,
                num_threads)


@dispatch(small_call=_kernels.core.small_call_entry)
@_document
def sigsoftmax_backward(grad_output, output, x, axis=-1, *, out=None, where=None,
                        num_threads=None):
    r"""Backward pass of `sigsoftmax`: the vector-Jacobian product.

    With :math:`\partial \log f_i / \partial z_j = (\delta_{ij} - f_j)(2 - \sigma(z_j))`
    (Kanai et al. 2018, Theorem 5):

    .. math::

        \frac{\partial L}{\partial z_j} = (2 - \sigma(z_j))\, f_j
        \Bigl(g_j - \sum_i g_i f_i\Bigr), \qquad f = \operatorname{sigsoftmax}(z)

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the sigsoftmax output (`g`).
    output : array_like
        The output `f` as returned by `sigsoftmax`.
    x : array_like
        The logits `z` the forward was given.
    {parameters}

    Returns
    -------
    ndarray
        Gradient with respect to `x`.

    {raises}

    Notes
    -----
    {dtypes}

    A row whose logits are all ``-inf`` (or all masked) gets exactly 0.

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> z = np.array([1.0, 2.0, 3.0])
    >>> fs.sigsoftmax_backward(np.array([1.0, 0.0, 0.0]), fs.sigsoftmax(z), z)
    array([ 0.08470598, -0.01896302, -0.05217222])
    """
    return _vjp("sigsoftmax_backward", _SIGSOFTMAX, (grad_output, output, x), axis, out,
                where, num_threads)


@dispatch(small_call=_kernels.core.small_call_entry)
@_document
def log_sigsoftmax_backward(grad_output, output, x, axis=-1, *, out=None, where=None,
                            num_threads=None):
    r"""Backward pass of `log_sigsoftmax`: the vector-Jacobian product.

    .. math::

        \frac{\partial L}{\partial z_j} = (2 - \sigma(z_j))
        \Bigl(g_j - e^{o_j} \sum_i g_i\Bigr), \qquad o = \log\operatorname{sigsoftmax}(z)

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the log-sigsoftmax output (`g`).
    output : array_like
        The output `o` as returned by `log_sigsoftmax`.
    x : array_like
        The logits `z` the forward was given.
    {parameters}

    Returns
    -------
    ndarray
        Gradient with respect to `x`.

    {raises}

    Notes
    -----
    {dtypes}

    A ``-inf`` logit gets the finite gradient ``2 g_j``; a row whose logits are all
    ``-inf`` (or all masked) gets exactly 0.

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> z = np.array([1.0, 2.0, 3.0])
    >>> fs.log_sigsoftmax_backward(np.array([-1.0, 0.0, 0.0]), fs.log_sigsoftmax(z), z)
    array([-1.17767064,  0.26364359,  0.72535245])
    """
    return _vjp("log_sigsoftmax_backward", _LOG_SIGSOFTMAX, (grad_output, output, x), axis,
                out, where, num_threads)


@dispatch(small_call=_kernels.core.small_call_entry)
@_document
def logsumexp_backward(grad_output, x, result, axis=-1, *, out=None, where=None,
                       num_threads=None):
    r"""Backward pass of `logsumexp`: the vector-Jacobian product.

    .. math::

        \frac{\partial L}{\partial x_j} = g \, e^{x_j - r},
        \qquad r = \operatorname{logsumexp}(x),\; g = \partial L / \partial r

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the logsumexp result; broadcastable to the
        result's shape.
    x : array_like
        The input of the forward.
    result : array_like
        The result `r` as returned by `logsumexp` (with or without ``keepdims``).
    {parameters}

    Returns
    -------
    ndarray
        Gradient with respect to `x`, of `x`'s shape.

    {raises}

    Notes
    -----
    {dtypes}

    A ``-inf`` entry of `x` gets exactly 0, also in a row of only ``-inf`` (whose result
    is ``-inf``, where ``exp(x - r)`` would be NaN; PyTorch issue 31829).

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> x = np.array([[1.0, 2.0, 3.0], [-np.inf, -np.inf, -np.inf]])
    >>> fs.logsumexp_backward(np.ones(2), x, fs.logsumexp(x))
    array([[0.09003057, 0.24472847, 0.66524096],
           [0.        , 0.        , 0.        ]])
    """
    name = "logsumexp_backward"
    (x, grad_output, result), result_dtype = _common_dtype(name, x, grad_output, result)
    axis = normalize_axis(axis, x.ndim, name)
    reduced_shape = () if axis is None else x.shape[:axis] + x.shape[axis + 1:]
    kept_shape = (1,) * x.ndim if axis is None else x.shape[:axis] + (1,) + x.shape[axis + 1:]
    if result.shape not in (reduced_shape, kept_shape):
        raise ValueError(f"{name}: result has shape {result.shape}; logsumexp of x along "
                         f"axis {axis} has shape {reduced_shape} (or {kept_shape} with keepdims)")
    try:
        grad_output = np.broadcast_to(grad_output, result.shape)
    except ValueError:
        raise ValueError(f"{name}: grad_output of shape {grad_output.shape} cannot be "
                         f"broadcast to the result's shape {result.shape}") from None
    out = check_out(out, x.shape, result_dtype, name)
    mask = check_where(where, x.shape, name)
    target = empty_result(x.shape, result_dtype) if out is None else out
    if x.size == 0:
        return target
    threads = resolve_threads(num_threads, x.size)
    x_rows = rows_of(x, axis, threads)
    n_rows = x_rows.shape[0]
    g_vector = np.require(grad_output, requirements=["C", "A"]).reshape(n_rows)
    r_vector = np.require(result, requirements=["C", "A"]).reshape(n_rows)
    rows, direct = result_rows(target, axis, x.dtype, out is None, x_rows, g_vector, r_vector)
    _kernels.core.logsumexp_vjp_rows(g_vector, x_rows, r_vector, rows,
                                     None if mask is None else mask_rows(mask, axis, rows),
                                     threads)
    if not direct:
        write_back(target, axis, rows, threads)
    return target
