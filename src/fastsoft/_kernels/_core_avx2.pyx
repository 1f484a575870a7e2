# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# The kernels compiled with -mavx2 -mfma; imported only on a CPU that has both.
include "_core.pxi"
