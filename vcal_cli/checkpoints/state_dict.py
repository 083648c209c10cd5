"""Read weights safely: safetensors, or `torch.load(weights_only=True)` with trainer wrappers removed."""

from __future__ import annotations

import argparse
import io
import pathlib
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vcal_cli.errors import CheckpointError

# Keys under which common trainers nest the weights (Lightning, timm, HF Trainer, plain scripts).
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "model_ema", "net", "module")
# Keys of a second, exponential-moving-average set of weights: timm train.py --model-ema (`state_dict_ema`; older
# timm `model_ema`), torchvision's reference scripts (`model_ema`, an AveragedModel: `module.` keys and `n_averaged`),
# and the `ema_state_dict` / `ema` of other trainers.
EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict", "ema")
RAW_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
WEIGHT_SETS = ("auto", "ema", "raw")


def pick_weight_set(obj: Mapping[str, Any], choice: str, path: Path) -> tuple[Any, dict[str, Any] | None]:
    """The weights to audit in a trainer's checkpoint dict that may hold two sets (raw and EMA), and what was chosen.

    `auto` takes the EMA when there is one: timm's train.py selects `model_best.pth.tar` by the EMA's accuracy when
    it keeps one, and an EMA is the set trainers ship. Returns (the part of `obj` to unwrap, None when the file holds
    one set, else {"set", "key", "other", "other_key"}).
    """
    if choice not in WEIGHT_SETS:
        raise CheckpointError(f"--weight-set '{choice}' is not one of: {', '.join(WEIGHT_SETS)}")
    ema = next((k for k in EMA_KEYS if isinstance(obj.get(k), Mapping) and _holds_tensors(obj[k])), None)
    raw = next((k for k in RAW_KEYS if isinstance(obj.get(k), Mapping) and _holds_tensors(obj[k])), None)
    if ema is None or raw is None:
        if choice != "auto" and (ema if choice == "ema" else raw) is None and (ema or raw):
            have = "EMA" if ema else "raw"
            raise CheckpointError(
                f"--weight-set {choice}: '{path}' holds only {have} weights ('{ema or raw}')", hint="drop --weight-set"
            )
        return obj, None
    use_ema = choice in ("auto", "ema")
    key, other = (ema, raw) if use_ema else (raw, ema)
    return {key: obj[key]}, {
        "set": "ema" if use_ema else "raw",
        "key": key,
        "other": "raw" if use_ema else "ema",
        "other_key": other,
    }


def _holds_tensors(obj: Mapping[str, Any]) -> bool:
    """A state dict, or a wrapper around one (torchvision's AveragedModel state, a nested `state_dict`)."""
    return any(isinstance(v, Tensor) for v in obj.values()) or any(
        isinstance(obj.get(k), Mapping) and _holds_tensors(obj[k]) for k in _NESTED_KEYS
    )


# Wrapper prefixes: DDP / DataParallel, torch.compile, Lightning modules that hold `self.model`.
# transformers' TimmWrapperForImageClassification keeps the timm model as `timm_model`.
_PREFIXES = ("module.", "_orig_mod.", "model.", "timm_model.")

# Types that trainers save beside the weights and that are safe to rebuild, allowed through torch's own
# weights-only allowlist (nothing else is; a refused file runs nothing):
# - argparse.Namespace: timm train.py's `args`. Unpickling makes an empty Namespace and sets its attributes
#   from a dict (object's default __setstate__); its constructor and methods touch nothing outside the object.
# - pathlib.PurePosixPath / PosixPath / PureWindowsPath: paths in Lightning `hyper_parameters` and trainer
#   args (dirs, data roots). They rebuild from strings alone (`PosixPath('a', 'b')`); making one does no I/O.
SAFE_TYPES: list[type] = [argparse.Namespace, pathlib.PurePosixPath, pathlib.PosixPath, pathlib.PureWindowsPath]

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
        obj = {k: v for k, v in obj.items() if isinstance(v, Tensor) and k != "n_averaged"}  # AveragedModel's count
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


