# Fused cross-entropy: the loss of a row and its gradient from one visit of the logits.
#
# Design:
# 1. With target weights B_j (index target t, smoothing eps, class weights w, C classes:
#    B_j = (1 - eps) w_t [j == t] + (eps / C) w_j; probability target q:
#    B_j = w_j ((1 - eps) q_j + eps / C)) and A = Σ_j B_j, the loss of a row is
#    L = -Σ_j B_j log p_j = A log S + Σ_j B_j (-d_j), where d_j = x_j - max(x) <= 0 are the
#    shifted logits and S = Σ_j exp(d_j); its gradient is dL/dx_j = A p_j - B_j.  For
#    sigsoftmax, d_j are the log-domain gaps w(z_j) - max w and every column carries the
#    extra factor (2 - sigmoid(z_j)) (Kanai et al., Theorem 5).
# 2. Per row, in vector passes (fs_simd.h): (a) the min and max (for sigsoftmax then the
#    gaps d_j into the per-thread row `work`); (b) log S (max term taken out, log1p as in
#    logsumexp) from the exponentials, stored on the way when a gradient is wanted (into
#    the gradient row; sigsoftmax's over its gaps), and Σ B_j (-d_j) -- all terms
#    non-negative, so nothing cancels; (c) if a gradient is wanted, one pass writing
#    scale * (A e_j / S - B_j), for sigsoftmax times the factor 2 - sigmoid(x_j) formed
#    from x_j in that pass, rounded once.  Everything read from the logits is read
#    before the gradient (which may be the logits: grad_out=logits) is written.
# 3. Sums and the loss are computed in double for both dtypes, and the targets row's
#    gradient too; the index row scales float rows as softmax does (FS_scale_f32's
#    two-float reciprocal; for sigsoftmax then times its float factor).  The
#    exponentials are in the row's precision (8 floats per AVX2 vector, as the forward).
# 4. Two rows: _row_cross_entropy_index for index targets without smoothing (and softmax
#    with smoothing but without class weights), where B is w_t at the target alone (or
#    eps / C plus that) and (c) is one scaling; _row_cross_entropy_targets for the rest
#    (probability targets, smoothing with class weights, and sigsoftmax with smoothing),
#    which forms B_j from the targets and weights in (b) and again in (c)
#    (FS_target_sums_*, FS_target_grad_*).  Softmax rows past LONG_ROW_BYTES with index
#    targets and no smoothing take the max and sum by chunks instead
#    (_long_row_cross_entropy_index).
# 5. Ignored rows (index target == ignore_index) get loss 0 and gradient 0 without reading
#    anything; the class weights are never indexed with ignore_index.  0 * log 0 counts
#    as 0: a zero target weight never turns a -inf logit into NaN.

cdef inline double _long_row_cross_entropy_index(
        const real* x, Py_ssize_t n, Py_ssize_t target, double w_t, real* grad,
        double grad_scale) noexcept nogil:
    """_row_cross_entropy_index with softmax, for rows past LONG_ROW_BYTES: the max and
    the sum by chunks (_long_row_sums), the gradient's exponentials stored against each
    chunk's max and brought to the row's by _long_row_scale."""
    cdef double drop[LONG_CHUNKS_MAX]
    cdef real row_max
    cdef Py_ssize_t ties, target_chunk
    cdef double target_d = <double>x[target]    # read before grad (maybe x) is written
    cdef double sum_off_max, log_s, factor, total, p_t
    sum_off_max = _long_row_sums(x, grad, n, drop if grad != NULL else NULL, &row_max,
                                 &ties, True)
    if row_max == INFINITY or row_max == -INFINITY:
        # as in _row_cross_entropy_index: a +inf logit or a row of only -inf is NaN (the
        # sums already are when the gradient is stored, not for the loss alone)
        sum_off_max = NAN
    target_d -= <double>row_max
    log_s = _log_normalizer(sum_off_max, ties)
    if grad != NULL:
        factor = grad_scale * w_t
        total = sum_off_max + <double>ties
        target_chunk = target // _long_row_chunk(n, sizeof(real))
        if total != total:
            p_t = NAN
        elif drop[target_chunk] == INFINITY:
            p_t = 0                                 # a -inf target among -inf values
        else:
            p_t = <double>grad[target] * exp(-drop[target_chunk]) / total
        _long_row_scale(grad, n, drop, total / factor)
        grad[target] = <real>(factor * (p_t - 1.0))
    # 0 * log 0 counts as 0: a zero-weight target never turns a -inf logit into NaN
    return 0.0 if w_t == 0 else w_t * (log_s - target_d)


