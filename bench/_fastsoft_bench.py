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
5. Cross-entropy (mean over rows of integer-target losses, optionally with its gradient)
   has its own registry, ``LOSS_IMPLEMENTATIONS``: a call takes logits *and* targets, so
   an implementation turns a ``LossProblem`` into its state (``to_native``, untimed) and
   ``loss_kernel(activation, with_grad, n_threads)`` is the one-argument timed call. The
   loss is a mean over all rows, so it is checked against a float64 reference of the
   whole batch, computed in blocks of rows; the gradient on a sample of rows. Only one
   problem is cached at a time: the 8192x32000 float32 logits alone are 1 GiB.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import weakref

import numpy as np

FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "sigsoftmax", "log_sigsoftmax")
DTYPES = ("float32", "float64")
SHAPES = ((1, 1000), (256, 1000), (4096, 1000), (64, 50257), (8, 1_000_000), (1_000_000, 10))
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
        _INPUTS[key] = draw_logits(shape, dtype)
    return _INPUTS[key]


def draw_logits(shape, dtype):
    """Fresh logits of ``shape`` and ``dtype``, the same for the same arguments."""
    dtype = np.dtype(dtype)
    seed = np.random.SeedSequence([BASE_SEED, *shape, dtype.itemsize])
    logits = np.random.default_rng(seed).standard_normal(shape, dtype=dtype)
    logits *= LOGIT_SCALE
    return logits


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

    # True when a call overwrites its input: drivers then call refresh(native) before
    # every call, outside the clock.
    fresh_input = False

    def refresh(self, native):
        pass

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


# ------------------------------------------------------------------ cross-entropy

# compare.py function name -> activation; both are timed forward+backward there.
LOSS_FUNCTIONS = {"cross_entropy": "softmax", "sigsoftmax_cross_entropy": "sigsoftmax"}
LOSS_ACTIVATIONS = ("softmax", "sigsoftmax")
LOSS_MODES = ("fwd", "fwdbwd")
LOSS_DTYPES = ("float32",)
# A classifier head, a GPT-2 vocabulary, an LLM vocabulary (1 GiB of float32), many tiny rows.
LOSS_SHAPES = ((4096, 1000), (64, 50257), (8192, 32000), (1_000_000, 10))
# Rows per block of the float64 reference loss: bounds its temporaries to a few MiB.
REFERENCE_BLOCK_ELEMENTS = 1 << 20


def loss_group_name(activation, mode, dtype, shape):
    """``cross_entropy-{activation}-{fwd|fwdbwd}-{dtype}-{shape}``: one pytest-benchmark group."""
    return f"cross_entropy-{activation}-{mode}-{np.dtype(dtype).name}-{shape_label(shape)}"


def loss_bytes_moved(shape, dtype, with_grad):
    """Logits and int64 targets read, plus the gradient written (the loss itself is 0 B)."""
    logits_bytes = np.dtype(dtype).itemsize * math.prod(shape)
    return logits_bytes * (2 if with_grad else 1) + 8 * shape[0]


class LossProblem:
    """Logits (n_rows, n_classes) and one int64 class index per row, with a scratch buffer.

    ``scratch()`` is a logits-sized buffer for implementations that overwrite their input;
    it is held weakly, so it lives only while some caller's state holds it and every
    caller at the same time shares the one buffer.
    """

    def __init__(self, logits, target):
        self.logits = logits
        self.target = target
        self._scratch = None

    @property
    def shape(self):
        return self.logits.shape

    @property
    def dtype(self):
        return self.logits.dtype

    def scratch(self):
        buffer = None if self._scratch is None else self._scratch()
        if buffer is None:
            buffer = np.empty_like(self.logits)
            self._scratch = weakref.ref(buffer)
        return buffer


_LOSS_PROBLEM = {}


def get_loss_problem(shape, dtype="float32"):
    """The problem of ``shape`` and ``dtype``, drawn on first use.

    Only the last problem asked for is cached: asking for another one drops it first, so
    that two 1 GiB logits are never alive at once. Run the cases of one shape together.
    """
    dtype = np.dtype(dtype)
    key = (tuple(shape), dtype.name)
    if key not in _LOSS_PROBLEM:
        _LOSS_PROBLEM.clear()  # before drawing the next one
        seed = np.random.SeedSequence([BASE_SEED, *shape, dtype.itemsize, 1])
        target = np.random.default_rng(seed).integers(0, shape[-1], size=shape[0], dtype=np.int64)
        # The logits are the forward benchmarks' inputs of the same shape and dtype.
        _LOSS_PROBLEM[key] = LossProblem(draw_logits(shape, dtype), target)
    return _LOSS_PROBLEM[key]


