"""The kernels' internal fast paths against their general paths and the reference.

The vector kernels choose between paths the caller never sees: short rows go through
fs_short.h, one row per vector lane, rows whose spread max - min fits the
exponential's normal range take its short path, a call with the array alone goes
straight to the kernels (``small_call``), and cross-entropy with index targets and no
smoothing has its own three-pass row.  Each test here forces both sides of one of those
choices and checks that they agree with each other (bit for bit where the design says
so) and with the float64/long double reference.
"""

import numpy as np
import pytest

import fastsoft as fs
from fastsoft._kernels import _buffers

from _arrays import assert_matches_reference
from test_backward import assert_matches_formula as assert_backward_matches_formula

FLOATS = (np.float32, np.float64)
FORWARD = ("softmax", "log_softmax", "logsumexp", "sigsoftmax", "log_sigsoftmax")
ROW_BACKWARD = ("softmax_backward", "log_softmax_backward", "sigsoftmax_backward",
                "log_sigsoftmax_backward")
# the public functions that are the kernels' compiled entries (small_call_entry)
COMPILED_ENTRIES = FORWARD + ROW_BACKWARD + ("logsumexp_backward", "cross_entropy")


def _rows(n_rows, n_cols, dtype, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_rows, n_cols)) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("n_cols", (1, 2, 3, 7, 8, 9, 10, 15, 16, 17, 31, 32, 33))
def test_short_row_tiles_match_reference(name, n_cols, dtype):
    # 1500 rows: several tiles of 1024 values, the last one partial
    x = _rows(1500, n_cols, dtype, seed=n_cols)
    assert_matches_reference(name, getattr(fs, name)(x, axis=-1), x)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("n_cols", (1, 2, 3, 5, 8, 10, 15, 16, 17, 24, 31, 32))
