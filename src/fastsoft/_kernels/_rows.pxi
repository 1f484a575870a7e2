# Row primitives: the building blocks every kernel applies to one row of n contiguous values.
#
# Design:
# 1. Each helper works on raw pointers to one row and is `noexcept nogil`; it never
#    allocates and never fails.  Callers guarantee n >= 1 and valid memory.
# 2. The hot loops (exponentiate-and-sum, scale, log-normalise, sigsoftmax's gap) are the
#    explicit-vector C functions of fs_simd.h, and the max is fs_reduce.h's: GCC does not
#    auto-vectorize these loops as Cython emits them.  The remaining loops here are
#    cheap and only call the branch-free functions of fs_math.h.
# 3. Helpers that read x and write v allow v == x (each element is read before it is
#    written).
# 4. Sums of exponentials accumulate in double, also for float rows, so a row of 10^6
#    values loses no accuracy to the sum (float: exact to far below 2^-24; double: Kahan
#    lanes).
# 5. The max ignores NaN (a NaN never compares greater); NaN then propagates through the
#    sum, so a NaN anywhere makes its own row NaN and no other.

from libc.math cimport INFINITY, NAN, exp, expm1, log1p

ctypedef fused real:
    float
    double

cdef enum:
    CHUNK = 256   # values exponentiated and summed while they stay in L1
    # Rows longer than LONG_ROW_BYTES (more than L2) are taken in chunks of
    # LONG_CHUNK_BYTES: a chunk's max pass and its exponential pass run back to back while
    # it is in L2, against the chunk's own max, and one more step brings each chunk to the
    # row's max (_long_row_sums).  A whole-row max pass would read the row from memory
    # once more.  At most LONG_CHUNKS_MAX chunks (longer rows take longer chunks), so the
    # chunks' maxima and sums fit on the stack.
    LONG_ROW_BYTES = 1 << 20
    LONG_CHUNK_BYTES = 1 << 17
    LONG_CHUNKS_MAX = 256


cdef inline Py_ssize_t _long_row_chunk(Py_ssize_t n, Py_ssize_t itemsize) noexcept nogil:
    """Values per chunk of a long row: LONG_CHUNK_BYTES, or more (whole 64-byte lines)
    when the row would need more than LONG_CHUNKS_MAX of them."""
    cdef Py_ssize_t chunk = LONG_CHUNK_BYTES // itemsize
    cdef Py_ssize_t line = 64 // itemsize
    if n > chunk * LONG_CHUNKS_MAX:
        chunk = (n + LONG_CHUNKS_MAX - 1) // LONG_CHUNKS_MAX
        chunk = (chunk + line - 1) // line * line
    return chunk


cdef inline real _row_max(const real* x, Py_ssize_t n) noexcept nogil:
    """Largest non-NaN value of x[0:n]; -inf when there is none."""
    if real is float:
        return FS_max_f32(x, n)
    else:
        return FS_max_f64(x, n)


cdef inline real _row_minmax(const real* x, Py_ssize_t n, real* low) noexcept nogil:
    """Largest non-NaN value of x[0:n] (-inf when there is none); the smallest in *low."""
    if real is float:
        return FS_minmax_f32(x, n, low)
    else:
        return FS_minmax_f64(x, n, low)


cdef inline bint _short_exp(real low, real high) noexcept nogil:
    """Whether every x - high of a row whose values lie in [low, high] is in the
    exponential's short-path range (fs_simd.h); false for rows with infinities."""
    if real is float:
        return FS_short_exp_f32(low, high)
    else:
        return FS_short_exp_f64(low, high)


cdef inline void _add_compensated(double* total, double* compensation, double term) noexcept nogil:
    """Neumaier's compensated addition of `term` into (*total, *compensation).

    Once the total is infinite (or NaN) the compensation is left alone, since (s - inf) + inf
    would make it NaN: an infinite sum stays infinite.
    """
    cdef double t = total[0] + term
    if t - t != 0:
        pass
    elif (total[0] if total[0] >= 0 else -total[0]) >= (term if term >= 0 else -term):
        compensation[0] += (total[0] - t) + term
    else:
        compensation[0] += (term - t) + total[0]
    total[0] = t


cdef inline double _row_exp_shifted_sum(const real* x, real* e, Py_ssize_t n, real shift,
                                        bint short_exp, const real* ahead=NULL) noexcept nogil:
    """e[j] = exp(x[j] - shift) (e may be x); returns the sum of the e[j].  short_exp: the
    caller knows every x[j] - shift is in the short-path range (_row_minmax).  ahead: n
    values to prefetch meanwhile (the next row), or NULL; same bits either way."""
    if real is float:
        return FS_exp_store_sum_f32(x, e, n, shift, short_exp, ahead)
    else:
        return FS_exp_store_sum_f64(x, e, n, shift, short_exp, ahead)


