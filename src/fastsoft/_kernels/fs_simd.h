/*
 * fs_simd.h -- the hot row loops of fastsoft, written with explicit vector lanes.
 *
 * Design:
 * 1. GCC does not auto-vectorize the exponential loops as Cython emits them (the row
 *    helpers' float loops came out scalar), so the loops that dominate every kernel --
 *    exponentiate-and-sum, scale, log-normalise, sigsoftmax's log-domain gap -- are
 *    spelled out here with GCC/Clang vector extensions: 8 floats or 4 doubles per 32-byte
 *    vector, lowered to AVX2+FMA by the avx2 build and to SSE2 register pairs by the
 *    baseline build.  The vector code is the same in both builds; only the instruction
 *    selection differs.
 * 2. The elementwise functions (FS_expf_v8, FS_exp_v4, FS_log1p_unit_v4) follow the scalar
 *    algorithms of fs_math.h step for step: same reduction, same polynomial, same
 *    clamps, so they have the same accuracy and the same special values (-inf -> 0,
 *    +inf -> inf, NaN -> NaN).  Lane selects are bit masks, never branches.
 * 3. A row's last n % 8 (or n % 4) values go through the same vector code (AVX2 masked
 *    loads and stores; lane-by-lane copies in the baseline build), so a value's result
 *    never depends on where it sits in the row.
 * 4. Sums of exponentials accumulate in double: float rows add two vectors in float, then
 *    convert to two double vectors (exact), double rows use Kahan-compensated lanes; the
 *    lanes are folded in a fixed order, so every thread count gives the same bits.  The
 *    exponential has a short path for rows whose values are all within its normal range
 *    of the max (same bits as the general path).
 * 5. Also here: a vector log1p (the log normalisers), block transposes (a non-last axis
 *    and fs_short.h's short rows), sigsoftmax's float gaps and gradient factor, and
 *    streaming stores.
 * 6. Compilers without vector extensions (not GCC/Clang) fall back to the scalar loops at
 *    the bottom of each function, which compute the same values up to the order of their
 *    sums.  FS_NO_VECTOR_EXTENSIONS selects them under GCC/Clang too:
 *    tests/test_fallback_build.py builds the kernels so and compares them with these.
 */
#ifndef FS_SIMD_H
#define FS_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fs_math.h"
#include "fs_reduce.h"

/* the intrinsics of the streaming stores and their fence, with or without vector
   extensions */
#if defined(__AVX__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Ask for the cache line holding p: rows of a strided column strip live in different
   pages, where the hardware prefetchers stop, and a row's exponential pass fetches the
   next row (`ahead`) for its max pass, two lines per block of the loop. */
static inline void FS_prefetch(const void *p)
{
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p);
#else
    (void)p;
#endif
}

static inline void FS_prefetch_write(void *p)
{
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 1);
#else
    (void)p;
#endif
}

/* the two cache lines from p, if p is not NULL */
static inline void FS_prefetch_two_lines(const void *p)
{
    if (p) {
        FS_prefetch(p);
        FS_prefetch((const char *)p + 64);
    }
}

#if FS_HAVE_VECTOR_EXTENSIONS

typedef uint32_t FS_v8u __attribute__((vector_size(32)));
typedef uint64_t FS_v4u __attribute__((vector_size(32)));

/* where `take` is all-ones pick a, else b (lane masks from vector comparisons) */
static inline FS_v8f FS_select8f(FS_v8i take, FS_v8f a, FS_v8f b)
{
    return (FS_v8f)(((FS_v8i)a & take) | ((FS_v8i)b & ~take));
}

static inline FS_v4d FS_select4d(FS_v4l take, FS_v4d a, FS_v4d b)
{
    return (FS_v4d)(((FS_v4l)a & take) | ((FS_v4l)b & ~take));
}

/* -|v| and min(v, 0), sigsoftmax's two selects, as one instruction each: the sign bit
   set is select(v >= 0, -v, v)'s value (-0 for +-0, exp of which is 1 either way; a NaN
   stays a NaN, its sign not kept), and vminps/vminpd return their second operand, 0, for
   a NaN and for -0, as select(v < 0, v, 0) does.  Measured: float32 sigsoftmax's terms
   0.87-0.91 -> 0.78-0.81 ns a value on one core (Intel Xeon, rows in L1). */
static inline FS_v8f FS_neg_abs8f(FS_v8f v) { return (FS_v8f)((FS_v8i)v | (FS_v8i)FS_splat8f(-0.0f)); }
static inline FS_v4d FS_neg_abs4d(FS_v4d v) { return (FS_v4d)((FS_v4l)v | (FS_v4l)FS_splat4d(-0.0)); }
static inline FS_v8f FS_min_zero8f(FS_v8f v) { return FS_vmin8f(v, FS_splat8f(0.0f)); }
static inline FS_v4d FS_min_zero4d(FS_v4d v) { return FS_vmin4d(v, FS_splat4d(0.0)); }

/* the two halves of 8 floats as 4 doubles each (exact).  With AVX these are single
   instructions; GCC's lowering of the generic conversion went through the stack. */
#if defined(__AVX__)
#include <immintrin.h>
static inline void FS_widen8f(FS_v8f v, FS_v4d *low, FS_v4d *high)
{
    __m256 m = (__m256)v;
    *low = (FS_v4d)_mm256_cvtps_pd(_mm256_castps256_ps128(m));
    *high = (FS_v4d)_mm256_cvtps_pd(_mm256_extractf128_ps(m, 1));
}

#elif FS_SSE2_HALF_LANES
static inline void FS_widen8f(FS_v8f v, FS_v4d *low, FS_v4d *high)
{
    __m128 q[2];
    __m128d d[4];
    memcpy(q, &v, sizeof v);
    d[0] = _mm_cvtps_pd(q[0]);
    d[1] = _mm_cvtps_pd(_mm_movehl_ps(q[0], q[0]));
    d[2] = _mm_cvtps_pd(q[1]);
    d[3] = _mm_cvtps_pd(_mm_movehl_ps(q[1], q[1]));
    memcpy(low, d, sizeof *low);
    memcpy(high, d + 2, sizeof *high);
}
#else
static inline void FS_widen8f(FS_v8f v, FS_v4d *low, FS_v4d *high)
{
    FS_v4f a = __builtin_shufflevector(v, v, 0, 1, 2, 3);
    FS_v4f b = __builtin_shufflevector(v, v, 4, 5, 6, 7);
    *low = __builtin_convertvector(a, FS_v4d);
    *high = __builtin_convertvector(b, FS_v4d);
}
#endif

/* the inverse: the double halves of 8 floats -> 8 floats (each rounded once, to nearest).
   The SSE2 build narrows each 16-byte half itself: GCC's lowering stored the lanes one
   by one and read them back whole (the baseline float backward's slowest step). */
#if FS_SSE2_HALF_LANES
static inline FS_v8f FS_narrow8f(FS_v4d low, FS_v4d high)
{
    __m128d d[4];
    __m128 q[2];
    FS_v8f v;
    memcpy(d, &low, sizeof low);
    memcpy(d + 2, &high, sizeof high);
    q[0] = _mm_movelh_ps(_mm_cvtpd_ps(d[0]), _mm_cvtpd_ps(d[1]));
    q[1] = _mm_movelh_ps(_mm_cvtpd_ps(d[2]), _mm_cvtpd_ps(d[3]));
    memcpy(&v, q, sizeof v);
    return v;
}
#else
static inline FS_v8f FS_narrow8f(FS_v4d low, FS_v4d high)
{
    FS_v4f a = __builtin_convertvector(low, FS_v4f), b = __builtin_convertvector(high, FS_v4f);
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7);
}
#endif

/* Integers of magnitude below 2^51 as doubles, exactly: one vcvtqq2pd with AVX-512DQ;
   elsewhere through the exponent of 1.5 * 2^52 (there is no vector int64-to-double
   conversion before AVX-512DQ, and GCC converted lane by lane: the avx2 build's float64
   log_softmax and logsumexp on 1000000x10 were 3-5% slower for it). */
static inline FS_v4d FS_small_int_to_f64(FS_v4l v)
{
#if defined(__AVX512DQ__) && defined(__AVX512VL__)
    return __builtin_convertvector(v, FS_v4d);
#else
    return (FS_v4d)(v + 0x4338000000000000LL) - 0x1.8p52;     /* 0x4338... is 1.5 * 2^52 */
#endif
}

/* Loads and stores of a row's last k < 8 (k < 4) values: AVX2 masked moves, which never
   touch memory past the row; other builds copy through a small buffer.  Lanes past k
   load as `fill`. */
#if defined(__AVX2__)
static inline FS_v8f FS_load8f_tail(const float *x, ptrdiff_t k, float fill)
{
    const FS_v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    FS_v8i real = lane < (int)k;
    FS_v8f v = (FS_v8f)_mm256_maskload_ps(x, (__m256i)real);
    return FS_select8f(real, v, FS_splat8f(fill));
}
static inline void FS_store8f_tail(float *y, FS_v8f v, ptrdiff_t k)
{
    const FS_v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    _mm256_maskstore_ps(y, (__m256i)(lane < (int)k), (__m256)v);
}
static inline FS_v4d FS_load4d_tail(const double *x, ptrdiff_t k, double fill)
{
    const FS_v4l lane = {0, 1, 2, 3};
    FS_v4l real = lane < (long long)k;
    FS_v4d v = (FS_v4d)_mm256_maskload_pd(x, (__m256i)real);
    return FS_select4d(real, v, FS_splat4d(fill));
}
static inline void FS_store4d_tail(double *y, FS_v4d v, ptrdiff_t k)
{
    const FS_v4l lane = {0, 1, 2, 3};
    _mm256_maskstore_pd(y, (__m256i)(lane < (long long)k), (__m256d)v);
}
#else
static inline FS_v8f FS_load8f_tail(const float *x, ptrdiff_t k, float fill)
{
    FS_v8f v = FS_splat8f(fill);
    for (ptrdiff_t i = 0; i < k; i++)
        v[i] = x[i];
    return v;
}
static inline void FS_store8f_tail(float *y, FS_v8f v, ptrdiff_t k)
{
    for (ptrdiff_t i = 0; i < k; i++)
        y[i] = v[i];
}
static inline FS_v4d FS_load4d_tail(const double *x, ptrdiff_t k, double fill)
{
    FS_v4d v = FS_splat4d(fill);
    for (ptrdiff_t i = 0; i < k; i++)
        v[i] = x[i];
    return v;
}
static inline void FS_store4d_tail(double *y, FS_v4d v, ptrdiff_t k)
{
    for (ptrdiff_t i = 0; i < k; i++)
        y[i] = v[i];
}
#endif

/* Up to a whole vector: x[0..k) with a plain load when k reaches a vector (masked
   loads are slower), FS_load*_tail's masked one otherwise (all `fill` for k <= 0); the
   stores write min(k, lanes) values, none for k <= 0. */
#define FS_UPTO(SUFFIX, V, T, L)                                                    \
    static inline V FS_load##SUFFIX##_upto(const T *x, ptrdiff_t k, T fill)         \
    {                                                                               \
        V v;                                                                        \
        if (k < L)                                                                  \
            return FS_load##SUFFIX##_tail(x, k > 0 ? k : 0, fill);                  \
        memcpy(&v, x, sizeof v);                                                    \
        return v;                                                                   \
    }                                                                               \
    static inline void FS_store##SUFFIX##_upto(T *y, V v, ptrdiff_t k)              \
    {                                                                               \
        if (k >= L)                                                                 \
            memcpy(y, &v, sizeof v);                                                \
        else if (k > 0)                                                             \
            FS_store##SUFFIX##_tail(y, v, k);                                       \
    }
FS_UPTO(8f, FS_v8f, float, 8)
FS_UPTO(4d, FS_v4d, double, 4)

/* The vector exponentials work on `count` independent vectors at once, one step of the
   algorithm across all of them before the next: the exponential is a chain of about 15
   dependent operations, and with the steps of four vectors side by side the core keeps
   both FMA pipes busy instead of waiting on one chain (measured on Zen 3: 9 cycles per
   8 floats with one vector at a time, 6.5 with four).  count is a compile-time constant
   at every call, so the loops unroll into straight-line code. */
#define FS_LANES_MAX 4

/* The value of v as computed so far: the compiler may not fuse its last operation with
   the next one (FMA contraction across an inlined function), so that a result formed
   from it rounds as it does where the same function is not inlined (the row loops). */
#define FS_OPAQUE(v) __asm__("" : "+m"(v))
#define FS_EACH(k, count) _Pragma("GCC unroll 4") for (int k = 0; k < (count); k++)

/* s (1 + p) rounded once, for a power of two s whose product stays normal: with FMA the
   product s p is exact inside the fused operation; without it, 1 + p is rounded and the
   scaling is exact.  Either way the bits are s * fl(1 + p), the general path's value. */
#if defined(__FMA__)
static inline FS_v8f FS_scale_one_plus_8f(FS_v8f p, FS_v8f s)
{
    return (FS_v8f)_mm256_fmadd_ps((__m256)p, (__m256)s, (__m256)s);
}
static inline FS_v4d FS_scale_one_plus_4d(FS_v4d p, FS_v4d s)
{
    return (FS_v4d)_mm256_fmadd_pd((__m256d)p, (__m256d)s, (__m256d)s);
}
#else
static inline FS_v8f FS_scale_one_plus_8f(FS_v8f p, FS_v8f s) { return (1.0f + p) * s; }
static inline FS_v4d FS_scale_one_plus_4d(FS_v4d p, FS_v4d s) { return (1.0 + p) * s; }
#endif

/* x[k] = FS_expf(x[k]) for k < count, lane by lane the scalar algorithm of fs_math.h.
   normal: the caller's promise that every lane is in [-87, 88] or NaN, so that the result
   is a normal float: the clamps and the two-factor scaling are skipped, with the same
   bits (scaling a normal result by a power of two is exact either way). */
