"""Build logic for fastsoft's compiled kernels (metadata lives in pyproject.toml).

1. OpenMP: a probe compiles and links a tiny OpenMP program with the compiler setuptools
   will use.  Without OpenMP the kernels still build (serially) with a loud warning;
   FASTSOFT_REQUIRE_OPENMP=1 turns that into an error (CI sets it).
2. CPU variants: the one kernel body `_core.pxi` is compiled into a module per variant,
   `_core_baseline` (the architecture's baseline ISA) and, on x86-64 with GCC or Clang,
   `_core_avx2` (-mavx2 -mfma) and `_core_avx512` (the same with AVX-512 F/VL/DQ/BW: the
   same 256-bit vector code, with 32 registers and AVX-512's instructions to compile it
   to; the same bits).  fastsoft._kernels picks one at import.
3. `_buffers` (the recycled memory of large results) is plain C, built once.
4. Flags: -O3 with -fno-math-errno/-fno-trapping-math so that loops of branch-free math
   vectorize; never -ffast-math or -ffinite-math-only, which would break NaN/inf handling.
"""

import os
import platform
import sys
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNEL_DIR = os.path.join("src", "fastsoft", "_kernels")
BASE_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
AVX2_FLAGS = ["-mavx2", "-mfma"]
VARIANT_FLAGS = {
    "baseline": [],
    "avx2": AVX2_FLAGS,
    "avx512": AVX2_FLAGS + ["-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx512bw"],
}
OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int total = 0;
        #pragma omp parallel reduction(+:total)
        total += omp_get_thread_num() >= 0;
        return total > 0 ? 0 : 1;
    }
    """
)


def _is_x86():
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _compiler_accepts(compiler, flags, source, link=False):
    """Whether `compiler` compiles (and optionally links) `source` with `flags`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(source)
        try:
            objects = compiler.compile([path], output_dir=tmp, extra_postargs=flags)
            if link:
                compiler.link_executable(objects, os.path.join(tmp, "probe"),
                                         extra_postargs=flags)
        except Exception:
            return False
    return True


class BuildKernels(build_ext):
    """build_ext that adds OpenMP and per-variant ISA flags once the compiler is known."""

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            openmp_flags, link_flags = ["/openmp"], []
            base_flags = ["/O2"]
        else:
            openmp_flags = link_flags = ["-fopenmp"]
            base_flags = BASE_FLAGS
        has_openmp = _compiler_accepts(self.compiler, openmp_flags, OPENMP_PROBE, link=True)
        if not has_openmp:
            message = (
                "fastsoft: the compiler has no usable OpenMP; building SERIAL kernels "
                "(every call runs on one thread)."
            )
            if os.environ.get("FASTSOFT_REQUIRE_OPENMP") == "1":
                raise RuntimeError(message + " FASTSOFT_REQUIRE_OPENMP=1 forbids that.")
            border = "!" * len(message)
            print(f"\n{border}\n{message}\n{border}\n", file=sys.stderr)
            openmp_flags = link_flags = []
        for ext in self.extensions:
            if not ext.name.startswith("fastsoft._kernels._core_"):
                ext.extra_compile_args = list(base_flags)       # plain C, no kernels
                continue
            variant = ext.name.rsplit("_", 1)[-1]
            ext.extra_compile_args = base_flags + openmp_flags + VARIANT_FLAGS[variant]
            ext.extra_link_args = link_flags
        super().build_extensions()


def _extensions():
    variants = ["baseline"]
    if _is_x86() and not sys.platform.startswith("win"):
        variants += ["avx2", "avx512"]
    numpy_api = [("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]
    return [
        Extension(
            f"fastsoft._kernels._core_{variant}",
            [os.path.join(KERNEL_DIR, f"_core_{variant}.pyx")],
            include_dirs=[np.get_include(), KERNEL_DIR],
            define_macros=numpy_api,
        )
        for variant in variants
    ] + [
        Extension(
            "fastsoft._kernels._buffers",
            [os.path.join(KERNEL_DIR, "_buffers.pyx")],
            include_dirs=[np.get_include()],
            define_macros=numpy_api,
        )
    ]


setup(
    ext_modules=cythonize(_extensions(), compiler_directives={"language_level": 3}),
    cmdclass={"build_ext": BuildKernels},
)
