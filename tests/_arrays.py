"""Shared test material: the function registry, adversarial arrays, layouts, masks, checks.

``arrays(dtype)`` yields ``(name, array)`` pairs of one dtype: random rows, huge offsets,
rows holding -inf, +inf or NaN (one row only), all--inf rows, denormals, ties at the max,
length-1 rows and empty shapes, in 1-D, 2-D and 3-D.  ``layouts(a)`` re-presents an
array in other memory layouts (Fortran, transposed, strided, negative strides,
byte-swapped, unaligned) and ``masks(shape, axis)`` yields ``where=`` arrays.
Everything is small: the default suite must run in a couple of minutes on 2 cores.

``assert_matches_reference`` is the one comparison used by the forward tests: NaN and
infinities must match exactly, finite values within a few units of roundoff scaled as
in the accuracy tests (see ``tolerance``).
"""

from dataclasses import dataclass

import numpy as np

from fastsoft import _reference

# ---------------------------------------------------------------------------------------
# Registry of the public functions under test.


@dataclass(frozen=True)
class Spec:
    name: str
    reference: object
    kind: str          # "prob" (values in [0, 1]), "log" (log-probabilities), "reduce"
    log_variant: str   # name of the function whose reference gives log-probabilities

    @property
    def reduces(self):
        return self.kind == "reduce"


REGISTRY = {
    spec.name: spec
    for spec in (
        Spec("softmax", _reference.softmax, "prob", "log_softmax"),
        Spec("log_softmax", _reference.log_softmax, "log", "log_softmax"),
        Spec("logsumexp", _reference.logsumexp, "reduce", "log_softmax"),
        Spec("sigsoftmax", _reference.sigsoftmax, "prob", "log_sigsoftmax"),
        Spec("log_sigsoftmax", _reference.log_sigsoftmax, "log", "log_sigsoftmax"),
    )
}
NAMES = tuple(REGISTRY)
TRANSFORMS = tuple(name for name in NAMES if not REGISTRY[name].reduces)

# ---------------------------------------------------------------------------------------
# dtype policy (the spec): the dtype the package computes in and returns.

FLOAT_DTYPES = (np.float16, np.float32, np.float64)
INT_DTYPES = (np.int8, np.uint8, np.int32, np.int64, np.uint64)
INPUT_DTYPES = FLOAT_DTYPES + INT_DTYPES + (np.bool_,)


