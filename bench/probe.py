"""Measure this machine's ceilings for softmax-like kernels.

Usage::

    python bench/probe.py                 # a small table, ~10 s on 2 cores
    python bench/probe.py --json probe.json --threads 1 2 --mib 256

Design:
1. Two numbers bound every fastsoft kernel: memory bandwidth (data far larger than
   cache: a copy reads and writes each byte once, which is what softmax must do at
   best) and exp throughput (data in L1: how many exponentials a core computes per ns).
2. Real ceilings need code as good as a kernel, so a tiny C file is compiled at run time
   with gcc (-O3 -mavx2 -mfma -fopenmp, when the CPU has AVX2) into a temporary
   directory and loaded with ctypes. Its loops are plain C the compiler vectorizes: the
   exponential is a branch-free Cody-Waite reduction and polynomial (no libm call, which
   would not vectorize without -ffast-math). Without a compiler the probe falls back to
   NumPy (np.copyto over Python threads, np.exp) and says so: those are lower bounds on
   the ceilings, not the ceilings.
3. Each measurement is the median of several repetitions; copies run over arrays of
   --mib MiB each (default 256, far past any L3), first touched by the same threads
   that later copy them so that pages sit on the right memory node.
4. GB/s counts bytes read plus bytes written, the same convention as
   ``python -m fastsoft bench``, so the two read against each other directly.
5. A third number bounds softmax along a non-last axis: fs_columns.h reads such an axis
   512 bytes of each row at a time, rows a whole row apart (16 KiB in the benchmark's
   1000x4096 float32), and memory delivers that pattern more slowly than one sequential
   stream.  The probe reads the same bytes in the same order, next to the plain read.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROBE_SOURCE = r"""
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* One thread's share of [0, n): contiguous, so each thread streams its own pages. */
#define FS_SPLIT(n, n_threads, thread, lo, hi)                                   \
    ptrdiff_t lo = (ptrdiff_t)((n) * (thread) / (n_threads));                    \
    ptrdiff_t hi = (ptrdiff_t)((n) * ((thread) + 1) / (n_threads));

void fs_probe_fill(uint8_t *a, uint8_t *b, ptrdiff_t n_bytes, int n_threads) {
    #pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int t = 0; t < n_threads; t++) {
        FS_SPLIT(n_bytes, n_threads, t, lo, hi)
        memset(a + lo, 1, hi - lo);
        memset(b + lo, 0, hi - lo);
    }
}

/* Read + write every byte once: the floor of any out-of-place softmax. */
void fs_probe_copy(const uint8_t *src, uint8_t *dst, ptrdiff_t n_bytes, int n_threads) {
    #pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int t = 0; t < n_threads; t++) {
        FS_SPLIT(n_bytes, n_threads, t, lo, hi)
        memcpy(dst + lo, src + lo, hi - lo);
    }
}

/* Read every byte once (integer sum: vectorizes without reassociation flags). */
uint64_t fs_probe_read(const uint64_t *src, ptrdiff_t n_words, int n_threads) {
    uint64_t total = 0;
    #pragma omp parallel for num_threads(n_threads) schedule(static) reduction(+:total)
    for (int t = 0; t < n_threads; t++) {
        FS_SPLIT(n_words, n_threads, t, lo, hi)
        uint64_t sum = 0;
        for (ptrdiff_t i = lo; i < hi; i++) sum += src[i];
        total += sum;
    }
    return total;
}

/* Read every byte of whole slabs once in the order fs_columns.h's gather reads a non-last
   axis (softmax(x, axis=0) of a C-ordered matrix): a slab is `rows` rows `row_bytes`
   apart, read in units of `part` bytes of each of its rows, the rows 16 further on
   prefetched as the gather does; each thread takes a contiguous share of the units. */
