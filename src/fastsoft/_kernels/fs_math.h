/*
 * fs_math.h -- branch-free elementary functions for fastsoft's row kernels.
 *
 * Design:
 * 1. Every function here is `static inline`, has no branches that depend on the data and
 *    calls no libm routine, so a loop that calls it can be auto-vectorized by the compiler
 *    (a plain exp() loop is never vectorized without -ffast-math, which we do not use
 *    because it breaks NaN/inf semantics).
 * 2. The exponentials clamp their argument to the range where the result is neither 0 nor
 *    inf, so the scaling by 2^n can never wrap; -inf gives exactly 0, +inf gives +inf and
 *    NaN gives NaN (a NaN passes both clamps, whose comparisons are false).  (fs_simd.h's
 *    vector exponentials set the lanes below the range to 0 instead of scaling them down
 *    to an underflow, which Intel cores serve by a microcode assist; here, in the loops
 *    GCC vectorizes, the extra select cost 4-12% and the assists did not show.)  The forward
 *    kernels only pass shifted values x - max(x) <= 0.
 * 3. exp: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, with a two-part ln2 whose high
 *    part has enough trailing zeros that n*ln2_hi is exact (correct with or without FMA
 *    contraction), then exp(r) = 1 + (r + r^2 h(r)) with h a minimax polynomial (degree 4
 *    for float, 9 for double; FS_EXPF_H*, FS_EXP_H*: a polynomial error of 0.05 and 0.03
 *    units of 2^-24 and 2^-53) and a scaling by 2^n split in two factors so that results
 *    in the subnormal range are still produced rather than flushed.  n is recovered with the
 *    "shifter" trick (add 1.5*2^mantissa_bits and read the low bits), so NaN never goes
 *    through a float->int conversion (undefined behaviour in C).
 *    Measured accuracy is reported in docs/numerics.md (about 1 ulp).
 * 4. log1p on [0, 1]: log(1+t) = k ln2 + log(m), 1+t = 2^k m with m in [sqrt(1/2), sqrt(2)],
 *    log(m) = 2 atanh(s), s = (m-1)/(m+1), evaluated in the fdlibm order, plus a
 *    first-order correction for the rounding of 1+t.  Used for softplus(-|z|) = log1p(exp(-|z|)) in sigsoftmax.
 */
#ifndef FS_MATH_H
#define FS_MATH_H

#include <stdint.h>
#include <string.h>

