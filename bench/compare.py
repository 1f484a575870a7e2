"""Time fastsoft against SciPy, a NumPy composite and PyTorch in one process.

Usage::

    python bench/compare.py --quick                      # under a minute on 2 cores
    python bench/compare.py --json out.json --markdown out.md
    python bench/compare.py --functions softmax logsumexp --dtypes float32 \
        --shapes 4096x1000 64x50257 --threads 1 2 --repeat 21

Design:
1. A case is (function, dtype, shape). Its contenders are fastsoft and torch at each
   --threads count, SciPy and NumPy once (they run these operations on one thread).
2. Before anything is timed, fastsoft at the first thread count is checked against a
   float64 reference on a sample of rows, and every other contender (fastsoft's other
   thread counts too) against that full output, loosely: a comparison that computes
   something else is reported and left out, never timed, and the exit status is 1.
3. Repetitions are interleaved: each repetition times one sample of every contender,
   round-robin, starting one contender later each time, so a burst of noise from the
   shared machine lands on all of them alike instead of on whichever ran then.
4. A sample is K back-to-back calls, with K chosen once per contender so that a sample
   lasts at least --sample-ms; the per-call time is sample / K. The garbage collector is
   off and torch's process-wide thread count is set (outside the clock) during a sample.
5. Reported per contender: the median over repetitions, GB/s from the bytes an ideal
   kernel must move (input read + output written) over that median, and that median over
   fastsoft's at each thread count (> 1: fastsoft is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import io
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fastsoft_bench import (  # noqa: E402
    DTYPES,
    FUNCTIONS,
    IMPLEMENTATIONS,
    SHAPES,
    Implementation,
    THREAD_COUNTS,
    bytes_moved,
    clear_inputs,
    get_input,
    group_name,
    import_optional,
    library_versions,
    mismatch,
    parse_shape,
    shape_label,
)

FULL_SETTINGS = {"shapes": SHAPES, "repeat": 15, "sample_ms": 10.0}
# --quick drops the two big shapes, which dominate the run time, and repeats less.
QUICK_SETTINGS = {"shapes": SHAPES[:3], "repeat": 7, "sample_ms": 2.0}
# Calls per sample never exceed this, however fast a call is.
MAX_CALLS_PER_SAMPLE = 10_000
ENVIRONMENT_VARIABLES = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)


# ------------------------------------------------------------------------ options


def _split_words(values):
    """Accept both ``--x a b`` and ``--x a,b``."""
    return [word for value in values for word in value.split(",") if word]


def _choices(parser, values, allowed, what):
    words = _split_words(values)
    unknown = [word for word in words if word not in allowed]
    if unknown:
        parser.error(f"unknown {what} {unknown}; choose from {list(allowed)}")
    return list(dict.fromkeys(words))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Interleaved timing of fastsoft against scipy.special, a NumPy "
        "composite and PyTorch (when importable); prints a Markdown table.",
    )
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), metavar="NAME",
                        help=f"functions to time (default: all of {', '.join(FUNCTIONS)})")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), metavar="DTYPE",
                        help="float32 and/or float64 (default: both)")
    parser.add_argument("--shapes", nargs="+", default=None, metavar="ROWSxCOLS",
                        help="input shapes, e.g. 4096x1000 1_000_000x10 (default: the five "
                        "benchmark shapes; the three small ones with --quick)")
    parser.add_argument("--threads", nargs="+", default=[str(n) for n in THREAD_COUNTS],
                        metavar="N", help="thread counts for fastsoft and torch (default: 1 2)")
    parser.add_argument("--repeat", type=int, default=None,
                        help=f"interleaved repetitions per case (default: "
                        f"{FULL_SETTINGS['repeat']}, {QUICK_SETTINGS['repeat']} with --quick)")
    parser.add_argument("--sample-ms", type=float, default=None,
                        help=f"minimum duration of one timed sample in ms (default: "
                        f"{FULL_SETTINGS['sample_ms']:g}, {QUICK_SETTINGS['sample_ms']:g} "
                        "with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a short run for a first look (< 1 min on 2 cores); options "
                        "given explicitly still win")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument("--markdown", type=Path, metavar="PATH",
                        help="also write the Markdown report to PATH")
    args = parser.parse_args(argv)

    settings = QUICK_SETTINGS if args.quick else FULL_SETTINGS
    args.functions = _choices(parser, args.functions, FUNCTIONS, "function")
    args.dtypes = _choices(parser, args.dtypes, DTYPES, "dtype")
    try:
        args.shapes = (
            list(settings["shapes"]) if args.shapes is None
            else [parse_shape(word) for word in _split_words(args.shapes)]
        )
        args.threads = [int(word) for word in _split_words(args.threads)]
    except ValueError as exc:
        parser.error(str(exc))
    if any(n < 1 for n in args.threads):
        parser.error("--threads must be positive")
    args.repeat = settings["repeat"] if args.repeat is None else args.repeat
    args.sample_ms = settings["sample_ms"] if args.sample_ms is None else args.sample_ms
    if args.repeat < 1 or args.sample_ms <= 0:
        parser.error("--repeat must be >= 1 and --sample-ms > 0")
    return args


# ------------------------------------------------------------------------- timing


@contextlib.contextmanager
def _gc_paused():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _time_calls(kernel, native, n_calls):
    """Seconds per call over ``n_calls`` back-to-back calls."""
    with _gc_paused():
        start = time.perf_counter()
        for _ in range(n_calls):
            kernel(native)
        return (time.perf_counter() - start) / n_calls


@dataclasses.dataclass
class Contender:
    """One implementation at one thread count, with its input and its samples."""

    impl: Implementation
    n_threads: int
    kernel: Callable
    native: object
    calls_per_sample: int = 1
    samples: list = dataclasses.field(default_factory=list)

    @property
    def label(self):
        return self.impl.label(self.n_threads)

    def first_call(self):
        """(result as NumPy, seconds): the checked call, also the warm-up."""
        with self.impl.thread_scope(self.n_threads), _gc_paused():
            start = time.perf_counter()
            result = self.kernel(self.native)
            seconds = time.perf_counter() - start
        return self.impl.to_numpy(result), seconds

    def calibrate(self, first_call_s, sample_s):
        """Choose the calls per sample so that a sample lasts at least ``sample_s``.

        A call slower than a sample, even cold, needs no more calibration calls (they
        would dominate a --quick run); a faster one is timed three more times, warm.
        """
        if first_call_s >= sample_s:
            self.calls_per_sample = 1
            return
        with self.impl.thread_scope(self.n_threads):
            one_call = min(_time_calls(self.kernel, self.native, 1) for _ in range(3))
        self.calls_per_sample = max(
            1, min(MAX_CALLS_PER_SAMPLE, math.ceil(sample_s / max(one_call, 1e-9)))
        )

    def take_sample(self):
        # The thread count is set outside the timed calls (torch's is process-wide).
        with self.impl.thread_scope(self.n_threads):
            self.samples.append(_time_calls(self.kernel, self.native, self.calls_per_sample))


def time_interleaved(contenders, repeat):
    """Take ``repeat`` samples of every contender, round-robin, rotating who goes first."""
    for repetition in range(repeat):
        start = repetition % len(contenders)
        for contender in contenders[start:] + contenders[:start]:
            contender.take_sample()


def run_case(function, dtype, shape, args, log):
    """Check, then time, every available implementation at every thread count on one case.

    Returns (result rows, mismatch records).
    """
    case = group_name(function, dtype, shape)
    logits = get_input(shape, dtype)
    contenders = [
        Contender(impl, n_threads, impl.kernel(function, n_threads), impl.to_native(logits))
        for impl in IMPLEMENTATIONS.values()
        if impl.unavailable_reason(function) is None
        for n_threads in (args.threads if impl.threaded else (1,))
    ]
    # IMPLEMENTATIONS lists fastsoft first: its first thread count is checked against the
    # float64 reference, and everything else, its other thread counts too, against it.
    mismatches, checked, expected, baseline_label = [], [], None, None
    for contender in contenders:
        result, first_call_s = contender.first_call()
        if expected is None:
            against, problem = "float64 reference", mismatch(function, logits, result)
        else:
            against, problem = baseline_label, mismatch(function, logits, result, expected)
        if problem is not None:
            log(f"  MISMATCH {case}: {contender.label} vs {against}: {problem}; not timed")
            mismatches.append({"case": case, "implementation": contender.label,
                               "against": against, "problem": problem})
            if expected is None:
                return [], mismatches  # fastsoft itself is off: nothing to compare with
            continue
        if expected is None:
            expected, baseline_label = result, contender.label
        del result
        contender.calibrate(first_call_s, args.sample_ms / 1e3)
        checked.append(contender)
    del expected

    time_interleaved(checked, args.repeat)

    n_bytes = bytes_moved(function, shape, dtype)
    medians = {c.label: statistics.median(c.samples) for c in checked}
    fastsoft = IMPLEMENTATIONS["fastsoft"]
    rows = []
    for contender in checked:
        median = medians[contender.label]
        ratios = {}
        for n_threads in args.threads:
            baseline = medians.get(fastsoft.label(n_threads))
            ratios[f"t{n_threads}"] = None if baseline is None else median / baseline
        rows.append({
            "function": function,
            "dtype": dtype,
            "shape": shape_label(shape),
            "implementation": contender.impl.name,
            "threads": contender.impl.threads_used(contender.n_threads),
            "median_s": median,
            "gb_per_s": n_bytes / median / 1e9,
            "ratio_to_fastsoft": ratios,
            "bytes_moved": n_bytes,
            "calls_per_sample": contender.calls_per_sample,
            "samples_s": contender.samples,
        })
    return rows, mismatches


# ------------------------------------------------------------------------ reports


def _cpu_model():
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _openmp_and_blas_libraries():
    threadpoolctl, _ = import_optional("threadpoolctl")
    if threadpoolctl is None:
        return []
    return [
        {key: info.get(key) for key in ("user_api", "internal_api", "filepath", "version",
                                         "num_threads")}
        for info in threadpoolctl.threadpool_info()
    ]


def _fastsoft_config():
    """What fastsoft.show_config() prints (SIMD variant, OpenMP, threads), if it exists."""
    fastsoft, _ = import_optional("fastsoft")
    if not hasattr(fastsoft, "show_config"):
        return None
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        fastsoft.show_config()
    return captured.getvalue().rstrip()


def environment(args):
    return {
        "fastsoft_config": _fastsoft_config(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "versions": library_versions(),
        "unavailable": {
            name: reason for name, impl in IMPLEMENTATIONS.items()
            if (reason := impl.unavailable_reason("softmax")) is not None
        },
        "environment_variables": {
            name: os.environ[name] for name in ENVIRONMENT_VARIABLES if name in os.environ
        },
        "threadpools": _openmp_and_blas_libraries(),
        "repeat": args.repeat,
        "sample_ms": args.sample_ms,
        "quick": args.quick,
    }


def _format_seconds(seconds):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def to_markdown(rows, mismatches, env, thread_counts):
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    lines = [
        "# fastsoft forward-pass comparison",
        "",
        f"- {env['date']}: `{env['command']}`",
        f"- {env['cpu']}, {env['usable_cpus']} usable of {env['cpu_count']} CPUs; "
        f"Python {env['python']}; {versions}",
        f"- {env['repeat']} interleaved repetitions per case, samples of >= "
        f"{env['sample_ms']:g} ms; scipy and numpy run on one thread",
    ]
    if env["environment_variables"]:
        settings = ", ".join(f"{k}={v}" for k, v in env["environment_variables"].items())
        lines.append(f"- environment: {settings}")
    openmp = sorted(
        {pool["filepath"] for pool in env["threadpools"] if pool["user_api"] == "openmp"}
    )
    if openmp:
        # fastsoft and torch share whichever libgomp.so.1 was loaded first (same soname).
        lines.append(f"- OpenMP runtime: {', '.join(openmp)}")
    for name, reason in env["unavailable"].items():
        lines.append(f"- {name} skipped: {reason}")
    if env["fastsoft_config"]:
        lines += ["", "```", env["fastsoft_config"], "```"]
    ratio_columns = [f"t{n}" for n in thread_counts]
    lines += [
        "",
        "Median time per call; GB/s = (input bytes + output bytes) / median; "
        "`/ fastsoft tN` = this median / fastsoft's median with N threads, same run "
        "(> 1: fastsoft is faster). Quote only medians and ratios from one run.",
        "",
        "| function | dtype | shape | implementation | threads | median | GB/s | "
        + " | ".join(f"/ fastsoft {column}" for column in ratio_columns) + " |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | "
        + " | ".join("---:" for _ in ratio_columns) + " |",
    ]
    for row in rows:
        ratios = [row["ratio_to_fastsoft"][column] for column in ratio_columns]
        lines.append(
            f"| {row['function']} | {row['dtype']} | {row['shape']} | {row['implementation']} "
            f"| {row['threads']} | {_format_seconds(row['median_s'])} | {row['gb_per_s']:.2f} | "
            + " | ".join("-" if ratio is None else f"{ratio:.2f}" for ratio in ratios) + " |"
        )
    if mismatches:
        lines += ["", "## Mismatches (not timed)", ""]
        lines += [
            f"- {m['case']}: {m['implementation']} vs {m['against']}: {m['problem']}"
            for m in mismatches
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    fastsoft_module, fastsoft_reason = import_optional("fastsoft")
    if fastsoft_module is None:
        print(f"compare.py: {fastsoft_reason}", file=sys.stderr)
        return 2

    def log(message):
        print(message, file=sys.stderr, flush=True)

    env = environment(args)
    rows, mismatches = [], []
    started = time.perf_counter()
    for shape in args.shapes:
        for dtype in args.dtypes:
            for function in args.functions:
                reason = IMPLEMENTATIONS["fastsoft"].unavailable_reason(function)
                if reason is not None:
                    log(f"skipping {function}: {reason}")
                    continue
                log(f"{group_name(function, dtype, shape)} ...")
                case_rows, case_mismatches = run_case(function, dtype, shape, args, log)
                rows += case_rows
                mismatches += case_mismatches
        clear_inputs()
    env["elapsed_s"] = round(time.perf_counter() - started, 1)
    log(f"done in {env['elapsed_s']} s")

    report = to_markdown(rows, mismatches, env, args.threads)
    print(report, end="")
    if args.markdown is not None:
        args.markdown.write_text(report)
    if args.json is not None:
        document = {"environment": env, "results": rows, "mismatches": mismatches}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