uint64_t fs_probe_read_parts(const uint8_t *src, ptrdiff_t n_bytes, ptrdiff_t row_bytes,
                             ptrdiff_t rows, ptrdiff_t part, int n_threads) {
    const ptrdiff_t slab = row_bytes * rows, per_slab = row_bytes / part;
    const ptrdiff_t units = n_bytes / slab * per_slab;
    uint64_t total = 0;
    #pragma omp parallel for num_threads(n_threads) schedule(static) reduction(+:total)
    for (int t = 0; t < n_threads; t++) {
        FS_SPLIT(units, n_threads, t, lo, hi)
        uint64_t sum = 0;
        for (ptrdiff_t u = lo; u < hi; u++) {
            const uint8_t *first = src + u / per_slab * slab + u % per_slab * part;
            for (ptrdiff_t i = 0; i < rows; i++) {
                const uint64_t *p = (const uint64_t *)(first + i * row_bytes);
                if (i + 16 < rows)
                    for (ptrdiff_t b = 0; b < part; b += 64)
                        __builtin_prefetch(first + (i + 16) * row_bytes + b);
                for (ptrdiff_t k = 0; k < part / 8; k++) sum += p[k];
            }
        }
        total += sum;
    }
    return total;
}

/* exp(x) = 2^k exp(r), r = x - k ln2 in two parts (Cody-Waite); exp(r) by a minimax
   polynomial; 2^k built in the exponent bits. Clamped so that k stays in range. */
