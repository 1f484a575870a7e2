# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# The kernels compiled with -mavx2 -mfma and AVX-512 F/VL/DQ/BW (still 256-bit vectors);
# imported only on a CPU that has them all.
include "_core.pxi"