def clear_loss_problem():
    _LOSS_PROBLEM.clear()


def numpy_cross_entropy_rows(z, target, activation="softmax", grad_scale=None):
    """(per-row losses, ``grad_scale`` times the gradient of their sum, or None).

    With ``w = z`` (softmax) or ``w = z + log sigmoid(z)`` (sigsoftmax), the loss of a row
    is ``logsumexp(w) - w[t]`` and its gradient ``(softmax(w) - onehot(t)) * dw/dz`` with
    ``dw/dz = 1`` or ``2 - sigmoid(z)``. One array the size of ``z`` (two for sigsoftmax)
    is allocated; the gradient is written into it.
    """
    rows = np.arange(z.shape[0])
    if activation == "sigsoftmax":
        log_sigmoid = _numpy_log_sigmoid(z)
        w = z + log_sigmoid
    else:
        w = z
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
        grad *= 2 - np.exp(log_sigmoid)
    return losses, grad


def numpy_cross_entropy(z, target, activation="softmax", with_grad=False):
    """The NumPy composite: mean loss, or (mean loss, its gradient), in z's dtype."""
    losses, grad = numpy_cross_entropy_rows(
        z, target, activation, grad_scale=1.0 / z.shape[0] if with_grad else None
    )
    return (losses.mean(), grad) if with_grad else losses.mean()


_REFERENCE_LOSSES = {}


