"""Build an architecture by name: a timm model, `torchvision:NAME`, or one of vcal's own (`vcal:mlp`)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vcal_cli._registry import Registry
from vcal_cli.errors import CheckpointError

VCAL_ARCHS: Registry[Callable[..., nn.Module]] = Registry("vcal architecture")


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] * len(hidden) -> Linear head `fc`. The sample checkpoints use it."""

    def __init__(self, num_classes: int, in_features: int, hidden: tuple[int, ...] = (512, 512)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@VCAL_ARCHS.register("mlp", "multi-layer perceptron on flattened pixels (kwargs: in_features, hidden)")
def _mlp(num_classes: int, in_chans: int, **kwargs: Any) -> nn.Module:
    kwargs = dict(kwargs)
    kwargs["hidden"] = tuple(kwargs.get("hidden", (512, 512)))
    return MLP(num_classes, **kwargs)


def build_arch(name: str, num_classes: int, *, in_chans: int = 3, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """A freshly initialised model with `num_classes` outputs; no weights are downloaded."""
    kwargs = kwargs or {}
    if name.startswith("vcal:"):
        return VCAL_ARCHS.get(name.removeprefix("vcal:"))(num_classes=num_classes, in_chans=in_chans, **kwargs)
    if name.startswith("torchvision:"):
        import torchvision

        tv_name = name.removeprefix("torchvision:")
        try:
            return torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes, **kwargs)
        except ValueError:
            close = difflib.get_close_matches(tv_name, torchvision.models.list_models(), n=3)
            raise CheckpointError(
                f"--arch '{name}' is not a torchvision model",
                hint=f"did you mean {', '.join('torchvision:' + c for c in close)}?"
                if close
                else "see torchvision.models.list_models()",
            ) from None
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        raise CheckpointError(
            f"--arch '{name}' is not a timm model, 'torchvision:NAME' or 'vcal:mlp'",
            hint=f"did you mean {', '.join(close)}?" if close else "see timm.list_models()",
        )
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
