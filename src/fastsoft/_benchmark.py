"""``python -m fastsoft bench``: time fastsoft against NumPy, SciPy, PyTorch and JAX.

Design:
1. A case is (function, dtype, shape). Its contenders are fastsoft and torch at each
   ``--threads`` count, and NumPy, SciPy and JAX once each (NumPy and SciPy run these
   operations on one thread; XLA picks its own thread count). A library that does not
   import, or has no such function, is left out and named in the report. Everything but
   NumPy is imported lazily, so ``import fastsoft._benchmark`` costs nothing.
2. Nothing is timed before it is checked: every contender's first call (also its warm-up)
   is compared, loosely, with a float64 NumPy reference on a sample of rows (the
   functions are row-wise). A contender that computes something else is listed under
   "Mismatches", never timed, and makes the exit status 1.
3. Repetitions are interleaved: each repetition takes one sample of every contender,
   round-robin, starting one contender later each time, so a burst of noise from the
   shared machine lands on all of them alike instead of on whoever ran then.
4. A sample is K back-to-back calls, K chosen once per contender so that a sample lasts
   at least ``--sample-ms``; the time per call is sample / K. The garbage collector is off
   and process-wide thread counts (torch's) are set outside the clock.
5. Unless ``--repeat`` is given, the repetitions per case are chosen from the calibration
   so that a case takes about ``--case-seconds``, within [min, max] repetitions: large
   shapes get fewer repetitions, tiny ones more, and a full run stays in minutes.
6. Reported per contender: the median over repetitions; GB/s = bytes an ideal kernel must
   move (inputs read + outputs written, the same count for every contender) / median; and
   the median over fastsoft's median at each thread count (> 1: fastsoft is faster).
   Ratios are only ever taken between medians of the same run.
7. Two reference points that are not libraries: a read-plus-write memory copy of the
   input (``copy-numpy``: ``np.copyto`` into a preallocated array; ``copy-threads-tN``: the
   same split over N Python threads, as ``np.copyto`` releases the GIL) joins softmax
   cases whose input is far larger than cache, and ``softmax_axis0`` times
   ``softmax(x, axis=0)`` on a C-ordered array against ``softmax(x.T.copy(), axis=-1)``
   (``fastsoft-lastaxis``; the copy is made once, outside the clock).
8. The acceptance ratios of the performance issue are evaluated on whatever cases were
   run and printed as PASS/FAIL lines: a measurement, never a test.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import functools
import gc
import importlib
import io
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

FORWARD_FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "sigsoftmax", "log_sigsoftmax")
BACKWARD_FUNCTIONS = tuple(f"{name}_backward" for name in FORWARD_FUNCTIONS)
# Timed as loss *and* gradient (forward + backward), integer targets, mean reduction.
LOSS_FUNCTIONS = {"cross_entropy": "softmax", "sigsoftmax_cross_entropy": "sigsoftmax"}
AXIS0_FUNCTION = "softmax_axis0"
FUNCTIONS = (*FORWARD_FUNCTIONS, *BACKWARD_FUNCTIONS, *LOSS_FUNCTIONS, AXIS0_FUNCTION)
DEFAULT_FUNCTIONS = (*FORWARD_FUNCTIONS, *LOSS_FUNCTIONS, AXIS0_FUNCTION)
QUICK_FUNCTIONS = (*FORWARD_FUNCTIONS, "cross_entropy")
DTYPES = ("float32", "float64")
LIBRARIES = ("fastsoft", "numpy", "scipy", "torch", "jax", "copy")
THREAD_COUNTS = (1, 2)

# The performance issue's shapes: a single call, mid rows, a GPT-2 vocabulary, rows
# longer than cache, and rows so short that per-row overhead would dominate.
SHAPES = ((1, 1000), (4096, 1000), (64, 50257), (8, 1_000_000), (1_000_000, 10))
QUICK_SHAPES = ((1, 1000), (4096, 1000), (64, 50257))
# 256 MiB of float32: far larger than any cache, so softmax can only be memory-bound.
MEMORY_SHAPE = (16384, 4096)
AXIS0_SHAPE = (1000, 4096)
# Softmax cases whose input is at least this large also time a memory copy.
COPY_MIN_BYTES = 64 << 20

FULL_SETTINGS = {"sample_ms": 10.0, "case_seconds": 2.0, "min_repeat": 5, "max_repeat": 15}
QUICK_SETTINGS = {"sample_ms": 2.0, "case_seconds": 0.5, "min_repeat": 3, "max_repeat": 7}
# Calls per sample never exceed this, however fast a call is.
MAX_CALLS_PER_SAMPLE = 10_000

BASE_SEED = 20_250_601
# Standard normal logits times 3 spread a row over roughly [-13, 13]: a realistic range
# whose exponentials stay far from the subnormals that would slow some libms down.
LOGIT_SCALE = 3.0
N_CHECKED_ROWS = 64
# Loose on purpose: these catch a comparison that computes something else, not the last
# ulp (tests/ checks accuracy). The absolute part scales with the largest expected value,
# because backward passes cancel (g - <g, y>) and their small entries carry absolute error.
TOLERANCES = {"float32": (1e-3, 1e-5), "float64": (1e-7, 1e-11)}

ENVIRONMENT_VARIABLES = (
    "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "FASTSOFT_CPU_VARIANT", "XLA_FLAGS",
)


# --------------------------------------------------------------------------- helpers


@functools.cache
def import_optional(module_name):
    """``(module, None)`` if `module_name` imports, else ``(None, reason)``."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a half-built extension raises more than ImportError
        return None, f"{module_name} is not importable ({type(exc).__name__}: {exc})"
    if module_name == "jax":
        # Without x64, JAX silently computes float64 input in float32.
        module.config.update("jax_enable_x64", True)
    return module, None


def shape_label(shape):
    """``(4096, 1000)`` -> ``"4096x1000"``: the spelling used in tables and JSON.

    Examples
    --------
    >>> shape_label((4096, 1000))
    '4096x1000'
    """
    return "x".join(str(extent) for extent in shape)


def parse_shape(text):
    """``"4096x1000"`` or ``"1_000_000x10"`` -> ``(4096, 1000)``; inverse of `shape_label`.

    Raises
    ------
    ValueError
        If `text` is not two positive integers joined by ``x``.

    Examples
    --------
    >>> parse_shape("1_000_000x10")
    (1000000, 10)
    """
    parts = text.lower().split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        n_rows, n_cols = (int(part) for part in parts)
    except ValueError:
        raise ValueError(f"shape must look like ROWSxCOLS, e.g. 4096x1000, not {text!r}") from None
    if n_rows < 1 or n_cols < 1:
        raise ValueError(f"shape extents must be positive, not {text!r}")
    return n_rows, n_cols


