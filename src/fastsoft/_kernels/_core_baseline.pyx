# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# The kernels compiled for any CPU of the target architecture (x86-64: SSE2).
include "_core.pxi"
