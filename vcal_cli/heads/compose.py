"""Any head followed by temperature scaling on val (`--head vtst+temperature`), and the lookups that know
about it: `get_head(name)` and `build_module(info)`.

The inner head is fitted as usual (train, selecting on val); one temperature T then rescales its log
predictive probabilities, log_softmax(log p(y|x) / T), with T minimising the val NLL (the same solver as
`temperature`). Heads whose own selection leaves them over- or under-confident on val get the cheapest
fix on top; the composition is a head like any other (registry name `NAME+temperature`, checkpoint,
report column).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import torch
from torch import Tensor, nn

from vcal_cli.errors import HeadError
from vcal_cli.heads.base import HEAD_FORMAT, HEADS, FitData, Head, HeadModule, Track
from vcal_cli.heads.temperature import fit_inverse_temperature

SUFFIX = "+temperature"


class TemperedModule(HeadModule):
    """log_softmax(inner(features) / T) around any head's module."""

    def __init__(self, inner: dict[str, Any]) -> None:
        super().__init__()
        self.inner_info = inner
        self.inner = build_module(inner)
        self.register_buffer("temperature", torch.ones(()))

    def forward(self, features: Tensor) -> Tensor:
        return torch.log_softmax(self.inner(features) / self.temperature, dim=1)

    def as_linear(self) -> tuple[Tensor, Tensor] | None:
        inner = self.inner.as_linear() if isinstance(self.inner, HeadModule) else None
        t = float(self.temperature)
        return None if inner is None else (inner[0] / t, inner[1] / t)

    def uncertainty(self, features: Tensor) -> dict[str, Tensor]:
        return self.inner.uncertainty(features)

    def config(self) -> dict[str, Any]:
        return {"inner": self.inner_info}


class TemperedHead(Head):
    """What every `NAME+temperature` class shares: temperature scaling of a fitted inner head on val."""

    Module = TemperedModule
    inner_: Head
    temperature_: float

    def _on(self, head: Head, val: FitData) -> TemperedModule:
        """Temperature-scale an already fitted inner head on val."""
        self.inner_ = head
        logp = head.predict_log_proba(val.features)
        self.temperature_ = 1.0 / fit_inverse_temperature(logp, val.labels)
        module = TemperedModule(head.info())
        module.inner.load_state_dict(head.module_.state_dict())
        module.temperature.fill_(self.temperature_)
        return module

    def extra_report(self) -> dict[str, Any]:
        return {**self.inner_.extra_report(), "temperature": self.temperature_}

    def cut_short(self) -> str | None:
        return self.inner_.cut_short()


@functools.cache
def tempered(inner: type[Head]) -> type[TemperedHead]:
    """The head class `inner` + temperature scaling (one class per inner head)."""

    class Tempered(TemperedHead):
        name = inner.name + SUFFIX
        summary = f"{inner.name}, then temperature scaling of its predictive on val"
        paper = f"{inner.paper}; Guo et al., ICML 2017"
        Params = inner.Params
        needs_linear_base = inner.needs_linear_base
        needs_hierarchy = inner.needs_hierarchy
        fits_on = "train+val" if inner.fits_on == "train" else "val"
        fast_params = inner.fast_params

        def _fit(self, train: FitData, val: FitData, *, base: nn.Module | None, progress: Track) -> HeadModule:
            head = inner(self.params).fit(train, val, base=base, hierarchy=self.hierarchy, progress=progress)
            return self._on(head, val)

    Tempered.__name__ = Tempered.__qualname__ = f"{inner.__name__}Tempered"
    return Tempered


def temper(head: Head, val: FitData) -> Head:
    """`head` (fitted) followed by temperature scaling on val, without refitting `head`."""
    out = tempered(type(head))(head.params)
    out.hierarchy = head.hierarchy
    with torch.no_grad():
        out.module_ = out._on(head, val).eval()
    for p in out.module_.parameters():
        p.requires_grad_(False)
    return out


def build_module(info: dict[str, Any] | str) -> HeadModule:
    """Rebuild a fitted head's module (weights not loaded) from `Head.info()` or its JSON."""
    if isinstance(info, str):
        info = json.loads(info)
    cls = get_head(info["name"])
    if info.get("format", 1) > HEAD_FORMAT:
        raise HeadError(
            f"head '{info['name']}' was written by a newer vcal (format {info['format']})", hint="upgrade vcal"
        )
    return cls.Module(**info["module"])


def get_head(name: str) -> type[Head]:
    """A registered head, or `NAME+temperature` (any head followed by temperature scaling on val)."""
    if name.endswith(SUFFIX) and name != SUFFIX:
        return tempered(HEADS.get(name.removesuffix(SUFFIX)))
    return HEADS.get(name)
