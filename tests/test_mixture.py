"""fastsoft.log_mixture and fastsoft.mixture_cross_entropy (MoS / MoSS).

Expectations never come from fastsoft: an independent NumPy reference written below from
the definition (log_(sig)softmax of tests/_grad_reference.py, in long double when the
result under test is float64), 4th-order finite differences of that reference, a PyTorch
autograd composite, mpmath, and the K = 1 identities with log_softmax / cross_entropy.
"""

import numpy as np
import pytest
from numpy.exceptions import AxisError

import _grad_reference as ref
import fastsoft as fs

ACTIVATIONS = ("softmax", "sigsoftmax")
DTYPES = (np.float32, np.float64)
REDUCTIONS = ("none", "mean", "sum")
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


def work_dtype(dtype):
    return np.longdouble if np.dtype(dtype) == np.float64 else np.float64


# ---------------------------------------------------------------------------------------
# The reference: log P = logsumexp_k(log pi_k + log f(z_k)), written from the definition.


def ref_log_f(x, activation, dtype):
    if activation == "softmax":
        return ref.log_softmax(x, axis=-1, dtype=dtype)
    return ref.log_sigsoftmax(x, axis=-1, dtype=dtype)


def ref_log_mixture(z, rho, activation="softmax", axis=-1, component_axis=-2,
                    dtype=np.float64):
    """log P with the class and component axes anywhere (result: z without component_axis)."""
    z = np.asarray(z)
    ndim = z.ndim
    axis, component_axis = axis % ndim, component_axis % ndim
    prior_axis = component_axis if component_axis < axis else component_axis - 1
    zm = np.moveaxis(z, (component_axis, axis), (-2, -1))
    rhom = np.moveaxis(np.asarray(rho), prior_axis, -1)
    log_pi = ref_log_f(rhom, activation, dtype)
    log_fz = ref_log_f(zm, activation, dtype)
    with np.errstate(invalid="ignore"):
        # a component of prior 0 contributes nothing, whatever its logits hold
        b = np.where(log_pi[..., None] == -np.inf, -np.inf, log_pi[..., None] + log_fz)
    log_p = ref.logsumexp(b, axis=-2, dtype=dtype)
    out_axis = axis if axis < component_axis else axis - 1
    return np.moveaxis(log_p, -1, out_axis)


def ref_loss(z, rho, target, activation="softmax", axis=-1, component_axis=-2,
             ignore_index=-100, reduction="mean", dtype=np.float64):
    """The reduced (or per-row) mixture cross-entropy of the reference log P."""
    log_p = ref_log_mixture(z, rho, activation, axis, component_axis, dtype)
    ndim = np.ndim(z)
    out_axis = axis % ndim if axis % ndim < component_axis % ndim else axis % ndim - 1
    log_p = np.moveaxis(log_p, out_axis, -1)
    target = np.asarray(target)
    if target.dtype.kind == "f":
        q = np.moveaxis(target.astype(dtype), out_axis, -1)
        with np.errstate(invalid="ignore"):
            per_row = -np.sum(np.where(q == 0, 0, q * log_p), axis=-1)
        count = per_row.size
    else:
        kept = target != ignore_index
        picked = np.take_along_axis(log_p, np.where(kept, target, 0)[..., None], -1)[..., 0]
        per_row = np.where(kept, -picked, 0)
        count = np.count_nonzero(kept)
    if reduction == "none":
        return per_row
    total = np.sum(per_row)
    return total if reduction == "sum" else (total / count if count else np.nan)


def make_problem(batch, K, C, dtype=np.float64, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    z = (scale * rng.standard_normal(batch + (K, C))).astype(dtype)
    rho = rng.standard_normal(batch + (K,)).astype(dtype)
    target = rng.integers(0, C, size=batch)
    return z, rho, target


def assert_close(actual, expected, dtype, scale=1.0):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    rtol = RTOL[np.dtype(dtype)]
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite & ~np.isnan(expected)],
                                  expected[~finite & ~np.isnan(expected)])
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol,
                               atol=rtol * scale)