def test_short_row_tiles_equal_the_row_loops(name, dtype, n_cols):
    # a mask of all True sends the same rows through the per-row loops: same bits.  Every
    # row length replays a different order of the row loop's sum (fs_short.h); 701 rows
    # leave a partial group of rows at the end
    x = _rows(701, n_cols, dtype, seed=3 + n_cols)
    last = n_cols - 1
    x[5] = -np.inf
    x[6, last // 2] = np.inf
    x[7, last] = np.nan
    x[8, :(n_cols + 1) // 2] = -1e4      # a spread beyond the exponential's short path
    x[9, :] = x[9, 0]                    # ties at the max
    x[10, :(n_cols + 1) // 2] = 100.0    # sigsoftmax's tails beyond the short exponential
    x[11, :] = np.nan
    x[12, last] = -300.0
    x[13, :] = np.linspace(-110.0, 0.0, n_cols)   # float results down to subnormals
    x[14, :] = -0.0
    x[15, last] = 0.0
    x[16, :] = np.float64(np.finfo(dtype).max)    # +max in every entry: ties, no overflow
    x[700, 0] = 5.0                               # the partial group's last row
    func = getattr(fs, name)
    with np.errstate(invalid="ignore"):
        tiled = func(x, axis=-1)
        per_row = func(x, axis=-1, where=np.ones(x.shape, dtype=bool))
    np.testing.assert_array_equal(tiled, per_row)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FORWARD)
def test_wide_spread_rows_take_the_general_exponential(name, dtype):
    # rows whose values lie more than 87 (float) / 708 (double) below their max cannot
    # use the short exponential path; results must still be right, subnormals included
    x = _rows(4, 300, dtype, seed=5)
    x[0, :100] -= 100.0
    x[1, :50] -= 800.0 if dtype == np.float64 else 101.0
    x[2, 10] = -np.inf
    x[3, :] = np.linspace(-120.0, 0.0, 300)
    assert_matches_reference(name, getattr(fs, name)(x, axis=-1), x)


@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize(
    "x",
    [
        _rows(1, 1000, np.float32),
        _rows(1, 1000, np.float64),
        _rows(3, 5, np.float32)[0],                     # 1-D
        _rows(12, 6, np.float64).reshape(2, 6, 6),      # 3-D
        _rows(1, 1, np.float32),
        _rows(64, 511, np.float32),                     # just under the size limit
    ],
    ids=["1x1000-f32", "1x1000-f64", "1d", "3d", "1x1", "64x511"],
)
def test_small_calls_equal_the_full_path(name, x):
    func = getattr(fs, name)
    small = func(x)                                      # the array alone: small_call
    full = func.__wrapped__(x, axis=-1, num_threads=1)   # the Python function: full path
    assert type(small) is type(full)
    assert np.asarray(small).dtype == np.asarray(full).dtype
    assert np.shape(small) == np.shape(full)
    np.testing.assert_array_equal(small, full)
    assert_matches_reference(name, small, x)


@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize(
    "x",
    [
        np.arange(6, dtype=np.float16).reshape(2, 3),            # computed in float32
        np.arange(6, dtype=np.int64).reshape(2, 3),              # computed in float64
        _rows(4, 6, np.float32)[:, ::2],                         # not contiguous
        _rows(4, 6, np.float64).T,                               # Fortran order
        _rows(4, 6, np.float64).astype(">f8"),                   # byte-swapped
        np.zeros((0, 5), np.float32),                            # empty
        [[1.0, 2.0, 3.0]],                                       # a list
    ],
    ids=["f16", "int", "strided", "fortran", "swapped", "empty", "list"],
)
def test_small_calls_pass_other_inputs_to_the_full_path(name, x):
    expected = getattr(fs, name)(x, axis=-1)
    got = getattr(fs, name)(x)
    assert np.asarray(got).dtype == np.asarray(expected).dtype
    np.testing.assert_array_equal(got, expected)


def _entry_arguments(name):
    """(module, positional arguments) of the public function `name` on a small call."""
    x = _rows(2, 7, np.float64)
    y = fs.softmax(x)
    if name in FORWARD:
        return "fastsoft._activations", (x,)
    if name == "cross_entropy":
        return "fastsoft._losses", (x, np.array([3, 0]))
    if name == "logsumexp_backward":
        return "fastsoft._backward", (np.ones(2), x, fs.logsumexp(x))
    extra = (x,) if name.startswith("sig") or name.startswith("log_sig") else ()
    return "fastsoft._backward", (x + 1.0, y, *extra)


@pytest.mark.parametrize("name", COMPILED_ENTRIES)
def test_public_functions_behave_as_functions(name):
    # the public forward, backward and cross-entropy functions are compiled functions
    # (the kernels' small-call entries), not Python ones: they must still look, pickle and
    # fail like the functions they wrap, and take exactly their arguments
    import copy
    import inspect
    import pickle

    func = getattr(fs, name)
    module, args = _entry_arguments(name)
    assert func.__name__ == name and func.__module__ == module
    assert f"function {name} " in repr(func)
    assert func.__doc__ == func.__wrapped__.__doc__ and "Examples" in func.__doc__
    assert inspect.signature(func) == inspect.signature(func.__wrapped__)
    # the compiled function's own parameters, not only what __wrapped__ reports
    assert (inspect.signature(func, follow_wrapped=False)
            == inspect.signature(func.__wrapped__))
    assert pickle.loads(pickle.dumps(func)) is func
    assert copy.deepcopy(func) is func
    with pytest.raises(TypeError, match="axs"):
        func(*args, axs=0)                      # a misspelled keyword reaches Python's check
    with pytest.raises(TypeError, match=name):
        func()
    with pytest.raises(TypeError, match=name):
        # one positional too many: num_threads (cross_entropy's axis) is keyword-only
        func(*args, 2) if name == "cross_entropy" else func(*args, -1, 2)
    small, full = func(*args), func.__wrapped__(*args, num_threads=1)
    np.testing.assert_array_equal(small, full)
    if name != "cross_entropy":
        np.testing.assert_array_equal(func(*args, -1), full)


def test_small_call_rejects_a_zero_dimensional_array():
    with pytest.raises(np.exceptions.AxisError):
        fs.softmax(np.float32(1.0).reshape(()))


@pytest.mark.parametrize("name", FORWARD)
def test_small_calls_with_keywords(name):
    func = getattr(fs, name)
    x = _rows(4, 50, np.float32, seed=2)
    expected = func.__wrapped__(x, axis=-1, num_threads=1)      # full path
    for kwargs in ({"axis": -1}, {"axis": 1}, {"num_threads": 2}, {"axis": -1, "num_threads": 1}):
        np.testing.assert_array_equal(func(x, **kwargs), expected)
    # axis 0 (the entry moves the columns into rows), an axis of another int type (declined)
    # and bad values still work or fail as on the full path
    assert_matches_reference(name, func(x, axis=0), x, axis=0)
    assert_matches_reference(name, func(x, axis=np.int64(1)), x, axis=1)
    with pytest.raises(ValueError):
        func(x, num_threads=0)
    with pytest.raises(TypeError):
        func(x, num_threads=1.5)
    with pytest.raises(TypeError):
        func(x, num_threads=True)
    with pytest.raises(np.exceptions.AxisError):
        func(x, axis=2)


SMALL_SHAPES = [(1, 1000), (7,), (2, 6, 6), (1, 1), (64, 511), (40, 10)]
SMALL_IDS = ["1x1000", "1d", "3d", "1x1", "64x511", "40x10"]


def _guarded(shape, dtype):
    """An array of `shape` inside a buffer whose bytes around it must stay untouched."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.full(size + 128, 0x5A, np.uint8)
    return raw, raw[64:64 + size].view(dtype).reshape(shape)


def _assert_guard_intact(raw):
    assert (raw[:64] == 0x5A).all() and (raw[-64:] == 0x5A).all()


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=SMALL_IDS)
@pytest.mark.parametrize("name", ("softmax", "log_softmax", "sigsoftmax", "log_sigsoftmax"))
def test_small_calls_write_into_out(name, shape, dtype):
    # out= on a small plain call is answered by the compiled entry too: the full path's
    # bits, out itself returned, nothing written around it; in place as well
    func = getattr(fs, name)
    x = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=8).reshape(shape)
    full = func.__wrapped__(x)
    raw, out = _guarded(shape, dtype)
    assert func(x, out=out) is out
    np.testing.assert_array_equal(out, full)
    _assert_guard_intact(raw)
    work = x.copy()
    assert func(work, out=work) is work
    np.testing.assert_array_equal(work, full)
    assert_matches_reference(name, out, x)


@pytest.mark.parametrize("name", ("softmax", "log_sigsoftmax"))
def test_small_calls_with_other_outs_take_the_full_path(name):
    # the cases the compiled entry declines still work or fail as the full path makes them
    func = getattr(fs, name)
    x = _rows(4, 50, np.float32, seed=3)
    expected = func.__wrapped__(x)
    # out overlapping x, shifted by one row: the full path computes through a temporary
    buffer = np.concatenate([x, x[:1]])
    np.testing.assert_array_equal(func(buffer[:4], out=buffer[1:]), expected)
    wide = np.zeros((4, 100), np.float32)
    assert func(x, out=wide[:, ::2]) is not None
    np.testing.assert_array_equal(wide[:, ::2], expected)           # a strided out
    assert not wide[:, 1::2].any()
    with pytest.raises(TypeError, match="dtype"):
        func(x, out=np.zeros((4, 50), np.float64))
    with pytest.raises(ValueError, match="shape"):
        func(x, out=np.zeros((4, 51), np.float32))
    frozen = np.zeros((4, 50), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        func(x, out=frozen)
    with pytest.raises(ValueError, match="shape"):
        fs.logsumexp(x, out=np.zeros(8, np.float32)[::4])           # logsumexp: full path
    np.testing.assert_array_equal(fs.logsumexp(x, out=np.zeros(4, np.float32)),
                                  fs.logsumexp.__wrapped__(x))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(10, 8), (3, 4, 5), (2, 3, 4, 5), (7, 1), (1, 7), (32, 64)],
                         ids=["10x8", "3x4x5", "2x3x4x5", "7x1", "1x7", "32x64"])
@pytest.mark.parametrize("name", FORWARD)
def test_small_calls_along_other_axes(name, shape, dtype):
    # up to 2048 values, a non-last axis is answered by the compiled entry too (columns
    # moved into rows and back): the full path's bits, into out and in place, every axis
    func = getattr(fs, name)
    x = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=25).reshape(shape)
    x.reshape(-1)[3] = -np.inf
    for axis in range(-len(shape), len(shape)):
        for keepdims in ((False, True) if name == "logsumexp" else (False,)):
            kwargs = {"keepdims": True} if keepdims else {}
            full = func.__wrapped__(x, axis=axis, **kwargs)
            small = func(x, axis=axis, **kwargs)
            assert type(small) is type(full) and np.shape(small) == np.shape(full)
            np.testing.assert_array_equal(small, full)
            raw, out = _guarded(np.shape(full), dtype)
            assert func(x, axis=axis, out=out, **kwargs) is out
            np.testing.assert_array_equal(out, full)
            _assert_guard_intact(raw)
            if name != "logsumexp":
                work = x.copy()
                assert func(work, axis=axis, out=work) is work
                np.testing.assert_array_equal(work, full)
        assert_matches_reference(name, func(x, axis=axis), x, axis=axis)
    # a mask along another axis is left to the full path
    mask = np.ones(shape, dtype=bool)
    mask.reshape(-1)[0] = False
    np.testing.assert_array_equal(func(x, axis=0, where=mask),
                                  func.__wrapped__(x, axis=0, where=mask))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(10, 8), (3, 4, 5), (2, 3, 4, 5), (7, 1), (32, 64)],
                         ids=["10x8", "3x4x5", "2x3x4x5", "7x1", "32x64"])
@pytest.mark.parametrize("name", ROW_BACKWARD)
def test_small_backward_calls_along_other_axes(name, shape, dtype):
    # the row VJPs along a non-last axis up to 2048 values, through the same moves: the
    # full path's bits, into out and in place, and the formula's values
    func = getattr(fs, name)
    forward = name[:-len("_backward")]
    x = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=26).reshape(shape)
    g = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=27).reshape(shape)
    for axis in range(-len(shape), len(shape)):
        y = getattr(fs, forward)(x, axis=axis)
        args = (g, y, x) if forward.startswith(("sig", "log_sig")) else (g, y)
        full = func.__wrapped__(*args, axis=axis)
        small = func(*args, axis=axis)
        np.testing.assert_array_equal(small, full)
        raw, out = _guarded(shape, dtype)
        assert func(*args, axis=axis, out=out) is out
        np.testing.assert_array_equal(out, full)
        _assert_guard_intact(raw)
        work = g.copy()
        assert func(work, *args[1:], axis=axis, out=work) is work
        np.testing.assert_array_equal(work, full)
        assert_backward_matches_formula(forward, small, g, x, y, axis=axis)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=SMALL_IDS)
def test_small_logsumexp_calls_with_keepdims_and_out(shape, dtype):
    # keepdims and out= (of the reduced or the kept shape) are answered by the compiled
    # entry too: the full path's bits, types and shapes, out itself returned
    x = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=10).reshape(shape)
    for keepdims in (False, True):
        full = fs.logsumexp.__wrapped__(x, keepdims=keepdims)
        small = fs.logsumexp(x, keepdims=keepdims)
        assert type(small) is type(full) and np.shape(small) == np.shape(full)
        np.testing.assert_array_equal(small, full)
        reduced = shape[:-1] + ((1,) if keepdims else ())
        raw, out = _guarded(reduced, dtype)
        assert fs.logsumexp(x, keepdims=keepdims, out=out) is out
        np.testing.assert_array_equal(out, full)
        _assert_guard_intact(raw)
        assert_matches_reference("logsumexp", small, x, keepdims=keepdims)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(1, 1000), (7,), (2, 6, 6), (40, 10), (64, 511)],
                         ids=["1x1000", "1d", "3d", "40x10", "64x511"])
def test_small_masked_calls_equal_the_full_path(shape, dtype):
    # a bool `where` of the input's shape is taken by the compiled entries as the kernels'
    # mask: the full path's bits (masked entries exactly 0, fully masked rows as there),
    # for the forward functions and their backward passes; a broadcast mask is declined
    rng = np.random.default_rng(19)
    x = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=20).reshape(shape)
    mask = rng.random(shape) < 0.7
    mask.reshape(-1, shape[-1])[0] = False                        # a fully masked row
    g = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=21).reshape(shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        for name in FORWARD:
            func = getattr(fs, name)
            small = func(x, where=mask)
            full = func.__wrapped__(x, where=mask)
            assert type(small) is type(full)
            np.testing.assert_array_equal(small, full)
            np.testing.assert_array_equal(func(x, where=mask[..., :1]),
                                          func.__wrapped__(x, where=mask[..., :1]))
            if name == "logsumexp":
                g_row = _rows(1, np.size(small), dtype, seed=22).reshape(np.shape(small))
                result = np.asarray(small)
                np.testing.assert_array_equal(
                    fs.logsumexp_backward(g_row, x, result, where=mask),
                    fs.logsumexp_backward.__wrapped__(g_row, x, result, where=mask))
                continue
            backward = getattr(fs, f"{name}_backward")
            extra = (x,) if name.startswith(("sig", "log_sig")) else ()
            np.testing.assert_array_equal(backward(g, small, *extra, where=mask),
                                          backward.__wrapped__(g, small, *extra, where=mask))
        assert_matches_reference("softmax", fs.softmax(x, where=mask), x, where=mask)


def test_logsumexp_into_an_out_inside_its_input():
    # an out that is part of x's memory: rows not yet read must not be overwritten first
    buffer = _rows(1, 160, np.float64, seed=17).reshape(-1)
    x = buffer.reshape(4, 40)                            # rows longer than the short lanes
    expected = fs.logsumexp(x.copy())
    out = buffer[120:124]                                # x[3, :4], the last row
    assert fs.logsumexp(x, out=out, num_threads=1) is out
    np.testing.assert_array_equal(out, expected)


def _backward_inputs(name, shape, dtype, seed=9):
    """(positional arguments of fs.<name>, the forward's name, x, y, g)."""
    forward = name[:-len("_backward")]
    x = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=seed).reshape(shape)
    x.reshape(-1)[0] = -np.inf                                      # a -inf logit
    g = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=seed + 1).reshape(shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = getattr(fs, forward).__wrapped__(x)
    extra = (x,) if forward.startswith(("sig", "log_sig")) else ()
    return (g, y, *extra), forward, x, y, g


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=SMALL_IDS)
@pytest.mark.parametrize("name", ROW_BACKWARD)
def test_small_backward_calls_equal_the_full_path(name, shape, dtype):
    # a small plain backward call runs in the compiled entry on the calling thread: the
    # full path's bits, into out and in place too, and the formula's values
    func = getattr(fs, name)
    args, forward, x, y, g = _backward_inputs(name, shape, dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        full = func.__wrapped__(*args, num_threads=1)
        small = func(*args)
        assert type(small) is np.ndarray and small.dtype == dtype and small.shape == shape
        np.testing.assert_array_equal(small, full)
        raw, out = _guarded(shape, dtype)
        assert func(*args, out=out) is out
        np.testing.assert_array_equal(out, full)
        _assert_guard_intact(raw)
        work = args[0].copy()
        assert func(work, *args[1:], out=work) is work               # out is grad_output
        np.testing.assert_array_equal(work, full)
        work = args[1].copy()
        assert func(args[0], work, *args[2:], out=work) is work      # out is the output
        np.testing.assert_array_equal(work, full)
    assert_backward_matches_formula(forward, small, g, x, y)


@pytest.mark.parametrize("name", ROW_BACKWARD)
def test_small_backward_calls_pass_other_inputs_to_the_full_path(name):
    func = getattr(fs, name)
    args, forward, x, y, g = _backward_inputs(name, (5, 40), np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = func.__wrapped__(*args)
        # mixed dtypes: computed in float64, as the dtype rules say
        mixed = func(args[0].astype(np.float64), *args[1:])
        assert mixed.dtype == np.float64
        np.testing.assert_array_equal(
            mixed, func.__wrapped__(args[0].astype(np.float64), *args[1:]))
        strided = [np.repeat(a, 2, axis=-1)[:, ::2] for a in args]
        np.testing.assert_array_equal(func(*strided), expected)
        np.testing.assert_array_equal(func(*args, axis=1), expected)
        np.testing.assert_array_equal(func(*args, where=True), expected)
        # an out that partially overlaps grad_output: the full path uses a temporary
        buffer = np.concatenate([args[0], args[0][:1]])
        np.testing.assert_array_equal(func(buffer[:5], *args[1:], out=buffer[1:]), expected)
    with pytest.raises(ValueError, match="shape"):
        func(args[0][:, :39], *args[1:])
    with pytest.raises(TypeError, match="dtype"):
        func(*args, out=np.zeros((5, 40), np.float64))
    with pytest.raises(np.exceptions.AxisError):
        func(*args, axis=2)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=SMALL_IDS)
def test_small_logsumexp_backward_calls(shape, dtype):
    # g and the forward's result of the reduced shape or with keepdims; the full path's
    # bits, and g * exp(x - result) against float64
    x = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=11).reshape(shape)
    if shape[-1] > 1:
        x.reshape(-1)[-1] = -np.inf                                  # gets exactly 0
    for keepdims in (False, True):
        result = np.asarray(fs.logsumexp(x, keepdims=keepdims))
        g = _rows(1, result.size, dtype, seed=12).reshape(result.shape)
        full = fs.logsumexp_backward.__wrapped__(g, x, result, num_threads=1)
        small = fs.logsumexp_backward(g, x, result)
        np.testing.assert_array_equal(small, full)
        raw, out = _guarded(shape, dtype)
        assert fs.logsumexp_backward(g, x, result, out=out) is out
        np.testing.assert_array_equal(out, full)
        _assert_guard_intact(raw)
        work = x.copy()
        assert fs.logsumexp_backward(g, work, result, out=work) is work
        np.testing.assert_array_equal(work, full)
        kept = (lambda a: a) if keepdims else (lambda a: np.expand_dims(a, -1))
        expected = kept(g.astype(np.float64)) * np.exp(
            x.astype(np.float64) - kept(result.astype(np.float64)))
        tolerance = 8 * np.finfo(dtype).eps
        np.testing.assert_allclose(small, expected, rtol=tolerance, atol=tolerance)
    # a 0-d g is broadcast over the rows by the full path
    result = fs.logsumexp(x)
    np.testing.assert_array_equal(
        fs.logsumexp_backward(np.ones((), dtype), x, result),
        fs.logsumexp_backward.__wrapped__(np.ones(np.shape(result), dtype), x, result))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=SMALL_IDS)
