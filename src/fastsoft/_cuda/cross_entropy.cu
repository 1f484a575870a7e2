/*
 * cross_entropy.cu -- fastsoft's fused cross-entropy on the GPU: the loss of every row and,
 * optionally, its gradient, from one block per row, float32 and float64.
 *
 * Design:
 * 1. The formulation of docs/gradients.md and of the CPU kernel (_kernels/_loss.pxi): with
 *    target weights B_j (class index t: B_j = (1 - eps) w_t [j == t] + (eps / C) w_j;
 *    probabilities q: B_j = w_j ((1 - eps) q_j + eps / C)) and A = sum_j B_j,
 *    L = A log S + sum_j B_j (-d_j) and dL/dx_j = A p_j - B_j, where d_j = x_j - max x
 *    (sigsoftmax: the gaps w(z_j) - max w, and every column of the gradient carries the
 *    factor 2 - sigmoid(z_j), Kanai et al., Theorem 5) and S = sum_j exp(d_j).  Every
 *    term of the loss is non-negative, so nothing cancels.
 * 2. Per row: (a) the max; (b) one pass adding up, in double, the exponentials off the
 *    max and the count of max terms (log S = log1p(sum + count - 1), as in logsumexp),
 *    sum_j B_j (-d_j) and, for probability targets, A; a zero B_j adds 0 even against
 *    d_j = -inf (0 log 0 = 0); (c) if a gradient is wanted, one pass writing
 *    scale * (A e_j / S - B_j).  softmax exponentiates in the row's dtype, sigsoftmax in
 *    double; sums, the loss and the gradient are double.
 * 3. Arguments, guaranteed by the caller (fastsoft._cupy): rows as in softmax.cu;
 *    n_rows >= 1, n_cols >= 1; exactly one of `targets` (int64 per row, each in
 *    [0, n_cols) or equal to ignore_index: validated before the launch) and `q`
 *    (probability rows, q_step apart); `weight` n_cols doubles (ones when unweighted),
 *    *weight_total their sum; losses n_rows doubles; grad NULL or rows grad_step apart,
 *    which may be the logits themselves (the target's logit is read before the first
 *    barrier, every other logit by the thread that then writes its gradient) but must
 *    not otherwise overlap the logits or q; row i's gradient factor is
 *    grad_scales[i * grad_scale_step] (step 0: one factor for every row).  Quantities
 *    that depend on the data are passed in device memory, so the host never waits.
 * 4. Ignored rows get loss 0 and gradient 0 without reading anything; the weights are
 *    never indexed with ignore_index.
 */
#include "fs_device.cuh"

