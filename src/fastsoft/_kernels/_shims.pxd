# C-level declarations shared by every kernel module: the branch-free math of fs_math.h, the
# explicit-lane reductions of fs_reduce.h, the vector row loops of fs_simd.h, and
# an OpenMP shim, so that the same kernels build (serially) with a compiler that has no OpenMP.

cdef extern from "fs_math.h" nogil:
    float FS_expf(float x) noexcept
    double FS_exp(double x) noexcept
    double FS_log1p_unit(double t) noexcept
    double FS_sigmoid(double z) noexcept

cdef extern from "fs_reduce.h" nogil:
    float FS_max_f32(const float* x, Py_ssize_t n) noexcept
    double FS_max_f64(const double* x, Py_ssize_t n) noexcept
    double FS_sum_f64(const double* x, Py_ssize_t n) noexcept
    float FS_minmax_f32(const float* x, Py_ssize_t n, float* min_out) noexcept
    double FS_minmax_f64(const double* x, Py_ssize_t n, double* min_out) noexcept
    bint FS_short_exp_f32(float low, float high) noexcept
    bint FS_short_exp_f64(double low, double high) noexcept

cdef extern from "fs_simd.h" nogil:
    double FS_exp_store_sum_f32(const float* x, float* y, Py_ssize_t n, float shift, bint short_exp, const float* ahead) noexcept
    double FS_exp_store_sum_f64(const double* x, double* y, Py_ssize_t n, double shift, bint short_exp, const double* ahead) noexcept
    double FS_exp_sum_off_max_f32(const float* x, Py_ssize_t n, float m, Py_ssize_t* ties, bint short_exp, const float* ahead) noexcept
    double FS_exp_sum_off_max_f64(const double* x, Py_ssize_t n, double m, Py_ssize_t* ties, bint short_exp, const double* ahead) noexcept
    double FS_exp_store_sum_off_max_f32(const float* x, float* y, Py_ssize_t n, float m, Py_ssize_t* ties, bint short_exp, const float* ahead) noexcept
    double FS_exp_store_sum_off_max_f64(const double* x, double* y, Py_ssize_t n, double m, Py_ssize_t* ties, bint short_exp, const double* ahead) noexcept
    void FS_scale_f32(float* y, Py_ssize_t n, double inverse) noexcept
    void FS_affine_f32(float* y, Py_ssize_t n, double k, double c) noexcept
    void FS_affine_f64(double* y, Py_ssize_t n, double k, double c) noexcept
    double FS_target_sums_f32(const float* x, const float* q, const double* w, Py_ssize_t n,
                              float m, double keep, double per_class, double* weight_sum,
                              const float* ahead) noexcept
    double FS_target_sums_f64(const double* x, const double* q, const double* w, Py_ssize_t n,
                              double m, double keep, double per_class, double* weight_sum,
                              const double* ahead) noexcept
    void FS_target_grad_f32(const float* e, float* y, const float* q, const double* w,
                            const float* z, Py_ssize_t n, double k, double c, double keep,
                            double per_class) noexcept
    void FS_target_grad_f64(const double* e, double* y, const double* q, const double* w,
                            const double* z, Py_ssize_t n, double k, double c, double keep,
                            double per_class) noexcept
    void FS_divide_f64(double* y, Py_ssize_t n, double total) noexcept
    void FS_log_normalize_f32(const float* x, float* y, Py_ssize_t n, float m, double log_norm) noexcept
    void FS_log_normalize_f64(const double* x, double* y, Py_ssize_t n, double m, double log_norm) noexcept
    void FS_log1p_array(const double* t, double* out, Py_ssize_t n) noexcept
    double FS_log1p_one(double t) noexcept
    void FS_prefetch(const void* p) noexcept
    void FS_prefetch_write(void* p) noexcept
    void FS_transpose8x8_f32(const float* src, Py_ssize_t src_stride, float* dst, Py_ssize_t dst_stride) noexcept
    void FS_transpose4x4_f64(const double* src, Py_ssize_t src_stride, double* dst, Py_ssize_t dst_stride) noexcept
    double FS_dot_f32(const float* a, const float* b, Py_ssize_t n) noexcept
    double FS_dot_f64(const double* a, const double* b, Py_ssize_t n) noexcept
    void FS_vjp_f32(const float* g, const float* y, const float* z, float* out, Py_ssize_t n,
                    double r, bint log_kind, const float* next_g, const float* next_y,
                    const float* next_z) noexcept
    void FS_vjp_f64(const double* g, const double* y, const double* z, double* out,
                    Py_ssize_t n, double r, bint log_kind, const double* next_g,
                    const double* next_y, const double* next_z) noexcept
    void FS_two_minus_sigmoid_f32(const float* z, float* c, Py_ssize_t n) noexcept
    void FS_scale_by_factor_f32(const float* e, float* y, const float* z, Py_ssize_t n,
                                double inverse) noexcept
    void FS_two_minus_sigmoid_f64(const double* z, double* c, Py_ssize_t n) noexcept
    void FS_store_fence() noexcept
    void FS_stream_copy(void* dst, const void* src, size_t nbytes) noexcept
    void FS_log_normalize_stream_f32(const float* x, float* y, Py_ssize_t n, float m, double log_norm) noexcept
    void FS_log_normalize_stream_f64(const double* x, double* y, Py_ssize_t n, double m, double log_norm) noexcept
    void FS_sigsoftmax_terms_f64(const double* z, double* e, Py_ssize_t n, double z_max) noexcept
    double FS_sum_as_exp_f64(const double* e, Py_ssize_t n) noexcept
    void FS_sigsoftmax_gap_f32f(const float* z, float* gap, Py_ssize_t n, float z_max, bint short_exp) noexcept
    double FS_sigsoftmax_terms_f32(const float* z, float* e, Py_ssize_t n, float z_max, bint normal, const float* ahead) noexcept
    void FS_sigsoftmax_gap_f32(const float* z, double* gap, Py_ssize_t n, float z_max) noexcept
    void FS_sigsoftmax_gap_f64(const double* z, double* gap, Py_ssize_t n, double z_max) noexcept

