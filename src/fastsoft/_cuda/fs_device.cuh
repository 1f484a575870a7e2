/*
 * fs_device.cuh -- device helpers shared by fastsoft's CUDA kernels (softmax.cu,
 * cross_entropy.cu): elementary functions, compensated sums, block reductions and the
 * row reader.
 *
 * Design:
 * 1. The kernels are compiled at run time by NVRTC (CuPy's RawModule; fastsoft._cupy
 *    pastes this header in place of its #include) and by nvcc in tests/test_cuda.py.  So
 *    only CUDA built-ins are used: no host header, no <math.h> macros (infinity and NaN
 *    come from bit patterns), no dynamic parallelism, no dynamic shared memory.
 * 2. One thread block computes one row at a time (a grid-stride loop over rows, so any
 *    number of rows fits in the grid).  blockDim.x is a multiple of 32, at most
 *    FS_MAX_THREADS.  A row of at most FS_ROW_ITEMS * blockDim.x values is read from
 *    global memory once into registers (RowValues<T, true>); a longer row is streamed
 *    (RowValues<T, false>) and re-read in each pass, from L2 for the rows this library
 *    targets, FS_ROW_ITEMS loads in flight per thread.  Thread t owns the elements
 *    t + k * blockDim.x in both cases and visits them in the same order, so a row gives
 *    the same bits either way.
 * 3. Block reductions: a butterfly of __shfl_xor_sync within each warp, then one value
 *    per warp through shared memory, combined by every thread in the same order.  Every
 *    thread therefore holds bitwise the same result, and a row's result does not depend
 *    on which block or SM computes it.
 * 4. Sums of exponentials (and the cross-entropy sums) accumulate in double for both
 *    dtypes.  float rows add plain doubles: a thread adds at most a few thousand terms
 *    in [0, 1], so the sum's relative error stays below 2^-40, far under float's 2^-24.
 *    double rows use a compensated (TwoSum) accumulator, also when warps and threads are
 *    combined, as the CPU kernels do with their Kahan lanes: a plain tree sum of the
 *    max's 1.0 and many small terms drifts by several ulps.
 * 5. NaN never wins a max (fmax returns the other operand), so NaN reaches the sums
 *    and makes its own row NaN; special values then follow docs/numerics.md.
 */
#ifndef FS_DEVICE_CUH
#define FS_DEVICE_CUH

// Largest block the kernels are compiled for (their __launch_bounds__); the loader
// launches at most this many threads, and no more than the kernel's own limit.
#define FS_MAX_THREADS 512
// Values per thread held in registers when a row fits (otherwise the row is streamed).
#define FS_ROW_ITEMS 8
#define FS_WARP 32
#define FS_FULL_MASK 0xffffffffu

