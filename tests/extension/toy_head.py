"""A toy head, written the way a new head is added: this one file (and, in a real head, one import line in
`vcal_cli/heads/__init__.py`). `tests/test_extension.py` loads it and checks that it shows up in `vcal heads`,
`vcal retrain --help` and the head tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vcal_cli.heads.base import FitData, Head, HeadModule, HeadParams, Track, param, register


@dataclass(frozen=True)
class ToyParams(HeadParams):
    shrink: float = param(0.5, "Factor on the original logits (toy head).")


class ToyModule(HeadModule):
    def __init__(self, in_features: int, num_classes: int, shrink: float) -> None:
        super().__init__()
        self.in_features, self.num_classes, self.shrink = in_features, num_classes, shrink
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        return torch.log_softmax(self.linear(features) * self.shrink, dim=1)

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "num_classes": self.num_classes, "shrink": self.shrink}


@register
class ToyHead(Head[ToyParams]):
    name = "toy"
    summary = "a toy: the original logits times a constant"
    paper = "none"
    Params = ToyParams
    Module = ToyModule
    needs_linear_base = True
    fits_on = "val"

    def _fit(self, train: FitData, val: FitData, *, base: nn.Module | None, progress: Track) -> HeadModule:
        assert isinstance(base, nn.Linear)
        module = ToyModule(base.in_features, base.out_features, self.params.shrink)
        module.linear.load_state_dict(base.state_dict())
        return module
