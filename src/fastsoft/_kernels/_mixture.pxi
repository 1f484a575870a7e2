# Mixtures of (sig)softmax: log P = logsumexp_k(log pi_k + log f(z_k)), its cross-entropy
# and both gradients, one row (a K x C block of logits and K prior logits) at a time.
#
# Design:
# 1. Everything stays in the log domain: log pi = log_(sig)softmax(prior row); for each
#    component k the gaps d_kj = u(z_kj) - max_j u(z_kj) (u(z) = z, or the sigsoftmax
#    logit w(z) = 2z - softplus(z)) go into a per-thread double scratch of K*C, with the
#    component's log normaliser L_k = log sum_j exp(d_kj) (max term taken out, log1p).
#    Then log f_k(j) = d_kj - L_k and b_kj = log pi_k + log f_k(j) <= 0; log P_j is the
#    logsumexp over k of b_kj with its max term taken out as well.  No probability is ever
#    multiplied in linear space and no epsilon is added before a log.
# 2. A component whose prior is exactly 0 (log pi_k = -inf) is skipped: its logits are
#    never read and its gradient is 0.  That is the masked-component case; every other
#    special value follows the library's rules (NaN or +inf anywhere in a used component
#    or in the prior makes the row NaN; a -inf logit is a class of probability 0).
# 3. Index targets only need the target column of each component after the normaliser
#    pass: responsibilities r_k = exp(b_kt - log P_t), then one pass writing
#    grad z_kj = s r_k (f_kj - [j = t]) (times 2 - sigmoid(z_kj) for sigsoftmax) and
#    grad rho_k = s (pi_k - r_k) (times 2 - sigmoid(rho_k)).  Probability targets q need
#    log P_j for every j, R_k = sum_j q_j r_kj and A = sum_j q_j:
#    grad z_kj = s (R_k f_kj - q_j r_kj) (times the factor), grad rho_k = s (A pi_k - R_k).
# 4. Parallel over rows in dynamic chunks (_core.pxi's design note 2): the result depends
#    neither on the thread count nor on the schedule; all scratch is one slice per thread
#    of a buffer allocated before nogil.

cdef inline void _mix_log_prior(const real* rho, Py_ssize_t K, bint sigsoftmax,
                                double* gap, double* log_prior) noexcept nogil:
    """log_prior[k] = log pi_k of one row of prior logits; gap is K doubles of scratch."""
    cdef real rho_max = _row_max(rho, K)
    cdef Py_ssize_t k, ties
    cdef double log_norm, sum_off_max
    if sigsoftmax:
        _row_sigsoftmax_gap(rho, gap, K, rho_max)
    else:
        for k in range(K):
            gap[k] = <double>rho[k] - <double>rho_max
    # an all -inf or +inf prior gives NaN gaps (inf - inf), hence a NaN row.  Two
    # statements: C leaves the order of a call's arguments unspecified, and `ties` is
    # written by the sum.
    sum_off_max = _row_sum_exp_off_max(gap, K, 0.0, &ties, False)
    log_norm = _log_normalizer(sum_off_max, ties)
    for k in range(K):
        log_prior[k] = gap[k] - log_norm


cdef inline double _mix_component_gaps(const real* z, Py_ssize_t C, bint sigsoftmax,
                                       double* gap) noexcept nogil:
    """gap[j] = u(z_j) - max u(z) for one component row; returns its log normaliser L."""
    cdef real z_max = _row_max(z, C)
    cdef Py_ssize_t j, ties
    cdef double sum_off_max
    if sigsoftmax:
        _row_sigsoftmax_gap(z, gap, C, z_max)
    else:
        for j in range(C):
            gap[j] = <double>z[j] - <double>z_max
    sum_off_max = _row_sum_exp_off_max(gap, C, 0.0, &ties, False)   # sets ties: its own statement
    return _log_normalizer(sum_off_max, ties)


cdef inline void _mix_normalizers(const real* z, Py_ssize_t comp_step, Py_ssize_t K,
                                  Py_ssize_t C, bint sigsoftmax, const double* log_prior,
                                  double* gaps, double* log_norm) noexcept nogil:
    """Gaps and log normalisers of every component with a non-zero prior (step 1)."""
    cdef Py_ssize_t k
    for k in range(K):
        log_norm[k] = 0.0
        if log_prior[k] != -INFINITY:
            log_norm[k] = _mix_component_gaps(z + k * comp_step, C, sigsoftmax, gaps + k * C)