def reference_loss(activation, problem):
    """float64 mean loss of the whole problem, computed in blocks of rows and cached."""
    key = (problem.shape, problem.dtype.name, activation)
    if key not in _REFERENCE_LOSSES:
        n_rows, n_cols = problem.shape
        step = max(1, REFERENCE_BLOCK_ELEMENTS // n_cols)
        total = math.fsum(
            numpy_cross_entropy_rows(
                problem.logits[start:start + step].astype(np.float64),
                problem.target[start:start + step], activation,
            )[0].sum()
            for start in range(0, n_rows, step)
        )
        _REFERENCE_LOSSES[key] = total / n_rows
    return _REFERENCE_LOSSES[key]


def loss_mismatch(activation, problem, result, with_grad):
    """None if ``result`` (loss, or (loss, grad) as NumPy) is right, else what is wrong.

    The loss is compared with the float64 mean over every row; the gradient on a sample
    of rows, times the number of rows, so that the absolute tolerance means the same at
    every batch size (the gradient of a mean is 1/n_rows times that of one row's loss).
    """
    tolerance = TOLERANCES[problem.dtype]
    loss, grad = result if with_grad else (result, None)
    loss = np.asarray(loss)
    if loss.shape != () or loss.dtype != problem.dtype:
        return (f"loss has shape {loss.shape} and dtype {loss.dtype}, expected a "
                f"{problem.dtype} scalar")
    expected_loss = reference_loss(activation, problem)
    if not np.isclose(loss, expected_loss, **tolerance):
        return f"loss {float(loss):.9g}, expected {expected_loss:.9g}"
    if not with_grad:
        return None
    grad = np.asarray(grad)
    if grad.shape != problem.shape or grad.dtype != problem.dtype:
        return (f"gradient has shape {grad.shape} and dtype {grad.dtype}, expected "
                f"{problem.shape} {problem.dtype}")
    rows = _sample_rows(problem.shape[0])
    n_rows = problem.shape[0]
    scaled = grad[rows].astype(np.float64) * n_rows
    _, expected = numpy_cross_entropy_rows(
        problem.logits[rows].astype(np.float64), problem.target[rows], activation, grad_scale=1.0
    )
    close = np.isclose(scaled, expected, **tolerance)
    if close.all():
        return None
    worst = np.unravel_index(np.argmax(np.abs(scaled - expected)), scaled.shape)
    return (
        f"gradient x n_rows: {np.count_nonzero(~close)} of {close.size} sampled values "
        f"differ; worst at (row {int(rows[worst[0]])}, {int(worst[1])}): "
        f"{scaled[worst]:.9g} vs {expected[worst]:.9g}"
    )


class LossImplementation(Implementation):
    """One library's mean cross-entropy with integer targets, with or without its gradient.

    ``to_native(problem)`` makes the state a call takes (untimed); ``loss_kernel`` returns
    the timed one-argument call. ``fresh_input`` marks a call that overwrites its input:
    drivers then call ``refresh(state)`` before every call, outside the clock.
    """

    def unavailable_reason(self, function=None):
        return None

    def to_native(self, problem):
        return problem

    def loss_to_numpy(self, result, with_grad):
        if with_grad:
            loss, grad = result
            return self.to_numpy(loss), self.to_numpy(grad)
        return self.to_numpy(result)

    def loss_kernel(self, activation, with_grad, n_threads):
        raise NotImplementedError


class FastSoftLoss(LossImplementation):
    name = "fastsoft"
    threaded = True

    def unavailable_reason(self, function=None):
        module, reason = import_optional("fastsoft")
        if module is None:
            return reason
        return None if hasattr(module, "cross_entropy") else "fastsoft has no cross_entropy"

    def loss_kernel(self, activation, with_grad, n_threads):
        cross_entropy = import_optional("fastsoft")[0].cross_entropy

        def call(problem):
            return cross_entropy(problem.logits, problem.target, activation=activation,
                                 return_grad=with_grad, num_threads=n_threads)

        return call


class _InPlaceState:
    def __init__(self, problem):
        self.logits = problem.logits
        self.target = problem.target
        self.buffer = problem.scratch()


class FastSoftInPlaceLoss(FastSoftLoss):
    """``grad_out=logits``: the gradient overwrites the logits, so no N x C temporary.

    The state's buffer gets a fresh copy of the logits before every call (``refresh``,
    untimed), and the call computes the loss and gradient of that buffer into it.
    """

    name = "fastsoft-inplace"
    fresh_input = True

    def to_native(self, problem):
        return _InPlaceState(problem)

    def refresh(self, state):
        np.copyto(state.buffer, state.logits)

    def loss_kernel(self, activation, with_grad, n_threads):
        if not with_grad:
            raise ValueError("fastsoft-inplace writes a gradient: with_grad must be True")
        cross_entropy = import_optional("fastsoft")[0].cross_entropy

        def call(state):
            return cross_entropy(state.buffer, state.target, activation=activation,
                                 return_grad=True, grad_out=state.buffer, num_threads=n_threads)

        return call


class NumPyLoss(LossImplementation):
    name = "numpy"

    def loss_kernel(self, activation, with_grad, n_threads):
        def call(problem):
            return numpy_cross_entropy(problem.logits, problem.target, activation, with_grad)

        return call


class _TorchState:
    def __init__(self, torch, problem):
        self.logits = torch.from_numpy(problem.logits)  # shares memory: no copy
        # The same memory as a leaf that records the graph; backward never writes to it.
        self.leaf = torch.from_numpy(problem.logits).requires_grad_(True)
        self.target = torch.from_numpy(problem.target)


class TorchLoss(LossImplementation, Torch):
    """``F.cross_entropy`` on the logits (softmax) or on ``2*z - softplus(z)`` (sigsoftmax).

    Forward: on a tensor that does not require grad, so no graph is recorded. Forward and
    backward: on a leaf that requires grad, then ``.backward()``; the call takes the
    gradient off the leaf (``leaf.grad = None``, as ``zero_grad(set_to_none=True)`` does
    between training steps) and returns it, so every call computes a fresh gradient and
    frees it when its result is dropped, exactly like fastsoft's ``return_grad=True``.
    """

    def unavailable_reason(self, function=None):
        return import_optional("torch")[1]

    def to_native(self, problem):
        return _TorchState(import_optional("torch")[0], problem)

    def to_numpy(self, result):
        return result.detach().numpy()

    def loss_kernel(self, activation, with_grad, n_threads):
        functional = import_optional("torch.nn.functional")[0]
        cross_entropy, softplus = functional.cross_entropy, functional.softplus
        if activation == "sigsoftmax":
            def loss_of(z, target):
                return cross_entropy(2 * z - softplus(z), target)
        else:
            loss_of = cross_entropy

        if not with_grad:
            return lambda state: loss_of(state.logits, state.target)

        def forward_backward(state):
            leaf = state.leaf
            loss = loss_of(leaf, state.target)
            loss.backward()
            grad, leaf.grad = leaf.grad, None
            return loss, grad

        return forward_backward


LOSS_IMPLEMENTATIONS = {
    impl.name: impl for impl in (FastSoftLoss(), FastSoftInPlaceLoss(), NumPyLoss(), TorchLoss())
}
