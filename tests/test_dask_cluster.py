"""The Dask backend on a dask.distributed cluster: two worker processes on loopback.

One LocalCluster for the module (starting worker processes costs seconds on 2 cores).
The blocks run in other processes, so these tests also check that every task of the
plans pickles and that errors raised in a worker (a bad class label) reach the caller.
Results are compared with the NumPy path as in test_dask.py.
"""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import fastsoft as fs  # noqa: E402
from _arrays import NAMES, assert_matches_reference  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, memory_limit="1GiB", silence_logs=40)
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


def problem(seed=0):
    rng = np.random.default_rng(seed)
    x = (4 * rng.standard_normal((40, 30))).astype(np.float32)
    x[3, 7] = -np.inf
    x[5] = -np.inf
    mask = rng.random(x.shape) < 0.8
    mask[9] = False
    return x, mask


@pytest.mark.parametrize("chunks", [(10, 30), (10, 7), (40, 2)],
                         ids=["whole_rows", "split_classes", "fifteen_class_chunks"])
def test_forward_functions_on_the_cluster(client, chunks):
    x, mask = problem()
    lazy = {name: getattr(fs, name)(da.from_array(x, chunks=chunks),
                                    where=da.from_array(mask, chunks=(20, 15)))
            for name in NAMES}
    results = client.compute(lazy, sync=True)
    for name, got in results.items():
        assert_matches_reference(name, got, x, where=mask)


def test_cross_entropy_with_gradient_on_the_cluster(client):
    x, _ = problem(1)
    x[5] = 0.0
    labels = np.random.default_rng(2).integers(0, 30, 40)
    labels[::7] = -100
    weight = np.linspace(0.5, 2.0, 30)
    for chunks in [(10, 30), (10, 8)]:
        for activation in ("softmax", "sigsoftmax"):
            kwargs = dict(weight=weight, label_smoothing=0.1, activation=activation)
            expected = fs.cross_entropy(x, labels, return_grad=True, **kwargs)
            lazy = fs.cross_entropy(da.from_array(x, chunks=chunks),
                                    da.from_array(labels, chunks=10), return_grad=True,
                                    **kwargs)
            loss, grad = client.compute(lazy, sync=True)
            assert loss.dtype == np.float32 and grad.dtype == np.float32
            np.testing.assert_allclose(loss, expected[0], rtol=1e-5)
            np.testing.assert_allclose(grad, expected[1], rtol=1e-5, atol=1e-7)


def test_backward_on_the_cluster(client):
    x, _ = problem(3)
    x[5] = 1.0
    g = np.random.default_rng(4).standard_normal(x.shape).astype(np.float32)
    y = fs.log_sigsoftmax(x)
    expected = fs.log_sigsoftmax_backward(g, y, x)
    got = fs.log_sigsoftmax_backward(*(da.from_array(a, chunks=(16, 9)) for a in (g, y, x)))
    np.testing.assert_allclose(client.compute(got, sync=True), expected, rtol=1e-5,
                               atol=1e-6)


def test_bad_label_error_comes_back_from_a_worker(client):
    labels = np.zeros(40, dtype=np.int64)
    labels[33] = 30
    lazy = fs.cross_entropy(da.ones((40, 30), chunks=(10, 30)), da.from_array(labels, 10))
    with pytest.raises(IndexError, match=r"target 30 at position \(33,\)"):
        client.compute(lazy, sync=True)