cdef inline void _mix_log_prob_all(const double* gaps, const double* log_prior,
                                   const double* log_norm, Py_ssize_t K, Py_ssize_t C,
                                   double* top, double* rest, double* ties) noexcept nogil:
    """top[j] = log P_j for every class (rest and ties are C doubles of scratch each).

    Components are visited in the outer loop so the inner loops run over contiguous gaps.
    """
    cdef Py_ssize_t k, j
    cdef double offset, b, e, total
    for j in range(C):
        top[j] = -INFINITY
        rest[j] = 0.0
        ties[j] = 0.0
    for k in range(K):
        if log_prior[k] == -INFINITY:
            continue
        offset = log_prior[k] - log_norm[k]
        for j in range(C):
            b = offset + gaps[k * C + j]
            # NaN never wins, as in _row_max; it reaches the sum below and poisons it
            top[j] = b if b > top[j] else top[j]
    for k in range(K):
        if log_prior[k] == -INFINITY:
            continue
        offset = log_prior[k] - log_norm[k]
        for j in range(C):
            b = offset + gaps[k * C + j]
            e = FS_exp(b - top[j])
            ties[j] += 1.0 if b == top[j] else 0.0
            rest[j] += 0.0 if b == top[j] else e
    # the log1p's arguments (ties >= 1 wherever the max is finite), then fs_simd.h's
    # vector log1p over all of them: libm's, one call per class, took a third of a
    # 1x3x1000 log_mixture
    for j in range(C):
        ties[j] = rest[j] + (ties[j] - 1.0) if top[j] != -INFINITY else 0.0
    FS_log1p_array(ties, ties, C)
    for j in range(C):
        # a class of probability 0 in every component is -inf, not the NaN of -inf - -inf;
        # a max of -inf can also mean that every term was NaN, which `rest` then holds
        top[j] = top[j] + (ties[j] if top[j] != -INFINITY else rest[j])


cdef inline double _mix_log_prob_at(const double* gaps, const double* log_prior,
                                    const double* log_norm, Py_ssize_t K, Py_ssize_t C,
                                    Py_ssize_t t, double* b) noexcept nogil:
    """log P_t of one class; leaves b[k] = log pi_k + log f_k(t) (-inf if skipped)."""
    cdef Py_ssize_t k
    cdef double top = -INFINITY, rest = 0.0, ties = 0.0
    cdef bint any_nan = False
    for k in range(K):
        b[k] = -INFINITY
        if log_prior[k] != -INFINITY:
            b[k] = (log_prior[k] - log_norm[k]) + gaps[k * C + t]
        any_nan = any_nan or b[k] != b[k]
        top = b[k] if b[k] > top else top
    if any_nan:
        return NAN
    if top == -INFINITY:
        return -INFINITY
    for k in range(K):
        if b[k] == top:
            ties += 1.0
        else:
            rest += FS_exp(b[k] - top)
    return top + FS_log1p_one(rest + (ties - 1.0))     # FS_log1p_array's bits


cdef inline void _mix_prior_grad(const real* rho, Py_ssize_t K, bint sigsoftmax,
                                 const double* log_prior, const double* weighted_resp,
                                 double mass, double scale, real* grad) noexcept nogil:
    """grad rho_k = scale (mass pi_k - weighted_resp_k), times 2 - sigmoid(rho_k)."""
    cdef Py_ssize_t k
    cdef double value
    for k in range(K):
        value = scale * (mass * FS_exp(log_prior[k]) - weighted_resp[k])
        if sigsoftmax:
            value = value * (2.0 - FS_sigmoid(<double>rho[k]))
        grad[k] = <real>value


cdef inline void _row_log_mixture(const real* z, Py_ssize_t comp_step, const real* rho,
                                  Py_ssize_t K, Py_ssize_t C, bint sigsoftmax,
                                  double* scratch, real* out) noexcept nogil:
    """out[j] = log P_j for one row.  scratch: K*C + 3C + 3K doubles."""
    cdef double* gaps = scratch
    cdef double* top = gaps + K * C
    cdef double* rest = top + C
    cdef double* ties = rest + C
    cdef double* log_prior = ties + C
    cdef double* log_norm = log_prior + K
    cdef double* prior_gap = log_norm + K
    cdef Py_ssize_t j
    _mix_log_prior(rho, K, sigsoftmax, prior_gap, log_prior)
    _mix_normalizers(z, comp_step, K, C, sigsoftmax, log_prior, gaps, log_norm)
    _mix_log_prob_all(gaps, log_prior, log_norm, K, C, top, rest, ties)
    for j in range(C):
        out[j] = <real>top[j]


