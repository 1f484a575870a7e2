"""Thread settings and the configuration report.

The thread count of a call is, in order: its ``num_threads=`` argument, the value given to
`set_num_threads`, then ``omp_get_max_threads()`` read at call time (so that
``threadpoolctl.threadpool_limits`` and ``OMP_NUM_THREADS`` are honoured).  Work smaller
than `PARALLEL_MIN_ELEMENTS` always runs on the calling thread: starting a parallel region
costs more than it saves there.
"""

import importlib.util
import operator
import sys

import numpy as np

from . import _kernels
from ._version import __version__

# Below this many elements a call runs on one thread (a few microseconds of work).
PARALLEL_MIN_ELEMENTS = 1 << 15

_requested_threads = None


def _check_thread_count(n, name):
    if isinstance(n, bool):
        raise TypeError(f"{name} must be an integer, not bool")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"{name} must be an integer or None, not {type(n).__name__}") from None
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return n


def set_num_threads(n):
    """Set the default number of threads of fastsoft's kernels.

    Parameters
    ----------
    n : int or None
        Threads used by calls that do not pass ``num_threads=``.  ``None`` restores the
        default, ``omp_get_max_threads()`` read at each call.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If `n` is not an integer or None.
    ValueError
        If `n` is smaller than 1.

    Examples
    --------
    >>> import fastsoft as fs
    >>> fs.set_num_threads(1)
    >>> fs.get_num_threads()
    1
    >>> fs.set_num_threads(None)
    """
    global _requested_threads
    _requested_threads = None if n is None else _check_thread_count(n, "n")


def get_num_threads():
    """Number of threads a call without ``num_threads=`` would use on large input.

    Returns
    -------
    int
        The value given to `set_num_threads`, or else ``omp_get_max_threads()`` now
        (1 when fastsoft was built without OpenMP).

    Examples
    --------
    >>> import fastsoft as fs
    >>> fs.get_num_threads() >= 1
    True
    """
    if _requested_threads is not None:
        return _requested_threads
    return _kernels.core.max_threads()


def resolve_threads(num_threads, n_elements):
    """Thread count for one call: the argument, the default, and the small-work rule."""
    n = get_num_threads() if num_threads is None else _check_thread_count(num_threads, "num_threads")
    return 1 if n_elements < PARALLEL_MIN_ELEMENTS else n


def _gpu_report():
    """One line on the CuPy backend; imports CuPy only if it is installed."""
    if importlib.util.find_spec("cupy") is None:
        return "not installed (pip install 'fastsoft[cupy]' for the GPU backend)"
    try:
        from . import _cupy

        return _cupy.device_info()
    except Exception as error:  # a broken CUDA setup must not break show_config
        return f"installed but unusable: {error}"


def release_result_memory():
    """Give the memory kept for reuse by large results back to the operating system.

    Results of 4 MiB and more that fastsoft allocates (calls without ``out=``) are made
    on blocks it keeps when such a result, and every view of it, is freed, so that the
    next result of about that size skips the page faults and page zeroing of fresh
    memory. At most 4 blocks and 512 MiB are kept (the environment variable
    ``FASTSOFT_RESULT_CACHE_MB``, read at import, sets the limit; 0 turns recycling
    off). This frees the kept blocks now, e.g. in a long-running process after a batch
    of large calls; results still in use are not touched, and later results start
    keeping blocks again.

    Returns
    -------
    int
        The number of bytes freed.

    Examples
    --------
    >>> import numpy as np
    >>> import fastsoft as fs
    >>> p = fs.softmax(np.zeros((2000, 1000), dtype=np.float32))   # 8 MB: recycled
    >>> del p
    >>> fs.release_result_memory() >= 8_000_000
    True
    >>> fs.release_result_memory()
    0
    """
    from ._kernels import _buffers

    return _buffers.release()


def _result_memory_report():
    from ._kernels import _buffers

    blocks, kept, limit = _buffers.info()
    if limit == 0:
        return f"large results on fresh memory (recycling off: {_buffers.ENV_LIMIT}=0)"
    return (f"memory of results of {_buffers.LARGE_RESULT_BYTES >> 20} MiB and more "
            f"recycled, {blocks} block(s) / {kept / (1 << 20):.1f} MiB kept now (limit "
            f"{limit / (1 << 20):g} MiB, {_buffers.ENV_LIMIT}; release_result_memory())")


def show_config(file=None):
    """Print how this fastsoft was built and how it will run.

    Reports the version, the CPU variant of the kernels in use (and the variants this CPU
    supports), whether OpenMP is compiled in, the thread count a call would use, how much
    freed result memory is kept for reuse, and whether CuPy (the GPU backend) is
    installed, with its device.

    Parameters
    ----------
    file : file-like, optional
        Where to print (default: ``sys.stdout``).

    Returns
    -------
    None

    Examples
    --------
    >>> import fastsoft as fs
    >>> fs.show_config()  # doctest: +ELLIPSIS
    fastsoft ...
    """
    file = sys.stdout if file is None else file
    core = _kernels.core
    source = "set_num_threads" if _requested_threads is not None else "omp_get_max_threads()"
    lines = [
        f"fastsoft {__version__}",
        f"  CPU variant:  {_kernels.variant} (supported here: "
        f"{', '.join(_kernels.supported_variants)}; override: {_kernels.ENV_VARIANT})",
        f"  OpenMP:       {'enabled' if core.openmp_enabled() else 'DISABLED (serial build)'}",
        f"  threads:      {get_num_threads()} (from {source}; calls under "
        f"{PARALLEL_MIN_ELEMENTS} elements use 1)",
        f"  numpy:        {np.__version__}",
        f"  results:      {_result_memory_report()}",
        f"  CuPy (GPU):   {_gpu_report()}",
        f"  python:       {sys.version.split()[0]}",
    ]
    print("\n".join(lines), file=file)
