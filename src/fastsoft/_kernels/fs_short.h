/*
 * fs_short.h -- softmax, log_softmax, logsumexp, sigsoftmax, log_sigsoftmax and index-target
 * cross-entropy of short rows, one row per vector lane.
 *
 * Design:
 * 1. Rows of at most FS_SHORT_MAX (32) values (1000000x10 and the like) are too short for
 *    the row loops of fs_simd.h: a 10-value row is one vector and a masked tail, and its
 *    max, sum and normaliser are each a horizontal fold.  Here a group of 8 float rows
 *    (4 double rows) is transposed through a small buffer so that vector c[j] holds value
 *    j of every row of the group, one row per lane; the max, the exponentials, the sum and
 *    the normalisation are then plain lane-wise vector operations, and the results are
 *    transposed back.
 * 2. Bit for bit the row loops' results.  Every lane performs the row loop's arithmetic in
 *    the row loop's order: the max ignores NaN the same way (vmax keeps the old max), the
 *    exponential is the same FS_expf_lanes / FS_exp_lanes, the values equal to the max are
 *    left out of the logs' sums and counted the same way, and the sum replays the exact
 *    association FS_exp_store_sum_*_impl uses for a row of n values (its pairs of float
 *    vectors widened into 8 double lanes, or its 8 Kahan lanes, then the same fold).
 *    tests/test_kernel_paths.py compares the two paths bitwise.
 * 3. A group's missing rows (the last group of a call) are zeros, computed and discarded;
 *    columns past n are never read back.  Rows are moved with vector loads and stores;
 *    a row's last partial vector is loaded masked (nothing past the row is read) and
 *    stored whole only over values of later rows of the same call, which are written
 *    afterwards (packed output), else masked: nothing outside the call's rows is touched.
 * 4. Without vector extensions the functions run the row loops row by row.
 */
#ifndef FS_SHORT_H
#define FS_SHORT_H

#include "fs_simd.h"

#define FS_SHORT_MAX 32

#if FS_HAVE_VECTOR_EXTENSIONS

/* Rows r < n_rows of x (n values each) as columns: c[j][r] = x[r * x_step + j] for j < n
   rounded up to a multiple of 8, zeros elsewhere.  Loads never reach past a row's end
   (masked loads for the last block), so any row step is safe. */
static inline void FS_columns_f32(const float *x, ptrdiff_t x_step, ptrdiff_t n_rows, ptrdiff_t n,
                                  FS_v8f *c)
{
    FS_v8f block[8];
    for (ptrdiff_t j = 0; j < n; j += 8) {
        for (ptrdiff_t r = 0; r < 8; r++) {
            block[r] = r < n_rows ? FS_load8f_upto(x + r * x_step + j, n - j, 0.0f)
                                  : FS_splat8f(0.0f);
        }
        FS_transpose8x8_f32((const float *)block, 8, (float *)(c + j), 8);
    }
}

/* The inverse: row r < n_rows of y receives c[0..n)[r].  A row's last partial vector is
   stored whole when what it writes past the row lies in rows this call writes later
   (packed rows, y_step == n, and `room` values writable after the group's last row);
   otherwise with a masked store, which is much slower on some CPUs (AMD Zen). */
static inline void FS_store_columns_f32(const FS_v8f *c, ptrdiff_t n_rows, ptrdiff_t n, float *y,
                                        ptrdiff_t y_step, ptrdiff_t room)
{
    FS_v8f block[FS_SHORT_MAX / 8][8];
    const int packed = y_step == n;
    for (ptrdiff_t j = 0; j < n; j += 8)
        FS_transpose8x8_f32((const float *)(c + j), 8, (float *)block[j / 8], 8);
    for (ptrdiff_t r = 0; r < n_rows; r++)          /* in row order: see above */
        for (ptrdiff_t j = 0; j < n; j += 8) {
            if (j + 8 <= n || (packed && r * n + j + 8 <= n_rows * n + room))
                memcpy(y + r * y_step + j, &block[j / 8][r], sizeof(FS_v8f));
            else
                FS_store8f_tail(y + r * y_step + j, block[j / 8][r], n - j);
        }
}

static inline void FS_columns_f64(const double *x, ptrdiff_t x_step, ptrdiff_t n_rows, ptrdiff_t n,
                                  FS_v4d *c)
{
    FS_v4d block[4];
    for (ptrdiff_t j = 0; j < n; j += 4) {
        for (ptrdiff_t r = 0; r < 4; r++) {
            block[r] = r < n_rows ? FS_load4d_upto(x + r * x_step + j, n - j, 0.0)
                                  : FS_splat4d(0.0);
        }
        FS_transpose4x4_f64((const double *)block, 4, (double *)(c + j), 4);
    }
}

static inline void FS_store_columns_f64(const FS_v4d *c, ptrdiff_t n_rows, ptrdiff_t n, double *y,
                                        ptrdiff_t y_step, ptrdiff_t room)
{
    FS_v4d block[FS_SHORT_MAX / 4][4];
    const int packed = y_step == n;
    for (ptrdiff_t j = 0; j < n; j += 4)
        FS_transpose4x4_f64((const double *)(c + j), 4, (double *)block[j / 4], 4);
    for (ptrdiff_t r = 0; r < n_rows; r++)
        for (ptrdiff_t j = 0; j < n; j += 4) {
            if (j + 4 <= n || (packed && r * n + j + 4 <= n_rows * n + room))
                memcpy(y + r * y_step + j, &block[j / 4][r], sizeof(FS_v4d));
            else
                FS_store4d_tail(y + r * y_step + j, block[j / 4][r], n - j);
        }
}

