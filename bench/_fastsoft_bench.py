"""Cases, inputs and competing implementations shared by the fastsoft benchmarks.

Design:
1. Both drivers (``test_bench_forward.py`` under pytest-benchmark and the standalone
   ``compare.py``) take their cases and implementations from this one module, so the two
   always time the same calls on the same inputs.
2. An implementation is split into an untimed part (``to_native``: NumPy array -> the
   library's container, zero-copy for torch; ``thread_scope``: set a global thread count)
   and the timed part (``kernel(function, n_threads)``: a one-argument callable). Nothing
   that is not the operation itself happens inside the timed call.
3. Inputs are logits drawn once per (shape, dtype) from a seed derived from the shape and
   dtype, and cached for the life of the process; nothing is drawn before it is asked for,
   so a run selected with ``-k`` never pays for the big shapes.
4. A broken comparison (wrong axis, wrong dtype, a missing normalisation) must not produce
   a speed-up, so every output is checked before it is timed, loosely, on a sample of rows
   against a float64 NumPy reference: the functions are row-wise, so a row of the output
   depends only on the same row of the input.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math

import numpy as np

FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "sigsoftmax", "log_sigsoftmax")
DTYPES = ("float32", "float64")
SHAPES = ((1, 1000), (256, 1000), (4096, 1000), (64, 50257), (1_000_000, 10))
THREAD_COUNTS = (1, 2)

BASE_SEED = 20_250_601
# Standard normal logits times 3 spread a row over roughly [-13, 13]: a realistic range
# whose exponentials stay far from the subnormals that would slow some libms down.
LOGIT_SCALE = 3.0

# Loose on purpose: these catch a comparison that computes something else, not the last
# ulp (tests/ is where accuracy is checked).
TOLERANCES = {
    np.dtype(np.float32): {"rtol": 1e-3, "atol": 1e-6},
    np.dtype(np.float64): {"rtol": 1e-7, "atol": 1e-12},
}
N_CHECKED_ROWS = 64


# --------------------------------------------------------------------------- cases


def shape_label(shape):
    """``(4096, 1000)`` -> ``"4096x1000"``: the spelling used in ids, groups and tables."""
    return "x".join(str(extent) for extent in shape)


def parse_shape(text):
    """``"4096x1000"`` or ``"1_000_000x10"`` -> ``(4096, 1000)``; the inverse of shape_label."""
    parts = text.lower().split("x")
    if len(parts) != 2:
        raise ValueError(f"shape must look like ROWSxCOLS, got {text!r}")
    n_rows, n_cols = (int(part) for part in parts)
    if n_rows < 1 or n_cols < 1:
        raise ValueError(f"shape extents must be positive, got {text!r}")
    return n_rows, n_cols


def group_name(function, dtype, shape):
    """The pytest-benchmark group (and compare.py case) holding all implementations."""
    return f"{function}-{np.dtype(dtype).name}-{shape_label(shape)}"


def output_shape(function, shape):
    """logsumexp reduces the last axis away; the other functions keep the shape."""
    return tuple(shape[:-1]) if function == "logsumexp" else tuple(shape)


def bytes_moved(function, shape, dtype):
    """Bytes an ideal kernel must read (the input) plus write (the output).

    The same count is used for every implementation, so GB/s is a rescaled 1/time that
    reads against the machine's memory bandwidth, not the traffic each library really made.
    """
    itemsize = np.dtype(dtype).itemsize
    return itemsize * (math.prod(shape) + math.prod(output_shape(function, shape)))


_INPUTS = {}


def get_input(shape, dtype):
    """C-contiguous logits of ``shape`` and ``dtype``, drawn on first use and cached."""
    dtype = np.dtype(dtype)
    key = (tuple(shape), dtype.name)
    if key not in _INPUTS:
        seed = np.random.SeedSequence([BASE_SEED, *shape, dtype.itemsize])
        logits = np.random.default_rng(seed).standard_normal(shape, dtype=dtype)
        logits *= LOGIT_SCALE
        _INPUTS[key] = logits
    return _INPUTS[key]


def clear_inputs():
    """Drop cached inputs (compare.py does so once a shape is done, to bound memory)."""
    _INPUTS.clear()


# ------------------------------------------------------------------ NumPy composites


def _numpy_log_sigmoid(z):
    # log sigma(z) = min(z, 0) - log1p(exp(-|z|)): never overflows, exact to ~1 ulp.
    return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))


def numpy_softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return shifted


def numpy_log_softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return shifted


def numpy_logsumexp(z):
    row_max = z.max(axis=-1, keepdims=True)
    return np.log(np.exp(z - row_max).sum(axis=-1)) + row_max[..., 0]


def numpy_sigsoftmax(z):
    return numpy_softmax(z + _numpy_log_sigmoid(z))


def numpy_log_sigsoftmax(z):
    return numpy_log_softmax(z + _numpy_log_sigmoid(z))


_NUMPY_FUNCTIONS = {
    "softmax": numpy_softmax,
    "log_softmax": numpy_log_softmax,
    "logsumexp": numpy_logsumexp,
    "sigsoftmax": numpy_sigsoftmax,
    "log_sigsoftmax": numpy_log_sigsoftmax,
}


def reference(function, z):
    """float64 NumPy result of ``function`` on the rows of ``z`` (the correctness oracle)."""
    return _NUMPY_FUNCTIONS[function](np.asarray(z, dtype=np.float64))


# ------------------------------------------------------------------ implementations


@functools.cache
def import_optional(module_name):
    """(module, None) if ``module_name`` imports, else (None, "why not")."""
    try:
        return importlib.import_module(module_name), None
    except Exception as exc:  # a half-built extension raises more than ImportError
        return None, f"{module_name} is not importable ({type(exc).__name__}: {exc})"


class Implementation:
    """One library's way of computing the five functions; subclasses fill it in."""

    name = ""
    # True when the library honours a thread count (fastsoft, torch); NumPy and SciPy
    # run these element-wise operations and reductions on one thread whatever is asked.
    threaded = False

    def unavailable_reason(self, function):
        """None when ``function`` can be benchmarked, otherwise a reason to skip it."""
        return None

    def to_native(self, z):
        return z

    def to_numpy(self, result):
        return np.asarray(result)

    @contextlib.contextmanager
    def thread_scope(self, n_threads):
        yield

    def kernel(self, function, n_threads):
        raise NotImplementedError

    def label(self, n_threads):
        return f"{self.name}-t{n_threads}" if self.threaded else self.name

    def threads_used(self, n_threads):
        return n_threads if self.threaded else 1


