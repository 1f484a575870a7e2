# fastsoft kernels: one body, compiled once per CPU variant (see setup.py).
#
# Design:
# 1. Entry points `<op>_rows` take 2-D arrays laid out by fastsoft._layout: rows of
#    n_cols contiguous values separated by an arbitrary (even negative) row step, the
#    optional mask as a C-contiguous uint8 array.  They check that contract cheaply
#    (a ValueError, never a crash, if a caller breaks it) and then run without the GIL.
# 2. Work is parallel over rows, each row computed by the same code whatever thread takes
#    it: results depend neither on the thread count nor on the schedule.  The schedule is
#    dynamic, in chunks of about CHUNK_BYTES of input (_rows_per_chunk): on a shared
#    machine a core is often slowed for a while by other work, and a static split makes
#    the whole call wait for the slowed thread's half, where chunks let the other thread
#    take more of the rows.  Threads start only when the caller asks for more than one
#    (the Python layer asks for one on small work).
# 3. Transforms read the input row and write the output row, which may be the same memory
#    (in-place calls): every helper reads an element before writing it.  With a mask, the
#    row is first copied into the output with masked entries set to -inf (which then
#    contribute exactly 0 to sums and never win the max) and processed in place.
# 4. Scratch memory (sigsoftmax's double row, masked logsumexp's row copy) is one slice per
#    thread of a buffer the caller allocates before the GIL is released: no module-level
#    state, and an allocation failure is a Python MemoryError, not a crash in a kernel.

cimport cython
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.string cimport memcpy, memmove
cimport numpy as cnp

cdef extern from "numpy/arrayobject.h":
    # a NumPy scalar of `descr` from the value at `data` (the descr is not stolen)
    object PyArray_Scalar(void* data, cnp.dtype descr, object base)
from cython.parallel cimport prange, parallel

from fastsoft._kernels._shims cimport (
    FS_expf, FS_exp, FS_log1p_unit, FS_sigmoid,
    FS_max_f32, FS_max_f64, FS_minmax_f32, FS_minmax_f64, FS_short_exp_f32, FS_short_exp_f64,
    FS_sum_f64,
    FS_exp_store_sum_f32, FS_exp_store_sum_f64, FS_exp_sum_off_max_f32, FS_exp_sum_off_max_f64,
    FS_scale_f32, FS_divide_f64, FS_affine_f32, FS_affine_f64, FS_target_sums_f32, FS_target_sums_f64,
    FS_target_grad_f32, FS_target_grad_f64, FS_log_normalize_f32, FS_log_normalize_f64,
    FS_sigsoftmax_gap_f32, FS_sigsoftmax_gap_f64, FS_sigsoftmax_gap_f32f,
    FS_sigsoftmax_terms_f64, FS_sigsoftmax_terms_f32, FS_sum_as_exp_f64,
    FS_transpose8x8_f32, FS_transpose4x4_f64, FS_dot_f32, FS_dot_f64, FS_vjp_f32, FS_vjp_f64,
    FS_two_minus_sigmoid_f32, FS_two_minus_sigmoid_f64, FS_scale_by_factor_f32,
    FS_store_fence, FS_stream_copy,
    FS_log_normalize_stream_f32, FS_log_normalize_stream_f64, FS_prefetch, FS_prefetch_write, FS_log1p_one, FS_log1p_array,
    FS_exp_store_sum_off_max_f32, FS_exp_store_sum_off_max_f64,
    FS_short_rows_f32, FS_short_rows_f64, FS_SHORT_CROSS_ENTROPY,
    FS_short_cross_entropy_f32, FS_short_cross_entropy_f64,
    FS_COLUMN_LANES, FS_COLUMN_UNIT_BYTES, FS_column_buffer_values, FS_column_unit_f32,
    FS_column_unit_f64,
    FS_OPENMP_ENABLED, omp_get_max_threads, omp_get_thread_num, FS_cpu_has_avx2_fma,
    FS_cpu_has_avx512,
)

include "_rows.pxi"

cnp.import_array()

import numpy as np


def openmp_enabled():
    """Whether this module was compiled with OpenMP."""
    return bool(FS_OPENMP_ENABLED)


def cpu_has_avx2_fma():
    """Whether the running CPU (and OS) support AVX2 and FMA."""
    return bool(FS_cpu_has_avx2_fma())


def cpu_has_avx512():
    """Whether the running CPU (and OS) support AVX2, FMA and AVX-512 F, VL, DQ and BW."""
    return bool(FS_cpu_has_avx512())


def max_threads():
    """omp_get_max_threads() now (honours threadpoolctl limits); 1 without OpenMP."""
    return omp_get_max_threads()


# ---------------------------------------------------------------------------------------
# Row operations
# ---------------------------------------------------------------------------------------

cdef inline void _row_softmax(const real* x, real* v, const unsigned char* mask,
                              Py_ssize_t n, bint log_output, bint streaming=False,
                              const real* ahead=NULL) noexcept nogil:
    """v = softmax(x) or log_softmax(x) over one row; v may be x.

    streaming (log_softmax without a mask, results larger than the caches): the output
    row is written with streaming stores (fs_simd.h), sparing the read-for-ownership of
    its lines; the caller fences.  softmax ignores it: keeping its exponentials in a row
    buffer to stream them out measured slower (docs/performance.md).  Rows longer than
    LONG_ROW_BYTES take their max and sum chunk by chunk (_long_row_sums): ahead is not
    used there, each chunk prefetches the next.
    """
    cdef real row_max, row_min
    cdef double total, log_norm
    cdef Py_ssize_t n_at_max
    cdef bint long_row = n * <Py_ssize_t>sizeof(real) > LONG_ROW_BYTES
    cdef double drop[LONG_CHUNKS_MAX]
    if mask != NULL:
        if _row_copy_masked(x, mask, v, n) == 0:
            _row_fill(v, n, -INFINITY if log_output else 0)
            return
        x = v
    if long_row and not log_output:
        total = _long_row_sums(x, v, n, drop, &row_max, &n_at_max)
        _long_row_scale(v, n, drop, total)
    elif log_output:
        if long_row:
            total = _long_row_sums(x, <real*>NULL, n, NULL, &row_max, &n_at_max)
        else:
            row_max = _row_minmax(x, n, &row_min)
            total = _row_sum_exp_off_max(x, n, row_max, &n_at_max,
                                         _short_exp(row_min, row_max), ahead)
        # +inf in the row: the row is NaN, as softmax's is (inf - inf)
        log_norm = NAN if row_max == INFINITY else _log_normalizer(total, n_at_max)
        _row_log_normalize(x, v, n, row_max, log_norm, streaming)
    else:
        row_max = _row_minmax(x, n, &row_min)
        total = _row_exp_shifted_sum(x, v, n, row_max, _short_exp(row_min, row_max), ahead)
        _row_scale(v, n, total)
    if mask != NULL:
        _row_fill_masked(v, mask, n, -INFINITY if log_output else 0)


