"""Time fastsoft's CuPy backend against cupyx.scipy.special and PyTorch on a CUDA GPU.

Usage::

    python bench/bench_gpu.py                                   # the default cases
    python bench/bench_gpu.py --shapes 4096x1000 64x50257 --functions softmax --repeat 50
    python bench/bench_gpu.py --json gpu.json

Exits 0 with a "skipped: ..." line when CuPy or a CUDA device is missing.

Design:
1. A case is (function, shape), float32.  Contenders: fastsoft (``fs.<function>`` on a
   CuPy array, routed to the fused kernels of fastsoft/_cuda), fastsoft's generic path
   (``fastsoft._generic`` with ``xp=cupy``: whole-array CuPy operations, what the backend
   would do without its kernels), ``cupyx.scipy.special.softmax`` / ``log_softmax``,
   and ``torch.softmax`` / ``torch.log_softmax`` on a CUDA tensor sharing the CuPy
   array's memory.  ``cross_entropy`` times the mean loss of int64 targets and its
   gradient: fastsoft (``return_grad=True``) against torch (forward, then backward).
2. Before timing, every contender's output is compared with fastsoft's (relative 1e-4 on
   the largest values); a contender that computes something else is reported, not timed.
3. Each sample is one call between two CUDA events on the stream every library uses here
   (the legacy default stream), after warm-up calls that also compile the kernels.
   Contenders are interleaved round-robin over the repetitions so that clock or thermal
   drift lands on all of them alike.  Reported: the median over repetitions, GB/s from
   the bytes an ideal kernel moves (input read and output written), and the median over
   fastsoft's (> 1: fastsoft is faster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

DEFAULT_SHAPES = ("4096x1000", "64x50257", "8192x32000")
FUNCTIONS = ("softmax", "log_softmax", "cross_entropy")


def parse_shape(text):
    rows, cols = (int(part) for part in text.lower().split("x"))
    return rows, cols


def load_gpu_stack():
    """(cupy, None) when usable, else (None, the reason to skip)."""
    try:
        import cupy
    except ImportError as error:
        return None, f"no cupy ({error})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError without a driver
        return None, f"no CUDA device ({error})"
    if count < 1:
        return None, "no CUDA device"
    return cupy, None


def load_torch():
    """torch if it has CUDA, else None (and why)."""
    try:
        import torch
    except ImportError:
        return None, "torch not installed"
    if not torch.cuda.is_available():
        return None, "torch has no CUDA"
    return torch, None


def contenders(function, x, labels, cupy, torch):
    """{name: zero-argument callable} for one case."""
    import cupyx.scipy.special as special

    import fastsoft as fs
    from fastsoft import _generic

    if function == "cross_entropy":
        found = {
            "fastsoft": lambda: fs.cross_entropy(x, labels, return_grad=True)[1],
            "fastsoft-generic": lambda: _generic.cross_entropy(cupy, x, labels,
                                                               return_grad=True)[1],
        }
        if torch is not None:
            tx = torch.as_tensor(x, device="cuda")
            tl = torch.as_tensor(labels, device="cuda")

            def torch_cross_entropy():
                logits = tx.detach().requires_grad_(True)
                torch.nn.functional.cross_entropy(logits, tl).backward()
                return logits.grad
            found["torch"] = torch_cross_entropy
        return found
    found = {
        "fastsoft": lambda: getattr(fs, function)(x),
        "fastsoft-generic": lambda: getattr(_generic, function)(cupy, x),
        "cupyx.scipy": lambda: getattr(special, function)(x, axis=-1),
    }
    if torch is not None:
        tx = torch.as_tensor(x, device="cuda")
        found["torch"] = lambda: getattr(torch, function)(tx, dim=-1)
    return found


def as_cupy(result, cupy):
    return cupy.asarray(result)   # CuPy arrays as they are; torch tensors through CAI


def check(found, cupy):
    """Drop (and report) contenders whose output differs from fastsoft's."""
    expected = as_cupy(found["fastsoft"](), cupy).astype(cupy.float64)
    scale = float(cupy.max(cupy.abs(cupy.where(cupy.isfinite(expected), expected, 0))))
    problems = {}
    for name, call in found.items():
        got = as_cupy(call(), cupy).astype(cupy.float64)
        error = float(cupy.max(cupy.abs(got - expected)))
        if not error <= 1e-4 * max(scale, 1e-30):
            problems[name] = f"differs from fastsoft by {error:.3g} (scale {scale:.3g})"
    return problems


def time_case(found, cupy, repeat, warmup):
    """{name: [milliseconds per call]} with interleaved repetitions."""
    for call in found.values():
        for _ in range(warmup):
            call()
    cupy.cuda.Device().synchronize()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    times = {name: [] for name in found}
    names = list(found)
    for repetition in range(repeat):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            start.record()
            found[name]()
            end.record()
            end.synchronize()
            times[name].append(cupy.cuda.get_elapsed_time(start, end))
    return times


def bytes_moved(function, rows, cols):
    # float32 logits read and float32 output (or gradient) written; labels are negligible
    return 2 * 4 * rows * cols


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES))
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=FUNCTIONS)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args(argv)

    cupy, reason = load_gpu_stack()
    if cupy is None:
        print(f"skipped: {reason}")
        return 0
    torch, torch_reason = load_torch()
    from fastsoft import _cupy

    print(f"fastsoft GPU benchmark on {_cupy.device_info()}")
    if torch is None:
        print(f"(torch left out: {torch_reason})")
    else:
        print(f"torch {torch.__version__}")
    results = []
    header = f"{'function':<14} {'shape':<11} {'contender':<17} {'median ms':>10} {'GB/s':>8} {'vs fastsoft':>12}"
    print(header)
    print("-" * len(header))
    for function in args.functions:
        for text in args.shapes:
            rows, cols = parse_shape(text)
            rng = cupy.random.default_rng(0)
            x = rng.standard_normal((rows, cols), dtype=cupy.float32)
            labels = rng.integers(0, cols, size=rows, dtype=cupy.int64)
            found = contenders(function, x, labels, cupy, torch)
            for name, problem in check(found, cupy).items():
                print(f"{function:<14} {text:<11} {name:<17} left out: {problem}")
                found.pop(name)
            times = time_case(found, cupy, args.repeat, args.warmup)
            reference = statistics.median(times["fastsoft"])
            for name, samples in times.items():
                median = statistics.median(samples)
                rate = bytes_moved(function, rows, cols) / (median * 1e-3) / 1e9
                print(f"{function:<14} {text:<11} {name:<17} {median:>10.4f} {rate:>8.1f} "
                      f"{median / reference:>12.2f}")
                results.append({"function": function, "shape": text, "contender": name,
                                "median_ms": median, "gb_per_s": rate,
                                "samples_ms": samples})
            del x, labels, found
            cupy.get_default_memory_pool().free_all_blocks()
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"device": _cupy.device_info(), "results": results}, stream, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