class FastSoft(Implementation):
    name = "fastsoft"
    threaded = True

    def unavailable_reason(self, function):
        module, reason = import_optional("fastsoft")
        if module is None:
            return reason
        if not hasattr(module, function):
            return f"fastsoft has no {function} yet"
        return None

    def kernel(self, function, n_threads):
        module, _ = import_optional("fastsoft")
        return functools.partial(getattr(module, function), axis=-1, num_threads=n_threads)


class SciPy(Implementation):
    name = "scipy"

    def unavailable_reason(self, function):
        return import_optional("scipy.special")[1]

    def kernel(self, function, n_threads):
        special, _ = import_optional("scipy.special")
        if function == "sigsoftmax":
            return lambda z: special.softmax(z + special.log_expit(z), axis=-1)
        if function == "log_sigsoftmax":
            return lambda z: special.log_softmax(z + special.log_expit(z), axis=-1)
        return functools.partial(getattr(special, function), axis=-1)


class NumPyComposite(Implementation):
    name = "numpy"

    def kernel(self, function, n_threads):
        return _NUMPY_FUNCTIONS[function]


class Torch(Implementation):
    name = "torch"
    threaded = True

    def unavailable_reason(self, function):
        return import_optional("torch")[1]

    def to_native(self, z):
        torch, _ = import_optional("torch")
        return torch.from_numpy(z)  # shares memory: no copy inside or outside the timing

    def to_numpy(self, result):
        return result.numpy()

    @contextlib.contextmanager
    def thread_scope(self, n_threads):
        torch, _ = import_optional("torch")
        previous = torch.get_num_threads()
        torch.set_num_threads(n_threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def kernel(self, function, n_threads):
        torch, _ = import_optional("torch")
        softplus = torch.nn.functional.softplus
        if function == "sigsoftmax":
            return lambda z: torch.softmax(2 * z - softplus(z), dim=-1)
        if function == "log_sigsoftmax":
            return lambda z: torch.log_softmax(2 * z - softplus(z), dim=-1)
        return functools.partial(getattr(torch, function), dim=-1)


IMPLEMENTATIONS = {impl.name: impl for impl in (FastSoft(), SciPy(), NumPyComposite(), Torch())}


def library_versions():
    """Versions of everything compared, for reports; absent libraries are left out."""
    versions = {}
    for name in ("fastsoft", "numpy", "scipy", "torch"):
        module, _ = import_optional(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "unknown")
    return versions


# ------------------------------------------------------------------------- checks


def _sample_rows(n_rows):
    """First, last and evenly spaced rows: cheap to check, and a wrong axis shows up."""
    return np.unique(np.linspace(0, n_rows - 1, num=min(n_rows, N_CHECKED_ROWS), dtype=np.intp))


def mismatch(function, z, result, expected=None):
    """None if ``result`` is ``function(z)`` to the loose tolerance, else what is wrong.

    ``expected`` is a full result to compare with (compare.py passes fastsoft's); without
    it a sample of rows is compared with the float64 reference.
    """
    result = np.asarray(result)
    wanted_shape = output_shape(function, z.shape)
    if result.shape != wanted_shape:
        return f"shape {result.shape}, expected {wanted_shape}"
    if result.dtype != z.dtype:
        return f"dtype {result.dtype}, expected {z.dtype}"
    if expected is None:
        rows = _sample_rows(z.shape[0])
        result, expected = result[rows], reference(function, z[rows])
    else:
        expected = np.asarray(expected)
    close = np.isclose(result, expected, **TOLERANCES[z.dtype])
    if close.all():
        return None
    error = np.abs(result - expected.astype(result.dtype))
    worst = np.unravel_index(np.argmax(error), result.shape)
    return (
        f"{np.count_nonzero(~close)} of {close.size} values differ; "
        f"worst at {tuple(int(i) for i in worst)}: {float(result[worst]):.9g} vs "
        f"{float(expected[worst]):.9g}"
    )
