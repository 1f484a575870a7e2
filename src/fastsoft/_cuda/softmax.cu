/*
 * softmax.cu -- fastsoft's forward kernels on the GPU: softmax, log_softmax, logsumexp,
 * sigsoftmax and log_sigsoftmax over the rows of a 2-D array, float32 and float64.
 *
 * Design:
 * 1. Same semantics and the same formulas as the CPU kernels (_kernels/_core.pxi,
 *    docs/numerics.md); only the order of the additions differs (fs_device.cuh, 3-4).
 * 2. Arguments, guaranteed by the caller (fastsoft._cupy): rows of n_cols contiguous values,
 *    row i starting at x + i * x_step (out + i * out_step); n_rows >= 1, n_cols >= 1;
 *    mask NULL or n_rows * n_cols C-contiguous bytes (nonzero: the entry takes part);
 *    out may be x itself (in place: every element is read before it is written, by the
 *    thread that writes it) but may not overlap x otherwise.
 * 3. Per row: (a) the max, NaN ignored; (b) one pass adding up exp(x - max) in double --
 *    for the log outputs and logsumexp without the max terms, which are counted instead,
 *    so that log S = log1p(sum + count - 1) keeps the small terms (Blanchard, Higham &
 *    Higham 2021); (c) one pass writing.  float results: exp in float (fs::exp_nonpositive),
 *    then e * (1/S) with the reciprocal in double, rounded once; log outputs
 *    ((x - m) - log S) in double, rounded once.
 * 4. sigsoftmax is the softmax of w(z) = z + log sigmoid(z), through the gaps
 *    w(z_j) - w(max z) (fs::sigsoftmax_gap), computed in double for both dtypes.
 * 5. Masks: masked entries are read as -inf (they add 0 and never win the max); the
 *    written row then gets exactly 0 (-inf for the log outputs) there, even when the rest
 *    of the row is NaN.  A fully masked row is all 0 / -inf, and its logsumexp -inf.
 * 6. Special values then follow from the arithmetic as on the CPU: NaN anywhere, +inf, or
 *    a row of only -inf make the row NaN; logsumexp gives NaN, +inf and -inf for them.
 * 7. CuPy compiles with -ftz=true, so float32 operations flush subnormals: a float32
 *    probability below 2^-126 is written as 0 where the CPU writes a subnormal, and
 *    subnormal logits act as 0.  Both stay within the accuracy bound of docs/numerics.md,
 *    which promises nothing relative below the normal range; double is not affected.
 */
#include "fs_device.cuh"

namespace fs {

template <typename T>
using RowSums = SumSet<Compensated<T>::value, 2>;   // [0]: sum of exponentials, [1]: max count

// e / S, rounded once to the row's dtype: float multiplies by the double reciprocal.
__device__ __forceinline__ float normalize(float e, double inverse, double)
{
    return (float)((double)e * inverse);
}

__device__ __forceinline__ double normalize(double e, double, double total) { return e / total; }

// Writes `fill` over a whole (fully masked) row.
template <typename T>
__device__ __forceinline__ void fill_row(T* out, long long n, T fill)
{
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        out[j] = fill;
    }
}

// (sum of exp(x_j - m) over x_j != m, count of x_j == m), reduced over the block.
template <typename T, bool CACHED>
__device__ __forceinline__ RowSums<T> sum_exp_off_max(const RowValues<T, CACHED>& row, T m,
                                                      RowSums<T>* staging)
{
    RowSums<T> sums;
    sums.clear();
    row.for_each([&](long long, T value) {
        // NaN != m: a NaN reaches the sum and poisons it, as intended
        const bool at_max = value == m;
        sums.part[0].add(at_max ? 0.0 : (double)exp_shifted(value, m));
        sums.part[1].add(at_max ? 1.0 : 0.0);
    });
    return block_reduce(sums, SumOp(), staging);
}

// log(S) from sum_exp_off_max's result.
template <bool C>
__device__ __forceinline__ double log_normalizer(const SumSet<C, 2>& sums)
{
    return log1p(sums.part[0].value() + (sums.part[1].value() - 1.0));
}