/* Whether the memory spanned by n_rows rows of x and of y (n values each) overlaps */
static inline int FS_short_overlap(const void *x, ptrdiff_t x_step, const void *y, ptrdiff_t y_step,
                                   ptrdiff_t n_rows, ptrdiff_t n, size_t itemsize)
{
    const char *xa = (const char *)x, *ya = (const char *)y;
    ptrdiff_t x_span = ((n_rows - 1) * x_step + n) * (ptrdiff_t)itemsize;
    ptrdiff_t y_span = ((n_rows - 1) * y_step + n) * (ptrdiff_t)itemsize;
    const char *x_low = x_step >= 0 ? xa : xa + (n_rows - 1) * x_step * (ptrdiff_t)itemsize;
    const char *y_low = y_step >= 0 ? ya : ya + (n_rows - 1) * y_step * (ptrdiff_t)itemsize;
    if (x_step < 0)
        x_span = ((1 - n_rows) * x_step + n) * (ptrdiff_t)itemsize;
    if (y_step < 0)
        y_span = ((1 - n_rows) * y_step + n) * (ptrdiff_t)itemsize;
    return x_low < y_low + y_span && y_low < x_low + x_span;
}

/* FS_exp_store_sum_f32_impl's sum of a row of n values, replayed for 8 rows (lane = row):
   lane k of its two double accumulators is acc_*[k] here (k < 4: acc0, else acc1), for
   rows 0-3 (low) and 4-7 (high); the lanes past n add +0.  FS_short_sum_add_f32 adds
   values [j0, j0 + n) of the rows, j0 a multiple of 16 (the row loop's blocks of two
   vectors), so a long row can be fed in pieces (fs_columns.h); FS_short_sum_fold_f32
   then gives the totals. */
static inline void FS_short_sum_add_f32(const FS_v8f *e, ptrdiff_t n, FS_v4d *acc_low,
                                        FS_v4d *acc_high)
{
    FS_v4d low, high;
    ptrdiff_t j;
    for (j = 0; j + 16 <= n; j += 16)
        for (int k = 0; k < 8; k++) {
            FS_widen8f(e[j + k] + e[j + 8 + k], &low, &high);
            acc_low[k] += low;
            acc_high[k] += high;
        }
    for (; j < n; j += 8)
        for (int k = 0; k < 8 && j + k < n; k++) {
            FS_widen8f(e[j + k], &low, &high);
            acc_low[k] += low;
            acc_high[k] += high;
        }
}

static inline void FS_short_sum_fold_f32(const FS_v4d *acc_low, const FS_v4d *acc_high,
                                         FS_v4d *total_low, FS_v4d *total_high)
{
    *total_low = ((acc_low[0] + acc_low[4]) + (acc_low[2] + acc_low[6]))
                 + ((acc_low[1] + acc_low[5]) + (acc_low[3] + acc_low[7]));
    *total_high = ((acc_high[0] + acc_high[4]) + (acc_high[2] + acc_high[6]))
                  + ((acc_high[1] + acc_high[5]) + (acc_high[3] + acc_high[7]));
}

static inline void FS_short_sum_f32(const FS_v8f *e, ptrdiff_t n, FS_v4d *total_low,
                                    FS_v4d *total_high)
{
    FS_v4d acc_low[8], acc_high[8];
    for (int k = 0; k < 8; k++)
        acc_low[k] = acc_high[k] = FS_splat4d(0.0);
    FS_short_sum_add_f32(e, n, acc_low, acc_high);
    FS_short_sum_fold_f32(acc_low, acc_high, total_low, total_high);
}

/* FS_fold_kahan4d's Neumaier fold of 8 Kahan lanes, for 4 rows at once (lane = row) */
static inline FS_v4d FS_short_fold_kahan(const FS_v4d *s0, const FS_v4d *c0, const FS_v4d *s1,
                                         const FS_v4d *c1)
{
    const FS_v4l magnitude = {0x7fffffffffffffffLL, 0x7fffffffffffffffLL,
                              0x7fffffffffffffffLL, 0x7fffffffffffffffLL};
    FS_v4d total = FS_splat4d(0.0), compensation = FS_splat4d(0.0);
    for (int k = 0; k < 8; k++) {
        FS_v4d lane = k < 4 ? s0[k] : s1[k - 4];
        FS_v4d lost = k < 4 ? c0[k] : c1[k - 4];
        FS_v4d t = total + lane;
        FS_v4l total_larger = FS_ge4d((FS_v4d)((FS_v4l)total & magnitude),
                                      (FS_v4d)((FS_v4l)lane & magnitude));
        compensation += FS_select4d(total_larger, (total - t) + lane, (lane - t) + total);
        total = t;
        compensation -= lost;
    }
    return FS_select4d(FS_eq4d(total - total, FS_splat4d(0.0)), total + compensation, total);
}

/* FS_exp_store_sum_f64_impl's Kahan lanes for 4 rows: s0/c0 take the first vector of
   each pair of 4 values, s1/c1 the second, the tail goes to s0/c0 with zeros past n.
   FS_short_sum_add_f64 adds values [j0, j0 + n), j0 a multiple of 16, as
   FS_short_sum_add_f32 does; lanes[0..3] are s0, c0, s1, c1 (4 vectors each). */
static inline void FS_short_sum_add_f64(const FS_v4d *e, ptrdiff_t n, FS_v4d lanes[4][4])
{
    const FS_v4d zero = FS_splat4d(0.0);
    FS_v4d *s0 = lanes[0], *c0 = lanes[1], *s1 = lanes[2], *c1 = lanes[3];
    ptrdiff_t j;
    for (j = 0; j + 16 <= n; j += 16)
        for (int k = 0; k < 4; k++) {
            FS_kahan4d(&s0[k], &c0[k], e[j + k] + e[j + 4 + k]);
            FS_kahan4d(&s1[k], &c1[k], e[j + 8 + k] + e[j + 12 + k]);
        }
    if (j + 8 <= n) {
        for (int k = 0; k < 4; k++)
            FS_kahan4d(&s0[k], &c0[k], e[j + k] + e[j + 4 + k]);
        j += 8;
    }
    for (; j < n; j += 4)
        for (int k = 0; k < 4; k++)
            FS_kahan4d(&s0[k], &c0[k], j + k < n ? e[j + k] : zero);
}