# ---------------------------------------------------------------------------------------
# log_mixture against the reference


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape, axis, component_axis", [
    ((5, 3, 7), -1, -2),
    ((5, 1, 7), -1, -2),            # K = 1
    ((4, 6), -1, 0),                # no batch axis
    ((2, 7, 3, 4), 1, 2),           # classes before components, batch axes on both sides
    ((3, 4, 2, 6), -1, 0),
    ((6, 5, 3), 0, 2),              # classes first, components last
])
def test_log_mixture_matches_reference(activation, dtype, shape, axis, component_axis):
    rng = np.random.default_rng(1)
    z = (3 * rng.standard_normal(shape)).astype(dtype)
    prior_shape = shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
    rho = rng.standard_normal(prior_shape).astype(dtype)
    got = fs.log_mixture(z, rho, activation=activation, axis=axis,
                         component_axis=component_axis)
    expected = ref_log_mixture(z, rho, activation, axis, component_axis, work_dtype(dtype))
    assert got.dtype == np.dtype(dtype)
    assert got.shape == expected.shape
    assert_close(got, expected, dtype, scale=10)


@pytest.mark.parametrize("layout", ["F", "transposed", "stepped", "negative",
                                    "reversed_last", "byteswapped", "unaligned"])
def test_log_mixture_any_layout(layout):
    z, rho, _ = make_problem((4, 3), 3, 5, seed=2)
    expected = fs.log_mixture(np.ascontiguousarray(z), rho, activation="sigsoftmax")
    got = fs.log_mixture(ref.relayout(z, layout), ref.relayout(rho, layout),
                         activation="sigsoftmax")
    np.testing.assert_array_equal(got, expected)
    assert_close(got, ref_log_mixture(z, rho, "sigsoftmax", dtype=np.longdouble), np.float64, 10)


def test_log_mixture_out():
    z, rho, _ = make_problem((4,), 3, 6, seed=3)
    out = np.full((4, 6), 7.0)
    result = fs.log_mixture(z, rho, out=out)
    assert result is out
    assert_close(out, ref_log_mixture(z, rho, dtype=np.longdouble), np.float64, 10)
    stepped_rows = np.zeros((8, 6))[::2]    # rows apart: written directly
    fs.log_mixture(z, rho, out=stepped_rows)
    np.testing.assert_array_equal(stepped_rows, out)
    columns = np.zeros((6, 4)).T      # classes not contiguous: through a temporary
    fs.log_mixture(z, rho, out=columns)
    np.testing.assert_array_equal(columns, out)