static inline __attribute__((always_inline)) void
FS_expf_lanes(FS_v8f *x, const int count, const int normal)
{
    /* 1.5 * 2^23 + 127: t's low mantissa bits are n + 127, so that t's bits shifted by
       23 are 2^n in the normal range (one integer addition fewer than adding the bias
       to n; n and its rounding are the same, x log2(e) never lying halfway) */
    const FS_v8f shifter = FS_splat8f(12583039.0f);
    FS_v8f t[FS_LANES_MAX], n[FS_LANES_MAX], r[FS_LANES_MAX], h[FS_LANES_MAX];
    FS_v8i ni[FS_LANES_MAX], zero_lane[FS_LANES_MAX];
    if (!normal) {
        /* below -104 (masked entries and -inf logits among them) the result is 0: such
           lanes compute exp(0) and are zeroed at the end, rather than scaling down to an
           underflow, which an Intel core serves by a microcode assist per instruction
           (a masked 8x128 float32 softmax spent 69% of its time there); NaN passes */
        FS_EACH(k, count) zero_lane[k] = FS_lt8f(x[k], FS_splat8f(-104.0f));
        FS_EACH(k, count) x[k] = FS_select8f(zero_lane[k], FS_splat8f(0.0f), x[k]);
        FS_EACH(k, count) x[k] = FS_vmin8f(FS_splat8f(89.0f), x[k]);
    }
    FS_EACH(k, count) t[k] = x[k] * 1.44269504088896341f + shifter;
    FS_EACH(k, count) n[k] = t[k] - shifter;
    FS_EACH(k, count) ni[k] = (FS_v8i)t[k] - (FS_v8i)shifter;
    FS_EACH(k, count) r[k] = x[k] - n[k] * 0.693359375f;
    FS_EACH(k, count) r[k] = r[k] - n[k] * -2.12194440e-4f;
    FS_EACH(k, count) h[k] = FS_splat8f(FS_EXPF_H4) * r[k] + FS_EXPF_H3;
    FS_EACH(k, count) h[k] = h[k] * r[k] + FS_EXPF_H2;
    FS_EACH(k, count) h[k] = h[k] * r[k] + FS_EXPF_H1;
    FS_EACH(k, count) h[k] = h[k] * r[k] + FS_EXPF_H0;
    FS_EACH(k, count) h[k] = (r[k] * r[k]) * h[k] + r[k];        /* exp(r) - 1 */
    if (normal) {
        FS_EACH(k, count) x[k] = FS_scale_one_plus_8f(h[k], (FS_v8f)((FS_v8i)t[k] << 23));
    } else {
        FS_EACH(k, count) {
            FS_v8i n1 = ni[k] >> 1;              /* floor(n/2): both factors stay normal */
            FS_v8i n2 = ni[k] - n1;
            x[k] = ((1.0f + h[k]) * (FS_v8f)((n1 + 127) << 23)) * (FS_v8f)((n2 + 127) << 23);
            x[k] = FS_select8f(zero_lane[k], FS_splat8f(0.0f), x[k]);
        }
    }
}

/* FS_expf on 8 lanes */
static inline FS_v8f FS_expf_v8(FS_v8f x)
{
    FS_expf_lanes(&x, 1, 0);
    return x;
}

/* Whether any lane of a comparison mask is set: one vptest with AVX, one movemask with
   SSE2 (the generic fold of the four 64-bit quarters took six instructions, four of
   them moving quarters to general registers, in the float log kinds' backward blocks) */
#if defined(__AVX__)
#include <immintrin.h>
static inline int FS_any4(FS_v4l m) { return !_mm256_testz_si256((__m256i)m, (__m256i)m); }
#elif defined(__SSE2__)
#include <emmintrin.h>
static inline int FS_any4(FS_v4l m)
{
    __m128i a, b;
    memcpy(&a, &m, sizeof a);
    memcpy(&b, (const char *)&m + sizeof a, sizeof b);
    return _mm_movemask_epi8(_mm_or_si128(a, b)) != 0;
}
#else
static inline int FS_any4(FS_v4l m) { return ((m[0] | m[1]) | (m[2] | m[3])) != 0; }
#endif
static inline int FS_any8(FS_v8i m) { return FS_any4((FS_v4l)m); }

/* Whether every lane of a comparison mask is set: no lane of its complement is */
static inline int FS_all4(FS_v4l m) { return !FS_any4(~m); }

/* x[k] = FS_exp(x[k]) for k < count; normal: every lane in [-708, 709] or NaN (as
   FS_expf_lanes) */
static inline __attribute__((always_inline)) void
FS_exp_lanes(FS_v4d *x, const int count, const int normal)
{
    const FS_v4d shifter = FS_splat4d(6755399441056767.0);     /* 1.5 * 2^52 + 1023: as above */
    FS_v4d t[FS_LANES_MAX], n[FS_LANES_MAX], r[FS_LANES_MAX], h[FS_LANES_MAX];
    FS_v4l ni[FS_LANES_MAX], zero_lane[FS_LANES_MAX];
    if (!normal) {
        /* below -746 the result is 0, without an underflow (as FS_expf_lanes) */
        FS_EACH(k, count) zero_lane[k] = FS_lt4d(x[k], FS_splat4d(-746.0));
        FS_EACH(k, count) x[k] = FS_select4d(zero_lane[k], FS_splat4d(0.0), x[k]);
        FS_EACH(k, count) x[k] = FS_vmin4d(FS_splat4d(710.0), x[k]);
    }
    FS_EACH(k, count) t[k] = x[k] * 1.4426950408889634074 + shifter;
    FS_EACH(k, count) n[k] = t[k] - shifter;
    FS_EACH(k, count) ni[k] = (FS_v4l)t[k] - (FS_v4l)shifter;
    FS_EACH(k, count) r[k] = x[k] - n[k] * 6.93145751953125e-1;
    FS_EACH(k, count) r[k] = r[k] - n[k] * 1.42860682030941723212e-6;
    FS_EACH(k, count) h[k] = FS_splat4d(FS_EXP_H9) * r[k] + FS_EXP_H8;
    FS_EACH(k, count) h[k] = h[k] * r[k] + FS_EXP_H7;
    FS_EACH(k, count) h[k] = h[k] * r[k] + FS_EXP_H6;
    FS_EACH(k, count) h[k] = h[k] * r[k] + FS_EXP_H5;
    FS_EACH(k, count) h[k] = h[k] * r[k] + FS_EXP_H4;
    FS_EACH(k, count) h[k] = h[k] * r[k] + FS_EXP_H3;
    FS_EACH(k, count) h[k] = h[k] * r[k] + FS_EXP_H2;
    FS_EACH(k, count) h[k] = h[k] * r[k] + FS_EXP_H1;
    FS_EACH(k, count) h[k] = h[k] * r[k] + FS_EXP_H0;
    FS_EACH(k, count) h[k] = (r[k] * r[k]) * h[k] + r[k];        /* exp(r) - 1 */
    if (normal) {
        FS_EACH(k, count) x[k] = FS_scale_one_plus_4d(h[k], (FS_v4d)((FS_v4l)t[k] << 52));
    } else {
        FS_EACH(k, count) {
            /* floor(n/2) with a logical shift (AVX2 has no 64-bit arithmetic shift) */
            FS_v4l n1 = (FS_v4l)(((FS_v4u)(ni[k] + 2048)) >> 1) - 1024;
            FS_v4l n2 = ni[k] - n1;
            x[k] = ((1.0 + h[k]) * (FS_v4d)((n1 + 1023) << 52)) * (FS_v4d)((n2 + 1023) << 52);
            x[k] = FS_select4d(zero_lane[k], FS_splat4d(0.0), x[k]);
        }
    }
}

/* FS_exp on 4 lanes */
static inline FS_v4d FS_exp_v4(FS_v4d x)
{
    FS_exp_lanes(&x, 1, 0);
    return x;
}

/* FS_exp_v4 for lanes in [-708, 709] or NaN (normal results): same bits */
static inline FS_v4d FS_exp_v4_normal(FS_v4d x)
{
    FS_exp_lanes(&x, 1, 1);
    return x;
}

static inline FS_v4d FS_exp_v4_any(FS_v4d x)
{
    FS_v4l normal = FS_ge4d(x, FS_splat4d(-708.0)) & FS_le4d(x, FS_splat4d(709.0));
    if (__builtin_expect(FS_all4(normal), 1))
        return FS_exp_v4_normal(x);
    return FS_exp_v4(x);
}

/* FS_log1p_unit on 4 lanes: log(1 + t) for 0 <= t <= 1 */
/* t[i] = log1p(t[i]) for t in [0, 1], i < count, side by side (as FS_expf_lanes) */
static inline __attribute__((always_inline)) void FS_log1p_unit_lanes(FS_v4d *t, const int count)
{
    const FS_v4d one = FS_splat4d(1.0);
    FS_v4d u[FS_LANES_MAX], rounding[FS_LANES_MAX], k[FS_LANES_MAX], f[FS_LANES_MAX];
    FS_v4d s[FS_LANES_MAX], z[FS_LANES_MAX], q[FS_LANES_MAX], half_f2[FS_LANES_MAX];
    FS_EACH(i, count) u[i] = one + t[i];
    FS_EACH(i, count) rounding[i] = (t[i] - (u[i] - one)) / u[i];
    FS_EACH(i, count) {
        FS_v4l upper = FS_gt4d(u[i], FS_splat4d(1.4142135623730951));
        f[i] = FS_select4d(upper, 0.5 * u[i], u[i]) - one;
        k[i] = FS_select4d(upper, one, FS_splat4d(0.0));
    }
    FS_EACH(i, count) s[i] = f[i] / (2.0 + f[i]);
    FS_EACH(i, count) z[i] = s[i] * s[i];
    FS_EACH(i, count) q[i] = FS_splat4d(2.0 / 21.0) * z[i] + 2.0 / 19.0;
    FS_EACH(i, count) q[i] = q[i] * z[i] + 2.0 / 17.0;
    FS_EACH(i, count) q[i] = q[i] * z[i] + 2.0 / 15.0;
    FS_EACH(i, count) q[i] = q[i] * z[i] + 2.0 / 13.0;
    FS_EACH(i, count) q[i] = q[i] * z[i] + 2.0 / 11.0;
    FS_EACH(i, count) q[i] = q[i] * z[i] + 2.0 / 9.0;
    FS_EACH(i, count) q[i] = q[i] * z[i] + 2.0 / 7.0;
    FS_EACH(i, count) q[i] = q[i] * z[i] + 2.0 / 5.0;
    FS_EACH(i, count) q[i] = q[i] * z[i] + 2.0 / 3.0;
    FS_EACH(i, count) half_f2[i] = 0.5 * f[i] * f[i];
    FS_EACH(i, count) {
        FS_v4d log_m = f[i] - (half_f2[i] - s[i] * (half_f2[i] + z[i] * q[i]));
        t[i] = k[i] * 6.93147180369123816490e-01
               + (log_m + (k[i] * 1.90821492927058770002e-10 + rounding[i]));
    }
}

static inline FS_v4d FS_log1p_unit_v4(FS_v4d t)
{
    FS_log1p_unit_lanes(&t, 1);
    return t;
}

/* log(1 + t) on 4 lanes for any t >= 0 (inf -> inf, NaN -> NaN): 1 + t = 2^k m with m in
   [sqrt(1/2), sqrt(2)), then FS_log1p_unit_v4's series and rounding correction. */
