"""Peak extra memory of fastsoft.cross_entropy with its gradient, in place and not.

Usage::

    python bench/memory_cross_entropy.py                    # 4096x32000 float32 logits
    python bench/memory_cross_entropy.py --shape 8192x32000 --activation sigsoftmax

Prints a Markdown table: for each call, the most memory it needed beyond the logits and
targets it was given, in bytes and as a percentage of the logits' size.

Design:
1. Each (call, method) pair is measured in a fresh Python subprocess (this script with
   ``--child``), so one measurement's peak, allocator caches and thread pools never mix
   with another's.
2. The child draws the logits (seeded standard normal times 3) and int64 targets, imports
   everything, and makes one warm-up call of the same kind on a small 64x1000 array, so
   that what any first call creates once (code pages, OpenMP threads, library state) is
   not counted. Then it measures one call on the full logits, keeping its result alive to
   the end of the measurement (a returned gradient is memory the call needed).
3. tracemalloc: NumPy reports the data buffers it allocates to tracemalloc, so the peak
   traced bytes during the call minus the traced bytes just before it are the largest
   amount of Python and NumPy memory the call held at once. PyTorch's CPU allocator does
   not report to tracemalloc, so torch gets only the second method.
4. Peak RSS growth: writing "5" to /proc/self/clear_refs resets the kernel's high-water
   mark of resident memory (VmHWM in /proc/self/status) to the current resident size;
   VmHWM after the call minus VmRSS before it is the most resident memory the call added
   at any moment. It counts every allocator (torch's too) and the pages really touched,
   at page granularity; memory the allocator had cached from earlier is reused without
   counting. Linux only: elsewhere this column reads "n/a".
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _fastsoft_bench import (  # noqa: E402
    get_loss_problem,
    import_optional,
    parse_shape,
    shape_label,
)

DEFAULT_SHAPE = (4096, 32000)
WARMUP_SHAPE = (64, 1000)  # over fastsoft's 32768-element threshold, so threads start
METHODS = ("tracemalloc", "rss")
# name -> (what the table calls it, does tracemalloc see its allocations?)
CALLS = {
    "fastsoft-inplace": ("fastsoft `return_grad=True, grad_out=logits`", True),
    "fastsoft": ("fastsoft `return_grad=True` (control: a new gradient)", True),
    "fastsoft-fwd": ("fastsoft forward only (`return_grad=False`)", True),
    "torch": ("torch `F.cross_entropy(leaf, t)` + `.backward()`", False),
}
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


# -------------------------------------------------------------------------- child


def _status_bytes(field):
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            value, unit = line.split(":", 1)[1].split()
            assert unit == "kB"
            return int(value) * 1024
    raise RuntimeError(f"no {field} in {STATUS}")


def _make_call(name, activation):
    """call(logits, target) -> result, with all imports done and nothing allocated."""
    if name == "torch":
        torch = import_optional("torch")[0]
        functional = torch.nn.functional

        def torch_call(logits, target):
            leaf = torch.from_numpy(logits).requires_grad_(True)  # shares the logits' memory
            z = leaf if activation == "softmax" else 2 * leaf - functional.softplus(leaf)
            loss = functional.cross_entropy(z, torch.from_numpy(target))
            loss.backward()
            return loss, leaf.grad

        return torch_call

    cross_entropy = import_optional("fastsoft")[0].cross_entropy
    if name == "fastsoft-inplace":
        return lambda logits, target: cross_entropy(
            logits, target, activation=activation, return_grad=True, grad_out=logits)
    with_grad = name == "fastsoft"
    return lambda logits, target: cross_entropy(
        logits, target, activation=activation, return_grad=with_grad)


def _draw_problem(shape):
    """float32 logits and int64 targets: the benchmarks' inputs of this shape."""
    problem = get_loss_problem(shape, np.float32)
    return problem.logits, problem.target


def measure(name, method, shape, activation):
    """{"extra_bytes": int, ...} for one call of ``name`` on float32 logits of ``shape``."""
    call = _make_call(name, activation)
    call(*_draw_problem(WARMUP_SHAPE))  # warm-up; its result is dropped here
    logits, target = _draw_problem(shape)
    gc.collect()
    if method == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = call(logits, target)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        extra = peak - before
    else:
        CLEAR_REFS.write_text("5")  # VmHWM := VmRSS
        before = _status_bytes("VmRSS")
        result = call(logits, target)
        extra = _status_bytes("VmHWM") - before
    in_place = name == "fastsoft-inplace" and result[1] is logits
    return {"extra_bytes": extra, "gradient_is_logits": in_place}


