"""Route each public call by the type of its array arguments.

NumPy arrays (and lists, scalars, anything else) go to the compiled CPU kernels; CuPy
arrays go to fastsoft._cupy, the GPU backend; Dask arrays go to fastsoft._dask, which
returns lazy Dask arrays whose NumPy blocks run the same kernels.  Neither CuPy nor Dask
is imported here: an object can only be a CuPy (Dask) array if the caller has imported
cupy (dask.array) already, so routing first looks for both names in sys.modules and
costs two dictionary membership tests when they are absent.

A call that mixes CuPy arrays with NumPy arrays is a TypeError: fastsoft never moves data
between devices behind the caller's back.  A Dask array takes the call to the Dask
backend, which wraps any NumPy arrays next to it (a target, a mask, a weight); a Dask
array next to a CuPy array is a TypeError (the Dask backend computes on NumPy blocks).
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


def _dask_backend():
    from . import _dask

    return _dask


def backend_for(name, args, kwargs):
    """The backend module for a call, or None for the CPU kernels."""
    modules = sys.modules
    # the fast path of every NumPy call: two membership tests, as cheap as one .get()
    if "cupy" not in modules and "dask.array" not in modules:
        return None
    cupy = modules.get("cupy")
    dask_array = modules.get("dask.array")
    if dask_array is not None:
        backend = _dask_route(name, args, kwargs, cupy, dask_array)
        if backend is not None:
            return backend
    if cupy is None:     # absent, or a None entry (an import blocked on purpose)
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


def _dask_route(name, args, kwargs, cupy, dask_array):
    """The Dask backend if an argument is a Dask array, else None."""
    dask_type = getattr(dask_array, "Array", None)   # None while dask.array is importing
    if dask_type is None:
        return None
    # plain loops: this runs on every NumPy call once Dask is imported
    for value in args:
        if isinstance(value, dask_type):
            break
    else:
        for value in kwargs.values():
            if isinstance(value, dask_type):
                break
        else:
            return None
    values = (*args, *kwargs.values())
    cupy_array = getattr(cupy, "ndarray", None)
    if cupy_array is not None and any(isinstance(value, cupy_array) for value in values):
        raise TypeError(
            f"{name}: arguments mix Dask and CuPy arrays; fastsoft's Dask backend computes "
            "on NumPy blocks (pass NumPy or Dask arrays, or CuPy arrays alone)"
        )
    return _dask_backend()


def dispatch(func=None, *, small_call=None):
    """Let `func` run on the backend its array arguments live on (see the module doc).

    small_call: optional, the kernels' ``small_call_entry``: the public function is then
    the compiled function of the same name it returns, which answers a call on small,
    plain NumPy arrays along their last axis (without ``where``; the kernels' _core.pxi
    lists the other conditions) right there and passes any other call (including every CuPy or Dask array, which are not exact
    ndarrays) to the routed function below.  Tiny calls then skip the routing,
    validation and layout work, which would otherwise cost several times the arithmetic.
    It takes the wrapped function's name, docstring and ``__wrapped__`` (so that
    ``inspect.signature`` and doctest see the original function).
    """
    if func is None:
        return functools.partial(dispatch, small_call=small_call)
    name = func.__name__

    @functools.wraps(func)
    def routed(*args, **kwargs):
        backend = backend_for(name, args, kwargs)
        if backend is None:
            return func(*args, **kwargs)
        implementation = getattr(backend, name, None)
        if implementation is None:
            # a function newer than the backend: say so rather than fail deep inside
            raise TypeError(f"{name} does not support the arrays given (no "
                            f"{backend.__name__.rsplit('.', 1)[-1].lstrip('_')} backend "
                            "for it yet); pass NumPy arrays")
        return implementation(*args, **kwargs)

    if small_call is None:
        return routed
    public = small_call(name, routed)
    functools.update_wrapper(public, func)
    return public