cdef inline double _row_cross_entropy_index(
        const real* x, Py_ssize_t n, Py_ssize_t target, double w_t,
        real* grad, double grad_scale, bint sigsoftmax, double* work,
        const real* ahead=NULL, double smoothing=0.0) noexcept nogil:
    """The common case: an index target, no smoothing.  ahead: the next row, prefetched
    by the exponential pass (as in _softmax_rows).

    Then B = w_t at the target only and A = w_t, so loss = w_t (log S - d_t) and
    grad = scale w_t (p - onehot(t)) (times 2 - sigmoid(x) for sigsoftmax).  Vector passes
    over the row: min/max; softmax: the exponentials stored straight into the gradient
    row (or only summed when no gradient is wanted), one scaling; sigsoftmax: its gaps d
    into `work` (n values of the row's type), exponentiated in place, and one pass
    writing e_j (scale w_t / S) (2 - sigmoid(x_j)), the factor formed from x_j on the way
    (float rows in float, as before; double rows in double, rounded once, as
    FS_target_grad_f64 without targets).  A pass of factors and a scaling pass before
    took 10-30% more on float64 rows.  Everything read from x is read before the
    gradient row (which may be x itself) is written.

    smoothing != 0 (eps): softmax, unit class weights (w_t = 1) and rows within
    LONG_ROW_BYTES only.  Then B_j = eps / C + (1 - eps) [j = t] and A = 1:
    loss = (1 - eps) (log S - d_t) + (eps log S - (eps / C) Σ_j d_j), with Σ_j d_j =
    Σ_j x_j - C max (one more read of x, in double, before the gradient is written), and
    grad = scale (p - eps / C), less scale (1 - eps) at the target: the scaling pass forms
    e_j (scale / S) - scale eps / C in double and rounds once (FS_affine_*).  The general
    row's chunked loops, since removed, took 2.8x its time for the same loss.
    """
    if not sigsoftmax and n * <Py_ssize_t>sizeof(real) > LONG_ROW_BYTES:
        return _long_row_cross_entropy_index(x, n, target, w_t, grad, grad_scale)
    cdef real row_min
    cdef real row_max = _row_minmax(x, n, &row_min)
    cdef bint short_exp
    cdef const real* d = x          # exponentiated: x - max, or the gaps (shift 0)
    cdef real shift = row_max
    cdef real* gaps = <real*>work
    cdef real* e = grad             # where the exponentials go
    cdef real factor_at_target
    cdef double target_d, sum_off_max, total, log_s, factor, e_t
    cdef Py_ssize_t ties
    if sigsoftmax:
        if grad != NULL:
            # the target's factor as the gradient pass forms it, before grad is written
            if real is float:
                FS_two_minus_sigmoid_f32(x + target, &factor_at_target, 1)
            else:
                FS_two_minus_sigmoid_f64(x + target, &factor_at_target, 1)
            e = gaps
        if real is float:
            FS_sigsoftmax_gap_f32f(x, gaps, n, row_max, row_min >= -87.0 and row_max <= 87.0)
        else:
            FS_sigsoftmax_gap_f64(x, gaps, n, row_max)
        d = gaps
        shift = 0
        # the gap's slope is below 2 (see _row_sigsoftmax)
        short_exp = _short_exp[real](<real>(2.0 * (<double>row_min - <double>row_max)), 0)
        target_d = <double>gaps[target]
    else:
        short_exp = _short_exp(row_min, row_max)
        target_d = <double>x[target] - <double>row_max
    cdef double per_class = smoothing / n, keep = 1.0 - smoothing, gap_sum = 0.0
    if smoothing != 0:
        # sums that keep an infinite total infinite (a -inf logit: an infinite loss), as
        # the Kahan-compensated FS_dot_f64 would not (inf - inf in its compensation)
        if real is float:
            gap_sum = FS_dot_f32(x, NULL, n) - n * <double>row_max
        else:
            gap_sum = FS_sum_f64(x, n) - n * <double>row_max
    if grad == NULL:
        sum_off_max = _row_sum_exp_off_max(d, n, shift, &ties, short_exp, ahead)
    else:
        sum_off_max = _row_exp_store_sum_off_max(d, e, n, shift, &ties, short_exp, ahead)
    if row_max == INFINITY:
        sum_off_max = NAN      # a +inf logit makes the row NaN, as in softmax
    log_s = _log_normalizer(sum_off_max, ties)
    if smoothing != 0:
        # design note 1's loss with w = 1: keep (log S - d_t) + (per_class C log S + Σ B_j (-d_j))
        if grad != NULL:
            total = sum_off_max + <double>ties
            e_t = <double>grad[target]
            if real is float:
                FS_affine_f32(grad, n, grad_scale / total, grad_scale * per_class)
            else:
                FS_affine_f64(grad, n, grad_scale / total, grad_scale * per_class)
            grad[target] = <real>(grad_scale * (e_t / total - (per_class + keep)))
        # (with eps = 1 the target's own term is 0, even at a -inf logit)
        return ((keep * (log_s - target_d) if keep != 0 else 0.0)
                + (per_class * n * log_s - per_class * gap_sum))
    if grad != NULL:
        factor = grad_scale * w_t
        total = sum_off_max + <double>ties
        e_t = <double>e[target]
        if sigsoftmax:
            # the scaling and the factor (formed from x) in one pass, as fs_short.h's lanes:
            # float rows in float (as a scaling pass and a pass of factors did), double
            # rows e_j k f_j with k = 1 / (S / (scale w_t))
            if real is float:
                FS_scale_by_factor_f32(e, grad, x, n, 1.0 / (total / factor))
            else:
                FS_target_grad_f64(e, grad, NULL, NULL, x, n, 1.0 / (total / factor), 0.0,
                                   1.0, 0.0)
            grad[target] = <real>(factor * (e_t / total - 1.0) * <double>factor_at_target)
        else:
            _row_scale(grad, n, total / factor)
            grad[target] = <real>(factor * (e_t / total - 1.0))
    # 0 * log 0 counts as 0: a zero-weight target never turns a -inf logit into NaN
    return 0.0 if w_t == 0 else w_t * (log_s - target_d)


