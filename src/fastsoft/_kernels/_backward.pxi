# Backward kernels: vector-Jacobian products of the five forward transforms.
#
# Design:
# 1. Each is one row reduction (a sum of g, or of g*y) and one elementwise pass, reading
#    the forward's output (and, for sigsoftmax, its input) rather than recomputing the
#    forward.  out may alias grad_output (every element is read before it is written).
# 2. Without a mask, the reduction and the elementwise pass are fs_simd.h's explicit-lane
#    loops (FS_dot_*, FS_vjp_*), in double: float rows' products are exact in double and
#    summed without compensation, double rows' in Kahan lanes; the log kinds' exp(y) is
#    taken in the row's own type (in float it is within about an ulp, the rounding the
#    float y carries anyway, at twice the rate of double's).  Each row's elementwise pass
#    prefetches the next row's inputs (_row_ahead) where rows are short enough
#    (VJP_PREFETCH_ROW_MAX_BYTES).  Results are written with ordinary
#    stores: streaming them (as the forward's large log outputs are) measured 10% faster
#    on 4096x1000 float64 but 2-4x slower on rows of ten doubles (partial lines) and 50%
#    slower for float64 sigsoftmax_backward into a fresh result.
#    With a mask, the reduction forms its terms in double in a CHUNK-sized stack buffer
#    (masked terms set to 0) and adds them with the Kahan-lane sum, so masking costs no
#    extra pass; the elementwise pass is the same and the masked entries are zeroed after.
# 3. Masked entries get exactly 0.  Where the kernel sees x, a row with no finite-or-+inf
#    logit among its unmasked entries (all -inf, or fully masked) gets exactly 0: the
#    forward is constant -inf/undefined there, and 0 is the gradient that accumulates
#    harmlessly (PyTorch issue 31829).  A -inf logit is never turned into NaN.

cdef enum:
    # rows of at most this many bytes (per input) prefetch the next row: 4096x1000 float32
    # softmax and log_softmax backward gained 15-20%; rows of 200-400 KiB (64x50257), two
    # or three inputs each, lost up to 10% (the next row's inputs evict this row's)
    VJP_PREFETCH_ROW_MAX_BYTES = 64 << 10

cdef enum:
    SOFTMAX_VJP = 0
    LOG_SOFTMAX_VJP = 1
    SIGSOFTMAX_VJP = 2
    LOG_SIGSOFTMAX_VJP = 3


cdef inline double _row_masked_dot(const real* a, const real* b, const unsigned char* mask,
                                   Py_ssize_t n) noexcept nogil:
    """Σ a[j] * b[j] over unmasked j (b NULL: Σ a[j]), in double."""
    cdef double terms[CHUNK]
    cdef double total = 0.0, compensation = 0.0
    cdef Py_ssize_t start = 0, length, j
    if mask == NULL:
        if real is float:
            return FS_dot_f32(a, b, n)
        else:
            return FS_dot_f64(a, b, n)
    while start < n:
        length = n - start if n - start < CHUNK else CHUNK
        if b == NULL:
            for j in range(length):
                terms[j] = <double>a[start + j]
        else:
            for j in range(length):
                terms[j] = <double>a[start + j] * <double>b[start + j]
        if mask != NULL:
            for j in range(length):
                terms[j] = terms[j] if mask[start + j] != 0 else 0.0
        _add_compensated(&total, &compensation, FS_sum_f64(terms, length))
        start += length
    return total + compensation


cdef inline real _row_max_unmasked(const real* x, const unsigned char* mask, Py_ssize_t n) noexcept nogil:
    """Largest non-NaN unmasked value of x; -inf when there is none."""
    cdef real values[CHUNK]
    cdef real result = -INFINITY, chunk_max
    cdef Py_ssize_t start = 0, length, j
    if mask == NULL:
        return _row_max(x, n)
    while start < n:
        length = n - start if n - start < CHUNK else CHUNK
        for j in range(length):
            values[j] = x[start + j] if mask[start + j] != 0 else -INFINITY
        chunk_max = _row_max(values, length)
        result = chunk_max if chunk_max > result else result
        start += length
    return result


