"""Route each public call by the type of its array arguments.

NumPy arrays (and lists, scalars, anything else) go to the compiled CPU kernels; CuPy
arrays go to fastsoft._cupy, the GPU backend.  CuPy is never imported here: an object can
only be a CuPy array if the caller has imported cupy already, so routing first looks for
"cupy" in sys.modules and costs one dictionary lookup when it is absent.  A call that
mixes CuPy arrays with NumPy arrays is a TypeError: fastsoft never moves data between
devices behind the caller's back.
"""

import functools
import sys

import numpy as np


def _gpu_backend():
    from . import _cupy

    return _cupy


def _device_of(value, cupy_array):
    """'gpu' for a CuPy array, 'cpu' for a NumPy array, None for anything else."""
    if isinstance(value, cupy_array):
        return "gpu"
    if isinstance(value, np.ndarray):
        return "cpu"
    return None


def backend_for(name, args, kwargs):
    """The backend module for a call, or None for the CPU kernels."""
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return None
    cupy_array = cupy.ndarray
    devices = {_device_of(value, cupy_array) for value in (*args, *kwargs.values())}
    devices.discard(None)
    if "gpu" not in devices:
        return None
    if "cpu" in devices:
        raise TypeError(
            f"{name}: arguments mix CuPy (GPU) and NumPy (CPU) arrays; move them to one "
            "device first (cupy.asarray or cupy.asnumpy)"
        )
    return _gpu_backend()


def dispatch(func):
    """Let `func` run on the backend its array arguments live on (see the module doc)."""
    name = func.__name__

    @functools.wraps(func)
    def routed(*args, **kwargs):
        backend = backend_for(name, args, kwargs)
        if backend is None:
            return func(*args, **kwargs)
        return getattr(backend, name)(*args, **kwargs)

    return routed