static inline FS_v4d FS_short_sum_f64(const FS_v4d *e, ptrdiff_t n)
{
    FS_v4d lanes[4][4];
    for (int k = 0; k < 16; k++)
        lanes[k / 4][k % 4] = FS_splat4d(0.0);
    FS_short_sum_add_f64(e, n, lanes);
    return FS_short_fold_kahan(lanes[0], lanes[1], lanes[2], lanes[3]);
}

/* The steps both the forward functions and cross-entropy take on a group, c[j] holding
   column j of the rows (j < width, width = n rounded up to 4; zeros past n).  The
   type-generic ones are written once for 8 float and 4 double lanes:
   FS_short_max_*: the rows' max (NaN never becomes it: vmax keeps the old max);
   FS_short_exps_*: e[j] = exp(c[j] - m) for j < n (and up to width where that costs
     nothing: whole blocks of 4 vectors, else 0), through the short exponential unless a
     real lane (j < n) is outside its range; returns whether it took the general path;
   FS_short_off_max_*: off[j] = e[j] except 0 where c[j] equals the max (the logs' sums
     leave the max out, log1p adds it back); returns how many per lane (off may be e);
   FS_short_two_minus_sigmoid_*: f[j] = 2 - sigmoid(c[j]) as FS_two_minus_sigmoid_*. */
#define FS_SHORT_STEPS(SUFFIX, VS, V, M, T, SPLAT, VMAX, SELECT, EXP_LANES, ANY, FAR)        \
    static inline V FS_short_max_##SUFFIX(const V *c, ptrdiff_t n)                          \
    {                                                                                       \
        V m = SPLAT(-INFINITY);                                                             \
        for (ptrdiff_t j = 0; j < n; j++)                                                   \
            m = VMAX(c[j], m);                                                              \
        return m;                                                                           \
    }                                                                                       \
    static inline int FS_short_exps_##SUFFIX(const V *c, V m, V *e, ptrdiff_t n,            \
                                             ptrdiff_t width)                               \
    {                                                                                       \
        M far = {0};                                                                        \
        for (ptrdiff_t j = 0; j < width; j++) {                                             \
            e[j] = c[j] - m;                                                                \
            if (j < n)                                                                      \
                far |= FS_lt##VS(e[j], SPLAT((T)(FAR)));                                    \
        }                                                                                   \
        const int general = ANY(far);                                                       \
        for (ptrdiff_t j = 0; j < n; j += 4) {                                              \
            if (n - j <= 2) {           /* 1000000x10: 10 exponentials, not 12 */           \
                if (general)                                                                \
                    EXP_LANES(e + j, 2, 0);                                                 \
                else                                                                        \
                    EXP_LANES(e + j, 2, 1);                                                 \
                e[j + 2] = e[j + 3] = SPLAT((T)0);    /* past n: never read back */         \
            } else if (general) {                                                           \
                EXP_LANES(e + j, 4, 0);                                                     \
            } else {                                                                        \
                EXP_LANES(e + j, 4, 1);                                                     \
            }                                                                               \
        }                                                                                   \
        return general;                                                                     \
    }                                                                                       \
    static inline M FS_short_off_max_##SUFFIX(const V *c, V m, const V *e, V *off,          \
                                              ptrdiff_t n)                                  \
    {                                                                                       \
        M ties = {0};                                                                       \
        for (ptrdiff_t j = 0; j < n; j++) {                                                 \
            M at_max = FS_eq##VS(c[j], m);                                                  \
            ties -= at_max;                                                                 \
            off[j] = (V)((M)e[j] & ~at_max);                                                \
        }                                                                                   \
        return ties;                                                                        \
    }                                                                                       \
    static inline void FS_short_two_minus_sigmoid_##SUFFIX(const V *c, V *f, ptrdiff_t width) \
    {                                                                                       \
        const V zero = SPLAT((T)0), one = SPLAT((T)1), two = SPLAT((T)2);                   \
        for (ptrdiff_t j = 0; j < width; j += 4) {                                          \
            M positive[4];                                                                  \
            V t[4];                                                                         \
            FS_EACH(k, 4) {                                                                 \
                positive[k] = FS_ge##VS(c[j + k], zero);                                    \
                t[k] = SELECT(positive[k], -c[j + k], c[j + k]);                            \
            }                                                                               \
            EXP_LANES(t, 4, 0);                                                             \
            FS_EACH(k, 4) f[j + k] = two - SELECT(positive[k], one, t[k]) / (one + t[k]);   \
        }                                                                                   \
    }
FS_SHORT_STEPS(f32, 8f, FS_v8f, FS_v8i, float, FS_splat8f, FS_vmax8f, FS_select8f, FS_expf_lanes,
               FS_any8, -87.0f)
FS_SHORT_STEPS(f64, 4d, FS_v4d, FS_v4l, double, FS_splat4d, FS_vmax4d, FS_select4d, FS_exp_lanes,
               FS_any4, -708.0)

/* sigsoftmax: c becomes the gaps of FS_sigsoftmax_gap_f32f (the row max's own gap is 0),
   whose softmax is taken with shift 0 */