cdef inline real _row_logsumexp(const real* x, const unsigned char* mask, real* scratch,
                                Py_ssize_t n, const real* ahead=NULL) noexcept nogil:
    """log(sum(exp(x))) of one row; the masked path copies the row into scratch first.
    ahead: the next row, prefetched by the exponential pass (as in _softmax_rows)."""
    cdef real row_max, row_min
    cdef double total
    cdef Py_ssize_t n_at_max
    if mask != NULL:
        if _row_copy_masked(x, mask, scratch, n) == 0:
            return -INFINITY
        x = scratch
    if n * <Py_ssize_t>sizeof(real) > LONG_ROW_BYTES:
        total = _long_row_sums(x, <real*>NULL, n, NULL, &row_max, &n_at_max)
    else:
        row_max = _row_minmax(x, n, &row_min)
        total = _row_sum_exp_off_max(x, n, row_max, &n_at_max, _short_exp(row_min, row_max),
                                     ahead)
    return <real>(<double>row_max + _log_normalizer(total, n_at_max))


cdef inline void _row_sigsoftmax(const real* z, real* v, const unsigned char* mask,
                                 double* gap, Py_ssize_t n, bint log_output,
                                 bint streaming=False, const real* ahead=NULL) noexcept nogil:
    """v = sigsoftmax(z) or its log over one row, through the log-domain gap w - max(w).

    streaming: as in _row_softmax (log_sigsoftmax only).  ahead: as in _row_softmax
    (float rows and float64 log_sigsoftmax; float64 sigsoftmax has no such pass)."""
    cdef real z_max, z_min
    cdef double total
    cdef Py_ssize_t n_at_max
    cdef bint short_exp
    if mask != NULL:
        if _row_copy_masked(z, mask, v, n) == 0:
            _row_fill(v, n, -INFINITY if log_output else 0)
            return
        z = v
    # w is increasing in z, so the row's largest w belongs to its largest z.  w's slope
    # is in (1, 2), so every gap is >= 2 (min - max) (the factor 2 is never reached, which
    # leaves room for rounding): the exponential's short path applies when that does.
    z_max = _row_minmax(z, n, &z_min)
    short_exp = _short_exp[real](<real>(2.0 * (<double>z_min - <double>z_max)), 0)
    cdef float* gap_f = <float*>gap
    if real is float and not log_output and n > SHORT_ROW:
        # the terms as a product, without the gap's log1p (fs_simd.h): a third faster.
        # Rows of up to SHORT_ROW values keep the gaps below, the arithmetic fs_short.h's
        # lanes replay
        total = FS_sigsoftmax_terms_f32(z, v, n, z_max,
                                        short_exp and z_min >= -87.0 and z_max <= 87.0,
                                        <const float*>ahead)
        _row_scale(v, n, total)
    elif real is float:
        # float rows: gaps in float, 8 per vector (fs_simd.h), exponentials straight
        # into the output; the max's gap is exactly 0, +inf or NaN logits give NaN gaps
        FS_sigsoftmax_gap_f32f(z, gap_f, n, z_max, z_min >= -87.0 and z_max <= 87.0)
        if log_output:
            total = _row_sum_exp_off_max[float](gap_f, n, 0, &n_at_max, short_exp,
                                                <const float*>ahead)
            _row_log_normalize[float](gap_f, v, n, 0, _log_normalizer(total, n_at_max),
                                      streaming)
        else:
            total = _row_exp_shifted_sum[float](gap_f, v, n, 0, short_exp, <const float*>ahead)
            _row_scale(v, n, total)
    elif log_output:
        _row_sigsoftmax_gap(z, gap, n, z_max)
        total = _row_sum_exp_off_max(gap, n, 0.0, &n_at_max, short_exp, <const double*>ahead)
        # (gap - 0) - log_norm: the gap itself, less the normaliser
        _row_log_normalize[double](gap, <double*>v, n, 0.0,
                                   _log_normalizer(total, n_at_max), streaming)
    else:
        # exp(gap) as a product, without the gap's log1p (fs_simd.h); the sum in the
        # exponential loops' order
        FS_sigsoftmax_terms_f64(<const double*>z, <double*>v, n, z_max)
        _row_scale(v, n, FS_sum_as_exp_f64(<const double*>v, n))
    if mask != NULL:
        _row_fill_masked(v, mask, n, -INFINITY if log_output else 0)


# ---------------------------------------------------------------------------------------
# Parallel drivers (fused over the dtype)
# ---------------------------------------------------------------------------------------

cdef enum:
    SHORT_ROW = 32     # = FS_SHORT_MAX: rows this short take fs_short.h (one per lane)
    SHORT_GROUP = 256  # rows per scheduled block of fs_short.h's groups (8 float / 4 double rows)
    # log_softmax results this large use streaming stores: with the input they exceed
    # most of the 32 MiB L3 (measured on Zen 3: 4096x1000 and 64x50257 gain 10-30%;
    # results that stay cached would lose).  softmax would need its exponentials in a
    # row buffer first, which measured slower.
    STREAM_MIN_BYTES = 12 << 20
    # A row's exponential pass (bound by arithmetic) prefetches the next row, so that the
    # next max pass (bound by memory) finds it in cache.  Measured on Zen 3 at 2 threads:
    # 13-31% faster for rows of 2 KiB to 1 MiB (4096x1000, 64x50257, 16384x4096); rows of
    # 2 MiB and more lost (the prefetched row pushes the current one out of L3).
    PREFETCH_ROW_MAX_BYTES = 1 << 20
    # Input bytes per dynamically scheduled chunk of rows (see the design note): small
    # enough to even out two threads of which one is slowed, large enough that taking a
    # chunk (one atomic add) costs nothing.  Measured on Zen 3 at 2 threads against a
    # static split, interleaved in one process: medians 10-20% lower on 1000000x10 while
    # the machine was busy, the same minima while it was quiet.
    CHUNK_BYTES = 256 << 10


cdef inline Py_ssize_t _rows_per_chunk(Py_ssize_t row_bytes) noexcept nogil:
    """Rows per chunk of the dynamic schedule: about CHUNK_BYTES of input, and at least 4
    rows while a row prefetches the next one (_row_ahead), which a chunk boundary wastes
    when another thread takes that row (measured: 64x50257 float64 at one row per chunk
    was 10% slower than at four)."""
    cdef Py_ssize_t rows = CHUNK_BYTES // max(row_bytes, 1)
    if row_bytes <= PREFETCH_ROW_MAX_BYTES:
        return max(rows, 4)
    return max(rows, 1)


cdef inline const real* _row_ahead(const real* x, Py_ssize_t x_step, Py_ssize_t i,
                                   Py_ssize_t n_rows, Py_ssize_t n_cols) noexcept nogil:
    """The row after row i, for row i's exponential pass to prefetch, or NULL: none after
    the last row, none for rows longer than PREFETCH_ROW_MAX_BYTES."""
    if i + 1 >= n_rows or n_cols * <Py_ssize_t>sizeof(real) > PREFETCH_ROW_MAX_BYTES:
        return NULL
    return x + (i + 1) * x_step


