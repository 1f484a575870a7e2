/*
 * fs_reduce.h -- row reductions (max, sums) written with explicit vector lanes.
 *
 * Design:
 * 1. GCC does not vectorize a floating-point reduction through one accumulator without
 *    -ffast-math (it may not reassociate the additions), and it did not vectorize the
 *    same lane-by-lane loops as Cython emits them.  These reductions therefore spell the
 *    lanes out with GCC/Clang vector extensions: 32-byte vectors, lowered to AVX by the
 *    avx2 build and to pairs of SSE2 registers by the baseline build.  The order of
 *    operations is fixed by the code, so every build gives the same result.
 * 2. Several vector accumulators per reduction hide the latency (two for the sums,
 *    four for the max and min); the lanes are folded in a fixed pairwise order at the
 *    end.
 * 3. Compilers without vector extensions get the scalar loops at the bottom, which
 *    compute the same lane sums in the same order.
 * 4. The lane-wise max, min and comparisons (FS_vmax*, FS_eq* ...) are defined here for
 *    every kernel; in the SSE2-only build they are SSE instructions on each half of a
 *    32-byte vector (FS_SSE2_HALF_LANES), where GCC's own lowering went lane by lane.
 */
#ifndef FS_REDUCE_H
#define FS_REDUCE_H

#include <math.h>
#include <stddef.h>
#include <string.h>

/* FS_NO_VECTOR_EXTENSIONS builds the scalar fallback with GCC or Clang too, so that it
   is compiled and checked here (tests/test_fallback_build.py) */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(FS_NO_VECTOR_EXTENSIONS)
#define FS_HAVE_VECTOR_EXTENSIONS 1
typedef float FS_v8f __attribute__((vector_size(32)));
typedef float FS_v4f __attribute__((vector_size(16)));
typedef double FS_v4d __attribute__((vector_size(32)));
typedef int FS_v8i __attribute__((vector_size(32)));
typedef long long FS_v4l __attribute__((vector_size(32)));
#else
#define FS_HAVE_VECTOR_EXTENSIONS 0
#endif

/* Builds with SSE2 but not AVX (the baseline variant) hold a 32-byte vector in two SSE
   registers; where GCC's lowering of a generic operation went lane by lane there, the
   kernels spell the operation out on the two 16-byte halves. */
#if FS_HAVE_VECTOR_EXTENSIONS && defined(__SSE2__) && !defined(__AVX__)
#define FS_SSE2_HALF_LANES 1
#else
#define FS_SSE2_HALF_LANES 0
#endif

#if FS_HAVE_VECTOR_EXTENSIONS
static inline FS_v8f FS_splat8f(float v) { FS_v8f r = {v, v, v, v, v, v, v, v}; return r; }
static inline FS_v4d FS_splat4d(double v) { FS_v4d r = {v, v, v, v}; return r; }

/* Lane-wise a > b ? a : b and a < b ? a : b: a NaN `a` never wins, so the max and min skip
   NaN as the row loops want.  With AVX these are single vmaxps/vminps instructions (x86
   max/min return the second operand when either is NaN); otherwise a compare and a
   select.
   FS_eq/lt/le/gt/ge*: lane-wise comparisons as masks (all ones where true; false for
   NaN), C's operators on vectors.
   Builds with SSE2 but not AVX (the baseline variant) do both on each 16-byte half with
   SSE's maxps/minps/cmpps (and pd): GCC lowered a comparison of 32-byte vectors there to
   a scalar compare and select per lane (the baseline's 1x1000 float32 softmax spent 59%
   of its 4 us in the max and min, its log_softmax half its time in the ties test). */
#if FS_SSE2_HALF_LANES
#include <emmintrin.h>
#define FS_SSE2_HALVES(NAME, V, R, H, OP)                                           \
    static inline R NAME(V a, V b)                                                  \
    {                                                                               \
        H half[4];                                                                  \
        R result;                                                                   \
        memcpy(half, &a, sizeof a);                                                 \
        memcpy(half + 2, &b, sizeof b);                                             \
        half[0] = OP(half[0], half[2]);                                             \
        half[1] = OP(half[1], half[3]);                                             \
        memcpy(&result, half, sizeof result);                                       \
        return result;                                                              \
    }
