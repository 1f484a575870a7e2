"""bench/probe.py's compiled loops read what they claim to read (not how fast: nothing here
asserts a speed).

Each read returns a wrapping uint64 sum of the words it touched; NumPy sums the words the
probe is meant to touch, independently.  A probe that skipped a row, read a part twice or
ran past the whole slabs into the remainder would give another sum.
"""

import ctypes
import importlib.util
from pathlib import Path

import numpy as np
import pytest

PROBE_PATH = Path(__file__).resolve().parents[1] / "bench" / "probe.py"


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("fastsoft_bench_probe", PROBE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lib, how = module.compile_probe(tmp_path_factory.mktemp("probe"))
    if lib is None:
        pytest.skip(f"the C probe does not build here: {how}")
    return module, lib


def _words(n_bytes, seed):
    # small values: the sums stay far from wrapping, so a wrong count cannot cancel out
    return np.random.default_rng(seed).integers(0, 1 << 20, n_bytes // 8, dtype=np.uint64)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_sequential_read_sums_every_word(probe, n_threads):
    module, lib = probe
    words = _words(8 * 1000 + 24, 0)
    total = lib.fs_probe_read(module._address(words), words.size, n_threads)
    assert total == int(words.sum())


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("rows, row_bytes, part", [
    (20, 4096, 512),    # 8 units a slab
    (17, 2048, 1024),   # 2 units a slab, fewer rows than the prefetch distance + 1
    (40, 1024, 64),     # one cache line a row: 16 units a slab
])
def test_parts_read_sums_the_whole_slabs_once(probe, n_threads, rows, row_bytes, part):
    module, lib = probe
    slab = rows * row_bytes
    # three whole slabs and a remainder of a partial slab, which must not be read
    n_bytes = 3 * slab + row_bytes * (rows // 2) + 8 * 5
    words = _words(n_bytes, 1)
    total = lib.fs_probe_read_parts(module._address(words), n_bytes, row_bytes, rows, part,
                                    n_threads)
    whole = 3 * slab // 8
    assert total == int(words[:whole].sum())
    assert total != int(words.sum())


def test_parts_read_row_names_the_benchmark_layout(probe):
    """The table row the docs quote is produced, with the benchmark's layout in its name."""
    module, lib = probe
    rows = module._bandwidth_c(lib, [1], module.PART_ROWS * module.PART_ROW_BYTES * 2, 1)
    names = [name for name, *_ in rows]
    assert "read bandwidth, 512-byte parts of rows 16 KiB apart (axis 0)" in names
    assert all(value > 0 for _, _, value, _ in rows)