static inline FS_v4d FS_log1p_v4(FS_v4d t)
{
    const FS_v4d one = FS_splat4d(1.0);
    FS_v4d u = one + t;
    FS_v4d rounding = (t - (u - one)) / u;
    FS_v4l bits = (FS_v4l)u;
    FS_v4l exponent = (FS_v4l)(((FS_v4u)bits >> 52) & 0x7ff) - 1023;
    FS_v4d m = (FS_v4d)((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
    FS_v4l upper = FS_gt4d(m, FS_splat4d(1.4142135623730951));
    m = FS_select4d(upper, 0.5 * m, m);
    exponent = exponent + (upper & 1);
    FS_v4d k = FS_small_int_to_f64(exponent);
    FS_v4d f = m - one;
    FS_v4d s = f / (2.0 + f);
    FS_v4d z = s * s;
    FS_v4d q = FS_splat4d(2.0 / 21.0);
    q = q * z + 2.0 / 19.0;
    q = q * z + 2.0 / 17.0;
    q = q * z + 2.0 / 15.0;
    q = q * z + 2.0 / 13.0;
    q = q * z + 2.0 / 11.0;
    q = q * z + 2.0 / 9.0;
    q = q * z + 2.0 / 7.0;
    q = q * z + 2.0 / 5.0;
    q = q * z + 2.0 / 3.0;
    FS_v4d R = z * q;
    FS_v4d half_f2 = 0.5 * f * f;
    FS_v4d log_m = f - (half_f2 - s * (half_f2 + R));
    FS_v4d result = k * 6.93147180369123816490e-01
                    + (log_m + (k * 1.90821492927058770002e-10 + rounding));
    /* u = inf (t huge or inf) and NaN: the bit manipulation above means nothing there */
    FS_v4l special = ~FS_lt4d(u, FS_splat4d(INFINITY));
    return FS_select4d(special, u, result);
}

static inline double FS_fold4d(FS_v4d a, FS_v4d b)
{
    FS_v4d s = a + b;
    return (s[0] + s[2]) + (s[1] + s[3]);
}

/* Kahan step of one vector into (sum, lost) */
static inline void FS_kahan4d(FS_v4d *sum, FS_v4d *lost, FS_v4d term)
{
    FS_v4d y = term - *lost;
    FS_v4d t = *sum + y;
    *lost = (t - *sum) - y;
    *sum = t;
}

/* Neumaier fold of Kahan lanes (sum - lost per lane), in a fixed lane order */
static inline double FS_fold_kahan4d(FS_v4d s0, FS_v4d c0, FS_v4d s1, FS_v4d c1)
{
    double total = 0.0, compensation = 0.0;
    for (int k = 0; k < 8; k++) {
        double lane = k < 4 ? s0[k] : s1[k - 4];
        double lost = k < 4 ? c0[k] : c1[k - 4];
        double t = total + lane;
        compensation += fabs(total) >= fabs(lane) ? (total - t) + lane : (lane - t) + total;
        total = t;
        compensation -= lost;
    }
    /* NaN or inf in the terms: the compensation is meaningless, the plain total decides */
    return isfinite(total) ? total + compensation : total;
}

#endif /* FS_HAVE_VECTOR_EXTENSIONS */

/* ---------------------------------------------------------------------------------------
 * Row loops, float32
 * ------------------------------------------------------------------------------------- */

/* Adding two exponentials in float before widening halves the conversions; the pair's
   rounding is a relative u/2 of a float, below what the result is rounded to anyway. */

/* The row loops take `normal`: the caller's promise that every x[j] - shift lies in
   [-87, 0] (float) or [-708, 0] (double) or is NaN, known from the row's min and max
   (FS_minmax_*).  Such rows take the exponential's short path (no clamps, one scaling:
   same bits as the general path), which is the common case for softmax inputs; rows with
   a far-out or infinite value take the general path.  The tail always takes the general
   path, since its padding is -inf. */

#if FS_HAVE_VECTOR_EXTENSIONS
/* One block of the loop below: count (2 or 4) whole vectors from x, exponentiated side
   by side; the sum takes them in pairs, in order, so blocks of 4 add exactly what two
   blocks of 2 add. */
static inline __attribute__((always_inline)) void
FS_exp_store_sum_block_f32(const float *x, float *y, FS_v8f s, const int count, const int normal,
                           FS_v8i *ties, FS_v4d *acc0, FS_v4d *acc1)
{
    FS_v8f in[FS_LANES_MAX], e[FS_LANES_MAX];
    FS_v4d lo, hi;
    FS_EACH(k, count) {
        memcpy(&in[k], x + 8 * k, sizeof in[k]);
        e[k] = in[k] - s;
    }
    if (normal) {
        FS_expf_lanes(e, count, 1);
    } else {
        /* a row with values out of the short path's range (-inf logits, masked entries)
           decides per block: most blocks are all in range or all out of it (causal
           masks), and those take the short path or are 0 -- the general path's bits */
        FS_v8i in_range = FS_ge8f(e[0], FS_splat8f(-87.0f)) & FS_le8f(e[0], FS_splat8f(88.0f));
        FS_v8i below = FS_lt8f(e[0], FS_splat8f(-104.0f));
        for (int k = 1; k < count; k++) {
            in_range &= FS_ge8f(e[k], FS_splat8f(-87.0f)) & FS_le8f(e[k], FS_splat8f(88.0f));
            below &= FS_lt8f(e[k], FS_splat8f(-104.0f));
        }
        if (FS_all4((FS_v4l)in_range))
            FS_expf_lanes(e, count, 1);
        else if (FS_all4((FS_v4l)below))
            FS_EACH(k, count) e[k] = FS_splat8f(0.0f);
        else
            FS_expf_lanes(e, count, 0);
    }
    if (y)
        FS_EACH(k, count) memcpy(y + 8 * k, &e[k], sizeof e[k]);
    if (ties)
        FS_EACH(k, count) {
            FS_v8i at_max = FS_eq8f(in[k], s);
            *ties -= at_max;
            e[k] = (FS_v8f)((FS_v8i)e[k] & ~at_max);
        }
    _Pragma("GCC unroll 2") for (int k = 0; k < count; k += 2) {
        FS_widen8f(e[k] + e[k + 1], &lo, &hi);
        *acc0 += lo;
        *acc1 += hi;
    }
}
#endif

/* The one exponentiate-and-sum loop.  y == NULL: nothing is stored.  ties == NULL: the
   sum of every exp(x - shift).  ties != NULL: the sum leaves out the values x == shift
   (each exactly 1) and *ties counts them, so that the caller can form the log of the sum
   with log1p (cross-entropy wants both that and the stored exponentials).  Lanes past
   the row's end add nothing.  ahead != NULL: n values there (the caller's next row) are
   prefetched along the way, so that its memory-bound max pass finds them in cache; the
   arithmetic is the same. */
static inline __attribute__((always_inline)) double
FS_exp_store_sum_f32_impl(const float *x, float *y, ptrdiff_t n, float shift, const int normal,
                          ptrdiff_t *ties, const float *ahead)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v8f s = FS_splat8f(shift);
    const FS_v8i lane_index = {0, 1, 2, 3, 4, 5, 6, 7};
    FS_v4d acc0 = FS_splat4d(0.0), acc1 = FS_splat4d(0.0), lo, hi;
    FS_v8i count = {0, 0, 0, 0, 0, 0, 0, 0}, at_a;
    FS_v8f a, e;
    for (; j + 32 <= n; j += 32) {
        FS_prefetch_two_lines(ahead ? ahead + j : NULL);
        FS_exp_store_sum_block_f32(x + j, y ? y + j : NULL, s, 4, normal, ties ? &count : NULL,
                                   &acc0, &acc1);
    }
    if (j + 16 <= n) {
        FS_exp_store_sum_block_f32(x + j, y ? y + j : NULL, s, 2, normal, ties ? &count : NULL,
                                   &acc0, &acc1);
        j += 16;
    }
    for (; j < n; j += 8) {
        ptrdiff_t k = n - j < 8 ? n - j : 8;
        FS_v8i real_lane = lane_index < (int)k;
        a = FS_load8f_tail(x + j, k, -INFINITY);
        e = (FS_v8f)((FS_v8i)FS_expf_v8(a - s) & real_lane);
        if (y)
            FS_store8f_tail(y + j, e, k);
        if (ties) {
            at_a = FS_eq8f(a, s) & real_lane;
            count -= at_a;
            e = (FS_v8f)((FS_v8i)e & ~at_a);
        }
        FS_widen8f(e, &lo, &hi);
        acc0 += lo;
        acc1 += hi;
    }
    if (ties)
        *ties = (ptrdiff_t)(((count[0] + count[4]) + (count[2] + count[6]))
                            + ((count[1] + count[5]) + (count[3] + count[7])));
    return FS_fold4d(acc0, acc1);
#else
    double total = 0.0;
    ptrdiff_t count = 0;
    (void)normal;
    for (; j < n; j++) {
        int at_max = x[j] == shift;
        float e = FS_expf(x[j] - shift);
        if (y)
            y[j] = e;
        count += at_max;
        total += (ties && at_max) ? 0.0 : e;
    }
    if (ties)
        *ties = count;
    return total;
#endif
}

/* y[j] = exp(x[j] - shift) (y may be x); returns the sum of the y[j] in double. */
static inline double FS_exp_store_sum_f32(const float *x, float *y, ptrdiff_t n, float shift, int normal,
                                          const float *ahead)
{
    return normal ? FS_exp_store_sum_f32_impl(x, y, n, shift, 1, NULL, ahead)
                  : FS_exp_store_sum_f32_impl(x, y, n, shift, 0, NULL, ahead);
}

/* y[j] = exp(x[j] - m), and the sum and ties of FS_exp_sum_off_max_f32 */
static inline double FS_exp_store_sum_off_max_f32(const float *x, float *y, ptrdiff_t n, float m,
                                                  ptrdiff_t *ties, int normal, const float *ahead)
{
    return normal ? FS_exp_store_sum_f32_impl(x, y, n, m, 1, ties, ahead)
                  : FS_exp_store_sum_f32_impl(x, y, n, m, 0, ties, ahead);
}

/* Sum of exp(x[j] - m) over the x[j] != m, and (in *ties) how many x[j] == m; x is only
   read.  Leaving the max terms out lets the caller form log(sum) with log1p. */
static inline double FS_exp_sum_off_max_f32(const float *x, ptrdiff_t n, float m, ptrdiff_t *ties, int normal,
                                            const float *ahead)
{
    return normal ? FS_exp_store_sum_f32_impl(x, NULL, n, m, 1, ties, ahead)
                  : FS_exp_store_sum_f32_impl(x, NULL, n, m, 0, ties, ahead);
}

/* y[j] = y[j] * inverse rounded once to float: inverse is split into float parts
   hi + lo and y*hi + y*lo is formed with one fused rounding (the y*lo product is far below
   half an ulp of the result, so its own rounding does not matter). */
static inline void FS_scale_f32(float *y, ptrdiff_t n, double inverse)
{
    float hi = (float)inverse, lo = (float)(inverse - (double)hi);
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v8f h = FS_splat8f(hi), l = FS_splat8f(lo);
    FS_v8f a;
    for (; j + 8 <= n; j += 8) {
        memcpy(&a, y + j, sizeof a);
        a = a * h + a * l;
        memcpy(y + j, &a, sizeof a);
    }
#endif
    for (; j < n; j++)
        y[j] = y[j] * hi + y[j] * lo;
}

/* y[j] = y[j] k - c formed in double and rounded once to float (one FMA where the build
   has it): cross-entropy's gradient with label smoothing, s (e_j / S - eps / C) with
   k = s / S and c = s eps / C */
static inline void FS_affine_f32(float *y, ptrdiff_t n, double k, double c)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v4d kv = FS_splat4d(k), cv = FS_splat4d(c);
    FS_v8f a;
    FS_v4d lo, hi;
    for (; j + 8 <= n; j += 8) {
        memcpy(&a, y + j, sizeof a);
        FS_widen8f(a, &lo, &hi);
        a = FS_narrow8f(lo * kv - cv, hi * kv - cv);
        memcpy(y + j, &a, sizeof a);
    }
#endif
    for (; j < n; j++)
        y[j] = (float)((double)y[j] * k - c);
}

/* y[j] = y[j] k - c rounded once (FS_affine_f32 for double rows) */
static inline void FS_affine_f64(double *y, ptrdiff_t n, double k, double c)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v4d kv = FS_splat4d(k), cv = FS_splat4d(c);
    FS_v4d a;
    for (; j + 4 <= n; j += 4) {
        memcpy(&a, y + j, sizeof a);
        a = a * kv - cv;
        memcpy(y + j, &a, sizeof a);
    }
#endif
    for (; j < n; j++)
        y[j] = y[j] * k - c;
}

/* y[j] = (x[j] - m) - log_norm (y may be x), in float: both terms have the sign of the
   result (x - m <= 0 <= log_norm), so nothing cancels and the three roundings stay within
   1.5 u of |y|, inside the log outputs' 4 u bound (docs/numerics.md). */
static inline void FS_log_normalize_f32(const float *x, float *y, ptrdiff_t n, float m, double log_norm)
{
    const float l = (float)log_norm;
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v8f mv = FS_splat8f(m), lv = FS_splat8f(l);
    FS_v8f a;
    for (; j + 8 <= n; j += 8) {
        memcpy(&a, x + j, sizeof a);
        a = (a - mv) - lv;
        memcpy(y + j, &a, sizeof a);
    }
#endif
    for (; j < n; j++)
        y[j] = (x[j] - m) - l;
}

/* ---------------------------------------------------------------------------------------
 * Row loops, float64
 * ------------------------------------------------------------------------------------- */

#if FS_HAVE_VECTOR_EXTENSIONS
/* One block of the loop below: count (2 or 4) whole vectors, exponentiated side by side;
   each pair's sum is one Kahan step (s0/c0 the first pair, s1/c1 the second): half the
   steps, whose chain of dependent additions bounded this loop, for a relative u of the
   total at most. */
static inline __attribute__((always_inline)) void
FS_exp_store_sum_block_f64(const double *x, double *y, FS_v4d s, const int count, const int normal,
                           FS_v4l *ties, FS_v4d *s0, FS_v4d *c0, FS_v4d *s1, FS_v4d *c1)
{
    FS_v4d in[FS_LANES_MAX], e[FS_LANES_MAX];
    FS_EACH(k, count) {
        memcpy(&in[k], x + 4 * k, sizeof in[k]);
        e[k] = in[k] - s;
    }
    if (normal) {
        FS_exp_lanes(e, count, 1);
    } else {
        /* per block, as FS_exp_store_sum_block_f32 */
        FS_v4l in_range = FS_ge4d(e[0], FS_splat4d(-708.0)) & FS_le4d(e[0], FS_splat4d(709.0));
        FS_v4l below = FS_lt4d(e[0], FS_splat4d(-746.0));
        for (int k = 1; k < count; k++) {
            in_range &= FS_ge4d(e[k], FS_splat4d(-708.0)) & FS_le4d(e[k], FS_splat4d(709.0));
            below &= FS_lt4d(e[k], FS_splat4d(-746.0));
        }
        if (FS_all4(in_range))
            FS_exp_lanes(e, count, 1);
        else if (FS_all4(below))
            FS_EACH(k, count) e[k] = FS_splat4d(0.0);
        else
            FS_exp_lanes(e, count, 0);
    }
    if (y)
        FS_EACH(k, count) memcpy(y + 4 * k, &e[k], sizeof e[k]);
    if (ties)
        FS_EACH(k, count) {
            FS_v4l at_max = FS_eq4d(in[k], s);
            *ties -= at_max;
            e[k] = (FS_v4d)((FS_v4l)e[k] & ~at_max);
        }
    FS_kahan4d(s0, c0, e[0] + e[1]);
    if (count == 4)
        FS_kahan4d(s1, c1, e[2] + e[3]);
}
#endif

static inline __attribute__((always_inline)) double
FS_exp_store_sum_f64_impl(const double *x, double *y, ptrdiff_t n, double shift, const int normal,
                          ptrdiff_t *ties, const double *ahead)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v4d s = FS_splat4d(shift);
    const FS_v4l lane_index = {0, 1, 2, 3};
    FS_v4d s0 = FS_splat4d(0.0), c0 = s0, s1 = s0, c1 = s0, a, e;
    FS_v4l count = {0, 0, 0, 0}, at_a;
    for (; j + 16 <= n; j += 16) {
        FS_prefetch_two_lines(ahead ? ahead + j : NULL);
        FS_exp_store_sum_block_f64(x + j, y ? y + j : NULL, s, 4, normal, ties ? &count : NULL,
                                   &s0, &c0, &s1, &c1);
    }
    if (j + 8 <= n) {
        FS_exp_store_sum_block_f64(x + j, y ? y + j : NULL, s, 2, normal, ties ? &count : NULL,
                                   &s0, &c0, &s1, &c1);
        j += 8;
    }
    for (; j < n; j += 4) {
        ptrdiff_t k = n - j < 4 ? n - j : 4;
        FS_v4l real_lane = lane_index < (long long)k;
        a = FS_load4d_tail(x + j, k, -INFINITY);
        e = (FS_v4d)((FS_v4l)FS_exp_v4(a - s) & real_lane);
        if (y)
            FS_store4d_tail(y + j, e, k);
        if (ties) {
            at_a = FS_eq4d(a, s) & real_lane;
            count -= at_a;
            e = (FS_v4d)((FS_v4l)e & ~at_a);
        }
        FS_kahan4d(&s0, &c0, e);
    }
    if (ties)
        *ties = (ptrdiff_t)((count[0] + count[2]) + (count[1] + count[3]));
    return FS_fold_kahan4d(s0, c0, s1, c1);
#else
    double total = 0.0;
    ptrdiff_t count = 0;
    (void)normal;
    for (; j < n; j++) {
        int at_max = x[j] == shift;
        double e = FS_exp(x[j] - shift);
        if (y)
            y[j] = e;
        count += at_max;
        total += (ties && at_max) ? 0.0 : e;
    }
    if (ties)
        *ties = count;
    return total;
#endif
}

static inline double FS_exp_store_sum_f64(const double *x, double *y, ptrdiff_t n, double shift, int normal,
                                          const double *ahead)
{
    return normal ? FS_exp_store_sum_f64_impl(x, y, n, shift, 1, NULL, ahead)
                  : FS_exp_store_sum_f64_impl(x, y, n, shift, 0, NULL, ahead);
}

/* y[j] = exp(x[j] - m), and the sum and ties of FS_exp_sum_off_max_f64 */
static inline double FS_exp_store_sum_off_max_f64(const double *x, double *y, ptrdiff_t n, double m,
                                                  ptrdiff_t *ties, int normal, const double *ahead)
{
    return normal ? FS_exp_store_sum_f64_impl(x, y, n, m, 1, ties, ahead)
                  : FS_exp_store_sum_f64_impl(x, y, n, m, 0, ties, ahead);
}