static inline void FS_short_gaps_f32(FS_v8f *c, ptrdiff_t width, FS_v8f m)
{
    const FS_v8f m_neg = FS_min_zero8f(m), m_tail = FS_softplus_tail_v8(m, 0);
    for (ptrdiff_t j = 0; j < width; j += 4)
        FS_sigsoftmax_gapf_lanes(c + j, 4, m, m_neg, m_tail, 0);
}

/* FS_reciprocal_split of every lane */
static inline void FS_short_reciprocal_split(FS_v4d total, FS_v4d *hi, FS_v4d *lo)
{
    for (int r = 0; r < 4; r++) {
        double h, l;
        FS_reciprocal_split(total[r], &h, &l);
        (*hi)[r] = h;
        (*lo)[r] = l;
    }
}

/* softmax's factor for 8 rows (lane = row) from their sums: FS_scale_f32's double
   reciprocal as two floats h + l */
static inline void FS_short_inverse_split_f32(FS_v4d total_low, FS_v4d total_high, FS_v8f *h,
                                              FS_v8f *l)
{
    FS_v4d inverse_low = 1.0 / total_low, inverse_high = 1.0 / total_high, low, high;
    *h = FS_narrow8f(inverse_low, inverse_high);
    FS_widen8f(*h, &low, &high);
    *l = FS_narrow8f(inverse_low - low, inverse_high - high);
}

/* The logs' normaliser for 8 (4) rows from their sums off the max and their ties:
   log1p((ties - 1) + sum), as _log_normalizer */
static inline void FS_short_log_norm_f32(FS_v4d total_low, FS_v4d total_high, FS_v8i ties,
                                         FS_v4d *norm_low, FS_v4d *norm_high)
{
    FS_v4d low, high;
    FS_widen8f(__builtin_convertvector(ties - 1, FS_v8f), &low, &high);  /* small integers: exact */
    *norm_low = FS_log1p_v4(total_low + low);
    *norm_high = FS_log1p_v4(total_high + high);
}

static inline FS_v4d FS_short_log_norm_f64(FS_v4d total, FS_v4l ties)
{
    const FS_v4d count = FS_small_int_to_f64(ties);                 /* exact */
    return FS_log1p_v4(total + (count - 1.0));
}

/* FS_short_gaps_f32 with FS_GAP_ROW's double gaps */
static inline void FS_short_gaps_f64(FS_v4d *c, ptrdiff_t width, FS_v4d m)
{
    const FS_v4d m_neg = FS_min_zero4d(m), m_tail = FS_softplus_tail_v4(m);
    for (ptrdiff_t j = 0; j < width; j += 4)
        FS_sigsoftmax_gap_lanes(c + j, 4, m, m_neg, m_tail);
}

#if defined(__AVX2__)
/* Packed rows (step n) written back without a transpose: vector v of a group's 8n values
   holds rows row_of[v] = (8v + lane) / n, so a per-row vector (lane = row) is spread over
   it by one lane permute. */
#define FS_SHORT_ROW_MAJOR 1
static inline FS_v8f FS_spread_rows8f(FS_v8f per_row, FS_v8i row_of)
{
    return (FS_v8f)_mm256_permutevar8x32_ps((__m256)per_row, (__m256i)row_of);
}
/* for 4 double rows: row_of holds the pairs (2 row, 2 row + 1) of 32-bit halves */
static inline FS_v4d FS_spread_rows4d(FS_v4d per_row, FS_v8i row_of)
{
    return (FS_v4d)_mm256_permutevar8x32_ps((__m256)per_row, (__m256i)row_of);
}
#else
#define FS_SHORT_ROW_MAJOR 0
#endif

/* op 0 softmax, 1 log_softmax, 3 sigsoftmax, 4 log_sigsoftmax (rows into y), 2 logsumexp
   (row r's value at y[r * y_step]) of n_rows rows of n <= FS_SHORT_MAX floats; no masks. */
