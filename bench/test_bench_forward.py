"""Forward-pass benchmarks: fastsoft against SciPy, a NumPy composite and PyTorch.

Run with ``pytest bench/ --benchmark-only``; select with ``-k``, e.g.
``-k "4096x1000 and float32"`` or ``-k "logsumexp and fastsoft"``. Each pytest-benchmark
group ``{function}-{dtype}-{shape}`` holds every implementation of one case side by side;
fastsoft and torch appear once per thread count (``-t1``, ``-t2``), SciPy and NumPy once
(they are single-threaded here). Every output is checked before it is timed.
"""

import itertools

import numpy as np

import pytest

from _fastsoft_bench import (
    DTYPES,
    FUNCTIONS,
    IMPLEMENTATIONS,
    SHAPES,
    THREAD_COUNTS,
    bytes_moved,
    get_input,
    group_name,
    mismatch,
    shape_label,
)


# Every implementation at each thread count it honours.
CONTENDERS = [
    (impl, n_threads)
    for impl in IMPLEMENTATIONS.values()
    for n_threads in (THREAD_COUNTS if impl.threaded else (1,))
]

# Cases vary slowest and implementations fastest, so the members of a group run back to back.
CASES = [
    pytest.param(
        function, dtype, shape, impl.name, n_threads,
        id=f"{group_name(function, dtype, shape)}-{impl.label(n_threads)}",
    )
    for function, dtype, shape in itertools.product(FUNCTIONS, DTYPES, SHAPES)
    for impl, n_threads in CONTENDERS
]


def _time_forward(benchmark, record_median, function, logits, impl_name, n_threads, group,
                  **info):
    """Check one implementation's output on `logits`, then time it in `group`."""
    impl = IMPLEMENTATIONS[impl_name]
    reason = impl.unavailable_reason(function)
    if reason is not None:
        pytest.skip(reason)

    native = impl.to_native(logits)
    kernel = impl.kernel(function, n_threads)
    n_bytes = bytes_moved(function, logits.shape, logits.dtype)
    benchmark.group = group
    benchmark.extra_info.update(
        implementation=impl_name,
        threads=impl.threads_used(n_threads),
        function=function,
        dtype=logits.dtype.name,
        shape=shape_label(logits.shape),
        bytes_moved=n_bytes,
        **info,
    )

    with impl.thread_scope(n_threads):
        problem = mismatch(function, logits, impl.to_numpy(kernel(native)))
        assert problem is None, f"{impl_name} {group}: {problem}"
        benchmark(kernel, native)

    if benchmark.stats:  # None under --benchmark-disable
        median = benchmark.stats.stats.median
        benchmark.extra_info["gb_per_s"] = n_bytes / median / 1e9
        record_median(group, impl.label(n_threads), median, n_bytes)


@pytest.mark.parametrize(("function", "dtype", "shape", "impl_name", "n_threads"), CASES)
def test_forward(benchmark, record_median, function, dtype, shape, impl_name, n_threads):
    _time_forward(benchmark, record_median, function, get_input(shape, dtype), impl_name,
                  n_threads, group_name(function, dtype, shape))


# Rows as causal attention masks them: -inf above the diagonal of a 1024x1024 array.
# Every row takes the exponentials' general path (the spread is infinite); it once paid
# an underflow per -inf lane (docs/performance.md, "Afternoon of 2026-11-25").
CAUSAL_SHAPE = (1024, 1024)
CAUSAL_CASES = [
    pytest.param(
        function, dtype, impl.name, n_threads,
        id=f"causal-{group_name(function, dtype, CAUSAL_SHAPE)}-{impl.label(n_threads)}",
    )
    for function, dtype in itertools.product(("softmax", "log_softmax"), DTYPES)
    for impl, n_threads in CONTENDERS
]


@pytest.mark.parametrize(("function", "dtype", "impl_name", "n_threads"), CAUSAL_CASES)
def test_forward_causal_mask(benchmark, record_median, function, dtype, impl_name, n_threads):
    causal = np.tril(np.ones(CAUSAL_SHAPE, dtype=bool))
    logits = np.where(causal, get_input(CAUSAL_SHAPE, dtype), -np.inf).astype(dtype)
    _time_forward(benchmark, record_median, function, logits, impl_name, n_threads,
                  "causal-" + group_name(function, dtype, CAUSAL_SHAPE), mask="causal -inf")