/* Sum of exp(x[j] - m) over the x[j] != m, and (in *ties) how many x[j] == m; x is only
   read.  Leaving the max terms out lets the caller form log(sum) with log1p. */
static inline double FS_exp_sum_off_max_f64(const double *x, ptrdiff_t n, double m, ptrdiff_t *ties, int normal,
                                            const double *ahead)
{
    return normal ? FS_exp_store_sum_f64_impl(x, NULL, n, m, 1, ties, ahead)
                  : FS_exp_store_sum_f64_impl(x, NULL, n, m, 0, ties, ahead);
}

/* Division of double rows by their sum, as a multiplication: vdivpd takes 4-5 cycles per
   vector on Zen 3, more than everything else a value of softmax costs bar the
   exponential.  1/total is carried in two parts, hi = fl(1/total) and lo ~ 1/total - hi
   (from the exact residual 1 - total * hi), and y * hi + y * lo is rounded once (FMA):
   the correctly rounded quotient but for values within ~2^-100 of a rounding boundary.
   Without FMA the two products are rounded apart, within one ulp. */
static inline void FS_reciprocal_split(double total, double *hi, double *lo)
{
    double h = 1.0 / total, r;
#if defined(__FMA__)
    r = __builtin_fma(-total, h, 1.0);
#else
    /* Dekker's exact product total * h = p + q (Veltkamp splits), r = (1 - p) - q */
    const double split = 134217729.0;                   /* 2^27 + 1 */
    double p = total * h, ta = split * total, ha = split * h;
    double t_hi = ta - (ta - total), t_lo = total - t_hi;
    double h_hi = ha - (ha - h), h_lo = h - h_hi;
    double q = ((t_hi * h_hi - p) + t_hi * h_lo + t_lo * h_hi) + t_lo * h_lo;
    r = (1.0 - p) - q;
#endif
    *hi = h;
    /* an infinite or zero total (a zero-weight row's divisor, 1/inf = 0) leaves r NaN
       or infinite: the plain reciprocal then says all */
    *lo = r - r == 0 ? r * h : 0.0;
}

/* y * (hi + lo) rounded once where FMA allows */
static inline double FS_scale_split(double y, double hi, double lo)
{
#if defined(__FMA__)
    return __builtin_fma(y, hi, y * lo);
#else
    return y * hi + y * lo;
#endif
}

#if FS_HAVE_VECTOR_EXTENSIONS
static inline FS_v4d FS_scale_split4d(FS_v4d y, FS_v4d hi, FS_v4d lo)
{
#if defined(__FMA__)
    return (FS_v4d)_mm256_fmadd_pd((__m256d)y, (__m256d)hi, (__m256d)(y * lo));
#else
    return y * hi + y * lo;
#endif
}
#endif

/* y[j] /= total through FS_reciprocal_split */
static inline void FS_divide_f64(double *y, ptrdiff_t n, double total)
{
    double hi, lo;
    ptrdiff_t j = 0;
    FS_reciprocal_split(total, &hi, &lo);
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v4d h = FS_splat4d(hi), l = FS_splat4d(lo);
    FS_v4d a;
    for (; j + 4 <= n; j += 4) {
        memcpy(&a, y + j, sizeof a);
        a = FS_scale_split4d(a, h, l);
        memcpy(y + j, &a, sizeof a);
    }
#endif
    for (; j < n; j++)
        y[j] = FS_scale_split(y[j], hi, lo);
}

static inline void FS_log_normalize_f64(const double *x, double *y, ptrdiff_t n, double m, double log_norm)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v4d md = FS_splat4d(m), ln = FS_splat4d(log_norm);
    FS_v4d a;
    for (; j + 4 <= n; j += 4) {
        memcpy(&a, x + j, sizeof a);
        a = (a - md) - ln;
        memcpy(y + j, &a, sizeof a);
    }
#endif
    for (; j < n; j++)
        y[j] = (x[j] - m) - log_norm;
}

/* ---------------------------------------------------------------------------------------
 * sigsoftmax's log-domain gap, in double for both dtypes:
 * gap[j] = ((z - m) + (min(z,0) - min(m,0))) - (log1p(exp(-|z|)) - log1p(exp(-|m|)))
 * ------------------------------------------------------------------------------------- */

#if FS_HAVE_VECTOR_EXTENSIONS
/* FS_sigsoftmax_gap_v4 on count vectors side by side; the exponential takes its short
   path when every lane of the block allows it (same bits either way) */
static inline __attribute__((always_inline)) void
FS_sigsoftmax_gap_lanes(FS_v4d *z, const int count, FS_v4d m, FS_v4d m_neg, FS_v4d m_tail)
{
    const FS_v4d zero = FS_splat4d(0.0);
    FS_v4d t[FS_LANES_MAX];
    FS_v4l normal = zero == zero;
    FS_EACH(i, count) {
        t[i] = FS_neg_abs4d(z[i]);
        normal &= FS_ge4d(t[i], FS_splat4d(-708.0));
    }
    if (__builtin_expect(FS_all4(normal), 1))
        FS_exp_lanes(t, count, 1);
    else
        FS_exp_lanes(t, count, 0);
    FS_log1p_unit_lanes(t, count);
    FS_EACH(i, count)
        z[i] = ((z[i] - m) + (FS_min_zero4d(z[i]) - m_neg)) - (t[i] - m_tail);
}

static inline FS_v4d FS_sigsoftmax_gap_v4(FS_v4d z, FS_v4d m, FS_v4d m_neg, FS_v4d m_tail)
{
    FS_sigsoftmax_gap_lanes(&z, 1, m, m_neg, m_tail);
    return z;
}

/* c - r d exactly, for r = fl(c / d) (the division's residual is a double): one FMA, or
   Dekker's exact product without FMA */
static inline FS_v4d FS_residual4d(FS_v4d c, FS_v4d r, FS_v4d d)
{
#if defined(__FMA__)
    return (FS_v4d)_mm256_fnmadd_pd((__m256d)r, (__m256d)d, (__m256d)c);
#else
    const FS_v4d split = FS_splat4d(134217729.0);      /* 2^27 + 1 */
    FS_v4d p = r * d, ra = split * r, da = split * d;
    FS_v4d r_hi = ra - (ra - r), r_lo = r - r_hi, d_hi = da - (da - d), d_lo = d - d_hi;
    FS_v4d q = ((r_hi * d_hi - p) + r_hi * d_lo + r_lo * d_hi) + r_lo * d_lo;
    return (c - p) - q;
#endif
}

/* sigsoftmax's unnormalised terms for double rows, exp(gap) without a logarithm:
   exp(z) sigmoid(z) / (exp(m) sigmoid(m)) = exp(a) (1 + t_m) / (1 + t) with
   a = (z - m) + (min(z, 0) - min(m, 0)) <= 0, t = exp(-|z|), t_m = exp(-|m|), since
   sigmoid(z) = min(1, exp(z)) / (1 + exp(-|z|)).  Every factor is bounded, so nothing
   overflows or underflows that the result would not; it saves the log1p (two divisions
   and a long polynomial) of the gap.  The ratio is carried to about u^2: 1 + t and
   1 + t_m exactly as two doubles each (hi + lo), the quotient hi / hi plus its
   correction from the exact residual, so that exp(a) times it rounds once, and the
   terms are as accurate as exp(gap) (tests/test_accuracy.py).  The row's constants:
   c_hi + c_lo = 1 + t_m, c_inverse ~ 1 / c_hi.  z[i] for i < count, in place. */
static inline __attribute__((always_inline)) void
FS_sigsoftmax_terms_lanes(FS_v4d *z, const int count, FS_v4d m, FS_v4d m_neg, FS_v4d c_hi,
                          FS_v4d c_lo, FS_v4d c_inverse)
{
    const FS_v4d zero = FS_splat4d(0.0), one = FS_splat4d(1.0);
    FS_v4d t[FS_LANES_MAX], a[FS_LANES_MAX];
    FS_v4l normal = zero == zero;
    FS_EACH(i, count) {
        t[i] = FS_neg_abs4d(z[i]);
        a[i] = (z[i] - m) + (FS_min_zero4d(z[i]) - m_neg);
        normal &= FS_ge4d(t[i], FS_splat4d(-708.0)) & FS_ge4d(a[i], FS_splat4d(-708.0));
    }
    if (__builtin_expect(FS_all4(normal), 1)) {
        FS_exp_lanes(t, count, 1);
        FS_exp_lanes(a, count, 1);
    } else {
        FS_exp_lanes(t, count, 0);
        FS_exp_lanes(a, count, 0);
    }
    FS_EACH(i, count) {
        FS_v4d d_hi = one + t[i];
        FS_v4d d_lo = t[i] - (d_hi - one);                 /* exact: t <= 1 */
        FS_v4d ratio = c_hi / d_hi;
        FS_v4d correction = ((FS_residual4d(c_hi, ratio, d_hi) + c_lo) - ratio * d_lo)
                            * (ratio * c_inverse);         /* ~ (1 + t_m) / (1 + t) - ratio */
        z[i] = FS_scale_split4d(a[i], ratio, correction);
    }
}

/* FS_sigsoftmax_terms_lanes's row constants from the row max m */
static inline void FS_sigsoftmax_terms_constants(FS_v4d m, FS_v4d *m_neg, FS_v4d *c_hi,
                                                 FS_v4d *c_lo, FS_v4d *c_inverse)
{
    const FS_v4d one = FS_splat4d(1.0);
    FS_v4d t_m = FS_exp_v4(FS_neg_abs4d(m));
    *m_neg = FS_min_zero4d(m);
    *c_hi = one + t_m;
    *c_lo = t_m - (*c_hi - one);
    *c_inverse = one / *c_hi;
}

/* e[j] = FS_sigsoftmax_terms_lanes(z[j]) for a double row whose max is z_max (e may be z) */
static inline void FS_sigsoftmax_terms_f64(const double *z, double *e, ptrdiff_t n, double z_max)
{
    const FS_v4d m = FS_splat4d(z_max);
    FS_v4d m_neg, c_hi, c_lo, c_inverse, block[FS_LANES_MAX];
    FS_sigsoftmax_terms_constants(m, &m_neg, &c_hi, &c_lo, &c_inverse);
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16) {
        FS_EACH(b, 4) memcpy(&block[b], z + j + 4 * b, sizeof block[b]);
        FS_sigsoftmax_terms_lanes(block, 4, m, m_neg, c_hi, c_lo, c_inverse);
        FS_EACH(b, 4) memcpy(e + j + 4 * b, &block[b], sizeof block[b]);
    }
    for (; j < n; j += 4) {
        ptrdiff_t k = n - j < 4 ? n - j : 4;
        block[0] = FS_load4d_tail(z + j, k, z_max);
        FS_sigsoftmax_terms_lanes(block, 1, m, m_neg, c_hi, c_lo, c_inverse);
        FS_store4d_tail(e + j, block[0], k);
    }
}

/* The sum of exponentials e[0:n] in exactly the order FS_exp_store_sum_f64 adds them, for
   terms formed elsewhere (FS_sigsoftmax_terms_f64) */
static inline double FS_sum_as_exp_f64(const double *e, ptrdiff_t n)
{
    FS_v4d s0 = FS_splat4d(0.0), c0 = s0, s1 = s0, c1 = s0, a, b, c, d;
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16) {
        memcpy(&a, e + j, sizeof a);
        memcpy(&b, e + j + 4, sizeof b);
        memcpy(&c, e + j + 8, sizeof c);
        memcpy(&d, e + j + 12, sizeof d);
        FS_kahan4d(&s0, &c0, a + b);
        FS_kahan4d(&s1, &c1, c + d);
    }
    if (j + 8 <= n) {
        memcpy(&a, e + j, sizeof a);
        memcpy(&b, e + j + 4, sizeof b);
        FS_kahan4d(&s0, &c0, a + b);
        j += 8;
    }
    for (; j < n; j += 4) {
        ptrdiff_t k = n - j < 4 ? n - j : 4;
        FS_kahan4d(&s0, &c0, FS_load4d_tail(e + j, k, 0.0));
    }
    return FS_fold_kahan4d(s0, c0, s1, c1);
}

/* log1p(exp(-|z|)), the softplus tail, in double (the row max's m_tail) */
static inline FS_v4d FS_softplus_tail_v4(FS_v4d z)
{
    FS_v4d t = FS_exp_v4_any(FS_neg_abs4d(z));
    FS_log1p_unit_lanes(&t, 1);
    return t;
}

/* gap[j] for 4 values z[0:4] already widened to double; the tail pads with m (gap 0) */
#define FS_GAP_ROW(T, z, gap, n, z_max)                                                    \
    do {                                                                                   \
        double m_ = (double)(z_max);                                                       \
        const FS_v4d mv = FS_splat4d(m_), mnv = FS_splat4d(m_ < 0 ? m_ : 0.0);             \
        /* the max's tail by the same vector code as the others': its gap is exactly 0 */ \
        const FS_v4d mtv = FS_softplus_tail_v4(FS_splat4d(m_));                            \
        ptrdiff_t j_ = 0;                                                                  \
        FS_v4d zv_, g_, block_[FS_LANES_MAX];                                              \
        for (; j_ + 16 <= (n); j_ += 16) {                                                 \
            FS_EACH(b_, 4)                                                                 \
                for (int i_ = 0; i_ < 4; i_++)                                             \
                    block_[b_][i_] = (double)(z)[j_ + 4 * b_ + i_];                        \
            FS_sigsoftmax_gap_lanes(block_, 4, mv, mnv, mtv);                              \
            FS_EACH(b_, 4)                                                                 \
                memcpy((gap) + j_ + 4 * b_, &block_[b_], sizeof block_[b_]);               \
        }                                                                                  \
        for (; j_ + 4 <= (n); j_ += 4) {                                                   \
            for (int i_ = 0; i_ < 4; i_++)                                                 \
                zv_[i_] = (double)(z)[j_ + i_];                                            \
            g_ = FS_sigsoftmax_gap_v4(zv_, mv, mnv, mtv);                                  \
            memcpy((gap) + j_, &g_, sizeof g_);                                            \
        }                                                                                  \
        if (j_ < (n)) {                                                                    \
            ptrdiff_t k_ = (n) - j_;                                                       \
            double in_[4] = {m_, m_, m_, m_}, out_[4];                                     \
            for (ptrdiff_t i_ = 0; i_ < k_; i_++)                                          \
                in_[i_] = (double)(z)[j_ + i_];                                            \
            memcpy(&zv_, in_, sizeof zv_);                                                 \
            g_ = FS_sigsoftmax_gap_v4(zv_, mv, mnv, mtv);                                  \
            memcpy(out_, &g_, sizeof g_);                                                  \
            memcpy((gap) + j_, out_, (size_t)k_ * sizeof(double));                         \
        }                                                                                  \
    } while (0)
