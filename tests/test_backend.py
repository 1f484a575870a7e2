"""Routing of public calls by array type (fastsoft._backend), without a GPU.

A stand-in module registered as ``cupy`` only for these tests provides an ``ndarray``
class; the GPU backend is replaced by a recorder, so the tests check where a call goes,
not what CuPy computes (tests/test_cuda.py does that where a device exists).
"""

import subprocess
import sys
import types

import numpy as np
import pytest

import fastsoft as fs
from fastsoft import _backend

ARRAY_FUNCTIONS = [name for name in fs.__all__
                   if name not in ("get_num_threads", "set_num_threads", "show_config",
                                   "__version__")]


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


def test_gpu_array_goes_to_the_gpu_backend(fake_cupy):
    x = FakeGpuArray([[1.0, 2.0]])
    assert fs.softmax(x, axis=0, where=None) == "gpu result"
    assert fake_cupy == [("softmax", (x,), {"axis": 0, "where": None})]


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
