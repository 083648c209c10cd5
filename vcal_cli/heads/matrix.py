"""Matrix scaling: a full affine map of the original logits, fitted on val by NLL.

log p(y|x) = log_softmax(W z + b), W in R^{K x K} (started at the identity), b in R^K; full-batch L-BFGS in
float64. K^2 + K parameters. Difference from the paper (measured): unregularised, as Guo et al. fit it, the
map diverges on a val split the original head nearly separates (test NLL 0.89 on the digits sample,
against 0.14); vcal pulls W towards temperature scaling's I/T and b towards 0 (`ridge`, chosen as in `vector`;
`--ridge 0` is the paper's method). Above 128 classes the map is fitted as W = diag(d) + U V^T of rank 16
(K^2 parameters cannot be determined by a val split: a million at 1,000 classes), at most 100 L-BFGS
iterations per stage on large val splits; benchmarks/bench_scale.py measures it against temperature scaling.

Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017. arXiv:1706.04599.
"""

from __future__ import annotations

from dataclasses import dataclass

from vcal_cli.heads.base import param, register
from vcal_cli.heads.vector import LogitMapParams, VectorHead


@dataclass(frozen=True)
class MatrixParams(LogitMapParams):
    ridge: float | None = param(None, "Pull towards the identity map (auto: 5-fold CV on val; 0: none, the paper).")


@register
class MatrixHead(VectorHead[MatrixParams]):
    name = "matrix"
    summary = "matrix scaling: full affine map W z + b of the original logits, fitted on val (post-hoc)"
    paper = "Guo et al., ICML 2017, arXiv:1706.04599"
    Params = MatrixParams
    kind = "matrix"