cdef inline void _row_vjp(const real* g, const real* y, const real* z, real* out,
                          const unsigned char* mask, Py_ssize_t n, int kind,
                          const real* next_g, const real* next_y,
                          const real* next_z) noexcept nogil:
    """out = vector-Jacobian product of one row (see the module comment for the cases)."""
    cdef double reduced
    cdef bint takes_product = kind == SOFTMAX_VJP or kind == SIGSOFTMAX_VJP
    if z != NULL and _row_max_unmasked(z, mask, n) == -INFINITY:
        _row_fill(out, n, 0)
        return
    reduced = _row_masked_dot(g, y if takes_product else <const real*>NULL, mask, n)
    # fs_simd.h's vector pass, in double: y (g - r) or g - exp(y) r, times 2 - sigmoid(z)
    # for sigsoftmax's two
    if real is float:
        FS_vjp_f32(g, y, z if kind >= SIGSOFTMAX_VJP else NULL, out, n, reduced,
                   kind == LOG_SOFTMAX_VJP or kind == LOG_SIGSOFTMAX_VJP, next_g, next_y,
                   next_z if kind >= SIGSOFTMAX_VJP else NULL)
    else:
        FS_vjp_f64(g, y, z if kind >= SIGSOFTMAX_VJP else NULL, out, n, reduced,
                   kind == LOG_SOFTMAX_VJP or kind == LOG_SIGSOFTMAX_VJP, next_g, next_y,
                   next_z if kind >= SIGSOFTMAX_VJP else NULL)
    if mask != NULL:
        _row_fill_masked(out, mask, n, 0)


cdef inline void _row_logsumexp_vjp(real g, const real* x, real lse, real* out,
                                    const unsigned char* mask, Py_ssize_t n) noexcept nogil:
    """out[j] = g * exp(x[j] - lse); 0 where x[j] is -inf or masked (no NaN from -inf - -inf)."""
    cdef Py_ssize_t j
    cdef real e
    for j in range(n):
        if real is float:
            e = FS_expf(x[j] - lse)
        else:
            e = FS_exp(x[j] - lse)
        out[j] = 0 if x[j] == -INFINITY else g * e
    if mask != NULL:
        _row_fill_masked(out, mask, n, 0)