cdef extern from "fs_short.h" nogil:
    void FS_short_rows_f32(const float* x, Py_ssize_t x_step, float* y, Py_ssize_t y_step,
                           Py_ssize_t n_rows, Py_ssize_t n, int op) noexcept
    void FS_short_rows_f64(const double* x, Py_ssize_t x_step, double* y, Py_ssize_t y_step,
                           Py_ssize_t n_rows, Py_ssize_t n, int op) noexcept
    bint FS_SHORT_CROSS_ENTROPY
    void FS_short_cross_entropy_f32(const float* x, Py_ssize_t x_step, Py_ssize_t n_rows,
                                    Py_ssize_t n, bint sig, const long long* targets,
                                    long long ignore_index, const double* w, double* losses,
                                    float* grad, Py_ssize_t grad_step,
                                    const double* grad_scales, double grad_scale) noexcept
    void FS_short_cross_entropy_f64(const double* x, Py_ssize_t x_step, Py_ssize_t n_rows,
                                    Py_ssize_t n, bint sig, const long long* targets,
                                    long long ignore_index, const double* w, double* losses,
                                    double* grad, Py_ssize_t grad_step,
                                    const double* grad_scales, double grad_scale) noexcept

cdef extern from "fs_columns.h" nogil:
    const bint FS_COLUMN_LANES
    const int FS_COLUMN_UNIT_BYTES
    Py_ssize_t FS_column_buffer_values(Py_ssize_t n, Py_ssize_t w, size_t itemsize) noexcept
    void FS_column_unit_f32(const float* x, Py_ssize_t step, Py_ssize_t n, Py_ssize_t w,
                            float* y, float* lse, float* buffer, int op, bint stream) noexcept
    void FS_column_unit_f64(const double* x, Py_ssize_t step, Py_ssize_t n, Py_ssize_t w,
                            double* y, double* lse, double* buffer, int op,
                            bint stream) noexcept

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FS_OPENMP_ENABLED 1
    #else
    #define FS_OPENMP_ENABLED 0
    static inline int omp_get_max_threads(void) { return 1; }
    static inline int omp_get_thread_num(void) { return 0; }
    #endif
    """
    const int FS_OPENMP_ENABLED
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil

cdef extern from *:
    """
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    static int FS_cpu_has_avx2_fma(void)
    {
        /* libgcc's probe checks CPUID and that the OS saves the YMM state (XGETBV) */
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    static int FS_cpu_has_avx512(void)
    {
        /* and the OS saves the mask and ZMM state (XGETBV), as for AVX2 */
        __builtin_cpu_init();
        return FS_cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f")
               && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
               && __builtin_cpu_supports("avx512bw");
    }
    #else
    static int FS_cpu_has_avx2_fma(void) { return 0; }
    static int FS_cpu_has_avx512(void) { return 0; }
    #endif
    """
    int FS_cpu_has_avx2_fma() noexcept nogil
    int FS_cpu_has_avx512() noexcept nogil