// out = softmax(x) or log_softmax(x) over one row (out may be x).
template <typename T, bool CACHED>
__device__ void softmax_row(const T* x, T* out, const unsigned char* mask, long long n,
                            bool log_output, T* max_staging, RowSums<T>* sum_staging)
{
    const T fill = log_output ? -infinity<T>() : (T)0;
    if (mask != nullptr && !row_has_member(mask, n)) {
        fill_row(out, n, fill);
        return;
    }
    const RowValues<T, CACHED> row(x, mask, n);
    const T m = row_max(row, max_staging);
    if (log_output) {
        const RowSums<T> sums = sum_exp_off_max(row, m, sum_staging);
        // +inf in the row: the row is NaN, as softmax's is (inf - inf)
        const double log_norm = m == infinity<T>() ? quiet_nan() : log_normalizer(sums);
        row.for_each([&](long long j, T value) {
            const T result = (T)(((double)value - (double)m) - log_norm);
            out[j] = (mask == nullptr || mask[j] != 0) ? result : fill;
        });
    } else {
        RowSums<T> sums;
        sums.clear();
        row.for_each([&](long long, T value) { sums.part[0].add((double)exp_shifted(value, m)); });
        sums = block_reduce(sums, SumOp(), sum_staging);
        const double total = sums.part[0].value();
        const double inverse = 1.0 / total;
        row.for_each([&](long long j, T value) {
            const T result = normalize(exp_shifted(value, m), inverse, total);
            out[j] = (mask == nullptr || mask[j] != 0) ? result : fill;
        });
    }
}

// out = sigsoftmax(z) or log_sigsoftmax(z) over one row (out may be z).
template <typename T, bool CACHED>
__device__ void sigsoftmax_row(const T* z, T* out, const unsigned char* mask, long long n,
                               bool log_output, T* max_staging, RowSums<T>* sum_staging)
{
    const T fill = log_output ? -infinity<T>() : (T)0;
    if (mask != nullptr && !row_has_member(mask, n)) {
        fill_row(out, n, fill);
        return;
    }
    const RowValues<T, CACHED> row(z, mask, n);
    // w increases with z, so the row's largest w belongs to its largest z
    const GapBase base = gap_base((double)row_max(row, max_staging));
    RowSums<T> sums;
    sums.clear();
    if (log_output) {
        // the max's own gap is exactly 0; +inf or NaN logits make gaps NaN, and the row NaN
        row.for_each([&](long long, T value) {
            const double gap = sigsoftmax_gap((double)value, base);
            const bool at_max = gap == 0.0;
            sums.part[0].add(at_max ? 0.0 : exp(gap));
            sums.part[1].add(at_max ? 1.0 : 0.0);
        });
        sums = block_reduce(sums, SumOp(), sum_staging);
        const double log_norm = log_normalizer(sums);
        row.for_each([&](long long j, T value) {
            const T result = (T)(sigsoftmax_gap((double)value, base) - log_norm);
            out[j] = (mask == nullptr || mask[j] != 0) ? result : fill;
        });
    } else {
        row.for_each([&](long long, T value) {
            sums.part[0].add(exp(sigsoftmax_gap((double)value, base)));
        });
        sums = block_reduce(sums, SumOp(), sum_staging);
        const double total = sums.part[0].value();
        row.for_each([&](long long j, T value) {
            const T result = (T)(exp(sigsoftmax_gap((double)value, base)) / total);
            out[j] = (mask == nullptr || mask[j] != 0) ? result : fill;
        });
    }
}

// log(sum(exp(x))) of one row, the same in every thread.
template <typename T, bool CACHED>
__device__ T logsumexp_row(const T* x, const unsigned char* mask, long long n,
                           T* max_staging, RowSums<T>* sum_staging)
{
    if (mask != nullptr && !row_has_member(mask, n)) {
        return -infinity<T>();
    }
    const RowValues<T, CACHED> row(x, mask, n);
    const T m = row_max(row, max_staging);
    return (T)((double)m + log_normalizer(sum_exp_off_max(row, m, sum_staging)));
}

// Whether a row of n_cols values fits in the registers of this block (fs_device.cuh, 2).
__device__ __forceinline__ bool row_is_cached(long long n_cols)
{
    return n_cols <= (long long)FS_ROW_ITEMS * blockDim.x;
}

