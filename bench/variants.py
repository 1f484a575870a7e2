"""Time fastsoft's CPU variants against each other on this machine.

Every variant the CPU supports (avx512, avx2, baseline: see fastsoft._kernels) is
loaded in one process, and each call is timed with each variant in turn, interleaved,
at 2 threads (--threads).  The report gives each variant's median and its ratio to the
fastest variant's.  It shows how much a CPU without AVX2 (the baseline build) or
without AVX-512 loses, and catches a variant that the compiler turned into slow code
(in November 2026 the baseline build ran some calls 10x slower than the avx2 build,
docs/performance.md, "The baseline build").

    python bench/variants.py                      # every case below, ~15 s
    python bench/variants.py --repeat 9 --cases softmax log_softmax

Calls go through the validated path with `out=` (or, for logsumexp and cross-entropy,
large enough not to take the small-call entry, which is bound to the variant chosen at
import); the inputs are those of `python -m fastsoft bench`.
"""

import argparse
import time

import numpy as np

import fastsoft as fs
from fastsoft import _kernels

SHAPES = ((4096, 1000), (1_000_000, 10))
FORWARD = ("softmax", "log_softmax", "sigsoftmax", "log_sigsoftmax")


def _cases(rng, threads):
    """(label, call) pairs: the forward functions, logsumexp, the four backward passes
    and both cross-entropies on SHAPES, and softmax along axis 0 of 1000x4096."""
    for dtype in ("float32", "float64"):
        for shape in SHAPES:
            x = (rng.standard_normal(shape) * 3).astype(dtype)
            g = rng.standard_normal(shape).astype(dtype)
            out = np.empty_like(x)
            target = rng.integers(0, shape[1], shape[0])
            label = f"{dtype} {shape[0]}x{shape[1]}"
            for name in FORWARD:
                yield (f"{name} {label}",
                       lambda f=getattr(fs, name), x=x, out=out: f(x, out=out,
                                                                   num_threads=threads))
                y = getattr(fs, name)(x)
                backward = getattr(fs, name + "_backward")
                args = (g, y, x) if "sig" in name else (g, y)
                yield (f"{name}_backward {label}",
                       lambda b=backward, args=args, out=out: b(*args, out=out,
                                                                num_threads=threads))
            yield (f"logsumexp {label}", lambda x=x: fs.logsumexp(x, num_threads=threads))
            for activation in ("softmax", "sigsoftmax"):
                yield (f"cross_entropy ({activation}) {label}",
                       lambda x=x, t=target, a=activation: fs.cross_entropy(
                           x, t, activation=a, return_grad=True, num_threads=threads))
        x = rng.standard_normal((1000, 4096)).astype(dtype)
        out = np.empty_like(x)
        yield (f"softmax axis 0 {dtype} 1000x4096",
               lambda x=x, out=out: fs.softmax(x, axis=0, out=out, num_threads=threads))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", nargs="*", default=None,
                        help="only cases whose label starts with one of these")
    args = parser.parse_args(argv)

    chosen = _kernels.core
    modules = {name: _kernels.load_variant(name) for name in _kernels.supported_variants}
    names = list(modules)
    print(f"variants: {', '.join(names)} (chosen at import: {_kernels.variant}); "
          f"{args.threads} threads, medians of {args.repeat} interleaved calls\n")
    print("| call | " + " | ".join(f"{n} (ms)" for n in names) + " |")
    print("| --- |" + " ---: |" * len(names))
    rng = np.random.default_rng(0)
    try:
        for label, call in _cases(rng, args.threads):
            if args.cases and not any(label.startswith(c) for c in args.cases):
                continue
            times = {name: [] for name in names}
            for _ in range(args.repeat):
                for name in names:
                    _kernels.core = modules[name]
                    start = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - start)
            _kernels.core = chosen    # the next case's inputs are made by the usual module
            medians = {name: float(np.median(t)) for name, t in times.items()}
            best = min(medians.values())
            cells = [f"{medians[n] * 1e3:.2f} ({medians[n] / best:.1f}x)" for n in names]
            print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    finally:
        _kernels.core = chosen


if __name__ == "__main__":
    main()