def test_log_mixture_rows_sum_to_one():
    z, rho, _ = make_problem((50,), 4, 9, seed=4, scale=5)
    for activation in ACTIVATIONS:
        p = np.exp(fs.log_mixture(z, rho, activation=activation))
        np.testing.assert_allclose(p.sum(-1), 1, rtol=1e-13)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_k1_is_log_softmax_and_cross_entropy(activation):
    z, _, target = make_problem((7,), 1, 5, seed=5)
    rho = np.zeros((7, 1))
    log_f = fs.log_softmax(z[:, 0]) if activation == "softmax" else fs.log_sigsoftmax(z[:, 0])
    np.testing.assert_allclose(fs.log_mixture(z, rho, activation=activation), log_f,
                               rtol=1e-14, atol=1e-14)
    loss, (grad_z, grad_rho) = fs.mixture_cross_entropy(
        z, rho, target, activation=activation, return_grad=True)
    ce, ce_grad = fs.cross_entropy(z[:, 0], target, activation=activation, return_grad=True)
    np.testing.assert_allclose(loss, ce, rtol=1e-14)
    np.testing.assert_allclose(grad_z[:, 0], ce_grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(grad_rho, 0)


def test_mpmath_constant():
    """Logits of 1e4 scale, where exp overflows, against 50-digit arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    z = np.array([[[1e4, 9990.0, -1e4], [-1e4, 1e4 - 30, 1e4 - 31]]])
    rho = np.array([[3.0, -2.0]])

    def exact(activation):
        def g(v):
            v = mpmath.mpf(v)
            return mpmath.exp(v) * (1 / (1 + mpmath.exp(-v)) if activation == "sigsoftmax" else 1)

        prior = [g(r) for r in rho[0]]
        prior = [p / sum(prior) for p in prior]
        result = []
        for j in range(3):
            total = mpmath.mpf(0)
            for k in range(2):
                comp = [g(v) for v in z[0, k]]
                total += prior[k] * comp[j] / sum(comp)
            result.append(float(mpmath.log(total)))
        return result

    for activation in ACTIVATIONS:
        got = fs.log_mixture(z, rho, activation=activation)[0]
        np.testing.assert_allclose(got, exact(activation), rtol=1e-13)


# ---------------------------------------------------------------------------------------
# Special values


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_extreme_and_infinite_logits(activation):
    z = np.array([[[1e4, -1e4, 0.0, -np.inf],
                   [-np.inf, 5.0, -1e4, -np.inf]],
                  [[np.nan, 1.0, 2.0, 3.0],        # component with prior 0: never read
                   [0.0, 1.0, -np.inf, 2.0]]])
    rho = np.array([[1e4, -1e4], [-np.inf, 0.0]])
    got = fs.log_mixture(z, rho, activation=activation)
    expected = ref_log_mixture(z, rho, activation, dtype=np.longdouble)
    assert_close(got, expected, np.float64, scale=1e4)
    assert got[0, 3] == -np.inf            # probability 0 in every component
    assert np.isfinite(got[1, [0, 1, 3]]).all() and got[1, 2] == -np.inf
    # loss: a target of probability 0 is +inf with NaN gradients (0/0 responsibilities)
    loss, (gz, gr) = fs.mixture_cross_entropy(z, rho, np.array([3, 1]),
                                              activation=activation, reduction="none",
                                              return_grad=True)
    assert loss[0] == np.inf and np.isnan(gz[0]).all()
    assert np.isfinite(loss[1]) and np.isfinite(gz[1]).all()
    np.testing.assert_array_equal(gz[1, 0], 0)     # prior 0: gradient 0
    assert gr[1, 0] == 0


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_and_plus_inf_poison_only_their_row(activation):
    z, rho, target = make_problem((3,), 2, 4, seed=6)
    z[0, 1, 2] = np.nan
    rho[1, 0] = np.inf
    got = fs.log_mixture(z, rho, activation=activation)
    assert np.isnan(got[0]).all() and np.isnan(got[1]).all() and np.isfinite(got[2]).all()
    loss = fs.mixture_cross_entropy(z, rho, target, activation=activation, reduction="none")
    assert np.isnan(loss[:2]).all() and np.isfinite(loss[2])


# ---------------------------------------------------------------------------------------
# mixture_cross_entropy: loss and gradients


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_loss_matches_reference(activation, dtype, reduction):
    z, rho, target = make_problem((9,), 3, 6, dtype=dtype, seed=7)
    target[[2, 5]] = -100
    got = fs.mixture_cross_entropy(z, rho, target, activation=activation,
                                   reduction=reduction)
    expected = ref_loss(z, rho, target, activation, reduction=reduction,
                        dtype=work_dtype(dtype))
    assert np.asarray(got).dtype == np.dtype(dtype)
    assert np.shape(got) == np.shape(expected)
    assert_close(got, expected, dtype, scale=10)
    if reduction == "none":
        assert got[2] == 0 and got[5] == 0


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kind", ["index", "probability"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradients_finite_differences(activation, kind, reduction):
    z, rho, target = make_problem((4,), 3, 5, seed=8)
    z[1, 2, 3] = -40.0      # a far-off logit and a near-zero prior
    rho[2, 1] = -25.0
    if kind == "probability":
        target = np.random.default_rng(9).dirichlet(np.ones(5), size=4)
        target[0, 1] = 0.0
    else:
        target[3] = -100
    loss, (grad_z, grad_rho) = fs.mixture_cross_entropy(
        z, rho, target, activation=activation, reduction=reduction, return_grad=True)
    weights = np.random.default_rng(10).standard_normal(np.shape(loss))

    def scalar(zz, rr):
        value = ref_loss(zz, rr, target, activation, reduction=reduction,
                         dtype=np.longdouble)
        return float(np.sum(weights * value)) if reduction == "none" else float(value)

    if reduction == "none":
        # the gradient of sum(weights * loss): rescale rows, then compare
        grad_z = grad_z * weights[:, None, None]
        grad_rho = grad_rho * weights[:, None]
    fd_z = ref.finite_difference_gradient(lambda zz: scalar(zz, rho), z, 1e-3)
    fd_rho = ref.finite_difference_gradient(lambda rr: scalar(z, rr), rho, 1e-3)
    np.testing.assert_allclose(grad_z, fd_z, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(grad_rho, fd_rho, rtol=1e-7, atol=1e-9)
    if kind == "index":
        np.testing.assert_array_equal(grad_z[3], 0)
        np.testing.assert_array_equal(grad_rho[3], 0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_against_torch_autograd(activation, reduction, dtype):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    F = torch.nn.functional
    z, rho, target = make_problem((8,), 4, 7, dtype=dtype, seed=11)
    target[[1, 6]] = 3      # arbitrary; and ignore one row
    target[4] = -100
    tz = torch.tensor(z.astype(np.float64), requires_grad=True)
    trho = torch.tensor(rho.astype(np.float64), requires_grad=True)

    def log_f(v):
        if activation == "sigsoftmax":   # log sigsoftmax(v) = log_softmax(2v - softplus(v))
            v = 2 * v - F.softplus(v)
        return F.log_softmax(v, dim=-1)

    log_p = torch.logsumexp(log_f(trho)[..., None] + log_f(tz), dim=-2)
    loss_t = F.nll_loss(log_p, torch.tensor(target), ignore_index=-100, reduction=reduction)
    loss_t.backward(torch.ones_like(loss_t))
    loss, (grad_z, grad_rho) = fs.mixture_cross_entropy(
        z, rho, target, activation=activation, reduction=reduction, return_grad=True)
    assert_close(loss, loss_t.detach().numpy(), dtype, scale=10)
    assert_close(grad_z, tz.grad.numpy(), dtype, scale=1)
    assert_close(grad_rho, trho.grad.numpy(), dtype, scale=1)


def test_probability_targets():
    z, rho, target = make_problem((6,), 3, 5, seed=12)
    onehot = np.eye(5)[target]
    for activation in ACTIVATIONS:
        a = fs.mixture_cross_entropy(z, rho, target, activation=activation, return_grad=True)
        b = fs.mixture_cross_entropy(z, rho, onehot, activation=activation, return_grad=True)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-14)
        for ga, gb in zip(a[1], b[1]):
            np.testing.assert_allclose(ga, gb, rtol=1e-12, atol=1e-16)
    q = np.random.default_rng(13).dirichlet(np.ones(5), size=6)
    for reduction in REDUCTIONS:
        got = fs.mixture_cross_entropy(z, rho, q, reduction=reduction)
        assert_close(got, ref_loss(z, rho, q, reduction=reduction, dtype=np.longdouble),
                     np.float64, 10)


def test_non_default_axes_and_strides_in_loss():
    z, rho, target = make_problem((3, 2), 4, 5, seed=14)
    zt = np.moveaxis(z, (-2, -1), (0, 2))           # (K, 3, C, 2): component 0, class 2
    rhot = np.moveaxis(rho, -1, 0)                  # (K, 3, 2)
    expected = fs.mixture_cross_entropy(z, rho, target, reduction="none", return_grad=True)
    got = fs.mixture_cross_entropy(zt, rhot, target, axis=2, component_axis=0,
                                   reduction="none", return_grad=True)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-15)
    np.testing.assert_allclose(got[1][0], np.moveaxis(expected[1][0], (-2, -1), (0, 2)),
                               rtol=1e-15)
    np.testing.assert_allclose(got[1][1], np.moveaxis(expected[1][1], -1, 0), rtol=1e-15)
    assert got[1][0].shape == zt.shape and got[1][1].shape == rhot.shape
    stepped = fs.mixture_cross_entropy(ref.relayout(z, "stepped"), ref.relayout(rho, "F"),
                                       target, reduction="none", return_grad=True)
    np.testing.assert_array_equal(stepped[0], expected[0])
    np.testing.assert_array_equal(stepped[1][0], expected[1][0])


def test_ignore_all_rows():
    z, rho, _ = make_problem((3,), 2, 4, seed=15)
    target = np.full(3, 7)
    loss, (gz, gr) = fs.mixture_cross_entropy(z, rho, target, ignore_index=7,
                                              return_grad=True)
    assert np.isnan(loss)
    np.testing.assert_array_equal(gz, 0)
    np.testing.assert_array_equal(gr, 0)
    assert fs.mixture_cross_entropy(z, rho, target, ignore_index=7, reduction="sum") == 0


def test_empty_batch():
    z = np.zeros((0, 3, 4))
    rho = np.zeros((0, 3))
    assert fs.log_mixture(z, rho).shape == (0, 4)
    loss, (gz, gr) = fs.mixture_cross_entropy(z, rho, np.zeros(0, int), reduction="sum",
                                              return_grad=True)
    assert loss == 0 and gz.shape == z.shape and gr.shape == rho.shape


@pytest.mark.parametrize("dtype, expected", [
    (np.float16, np.float16), (np.int32, np.float64), (np.bool_, np.float64),
    (np.float32, np.float32)])
def test_dtype_policy(dtype, expected):
    z, rho, target = make_problem((4,), 2, 3, seed=16)
    z = (z * 2).astype(dtype)
    result = fs.log_mixture(z, rho.astype(np.float64))     # the logits decide the dtype
    assert result.dtype == expected
    loss, (gz, gr) = fs.mixture_cross_entropy(z, rho, target, return_grad=True)
    assert np.asarray(loss).dtype == expected and gz.dtype == expected and gr.dtype == expected
    tol = 1e-2 if dtype == np.float16 else 1e-5
    np.testing.assert_allclose(result.astype(np.float64),
                               ref_log_mixture(z.astype(np.float64),
                                               rho.astype(np.asarray(result).dtype)),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_threads_give_identical_results(activation):
    # above fastsoft's small-work threshold, so two threads really run
    z, rho, target = make_problem((800,), 4, 16, seed=17)
    target[::7] = -100
    q = np.random.default_rng(18).dirichlet(np.ones(16), size=800)
    for t in (target, q):
        one = fs.mixture_cross_entropy(z, rho, t, activation=activation, reduction="none",
                                       return_grad=True, num_threads=1)
        two = fs.mixture_cross_entropy(z, rho, t, activation=activation, reduction="none",
                                       return_grad=True, num_threads=2)
        np.testing.assert_array_equal(one[0], two[0])
        np.testing.assert_array_equal(one[1][0], two[1][0])
        np.testing.assert_array_equal(one[1][1], two[1][1])
    np.testing.assert_array_equal(
        fs.log_mixture(z, rho, activation=activation, num_threads=1),
        fs.log_mixture(z, rho, activation=activation, num_threads=2))


def test_cpu_variants_agree():
    from fastsoft import _kernels

    baseline = _kernels.load_variant("baseline")
    others = [m for m in map(_kernels.load_variant, ("avx2", "avx512")) if m is not None]
    if not others:
        pytest.skip("no AVX2 variant on this CPU")
    z, rho, target = make_problem((20,), 3, 9, seed=19)
    outs = []
    for module in (baseline, *others):
        out = np.empty((20, 9))
        module.log_mixture_rows(z, rho, True, out, 1)
        outs.append(out)
    for out in outs[1:]:
        np.testing.assert_allclose(outs[0], out, rtol=1e-14, atol=1e-14)
    # the avx512 build is the avx2 code with more instructions to choose from: same bits
    for out in outs[2:]:
        np.testing.assert_array_equal(outs[1], out)


# ---------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("call, error, match", [
    (lambda z, r, t: fs.log_mixture(z[0, 0], r[0]), ValueError, "component axis and a class"),
    (lambda z, r, t: fs.log_mixture(z, r, axis=1, component_axis=-2), ValueError, "same axis"),
    (lambda z, r, t: fs.log_mixture(z, r, axis=3), AxisError, "out of bounds"),
    (lambda z, r, t: fs.log_mixture(z, r, component_axis=None), TypeError, "component_axis"),
    (lambda z, r, t: fs.log_mixture(z, r[:, :2]), ValueError, "prior_logits has shape"),
    (lambda z, r, t: fs.log_mixture(z, r, activation="relu"), ValueError, "activation"),
    (lambda z, r, t: fs.log_mixture(z.astype(complex), r), TypeError, "unsupported dtype"),
    (lambda z, r, t: fs.log_mixture(z, r.astype(complex)), TypeError, "unsupported dtype"),
    (lambda z, r, t: fs.log_mixture(z, r, out=np.empty((4, 5), np.float32)), TypeError,
     "dtype"),
    (lambda z, r, t: fs.log_mixture(z, r, out=np.empty((4, 3))), ValueError, "shape"),
    (lambda z, r, t: fs.log_mixture(z[:, :0], r[:, :0]), ValueError, "component axis has"),
    (lambda z, r, t: fs.mixture_cross_entropy(z, r, t + 5), IndexError, "outside"),
    (lambda z, r, t: fs.mixture_cross_entropy(z, r, t[:2]), ValueError, "target has shape"),
    (lambda z, r, t: fs.mixture_cross_entropy(z, r, t.astype(str)), TypeError, "target"),
    (lambda z, r, t: fs.mixture_cross_entropy(z, r, t, reduction="avg"), ValueError,
     "reduction"),
    (lambda z, r, t: fs.mixture_cross_entropy(z, r, t, ignore_index=1.5), TypeError,
     "ignore_index"),
    (lambda z, r, t: fs.mixture_cross_entropy(z, r, np.ones((4, 3))), ValueError,
     "probability target"),
])
def test_bad_input(call, error, match):
    z, rho, target = make_problem((4,), 3, 5, seed=20)
    with pytest.raises(error, match=match):
        call(z, rho, target)


def test_foreign_arrays_are_refused_clearly():
    class FakeCupyArray:
        __module__ = "cupy._core.core"

    with pytest.raises(TypeError, match="cupy arrays are not supported"):
        fs.log_mixture(FakeCupyArray(), np.zeros((1, 2)))
    da = pytest.importorskip("dask.array")
    z, rho, target = make_problem((4,), 3, 5)
    with pytest.raises(TypeError, match="dask arrays are not supported"):
        fs.mixture_cross_entropy(da.from_array(z), rho, target)
