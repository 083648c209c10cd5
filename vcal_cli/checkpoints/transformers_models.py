"""transformers' own image classifiers, from a local folder only: `save_pretrained` output or a Trainer `checkpoint-N/`.

The folder's `config.json` names the class (`"architectures": ["ViTForImageClassification"]`); vcal builds it from the
config (never a download, never `trust_remote_code`: a config with `auto_map`, custom code, is refused before anything
is imported from the folder) and loads the weights (`model.safetensors`, sharded or not, or `pytorch_model.bin`
through torch's weights-only unpickler). The model is wrapped as vcal's models are (pixels in, logits out); its
classifier is the last linear layer with one output per class (`classifier`: ViT, DeiT, ConvNeXt, Swin; `classifier.1`:
ResNet), so the penultimate features are the classifier's input and `features @ W.T + b == logits`.

DeiT's distilled variant (`DeiTForImageClassificationWithTeacher`) averages two linear heads (the class token's and the
distillation token's); no single linear layer gives its logits, so vcal refuses it and names the class that has one.
transformers is an optional extra: `pip install "vcal[transformers]"`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vcal_cli.errors import CheckpointError

EXTRA_HINT = 'pip install "vcal[transformers]"'


class HFImageClassifier(nn.Module):
    """A transformers image classifier as vcal's models are: `forward(pixels) -> logits`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def architecture_of(folder: Path) -> str | None:
    """The transformers class a folder's config.json names for image classification, or None (not such a folder;
    timm's own hub format and transformers' timm wrapper are read elsewhere)."""
    cfg = folder / "config.json"
    if not cfg.is_file():
        return None
    try:
        d = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return None
    archs = d.get("architectures") if isinstance(d, dict) else None
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        return None
    name = archs[0]
    if "ImageClassification" not in name or name.startswith("TimmWrapper"):
        return None
    if "auto_map" in d:
        raise CheckpointError(
            f"'{cfg}' maps its classes to custom code (auto_map: {', '.join(map(str, d['auto_map']))}); vcal never "
            "runs code from a model folder",
            hint="save the model with a class transformers ships, or its state_dict with --arch",
        )
    return name


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise CheckpointError(
            "this folder holds a transformers model and transformers is not installed", hint=EXTRA_HINT
        ) from None
    return transformers


def model_class(name: str) -> Any:
    """The transformers class `name` (an image classifier transformers ships)."""
    cls = getattr(_transformers(), name, None)
    if cls is None or not isinstance(cls, type):
        raise CheckpointError(f"transformers has no class '{name}'", hint="upgrade transformers, or check config.json")
    if name.endswith("WithTeacher"):
        raise CheckpointError(
            f"'{name}' averages two linear heads (class and distillation token); vcal audits a model whose logits come "
            "from one linear layer",
            hint=f"save it as {name.removesuffix('WithTeacher')} (the class-token head alone) and audit that",
        )
    return cls


def load_folder(folder: Path, name: str) -> tuple[HFImageClassifier, dict[str, Any]]:
    """The model of a transformers folder (weights loaded, eval mode, float32) and its config as a dict."""
    cls = model_class(name)
    _transformers().utils.logging.disable_progress_bar()  # vcal prints its own progress; a log stays plain
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = cls.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        except Exception as e:  # transformers raises many kinds on a bad folder
            raise CheckpointError(f"'{folder}' is not a loadable {name} folder ({type(e).__name__}: {e})") from None
    model = model.float().eval()
    return HFImageClassifier(model).eval(), model.config.to_dict()


def build(name: str, num_classes: int, config: dict[str, Any]) -> HFImageClassifier:
    """A freshly initialised `name` from its config dict (what a vcal checkpoint of such a model stores)."""
    cls = model_class(name)
    cfg = cls.config_class.from_dict({**config, "num_labels": num_classes})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HFImageClassifier(cls(cfg).float()).eval()


def class_names(config: dict[str, Any]) -> list[str] | None:
    """`id2label` in class order, unless it is transformers' placeholder (LABEL_0, LABEL_1, ...)."""
    id2label = config.get("id2label") or {}
    try:
        names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        return None
    return None if all(n == f"LABEL_{i}" for i, n in enumerate(names)) else names
