"""Load classifier checkpoints in every common form, and write vcal's own format.

Forms read (`load_checkpoint`):

- vcal's format: `.safetensors` whose metadata carries `arch`, `num_classes`, `class_names` and
  `preprocessing`, so nothing else is needed;
- a state dict in `.pt/.pth/.bin/.safetensors` plus `arch` (timm name, `torchvision:NAME` or
  `vcal:mlp`), also nested under `state_dict` / `model` / `model_state_dict` and with `module.` or
  `model.` prefixes;
- a full pickled `nn.Module`, only with `trust=True` (unpickling runs code);
- a folder as the HF Trainer or hub writes it (`model.safetensors` or `pytorch_model.bin` beside
  `config.json`).

What a checkpoint says about its own training (timm `args`, Lightning `hyper_parameters`, a `config.json`
beside the weights: see `hints`) names the arch when `--arch` is not given and feeds the preprocessing.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from vcal_cli._io import atomic_write_bytes, safetensors_bytes, same_file, sha256_file
from vcal_cli._version import __version__
from vcal_cli.checkpoints import transformers_models
from vcal_cli.checkpoints.arch import build_arch
from vcal_cli.checkpoints.head_finder import find_head
from vcal_cli.checkpoints.hints import Hints, beside, from_checkpoint_dict
from vcal_cli.checkpoints.limits import check_metadata, short
from vcal_cli.checkpoints.programs import KINDS, ProgramClassifier, first_conv_chans, load_program
from vcal_cli.checkpoints.state_dict import (
    FOREIGN,
    TRUST_HINT,
    load_into,
    pick_weight_set,
    sniff,
    torch_load_safe,
    unwrap_state_dict,
)
from vcal_cli.data.preprocessing import Preprocessing
from vcal_cli.errors import CheckpointError
from vcal_cli.heads import build_module

FORMAT_VERSION = "1"
SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")

__all__ = [
    "LoadedModel",
    "load_checkpoint",
    "save_checkpoint",
    "save_head",
    "apply_head_file",
    "find_head",
    "build_arch",
]


@dataclass(kw_only=True)
class LoadedModel:
    """A classifier ready for feature extraction, plus what vcal knows about it."""

    model: nn.Module
    head_name: str  # dotted name of the final nn.Linear; its input is the penultimate feature
    arch: str
    num_classes: int
    sha256: str
    path: Path | None = None
    class_names: list[str] | None = None
    preprocessing: Preprocessing | None = None  # from the checkpoint's metadata, if it had any
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    in_chans: int | None = None
    timm_cfg: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    head_info: dict[str, Any] | None = None  # a retrained vcal head (name, params, module config), if any
    hints: Hints = field(default_factory=Hints)  # what the file says about its own training
    probed: Preprocessing | None = field(default=None, repr=False, compare=False)  # found by the probe, once
    weight_set: dict[str, Any] | None = None  # which of two sets (raw, EMA) a trainer's file held was loaded

    @property
    def program(self) -> str | None:
        """'torchscript', 'export' or 'onnx' for a compiled or exported program (no architecture to rebuild: a
        retrained head is written as a head file tied to it); None for a Python model."""
        return self.model.kind if isinstance(self.model, ProgramClassifier) else None

    @property
    def head(self) -> nn.Module:
        """The module whose input is the penultimate feature: an nn.Linear, or a retrained vcal head."""
        return self.model.get_submodule(self.head_name)

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "arch": self.arch,
            "num_classes": self.num_classes,
            "head_module": self.head_name,
            "head": self.head_info["name"] if self.head_info else "original",
            **({"weights": self.weight_set} if self.weight_set else {}),
            **({"head_file": self.metadata["head_file"]} if "head_file" in self.metadata else {}),
        }

    def with_head(self, module: nn.Module, info: dict[str, Any], sha256: str | None = None) -> LoadedModel:
        """A copy of this model whose head module is replaced by a fitted vcal head."""
        model = copy.deepcopy(self.model)
        model.set_submodule(self.head_name, copy.deepcopy(module))
        return dataclasses.replace(self, model=model.eval(), head_info=info, sha256=sha256 or self.sha256, path=None)


def _meta_model(arch: str, num_classes: int, in_chans: int, kwargs: dict[str, Any]) -> nn.Module:
    with torch.device("meta"):
        return build_arch(arch, num_classes, in_chans=in_chans, kwargs=kwargs)


def _infer_shape_args(
    arch: str, sd: dict[str, torch.Tensor], num_classes: int | None, head_module: str | None
) -> tuple[int, int]:
    """Read the class count and input channels off the weights, so `--arch` alone is enough."""
    probe = _meta_model(arch, num_classes or 1000, 3, {})
    head = find_head(probe, None, head_module)
    w = sd.get(f"{head}.weight")
    k = num_classes or (int(w.shape[0]) if w is not None and w.ndim == 2 else 1000)
    in_chans = 3
    first_conv = next((n for n, p in probe.named_parameters() if p.ndim == 4), None)
    if first_conv and first_conv in sd and sd[first_conv].ndim == 4:
        in_chans = int(sd[first_conv].shape[1])
    return k, in_chans


def _from_vcal_safetensors(path: Path, meta: dict[str, str], sha: str, head_module: str | None) -> LoadedModel:
    checked = check_metadata(path, meta)  # types, sizes, ranges and the arch_kwargs allowlist, before any build
    arch, num_classes, kwargs = checked["arch"], checked["num_classes"], checked["arch_kwargs"]
    class_names = checked["class_names"]
    try:
        prep = Preprocessing.from_dict(checked["preprocessing"]) if checked["preprocessing"] else None
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"'{path}' has malformed vcal metadata ({type(e).__name__}: {short(str(e))})") from None
    in_chans = prep.input_size[0] if prep else 3
    try:
        model = build_arch(arch, num_classes, in_chans=in_chans, kwargs=kwargs)
    except (TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(
            f"'{path}': architecture '{short(arch)}' cannot be built from its metadata ({short(str(e), 120)})",
            hint="re-save it with vcal",
        ) from None
    head_info = None
    if "vcal_head" in meta:  # a retrained head replaces the arch's linear layer before the weights load
        head_info = checked["vcal_head"]
        head = meta.get("head_module", "")
        try:
            model.set_submodule(head, build_module(head_info))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(
                f"'{path}' has a malformed head recipe (vcal_head, head_module '{short(head)}': {short(str(e))})",
                hint="re-save it with vcal retrain",
            ) from None
    load_into(model, load_file(path), path=path, arch=arch)
    if head_info is None:
        head = find_head(model, num_classes, head_module or meta.get("head_module"))
    return LoadedModel(
        model=model.eval(),
        head_name=head,
        arch=arch,
        num_classes=num_classes,
        sha256=sha,
        path=path,
        class_names=class_names,
        preprocessing=prep,
        arch_kwargs=kwargs,
        in_chans=in_chans,
        timm_cfg=None,
        metadata=dict(meta),
        head_info=head_info,
    )


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "model.pt", "model.pth")
# a timm train.py output folder (output/train/EXP/): the best checkpoint, else the last one
RUN_FILES = ("model_best.pth.tar", "last.pth.tar")


def _weights_in(folder: Path) -> Path:
    """The weights file of an HF Trainer / hub folder, or of a timm train.py run folder."""
    for name in WEIGHT_FILES + RUN_FILES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir() if p.name.endswith((*SUFFIXES, ".pth.tar")) and p.is_file())
    if len(found) == 1:
        return found[0]
    raise CheckpointError(
        f"checkpoint folder '{folder}' holds {'no' if not found else len(found)} weight files",
        hint=f"give the file itself, or a folder with one of {', '.join(WEIGHT_FILES[:2])}",
    )


def _arch_name(arch: str) -> str:
    """timm's hub spelling (`timm/resnet18.a1_in1k`) names the same architecture as `resnet18`."""
    return arch.removeprefix("hf-hub:").removeprefix("hf_hub:").removeprefix("timm/")


