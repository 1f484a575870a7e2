/*
 * fs_columns.h -- softmax, log_softmax and logsumexp along the middle axis of a C-ordered
 * (outer, n, inner) array (axis=0 of a matrix), one column per vector lane.
 *
 * Design:
 * 1. A unit is w <= FS_COLUMN_UNIT_BYTES of neighbouring columns of one slab: each of the
 *    slab's n rows holds w contiguous values of it.  Three passes:
 *    - gather: the unit's rows are read in order (the only read of the caller's memory;
 *      the rows FS_COLUMN_AHEAD further on are prefetched, since hardware prefetchers
 *      do not follow a stride of whole pages) and copied into a contiguous buffer, group
 *      by group: group g holds columns 8g..8g+7 (4g..4g+3 for double), its vector i
 *      value i of each.  Each column's max is taken on the way.
 *    - sums: a group at a time, the exponentials and their sum.
 *    - scatter: the unit's rows in order again, normalised from the buffer and written
 *      to the output (streaming stores when the caller asks).
 *    The caller sizes units so that the buffer is at most L2's size (n x 128 floats,
 *    512 KiB, for n = 1000): it stays in L2, or L3, between the passes.  The rows
 *    themselves would not stay in cache between the passes: a power of two apart (16
 *    KiB in the benchmark's 1000x4096), they share a few sets.
 *    Units of 64 floats measured a little slower, narrower ones far slower (fewer bytes
 *    of each memory page read at a time).
 * 2. A group is what fs_short.h calls a group of rows, turned around: vector i holds
 *    value i of 8 (4) columns.  The sums take fs_short.h's steps (its exponentials, its
 *    values at the max, its replay of the row loops' association; the exponential's
 *    short path when the group's min and max allow it, decided as the row loops decide
 *    for a row: deciding it per 4 vectors instead cost a quarter more) and its final steps
 *    (the reciprocal split, the log1p normaliser), so a column gets bit for bit the
 *    result its values get along a row (tests/test_forward.py's layout tests).  Moving
 *    strips of columns into rows and back with 8x8 transposes, which this replaces,
 *    took more time than the arithmetic (1000x4096: 2.0-2.5x the last-axis call, now
 *    1.7-2.0x).
 * 3. The last group of a unit may be partial: its loads and stores are masked or cover
 *    only the unit's columns, and its missing lanes compute on zeros that are dropped.
 *    The output may be the input: every value of a unit is in the buffer before the
 *    scatter writes.
 * 4. Columns longer than the row loops' long-row limit (which take another association)
 *    and builds without vector extensions use _core.pxi's transposing path instead.
 *    Gathering the next unit inside the current unit's sums (two buffers), or writing
 *    one unit while gathering the next, measured no faster.
 */
#ifndef FS_COLUMNS_H
#define FS_COLUMNS_H

#include "fs_short.h"

#define FS_COLUMN_UNIT_BYTES 512    /* of each row at most: 128 floats, 64 doubles */
#define FS_COLUMN_AHEAD 16          /* rows the gather (and the scatter) prefetch ahead */

#if FS_HAVE_VECTOR_EXTENSIONS
#define FS_COLUMN_LANES 1

/* a row's part of a unit, nbytes from p (p need not start a cache line) */
static inline void FS_column_prefetch(const void *p, size_t nbytes, int write)
{
    const char *c = (const char *)p;
    for (size_t b = 0; b < nbytes; b += 64)
        write ? FS_prefetch_write((void *)(c + b)) : FS_prefetch(c + b);
    write ? FS_prefetch_write((void *)(c + nbytes - 1)) : FS_prefetch(c + nbytes - 1);
}

/* nbytes of a unit's row from `row` to y: the whole cache lines within it with
   streaming stores, the partial lines at either end (a NumPy `out` is only 16-byte
   aligned) with ordinary stores; those lines are shared with the neighbouring units */
static inline void FS_column_stream(void *y, const void *row, size_t nbytes)
{
    char *d = (char *)y;
    const char *s = (const char *)row;
    size_t j = (64 - ((uintptr_t)d & 63)) & 63;
    if (j > nbytes)
        j = nbytes;
    memcpy(d, s, j);
    size_t whole = j + ((nbytes - j) & ~(size_t)63);
#if defined(__AVX__)
    for (; j < whole; j += 32) {
        __m256i v;
        memcpy(&v, s + j, sizeof v);
        _mm256_stream_si256((__m256i *)(d + j), v);
    }
#else
    FS_stream_copy(d + j, s + j, whole - j);
    j = whole;
#endif
    memcpy(d + j, s + j, nbytes - j);
}

