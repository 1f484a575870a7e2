"""bench/variants.py times every supported CPU variant and leaves the chosen one in place
(not how fast: nothing here asserts a speed)."""

import importlib.util
from pathlib import Path

from fastsoft import _kernels

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "variants.py"


def _script():
    spec = importlib.util.spec_from_file_location("fastsoft_bench_variants", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_variant_runs_each_case(capsys, monkeypatch):
    module = _script()
    chosen = _kernels.core
    used = []
    original = _kernels.load_variant

    def recording(name):
        kernels = original(name)
        # a module object per variant whose row kernel notes which variant ran it
        proxy = type(kernels)(kernels.__name__)
        proxy.__dict__.update(kernels.__dict__)

        def softmax_rows(*args, **kwargs):
            used.append(name)
            return kernels.softmax_rows(*args, **kwargs)

        proxy.softmax_rows = softmax_rows
        return proxy

    monkeypatch.setattr(_kernels, "load_variant", recording)
    module.main(["--repeat", "2", "--cases", "softmax float32 4096x1000"])
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("| softmax float32 4096x1000 |")]
    assert len(lines) == 1
    assert lines[0].count("x)") == len(_kernels.supported_variants)
    assert sorted(used) == sorted(list(_kernels.supported_variants) * 2)
    assert _kernels.core is chosen