@pytest.mark.parametrize("activation", ("softmax", "sigsoftmax"))
def test_small_cross_entropy_calls_equal_the_full_path(activation, shape, dtype):
    # cross-entropy calls with int64 labels or probability rows, with or without class
    # weights, on small plain arrays run in the compiled entry: the full path's loss and
    # gradient bit for bit, for every reduction, with an ignored row, into grad_out and in
    # place (over the logits; over the probability target too)
    rng = np.random.default_rng(13)
    x = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=14).reshape(shape)
    target = rng.integers(0, shape[-1], shape[:-1])
    if target.size > 1:
        target.reshape(-1)[1] = -100                                 # an ignored row
    probabilities = fs.softmax(_rows(int(np.prod(shape[:-1])), shape[-1], dtype,
                                     seed=17).reshape(shape))
    weight = rng.uniform(0.5, 2.0, shape[-1])
    weight[0] = 0.0
    cases = [(target, None, reduction, smoothing)
             for reduction, smoothing in (("mean", 0.0), ("sum", 0.0), ("none", 0.0),
                                          ("mean", 0.1), ("none", 1.0))]
    cases += [(target, weight, "mean", 0.0), (target, weight, "none", 0.1),
              (target, np.ones(shape[-1]), "sum", 0.1), (probabilities, None, "mean", 0.0),
              (probabilities, weight, "none", 0.1), (probabilities, None, "sum", 1.0)]
    for target, weight, reduction, smoothing in cases:
        kwargs = {"reduction": reduction, "activation": activation,
                  "label_smoothing": smoothing, "weight": weight}
        loss = fs.cross_entropy(x, target, **kwargs)
        expected = fs.cross_entropy.__wrapped__(x, target, num_threads=1, **kwargs)
        assert type(loss) is type(expected) and np.shape(loss) == np.shape(expected)
        assert np.asarray(loss).dtype == dtype
        np.testing.assert_array_equal(loss, expected)
        loss, grad = fs.cross_entropy(x, target, return_grad=True, **kwargs)
        expected_loss, expected_grad = fs.cross_entropy.__wrapped__(
            x, target, return_grad=True, num_threads=1, **kwargs)
        np.testing.assert_array_equal(loss, expected_loss)
        np.testing.assert_array_equal(grad, expected_grad)
        raw, out = _guarded(shape, dtype)
        assert fs.cross_entropy(x, target, return_grad=True, grad_out=out, **kwargs)[1] is out
        np.testing.assert_array_equal(out, expected_grad)
        _assert_guard_intact(raw)
        work = x.copy()
        fs.cross_entropy(work, target, return_grad=True, grad_out=work, **kwargs)
        np.testing.assert_array_equal(work, expected_grad)
        if target.dtype.kind == "f":
            work = target.copy()
            fs.cross_entropy(x, work, return_grad=True, grad_out=work, **kwargs)
            np.testing.assert_array_equal(work, expected_grad)
    target = cases[0][0]
    # against float64 NumPy: -log p[target], the mean over the rows kept
    if activation == "softmax":
        z = x.astype(np.float64)
        log_p = z - z.max(-1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
        kept = target != -100
        picked = np.take_along_axis(log_p, np.where(kept, target, 0)[..., None], -1)[..., 0]
        reference = -(picked * kept).sum() / kept.sum()
        np.testing.assert_allclose(fs.cross_entropy(x, target), reference,
                                   rtol=16 * np.finfo(dtype).eps)


def test_small_cross_entropy_calls_pass_other_inputs_to_the_full_path():
    x = _rows(6, 20, np.float32, seed=15)
    target = np.array([1, 2, 3, 4, 5, 19])
    full = fs.cross_entropy.__wrapped__
    for kwargs in ({"weight": np.linspace(0.5, 2.0, 20).astype(np.float32)},
                   {"weight": np.linspace(0.5, 2.0, 40)[::2]},
                   {"label_smoothing": np.float64(0.1)},
                   {"return_grad": True, "grad_output": np.float32(2.0)},
                   {"ignore_index": np.int64(3)}, {"axis": 1}):
        got, expected = fs.cross_entropy(x, target, **kwargs), full(x, target, **kwargs)
        for part, expected_part in zip(*((got, expected) if kwargs.get("return_grad")
                                         else ((got,), (expected,)))):
            np.testing.assert_array_equal(part, expected_part)
    np.testing.assert_array_equal(fs.cross_entropy(x, target.astype(np.int32)),
                                  full(x, target))
    probabilities = fs.softmax(_rows(6, 20, np.float32, seed=16))
    np.testing.assert_array_equal(fs.cross_entropy(x, probabilities), full(x, probabilities))
    with pytest.raises(IndexError, match="outside"):
        fs.cross_entropy(x, np.array([1, 2, 3, 4, 5, 20]))
    with pytest.raises(ValueError, match="reduction"):
        fs.cross_entropy(x, target, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        fs.cross_entropy(x, target, label_smoothing=1.5)
    with pytest.raises(ValueError, match="activation"):
        fs.cross_entropy(x, target, activation="sparsemax")
    with pytest.raises(ValueError, match="return_grad"):
        fs.cross_entropy(x, target, grad_out=np.empty_like(x))
    with pytest.raises(TypeError):
        fs.cross_entropy(x, target, ignore_index=1.5)
    # ignore_index beyond int64 (the compiled entry declines it): as the full path does
    try:
        expected = full(x, target, ignore_index=1 << 70)
    except Exception as error:
        with pytest.raises(type(error)):
            fs.cross_entropy(x, target, ignore_index=1 << 70)
    else:
        np.testing.assert_array_equal(fs.cross_entropy(x, target, ignore_index=1 << 70),
                                      expected)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(300, 1000), (5, 3), (2000, 10), (3, 40000), (2, 300_000)])
