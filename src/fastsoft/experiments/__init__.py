"""Reproducible experiments built on fastsoft (run them with ``python -m``).

- ``python -m fastsoft.experiments.bottleneck``: the softmax bottleneck of Kanai et al.
  (NeurIPS 2018) at small scale — ranks of log-output matrices and fits to a high-rank
  target with softmax, sigsoftmax and their mixtures (see docs/paper.md).
"""
