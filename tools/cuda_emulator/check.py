"""Wide sweep of the GPU kernels in the CPU emulation against the references (run.sh --sweep)."""
import sys, itertools, warnings
import numpy as np
import os
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))
import fakecupy
cupy = fakecupy.install()
import fastsoft as fs
from fastsoft import _cupy
from _arrays import arrays, make_mask, assert_matches_reference, TRANSFORMS, NAMES

warnings.simplefilter("ignore")
failures = 0
checked = 0

def run(name, a, axis, mask, threads=None):
    global failures, checked
    fakecupy.FORCE_THREADS = threads
    try:
        x = cupy.asarray(a)
        w = None if mask is None else cupy.asarray(mask)
        got = getattr(fs, name)(x, axis=axis, where=w)
        assert isinstance(got, cupy.ndarray), type(got)
        assert_matches_reference(name, cupy.asnumpy(got), a, axis=axis, where=mask)
        checked += 1
    except AssertionError as e:
        failures += 1
        if failures < 15:
            print("FAIL", name, a.dtype, a.shape, axis, threads, str(e)[:1500])
    finally:
        fakecupy.FORCE_THREADS = None

for dtype in (np.float32, np.float64, np.float16, np.int32, np.bool_):
    for label, a in arrays(dtype):
        axes = [None] + list(range(-a.ndim, 0)) if a.ndim else [None]
        for axis in axes:
            for kind in ("none", "random", "full_rows", "broadcast_row"):
                if a.ndim == 0 and kind != "none":
                    continue
                mask = make_mask(kind, a.shape, axis) if a.size or kind == "none" else None
                for name in NAMES:
                    run(name, a, axis, mask)
print("adversarial arrays:", checked, "checked,", failures, "failures")

rng = np.random.default_rng(1)
for n_cols in (1, 7, 31, 33, 255, 256, 257, 1000, 3000):
    for dtype in (np.float32, np.float64):
        a = (rng.standard_normal((5, n_cols)) * 5).astype(dtype)
        a[1, n_cols // 2] = -np.inf
        for threads in (None, 32, 64, 96):
            for kind in ("none", "random", "full_rows"):
                mask = make_mask(kind, a.shape, -1)
                for name in NAMES:
                    run(name, a, -1, mask, threads)
print("row lengths:", checked, "checked,", failures, "failures")