@pytest.mark.parametrize("weighted", [False, True])
def test_index_cross_entropy_row_agrees_with_one_hot_probabilities(shape, dtype, weighted):
    # index targets without smoothing take the three-pass row (rows past 1 MiB: by
    # chunks); one-hot probability targets take the targets row: the same loss and
    # gradient
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x[0, 0] = -np.inf
    target = rng.integers(0, shape[1], shape[0])
    target[0] = 1
    one_hot = np.zeros(shape, dtype=dtype)
    one_hot[np.arange(shape[0]), target] = 1
    weight = rng.uniform(0.5, 2.0, shape[1]) if weighted else None
    loss_i, grad_i = fs.cross_entropy(x, target, weight=weight, reduction="sum",
                                      return_grad=True)
    loss_q, grad_q = fs.cross_entropy(x, one_hot, weight=weight, reduction="sum",
                                      return_grad=True)
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(loss_i, loss_q, rtol=rtol)
    np.testing.assert_allclose(grad_i, grad_q, rtol=rtol, atol=rtol * np.abs(grad_q).max())


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(300, 1000), (5, 3), (2000, 10), (3, 40000), (2, 300_000)])
@pytest.mark.parametrize("smoothing", [0.1, 1.0])
def test_smoothed_index_row_agrees_with_one_hot_probabilities(shape, dtype, smoothing):
    # label smoothing with index targets and no class weights takes the index row (rows
    # within 1 MiB); one-hot probability targets with the same smoothing take the targets
    # row: the same loss and gradient to the rounding, for every reduction's factor
    rng = np.random.default_rng(sum(shape) + 1)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x[0, 0] = -np.inf                                   # an infinite smoothed loss
    target = rng.integers(0, shape[1], shape[0])
    target[0] = 1
    target[-1] = -100                                   # an ignored row
    one_hot = np.zeros(shape, dtype=dtype)
    one_hot[np.arange(shape[0] - 1), target[:-1]] = 1
    kwargs = {"label_smoothing": smoothing, "return_grad": True, "reduction": "none"}
    loss_i, grad_i = fs.cross_entropy(x, target, **kwargs)
    loss_q, grad_q = fs.cross_entropy(x[:-1], one_hot[:-1], **kwargs)
    rtol = 4e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(loss_i[:-1], loss_q, rtol=rtol)
    assert loss_i[0] == np.inf and loss_i[-1] == 0
    np.testing.assert_allclose(grad_i[:-1], grad_q, rtol=rtol,
                               atol=rtol * np.abs(grad_q).max())
    assert not grad_i[-1].any()
    # explicit unit weights take the same row; other weights the targets row
    loss_w, grad_w = fs.cross_entropy(x, target, weight=np.ones(shape[1]), **kwargs)
    np.testing.assert_array_equal(loss_w, loss_i)
    np.testing.assert_array_equal(grad_w, grad_i)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("activation", ("softmax", "sigsoftmax"))