static inline void FS_short_rows_f32(const float *x, ptrdiff_t x_step, float *y, ptrdiff_t y_step,
                                     ptrdiff_t n_rows, ptrdiff_t n, int op)
{
    const ptrdiff_t width = (n + 3) & ~(ptrdiff_t)3;    /* the columns computed on */
    /* y overlapping x (in place): a store past a group's rows would clobber input rows
       not loaded yet */
    const int in_place = FS_short_overlap(x, x_step, y, y_step, n_rows, n, sizeof(float));
    const int sig = op >= 3;                    /* sigsoftmax (3), log_sigsoftmax (4) */
    op = sig ? op - 3 : op;
    const int row_major = FS_SHORT_ROW_MAJOR && !sig && op != 2 && x_step == n && y_step == n;
    FS_v8i row_of[FS_SHORT_MAX];
    if (row_major)                  /* value i of a group is in row i / n: counted, not divided */
        for (ptrdiff_t i = 0, row = 0, col = 0; i < 8 * n; i++, col++) {
            if (col == n) {
                row++;
                col = 0;
            }
            row_of[i / 8][i % 8] = (int)row;
        }
    for (ptrdiff_t first = 0; first < n_rows; first += 8) {
        const ptrdiff_t rows = n_rows - first < 8 ? n_rows - first : 8;
        const ptrdiff_t room = in_place ? 0 : (n_rows - first - rows) * n;
        FS_v8f c[FS_SHORT_MAX], e[FS_SHORT_MAX];
        FS_v8i ties = {0, 0, 0, 0, 0, 0, 0, 0};
        FS_v4d low, high;
        ptrdiff_t j;
        FS_columns_f32(x + first * x_step, x_step, rows, n, c);
        FS_v8f m = FS_short_max_f32(c, n);
        if (sig) {
            FS_short_gaps_f32(c, width, m);
            m = FS_splat8f(0.0f);
        }
        const int general = FS_short_exps_f32(c, m, e, n, width);
        for (j = width; j < ((n + 7) & ~(ptrdiff_t)7); j++)
            e[j] = FS_splat8f(0.0f);                      /* read by the 8x8 transposes only */
        if (op != 0)
            ties = FS_short_off_max_f32(c, m, e, e, n);
        FS_v4d total_low, total_high;
        FS_short_sum_f32(e, n, &total_low, &total_high);
        if (op == 0) {
            /* FS_scale_f32: the double reciprocal as two floats, applied with one rounding */
            FS_v8f h, l;
            FS_short_inverse_split_f32(total_low, total_high, &h, &l);
#if FS_SHORT_ROW_MAJOR
            if (row_major && rows == 8) {
                /* the exponentials again, in row order (same arguments, same bits),
                   instead of transposing them back */
                const float *xg = x + first * n;
                float *yg = y + first * n;
                FS_v8f block[4];
                for (j = 0; j < n; j += 4) {
                    if (j + 4 <= n) {
                        FS_EACH(k, 4) {
                            memcpy(&block[k], xg + 8 * (j + k), sizeof block[k]);
                            block[k] = block[k] - FS_spread_rows8f(m, row_of[j + k]);
                        }
                        if (general)
                            FS_expf_lanes(block, 4, 0);
                        else
                            FS_expf_lanes(block, 4, 1);
                        FS_EACH(k, 4) {
                            block[k] = block[k] * FS_spread_rows8f(h, row_of[j + k])
                                       + block[k] * FS_spread_rows8f(l, row_of[j + k]);
                            memcpy(yg + 8 * (j + k), &block[k], sizeof block[k]);
                        }
                    } else {
                        for (ptrdiff_t v = j; v < n; v++) {
                            memcpy(&block[0], xg + 8 * v, sizeof block[0]);
                            block[0] = block[0] - FS_spread_rows8f(m, row_of[v]);
                            if (general)
                                FS_expf_lanes(block, 1, 0);
                            else
                                FS_expf_lanes(block, 1, 1);
                            block[0] = block[0] * FS_spread_rows8f(h, row_of[v])
                                       + block[0] * FS_spread_rows8f(l, row_of[v]);
                            memcpy(yg + 8 * v, &block[0], sizeof block[0]);
                        }
                    }
                }
                continue;
            }
#endif
            for (j = 0; j < n; j++)
                e[j] = e[j] * h + e[j] * l;
            FS_store_columns_f32(e, rows, n, y + first * y_step, y_step, room);
            continue;
        }
        /* log1p((ties - 1) + sum off the max), as _log_normalizer */
        FS_v4d norm_low, norm_high;
        FS_short_log_norm_f32(total_low, total_high, ties, &norm_low, &norm_high);
        FS_v4d max_low, max_high;
        FS_widen8f(m, &max_low, &max_high);
        if (op == 1) {
            /* +inf in a row: the row is NaN (_row_softmax).  sigsoftmax's m is 0 here: its
               row loop has no such rule either, an infinite logit's gap is NaN already */
            norm_low = FS_select4d(max_low == INFINITY, FS_splat4d(NAN), norm_low);
            norm_high = FS_select4d(max_high == INFINITY, FS_splat4d(NAN), norm_high);
            FS_v8f l = FS_narrow8f(norm_low, norm_high);
#if FS_SHORT_ROW_MAJOR
            if (row_major && rows == 8) {
                const float *xg = x + first * n;
                float *yg = y + first * n;
                for (j = 0; j < n; j++) {
                    FS_v8f a;
                    memcpy(&a, xg + 8 * j, sizeof a);
                    a = (a - FS_spread_rows8f(m, row_of[j])) - FS_spread_rows8f(l, row_of[j]);
                    memcpy(yg + 8 * j, &a, sizeof a);
                }
                continue;
            }
#endif
            for (j = 0; j < n; j++)
                c[j] = (c[j] - m) - l;
            FS_store_columns_f32(c, rows, n, y + first * y_step, y_step, room);
        } else {
            FS_v8f lse = FS_narrow8f(max_low + norm_low, max_high + norm_high);
            for (ptrdiff_t r = 0; r < rows; r++)
                y[(first + r) * y_step] = lse[r];
        }
    }
}

