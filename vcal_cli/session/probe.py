"""Probe preprocessing candidates on a few val images when a checkpoint says nothing about its own.

A model trained from scratch at 28x28 and one fine-tuned from ImageNet weights at 224 px look the same
on disk. Rather than take timm's ImageNet config silently (a 28x28 model then scores at chance), vcal
runs each candidate (`vcal_cli.data.preprocessing.probe_candidates`) over a fixed subset of the val split
and keeps the most accurate. The result is cached beside the features (`<key>.probe.json`), so it runs
once per checkpoint and data set.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import torch

from vcal_cli._io import atomic_write_bytes
from vcal_cli.checkpoints import LoadedModel
from vcal_cli.data import DATA_STATS, ImageSplit, Preprocessing, probe_candidates
from vcal_cli.errors import VcalError
from vcal_cli.features.cache import FeatureCache, cache_key
from vcal_cli.features.extract import Forward, Runtime
from vcal_cli.features.settings import ExtractOptions

PROBE_N = 256  # images: enough to tell 91% from 10% apart, a second on the CPU at native size
PROBE_SEED = 0


def _subset(data: ImageSplit) -> ImageSplit:
    n = min(PROBE_N, len(data))
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(PROBE_SEED))[:n].sort().values
    return data.subset(idx, data.split, {"probe": n})


def _stats(sub: ImageSplit) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The data set's own pixel mean and std: the published figures for the known sets, else measured on the
    probe's images (never a pass over the whole split)."""
    c = sub.native_size[0]
    if sub.name in DATA_STATS and len(DATA_STATS[sub.name][0]) == c:
        return DATA_STATS[sub.name]
    native = Preprocessing(input_size=sub.native_size, mean=(0.0,) * c, std=(1.0,) * c)
    px = torch.cat([native.to_pixels(x) for x, _ in sub.batches(64, sub.native_size[1:])])
    return tuple(px.mean((0, 2, 3)).tolist()), tuple(px.std((0, 2, 3)).clamp_min(1e-3).tolist())


def _accuracy(loaded: LoadedModel, data: ImageSplit, prep: Preprocessing, rt: Runtime) -> float | None:
    try:
        with Forward(loaded, prep, rt) as fwd:
            _, logits = fwd.rows(data, 0, len(data))
    except VcalError:  # NaN logits, a head that runs twice: this candidate is not it
        return None
    return float((logits.argmax(1) == data.labels).float().mean())


def probe_preprocessing(loaded: LoadedModel, data: ImageSplit, options: ExtractOptions | None = None) -> Preprocessing:
    """The candidate with the best accuracy on a fixed subset of `data` (the val split), with every result."""
    o = options or ExtractOptions()
    rt, cache_dir, use_cache = Runtime.of(o, workers=0), o.cache.cache_dir, o.cache.use_cache
    sub = _subset(data)
    cands = probe_candidates(loaded.timm_cfg, loaded.in_chans, data.native_size, _stats(sub))
    weights = {"weights": loaded.weight_set["set"]} if loaded.weight_set else {}
    key = cache_key(
        {
            "probe": PROBE_N,
            "checkpoint": loaded.sha256,
            **weights,
            "head": loaded.head_name,
            "data": sub.identity,
            "candidates": [p.to_dict() for p in cands],
        }
    )
    path = FeatureCache(cache_dir).root / f"{key}.probe.json"
    results: list[dict[str, Any]] | None = None
    if use_cache and path.is_file():
        try:
            results = json.loads(path.read_text())["results"]
        except (OSError, ValueError, KeyError):
            results = None
    if results is None or len(results) != len(cands):
        results = [
            {"candidate": p.source, **p.to_dict(), "accuracy": _accuracy(loaded, sub, p, rt), "n": len(sub)}
            for p in cands
        ]
        if use_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, json.dumps({"results": results}, indent=1).encode())
            except OSError:
                pass  # the probe is cheap; an unwritable cache only costs a rerun
    scores = [r["accuracy"] if r["accuracy"] is not None else -1.0 for r in results]
    best = max(range(len(cands)), key=lambda i: (scores[i], -i))
    others = "; ".join(
        f"{r['candidate']} {'failed' if r['accuracy'] is None else format(r['accuracy'], '.0%')}"
        for i, r in enumerate(results)
        if i != best
    )
    source = f"probed, {cands[best].source}: {scores[best]:.0%} on {len(sub)} {data.split} images; {others}"
    return replace(cands[best], source=source, probe=tuple(results))
