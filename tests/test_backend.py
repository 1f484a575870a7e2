"""Routing of public calls by array type (fastsoft._backend), without a GPU.

A stand-in module registered as ``cupy`` only for these tests provides an ``ndarray``
class; the GPU backend is replaced by a recorder, so the tests check where a call goes,
not what CuPy computes (tests/test_cuda.py does that where a device exists).
"""

import inspect
import subprocess
import sys
import types

import numpy as np
import pytest

import fastsoft as fs
from fastsoft import _backend

ARRAY_FUNCTIONS = [name for name in fs.__all__
                   if name not in ("get_num_threads", "set_num_threads", "show_config",
                                   "release_result_memory", "__version__")]


class FakeGpuArray:
    """Stands for cupy.ndarray: the router only looks at the type."""

    def __init__(self, data):
        self.data = np.asarray(data)


@pytest.fixture
def fake_cupy(monkeypatch):
    module = types.ModuleType("cupy")
    module.ndarray = FakeGpuArray
    monkeypatch.setitem(sys.modules, "cupy", module)
    calls = []

    class Recorder:
        def __getattr__(self, name):
            def record(*args, **kwargs):
                calls.append((name, args, kwargs))
                return "gpu result"
            return record

    monkeypatch.setattr(_backend, "_gpu_backend", lambda: Recorder())
    return calls


def test_import_does_not_import_cupy():
    code = "import sys, fastsoft; assert 'cupy' not in sys.modules, 'cupy was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ARRAY_FUNCTIONS)
def test_every_array_function_is_routed(name):
    assert getattr(getattr(fs, name), "__wrapped__", None) is not None, name


def _bound(func, args, kwargs):
    bound = inspect.signature(func).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


@pytest.mark.parametrize("name", ["softmax", "logsumexp", "log_sigsoftmax"])
def test_gpu_array_goes_to_the_gpu_backend(fake_cupy, name):
    # the backend gets the call's arguments (the compiled public functions pass them on
    # with their defaults filled in, which the backends share)
    x = FakeGpuArray([[1.0, 2.0]])
    func = getattr(fs, name)
    assert func(x, axis=0, where=None) == "gpu result"
    assert len(fake_cupy) == 1 and fake_cupy[0][0] == name
    assert _bound(func, *fake_cupy[0][1:]) == _bound(func, (x,), {"axis": 0, "where": None})
    assert fake_cupy[0][1][0] is x


def test_gpu_array_in_a_keyword_goes_to_the_gpu_backend(fake_cupy):
    target = FakeGpuArray([0])
    logits = FakeGpuArray([[1.0, 2.0]])
    assert fs.cross_entropy(logits, target=target, return_grad=True) == "gpu result"
    assert fake_cupy[0][0] == "cross_entropy"


def test_numpy_arrays_stay_on_the_cpu_with_cupy_loaded(fake_cupy):
    x = np.array([[1.0, 2.0]])
    np.testing.assert_allclose(fs.softmax(x), [[0.26894142, 0.73105858]])
    assert fake_cupy == []


@pytest.mark.parametrize("gpu_position", [0, 1])
def test_mixed_devices_raise_type_error(fake_cupy, gpu_position):
    arrays = [np.ones((2, 3)), np.ones((2, 3))]
    arrays[gpu_position] = FakeGpuArray(arrays[gpu_position])
    with pytest.raises(TypeError, match="mix CuPy"):
        fs.softmax_backward(*arrays)
    with pytest.raises(TypeError, match="mix CuPy"):
        fs.softmax(FakeGpuArray(np.ones(3)), out=np.empty(3))
    assert fake_cupy == []


def test_python_scalars_and_lists_do_not_count_as_cpu_arrays(fake_cupy):
    logits = FakeGpuArray(np.ones((2, 3)))
    fs.cross_entropy(logits, FakeGpuArray([0, 1]), weight=[1.0, 2.0, 3.0],
                     return_grad=True, grad_output=2.0)
    assert [call[0] for call in fake_cupy] == ["cross_entropy"]