/* FS_short_rows_f32 for double rows, 4 per group */
static inline void FS_short_rows_f64(const double *x, ptrdiff_t x_step, double *y, ptrdiff_t y_step,
                                     ptrdiff_t n_rows, ptrdiff_t n, int op)
{
    const ptrdiff_t width = (n + 3) & ~(ptrdiff_t)3;
    const int in_place = FS_short_overlap(x, x_step, y, y_step, n_rows, n, sizeof(double));
    const int sig = op >= 3;                    /* sigsoftmax (3), log_sigsoftmax (4) */
    op = sig ? op - 3 : op;
    const int row_major = FS_SHORT_ROW_MAJOR && !sig && op != 2 && x_step == n && y_step == n;
    FS_v8i row_of[FS_SHORT_MAX];
    if (row_major)                  /* 32-bit halves of value i: rows 2 (i / n), 2 (i / n) + 1 */
        for (ptrdiff_t i = 0, row = 0, col = 0; i < 4 * n; i++, col++) {
            if (col == n) {
                row++;
                col = 0;
            }
            row_of[i / 4][2 * (i % 4)] = (int)(2 * row);
            row_of[i / 4][2 * (i % 4) + 1] = (int)(2 * row + 1);
        }
    const FS_v4d zero = FS_splat4d(0.0);
    for (ptrdiff_t first = 0; first < n_rows; first += 4) {
        const ptrdiff_t rows = n_rows - first < 4 ? n_rows - first : 4;
        const ptrdiff_t room = in_place ? 0 : (n_rows - first - rows) * n;
        FS_v4d c[FS_SHORT_MAX], e[FS_SHORT_MAX];
        FS_v4l ties = {0, 0, 0, 0};
        ptrdiff_t j;
        FS_columns_f64(x + first * x_step, x_step, rows, n, c);
        FS_v4d m = FS_short_max_f64(c, n);
        int general = 0;
        if (sig && op == 0) {
            /* sigsoftmax: FS_sigsoftmax_terms_f64's products, not exponentials of gaps */
            FS_v4d m_neg, c_hi, c_lo, c_inverse;
            FS_sigsoftmax_terms_constants(m, &m_neg, &c_hi, &c_lo, &c_inverse);
            for (j = 0; j < width; j += 4) {
                FS_EACH(k, 4) e[j + k] = c[j + k];
                FS_sigsoftmax_terms_lanes(e + j, 4, m, m_neg, c_hi, c_lo, c_inverse);
            }
        } else {
            if (sig) {
                FS_short_gaps_f64(c, width, m);
                m = zero;
            }
            general = FS_short_exps_f64(c, m, e, n, width);
        }
        if (op != 0)
            ties = FS_short_off_max_f64(c, m, e, e, n);
        FS_v4d total = FS_short_sum_f64(e, n);
        if (op == 0) {
            FS_v4d hi, lo;
            FS_short_reciprocal_split(total, &hi, &lo);
#if FS_SHORT_ROW_MAJOR
            if (row_major && rows == 4) {
                /* as in FS_short_rows_f32: the exponentials again, in row order */
                const double *xg = x + first * n;
                double *yg = y + first * n;
                FS_v4d block[4];
                for (j = 0; j < n; j += 4) {
                    if (j + 4 <= n) {
                        FS_EACH(k, 4) {
                            memcpy(&block[k], xg + 4 * (j + k), sizeof block[k]);
                            block[k] = block[k] - FS_spread_rows4d(m, row_of[j + k]);
                        }
                        if (general)
                            FS_exp_lanes(block, 4, 0);
                        else
                            FS_exp_lanes(block, 4, 1);
                        FS_EACH(k, 4) {
                            block[k] = FS_scale_split4d(block[k], FS_spread_rows4d(hi, row_of[j + k]),
                                                     FS_spread_rows4d(lo, row_of[j + k]));
                            memcpy(yg + 4 * (j + k), &block[k], sizeof block[k]);
                        }
                    } else {
                        for (ptrdiff_t v = j; v < n; v++) {
                            memcpy(&block[0], xg + 4 * v, sizeof block[0]);
                            block[0] = block[0] - FS_spread_rows4d(m, row_of[v]);
                            if (general)
                                FS_exp_lanes(block, 1, 0);
                            else
                                FS_exp_lanes(block, 1, 1);
                            block[0] = FS_scale_split4d(block[0], FS_spread_rows4d(hi, row_of[v]),
                                                     FS_spread_rows4d(lo, row_of[v]));
                            memcpy(yg + 4 * v, &block[0], sizeof block[0]);
                        }
                    }
                }
                continue;
            }
#endif
            for (j = 0; j < n; j++)
                e[j] = FS_scale_split4d(e[j], hi, lo);
            FS_store_columns_f64(e, rows, n, y + first * y_step, y_step, room);
            continue;
        }
        FS_v4d norm = FS_short_log_norm_f64(total, ties);
        if (op == 1) {
            norm = FS_select4d(m == INFINITY, FS_splat4d(NAN), norm);
#if FS_SHORT_ROW_MAJOR
            if (row_major && rows == 4) {
                const double *xg = x + first * n;
                double *yg = y + first * n;
                for (j = 0; j < n; j++) {
                    FS_v4d a;
                    memcpy(&a, xg + 4 * j, sizeof a);
                    a = (a - FS_spread_rows4d(m, row_of[j])) - FS_spread_rows4d(norm, row_of[j]);
                    memcpy(yg + 4 * j, &a, sizeof a);
                }
                continue;
            }
#endif
            for (j = 0; j < n; j++)
                c[j] = (c[j] - m) - norm;
            FS_store_columns_f64(c, rows, n, y + first * y_step, y_step, room);
        } else {
            FS_v4d lse = m + norm;
            for (ptrdiff_t r = 0; r < rows; r++)
                y[(first + r) * y_step] = lse[r];
        }
    }
}

/* Cross-entropy with index targets and no smoothing for short rows: _loss.pxi's
   _row_cross_entropy_index replayed lane-wise, 8 float rows (4 double rows) per group,
   bit for bit.  losses[r] = w_t (log S - d_t); when grad is not NULL its rows receive
   scale_r w_t (p - onehot(t)), times 2 - sigmoid(x) for sigsoftmax (sig), where
   scale_r = grad_scales[r] (grad_scale when grad_scales is NULL).  Rows whose target is
   ignore_index get loss 0 and a zero gradient row.  grad may be x itself: a group is read
   whole before any of it is written.  targets must be valid or ignore_index. */