cdef void _vjp_rows(const real* g, Py_ssize_t g_step, const real* y, Py_ssize_t y_step,
                    const real* z, Py_ssize_t z_step, real* out, Py_ssize_t out_step,
                    const unsigned char* mask, Py_ssize_t n_rows, Py_ssize_t n_cols,
                    int kind, int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef Py_ssize_t chunk = _rows_per_chunk(n_cols * <Py_ssize_t>sizeof(real))
    cdef bint prefetch = n_cols * <Py_ssize_t>sizeof(real) <= VJP_PREFETCH_ROW_MAX_BYTES
    cdef const real* next_g
    if n_threads == 1:
        # no OpenMP region at all (as _softmax_rows): a small call should not pay for one
        for i in range(n_rows):
            next_g = _row_ahead(g, g_step, i, n_rows, n_cols) if prefetch else NULL
            _row_vjp(g + i * g_step, y + i * y_step, z + i * z_step if z != NULL else NULL,
                     out + i * out_step, mask + i * n_cols if mask != NULL else NULL, n_cols,
                     kind, next_g, y + (i + 1) * y_step if next_g != NULL else NULL,
                     z + (i + 1) * z_step if next_g != NULL and z != NULL else NULL)
        return
    for i in prange(n_rows, schedule="dynamic", chunksize=chunk, num_threads=n_threads):
        next_g = _row_ahead(g, g_step, i, n_rows, n_cols) if prefetch else NULL
        _row_vjp(g + i * g_step, y + i * y_step, z + i * z_step if z != NULL else NULL,
                 out + i * out_step, mask + i * n_cols if mask != NULL else NULL, n_cols, kind,
                 next_g, y + (i + 1) * y_step if next_g != NULL else NULL,
                 z + (i + 1) * z_step if next_g != NULL and z != NULL else NULL)


cdef void _logsumexp_vjp_rows(const real* g, Py_ssize_t g_step, const real* x, Py_ssize_t x_step,
                              const real* lse, Py_ssize_t lse_step, real* out, Py_ssize_t out_step,
                              const unsigned char* mask, Py_ssize_t n_rows, Py_ssize_t n_cols,
                              int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef Py_ssize_t chunk = _rows_per_chunk(n_cols * <Py_ssize_t>sizeof(real))
    if n_threads == 1:
        for i in range(n_rows):
            _row_logsumexp_vjp(g[i * g_step], x + i * x_step, lse[i * lse_step],
                               out + i * out_step, mask + i * n_cols if mask != NULL else NULL,
                               n_cols)
        return
    for i in prange(n_rows, schedule="dynamic", chunksize=chunk, num_threads=n_threads):
        _row_logsumexp_vjp(g[i * g_step], x + i * x_step, lse[i * lse_step], out + i * out_step,
                           mask + i * n_cols if mask != NULL else NULL, n_cols)


cdef Py_ssize_t _vector_step(cnp.ndarray a, Py_ssize_t n) except? -1:
    """Element step of a 1-D array of length n (ValueError otherwise; -1 is a valid step)."""
    if cnp.PyArray_NDIM(a) != 1 or a.shape[0] != n or not cnp.PyArray_ISALIGNED(a) \
            or cnp.PyArray_STRIDE(a, 0) % cnp.PyArray_ITEMSIZE(a) != 0:
        raise ValueError("kernel vectors must be aligned, 1-D, one value per row")
    return cnp.PyArray_STRIDE(a, 0) // cnp.PyArray_ITEMSIZE(a)


def vjp_rows(int kind, cnp.ndarray g not None, cnp.ndarray y not None, object z,
             cnp.ndarray out not None, object mask, int n_threads):
    """out[i] = VJP of row i: kind 0 softmax, 1 log_softmax, 2 sigsoftmax, 3 log_sigsoftmax.

    g, y, out (and z for the sigsoftmax kinds, else None) are (n_rows, n_cols) kernel rows of
    one float dtype.  Returns out.
    """
    cdef int typenum = _float_type(g, out)
    cdef Py_ssize_t n_rows = g.shape[0], n_cols = g.shape[1]
    cdef cnp.ndarray z_array
    cdef Py_ssize_t z_step = 0
    cdef const char* z_data = NULL
    if kind < SOFTMAX_VJP or kind > LOG_SIGSOFTMAX_VJP:
        raise ValueError("unknown VJP kind")
    if (cnp.PyArray_TYPE(y) != typenum or y.shape[0] != n_rows or y.shape[1] != n_cols
            or out.shape[0] != n_rows or out.shape[1] != n_cols):
        raise ValueError("VJP kernel arrays must share dtype and shape")
    if (kind == SIGSOFTMAX_VJP or kind == LOG_SIGSOFTMAX_VJP) != (z is not None):
        raise ValueError("the sigsoftmax VJPs need the logits, the others do not")
    if z is not None:
        z_array = <cnp.ndarray?>z
        if cnp.PyArray_TYPE(z_array) != typenum or z_array.shape[0] != n_rows \
                or z_array.shape[1] != n_cols:
            raise ValueError("VJP kernel arrays must share dtype and shape")
        z_step = _row_step(z_array, n_cols)
        z_data = <const char*>cnp.PyArray_DATA(z_array)
    cdef Py_ssize_t g_step = _row_step(g, n_cols), y_step = _row_step(y, n_cols)
    cdef Py_ssize_t out_step = _row_step(out, n_cols)
    cdef const unsigned char* mask_data = _mask_pointer(mask, n_rows, n_cols)
    if n_rows == 0 or n_cols == 0:
        return out
    n_threads = max(1, min(n_threads, n_rows))
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _vjp_rows[float](<const float*>cnp.PyArray_DATA(g), g_step,
                             <const float*>cnp.PyArray_DATA(y), y_step,
                             <const float*>z_data, z_step,
                             <float*>cnp.PyArray_DATA(out), out_step,
                             mask_data, n_rows, n_cols, kind, n_threads)
    else:
        with nogil:
            _vjp_rows[double](<const double*>cnp.PyArray_DATA(g), g_step,
                              <const double*>cnp.PyArray_DATA(y), y_step,
                              <const double*>z_data, z_step,
                              <double*>cnp.PyArray_DATA(out), out_step,
                              mask_data, n_rows, n_cols, kind, n_threads)
    return out


def logsumexp_vjp_rows(cnp.ndarray g not None, cnp.ndarray x not None, cnp.ndarray lse not None,
                       cnp.ndarray out not None, object mask, int n_threads):
    """out[i, j] = g[i] * exp(x[i, j] - lse[i]) (0 at -inf or masked x); g, lse 1-D per row."""
    cdef int typenum = _float_type(x, out)
    cdef Py_ssize_t n_rows = x.shape[0], n_cols = x.shape[1]
    if cnp.PyArray_TYPE(g) != typenum or cnp.PyArray_TYPE(lse) != typenum:
        raise ValueError("logsumexp VJP kernel arrays must share dtype")
    if out.shape[0] != n_rows or out.shape[1] != n_cols:
        raise ValueError("kernel output shape differs from the input's")
    cdef Py_ssize_t g_step = _vector_step(g, n_rows), lse_step = _vector_step(lse, n_rows)
    cdef Py_ssize_t x_step = _row_step(x, n_cols), out_step = _row_step(out, n_cols)
    cdef const unsigned char* mask_data = _mask_pointer(mask, n_rows, n_cols)
    if n_rows == 0 or n_cols == 0:
        return out
    n_threads = max(1, min(n_threads, n_rows))
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _logsumexp_vjp_rows[float](<const float*>cnp.PyArray_DATA(g), g_step,
                                       <const float*>cnp.PyArray_DATA(x), x_step,
                                       <const float*>cnp.PyArray_DATA(lse), lse_step,
                                       <float*>cnp.PyArray_DATA(out), out_step,
                                       mask_data, n_rows, n_cols, n_threads)
    else:
        with nogil:
            _logsumexp_vjp_rows[double](<const double*>cnp.PyArray_DATA(g), g_step,
                                        <const double*>cnp.PyArray_DATA(x), x_step,
                                        <const double*>cnp.PyArray_DATA(lse), lse_step,
                                        <double*>cnp.PyArray_DATA(out), out_step,
                                        mask_data, n_rows, n_cols, n_threads)
    return out


# ---------------------------------------------------------------------------------------
# The public backward functions' compiled entries (see _core.pxi's small_call_entry): a
# small call on plain arrays along the last axis runs here on the calling thread, any
# other goes to the routed Python function, which validates it.

cdef void _small_vjp_kernel(int typenum, int kind, const void* g, const void* y,
                            const void* z, void* out, const unsigned char* mask,
                            Py_ssize_t n_rows, Py_ssize_t n_cols) noexcept nogil:
    """_small_vjp's arithmetic, on the calling thread."""
    if typenum == cnp.NPY_FLOAT32:
        _vjp_rows[float](<const float*>g, n_cols, <const float*>y, n_cols, <const float*>z,
                         n_cols, <float*>out, n_cols, mask, n_rows, n_cols, kind, 1)
    else:
        _vjp_rows[double](<const double*>g, n_cols, <const double*>y, n_cols,
                          <const double*>z, n_cols, <double*>out, n_cols, mask, n_rows,
                          n_cols, kind, 1)


cdef void _small_logsumexp_vjp_kernel(int typenum, const void* g, const void* x,
                                      const void* lse, void* out, const unsigned char* mask,
                                      Py_ssize_t n_rows, Py_ssize_t n_cols) noexcept nogil:
    """_small_logsumexp_vjp's arithmetic, on the calling thread."""
    if typenum == cnp.NPY_FLOAT32:
        _logsumexp_vjp_rows[float](<const float*>g, 1, <const float*>x, n_cols,
                                   <const float*>lse, 1, <float*>out, n_cols, mask, n_rows,
                                   n_cols, 1)
    else:
        _logsumexp_vjp_rows[double](<const double*>g, 1, <const double*>x, n_cols,
                                    <const double*>lse, 1, <double*>out, n_cols, mask,
                                    n_rows, n_cols, 1)


cdef object _small_vjp(int kind, object g, object y, object z, object axis, object out,
                       object where, object num_threads):
    """The whole call of a row VJP (`kind`) on small plain arrays, or None.

    g (grad_output) must suit a small call (_small_input); y (output) and z (the logits,
    sigsoftmax's kinds only) must be plain with g's dtype and shape, `where` None or a
    plain bool array of that shape, and `out`, if given, plain and writeable, each
    input's own memory or apart from it: the full path's rules for writing directly into
    `out`, with no conversion to make.  Along a non-last axis (up to
    SMALL_COLUMN_ELEMENTS values, no mask) the inputs' columns are moved into rows of a
    buffer and the result moved back, as _small_forward does: the full path's transposed
    rows.
    """
    cdef int k = 0
    cdef cnp.ndarray a = _small_input(g, axis, num_threads, &k)
    if a is None:
        return None
    cdef const unsigned char* mask = _small_mask(where, a)
    if where is not None and mask == NULL:
        return None
    cdef int typenum = cnp.PyArray_TYPE(a)
    cdef int ndim = cnp.PyArray_NDIM(a)
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(a)
    if k != ndim - 1 and (where is not None or cnp.PyArray_SIZE(a) > SMALL_COLUMN_ELEMENTS):
        return None
    if not _plain(y, typenum, ndim, dims) or (z is not None and not _plain(z, typenum, ndim, dims)):
        return None
    if out is None:
        out = cnp.PyArray_EMPTY(ndim, dims, typenum, 0)
    elif not (_plain_out(out, typenum, ndim, dims) and _same_or_apart(<cnp.ndarray>out, a)
              and _same_or_apart(<cnp.ndarray>out, <cnp.ndarray>y)
              and (z is None or _same_or_apart(<cnp.ndarray>out, <cnp.ndarray>z))
              and (where is None or _apart(<cnp.ndarray>out, where))):
        return None
    cdef Py_ssize_t size = cnp.PyArray_SIZE(a)
    cdef Py_ssize_t n_cols = dims[k]
    cdef Py_ssize_t n_rows = size // n_cols
    cdef void* gd = cnp.PyArray_DATA(a)
    cdef void* yd = cnp.PyArray_DATA(<cnp.ndarray>y)
    cdef void* zd = NULL if z is None else cnp.PyArray_DATA(<cnp.ndarray>z)
    cdef void* od = cnp.PyArray_DATA(<cnp.ndarray>out)
    if k == ndim - 1:
        if size >= SMALL_CALL_NOGIL:
            with nogil:
                _small_vjp_kernel(typenum, kind, gd, yd, zd, od, mask, n_rows, n_cols)
        else:
            _small_vjp_kernel(typenum, kind, gd, yd, zd, od, mask, n_rows, n_cols)
        return out
    # a non-last axis: g, y (and z) moved into rows, the VJP into a fourth part, moved back
    cdef Py_ssize_t outer = 1, inner, itemsize = cnp.PyArray_ITEMSIZE(a)
    cdef int i
    for i in range(k):
        outer *= dims[i]
    inner = size // (outer * n_cols)
    cdef char* rows = <char*>PyMem_Malloc(4 * size * itemsize)
    if rows == NULL:
        raise MemoryError()
    cdef char* part[4]
    for i in range(4):
        part[i] = rows + i * size * itemsize
    if typenum == cnp.NPY_FLOAT32:
        _move_strips[float](<float*>gd, <float*>part[0], outer, n_cols, inner, False, 1)
        _move_strips[float](<float*>yd, <float*>part[1], outer, n_cols, inner, False, 1)
        if zd != NULL:
            _move_strips[float](<float*>zd, <float*>part[2], outer, n_cols, inner, False, 1)
    else:
        _move_strips[double](<double*>gd, <double*>part[0], outer, n_cols, inner, False, 1)
        _move_strips[double](<double*>yd, <double*>part[1], outer, n_cols, inner, False, 1)
        if zd != NULL:
            _move_strips[double](<double*>zd, <double*>part[2], outer, n_cols, inner, False, 1)
    _small_vjp_kernel(typenum, kind, part[0], part[1], part[2] if zd != NULL else NULL,
                      part[3], NULL, n_rows, n_cols)
    if typenum == cnp.NPY_FLOAT32:
        _move_strips[float](<float*>od, <float*>part[3], outer, n_cols, inner, True, 1)
    else:
        _move_strips[double](<double*>od, <double*>part[3], outer, n_cols, inner, True, 1)
    PyMem_Free(rows)
    return out


cdef inline bint _reduced_shape(object a, int typenum, cnp.ndarray x):
    """Whether `a` is plain with x's dtype and the shape of x's logsumexp along its last
    axis, without or with keepdims."""
    cdef int ndim = cnp.PyArray_NDIM(x)
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(x)
    cdef cnp.npy_intp kept[32]
    if _plain(a, typenum, ndim - 1, dims):
        return True
    if ndim > 32:
        return False
    memcpy(kept, dims, (ndim - 1) * sizeof(cnp.npy_intp))
    kept[ndim - 1] = 1
    return _plain(a, typenum, ndim, kept)


cdef object _small_logsumexp_vjp(object g, object x, object lse, object axis, object out,
                                 object where, object num_threads):
    """logsumexp_backward's whole call on small plain arrays, or None (as _small_vjp; g
    and lse of the result's shape, not broadcast)."""
    cdef cnp.ndarray a = _small_input(x, axis, num_threads)
    if a is None:
        return None
    cdef const unsigned char* mask = _small_mask(where, a)
    if where is not None and mask == NULL:
        return None
    cdef int typenum = cnp.PyArray_TYPE(a)
    cdef int ndim = cnp.PyArray_NDIM(a)
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(a)
    if not (_reduced_shape(g, typenum, a) and _reduced_shape(lse, typenum, a)
            and cnp.PyArray_NDIM(<cnp.ndarray>g) == cnp.PyArray_NDIM(<cnp.ndarray>lse)):
        return None
    if out is None:
        out = cnp.PyArray_EMPTY(ndim, dims, typenum, 0)
    elif not (_plain_out(out, typenum, ndim, dims) and _same_or_apart(<cnp.ndarray>out, a)
              and _same_or_apart(<cnp.ndarray>out, <cnp.ndarray>g)
              and _same_or_apart(<cnp.ndarray>out, <cnp.ndarray>lse)
              and (where is None or _apart(<cnp.ndarray>out, where))):
        return None
    cdef Py_ssize_t n_cols = dims[ndim - 1]
    cdef Py_ssize_t n_rows = cnp.PyArray_SIZE(a) // n_cols
    cdef void* gd = cnp.PyArray_DATA(<cnp.ndarray>g)
    cdef void* xd = cnp.PyArray_DATA(a)
    cdef void* ld = cnp.PyArray_DATA(<cnp.ndarray>lse)
    cdef void* od = cnp.PyArray_DATA(<cnp.ndarray>out)
    if n_rows * n_cols >= SMALL_CALL_NOGIL:
        with nogil:
            _small_logsumexp_vjp_kernel(typenum, gd, xd, ld, od, mask, n_rows, n_cols)
    else:
        _small_logsumexp_vjp_kernel(typenum, gd, xd, ld, od, mask, n_rows, n_cols)
    return out


cdef inline object _vjp_entry(int op, int kind, object g, object y, object z, object axis,
                              object out, object where, object num_threads):
    """The call of public backward function `op` (_ENTRY_NAMES): small path or routed."""
    cdef object result = _small_vjp(kind, g, y, z, axis, out, where, num_threads)
    if result is not None:
        return result
    if z is None:
        return _routed[op](g, y, axis, out=out, where=where, num_threads=num_threads)
    return _routed[op](g, y, z, axis, out=out, where=where, num_threads=num_threads)


def softmax_backward(grad_output, output, axis=-1, *, out=None, where=None, num_threads=None):
    return _vjp_entry(5, SOFTMAX_VJP, grad_output, output, None, axis, out, where, num_threads)


def log_softmax_backward(grad_output, output, axis=-1, *, out=None, where=None,
                         num_threads=None):
    return _vjp_entry(6, LOG_SOFTMAX_VJP, grad_output, output, None, axis, out, where,
                      num_threads)


def sigsoftmax_backward(grad_output, output, x, axis=-1, *, out=None, where=None,
                        num_threads=None):
    return _vjp_entry(7, SIGSOFTMAX_VJP, grad_output, output, x, axis, out, where, num_threads)


def log_sigsoftmax_backward(grad_output, output, x, axis=-1, *, out=None, where=None,
                            num_threads=None):
    return _vjp_entry(8, LOG_SIGSOFTMAX_VJP, grad_output, output, x, axis, out, where,
                      num_threads)


def logsumexp_backward(grad_output, x, result, axis=-1, *, out=None, where=None,
                       num_threads=None):
    cdef object answer = _small_logsumexp_vjp(grad_output, x, result, axis, out, where,
                                              num_threads)
    if answer is not None:
        return answer
    return _routed[9](grad_output, x, result, axis, out=out, where=where,
                      num_threads=num_threads)