@pytest.mark.parametrize("n_cols", (1, 2, 3, 5, 8, 10, 15, 16, 17, 24, 31, 32))
def test_short_row_cross_entropy_equals_the_row_loop(activation, dtype, n_cols):
    # many rows of at most 32 values take fs_short.h's lanes (one row per lane), a call
    # with one row takes the row loop: the same losses and gradients bit for bit, also for
    # special values, ignored rows, zero-weight targets, per-row gradient scales and a
    # partial group of rows at the end (701 rows)
    rng = np.random.default_rng(40 + n_cols)
    x = _rows(701, n_cols, dtype, seed=5 + n_cols)
    last = n_cols - 1
    x[5] = -np.inf
    x[6, last // 2] = np.inf
    x[7, last] = np.nan
    x[8, :(n_cols + 1) // 2] = -1e4
    x[9, :] = x[9, 0]
    x[10, :(n_cols + 1) // 2] = 100.0
    x[12, last] = -300.0
    x[13, :] = np.linspace(-110.0, 0.0, n_cols)
    x[14, :] = -0.0
    x[16, :] = np.float64(np.finfo(dtype).max)
    target = rng.integers(0, n_cols, 701)
    target[[3, 20, 700]] = -100                       # ignored rows
    weight = rng.uniform(0.5, 2.0, n_cols)
    weight[target[30]] = 0.0                          # a zero-weight target
    grad_output = rng.uniform(0.5, 2.0, 701)          # per-row gradient scales
    kwargs = {"weight": weight, "reduction": "none", "activation": activation,
              "return_grad": True}
    with np.errstate(invalid="ignore", over="ignore"):
        loss, grad = fs.cross_entropy(x, target, grad_output=grad_output, **kwargs)
        work = x.copy()
        loss_in_place, _ = fs.cross_entropy(work, target, grad_output=grad_output,
                                            grad_out=work, **kwargs)
        for i in range(701):
            one_loss, one_grad = fs.cross_entropy(x[i:i + 1], target[i:i + 1],
                                                  grad_output=grad_output[i:i + 1], **kwargs)
            np.testing.assert_array_equal(loss[i:i + 1], one_loss, err_msg=f"row {i}")
            np.testing.assert_array_equal(grad[i:i + 1], one_grad, err_msg=f"row {i}")
    np.testing.assert_array_equal(loss_in_place, loss)
    np.testing.assert_array_equal(work, grad)


@pytest.mark.parametrize("dtype", FLOATS)
def test_index_cross_entropy_in_place_gradient(dtype):
    x = _rows(50, 300, dtype, seed=9)
    target = np.random.default_rng(9).integers(0, 300, 50)
    loss, grad = fs.cross_entropy(x, target, return_grad=True)
    work = x.copy()
    loss_in_place, grad_in_place = fs.cross_entropy(work, target, return_grad=True,
                                                    grad_out=work)
    assert grad_in_place is work
    np.testing.assert_array_equal(loss_in_place, loss)
    np.testing.assert_array_equal(grad_in_place, grad)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ("softmax", "log_softmax", "logsumexp"))
@pytest.mark.parametrize("shape, axis", [((1000, 37), 0), ((3, 45, 19), 1), ((7, 5, 3, 2), 1),
                                         ((9, 20), 0), ((4, 1, 33), 1), ((2, 3, 8), 0),
                                         ((300, 150), 0), ((21, 300), 0), ((2, 77, 130), 1),
                                         ((1, 5), 0), ((16, 9), 0), ((33, 3, 64), 0)])
def test_non_last_axis_columns_equal_the_rows(name, dtype, shape, axis):
    # C-ordered data along a non-last axis runs the column kernel (fs_columns.h), without
    # a transposed copy; it adds each column's terms in the row loops' order, so a column
    # gets the bits its row gets in the transposed copy.  The shapes give units of up to
    # 128 float / 64 double columns with a partial last vector, several units a slab,
    # columns of fewer than 16 values and columns ending in a partial block of 16
    rng = np.random.default_rng(len(shape) * 100 + axis)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    flat = np.moveaxis(x, axis, -1)
    if flat.shape[-1] >= 4:
        flat[(0,) * (flat.ndim - 1)][:3] = (-np.inf, np.inf, 1.0)
        flat[(0,) * (flat.ndim - 2) + (1 % flat.shape[-2],)][2:4] = (np.nan, -1e4)
    if flat.shape[-2] > 2:
        # a column whose far values (exponentials below the short path's range, some
        # subnormal) fall in some of its blocks and not in others
        flat[(0,) * (flat.ndim - 2) + (2,)][:] = np.linspace(-800, 0, flat.shape[-1])[::-1]
    flat[(1 % flat.shape[0],) + (0,) * (flat.ndim - 2)][:] = -np.inf
    x = np.ascontiguousarray(x)
    with np.errstate(invalid="ignore"):
        columns = getattr(fs, name)(x, axis=axis)
        rows = getattr(fs, name)(np.ascontiguousarray(np.moveaxis(x, axis, -1)), axis=-1)
    expected = rows if name == "logsumexp" else np.moveaxis(rows, -1, axis)
    np.testing.assert_array_equal(columns, expected)
    assert_matches_reference(name, columns, x, axis=axis)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ("softmax", "log_softmax", "logsumexp"))
def test_long_columns_equal_the_rows(name, dtype):
    # columns of more than 1 MiB take the row loops' long-row association, through
    # transposed strips rather than fs_columns.h: still the bits of the transposed copy
    n = (1 << 20) // np.dtype(dtype).itemsize + 5
    x = _rows(n, 3, dtype, seed=17)
    x[7, 1] = np.nan
    with np.errstate(invalid="ignore"):
        columns = getattr(fs, name)(x, axis=0)
        rows = getattr(fs, name)(np.ascontiguousarray(x.T), axis=-1)
    np.testing.assert_array_equal(columns, rows if name == "logsumexp" else rows.T)
    assert np.isnan(columns[..., 1]).all() and not np.isnan(columns[..., 0]).any()


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ("softmax", "log_softmax"))
def test_non_last_axis_columns_in_place_and_into_out(name, dtype):
    x = _rows(300, 40, dtype, seed=11)
    expected = getattr(fs, name)(x, axis=0)
    out = np.empty_like(x)
    assert getattr(fs, name)(x, axis=0, out=out) is out
    np.testing.assert_array_equal(out, expected)
    work = x.copy()
    assert getattr(fs, name)(work, axis=0, out=work) is work
    np.testing.assert_array_equal(work, expected)
    # an out that overlaps the input partially takes the general path: still right
    big = np.concatenate([x, x[:1]])
    getattr(fs, name)(big[:-1], axis=0, out=big[1:])
    np.testing.assert_array_equal(big[1:], expected)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ("softmax", "log_softmax"))
