# _core_avx2 is the same kernel body as _core_baseline, compiled with -mavx2 -mfma.
from ._core_baseline import *