static inline uint32_t FS_bits_f32(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static inline float FS_f32_from_bits(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }
static inline uint64_t FS_bits_f64(double x) { uint64_t u; memcpy(&u, &x, sizeof u); return u; }
static inline double FS_f64_from_bits(uint64_t u) { double x; memcpy(&x, &u, sizeof x); return x; }

/* h(r) ~ (exp(r) - 1 - r) / r^2 on |r| <= ln2/2: coefficients of the polynomial that
   minimises the largest relative error of 1 + r + r^2 h(r) against exp(r) (Lawson's
   iteration in 60-digit arithmetic, bench/exp_coefficients.py), rounded to the dtype.
   Lower degrees than a Taylor series of the same accuracy: fewer dependent steps in
   every exponential. */
#define FS_EXPF_H0 0x1.fffffcp-2f
#define FS_EXPF_H1 0x1.555492p-3f
#define FS_EXPF_H2 0x1.5558f2p-5f
#define FS_EXPF_H3 0x1.1239d4p-7f
#define FS_EXPF_H4 0x1.6a244cp-10f
#define FS_EXP_H0 0x1.000000000000ap-1
#define FS_EXP_H1 0x1.55555555554fap-3
#define FS_EXP_H2 0x1.555555555088cp-5
#define FS_EXP_H3 0x1.1111111127b9ep-7
#define FS_EXP_H4 0x1.6c16c1842678ap-10
#define FS_EXP_H5 0x1.a01a012a68e0bp-13
#define FS_EXP_H6 0x1.a0199a16c13efp-16
#define FS_EXP_H7 0x1.71df253c040cdp-19
#define FS_EXP_H8 0x1.28ad68c1a83p-22
#define FS_EXP_H9 0x1.ad7f78174a26fp-26

/* s(t) ~ (log1p(t) - t) / t^2 on [0, 1], degree 8, for float log1p as t + t^2 s(t)
   (FS_log1pf_unit_lanes): weighted least squares in 50-digit arithmetic, each coefficient
   rounded to float before the next is fitted (bench/log1pf_coefficients.py). */
#define FS_LOG1PF_S0 -0x1.ffff9p-2f
#define FS_LOG1PF_S1 0x1.5546d4p-2f
#define FS_LOG1PF_S2 -0x1.fe9d9p-3f
#define FS_LOG1PF_S3 0x1.90c89ep-3f
#define FS_LOG1PF_S4 -0x1.337ac2p-3f
#define FS_LOG1PF_S5 0x1.9efd04p-4f
#define FS_LOG1PF_S6 -0x1.adfc7cp-5f
#define FS_LOG1PF_S7 0x1.1fa886p-6f
#define FS_LOG1PF_S8 -0x1.68a20ap-9f

/* exp(x) in float: below -104 it rounds to +0, above 89 it is +inf. Fastest and most
   accurate for the x <= 0 that the forward kernels pass. */
static inline float FS_expf(float x)
{
    const float shifter = 12582912.0f;              /* 1.5 * 2^23 */
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f;              /* 8 significant bits: n*ln2_hi exact */
    const float ln2_lo = -2.12194440e-4f;
    x = (x < -104.0f) ? -104.0f : x;                /* NaN compares false and passes */
    x = (x > 89.0f) ? 89.0f : x;                    /* exp(89) overflows to inf below */
    float t = x * log2e + shifter;
    float n = t - shifter;                          /* round(x / ln2), exact */
    int32_t ni = (int32_t)(FS_bits_f32(t) - FS_bits_f32(shifter));
    float r = x - n * ln2_hi;
    r = r - n * ln2_lo;
    /* exp(r) = 1 + (r + r^2 h(r)): the small correction r^2 h is added to r and 1 last,
       so the rounding of h barely matters */
    float h = FS_EXPF_H4;
    h = h * r + FS_EXPF_H3;
    h = h * r + FS_EXPF_H2;
    h = h * r + FS_EXPF_H1;
    h = h * r + FS_EXPF_H0;
    float p = 1.0f + ((r * r) * h + r);
    /* 2^n as two normal factors: n >= -150 would be subnormal as one factor */
    int32_t n1 = ni / 2;
    int32_t n2 = ni - n1;
    float s1 = FS_f32_from_bits((uint32_t)(n1 + 127) << 23);
    float s2 = FS_f32_from_bits((uint32_t)(n2 + 127) << 23);
    return (p * s1) * s2;
}

/* exp(x) in double: below -746 it rounds to +0, above 710 it is +inf. */
static inline double FS_exp(double x)
{
    const double shifter = 6755399441055744.0;      /* 1.5 * 2^52 */
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 6.93145751953125e-1;      /* 21 significant bits: n*ln2_hi exact */
    const double ln2_lo = 1.42860682030941723212e-6;
    x = (x < -746.0) ? -746.0 : x;
    x = (x > 710.0) ? 710.0 : x;
    double t = x * log2e + shifter;
    double n = t - shifter;
    int64_t ni = (int64_t)(FS_bits_f64(t) - FS_bits_f64(shifter));
    double r = x - n * ln2_hi;
    r = r - n * ln2_lo;
    double p = FS_EXP_H9;
    p = p * r + FS_EXP_H8;
    p = p * r + FS_EXP_H7;
    p = p * r + FS_EXP_H6;
    p = p * r + FS_EXP_H5;
    p = p * r + FS_EXP_H4;
    p = p * r + FS_EXP_H3;
    p = p * r + FS_EXP_H2;
    p = p * r + FS_EXP_H1;
    p = p * r + FS_EXP_H0;
    p = 1.0 + ((r * r) * p + r);                    /* as in FS_expf */
    int64_t n1 = ni / 2;
    int64_t n2 = ni - n1;
    double s1 = FS_f64_from_bits((uint64_t)(n1 + 1023) << 52);
    double s2 = FS_f64_from_bits((uint64_t)(n2 + 1023) << 52);
    return (p * s1) * s2;
}

/* log(1 + t) for 0 <= t <= 1 (NaN gives NaN), in double. */
static inline double FS_log1p_unit(double t)
{
    const double ln2_hi = 6.93147180369123816490e-01;   /* fdlibm split of ln2 */
    const double ln2_lo = 1.90821492927058770002e-10;
    double u = 1.0 + t;
    double rounding = (t - (u - 1.0)) / u;               /* log(u + e) - log(u) ~ e/u */
    int upper = u > 1.4142135623730951;
    double m = upper ? 0.5 * u : u;
    double k = upper ? 1.0 : 0.0;
    /* log(1+f) = f - (f^2/2 - s (f^2/2 + R)) with s = f/(2+f), R = 2s^3/3 + ... over s:
       the exact f is added last, the rest is a small correction (the fdlibm ordering) */
    double f = m - 1.0;                                  /* exact: m is in [0.70, 1.42] */
    double s = f / (2.0 + f);
    double z = s * s;
    double q = 2.0 / 21.0;                               /* |s| <= 0.1716: s^21 < 2^-53 */
    q = q * z + 2.0 / 19.0;
    q = q * z + 2.0 / 17.0;
    q = q * z + 2.0 / 15.0;
    q = q * z + 2.0 / 13.0;
    q = q * z + 2.0 / 11.0;
    q = q * z + 2.0 / 9.0;
    q = q * z + 2.0 / 7.0;
    q = q * z + 2.0 / 5.0;
    q = q * z + 2.0 / 3.0;
    double R = z * q;
    double half_f2 = 0.5 * f * f;
    double log_m = f - (half_f2 - s * (half_f2 + R));
    return k * ln2_hi + (log_m + (k * ln2_lo + rounding));
}

/* The logistic sigmoid 1/(1+exp(-z)) in double, through exp(-|z|) so that nothing
   overflows: sigma(-inf) = 0, sigma(+inf) = 1, NaN gives NaN. */
static inline double FS_sigmoid(double z)
{
    double t = FS_exp(z >= 0 ? -z : z);
    double numerator = z >= 0 ? 1.0 : t;
    return numerator / (1.0 + t);
}

#endif /* FS_MATH_H */