cdef inline bint _streamed_result(cnp.ndarray out, object mask, bint log_output):
    """Whether a log output (log_softmax, log_sigsoftmax) of these rows is written with
    streaming stores: no mask, rows longer than the short-row lanes, a result of at least
    STREAM_MIN_BYTES."""
    return (log_output and mask is None and out.shape[1] > SHORT_ROW
            and cnp.PyArray_NBYTES(out) >= STREAM_MIN_BYTES)


cdef void _short_rows(const real* x, Py_ssize_t x_step, real* out, Py_ssize_t out_step,
                      Py_ssize_t n_rows, Py_ssize_t n_cols, int op, int n_threads) noexcept nogil:
    """Rows of n_cols <= SHORT_ROW values, one row per vector lane (fs_short.h): softmax,
    log_softmax, logsumexp, sigsoftmax, log_sigsoftmax (op 0-4)."""
    cdef Py_ssize_t n_tiles = (n_rows + SHORT_GROUP - 1) // SHORT_GROUP
    cdef Py_ssize_t t
    cdef Py_ssize_t chunk = max(1, _rows_per_chunk(n_cols * <Py_ssize_t>sizeof(real))
                                // SHORT_GROUP)
    if n_threads == 1:
        # no OpenMP region at all: even one with its `if` false cost 0.5 us a call (a
        # 2x10 float32 softmax took 0.66 us against 0.13 us for 1x10)
        for t in range(n_tiles):
            _short_tile(x, x_step, out, out_step, n_rows, n_cols, op, t)
        return
    for t in prange(n_tiles, schedule="dynamic", chunksize=chunk, num_threads=n_threads):
        _short_tile(x, x_step, out, out_step, n_rows, n_cols, op, t)


cdef inline void _short_tile(const real* x, Py_ssize_t x_step, real* out, Py_ssize_t out_step,
                             Py_ssize_t n_rows, Py_ssize_t n_cols, int op,
                             Py_ssize_t t) noexcept nogil:
    """Tile t (SHORT_GROUP rows from t * SHORT_GROUP on) of _short_rows."""
    cdef Py_ssize_t first = t * SHORT_GROUP
    cdef Py_ssize_t rows = min(SHORT_GROUP, n_rows - first)
    if real is float:
        FS_short_rows_f32(x + first * x_step, x_step, out + first * out_step, out_step,
                          rows, n_cols, op)
    else:
        FS_short_rows_f64(x + first * x_step, x_step, out + first * out_step, out_step,
                          rows, n_cols, op)


cdef void _softmax_rows(const real* x, Py_ssize_t x_step, real* out, Py_ssize_t out_step,
                        const unsigned char* mask, Py_ssize_t n_rows, Py_ssize_t n_cols,
                        bint log_output, int n_threads, bint streaming=False) noexcept nogil:
    """streaming: _streamed_result's answer (every thread fences after its rows)."""
    cdef Py_ssize_t i
    cdef Py_ssize_t chunk = _rows_per_chunk(n_cols * <Py_ssize_t>sizeof(real))
    if mask == NULL and n_cols <= SHORT_ROW and n_rows > 1:
        _short_rows(x, x_step, out, out_step, n_rows, n_cols, 1 if log_output else 0, n_threads)
        return
    if n_threads == 1:
        # no OpenMP region at all: a small call should not pay for entering one
        for i in range(n_rows):
            _row_softmax(x + i * x_step, out + i * out_step,
                         mask + i * n_cols if mask != NULL else NULL, n_cols, log_output,
                         streaming, _row_ahead(x, x_step, i, n_rows, n_cols))
        if streaming:
            FS_store_fence()
        return
    with parallel(num_threads=n_threads):
        for i in prange(n_rows, schedule="dynamic", chunksize=chunk):
            _row_softmax(x + i * x_step, out + i * out_step,
                         mask + i * n_cols if mask != NULL else NULL, n_cols, log_output,
                         streaming, _row_ahead(x, x_step, i, n_rows, n_cols))
        if streaming:
            FS_store_fence()


cdef void _sigsoftmax_rows(const real* z, Py_ssize_t z_step, real* out, Py_ssize_t out_step,
                           const unsigned char* mask, double* scratch, Py_ssize_t n_rows,
                           Py_ssize_t n_cols, bint log_output, int n_threads,
                           bint streaming=False) noexcept nogil:
    """streaming: as in _softmax_rows."""
    cdef Py_ssize_t i
    cdef Py_ssize_t chunk = _rows_per_chunk(n_cols * <Py_ssize_t>sizeof(real))
    cdef double* gap
    if mask == NULL and n_cols <= SHORT_ROW and n_rows > 1:
        _short_rows(z, z_step, out, out_step, n_rows, n_cols, 4 if log_output else 3, n_threads)
        return
    if n_threads == 1:
        for i in range(n_rows):
            _row_sigsoftmax(z + i * z_step, out + i * out_step,
                            mask + i * n_cols if mask != NULL else NULL,
                            scratch, n_cols, log_output, streaming,
                            _row_ahead(z, z_step, i, n_rows, n_cols))
        if streaming:
            FS_store_fence()
        return
    with parallel(num_threads=n_threads):
        gap = scratch + omp_get_thread_num() * n_cols
        for i in prange(n_rows, schedule="dynamic", chunksize=chunk):
            _row_sigsoftmax(z + i * z_step, out + i * out_step,
                            mask + i * n_cols if mask != NULL else NULL,
                            gap, n_cols, log_output, streaming,
                            _row_ahead(z, z_step, i, n_rows, n_cols))
        if streaming:
            FS_store_fence()


cdef void _logsumexp_rows(const real* x, Py_ssize_t x_step, real* out, Py_ssize_t out_step,
                          const unsigned char* mask, real* scratch, Py_ssize_t n_rows,
                          Py_ssize_t n_cols, int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef Py_ssize_t chunk = _rows_per_chunk(n_cols * <Py_ssize_t>sizeof(real))
    cdef real* row_copy
    if mask == NULL and n_cols <= SHORT_ROW and n_rows > 1:
        _short_rows(x, x_step, out, out_step, n_rows, n_cols, 2, n_threads)
        return
    if n_threads == 1:
        for i in range(n_rows):
            out[i * out_step] = _row_logsumexp(
                x + i * x_step, mask + i * n_cols if mask != NULL else NULL, scratch, n_cols,
                _row_ahead(x, x_step, i, n_rows, n_cols))
        return
    with parallel(num_threads=n_threads):
        row_copy = scratch + omp_get_thread_num() * n_cols
        for i in prange(n_rows, schedule="dynamic", chunksize=chunk):
            out[i * out_step] = _row_logsumexp(
                x + i * x_step, mask + i * n_cols if mask != NULL else NULL, row_copy, n_cols,
                _row_ahead(x, x_step, i, n_rows, n_cols))


# ---------------------------------------------------------------------------------------
# Python entry points: check the layout contract, then release the GIL
# ---------------------------------------------------------------------------------------

cdef Py_ssize_t _row_step(cnp.ndarray a, Py_ssize_t n_cols) except? -1:
    """Element step between rows of a 2-D array with contiguous rows (ValueError otherwise).

    `except?`: -1 is a valid step (reversed rows of one element), not an error marker.
    """
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(a)
    if cnp.PyArray_NDIM(a) != 2 or not cnp.PyArray_ISALIGNED(a):
        raise ValueError("kernel arrays must be aligned and 2-D")
    if n_cols > 1 and cnp.PyArray_STRIDE(a, 1) != itemsize:
        raise ValueError("kernel rows must be contiguous")
    if cnp.PyArray_STRIDE(a, 0) % itemsize != 0:
        raise ValueError("kernel row stride must be a multiple of the item size")
    return cnp.PyArray_STRIDE(a, 0) // itemsize


cdef const unsigned char* _mask_pointer(object mask, Py_ssize_t n_rows, Py_ssize_t n_cols) except? NULL:
    cdef cnp.ndarray m
    if mask is None:
        return NULL
    m = <cnp.ndarray?>mask
    if (cnp.PyArray_TYPE(m) not in (cnp.NPY_BOOL, cnp.NPY_UINT8) or cnp.PyArray_NDIM(m) != 2
            or m.shape[0] != n_rows or m.shape[1] != n_cols or not cnp.PyArray_IS_C_CONTIGUOUS(m)):
        raise ValueError("mask must be a C-contiguous bool array of the rows' shape")
    return <const unsigned char*>cnp.PyArray_DATA(m)


cdef int _float_type(cnp.ndarray x, cnp.ndarray out) except -1:
    cdef int typenum = cnp.PyArray_TYPE(x)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise TypeError("kernels take float32 or float64 arrays")
    if cnp.PyArray_TYPE(out) != typenum or not cnp.PyArray_ISNOTSWAPPED(x) \
            or not cnp.PyArray_ISNOTSWAPPED(out) or not cnp.PyArray_ISWRITEABLE(out):
        raise TypeError("kernel output must be a writeable native array of the input's dtype")
    return typenum


def softmax_rows(cnp.ndarray x not None, cnp.ndarray out not None, object mask,
                 bint log_output, int n_threads):
    """out[i] = softmax(x[i]) (log_softmax if log_output) for every row i; returns out."""
    cdef int typenum = _float_type(x, out)
    cdef Py_ssize_t n_rows = x.shape[0], n_cols = x.shape[1]
    if out.shape[0] != n_rows or out.shape[1] != n_cols:
        raise ValueError("kernel output shape differs from the input's")
    cdef Py_ssize_t x_step = _row_step(x, n_cols), out_step = _row_step(out, n_cols)
    cdef const unsigned char* mask_data = _mask_pointer(mask, n_rows, n_cols)
    if n_rows == 0 or n_cols == 0:
        return out
    n_threads = max(1, min(n_threads, n_rows))
    cdef bint streaming = _streamed_result(out, mask, log_output)
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _softmax_rows[float](<const float*>cnp.PyArray_DATA(x), x_step,
                                 <float*>cnp.PyArray_DATA(out), out_step, mask_data,
                                 n_rows, n_cols, log_output, n_threads, streaming)
    else:
        with nogil:
            _softmax_rows[double](<const double*>cnp.PyArray_DATA(x), x_step,
                                  <double*>cnp.PyArray_DATA(out), out_step, mask_data,
                                  n_rows, n_cols, log_output, n_threads, streaming)
    return out


def sigsoftmax_rows(cnp.ndarray x not None, cnp.ndarray out not None, object mask,
                    bint log_output, int n_threads):
    """out[i] = sigsoftmax(x[i]) (its log if log_output) for every row i; returns out."""
    cdef int typenum = _float_type(x, out)
    cdef Py_ssize_t n_rows = x.shape[0], n_cols = x.shape[1]
    if out.shape[0] != n_rows or out.shape[1] != n_cols:
        raise ValueError("kernel output shape differs from the input's")
    cdef Py_ssize_t x_step = _row_step(x, n_cols), out_step = _row_step(out, n_cols)
    cdef const unsigned char* mask_data = _mask_pointer(mask, n_rows, n_cols)
    if n_rows == 0 or n_cols == 0:
        return out
    n_threads = max(1, min(n_threads, n_rows))
    cdef cnp.ndarray scratch = np.empty(n_threads * n_cols, dtype=np.float64)
    cdef double* scratch_data = <double*>cnp.PyArray_DATA(scratch)
    cdef bint streaming = _streamed_result(out, mask, log_output)
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _sigsoftmax_rows[float](<const float*>cnp.PyArray_DATA(x), x_step,
                                    <float*>cnp.PyArray_DATA(out), out_step, mask_data,
                                    scratch_data, n_rows, n_cols, log_output, n_threads,
                                    streaming)
    else:
        with nogil:
            _sigsoftmax_rows[double](<const double*>cnp.PyArray_DATA(x), x_step,
                                     <double*>cnp.PyArray_DATA(out), out_step, mask_data,
                                     scratch_data, n_rows, n_cols, log_output, n_threads,
                                     streaming)
    return out


def logsumexp_rows(cnp.ndarray x not None, cnp.ndarray out not None, object mask, int n_threads):
    """out[i] = log(sum(exp(x[i]))) for every row i; out is 1-D of length n_rows."""
    cdef int typenum = _float_type(x, out)
    cdef Py_ssize_t n_rows = x.shape[0], n_cols = x.shape[1]
    cdef Py_ssize_t x_step = _row_step(x, n_cols)
    if cnp.PyArray_NDIM(out) != 1 or out.shape[0] != n_rows or not cnp.PyArray_ISALIGNED(out) \
            or cnp.PyArray_STRIDE(out, 0) % cnp.PyArray_ITEMSIZE(out) != 0:
        raise ValueError("logsumexp kernel output must be aligned, 1-D, one value per row")
    cdef Py_ssize_t out_step = cnp.PyArray_STRIDE(out, 0) // cnp.PyArray_ITEMSIZE(out)
    cdef const unsigned char* mask_data = _mask_pointer(mask, n_rows, n_cols)
    if n_rows == 0:
        return out
    if n_cols == 0:
        out[...] = -np.inf
        return out
    n_threads = max(1, min(n_threads, n_rows))
    cdef cnp.ndarray scratch = np.empty(
        n_threads * n_cols if mask is not None else 0, dtype=x.dtype)
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _logsumexp_rows[float](<const float*>cnp.PyArray_DATA(x), x_step,
                                   <float*>cnp.PyArray_DATA(out), out_step, mask_data,
                                   <float*>cnp.PyArray_DATA(scratch), n_rows, n_cols, n_threads)
    else:
        with nogil:
            _logsumexp_rows[double](<const double*>cnp.PyArray_DATA(x), x_step,
                                    <double*>cnp.PyArray_DATA(out), out_step, mask_data,
                                    <double*>cnp.PyArray_DATA(scratch), n_rows, n_cols, n_threads)
    return out


cdef inline void _transpose_block(const real* src, Py_ssize_t src_stride, real* dst,
                                  Py_ssize_t dst_stride, Py_ssize_t rows, Py_ssize_t cols,
                                  bint by_dst_rows) noexcept nogil:
    """dst[c, r] = src[r, c] for r < rows, c < cols: 8 x 8 (float) / 4 x 4 (double)
    vector blocks where they fit, element by element at the edges.

    The strided side (a slab of the caller's array, its rows in different pages where
    hardware prefetchers stop) is walked a whole row of the strip at a time, with its
    lines prefetched two blocks ahead: by source rows when reading a slab, by
    destination rows (by_dst_rows) when writing one back.
    """
    cdef Py_ssize_t b = 8 if real is float else 4
    cdef Py_ssize_t line = 64 // sizeof(real)
    cdef Py_ssize_t r, c, i, j, q
    cdef Py_ssize_t outer = cols if by_dst_rows else rows
    cdef Py_ssize_t inner_count = rows if by_dst_rows else cols
    cdef Py_ssize_t o = 0, p
    while o < outer:
        # prefetch the strided lines two blocks ahead
        for i in range(o + 2 * b, min(o + 3 * b, outer)):
            q = 0
            while q < inner_count:
                if by_dst_rows:
                    FS_prefetch_write(dst + i * dst_stride + q)
                else:
                    FS_prefetch(src + i * src_stride + q)
                q += line
        p = 0
        while p < inner_count:
            r = p if by_dst_rows else o
            c = o if by_dst_rows else p
            if r + b <= rows and c + b <= cols:
                if real is float:
                    FS_transpose8x8_f32(src + r * src_stride + c, src_stride,
                                        dst + c * dst_stride + r, dst_stride)
                else:
                    FS_transpose4x4_f64(src + r * src_stride + c, src_stride,
                                        dst + c * dst_stride + r, dst_stride)
            else:
                for i in range(r, min(r + b, rows)):
                    for j in range(c, min(c + b, cols)):
                        dst[j * dst_stride + i] = src[i * src_stride + j]
            p += b
        o += b


cdef inline void _write_back_streamed(const real* strip, Py_ssize_t n, real* out,
                                      Py_ssize_t inner, Py_ssize_t k) noexcept nogil:
    """out[r, c] = strip[c, r] for r < n, c < k (k <= 64 float / 32 double columns, a
    multiple of 8 / 4): blocks of 8 (4) rows are transposed into a small buffer, then
    written out whole, each row's part with streaming stores (whole cache lines: no read
    for ownership).  out's rows start on cache lines (the caller checks; k is then a
    multiple of 8 floats / 4 doubles)."""
    cdef Py_ssize_t b = 8 if real is float else 4
    cdef Py_ssize_t width = 64 if real is float else 32
    cdef real block[512]        # 8 x 64 floats / 4 x 32 doubles: 2 KiB / 1 KiB
    cdef Py_ssize_t o, p, i, j
    o = 0
    while o + b <= n:
        p = 0
        while p < k:
            if real is float:
                FS_transpose8x8_f32(strip + p * n + o, n, block + p, width)
            else:
                FS_transpose4x4_f64(strip + p * n + o, n, block + p, width)
            p += b
        for i in range(b):
            FS_stream_copy(out + (o + i) * inner, block + i * width, k * sizeof(real))
        o += b
    for i in range(o, n):
        for j in range(k):
            out[i * inner + j] = strip[j * n + i]


cdef inline void _column_unit(const real* x, real* out, real* lse, real* strip, Py_ssize_t n,
                              Py_ssize_t inner, Py_ssize_t k, int op, bint stream) noexcept nogil:
    """k columns (a few cache lines' width) of a slab of n rows, moved into k rows of
    `strip` (n values each), computed there by the row loops and moved back: the path of
    columns longer than LONG_ROW_BYTES and of builds without vector extensions.  A column
    thus gets exactly the bits its row gets in a transposed copy."""
    cdef Py_ssize_t c
    _transpose_block(x, inner, strip, n, n, k, False)
    for c in range(k):
        if op == 2:
            lse[c] = _row_logsumexp(strip + c * n, NULL, NULL, n)
        else:
            _row_softmax(strip + c * n, strip + c * n, NULL, n, op == 1)
    if op == 2:
        return
    if stream:
        _write_back_streamed(strip, n, out, inner, k)
    else:
        _transpose_block(strip, n, out, inner, k, n, True)


cdef void _columns(const real* x, real* out, real* lse, real* strips, Py_ssize_t strip_values,
                   Py_ssize_t width, Py_ssize_t n_outer, Py_ssize_t n, Py_ssize_t inner, int op,
                   int n_threads, bint stream, bint lanes) noexcept nogil:
    # a unit: `width` columns (whole cache lines) of one slab
    cdef Py_ssize_t per_slab = (inner + width - 1) // width
    cdef Py_ssize_t u
    cdef Py_ssize_t chunk = _rows_per_chunk(n * width * <Py_ssize_t>sizeof(real))
    cdef real* strip
    if n_threads == 1:
        # no OpenMP region at all (as _short_rows)
        for u in range(n_outer * per_slab):
            _column_work(x, out, lse, strips, width, per_slab, n, inner, op, stream, lanes, u)
        if stream:
            FS_store_fence()
        return
    with parallel(num_threads=n_threads):
        strip = strips + omp_get_thread_num() * strip_values
        for u in prange(n_outer * per_slab, schedule="dynamic", chunksize=chunk):
            _column_work(x, out, lse, strip, width, per_slab, n, inner, op, stream, lanes, u)
        if stream:
            FS_store_fence()


cdef inline void _column_work(const real* x, real* out, real* lse, real* strip,
                              Py_ssize_t width, Py_ssize_t per_slab, Py_ssize_t n,
                              Py_ssize_t inner, int op, bint stream, bint lanes,
                              Py_ssize_t u) noexcept nogil:
    """Unit u of _columns (this thread's strip)."""
    cdef Py_ssize_t o = u // per_slab
    cdef Py_ssize_t c = (u % per_slab) * width
    cdef Py_ssize_t k = min(width, inner - c)
    cdef const real* xs = x + o * n * inner + c
    cdef real* y = out + o * n * inner + c if out != NULL else NULL
    cdef real* s = lse + o * inner + c if lse != NULL else NULL
    if not lanes:
        _column_unit(xs, y, s, strip, n, inner, k, op, stream)
    elif real is float:
        FS_column_unit_f32(xs, inner, n, k, y, s, strip, op, stream)
    else:
        FS_column_unit_f64(xs, inner, n, k, y, s, strip, op, stream)


cdef void _move_strips(const real* x, real* rows, Py_ssize_t outer, Py_ssize_t n,
                       Py_ssize_t inner, bint back, int n_threads) noexcept nogil:
    """rows[(o inner + c) n + i] = x[(o n + i) inner + c] by strips of MOVE_STRIP columns
    of each slab, 8 x 8 (4 x 4) block transposes (_transpose_block); back: x from rows."""
    cdef Py_ssize_t per_slab = (inner + MOVE_STRIP - 1) // MOVE_STRIP
    cdef Py_ssize_t u
    if n_threads == 1:
        # no OpenMP region at all (the small calls' moves)
        for u in range(outer * per_slab):
            _move_strip(x, rows, n, inner, per_slab, back, u)
        return
    for u in prange(outer * per_slab, schedule="dynamic", num_threads=n_threads):
        _move_strip(x, rows, n, inner, per_slab, back, u)


cdef inline void _move_strip(const real* x, real* rows, Py_ssize_t n, Py_ssize_t inner,
                             Py_ssize_t per_slab, bint back, Py_ssize_t u) noexcept nogil:
    """Strip u of _move_strips."""
    cdef Py_ssize_t o = u // per_slab
    cdef Py_ssize_t c = (u % per_slab) * MOVE_STRIP
    cdef Py_ssize_t w = min(MOVE_STRIP, inner - c)
    if back:
        _transpose_block(rows + (o * inner + c) * n, n, <real*>x + o * n * inner + c,
                         inner, w, n, True)
    else:
        _transpose_block(x + o * n * inner + c, inner, rows + (o * inner + c) * n, n, n, w,
                         False)


def move_axis_last(cnp.ndarray x not None, cnp.ndarray rows not None, Py_ssize_t outer,
                   Py_ssize_t n, Py_ssize_t inner, bint back, int n_threads):
    """rows (outer * inner, n) = x (outer, n, inner) with its middle axis moved last, both
    C-contiguous, aligned, of one float dtype (back: x from rows).  NumPy's strided copy
    of a 4096x1000 float32 transpose took 19 ms; block transposes of column strips move
    whole cache lines on both sides."""
    cdef int typenum = _float_type(rows, x) if back else _float_type(x, rows)
    if (not cnp.PyArray_IS_C_CONTIGUOUS(x) or not cnp.PyArray_IS_C_CONTIGUOUS(rows)
            or not cnp.PyArray_ISALIGNED(x) or not cnp.PyArray_ISALIGNED(rows)
            or outer < 0 or n < 0 or inner < 0
            or cnp.PyArray_SIZE(x) != outer * n * inner
            or cnp.PyArray_SIZE(rows) != outer * n * inner):
        raise ValueError("move_axis_last needs C-contiguous arrays of outer * n * inner values")
    if outer * n * inner == 0:
        return rows
    n_threads = max(1, n_threads)
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _move_strips[float](<float*>cnp.PyArray_DATA(x), <float*>cnp.PyArray_DATA(rows),
                                outer, n, inner, back, n_threads)
    else:
        with nogil:
            _move_strips[double](<double*>cnp.PyArray_DATA(x), <double*>cnp.PyArray_DATA(rows),
                                 outer, n, inner, back, n_threads)
    return rows


def columns_forward(cnp.ndarray x not None, cnp.ndarray out not None, int op, int n_threads):
    """softmax (op 0), log_softmax (1) or logsumexp (2) along axis 1 of a C-contiguous
    (outer, n, inner) array, without moving that axis last: out is (outer, n, inner) for
    ops 0 and 1 (it may be x itself), (outer, inner) for op 2, C-contiguous.  n >= 1."""
    cdef int typenum = _float_type(x, out)
    if cnp.PyArray_NDIM(x) != 3 or not cnp.PyArray_IS_C_CONTIGUOUS(x) \
            or not cnp.PyArray_ISALIGNED(x) or not cnp.PyArray_IS_C_CONTIGUOUS(out) \
            or not cnp.PyArray_ISALIGNED(out) or x.shape[1] < 1 or not 0 <= op <= 2:
        raise ValueError("column kernels take aligned C-contiguous (outer, n, inner) arrays")
    cdef Py_ssize_t n_outer = x.shape[0], n = x.shape[1], inner = x.shape[2]
    if op == 2:
        if cnp.PyArray_NDIM(out) != 2 or out.shape[0] != n_outer or out.shape[1] != inner:
            raise ValueError("logsumexp column output must be (outer, inner)")
    elif cnp.PyArray_NDIM(out) != 3 or out.shape[0] != n_outer or out.shape[1] != n \
            or out.shape[2] != inner:
        raise ValueError("column output shape differs from the input's")
    if n_outer == 0 or inner == 0:
        return out
    n_threads = max(1, min(n_threads, n_outer * ((inner + 15) // 16)))
    cdef void* xd = cnp.PyArray_DATA(x)
    cdef void* od = cnp.PyArray_DATA(out)
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(x)
    # fs_columns.h's kernel where a column's row loop would not be a long row's
    cdef bint lanes = FS_COLUMN_LANES and n * itemsize <= LONG_ROW_BYTES
    # units of whole cache lines per row: as many as keep a unit's n rows (its buffer)
    # within 512 KiB per thread (L2 on Zen 3: 128 floats a row for n = 1000 measured a
    # little faster than 64; fewer lines a row read memory far slower), 256 KiB and 4
    # lines for the transposes (_write_back_streamed's block)
    cdef Py_ssize_t lines
    if lanes:
        lines = max(1, min(FS_COLUMN_UNIT_BYTES // 64, (512 * 1024) // (n * 64)))
    else:
        lines = max(1, min(4, (256 * 1024) // (n * 64)))
    cdef Py_ssize_t width = lines * 64 // itemsize
    # one slice per thread, each on its own 64-byte line (fs_columns.h's vectors are
    # aligned loads and stores)
    cdef Py_ssize_t strip_values = FS_column_buffer_values(n, width, itemsize) if lanes \
        else n * width
    strip_values = (strip_values * itemsize + 63) // 64 * 64 // itemsize
    cdef cnp.ndarray strips = np.empty(n_threads * strip_values * itemsize + 64, dtype=np.uint8)
    cdef char* sd = <char*>cnp.PyArray_DATA(strips)
    sd += (64 - <size_t>sd % 64) % 64
    # results far larger than the caches are written back with streaming stores (an
    # interleaved A/B on 1000x4096 measured 15% faster): by fs_columns.h, each row part's
    # whole lines (the partial lines at its ends stored as usual); by the transposes only
    # where every output row starts on a line (fastsoft's own results are 64-byte
    # aligned; NumPy's are only 16, and partial lines streamed out measured slower)
    cdef bint stream = (op != 2 and cnp.PyArray_NBYTES(out) >= STREAM_MIN_BYTES
                        and (lanes or ((<size_t>od) % 64 == 0 and (inner * itemsize) % 64 == 0)))
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _columns[float](<float*>xd, <float*>od if op != 2 else NULL,
                            <float*>od if op == 2 else NULL, <float*>sd, strip_values, width,
                            n_outer, n, inner, op, n_threads, stream, lanes)
    else:
        with nogil:
            _columns[double](<double*>xd, <double*>od if op != 2 else NULL,
                             <double*>od if op == 2 else NULL, <double*>sd, strip_values,
                             width, n_outer, n, inner, op, n_threads, stream, lanes)
    return out


cdef enum:
    SMALL_CALL_ELEMENTS = 1 << 15   # = fastsoft._config.PARALLEL_MIN_ELEMENTS: one thread
    SMALL_CALL_NOGIL = 1 << 12      # small calls this large release the GIL
    # a small call along a non-last axis moves its columns into rows and back
    # (_move_strips on the calling thread): 2.5-10x the full path's speed up to 2048
    # values, even at 4096, where the column kernel's passes take over
    SMALL_COLUMN_ELEMENTS = 1 << 11
    MOVE_STRIP = 64                 # columns per strip of move_axis_last's transposes


# The public forward and backward functions are the compiled functions below (and in
# _backward.pxi), renamed and documented as the Python functions they wrap
# (fastsoft._backend.dispatch): a small plain call is answered right here, any other goes
# to the routed Python function (the backend routing and the validated NumPy path).  A
# Python wrapper in front cost 150-250 ns of a 1 us call; a compiled class taking
# (*args, **kwargs) still built a tuple and a dict per call (25 ns, measured); compiled
# functions with these exact signatures build neither, and Cython's own argument errors
# name the function.
_ENTRY_NAMES = ("softmax", "log_softmax", "logsumexp", "sigsoftmax", "log_sigsoftmax",
                "softmax_backward", "log_softmax_backward", "sigsoftmax_backward",
                "log_sigsoftmax_backward", "logsumexp_backward", "cross_entropy")
cdef list _routed = [None] * len(_ENTRY_NAMES)    # the routed Python function of each


def small_call_entry(str name, routed):
    """The compiled public function `name`, with `routed` as its full path."""
    cdef int op = _ENTRY_NAMES.index(name)
    _routed[op] = routed
    return globals()[name]


cdef inline bint _plain(object a, int typenum, int ndim, const cnp.npy_intp* dims):
    """Whether `a` is an exact ndarray of this type and shape, C-contiguous, aligned and in
    native byte order: memory a kernel takes as it is, with nothing to validate."""
    cdef cnp.ndarray b
    cdef int k
    if not cnp.PyArray_CheckExact(a):
        return False
    b = <cnp.ndarray>a
    if (cnp.PyArray_TYPE(b) != typenum or cnp.PyArray_NDIM(b) != ndim
            or not cnp.PyArray_IS_C_CONTIGUOUS(b) or not cnp.PyArray_ISALIGNED(b)
            or not cnp.PyArray_ISNOTSWAPPED(b)):
        return False
    for k in range(ndim):
        if cnp.PyArray_DIM(b, k) != dims[k]:
            return False
    return True


cdef inline bint _plain_out(object out, int typenum, int ndim, const cnp.npy_intp* dims):
    """_plain, and writeable: an `out` the kernel can write without a check to raise."""
    return (_plain(out, typenum, ndim, dims)
            and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out))


cdef inline bint _same_or_apart(cnp.ndarray out, cnp.ndarray a):
    """Whether a kernel writing `out` may read `a` as it is: both plain, and either the
    same memory (an in-place call: every kernel reads an element before writing it) or
    none in common (the full path's rule, fastsoft._layout.output_rows)."""
    cdef char* o = cnp.PyArray_BYTES(out)
    cdef char* s = cnp.PyArray_BYTES(a)
    return (o == s and cnp.PyArray_NBYTES(out) == cnp.PyArray_NBYTES(a)
            or o + cnp.PyArray_NBYTES(out) <= s or s + cnp.PyArray_NBYTES(a) <= o)


cdef inline bint _apart(cnp.ndarray a, object b):
    """Whether ndarrays a and b (both plain) have no memory in common, by byte ranges."""
    cdef char* p = cnp.PyArray_BYTES(a)
    cdef char* q = cnp.PyArray_BYTES(<cnp.ndarray>b)
    return p + cnp.PyArray_NBYTES(a) <= q or q + cnp.PyArray_NBYTES(<cnp.ndarray>b) <= p


cdef inline const unsigned char* _small_mask(object where, cnp.ndarray x):
    """The data of `where` as the kernels' mask when it is a plain bool array of x's shape
    (the full path's mask, without its broadcast and copy), else NULL."""
    if where is None or not _plain(where, cnp.NPY_BOOL, cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x)):
        return NULL
    return <const unsigned char*>cnp.PyArray_DATA(<cnp.ndarray>where)


cdef inline bint _small_threads(object num_threads):
    """Whether `num_threads` needs no validation: None or an exact int >= 1 (a small call
    runs on the calling thread whatever it says, as the full path would)."""
    return num_threads is None or (type(num_threads) is int and num_threads >= 1)


cdef inline bint _last_axis(object axis, int ndim):
    """Whether `axis` is the exact int -1 or ndim - 1."""
    return type(axis) is int and (axis == -1 or axis == ndim - 1)


cdef inline object _entry(int op, object x, object axis, object out, object where,
                          object num_threads, object keepdims=False):
    """The call of public forward function `op`: the small path when it takes it, else the
    routed function (with `keepdims` for logsumexp, the one function that has it)."""
    cdef object result
    if keepdims is False or keepdims is True:
        result = _small_forward(x, op, axis, out, where, num_threads, keepdims is True)
        if result is not None:
            return result
    if op == 2:
        return _routed[2](x, axis, keepdims=keepdims, out=out, where=where,
                          num_threads=num_threads)
    return _routed[op](x, axis, out=out, where=where, num_threads=num_threads)


def softmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    return _entry(0, x, axis, out, where, num_threads)


def log_softmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    return _entry(1, x, axis, out, where, num_threads)


def sigsoftmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    return _entry(3, x, axis, out, where, num_threads)


def log_sigsoftmax(x, axis=-1, *, out=None, where=None, num_threads=None):
    return _entry(4, x, axis, out, where, num_threads)


def logsumexp(x, axis=-1, *, keepdims=False, out=None, where=None, num_threads=None):
    return _entry(2, x, axis, out, where, num_threads, keepdims)


cdef void _small_call_kernel(int typenum, int op, void* data, void* result,
                             const unsigned char* mask, double* scratch, char* rows,
                             Py_ssize_t outer, Py_ssize_t n, Py_ssize_t inner,
                             Py_ssize_t itemsize) noexcept nogil:
    """_small_forward's work: along the last axis (rows NULL) the kernels straight on the
    data; along another, through `rows` (2 * outer * n * inner values): x's (outer, n,
    inner) slabs moved into outer * inner rows of n, computed into the second half, moved
    back into the result (logsumexp's outer * inner results need no move)."""
    cdef Py_ssize_t size = outer * n * inner
    cdef char* computed = rows + size * itemsize
    if rows == NULL:
        _small_kernel(typenum, op, data, result, mask, scratch, outer * inner, n)
        return
    if typenum == cnp.NPY_FLOAT32:
        _move_strips[float](<float*>data, <float*>rows, outer, n, inner, False, 1)
    else:
        _move_strips[double](<double*>data, <double*>rows, outer, n, inner, False, 1)
    _small_kernel(typenum, op, rows, result if op == 2 else <void*>computed, mask, scratch,
                  outer * inner, n)
    if op == 2:
        return
    if typenum == cnp.NPY_FLOAT32:
        _move_strips[float](<float*>result, <float*>computed, outer, n, inner, True, 1)
    else:
        _move_strips[double](<double*>result, <double*>computed, outer, n, inner, True, 1)


cdef void _small_kernel(int typenum, int op, void* data, void* result,
                        const unsigned char* mask, double* scratch, Py_ssize_t n_rows,
                        Py_ssize_t n_cols) noexcept nogil:
    """_small_forward's arithmetic, on the calling thread."""
    if typenum == cnp.NPY_FLOAT32:
        if op <= 1:
            _softmax_rows[float](<float*>data, n_cols, <float*>result, n_cols, mask,
                                 n_rows, n_cols, op == 1, 1)
        elif op == 2:
            _logsumexp_rows[float](<float*>data, n_cols, <float*>result, 1, mask,
                                   <float*>scratch, n_rows, n_cols, 1)
        else:
            _sigsoftmax_rows[float](<float*>data, n_cols, <float*>result, n_cols, mask,
                                    scratch, n_rows, n_cols, op == 4, 1)
    else:
        if op <= 1:
            _softmax_rows[double](<double*>data, n_cols, <double*>result, n_cols, mask,
                                  n_rows, n_cols, op == 1, 1)
        elif op == 2:
            _logsumexp_rows[double](<double*>data, n_cols, <double*>result, 1, mask,
                                    scratch, n_rows, n_cols, 1)
        else:
            _sigsoftmax_rows[double](<double*>data, n_cols, <double*>result, n_cols, mask,
                                     scratch, n_rows, n_cols, op == 4, 1)


cdef inline cnp.ndarray _small_input(object x, object axis, object num_threads,
                                     int* any_axis=NULL):
    """x itself if it suits a small call along its last axis, else None: an exact
    ndarray of float32/float64 with at least one dimension and fewer than
    SMALL_CALL_ELEMENTS values (none: the full path returns empty results), C-contiguous,
    aligned, native byte order, `axis` the exact int -1 or ndim - 1, `num_threads` None
    or an exact int >= 1.  Such a call needs no validation beyond these checks and no
    layout work, and runs on the calling thread (as the full path would).  With
    `any_axis`, `axis` may be any exact int in range, returned there as 0..ndim-1."""
    if not cnp.PyArray_CheckExact(x) or not _small_threads(num_threads):
        return None
    cdef cnp.ndarray a = <cnp.ndarray>x
    cdef int typenum = cnp.PyArray_TYPE(a)
    cdef int ndim = cnp.PyArray_NDIM(a)
    cdef Py_ssize_t size = cnp.PyArray_SIZE(a)
    if ((typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64) or ndim == 0
            or size == 0 or size >= SMALL_CALL_ELEMENTS
            or not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISALIGNED(a)
            or not cnp.PyArray_ISNOTSWAPPED(a)):
        return None
    if _last_axis(axis, ndim):
        if any_axis != NULL:
            any_axis[0] = ndim - 1
        return a
    if any_axis == NULL or type(axis) is not int or not -ndim <= axis < ndim:
        return None
    any_axis[0] = axis % ndim
    return a


cdef object _small_forward(object x, int op, object axis, object out, object where,
                           object num_threads, bint keepdims):
    """The whole call fs.<op>(x, axis=axis, out=out, where=where, num_threads=num_threads)
    (logsumexp: and keepdims=keepdims) for a small, plain array along its last axis
    (_small_input), or None to take the full path.

    op: 0 softmax, 1 log_softmax, 2 logsumexp, 3 sigsoftmax, 4 log_sigsoftmax.  `out`, if
    given, must be plain and writeable (_plain_out) with the result's dtype and shape, and
    x's own memory or apart from it; `where`, if given, a plain bool array of x's shape
    (not broadcast).  Everything else returns None, and the full path validates it.  Tiny
    calls then cost about one allocation more than the arithmetic.
    """
    cdef int k = 0, i
    cdef cnp.ndarray a = _small_input(x, axis, num_threads, &k)
    if a is None:
        return None
    cdef const unsigned char* mask = _small_mask(where, a)
    if where is not None and mask == NULL:
        return None
    cdef int typenum = cnp.PyArray_TYPE(a)
    cdef int ndim = cnp.PyArray_NDIM(a)
    cdef Py_ssize_t size = cnp.PyArray_SIZE(a)
    cdef Py_ssize_t n_cols = cnp.PyArray_DIM(a, k)
    cdef Py_ssize_t n_rows = size // n_cols
    cdef double one_result[1]    # a 0-d logsumexp: the scalar is built without an array
    cdef void* data = cnp.PyArray_DATA(a)
    cdef void* result = <void*>one_result
    # the result's shape: x's, or for logsumexp x's without axis k (kept as 1)
    cdef int result_ndim = ndim
    cdef cnp.npy_intp* result_dims = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp kept[32]
    if k != ndim - 1 and (mask != NULL or ndim > 32 or size > SMALL_COLUMN_ELEMENTS):
        return None
    if op == 2 or k != ndim - 1:
        if ndim > 32:
            return None
        memcpy(kept, result_dims, ndim * sizeof(cnp.npy_intp))
        result_dims = kept
        if op == 2 and keepdims:
            kept[k] = 1
        elif op == 2:
            memmove(kept + k, kept + k + 1, (ndim - 1 - k) * sizeof(cnp.npy_intp))
            result_ndim = ndim - 1
    if out is not None:
        if not (_plain_out(out, typenum, result_ndim, result_dims)
                and _same_or_apart(<cnp.ndarray>out, a)
                and (where is None or _apart(<cnp.ndarray>out, where))):
            return None             # (the full path copies the mask first)
        result = cnp.PyArray_DATA(<cnp.ndarray>out)
    elif result_ndim > 0:
        out = cnp.PyArray_EMPTY(result_ndim, result_dims, typenum, 0)
        result = cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef double* scratch = NULL
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(a)
    cdef Py_ssize_t outer = 1, inner = size // n_cols
    cdef Py_ssize_t scratch_bytes = n_cols * sizeof(double) if (
        op >= 3 or (op == 2 and mask != NULL)) else 0
    cdef char* rows = NULL
    if k != ndim - 1:
        # along a non-last axis: the columns of each slab moved into rows of a buffer, the
        # row kernels, the rows moved back -- the bits of a transposed copy, which the
        # column kernel gives too (tests/test_kernel_paths.py)
        for i in range(k):
            outer *= cnp.PyArray_DIM(a, i)
        inner = size // (outer * n_cols)
        scratch_bytes += 2 * size * itemsize
    if scratch_bytes:
        # sigsoftmax's double row; a masked logsumexp's row copy (n_cols values at most);
        # the moved rows and their results
        scratch = <double*>PyMem_Malloc(scratch_bytes)
        if scratch == NULL:
            raise MemoryError()
    if k != ndim - 1:
        rows = <char*>scratch + (scratch_bytes - 2 * size * itemsize)
    if size >= SMALL_CALL_NOGIL:
        with nogil:
            _small_call_kernel(typenum, op, data, result, mask, scratch, rows, outer, n_cols,
                               inner, itemsize)
    else:
        # releasing and retaking the GIL would cost more than a few microseconds' work
        _small_call_kernel(typenum, op, data, result, mask, scratch, rows, outer, n_cols,
                           inner, itemsize)
    PyMem_Free(scratch)
    if out is None:
        # a NumPy scalar of the input's dtype, as the full path returns for a 0-d result
        return PyArray_Scalar(result, cnp.PyArray_DescrFromType(typenum), None)
    return out


include "_backward.pxi"
include "_loss.pxi"
include "_mixture.pxi"
