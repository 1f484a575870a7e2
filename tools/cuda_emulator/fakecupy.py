"""A stand-in 'cupy' built on NumPy whose RawModule kernels run in the CPU emulation of
the CUDA sources (libemu.so).  For checking fastsoft._cupy + kernels without a GPU."""
import ctypes
import os
import sys
import types

import numpy as np

# built by run.sh; FASTSOFT_EMU_LIB overrides where it is
lib = ctypes.CDLL(os.environ.get("FASTSOFT_EMU_LIB",
                                 os.path.join(os.path.dirname(os.path.abspath(__file__)), "libemu.so")))
launches = []          # (name, grid, block) of every launch


class FakeArray(np.ndarray):
    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # CuPy never warns about inf - inf or x / 0
        inputs = tuple(np.asarray(i).view(np.ndarray) if isinstance(i, FakeArray) else i for i in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(o).view(np.ndarray) for o in kwargs["out"])
        with np.errstate(all="ignore"):
            return _wrap(getattr(ufunc, method)(*inputs, **kwargs))

    def get(self):
        return np.asarray(self).view(np.ndarray)


def _wrap(v):
    if isinstance(v, np.generic):          # CuPy reductions give 0-d arrays, not scalars
        return np.asarray(v).view(FakeArray)
    if isinstance(v, np.ndarray) and not isinstance(v, FakeArray):
        return v.view(FakeArray)
    if isinstance(v, tuple):
        return tuple(_wrap(x) for x in v)
    return v


class _Module(types.ModuleType):
    def __getattr__(self, name):
        attr = getattr(np, name)
        if callable(attr) and not isinstance(attr, type):
            def call(*args, **kwargs):
                args = tuple(np.asarray(a).view(np.ndarray) if isinstance(a, FakeArray) else a for a in args)
                return _wrap(attr(*args, **kwargs))
            return call
        return attr


FORCE_THREADS = None   # override the block size (tests of the streamed path)


class _Kernel:
    max_threads_per_block = 512

    def __init__(self, name):
        self.name = name
        self.function = getattr(lib, "emu_" + name)

    def __call__(self, grid, block, args):
        block_x = block[0] if FORCE_THREADS is None else FORCE_THREADS
        launches.append((self.name, grid[0], block_x))
        converted = [ctypes.c_uint(min(grid[0], 7)), ctypes.c_uint(block_x)]
        for a in args:
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous or a.ndim == 0, self.name
                converted.append(ctypes.c_void_p(a.__array_interface__["data"][0]))
            elif isinstance(a, np.uint64):
                converted.append(ctypes.c_void_p(int(a)))
            elif isinstance(a, np.int64):
                converted.append(ctypes.c_longlong(int(a)))
            elif isinstance(a, np.int32):
                converted.append(ctypes.c_int(int(a)))
            elif isinstance(a, np.float64):
                converted.append(ctypes.c_double(float(a)))
            else:
                raise TypeError(f"kernel argument of type {type(a)}")
        self.function(*converted)


class RawModule:
    compiled = []

    def __init__(self, code, options=()):
        RawModule.compiled.append((code, options))

    def get_function(self, name):
        return _Kernel(name)


def install():
    cupy = _Module("cupy")
    cupy.ndarray = FakeArray
    cupy.RawModule = RawModule
    cupy.asnumpy = lambda a: np.array(a).view(np.ndarray)

    def asarray(a, dtype=None):
        # a transfer to the "device" copies host data, as cupy.asarray does
        if isinstance(a, FakeArray):
            return _wrap(np.asarray(a, dtype=dtype))
        return _wrap(np.array(a, dtype=dtype, copy=True))
    cupy.asarray = asarray
    cupy.__version__ = "fake"
    import importlib.machinery
    cupy.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
    class CUDARuntimeError(RuntimeError):
        pass
    runtime = types.SimpleNamespace(getDevice=lambda: 0, getDeviceCount=lambda: 1,
                                    getDeviceProperties=lambda i: {"name": b"CPU emulation"},
                                    runtimeGetVersion=lambda: 13000,
                                    CUDARuntimeError=CUDARuntimeError)
    device = types.SimpleNamespace(id=0, compute_capability="80")
    cupy.cuda = types.SimpleNamespace(runtime=runtime, Device=lambda: device)
    sys.modules["cupy"] = cupy
    return cupy