/* softmax's last step on a lane: FS_scale_f32's v h + v l, FS_divide_f64's split */
static inline FS_v8f FS_column_scale_f32(FS_v8f v, FS_v8f h, FS_v8f l) { return v * h + v * l; }
static inline FS_v4d FS_column_scale_f64(FS_v4d v, FS_v4d h, FS_v4d l)
{
    return FS_scale_split4d(v, h, l);
}

/* The sums of one group: e = exp(c - m), stored back into c for softmax (op 0), or left
   out where c equals the max and counted in *ties for the logs (ops 1, 2); added in
   fs_short.h's association (FS_short_sum_add_*).  Whole blocks of 16 values are
   exponentiated 4 vectors at a time and summed while in registers, through the short
   exponential when the caller found every lane's values within its range of the max
   (normal: as the row loops decide from a row's min and max; same bits either way); the
   last values take fs_short.h's steps as they are. */
#define FS_COLUMN_BLOCKS(SUFFIX, V, EXP_LANES, NORMAL, ...)                                     \
    for (; j + 16 <= n; j += 16) {                                                              \
        V e[16];                                                                                \
        for (int q = 0; q < 16; q += 4) {                                                       \
            FS_EACH(k, 4) e[q + k] = c[j + q + k] - m;                                          \
            EXP_LANES(e + q, 4, NORMAL);                                                        \
        }                                                                                       \
        if (op == 0)                                                                            \
            for (int q = 0; q < 16; q++)    /* not memcpy: GCC makes it a rep movs */           \
                c[j + q] = e[q];                                                                \
        else                                                                                    \
            count += FS_short_off_max_##SUFFIX(c + j, m, e, e, 16);                             \
        FS_short_sum_add_##SUFFIX(e, 16, __VA_ARGS__);                                          \
    }
#define FS_COLUMN_SUMS(SUFFIX, V, EXP_LANES, ...)                                               \
    if (normal)                                                                                 \
        FS_COLUMN_BLOCKS(SUFFIX, V, EXP_LANES, 1, __VA_ARGS__)                                  \
    else                                                                                        \
        FS_COLUMN_BLOCKS(SUFFIX, V, EXP_LANES, 0, __VA_ARGS__)                                  \
    if (j < n) {                                                                                \
        const ptrdiff_t k = n - j;                                                              \
        V scratch[16];                                                                          \
        V *e = op == 0 ? c + j : scratch;                                                       \
        FS_short_exps_##SUFFIX(c + j, m, e, k, (k + 3) & ~(ptrdiff_t)3);                        \
        if (op != 0)                                                                            \
            count += FS_short_off_max_##SUFFIX(c + j, m, e, e, k);                              \
        FS_short_sum_add_##SUFFIX(e, k, __VA_ARGS__);                                           \
    }

static inline void FS_column_sums_f32(FS_v8f *c, ptrdiff_t n, FS_v8f m, int normal, int op,
                                      FS_v4d *total_low, FS_v4d *total_high, FS_v8i *ties)
{
    FS_v4d acc_low[8], acc_high[8];
    FS_v8i count = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t j = 0;
    for (int k = 0; k < 8; k++)
        acc_low[k] = acc_high[k] = FS_splat4d(0.0);
    FS_COLUMN_SUMS(f32, FS_v8f, FS_expf_lanes, acc_low, acc_high)
    FS_short_sum_fold_f32(acc_low, acc_high, total_low, total_high);
    *ties = count;
}

static inline void FS_column_sums_f64(FS_v4d *c, ptrdiff_t n, FS_v4d m, int normal, int op,
                                      FS_v4d *total, FS_v4l *ties)
{
    FS_v4d lanes[4][4];
    FS_v4l count = {0, 0, 0, 0};
    ptrdiff_t j = 0;
    for (int k = 0; k < 16; k++)
        lanes[k / 4][k % 4] = FS_splat4d(0.0);
    FS_COLUMN_SUMS(f64, FS_v4d, FS_exp_lanes, lanes)
    *total = FS_short_fold_kahan(lanes[0], lanes[1], lanes[2], lanes[3]);
    *ties = count;
}

/* Whether every lane's exponentials take the short path: FS_short_exp_* lane by lane
   (the max finite, the min within its range of it) */
static inline int FS_column_normal_f32(FS_v8f low, FS_v8f high)
{
    return !FS_any8(~((high - high == 0.0f) & (low - high >= -87.0f)));
}

static inline int FS_column_normal_f64(FS_v4d low, FS_v4d high)
{
    return !FS_any4(~((high - high == 0.0) & (low - high >= -708.0)));
}

/* Group c's sums, turned into what the scatter applies: a, b for softmax (op 0, the
   reciprocal split) and log_softmax (1, the max and the normaliser), or the logsumexp
   values (2) of its first `count` lanes into lse */