namespace fs {

// [0]: exponentials off the max, [1]: count of max terms, [2]: sum B_j (-d_j), [3]: A
template <typename T>
using LossSums = SumSet<Compensated<T>::value, 4>;

// Loss of one (not ignored) row; writes grad_scale * dL/dx into grad unless it is NULL.
// target < 0 means probability targets in q.
template <typename T, bool CACHED>
__device__ double cross_entropy_row(const T* x, long long n,                          // IN
                                    long long target, const T* q,                     // IN
                                    const double* w, double w_total,                  // IN
                                    double smoothing, bool sigsoftmax,
                                    T* grad, double grad_scale,                       // OUT
                                    T* max_staging, LossSums<T>* sum_staging)
{
    const double per_class = smoothing / (double)n;
    const double keep = 1.0 - smoothing;
    const bool has_index = q == nullptr;
    // read before any barrier, hence before any gradient is written: grad may be x
    const T x_target = has_index ? x[target] : (T)0;

    // (a) the max
    const RowValues<T, CACHED> row(x, nullptr, n);
    const T m = row_max(row, max_staging);
    GapBase base = {0.0, 0.0, 0.0};
    if (sigsoftmax) {
        base = gap_base((double)m);
    }
    const auto gap_of = [&](T value) -> double {
        return sigsoftmax ? sigsoftmax_gap((double)value, base) : (double)value - (double)m;
    };
    const auto exp_of = [&](T value, double gap) -> double {
        return sigsoftmax ? exp(gap) : (double)exp_shifted(value, m);
    };

    // (b) the sums; without smoothing an index target's sum B_j (-d_j) is 0 (its own
    //     term is added in closed form below)
    LossSums<T> sums;
    sums.clear();
    row.for_each([&](long long j, T value) {
        const double gap = gap_of(value);
        const bool at_max = sigsoftmax ? gap == 0.0 : value == m;
        sums.part[0].add(at_max ? 0.0 : exp_of(value, gap));
        sums.part[1].add(at_max ? 1.0 : 0.0);
        double b = 0.0;
        if (!has_index) {
            b = w[j] * (keep * (double)q[j] + per_class);
            sums.part[3].add(b);
        } else if (smoothing != 0.0) {
            b = per_class * w[j];
        }
        sums.part[2].add(b == 0.0 ? 0.0 : b * -gap);
    });
    sums = block_reduce(sums, SumOp(), sum_staging);
    // a +inf logit makes the row undefined (inf - inf), as in softmax: NaN loss and
    // gradient, which leaving the max terms out of the sum would otherwise hide
    const double sum_off_max = m == infinity<T>() ? quiet_nan() : sums.part[0].value();
    const double log_s = log1p(sum_off_max + (sums.part[1].value() - 1.0));
    const double w_t = has_index ? w[target] : 0.0;
    double a, loss;
    if (has_index) {
        a = keep * w_t + per_class * w_total;
        loss = per_class * w_total * log_s + sums.part[2].value();
        if (keep * w_t != 0.0) {    // 0 * log 0 counts as 0, as on the CPU
            loss = keep * w_t * (log_s - gap_of(x_target)) + loss;
        }
    } else {
        a = sums.part[3].value();
        loss = a * log_s + sums.part[2].value();
    }
    if (grad == nullptr) {
        return loss;
    }

    // (c) the gradient, each element written by the thread that has just read its logit
    const double inverse_s = 1.0 / (sum_off_max + sums.part[1].value());
    row.for_each([&](long long j, T value) {
        const double e = exp_of(value, gap_of(value));
        const double b = has_index ? per_class * w[j] + (j == target ? keep * w_t : 0.0)
                                   : w[j] * (keep * (double)q[j] + per_class);
        const double factor = sigsoftmax ? grad_scale * (2.0 - sigmoid((double)value)) : grad_scale;
        grad[j] = (T)(factor * (a * (e * inverse_s) - b));
    });
    return loss;
}

template <typename T>
__device__ __forceinline__ void cross_entropy_rows(
    const T* x, long long x_step, long long n_rows, long long n_cols,
    const long long* targets, long long ignore_index, const T* q, long long q_step,
    const double* weight, const double* weight_total, double smoothing, bool sigsoftmax,
    double* losses, T* grad, long long grad_step, const double* grad_scales,
    long long grad_scale_step)
{
    __shared__ T max_staging[FS_MAX_THREADS / FS_WARP];
    __shared__ LossSums<T> sum_staging[FS_MAX_THREADS / FS_WARP];
    const bool cached = n_cols <= (long long)FS_ROW_ITEMS * blockDim.x;
    for (long long i = blockIdx.x; i < n_rows; i += gridDim.x) {
        T* grad_row = grad == nullptr ? nullptr : grad + i * grad_step;
        const long long target = targets == nullptr ? -1 : targets[i];
        if (targets != nullptr && target == ignore_index) {
            if (grad_row != nullptr) {
                for (long long j = threadIdx.x; j < n_cols; j += blockDim.x) {
                    grad_row[j] = (T)0;
                }
            }
            if (threadIdx.x == 0) {
                losses[i] = 0.0;
            }
            continue;
        }
        const T* x_row = x + i * x_step;
        const T* q_row = targets == nullptr ? q + i * q_step : nullptr;
        const double scale = grad == nullptr ? 0.0 : grad_scales[i * grad_scale_step];
        const double loss = cached
            ? cross_entropy_row<T, true>(x_row, n_cols, target, q_row, weight, *weight_total,
                                         smoothing, sigsoftmax, grad_row, scale,
                                         max_staging, sum_staging)
            : cross_entropy_row<T, false>(x_row, n_cols, target, q_row, weight, *weight_total,
                                          smoothing, sigsoftmax, grad_row, scale,
                                          max_staging, sum_staging);
        if (threadIdx.x == 0) {
            losses[i] = loss;
        }
    }
}

}  // namespace fs

// ---------------------------------------------------------------------------------------
// Entry points (launch as in softmax.cu)
// ---------------------------------------------------------------------------------------

// losses[i] = cross-entropy of row i; grad rows (unless NULL) = scale_i * dL_i/dx with
// scale_i = grad_scales[i * grad_scale_step].
extern "C" __global__ void __launch_bounds__(FS_MAX_THREADS, 1)
fs_cross_entropy_rows_f32(const float* x, long long x_step, long long n_rows, long long n_cols,
                          const long long* targets, long long ignore_index,
                          const float* q, long long q_step,
                          const double* weight, const double* weight_total, double smoothing,
                          int sigsoftmax, double* losses, float* grad, long long grad_step,
                          const double* grad_scales, long long grad_scale_step)
{
    fs::cross_entropy_rows<float>(x, x_step, n_rows, n_cols, targets, ignore_index, q, q_step,
                                  weight, weight_total, smoothing, sigsoftmax != 0, losses,
                                  grad, grad_step, grad_scales, grad_scale_step);
}

extern "C" __global__ void __launch_bounds__(FS_MAX_THREADS, 1)
fs_cross_entropy_rows_f64(const double* x, long long x_step, long long n_rows, long long n_cols,
                          const long long* targets, long long ignore_index,
                          const double* q, long long q_step,
                          const double* weight, const double* weight_total, double smoothing,
                          int sigsoftmax, double* losses, double* grad, long long grad_step,
                          const double* grad_scales, long long grad_scale_step)
{
    fs::cross_entropy_rows<double>(x, x_step, n_rows, n_cols, targets, ignore_index, q, q_step,
                                   weight, weight_total, smoothing, sigsoftmax != 0, losses,
                                   grad, grad_step, grad_scales, grad_scale_step);
}