# ------------------------------------------------------------------------- parent


def _rss_available():
    try:
        with CLEAR_REFS.open("w") as handle:
            handle.write("5")
        _status_bytes("VmHWM")
        return True
    except (OSError, RuntimeError):
        return False


def _run_child(name, method, shape, activation):
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name, method,
               "--shape", shape_label(shape), "--activation", activation]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{name} / {method} failed:\n{completed.stderr.strip()}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - started
    return result


def _format_bytes(n_bytes):
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n_bytes) >= scale:
            return f"{n_bytes / scale:.3g} {unit} ({n_bytes:,} B)"
    return f"{n_bytes:,} B"


def report(shape, activation, results, logits_bytes, rss_ok, skipped):
    versions = ", ".join(
        f"{name} {getattr(module, '__version__', '?')}"
        for name in ("fastsoft", "numpy", "torch")
        if (module := import_optional(name)[0]) is not None
    )
    fastsoft = import_optional("fastsoft")[0]
    lines = [
        "# Peak extra memory of cross-entropy with its gradient",
        "",
        f"- float32 logits {shape_label(shape)} ({_format_bytes(logits_bytes)}), int64 "
        f"targets, `activation={activation!r}`, reduction mean; {versions}; fastsoft "
        f"threads {fastsoft.get_num_threads() if hasattr(fastsoft, 'get_num_threads') else '?'}",
        "- each cell: one call in a fresh subprocess, after a 64x1000 warm-up call; the "
        "result (loss and gradient) is kept alive to the end, so a returned gradient counts",
        "- tracemalloc: peak traced bytes during the call minus traced bytes before it "
        "(NumPy reports its buffers to tracemalloc; PyTorch's allocator does not: n/a)",
        "- peak RSS growth: VmHWM after the call minus VmRSS before it, the high-water "
        "mark reset by writing \"5\" to /proc/self/clear_refs (all allocators, touched "
        "pages only)" + ("" if rss_ok else "; not available here: n/a"),
        "- % = extra bytes / the logits' bytes",
        "",
        "| call | tracemalloc peak | % | peak RSS growth | % |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, (description, _) in CALLS.items():
        if name in skipped:
            lines.append(f"| {description} | skipped: {skipped[name]} | | | |")
            continue
        cells = []
        for method in METHODS:
            measured = results.get((name, method))
            if measured is None:
                cells += ["n/a", ""]
            else:
                extra = measured["extra_bytes"]
                cells += [_format_bytes(extra), f"{100 * extra / logits_bytes:.1f}%"]
        lines.append(f"| {description} | " + " | ".join(cells) + " |")
    inplace = [r for (name, _), r in results.items() if name == "fastsoft-inplace"]
    if inplace and not all(r["gradient_is_logits"] for r in inplace):
        lines += ["", "Warning: the in-place call did not return the logits as its gradient."]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--shape", default=shape_label(DEFAULT_SHAPE), metavar="ROWSxCOLS",
                        help=f"logits shape (default {shape_label(DEFAULT_SHAPE)})")
    parser.add_argument("--activation", choices=("softmax", "sigsoftmax"), default="softmax")
    parser.add_argument("--child", nargs=2, metavar=("CALL", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.shape = parse_shape(args.shape)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        name, method = args.child
        print(json.dumps(measure(name, method, args.shape, args.activation)))
        return 0

    fastsoft, reason = import_optional("fastsoft")
    if fastsoft is None:
        print(f"memory_cross_entropy.py: {reason}", file=sys.stderr)
        return 2
    rss_ok = _rss_available()
    skipped = {}
    torch_reason = import_optional("torch")[1]
    if torch_reason is not None:
        skipped["torch"] = torch_reason
    results = {}
    for name, (_, traced) in CALLS.items():
        if name in skipped:
            continue
        for method in METHODS:
            if (method == "tracemalloc" and not traced) or (method == "rss" and not rss_ok):
                continue
            print(f"{name} / {method} ...", file=sys.stderr, flush=True)
            results[name, method] = _run_child(name, method, args.shape, args.activation)
    logits_bytes = 4 * args.shape[0] * args.shape[1]
    print(report(args.shape, args.activation, results, logits_bytes, rss_ok, skipped), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
