"""Mean cross-entropy with its gradient over an on-disk float32 array bigger than memory.

Writes a float32 logits file (default 8 GiB) in a temporary directory, block by block,
then on a 2-worker dask.distributed LocalCluster (one thread per worker, each worker
limited to --memory-limit) computes ``fastsoft.cross_entropy(..., return_grad=True)``:
the mean loss comes back to the client and the gradient (as big as the logits) is
written to a second file with ``dask.array.store``, so every byte of the result really
leaves the workers.  ``--grad norm`` reduces the gradient to its Frobenius norm instead
(no second file).  Reported: wall time, throughput (GB/s of logits, 1 GB = 1e9 bytes),
the peak resident memory of each worker process (psutil, sampled every 20 ms in a thread
inside each worker), and the same loss on the in-memory NumPy path for a slice that fits
(its throughput, and the ratio).  The files are deleted at the end (--keep keeps them).

    python bench/dask_ondisk.py                    # the 8 GiB run of docs/scaling.md
    python bench/dask_ondisk.py --gib 0.5          # a quick check

Memory: a worker's file reads go through a short-lived np.memmap whose slice is copied
out, so the page cache (which the kernel may drop at will) is not counted as worker
memory; what is counted is what the worker really holds.
"""

import argparse
import math
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

GB = 1e9
GIB = 2**30


class MemmapBlocks:
    """Array-like view of a raw float32 file for dask.array: reads and writes blocks.

    Each access maps the file, copies the block and unmaps it, so nothing stays mapped
    in the worker between tasks.  Pickles as (path, shape, dtype).
    """

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        mapped = np.memmap(self.path, dtype=self.dtype, mode="r", shape=self.shape)
        block = np.array(mapped[index])
        del mapped
        return block

    def __setitem__(self, index, values):
        mapped = np.memmap(self.path, dtype=self.dtype, mode="r+", shape=self.shape)
        mapped[index] = values
        mapped.flush()
        del mapped


def write_logits(path, n_rows, n_classes, rows_per_block, seed=0):
    """A raw float32 file of standard normal logits times 3, written block by block."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as file:
        for start in range(0, n_rows, rows_per_block):
            rows = min(rows_per_block, n_rows - start)
            block = rng.standard_normal((rows, n_classes), dtype=np.float32)
            block *= 3.0
            block.tofile(file)


def start_sampler(dask_worker, interval=0.02):
    """Inside a worker: sample this process's RSS in a daemon thread, keep the peak."""
    import psutil

    process = psutil.Process()
    state = {"peak": process.memory_info().rss, "running": True}

    def sample():
        while state["running"]:
            state["peak"] = max(state["peak"], process.memory_info().rss)
            time.sleep(interval)

    threading.Thread(target=sample, daemon=True, name="fastsoft-rss").start()
    dask_worker.fastsoft_rss = state
    return state["peak"]


def read_sampler(dask_worker):
    state = dask_worker.fastsoft_rss
    state["running"] = False
    return state["peak"]


