#include "cuda_emul.h"
#include "softmax.cu"
#include "cross_entropy.cu"

#define WRAP_TRANSFORM(NAME, T)                                                              \
    extern "C" void emu_##NAME(unsigned grid, unsigned block, const T* x, long long x_step,  \
                               T* out, long long out_step, const unsigned char* mask,        \
                               long long n_rows, long long n_cols, int log_output)           \
    {                                                                                        \
        emu_launch(grid, block, [&] { NAME(x, x_step, out, out_step, mask, n_rows, n_cols, log_output); }); \
    }
WRAP_TRANSFORM(fs_softmax_rows_f32, float)
WRAP_TRANSFORM(fs_softmax_rows_f64, double)
WRAP_TRANSFORM(fs_sigsoftmax_rows_f32, float)
WRAP_TRANSFORM(fs_sigsoftmax_rows_f64, double)

#define WRAP_LSE(NAME, T)                                                                    \
    extern "C" void emu_##NAME(unsigned grid, unsigned block, const T* x, long long x_step,  \
                               T* out, long long out_step, const unsigned char* mask,        \
                               long long n_rows, long long n_cols)                           \
    {                                                                                        \
        emu_launch(grid, block, [&] { NAME(x, x_step, out, out_step, mask, n_rows, n_cols); }); \
    }
WRAP_LSE(fs_logsumexp_rows_f32, float)
WRAP_LSE(fs_logsumexp_rows_f64, double)

#define WRAP_CE(NAME, T)                                                                     \
    extern "C" void emu_##NAME(unsigned grid, unsigned block, const T* x, long long x_step,  \
        long long n_rows, long long n_cols, const long long* targets, long long ignore_index, \
        const T* q, long long q_step, const double* weight, const double* weight_total,      \
        double smoothing, int sig, double* losses, T* grad, long long grad_step,             \
        const double* grad_scales, long long grad_scale_step)                                \
    {                                                                                        \
        emu_launch(grid, block, [&] { NAME(x, x_step, n_rows, n_cols, targets, ignore_index, q, q_step, \
            weight, weight_total, smoothing, sig, losses, grad, grad_step, grad_scales, grad_scale_step); }); \
    }
WRAP_CE(fs_cross_entropy_rows_f32, float)
WRAP_CE(fs_cross_entropy_rows_f64, double)
