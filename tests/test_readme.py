"""README.md's example runs as written (keeps the README true to the code)."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(capsys):
    block = re.search(r"## Example\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace = {}
    exec(compile(block, "README.md example", "exec"), namespace)
    assert "fastsoft" in capsys.readouterr().out          # show_config printed
    logits, p = namespace["logits"], namespace["p"]
    np.testing.assert_allclose(p.sum(axis=-1), 1, rtol=1e-5)
    # the last line of the example softmaxed the logits in place
    np.testing.assert_array_equal(logits, p)
    assert namespace["grad"].shape == logits.shape and np.isfinite(namespace["loss"])
