"""Matrix scaling: a full affine map of the original logits, fitted on val by NLL.

log p(y|x) = log_softmax(W z + b), W in R^{K x K} (started at the identity), b in R^K; full-batch L-BFGS in
float64, unregularised as in the paper. K^2 + K parameters: with many classes and a small val split it
overfits (use `dirichlet`, whose ODIR penalty is made for that case).

Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017. arXiv:1706.04599.
"""

from __future__ import annotations

from dataclasses import dataclass

from vcal_cli.heads.base import HeadParams, register
from vcal_cli.heads.vector import VectorHead


@dataclass(frozen=True)
class MatrixParams(HeadParams):
    max_iter: int = 500  # L-BFGS iterations


@register
class MatrixHead(VectorHead):
    name = "matrix"
    summary = "matrix scaling: full affine map W z + b of the original logits, fitted on val (post-hoc)"
    paper = "Guo et al., ICML 2017, arXiv:1706.04599"
    Params = MatrixParams
    kind = "matrix"