#else
#define FS_GAP_ROW(T, z, gap, n, z_max)                                                    \
    do {                                                                                   \
        double m_ = (double)(z_max);                                                       \
        double m_neg_ = m_ < 0 ? m_ : 0.0;                                                 \
        double m_tail_ = FS_log1p_unit(FS_exp(-(m_ >= 0 ? m_ : -m_)));                     \
        for (ptrdiff_t j_ = 0; j_ < (n); j_++) {                                           \
            double zj = (double)(z)[j_];                                                   \
            double zj_neg = zj < 0 ? zj : 0.0, zj_abs = zj >= 0 ? zj : -zj;                \
            (gap)[j_] = ((zj - m_) + (zj_neg - m_neg_))                                    \
                        - (FS_log1p_unit(FS_exp(-zj_abs)) - m_tail_);                      \
        }                                                                                  \
    } while (0)

static inline void FS_sigsoftmax_terms_f64(const double *z, double *e, ptrdiff_t n, double z_max)
{
    double m_neg = z_max < 0 ? z_max : 0.0;
    double one_plus_tm = 1.0 + FS_exp(z_max >= 0 ? -z_max : z_max);
    for (ptrdiff_t j = 0; j < n; j++) {
        double zj = z[j], t = FS_exp(zj >= 0 ? -zj : zj);
        double a = (zj - z_max) + ((zj < 0 ? zj : 0.0) - m_neg);
        e[j] = FS_exp(a) * (one_plus_tm / (1.0 + t));
    }
}

static inline double FS_sum_as_exp_f64(const double *e, ptrdiff_t n)
{
    double total = 0.0;
    for (ptrdiff_t j = 0; j < n; j++)
        total += e[j];
    return total;
}
#endif

static inline void FS_sigsoftmax_gap_f32(const float *z, double *gap, ptrdiff_t n, float z_max)
{
    FS_GAP_ROW(float, z, gap, n, z_max);
}

static inline void FS_sigsoftmax_gap_f64(const double *z, double *gap, ptrdiff_t n, double z_max)
{
    FS_GAP_ROW(double, z, gap, n, z_max);
}

/* out[i] = log(1 + t[i]) for t[i] >= 0 (out may be t) */
static inline void FS_log1p_array(const double *t, double *out, ptrdiff_t n)
{
#if FS_HAVE_VECTOR_EXTENSIONS
    for (ptrdiff_t j = 0; j < n; j += 4) {
        ptrdiff_t k = n - j < 4 ? n - j : 4;
        FS_v4d v = FS_log1p_v4(FS_load4d_tail(t + j, k, 0.0));
        FS_store4d_tail(out + j, v, k);
    }
#else
    for (ptrdiff_t j = 0; j < n; j++)
        out[j] = log1p(t[j]);
#endif
}

/* log(1 + t) for one t >= 0 through the vector code, so that it equals FS_log1p_array's:
   t in every lane (the lanes are independent), without the array's masked load and
   store, which cost a row's log normaliser its latency.  The whole vector is kept
   (FS_OPAQUE): given only lane 0, GCC computed it with scalar instructions, whose
   multiply-adds fused differently (a short row's loss then differed from the lanes'
   by an ulp). */
static inline double FS_log1p_one(double t)
{
#if FS_HAVE_VECTOR_EXTENSIONS
    FS_v4d r = FS_log1p_v4(FS_splat4d(t));
    FS_OPAQUE(r);
    return r[0];
#else
    return log1p(t);
#endif
}

/* ---------------------------------------------------------------------------------------
 * sigsoftmax's gap for float rows, in float: 8 lanes instead of 4, and float divisions.
 * Both terms of (z - m) + (min(z,0) - min(m,0)) have the gap's sign, so they add without
 * cancelling (error <= u |gap|); the softplus tails T = log1p(exp(-|z|)) lie in [0, log 2]
 * and are evaluated to about an ulp, and the row max's own tail comes from the same
 * vector code so that the max's gap is exactly 0.  docs/numerics.md gives the measured
 * errors (well inside the 4 u (1 + |gap|) bound).
 * ------------------------------------------------------------------------------------- */

#if FS_HAVE_VECTOR_EXTENSIONS
/* t[k] = log1p(t[k]) for t in [0, 1], k < count, side by side (as FS_expf_lanes), in
   float: t + t^2 s(t), s the degree-8 polynomial of bench/log1pf_coefficients.py (fitted
   to (log1p(t) - t) / t^2 with each coefficient rounded to float before the next is
   fitted).  No reduction and no division: the log1p of FS_log1p_unit's scheme took 0.45
   ns a value on the Xeon, this takes 0.17, at 1.11 units of 2^-24 of absolute error
   (measured over every 7th float in [0, 1]) instead of 0.76. */
static inline __attribute__((always_inline)) void FS_log1pf_unit_lanes(FS_v8f *t, const int count)
{
    static const float c[9] = {FS_LOG1PF_S0, FS_LOG1PF_S1, FS_LOG1PF_S2, FS_LOG1PF_S3,
                               FS_LOG1PF_S4, FS_LOG1PF_S5, FS_LOG1PF_S6, FS_LOG1PF_S7,
                               FS_LOG1PF_S8};
    FS_v8f s[FS_LANES_MAX];
    FS_EACH(i, count) s[i] = FS_splat8f(c[8]);
    _Pragma("GCC unroll 8") for (int d = 7; d >= 0; d--)      /* Horner, vectors side by side */
        FS_EACH(i, count) s[i] = s[i] * t[i] + c[d];
    FS_EACH(i, count) t[i] = (t[i] * t[i]) * s[i] + t[i];
}

/* z[k] = log1p(exp(-|z[k]|)), the softplus tail in [0, log 2], k < count; short_exp: every
   |z| <= 87 */
static inline __attribute__((always_inline)) void
FS_softplus_tail_lanes(FS_v8f *z, const int count, const int short_exp)
{
    FS_EACH(i, count) z[i] = FS_neg_abs8f(z[i]);
    FS_expf_lanes(z, count, short_exp);
    FS_log1pf_unit_lanes(z, count);
}

static inline __attribute__((always_inline)) FS_v8f FS_softplus_tail_v8(FS_v8f z, const int short_exp)
{
    FS_softplus_tail_lanes(&z, 1, short_exp);
    return z;
}

/* z[k] = w(z[k]) - w(m) for k < count, sigsoftmax's gap in float (FS_sigsoftmax_gap_f32f),
   given the row max's m_neg = min(m, 0) and m_tail = its softplus tail */
static inline __attribute__((always_inline)) void
FS_sigsoftmax_gapf_lanes(FS_v8f *z, const int count, FS_v8f m, FS_v8f m_neg, FS_v8f m_tail,
                         const int short_exp)
{
    FS_v8f tail[FS_LANES_MAX];
    FS_EACH(k, count) tail[k] = z[k];
    FS_softplus_tail_lanes(tail, count, short_exp);
    FS_EACH(k, count)
        z[k] = ((z[k] - m) + (FS_min_zero8f(z[k]) - m_neg)) - (tail[k] - m_tail);
}
#endif

#if FS_HAVE_VECTOR_EXTENSIONS
static inline __attribute__((always_inline)) void
FS_sigsoftmax_gap_f32f_impl(const float *z, float *gap, ptrdiff_t n, float z_max, const int short_exp)
{
    const FS_v8f mv = FS_splat8f(z_max);
    const FS_v8f m_neg = FS_min_zero8f(mv);
    const FS_v8f m_tail = FS_softplus_tail_v8(mv, 0);
    FS_v8f block[FS_LANES_MAX];
    ptrdiff_t j = 0;
    for (; j + 32 <= n; j += 32) {
        /* vector by vector: one 128-byte copy of the block made GCC keep it in memory */
        FS_EACH(k, 4) memcpy(&block[k], z + j + 8 * k, sizeof block[k]);
        FS_sigsoftmax_gapf_lanes(block, 4, mv, m_neg, m_tail, short_exp);
        FS_EACH(k, 4) memcpy(gap + j + 8 * k, &block[k], sizeof block[k]);
    }
    for (; j + 8 <= n; j += 8) {
        memcpy(&block[0], z + j, sizeof block[0]);
        FS_sigsoftmax_gapf_lanes(block, 1, mv, m_neg, m_tail, short_exp);
        memcpy(gap + j, &block[0], sizeof block[0]);
    }
    if (j < n) {
        block[0] = FS_load8f_tail(z + j, n - j, z_max);
        FS_sigsoftmax_gapf_lanes(block, 1, mv, m_neg, m_tail, 0);
        FS_store8f_tail(gap + j, block[0], n - j);
    }
}
#endif

#if FS_HAVE_VECTOR_EXTENSIONS
/* count (1-4) vectors of FS_sigsoftmax_terms_f32: z[k] becomes the term, its two double
   halves are added to *acc0 / *acc1 (lanes past the row masked out by `keep`) */
static inline __attribute__((always_inline)) void
FS_sigsoftmax_terms_lanes_f32(FS_v8f *z, const int count, FS_v8f m, FS_v8f m_neg, FS_v4d c,
                              const int normal, FS_v8i keep, FS_v4d *acc0, FS_v4d *acc1)
{
    const FS_v4d one = FS_splat4d(1.0);
    FS_v8f t[FS_LANES_MAX], a[FS_LANES_MAX];
    FS_EACH(k, count) {
        t[k] = FS_neg_abs8f(z[k]);
        a[k] = (z[k] - m) + (FS_min_zero8f(z[k]) - m_neg);
    }
    FS_expf_lanes(t, count, normal);
    FS_expf_lanes(a, count, normal);
    FS_EACH(k, count) {
        FS_v4d t_lo, t_hi, a_lo, a_hi;
        FS_widen8f(t[k], &t_lo, &t_hi);
        FS_widen8f(a[k], &a_lo, &a_hi);
        a_lo = a_lo * (c / (one + t_lo));
        a_hi = a_hi * (c / (one + t_hi));
        z[k] = FS_narrow8f(a_lo, a_hi);
        FS_widen8f((FS_v8f)((FS_v8i)z[k] & keep), &a_lo, &a_hi);
        *acc0 += a_lo;
        *acc1 += a_hi;
    }
}
#endif

/* float sigsoftmax's terms as a product, without the gap's log1p (float64 rows do the
   same in FS_sigsoftmax_terms_f64): with a = (z - m) + (min(z, 0) - min(m, 0)) <= 0 and
   t = exp(-|z|) <= 1, exp(z) sigmoid(z) / (exp(m) sigmoid(m)) = exp(a) (1 + t_m) / (1 + t).
   exp(a) and t in float; the ratio and the product in double, rounded once:
   e[j] = that term (e may be z), and the sum of the e[j] is returned in double.  The row
   max's term is exactly 1; a +inf or NaN logit makes its term NaN.  normal: every
   |z[j]| <= 87 and 2 (min z - m) >= -87, so both exponentials take their short path
   (same bits).  ahead: as in FS_exp_store_sum_f32. */
static inline double FS_sigsoftmax_terms_f32(const float *z, float *e, ptrdiff_t n, float z_max,
                                             int normal, const float *ahead)
{
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v8f m = FS_splat8f(z_max);
    const FS_v8f m_neg = FS_min_zero8f(m);
    const FS_v4d c = FS_splat4d(1.0 + (double)FS_expf(z_max >= 0 ? -z_max : z_max));
    const FS_v8i all = {-1, -1, -1, -1, -1, -1, -1, -1};
    const FS_v8i lane_index = {0, 1, 2, 3, 4, 5, 6, 7};
    FS_v4d acc0 = FS_splat4d(0.0), acc1 = FS_splat4d(0.0);
    FS_v8f block[FS_LANES_MAX];
    ptrdiff_t j = 0;
    for (; j + 32 <= n; j += 32) {
        FS_prefetch_two_lines(ahead ? ahead + j : NULL);
        FS_EACH(k, 4) memcpy(&block[k], z + j + 8 * k, sizeof block[k]);
        if (normal)
            FS_sigsoftmax_terms_lanes_f32(block, 4, m, m_neg, c, 1, all, &acc0, &acc1);
        else
            FS_sigsoftmax_terms_lanes_f32(block, 4, m, m_neg, c, 0, all, &acc0, &acc1);
        FS_EACH(k, 4) memcpy(e + j + 8 * k, &block[k], sizeof block[k]);
    }
    for (; j < n; j += 8) {
        ptrdiff_t k = n - j < 8 ? n - j : 8;
        block[0] = FS_load8f_tail(z + j, k, z_max);
        FS_sigsoftmax_terms_lanes_f32(block, 1, m, m_neg, c, 0, lane_index < (int)k, &acc0,
                                      &acc1);
        FS_store8f_tail(e + j, block[0], k);
    }
    return FS_fold4d(acc0, acc1);
#else
    double m = z_max, m_neg = m < 0 ? m : 0.0, total = 0.0;
    double c = 1.0 + (double)FS_expf(z_max >= 0 ? -z_max : z_max);
    (void)normal;
    (void)ahead;
    for (ptrdiff_t j = 0; j < n; j++) {
        float zj = z[j];
        float a = (zj - z_max) + ((zj < 0 ? zj : 0.0f) - (float)m_neg);
        double t = FS_expf(zj >= 0 ? -zj : zj);
        e[j] = (float)((double)FS_expf(a) * (c / (1.0 + t)));
        total += e[j];
    }
    return total;
#endif
}

/* gap[j] = w(z[j]) - w(z_max) in float, w(z) = 2z - softplus(z); gap may not alias z.
   short_exp: every |z[j]| <= 87, so exp(-|z|) takes the exponential's short path (the
   max's tail always takes the general one: the same value either way). */
static inline void FS_sigsoftmax_gap_f32f(const float *z, float *gap, ptrdiff_t n, float z_max,
                                          int short_exp)
{
#if FS_HAVE_VECTOR_EXTENSIONS
    if (short_exp)
        FS_sigsoftmax_gap_f32f_impl(z, gap, n, z_max, 1);
    else
        FS_sigsoftmax_gap_f32f_impl(z, gap, n, z_max, 0);
#else
    double m = z_max, m_neg = m < 0 ? m : 0.0;
    double m_tail = FS_log1p_unit(FS_exp(-(m >= 0 ? m : -m)));
    (void)short_exp;
    for (ptrdiff_t j = 0; j < n; j++) {
        double zj = z[j], zj_neg = zj < 0 ? zj : 0.0, zj_abs = zj >= 0 ? zj : -zj;
        gap[j] = (float)(((zj - m) + (zj_neg - m_neg)) - (FS_log1p_unit(FS_exp(-zj_abs)) - m_tail));
    }
#endif
}

