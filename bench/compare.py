"""Time fastsoft against SciPy, a NumPy composite and PyTorch in one process.

Usage::

    python bench/compare.py --quick                      # under a minute on 2 cores
    python bench/compare.py --json out.json --markdown out.md
    python bench/compare.py --functions softmax logsumexp --dtypes float32 \
        --shapes 4096x1000 64x50257 --threads 1 2 --repeat 21
    python bench/compare.py --functions cross_entropy sigsoftmax_cross_entropy

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
6. ``cross_entropy`` and ``sigsoftmax_cross_entropy`` (named with --functions; the
   default is the five forward functions) time the mean loss of int64 targets *and* its
   gradient: fastsoft (``return_grad=True``), fastsoft with ``grad_out=logits``
   ("fastsoft-inplace"), torch (forward, then ``.backward()``) and the NumPy composite.
   They have their own default shapes (``LOSS_SHAPES``) and dtype (float32). Every
   contender is checked against the float64 reference (whole-batch loss, sampled
   gradient rows) rather than against fastsoft's output, which for 8192x32000 would hold
   one more 1 GiB gradient. fastsoft-inplace overwrites its input, so before each of its
   calls the logits are copied into its buffer outside the clock, and its calls are
   timed one by one.
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
    LOSS_DTYPES,
    LOSS_FUNCTIONS,
    LOSS_IMPLEMENTATIONS,
    LOSS_SHAPES,
    SHAPES,
    Implementation,
    THREAD_COUNTS,
    bytes_moved,
    clear_inputs,
    clear_loss_problem,
    get_input,
    get_loss_problem,
    group_name,
    import_optional,
    library_versions,
    loss_bytes_moved,
    loss_mismatch,
    mismatch,
    parse_shape,
    shape_label,
)

FULL_SETTINGS = {"shapes": SHAPES, "loss_shapes": LOSS_SHAPES, "repeat": 15, "sample_ms": 10.0}
# --quick drops the big shapes, which dominate the run time, and repeats less.
QUICK_SETTINGS = {
    "shapes": SHAPES[:3], "loss_shapes": LOSS_SHAPES[:2], "repeat": 7, "sample_ms": 2.0,
}
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
                        help=f"functions to time (default: all of {', '.join(FUNCTIONS)}); "
                        f"also {' and '.join(LOSS_FUNCTIONS)} (forward + backward)")
    parser.add_argument("--dtypes", nargs="+", default=None, metavar="DTYPE",
                        help="float32 and/or float64 (default: both; float32 for the "
                        "cross-entropy functions)")
    parser.add_argument("--shapes", nargs="+", default=None, metavar="ROWSxCOLS",
                        help="input shapes, e.g. 4096x1000 1_000_000x10 (default: the five "
                        "benchmark shapes, the three small ones with --quick; for the "
                        f"cross-entropy functions {', '.join(map(shape_label, LOSS_SHAPES))}, "
                        "the first two with --quick)")
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
    args.functions = _choices(parser, args.functions, (*FUNCTIONS, *LOSS_FUNCTIONS), "function")
    dtypes = None if args.dtypes is None else _choices(parser, args.dtypes, DTYPES, "dtype")
    try:
        shapes = (
            None if args.shapes is None
            else [parse_shape(word) for word in _split_words(args.shapes)]
        )
        args.threads = [int(word) for word in _split_words(args.threads)]
    except ValueError as exc:
        parser.error(str(exc))
    args.cases = _plan(args.functions, dtypes, shapes, settings)
    if any(n < 1 for n in args.threads):
        parser.error("--threads must be positive")
    args.repeat = settings["repeat"] if args.repeat is None else args.repeat
    args.sample_ms = settings["sample_ms"] if args.sample_ms is None else args.sample_ms
    if args.repeat < 1 or args.sample_ms <= 0:
        parser.error("--repeat must be >= 1 and --sample-ms > 0")
    return args


def _plan(functions, dtypes, shapes, settings):
    """[(shape, [(dtype, function), ...]), ...]: the cases in run order, grouped by shape.

    Explicit dtypes and shapes apply to every function; otherwise the forward functions
    and the cross-entropy ones each take their own defaults. Cases are ordered by shape,
    dtype, function, so that one shape's inputs can be dropped before the next's are drawn.
    """
    wanted = {}
    for function in functions:
        is_loss = function in LOSS_FUNCTIONS
        function_shapes = shapes or settings["loss_shapes" if is_loss else "shapes"]
        function_dtypes = dtypes or (LOSS_DTYPES if is_loss else DTYPES)
        for shape in function_shapes:
            for dtype in function_dtypes:
                wanted.setdefault(tuple(shape), {})[(dtype, function)] = None
    all_dtypes = dtypes or list(dict.fromkeys((*DTYPES, *LOSS_DTYPES)))
    return [
        (shape, [(dtype, function) for dtype in all_dtypes for function in functions
                 if (dtype, function) in cases])
        for shape, cases in wanted.items()
    ]


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


def _time_calls(kernel, native, n_calls, refresh=None):
    """Seconds per call over ``n_calls`` calls.

    Back to back; or, when ``refresh`` is given (a call that overwrites its input), each
    call timed on its own after ``refresh(native)``, which stays outside the clock.
    """
    with _gc_paused():
        if refresh is None:
            start = time.perf_counter()
            for _ in range(n_calls):
                kernel(native)
            return (time.perf_counter() - start) / n_calls
        elapsed = 0.0
        for _ in range(n_calls):
            refresh(native)
            start = time.perf_counter()
            kernel(native)
            elapsed += time.perf_counter() - start
        return elapsed / n_calls


@dataclasses.dataclass
class Contender:
    """One implementation at one thread count, with its input and its samples."""

    impl: Implementation
    n_threads: int
    kernel: Callable
    native: object
    # The library's result -> NumPy (default: impl.to_numpy).
    to_numpy: Callable | None = None
    calls_per_sample: int = 1
    samples: list = dataclasses.field(default_factory=list)

    @property
    def label(self):
        return self.impl.label(self.n_threads)

    @property
    def refresh(self):
        """Untimed preparation before each call, or None when calls run back to back."""
        return self.impl.refresh if self.impl.fresh_input else None

    def first_call(self):
        """(result as NumPy, seconds): the checked call, also the warm-up."""
        if self.refresh is not None:
            self.refresh(self.native)
        with self.impl.thread_scope(self.n_threads), _gc_paused():
            start = time.perf_counter()
            result = self.kernel(self.native)
            seconds = time.perf_counter() - start
        return (self.to_numpy or self.impl.to_numpy)(result), seconds

    def calibrate(self, first_call_s, sample_s):
        """Choose the calls per sample so that a sample lasts at least ``sample_s``.

        A call slower than a sample, even cold, needs no more calibration calls (they
        would dominate a --quick run); a faster one is timed three more times, warm.
        """
        if first_call_s >= sample_s:
            self.calls_per_sample = 1
            return
        with self.impl.thread_scope(self.n_threads):
            one_call = min(
                _time_calls(self.kernel, self.native, 1, self.refresh) for _ in range(3)
            )
        self.calls_per_sample = max(
            1, min(MAX_CALLS_PER_SAMPLE, math.ceil(sample_s / max(one_call, 1e-9)))
        )

    def take_sample(self):
        # The thread count is set outside the timed calls (torch's is process-wide).
        with self.impl.thread_scope(self.n_threads):
            self.samples.append(
                _time_calls(self.kernel, self.native, self.calls_per_sample, self.refresh)
            )


def time_interleaved(contenders, repeat):
    """Take ``repeat`` samples of every contender, round-robin, rotating who goes first."""
    for repetition in range(repeat):
        start = repetition % len(contenders)
        for contender in contenders[start:] + contenders[:start]:
            contender.take_sample()


def _forward_case(function, dtype, shape, thread_counts):
    """(contenders, check(result, expected=None), bytes moved, check against the first?)."""
    logits = get_input(shape, dtype)
    contenders = [
        Contender(impl, n_threads, impl.kernel(function, n_threads), impl.to_native(logits))
        for impl in IMPLEMENTATIONS.values()
        if impl.unavailable_reason(function) is None
        for n_threads in (thread_counts if impl.threaded else (1,))
    ]

    def check(result, expected=None):
        return mismatch(function, logits, result, expected)

    return contenders, check, bytes_moved(function, shape, dtype), True


def _loss_case(function, dtype, shape, thread_counts):
    """The same for a cross-entropy function, forward + backward, checked only against
    the float64 reference."""
    activation = LOSS_FUNCTIONS[function]
    problem = get_loss_problem(shape, dtype)
    contenders = [
        Contender(impl, n_threads, impl.loss_kernel(activation, True, n_threads),
                  impl.to_native(problem),
                  to_numpy=lambda result, impl=impl: impl.loss_to_numpy(result, True))
        for impl in LOSS_IMPLEMENTATIONS.values()
        if impl.unavailable_reason() is None
        for n_threads in (thread_counts if impl.threaded else (1,))
    ]

    def check(result, expected=None):
        return loss_mismatch(activation, problem, result, with_grad=True)

    return contenders, check, loss_bytes_moved(shape, dtype, with_grad=True), False


def run_case(function, dtype, shape, args, log):
    """Check, then time, every available implementation at every thread count on one case.

    Returns (result rows, mismatch records).
    """
    case = group_name(function, dtype, shape)
    make_case = _loss_case if function in LOSS_FUNCTIONS else _forward_case
    contenders, check, n_bytes, against_first = make_case(function, dtype, shape, args.threads)
    # Both registries list fastsoft first: its first thread count is checked against the
    # float64 reference, and everything else, its other thread counts too, against it
    # (forward functions) or against the reference as well (cross-entropy).
    mismatches, checked, expected, baseline_label = [], [], None, None
    for index, contender in enumerate(contenders):
        result, first_call_s = contender.first_call()
        if expected is None:
            against, problem = "float64 reference", check(result)
        else:
            against, problem = baseline_label, check(result, expected)
        if problem is not None:
            log(f"  MISMATCH {case}: {contender.label} vs {against}: {problem}; not timed")
            mismatches.append({"case": case, "implementation": contender.label,
                               "against": against, "problem": problem})
            if index == 0:
                return [], mismatches  # fastsoft itself is off: nothing to compare with
            continue
        if index == 0 and against_first:
            expected, baseline_label = result, contender.label
        del result
        contender.calibrate(first_call_s, args.sample_ms / 1e3)
        checked.append(contender)
    del expected

    time_interleaved(checked, args.repeat)

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
        "functions": args.functions,
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
    losses = [name for name in env["functions"] if name in LOSS_FUNCTIONS]
    if not losses:
        title = "fastsoft forward-pass comparison"
    elif len(losses) == len(env["functions"]):
        title = "fastsoft cross-entropy comparison (forward + backward)"
    else:
        title = "fastsoft comparison: forward passes and cross-entropy (forward + backward)"
    lines = [
        f"# {title}",
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
    if losses:
        lines.append(
            f"- {' and '.join(losses)}: mean loss of int64 class indices and its gradient; "
            "fastsoft `return_grad=True`; fastsoft-inplace `grad_out=logits`, each call on a "
            "fresh copy of the logits made outside the clock; torch `F.cross_entropy` "
            "(sigsoftmax: of `2*z - softplus(z)`) then `.backward()`, the gradient set to "
            "None after each call; numpy a composite. Their GB/s counts the logits and "
            "targets read and the gradient written"
        )
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
    for shape, shape_cases in args.cases:
        for dtype, function in shape_cases:
            registry = LOSS_IMPLEMENTATIONS if function in LOSS_FUNCTIONS else IMPLEMENTATIONS
            reason = registry["fastsoft"].unavailable_reason(function)
            if reason is not None:
                log(f"skipping {function}: {reason}")
                continue
            log(f"{group_name(function, dtype, shape)} ...")
            case_rows, case_mismatches = run_case(function, dtype, shape, args, log)
            rows += case_rows
            mismatches += case_mismatches
        clear_inputs()
        clear_loss_problem()
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