def case_name(function, dtype, shape):
    return f"{function}-{dtype}-{shape_label(shape)}"


def _format_seconds(seconds):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _format_duration(seconds):
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# ------------------------------------------------------------- NumPy composites

def _log_sigmoid(z):
    # min(z, 0) - log1p(exp(-|z|)) never overflows.
    return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))


def _sigsoftmax_logits(z):
    return z + _log_sigmoid(z)


def _sigmoid_gain(x):
    """d(z + log sigmoid z)/dz = 2 - sigmoid(z)."""
    return 2 - np.exp(_log_sigmoid(x))


def _np_softmax(z, axis=-1):
    shifted = z - z.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def _np_log_softmax(z, axis=-1):
    shifted = z - z.max(axis=axis, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


def _np_logsumexp(z):
    row_max = z.max(axis=-1, keepdims=True)
    return np.log(np.exp(z - row_max).sum(axis=-1)) + row_max[..., 0]


def _np_softmax_backward(g, y):
    return y * (g - (g * y).sum(axis=-1, keepdims=True))


def _np_log_softmax_backward(g, o):
    return g - np.exp(o) * g.sum(axis=-1, keepdims=True)


def _np_logsumexp_backward(g, x, r):
    return g[..., None] * np.exp(x - r[..., None])


NUMPY_FUNCTIONS = {
    "softmax": _np_softmax,
    "log_softmax": _np_log_softmax,
    "logsumexp": _np_logsumexp,
    "sigsoftmax": lambda z: _np_softmax(_sigsoftmax_logits(z)),
    "log_sigsoftmax": lambda z: _np_log_softmax(_sigsoftmax_logits(z)),
    "softmax_backward": _np_softmax_backward,
    "log_softmax_backward": _np_log_softmax_backward,
    "logsumexp_backward": _np_logsumexp_backward,
    "sigsoftmax_backward": lambda g, y, x: _np_softmax_backward(g, y) * _sigmoid_gain(x),
    "log_sigsoftmax_backward": lambda g, o, x: _np_log_softmax_backward(g, o) * _sigmoid_gain(x),
    AXIS0_FUNCTION: functools.partial(_np_softmax, axis=0),
}


def _np_cross_entropy_rows(z, target, activation, grad_scale=None):
    """(per-row losses, `grad_scale` x the gradient of their sum, or None)."""
    rows = np.arange(z.shape[0])
    w = _sigsoftmax_logits(z) if activation == "sigsoftmax" else z
    shifted = w - w.max(axis=-1, keepdims=True)
    picked = shifted[rows, target]
    exps = np.exp(shifted, out=shifted)
    sum_exps = exps.sum(axis=-1)
    losses = np.log(sum_exps) - picked
    if grad_scale is None:
        return losses, None
    grad = exps
    grad *= (grad_scale / sum_exps)[:, None]
    grad[rows, target] -= grad.dtype.type(grad_scale)
    if activation == "sigsoftmax":
        grad *= _sigmoid_gain(z)
    return losses, grad


def _np_cross_entropy(z, target, activation):
    losses, grad = _np_cross_entropy_rows(z, target, activation, grad_scale=1.0 / z.shape[0])
    return losses.mean(), grad


# ------------------------------------------------------------------------ cases


def _draw(shape, dtype, stream):
    seed = np.random.SeedSequence([BASE_SEED, *shape, np.dtype(dtype).itemsize, stream])
    return np.random.default_rng(seed)


@dataclasses.dataclass
class Case:
    """The inputs of one (function, dtype, shape), its reference and its byte count."""

    function: str
    dtype: str
    shape: tuple
    arrays: dict
    n_bytes: int

    @property
    def name(self):
        return case_name(self.function, self.dtype, self.shape)


def make_case(function, dtype, shape):
    """Draw the inputs of a case (the same for the same arguments)."""
    dtype = np.dtype(dtype).name
    n_rows, n_cols = shape
    itemsize = np.dtype(dtype).itemsize
    n_elements = n_rows * n_cols
    x = _draw(shape, dtype, 0).standard_normal(shape, dtype=dtype)
    x *= LOGIT_SCALE
    arrays = {"x": x}
    if function in LOSS_FUNCTIONS:
        arrays["target"] = _draw(shape, dtype, 1).integers(0, n_cols, n_rows, dtype=np.int64)
        n_bytes = 2 * n_elements * itemsize + 8 * n_rows  # logits, targets; gradient
    elif function in BACKWARD_FUNCTIONS:
        forward = function.removesuffix("_backward")
        output = NUMPY_FUNCTIONS[forward](x.astype(np.float64)).astype(dtype)
        grad_shape = (n_rows,) if forward == "logsumexp" else shape
        arrays["g"] = _draw(shape, dtype, 2).standard_normal(grad_shape, dtype=dtype)
        arrays["output"] = output
        if forward == "logsumexp":
            n_bytes = (2 * n_elements + 2 * n_rows) * itemsize  # g, x, result; out
        elif forward.startswith(("sigsoftmax", "log_sigsoftmax")):
            n_bytes = 4 * n_elements * itemsize  # g, output, x; out
        else:
            n_bytes = 3 * n_elements * itemsize  # g, output; out
    else:
        out_elements = n_rows if function == "logsumexp" else n_elements
        n_bytes = (n_elements + out_elements) * itemsize
    return Case(function, dtype, tuple(shape), arrays, n_bytes)


def _backward_args(case):
    """The arguments of a backward function, in fastsoft's order."""
    a = case.arrays
    forward = case.function.removesuffix("_backward")
    if forward == "logsumexp":
        return a["g"], a["x"], a["output"]
    if forward in ("sigsoftmax", "log_sigsoftmax"):
        return a["g"], a["output"], a["x"]
    return a["g"], a["output"]


def _sample_rows(n_rows):
    """First, last and evenly spaced rows: cheap to check, and a wrong axis shows up."""
    return np.unique(np.linspace(0, n_rows - 1, num=min(n_rows, N_CHECKED_ROWS), dtype=np.intp))


def _compare(result, expected, dtype):
    rtol, atol_scale = TOLERANCES[dtype]
    atol = atol_scale * max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
    close = np.abs(result - expected) <= atol + rtol * np.abs(expected)
    if close.all():
        return None
    worst = np.unravel_index(np.argmax(np.abs(result - expected)), result.shape)
    return (f"{np.count_nonzero(~close)} of {close.size} checked values differ; worst at "
            f"{tuple(int(i) for i in worst)}: {float(result[worst]):.9g} vs "
            f"{float(expected[worst]):.9g}")


_REFERENCE_LOSS = {}


def _reference_loss(case):
    """float64 mean loss over every row, in blocks of rows (bounded temporaries)."""
    key = (case.name,)
    if key not in _REFERENCE_LOSS:
        _REFERENCE_LOSS.clear()
        x, target = case.arrays["x"], case.arrays["target"]
        step = max(1, (1 << 20) // x.shape[1])
        total = math.fsum(
            _np_cross_entropy_rows(x[i:i + step].astype(np.float64), target[i:i + step],
                                   LOSS_FUNCTIONS[case.function])[0].sum()
            for i in range(0, x.shape[0], step))
        _REFERENCE_LOSS[key] = total / x.shape[0]
    return _REFERENCE_LOSS[key]


def check_result(case, result, function=None):
    """None if `result` (as NumPy) is `function` (default: the case's) of the case's
    inputs, else what is wrong."""
    function, dtype, x = function or case.function, case.dtype, case.arrays["x"]
    rows = _sample_rows(x.shape[0])
    if function in LOSS_FUNCTIONS:
        loss, grad = (np.asarray(part) for part in result)
        if loss.shape != () or grad.shape != x.shape:
            return f"loss shape {loss.shape}, gradient shape {grad.shape}"
        expected_loss = _reference_loss(case)
        problem = _compare(loss.astype(np.float64), np.float64(expected_loss), dtype)
        if problem is not None:
            return f"loss: {problem}"
        # times n_rows: the gradient of a mean is 1/n_rows that of one row's loss
        _, expected = _np_cross_entropy_rows(x[rows].astype(np.float64),
                                             case.arrays["target"][rows],
                                             LOSS_FUNCTIONS[function], grad_scale=1.0)
        problem = _compare(grad[rows].astype(np.float64) * x.shape[0], expected, dtype)
        return None if problem is None else f"gradient x n_rows: {problem}"
    result = np.asarray(result)
    if function == "copy":
        return None if np.array_equal(result[rows], x[rows]) else "the copy differs"
    expected_shape = (x.shape[0],) if function == "logsumexp" else x.shape
    if function == "logsumexp_backward":
        expected_shape = x.shape
    if result.shape != expected_shape or result.dtype != x.dtype:
        return (f"{result.dtype} {result.shape}, expected {x.dtype} {expected_shape}")
    if function == AXIS0_FUNCTION:
        columns = _sample_rows(x.shape[1])
        expected = _np_softmax(x[:, columns].astype(np.float64), axis=0)
        return _compare(result[:, columns].astype(np.float64), expected, dtype)
    if function in BACKWARD_FUNCTIONS:
        args = [arg[rows].astype(np.float64) for arg in _backward_args(case)]
        expected = NUMPY_FUNCTIONS[function](*args)
    else:
        expected = NUMPY_FUNCTIONS[function](x[rows].astype(np.float64))
    return _compare(result[rows].astype(np.float64), expected, dtype)


# ------------------------------------------------------------------ contenders


@dataclasses.dataclass
class Contender:
    """One implementation at one thread count: a zero-argument timed call and its samples.

    ``call`` is the whole timed operation; ``scope`` sets a process-wide thread count
    around a sample (outside the clock); ``refresh``, when set, runs untimed before every
    call (for a call that overwrites its input); ``to_numpy`` turns the result into what
    `check_result` takes.
    """

    library: str
    call: Callable
    threads: int = 1
    threaded: bool = False
    variant: str = ""
    # checked as this function of the case's input instead of the case's own ("copy")
    checked_as: str | None = None
    scope: Callable = contextlib.nullcontext
    refresh: Callable | None = None
    to_numpy: Callable = None
    calls_per_sample: int = 1
    call_seconds: float = 0.0
    samples: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.to_numpy is None:
            self.to_numpy = _as_numpy

    @property
    def label(self):
        name = f"{self.library}-{self.variant}" if self.variant else self.library
        return f"{name}-t{self.threads}" if self.threaded else name


def _as_numpy(result):
    """A result, or a (loss, gradient) pair, as NumPy."""
    if isinstance(result, tuple):
        return tuple(np.asarray(part) for part in result)
    return np.asarray(result)


@contextlib.contextmanager
def _gc_paused():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _time_calls(contender, n_calls):
    """Seconds per call over `n_calls` calls, back to back or, with a refresh, one by one."""
    call, refresh = contender.call, contender.refresh
    with contender.scope(), _gc_paused():
        if refresh is None:
            start = time.perf_counter()
            for _ in range(n_calls):
                call()
            return (time.perf_counter() - start) / n_calls
        elapsed = 0.0
        for _ in range(n_calls):
            refresh()
            start = time.perf_counter()
            call()
            elapsed += time.perf_counter() - start
        return elapsed / n_calls


def _first_call(contender):
    """(result as NumPy, seconds) of the checked call, which is also the warm-up."""
    if contender.refresh is not None:
        contender.refresh()
    with contender.scope(), _gc_paused():
        start = time.perf_counter()
        result = contender.call()
        seconds = time.perf_counter() - start
    return contender.to_numpy(result), seconds


def _calibrate(contender, first_call_s, sample_s):
    """Calls per sample so that a sample lasts at least `sample_s`.

    A call slower than a sample, even cold, needs no more calibration calls (they would
    dominate a --quick run); a faster one is timed three more times, warm.
    """
    if first_call_s >= sample_s:
        contender.calls_per_sample, contender.call_seconds = 1, first_call_s
        return
    one_call = min(_time_calls(contender, 1) for _ in range(3))
    contender.call_seconds = one_call
    contender.calls_per_sample = max(
        1, min(MAX_CALLS_PER_SAMPLE, math.ceil(sample_s / max(one_call, 1e-9))))


def _fastsoft_contenders(case, thread_counts):
    fs, reason = import_optional("fastsoft")
    if fs is None:
        return reason
    a, function = case.arrays, case.function
    contenders = []
    for n in thread_counts:
        common = {"library": "fastsoft", "threads": n, "threaded": True}
        if function in LOSS_FUNCTIONS:
            activation = LOSS_FUNCTIONS[function]
            x, target = a["x"], a["target"]
            buffer = np.empty_like(x)
            contenders.append(Contender(call=functools.partial(
                fs.cross_entropy, x, target, activation=activation, return_grad=True,
                num_threads=n), **common))
            contenders.append(Contender(
                call=functools.partial(fs.cross_entropy, buffer, target, activation=activation,
                                       return_grad=True, grad_out=buffer, num_threads=n),
                variant="inplace", refresh=functools.partial(np.copyto, buffer, x), **common))
        elif function == AXIS0_FUNCTION:
            x = a["x"]
            contenders.append(Contender(
                call=functools.partial(fs.softmax, x, axis=0, num_threads=n), **common))
            transposed = a.setdefault("x_transposed", np.ascontiguousarray(x.T))
            contenders.append(Contender(
                call=functools.partial(fs.softmax, transposed, axis=-1, num_threads=n),
                variant="lastaxis", to_numpy=lambda r: np.asarray(r).T, **common))
        elif function in BACKWARD_FUNCTIONS:
            contenders.append(Contender(call=functools.partial(
                getattr(fs, function), *_backward_args(case), axis=-1, num_threads=n), **common))
        else:
            # the call as users write it (axis=-1 is the default): tiny calls take
            # fastsoft's small-call entry
            contenders.append(Contender(call=functools.partial(
                getattr(fs, function), a["x"], num_threads=n), **common))
            if function == "softmax" and a["x"].nbytes >= COPY_MIN_BYTES:
                # next to the memory copy, which writes into a preallocated array too:
                # without the page faults of a fresh 256 MiB result
                destination = np.empty_like(a["x"])
                contenders.append(Contender(call=functools.partial(
                    fs.softmax, a["x"], out=destination, num_threads=n), variant="out",
                    **common))
    return contenders


def _numpy_contenders(case, thread_counts):
    a, function = case.arrays, case.function
    if function in LOSS_FUNCTIONS:
        call = functools.partial(_np_cross_entropy, a["x"], a["target"], LOSS_FUNCTIONS[function])
    elif function in BACKWARD_FUNCTIONS:
        call = functools.partial(NUMPY_FUNCTIONS[function], *_backward_args(case))
    else:
        call = functools.partial(NUMPY_FUNCTIONS[function], a["x"])
    return [Contender("numpy", call)]


def _scipy_contenders(case, thread_counts):
    special, reason = import_optional("scipy.special")
    if special is None:
        return reason
    x, function = case.arrays["x"], case.function
    if function in BACKWARD_FUNCTIONS or function in LOSS_FUNCTIONS:
        return []  # scipy.special has neither
    calls = {
        "sigsoftmax": lambda: special.softmax(x + special.log_expit(x), axis=-1),
        "log_sigsoftmax": lambda: special.log_softmax(x + special.log_expit(x), axis=-1),
        AXIS0_FUNCTION: functools.partial(special.softmax, x, axis=0),
    }
    call = calls.get(function) or functools.partial(getattr(special, function), x, axis=-1)
    return [Contender("scipy", call)]


def _torch_thread_scope(torch, n):
    @contextlib.contextmanager
    def scope():
        previous = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    return scope


def _torch_call(torch, case):
    """The timed call of PyTorch's own kernels, or its usual composite, on shared memory."""
    F = torch.nn.functional
    function = case.function
    t = {name: torch.from_numpy(array) for name, array in case.arrays.items()}
    x = t["x"]
    if function in LOSS_FUNCTIONS:
        leaf = torch.from_numpy(case.arrays["x"]).requires_grad_(True)
        target = t["target"]
        sig = LOSS_FUNCTIONS[function] == "sigsoftmax"

        def forward_backward():
            # as zero_grad(set_to_none=True) between steps: a fresh gradient each call
            loss = F.cross_entropy(2 * leaf - F.softplus(leaf) if sig else leaf, target)
            loss.backward()
            grad, leaf.grad = leaf.grad, None
            return loss, grad

        return forward_backward
    if function == AXIS0_FUNCTION:
        return functools.partial(torch.softmax, x, dim=0)
    if function in ("sigsoftmax", "log_sigsoftmax"):
        normalize = torch.softmax if function == "sigsoftmax" else torch.log_softmax
        return lambda: normalize(2 * x - F.softplus(x), dim=-1)
    if function in FORWARD_FUNCTIONS:
        return functools.partial(getattr(torch, function), x, dim=-1)
    g, output, dtype = t.get("g"), t.get("output"), x.dtype
    # the kernels autograd itself runs for these two
    softmax_vjp = functools.partial(torch._softmax_backward_data, g, output, -1, dtype)
    log_softmax_vjp = functools.partial(torch._log_softmax_backward_data, g, output, -1, dtype)
    return {
        "softmax_backward": softmax_vjp,
        "log_softmax_backward": log_softmax_vjp,
        "logsumexp_backward": lambda: g.unsqueeze(-1) * torch.exp(x - output.unsqueeze(-1)),
        "sigsoftmax_backward": lambda: softmax_vjp() * (2 - torch.sigmoid(x)),
        "log_sigsoftmax_backward": lambda: log_softmax_vjp() * (2 - torch.sigmoid(x)),
    }[function]


def _torch_to_numpy(result):
    if isinstance(result, tuple):
        return tuple(part.detach().numpy() for part in result)
    return result.detach().numpy()


def _torch_contenders(case, thread_counts):
    torch, reason = import_optional("torch")
    if torch is None:
        return reason
    call = _torch_call(torch, case)
    return [Contender("torch", call, threads=n, threaded=True,
                      scope=_torch_thread_scope(torch, n), to_numpy=_torch_to_numpy)
            for n in thread_counts]


def _jax_function(jax, function):
    jnp, nn = jax.numpy, jax.nn
    if function in LOSS_FUNCTIONS:
        sig = LOSS_FUNCTIONS[function] == "sigsoftmax"

        def loss(z, target):
            w = 2 * z - nn.softplus(z) if sig else z
            picked = jnp.take_along_axis(nn.log_softmax(w, axis=-1), target[:, None], axis=-1)
            return -picked.mean()

        return jax.value_and_grad(loss)

    def gain(x):
        return 2 - nn.sigmoid(x)

    def softmax_vjp(g, y):
        return y * (g - (g * y).sum(axis=-1, keepdims=True))

    def log_softmax_vjp(g, o):
        return g - jnp.exp(o) * g.sum(axis=-1, keepdims=True)

    return {
        "softmax": functools.partial(nn.softmax, axis=-1),
        "log_softmax": functools.partial(nn.log_softmax, axis=-1),
        "logsumexp": functools.partial(nn.logsumexp, axis=-1),
        "sigsoftmax": lambda z: nn.softmax(2 * z - nn.softplus(z), axis=-1),
        "log_sigsoftmax": lambda z: nn.log_softmax(2 * z - nn.softplus(z), axis=-1),
        AXIS0_FUNCTION: functools.partial(nn.softmax, axis=0),
        "softmax_backward": softmax_vjp,
        "log_softmax_backward": log_softmax_vjp,
        "logsumexp_backward": lambda g, x, r: g[:, None] * jnp.exp(x - r[:, None]),
        "sigsoftmax_backward": lambda g, y, x: softmax_vjp(g, y) * gain(x),
        "log_sigsoftmax_backward": lambda g, o, x: log_softmax_vjp(g, o) * gain(x),
    }[function]


def _jax_contenders(case, thread_counts):
    jax, reason = import_optional("jax")
    if jax is None:
        return reason
    function = case.function
    compiled = jax.jit(_jax_function(jax, function))
    if function in LOSS_FUNCTIONS:
        host_args = (case.arrays["x"], case.arrays["target"])
    elif function in BACKWARD_FUNCTIONS:
        host_args = _backward_args(case)
    else:
        host_args = (case.arrays["x"],)
    args = [jax.device_put(arg) for arg in host_args]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def call():
        return jax.block_until_ready(compiled(*args))

    # XLA sizes its own thread pool (every usable core); it has no per-call setting.
    return [Contender("jax", call, threads=usable or 1)]


class _ThreadedCopy:
    """``np.copyto`` split by rows over a pool of threads (it releases the GIL)."""

    def __init__(self, source, n_threads):
        self.destination = np.empty_like(source)
        bounds = np.linspace(0, source.shape[0], n_threads + 1).astype(int)
        self.parts = [(self.destination[lo:hi], source[lo:hi])
                      for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
        self.pool = concurrent.futures.ThreadPoolExecutor(n_threads)

    def __call__(self):
        for future in [self.pool.submit(np.copyto, *part) for part in self.parts]:
            future.result()
        return self.destination


def _copy_contenders(case, thread_counts):
    x = case.arrays["x"]
    destination = np.empty_like(x)

    def copy():
        np.copyto(destination, x)
        return destination

    contenders = [Contender("copy", copy, variant="numpy", checked_as="copy")]
    for n in thread_counts:
        if n > 1:
            contenders.append(Contender("copy", _ThreadedCopy(x, n), threads=n, threaded=True,
                                        variant="threads", checked_as="copy"))
    return contenders


_BUILDERS = {
    "fastsoft": _fastsoft_contenders,
    "numpy": _numpy_contenders,
    "scipy": _scipy_contenders,
    "torch": _torch_contenders,
    "jax": _jax_contenders,
}


def build_contenders(case, libraries=LIBRARIES, threads=THREAD_COUNTS, copy=False):
    """Every available contender of `case`.

    Parameters
    ----------
    case : Case
        From `make_case`.
    libraries : sequence of str
        Which of `LIBRARIES` to include; the absent ones are reported, not raised.
    threads : sequence of int
        Thread counts for fastsoft and torch (and the threaded copy).
    copy : bool
        Add the memory-copy contenders to a softmax case of any size (they join one of
        at least `COPY_MIN_BYTES` anyway).

    Returns
    -------
    tuple
        (list of `Contender`, {library: reason it is left out}).
    """
    contenders, skipped = [], {}
    for library, build in _BUILDERS.items():
        if library not in libraries:
            continue
        built = build(case, threads)
        if isinstance(built, str):
            skipped[library] = built
        else:
            contenders += built
    if ("copy" in libraries and case.function == "softmax"
            and (copy or case.arrays["x"].nbytes >= COPY_MIN_BYTES)):
        contenders += _copy_contenders(case, threads)
    return contenders, skipped


# ------------------------------------------------------------------------ running


class ProgressBar:
    """A one-line progress bar on a terminal; silent when disabled.

    Parameters
    ----------
    total : int
        Number of cases.
    stream : file-like
        Where to draw (stderr).
    enabled : bool
        Draw at all; `write` messages are printed either way.
    """

    def __init__(self, total, stream, enabled):
        self.total, self.stream, self.enabled = total, stream, enabled
        self.started = time.perf_counter()
        self.shown = False

    def update(self, done, label):
        """`done` cases finished (fractional within the current one)."""
        if not self.enabled:
            return
        width = shutil.get_terminal_size((80, 20)).columns - 1
        fraction = min(done / max(self.total, 1), 1.0)
        elapsed = time.perf_counter() - self.started
        left = f"{_format_duration(elapsed / fraction * (1 - fraction))} left" if fraction > 0.02 \
            else "..."
        bar_width = 20
        filled = int(round(fraction * bar_width))
        text = (f"[{'#' * filled}{'.' * (bar_width - filled)}] {int(done)}/{self.total} "
                f"{left}  {label}")
        self.stream.write("\r" + text[:width].ljust(width))
        self.stream.flush()
        self.shown = True

    def write(self, message):
        if self.shown:
            self.stream.write("\r" + " " * (shutil.get_terminal_size((80, 20)).columns - 1) + "\r")
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self):
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


def run_case(case, settings, progress, done):
    """Check, calibrate, then time every contender of `case`, interleaved.

    Returns
    -------
    tuple
        (result rows, mismatch records, {library: reason skipped}).
    """
    contenders, skipped = build_contenders(case, settings.libraries, settings.threads,
                                           settings.copy)
    mismatches, checked = [], []
    for contender in contenders:
        try:
            result, first_call_s = _first_call(contender)
            problem = check_result(case, result, contender.checked_as)
        except Exception as exc:  # a library that rejects the call is a mismatch too
            problem, first_call_s = f"{type(exc).__name__}: {exc}", 0.0
        result = None
        if problem is not None:
            progress.write(f"MISMATCH {case.name}: {contender.label}: {problem}; not timed")
            mismatches.append({"case": case.name, "implementation": contender.label,
                               "problem": problem})
            continue
        _calibrate(contender, first_call_s, settings.sample_ms / 1e3)
        checked.append(contender)

    if settings.repeat is not None:
        repeat = settings.repeat
    else:
        per_repetition = sum(c.calls_per_sample * c.call_seconds for c in checked) or 1e-9
        repeat = min(settings.max_repeat,
                     max(settings.min_repeat, math.ceil(settings.case_seconds / per_repetition)))
    for repetition in range(repeat):
        progress.update(done + repetition / repeat, case.name)
        start = repetition % max(len(checked), 1)
        for contender in checked[start:] + checked[:start]:
            contender.samples.append(_time_calls(contender, contender.calls_per_sample))

    medians = {c.label: statistics.median(c.samples) for c in checked}
    rows = []
    for contender in checked:
        median = medians[contender.label]
        ratios = {}
        for n in settings.threads:
            baseline = medians.get(f"fastsoft-t{n}")
            ratios[f"t{n}"] = None if baseline is None else median / baseline
        rows.append({
            "function": case.function, "dtype": case.dtype, "shape": shape_label(case.shape),
            "implementation": contender.library + (f"-{contender.variant}"
                                                   if contender.variant else ""),
            "label": contender.label, "threads": contender.threads,
            "median_s": median, "gb_per_s": case.n_bytes / median / 1e9,
            "ratio_to_fastsoft": ratios, "bytes_moved": case.n_bytes,
            "calls_per_sample": contender.calls_per_sample, "repeat": repeat,
            "samples_s": list(contender.samples),
        })
    return rows, mismatches, skipped


# --------------------------------------------------------------------- acceptance

# (functions, shapes, other label, minimum of other median / fastsoft-t2 median), for
# float32 and float64 alike. The cross-entropies are compared with fastsoft's fresh
# gradient (return_grad=True), not the in-place variant, as torch returns a new one too.
_SPEEDUP_CRITERIA = [
    (("softmax", "log_softmax", "logsumexp"), ((4096, 1000), (64, 50257), (8, 1_000_000)),
     "torch-t2", 1.5),
    (("softmax", "log_softmax", "logsumexp"), ((1_000_000, 10), (1, 1000)), "torch-t2", 2.5),
    (("softmax", "log_softmax", "logsumexp"), ((4096, 1000),), "scipy", 10.0),
    (("sigsoftmax", "log_sigsoftmax", *LOSS_FUNCTIONS), SHAPES, "torch-t2", 3.0),
]
# (function, shapes, dtypes, fastsoft label, reference labels, bound): that fastsoft
# median over the fastest reference's must not exceed the bound.  The memory-bound case
# compares like with like: softmax into a preallocated `out` against copies into a
# preallocated array.
_WITHIN_CRITERIA = [
    ("softmax", (MEMORY_SHAPE,), ("float32",), "fastsoft-out-t2",
     ("copy-numpy", "copy-threads-t2"), 1.5),
    (AXIS0_FUNCTION, (AXIS0_SHAPE,), DTYPES, "fastsoft-t2", ("fastsoft-lastaxis-t2",), 1.5),
]


def acceptance(rows):
    """The performance issue's acceptance ratios on the cases that were run.

    Returns
    -------
    list of dict
        One record per (criterion, case) with the ratio, the bound and ``passed``.
    """
    medians = {}
    for row in rows:
        medians.setdefault((row["function"], row["dtype"], row["shape"]), {})[row["label"]] = \
            row["median_s"]
    records = []
    for (function, dtype, shape), by_label in medians.items():
        fastsoft = by_label.get("fastsoft-t2")
        if fastsoft is None:
            continue
        for functions, shapes, other, bound in _SPEEDUP_CRITERIA:
            if function in functions and shape in map(shape_label, shapes) and other in by_label:
                ratio = by_label[other] / fastsoft
                records.append({"case": f"{function}-{dtype}-{shape}",
                                "statement": f"{other} / fastsoft-t2 >= {bound:g}",
                                "ratio": ratio, "bound": bound, "passed": ratio >= bound})
        for crit_function, shapes, dtypes, label, others, bound in _WITHIN_CRITERIA:
            present = [other for other in others if other in by_label]
            if (function != crit_function or dtype not in dtypes or not present
                    or label not in by_label or shape not in map(shape_label, shapes)):
                continue
            best = min(present, key=by_label.get)
            ratio = by_label[label] / by_label[best]
            records.append({"case": f"{function}-{dtype}-{shape}",
                            "statement": f"{label} / {best} <= {bound:g}",
                            "ratio": ratio, "bound": bound, "passed": ratio <= bound})
    return records


# ------------------------------------------------------------------------ reports


def _cpuinfo_value(*keys):
    """The value of the first /proc/cpuinfo line whose key is one of `keys`: "" when no
    line has one, None where the file cannot be read (not Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in keys:
                return value.strip()
        return ""
    return None


def _cpu_model():
    return _cpuinfo_value("model name") or platform.processor() or "unknown"


# The vector instruction sets that decide which kernels the libraries run (fastsoft's
# variant, PyTorch's and NumPy's dispatch), in the order the report lists them.
VECTOR_ISA_FLAGS = ("sse2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw",
                    "avx512vl", "avx512_bf16", "avx512_fp16", "amx_tile", "asimd", "sve")


def _vector_isa():
    """The VECTOR_ISA_FLAGS the CPU reports (Linux's /proc/cpuinfo flags or Features
    line), or None where that file is not there to read."""
    flags = _cpuinfo_value("flags", "Features")
    if flags is None:
        return None
    present = set(flags.split())
    return [flag for flag in VECTOR_ISA_FLAGS if flag in present]


def _torch_cpu_capability(libraries):
    """PyTorch's choice of CPU kernels (e.g. AVX2, AVX512), when torch is in the run."""
    if "torch" not in libraries:
        return None
    torch, _ = import_optional("torch")
    capability = getattr(getattr(getattr(torch, "backends", None), "cpu", None),
                         "get_cpu_capability", None)
    return capability() if capability is not None else None


def _fastsoft_config():
    fs, _ = import_optional("fastsoft")
    if fs is None or not hasattr(fs, "show_config"):
        return None
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        fs.show_config()
    return captured.getvalue().rstrip()


def _versions(libraries):
    versions = {}
    for name in ("fastsoft", "numpy", "scipy", "torch", "jax"):
        if name in libraries or name == "numpy":
            module, _ = import_optional(name)
            if module is not None:
                versions[name] = getattr(module, "__version__", "unknown")
    return versions


def _threadpools():
    threadpoolctl, _ = import_optional("threadpoolctl")
    if threadpoolctl is None:
        return []
    return [{key: info.get(key) for key in ("user_api", "internal_api", "filepath", "version",
                                             "num_threads")}
            for info in threadpoolctl.threadpool_info()]


def environment(settings, argv):
    """What the report's header and the JSON record about the machine and the run."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m fastsoft bench", *argv]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "vector_isa": _vector_isa(),
        "torch_cpu_capability": _torch_cpu_capability(settings.libraries),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "versions": _versions(settings.libraries),
        "fastsoft_config": _fastsoft_config(),
        "environment_variables": {name: os.environ[name] for name in ENVIRONMENT_VARIABLES
                                  if name in os.environ},
        "threadpools": _threadpools(),
        "settings": {key: value for key, value in vars(settings).items() if key != "cases"},
    }


def to_markdown(rows, mismatches, skipped, records, env, thread_counts):
    """The report: header, one table row per contender and case, then the acceptance lines."""
    s = env["settings"]
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    repeat = (f"{s['repeat']} repetitions" if s["repeat"] is not None else
              f"{s['min_repeat']}-{s['max_repeat']} repetitions (~{s['case_seconds']:g} s a case)")
    lines = [
        "# fastsoft benchmark",
        "",
        f"- {env['date']}: `{env['command']}`",
        f"- {env['cpu']}, {env['usable_cpus']} usable of {env['cpu_count']} CPUs; "
        f"Python {env['python']}; {versions}",
        f"- interleaved, {repeat}, samples of >= {s['sample_ms']:g} ms; numpy and scipy "
        "run on one thread, jax on XLA's own pool",
    ]
    if env.get("vector_isa") is not None:
        isa = " ".join(env["vector_isa"]) or "none of " + " ".join(VECTOR_ISA_FLAGS)
        torch_kernels = (f"; PyTorch's CPU kernels: {env['torch_cpu_capability']}"
                         if env.get("torch_cpu_capability") else "")
        lines.append(f"- vector ISA: {isa}{torch_kernels}")
    if env["environment_variables"]:
        lines.append("- environment: " + ", ".join(
            f"{k}={v}" for k, v in env["environment_variables"].items()))
    for library, reason in skipped.items():
        lines.append(f"- {library} left out: {reason}")
    if env["fastsoft_config"]:
        lines += ["", "```", env["fastsoft_config"], "```"]
    columns = [f"t{n}" for n in thread_counts]
    lines += [
        "",
        "Median time per call; GB/s = (bytes read + bytes written) / median; "
        "`/ fastsoft tN` = this median / fastsoft's median with N threads, same run "
        "(> 1: fastsoft is faster).",
        "",
        "| function | dtype | shape | implementation | threads | median | GB/s | "
        + " | ".join(f"/ fastsoft {c}" for c in columns) + " |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in columns)
        + " |",
    ]
    for row in rows:
        ratios = [row["ratio_to_fastsoft"].get(c) for c in columns]
        lines.append(
            f"| {row['function']} | {row['dtype']} | {row['shape']} | {row['label']} | "
            f"{row['threads']} | {_format_seconds(row['median_s'])} | {row['gb_per_s']:.2f} | "
            + " | ".join("-" if r is None else f"{r:.2f}" for r in ratios) + " |")
    if mismatches:
        lines += ["", "## Mismatches (not timed)", ""]
        lines += [f"- {m['case']}: {m['implementation']}: {m['problem']}" for m in mismatches]
    if records:
        passed = sum(record["passed"] for record in records)
        lines += ["", f"## Acceptance ratios of the performance issue: {passed} of "
                  f"{len(records)} pass", "", "```"]
        lines += [f"{'PASS' if r['passed'] else 'FAIL'}  {r['case']:<42} {r['statement']:<36} "
                  f"{r['ratio']:.2f}" for r in records]
        lines.append("```")
    return "\n".join(lines) + "\n"


def plot(rows, path, thread_counts):
    """Write a PNG of fastsoft's speed-up over every other contender, per shape.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")  # files only: never open a window
    pyplot = importlib.import_module("matplotlib.pyplot")
    baseline = f"t{max(thread_counts)}"
    functions = list(dict.fromkeys(row["function"] for row in rows))
    every_label = list(dict.fromkeys(r["label"] for r in rows
                                     if r["label"] != f"fastsoft-{baseline}"))
    palette = pyplot.get_cmap("tab20")
    colors = {label: palette(i % 20) for i, label in enumerate(every_label)}
    fig, axes = pyplot.subplots(len(functions), 1, squeeze=False, layout="constrained",
                                figsize=(11, 2.6 * len(functions) + 0.8))
    for ax, function in zip(axes[:, 0], functions):
        selected = [r for r in rows if r["function"] == function
                    and r["ratio_to_fastsoft"].get(baseline) is not None
                    and r["label"] != f"fastsoft-{baseline}"]
        groups = list(dict.fromkeys(f"{r['shape']}\n{r['dtype']}" for r in selected))
        labels = list(dict.fromkeys(r["label"] for r in selected))
        width = 0.8 / max(len(labels), 1)
        for index, label in enumerate(labels):
            values = {f"{r['shape']}\n{r['dtype']}": r["ratio_to_fastsoft"][baseline]
                      for r in selected if r["label"] == label}
            xs = [g + (index - (len(labels) - 1) / 2) * width for g in range(len(groups))
                  if groups[g] in values]
            ax.bar(xs, [values[g] for g in groups if g in values], width, label=label,
                   color=colors[label])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(groups)), groups, fontsize=8)
        ax.set_title(function, fontsize=10)
        ax.set_ylabel(f"median / fastsoft-{baseline}", fontsize=8)
        if labels:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"Speed-up of fastsoft with {max(thread_counts)} threads "
                 "(> 1: fastsoft is faster)")
    fig.savefig(path, dpi=110)
    pyplot.close(fig)