static inline float fs_exp_f32(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float k = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

static inline double fs_exp_f64(double x) {
    x = x < -708.0 ? -708.0 : x;
    x = x > 709.0 ? 709.0 : x;
    /* k = round(x / ln2) by adding 1.5 * 2^52: the integer lands in the low mantissa
       bits, read back as an integer without a double -> int64 conversion (AVX2 has
       none, and the loop would not vectorize with one). */
    double shifted = x * 1.4426950408889634 + 6755399441055744.0;
    uint64_t k_bits;
    memcpy(&k_bits, &shifted, sizeof k_bits);
    double k = shifted - 6755399441055744.0;
    double r = x - k * 6.93145751953125e-1;
    r = r - k * 1.42860682030941723212e-6;
    /* Taylor to degree 12 on |r| <= ln2/2: truncation error below 2^-53 relative */
    double p = 2.08767569878681e-9;
    p = p * r + 2.505210838544172e-8;
    p = p * r + 2.755731922398589e-7;
    p = p * r + 2.7557319223985893e-6;
    p = p * r + 2.48015873015873e-5;
    p = p * r + 1.984126984126984e-4;
    p = p * r + 1.388888888888889e-3;
    p = p * r + 8.333333333333333e-3;
    p = p * r + 4.1666666666666664e-2;
    p = p * r + 1.6666666666666666e-1;
    p = p * r + 0.5;
    p = p * r + 1.0;
    double e = p * r + 1.0;
    /* the low bits of k_bits hold k (two's complement); the rest shifts out */
    uint64_t bits = (k_bits + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

/* Each thread exponentiates its own L1-sized block `reps` times; the shift changes
   every repetition so that no pass can be skipped as a repeat of the last one. */
void fs_probe_exp_f32(const float *x, float *y, ptrdiff_t n, ptrdiff_t reps, int n_threads) {
    #pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int t = 0; t < n_threads; t++) {
        const float *xt = x + t * n;
        float *yt = y + t * n;
        for (ptrdiff_t rep = 0; rep < reps; rep++) {
            float shift = (float)rep * 1e-9f;
            for (ptrdiff_t i = 0; i < n; i++) yt[i] = fs_exp_f32(xt[i] - shift);
        }
    }
}

void fs_probe_exp_f64(const double *x, double *y, ptrdiff_t n, ptrdiff_t reps, int n_threads) {
    #pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int t = 0; t < n_threads; t++) {
        const double *xt = x + t * n;
        double *yt = y + t * n;
        for (ptrdiff_t rep = 0; rep < reps; rep++) {
            double shift = (double)rep * 1e-12;
            for (ptrdiff_t i = 0; i < n; i++) yt[i] = fs_exp_f64(xt[i] - shift);
        }
    }
}
"""

# The axis-0 read: the benchmark's 1000x4096 float32 (rows 16 KiB apart) read in
# fs_columns.h's units of 512 bytes (128 floats) of each row.
PART_ROWS, PART_ROW_BYTES, PART_BYTES = 1000, 16 << 10, 512

# Elements per thread in the exp probe: 2 x 8 KiB of float32 (in and out) sit in L1.
EXP_BLOCK = 2048
EXP_ELEMENTS_PER_TIMING = 50_000_000


def _cpu_flags():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def compile_probe(directory):
    """(ctypes library, compiler command) or (None, why not)."""
    compiler = os.environ.get("CC", "gcc")
    if shutil.which(compiler) is None:
        return None, f"no C compiler ({compiler} not found)"
    source = Path(directory) / "fs_probe.c"
    library = Path(directory) / "fs_probe.so"
    source.write_text(PROBE_SOURCE)
    flags = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC"]
    if {"avx2", "fma"} <= _cpu_flags():
        flags[1:1] = ["-mavx2", "-mfma"]
    command = [compiler, *flags, str(source), "-o", str(library)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return None, f"{' '.join(command)} failed: {result.stderr.strip()[:400]}"
    lib = ctypes.CDLL(str(library))
    pointer, size = ctypes.c_void_p, ctypes.c_ssize_t
    lib.fs_probe_fill.argtypes = [pointer, pointer, size, ctypes.c_int]
    lib.fs_probe_copy.argtypes = [pointer, pointer, size, ctypes.c_int]
    lib.fs_probe_read.argtypes = [pointer, size, ctypes.c_int]
    lib.fs_probe_read.restype = ctypes.c_uint64
    lib.fs_probe_read_parts.argtypes = [pointer, size, size, size, size, ctypes.c_int]
    lib.fs_probe_read_parts.restype = ctypes.c_uint64
    for name in ("fs_probe_exp_f32", "fs_probe_exp_f64"):
        getattr(lib, name).argtypes = [pointer, pointer, size, size, ctypes.c_int]
    flags_text = " ".join(f for f in flags if f not in ("-shared", "-fPIC"))
    return lib, f"C ({Path(compiler).name} {flags_text})"


def _median_seconds(call, repeat):
    call()  # warm-up: faults pages in, wakes threads
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _address(array):
    return array.ctypes.data_as(ctypes.c_void_p)


def _bandwidth_c(lib, thread_counts, n_bytes, repeat):
    rows = []
    source, destination = np.empty(n_bytes, np.uint8), np.empty(n_bytes, np.uint8)
    lib.fs_probe_fill(_address(source), _address(destination), n_bytes, max(thread_counts))
    for n in thread_counts:
        seconds = _median_seconds(
            lambda: lib.fs_probe_copy(_address(source), _address(destination), n_bytes, n), repeat)
        rows.append(("copy bandwidth (read + write)", n, 2 * n_bytes / seconds / 1e9, "GB/s"))
    words = source.view(np.uint64)
    for n in thread_counts:
        seconds = _median_seconds(
            lambda: lib.fs_probe_read(_address(words), words.size, n), repeat)
        rows.append(("read bandwidth", n, n_bytes / seconds / 1e9, "GB/s"))
    slab_bytes = PART_ROWS * PART_ROW_BYTES
    read_bytes = n_bytes // slab_bytes * slab_bytes
    for n in thread_counts:
        seconds = _median_seconds(
            lambda: lib.fs_probe_read_parts(_address(source), n_bytes, PART_ROW_BYTES,
                                            PART_ROWS, PART_BYTES, n), repeat)
        rows.append((f"read bandwidth, {PART_BYTES}-byte parts of rows "
                     f"{PART_ROW_BYTES >> 10} KiB apart (axis 0)", n,
                     read_bytes / seconds / 1e9, "GB/s"))
    return rows


def measure_c(lib, thread_counts, n_bytes, repeat):
    """Bandwidth and exp rows measured with the compiled probe."""
    rows = _bandwidth_c(lib, thread_counts, n_bytes, repeat)
    rng = np.random.default_rng(0)
    for dtype, function in ((np.float32, lib.fs_probe_exp_f32), (np.float64, lib.fs_probe_exp_f64)):
        for n in thread_counts:
            x = (rng.standard_normal(EXP_BLOCK * n) * 3).astype(dtype)
            y = np.empty_like(x)
            reps = max(1, EXP_ELEMENTS_PER_TIMING // (EXP_BLOCK * n))
            seconds = _median_seconds(
                lambda: function(_address(x), _address(y), EXP_BLOCK, reps, n), repeat)
            # y holds the last repetition, whose arguments were shifted as in the C loop
            last_shift = dtype(reps - 1) * dtype(1e-9 if dtype is np.float32 else 1e-12)
            exact = np.exp((x - last_shift).astype(np.float64))
            error = float(np.max(np.abs(y / exact - 1)))
            per_core = EXP_BLOCK * reps / seconds / 1e9  # each thread did EXP_BLOCK * reps
            rows.append((f"exp {np.dtype(dtype).name} (per core; max rel. error {error:.1e})",
                         n, per_core, "elements/ns"))
    return rows


def measure_numpy(thread_counts, n_bytes, repeat):
    """The same rows from NumPy: lower bounds, as NumPy's loops are not the ceiling."""
    rows = []
    source, destination = np.ones(n_bytes, np.uint8), np.zeros(n_bytes, np.uint8)
    for n in thread_counts:
        bounds = np.linspace(0, n_bytes, n + 1).astype(int)
        parts = [(destination[lo:hi], source[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            def copy():
                for future in [pool.submit(np.copyto, *part) for part in parts]:
                    future.result()

            seconds = _median_seconds(copy, repeat)
        rows.append(("copy bandwidth (read + write)", n, 2 * n_bytes / seconds / 1e9, "GB/s"))
    del source, destination
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal(EXP_BLOCK) * 3).astype(dtype)
        y = np.empty_like(x)
        reps = 2000

        def exps():
            for _ in range(reps):
                np.exp(x, out=y)

        seconds = _median_seconds(exps, repeat)
        rows.append((f"exp {np.dtype(dtype).name} (per core, np.exp)", 1,
                     EXP_BLOCK * reps / seconds / 1e9, "elements/ns"))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], metavar="N",
                        help="thread counts (default: 1 2)")
    parser.add_argument("--mib", type=int, default=256,
                        help="MiB per array of the bandwidth probes (default: 256)")
    parser.add_argument("--repeat", type=int, default=7, help="repetitions (median; default 7)")
    parser.add_argument("--numpy", action="store_true",
                        help="skip the C probe and measure with NumPy")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.threads) or args.mib < 1 or args.repeat < 1:
        parser.error("--threads, --mib and --repeat must be positive")
    n_bytes = args.mib << 20

    with tempfile.TemporaryDirectory(prefix="fastsoft-probe-") as directory:
        lib, method = (None, "--numpy given") if args.numpy else compile_probe(directory)
        if lib is None:
            print(f"probe.py: C probe unavailable ({method}); measuring with NumPy, which "
                  "gives lower bounds", file=sys.stderr)
            method = "NumPy (lower bounds)"
            rows = measure_numpy(args.threads, n_bytes, args.repeat)
        else:
            rows = measure_c(lib, args.threads, n_bytes, args.repeat)

    print(f"# Machine ceilings: {_cpu_model()}, {os.cpu_count()} CPUs; {method}; "
          f"arrays of {args.mib} MiB; median of {args.repeat}")
    print()
    print("| ceiling | threads | value | unit |")
    print("| --- | ---: | ---: | --- |")
    for name, n, value, unit in rows:
        print(f"| {name} | {n} | {value:.3g} | {unit} |")
    copies = [value for name, n, value, _ in rows if name.startswith("copy")]
    if copies:
        # what the memory-bound acceptance case (softmax of 16384x4096 float32) costs at best
        floor_ms = 2 * 16384 * 4096 * 4 / (max(copies) * 1e9) * 1e3
        print(f"\nAt the best copy bandwidth, softmax of 16384x4096 float32 (512 MiB moved) "
              f"takes at least {floor_ms:.1f} ms.")
    if args.json is not None:
        document = {
            "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "method": method,
            "mib": args.mib, "repeat": args.repeat,
            "rows": [{"ceiling": name, "threads": n, "value": value, "unit": unit}
                     for name, n, value, unit in rows],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