/* ---------------------------------------------------------------------------------------
 * Block transposes for softmax along a non-last axis: the kernels move a strip of columns
 * (one cache line wide) into rows of a small buffer, run the ordinary row loops there,
 * and move the results back, so that a column gets exactly the bits of its row in a
 * transposed copy, without making that copy.
 * dst[c * dst_stride + r] = src[r * src_stride + c] for an 8 x 8 (float) or 4 x 4
 * (double) block.
 * ------------------------------------------------------------------------------------- */


/* Builds with SSE2 but not AVX (the baseline variant) transpose 4x4 (2x2) blocks with
   SSE's unpacks: GCC lowered the 32-byte shuffles below to one scalar move per value
   there (1522 `movss` in the short-row kernel). */
#if FS_SSE2_HALF_LANES
static inline __attribute__((always_inline)) void
FS_transpose4x4_sse(const float *src, ptrdiff_t src_stride, float *dst, ptrdiff_t dst_stride)
{
    __m128 r0 = _mm_loadu_ps(src), r1 = _mm_loadu_ps(src + src_stride);
    __m128 r2 = _mm_loadu_ps(src + 2 * src_stride), r3 = _mm_loadu_ps(src + 3 * src_stride);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    _mm_storeu_ps(dst, r0);
    _mm_storeu_ps(dst + dst_stride, r1);
    _mm_storeu_ps(dst + 2 * dst_stride, r2);
    _mm_storeu_ps(dst + 3 * dst_stride, r3);
}
#endif

/* The transposes are unrolled by hand-given pragmas and always inlined: left as a loop,
   GCC copied the eight rows through the stack in 16-byte halves and read them back whole,
   a store-forwarding stall per row (half the time of a column strip). */
static inline __attribute__((always_inline)) void
FS_transpose8x8_f32(const float *src, ptrdiff_t src_stride, float *dst, ptrdiff_t dst_stride)
{
#if FS_SSE2_HALF_LANES
    _Pragma("GCC unroll 2") for (int i = 0; i < 8; i += 4)
        _Pragma("GCC unroll 2") for (int j = 0; j < 8; j += 4)
            FS_transpose4x4_sse(src + i * src_stride + j, src_stride, dst + j * dst_stride + i,
                                dst_stride);
#elif FS_HAVE_VECTOR_EXTENSIONS
    FS_v8f r[8], t[8], u[8], c;
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
        memcpy(&r[i], src + i * src_stride, sizeof r[i]);
    _Pragma("GCC unroll 4") for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    _Pragma("GCC unroll 2") for (int i = 0; i < 8; i += 4) {
        u[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) {
        c = __builtin_shufflevector(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        memcpy(dst + i * dst_stride, &c, sizeof c);
        c = __builtin_shufflevector(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        memcpy(dst + (i + 4) * dst_stride, &c, sizeof c);
    }
#else
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++)
            dst[j * dst_stride + i] = src[i * src_stride + j];
#endif
}

static inline __attribute__((always_inline)) void
FS_transpose4x4_f64(const double *src, ptrdiff_t src_stride, double *dst, ptrdiff_t dst_stride)
{
#if FS_SSE2_HALF_LANES
    _Pragma("GCC unroll 2") for (int i = 0; i < 4; i += 2)
        _Pragma("GCC unroll 2") for (int j = 0; j < 4; j += 2) {
            const __m128d a = _mm_loadu_pd(src + i * src_stride + j);
            const __m128d b = _mm_loadu_pd(src + (i + 1) * src_stride + j);
            _mm_storeu_pd(dst + j * dst_stride + i, _mm_unpacklo_pd(a, b));
            _mm_storeu_pd(dst + (j + 1) * dst_stride + i, _mm_unpackhi_pd(a, b));
        }
#elif FS_HAVE_VECTOR_EXTENSIONS
    FS_v4d r[4], t[4], c;
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
        memcpy(&r[i], src + i * src_stride, sizeof r[i]);
    t[0] = __builtin_shufflevector(r[0], r[1], 0, 4, 2, 6);
    t[1] = __builtin_shufflevector(r[0], r[1], 1, 5, 3, 7);
    t[2] = __builtin_shufflevector(r[2], r[3], 0, 4, 2, 6);
    t[3] = __builtin_shufflevector(r[2], r[3], 1, 5, 3, 7);
    c = __builtin_shufflevector(t[0], t[2], 0, 1, 4, 5);
    memcpy(dst, &c, sizeof c);
    c = __builtin_shufflevector(t[1], t[3], 0, 1, 4, 5);
    memcpy(dst + dst_stride, &c, sizeof c);
    c = __builtin_shufflevector(t[0], t[2], 2, 3, 6, 7);
    memcpy(dst + 2 * dst_stride, &c, sizeof c);
    c = __builtin_shufflevector(t[1], t[3], 2, 3, 6, 7);
    memcpy(dst + 3 * dst_stride, &c, sizeof c);
#else
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            dst[j * dst_stride + i] = src[i * src_stride + j];
#endif
}

/* c[j] = 2 - sigmoid(z[j]), sigsoftmax's gradient factor (Kanai et al., Theorem 5), with
   sigmoid(z) = (z >= 0 ? 1 : t) / (1 + t), t = exp(-|z|): nothing overflows. */
#if FS_HAVE_VECTOR_EXTENSIONS
static inline FS_v8f FS_two_minus_sigmoid_v8(FS_v8f a)
{
    const FS_v8f zero = FS_splat8f(0.0f), one = FS_splat8f(1.0f), two = FS_splat8f(2.0f);
    FS_v8i positive = FS_ge8f(a, zero);
    FS_v8f t = FS_expf_v8(FS_select8f(positive, -a, a));
    return two - FS_select8f(positive, one, t) / (one + t);
}
#endif

static inline void FS_two_minus_sigmoid_f32(const float *z, float *c, ptrdiff_t n)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    for (; j < n; j += 8) {
        ptrdiff_t k = n - j < 8 ? n - j : 8;
        FS_v8f a;
        if (k == 8)
            memcpy(&a, z + j, sizeof a);
        else
            a = FS_load8f_tail(z + j, k, 0.0f);
        FS_v8f f = FS_two_minus_sigmoid_v8(a);
        if (k == 8)
            memcpy(c + j, &f, sizeof f);
        else
            FS_store8f_tail(c + j, f, k);
    }
#else
    for (; j < n; j++)
        c[j] = (float)(2.0 - FS_sigmoid(z[j]));
#endif
}

/* y[j] = FS_scale_f32's e[j] / S, times FS_two_minus_sigmoid_f32's 2 - sigmoid(z[j]): their
   bits in one pass (y may be e or z), for cross-entropy's index rows of sigsoftmax */
static inline void FS_scale_by_factor_f32(const float *e, float *y, const float *z, ptrdiff_t n,
                                          double inverse)
{
    float hi = (float)inverse, lo = (float)(inverse - (double)hi);
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v8f h = FS_splat8f(hi), l = FS_splat8f(lo);
    FS_v8f a, f;
    for (; j + 8 <= n; j += 8) {
        memcpy(&a, e + j, sizeof a);
        memcpy(&f, z + j, sizeof f);
        f = FS_two_minus_sigmoid_v8(f);
        a = a * h + a * l;
        a = a * f;
        memcpy(y + j, &a, sizeof a);
    }
    if (j < n) {
        float tail[8];
        f = FS_two_minus_sigmoid_v8(FS_load8f_tail(z + j, n - j, 0.0f));
        memcpy(tail, &f, sizeof tail);
        for (ptrdiff_t i = 0; j < n; j++, i++) {
            float scaled = e[j] * hi + e[j] * lo;
            y[j] = scaled * tail[i];
        }
    }
#else
    for (; j < n; j++) {
        float scaled = e[j] * hi + e[j] * lo;
        y[j] = scaled * (float)(2.0 - FS_sigmoid(z[j]));
    }
#endif
}

#if FS_HAVE_VECTOR_EXTENSIONS
/* e[h] = exp(e[h]) for h < count, arguments <= 0: the short path unless a lane is below
   its range (-inf, far tails); the same bits either way */
static inline __attribute__((always_inline)) void FS_exp_nonpositive_lanes(FS_v4d *e, const int count)
{
    FS_v4l far = {0, 0, 0, 0}, zero = ~far;
    FS_EACH(h, count) {
        far |= FS_lt4d(e[h], FS_splat4d(-708.0));
        zero &= FS_lt4d(e[h], FS_splat4d(-746.0));
    }
    if (!FS_any4(far))
        FS_exp_lanes(e, count, 1);
    else if (FS_all4(zero))                 /* -inf outputs only: 0, the general path's */
        FS_EACH(h, count) e[h] = FS_splat4d(0.0);
    else
        FS_exp_lanes(e, count, 0);
}

/* sigsoftmax's factor 2 - sigmoid(z) on count double vectors, as FS_sigmoid computes it */
static inline __attribute__((always_inline)) void FS_two_minus_sigmoid_lanes(FS_v4d *z, const int count)
{
    const FS_v4d zero = FS_splat4d(0.0), one = FS_splat4d(1.0);
    FS_v4l positive[4];
    FS_v4d t[4];
    FS_EACH(h, count) {
        positive[h] = FS_ge4d(z[h], zero);
        t[h] = FS_select4d(positive[h], -z[h], z[h]);
    }
    FS_exp_nonpositive_lanes(t, count);
    FS_EACH(h, count) z[h] = 2.0 - FS_select4d(positive[h], one, t[h]) / (one + t[h]);
}

/* The backward passes' arithmetic on count double vectors: e holds y and becomes
   y (g - r), or for the log kinds holds exp(y) (the caller's exponential, in the row's
   type) and becomes g - exp(y) r; times 2 - sigmoid(z) where z is not NULL (z is
   overwritten) */
static inline __attribute__((always_inline)) void
FS_vjp_lanes(FS_v4d *e, const FS_v4d *g, FS_v4d *z, const int count, FS_v4d r, int log_kind)
{
    if (log_kind) {
        FS_EACH(h, count) e[h] = g[h] - e[h] * r;
    } else {
        FS_EACH(h, count) e[h] = e[h] * (g[h] - r);
    }
    if (z) {
        FS_two_minus_sigmoid_lanes(z, count);
        FS_EACH(h, count) e[h] = z[h] * e[h];
    }
}
#endif

static inline void FS_two_minus_sigmoid_f64(const double *z, double *c, ptrdiff_t n)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    for (; j < n; j += 4) {
        ptrdiff_t k = n - j < 4 ? n - j : 4;
        FS_v4d f;
        if (k == 4)
            memcpy(&f, z + j, sizeof f);
        else
            f = FS_load4d_tail(z + j, k, 0.0);
        FS_two_minus_sigmoid_lanes(&f, 1);
        if (k == 4)
            memcpy(c + j, &f, sizeof f);
        else
            FS_store4d_tail(c + j, f, k);
    }
#else
    for (; j < n; j++)
        c[j] = 2.0 - FS_sigmoid(z[j]);
#endif
}

/* ---------------------------------------------------------------------------------------
 * Cross-entropy's target weights (_loss.pxi's _row_cross_entropy_targets)
 *
 * B_j = w_j (keep q_j + per_class) for a probability target row q; B_j = w_j per_class
 * for an index target (q == NULL: the target's own (1 - eps) w_t is the caller's term);
 * w == NULL means unit class weights.  The sums and the gradient form B_j alike, in
 * double, with the row's last n % 8 (n % 4) values in vector lanes too.
 * ------------------------------------------------------------------------------------- */
static inline double FS_target_weight(double q, double w, double keep, double per_class,
                                      const int has_q, const int has_w)
{
    double b = has_q ? q * keep + per_class : per_class;
    return has_w ? b * w : b;
}

#if FS_HAVE_VECTOR_EXTENSIONS
static inline __attribute__((always_inline)) FS_v4d
FS_target_weight4d(FS_v4d q, FS_v4d w, FS_v4d keep, FS_v4d per_class, const int has_q,
                   const int has_w)
{
    FS_v4d b = has_q ? q * keep + per_class : per_class;
    return has_w ? b * w : b;
}

/* one vector of the sums: B into *b, B (m - x) into *g (0 where B = 0, even against
   x = -inf or NaN); lanes outside `real` add nothing */
static inline __attribute__((always_inline)) void
FS_target_sums_step4d(FS_v4d x, FS_v4d q, FS_v4d w, FS_v4l real, FS_v4d m, FS_v4d keep,
                      FS_v4d per_class, const int has_q, const int has_w, FS_v4d *b,
                      FS_v4d *g)
{
    const FS_v4d zero = FS_splat4d(0.0);
    FS_v4d bv = FS_select4d(real, FS_target_weight4d(q, w, keep, per_class, has_q, has_w), zero);
    *b += bv;
    *g += FS_select4d(FS_eq4d(bv, zero), zero, bv * (m - x));
}

/* A compensated total of vectors: [0] the Kahan lanes' sum, [1] what they lost, [2] a
   plain sum, which decides when the total is not finite (as in FS_sum_f64: an infinite
   term makes the compensation NaN) */
static inline void FS_target_add4d(FS_v4d total[3], FS_v4d term)
{
    FS_kahan4d(&total[0], &total[1], term);
    total[2] += term;
}

static inline double FS_target_total4d(FS_v4d total[3])
{
    const FS_v4d zero = FS_splat4d(0.0);
    const double plain = FS_fold4d(total[2], zero);
    return isfinite(plain) ? FS_fold_kahan4d(total[0], total[1], zero, zero) : plain;
}
#endif

/* Bytes ahead of the target passes' reads that they prefetch: on rows of 1000000 floats
   the sums pass stalled on its loads (the hardware prefetchers did not keep up with the
   two streams; 8x1000000 float32 with probability targets, loss only, 8.2 -> 3.7 ms) */
#define FS_TARGET_AHEAD 2048

/* the cache lines FS_TARGET_AHEAD bytes past a and, if has_b, past b */
static inline __attribute__((always_inline)) void
FS_target_prefetch(const void *a, const void *b, const int has_b)
{
    FS_prefetch((const char *)a + FS_TARGET_AHEAD);
    if (has_b)
        FS_prefetch((const char *)b + FS_TARGET_AHEAD);
}

/* Σ_j B_j (m - x_j) over a float row, and Σ_j B_j in *weight_sum; both in double (plain
   lanes: the loss is rounded to float's precision anyway).  With B_j >= 0 and m the
   row's max every term is >= 0: nothing cancels.  Four accumulators of each sum, so
   that the additions' latency does not bound the loop (with one pair, a float32
   4096x1000 row took longer here than its exponentials). */