def load_checkpoint(
    path: str | Path,
    *,
    arch: str | None = None,
    trust: bool = False,
    head_module: str | None = None,
    num_classes: int | None = None,
    weight_set: str = "auto",
) -> LoadedModel:
    """Load any supported checkpoint form into a `LoadedModel` (weights on the CPU, eval mode).

    `arch` may be left out when the checkpoint names its own (timm `args.model`, Lightning
    `hyper_parameters`, `config.json`); the flag wins when both are there. A trainer's file holding raw and EMA
    weights is loaded on `weight_set` (`auto`: the EMA; see `state_dict.pick_weight_set`).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if path.is_dir() and (hf := transformers_models.architecture_of(path)):
        return _from_transformers_folder(path, hf, head_module)
    weights = _weights_in(path) if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(f"checkpoint '{path}' is not a file")
    if (kind := sniff(weights)) in KINDS:
        return _from_program(weights, kind, trust=trust)
    sha = sha256_file(weights)
    hints = beside(weights) if weights.name in WEIGHT_FILES or path.is_dir() else Hints()
    sd: dict[str, torch.Tensor]
    chosen: dict[str, Any] | None = None  # which of a raw and an EMA set was loaded, when the file holds both
    if weights.suffix == ".safetensors":
        try:
            with safe_open(weights, "pt") as f:
                meta = f.metadata() or {}
        except Exception as e:  # any parse failure means a bad file
            raise CheckpointError(
                f"'{weights}' is not a readable safetensors file (truncated or not a checkpoint)",
                hint="rerun with --debug to see why",
            ) from e
        if "vcal_format" in meta:
            if arch and arch != meta.get("arch"):
                raise CheckpointError(
                    f"--arch '{arch}' contradicts the checkpoint's own arch '{meta.get('arch')}'",
                    hint="drop --arch for vcal checkpoints",
                )
            return _from_vcal_safetensors(weights, meta, sha, head_module)
        sd = unwrap_state_dict(load_file(weights), weights)
    else:
        obj = torch_load_safe(weights, trust=trust)
        if isinstance(obj, nn.Module):
            model = obj.eval()
            head = find_head(model, num_classes, head_module)
            k = model.get_submodule(head).out_features
            return LoadedModel(
                model=model,
                head_name=head,
                arch=arch or f"pickled:{type(model).__name__}",
                num_classes=k,
                sha256=sha,
                path=weights,
                in_chans=first_conv_chans(model),
                timm_cfg=getattr(model, "pretrained_cfg", None),
            )
        if not isinstance(obj, dict):
            raise CheckpointError(f"'{weights}' holds a {type(obj).__name__}, not a state dict or a model")
        hints = from_checkpoint_dict(obj).merge(hints)
        chosen_obj, chosen = pick_weight_set(obj, weight_set, weights)
        sd = unwrap_state_dict(chosen_obj, weights)
    arch = arch or (_arch_name(hints.arch) if hints.arch else None)
    if not arch:
        raise CheckpointError(
            f"'{weights}' is a bare state dict and names no architecture; name it with --arch",
            hint="a timm model name such as resnet18, or torchvision:resnet18",
        )
    k, in_chans = _infer_shape_args(arch, sd, num_classes, head_module)
    model = build_arch(arch, k, in_chans=in_chans)
    load_into(model, sd, path=weights, arch=arch)
    head = find_head(model, k, head_module)
    names = list(hints.class_names) if hints.class_names and len(hints.class_names) == k else None
    return LoadedModel(
        model=model.eval(),
        head_name=head,
        arch=arch,
        num_classes=k,
        sha256=sha,
        path=weights,
        class_names=names,
        preprocessing=None,
        arch_kwargs={},
        in_chans=in_chans,
        timm_cfg=getattr(model, "pretrained_cfg", None),
        hints=hints,
        weight_set=chosen,
    )


def _from_program(path: Path, kind: str, *, trust: bool) -> LoadedModel:
    """A TorchScript, torch.export or ONNX program, split at its last linear layer (`programs`). The first two
    unpickle when loaded (PyTorch's documentation says so for both), so they need `trust`."""
    if kind != "onnx" and not trust:
        raise CheckpointError(
            f"'{path}' is {FOREIGN[kind]}; loading one unpickles it, which can run code, so vcal ran nothing",
            hint=TRUST_HINT,
        )
    model, where, chans = load_program(path, kind)
    files = [path]
    if kind == "onnx":  # external data files beside it (x.onnx.data, or tensors named in the graph) are its weights
        files += sorted(p for p in path.parent.glob(f"{path.name}*") if p != path and p.is_file())
    sha = hashlib.sha256("".join(sha256_file(p) for p in files).encode()).hexdigest() if len(files) > 1 else None
    k = model.head.out_features
    return LoadedModel(
        model=model,
        head_name="head",
        arch=kind,
        num_classes=k,
        sha256=sha or sha256_file(path),
        path=path,
        in_chans=chans,
        metadata={"program_layer": where},
    )


def _from_transformers_folder(folder: Path, name: str, head_module: str | None) -> LoadedModel:
    """A transformers image classifier folder (`transformers_models`): the model, its classifier, class names from
    `id2label`, and what the folder says about preprocessing (preprocessor_config.json)."""
    model, config = transformers_models.load_folder(folder, name)
    names = transformers_models.class_names(config)
    k = int(config.get("num_labels") or len(config.get("id2label") or {}) or 0) or None
    head = find_head(model, k, head_module)
    k = model.get_submodule(head).out_features
    # the folder's identity (the cache key): its config and every weight file, sharded or not
    parts = sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix in (".safetensors", ".bin", ".json")))
    sha = hashlib.sha256("".join(f"{p.name}:{sha256_file(p)};" for p in parts).encode()).hexdigest()
    return LoadedModel(
        model=model,
        head_name=head,
        arch=f"transformers:{name}",
        num_classes=k,
        sha256=sha,
        path=folder,
        class_names=names if names and len(names) == k else None,
        preprocessing=None,
        arch_kwargs={"config": config},
        in_chans=int(config.get("num_channels") or 3),
        timm_cfg=None,
        hints=beside(folder / "config.json"),
    )