cdef inline double _row_sum_exp_off_max(const real* x, Py_ssize_t n, real row_max,
                                        Py_ssize_t* n_at_max, bint short_exp,
                                        const real* ahead=NULL) noexcept nogil:
    """Sum of exp(x[j] - row_max) over the x[j] != row_max, and the count of x[j] == row_max.

    Taking the max terms out of the sum lets the caller form log(sum) as
    log1p((n_at_max - 1) + returned_sum), accurate when the other terms are tiny
    (Blanchard, Higham & Higham 2021).  x is only read; a NaN reaches the sum.  ahead: as
    in _row_exp_shifted_sum.
    """
    if real is float:
        return FS_exp_sum_off_max_f32(x, n, row_max, n_at_max, short_exp, ahead)
    else:
        return FS_exp_sum_off_max_f64(x, n, row_max, n_at_max, short_exp, ahead)


cdef inline double _row_exp_store_sum_off_max(const real* x, real* e, Py_ssize_t n,
                                              real row_max, Py_ssize_t* n_at_max,
                                              bint short_exp, const real* ahead=NULL) noexcept nogil:
    """e[j] = exp(x[j] - row_max) (e may be x), and _row_sum_exp_off_max's sum and count."""
    if real is float:
        return FS_exp_store_sum_off_max_f32(x, e, n, row_max, n_at_max, short_exp, ahead)
    else:
        return FS_exp_store_sum_off_max_f64(x, e, n, row_max, n_at_max, short_exp, ahead)


cdef inline void _row_scale(real* v, Py_ssize_t n, double total) noexcept nogil:
    """v[j] /= total.  float rows multiply by the double reciprocal and round once."""
    if real is float:
        FS_scale_f32(v, n, 1.0 / total)
    else:
        FS_divide_f64(v, n, total)


cdef inline void _row_log_normalize(const real* x, real* v, Py_ssize_t n, real row_max,
                                    double log_norm, bint streaming=False) noexcept nogil:
    """v[j] = (x[j] - row_max) - log_norm (v may be x): float rows in float (fs_simd.h),
    double rows in double.  streaming: v is written with streaming stores (results larger
    than the caches; same bits), and the caller fences."""
    if real is float:
        if streaming:
            FS_log_normalize_stream_f32(x, v, n, row_max, log_norm)
        else:
            FS_log_normalize_f32(x, v, n, row_max, log_norm)
    elif streaming:
        FS_log_normalize_stream_f64(x, v, n, row_max, log_norm)
    else:
        FS_log_normalize_f64(x, v, n, row_max, log_norm)


cdef inline void _row_fill(real* v, Py_ssize_t n, real value) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        v[j] = value


cdef inline Py_ssize_t _row_copy_masked(const real* x, const unsigned char* mask, real* v,
                                        Py_ssize_t n) noexcept nogil:
    """v[j] = x[j] where mask[j] else -inf; returns how many entries are unmasked.

    A masked entry set to -inf contributes exactly 0 to every sum and never wins the max,
    which is all the masked kernels need; x and v may be the same buffer.
    """
    cdef Py_ssize_t j, n_active = 0
    for j in range(n):
        n_active += mask[j] != 0
        v[j] = x[j] if mask[j] != 0 else -INFINITY
    return n_active


cdef inline void _row_fill_masked(real* v, const unsigned char* mask, Py_ssize_t n,
                                  real value) noexcept nogil:
    """v[j] = value where mask[j] is 0: masked entries are exact even when the row is NaN."""
    cdef Py_ssize_t j
    for j in range(n):
        v[j] = v[j] if mask[j] != 0 else value


cdef inline double _log_normalizer(double sum_off_max, Py_ssize_t n_at_max) noexcept nogil:
    """log(sum of exp(x - max)) from _row_sum_exp_off_max's two results (fs_simd.h's
    log1p, the one fs_short.h's lanes use)."""
    return FS_log1p_one(sum_off_max + <double>(n_at_max - 1))


