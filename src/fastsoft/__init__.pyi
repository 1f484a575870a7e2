from typing import IO, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__version__: str
__all__: list[str]

def softmax(x: ArrayLike, axis: int | None = -1, *, out: NDArray[Any] | None = None,
            where: ArrayLike | None = None, num_threads: int | None = None) -> NDArray[np.floating[Any]]: ...
def log_softmax(x: ArrayLike, axis: int | None = -1, *, out: NDArray[Any] | None = None,
                where: ArrayLike | None = None, num_threads: int | None = None) -> NDArray[np.floating[Any]]: ...
def sigsoftmax(x: ArrayLike, axis: int | None = -1, *, out: NDArray[Any] | None = None,
               where: ArrayLike | None = None, num_threads: int | None = None) -> NDArray[np.floating[Any]]: ...
def log_sigsoftmax(x: ArrayLike, axis: int | None = -1, *, out: NDArray[Any] | None = None,
                   where: ArrayLike | None = None, num_threads: int | None = None) -> NDArray[np.floating[Any]]: ...
def logsumexp(x: ArrayLike, axis: int | None = -1, *, keepdims: bool = False,
              out: NDArray[Any] | None = None, where: ArrayLike | None = None,
              num_threads: int | None = None) -> NDArray[np.floating[Any]] | np.floating[Any]: ...
def softmax_backward(grad_output: ArrayLike, output: ArrayLike, axis: int | None = -1, *,
                     out: NDArray[Any] | None = None, where: ArrayLike | None = None,
                     num_threads: int | None = None) -> NDArray[np.floating[Any]]: ...
def log_softmax_backward(grad_output: ArrayLike, output: ArrayLike, axis: int | None = -1, *,
                         out: NDArray[Any] | None = None, where: ArrayLike | None = None,
                         num_threads: int | None = None) -> NDArray[np.floating[Any]]: ...
def logsumexp_backward(grad_output: ArrayLike, x: ArrayLike, result: ArrayLike,
                       axis: int | None = -1, *, out: NDArray[Any] | None = None,
                       where: ArrayLike | None = None,
                       num_threads: int | None = None) -> NDArray[np.floating[Any]]: ...
def sigsoftmax_backward(grad_output: ArrayLike, output: ArrayLike, x: ArrayLike,
                        axis: int | None = -1, *, out: NDArray[Any] | None = None,
                        where: ArrayLike | None = None,
                        num_threads: int | None = None) -> NDArray[np.floating[Any]]: ...
def log_sigsoftmax_backward(grad_output: ArrayLike, output: ArrayLike, x: ArrayLike,
                            axis: int | None = -1, *, out: NDArray[Any] | None = None,
                            where: ArrayLike | None = None,
                            num_threads: int | None = None) -> NDArray[np.floating[Any]]: ...
def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: int = -1,
                  weight: ArrayLike | None = None, ignore_index: int = -100,
                  reduction: Literal["none", "mean", "sum"] = "mean",
                  label_smoothing: float = 0.0,
                  activation: Literal["softmax", "sigsoftmax"] = "softmax",
                  return_grad: bool = False, grad_output: ArrayLike | None = None,
                  grad_out: NDArray[Any] | None = None,
                  num_threads: int | None = None) -> Any: ...
def log_mixture(logits: ArrayLike, prior_logits: ArrayLike, *,
                activation: Literal["softmax", "sigsoftmax"] = "softmax", axis: int = -1,
                component_axis: int = -2, out: NDArray[Any] | None = None,
                num_threads: int | None = None) -> NDArray[np.floating[Any]]: ...
def mixture_cross_entropy(logits: ArrayLike, prior_logits: ArrayLike, target: ArrayLike, *,
                          activation: Literal["softmax", "sigsoftmax"] = "softmax",
                          axis: int = -1, component_axis: int = -2, ignore_index: int = -100,
                          reduction: Literal["none", "mean", "sum"] = "mean",
                          return_grad: bool = False,
                          num_threads: int | None = None) -> Any: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int | None) -> None: ...
def show_config(file: IO[str] | None = None) -> None: ...
def release_result_memory() -> int: ...