def in_memory_reference(path, shape, rows, labels_seed, n_repeat=3):
    """(seconds, GB/s) of fastsoft.cross_entropy with gradient on the first `rows` rows,
    loaded into RAM, best of `n_repeat`; also its loss for a cross-check."""
    import fastsoft as fs

    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=shape)
    logits = np.array(mapped[:rows])
    del mapped
    labels = np.random.default_rng(labels_seed).integers(0, shape[1], rows)
    best = math.inf
    for _ in range(n_repeat):
        start = time.perf_counter()
        loss, grad = fs.cross_entropy(logits, labels, return_grad=True)
        best = min(best, time.perf_counter() - start)
        del grad
    return best, logits.nbytes / GB / best, float(loss)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=8.0, help="size of the logits file")
    parser.add_argument("--classes", type=int, default=32000, help="number of classes")
    parser.add_argument("--memory-limit", default="1GiB", help="per-worker memory limit")
    parser.add_argument("--block-mib", type=float, default=64.0,
                        help="size of one Dask block of logits")
    parser.add_argument("--class-chunks", type=int, default=1,
                        help="split the class axis into this many chunks (1: whole rows)")
    parser.add_argument("--grad", choices=("store", "norm"), default="store",
                        help="write the gradient to a second file, or only its norm")
    parser.add_argument("--slice-mib", type=float, default=512.0,
                        help="size of the in-memory NumPy comparison")
    parser.add_argument("--dir", default=None, help="where to put the temporary files")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--progress", action="store_true", help="show Dask's progress bar")
    args = parser.parse_args(argv)

    import dask.array as da
    import distributed

    import fastsoft as fs

    n_classes = args.classes
    row_bytes = 4 * n_classes
    n_rows = int(args.gib * GIB) // row_bytes
    shape = (n_rows, n_classes)
    rows_per_block = max(1, int(args.block_mib * 2**20) // row_bytes)
    directory = tempfile.mkdtemp(prefix="fastsoft-dask-", dir=args.dir)
    logits_path = os.path.join(directory, "logits.f32")
    grad_path = os.path.join(directory, "grad.f32")
    print(f"logits {shape} float32 = {n_rows * row_bytes / GIB:.2f} GiB in {directory}; "
          f"blocks of {rows_per_block} rows x {n_classes} classes "
          f"({rows_per_block * row_bytes / 2**20:.0f} MiB) split {args.class_chunks}x along "
          f"the classes; workers 2 x 1 thread, memory limit {args.memory_limit} each")
    try:
        start = time.perf_counter()
        write_logits(logits_path, n_rows, n_classes, rows_per_block)
        print(f"wrote the logits in {time.perf_counter() - start:.1f} s")

        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            memory_limit=args.memory_limit, dashboard_address=None, silence_logs=40)
        client = distributed.Client(cluster)
        baseline = client.run(start_sampler)

        class_chunk = -(-n_classes // args.class_chunks)
        logits = da.from_array(MemmapBlocks(logits_path, shape, np.float32),
                               chunks=(rows_per_block, class_chunk), asarray=False,
                               fancy=False, name="logits")
        labels = da.random.default_rng(1).integers(0, n_classes, size=n_rows,
                                                   chunks=rows_per_block)
        loss, grad = fs.cross_entropy(logits, labels, return_grad=True)
        if args.grad == "store":
            with open(grad_path, "wb") as file:
                file.truncate(n_rows * row_bytes)       # sparse until written
            result = da.store(grad, MemmapBlocks(grad_path, shape, np.float32),
                              lock=False, compute=False)
        else:
            result = da.sqrt((grad.astype(np.float64) ** 2).sum())

        start = time.perf_counter()
        futures = client.compute([loss, result])
        if args.progress:
            distributed.progress(futures)
        loss_value, result_value = client.gather(futures)
        wall = time.perf_counter() - start
        peaks = client.run(read_sampler)
        client.close()
        cluster.close()

        data_gb = n_rows * row_bytes / GB
        print(f"\nmean loss {float(loss_value):.6f}"
              + ("" if args.grad == "store" else f", gradient norm {float(result_value):.6g}"))
        print(f"wall time {wall:.1f} s, throughput {data_gb / wall:.3f} GB/s "
              f"({data_gb:.2f} GB of logits"
              + (f", {data_gb:.2f} GB of gradient written)" if args.grad == "store" else ")"))
        for worker, peak in sorted(peaks.items()):
            print(f"  worker {worker}: peak RSS {peak / 2**20:.0f} MiB "
                  f"(at start {baseline[worker] / 2**20:.0f} MiB)")

        slice_rows = max(1, min(n_rows, int(args.slice_mib * 2**20) // row_bytes))
        seconds, numpy_gbs, _ = in_memory_reference(logits_path, shape, slice_rows, 2)
        print(f"in-memory NumPy path ({slice_rows} rows, {slice_rows * row_bytes / 2**20:.0f} "
              f"MiB, {fs.get_num_threads()} threads): {seconds * 1e3:.0f} ms, "
              f"{numpy_gbs:.3f} GB/s")
        print(f"ratio Dask on disk / NumPy in memory: {data_gb / wall / numpy_gbs:.3f}")
    finally:
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