cdef inline double _long_row_sums(const real* x, real* e, Py_ssize_t n, double* drop,
                                  real* row_max, Py_ssize_t* n_at_max,
                                  bint count_ties=False) noexcept nogil:
    """The max and the sum of exponentials of a long row (LONG_ROW_BYTES), chunk by chunk.

    Each chunk is exponentiated against its own max m_c right after its max pass, while
    it is still in L2 (and the next chunk is prefetched meanwhile); the row's max M is the
    largest m_c, and each chunk's sum is brought to it by exp(m_c - M) in double, added
    with compensation.  Returns the sum; *row_max receives M.

    e == NULL (the logs): the sum leaves out the values equal to M and *n_at_max counts
    them, as _row_sum_exp_off_max.  e != NULL (softmax): e[j] = exp(x[j] - m_c) for the
    chunks with a finite max, and drop[c] = M - m_c (+inf for a chunk of only -inf) for
    _long_row_scale; the sum keeps every term (*n_at_max = 0).  Chunks of only -inf
    (masked padding) add 0 and keep their values.  e != NULL and count_ties
    (cross-entropy, which wants both): the exponentials are stored and the sum and count
    are the logs'.  With e != NULL the sum is NaN when the row is: a NaN, a +inf, or only
    -inf.
    """
    cdef Py_ssize_t chunk = _long_row_chunk(n, sizeof(real))
    cdef Py_ssize_t n_chunks = (n + chunk - 1) // chunk
    cdef double sums[LONG_CHUNKS_MAX]
    cdef Py_ssize_t ties[LONG_CHUNKS_MAX]
    cdef real maxes[LONG_CHUNKS_MAX]
    cdef Py_ssize_t c, start, k, at_max = 0
    cdef real low, top = -INFINITY
    cdef double total = 0, compensation = 0
    cdef const real* ahead
    for c in range(n_chunks):
        start = c * chunk
        k = min(chunk, n - start)
        maxes[c] = _row_minmax(x + start, k, &low)
        ties[c] = 0
        ahead = x + start + chunk if c + 1 < n_chunks else NULL
        if e == NULL or maxes[c] == -INFINITY:
            # the off-max sum of a chunk of -inf (and NaN) is 0 (or NaN): its values
            # all equal the max, or are NaN; below the row's max its ties weigh 0
            sums[c] = _row_sum_exp_off_max(x + start, k, maxes[c], &ties[c],
                                           _short_exp(low, maxes[c]), ahead)
        elif count_ties:
            sums[c] = _row_exp_store_sum_off_max(x + start, e + start, k, maxes[c], &ties[c],
                                                 _short_exp(low, maxes[c]), ahead)
        else:
            sums[c] = _row_exp_shifted_sum(x + start, e + start, k, maxes[c],
                                           _short_exp(low, maxes[c]), ahead)
        if maxes[c] > top:
            top = maxes[c]
    for c in range(n_chunks):
        if maxes[c] == top:
            _add_compensated(&total, &compensation, sums[c])
            at_max += ties[c]
        else:
            _add_compensated(&total, &compensation,
                             (sums[c] + <double>ties[c]) * exp(<double>maxes[c] - <double>top))
        if drop != NULL:
            drop[c] = <double>top - <double>maxes[c]
    row_max[0] = top
    n_at_max[0] = at_max
    if e != NULL and (top == INFINITY or top == -INFINITY):
        return NAN      # a +inf, or only -inf: the row is NaN, as in the row loops
    return total + compensation if total - total == 0 else total


cdef inline void _long_row_scale(real* e, Py_ssize_t n, const double* drop,
                                 double total) noexcept nogil:
    """The last step of softmax (and sigsoftmax) on a long row after its chunk sums:
    chunk c's exponentials, taken drop[c] below the row's max, are divided by
    total * exp(drop[c]), as _row_scale divides (rounded once); chunks with drop +inf (only
    -inf) become 0; a NaN total makes the row NaN."""
    cdef Py_ssize_t chunk = _long_row_chunk(n, sizeof(real))
    cdef Py_ssize_t c, start, k, j
    cdef double divisor, factor
    if total != total:
        _row_fill(e, n, NAN)
        return
    for c in range((n + chunk - 1) // chunk):
        start = c * chunk
        k = min(chunk, n - start)
        if drop[c] == INFINITY:
            _row_fill(e + start, k, 0)
        else:
            # total exp(drop) as total + total expm1(drop): rounded once, where the
            # product would round exp's result too (chunk maxima close to the row's);
            # exactly total for the chunks holding the max (drop 0)
            divisor = total + total * expm1(drop[c])
            if divisor < 1e300:
                _row_scale(e + start, k, divisor)
            else:
                # every value of the chunk is far below the dtype's smallest normal
                factor = exp(-drop[c]) / total
                for j in range(start, start + k):
                    e[j] = <real>(<double>e[j] * factor)


cdef inline void _row_sigsoftmax_gap(const real* z, double* gap, Py_ssize_t n, real z_max) noexcept nogil:
    """gap[j] = w(z[j]) - w(z_max), where w(z) = 2z - softplus(z) = z + log(sigmoid(z)).

    log(sigmoid(z)) = min(z, 0) - log1p(exp(-|z|)): the unbounded part min(z, 0) is
    differenced exactly against the row max and only the bounded softplus tail
    log1p(exp(-|z|)) in [0, log 2] is evaluated, so the gap is accurate for logits
    anywhere in the dtype's range (rows near -300 or +1e30 included) and <= 0 since w
    increases with z.  Computed in double for both dtypes (fs_simd.h).
    """
    if real is float:
        FS_sigsoftmax_gap_f32(z, gap, n, z_max)
    else:
        FS_sigsoftmax_gap_f64(z, gap, n, z_max)