def save_checkpoint(
    loaded: LoadedModel,
    path: str | Path,
    *,
    preprocessing: Preprocessing | None = None,
    class_names: list[str] | None = None,
    extra_metadata: dict[str, str] | None = None,
    inputs: tuple[Path, ...] = (),
) -> Path:
    """Write `loaded` in vcal's safetensors format (atomically; never onto an input file)."""
    path = Path(path)
    if loaded.program:
        raise CheckpointError(
            f"a {loaded.program} program cannot be rewritten as a vcal checkpoint",
            hint="write the head alone (--head-only)",
        )
    for src in (loaded.path, *inputs):
        if src is not None and same_file(src, path):
            raise CheckpointError(f"refusing to write '{path}' over an input file", hint="choose another --out")
    prep = preprocessing or loaded.preprocessing
    names = class_names or loaded.class_names
    meta = {
        "vcal_format": FORMAT_VERSION,
        "vcal_version": __version__,
        "arch": loaded.arch,
        "arch_kwargs": json.dumps(loaded.arch_kwargs),
        "num_classes": str(loaded.num_classes),
        "head_module": loaded.head_name,
        **({"class_names": json.dumps(names)} if names else {}),
        **({"preprocessing": json.dumps(prep.to_dict())} if prep else {}),
        **({"vcal_head": json.dumps(loaded.head_info)} if loaded.head_info else {}),
        **{k: loaded.metadata[k] for k in ("trained_on", "data") if k in loaded.metadata},  # what it was trained on
        **(extra_metadata or {}),
    }
    # clone: safetensors refuses tensors that share storage (tied weights); copies load back fine
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in loaded.model.state_dict().items()}
    return atomic_write_bytes(path, safetensors_bytes(tensors, meta))