namespace fs {

// ---------------------------------------------------------------------------------------
// Constants and elementary functions
// ---------------------------------------------------------------------------------------

template <typename T> __device__ __forceinline__ T infinity();
template <> __device__ __forceinline__ float infinity<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double infinity<double>()
{
    return __longlong_as_double(0x7ff0000000000000LL);
}

__device__ __forceinline__ double quiet_nan() { return __longlong_as_double(0x7ff8000000000000LL); }

// True for +-inf and NaN (x - x is 0 for every finite x).
__device__ __forceinline__ bool not_finite(double x) { return x - x != 0.0; }

// exp(d) in float for d <= 0 (the shifted logits x - max): -inf gives exactly 0, NaN
// gives NaN, results below float's subnormal range round to +0; about 1 ulp.
// Cody-Waite reduction d = n ln2 + r, |r| <= ln2/2, with fused multiply-adds, a degree-7
// Taylor polynomial written as 1 + (r + r^2 h(r)) so the rounding of h barely matters,
// and 2^n applied as two normal factors so that subnormal results are produced, not
// flushed.  CUDA's expf is documented at 2 ulp, which would use up most of the
// 4u (1 + |x - m|) bound of docs/numerics.md on its own.
__device__ __forceinline__ float exp_nonpositive(float d)
{
    const float shifter = 12582912.0f;           // 1.5 * 2^23: adding it rounds to an integer
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f;
    const float ln2_lo = -2.12194440e-4f;        // ln2 - ln2_hi
    d = (d < -104.0f) ? -104.0f : d;             // exp(-104) rounds to 0; NaN compares false
    const float t = fmaf(d, log2e, shifter);
    const float n = t - shifter;                 // round(d / ln2), exact, in [-150, 0]
    float r = fmaf(-n, ln2_hi, d);
    r = fmaf(-n, ln2_lo, r);
    float h = 1.0f / 5040.0f;
    h = fmaf(h, r, 1.0f / 720.0f);
    h = fmaf(h, r, 1.0f / 120.0f);
    h = fmaf(h, r, 1.0f / 24.0f);
    h = fmaf(h, r, 1.0f / 6.0f);
    h = fmaf(h, r, 0.5f);
    const float p = 1.0f + fmaf(r * r, h, r);
    // __float2int_rn is defined for NaN (it gives 0), unlike a C conversion
    const int n_int = __float2int_rn(n);
    const int n_half = n_int >> 1;               // floor(n / 2) >= -75: both factors normal
    const float scale_1 = __int_as_float((n_half + 127) << 23);
    const float scale_2 = __int_as_float((n_int - n_half + 127) << 23);
    return (p * scale_1) * scale_2;
}

// exp(x - m) of a row element in the row's dtype, for x <= m (the softmax terms).  double
// uses CUDA's exp (documented at 1 ulp; -inf gives 0, NaN gives NaN).
__device__ __forceinline__ float exp_shifted(float x, float m) { return exp_nonpositive(x - m); }
__device__ __forceinline__ double exp_shifted(double x, double m) { return exp(x - m); }

// The logistic sigmoid in double through exp(-|z|): never overflows, sigma(-inf) = 0,
// sigma(+inf) = 1, NaN gives NaN.
__device__ __forceinline__ double sigmoid(double z)
{
    const double t = exp(z >= 0.0 ? -z : z);
    return (z >= 0.0 ? 1.0 : t) / (1.0 + t);
}

// What the sigsoftmax gaps of a row need from its largest logit M.
struct GapBase {
    double max_value;      // M
    double max_negative;   // min(M, 0)
    double max_tail;       // log1p(exp(-|M|)), in [0, log 2]
};

__device__ __forceinline__ GapBase gap_base(double row_max)
{
    GapBase base;
    base.max_value = row_max;
    base.max_negative = row_max < 0.0 ? row_max : 0.0;
    base.max_tail = log1p(exp(row_max >= 0.0 ? -row_max : row_max));
    return base;
}

// The log-domain sigsoftmax gap w(z) - w(M), w(z) = z + log sigmoid(z)
// = z + min(z, 0) - log1p(exp(-|z|)), in double (docs/numerics.md): the unbounded parts
// are differenced exactly against the row max and only the bounded softplus tails are
// evaluated, so it is accurate for logits anywhere in the dtype's range.  <= 0, and
// exactly 0 at z = M; NaN for NaN (or when M is +inf and z = M, or M = -inf).
__device__ __forceinline__ double sigsoftmax_gap(double z, const GapBase& base)
{
    const double z_negative = z < 0.0 ? z : 0.0;
    const double z_abs = z >= 0.0 ? z : -z;
    return ((z - base.max_value) + (z_negative - base.max_negative))
           - (log1p(exp(-z_abs)) - base.max_tail);
}

// ---------------------------------------------------------------------------------------
// Sums
// ---------------------------------------------------------------------------------------

// Whether rows of T accumulate with compensation (double) or as plain doubles (float).
template <typename T> struct Compensated { static const bool value = false; };
template <> struct Compensated<double> { static const bool value = true; };

// A running sum in double; COMPENSATED keeps the exact rounding error of every addition
// (TwoSum) in `lo`.  Plain-old-data (no constructor) so that it may live in shared memory.
template <bool COMPENSATED>
struct Sum {
    double hi, lo;

    __device__ __forceinline__ void clear() { hi = 0.0; lo = 0.0; }

    __device__ __forceinline__ void add(double term)
    {
        if (!COMPENSATED) {
            hi += term;
            return;
        }
        const double total = hi + term;
        if (not_finite(total)) {
            // an infinite (or NaN) total stays so; TwoSum would turn lo into NaN
            hi = total;
            return;
        }
        const double term_part = total - hi;
        lo += (hi - (total - term_part)) + (term - term_part);
        hi = total;
    }

    __device__ __forceinline__ void merge(const Sum& other)
    {
        add(other.hi);
        lo += other.lo;
    }

    __device__ __forceinline__ double value() const { return hi + lo; }
};

// ---------------------------------------------------------------------------------------
// Block reductions
// ---------------------------------------------------------------------------------------

__device__ __forceinline__ float shuffle_xor(float v, int lane_mask)
{
    return __shfl_xor_sync(FS_FULL_MASK, v, lane_mask);
}

__device__ __forceinline__ double shuffle_xor(double v, int lane_mask)
{
    return __shfl_xor_sync(FS_FULL_MASK, v, lane_mask);
}

// A fixed set of K sums reduced together (one block reduction instead of K).
template <bool COMPENSATED, int K>
struct SumSet {
    Sum<COMPENSATED> part[K];