static inline void FS_short_cross_entropy_f32(
    const float *x, ptrdiff_t x_step, ptrdiff_t n_rows, ptrdiff_t n, int sig,
    const long long *targets, long long ignore_index, const double *w, double *losses,
    float *grad, ptrdiff_t grad_step, const double *grad_scales, double grad_scale)
{
    const ptrdiff_t width = (n + 3) & ~(ptrdiff_t)3;
    const int in_place = grad != NULL
                         && FS_short_overlap(x, x_step, grad, grad_step, n_rows, n, sizeof(float));
    for (ptrdiff_t first = 0; first < n_rows; first += 8) {
        const ptrdiff_t rows = n_rows - first < 8 ? n_rows - first : 8;
        FS_v8f c[FS_SHORT_MAX], e[FS_SHORT_MAX], off[FS_SHORT_MAX], factor[FS_SHORT_MAX];
        FS_v8i kept = {0, 0, 0, 0, 0, 0, 0, 0};
        FS_v4d total_low, total_high, low, high, max_low, max_high;
        double row_factor[8], inverse[8];
        ptrdiff_t j;
        FS_columns_f32(x + first * x_step, x_step, rows, n, c);
        FS_v8f m = FS_short_max_f32(c, n);
        const FS_v8f x_max = m;
        if (sig) {
            if (grad != NULL)
                FS_short_two_minus_sigmoid_f32(c, factor, width);
            FS_short_gaps_f32(c, width, m);
            m = FS_splat8f(0.0f);
        }
        FS_short_exps_f32(c, m, e, n, width);
        const FS_v8i ties = FS_short_off_max_f32(c, m, e, off, n);
        FS_short_sum_f32(off, n, &total_low, &total_high);
        FS_widen8f(x_max, &max_low, &max_high);           /* +inf logit: the row is NaN */
        total_low = FS_select4d(max_low == INFINITY, FS_splat4d(NAN), total_low);
        total_high = FS_select4d(max_high == INFINITY, FS_splat4d(NAN), total_high);
        FS_v4d norm_low, norm_high;
        FS_short_log_norm_f32(total_low, total_high, ties, &norm_low, &norm_high);
        FS_OPAQUE(norm_low);
        FS_OPAQUE(norm_high);
        FS_widen8f(__builtin_convertvector(ties, FS_v8f), &low, &high);
        FS_v4d sums_low = total_low + low, sums_high = total_high + high;
        for (ptrdiff_t r = 0; r < 8; r++) {
            const long long t = r < rows ? targets[first + r] : ignore_index;
            const double sum = r < 4 ? sums_low[r] : sums_high[r - 4];
            inverse[r] = 0.0;
            if (t == ignore_index) {
                if (r < rows)
                    losses[first + r] = 0.0;
                continue;
            }
            kept[r] = -1;
            const double w_t = w[t];
            const double target_d = (double)c[t][r] - (double)m[r];
            const double norm = r < 4 ? norm_low[r] : norm_high[r - 4];
            losses[first + r] = w_t == 0 ? 0.0 : w_t * (norm - target_d);
            row_factor[r] = (grad_scales != NULL ? grad_scales[first + r] : grad_scale) * w_t;
            inverse[r] = 1.0 / (sum / row_factor[r]);
        }
        if (grad == NULL)
            continue;
        /* FS_scale_f32's two-float reciprocal, then the sigsoftmax factor */
        FS_v4d inverse_low, inverse_high;
        memcpy(&inverse_low, inverse, sizeof inverse_low);
        memcpy(&inverse_high, inverse + 4, sizeof inverse_high);
        FS_v8f h = FS_narrow8f(inverse_low, inverse_high);
        FS_widen8f(h, &low, &high);
        FS_v8f l = FS_narrow8f(inverse_low - low, inverse_high - high);
        FS_v8f g[FS_SHORT_MAX];
        for (j = 0; j < n; j++) {
            g[j] = e[j] * h + e[j] * l;
            if (sig)
                g[j] = g[j] * factor[j];
            g[j] = (FS_v8f)((FS_v8i)g[j] & kept);
        }
        FS_store_columns_f32(g, rows, n, grad + first * grad_step, grad_step,
                             in_place ? 0 : (n_rows - first - rows) * n);
        for (ptrdiff_t r = 0; r < rows; r++) {
            const long long t = targets[first + r];
            if (t == ignore_index)
                continue;
            const double sum = r < 4 ? sums_low[r] : sums_high[r - 4];
            double value = row_factor[r] * ((double)e[t][r] / sum - 1.0);
            if (sig)
                value = value * (double)factor[t][r];
            grad[(first + r) * grad_step + t] = (float)value;
        }
    }
}

