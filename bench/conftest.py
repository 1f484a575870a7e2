"""pytest configuration for the fastsoft benchmarks (only loaded when bench/ is named).

1. bench/ is put on sys.path so the test file finds ``_fastsoft_bench`` whatever
   ``--import-mode`` the project configures.
2. Benchmark defaults (more rounds than pytest-benchmark's 5, warm-up on) are applied as
   a ``benchmark`` marker only for the options not given on the command line,
   ``PYTEST_ADDOPTS`` or ini ``addopts``: a marker would otherwise override them.
3. After the run, a summary gives per group the median, GB/s and each implementation's
   median over fastsoft's, which pytest-benchmark's own table cannot show.
4. A benchmark that needs an untimed setup before every call (``benchmark.pedantic``)
   gets its rounds and warm-up from ``pedantic_rounds``, which applies the same settings
   (min rounds, max time, warm-up) the way ``benchmark(...)`` does.
"""

import math
import os
import shlex
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from _fastsoft_bench import IMPLEMENTATIONS, LOSS_IMPLEMENTATIONS, THREAD_COUNTS  # noqa: E402

# option name on the command line -> benchmark marker keyword and our default.
BENCHMARK_DEFAULTS = {
    "--benchmark-min-rounds": ("min_rounds", 10),
    "--benchmark-max-time": ("max_time", 1.0),
    "--benchmark-warmup": ("warmup", True),
    # Bounds the warm-up: at most this many calls (or max_time) during calibration and as
    # many again before the timed rounds; enough to fault pages in and wake threads
    # without doubling the time spent on the big shapes.
    "--benchmark-warmup-iterations": ("warmup_iterations", 5),
}

# group -> label -> (median seconds, bytes moved); filled by the test, read at the end.
RESULTS = {}


def _explicit_options(config):
    words = list(config.invocation_params.args)
    words += shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))
    words += list(config.getini("addopts"))
    return {word.split("=", 1)[0] for word in words if word.startswith("--benchmark-")}


def pytest_collection_modifyitems(config, items):
    explicit = _explicit_options(config)
    marker_kwargs = {
        keyword: default
        for option, (keyword, default) in BENCHMARK_DEFAULTS.items()
        if option not in explicit
    }
    if not marker_kwargs:
        return
    for item in items:
        if BENCH_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.benchmark(**marker_kwargs))


@pytest.fixture
def record_median():
    """Call as ``record_median(group, label, median_seconds, bytes_moved)`` after timing."""

    def record(group, label, median, n_bytes):
        RESULTS.setdefault(group, {})[label] = (median, n_bytes)

    return record


@pytest.fixture
def pedantic_rounds(request):
    """Call as ``pedantic_rounds(call_seconds)`` -> ``(rounds, warmup_rounds)``.

    pedantic mode ignores min_rounds, max_time and warm-up, so they are applied here as
    ``benchmark(...)`` applies them to one call per round: enough rounds to fill
    max_time, at least min_rounds, and up to warmup_iterations warm-up calls when warm-up
    is on. A marker's value (ours, see BENCHMARK_DEFAULTS) wins over the option's.
    """
    marker = request.node.get_closest_marker("benchmark")
    marker_kwargs = marker.kwargs if marker else {}

    def setting(keyword):
        if keyword in marker_kwargs:
            return marker_kwargs[keyword]
        return request.config.getoption(f"benchmark_{keyword}")

    def rounds_for(call_seconds):
        # --benchmark-max-time comes back as a string: convert as pytest-benchmark does.
        max_time, min_rounds = float(setting("max_time")), int(setting("min_rounds"))
        rounds = max(min_rounds, math.ceil(max_time / max(call_seconds, 1e-9)))
        warmup = int(setting("warmup_iterations")) if setting("warmup") else 0
        return rounds, min(rounds, max(1, warmup)) if warmup else 0

    return rounds_for


def _format_seconds(seconds):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    baselines = [f"fastsoft-t{n}" for n in THREAD_COUNTS]
    order = [
        impl.label(n)
        for registry in (IMPLEMENTATIONS, LOSS_IMPLEMENTATIONS)
        for impl in registry.values()
        for n in THREAD_COUNTS
    ]

    def position(label):
        return order.index(label) if label in order else len(order)

    write = terminalreporter.write_line
    terminalreporter.section("fastsoft comparison (median; ratio > 1: fastsoft is faster)")
    header = f"{'implementation':<14} {'median':>10} {'GB/s':>8}" + "".join(
        f" {'/ ' + b:>15}" for b in baselines
    )
    for group in sorted(RESULTS):
        rows = RESULTS[group]
        write("")
        write(group)
        write(header)
        for label in sorted(rows, key=position):
            median, n_bytes = rows[label]
            ratios = "".join(
                f" {median / rows[b][0]:>15.2f}" if b in rows else f" {'-':>15}" for b in baselines
            )
            gb_per_s = n_bytes / median / 1e9
            write(f"{label:<14} {_format_seconds(median):>10} {gb_per_s:>8.2f}{ratios}")