static inline __attribute__((always_inline)) double
FS_target_sums_f32_impl(const float *x, const float *q, const double *w, ptrdiff_t n, float m,
                        double keep, double per_class, double *weight_sum, const float *ahead,
                        const int has_q, const int has_w)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v4d mv = FS_splat4d((double)m), kv = FS_splat4d(keep), pv = FS_splat4d(per_class);
    const FS_v4l lane = {0, 1, 2, 3}, every = {-1, -1, -1, -1};
    FS_v4d b_acc[4], g_acc[4];
    for (int a = 0; a < 4; a++)
        b_acc[a] = g_acc[a] = FS_splat4d(0.0);
    /* whole blocks of 16, then the rest 8 at a time (past n: x = m, q = w = 0, and
       the lanes masked off) */
    for (; j < n; j += 16) {
        if (ahead)
            FS_prefetch(ahead + j);
        FS_target_prefetch(x + j, q + j, has_q);
        for (int u = 0; u < 2; u++) {
            const ptrdiff_t k = n - j - 8 * u;
            const int whole = n - j >= 16;
            FS_v4d xs[2], qs[2] = {kv, kv}, ws[2] = {kv, kv};
            if (k <= 0)
                break;
            FS_widen8f(FS_load8f_upto(x + j + 8 * u, k, m), &xs[0], &xs[1]);
            if (has_q)
                FS_widen8f(FS_load8f_upto(q + j + 8 * u, k, 0.0f), &qs[0], &qs[1]);
            for (int h = 0; h < 2; h++) {
                if (has_w)
                    ws[h] = FS_load4d_upto(w + j + 8 * u + 4 * h, k - 4 * h, 0.0);
                FS_target_sums_step4d(xs[h], qs[h], ws[h],
                                      whole ? every : (FS_v4l)(lane < (long long)(k - 4 * h)),
                                      mv, kv, pv, has_q, has_w, &b_acc[2 * u + h],
                                      &g_acc[2 * u + h]);
            }
        }
    }
    *weight_sum = FS_fold4d(b_acc[0] + b_acc[2], b_acc[1] + b_acc[3]);
    return FS_fold4d(g_acc[0] + g_acc[2], g_acc[1] + g_acc[3]);
#else
    double b_total = 0.0, g_total = 0.0;
    for (; j < n; j++) {
        double b = FS_target_weight(has_q ? q[j] : 0.0, has_w ? w[j] : 0.0, keep, per_class,
                                    has_q, has_w);
        b_total += b;
        g_total += b == 0 ? 0.0 : b * ((double)m - (double)x[j]);
    }
    *weight_sum = b_total;
    return g_total;
#endif
}

/* FS_target_sums_f32_impl for double rows: plain lanes over blocks of 256 values, each
   block's sums added into Kahan-compensated totals.  A = Σ B_j scales every gradient
   value: 16 plain lanes over the whole row lost 1e-12 of it on rows of 300000, and Kahan
   steps for every vector (a chain of three additions each) cost a third of the row's
   time. */
#define FS_TARGET_BLOCK 256
static inline __attribute__((always_inline)) double
FS_target_sums_f64_impl(const double *x, const double *q, const double *w, ptrdiff_t n,
                        double m, double keep, double per_class, double *weight_sum,
                        const double *ahead, const int has_q, const int has_w)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v4d mv = FS_splat4d(m), kv = FS_splat4d(keep), pv = FS_splat4d(per_class);
    const FS_v4l lane = {0, 1, 2, 3}, every = {-1, -1, -1, -1};
    FS_v4d b_total[3], g_total[3];
    for (int c = 0; c < 3; c++)
        b_total[c] = g_total[c] = FS_splat4d(0.0);
    while (j < n) {
        const ptrdiff_t end = n - j > FS_TARGET_BLOCK ? j + FS_TARGET_BLOCK : n;
        FS_v4d b_acc[4], g_acc[4];
        for (int a = 0; a < 4; a++)
            b_acc[a] = g_acc[a] = FS_splat4d(0.0);
        for (; j < end; j += 16) {
            FS_prefetch_two_lines(ahead ? ahead + j : NULL);
            FS_prefetch_two_lines((const char *)(x + j) + FS_TARGET_AHEAD);
            if (has_q)
                FS_prefetch_two_lines((const char *)(q + j) + FS_TARGET_AHEAD);
            for (int h = 0; h < 4; h++) {
                const ptrdiff_t k = n - j - 4 * h;
                FS_v4d qv = kv, wv = kv;
                if (k <= 0)
                    break;
                if (has_q)
                    qv = FS_load4d_upto(q + j + 4 * h, k, 0.0);
                if (has_w)
                    wv = FS_load4d_upto(w + j + 4 * h, k, 0.0);
                FS_target_sums_step4d(FS_load4d_upto(x + j + 4 * h, k, m), qv, wv,
                                      n - j >= 16 ? every : (FS_v4l)(lane < (long long)k), mv,
                                      kv, pv, has_q, has_w, &b_acc[h], &g_acc[h]);
            }
        }
        FS_target_add4d(b_total, (b_acc[0] + b_acc[2]) + (b_acc[1] + b_acc[3]));
        FS_target_add4d(g_total, (g_acc[0] + g_acc[2]) + (g_acc[1] + g_acc[3]));
    }
    *weight_sum = FS_target_total4d(b_total);
    return FS_target_total4d(g_total);
#else
    double b_sum[3] = {0.0, 0.0, 0.0}, g_sum[3] = {0.0, 0.0, 0.0};
    for (; j < n; j++) {
        double b = FS_target_weight(has_q ? q[j] : 0.0, has_w ? w[j] : 0.0, keep, per_class,
                                    has_q, has_w);
        double terms[2] = {b, b == 0 ? 0.0 : b * (m - x[j])};
        for (int s = 0; s < 2; s++) {
            double *sum = s ? g_sum : b_sum;
            double term = terms[s] - sum[1], t = sum[0] + term;
            sum[2] += terms[s];
            sum[1] = (t - sum[0]) - term;
            sum[0] = t;
        }
    }
    *weight_sum = isfinite(b_sum[2]) ? b_sum[0] - b_sum[1] : b_sum[2];
    return isfinite(g_sum[2]) ? g_sum[0] - g_sum[1] : g_sum[2];
#endif
}

#define FS_TARGET_VARIANTS(NAME, ...)                                                 \
    (q ? (w ? NAME(__VA_ARGS__, 1, 1) : NAME(__VA_ARGS__, 1, 0))                    \
       : (w ? NAME(__VA_ARGS__, 0, 1) : NAME(__VA_ARGS__, 0, 0)))

/* ahead != NULL: n values there (the next row's target) are prefetched on the way: a
   row of targets read from memory starts in a new page, where the hardware prefetchers
   wait for misses */
static inline double FS_target_sums_f32(const float *x, const float *q, const double *w,
                                        ptrdiff_t n, float m, double keep, double per_class,
                                        double *weight_sum, const float *ahead)
{
    return FS_TARGET_VARIANTS(FS_target_sums_f32_impl, x, q, w, n, m, keep, per_class,
                              weight_sum, ahead);
}

static inline double FS_target_sums_f64(const double *x, const double *q, const double *w,
                                        ptrdiff_t n, double m, double keep, double per_class,
                                        double *weight_sum, const double *ahead)
{
    return FS_TARGET_VARIANTS(FS_target_sums_f64_impl, x, q, w, n, m, keep, per_class,
                              weight_sum, ahead);
}

#if FS_HAVE_VECTOR_EXTENSIONS
/* (e k - c B) f on one vector of the gradient pass, in double (f: the factor's lanes,
   used when has_z) */
static inline __attribute__((always_inline)) FS_v4d
FS_target_grad4d(FS_v4d e, FS_v4d q, FS_v4d w, FS_v4d f, FS_v4d k, FS_v4d c, FS_v4d keep,
                 FS_v4d per_class, const int has_z, const int has_q, const int has_w)
{
    FS_v4d g = e * k - c * FS_target_weight4d(q, w, keep, per_class, has_q, has_w);
    return has_z ? g * f : g;
}
#endif

/* y[j] = (e[j] k - c B_j) f_j, formed in double and rounded once, where f_j is
   sigsoftmax's factor 2 - sigmoid(z[j]) as FS_two_minus_sigmoid_* computes it (z == NULL:
   without the factor; forming it here rather than reading it from a row of factors took
   8-14% off float64 rows of 1000000).  y may be e, q or z: each element is read before
   it is written. */
static inline __attribute__((always_inline)) void
FS_target_grad_f32_impl(const float *e, float *y, const float *q, const double *w,
                        const float *z, ptrdiff_t n, double k_, double c_, double keep,
                        double per_class, const int has_z, const int has_q, const int has_w)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v4d kv = FS_splat4d(k_), cv = FS_splat4d(c_), keep_v = FS_splat4d(keep);
    const FS_v4d pv = FS_splat4d(per_class);
    for (; j < n; j += 8) {
        const ptrdiff_t k = n - j;
        FS_v4d es[2], qs[2] = {keep_v, keep_v}, ws[2] = {keep_v, keep_v}, fs[2] = {kv, kv};
        if ((j & 15) == 0)             /* a cache line per 16 values */
            FS_target_prefetch(e + j, q + j, has_q);
        FS_widen8f(FS_load8f_upto(e + j, k, 0.0f), &es[0], &es[1]);
        if (has_q)
            FS_widen8f(FS_load8f_upto(q + j, k, 0.0f), &qs[0], &qs[1]);
        if (has_z)
            FS_widen8f(FS_two_minus_sigmoid_v8(FS_load8f_upto(z + j, k, 0.0f)), &fs[0], &fs[1]);
        for (int h = 0; h < 2; h++) {
            if (has_w)
                ws[h] = FS_load4d_upto(w + j + 4 * h, k - 4 * h, 0.0);
            es[h] = FS_target_grad4d(es[h], qs[h], ws[h], fs[h], kv, cv, keep_v, pv, has_z,
                                     has_q, has_w);
        }
        FS_store8f_upto(y + j, FS_narrow8f(es[0], es[1]), k);
    }
#else
    for (; j < n; j++) {
        double g = (double)e[j] * k_ - c_ * FS_target_weight(has_q ? q[j] : 0.0,
                                                             has_w ? w[j] : 0.0, keep,
                                                             per_class, has_q, has_w);
        y[j] = (float)(has_z ? g * (2.0 - FS_sigmoid(z[j])) : g);
    }
#endif
}

static inline __attribute__((always_inline)) void
FS_target_grad_f64_impl(const double *e, double *y, const double *q, const double *w,
                        const double *z, ptrdiff_t n, double k_, double c_, double keep,
                        double per_class, const int has_z, const int has_q, const int has_w)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    const FS_v4d kv = FS_splat4d(k_), cv = FS_splat4d(c_), keep_v = FS_splat4d(keep);
    const FS_v4d pv = FS_splat4d(per_class);
    for (; j < n; j += 4) {
        const ptrdiff_t k = n - j;
        FS_v4d qv = keep_v, wv = keep_v, fv = kv;
        if ((j & 7) == 0)              /* a cache line per 8 values */
            FS_target_prefetch(e + j, q + j, has_q);
        if (has_q)
            qv = FS_load4d_upto(q + j, k, 0.0);
        if (has_w)
            wv = FS_load4d_upto(w + j, k, 0.0);
        if (has_z) {
            fv = FS_load4d_upto(z + j, k, 0.0);
            FS_two_minus_sigmoid_lanes(&fv, 1);
        }
        FS_store4d_upto(y + j, FS_target_grad4d(FS_load4d_upto(e + j, k, 0.0), qv, wv, fv, kv,
                                                cv, keep_v, pv, has_z, has_q, has_w), k);
    }
#else
    for (; j < n; j++) {
        double g = e[j] * k_ - c_ * FS_target_weight(has_q ? q[j] : 0.0, has_w ? w[j] : 0.0,
                                                     keep, per_class, has_q, has_w);
        y[j] = has_z ? g * (2.0 - FS_sigmoid(z[j])) : g;
    }
#endif
}

static inline void FS_target_grad_f32(const float *e, float *y, const float *q, const double *w,
                                      const float *z, ptrdiff_t n, double k, double c,
                                      double keep, double per_class)
{
    if (z)
        FS_TARGET_VARIANTS(FS_target_grad_f32_impl, e, y, q, w, z, n, k, c, keep, per_class, 1);
    else
        FS_TARGET_VARIANTS(FS_target_grad_f32_impl, e, y, q, w, z, n, k, c, keep, per_class, 0);
}

static inline void FS_target_grad_f64(const double *e, double *y, const double *q,
                                      const double *w, const double *z, ptrdiff_t n, double k,
                                      double c, double keep, double per_class)
{
    if (z)
        FS_TARGET_VARIANTS(FS_target_grad_f64_impl, e, y, q, w, z, n, k, c, keep, per_class, 1);
    else
        FS_TARGET_VARIANTS(FS_target_grad_f64_impl, e, y, q, w, z, n, k, c, keep, per_class, 0);
}


/* ---------------------------------------------------------------------------------------
 * The backward passes of the four transforms (_backward.pxi), in double for both
 * dtypes, rounded once to the row's type:
 *   FS_dot_*:  Σ a[j] b[j] (b NULL: Σ a[j]): float rows in plain double lanes (the
 *              products are exact), double rows in Kahan lanes;
 *   FS_vjp_*:  out = y (g - r) (softmax) or g - exp(y) r (log_softmax, exp(y) in the
 *              row's type), times 2 - sigmoid(z) for sigsoftmax's (z not NULL); out
 *              may be g.  Each kind compiled apart, the row's last partial block alone.
 * They replace scalar loops whose exponentials GCC did not vectorize: 4096x1000 float32
 * log_softmax_backward took 13 ms on one core, PyTorch 5.4 ms.
 * ------------------------------------------------------------------------------------- */

/* Σ a[j] b[j] of float rows: each product is exact in double, and the products are added
   in 16 double lanes (4 vectors, so that the additions' latency overlaps).  The sum's
   rounding error, at most n 2^-53 of Σ |a b|, stays below 2^-9 of float's unit roundoff
   (of the same Σ |a b|) for n up to a million: no compensation is needed (the double
   rows keep FS_dot_f64's Kahan lanes). */
static inline __attribute__((always_inline)) double
FS_dot_f32_impl(const float *a, const float *b, ptrdiff_t n, const int has_b)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    FS_v4d acc[4] = {FS_splat4d(0.0), FS_splat4d(0.0), FS_splat4d(0.0), FS_splat4d(0.0)};
    FS_v8f av, bv;
    FS_v4d low, high, b_low, b_high;
    for (; j + 16 <= n; j += 16)
        for (int h = 0; h < 2; h++) {
            memcpy(&av, a + j + 8 * h, sizeof av);
            FS_widen8f(av, &low, &high);
            if (has_b) {
                memcpy(&bv, b + j + 8 * h, sizeof bv);
                FS_widen8f(bv, &b_low, &b_high);
                low = low * b_low;
                high = high * b_high;
            }
            acc[2 * h] += low;
            acc[2 * h + 1] += high;
        }
    for (; j < n; j += 8) {
        const ptrdiff_t k = n - j;                   /* zeros past n */
        FS_widen8f(FS_load8f_upto(a + j, k, 0.0f), &low, &high);
        if (has_b) {
            FS_widen8f(FS_load8f_upto(b + j, k, 0.0f), &b_low, &b_high);
            low = low * b_low;
            high = high * b_high;
        }
        acc[0] += low;
        acc[1] += high;
    }
    const FS_v4d total = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    return (total[0] + total[2]) + (total[1] + total[3]);
