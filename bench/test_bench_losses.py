"""Cross-entropy benchmarks: fastsoft against a NumPy composite and PyTorch.

Run with ``pytest bench/test_bench_losses.py --benchmark-only``; select with ``-k``, e.g.
``-k "4096x1000 and fwdbwd"`` or ``-k "sigsoftmax and not 8192x32000"``. Each
pytest-benchmark group ``cross_entropy-{activation}-{fwd|fwdbwd}-float32-{shape}`` holds
every implementation of one case: the mean loss of integer targets (``fwd``), or the loss
and its gradient with respect to the logits (``fwdbwd``). fastsoft and torch appear once
per thread count (``-t1``, ``-t2``), NumPy once; ``fastsoft-inplace`` (``fwdbwd`` only) is
fastsoft with ``grad_out=logits``. Every output is checked before it is timed.

``fastsoft-inplace`` overwrites its input, so each timed call needs fresh logits: it runs in
pedantic mode, a setup outside the clock copying the logits into a preallocated buffer
before every call, with rounds and warm-up chosen from the same settings as the other
cases (``pedantic_rounds`` in conftest.py).
"""

import itertools
import time

import pytest

from _fastsoft_bench import (
    LOSS_ACTIVATIONS,
    LOSS_DTYPES,
    LOSS_IMPLEMENTATIONS,
    LOSS_MODES,
    LOSS_SHAPES,
    THREAD_COUNTS,
    get_loss_problem,
    loss_bytes_moved,
    loss_group_name,
    loss_mismatch,
    shape_label,
)


def _contenders(mode):
    return [
        (impl, n_threads)
        for impl in LOSS_IMPLEMENTATIONS.values()
        if mode == "fwdbwd" or not impl.fresh_input  # an in-place call needs a gradient
        for n_threads in (THREAD_COUNTS if impl.threaded else (1,))
    ]


# The shape varies slowest: only one problem is cached at a time (8192x32000 is 1 GiB),
# so each shape is drawn once. Implementations vary fastest: a group runs back to back.
CASES = [
    pytest.param(
        dtype, shape, activation, mode, impl.name, n_threads,
        id=f"{loss_group_name(activation, mode, dtype, shape)}-{impl.label(n_threads)}",
    )
    for dtype, shape, activation, mode in itertools.product(
        LOSS_DTYPES, LOSS_SHAPES, LOSS_ACTIVATIONS, LOSS_MODES
    )
    for impl, n_threads in _contenders(mode)
]


@pytest.mark.parametrize(("dtype", "shape", "activation", "mode", "impl_name", "n_threads"), CASES)
def test_cross_entropy(benchmark, record_median, pedantic_rounds,
                       dtype, shape, activation, mode, impl_name, n_threads):
    impl = LOSS_IMPLEMENTATIONS[impl_name]
    reason = impl.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)

    with_grad = mode == "fwdbwd"
    problem = get_loss_problem(shape, dtype)
    state = impl.to_native(problem)
    kernel = impl.loss_kernel(activation, with_grad, n_threads)
    group = loss_group_name(activation, mode, dtype, shape)
    n_bytes = loss_bytes_moved(shape, dtype, with_grad)
    benchmark.group = group
    benchmark.extra_info.update(
        implementation=impl_name,
        threads=impl.threads_used(n_threads),
        function="cross_entropy",
        activation=activation,
        mode=mode,
        dtype=dtype,
        shape=shape_label(shape),
        bytes_moved=n_bytes,
    )

    with impl.thread_scope(n_threads):
        impl.refresh(state)
        start = time.perf_counter()
        result = kernel(state)
        first_call_s = time.perf_counter() - start
        problem_text = loss_mismatch(activation, problem, impl.loss_to_numpy(result, with_grad),
                                     with_grad)
        del result  # a gradient as large as the logits
        assert problem_text is None, f"{impl.label(n_threads)} {group}: {problem_text}"

        if impl.fresh_input:
            def fresh_arguments():
                impl.refresh(state)
                return (state,), {}

            rounds, warmup_rounds = pedantic_rounds(first_call_s)
            benchmark.pedantic(kernel, setup=fresh_arguments, rounds=rounds,
                               warmup_rounds=warmup_rounds)
        else:
            benchmark(kernel, state)

    if benchmark.stats:  # None under --benchmark-disable
        median = benchmark.stats.stats.median
        benchmark.extra_info["gb_per_s"] = n_bytes / median / 1e9
        record_median(group, impl.label(n_threads), median, n_bytes)


# ---------------------------------------------------------------------------------------
# The other targets PyTorch users pass: probability targets and label smoothing with class
# weights (the loss and its gradient).  Groups ``cross_entropy-{targets}-fwdbwd-{dtype}-
# {shape}`` hold fastsoft and torch at 2 threads; fastsoft's loss and gradient are checked
# against torch's before either is timed.

TARGET_KINDS = ("probabilities", "weighted-smoothing")
TARGET_SHAPES = ((4096, 1000), (64, 50257))


def _target_problem(kind, shape, dtype):
    """(logits, target, keyword arguments) of one case, from the loss problem's logits."""
    import numpy as np

    problem = get_loss_problem(shape, dtype)
    rng = np.random.default_rng([*shape, len(kind)])
    if kind == "probabilities":
        q = rng.random(shape).astype(dtype)
        return problem.logits, q / q.sum(axis=1, keepdims=True), {}
    weight = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    return problem.logits, problem.target, {"weight": weight, "label_smoothing": 0.1}


def _torch_targets_call(torch, z, target, kwargs):
    functional = torch.nn.functional
    leaf = torch.from_numpy(z).requires_grad_()
    target_t = torch.from_numpy(target)
    torch_kwargs = {k: torch.from_numpy(v) if k == "weight" else v for k, v in kwargs.items()}

    def call():
        loss = functional.cross_entropy(leaf, target_t, **torch_kwargs)
        loss.backward()
        grad, leaf.grad = leaf.grad, None
        return loss.detach(), grad

    return call


@pytest.mark.parametrize("impl_name", ("fastsoft", "torch"))
@pytest.mark.parametrize("shape", TARGET_SHAPES, ids=shape_label)
@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("kind", TARGET_KINDS)
def test_cross_entropy_targets(benchmark, record_median, kind, dtype, shape, impl_name):
    import numpy as np

    import fastsoft as fs

    torch = pytest.importorskip("torch")
    z, target, kwargs = _target_problem(kind, shape, dtype)
    group = f"cross_entropy-{kind}-fwdbwd-{dtype}-{shape_label(shape)}"
    torch.set_num_threads(2)
    reference = _torch_targets_call(torch, z, target, kwargs)
    if impl_name == "fastsoft":
        def call():
            return fs.cross_entropy(z, target, return_grad=True, num_threads=2, **kwargs)
    else:
        call = reference
    loss, grad = call()
    expected_loss, expected_grad = reference()
    rtol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(float(loss), float(expected_loss), rtol=rtol)
    np.testing.assert_allclose(np.asarray(grad), expected_grad.numpy(), rtol=rtol,
                               atol=rtol * float(expected_grad.abs().max()))
    del loss, grad
    n_bytes = loss_bytes_moved(shape, dtype, True)
    benchmark.group = group
    benchmark.extra_info.update(implementation=impl_name, threads=2, function="cross_entropy",
                                targets=kind, dtype=dtype, shape=shape_label(shape),
                                bytes_moved=n_bytes)
    benchmark(call)
    if benchmark.stats:
        record_median(group, f"{impl_name}-t2", benchmark.stats.stats.median, n_bytes)
