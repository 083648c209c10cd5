"""The single forward loop: run the model over a split and capture the head's input."""

from __future__ import annotations

import torch
from torch import Tensor

from vcal_cli._progress import Track, quiet
from vcal_cli.checkpoints import LoadedModel
from vcal_cli.data import ImageSplit, Preprocessing
from vcal_cli.errors import DataError, UsageError


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"--device '{device}' is not a device; choose one of: auto, cpu, cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device '{device}' was asked for but CUDA is not available here; use --device cpu")
    return torch.device(device)


@torch.inference_mode()
def extract_features(
    loaded: LoadedModel,
    data: ImageSplit,
    prep: Preprocessing,
    *,
    device: str = "auto",
    batch_size: int = 256,
    workers: int = 0,
    progress: Track = quiet,
) -> tuple[Tensor, Tensor, Tensor]:
    """Return (features (N, D), logits (N, K), labels (N,)) as float32/int64 CPU tensors."""
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size} must be at least 1")
    dev = resolve_device(device)
    model = loaded.model.to(dev).eval()
    captured: list[Tensor] = []
    hook = loaded.head.register_forward_pre_hook(lambda _m, inp: captured.append(inp[0].flatten(1).float().cpu()))
    logits: list[Tensor] = []
    n_batches = (len(data) + batch_size - 1) // batch_size
    try:
        for images, _ in progress(
            data.batches(batch_size, prep.input_size[1:], workers),
            total=n_batches,
            description=f"features {data.name}:{data.split}",
        ):
            x = prep.to_model_input(images.to(dev, non_blocking=True))
            logits.append(model(x).float().cpu())
    finally:
        hook.remove()
        loaded.model.to("cpu")
    feats, out = torch.cat(captured), torch.cat(logits)
    if len(feats) != len(data):
        raise DataError(
            f"the head '{loaded.head_name}' ran {len(feats)} times for {len(data)} images; it must run once per batch",
            hint="name the final layer with --head-module",
        )
    bad = (~torch.isfinite(out)).any(1).sum().item()
    if bad:
        raise DataError(
            f"the model produced NaN/inf logits for {bad} of {len(out)} images of '{data.name}'",
            hint="check the checkpoint's weights and the preprocessing (--input-size, --mean, --std)",
        )
    return feats, out, data.labels.clone()