static inline void FS_column_group_f32(FS_v8f *c, ptrdiff_t n, FS_v8f m, int normal, int op,
                                       FS_v8f *a, FS_v8f *b, float *lse, ptrdiff_t count)
{
    FS_v4d total_low, total_high, norm_low, norm_high, max_low, max_high;
    FS_v8i ties;
    FS_column_sums_f32(c, n, m, normal, op, &total_low, &total_high, &ties);
    if (op == 0) {
        FS_short_inverse_split_f32(total_low, total_high, a, b);
        return;
    }
    FS_short_log_norm_f32(total_low, total_high, ties, &norm_low, &norm_high);
    FS_widen8f(m, &max_low, &max_high);
    if (op == 1) {
        /* +inf in a column: the column is NaN (_row_softmax) */
        norm_low = FS_select4d(max_low == INFINITY, FS_splat4d(NAN), norm_low);
        norm_high = FS_select4d(max_high == INFINITY, FS_splat4d(NAN), norm_high);
        *a = m;
        *b = FS_narrow8f(norm_low, norm_high);
        return;
    }
    FS_v8f v = FS_narrow8f(max_low + norm_low, max_high + norm_high);
    for (ptrdiff_t r = 0; r < count; r++)
        lse[r] = v[r];
}

static inline void FS_column_group_f64(FS_v4d *c, ptrdiff_t n, FS_v4d m, int normal, int op,
                                       FS_v4d *a, FS_v4d *b, double *lse, ptrdiff_t count)
{
    FS_v4d total;
    FS_v4l ties;
    FS_column_sums_f64(c, n, m, normal, op, &total, &ties);
    if (op == 0) {
        FS_short_reciprocal_split(total, a, b);
        return;
    }
    FS_v4d norm = FS_short_log_norm_f64(total, ties);
    if (op == 1) {
        *a = m;
        *b = FS_select4d(m == INFINITY, FS_splat4d(NAN), norm);
        return;
    }
    FS_v4d v = m + norm;
    for (ptrdiff_t r = 0; r < count; r++)
        lse[r] = v[r];
}

/* Values of buffer a unit of w columns of n rows needs: its groups, n rounded up to 4
   vectors each */
static inline ptrdiff_t FS_column_buffer_values(ptrdiff_t n, ptrdiff_t w, size_t itemsize)
{
    const ptrdiff_t lanes = (ptrdiff_t)(32 / itemsize);
    return ((w + lanes - 1) / lanes) * ((n + 3) & ~(ptrdiff_t)3) * lanes;
}

/* The gather, the scatter and the unit, written once for 8 float and 4 double lanes (SUFFIX f32 /
   f64, vector V, L lanes).  buf's groups hold stride vectors each: n rounded up to 4
   (fs_short.h's exponentials work 4 vectors at a time), the padding zeros. */