#else
    double total = 0.0;
    for (; j < n; j++)
        total += (double)a[j] * (has_b ? (double)b[j] : 1.0);
    return total;
#endif
}

static inline double FS_dot_f32(const float *a, const float *b, ptrdiff_t n)
{
    return b ? FS_dot_f32_impl(a, b, n, 1) : FS_dot_f32_impl(a, NULL, n, 0);
}

#if FS_HAVE_VECTOR_EXTENSIONS
/* s0 - c0 + s1 - c1 summed over the lanes, compensated: the sums of pairs are split into
   sum and rounding error (TwoSum, branch-free) in three vector steps, the errors and the
   Kahan lanes' lost parts added at the end.  Within a few u of the
   exact total like FS_fold_kahan4d's Neumaier loop, in a fraction of its time (which
   bounded the backward's rows of ten doubles). */
static inline void FS_two_sum4d(FS_v4d a, FS_v4d b, FS_v4d *sum, FS_v4d *error)
{
    FS_v4d s = a + b, bb = s - a;
    *sum = s;
    *error = (a - (s - bb)) + (b - bb);
}

static inline double FS_fold_kahan4d_fast(FS_v4d s0, FS_v4d c0, FS_v4d s1, FS_v4d c1)
{
    FS_v4d s, e, t, f, u, last;
    FS_two_sum4d(s0, s1, &s, &e);
    FS_v4d compensation = e - (c0 + c1);
    FS_two_sum4d(s, (FS_v4d){s[2], s[3], s[0], s[1]}, &t, &f);    /* lanes 0, 1: s0 + s2, s1 + s3 */
    FS_two_sum4d(t, (FS_v4d){t[1], t[0], t[3], t[2]}, &u, &last); /* lane 0: the total */
    const double total = u[0];
    if (!isfinite(total))                          /* NaN or inf: the plain total decides */
        return total;
    return total + (last[0] + ((f[0] + f[1]) + ((compensation[0] + compensation[2])
                                                 + (compensation[1] + compensation[3]))));
}
#endif

/* Σ a[j] b[j] of double rows (b NULL: Σ a[j]) in Kahan lanes */
static inline __attribute__((always_inline)) double
FS_dot_f64_impl(const double *a, const double *b, ptrdiff_t n, const int has_b)
{
    ptrdiff_t j = 0;
#if FS_HAVE_VECTOR_EXTENSIONS
    FS_v4d s0 = FS_splat4d(0.0), c0 = s0, s1 = s0, c1 = s0;
    for (; j + 8 <= n; j += 8) {
        FS_v4d a0, a1, b0, b1;
        memcpy(&a0, a + j, sizeof a0);
        memcpy(&a1, a + j + 4, sizeof a1);
        if (has_b) {
            memcpy(&b0, b + j, sizeof b0);
            memcpy(&b1, b + j + 4, sizeof b1);
            a0 = a0 * b0;
            a1 = a1 * b1;
        }
        FS_kahan4d(&s0, &c0, a0);
        FS_kahan4d(&s1, &c1, a1);
    }
    for (; j < n; j += 4) {
        ptrdiff_t k = n - j < 4 ? n - j : 4;
        FS_v4d a0 = FS_load4d_upto(a + j, k, 0.0);
        if (has_b)
            a0 = a0 * FS_load4d_upto(b + j, k, 0.0);
        FS_kahan4d(&s0, &c0, a0);
    }
    return FS_fold_kahan4d_fast(s0, c0, s1, c1);
#else
    double total = 0.0, lost = 0.0;
    for (; j < n; j++) {
        double term = a[j] * (has_b ? b[j] : 1.0) - lost, t = total + term;
        lost = (t - total) - term;
        total = t;
    }
    return total - lost;
#endif
}

static inline double FS_dot_f64(const double *a, const double *b, ptrdiff_t n)
{
    return b ? FS_dot_f64_impl(a, b, n, 1) : FS_dot_f64_impl(a, NULL, n, 0);
}


#if FS_HAVE_VECTOR_EXTENSIONS
/* FS_vjp_*'s four kinds, each its own compiled loop (no test of log_kind or z in it) */
#define FS_VJP_KINDS(IMPL)                                                                  \
    do {                                                                                    \
        if (log_kind)                                                                       \
            z ? IMPL(g, y, z, out, n, r, next_g, next_y, next_z, 1, 1)                      \
              : IMPL(g, y, NULL, out, n, r, next_g, next_y, NULL, 1, 0);                    \
        else                                                                                \
            z ? IMPL(g, y, z, out, n, r, next_g, next_y, next_z, 0, 1)                      \
              : IMPL(g, y, NULL, out, n, r, next_g, next_y, NULL, 0, 0);                    \
    } while (0)

/* FS_vjp_f32 on one block of k <= 16 values from j (whole vectors when k is 16) */
static inline __attribute__((always_inline)) void
FS_vjp_block_f32(const float *g, const float *y, const float *z, float *out, ptrdiff_t k,
                 FS_v4d rv, const int log_kind, const int has_z)
{
    FS_v8f gv[2], yv[2], zv[2], result;
    FS_v4d gd[4], e[4], f[4];
    for (int h = 0; h < 2; h++) {
        gv[h] = FS_load8f_upto(g + 8 * h, k - 8 * h, 0.0f);
        yv[h] = FS_load8f_upto(y + 8 * h, k - 8 * h, 0.0f);
        if (has_z)
            zv[h] = FS_load8f_upto(z + 8 * h, k - 8 * h, 0.0f);
    }
    if (log_kind) {
        /* exp(y) in float, as the forward computes it: within about an ulp of exp(y),
           the size of the rounding the float y itself carries into it */
        const FS_v8f low = FS_splat8f(-87.0f), high = FS_splat8f(88.0f);
        const FS_v8i outside = ~(FS_ge8f(yv[0], low) & FS_le8f(yv[0], high))
                               | ~(FS_ge8f(yv[1], low) & FS_le8f(yv[1], high));
        /* a block of -inf outputs only (masked entries): exp is 0 there, as the general
           path makes it */
        const FS_v8i zero = FS_lt8f(yv[0], FS_splat8f(-104.0f))
                            & FS_lt8f(yv[1], FS_splat8f(-104.0f));
        if (!FS_any8(outside))
            FS_expf_lanes(yv, 2, 1);
        else if (FS_all4((FS_v4l)zero))
            yv[0] = yv[1] = FS_splat8f(0.0f);
        else
            FS_expf_lanes(yv, 2, 0);
    }
    for (int h = 0; h < 2; h++) {
        FS_widen8f(gv[h], &gd[2 * h], &gd[2 * h + 1]);
        FS_widen8f(yv[h], &e[2 * h], &e[2 * h + 1]);
        if (has_z)
            FS_widen8f(zv[h], &f[2 * h], &f[2 * h + 1]);
    }
    FS_vjp_lanes(e, gd, has_z ? f : NULL, 4, rv, log_kind);
    for (int h = 0; h < 2; h++) {
        result = FS_narrow8f(e[2 * h], e[2 * h + 1]);
        FS_store8f_upto(out + 8 * h, result, k - 8 * h);
    }
}

static inline __attribute__((always_inline)) void
FS_vjp_f32_impl(const float *g, const float *y, const float *z, float *out, ptrdiff_t n,
                double r, const float *next_g, const float *next_y, const float *next_z,
                const int log_kind, const int has_z)
{
    const FS_v4d rv = FS_splat4d(r);
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16) {
        if (next_g) {                      /* a line of the next row's inputs per block */
            FS_prefetch(next_g + j);
            FS_prefetch(next_y + j);
            if (has_z)
                FS_prefetch(next_z + j);
        }
        FS_vjp_block_f32(g + j, y + j, has_z ? z + j : NULL, out + j, 16, rv, log_kind, has_z);
    }
    if (j < n)
        FS_vjp_block_f32(g + j, y + j, has_z ? z + j : NULL, out + j, n - j, rv, log_kind,
                         has_z);
}
#endif

/* FS_vjp_f32 / FS_vjp_f64: one row's vector-Jacobian product, the vector loop of the
   row's kind (FS_VJP_KINDS), or without vector extensions the same formula value by
   value in double, the float rows' exponential taken in float (EXP) as the vector loop
   takes it.  next_*: the next row's g, y (and z), prefetched a line per block, or NULL. */
#if FS_HAVE_VECTOR_EXTENSIONS
#define FS_VJP_ENTRY(SUFFIX, T, EXP)                                                          \
    static inline void FS_vjp_##SUFFIX(const T *g, const T *y, const T *z, T *out,             \
                                       ptrdiff_t n, double r, int log_kind, const T *next_g,   \
                                       const T *next_y, const T *next_z)                       \
    {                                                                                          \
        FS_VJP_KINDS(FS_vjp_##SUFFIX##_impl);                                                  \
    }
#else
#define FS_VJP_ENTRY(SUFFIX, T, EXP)                                                          \
    static inline void FS_vjp_##SUFFIX(const T *g, const T *y, const T *z, T *out,             \
                                       ptrdiff_t n, double r, int log_kind, const T *next_g,   \
                                       const T *next_y, const T *next_z)                       \
    {                                                                                          \
        (void)next_g; (void)next_y; (void)next_z;                                              \
        for (ptrdiff_t j = 0; j < n; j++) {                                                    \
            double v = log_kind ? (double)g[j] - (double)EXP(y[j]) * r                         \
                                : (double)y[j] * ((double)g[j] - r);                           \
            out[j] = (T)(z ? (2.0 - FS_sigmoid((double)z[j])) * v : v);                        \
        }                                                                                      \
    }
#endif
FS_VJP_ENTRY(f32, float, FS_expf)

#if FS_HAVE_VECTOR_EXTENSIONS
static inline __attribute__((always_inline)) void
FS_vjp_f64_impl(const double *g, const double *y, const double *z, double *out, ptrdiff_t n,
                double r, const double *next_g, const double *next_y, const double *next_z,
                const int log_kind, const int has_z)
{
    const FS_v4d rv = FS_splat4d(r);
    for (ptrdiff_t j = 0; j < n; j += 8) {
        const ptrdiff_t k = n - j;
        FS_v4d gv[2], e[2], f[2];
        if (next_g && k >= 8) {            /* a line of the next row's inputs per block */
            FS_prefetch(next_g + j);
            FS_prefetch(next_y + j);
            if (has_z)
                FS_prefetch(next_z + j);
        }
        for (int h = 0; h < 2; h++) {
            gv[h] = FS_load4d_upto(g + j + 4 * h, k - 4 * h, 0.0);
            e[h] = FS_load4d_upto(y + j + 4 * h, k - 4 * h, 0.0);
            if (has_z)
                f[h] = FS_load4d_upto(z + j + 4 * h, k - 4 * h, 0.0);
        }
        if (log_kind)
            FS_exp_nonpositive_lanes(e, 2);
        FS_vjp_lanes(e, gv, has_z ? f : NULL, 2, rv, log_kind);
        for (int h = 0; h < 2; h++)
            FS_store4d_upto(out + j + 4 * h, e[h], k - 4 * h);
    }
}
#endif

FS_VJP_ENTRY(f64, double, FS_exp)

/* ---------------------------------------------------------------------------------------
 * Streaming stores for log_softmax results far larger than the caches: the last pass of
 * a row writes its output with non-temporal stores, which skip the read-for-ownership of
 * every output line (a third of the memory traffic) and leave the caches to the input.
 * Same arithmetic, same bits as FS_log_normalize_*.  Builds without AVX use ordinary
 * stores.  FS_store_fence() must follow a thread's last streaming store.
 * ------------------------------------------------------------------------------------- */


#if defined(__AVX__) && FS_HAVE_VECTOR_EXTENSIONS
#define FS_ALIGNED32(p) ((((uintptr_t)(p)) & 31) == 0)
#endif

static inline void FS_store_fence(void)
{
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

/* y[j] = (x[j] - m) - log_norm (as FS_log_normalize_f32) */
static inline void FS_log_normalize_stream_f32(const float *x, float *y, ptrdiff_t n, float m,
                                               double log_norm)
{
    const float l = (float)log_norm;
    ptrdiff_t j = 0;
#if defined(__AVX__) && FS_HAVE_VECTOR_EXTENSIONS
    const FS_v8f mv = FS_splat8f(m), lv = FS_splat8f(l);
    for (; j < n && !FS_ALIGNED32(y + j); j++)
        y[j] = (x[j] - m) - l;
    for (; j + 8 <= n; j += 8) {
        FS_v8f a;
        memcpy(&a, x + j, sizeof a);
        _mm256_stream_ps(y + j, (__m256)((a - mv) - lv));
    }
#endif
    for (; j < n; j++)
        y[j] = (x[j] - m) - l;
}

static inline void FS_log_normalize_stream_f64(const double *x, double *y, ptrdiff_t n, double m,
                                               double log_norm)
{
    ptrdiff_t j = 0;
#if defined(__AVX__) && FS_HAVE_VECTOR_EXTENSIONS
    const FS_v4d mv = FS_splat4d(m), lv = FS_splat4d(log_norm);
    for (; j < n && !FS_ALIGNED32(y + j); j++)
        y[j] = (x[j] - m) - log_norm;
    for (; j + 4 <= n; j += 4) {
        FS_v4d a;
        memcpy(&a, x + j, sizeof a);
        _mm256_stream_pd(y + j, (__m256d)((a - mv) - lv));
    }
#endif
    for (; j < n; j++)
        y[j] = (x[j] - m) - log_norm;
}

/* memcpy(dst, src, nbytes) with 16-byte streaming stores (SSE2, so the baseline build
   has them too); dst 16-byte aligned, nbytes a multiple of 16 (a strip's transposed rows
   written back whole, see _write_back_streamed). */
static inline void FS_stream_copy(void *dst, const void *src, size_t nbytes)
{
    size_t j = 0;
#if defined(__SSE2__)
    for (; j + 16 <= nbytes; j += 16) {
        __m128i a;
        memcpy(&a, (const char *)src + j, sizeof a);
        _mm_stream_si128((__m128i *)((char *)dst + j), a);
    }
#endif
    if (j < nbytes)
        memcpy((char *)dst + j, (const char *)src + j, nbytes - j);
}

#endif /* FS_SIMD_H */
