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
    full = func(x, axis=-1, num_threads=1, where=None)   # where=: the full path
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


@pytest.mark.parametrize("name", FORWARD)
def test_public_functions_behave_as_functions(name):
    # the public forward functions are compiled functions (the kernels' small-call
    # entries), not Python ones: they must still look, pickle and fail like the functions
    # they wrap, and take exactly their arguments
    import copy
    import inspect
    import pickle

    func = getattr(fs, name)
    assert func.__name__ == name and func.__module__ == "fastsoft._activations"
    assert f"function {name} " in repr(func)
    assert func.__doc__ == func.__wrapped__.__doc__ and "Examples" in func.__doc__
    assert inspect.signature(func) == inspect.signature(func.__wrapped__)
    # the compiled function's own parameters, not only what __wrapped__ reports
    assert (inspect.signature(func, follow_wrapped=False)
            == inspect.signature(func.__wrapped__))
    assert pickle.loads(pickle.dumps(func)) is func
    assert copy.deepcopy(func) is func
    x = _rows(2, 7, np.float64)
    with pytest.raises(TypeError, match="axs"):
        func(x, axs=0)                          # a misspelled keyword reaches Python's check
    with pytest.raises(TypeError, match=name):
        func()
    with pytest.raises(TypeError, match=name):
        func(x, -1, 2)                          # num_threads is keyword-only
    np.testing.assert_array_equal(func(x, -1), func(x, axis=-1, where=None))


def test_small_call_rejects_a_zero_dimensional_array():
    with pytest.raises(np.exceptions.AxisError):
        fs.softmax(np.float32(1.0).reshape(()))


@pytest.mark.parametrize("name", FORWARD)
def test_small_calls_with_keywords(name):
    func = getattr(fs, name)
    x = _rows(4, 50, np.float32, seed=2)
    expected = func(x, axis=-1, num_threads=1, where=None)      # full path
    for kwargs in ({"axis": -1}, {"axis": 1}, {"num_threads": 2}, {"axis": -1, "num_threads": 1}):
        np.testing.assert_array_equal(func(x, **kwargs), expected)
    # keywords the small-call entry declines still work or fail as on the full path
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


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(300, 1000), (5, 3), (2000, 10), (3, 40000), (2, 300_000)])
@pytest.mark.parametrize("weighted", [False, True])
def test_index_cross_entropy_row_agrees_with_one_hot_probabilities(shape, dtype, weighted):
    # index targets without smoothing take the three-pass row (rows past 1 MiB: by
    # chunks); one-hot probability targets take the general row: the same loss and
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
