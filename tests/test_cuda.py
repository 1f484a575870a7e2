"""The CUDA kernels (fastsoft/_cuda/*.cu) and the CuPy backend (fastsoft._cupy).

Three levels, each skipped when what it needs is missing:

1. Build: every kernel source, exactly as the loader hands it to NVRTC (fs_device.cuh
   pasted in), compiles with nvcc for sm_80 and sm_90 with every warning an error.
   Needs ``nvcc`` on PATH.
2. Numerics on a GPU: every function through ``fastsoft.<name>`` on CuPy arrays (routed to
   the kernels) against the reference of tests/_arrays.py (the accuracy bounds of
   docs/numerics.md), the CPU kernels and the generic path (fastsoft._generic with
   ``xp=cupy``): float32/float64/float16, every axis, masks, special values, row lengths
   on both sides of the register-cached limit, out= and in place; cross_entropy with
   every option.  Needs CuPy and a CUDA device.
3. Always: importing fastsoft (or fastsoft._cupy) does not import CuPy; the loader's source
   assembly and launch shape.
"""

import importlib.resources
import io
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastsoft as fs
from fastsoft import _cupy, _generic
from _arrays import NAMES, REGISTRY, arrays, assert_matches_reference, make_mask, tolerance

KERNEL_FILES = ("softmax.cu", "cross_entropy.cu")
ARCHES = ("sm_80", "sm_90")


# ---------------------------------------------------------------------------------------
# 3. No GPU needed


@pytest.mark.parametrize("module", ["fastsoft", "fastsoft._cupy"])
def test_import_does_not_import_cupy(module):
    code = f"import sys, {module}; assert 'cupy' not in sys.modules, 'cupy was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kernel_sources_ship_with_the_package():
    folder = importlib.resources.files("fastsoft") / "_cuda"
    for name in (*KERNEL_FILES, "fs_device.cuh"):
        assert (folder / name).is_file(), name


@pytest.mark.parametrize("filename", KERNEL_FILES)
def test_kernel_source_inlines_the_header(filename):
    source = _cupy.kernel_source(filename)
    assert not re.search(r"^\s*#\s*include", source, re.MULTILINE)   # NVRTC sees no files
    assert "namespace fs" in source and '#line 1 "fs_device.cuh"' in source
    # the #line after the header points back at the line following the #include
    original = (importlib.resources.files("fastsoft") / "_cuda" / filename).read_text()
    include_line = original.splitlines().index('#include "fs_device.cuh"') + 1
    assert f'#line {include_line + 1} "{filename}"' in source


def test_launch_shape():
    class Kernel:
        max_threads_per_block = 1024

    items, most = _cupy._ROW_ITEMS, _cupy._MAX_THREADS
    assert _cupy._launch_shape(Kernel(), 7, 1) == ((7,), (32,))
    assert _cupy._launch_shape(Kernel(), 4096, 1000) == ((4096,), (128,))
    # a row that fits in registers gets enough threads; a longer one the most allowed
    assert _cupy._launch_shape(Kernel(), 3, items * most) == ((3,), (most,))
    assert _cupy._launch_shape(Kernel(), 3, items * most + 1) == ((3,), (most,))
    assert _cupy._launch_shape(Kernel(), 2**40, 10)[0] == (2**31 - 1,)
    Kernel.max_threads_per_block = 200      # a kernel that cannot run `most` threads
    assert _cupy._launch_shape(Kernel(), 3, 10**6)[1] == (192,)


# ---------------------------------------------------------------------------------------
# 1. Build with nvcc

NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("filename", KERNEL_FILES)
def test_kernels_compile_without_warnings(filename, arch, tmp_path):
    source = tmp_path / filename
    source.write_text(_cupy.kernel_source(filename))
    # the loader's NVRTC options, and the -ftz=true that CuPy appends to them
    command = [NVCC, *_cupy._NVRTC_OPTIONS, "--ftz=true", f"-arch={arch}", "-c", str(source),
               "-o", str(tmp_path / "kernels.o"), "-Werror", "all-warnings",
               "-Xptxas", "-warn-spills,-warn-lmem-usage"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr}"
    assert "warning" not in (result.stdout + result.stderr).lower(), result.stderr


# ---------------------------------------------------------------------------------------
# 2. Numerics on a GPU


@pytest.fixture(scope="module")
def cupy():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as error:   # ImportError, CUDARuntimeError, a broken driver
        pytest.skip(f"CuPy with a CUDA device is needed: {error}")
    return cupy


def _on_device(cupy, a):
    return None if a is None else cupy.asarray(a)


