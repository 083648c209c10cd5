"""`audit` and `export_features`: a checkpoint's calibration on one split, and its cached features as a file."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vcal_cli._io import same_file, sha256_file
from vcal_cli.checkpoints import LoadedModel
from vcal_cli.commands._shared import _hierarchy_section, _load_tree, _resolve_hierarchy, _robustness, load_logits
from vcal_cli.data import load_split
from vcal_cli.errors import UsageError, VcalError
from vcal_cli.evaluations.robustness import RobustnessOptions, Variant, check_options
from vcal_cli.features import FeatureSet, Track, quiet
from vcal_cli.features.distributed import release_workers
from vcal_cli.features.options import ExtractOptions, default_data, load_features, open_checkpoint
from vcal_cli.heads.temperature import fit_inverse_temperature
from vcal_cli.metrics import DEFAULT_N_BINS, compute_metrics
from vcal_cli.metrics._validate import check_bins
from vcal_cli.metrics.sanity import audit_warnings
from vcal_cli.reports.schema import AuditReport
from vcal_cli.reports.sections import compute_sections


def _suggest(
    loaded: LoadedModel, data: str, split: str, test: FeatureSet, o: ExtractOptions, n_bins: int, progress: Track
) -> dict[str, Any]:
    """Temperature scaling fitted on val and scored on `test` (the cheapest fix), or why it could not be."""
    where = str(loaded.path) if loaded.path else "MODEL"
    command = f"vcal retrain {where} --data {data} --head auto"
    if split != "test":
        return {"reason": f"the audited split is {split}, not test", "command": command}
    try:
        _, val, _ = load_features(loaded, data, "val", o, progress=progress)
    except VcalError as e:
        return {"reason": f"no val split to fit temperature scaling on ({e})", "command": command}
    try:
        s = fit_inverse_temperature(val.logits, val.labels)
    except VcalError as e:  # nonsense logits (the warnings say why): no fix to score
        return {"reason": f"temperature scaling does not fit on val ({e})", "command": command}
    m = compute_metrics(test.labels, logits=test.logits.double() * s, n_bins=n_bins, n_bootstrap=0, with_details=False)
    return {"temperature": 1 / s, "ece": m.metrics.ece, "nll": m.metrics.nll, "command": command}


def _data_classes(fs: FeatureSet, data: str, split: str, o: ExtractOptions) -> list[str] | None:
    """The data set's class names (the checkpoint's label order is the data's): from the cache entry, or, for an
    entry written before it kept them, from the split itself."""
    if classes := fs.info.get("classes"):
        return list(classes)
    try:
        return list(load_split(data, split, root=o.data_root, val_from=o.val_from).classes)
    except VcalError:
        return None


def audit(
    checkpoint: str | Path | LoadedModel | None = None,
    *,
    data: str | None = None,
    split: str = "test",
    logits: str | Path | None = None,
    options: ExtractOptions | None = None,
    hierarchy: str | Path | None = None,
    robustness: RobustnessOptions | None = None,
    n_bins: int = DEFAULT_N_BINS,
    n_bootstrap: int = 200,
    seed: int = 0,
    suggest: bool = True,
    progress: Track = quiet,
) -> AuditReport:
    """Audit a checkpoint on `data:split` (or precomputed `logits`) and return the report (nothing written).

    With a class `hierarchy` (a file or built-in name; default: the data set's built-in one, if any) the
    report also holds mistake-severity metrics. `robustness` asks for out-of-distribution detection (AUROC,
    AUPR and FPR95 of every OOD score), FGSM/PGD attacks and corrupted test splits (CIFAR-10-C or ImageNet-C
    strengths); see `vcal_cli.evaluations.robustness.RobustnessOptions`. With `suggest` (and `split` test)
    the val split is loaded too (extracted once, then cached for `vcal retrain`) and temperature scaling
    fitted on it is scored on the test split: the report's suggested fix.
    """
    check_bins(n_bins)
    if n_bootstrap < 0:
        raise UsageError(f"--bootstrap {n_bootstrap} must be 0 or more")
    if (checkpoint is None) == (logits is None):
        raise UsageError("give a CHECKPOINT or --logits FILE, not both and not neither")
    o = options or ExtractOptions()
    settings: dict[str, Any] = {"bins": n_bins, "bootstrap": n_bootstrap, "seed": seed}
    if logits is not None:
        if robustness:
            raise UsageError("--ood, --adversarial and --shift need a CHECKPOINT, not --logits")
        lg, pr, labels = load_logits(logits)
        result = compute_metrics(labels, logits=lg, probs=pr, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
        scores = lg if lg is not None else pr
        k = scores.shape[1]  # type: ignore[union-attr]
        ck = {"path": str(logits), "sha256": sha256_file(logits), "arch": None, "num_classes": k, "head_module": None}
        tree = _load_tree(hierarchy, [str(i) for i in range(k)])
        return AuditReport(
            ck,
            {"name": f"logits:{Path(logits).name}", "split": split, "n": result.n},
            result,
            {**settings, "input": "probs" if lg is None else "logits"},
            _hierarchy_section(tree, scores, labels, n_bootstrap, seed),
            warnings=audit_warnings(torch.as_tensor(scores), torch.as_tensor(labels)),
            sections=compute_sections(scores, labels, probs=lg is None),
        )
    loaded = open_checkpoint(checkpoint, o)
    data = default_data(loaded, data)
    if robustness:
        check_options(robustness, o.data_root)  # a bad corruption or OOD set fails before any extraction
    loaded, fs, prep = load_features(loaded, data, split, o, progress=progress)
    suggestion = _suggest(loaded, data, split, fs, o, n_bins, progress) if suggest else None
    release_workers()  # under torchrun: the ranks shared the extraction; the audit runs on rank 0
    result = compute_metrics(fs.labels, logits=fs.logits, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
    settings.update(
        {
            "preprocessing": {
                **prep.to_dict(),
                "source": prep.source,
                **({"probe": list(prep.probe)} if prep.probe else {}),
            },  # fmt: skip
            "device": o.device,
            "batch_size": o.batch_size,
            "cache": {"hit": fs.from_cache, "path": str(fs.path) if fs.path else None},
            "options": {k: v for k, v in asdict(o).items() if v is not None},
        }
    )
    tree = _resolve_hierarchy(hierarchy, data, loaded, o)
    report = AuditReport(
        loaded.describe(),
        {"name": data, "split": split, "n": len(fs)},
        result,
        settings,
        _hierarchy_section(tree, fs.logits, fs.labels, n_bootstrap, seed),
        warnings=audit_warnings(fs.logits, fs.labels),
        class_names=loaded.class_names or _data_classes(fs, data, split, o),
        suggestion=suggestion,
        sections=compute_sections(fs.logits, fs.labels),
    )
    if robustness:
        _robustness(report, [Variant("original", loaded)], robustness, data, split, fs, prep, o, n_bins, seed, progress)
    return report


def export_features(
    checkpoint: str | Path,
    out: str | Path,
    *,
    data: str | None = None,
    split: str = "test",
    options: ExtractOptions | None = None,
    progress: Track = quiet,
) -> FeatureSet:
    """Write `features`, `logits` and `labels` of `data:split` to `out` (.safetensors), via the cache.

    Returns the split's FeatureSet (`resumed` tells how many shards an interrupted run had finished)."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise UsageError(f"--out '{out}' must end in .safetensors")
    if same_file(checkpoint, out):
        raise UsageError(f"refusing to write '{out}' over the checkpoint", hint="choose another --out")
    loaded = open_checkpoint(checkpoint, options)
    data = default_data(loaded, data)
    loaded, fs, prep = load_features(loaded, data, split, options, progress=progress)
    release_workers()
    meta = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": loaded.sha256,
        "data": data,
        "split": split,
        "preprocessing": str(prep.to_dict()),
    }
    fs.save(out, meta)
    return fs
