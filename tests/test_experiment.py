"""The bottleneck experiment's quick mode end to end (CI runs it): the rank results the
paper's theory fixes, the files written, and the run without matplotlib."""

import builtins
import json

import pytest

from fastsoft.experiments import bottleneck


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bottleneck")
    assert bottleneck.main(["--quick", "--out", str(out), "--seed", "0"]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_softmax_rank_is_d_plus_one_and_the_others_above(quick_run):
    _, results = quick_run
    d = results["rank_config"]["d"]
    ranks = results["ranks"]
    assert ranks["softmax"] == d + 1
    assert ranks["softmax+bias"] == d + 2
    for name in ("g:ReLU", "g:sigmoid", "sigsoftmax", "MoS", "MoSS"):
        assert ranks[name] > d + 1, name
    for row in results["rank_sweep"].values():
        assert row["softmax"] == d + 1


def test_trained_softmax_is_capped_and_fits_are_sane(quick_run):
    _, results = quick_run
    d = results["fit_config"]["d"]
    for kind, fits in results["fits"].items():
        assert all(rank <= d + 1 for rank in fits["softmax"]["rank"]), kind
        assert all(rank > d + 1 for rank in fits["sigsoftmax"]["rank"]), kind
        for name, fit in fits.items():
            kl, _ = fit["kl"]
            assert 0 < kl < 5, (kind, name)
            curve = results["curves"][kind][name][0]
            assert curve[-1] < curve[0], (kind, name)     # training made progress


def test_files_written(quick_run):
    out, _ = quick_run
    markdown = (out / "results.md").read_text()
    assert "| softmax |" in markdown and "reproduced" in markdown
    pytest.importorskip("matplotlib")
    for name in ("singular_values.png", "training.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_runs_without_matplotlib(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.partition(".")[0] == "matplotlib":
            raise ImportError("matplotlib hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    ranks = {name: {"rank": 1, "singular_values": [1.0]} for name in bottleneck.FUNCTIONS}
    assert bottleneck.make_plots(ranks, {}, {"N": 2, "M": 2, "d": 1}, tmp_path) == {}
    assert not list(tmp_path.iterdir())
