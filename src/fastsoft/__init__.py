"""fastsoft: fast, numerically careful softmax-family functions for NumPy on the CPU."""

from ._activations import log_sigsoftmax, log_softmax, logsumexp, sigsoftmax, softmax
from ._config import get_num_threads, set_num_threads, show_config
from ._version import __version__

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "sigsoftmax",
    "log_sigsoftmax",
    "get_num_threads",
    "set_num_threads",
    "show_config",
    "__version__",
]
