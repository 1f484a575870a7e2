"""Backward-pass benchmarks: fastsoft's ``*_backward`` against NumPy, PyTorch and JAX.

Run with ``pytest bench/test_bench_backward.py --benchmark-only``; select with ``-k``,
e.g. ``-k "4096x1000 and float32"`` or ``-k "[softmax_backward-"``. Cases, inputs,
contenders and the checks come from ``fastsoft._benchmark``, the engine of
``python -m fastsoft bench``, so both time the same calls on the same inputs:

- fastsoft ``<function>_backward(..., num_threads=n)``, n = 1, 2;
- NumPy: the formula as array expressions;
- torch: ``torch._softmax_backward_data`` / ``torch._log_softmax_backward_data`` (the
  kernels autograd runs), times ``2 - sigmoid(x)`` for the sigsoftmax pair, and
  ``g * exp(x - r)`` for logsumexp; n = 1, 2 via ``torch.set_num_threads``;
- jax: the same formulas, ``jax.jit``-compiled, ``block_until_ready`` inside the timing.

The group ``{function}-{dtype}-{shape}`` holds a case's contenders side by side; absent
libraries skip. Every output is checked against a float64 reference before timing.
"""

import itertools

import pytest

engine = pytest.importorskip("fastsoft._benchmark")

# The labels a case can have; those whose library is absent skip.
LABELS = ("fastsoft-t1", "fastsoft-t2", "numpy", "torch-t1", "torch-t2", "jax")
LIBRARIES = ("fastsoft", "numpy", "torch", "jax")

CASES = [
    pytest.param(function, dtype, shape, label,
                 id=f"{engine.case_name(function, dtype, shape)}-{label}")
    for function, dtype, shape in itertools.product(
        engine.BACKWARD_FUNCTIONS, engine.DTYPES, engine.SHAPES)
    for label in LABELS
]

# Only the case being benchmarked is kept (its arrays and the jitted JAX function): the
# contenders of one case run back to back, so each case is built once.
_CURRENT = {}


def _contenders(function, dtype, shape):
    key = (function, dtype, shape)
    if key not in _CURRENT:
        _CURRENT.clear()
        case = engine.make_case(function, dtype, shape)
        contenders, skipped = engine.build_contenders(case, LIBRARIES, (1, 2))
        _CURRENT[key] = case, {c.label: c for c in contenders}, skipped
    return _CURRENT[key]


@pytest.mark.parametrize(("function", "dtype", "shape", "label"), CASES)
def test_backward(benchmark, record_median, function, dtype, shape, label):
    case, contenders, skipped = _contenders(function, dtype, shape)
    contender = contenders.get(label)
    if contender is None:
        pytest.skip(skipped.get(label.split("-")[0], f"no {label} contender"))
    benchmark.group = case.name
    benchmark.extra_info.update(implementation=label, threads=contender.threads,
                                function=function, dtype=dtype,
                                shape=engine.shape_label(shape), bytes_moved=case.n_bytes)
    with contender.scope():
        problem = engine.check_result(case, contender.to_numpy(contender.call()))
        assert problem is None, f"{label} {case.name}: {problem}"
        benchmark(contender.call)

    if benchmark.stats:  # None under --benchmark-disable
        median = benchmark.stats.stats.median
        benchmark.extra_info["gb_per_s"] = case.n_bytes / median / 1e9
        record_median(case.name, label, median, case.n_bytes)
