"""The compiled kernels, chosen once at import for the running CPU.

The same kernel body is compiled once per CPU variant (see setup.py).  The best variant
the CPU supports is used; ``FASTSOFT_CPU_VARIANT=baseline`` (or ``avx2``, ``avx512``)
overrides the choice.  An override the CPU cannot run, or a variant that was not built,
falls back to the baseline with a warning rather than failing (or crashing on an illegal
instruction).
"""

import os
import warnings

from . import _core_baseline

ENV_VARIANT = "FASTSOFT_CPU_VARIANT"
VARIANTS = ("avx512", "avx2", "baseline")  # best first


def _load(name):
    if name == "baseline":
        return _core_baseline
    if name == "avx2" and _core_baseline.cpu_has_avx2_fma():
        try:
            from . import _core_avx2
        except ImportError:
            return None
        return _core_avx2
    if name == "avx512" and _core_baseline.cpu_has_avx512():
        try:
            from . import _core_avx512
        except ImportError:
            return None
        return _core_avx512
    return None


def _supported():
    return [name for name in VARIANTS if _load(name) is not None]


def _select():
    requested = os.environ.get(ENV_VARIANT, "").strip().lower()
    if requested:
        module = _load(requested) if requested in VARIANTS else None
        if module is not None:
            return requested, module
        warnings.warn(
            f"{ENV_VARIANT}={requested!r} is not a variant this CPU and build can run "
            f"(supported here: {', '.join(_supported())}); using 'baseline'.",
            RuntimeWarning,
            stacklevel=2,
        )
        return "baseline", _core_baseline
    for name in VARIANTS:
        module = _load(name)
        if module is not None:
            return name, module
    return "baseline", _core_baseline  # unreachable: baseline always loads


variant, core = _select()
supported_variants = tuple(_supported())

if not core.openmp_enabled():
    # pip hides the build's own warning on success, so say it where it will be seen
    warnings.warn(
        "fastsoft was built without OpenMP: every call runs on one thread "
        "(rebuild with a compiler that supports -fopenmp; fastsoft.show_config() reports it)",
        RuntimeWarning,
        stacklevel=2,
    )


def load_variant(name):
    """The kernel module of variant `name`, or None if this CPU/build cannot run it."""
    return _load(name)
