# cython: language_level=3, boundscheck=False, wraparound=False
"""Recycled memory for large results.

A result of LARGE_RESULT_BYTES or more that fastsoft allocates itself (a call without
``out=``) is carved from memory this module hands out.  When the array and every view
of it are gone, the memory is kept here instead of being returned to the operating
system, and the next large result of about that size takes it.

Why: allocators hand out large blocks as fresh pages from the OS (glibc does so above
32 MiB), and the kernel zeroes every page on its first touch.  For a memory-bound
kernel that is a second write of the whole result: measured on Zen 3, a 1000000x10
float32 softmax into a fresh result took 1.34x the time it took into a reused one, a
8x1000000 float64 one 1.5x.  A loop that calls fastsoft on same-shaped batches
(``probs = softmax(logits)``) frees one result as the next one is made, so a single
kept block serves it.

Bounds: at most KEEP_BUFFERS free blocks and ``limit`` bytes are kept (the environment
variable FASTSOFT_RESULT_CACHE_MB, read at import; default 512; 0 turns recycling off),
the oldest let go first.  A block is reused for a result of at least 4/5 of its size.
All of this runs under the GIL (allocation in the Python API, release in a dealloc).
"""

cimport numpy as cnp
from cpython.ref cimport Py_INCREF
from libc.stdint cimport uintptr_t
from libc.stdlib cimport free

import os

import numpy as np

cnp.import_array()

cdef extern from "stdlib.h" nogil:
    int posix_memalign(void** memptr, size_t alignment, size_t size)

cdef extern from *:
    """
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    /* Ask for transparent huge pages over the block, as NumPy does for its own large
       arrays: fewer TLB misses, fewer page faults. */
    static void fs_advise_huge_pages(void *p, size_t n)
    {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        uintptr_t start = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
        uintptr_t end = ((uintptr_t)p + n) & ~(uintptr_t)4095;
        if (end > start)
            madvise((void *)start, end - start, MADV_HUGEPAGE);
    #else
        (void)p;
        (void)n;
    #endif
    }
    """
    void fs_advise_huge_pages(void* p, size_t n)

cdef extern from "numpy/arrayobject.h":
    # declared by hand: it steals a reference to descr (passed as a plain pointer)
    object PyArray_NewFromDescr(void* subtype, void* descr, int nd, cnp.npy_intp* dims,
                                cnp.npy_intp* strides, void* data, int flags, void* obj)

ENV_LIMIT = "FASTSOFT_RESULT_CACHE_MB"
LARGE_RESULT_BYTES = 4 << 20
KEEP_BUFFERS = 4
ALIGNMENT = 64                      # a cache line: whole-line (and streaming) stores


def _limit_from_environment():
    text = os.environ.get(ENV_LIMIT, "").strip()
    if not text:
        return 512 << 20
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0:
        import warnings
        warnings.warn(f"{ENV_LIMIT}={text!r} is not a number of MiB >= 0; using 512",
                      RuntimeWarning, stacklevel=2)
        return 512 << 20
    return int(megabytes * (1 << 20))


cdef Py_ssize_t _limit = _limit_from_environment()
cdef Py_ssize_t _kept_bytes = 0
# kept blocks, oldest first: (address, size) pairs
cdef list _kept = []


cdef class _ResultMemory:
    """One block of result memory; the base object of the arrays made on it."""
    cdef void* data
    cdef Py_ssize_t nbytes

    def __dealloc__(self):
        if self.data != NULL:
            _give_back(self.data, self.nbytes)
            self.data = NULL

    def __repr__(self):
        return f"<fastsoft result memory: {self.nbytes} bytes>"


cdef void _give_back(void* data, Py_ssize_t nbytes) noexcept:
    """Keep a free block if the bounds allow, letting the oldest ones go; else free it."""
    global _kept_bytes
    if _kept is None or nbytes > _limit:         # (module torn down at exit: _kept is None)
        free(data)
        return
    _kept.append((<uintptr_t>data, nbytes))
    _kept_bytes += nbytes
    while len(_kept) > KEEP_BUFFERS or _kept_bytes > _limit:
        address, size = _kept.pop(0)
        _kept_bytes -= size
        free(<void*><uintptr_t>address)


cdef void* _take(Py_ssize_t nbytes, Py_ssize_t* size):
    """The smallest kept block of nbytes .. 5/4 nbytes (its size in *size), or NULL."""
    global _kept_bytes
    cdef Py_ssize_t best = -1, i, candidate
    for i in range(len(_kept)):
        candidate = _kept[i][1]
        if nbytes <= candidate and 4 * candidate <= 5 * nbytes:
            if best < 0 or candidate < _kept[best][1]:
                best = i
    if best < 0:
        return NULL
    address, size[0] = _kept.pop(best)
    _kept_bytes -= size[0]
    return <void*><uintptr_t>address


def release():
    """Free every kept block; returns the number of bytes given back."""
    global _kept_bytes
    cdef Py_ssize_t freed = _kept_bytes
    while _kept:
        address, size = _kept.pop()
        free(<void*><uintptr_t>address)
    _kept_bytes = 0
    return freed


def info():
    """(kept blocks, kept bytes, limit in bytes)"""
    return len(_kept), _kept_bytes, _limit


def empty(shape, dtype):
    """An uninitialised C-contiguous array, as np.empty(shape, dtype): on recycled memory
    when it is LARGE_RESULT_BYTES or more and recycling is on."""
    cdef cnp.dtype descr = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    cdef Py_ssize_t nbytes = descr.itemsize
    for extent in shape:
        nbytes *= extent
    if nbytes < LARGE_RESULT_BYTES or _limit == 0 or descr.hasobject:
        return np.empty(shape, dtype=descr)
    cdef int nd = len(shape)
    cdef cnp.npy_intp dims[32]
    if nd > 32:
        return np.empty(shape, dtype=descr)
    for i in range(nd):
        dims[i] = shape[i]
    cdef Py_ssize_t size = nbytes
    cdef void* data = _take(nbytes, &size)
    if data == NULL:
        if posix_memalign(&data, ALIGNMENT, nbytes) != 0:
            # the kept blocks may be what stands in the way
            release()
            if posix_memalign(&data, ALIGNMENT, nbytes) != 0:
                raise MemoryError(f"cannot allocate a result of {nbytes} bytes")
        fs_advise_huge_pages(data, nbytes)
    cdef _ResultMemory memory = _ResultMemory.__new__(_ResultMemory)
    memory.data = data
    memory.nbytes = size
    Py_INCREF(descr)                # PyArray_NewFromDescr steals a reference
    cdef cnp.ndarray array = PyArray_NewFromDescr(
        <void*>np.ndarray, <void*>descr, nd, dims, NULL, data, cnp.NPY_ARRAY_CARRAY, NULL)
    cnp.set_array_base(array, memory)
    return array