def save_head(module: nn.Module, info: dict[str, Any], base: LoadedModel, path: str | Path) -> Path:
    """Write only a fitted head (small), tied to its base checkpoint by sha256."""
    path = Path(path)
    if base.path is not None and same_file(base.path, path):
        raise CheckpointError(f"refusing to write '{path}' over an input file", hint="choose another --out")
    meta = {
        "vcal_format": FORMAT_VERSION,
        "vcal_version": __version__,
        "vcal_head_only": "1",
        "vcal_head": json.dumps(info),
        "head_module": base.head_name,
        "base_sha256": base.sha256,
    }
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}
    return atomic_write_bytes(path, safetensors_bytes(tensors, meta))


def apply_head_file(base: LoadedModel, path: str | Path) -> LoadedModel:
    """Put a head written by `save_head` (`vcal retrain --head-only`) onto its base checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--head-file '{path}' does not exist")
    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(path)
    except Exception as e:  # any parse failure means a bad file
        raise CheckpointError(f"--head-file '{path}' is not a readable safetensors file ({e})") from None
    if meta.get("vcal_head_only") != "1":
        raise CheckpointError(f"--head-file '{path}' is not a head written by 'vcal retrain --head-only'")
    if meta.get("base_sha256") != base.sha256:
        raise CheckpointError(
            f"--head-file '{path}' was fitted on another checkpoint "
            f"(sha256 {meta.get('base_sha256', '?')[:12]}..., this one {base.sha256[:12]}...)",
            hint="apply it to the checkpoint it was retrained from",
        )
    info = json.loads(meta["vcal_head"])
    module = build_module(info)
    module.load_state_dict(tensors)
    applied = base.with_head(module, info, sha256=sha256_file(path))
    return dataclasses.replace(applied, path=base.path, metadata={**base.metadata, "head_file": str(path)})
