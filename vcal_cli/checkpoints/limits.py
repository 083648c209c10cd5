"""What a vcal checkpoint's metadata may hold, checked before anything is built from it.

A `.safetensors` file's metadata is text anyone can write: each key is checked for its type, size and range, and
refused in one line naming the key and the limit (the offending value cut to a short prefix). The limits:

| key | limit |
| --- | --- |
| any metadata value | MAX_VALUE_CHARS characters |
| `num_classes` | an integer in 1..MAX_CLASSES |
| `class_names` | a JSON list of exactly `num_classes` strings, each at most MAX_NAME_CHARS |
| `vcal_head` (a head recipe) | a JSON object of at most MAX_RECIPE_CHARS characters |
| `arch_kwargs` | a JSON object whose keys are in ARCH_KWARGS for the architecture's family: no paths, no
  `pretrained`, no config overlays read from files |
| `preprocessing` | input_size three integers (channels 1..MAX_CHANNELS, sides 1..MAX_SIDE), mean and std one
  finite number per channel (std > 0), crop_pct in (0, 1] |
"""

from __future__ import annotations

import json
import math
from typing import Any

from vcal_cli.data.preprocessing import MAX_CHANNELS, MAX_SIDE
from vcal_cli.errors import CheckpointError

MAX_VALUE_CHARS = 4_000_000  # the largest metadata value (100,000 class names of 32 characters fit)
MAX_CLASSES = 100_000
MAX_NAME_CHARS = 256
MAX_RECIPE_CHARS = 65_536
ECHO = 40  # characters of a refused value shown in the error line

# the keyword arguments a checkpoint may pass to its architecture, per family
ARCH_KWARGS: dict[str, frozenset[str]] = {
    "vcal": frozenset({"in_features", "hidden"}),
    "timm": frozenset({"drop_rate", "drop_path_rate", "global_pool", "img_size", "patch_size", "num_heads", "depth"}),
    "torchvision": frozenset({"dropout", "aux_logits", "init_weights"}),
    "transformers": frozenset({"config"}),
}


def short(value: Any, limit: int = ECHO) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _bad(path: Any, key: str, what: str) -> CheckpointError:
    return CheckpointError(f"'{path}' has malformed vcal metadata: {key} {what}", hint="re-save it with vcal")


def _json(path: Any, meta: dict[str, str], key: str, kind: type, default: Any = None) -> Any:
    if key not in meta or meta[key] == "":
        return default
    try:
        value = json.loads(meta[key])
    except (ValueError, RecursionError):
        raise _bad(path, key, f"is not JSON ({short(meta[key])})") from None
    if not isinstance(value, kind):
        raise _bad(path, key, f"must be a JSON {kind.__name__}, got {short(value)}")
    return value


def family(arch: str) -> str:
    for prefix in ("vcal", "torchvision", "transformers"):
        if arch.startswith(prefix + ":"):
            return prefix
    return "timm"


def check_metadata(path: Any, meta: dict[str, str]) -> dict[str, Any]:
    """The checked fields {arch, num_classes, class_names, arch_kwargs, preprocessing (dict or None),
    vcal_head (dict or None)}; a CheckpointError naming the key and the limit otherwise."""
    for key, value in meta.items():
        if len(value) > MAX_VALUE_CHARS:
            raise _bad(path, key, f"is {len(value):,} characters long (at most {MAX_VALUE_CHARS:,})")
    if "arch" not in meta or "num_classes" not in meta:
        raise _bad(path, "arch and num_classes", "are required")
    arch = meta["arch"]
    if not arch or len(arch) > MAX_NAME_CHARS:
        raise _bad(path, "arch", f"must be an architecture name, got {short(arch)}")
    try:
        k = int(meta["num_classes"])
    except ValueError:
        raise _bad(path, "num_classes", f"is not an integer ({short(meta['num_classes'])})") from None
    if not 1 <= k <= MAX_CLASSES:
        raise _bad(path, "num_classes", f"is {k:,}; vcal takes 1 to {MAX_CLASSES:,} classes")
    names = _json(path, meta, "class_names", list)
    if names is not None:
        if len(names) != k:
            raise _bad(path, "class_names", f"holds {len(names):,} names for {k:,} classes")
        if not all(isinstance(n, str) and len(n) <= MAX_NAME_CHARS for n in names):
            raise _bad(path, "class_names", f"must be strings of at most {MAX_NAME_CHARS} characters")
    kwargs = _json(path, meta, "arch_kwargs", dict, {})
    allowed = ARCH_KWARGS[family(arch)]
    for key in kwargs:
        if key not in allowed:
            raise _bad(
                path,
                f"arch_kwargs key '{short(key)}'",
                f"is not allowed for a {family(arch)} architecture (allowed: {', '.join(sorted(allowed))})",
            )
    if "vcal_head" in meta and len(meta["vcal_head"]) > MAX_RECIPE_CHARS:
        raise _bad(path, "vcal_head", f"is {len(meta['vcal_head']):,} characters long (at most {MAX_RECIPE_CHARS:,})")
    head = _json(path, meta, "vcal_head", dict)
    prep = _json(path, meta, "preprocessing", dict)
    if prep is not None:
        check_preprocessing(path, prep)
    return {
        "arch": arch,
        "num_classes": k,
        "class_names": names,
        "arch_kwargs": kwargs,
        "preprocessing": prep,
        "vcal_head": head,
    }


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def check_preprocessing(path: Any, prep: dict[str, Any]) -> None:
    size = prep.get("input_size")
    ints = isinstance(size, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    if not (ints and len(size) == 3):
        raise _bad(path, "preprocessing.input_size", f"must be three integers C, H, W, got {short(size)}")
    c, h, w = size
    if not (1 <= c <= MAX_CHANNELS and 1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise _bad(path, "preprocessing.input_size", f"is {size}: channels 1..{MAX_CHANNELS}, sides 1..{MAX_SIDE}")
    for key in ("mean", "std"):
        v = prep.get(key)
        if not (isinstance(v, list) and len(v) in (1, c) and all(_finite(x) for x in v)):
            raise _bad(path, f"preprocessing.{key}", f"must be 1 or {c} finite numbers, got {short(v)}")
    if any(x <= 0 for x in prep["std"]):
        raise _bad(path, "preprocessing.std", "must be positive")
    crop = prep.get("crop_pct", 1.0)
    if not (_finite(crop) and 0 < crop <= 1):
        raise _bad(path, "preprocessing.crop_pct", f"must lie in (0, 1], got {short(crop)}")