template <typename T>
__device__ __forceinline__ void transform_rows(const T* x, long long x_step, T* out,
                                               long long out_step, const unsigned char* mask,
                                               long long n_rows, long long n_cols,
                                               bool log_output, bool sigsoftmax)
{
    __shared__ T max_staging[FS_MAX_THREADS / FS_WARP];
    __shared__ RowSums<T> sum_staging[FS_MAX_THREADS / FS_WARP];
    const bool cached = row_is_cached(n_cols);
    for (long long i = blockIdx.x; i < n_rows; i += gridDim.x) {
        const T* x_row = x + i * x_step;
        T* out_row = out + i * out_step;
        const unsigned char* mask_row = mask == nullptr ? nullptr : mask + i * n_cols;
        if (sigsoftmax && cached) {
            sigsoftmax_row<T, true>(x_row, out_row, mask_row, n_cols, log_output,
                                    max_staging, sum_staging);
        } else if (sigsoftmax) {
            sigsoftmax_row<T, false>(x_row, out_row, mask_row, n_cols, log_output,
                                     max_staging, sum_staging);
        } else if (cached) {
            softmax_row<T, true>(x_row, out_row, mask_row, n_cols, log_output,
                                 max_staging, sum_staging);
        } else {
            softmax_row<T, false>(x_row, out_row, mask_row, n_cols, log_output,
                                  max_staging, sum_staging);
        }
    }
}

template <typename T>
__device__ __forceinline__ void logsumexp_rows(const T* x, long long x_step, T* out,
                                               long long out_step, const unsigned char* mask,
                                               long long n_rows, long long n_cols)
{
    __shared__ T max_staging[FS_MAX_THREADS / FS_WARP];
    __shared__ RowSums<T> sum_staging[FS_MAX_THREADS / FS_WARP];
    const bool cached = row_is_cached(n_cols);
    for (long long i = blockIdx.x; i < n_rows; i += gridDim.x) {
        const T* x_row = x + i * x_step;
        const unsigned char* mask_row = mask == nullptr ? nullptr : mask + i * n_cols;
        const T result = cached
            ? logsumexp_row<T, true>(x_row, mask_row, n_cols, max_staging, sum_staging)
            : logsumexp_row<T, false>(x_row, mask_row, n_cols, max_staging, sum_staging);
        if (threadIdx.x == 0) {
            out[i * out_step] = result;
        }
    }
}

}  // namespace fs

// ---------------------------------------------------------------------------------------
// Entry points (launch: one block per row or a grid-stride over rows, blockDim.x a
// multiple of 32 and at most FS_MAX_THREADS, no dynamic shared memory)
// ---------------------------------------------------------------------------------------

// out[i] = softmax(x[i]) for every row i (log_softmax if log_output != 0).
extern "C" __global__ void __launch_bounds__(FS_MAX_THREADS, 1)
fs_softmax_rows_f32(const float* x, long long x_step, float* out, long long out_step,
                    const unsigned char* mask, long long n_rows, long long n_cols, int log_output)
{
    fs::transform_rows<float>(x, x_step, out, out_step, mask, n_rows, n_cols, log_output != 0, false);
}

extern "C" __global__ void __launch_bounds__(FS_MAX_THREADS, 1)
fs_softmax_rows_f64(const double* x, long long x_step, double* out, long long out_step,
                    const unsigned char* mask, long long n_rows, long long n_cols, int log_output)
{
    fs::transform_rows<double>(x, x_step, out, out_step, mask, n_rows, n_cols, log_output != 0, false);
}

// out[i] = sigsoftmax(x[i]) for every row i (log_sigsoftmax if log_output != 0).
extern "C" __global__ void __launch_bounds__(FS_MAX_THREADS, 1)
fs_sigsoftmax_rows_f32(const float* x, long long x_step, float* out, long long out_step,
                       const unsigned char* mask, long long n_rows, long long n_cols, int log_output)
{
    fs::transform_rows<float>(x, x_step, out, out_step, mask, n_rows, n_cols, log_output != 0, true);
}

extern "C" __global__ void __launch_bounds__(FS_MAX_THREADS, 1)
fs_sigsoftmax_rows_f64(const double* x, long long x_step, double* out, long long out_step,
                       const unsigned char* mask, long long n_rows, long long n_cols, int log_output)
{
    fs::transform_rows<double>(x, x_step, out, out_step, mask, n_rows, n_cols, log_output != 0, true);
}

// out[i * out_step] = log(sum(exp(x[i]))) for every row i.
extern "C" __global__ void __launch_bounds__(FS_MAX_THREADS, 1)
fs_logsumexp_rows_f32(const float* x, long long x_step, float* out, long long out_step,
                      const unsigned char* mask, long long n_rows, long long n_cols)
{
    fs::logsumexp_rows<float>(x, x_step, out, out_step, mask, n_rows, n_cols);
}

extern "C" __global__ void __launch_bounds__(FS_MAX_THREADS, 1)
fs_logsumexp_rows_f64(const double* x, long long x_step, double* out, long long out_step,
                      const unsigned char* mask, long long n_rows, long long n_cols)
{
    fs::logsumexp_rows<double>(x, x_step, out, out_step, mask, n_rows, n_cols);
}