def result_dtype(dtype):
    """dtype of the result for an input of `dtype`."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return np.dtype(dtype.type)   # native byte order
    return np.dtype(np.float64)


def compute_dtype(dtype):
    """dtype the package computes in for an input of `dtype` (float16 -> float32)."""
    dtype = result_dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def unit_roundoff(dtype):
    """u = 2**-p of a float dtype with p-bit significand (2**-24 for float32)."""
    return float(np.finfo(dtype).epsneg)  # 2**-(p) is epsneg for binary formats


# ---------------------------------------------------------------------------------------
# Adversarial arrays.

_SHAPES = [(1,), (2,), (7,), (33,), (3, 5), (5, 3), (4, 1), (1, 4), (2, 3, 4), (3, 1, 2)]


def arrays(dtype, seed=0):
    """Yield (name, array) pairs of `dtype` (any float, integer or bool dtype).

    Names are the kind of array and its shape, e.g. ``nan_row_2x3x4``; they are unique.
    """
    for kind, array in _arrays(np.dtype(dtype), np.random.default_rng(seed)):
        yield f"{kind}_{'x'.join(map(str, array.shape))}", array


def _arrays(dtype, rng):
    if dtype.kind == "b":
        yield from _bool_arrays(rng)
    elif dtype.kind in "iu":
        yield from _int_arrays(dtype, rng)
    else:
        yield from _float_arrays(dtype, rng)
    for shape in [(0,), (0, 5), (3, 0), (2, 0, 3)]:
        yield "empty", np.zeros(shape, dtype=dtype)


def _bool_arrays(rng):
    for shape in _SHAPES:
        yield "random", rng.random(shape) < 0.5
    yield "all_true", np.ones((3, 4), dtype=bool)
    yield "all_false", np.zeros((3, 4), dtype=bool)


def _int_arrays(dtype, rng):
    info = np.iinfo(dtype)
    low, high = max(info.min, -20), min(info.max, 20)
    for shape in _SHAPES:
        yield "random", rng.integers(low, high, size=shape, endpoint=True, dtype=dtype)
    yield "ties", np.full((3, 4), min(info.max, 7), dtype=dtype)
    yield "extremes", np.array([[info.min, info.max, 0], [info.max, info.max, info.min]],
                                   dtype=dtype)
    if info.max > 1e4:
        yield "offset", (rng.integers(-30, 30, size=(3, 5)) + min(info.max // 2, 10**6)).astype(dtype)
    if info.bits == 64:
        # exact in float64 up to 2**53; beyond that the float64 conversion rounds
        yield "huge", rng.integers(info.max // 4, info.max, size=(2, 4), dtype=dtype)


def _float_arrays(dtype, rng):
    finfo = np.finfo(dtype)
    biggest = float(finfo.max)

    def make(values):
        return np.asarray(values, dtype=np.float64).astype(dtype)

    for shape in _SHAPES:
        yield "normal", make(rng.standard_normal(shape))
    yield "normal*30", make(30 * rng.standard_normal((4, 9)))
    for offset in (300.0, -300.0, 1e4, -1e4, 1e30, -1e30, biggest / 4, -biggest / 4):
        if abs(offset) < biggest / 2:
            yield f"offset{offset:+.3g}", make(offset + offset * 1e-3 * rng.standard_normal((4, 6)))
            yield f"near{offset:+.3g}", make(offset + 3 * rng.standard_normal((3, 5)))
    # a spread wide enough that exp(x - max) underflows gradually into denormal outputs
    spread = {2: 20.0, 4: 110.0, 8: 760.0}[dtype.itemsize]
    yield "spread", make(-spread * rng.random((3, 40)))
    subnormal = float(finfo.smallest_subnormal)
    yield "denormal_inputs", make(subnormal * rng.integers(-8, 9, size=(3, 6)))
    yield "tiny_differences", make(1.0 + float(finfo.eps) * rng.integers(-4, 5, size=(2, 7)))
    yield "constant", make(np.full((3, 5), 2.5))
    ties = rng.standard_normal((4, 6))
    ties[:, 1] = ties[:, 4] = ties.max(axis=1) + 1
    yield "ties_at_max", make(ties)
    yield "zeros", make(np.zeros((2, 3)))

    # special values: each in one row only, the other rows ordinary
    def special(shape, row, fill):
        values = rng.standard_normal(shape)
        fill(values[row])
        return make(values)

    def some(value, count=2):
        def fill(row):
            row[rng.choice(row.size, size=count, replace=False)] = value
        return fill

    def every(value):
        def fill(row):
            row[...] = value
        return fill

    yield "neg_inf_entries", special((4, 5), 1, some(-np.inf))
    yield "neg_inf_entries", special((2, 3, 4), (1, 2), some(-np.inf))
    yield "all_neg_inf_row", special((3, 4), 2, every(-np.inf))
    yield "pos_inf_row", special((3, 4), 0, some(np.inf, 1))
    yield "pos_inf_twice", special((3, 4), 1, some(np.inf))
    yield "nan_row", special((4, 5), 2, some(np.nan, 1))
    yield "nan_row", special((2, 3, 4), (0, 1), some(np.nan, 1))

    def nan_and_inf(row):
        row[0], row[-1] = np.nan, np.inf
    yield "nan_and_pos_inf", special((3, 4), 1, nan_and_inf)

    def both_infs(row):
        row[0], row[-1] = -np.inf, np.inf
    yield "neg_and_pos_inf", special((3, 4), 0, both_infs)
    yield "single_neg_inf", make([-np.inf])
    yield "single_nan", make([np.nan])
    yield "single_pos_inf", make([np.inf])


# ---------------------------------------------------------------------------------------
# Layouts: the same array presented with other strides.


def layouts(a):
    """Yield (name, view) pairs: `a` (or its transpose / reversal) in other memory layouts."""
    a = np.asarray(a)
    yield "C", np.ascontiguousarray(a)
    yield "F", np.asfortranarray(a)
    yield "transposed", a.T
    if a.ndim:
        # every axis stepped by 2 inside a larger buffer: same values, no axis contiguous
        big = np.zeros(tuple(2 * n + 1 for n in a.shape), dtype=a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        yield "stepped", view
        # negative strides on every axis, same values
        flipped = np.ascontiguousarray(np.flip(a))
        yield "negative", np.flip(flipped)
        yield "reversed_last", a[..., ::-1]
        yield "stepped_reversed", big[tuple(slice(None, 0, -2) for _ in a.shape)]
    if a.dtype.itemsize > 1:
        yield "byteswapped", a.astype(a.dtype.newbyteorder())
        # contiguous but not aligned to the itemsize
        raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
        unaligned = raw[1:].view(a.dtype).reshape(a.shape)
        unaligned[...] = a
        yield "unaligned", unaligned


def native_contiguous(a):
    """C-contiguous, native byte order copy of `a` (the reference layout)."""
    a = np.ascontiguousarray(a)
    return a.astype(a.dtype.newbyteorder("="), copy=True)


# ---------------------------------------------------------------------------------------
# where= masks.

MASK_KINDS = ("none", "random", "full_rows", "broadcast_row", "broadcast_rows", "all_false")


def make_mask(kind, shape, axis, seed=0):
    """A where= array of `kind` for input `shape` reduced along `axis` (None: one row)."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    if kind == "none":
        return None
    if kind == "random":
        return rng.random(shape) < 0.7
    if kind == "all_false":
        return np.zeros(shape, dtype=bool)
    if axis is None:
        # the whole array is one row: masking "rows" means masking everything or not
        if kind == "full_rows":
            return np.zeros(shape, dtype=bool)
        if kind == "broadcast_row":
            return rng.random(shape[-1:]) < 0.7
        return np.ones((1,) * len(shape), dtype=bool)
    axis = axis % len(shape)
    if kind == "full_rows":
        mask = rng.random(shape) < 0.7
        moved = np.moveaxis(mask, axis, -1)
        moved[..., :] = moved[..., :] & (rng.random(moved.shape[:-1]) < 0.6)[..., None]
        if moved.ndim > 1 and moved.shape[0]:
            moved[0] = False  # at least one fully masked row
        return mask
    if kind == "broadcast_row":
        # one mask for every row: length-1 on every other axis, trailing dims only
        mask_shape = tuple(n if k == axis else 1 for k, n in enumerate(shape))
        mask = rng.random(mask_shape) < 0.7
        return mask[(0,) * axis] if axis else mask   # drop leading length-1 axes
    if kind == "broadcast_rows":
        # length 1 along the reduced axis: each row is all in or all out
        mask_shape = tuple(1 if k == axis else n for k, n in enumerate(shape))
        return rng.random(mask_shape) < 0.6
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------
# Comparison with the reference.


