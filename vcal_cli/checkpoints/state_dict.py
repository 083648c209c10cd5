"""Read weights safely: safetensors, or `torch.load(weights_only=True)` with trainer wrappers removed."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vcal_cli.errors import CheckpointError

# Keys under which common trainers nest the weights (Lightning, timm, HF Trainer, plain scripts).
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "model_ema", "net", "module")
# Wrapper prefixes: DDP / DataParallel, torch.compile, Lightning modules that hold `self.model`.
_PREFIXES = ("module.", "_orig_mod.", "model.")

TRUST_HINT = "re-run with --trust-checkpoint only if you trust its source, or save model.state_dict() and pass --arch"


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def unwrap_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    """Find the tensor dict inside a trainer checkpoint and strip wrapper prefixes shared by every key."""
    seen = 0
    while not _is_tensor_dict(obj) and isinstance(obj, Mapping) and seen < 4:
        inner = next((obj[k] for k in _NESTED_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            break
        obj, seen = inner, seen + 1
    if isinstance(obj, Mapping):  # drop non-tensor entries some trainers keep beside the weights
        obj = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not _is_tensor_dict(obj):
        raise CheckpointError(
            f"'{path}' holds no tensors under any of: {', '.join(_NESTED_KEYS)}", hint="is it a model checkpoint?"
        )
    sd = dict(obj)
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p) :]: v for k, v in sd.items()}
                changed = True
    return sd


def torch_load_safe(path: Path, *, trust: bool) -> Any:
    """`torch.load` with `weights_only=True`; a pickle that needs code is refused unless `trust`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e) and "Weights only" not in str(e):
            raise CheckpointError(
                f"'{path}' is not a readable checkpoint (truncated or not a torch file): {str(e).splitlines()[0]}"
            ) from e
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - not even a well-formed pickle
            names = []
        if not names:
            raise CheckpointError(f"'{path}' is not a readable checkpoint (truncated or not a torch file)") from None
        if not trust:
            shown = f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"
            raise CheckpointError(
                f"'{path}' is a pickle that needs code to load ({shown}); unpickling it runs that code", hint=TRUST_HINT
            ) from None
    except Exception as e:  # noqa: BLE001 - torch.load fails on junk with many exception types
        raise CheckpointError(
            f"'{path}' is not a readable checkpoint (truncated or not a torch file): "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from e
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any failure of trusted unpickling is the file's problem
        raise CheckpointError(f"'{path}' could not be unpickled: {type(e).__name__}: {e}") from e


def load_into(model: nn.Module, sd: dict[str, Tensor], *, path: Path, arch: str) -> None:
    """`load_state_dict` with a message that counts and shows missing/unexpected keys."""
    own = model.state_dict()
    bad_shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items() if k in own and own[k].shape != v.shape
    ]
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if bad_shapes or missing or unexpected:
        parts = []
        if bad_shapes:
            parts.append(f"{len(bad_shapes)} shape mismatches ({'; '.join(bad_shapes[:3])})")
        if missing:
            parts.append(f"{len(missing)} keys missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}{', ...' if len(unexpected) > 3 else ''})"
            )
        raise CheckpointError(f"'{path}' does not fit --arch '{arch}': {', '.join(parts)}", hint="check --arch")
    model.load_state_dict(sd, strict=True)
