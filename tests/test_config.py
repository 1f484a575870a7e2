"""show_config(), the version, the public surface and its docstrings, CPU variants."""

import importlib.metadata
import inspect
import os
import re
import subprocess
import sys
import textwrap

import pytest

import fastsoft as fs
from _arrays import NAMES


def test_show_config(capsys):
    assert fs.show_config() is None
    text = capsys.readouterr().out
    assert fs.__version__ in text
    assert re.search(r"openmp", text, re.IGNORECASE)
    # the thread count, on a line about threads
    thread_lines = [line for line in text.splitlines() if "thread" in line.lower()]
    assert thread_lines and any(re.search(rf"\b{fs.get_num_threads()}\b", line)
                                for line in thread_lines)
    # the CPU variant in use
    assert re.search(r"variant|simd|isa|cpu", text, re.IGNORECASE)


def test_show_config_follows_thread_setting(capsys, restore_threads):
    fs.set_num_threads(3)
    fs.show_config()
    text = capsys.readouterr().out
    assert any(re.search(r"\b3\b", line) for line in text.splitlines() if "thread" in line.lower())


def test_version():
    assert fs.__version__ == importlib.metadata.version("fastsoft")
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?([.+-]?\w+)*", fs.__version__)


def test_all_is_the_public_surface():
    assert set(NAMES) <= set(fs.__all__)
    for name in ("get_num_threads", "set_num_threads", "show_config"):
        assert name in fs.__all__
    for name in fs.__all__:
        assert hasattr(fs, name), name
    assert len(fs.__all__) == len(set(fs.__all__))


PUBLIC_CALLABLES = [name for name in fs.__all__ if callable(getattr(fs, name))]


@pytest.mark.parametrize("name", PUBLIC_CALLABLES)
def test_docstring_sections(name):
    func = getattr(fs, name)
    doc = inspect.getdoc(func) or ""
    sections = ["Returns", "Examples"]
    if inspect.signature(func).parameters:  # numpydoc omits Parameters when there are none
        sections.append("Parameters")
    for section in sections:
        assert re.search(rf"^{section}\n-+$", doc, re.MULTILINE), f"{name}: no {section}"


@pytest.mark.parametrize("name", NAMES)
def test_signature(name):
    parameters = inspect.signature(getattr(fs, name)).parameters
    assert list(parameters)[:2] == ["x", "axis"]
    assert parameters["axis"].default == -1
    for keyword in ("out", "where", "num_threads"):
        assert parameters[keyword].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[keyword].default is None
    if name == "logsumexp":
        assert parameters["keepdims"].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters["keepdims"].default is False


# ---------------------------------------------------------------------------------------
# CPU variants: every variant this machine can run agrees with the reference.

VARIANT_SCRIPT = textwrap.dedent("""
    import sys, warnings
    import numpy as np
    warnings.simplefilter("error")
    import fastsoft as fs
    sys.path.insert(0, {tests!r})
    from _arrays import NAMES, arrays, assert_matches_reference
    failures = []
    for dtype in (np.float32, np.float64):
        for case, x in arrays(dtype):
            for name in NAMES:
                for axis in (-1, 0) if x.ndim > 1 else (-1,):
                    try:
                        assert_matches_reference(name, getattr(fs, name)(x, axis), x, axis)
                    except AssertionError as error:
                        failures.append(f"{{name}} {{case}} axis={{axis}}: {{error}}"[:400])
    import io, contextlib
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        fs.show_config()
    print(text.getvalue())
    print("\\n".join(failures))
    print("FAILURES", len(failures))
""")


def variants():
    kernels = pytest.importorskip("fastsoft._kernels")
    return getattr(kernels, "supported_variants", ())


def run_with_variant(variant):
    env = dict(os.environ, FASTSOFT_CPU_VARIANT=variant)
    script = VARIANT_SCRIPT.format(tests=os.path.dirname(__file__))
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("variant", ["avx512", "avx2", "baseline"])
def test_cpu_variant_matches_reference(variant):
    if variant not in variants():
        pytest.skip(f"{variant} is not supported on this CPU/build")
    result = run_with_variant(variant)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(rf"variant\W+{variant}\b", result.stdout, re.IGNORECASE), result.stdout
    if not result.stdout.rstrip().endswith("FAILURES 0"):
        pytest.fail(f"variant {variant} disagrees with the reference:\n{result.stdout[-4000:]}")


BITS_SCRIPT = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    import fastsoft as fs
    sys.path.insert(0, {tests!r})
    from _arrays import NAMES, arrays
    digest = hashlib.sha256()

    def add(result):
        # one NaN pattern: which NaN a NaN input gives back is not specified
        result = np.asarray(result)
        digest.update(np.where(np.isnan(result), np.nan, result).astype(result.dtype).tobytes())

    rng = np.random.default_rng(3)
    shapes = [(5, 7), (64, 33), (300, 1000), (3, 5003), (1000, 10), (200, 300)]
    inputs = [x for dtype in (np.float32, np.float64) for _, x in arrays(dtype)]
    inputs += [(rng.standard_normal(shape) * scale).astype(dtype) for shape in shapes
               for scale in (1, 30) for dtype in (np.float32, np.float64)]
    with np.errstate(all="ignore"):
        for x in inputs:
            for name in NAMES:
                for axis in (-1, 0) if x.ndim > 1 else (-1,):
                    add(getattr(fs, name)(x, axis))
            if x.ndim == 2 and x.shape[1] > 0:
                g = np.cos(np.arange(x.size, dtype=x.dtype)).reshape(x.shape)
                for name in ("softmax", "log_softmax", "sigsoftmax", "log_sigsoftmax"):
                    y = getattr(fs, name)(x)
                    args = (g, y, x) if "sig" in name else (g, y)
                    add(getattr(fs, name + "_backward")(*args))
                target = np.arange(x.shape[0]) % x.shape[1]
                for activation in ("softmax", "sigsoftmax"):
                    loss, grad = fs.cross_entropy(x, target, activation=activation,
                                                  return_grad=True)
                    add(loss)
                    add(grad)
    print(fs._kernels.variant, digest.hexdigest())
""")


def test_avx512_gives_the_avx2_bits():
    """The avx512 build is the avx2 build's code with AVX-512 instructions to choose from
    (32 registers, masked and three-input logic): every result, bit for bit, the same
    (NaNs compared as NaNs: one NaN input's sigsoftmax row differed in the NaN's bits)."""
    if not {"avx512", "avx2"} <= set(variants()):
        pytest.skip("the avx512 variant is not supported on this CPU/build")
    script = BITS_SCRIPT.format(tests=os.path.dirname(__file__))
    printed = []
    for variant in ("avx2", "avx512"):
        env = dict(os.environ, FASTSOFT_CPU_VARIANT=variant)
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        printed.append(result.stdout.split())
    assert [p[0] for p in printed] == ["avx2", "avx512"]
    assert printed[0][1] == printed[1][1]


def test_unknown_variant_falls_back_with_warning():
    env = dict(os.environ, FASTSOFT_CPU_VARIANT="no-such-variant")
    script = "import fastsoft as fs; print(float(fs.softmax([0.0, 0.0])[0]))"
    result = subprocess.run([sys.executable, "-W", "always", "-c", script], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.5"
    assert "FASTSOFT_CPU_VARIANT" in result.stderr   # the warning names the variable

