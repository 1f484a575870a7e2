"""Thread-count invariance, concurrent callers and the thread settings.

Inputs are large enough (>= 10^5 elements) that the package really starts threads.
"""

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastsoft as fs
from _arrays import NAMES, REGISTRY, assert_matches_reference

threadpoolctl = pytest.importorskip("threadpoolctl")


def call(name, x, axis=-1, **kwargs):
    return getattr(fs, name)(x, axis=axis, **kwargs)


def big_input(dtype, shape=(640, 257), seed=0):
    """Rows of an odd length, with special values in a few rows and a huge offset in some."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 5
    if shape[0] < 420:
        return x.astype(dtype)
    x[3, 7] = np.nan
    x[100] = -np.inf
    x[200, ::3] = -np.inf
    x[300, 5] = np.inf
    x[400:420] += 1e4
    return x.astype(dtype)


def big_mask(shape, seed=1):
    mask = np.random.default_rng(seed).random(shape) < 0.8
    mask[10] = False
    return mask


CASES = [
    pytest.param(name, dtype, id=f"{name}-{np.dtype(dtype).name}")
    for name in NAMES for dtype in (np.float32, np.float64)
]


@pytest.mark.parametrize("name, dtype", CASES)
def test_thread_count_invariance(name, dtype):
    x = big_input(dtype)
    for axis, where in ((-1, None), (-1, big_mask(x.shape)), (0, None), (None, None)):
        serial = np.asarray(call(name, x, axis, where=where, num_threads=1))
        for threads in (2, 3):
            parallel = call(name, x, axis, where=where, num_threads=threads)
            assert np.array_equal(parallel, serial, equal_nan=True), (threads, axis)
        assert np.array_equal(call(name, x, axis, where=where), serial, equal_nan=True)
        with threadpoolctl.threadpool_limits(limits=1):
            limited = call(name, x, axis, where=where)
        assert np.array_equal(limited, serial, equal_nan=True), axis
    assert_matches_reference(name, serial, x, None)


@pytest.mark.parametrize("name, dtype", CASES)
def test_thread_count_invariance_long_rows(name, dtype):
    """Few very long rows: the parallel split (if any) is inside or across rows."""
    x = big_input(dtype, shape=(3, 50_001), seed=2)
    serial = np.asarray(call(name, x, -1, num_threads=1))
    assert np.array_equal(call(name, x, -1, num_threads=2), serial, equal_nan=True)
    assert_matches_reference(name, serial, x, -1)


@pytest.mark.parametrize("name, dtype", CASES)
@pytest.mark.parametrize("shape", [(100_003, 10), (5_001, 100)], ids=["short", "mid"])
def test_thread_count_invariance_many_chunks(name, dtype, shape):
    """Rows are handed to threads in dynamic chunks of about 256 KiB of input: inputs of
    dozens of chunks (the short-row lanes' tiles, the row loops) give the serial bits
    whatever thread takes which chunk, call after call."""
    x = big_input(dtype, shape=shape, seed=3)
    x[-1] = -np.inf                               # the last, partial tile and chunk
    x[shape[0] // 2, 1] = np.inf
    serial = np.asarray(call(name, x, -1, num_threads=1))
    for threads in (2, 3, 2):
        assert np.array_equal(call(name, x, -1, num_threads=threads), serial, equal_nan=True)
    assert_matches_reference(name, serial, x, -1)


@pytest.mark.parametrize("name", NAMES)
def test_concurrent_callers(name):
    """8 Python threads calling at once on different inputs each get their own answer."""
    inputs = [big_input(np.float64 if k % 2 else np.float32, shape=(300 + 17 * k, 129), seed=k)
              for k in range(8)]
    masks = [big_mask(x.shape, seed=k) if k % 3 == 0 else None for k, x in enumerate(inputs)]
    expected = [np.asarray(call(name, x, -1, where=m, num_threads=1))
                for x, m in zip(inputs, masks)]

    def work(k):
        results = []
        for repeat in range(5):
            threads = 1 + (k + repeat) % 2
            results.append(np.asarray(call(name, inputs[k], -1, where=masks[k],
                                           num_threads=threads)))
        return results

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(work, range(8)))
    for k, results in enumerate(outcomes):
        for result in results:
            assert np.array_equal(result, expected[k], equal_nan=True), k
        assert_matches_reference(name, results[0], inputs[k], -1, where=masks[k])


@pytest.mark.parametrize("name", NAMES)
def test_concurrent_out(name):
    """Concurrent calls writing to disjoint slices of one out= array."""
    x = big_input(np.float64, shape=(8, 400, 97))
    spec = REGISTRY[name]
    out = np.empty(x.shape[:-1] if spec.reduces else x.shape)

    def work(k):
        return call(name, x[k], -1, out=out[k], num_threads=2)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8)))
    assert np.array_equal(out, call(name, x, -1, num_threads=1), equal_nan=True)


# ---------------------------------------------------------------------------------------
# num_threads= and the settings


@pytest.mark.parametrize("name", NAMES)
def test_num_threads_argument_checked(name):
    x = big_input(np.float64, shape=(4, 5))
    for bad in (0, -1):
        with pytest.raises(ValueError):
            call(name, x, num_threads=bad)
    for bad in (1.0, "1", 2.5):
        with pytest.raises(TypeError):
            call(name, x, num_threads=bad)


def test_set_get_round_trip(restore_threads):
    default = fs.get_num_threads()
    assert isinstance(default, int) and default >= 1
    for n in (1, 3, 2):
        assert fs.set_num_threads(n) is None
        assert fs.get_num_threads() == n
    fs.set_num_threads(None)
    assert fs.get_num_threads() == default


def test_set_num_threads_checked(restore_threads):
    fs.set_num_threads(2)
    for bad in (0, -3):
        with pytest.raises(ValueError):
            fs.set_num_threads(bad)
    for bad in (1.5, "2"):
        with pytest.raises(TypeError):
            fs.set_num_threads(bad)
    assert fs.get_num_threads() == 2   # a rejected value changes nothing


def test_set_num_threads_used_by_calls(restore_threads):
    x = big_input(np.float32)
    serial = fs.softmax(x, num_threads=1)
    fs.set_num_threads(2)
    assert np.array_equal(fs.softmax(x), serial, equal_nan=True)
    fs.set_num_threads(1)
    assert np.array_equal(fs.softmax(x), serial, equal_nan=True)


def test_threadpool_limits_reported(restore_threads):
    fs.set_num_threads(None)
    with threadpoolctl.threadpool_limits(limits=1):
        assert fs.get_num_threads() == 1
    # an explicit setting wins over the limit
    fs.set_num_threads(2)
    with threadpoolctl.threadpool_limits(limits=1):
        assert fs.get_num_threads() == 2


def test_threadpool_limits_restored(restore_threads):
    fs.set_num_threads(None)
    before = fs.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=1):
        pass
    assert fs.get_num_threads() == before


def test_openmp_library_visible_to_threadpoolctl():
    """When built with OpenMP, threadpoolctl can see (and so limit) fastsoft's runtime."""
    config = _show_config_text()
    if "openmp" not in config.lower() or not _openmp_on(config):
        pytest.skip("built without OpenMP")
    apis = {info["internal_api"] for info in threadpoolctl.threadpool_info()}
    assert "openmp" in apis


def _show_config_text():
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        fs.show_config()
    return buffer.getvalue()


def _openmp_on(config):
    for line in config.lower().splitlines():
        if "openmp" in line:
            return not re.search(r"\b(no|not|off|false|disabled|without)\b", line)
    return False


def test_layout_moves_use_the_calls_thread_count(monkeypatch):
    """A non-last axis moved into rows (and the result moved back) runs on the call's
    num_threads, not the default: a Dask block call asks for 1 on a worker whose other
    cores run other blocks."""
    import fastsoft._kernels

    core = fastsoft._kernels.core
    real_move = core.move_axis_last
    seen = []

    def recording_move(*args):
        seen.append(args[-1])
        return real_move(*args)

    monkeypatch.setattr(core, "move_axis_last", recording_move)
    x = np.random.default_rng(3).standard_normal((300, 400)).astype(np.float32)
    labels = np.arange(400) % 300
    calls = [
        lambda t: fs.sigsoftmax(x, axis=0, num_threads=t),
        lambda t: fs.softmax_backward(x, x, axis=0, num_threads=t),
        lambda t: fs.cross_entropy(x, labels, axis=0, return_grad=True, num_threads=t),
    ]
    for call_with in calls:
        for threads in (1, 2):
            seen.clear()
            call_with(threads)
            assert seen and set(seen) == {threads}, (threads, seen)