/* FS_short_cross_entropy_f32 for double rows, 4 per group */
static inline void FS_short_cross_entropy_f64(
    const double *x, ptrdiff_t x_step, ptrdiff_t n_rows, ptrdiff_t n, int sig,
    const long long *targets, long long ignore_index, const double *w, double *losses,
    double *grad, ptrdiff_t grad_step, const double *grad_scales, double grad_scale)
{
    const ptrdiff_t width = (n + 3) & ~(ptrdiff_t)3;
    const int in_place = grad != NULL
                         && FS_short_overlap(x, x_step, grad, grad_step, n_rows, n, sizeof(double));
    const FS_v4d zero = FS_splat4d(0.0);
    for (ptrdiff_t first = 0; first < n_rows; first += 4) {
        const ptrdiff_t rows = n_rows - first < 4 ? n_rows - first : 4;
        FS_v4d c[FS_SHORT_MAX], e[FS_SHORT_MAX], off[FS_SHORT_MAX], factor[FS_SHORT_MAX];
        FS_v4l kept = {0, 0, 0, 0};
        FS_v4d divisor = zero, row_factor = zero;
        ptrdiff_t j;
        FS_columns_f64(x + first * x_step, x_step, rows, n, c);
        FS_v4d m = FS_short_max_f64(c, n);
        const FS_v4d x_max = m;
        if (sig) {
            if (grad != NULL)
                FS_short_two_minus_sigmoid_f64(c, factor, width);
            FS_short_gaps_f64(c, width, m);
            m = zero;
        }
        FS_short_exps_f64(c, m, e, n, width);
        const FS_v4l ties = FS_short_off_max_f64(c, m, e, off, n);
        FS_v4d total = FS_short_sum_f64(off, n);
        total = FS_select4d(x_max == INFINITY, FS_splat4d(NAN), total);
        FS_v4d norm = FS_short_log_norm_f64(total, ties);
        FS_OPAQUE(norm);
        FS_v4d sums = total + FS_small_int_to_f64(ties);
        for (ptrdiff_t r = 0; r < 4; r++) {
            const long long t = r < rows ? targets[first + r] : ignore_index;
            if (t == ignore_index) {
                if (r < rows)
                    losses[first + r] = 0.0;
                continue;
            }
            kept[r] = -1;
            const double w_t = w[t];
            const double target_d = c[t][r] - m[r];
            losses[first + r] = w_t == 0 ? 0.0 : w_t * (norm[r] - target_d);
            row_factor[r] = (grad_scales != NULL ? grad_scales[first + r] : grad_scale) * w_t;
            divisor[r] = sums[r] / row_factor[r];
        }
        if (grad == NULL)
            continue;
        FS_v4d g[FS_SHORT_MAX], hi, lo;
        FS_short_reciprocal_split(divisor, &hi, &lo);
        const FS_v4d inverse = 1.0 / divisor;
        for (j = 0; j < n; j++) {
            if (sig) {
                /* (e k) f, as FS_target_grad_f64 without targets */
                g[j] = e[j] * inverse;
                FS_OPAQUE(g[j]);
                g[j] = g[j] * factor[j];
            } else {
                g[j] = FS_scale_split4d(e[j], hi, lo);    /* FS_divide_f64 */
            }
            g[j] = (FS_v4d)((FS_v4l)g[j] & kept);
        }
        FS_store_columns_f64(g, rows, n, grad + first * grad_step, grad_step,
                             in_place ? 0 : (n_rows - first - rows) * n);
        for (ptrdiff_t r = 0; r < rows; r++) {
            const long long t = targets[first + r];
            if (t == ignore_index)
                continue;
            double value = row_factor[r] * (e[t][r] / sums[r] - 1.0);
            if (sig)
                value = value * factor[t][r];
            grad[(first + r) * grad_step + t] = value;
        }
    }
}

#define FS_SHORT_CROSS_ENTROPY 1

#else /* no vector extensions: the row loops, row by row */

#define FS_SHORT_ROWS_SCALAR(T, SUFFIX, GAP)                                                \
    static inline void FS_short_rows_##SUFFIX(const T *x, ptrdiff_t x_step, T *y,           \
                                              ptrdiff_t y_step, ptrdiff_t n_rows,           \
                                              ptrdiff_t n, int op)                          \
    {                                                                                       \
        T gaps[FS_SHORT_MAX];                                                               \
        const int sig = op >= 3;                                                            \
        op = sig ? op - 3 : op;                                                             \
        for (ptrdiff_t i = 0; i < n_rows; i++) {                                            \
            const T *row = x + i * x_step;                                                  \
            T m = FS_max_##SUFFIX(row, n);                                                  \
            ptrdiff_t ties;                                                                 \
            if (sig) {                                                                      \
                GAP(row, gaps, n, m);                                                       \
                row = gaps;                                                                 \
                m = 0;                                                                      \
            }                                                                               \
            if (op == 0) {                                                                  \
                double total = FS_exp_store_sum_##SUFFIX(row, y + i * y_step, n, m, 0, NULL); \
                FS_short_scale_##SUFFIX(y + i * y_step, n, total);                          \
                continue;                                                                   \
            }                                                                               \
            double norm = FS_log1p_one(FS_exp_sum_off_max_##SUFFIX(row, n, m, &ties, 0,     \
                                                                    NULL)               \
                                       + (double)(ties - 1));                               \
            if (op == 1)                                                                    \
                FS_log_normalize_##SUFFIX(row, y + i * y_step, n, m,                        \
                                          m == INFINITY ? NAN : norm);                      \
            else                                                                            \
                y[i * y_step] = (T)((double)m + norm);                                      \
        }                                                                                   \
    }
static inline void FS_short_scale_f32(float *y, ptrdiff_t n, double total) { FS_scale_f32(y, n, 1.0 / total); }
static inline void FS_short_scale_f64(double *y, ptrdiff_t n, double total) { FS_divide_f64(y, n, total); }
#define FS_SHORT_GAP_F32(row, gaps, n, m) FS_sigsoftmax_gap_f32f(row, gaps, n, m, 0)
#define FS_SHORT_GAP_F64(row, gaps, n, m) FS_sigsoftmax_gap_f64(row, gaps, n, m)
FS_SHORT_ROWS_SCALAR(float, f32, FS_SHORT_GAP_F32)
FS_SHORT_ROWS_SCALAR(double, f64, FS_SHORT_GAP_F64)

/* never called: the cross-entropy kernels keep their row loops (_loss.pxi) */
#define FS_SHORT_CROSS_ENTROPY 0
#define FS_SHORT_CROSS_ENTROPY_STUB(T, SUFFIX)                                              \
    static inline void FS_short_cross_entropy_##SUFFIX(                                     \
        const T *x, ptrdiff_t x_step, ptrdiff_t n_rows, ptrdiff_t n, int sig,               \
        const long long *targets, long long ignore_index, const double *w, double *losses,  \
        T *grad, ptrdiff_t grad_step, const double *grad_scales, double grad_scale)         \
    {                                                                                       \
        (void)x; (void)x_step; (void)n_rows; (void)n; (void)sig; (void)targets;             \
        (void)ignore_index; (void)w; (void)losses; (void)grad; (void)grad_step;             \
        (void)grad_scales; (void)grad_scale;                                                \
    }
FS_SHORT_CROSS_ENTROPY_STUB(float, f32)
FS_SHORT_CROSS_ENTROPY_STUB(double, f64)

#endif /* FS_HAVE_VECTOR_EXTENSIONS */

#endif /* FS_SHORT_H */
