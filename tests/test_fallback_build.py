"""The scalar fallback: the kernels as a compiler without GCC/Clang vector extensions
(MSVC, say) and without OpenMP builds them.

fs_reduce.h takes FS_NO_VECTOR_EXTENSIONS to select that fallback under GCC or Clang too,
so it can be compiled and run here: the generated _core_baseline.c (present in a source
checkout after the build) is compiled with it, loaded in a subprocess in place of the
baseline variant, and its results are compared with the vector build's.  The two sum in
different orders and the fallback takes log1p from the C library, so the comparison
allows a few ulp; special values must match exactly.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import fastsoft as fs
import fastsoft._kernels

KERNEL_DIR = Path(fastsoft._kernels.__file__).parent
SOURCE = KERNEL_DIR / "_core_baseline.c"

# The calls compared: (name, dtype, shape, call) with `fs` and `x` in scope
CALLS = [
    ("softmax", "fs.softmax(x)"), ("log_softmax", "fs.log_softmax(x)"),
    ("logsumexp", "fs.logsumexp(x)"), ("sigsoftmax", "fs.sigsoftmax(x)"),
    ("log_sigsoftmax", "fs.log_sigsoftmax(x)"),
    ("softmax_axis0", "fs.softmax(x, axis=0)"), ("log_softmax_axis0", "fs.log_softmax(x, axis=0)"),
    ("softmax_backward", "fs.softmax_backward(x[::-1].copy(), fs.softmax(x))"),
    ("log_softmax_backward", "fs.log_softmax_backward(x[::-1].copy(), fs.log_softmax(x))"),
    ("sigsoftmax_backward", "fs.sigsoftmax_backward(x[::-1].copy(), fs.sigsoftmax(x), x)"),
    ("log_sigsoftmax_backward",
     "fs.log_sigsoftmax_backward(x[::-1].copy(), fs.log_sigsoftmax(x), x)"),
    ("cross_entropy_grad", "fs.cross_entropy(x, np.arange(len(x)) % x.shape[1], "
                           "reduction='none', return_grad=True)[1]"),
    ("sigsoftmax_ce_grad", "fs.cross_entropy(x, np.arange(len(x)) % x.shape[1], "
                           "activation='sigsoftmax', reduction='none', return_grad=True)[1]"),
    ("ce_prob_loss", "fs.cross_entropy(x, fs.softmax(x[::-1].copy()), reduction='none')"),
    ("ce_prob_grad", "fs.cross_entropy(x, fs.softmax(x[::-1].copy()), reduction='none', "
                     "return_grad=True)[1]"),
    ("sigsoftmax_ce_prob_grad", "fs.cross_entropy(x, fs.softmax(x[::-1].copy()), "
                                "activation='sigsoftmax', reduction='none', "
                                "return_grad=True)[1]"),
    ("ce_weighted_smoothing_grad",
     "fs.cross_entropy(x, np.arange(len(x)) % x.shape[1], weight=np.linspace(0.5, 2, "
     "x.shape[1]), label_smoothing=0.1, reduction='none', return_grad=True)[1]"),
]
SHAPES = [(3, 1), (40, 10), (7, 1001), (2, 300_000)]      # short lanes, rows, long rows


def _inputs():
    rng = np.random.default_rng(5)
    for dtype in ("float32", "float64"):
        for shape in SHAPES:
            x = (rng.standard_normal(shape) * 4).astype(dtype)
            if shape[1] > 3:
                x[0, :3] = (np.nan, 1.0, 2.0)
                x[1 % shape[0], 2] = np.inf
                x[-1, 1] = -np.inf
            yield f"{dtype}-{shape[0]}x{shape[1]}", x


SCRIPT = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("fastsoft._kernels._core_baseline", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
import warnings
warnings.simplefilter("ignore")
import numpy as np
import fastsoft as fs
assert fs._kernels.core is module and not module.openmp_enabled()
inputs = np.load(sys.argv[2])
results = {}
with np.errstate(all="ignore"):
    for case in inputs.files:
        x = inputs[case]
        for name, call in CALLS:
            results[f"{case}/{name}"] = np.asarray(eval(call))
np.savez(sys.argv[3], **results)
"""


def _compiler():
    cc = (sysconfig.get_config_var("CC") or "").split()
    if cc and shutil.which(cc[0]):
        return cc
    found = shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")
    return [found] if found else None


@pytest.fixture(scope="module")
def fallback_module(tmp_path_factory):
    if not SOURCE.exists():
        pytest.skip("no generated _core_baseline.c (not a built source checkout)")
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("fallback") / ("_core_baseline" + sysconfig.get_config_var("EXT_SUFFIX"))
    command = [*cc, "-shared", "-fPIC", "-O1", "-fno-math-errno", "-fno-trapping-math",
               "-DFS_NO_VECTOR_EXTENSIONS", "-DNPY_NO_DEPRECATED_API=NPY_1_9_API_VERSION",
               "-I", str(KERNEL_DIR), "-I", np.get_include(),
               "-I", sysconfig.get_paths()["include"], str(SOURCE), "-o", str(out)]
    built = subprocess.run(command, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-4000:]
    return out


def test_fallback_builds_and_agrees(fallback_module, tmp_path):
    inputs = dict(_inputs())
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = f"CALLS = {json.dumps(CALLS)}\n" + SCRIPT
    env = dict(os.environ, FASTSOFT_CPU_VARIANT="baseline")
    run = subprocess.run([sys.executable, "-c", script, str(fallback_module),
                          str(tmp_path / "inputs.npz"), str(tmp_path / "results.npz")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    fallback = np.load(tmp_path / "results.npz")
    assert len(fallback.files) == len(inputs) * len(CALLS)
    with np.errstate(all="ignore"):
        for case, x in inputs.items():
            for name, call in CALLS:
                expected = np.asarray(eval(call))
                got = fallback[f"{case}/{name}"]
                assert got.dtype == expected.dtype and got.shape == expected.shape
                assert np.array_equal(np.isnan(got), np.isnan(expected)), (case, name)
                special = ~np.isfinite(expected) & ~np.isnan(expected)
                assert np.array_equal(got[special], expected[special]), (case, name)
                finite = np.isfinite(expected)
                eps = np.finfo(x.dtype).eps
                # relative for probabilities; absolute below 1 for the logs, and below
                # the inputs' magnitude (|x| < 16 here) for gradients, which cancel
                floor = np.finfo(x.dtype).tiny
                if name.startswith("log"):
                    floor = 1.0
                elif "grad" in name or "backward" in name:
                    floor = 16.0
                scale = np.maximum(np.abs(expected[finite]), floor)
                error = np.abs(got[finite].astype(np.float64) - expected[finite])
                assert np.all(error <= 64 * eps * scale), (case, name, float(np.max(error / scale / eps)))