#define FS_LANE_OPS(SUFFIX, V, M, H, SSE)                                             \
    FS_SSE2_HALVES(FS_vmax##SUFFIX, V, V, H, _mm_max_##SSE)                         \
    FS_SSE2_HALVES(FS_vmin##SUFFIX, V, V, H, _mm_min_##SSE)                         \
    FS_SSE2_HALVES(FS_eq##SUFFIX, V, M, H, _mm_cmpeq_##SSE)                         \
    FS_SSE2_HALVES(FS_lt##SUFFIX, V, M, H, _mm_cmplt_##SSE)                         \
    FS_SSE2_HALVES(FS_le##SUFFIX, V, M, H, _mm_cmple_##SSE)                         \
    FS_SSE2_HALVES(FS_gt##SUFFIX, V, M, H, _mm_cmpgt_##SSE)                         \
    FS_SSE2_HALVES(FS_ge##SUFFIX, V, M, H, _mm_cmpge_##SSE)
FS_LANE_OPS(8f, FS_v8f, FS_v8i, __m128, ps)
FS_LANE_OPS(4d, FS_v4d, FS_v4l, __m128d, pd)
#else
#if defined(__AVX__)
#include <immintrin.h>
static inline FS_v8f FS_vmax8f(FS_v8f a, FS_v8f b) { return (FS_v8f)_mm256_max_ps((__m256)a, (__m256)b); }
static inline FS_v8f FS_vmin8f(FS_v8f a, FS_v8f b) { return (FS_v8f)_mm256_min_ps((__m256)a, (__m256)b); }
static inline FS_v4d FS_vmax4d(FS_v4d a, FS_v4d b) { return (FS_v4d)_mm256_max_pd((__m256d)a, (__m256d)b); }
static inline FS_v4d FS_vmin4d(FS_v4d a, FS_v4d b) { return (FS_v4d)_mm256_min_pd((__m256d)a, (__m256d)b); }
#define FS_LANE_MAX_MIN(SUFFIX, V, M)
#else
#define FS_LANE_MAX_MIN(SUFFIX, V, M)                                                 \
    static inline V FS_vmax##SUFFIX(V a, V b)                                       \
    {                                                                               \
        M take = a > b;                                                             \
        return (V)(((M)a & take) | ((M)b & ~take));                                 \
    }                                                                               \
    static inline V FS_vmin##SUFFIX(V a, V b)                                       \
    {                                                                               \
        M take = a < b;                                                             \
        return (V)(((M)a & take) | ((M)b & ~take));                                 \
    }
#endif
#define FS_LANE_OPS(SUFFIX, V, M)                                                     \
    FS_LANE_MAX_MIN(SUFFIX, V, M)                                                   \
    static inline M FS_eq##SUFFIX(V a, V b) { return a == b; }                      \
    static inline M FS_lt##SUFFIX(V a, V b) { return a < b; }                       \
    static inline M FS_le##SUFFIX(V a, V b) { return a <= b; }                      \
    static inline M FS_gt##SUFFIX(V a, V b) { return a > b; }                       \
    static inline M FS_ge##SUFFIX(V a, V b) { return a >= b; }
FS_LANE_OPS(8f, FS_v8f, FS_v8i)
FS_LANE_OPS(4d, FS_v4d, FS_v4l)
#endif
#endif

/* Largest and (in *min_out, when want_min) smallest non-NaN value of x[0:n]: -inf and
   +inf when there is none (NaN never compares greater or less).  The row loops use the
   spread max - min to pick the exponential's short path.  Four accumulators each: vmaxps
   and vminps take 4 cycles on recent Intel cores (1 on Zen 3), so with two a 1000-value
   row waited on the chains (measured on a Xeon: 1x1000 softmax calls 7-10% faster
   with four).  The lanes fold pairwise.  The order can only decide which zero
   a row whose maximum is 0 reports, -0 or +0; x - max and exp(x - max) are then the same
   for every x but +-0 (ties of the maximum), so no result changes. */
#if FS_HAVE_VECTOR_EXTENSIONS
/* the whole vectors of x: result and low from them, j past them (rows of L and more) */
#define FS_MINMAX_VECTORS(SUFFIX, T, V, L)                                            \
    if (n >= L) {   /* shorter rows: the scalar loop alone, without a lane fold */    \
        V m[4], l[4], a;                                                            \
        T hi[L], lo[L];                                                             \
        for (int k = 0; k < 4; k++) {                                               \
            m[k] = FS_splat##SUFFIX(-INFINITY);                                     \
            l[k] = FS_splat##SUFFIX(INFINITY);                                      \
        }                                                                           \
        for (; j + 4 * L <= n; j += 4 * L)                                          \
            for (int k = 0; k < 4; k++) {                                           \
                memcpy(&a, x + j + k * L, sizeof a);                                \
                m[k] = FS_vmax##SUFFIX(a, m[k]);                                    \
                if (want_min)                                                       \
                    l[k] = FS_vmin##SUFFIX(a, l[k]);                                \
            }                                                                       \
        for (; j + L <= n; j += L) {                                                \
            memcpy(&a, x + j, sizeof a);                                            \
            m[0] = FS_vmax##SUFFIX(a, m[0]);                                        \
            if (want_min)                                                           \
                l[0] = FS_vmin##SUFFIX(a, l[0]);                                    \
        }                                                                           \
        m[0] = FS_vmax##SUFFIX(FS_vmax##SUFFIX(m[0], m[2]), FS_vmax##SUFFIX(m[1], m[3])); \
        l[0] = FS_vmin##SUFFIX(FS_vmin##SUFFIX(l[0], l[2]), FS_vmin##SUFFIX(l[1], l[3])); \
        memcpy(hi, &m[0], sizeof hi);                                               \
        memcpy(lo, &l[0], sizeof lo);                                               \
        for (int w = L / 2; w >= 1; w /= 2)                                         \
            for (int k = 0; k < w; k++) {                                           \
                hi[k] = hi[k] > hi[k + w] ? hi[k] : hi[k + w];                      \
                lo[k] = lo[k] < lo[k + w] ? lo[k] : lo[k + w];                      \
            }                                                                       \
        result = hi[0];                                                             \
        low = lo[0];                                                                \
    }
#else
#define FS_MINMAX_VECTORS(SUFFIX, T, V, L)
#endif
#define FS_MINMAX_IMPL(SUFFIX, T, V, L)                                               \
    static inline __attribute__((always_inline)) T                                  \
    FS_minmax_##SUFFIX##_impl(const T *x, ptrdiff_t n, T *min_out, const int want_min) \
    {                                                                               \
        T result = -INFINITY, low = INFINITY;                                       \
        ptrdiff_t j = 0;                                                            \
        FS_MINMAX_VECTORS(SUFFIX, T, V, L)                                          \
        for (; j < n; j++) {                                                        \
            result = x[j] > result ? x[j] : result;                                 \
            low = x[j] < low ? x[j] : low;                                          \
        }                                                                           \
        if (want_min)                                                               \
            *min_out = low;                                                         \
        return result;                                                              \
    }
FS_MINMAX_IMPL(8f, float, FS_v8f, 8)
FS_MINMAX_IMPL(4d, double, FS_v4d, 4)

/* Largest non-NaN value of x[0:n]; -inf when there is none. */
static inline float FS_max_f32(const float *x, ptrdiff_t n)
{
    return FS_minmax_8f_impl(x, n, NULL, 0);
}
static inline double FS_max_f64(const double *x, ptrdiff_t n)
{
    return FS_minmax_4d_impl(x, n, NULL, 0);
}

/* Largest and (in *min_out) smallest non-NaN value of x[0:n] (as above) */
static inline float FS_minmax_f32(const float *x, ptrdiff_t n, float *min_out)
{
    return FS_minmax_8f_impl(x, n, min_out, 1);
}
static inline double FS_minmax_f64(const double *x, ptrdiff_t n, double *min_out)
{
    return FS_minmax_4d_impl(x, n, min_out, 1);
}

/* Whether every x - max of a row with this min and max is in the exponential's short-path
   range (fs_simd.h): false for infinite or empty rows. */
static inline int FS_short_exp_f32(float low, float high)
{
    return high - high == 0 && low - high >= -87.0f;
}

static inline int FS_short_exp_f64(double low, double high)
{
    return high - high == 0 && low - high >= -708.0;
}

/* Sum of double x[0:n] with a Kahan-compensated accumulator per lane: a lane that holds
   a 1.0 and then adds many tiny terms keeps them (relative error about 2u for positive
   terms, whatever n).  Compensation is undefined for infinite terms ((s - inf) + inf is
   NaN), so plain lane sums run alongside and decide whenever the sum is not finite:
   +-inf stays inf, NaN (or inf - inf) stays NaN. */
static inline double FS_sum_f64(const double *x, ptrdiff_t n)
{
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    double lost[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    double plain[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    FS_v4d s0 = {0, 0, 0, 0}, s1 = {0, 0, 0, 0}, c0 = {0, 0, 0, 0}, c1 = {0, 0, 0, 0};
    FS_v4d p0 = {0, 0, 0, 0}, p1 = {0, 0, 0, 0};
    FS_v4d a, b, t0, t1;
    for (; j + 8 <= n; j += 8) {
        memcpy(&a, x + j, sizeof a);
        memcpy(&b, x + j + 4, sizeof b);
        p0 += a;
        p1 += b;
        a -= c0;
        b -= c1;
        t0 = s0 + a;
        t1 = s1 + b;
        c0 = (t0 - s0) - a;
        c1 = (t1 - s1) - b;
        s0 = t0;
        s1 = t1;
    }
    for (int k = 0; k < 4; k++) {
        lane[k] = s0[k];
        lane[4 + k] = s1[k];
        lost[k] = c0[k];
        lost[4 + k] = c1[k];
        plain[k] = p0[k];
        plain[4 + k] = p1[k];
    }
#else
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) {
            double term = x[j + k] - lost[k];
            double updated = lane[k] + term;
            plain[k] += x[j + k];
            lost[k] = (updated - lane[k]) - term;
            lane[k] = updated;
        }
#endif
    for (; j < n; j++) {
        double term = x[j] - lost[0];
        double updated = lane[0] + term;
        plain[0] += x[j];
        lost[0] = (updated - lane[0]) - term;
        lane[0] = updated;
    }
    double plain_total = ((plain[0] + plain[4]) + (plain[2] + plain[6]))
                         + ((plain[1] + plain[5]) + (plain[3] + plain[7]));
    if (!isfinite(plain_total))
        return plain_total;
    /* Neumaier fold of the eight lane sums, minus what each lane lost */
    double total = 0.0, compensation = 0.0;
    for (int k = 0; k < 8; k++) {
        double t = total + lane[k];
        compensation += fabs(total) >= fabs(lane[k]) ? (total - t) + lane[k] : (lane[k] - t) + total;
        total = t;
        compensation -= lost[k];
    }
    return total + compensation;
}

#endif /* FS_REDUCE_H */
