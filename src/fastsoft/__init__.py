"""fastsoft: fast, numerically careful softmax-family functions for NumPy on the CPU."""

from ._activations import log_sigsoftmax, log_softmax, logsumexp, sigsoftmax, softmax
from ._backward import (
    log_sigsoftmax_backward,
    log_softmax_backward,
    logsumexp_backward,
    sigsoftmax_backward,
    softmax_backward,
)
from ._config import get_num_threads, release_result_memory, set_num_threads, show_config
from ._losses import cross_entropy
from ._mixture import log_mixture, mixture_cross_entropy
from ._version import __version__

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "sigsoftmax",
    "log_sigsoftmax",
    "softmax_backward",
    "log_softmax_backward",
    "logsumexp_backward",
    "sigsoftmax_backward",
    "log_sigsoftmax_backward",
    "cross_entropy",
    "log_mixture",
    "mixture_cross_entropy",
    "get_num_threads",
    "set_num_threads",
    "show_config",
    "release_result_memory",
    "__version__",
]