def test_streamed_columns_equal_the_rows(name, dtype):
    # a non-last-axis result of at least 12 MiB whose rows start on cache lines is
    # written back with streaming stores: the bits of the transposed copy's rows all the
    # same, with a row count that is no multiple of 8 and a narrow last strip; in place too
    itemsize = np.dtype(dtype).itemsize
    n_cols = 3216 if itemsize == 4 else 1608          # rows of whole 64-byte lines
    n_rows = (13 << 20) // (n_cols * itemsize) | 3
    x = _rows(n_rows, n_cols, dtype, seed=13)
    x[5, 7], x[9, :40] = np.nan, -np.inf
    expected = np.moveaxis(getattr(fs, name)(np.ascontiguousarray(x.T)), -1, 0)
    with np.errstate(invalid="ignore"):
        result = getattr(fs, name)(x, axis=0)
        assert result.nbytes >= 12 << 20 and result.ctypes.data % 64 == 0
        np.testing.assert_array_equal(result, expected)
        work = _buffers.empty(x.shape, dtype)           # 64-byte aligned, as results are
        work[...] = x
        assert getattr(fs, name)(work, axis=0, out=work) is work
    np.testing.assert_array_equal(work, expected)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ("softmax", "log_softmax"))
def test_streamed_columns_into_a_misaligned_out(name, dtype):
    # a result of at least 12 MiB along a non-last axis is streamed out by fs_columns.h
    # whatever out's alignment: each row part's whole cache lines with streaming stores,
    # the partial lines at its ends as usual.  The bits of the transposed copy's rows,
    # with rows starting anywhere in a line, and nothing written outside out
    itemsize = np.dtype(dtype).itemsize
    n_cols = 3217 if itemsize == 4 else 1609
    n_rows = (13 << 20) // (n_cols * itemsize) | 1
    x = _rows(n_rows, n_cols, dtype, seed=19)
    expected = np.moveaxis(getattr(fs, name)(np.ascontiguousarray(x.T)), -1, 0)
    raw = np.zeros(x.nbytes + 128, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64 + 16                 # 16 bytes past a cache line
    out = raw[start:start + x.nbytes].view(dtype).reshape(x.shape)
    assert getattr(fs, name)(x, axis=0, out=out) is out
    np.testing.assert_array_equal(out, expected)
    assert not raw[:start].any() and not raw[start + x.nbytes:].any()


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ("softmax", "log_softmax", "log_sigsoftmax"))
def test_streamed_results_equal_the_row_loops(name, dtype):
    # a log_softmax or log_sigsoftmax result of at least 12 MiB is written with streaming
    # stores: the same bits as a small call on the same rows (unaligned rows of odd
    # length); softmax too
    n_cols = 1001
    n_rows = (16 << 20) // (n_cols * np.dtype(dtype).itemsize)
    x = _rows(n_rows, n_cols, dtype, seed=4)
    x[7, 5] = -np.inf
    x[8, 9] = np.inf
    x[9, 3] = np.nan
    func = getattr(fs, name)
    with np.errstate(invalid="ignore"):
        big = func(x, axis=-1)
        for rows in (slice(0, 3), slice(7, 10), slice(n_rows - 2, n_rows)):
            np.testing.assert_array_equal(big[rows], func(x[rows], axis=-1))
        work = x.copy()
        func(work, axis=-1, out=work)                    # in place, streamed too
    np.testing.assert_array_equal(work, big)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ("softmax", "log_softmax", "sigsoftmax", "log_sigsoftmax"))
