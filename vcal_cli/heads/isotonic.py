"""Isotonic regression of the original probabilities, fitted on val: one-vs-rest or top-label.

One-vs-rest (`--map-mode ovr`, the default; scikit-learn's `CalibratedClassifierCV(method="isotonic")`): for each
class k a non-decreasing map g_k of p_k fitted to 1[y = k] by pool-adjacent-violators (scikit-learn's
`IsotonicRegression`, out of bounds clipped), then the K outputs normalised to sum to one (uniform where
all are 0). Top-label (`--map-mode top`): one map of the top class's confidence fitted to correctness; the
other classes share 1 - g(confidence) in their original proportions.

Caveats: the maps are step-like, so they tie confidences (many samples share one value) and can change
the ranking of samples (AURC) and even the predicted class (one-vs-rest); a probability mapped to 0
would make NLL infinite, so calibrated probabilities are floored at 1e-6 and renormalised.

Zadrozny & Elkan. Transforming classifier scores into accurate multiclass probability estimates. KDD 2002.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from vcal_cli.errors import UsageError
from vcal_cli.heads._posthoc import OneDimMaps, one_dim_targets, set_tables
from vcal_cli.heads.base import FitData, Head, HeadModule, HeadParams, Track, param, register


@dataclass(frozen=True)
class MapParams(HeadParams):
    map_mode: str = param("ovr", "ovr (one-vs-rest, as scikit-learn and netcal) or top (top-label) maps.")


@dataclass(frozen=True)
class IsotonicParams(MapParams):
    pass


MP = TypeVar("MP", bound=MapParams)


def check_mode(mode: str) -> None:
    if mode not in ("ovr", "top"):
        raise UsageError(f"--map-mode '{mode}' is not one of: ovr, top")


class MapHead(Head[MP]):
    """What isotonic regression and histogram binning share: one 1-D table per map, fitted on val from the
    original probabilities (per class, or the top-label confidence), kept in a `OneDimMaps` module."""

    Module = OneDimMaps
    needs_linear_base = True
    fits_on = "val"
    interp: str = "linear"

    def _table(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _fit(self, train: FitData, val: FitData, *, base: nn.Module | None, progress: Track) -> HeadModule:
        assert isinstance(base, nn.Linear)
        mode = self.params.map_mode
        check_mode(mode)
        probs = torch.softmax(val.logits.double(), dim=1)
        tables = [self._table(x, y) for x, y in one_dim_targets(probs, val.labels, mode)]
        knots = max(len(t[0]) for t in tables)
        module = OneDimMaps(base.in_features, base.out_features, len(tables), knots, mode, self.interp)
        module.linear.load_state_dict(base.state_dict())
        set_tables(module, tables)
        self.knots_ = knots
        return module


@register
class IsotonicHead(MapHead[IsotonicParams]):
    name = "isotonic"
    summary = "isotonic regression of the probabilities (one-vs-rest or top-label), fitted on val (post-hoc)"
    paper = "Zadrozny & Elkan, KDD 2002"
    Params = IsotonicParams

    def _table(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(x.numpy(), y.numpy())
        return torch.from_numpy(iso.X_thresholds_.copy()), torch.from_numpy(iso.y_thresholds_.copy())

    def extra_report(self) -> dict[str, Any]:
        return {"mode": self.params.map_mode, "knots": self.knots_}