def reference_result(name, x, axis=-1, where=None, keepdims=False):
    """The reference's (result, log-probabilities, result dtype) for fs.<name>(x, ...).

    The reference computes in float64, or in np.longdouble when the result is float64
    (so that the reference's own rounding stays far below the tolerance).
    """
    x = np.asarray(x)
    out_dtype = result_dtype(x.dtype)
    values = x.astype(compute_dtype(x.dtype))  # the package's input rounding (int64 -> float64)
    work = np.longdouble if out_dtype == np.float64 else np.float64
    spec = REGISTRY[name]
    kwargs = {"keepdims": keepdims} if spec.reduces else {}
    expected = spec.reference(values, axis=axis, where=where, dtype=work, **kwargs)
    logs = REGISTRY[spec.log_variant].reference(values, axis=axis, where=where, dtype=work)
    return expected, logs, out_dtype


def tolerance(kind, expected, logs, dtype, factor=4.0):
    """Allowed |error| of a result of `dtype` (arrays in working precision).

    prob: factor*u*(1 + |log p|)*p + tiny   (|log p| >= |x_i - max|, or |w_i - w_max| for
          sigsoftmax; tiny: no relative promise below the normal range)
    log / reduce: factor*u*max(1, |value|)
    """
    u = unit_roundoff(dtype)
    with np.errstate(invalid="ignore"):
        if kind == "prob":
            scale = 1 + np.abs(np.where(np.isfinite(logs), logs, 0))
            return factor * u * scale * np.abs(expected) + float(np.finfo(dtype).tiny)
        return factor * u * np.maximum(1, np.abs(expected))


def assert_matches_reference(name, got, x, axis=-1, where=None, keepdims=False, factor=4.0):
    """fs.<name> result `got` agrees with the reference on input `x`."""
    expected, logs, out_dtype = reference_result(name, x, axis, where, keepdims)
    got_arr = np.asarray(got)
    assert got_arr.dtype.type is out_dtype.type, (got_arr.dtype, out_dtype)
    assert got_arr.shape == np.shape(expected), (got_arr.shape, np.shape(expected))
    kind = REGISTRY[name].kind
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = np.asarray(expected).astype(out_dtype)   # overflow to +-inf, as the package must
    nonfinite = ~np.isfinite(rounded)
    where_wrong = nonfinite & ~((got_arr == rounded) | (np.isnan(got_arr) & np.isnan(rounded)))
    # finite expectation: compare in working precision against the unrounded value
    with np.errstate(invalid="ignore"):
        error = np.abs(got_arr.astype(np.asarray(expected).dtype) - expected)
        bound = tolerance(kind, expected, logs, out_dtype, factor)
        # rounding the exact value to out_dtype may cost half an ulp on top
        bound = bound + np.abs(np.asarray(rounded, dtype=error.dtype) - expected)
        where_wrong |= ~nonfinite & ~(error <= bound)
    if where_wrong.any():
        index = tuple(int(k) for k in np.argwhere(where_wrong)[0]) if where_wrong.ndim else ()
        raise AssertionError(
            f"{name}: {int(where_wrong.sum())} of {where_wrong.size} values wrong; first at "
            f"{index}: got {got_arr[index]!r}, expected {rounded[index]!r} "
            f"(exact {expected[index]!r}, error {error[index]!r}, bound {bound[index]!r})\n"
            f"input: {np.asarray(x)!r}\naxis={axis} where={where!r}"
        )