def test_large_backward_equals_small_calls(name, dtype):
    # each row of a backward call prefetches the next row's inputs (none after the last
    # row of the call): a 13 MiB result has the same bits as small calls on the same rows,
    # into a misaligned out and in place too
    n_cols = 1001
    n_rows = (13 << 20) // (n_cols * np.dtype(dtype).itemsize)
    x = _rows(n_rows, n_cols, dtype, seed=5)
    x[7, 5] = -np.inf
    x[8, :] = -np.inf
    x[9, 3] = -200.0
    g = _rows(n_rows, n_cols, dtype, seed=6)
    backward = getattr(fs, f"{name}_backward")
    with np.errstate(invalid="ignore", divide="ignore"):
        y = getattr(fs, name)(x)
        extra = (x,) if name.startswith(("sig", "log_sig")) else ()
        big = backward(g, y, *extra)
        for rows in (slice(0, 3), slice(6, 11), slice(n_rows - 2, n_rows)):
            small = backward(g[rows], y[rows], *(e[rows] for e in extra))
            np.testing.assert_array_equal(big[rows], small)
        raw = np.zeros(big.nbytes + 64, np.uint8)
        out = raw[4:4 + big.nbytes].view(dtype).reshape(big.shape)   # 4 bytes past a line
        assert backward(g, y, *extra, out=out) is out
        np.testing.assert_array_equal(out, big)
        assert not raw[:4].any() and not raw[4 + big.nbytes:].any()
        work = g.copy()
        backward(work, y, *extra, out=work)               # in place, streamed too
    np.testing.assert_array_equal(work, big)
    rows = slice(0, 40)
    assert_backward_matches_formula(name, big[rows], g[rows], x[rows], y[rows])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("positions", [(3, 7), (7, 3), (0, 20), (20, 0), (12, 13)])
def test_short_rows_with_inf_and_nan(name, dtype, positions):
    # +inf and NaN in one short row: NaN (the row loops' rule), wherever they sit.  GCC 12
    # at -O3 once vectorized the tile's NaN scan wrongly (+inf came out for logsumexp)
    x = _rows(5, 21, dtype, seed=13)
    x[1, positions[0]] = np.inf
    x[1, positions[1]] = np.nan
    x[3, positions[0]] = np.inf
    with np.errstate(invalid="ignore"):
        got = getattr(fs, name)(x, axis=-1)
    assert_matches_reference(name, got, x)
    assert np.all(np.isnan(got[1]))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ("softmax", "log_softmax"))
@pytest.mark.parametrize("n_cols", (3, 10, 17))
def test_short_rows_write_only_their_rows(name, dtype, n_cols):
    # fs_short.h stores a row's last partial vector whole when the values it overruns
    # belong to later rows of the same call: never past the output, never over input rows
    # of an in-place call not yet read, never into another thread's rows
    func = getattr(fs, name)
    x = _rows(3001, n_cols, dtype, seed=n_cols)
    expected = func(x, axis=-1, where=np.ones(x.shape, dtype=bool))     # the row loops
    buffer = np.full((x.shape[0] + 1, n_cols), 7.0, dtype=dtype)
    out = buffer[:-1]
    for threads in (1, 2):
        buffer[:] = 7.0
        assert func(x, axis=-1, out=out, num_threads=threads) is out
        np.testing.assert_array_equal(out, expected)
        assert np.all(buffer[-1] == 7.0)                  # the value after the output
        work = x.copy()
        func(work, axis=-1, out=work, num_threads=threads)
        np.testing.assert_array_equal(work, expected)
    strided = np.full((x.shape[0], n_cols + 3), 7.0, dtype=dtype)     # gaps between rows
    func(x, axis=-1, out=strided[:, :n_cols])
    np.testing.assert_array_equal(strided[:, :n_cols], expected)
    assert np.all(strided[:, n_cols:] == 7.0)


# Rows longer than LONG_ROW_BYTES (1 MiB) are exponentiated chunk by chunk, each chunk
# against its own max, and brought to the row's max afterwards (_long_row_sums)
LONG_ROW = 300_000