def assert_same_specials(got, expected, what=""):
    """NaN, +inf and -inf at the same places (finite values are compared elsewhere)."""
    got, expected = np.asarray(got), np.asarray(expected)
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(got), test(expected), err_msg=f"{what} {test.__name__}")


def assert_agree(name, got, other, x, axis, where, keepdims=False):
    """Two implementations' results for fs.<name>(x) agree: the same special values, and
    finite values within twice the accuracy bound (each is within the bound)."""
    got, other = np.asarray(got), np.asarray(other)
    assert got.dtype == other.dtype and got.shape == other.shape
    assert_same_specials(got, other, name)
    finite = np.isfinite(got) & np.isfinite(other)
    spec = REGISTRY[name]
    with np.errstate(all="ignore"):
        logs = np.asarray(getattr(fs, spec.log_variant)(
            np.asarray(x, dtype=np.float64), axis=axis, where=where))
        if spec.reduces:
            logs = np.zeros_like(got, dtype=np.float64)
        work = np.float32 if got.dtype == np.float16 else got.dtype
        bound = 2 * tolerance(spec.kind, other.astype(np.float64), logs, np.dtype(work))
        if got.dtype == np.float16:
            bound = bound + np.abs(other.astype(np.float64)) * 2.0**-10
        error = np.abs(got.astype(np.float64) - other.astype(np.float64))
    bad = finite & ~(error <= bound)
    assert not bad.any(), (f"{name}: {int(bad.sum())} values differ; first at "
                           f"{np.argwhere(bad)[0]}: {got[bad][0]!r} vs {other[bad][0]!r}")


def _cases(dtype):
    """(label, array, axis, mask) over the adversarial arrays, every axis, four masks."""
    for label, a in arrays(dtype):
        axes = [None] + list(range(-a.ndim, 0)) if a.ndim else [None]
        for axis in axes:
            for kind in ("none", "random", "full_rows", "broadcast_row"):
                if a.ndim == 0 and kind != "none":
                    continue
                yield label, a, axis, make_mask(kind, a.shape, axis)


