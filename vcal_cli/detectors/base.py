"""What every out-of-distribution detector shares: the train split it is fitted on, the head's linear map where it
needs one, the interface, and the registry.

Convention (torch-uncertainty, OpenOOD, pytorch-ood): OOD is the positive class and every score is "higher = more
OOD". A detector is fitted once on the train split's cached features, logits and labels, then scores any split from
its features and the scored head's outputs. No detector materialises an (N, K, D) tensor: everything runs on row
blocks, so 1,000 classes, 2,048 features and 1,280,000 train rows fit in memory.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from vcal_cli._registry import Registry

BLOCK_ELEMS = 1 << 24  # rows per block x width: each float64 temporary about 128 MB at most


def block_rows(width: int) -> int:
    """Rows per block whose (rows, width) float64 temporaries stay near BLOCK_ELEMS elements."""
    return max(1, BLOCK_ELEMS // max(1, width))


@dataclass(frozen=True)
class Linear:
    """The last layer as logits = features @ weight.T + bias: (K, D) and (K,)."""

    weight: Tensor
    bias: Tensor

    @classmethod
    def of(cls, module: object) -> Linear | None:
        """The module's linear map, or None when it is not one (an MLP head, a vcal head, an exported graph)."""
        w, b = getattr(module, "weight", None), getattr(module, "bias", None)
        if not isinstance(w, Tensor) or w.ndim != 2:
            return None
        b = torch.zeros(w.shape[0]) if b is None else b
        return cls(w.detach().double(), b.detach().double())


@dataclass(frozen=True, kw_only=True)
class Train:
    """The in-distribution train split a detector is fitted on (cached, possibly memory-mapped)."""

    features: Tensor  # (N, D)
    logits: Tensor  # (N, K): the checkpoint's own
    labels: Tensor  # (N,)
    num_classes: int
    linear: Linear | None = None  # the checkpoint's last layer, when it is a linear map
    seed: int = 0
    _shared: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """A fit several detectors use (the Gaussian moments), made once per train split."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]


@dataclass(frozen=True, kw_only=True)
class Scored:
    """What a detector scores: one split's features (N, D) and the scored head's outputs (N, K); `raw_logits` says
    whether those outputs are logits (the checkpoint's) or log-probabilities (a vcal head's)."""

    features: Tensor
    outputs: Tensor
    raw_logits: bool
    members: Tensor | None = None  # an ensemble's members' logits (M, N, K)


class Detector(abc.ABC):
    """One OOD score. `fit` sees the train split once; `score` is higher for inputs more likely OOD."""

    name: ClassVar[str]
    paper: ClassVar[str]
    uses: ClassVar[str]  # 'outputs' (per head), 'logits' (raw logits), 'features', 'features+linear', 'members'

    def fit(self, train: Train) -> None:  # noqa: B027 - most detectors have nothing to fit
        """Learn what the score needs from the train split (nothing by default)."""

    @abc.abstractmethod
    def score(self, x: Scored) -> Tensor:
        """(N,) float64 scores, higher = more OOD."""

    def applies(self, x: Scored) -> str | None:
        """None when this detector can score `x`, else why not. Detectors on logits (and ViM and ReAct, which apply
        the checkpoint's last layer) need raw logits: vcal's heads output log-probabilities."""
        if self.uses in ("logits", "features+linear") and not x.raw_logits:
            return "needs raw logits (vcal's heads and ensembles output log-probabilities)"
        if self.uses == "members" and x.members is None:
            return "needs an ensemble's members"
        return None

    def settings(self) -> dict[str, object]:
        """The parameters this detector ran with (report.json's settings)."""
        return {}


DETECTORS: Registry[type[Detector]] = Registry("OOD detector")


def register(cls: type[Detector]) -> type[Detector]:
    DETECTORS.register(cls.name, cls.paper)(cls)
    return cls