cdef inline double _row_mixture_ce_index(
        const real* z, Py_ssize_t comp_step, const real* rho,     # IN: K x C logits, K priors
        Py_ssize_t K, Py_ssize_t C, Py_ssize_t t, bint sigsoftmax,
        double* scratch,                                          # K*C + 3C + 3K doubles
        real* grad, Py_ssize_t grad_comp_step, real* grad_rho,    # OUT (NULL: loss only)
        double scale) noexcept nogil:
    """-log P_t of one row with an index target, and scale times its gradients."""
    cdef double* gaps = scratch
    cdef double* resp = gaps + K * C + 3 * C
    cdef double* log_prior = resp
    cdef double* log_norm = log_prior + K
    cdef double* b = log_norm + K
    cdef double log_p, r, factor
    cdef Py_ssize_t k, j
    cdef const real* zk
    cdef real* gk
    _mix_log_prior(rho, K, sigsoftmax, b, log_prior)
    _mix_normalizers(z, comp_step, K, C, sigsoftmax, log_prior, gaps, log_norm)
    log_p = _mix_log_prob_at(gaps, log_prior, log_norm, K, C, t, b)
    if grad == NULL:
        return -log_p
    for k in range(K):
        gk = grad + k * grad_comp_step
        if log_prior[k] == -INFINITY:
            _row_fill(gk, C, 0)
            b[k] = 0.0
            continue
        zk = z + k * comp_step
        # the responsibility (posterior of component k given the target); a target of
        # probability 0 under the whole mixture gives NaN (0/0), as documented
        r = FS_exp(b[k] - log_p)
        b[k] = r
        if sigsoftmax:
            for j in range(C):
                factor = scale * r * (2.0 - FS_sigmoid(<double>zk[j]))
                gk[j] = <real>(factor * FS_exp(gaps[k * C + j] - log_norm[k]))
            gk[t] = <real>(scale * r * (2.0 - FS_sigmoid(<double>zk[t]))
                           * (FS_exp(gaps[k * C + t] - log_norm[k]) - 1.0))
        else:
            factor = scale * r
            for j in range(C):
                gk[j] = <real>(factor * FS_exp(gaps[k * C + j] - log_norm[k]))
            gk[t] = <real>(factor * (FS_exp(gaps[k * C + t] - log_norm[k]) - 1.0))
    _mix_prior_grad(rho, K, sigsoftmax, log_prior, b, 1.0, scale, grad_rho)
    return -log_p


cdef inline double _row_mixture_ce_prob(
        const real* z, Py_ssize_t comp_step, const real* rho,     # IN: K x C logits, K priors
        const real* q,                                            # IN: C target probabilities
        Py_ssize_t K, Py_ssize_t C, bint sigsoftmax,
        double* scratch,                                          # K*C + 3C + 3K doubles
        real* grad, Py_ssize_t grad_comp_step, real* grad_rho,    # OUT (NULL: loss only)
        double scale) noexcept nogil:
    """-sum_j q_j log P_j of one row, and scale times its gradients."""
    cdef double* gaps = scratch
    cdef double* log_p = gaps + K * C
    cdef double* terms = log_p + C
    cdef double* ties = terms + C
    cdef double* log_prior = ties + C
    cdef double* log_norm = log_prior + K
    cdef double* weighted_resp = log_norm + K
    cdef double loss, mass, offset, R, qj, factor
    cdef Py_ssize_t k, j
    cdef const real* zk
    cdef real* gk
    _mix_log_prior(rho, K, sigsoftmax, weighted_resp, log_prior)
    _mix_normalizers(z, comp_step, K, C, sigsoftmax, log_prior, gaps, log_norm)
    _mix_log_prob_all(gaps, log_prior, log_norm, K, C, log_p, terms, ties)
    for j in range(C):
        # 0 * log 0 counts as 0: a zero target never turns a -inf log P into NaN
        terms[j] = 0.0 if q[j] == 0 else -(<double>q[j] * log_p[j])
    loss = FS_sum_f64(terms, C)
    if grad == NULL:
        return loss
    for j in range(C):
        ties[j] = <double>q[j]
    mass = FS_sum_f64(ties, C)
    for k in range(K):
        gk = grad + k * grad_comp_step
        weighted_resp[k] = 0.0
        if log_prior[k] == -INFINITY:
            _row_fill(gk, C, 0)
            continue
        zk = z + k * comp_step
        offset = log_prior[k] - log_norm[k]
        # terms[j] = q_j r_kj, the target-weighted responsibilities of component k
        for j in range(C):
            qj = <double>q[j]
            terms[j] = 0.0 if qj == 0 else qj * FS_exp((offset + gaps[k * C + j]) - log_p[j])
        R = FS_sum_f64(terms, C)
        weighted_resp[k] = R
        if sigsoftmax:
            for j in range(C):
                factor = scale * (2.0 - FS_sigmoid(<double>zk[j]))
                gk[j] = <real>(factor * (R * FS_exp(gaps[k * C + j] - log_norm[k]) - terms[j]))
        else:
            for j in range(C):
                gk[j] = <real>(scale * (R * FS_exp(gaps[k * C + j] - log_norm[k]) - terms[j]))
    _mix_prior_grad(rho, K, sigsoftmax, log_prior, weighted_resp, mass, scale, grad_rho)
    return loss