@pytest.mark.parametrize("dtype", (np.float32, np.float64, np.float16, np.int32),
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_forward_against_reference_cpu_and_generic(cupy, name, dtype):
    for label, a, axis, mask in _cases(dtype):
        x, where = cupy.asarray(a), _on_device(cupy, mask)
        got = getattr(fs, name)(x, axis=axis, where=where)
        assert isinstance(got, cupy.ndarray), (label, type(got))
        got = cupy.asnumpy(got)
        assert_matches_reference(name, got, a, axis=axis, where=mask)
        cpu = getattr(fs, name)(a, axis=axis, where=mask)
        assert_agree(name, got, cpu, a, axis, mask)
        generic = cupy.asnumpy(getattr(_generic, name)(cupy, x, axis=axis, where=where))
        assert_agree(name, got, generic, a, axis, mask)


# rows on both sides of the register-cached limit (FS_ROW_ITEMS x threads) and of the
# warp size; 50257 (a GPT-2 vocabulary) is streamed
ROW_LENGTHS = (1, 31, 32, 33, 1000, 4095, 4096, 4097, 6000, 50257)


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n_cols", ROW_LENGTHS)
def test_row_lengths(cupy, n_cols, dtype):
    rng = np.random.default_rng(n_cols)
    a = (8 * rng.standard_normal((4, n_cols))).astype(dtype)
    a[1, n_cols // 2] = -np.inf
    a[2] = a[2] + 1e4
    a[3, ::3] = a[3].max()          # ties at the max
    for kind in ("none", "random", "full_rows"):
        mask = make_mask(kind, a.shape, -1)
        for name in NAMES:
            got = getattr(fs, name)(cupy.asarray(a), where=_on_device(cupy, mask))
            assert_matches_reference(name, cupy.asnumpy(got), a, where=mask)


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", [n for n in NAMES if not REGISTRY[n].reduces])
def test_out_and_in_place(cupy, name, dtype):
    a = np.random.default_rng(0).standard_normal((5, 300)).astype(dtype)
    expected = getattr(fs, name)(a)
    function = getattr(fs, name)
    # in place: the result overwrites its input
    x = cupy.asarray(a)
    assert function(x, out=x) is x
    assert_agree(name, cupy.asnumpy(x), expected, a, -1, None)
    # a strided out= and another axis
    out = cupy.zeros((300, 10), dtype=dtype)[:, ::2]
    result = function(cupy.asarray(a.T), axis=0, out=out)
    assert result is out
    assert_agree(name, cupy.asnumpy(out), expected.T, a.T, 0, None)
    # an out= that overlaps the input without being it
    buffer = cupy.asarray(np.concatenate([a.ravel(), np.zeros(300, dtype)]))
    x, out = buffer[:1500].reshape(5, 300), buffer[300:].reshape(5, 300)
    function(x, out=out)
    assert_agree(name, cupy.asnumpy(out), expected, a, -1, None)
    # float16 results
    half = a.astype(np.float16)
    got = function(cupy.asarray(half))
    assert got.dtype == np.float16
    assert_agree(name, cupy.asnumpy(got), function(half), half, -1, None)


def test_logsumexp_shapes(cupy):
    a = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    x = cupy.asarray(a)
    for axis in (None, 0, 1, 2):
        for keepdims in (False, True):
            got = fs.logsumexp(x, axis=axis, keepdims=keepdims)
            expected = fs.logsumexp(a, axis=axis, keepdims=keepdims)
            assert isinstance(got, cupy.ndarray) and got.shape == np.shape(expected)
            np.testing.assert_allclose(cupy.asnumpy(got), expected, rtol=4e-7, atol=4e-7)
    out = cupy.empty((3, 5), dtype=np.float32)
    assert fs.logsumexp(x, axis=1, out=out) is out
    assert cupy.asnumpy(fs.logsumexp(cupy.zeros((2, 0)), axis=1)).tolist() == [-np.inf] * 2


def test_errors_match_the_cpu(cupy):
    x = cupy.ones((2, 3), dtype=np.float32)
    with pytest.raises(TypeError, match="unsupported dtype"):
        fs.softmax(cupy.ones(3, dtype=np.complex64))
    with pytest.raises(TypeError, match="out has dtype"):
        fs.softmax(x, out=cupy.empty((2, 3)))
    with pytest.raises(ValueError, match="out has shape"):
        fs.softmax(x, out=cupy.empty((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="cannot be broadcast"):
        fs.log_softmax(x, where=cupy.ones(2, dtype=bool))
    with pytest.raises(np.exceptions.AxisError):
        fs.logsumexp(x, axis=2)
    with pytest.raises(ValueError, match="num_threads"):
        fs.sigsoftmax(x, num_threads=0)


@pytest.mark.parametrize("name", ["softmax_backward", "log_softmax_backward",
                                  "sigsoftmax_backward", "log_sigsoftmax_backward",
                                  "logsumexp_backward"])
def test_backward_on_the_gpu(cupy, name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 7))
    forward = name.replace("_backward", "")
    y = getattr(fs, forward)(x)
    g = rng.standard_normal(np.shape(y))
    args = {"logsumexp_backward": (g, x, y), "sigsoftmax_backward": (g, y, x),
            "log_sigsoftmax_backward": (g, y, x)}.get(name, (g, y))
    expected = getattr(fs, name)(*args)
    got = getattr(fs, name)(*(cupy.asarray(a) for a in args))
    np.testing.assert_allclose(cupy.asnumpy(got), expected, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------
# cross_entropy on a GPU


def _ce_problem(shape, axis, dtype, target_kind, seed=0):
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    n_classes = shape[axis]
    batch = shape[:axis] + shape[axis + 1:]
    if target_kind == "index":
        target = rng.integers(0, n_classes, size=batch)
        target.reshape(-1)[::4] = -100          # some rows ignored
    else:
        target = rng.random(shape).astype(dtype)
        target /= target.sum(axis=axis, keepdims=True)
    return logits, target


def _assert_ce_close(got, expected, dtype, what):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape, what
    assert_same_specials(got, expected, what)
    rtol = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}[np.dtype(dtype)]
    finite = np.isfinite(expected)
    scale = np.max(np.abs(expected[finite]), initial=1.0)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=rtol, atol=rtol * scale,
                               err_msg=what)


CE_OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"label_smoothing": 1.0},
    {"weight": "random"},
    {"weight": "random", "label_smoothing": 0.2, "reduction": "sum"},
    {"reduction": "none"},
    {"reduction": "none", "grad_output": "random"},
    {"activation": "sigsoftmax"},
    {"activation": "sigsoftmax", "weight": "random", "label_smoothing": 0.1},
    {"ignore_index": 2},
    {"grad_output": 3.0},
]