# ---------------------------------------------------------------------------------------
# Dask: a stand-in ``dask.array`` module, the Dask backend replaced by a recorder


class FakeDaskArray:
    """Stands for dask.array.Array: the router only looks at the type."""

    def __init__(self, data):
        self.data = np.asarray(data)


@pytest.fixture
def fake_dask(monkeypatch):
    module = types.ModuleType("dask.array")
    module.Array = FakeDaskArray
    monkeypatch.setitem(sys.modules, "dask.array", module)
    calls = []

    class Recorder:
        def __getattr__(self, name):
            def record(*args, **kwargs):
                calls.append((name, args, kwargs))
                return "dask result"
            return record

    monkeypatch.setattr(_backend, "_dask_backend", lambda: Recorder())
    return calls


def test_import_does_not_import_dask():
    code = ("import sys, fastsoft; "
            "assert not [m for m in sys.modules if m == 'dask' or m.startswith('dask.')], "
            "'dask was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dask_array_goes_to_the_dask_backend(fake_dask):
    x = FakeDaskArray([[1.0, 2.0]])
    assert fs.log_softmax(x, axis=0) == "dask result"
    assert len(fake_dask) == 1 and fake_dask[0][0] == "log_softmax"
    assert _bound(fs.log_softmax, *fake_dask[0][1:]) == _bound(fs.log_softmax, (x,), {"axis": 0})


@pytest.mark.parametrize("dask_position", ["logits", "target", "where"])
def test_any_dask_argument_takes_the_call_to_dask(fake_dask, dask_position):
    logits, target = np.ones((2, 3)), np.zeros(2, dtype=int)
    if dask_position == "logits":
        assert fs.cross_entropy(FakeDaskArray(logits), target) == "dask result"
    elif dask_position == "target":
        assert fs.cross_entropy(logits, target=FakeDaskArray(target)) == "dask result"
    else:
        assert fs.softmax(logits, where=FakeDaskArray(np.ones((2, 3), bool))) == "dask result"
    assert len(fake_dask) == 1


def test_numpy_arrays_stay_on_the_cpu_with_dask_loaded(fake_dask):
    np.testing.assert_allclose(fs.softmax(np.array([[1.0, 2.0]])), [[0.26894142, 0.73105858]])
    assert fake_dask == []


def test_dask_mixed_with_cupy_is_a_type_error(fake_dask, fake_cupy):
    with pytest.raises(TypeError, match="mix Dask and CuPy"):
        fs.softmax_backward(FakeDaskArray(np.ones(3)), FakeGpuArray(np.ones(3)))
    assert fake_dask == [] and fake_cupy == []


def test_cupy_alone_still_goes_to_the_gpu_with_dask_loaded(fake_dask, fake_cupy):
    x = FakeGpuArray([1.0, 2.0])
    assert fs.softmax(x) == "gpu result"
    assert fake_dask == [] and len(fake_cupy) == 1


def test_dask_module_still_importing_is_ignored(monkeypatch):
    # "dask.array" is in sys.modules before its Array class exists while it imports
    monkeypatch.setitem(sys.modules, "dask.array", types.ModuleType("dask.array"))
    np.testing.assert_allclose(fs.softmax(np.zeros(2)), [0.5, 0.5])


def test_function_without_a_dask_version_is_a_type_error(monkeypatch, fake_dask):
    monkeypatch.setattr(_backend, "_dask_backend", lambda: types.ModuleType("fastsoft._dask"))

    @_backend.dispatch
    def not_in_the_backend(x):
        return "cpu"

    assert not_in_the_backend(np.ones(2)) == "cpu"
    with pytest.raises(TypeError, match="no dask backend"):
        not_in_the_backend(FakeDaskArray(np.ones(2)))