#define FS_COLUMN_STEPS(SUFFIX, V, T, L, SPLAT, VMAX, VMIN, LOAD_UPTO)                        \
    /* buf's group g, vector i = x[i * step + L g ...] (w values a row; the last group's   \
       lanes past w are 0); m[g] and low[g] = the group's max and min (NaN ignored) */      \
    static inline void FS_column_gather_##SUFFIX(const T *x, ptrdiff_t step, ptrdiff_t n,     \
                                                 ptrdiff_t w, V *buf, ptrdiff_t stride,      \
                                                 V *m, V *low)                               \
    {                                                                                        \
        const ptrdiff_t groups = (w + L - 1) / L;                                            \
        for (ptrdiff_t g = 0; g < groups; g++) {                                             \
            m[g] = SPLAT(-INFINITY);                                                         \
            low[g] = SPLAT(INFINITY);                                                        \
        }                                                                                    \
        for (ptrdiff_t i = 0; i < n; i++) {                                                  \
            const T *row = x + i * step;                                                     \
            if (i + FS_COLUMN_AHEAD < n)                                                     \
                FS_column_prefetch(row + FS_COLUMN_AHEAD * step, (size_t)w * sizeof(T), 0);  \
            for (ptrdiff_t g = 0; g < groups; g++) {                                         \
                const V v = LOAD_UPTO(row + L * g, w - L * g, (T)0);                         \
                buf[g * stride + i] = v;                                                     \
                m[g] = VMAX(v, m[g]);           /* a NaN never becomes the max */            \
                low[g] = VMIN(v, low[g]);                                                    \
            }                                                                                \
        }                                                                                    \
        for (ptrdiff_t g = 0; g < groups; g++)                                               \
            for (ptrdiff_t i = n; i < stride; i++)                                           \
                buf[g * stride + i] = SPLAT((T)0);                                           \
    }                                                                                        \
    /* row i of the unit: its w values from buf's groups, a[g] and b[g] applied as          \
       softmax's FS_column_scale_* or the logs' (v - a) - b */                              \
    static inline void FS_column_scatter_##SUFFIX(const V *buf, ptrdiff_t stride,           \
                                                  ptrdiff_t n, ptrdiff_t w, const V *a,      \
                                                  const V *b, int log_output, T *y,          \
                                                  ptrdiff_t step, int stream)                \
    {                                                                                        \
        const ptrdiff_t groups = (w + L - 1) / L;                                            \
        V row[FS_COLUMN_UNIT_BYTES / sizeof(V)];                                             \
        for (ptrdiff_t i = 0; i < n; i++) {                                                  \
            if (!stream && i + FS_COLUMN_AHEAD < n)                                          \
                FS_column_prefetch(y + (i + FS_COLUMN_AHEAD) * step, (size_t)w * sizeof(T), 1); \
            for (ptrdiff_t g = 0; g < groups; g++) {                                         \
                const V v = buf[g * stride + i];                                             \
                row[g] = log_output ? (v - a[g]) - b[g] : FS_column_scale_##SUFFIX(v, a[g], b[g]); \
            }                                                                                \
            if (stream)                                                                      \
                FS_column_stream(y + i * step, row, (size_t)w * sizeof(T));         \
            else                                                                             \
                memcpy(y + i * step, row, (size_t)w * sizeof(T));                            \
        }                                                                                    \
    }                                                                                        \
    /* One unit: w <= FS_COLUMN_UNIT_BYTES of columns of a slab, x's rows step values      \
       apart, n of them; op 0 softmax, 1 log_softmax (into y, x's layout; y may be x), 2    \
       logsumexp (lse[0..w)).  buffer: FS_column_buffer_values(n, w) values, 32-byte        \
       aligned.  stream: y's rows are written with streaming stores (the caller has       \
       checked that each row's part is whole cache lines, and fences). */                  \
    static inline void FS_column_unit_##SUFFIX(const T *x, ptrdiff_t step, ptrdiff_t n,      \
                                               ptrdiff_t w, T *y, T *lse, T *buffer, int op,  \
                                               int stream)                                   \
    {                                                                                        \
        const ptrdiff_t groups = (w + L - 1) / L, stride = (n + 3) & ~(ptrdiff_t)3;          \
        V *buf = (V *)buffer;                                                                \
        V m[FS_COLUMN_UNIT_BYTES / sizeof(V)], a[FS_COLUMN_UNIT_BYTES / sizeof(V)];          \
        V b[FS_COLUMN_UNIT_BYTES / sizeof(V)], low[FS_COLUMN_UNIT_BYTES / sizeof(V)];        \
        FS_column_gather_##SUFFIX(x, step, n, w, buf, stride, m, low);                       \
        for (ptrdiff_t g = 0; g < groups; g++)                                               \
            FS_column_group_##SUFFIX(buf + g * stride, n, m[g],                              \
                                     FS_column_normal_##SUFFIX(low[g], m[g]), op, &a[g], &b[g], \
                                     op == 2 ? lse + L * g : NULL,                           \
                                     w - L * g < L ? w - L * g : L);                         \
        if (op != 2)                                                                         \
            FS_column_scatter_##SUFFIX(buf, stride, n, w, a, b, op == 1, y, step, stream);   \
    }

FS_COLUMN_STEPS(f32, FS_v8f, float, 8, FS_splat8f, FS_vmax8f, FS_vmin8f, FS_load8f_upto)
FS_COLUMN_STEPS(f64, FS_v4d, double, 4, FS_splat4d, FS_vmax4d, FS_vmin4d, FS_load4d_upto)

#else
#define FS_COLUMN_LANES 0
static inline ptrdiff_t FS_column_buffer_values(ptrdiff_t n, ptrdiff_t w, size_t itemsize)
{
    (void)n; (void)w; (void)itemsize;
    return 0;
}
static inline void FS_column_unit_f32(const float *x, ptrdiff_t step, ptrdiff_t n, ptrdiff_t w,
                                      float *y, float *lse, float *buffer, int op, int stream)
{
    (void)x; (void)step; (void)n; (void)w; (void)y; (void)lse; (void)buffer; (void)op;
    (void)stream;
}
static inline void FS_column_unit_f64(const double *x, ptrdiff_t step, ptrdiff_t n, ptrdiff_t w,
                                      double *y, double *lse, double *buffer, int op, int stream)
{
    (void)x; (void)step; (void)n; (void)w; (void)y; (void)lse; (void)buffer; (void)op;
    (void)stream;
}
#endif /* FS_HAVE_VECTOR_EXTENSIONS */

#endif /* FS_COLUMNS_H */