@pytest.mark.parametrize("dtype", (np.float32, np.float64), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("target_kind", ("index", "prob"))
@pytest.mark.parametrize("shape,axis", [((6, 5), 1), ((3, 5, 2, 3), 1), ((4, 5000), 1),
                                        ((3, 50257), 1), ((5, 4), 0)])
def test_cross_entropy_against_cpu_and_generic(cupy, shape, axis, target_kind, dtype):
    logits, target = _ce_problem(shape, axis, dtype, target_kind)
    n_classes, batch = shape[axis], shape[:axis] + shape[axis + 1:]
    rng = np.random.default_rng(5)
    for options in CE_OPTIONS:
        options = dict(options)
        if options.get("weight") == "random":
            options["weight"] = rng.uniform(0.2, 2.0, n_classes)
        if options.get("grad_output") == "random":
            options["grad_output"] = rng.standard_normal(batch)
        labels = target
        if "ignore_index" in options:
            if target_kind == "prob":
                continue
            # the ignored rows marked with the chosen index (also a valid class)
            labels = np.where(target == -100, options["ignore_index"], target)
        what = f"{shape} {target_kind} {options}"
        loss, grad = fs.cross_entropy(logits, labels, axis=axis, return_grad=True, **options)
        on_device = {k: (cupy.asarray(v) if isinstance(v, np.ndarray) else v)
                     for k, v in options.items()}
        x, t = cupy.asarray(logits), cupy.asarray(labels)
        got_loss, got_grad = fs.cross_entropy(x, t, axis=axis, return_grad=True, **on_device)
        assert isinstance(got_loss, cupy.ndarray)
        _assert_ce_close(cupy.asnumpy(got_loss), loss, dtype, what + " loss")
        _assert_ce_close(cupy.asnumpy(got_grad), grad, dtype, what + " grad")
        gen_loss, gen_grad = _generic.cross_entropy(cupy, x, t, axis=axis, return_grad=True,
                                                    **on_device)
        _assert_ce_close(cupy.asnumpy(got_loss), cupy.asnumpy(gen_loss), dtype, what + " generic")
        _assert_ce_close(cupy.asnumpy(got_grad), cupy.asnumpy(gen_grad), dtype, what + " generic")
        # the loss alone (no gradient pass) is the same value
        alone = fs.cross_entropy(x, t, axis=axis, **{k: v for k, v in on_device.items()
                                                     if k != "grad_output"})
        _assert_ce_close(cupy.asnumpy(alone), cupy.asnumpy(got_loss), dtype, what + " alone")


@pytest.mark.parametrize("activation", ("softmax", "sigsoftmax"))
def test_cross_entropy_special_rows(cupy, activation):
    logits = np.random.default_rng(0).standard_normal((6, 7))
    logits[1, 2] = np.nan
    logits[2, 0] = np.inf
    logits[3, 4] = -np.inf             # the target's logit: infinite loss
    logits[4, :3] = -np.inf            # -inf elsewhere: finite
    logits[5] += 1e4
    target = np.array([0, 1, 2, 4, 5, 6])
    for options in ({}, {"label_smoothing": 0.1}, {"reduction": "none"}):
        expected = fs.cross_entropy(logits, target, activation=activation, return_grad=True,
                                    **options)
        got = fs.cross_entropy(cupy.asarray(logits), cupy.asarray(target),
                               activation=activation, return_grad=True, **options)
        for g, e in zip(got, expected):
            _assert_ce_close(cupy.asnumpy(g), e, np.float64, f"{activation} {options}")


def test_cross_entropy_grad_out_in_place(cupy):
    logits, target = _ce_problem((8, 3000), 1, np.float32, "index")
    expected_loss, expected_grad = fs.cross_entropy(logits, target, return_grad=True)
    x = cupy.asarray(logits)
    loss, grad = fs.cross_entropy(x, cupy.asarray(target), return_grad=True, grad_out=x)
    assert grad is x
    _assert_ce_close(cupy.asnumpy(grad), expected_grad, np.float32, "in place")
    _assert_ce_close(cupy.asnumpy(loss), expected_loss, np.float32, "in place loss")


def test_cross_entropy_bad_label_raises_before_running(cupy):
    logits = cupy.asarray(np.arange(12.0).reshape(4, 3))
    before = cupy.asnumpy(logits).copy()
    with pytest.raises(IndexError, match=r"target 3 at position \(2,\)"):
        fs.cross_entropy(logits, cupy.asarray([0, 1, 3, -100]), return_grad=True,
                         grad_out=logits)
    np.testing.assert_array_equal(cupy.asnumpy(logits), before)


def test_cross_entropy_every_row_ignored(cupy):
    logits = cupy.ones((3, 4))
    loss, grad = fs.cross_entropy(logits, cupy.full(3, -100), return_grad=True)
    assert math.isnan(float(loss))
    assert not cupy.asnumpy(grad).any()


def test_device_info(cupy):
    info = _cupy.device_info()
    assert "compute capability" in info and cupy.__version__ in info
    report = io.StringIO()
    fs.show_config(file=report)
    assert info in report.getvalue()
