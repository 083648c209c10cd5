"""Vector scaling: a per-class scale and bias of the original logits, fitted on val by NLL.

log p(y|x) = log_softmax(w * z + b), z the checkpoint's logits, w and b in R^K; full-batch L-BFGS in float64
on the val NLL (no regularisation, as in the paper). K + K parameters: between temperature scaling (1)
and matrix scaling (K^2 + K). It can change the predicted class.

Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017. arXiv:1706.04599.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from vcal_cli.heads._posthoc import LogitMap, fit_logit_map
from vcal_cli.heads.base import FitData, Head, HeadParams, Track, register


@dataclass(frozen=True)
class VectorParams(HeadParams):
    max_iter: int = 500  # L-BFGS iterations


@register
class VectorHead(Head):
    name = "vector"
    summary = "vector scaling: per-class scale and bias of the original logits, fitted on val (post-hoc)"
    paper = "Guo et al., ICML 2017, arXiv:1706.04599"
    Params = VectorParams
    Module = LogitMap
    needs_linear_base = True
    fits_on = "val"
    kind: ClassVar[str] = "vector"

    def _fit(self, train: FitData, val: FitData, *, base: nn.Module | None, progress: Track) -> nn.Module:
        assert isinstance(base, nn.Linear)
        module = LogitMap(base.in_features, base.out_features, self.kind)
        module.linear.load_state_dict(base.state_dict())
        for _ in progress(range(1), total=1, description=f"fit {self.name}"):
            self.val_loss_ = fit_logit_map(module, val.logits, val.labels, **self._reg(), max_iter=self.params.max_iter)
        return module

    def _reg(self) -> dict[str, float]:
        return {}

    def extra_report(self) -> dict[str, Any]:
        return {"val_loss": self.val_loss_}
