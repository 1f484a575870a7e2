"""The benchmark CLI (``python -m fastsoft bench``) on tiny shapes: its outputs, not its timings.

Every run here uses one repetition of sub-millisecond samples and only fastsoft and NumPy
(no torch or JAX start-up), so the whole file takes a few seconds. Nothing asserts a
speed: the machine is shared and these are not performance tests.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastsoft
from fastsoft import _benchmark

TINY = ["--repeat", "1", "--sample-ms", "0.1", "--libraries", "fastsoft", "numpy",
        "--no-progress", "--dtypes", "float32"]
COLUMNS = ["function", "dtype", "shape", "implementation", "threads", "median", "GB/s",
           "/ fastsoft t1", "/ fastsoft t2"]


def _table(report):
    """The Markdown table's header and rows, as lists of cells."""
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return cells[0], [row for row in cells[2:]]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One in-process run over two functions and two shapes, with every output file."""
    directory = tmp_path_factory.mktemp("bench")
    paths = {kind: directory / f"report.{kind}" for kind in ("json", "md", "png")}
    argv = ["--functions", "softmax,logsumexp", "--shapes", "4x100", "3x7", *TINY,
            "--json", str(paths["json"]), "--markdown", str(paths["md"])]
    if importlib.util.find_spec("matplotlib") is not None:
        argv += ["--plot", str(paths["png"])]
    status = _benchmark.main(argv)
    return status, paths


def test_markdown_table_rows_and_columns(tiny_run):
    status, paths = tiny_run
    assert status == 0
    header, rows = _table(paths["md"].read_text(encoding="utf-8"))
    assert header == COLUMNS
    assert {(row[0], row[2], row[3]) for row in rows} == {
        (function, shape, label)
        for function in ("softmax", "logsumexp")
        for shape in ("4x100", "3x7")
        for label in ("fastsoft-t1", "fastsoft-t2", "numpy")
    }
    assert all(row[1] == "float32" for row in rows)


def test_json_medians_and_ratios(tiny_run):
    _, paths = tiny_run
    document = json.loads(paths["json"].read_text())
    assert document["mismatches"] == []
    results = document["results"]
    assert len(results) == 12
    medians = {(r["function"], r["shape"], r["label"]): r["median_s"] for r in results}
    for row in results:
        assert row["median_s"] > 0 and all(s > 0 for s in row["samples_s"])
        assert math.isclose(row["gb_per_s"], row["bytes_moved"] / row["median_s"] / 1e9)
        for n in (1, 2):
            fastsoft_median = medians[(row["function"], row["shape"], f"fastsoft-t{n}")]
            assert math.isclose(row["ratio_to_fastsoft"][f"t{n}"],
                                row["median_s"] / fastsoft_median, rel_tol=1e-12)
    assert document["environment"]["versions"]["fastsoft"] == fastsoft.__version__


def test_report_names_the_vector_isa(tiny_run):
    """The CPU's vector instruction sets (which decide every library's kernels) are in
    the JSON and the report's header, as /proc/cpuinfo lists them."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo here")
    flags = set()
    for line in cpuinfo.read_text().splitlines():
        if line.split(":", 1)[0].strip() in ("flags", "Features"):
            flags = set(line.split(":", 1)[1].split())
            break
    _, paths = tiny_run
    isa = json.loads(paths["json"].read_text())["environment"]["vector_isa"]
    assert isa == [flag for flag in _benchmark.VECTOR_ISA_FLAGS if flag in flags]
    header = paths["md"].read_text(encoding="utf-8").split("| function |")[0]
    isa_lines = [line for line in header.splitlines() if line.startswith("- vector ISA: ")]
    assert len(isa_lines) == 1
    listed = isa_lines[0][len("- vector ISA: "):].split(";")[0].split()
    assert listed == (isa or ["none", "of", *_benchmark.VECTOR_ISA_FLAGS])


def test_plot_is_a_png(tiny_run):
    pytest.importorskip("matplotlib")
    _, paths = tiny_run
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_kind_of_contender(tmp_path, capsys):
    """Cross-entropy (with its in-place variant), a backward pass, axis=0 and the copies."""
    status = _benchmark.main(["--functions", "cross_entropy", "softmax_backward",
                              "softmax_axis0", "softmax", "--shapes", "6x9", "--copy",
                              "--libraries", "fastsoft", "numpy", "copy", *TINY[:4],
                              "--no-progress", "--dtypes", "float64"])
    assert status == 0
    _, rows = _table(capsys.readouterr().out)
    labels = {(row[0], row[3]) for row in rows}
    assert {("cross_entropy", "fastsoft-inplace-t2"), ("softmax_backward", "numpy"),
            ("softmax_axis0", "fastsoft-lastaxis-t1"), ("softmax", "copy-numpy"),
            ("softmax", "copy-threads-t2")} <= labels


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--functions", "softmaxx", "unknown function 'softmaxx'"),
    ("--shapes", "4096by1000", "ROWSxCOLS"),
    ("--dtypes", "float16", "unknown dtype 'float16'"),
    ("--libraries", "tensorflow", "unknown library 'tensorflow'"),
])
def test_unknown_names_exit_with_a_message(capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        _benchmark.main([option, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _run_module(*args):
    # the subprocess must find the same fastsoft as this test (a checkout on PYTHONPATH)
    package_parent = str(Path(fastsoft.__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "fastsoft", *args], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": path}, timeout=60)


def test_python_dash_m_fastsoft_bench():
    completed = _run_module("bench", "--functions", "log_softmax", "--shapes", "2x10", *TINY)
    assert completed.returncode == 0, completed.stderr
    header, rows = _table(completed.stdout)
    assert header == COLUMNS
    assert [row[3] for row in rows] == ["fastsoft-t1", "fastsoft-t2", "numpy"]


def test_python_dash_m_fastsoft_errors():
    completed = _run_module("bench", "--shapes", "10")
    assert completed.returncode == 2
    assert "ROWSxCOLS" in completed.stderr
    completed = _run_module("benchmark")
    assert completed.returncode == 2
    assert "unknown command 'benchmark'" in completed.stderr


def test_acceptance_lines_are_ratios_of_medians():
    def row(function, shape, label, median, dtype="float32"):
        return {"function": function, "dtype": dtype, "shape": shape, "label": label,
                "median_s": median}

    rows = [row("softmax", "4096x1000", "fastsoft-t2", 1.0),
            row("softmax", "4096x1000", "torch-t2", 2.0),
            row("softmax", "4096x1000", "scipy", 5.0),
            row("softmax", "16384x4096", "fastsoft-t2", 9.0),
            row("softmax", "16384x4096", "fastsoft-out-t2", 3.0),
            row("softmax", "16384x4096", "copy-numpy", 4.0),
            row("softmax", "16384x4096", "copy-threads-t2", 2.5)]
    records = {r["statement"]: r for r in _benchmark.acceptance(rows)}
    assert records["torch-t2 / fastsoft-t2 >= 1.5"]["passed"]
    assert not records["scipy / fastsoft-t2 >= 10"]["passed"]
    # softmax into a preallocated out against the faster copy
    within = records["fastsoft-out-t2 / copy-threads-t2 <= 1.5"]
    assert within["ratio"] == pytest.approx(1.2) and within["passed"]
    assert within["case"] == "softmax-float32-16384x4096"
