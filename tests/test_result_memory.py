"""Recycled memory of large results (fastsoft._kernels._buffers): reuse, lifetime, bounds."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastsoft as fs
from fastsoft._kernels import _buffers

LARGE_ROWS = (_buffers.LARGE_RESULT_BYTES // (4 * 10)) + 1     # float32 rows of 10: > 4 MiB


def _address(a):
    return a.__array_interface__["data"][0]


def _softmax_reference(x):
    z = x.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def empty_cache():
    _buffers.release()
    yield
    _buffers.release()


def test_large_results_reuse_freed_memory_with_correct_values(empty_cache):
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((LARGE_ROWS, 10)).astype(np.float32)
    x2 = (rng.standard_normal((LARGE_ROWS, 10)) * 5).astype(np.float32)
    first = fs.softmax(x1)
    assert isinstance(first.base, _buffers._ResultMemory)
    assert first.flags.c_contiguous and first.flags.writeable and first.flags.aligned
    assert _address(first) % _buffers.ALIGNMENT == 0
    np.testing.assert_allclose(first, _softmax_reference(x1), rtol=2e-6, atol=1e-30)
    address = _address(first)
    del first
    assert _buffers.info()[0] == 1
    second = fs.log_softmax(x2)
    assert _address(second) == address             # the kept block, taken again
    assert _buffers.info()[0] == 0
    # nothing of the first result shows through
    np.testing.assert_allclose(second, np.log(_softmax_reference(x2)), rtol=1e-5, atol=1e-5)


def test_views_keep_the_memory_alive(empty_cache):
    x = np.random.default_rng(1).standard_normal((LARGE_ROWS, 10)).astype(np.float32)
    result = fs.softmax(x)
    view = result[::1000]
    expected = view.copy()
    del result
    assert _buffers.info()[0] == 0                   # still in use by the view
    other = fs.softmax(x * 3)
    assert not np.shares_memory(view, other)
    np.testing.assert_array_equal(view, expected)
    del view
    assert _buffers.info()[0] == 1


def test_small_results_are_ordinary_arrays(empty_cache):
    small = fs.softmax(np.ones((1000, 10), dtype=np.float32))
    assert small.flags.owndata
    assert _buffers.info()[0] == 0


def test_kept_memory_stays_within_its_bounds(empty_cache):
    _, _, limit = _buffers.info()
    results = [_buffers.empty((rows, 1 << 18), np.float32) for rows in range(4, 16)]
    total = sum(r.nbytes for r in results)
    assert total > limit or len(results) > _buffers.KEEP_BUFFERS
    del results
    blocks, kept, limit = _buffers.info()
    assert 1 <= blocks <= _buffers.KEEP_BUFFERS
    assert kept <= limit
    assert _buffers.release() == kept
    assert _buffers.info()[:2] == (0, 0)


def test_a_block_is_not_taken_for_a_much_smaller_result(empty_cache):
    big = _buffers.empty((64, 1 << 18), np.float32)        # 64 MiB
    address = _address(big)
    del big
    small = _buffers.empty((16, 1 << 18), np.float32)      # 16 MiB: would waste 48
    assert _address(small) != address
    assert _buffers.info()[0] == 1
    near = _buffers.empty((60, 1 << 18), np.float32)       # within 5/4 of the block
    assert _address(near) == address


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.complex128, np.int8])
def test_empty_matches_numpy_empty(dtype, empty_cache):
    shape = (3, 1 << 21)
    a = _buffers.empty(shape, dtype)
    assert a.shape == shape and a.dtype == np.dtype(dtype) and a.flags.c_contiguous
    a[...] = 1
    assert np.all(a == 1)


def test_float16_large_results_through_the_cache(empty_cache):
    x = np.random.default_rng(2).standard_normal((LARGE_ROWS, 10)).astype(np.float16)
    result = fs.softmax(x)
    assert result.dtype == np.float16
    np.testing.assert_allclose(result.astype(np.float64), _softmax_reference(x),
                               rtol=2e-3, atol=1e-6)


def _run(code, **env):
    environment = dict(os.environ, **env)
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True,
                               capture_output=True, text=True, env=environment)
    return completed.stdout + completed.stderr


def test_environment_turns_recycling_off():
    output = _run("""
        import numpy as np, fastsoft as fs
        from fastsoft._kernels import _buffers
        r = fs.softmax(np.zeros((200000, 10), np.float32))
        print(_buffers.info()[2], r.flags.owndata)
        fs.show_config()
        """, FASTSOFT_RESULT_CACHE_MB="0")
    assert output.splitlines()[0] == "0 True"
    assert "recycling off" in output


def test_environment_sets_the_limit_and_rejects_nonsense():
    assert _run("""
        from fastsoft._kernels import _buffers
        print(_buffers.info()[2])
        """, FASTSOFT_RESULT_CACHE_MB="64").split()[0] == str(64 << 20)
    output = _run("""
        from fastsoft._kernels import _buffers
        print(_buffers.info()[2])
        """, FASTSOFT_RESULT_CACHE_MB="lots")
    assert output.split()[0] == str(512 << 20)
    assert "FASTSOFT_RESULT_CACHE_MB" in output


def test_release_result_memory_frees_the_kept_blocks(empty_cache):
    result = fs.softmax(np.zeros((LARGE_ROWS, 10), dtype=np.float32))
    nbytes = result.nbytes
    del result
    assert _buffers.info()[:2] == (1, nbytes)
    assert fs.release_result_memory() == nbytes
    assert _buffers.info()[:2] == (0, 0)
    assert fs.release_result_memory() == 0