# --------------------------------------------------------------------- options


def _words(values):
    """Accept both ``--x a b`` and ``--x a,b``."""
    return [word for value in values for word in value.split(",") if word]


def _choices(parser, values, allowed, what):
    words = _words(values)
    unknown = [word for word in words if word not in allowed]
    if unknown:
        parser.error(f"unknown {what} {', '.join(map(repr, unknown))}; "
                     f"choose from {', '.join(allowed)}")
    return list(dict.fromkeys(words))


def build_parser(prog=None):
    """The command-line interface of ``python -m fastsoft bench``."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m fastsoft bench",
        description="Time fastsoft against NumPy, scipy.special, PyTorch (1 and 2 threads) "
        "and JAX, whichever are installed, in one process with interleaved repetitions; "
        "print a Markdown table of medians, GB/s and ratios.",
    )
    parser.add_argument("--functions", nargs="+", metavar="NAME",
                        help="functions to time, or 'all' (default: the forward functions, "
                        "cross_entropy, sigsoftmax_cross_entropy and softmax_axis0; with "
                        f"--quick: {', '.join(QUICK_FUNCTIONS)}); any of {', '.join(FUNCTIONS)}")
    parser.add_argument("--dtypes", nargs="+", metavar="DTYPE",
                        help="float32 and/or float64 (default: both; float32 with --quick)")
    parser.add_argument("--shapes", nargs="+", metavar="ROWSxCOLS",
                        help="shapes, e.g. 4096x1000 1_000_000x10 (default: "
                        f"{' '.join(map(shape_label, SHAPES))}, plus softmax float32 on "
                        f"{shape_label(MEMORY_SHAPE)} and softmax_axis0 on "
                        f"{shape_label(AXIS0_SHAPE)}; with --quick: "
                        f"{' '.join(map(shape_label, QUICK_SHAPES))})")
    parser.add_argument("--libraries", nargs="+", metavar="NAME", default=list(LIBRARIES),
                        help=f"implementations to include (default: all of {', '.join(LIBRARIES)}"
                        "; absent ones are skipped)")
    parser.add_argument("--threads", nargs="+", default=[str(n) for n in THREAD_COUNTS],
                        metavar="N", help="thread counts for fastsoft and torch (default: 1 2)")
    parser.add_argument("--repeat", type=int,
                        help="repetitions per case (default: chosen per case, "
                        f"{FULL_SETTINGS['min_repeat']}-{FULL_SETTINGS['max_repeat']}, "
                        f"{QUICK_SETTINGS['min_repeat']}-{QUICK_SETTINGS['max_repeat']} "
                        "with --quick)")
    parser.add_argument("--case-seconds", type=float,
                        help="time budget per case when --repeat is not given (default: "
                        f"{FULL_SETTINGS['case_seconds']:g}, {QUICK_SETTINGS['case_seconds']:g}"
                        " with --quick)")
    parser.add_argument("--sample-ms", type=float,
                        help="minimum length of one timed sample in ms (default: "
                        f"{FULL_SETTINGS['sample_ms']:g}, {QUICK_SETTINGS['sample_ms']:g} "
                        "with --quick)")
    parser.add_argument("--copy", action="store_true",
                        help="also time a memory copy of the input in every softmax case "
                        f"(always done from {COPY_MIN_BYTES >> 20} MiB up)")
    parser.add_argument("--quick", action="store_true",
                        help="a first look in under a minute; explicit options still win")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument("--markdown", type=Path, metavar="PATH",
                        help="also write the Markdown report to PATH")
    parser.add_argument("--plot", type=Path, metavar="PATH",
                        help="also write a PNG of speed-ups per shape (needs matplotlib)")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 3 when an acceptance ratio fails (a "
                        "measurement on a noisy machine, not a test)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (also off when stderr is not a terminal)")
    return parser


def parse_args(argv=None, prog=None):
    """Parse and validate the options; unknown names exit with status 2 and a message."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    defaults = QUICK_SETTINGS if args.quick else FULL_SETTINGS
    for key in ("sample_ms", "case_seconds"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    args.min_repeat, args.max_repeat = defaults["min_repeat"], defaults["max_repeat"]
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.sample_ms <= 0 or args.case_seconds <= 0:
        parser.error("--sample-ms and --case-seconds must be positive")

    functions = None
    if args.functions is not None:
        words = _words(args.functions)
        functions = list(FUNCTIONS) if words == ["all"] else _choices(
            parser, args.functions, FUNCTIONS, "function")
    args.dtypes = None if args.dtypes is None else _choices(parser, args.dtypes, DTYPES, "dtype")
    args.libraries = _choices(parser, args.libraries, LIBRARIES, "library")
    try:
        shapes = None if args.shapes is None else [parse_shape(w) for w in _words(args.shapes)]
        args.threads = list(dict.fromkeys(int(w) for w in _words(args.threads)))
    except ValueError as exc:
        parser.error(str(exc))
    if any(n < 1 for n in args.threads):
        parser.error("--threads must be positive")
    args.cases = plan(functions, args.dtypes, shapes, args.quick)
    args.functions = list(dict.fromkeys(function for function, _, _ in args.cases))
    return args


def plan(functions=None, dtypes=None, shapes=None, quick=False):
    """The (function, dtype, shape) cases to run, grouped by shape.

    Explicit shapes apply to every function named. Without them, every function runs on
    the issue's shapes (the quick subset with `quick`), softmax float32 also on the
    memory-bound shape and softmax_axis0 on its own shape.

    Examples
    --------
    >>> plan(["softmax"], ["float32"], [(2, 3)])
    [('softmax', 'float32', (2, 3))]
    """
    explicit_functions = functions is not None
    functions = list(functions or (QUICK_FUNCTIONS if quick else DEFAULT_FUNCTIONS))
    dtypes = list(dtypes or (("float32",) if quick else DTYPES))
    if shapes is not None:
        return [(f, d, tuple(s)) for s in shapes for d in dtypes for f in functions]
    cases = [(f, d, s) for s in (QUICK_SHAPES if quick else SHAPES) for d in dtypes
             for f in functions if f != AXIS0_FUNCTION]
    if "softmax" in functions and "float32" in dtypes and not quick:
        cases.append(("softmax", "float32", MEMORY_SHAPE))
    if AXIS0_FUNCTION in functions and (explicit_functions or not quick):
        cases += [(AXIS0_FUNCTION, d, AXIS0_SHAPE) for d in dtypes]
    return cases


def run(settings, progress):
    """Run every planned case; returns (rows, mismatches, {library: reason skipped})."""
    rows, mismatches, skipped = [], [], {}
    for index, (function, dtype, shape) in enumerate(settings.cases):
        progress.update(index, case_name(function, dtype, shape))
        case = make_case(function, dtype, shape)
        case_rows, case_mismatches, case_skipped = run_case(case, settings, progress, index)
        rows += case_rows
        mismatches += case_mismatches
        for library, reason in case_skipped.items():
            skipped.setdefault(library, reason)
        del case  # the big shapes' inputs go before the next case's are drawn
    progress.update(len(settings.cases), "done")
    return rows, mismatches, skipped


def main(argv=None, prog=None):
    """Run the comparison from the command line (``python -m fastsoft bench``).

    Parameters
    ----------
    argv : list of str, optional
        The options (default: ``sys.argv[1:]``); ``--help`` lists them.
    prog : str, optional
        Program name shown in usage messages.

    Returns
    -------
    int
        0; 1 when a contender computed something else (it is listed, not timed); 3 with
        ``--check`` when an acceptance ratio fails. Invalid options exit with status 2.

    Notes
    -----
    The Markdown report goes to stdout at the end; the progress bar and messages go to
    stderr. See the module docstring for how the timing works.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    settings = parse_args(argv, prog)
    if "fastsoft" not in settings.libraries:
        print("error: --libraries must include fastsoft (every ratio is against it)",
              file=sys.stderr)
        return 2
    fs, reason = import_optional("fastsoft")
    if fs is None:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    if settings.plot is not None and import_optional("matplotlib")[0] is None:
        print("error: --plot needs matplotlib (pip install matplotlib, or "
              "pip install 'fastsoft[plot]')", file=sys.stderr)
        return 2

    env = environment(settings, argv)
    progress = ProgressBar(len(settings.cases), sys.stderr,
                           enabled=not settings.no_progress and sys.stderr.isatty())
    started = time.perf_counter()
    try:
        rows, mismatches, skipped = run(settings, progress)
    finally:
        progress.close()
    env["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(f"done in {_format_duration(env['elapsed_s'])}", file=sys.stderr)

    records = acceptance(rows)
    report = to_markdown(rows, mismatches, skipped, records, env, settings.threads)
    print(report, end="")
    if settings.markdown is not None:
        settings.markdown.write_text(report, encoding="utf-8")
    if settings.json is not None:
        document = {"environment": env, "skipped": skipped, "results": rows,
                    "mismatches": mismatches, "acceptance": records}
        settings.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if settings.plot is not None and rows:
        plot(rows, settings.plot, settings.threads)
    if mismatches:
        return 1
    if settings.check and not all(record["passed"] for record in records):
        return 3
    return 0