def _long_rows(dtype):
    """Rows of LONG_ROW values that stress the chunks: the max moving to every later
    chunk, chunks of only -inf (masked padding), a NaN or a +inf in one chunk, only -inf,
    chunk maxima within ulps of each other, one chunk far above the rest."""
    n = LONG_ROW
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, n))
    x[0] += np.linspace(-60.0, 0.0, n)
    x[1, : n // 2] = -np.inf
    x[2, n - 5] = np.nan
    x[3, 1234] = np.inf
    x[4] = -np.inf
    x[5] = 0.5 + np.finfo(dtype).eps * rng.integers(-2, 3, n)
    x[6, 40_000:] -= 50.0
    x[7, : n // 3] = -np.inf
    x[7, n // 3 :: 1000] = np.nan
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ("softmax", "log_softmax", "logsumexp", "sigsoftmax"))
def test_long_rows_in_chunks_match_reference(name, dtype):
    # (sigsoftmax is not taken in chunks: its float32 rows of more than 32 values form
    # their terms as a product, checked here on the same rows and special values)
    x = _long_rows(dtype)
    # into memory holding other values: every value of the result must be written
    out = np.full(x.shape[:1] if name == "logsumexp" else x.shape, 7.0, dtype=dtype)
    with np.errstate(invalid="ignore"):
        got = getattr(fs, name)(x, axis=-1, out=out)
    assert_matches_reference(name, got, x)
    if name != "logsumexp":
        for row in (2, 3, 4, 7):                    # NaN, +inf, only -inf: the row is NaN
            assert np.all(np.isnan(got[row])), row
        assert np.all(got[1, : LONG_ROW // 2] == (-np.inf if name == "log_softmax" else 0))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ("softmax", "log_softmax"))
def test_long_rows_in_place_masked_and_one_thread_agree(name, dtype):
    # the chunked rows are computed in place (each chunk read before it is written), and
    # a mask of all True or one thread changes nothing: same bits
    func = getattr(fs, name)
    x = _long_rows(dtype)[[0, 1, 5, 6]]
    expected = func(x, axis=-1)
    work = x.copy()
    assert func(work, axis=-1, out=work) is work
    np.testing.assert_array_equal(work, expected)
    np.testing.assert_array_equal(func(x, axis=-1, where=np.ones(x.shape, dtype=bool)), expected)
    np.testing.assert_array_equal(func(x, axis=-1, num_threads=1), expected)


@pytest.mark.parametrize("name", ("softmax", "log_softmax", "logsumexp"))
def test_rows_longer_than_the_chunk_table(name):
    # past 256 chunks of 128 KiB (8388608 float32 values) the chunks grow instead
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(8_500_000) + np.linspace(-30.0, 0.0, 8_500_000)).astype(np.float32)
    x[:300_000] = -np.inf
    assert_matches_reference(name, getattr(fs, name)(x), x)


@pytest.mark.parametrize("dtype", FLOATS)
def test_long_row_cross_entropy_matches_reference(dtype):
    # index-target cross-entropy on rows past LONG_ROW_BYTES: loss logsumexp(x) - x_t and
    # gradient softmax(x) - onehot(t), against long double, for the rows of _long_rows
    # (targets in the -inf part of row 1 and at the +inf of row 3), into memory holding
    # other values and in place
    x = _long_rows(dtype)
    target = np.array([LONG_ROW - 1, 10, 7, 1234, 3, 99, 200_000, 5])
    out = np.full(x.shape, 7.0, dtype=dtype)
    with np.errstate(invalid="ignore"):
        loss, grad = fs.cross_entropy(x, target, reduction="none", return_grad=True,
                                      grad_out=out)
        work = x.copy()
        loss_in_place, _ = fs.cross_entropy(work, target, reduction="none", return_grad=True,
                                            grad_out=work)
    np.testing.assert_array_equal(loss_in_place, loss)
    np.testing.assert_array_equal(work, grad)
    for row in (2, 3, 4, 7):                        # NaN, +inf, only -inf: NaN
        assert np.isnan(loss[row]) and np.all(np.isnan(grad[row])), row
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for row in (0, 1, 5, 6):
        xl = x[row].astype(np.longdouble)
        top = xl.max()
        e = np.exp(xl - top)
        total = e.sum()
        expected_grad = e / total
        expected_grad[target[row]] -= 1
        expected_loss = top + np.log(total) - xl[target[row]]
        if np.isinf(expected_loss):
            assert loss[row] == expected_loss, row
        else:
            np.testing.assert_allclose(loss[row], float(expected_loss), rtol=rtol)
        np.testing.assert_allclose(grad[row].astype(np.longdouble), expected_grad, rtol=rtol,
                                   atol=float(rtol * np.abs(expected_grad).max()),
                                   err_msg=f"row {row}")


def test_cross_entropy_inputs_inside_grad_out():
    # class labels, class weights and row factors stored in the memory the gradient is
    # written to: every row still uses its own (the full path copies them first; the
    # compiled entry declines).  Without the copy, overwritten labels read out of bounds.
    x = _rows(6, 40, np.float64, seed=18)
    labels = np.array([3, 0, 39, 7, 7, 1])
    weight = np.linspace(0.5, 2.0, 40)
    factors = np.linspace(1.0, 2.0, 6)
    for what in ("target", "weight", "grad_output"):
        kwargs = {"weight": weight} if what == "weight" else {}
        if what == "grad_output":
            kwargs.update(reduction="none", grad_output=factors)
        expected_loss, expected_grad = fs.cross_entropy(x, labels, return_grad=True, **kwargs)
        buffer = np.zeros(6 * 40)
        grad = buffer.reshape(6, 40)
        target = labels
        if what == "target":
            target = buffer[40:46].view(np.int64)                # inside row 1's gradient
            target[:] = labels
        elif what == "weight":
            kwargs["weight"] = buffer[40:80]
            kwargs["weight"][:] = weight
        else:
            kwargs["grad_output"] = buffer[40:46]
            kwargs["grad_output"][:] = factors
        loss, out = fs.cross_entropy(x, target, return_grad=True, grad_out=grad,
                                     num_threads=1, **kwargs)
        assert out is grad
        np.testing.assert_array_equal(loss, expected_loss)
        np.testing.assert_array_equal(grad, expected_grad)


@pytest.mark.parametrize("name", ("softmax", "log_softmax_backward"))
def test_mask_inside_out(name):
    # a bool `where` stored in the memory `out` is written to: each row still uses its
    # own mask (the compiled entry declines; the full path copies the mask first).
    # Without those, the first row's output overwrote the masks of the rows after it.
    x = _rows(4, 40, np.float32, seed=23)
    mask = np.random.default_rng(24).random((4, 40)) < 0.7
    func = getattr(fs, name)
    args = (x,) if name == "softmax" else (x, fs.log_softmax(x, where=mask))
    expected = func(*args, where=mask)
    for call in (func, func.__wrapped__):
        raw = np.zeros(4 * 40 * 4, np.uint8)
        where = raw[:160].view(bool).reshape(4, 40)        # the first row of out
        out = raw.view(np.float32).reshape(4, 40)
        where[...] = mask
        assert call(*args, where=where, out=out) is out
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape, axis", [((300, 70), 0), ((3, 130, 9), 1), ((5, 67, 3, 11), 1),
                                         ((1000, 3), 0), ((2, 8, 600), 0)])
def test_moved_axis_equals_the_transposed_copy(shape, axis, dtype):
    # functions without a column kernel move a non-last axis last with the kernels' block
    # transposes (move_axis_last) and move the result back: the bits of the computation
    # on a transposed copy, for strips and blocks with ragged edges
    x = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=28).reshape(shape)
    g = _rows(int(np.prod(shape[:-1])), shape[-1], dtype, seed=29).reshape(shape)

    def moved(a):
        return np.ascontiguousarray(np.moveaxis(a, axis, -1))

    for name in ("sigsoftmax", "log_sigsoftmax"):
        expected = np.moveaxis(getattr(fs, name)(moved(x)), -1, axis)
        np.testing.assert_array_equal(getattr(fs, name)(x, axis=axis), expected)
    for name in ROW_BACKWARD:
        forward = name[:-len("_backward")]
        y = getattr(fs, forward)(x, axis=axis)
        extra = (x,) if forward.startswith(("sig", "log_sig")) else ()
        expected = np.moveaxis(getattr(fs, name)(moved(g), moved(y), *map(moved, extra)), -1,
                               axis)
        np.testing.assert_array_equal(getattr(fs, name)(g, y, *extra, axis=axis), expected)
        out = np.full(shape, np.nan, dtype)
        assert getattr(fs, name)(g, y, *extra, axis=axis, out=out) is out
        np.testing.assert_array_equal(out, expected)