cdef inline double _row_cross_entropy_targets(
        const real* x, Py_ssize_t n, Py_ssize_t target, const real* q,
        const double* w, double w_total, double smoothing, bint sigsoftmax,
        real* grad, double grad_scale, real* work, const real* ahead,
        const real* q_ahead) noexcept nogil:
    """The loss of a row with probability targets, or with an index target and smoothing
    and class weights (or sigsoftmax); the gradient into grad unless it is NULL.

    w == NULL: unit class weights (w_total is then n).  Passes over the row: min/max (for
    sigsoftmax then its gaps into `work`, as in _row_cross_entropy_index); the sums
    A = Σ B_j and Σ B_j (-d_j) (FS_target_sums_*, B_j formed there as in the design
    note); the exponentials stored into the gradient row (only summed without one);
    grad_j = scale (A e_j / S - B_j), for sigsoftmax times its factor 2 - sigmoid(x_j)
    formed from x_j on the way (FS_target_grad_*, B_j formed again, rounded once).  Each
    x_j is read before grad_j (grad may be x) is written.  The last pass reads q, which
    may be the gradient row too: then softmax stores its exponentials in `work` instead,
    sigsoftmax over its gaps (`work` holds n values of the row's type).  The chunked
    Cython loops this replaced took 2.1-2.8x its time (float32 4096x1000), 1.0-2.3x on
    rows of 300000 and 1000000 values."""
    cdef real row_min
    cdef real row_max = _row_minmax(x, n, &row_min)
    cdef bint short_exp
    cdef const real* d = x          # exponentiated: x - max, or the gaps (shift 0)
    cdef real shift = row_max
    cdef real* e = grad
    cdef const real* factor_logits = NULL
    cdef real factor_at_target
    cdef double per_class = smoothing / n, keep = 1.0 - smoothing
    cdef double weight_sum, gap_total, w_t = 0.0, target_d = 0.0, target_b = 0.0
    cdef double sum_off_max, log_s, A, loss, total, e_t = 0.0, factor_t = 1.0
    cdef Py_ssize_t ties
    if sigsoftmax:
        if grad != NULL:
            # the gradient pass forms the factors from the logits as it goes
            factor_logits = x
        if real is float:
            FS_sigsoftmax_gap_f32f(x, work, n, row_max, row_min >= -87.0 and row_max <= 87.0)
        else:
            FS_sigsoftmax_gap_f64(x, work, n, row_max)
        d = work
        shift = 0
        e = work
        # the gap's slope is below 2 (see _row_sigsoftmax)
        short_exp = _short_exp[real](<real>(2.0 * (<double>row_min - <double>row_max)), 0)
    else:
        short_exp = _short_exp(row_min, row_max)
        if grad != NULL and <const real*>grad == q:
            e = work
    if q == NULL:
        w_t = w[target] if w != NULL else 1.0
        target_d = <double>d[target] - <double>shift
        target_b = keep * w_t
        if factor_logits != NULL:
            # the target's factor as the gradient pass forms it, read before grad is written
            if real is float:
                FS_two_minus_sigmoid_f32(x + target, &factor_at_target, 1)
            else:
                FS_two_minus_sigmoid_f64(x + target, &factor_at_target, 1)
            factor_t = <double>factor_at_target
    if real is float:
        gap_total = FS_target_sums_f32(d, q, w, n, shift, keep, per_class, &weight_sum, q_ahead)
    else:
        gap_total = FS_target_sums_f64(d, q, w, n, shift, keep, per_class, &weight_sum, q_ahead)
    if grad == NULL:
        sum_off_max = _row_sum_exp_off_max(d, n, shift, &ties, short_exp, ahead)
    else:
        sum_off_max = _row_exp_store_sum_off_max(d, e, n, shift, &ties, short_exp, ahead)
    if row_max == INFINITY:
        sum_off_max = NAN      # a +inf logit makes the row NaN, as in softmax
    log_s = _log_normalizer(sum_off_max, ties)
    if q == NULL:
        # the target's own (1 - eps) w_t term in closed form; 0 * log 0 counts as 0
        A = target_b + per_class * w_total
        loss = A * log_s + gap_total
        if target_b != 0:
            loss = (per_class * w_total * log_s + gap_total) + target_b * (log_s - target_d)
    else:
        A = weight_sum
        loss = A * log_s + gap_total
    if grad == NULL:
        return loss
    total = sum_off_max + <double>ties
    if q == NULL:
        e_t = <double>e[target]
    if real is float:
        FS_target_grad_f32(e, grad, q, w, factor_logits, n, grad_scale * A / total,
                           grad_scale, keep, per_class)
    else:
        FS_target_grad_f64(e, grad, q, w, factor_logits, n, grad_scale * A / total,
                           grad_scale, keep, per_class)
    if q == NULL:
        grad[target] = <real>(grad_scale * factor_t
                              * (A * (e_t / total) - (per_class * w_t + target_b)))
    return loss