def pickle_globals(path: Path) -> list[str]:
    """The callables a pickle asks for (`module.name`), read from its opcodes without unpickling anything.

    Works on torch's zip format (`data.pkl`), on the legacy format (several pickles in a row) and on plain
    pickles; returns what it could read before any malformed byte.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                pkl = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(pkl) if pkl else b""
        else:
            data = path.read_bytes()
    except (OSError, zipfile.BadZipFile):
        return []
    names: list[str] = []
    f = io.BytesIO(data)
    try:
        while f.tell() < len(data):
            strings: list[str] = []
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # junk after the last readable opcode
        pass
    return list(dict.fromkeys(names))


def _unsafe_globals(path: Path) -> list[str]:
    """The callables in `path` that neither torch's weights-only allowlist nor SAFE_TYPES admit."""
    ours = {f"{t.__module__}.{t.__qualname__}" for t in SAFE_TYPES}
    try:  # torch's own answer for its zip format
        with torch.serialization.safe_globals(SAFE_TYPES):
            return [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(path) if n not in ours]
    except Exception:  # a legacy or plain pickle: read its opcodes, drop torch's own rebuilders
        return [n for n in pickle_globals(path) if n not in ours and not n.startswith(("torch.", "collections."))]


def sniff(path: Path) -> str | None:
    """What a file that `torch.load` should not be given is, by its content: 'onnx', 'torchscript', 'export', or
    'zip' (a zip archive torch.save did not write); None for anything else (a torch.save file, a pickle, junk)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                infos = z.infolist()
        except (zipfile.BadZipFile, OSError):
            return "zip"
        # torch.save stores its entries uncompressed: one that inflates a hundredfold is a bomb, never inflated
        if any(i.compress_type != zipfile.ZIP_STORED and i.file_size > 100 * max(i.compress_size, 1) for i in infos):
            return "bomb"
        names = [i.filename for i in infos]
        tails = {n.split("/", 1)[-1] for n in names}
        if "constants.pkl" in tails or any(t.startswith("code/__torch__") for t in tails):
            return "torchscript"
        if "archive_format" in tails or "models/model.json" in tails:
            return "export"
        return None if "data.pkl" in tails else "zip"
    # an ONNX ModelProto: field 1 (ir_version, a varint) first, then the producer, opset and graph fields
    if path.suffix == ".onnx" or (head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head.lower())):
        return "onnx"
    return None


FOREIGN = {  # what a file is, by kind; vcal_cli.checkpoints.programs runs the first three
    "onnx": "an ONNX model",
    "torchscript": "a TorchScript program (torch.jit.save)",
    "export": "a torch.export program (torch.export.save, .pt2)",
    "zip": "a zip archive that torch.save did not write (no data.pkl inside)",
    "bomb": "a zip archive whose entries inflate more than a hundredfold (torch.save stores them uncompressed); "
    "vcal did not inflate it",
}


def torch_load_safe(path: Path, *, trust: bool) -> Any:
    """`torch.load(weights_only=True)` with SAFE_TYPES allowed; a pickle that needs other code is refused
    unless `trust`, naming the callables it asked for. A file of another kind (ONNX, TorchScript, torch.export, a
    foreign zip) is named as what it is. torch's warnings never reach the user."""
    if kind := sniff(path):
        raise CheckpointError(
            f"'{path}' is {FOREIGN[kind]}, not a torch.save checkpoint",
            hint="give it to vcal audit / retrain as the checkpoint itself; docs/formats.md lists the forms",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.serialization.safe_globals(SAFE_TYPES):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch.load fails on junk with many exception types
            error = e
        names = _unsafe_globals(path)
        if not names and isinstance(error, pickle.UnpicklingError) and "GLOBAL" in str(error):
            names = [str(error).split("GLOBAL ", 1)[1].split(" ", 1)[0]]
        if not names:
            raise CheckpointError(
                f"'{path}' is not a readable checkpoint (truncated, or not a file torch.save wrote)",
                hint="rerun with --debug to see why",
            ) from error
        if not trust:
            shown = f"{', '.join(names[:4])}{f', and {len(names) - 4} more' if len(names) > 4 else ''}"
            raise CheckpointError(
                f"'{path}' is a pickle that asks to run {shown} (unpickling it runs that code); "
                "vcal refused it and ran nothing",
                hint=TRUST_HINT,
            ) from None
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # any failure of trusted unpickling is the file's problem
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