    __device__ __forceinline__ void clear()
    {
#pragma unroll
        for (int k = 0; k < K; ++k) {
            part[k].clear();
        }
    }
};

template <bool C, int K>
__device__ __forceinline__ SumSet<C, K> shuffle_xor(const SumSet<C, K>& v, int lane_mask)
{
    SumSet<C, K> other;
#pragma unroll
    for (int k = 0; k < K; ++k) {
        other.part[k].hi = __shfl_xor_sync(FS_FULL_MASK, v.part[k].hi, lane_mask);
        other.part[k].lo = __shfl_xor_sync(FS_FULL_MASK, v.part[k].lo, lane_mask);
    }
    return other;
}

struct SumOp {
    template <bool C, int K>
    __device__ __forceinline__ SumSet<C, K> operator()(SumSet<C, K> a, const SumSet<C, K>& b) const
    {
#pragma unroll
        for (int k = 0; k < K; ++k) {
            a.part[k].merge(b.part[k]);
        }
        return a;
    }
};

struct MaxOp {
    // NaN never wins: fmax returns the other operand
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
    __device__ __forceinline__ double operator()(double a, double b) const { return fmax(a, b); }
};

// Combines values in a warp with a butterfly; every lane ends with a combination of all 32.
template <typename V, typename Combine>
__device__ __forceinline__ V warp_reduce(V value, Combine combine)
{
    for (int lane_mask = FS_WARP / 2; lane_mask > 0; lane_mask >>= 1) {
        value = combine(value, shuffle_xor(value, lane_mask));
    }
    return value;
}

// Combines one value per thread of the block; every thread returns the same bits.
// `staging` is shared memory for one value per warp; the trailing barrier lets the
// caller reuse it at once.  Every thread of the block must call this.
template <typename V, typename Combine>
__device__ __forceinline__ V block_reduce(V value, Combine combine, V* staging)
{
    const int lane = threadIdx.x % FS_WARP;
    const int warp = threadIdx.x / FS_WARP;
    const int n_warps = blockDim.x / FS_WARP;
    value = warp_reduce(value, combine);
    if (lane == 0) {
        staging[warp] = value;
    }
    __syncthreads();
    V total = staging[0];
    for (int w = 1; w < n_warps; ++w) {
        total = combine(total, staging[w]);
    }
    __syncthreads();
    return total;
}

// ---------------------------------------------------------------------------------------
// Row reader
// ---------------------------------------------------------------------------------------

// x[j], or -inf where the mask excludes it: a masked entry then adds exactly 0 to every
// sum and never wins the max (callers overwrite masked outputs afterwards).
template <typename T>
__device__ __forceinline__ T masked_load(const T* x, const unsigned char* mask, long long j)
{
    return (mask == nullptr || mask[j] != 0) ? x[j] : -infinity<T>();
}

// The values of one row as seen by one thread: elements j = threadIdx.x + k * blockDim.x.
// CACHED: read once into registers by the constructor (the row must have at most
// FS_ROW_ITEMS * blockDim.x values); otherwise every for_each reads global memory again.
// for_each(f) calls f(j, value) for this thread's elements in increasing j, so a pass that
// writes out[j] after reading x[j] is safe in place (out == x).
template <typename T, bool CACHED>
struct RowValues;

template <typename T>
struct RowValues<T, true> {
    T values[FS_ROW_ITEMS];
    long long n;

    __device__ __forceinline__ RowValues(const T* x, const unsigned char* mask, long long n_cols)
        : n(n_cols)
    {
#pragma unroll
        for (int k = 0; k < FS_ROW_ITEMS; ++k) {
            const long long j = threadIdx.x + (long long)k * blockDim.x;
            values[k] = j < n ? masked_load(x, mask, j) : -infinity<T>();
        }
    }

    template <typename F>
    __device__ __forceinline__ void for_each(F f) const
    {
#pragma unroll
        for (int k = 0; k < FS_ROW_ITEMS; ++k) {
            const long long j = threadIdx.x + (long long)k * blockDim.x;
            if (j < n) {
                f(j, values[k]);
            }
        }
    }
};

template <typename T>
struct RowValues<T, false> {
    const T* x;
    const unsigned char* mask;
    long long n;

    __device__ __forceinline__ RowValues(const T* row, const unsigned char* row_mask, long long n_cols)
        : x(row), mask(row_mask), n(n_cols)
    {
    }

    // FS_ROW_ITEMS values are loaded before any is passed on, so that many loads are in
    // flight per thread even when f stores (a store may alias x, which would keep the
    // compiler from moving the next load above it).
    template <typename F>
    __device__ __forceinline__ void for_each(F f) const
    {
        const long long stride = blockDim.x;
        for (long long first = threadIdx.x; first < n; first += FS_ROW_ITEMS * stride) {
            T values[FS_ROW_ITEMS];
#pragma unroll
            for (int k = 0; k < FS_ROW_ITEMS; ++k) {
                const long long j = first + k * stride;
                values[k] = j < n ? masked_load(x, mask, j) : -infinity<T>();
            }
#pragma unroll
            for (int k = 0; k < FS_ROW_ITEMS; ++k) {
                const long long j = first + k * stride;
                if (j < n) {
                    f(j, values[k]);
                }
            }
        }
    }
};

// Whether any entry of a mask row is set; the same in every thread (a block barrier).
__device__ __forceinline__ bool row_has_member(const unsigned char* mask, long long n)
{
    int found = 0;
    for (long long j = threadIdx.x; j < n && !found; j += blockDim.x) {
        found = mask[j] != 0;
    }
    return __syncthreads_or(found) != 0;
}

// Largest non-NaN value of the row (-inf if none); the same in every thread.
template <typename T, bool CACHED>
__device__ __forceinline__ T row_max(const RowValues<T, CACHED>& row, T* staging)
{
    T local = -infinity<T>();
    row.for_each([&](long long, T value) { local = MaxOp()(local, value); });
    return block_reduce(local, MaxOp(), staging);
}

}  // namespace fs

#endif  // FS_DEVICE_CUH