cdef inline bint _unit_weights(const double* w, Py_ssize_t n_cols, double smoothing,
                               bint index_targets) noexcept nogil:
    """Whether every class weight is 1, where that matters: to rows that read every class
    weight (probability targets, smoothed index targets; a smoothed softmax index row
    within LONG_ROW_BYTES then takes the index row), which then read none: reading a row
    of ones twice per row had cost float32 64x50257 with probability targets 12-16%.
    Not scanned for index targets without smoothing, whose rows read one weight each (a
    scan of 8x1000000's million weights on every call took its float32 cross-entropy
    from 2.5 to 4.8 ms).  The scan has no branch, so that it vectorizes."""
    cdef int all_ones = 1
    cdef Py_ssize_t j
    if index_targets and smoothing == 0:
        return False
    for j in range(n_cols):
        all_ones &= w[j] == 1.0
    return all_ones


cdef inline double _weight_total(const double* w, Py_ssize_t n_cols, double smoothing,
                                 bint index_targets) noexcept nogil:
    """Σ w (Kahan lanes), which only smoothed index rows use; 0 when it is not needed."""
    if smoothing == 0 or not index_targets:
        return 0.0
    return FS_sum_f64(w, n_cols)


cdef void _cross_entropy_rows(
        const real* x, Py_ssize_t x_step, Py_ssize_t n_rows, Py_ssize_t n_cols,
        const long long* targets, long long ignore_index, const real* q, Py_ssize_t q_step,
        const double* w, double smoothing, bint sigsoftmax,
        double* scratch, double* losses, real* grad, Py_ssize_t grad_step,
        const double* grad_scales, double grad_scale, int n_threads) noexcept nogil:
    """The rows' losses into `losses` and, unless grad is NULL, their gradients, on
    n_threads threads (cross_entropy_rows' and the compiled entry's arithmetic)."""
    # every class weight 1 (_unit_weights): a smoothed softmax index row can take the
    # index row, other rows read no weights
    cdef bint unit_weights = _unit_weights(w, n_cols, smoothing, targets != NULL)
    cdef double w_total = _weight_total(w, n_cols, smoothing, targets != NULL)
    cdef Py_ssize_t i
    cdef double* work
    cdef Py_ssize_t n_groups = (n_rows + SHORT_GROUP - 1) // SHORT_GROUP
    cdef Py_ssize_t group
    cdef Py_ssize_t chunk = _rows_per_chunk(n_cols * <Py_ssize_t>sizeof(real))
    if (FS_SHORT_CROSS_ENTROPY and targets != NULL and smoothing == 0 and n_cols <= SHORT_ROW
            and n_rows > 1):
        # short rows: one row per vector lane (fs_short.h), the row path's bits
        if n_threads == 1:
            for group in range(n_groups):
                _short_cross_entropy_group(x, x_step, n_rows, n_cols, targets, ignore_index,
                                           w, sigsoftmax, losses, grad, grad_step,
                                           grad_scales, grad_scale, group)
            return
        for group in prange(n_groups, schedule="dynamic", chunksize=max(1, chunk // SHORT_GROUP),
                            num_threads=n_threads):
            _short_cross_entropy_group(x, x_step, n_rows, n_cols, targets, ignore_index, w,
                                       sigsoftmax, losses, grad, grad_step, grad_scales,
                                       grad_scale, group)
        return
    if n_threads == 1:
        # no OpenMP region at all (as _softmax_rows): a small call should not pay for one
        for i in range(n_rows):
            _cross_entropy_row(x, x_step, n_rows, n_cols, targets, ignore_index, q, q_step,
                               w, w_total, smoothing, sigsoftmax, scratch, losses, grad,
                               grad_step, grad_scales, grad_scale, unit_weights, i)
        return
    with parallel(num_threads=n_threads):
        work = scratch + omp_get_thread_num() * n_cols
        for i in prange(n_rows, schedule="dynamic", chunksize=chunk):
            _cross_entropy_row(x, x_step, n_rows, n_cols, targets, ignore_index, q, q_step,
                               w, w_total, smoothing, sigsoftmax, work, losses, grad,
                               grad_step, grad_scales, grad_scale, unit_weights, i)


cdef inline void _short_cross_entropy_group(
        const real* x, Py_ssize_t x_step, Py_ssize_t n_rows, Py_ssize_t n_cols,
        const long long* targets, long long ignore_index, const double* w, bint sigsoftmax,
        double* losses, real* grad, Py_ssize_t grad_step, const double* grad_scales,
        double grad_scale, Py_ssize_t group) noexcept nogil:
    """Rows group * SHORT_GROUP on of _cross_entropy_rows' short-row case."""
    cdef Py_ssize_t first = group * SHORT_GROUP
    cdef Py_ssize_t rows = min(SHORT_GROUP, n_rows - first)
    if real is float:
        FS_short_cross_entropy_f32(
            x + first * x_step, x_step, rows, n_cols, sigsoftmax, targets + first,
            ignore_index, w, losses + first,
            grad + first * grad_step if grad != NULL else NULL, grad_step,
            grad_scales + first if grad_scales != NULL else NULL, grad_scale)
    else:
        FS_short_cross_entropy_f64(
            x + first * x_step, x_step, rows, n_cols, sigsoftmax, targets + first,
            ignore_index, w, losses + first,
            grad + first * grad_step if grad != NULL else NULL, grad_step,
            grad_scales + first if grad_scales != NULL else NULL, grad_scale)


cdef inline void _cross_entropy_row(
        const real* x, Py_ssize_t x_step, Py_ssize_t n_rows, Py_ssize_t n_cols,
        const long long* targets, long long ignore_index, const real* q, Py_ssize_t q_step,
        const double* w, double w_total, double smoothing, bint sigsoftmax,
        double* work, double* losses, real* grad, Py_ssize_t grad_step,
        const double* grad_scales, double grad_scale, bint unit_weights,
        Py_ssize_t i) noexcept nogil:
    """Row i of _cross_entropy_rows (not a short-row group); work: this thread's scratch."""
    cdef real* grad_row = grad + i * grad_step if grad != NULL else NULL
    if targets != NULL and targets[i] == ignore_index:
        losses[i] = 0.0
        if grad_row != NULL:
            _row_fill(grad_row, n_cols, 0)
    elif targets != NULL and smoothing == 0:
        losses[i] = _row_cross_entropy_index(
            x + i * x_step, n_cols, targets[i], w[targets[i]], grad_row,
            grad_scales[i] if grad_scales != NULL else grad_scale, sigsoftmax, work,
            _row_ahead(x, x_step, i, n_rows, n_cols))
    elif (targets != NULL and unit_weights and not sigsoftmax
          and n_cols * <Py_ssize_t>sizeof(real) <= LONG_ROW_BYTES):
        # label smoothing without class weights: the index row too
        losses[i] = _row_cross_entropy_index(
            x + i * x_step, n_cols, targets[i], 1.0, grad_row,
            grad_scales[i] if grad_scales != NULL else grad_scale, False, work,
            _row_ahead(x, x_step, i, n_rows, n_cols), smoothing)
    else:
        # probability targets, and smoothing with class weights
        losses[i] = _row_cross_entropy_targets(
            x + i * x_step, n_cols,
            targets[i] if targets != NULL else -1,
            q + i * q_step if targets == NULL else NULL,
            NULL if unit_weights else w, w_total, smoothing, sigsoftmax, grad_row,
            grad_scales[i] if grad_scales != NULL else grad_scale, <real*>work,
            _row_ahead(x, x_step, i, n_rows, n_cols),
            _row_ahead(q, q_step, i, n_rows, n_cols) if targets == NULL else NULL)


cdef const char* _optional_data(object a, int typenum, Py_ssize_t length) except? NULL:
    """Data of an optional C-contiguous 1-D array of the given type and length (None: NULL)."""
    cdef cnp.ndarray array
    if a is None:
        return NULL
    array = <cnp.ndarray?>a
    if (cnp.PyArray_TYPE(array) != typenum or cnp.PyArray_NDIM(array) != 1
            or array.shape[0] != length or not cnp.PyArray_IS_C_CONTIGUOUS(array)):
        raise ValueError("kernel vector has the wrong type, shape or layout")
    return <const char*>cnp.PyArray_DATA(array)


def cross_entropy_rows(cnp.ndarray x not None, object targets, long long ignore_index,
                       object q, object weight, double smoothing,
                       bint sigsoftmax, cnp.ndarray losses not None, object grad,
                       object grad_scales, double grad_scale, int n_threads):
    """Per-row cross-entropy losses into `losses` (float64, n_rows) and optionally gradients.

    x: kernel rows; targets: int64 class indices (n_rows,) or None; q: probability rows like
    x (when targets is None); weight: float64 (n_cols,); grad: kernel rows like x or None
    (it may be x itself); grad_scales: float64 (n_rows,) per-row gradient factors or None
    (then grad_scale for every row).  Targets must already be validated (in [0, n_cols) or
    == ignore_index).
    """
    cdef int typenum = cnp.PyArray_TYPE(x)
    cdef Py_ssize_t n_rows = x.shape[0], n_cols = x.shape[1]
    cdef Py_ssize_t x_step = _row_step(x, n_cols), q_step = 0, grad_step = 0
    cdef cnp.ndarray q_array, grad_array
    cdef const char* q_data = NULL
    cdef char* grad_data = NULL
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise TypeError("kernels take float32 or float64 arrays")
    cdef const long long* target_data = <const long long*>_optional_data(
        targets, cnp.NPY_INT64, n_rows)
    if (targets is None) == (q is None):
        raise ValueError("give exactly one of index targets and probability targets")
    if q is not None:
        q_array = <cnp.ndarray?>q
        if cnp.PyArray_TYPE(q_array) != typenum or q_array.shape[0] != n_rows \
                or q_array.shape[1] != n_cols:
            raise ValueError("probability targets must match the logits' rows")
        q_step = _row_step(q_array, n_cols)
        q_data = <const char*>cnp.PyArray_DATA(q_array)
    if weight is None:
        raise ValueError("the kernel needs class weights (ones for unweighted)")
    cdef const double* weight_data = <const double*>_optional_data(weight, cnp.NPY_FLOAT64, n_cols)
    cdef double* loss_data = <double*>_optional_data(losses, cnp.NPY_FLOAT64, n_rows)
    cdef const double* scale_data = <const double*>_optional_data(
        grad_scales, cnp.NPY_FLOAT64, n_rows)
    if grad is not None:
        grad_array = <cnp.ndarray?>grad
        _float_type(x, grad_array)
        if grad_array.shape[0] != n_rows or grad_array.shape[1] != n_cols:
            raise ValueError("gradient rows must match the logits' rows")
        grad_step = _row_step(grad_array, n_cols)
        grad_data = <char*>cnp.PyArray_DATA(grad_array)
    if n_rows == 0 or n_cols == 0:
        return losses
    n_threads = max(1, min(n_threads, n_rows))
    # per thread: a row of doubles (sigsoftmax's gaps; softmax's exponentials when the
    # gradient overwrites a probability target)
    cdef cnp.ndarray scratch = np.empty(n_threads * n_cols, dtype=np.float64)
    cdef double* scratch_data = <double*>cnp.PyArray_DATA(scratch)
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _cross_entropy_rows[float](
                <const float*>cnp.PyArray_DATA(x), x_step, n_rows, n_cols,
                target_data, ignore_index, <const float*>q_data, q_step,
                weight_data, smoothing, sigsoftmax, scratch_data, loss_data,
                <float*>grad_data, grad_step, scale_data, grad_scale, n_threads)
    else:
        with nogil:
            _cross_entropy_rows[double](
                <const double*>cnp.PyArray_DATA(x), x_step, n_rows, n_cols,
                target_data, ignore_index, <const double*>q_data, q_step,
                weight_data, smoothing, sigsoftmax, scratch_data, loss_data,
                <double*>grad_data, grad_step, scale_data, grad_scale, n_threads)
    return losses


def index_target_check(cnp.ndarray targets not None, long long n_classes, long long ignore_index,
                       object weight):
    """(flat position of the first target outside [0, n_classes) that is not ignore_index,
    or -1; the "mean" denominator: the summed weight of the kept targets, or their count
    when weight is None) in one pass.  targets: C-contiguous int64; weight: float64
    (n_classes,) or None."""
    if cnp.PyArray_TYPE(targets) != cnp.NPY_INT64 or not cnp.PyArray_IS_C_CONTIGUOUS(targets):
        raise ValueError("targets must be C-contiguous int64")
    cdef const long long* t = <const long long*>cnp.PyArray_DATA(targets)
    cdef const double* w = <const double*>_optional_data(weight, cnp.NPY_FLOAT64, n_classes)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(targets), i, bad = -1
    cdef double total = 0.0
    cdef long long v
    with nogil:
        for i in range(n):
            v = t[i]
            if v == ignore_index:
                continue
            if v < 0 or v >= n_classes:
                bad = i
                break
            total += w[v] if w != NULL else 1.0
    return bad, total


cdef inline double _loss_total(const double* losses, Py_ssize_t n) noexcept nogil:
    """The "sum" of per-row losses: Kahan lanes (FS_sum_f64); one row's loss as it is."""
    return losses[0] if n == 1 else FS_sum_f64(losses, n)


def loss_total(cnp.ndarray losses not None):
    """Σ losses of a C-contiguous float64 vector, as cross_entropy reduces it."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(losses)
    _optional_data(losses, cnp.NPY_FLOAT64, n)
    if n == 0:
        return 0.0
    return _loss_total(<const double*>cnp.PyArray_DATA(losses), n)


# ---------------------------------------------------------------------------------------
# cross_entropy's compiled entry (see _core.pxi's small_call_entry): calls without
# grad_output -- int64 labels or probability rows, plain float64 class weights or none,
# any smoothing -- on small plain arrays run here on the calling thread; any other goes
# to the routed Python function.

cdef enum:
    REDUCE_MEAN = 0
    REDUCE_SUM = 1
    REDUCE_NONE = 2


cdef inline int _reduction_code(object reduction):
    """0 mean, 1 sum, 2 none, -1 anything else (for the full path to judge)."""
    if type(reduction) is not str:
        return -1
    if reduction == "mean":
        return REDUCE_MEAN
    if reduction == "sum":
        return REDUCE_SUM
    if reduction == "none":
        return REDUCE_NONE
    return -1


cdef void _small_cross_entropy_kernel(int typenum, const void* x, Py_ssize_t n_rows,
                                      Py_ssize_t n_cols, const long long* targets,
                                      long long ignore_index, const void* q,
                                      const double* weight, double smoothing,
                                      bint sigsoftmax, double* buffer, void* grad,
                                      double grad_scale) noexcept nogil:
    """_small_cross_entropy's arithmetic, on the calling thread (cross_entropy_rows' steps
    for one thread).  targets NULL: q holds probability rows.  weight NULL: unit weights.
    buffer: n_rows losses, then n_cols weights, then n_cols of scratch."""
    cdef double* unit = buffer + n_rows
    cdef Py_ssize_t j
    if weight == NULL:
        for j in range(n_cols):
            unit[j] = 1.0
        weight = unit
    if typenum == cnp.NPY_FLOAT32:
        _cross_entropy_rows[float](<const float*>x, n_cols, n_rows, n_cols, targets,
                                   ignore_index, <const float*>q, n_cols, weight, smoothing,
                                   sigsoftmax, unit + n_cols, buffer, <float*>grad, n_cols, NULL,
                                   grad_scale, 1)
    else:
        _cross_entropy_rows[double](<const double*>x, n_cols, n_rows, n_cols, targets,
                                    ignore_index, <const double*>q, n_cols, weight, smoothing,
                                    sigsoftmax, unit + n_cols, buffer, <double*>grad, n_cols,
                                    NULL, grad_scale, 1)


cdef object _small_cross_entropy(object logits, object target, object axis, object weight,
                                 object ignore_index, object reduction,
                                 object label_smoothing, object activation,
                                 object return_grad, object grad_output, object grad_out,
                                 object num_threads):
    """cross_entropy's whole call, or None for the full path.

    Taken for small plain logits along their last axis (_small_input); a plain int64
    target of the batch shape whose labels are all in range or ignore_index (an exact
    int), or plain probability rows of the logits' shape and type; no weight or a plain
    float64 one per class; a label_smoothing in [0, 1], no grad_output, `reduction` and
    `activation` among their exact strings, and `grad_out` (with return_grad) plain and
    apart from every input (or the logits, or the probability target, itself).  The
    numbers are the full path's: the same row kernels, the same denominators and
    factors, the same sum of the losses (_loss_total).
    """
    cdef int code = _reduction_code(reduction)
    if (code < 0 or grad_output is not None
            or type(return_grad) is not bool or type(ignore_index) is not int
            or not (type(label_smoothing) is float or type(label_smoothing) is int)
            or not 0 <= label_smoothing <= 1):
        return None
    if type(activation) is not str or not (activation == "softmax"
                                           or activation == "sigsoftmax"):
        return None
    cdef long long ignore
    try:
        ignore = ignore_index
    except OverflowError:
        return None             # outside int64: the full path decides
    cdef cnp.ndarray x = _small_input(logits, axis, num_threads)
    if x is None:
        return None
    cdef int typenum = cnp.PyArray_TYPE(x)
    cdef int ndim = cnp.PyArray_NDIM(x)
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(x)
    cdef bint index_target = _plain(target, cnp.NPY_INT64, ndim - 1, dims)
    if not index_target and not _plain(target, typenum, ndim, dims):
        return None
    if weight is not None and not _plain(weight, cnp.NPY_FLOAT64, 1, &dims[ndim - 1]):
        return None
    cdef bint with_grad = return_grad
    if grad_out is not None and not (
            with_grad and _plain_out(grad_out, typenum, ndim, dims)
            and _same_or_apart(<cnp.ndarray>grad_out, x)
            and (_apart(<cnp.ndarray>grad_out, target) if index_target
                 else _same_or_apart(<cnp.ndarray>grad_out, <cnp.ndarray>target))
            and (weight is None or _apart(<cnp.ndarray>grad_out, weight))):
        return None
    cdef Py_ssize_t n_cols = dims[ndim - 1]
    cdef Py_ssize_t n_rows = cnp.PyArray_SIZE(x) // n_cols
    cdef const long long* labels = NULL
    cdef const void* q = NULL
    cdef const double* w = (<const double*>cnp.PyArray_DATA(<cnp.ndarray>weight)
                            if weight is not None else NULL)
    cdef Py_ssize_t i
    # the "mean" denominator: the summed weight of the labels not ignored (their count
    # without weights), added in index_target_check's order; the rows for probabilities
    cdef double kept = 0.0
    if index_target:
        labels = <const long long*>cnp.PyArray_DATA(<cnp.ndarray>target)
        for i in range(n_rows):
            if labels[i] == ignore:
                continue
            if labels[i] < 0 or labels[i] >= n_cols:
                return None         # the full path raises the IndexError
            kept += w[labels[i]] if w != NULL else 1.0
    else:
        q = cnp.PyArray_DATA(<cnp.ndarray>target)
        kept = <double>n_rows
    cdef double grad_scale = 1.0
    if code == REDUCE_MEAN:
        grad_scale = 1.0 / kept if kept != 0 else 0.0
    if with_grad and grad_out is None:
        grad_out = cnp.PyArray_EMPTY(ndim, dims, typenum, 0)
    cdef void* grad = cnp.PyArray_DATA(<cnp.ndarray>grad_out) if with_grad else NULL
    cdef double* buffer = <double*>PyMem_Malloc((n_rows + 2 * n_cols) * sizeof(double))
    if buffer == NULL:
        raise MemoryError()
    cdef bint sigsoftmax = activation == "sigsoftmax"
    cdef double smoothing = label_smoothing
    cdef void* data = cnp.PyArray_DATA(x)
    cdef double total
    cdef float total_f32
    cdef cnp.ndarray losses
    try:
        if n_rows * n_cols >= SMALL_CALL_NOGIL:
            with nogil:
                _small_cross_entropy_kernel(typenum, data, n_rows, n_cols, labels, ignore,
                                            q, w, smoothing, sigsoftmax, buffer, grad,
                                            grad_scale)
        else:
            _small_cross_entropy_kernel(typenum, data, n_rows, n_cols, labels, ignore, q, w,
                                        smoothing, sigsoftmax, buffer, grad, grad_scale)
        if code == REDUCE_NONE:
            losses = cnp.PyArray_EMPTY(ndim - 1, dims, typenum, 0)
            if typenum == cnp.NPY_FLOAT32:
                for i in range(n_rows):
                    (<float*>cnp.PyArray_DATA(losses))[i] = <float>buffer[i]
            else:
                memcpy(cnp.PyArray_DATA(losses), buffer, n_rows * sizeof(double))
            loss = losses
        else:
            total = _loss_total(buffer, n_rows)
            if code == REDUCE_MEAN:
                total = total / kept if kept != 0 else NAN
            if typenum == cnp.NPY_FLOAT32:
                total_f32 = <float>total
                loss = PyArray_Scalar(&total_f32, cnp.PyArray_DescrFromType(typenum), None)
            else:
                loss = PyArray_Scalar(&total, cnp.PyArray_DescrFromType(typenum), None)
    finally:
        PyMem_Free(buffer)
    return (loss, grad_out) if with_grad else loss


def cross_entropy(logits, target, *, axis=-1, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, activation="softmax",
                  return_grad=False, grad_output=None, grad_out=None, num_threads=None):
    cdef object result = _small_cross_entropy(
        logits, target, axis, weight, ignore_index, reduction, label_smoothing, activation,
        return_grad, grad_output, grad_out, num_threads)
    if result is not None:
        return result
    return _routed[10](logits, target, axis=axis, weight=weight, ignore_index=ignore_index,
                       reduction=reduction, label_smoothing=label_smoothing,
                       activation=activation, return_grad=return_grad,
                       grad_output=grad_output, grad_out=grad_out, num_threads=num_threads)
