"""Build an architecture by name: a timm model, `torchvision:NAME`, or one of vcal's own (`vcal:mlp`)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from vcal_cli._registry import Registry
from vcal_cli.checkpoints import transformers_models
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


def _with_in_chans(model: nn.Module, in_chans: int, name: str) -> nn.Module:
    """torchvision builds every model for 3 channels; a model trained on grey (or 4-band) images replaced its first
    convolution with one of `in_chans` inputs, as users do. Do the same, so its weights load."""
    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise CheckpointError(f"--arch '{name}' has no convolution to take {in_chans} input channels")
    n, c = first
    model.set_submodule(
        n,
        nn.Conv2d(
            in_chans,
            c.out_channels,
            c.kernel_size,
            c.stride,
            c.padding,
            c.dilation,
            c.groups,
            c.bias is not None,
            c.padding_mode,
        ),
    )
    return model


def build_arch(name: str, num_classes: int, *, in_chans: int = 3, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """A freshly initialised model with `num_classes` outputs; no weights are downloaded."""
    kwargs = kwargs or {}
    if name.startswith("transformers:"):  # rebuilt from the config a vcal checkpoint of it stores
        return transformers_models.build(name.removeprefix("transformers:"), num_classes, kwargs.get("config", {}))
    if name.startswith("vcal:"):
        return VCAL_ARCHS.get(name.removeprefix("vcal:"))(num_classes=num_classes, in_chans=in_chans, **kwargs)
    if name.startswith("torchvision:"):
        import torchvision

        tv_name = name.removeprefix("torchvision:")
        try:
            model = torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes, **kwargs)
        except ValueError:
            close = difflib.get_close_matches(tv_name, torchvision.models.list_models(), n=3)
            raise CheckpointError(
                f"--arch '{name}' is not a torchvision model",
                hint=f"did you mean {', '.join('torchvision:' + c for c in close)}?"
                if close
                else "see torchvision.models.list_models()",
            ) from None
        return model if in_chans == 3 else _with_in_chans(model, in_chans, name)
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        raise CheckpointError(
            f"--arch '{name}' is not a timm model, 'torchvision:NAME' or 'vcal:mlp'",
            hint=f"did you mean {', '.join(close)}?" if close else "see timm.list_models()",
        )
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