# ---------------------------------------------------------------------------------------
# Parallel drivers

cdef void _log_mixture_rows(const real* z, Py_ssize_t z_step, Py_ssize_t comp_step,
                            const real* rho, real* out, Py_ssize_t out_step,
                            Py_ssize_t n_rows, Py_ssize_t K, Py_ssize_t C, bint sigsoftmax,
                            double* scratch, Py_ssize_t scratch_per_thread,
                            int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef Py_ssize_t chunk = _rows_per_chunk(K * C * <Py_ssize_t>sizeof(real))
    cdef double* work
    if n_threads == 1:
        # no OpenMP region at all (as _short_rows)
        for i in range(n_rows):
            _row_log_mixture(z + i * z_step, comp_step, rho + i * K, K, C, sigsoftmax,
                             scratch, out + i * out_step)
        return
    with parallel(num_threads=n_threads):
        work = scratch + omp_get_thread_num() * scratch_per_thread
        for i in prange(n_rows, schedule="dynamic", chunksize=chunk):
            _row_log_mixture(z + i * z_step, comp_step, rho + i * K, K, C, sigsoftmax,
                             work, out + i * out_step)


cdef void _mixture_ce_rows(const real* z, Py_ssize_t z_step, Py_ssize_t comp_step,
                           const real* rho, const long long* targets, long long ignore_index,
                           const real* q, Py_ssize_t q_step,
                           Py_ssize_t n_rows, Py_ssize_t K, Py_ssize_t C, bint sigsoftmax,
                           double* scratch, Py_ssize_t scratch_per_thread, double* losses,
                           real* grad, Py_ssize_t grad_step, Py_ssize_t grad_comp_step,
                           real* grad_rho, double scale, int n_threads) noexcept nogil:
    cdef Py_ssize_t i
    cdef Py_ssize_t chunk = _rows_per_chunk(K * C * <Py_ssize_t>sizeof(real))
    cdef double* work
    if n_threads == 1:
        # no OpenMP region at all (as _short_rows)
        for i in range(n_rows):
            _mixture_ce_row(z, z_step, comp_step, rho, targets, ignore_index, q, q_step, K, C,
                            sigsoftmax, scratch, losses, grad, grad_step, grad_comp_step,
                            grad_rho, scale, i)
        return
    with parallel(num_threads=n_threads):
        work = scratch + omp_get_thread_num() * scratch_per_thread
        for i in prange(n_rows, schedule="dynamic", chunksize=chunk):
            _mixture_ce_row(z, z_step, comp_step, rho, targets, ignore_index, q, q_step, K, C,
                            sigsoftmax, work, losses, grad, grad_step, grad_comp_step,
                            grad_rho, scale, i)


cdef inline void _mixture_ce_row(const real* z, Py_ssize_t z_step, Py_ssize_t comp_step,
                                 const real* rho, const long long* targets,
                                 long long ignore_index, const real* q, Py_ssize_t q_step,
                                 Py_ssize_t K, Py_ssize_t C, bint sigsoftmax, double* work,
                                 double* losses, real* grad, Py_ssize_t grad_step,
                                 Py_ssize_t grad_comp_step, real* grad_rho, double scale,
                                 Py_ssize_t i) noexcept nogil:
    """Row i of _mixture_ce_rows; work: this thread's scratch."""
    cdef Py_ssize_t k
    cdef real* grad_row = grad + i * grad_step if grad != NULL else NULL
    cdef real* grad_rho_row = grad_rho + i * K if grad != NULL else NULL
    if targets != NULL and targets[i] == ignore_index:
        losses[i] = 0.0
        if grad_row != NULL:
            for k in range(K):
                _row_fill(grad_row + k * grad_comp_step, C, 0)
            _row_fill(grad_rho_row, K, 0)
    elif targets != NULL:
        losses[i] = _row_mixture_ce_index(
            z + i * z_step, comp_step, rho + i * K, K, C, targets[i], sigsoftmax,
            work, grad_row, grad_comp_step, grad_rho_row, scale)
    else:
        losses[i] = _row_mixture_ce_prob(
            z + i * z_step, comp_step, rho + i * K, q + i * q_step, K, C, sigsoftmax,
            work, grad_row, grad_comp_step, grad_rho_row, scale)


# ---------------------------------------------------------------------------------------
# Python entry points

cdef Py_ssize_t _block_steps(cnp.ndarray a, Py_ssize_t* comp_step) except? -1:
    """(row step, component step) in elements of a 3-D (rows, K, C) array with contiguous
    class rows; ValueError if the layout contract is broken."""
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(a)
    if cnp.PyArray_NDIM(a) != 3 or not cnp.PyArray_ISALIGNED(a):
        raise ValueError("mixture kernel arrays must be aligned and 3-D")
    if a.shape[2] > 1 and cnp.PyArray_STRIDE(a, 2) != itemsize:
        raise ValueError("mixture kernel class rows must be contiguous")
    if cnp.PyArray_STRIDE(a, 0) % itemsize or cnp.PyArray_STRIDE(a, 1) % itemsize:
        raise ValueError("mixture kernel strides must be multiples of the item size")
    comp_step[0] = cnp.PyArray_STRIDE(a, 1) // itemsize
    return cnp.PyArray_STRIDE(a, 0) // itemsize


cdef int _check_prior(cnp.ndarray prior, int typenum, Py_ssize_t n_rows,
                      Py_ssize_t K) except -1:
    if (cnp.PyArray_TYPE(prior) != typenum or cnp.PyArray_NDIM(prior) != 2
            or prior.shape[0] != n_rows or prior.shape[1] != K
            or not cnp.PyArray_IS_C_CONTIGUOUS(prior) or not cnp.PyArray_ISALIGNED(prior)):
        raise ValueError("mixture prior rows must be C-contiguous (n_rows, K) of the logits' dtype")
    return 0


def mixture_scratch_size(Py_ssize_t K, Py_ssize_t C):
    """Doubles of scratch one thread needs for one mixture row."""
    return K * C + 3 * C + 3 * K


def log_mixture_rows(cnp.ndarray z not None, cnp.ndarray prior not None, bint sigsoftmax,
                     cnp.ndarray out not None, int n_threads):
    """out[i, j] = log sum_k pi_ik f(z[i, k])_j; z is (n_rows, K, C), prior (n_rows, K)
    C-contiguous, out (n_rows, C) kernel rows.  K and C must be >= 1."""
    cdef int typenum = _float_type(z, out)
    cdef Py_ssize_t comp_step
    cdef Py_ssize_t z_step = _block_steps(z, &comp_step)
    cdef Py_ssize_t n_rows = z.shape[0], K = z.shape[1], C = z.shape[2]
    _check_prior(prior, typenum, n_rows, K)
    if out.shape[0] != n_rows or out.shape[1] != C:
        raise ValueError("mixture output must be (n_rows, C)")
    cdef Py_ssize_t out_step = _row_step(out, C)
    if n_rows == 0:
        return out
    if K == 0 or C == 0:
        raise ValueError("mixture kernels need K >= 1 and C >= 1")
    n_threads = max(1, min(n_threads, n_rows))
    cdef Py_ssize_t per_thread = mixture_scratch_size(K, C)
    cdef cnp.ndarray scratch = np.empty(n_threads * per_thread, dtype=np.float64)
    cdef double* scratch_data = <double*>cnp.PyArray_DATA(scratch)
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _log_mixture_rows[float](<const float*>cnp.PyArray_DATA(z), z_step, comp_step,
                                     <const float*>cnp.PyArray_DATA(prior),
                                     <float*>cnp.PyArray_DATA(out), out_step, n_rows, K, C,
                                     sigsoftmax, scratch_data, per_thread, n_threads)
    else:
        with nogil:
            _log_mixture_rows[double](<const double*>cnp.PyArray_DATA(z), z_step, comp_step,
                                      <const double*>cnp.PyArray_DATA(prior),
                                      <double*>cnp.PyArray_DATA(out), out_step, n_rows, K, C,
                                      sigsoftmax, scratch_data, per_thread, n_threads)
    return out


def mixture_cross_entropy_rows(cnp.ndarray z not None, cnp.ndarray prior not None,
                               object targets, long long ignore_index, object q,
                               bint sigsoftmax, cnp.ndarray losses not None, object grad,
                               object grad_prior, double grad_scale, int n_threads):
    """Per-row mixture cross-entropy into `losses` (float64, n_rows), optionally gradients.

    z: (n_rows, K, C) with contiguous class rows; prior: C-contiguous (n_rows, K); exactly
    one of targets (int64, n_rows, validated: in [0, C) or ignore_index) and q ((n_rows, C)
    kernel rows of z's dtype); grad like z and grad_prior like prior, both or neither;
    grad_scale multiplies every gradient.
    """
    cdef int typenum = cnp.PyArray_TYPE(z)
    cdef Py_ssize_t comp_step, grad_comp_step = 0, grad_step = 0, q_step = 0
    cdef Py_ssize_t z_step = _block_steps(z, &comp_step)
    cdef Py_ssize_t n_rows = z.shape[0], K = z.shape[1], C = z.shape[2]
    cdef cnp.ndarray q_array, grad_array, grad_prior_array
    cdef const char* q_data = NULL
    cdef char* grad_data = NULL
    cdef char* grad_prior_data = NULL
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise TypeError("kernels take float32 or float64 arrays")
    _check_prior(prior, typenum, n_rows, K)
    if (targets is None) == (q is None):
        raise ValueError("give exactly one of index targets and probability targets")
    cdef const long long* target_data = <const long long*>_optional_data(
        targets, cnp.NPY_INT64, n_rows)
    if q is not None:
        q_array = <cnp.ndarray?>q
        if cnp.PyArray_TYPE(q_array) != typenum or cnp.PyArray_NDIM(q_array) != 2 \
                or q_array.shape[0] != n_rows or q_array.shape[1] != C:
            raise ValueError("probability targets must be (n_rows, C) of the logits' dtype")
        q_step = _row_step(q_array, C)
        q_data = <const char*>cnp.PyArray_DATA(q_array)
    cdef double* loss_data = <double*>_optional_data(losses, cnp.NPY_FLOAT64, n_rows)
    if (grad is None) != (grad_prior is None):
        raise ValueError("give both gradient buffers or neither")
    if grad is not None:
        grad_array = <cnp.ndarray?>grad
        grad_prior_array = <cnp.ndarray?>grad_prior
        _float_type(z, grad_array)
        _float_type(z, grad_prior_array)
        if grad_array.shape[0] != n_rows or grad_array.shape[1] != K or grad_array.shape[2] != C:
            raise ValueError("gradient blocks must match the logits'")
        grad_step = _block_steps(grad_array, &grad_comp_step)
        _check_prior(grad_prior_array, typenum, n_rows, K)
        grad_data = <char*>cnp.PyArray_DATA(grad_array)
        grad_prior_data = <char*>cnp.PyArray_DATA(grad_prior_array)
    if n_rows == 0:
        return losses
    if K == 0 or C == 0:
        raise ValueError("mixture kernels need K >= 1 and C >= 1")
    n_threads = max(1, min(n_threads, n_rows))
    cdef Py_ssize_t per_thread = mixture_scratch_size(K, C)
    cdef cnp.ndarray scratch = np.empty(n_threads * per_thread, dtype=np.float64)
    cdef double* scratch_data = <double*>cnp.PyArray_DATA(scratch)
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _mixture_ce_rows[float](
                <const float*>cnp.PyArray_DATA(z), z_step, comp_step,
                <const float*>cnp.PyArray_DATA(prior), target_data, ignore_index,
                <const float*>q_data, q_step, n_rows, K, C, sigsoftmax, scratch_data,
                per_thread, loss_data, <float*>grad_data, grad_step, grad_comp_step,
                <float*>grad_prior_data, grad_scale, n_threads)
    else:
        with nogil:
            _mixture_ce_rows[double](
                <const double*>cnp.PyArray_DATA(z), z_step, comp_step,
                <const double*>cnp.PyArray_DATA(prior), target_data, ignore_index,
                <const double*>q_data, q_step, n_rows, K, C, sigsoftmax, scratch_data,
                per_thread, loss_data, <double*>grad_data, grad_step, grad_comp_step,
                <double*>grad_prior_data, grad_scale, n_threads)
    return losses
