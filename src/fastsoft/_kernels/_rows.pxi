# Row primitives: the building blocks every kernel applies to one row of n contiguous values.
#
# Design:
# 1. Each helper works on raw pointers to one row and is `noexcept nogil`; it never
#    allocates and never fails.  Callers guarantee n >= 1 and valid memory.
# 2. Loops are written so that GCC vectorizes them without -ffast-math: elementwise loops
#    call only the branch-free functions of fs_math.h; reductions (max, sums) are the
#    explicit-lane C functions of fs_reduce.h, since a reduction through one accumulator
#    cannot be vectorized without reassociating floating-point sums.
# 3. Exponentials are fused with their sum in chunks of CHUNK values: the chunk is written
#    (or kept in a stack buffer) and then summed while it is still in L1.  Helpers that
#    read x and write v allow v == x (each element is read before it is written).
# 4. Sums of exponentials accumulate in double, also for float rows, so a row of 10^6
#    values loses no accuracy to the sum (float: exact to far below 2^-24; double: Kahan
#    lanes within a chunk, chunk totals joined by a compensated sum).
# 5. The max ignores NaN (a NaN never compares greater); NaN then propagates through the
#    sum, so a NaN anywhere makes its own row NaN and no other.

from libc.math cimport INFINITY, NAN, log1p

ctypedef fused real:
    float
    double

cdef enum:
    CHUNK = 256   # values exponentiated and summed while they stay in L1


cdef inline real _row_max(const real* x, Py_ssize_t n) noexcept nogil:
    """Largest non-NaN value of x[0:n]; -inf when there is none."""
    if real is float:
        return FS_max_f32(x, n)
    else:
        return FS_max_f64(x, n)


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


cdef inline double _sum_chunk(const real* x, Py_ssize_t n) noexcept nogil:
    """Sum of x[0:n] in double (float: plain double lanes; double: Kahan lanes)."""
    if real is float:
        return FS_sum_f32(x, n)
    else:
        return FS_sum_f64(x, n)


cdef inline void _exp_shifted_chunk(const real* x, real* e, Py_ssize_t n, real shift) noexcept nogil:
    """e[j] = exp(x[j] - shift) for a chunk; x and e may be the same buffer."""
    cdef Py_ssize_t j
    if real is float:
        for j in range(n):
            e[j] = FS_expf(x[j] - shift)
    else:
        for j in range(n):
            e[j] = FS_exp(x[j] - shift)


cdef inline double _row_exp_shifted_sum(const real* x, real* e, Py_ssize_t n, real shift) noexcept nogil:
    """e[j] = exp(x[j] - shift) (e may be x); returns the sum of the e[j]."""
    cdef double total = 0.0, compensation = 0.0
    cdef Py_ssize_t start = 0, length
    while start < n:
        length = n - start if n - start < CHUNK else CHUNK
        _exp_shifted_chunk(x + start, e + start, length, shift)
        _add_compensated(&total, &compensation, _sum_chunk(e + start, length))
        start += length
    return total + compensation


cdef inline double _row_sum_exp_off_max(const real* x, Py_ssize_t n, real row_max,
                                        Py_ssize_t* n_at_max) noexcept nogil:
    """Sum of exp(x[j] - row_max) over the x[j] != row_max, and the count of x[j] == row_max.

    Taking the max terms out of the sum lets the caller form log(sum) as
    log1p((n_at_max - 1) + returned_sum), accurate when the other terms are tiny
    (Blanchard, Higham & Higham 2021).  x is only read.
    """
    cdef real e[CHUNK]
    cdef double total = 0.0, compensation = 0.0
    cdef Py_ssize_t start = 0, length, j, ties = 0
    while start < n:
        length = n - start if n - start < CHUNK else CHUNK
        _exp_shifted_chunk(x + start, e, length, row_max)
        for j in range(length):
            # NaN != row_max, so a NaN reaches the sum and poisons it, as intended
            ties += x[start + j] == row_max
            e[j] = 0 if x[start + j] == row_max else e[j]
        _add_compensated(&total, &compensation, _sum_chunk(e, length))
        start += length
    n_at_max[0] = ties
    return total + compensation


cdef inline void _row_scale(real* v, Py_ssize_t n, double total) noexcept nogil:
    """v[j] /= total.  float rows multiply by the double reciprocal and round once."""
    cdef Py_ssize_t j
    cdef double inverse
    if real is float:
        inverse = 1.0 / total
        for j in range(n):
            v[j] = <float>(<double>v[j] * inverse)
    else:
        for j in range(n):
            v[j] = v[j] / total


cdef inline void _row_log_normalize(const real* x, real* v, Py_ssize_t n, real row_max,
                                    double log_norm) noexcept nogil:
    """v[j] = (x[j] - row_max) - log_norm (v may be x), evaluated in double, rounded once."""
    cdef Py_ssize_t j
    for j in range(n):
        v[j] = <real>((<double>x[j] - <double>row_max) - log_norm)


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
    """log(sum of exp(x - max)) from _row_sum_exp_off_max's two results."""
    return log1p(sum_off_max + <double>(n_at_max - 1))


cdef inline void _row_sigsoftmax_gap(const real* z, double* gap, Py_ssize_t n, real z_max) noexcept nogil:
    """gap[j] = w(z[j]) - w(z_max), where w(z) = 2z - softplus(z) = z + log(sigmoid(z)).

    log(sigmoid(z)) = min(z, 0) - log1p(exp(-|z|)): the unbounded part min(z, 0) is
    differenced exactly against the row max and only the bounded softplus tail
    log1p(exp(-|z|)) in [0, log 2] is evaluated, so the gap is accurate for logits
    anywhere in the dtype's range (rows near -300 or +1e30 included) and <= 0 since w
    increases with z.  Computed in double for both dtypes.
    """
    cdef double m = <double>z_max
    cdef double m_neg = m if m < 0 else 0.0
    cdef double m_abs = m if m >= 0 else -m
    cdef double m_tail = FS_log1p_unit(FS_exp(-m_abs))
    cdef double zj, zj_neg, zj_abs
    cdef Py_ssize_t j
    for j in range(n):
        zj = <double>z[j]
        zj_neg = zj if zj < 0 else 0.0
        zj_abs = zj if zj >= 0 else -zj
        gap[j] = ((zj - m) + (zj_neg - m_neg)) - (FS_log1p_unit(FS_exp(-zj_abs)) - m_tail)
