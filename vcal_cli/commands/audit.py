"""`audit` and `export_features`: a checkpoint's calibration on one split, and its cached features as a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vcal_cli._io import same_file, sha256_file
from vcal_cli.checkpoints import LoadedModel
from vcal_cli.commands.settings import AuditSettings, Statistics
from vcal_cli.commands.steps import (
    check_guarantees,
    guarantees,
    hierarchy_section,
    load_logits,
    load_tree,
    resolve_hierarchy,
    robustness_sections,
)
from vcal_cli.errors import UsageError, VcalError
from vcal_cli.evaluations.robustness import Variant, check_options
from vcal_cli.features import FeatureSet, Track, quiet
from vcal_cli.heads.temperature import fit_inverse_temperature
from vcal_cli.metrics import compute_metrics
from vcal_cli.metrics.paired import verdicts
from vcal_cli.metrics.sanity import audit_warnings
from vcal_cli.reports.schema import AuditReport
from vcal_cli.reports.sections import compute_sections
from vcal_cli.session.ensemble import Ensemble, EnsembleFeatureSet
from vcal_cli.session.workbench import ExtractOptions, Workbench


def suggest_fix(bench: Workbench, split: str, test: FeatureSet, n_bins: int) -> dict[str, Any]:
    """Temperature scaling fitted on val and scored on `test` (the cheapest fix), or why it could not be."""
    where = str(bench.model.path) if bench.model.path else "MODEL"
    command = f"vcal retrain {where} --data {bench.name} --head auto"
    if split != "test":
        return {"reason": f"the audited split is {split}, not test", "command": command}
    try:
        val = bench.features("val")
    except VcalError as e:
        return {"reason": f"no val split to fit temperature scaling on ({e})", "command": command}
    try:
        s = fit_inverse_temperature(val.logits, val.labels)
    except VcalError as e:  # nonsense logits (the warnings say why): no fix to score
        return {"reason": f"temperature scaling does not fit on val ({e})", "command": command}
    m = compute_metrics(test.labels, logits=test.logits.double() * s, n_bins=n_bins, n_bootstrap=0, with_details=False)
    return {"temperature": 1 / s, "ece": m.metrics.ece, "nll": m.metrics.nll, "command": command}


def audit(
    checkpoint: str | Path | LoadedModel | Workbench | Ensemble | list[str | Path] | None = None,
    *,
    data: str | None = None,
    split: str = "test",
    logits: str | Path | None = None,
    options: ExtractOptions | None = None,
    settings: AuditSettings | None = None,
    progress: Track = quiet,
) -> AuditReport:
    """Audit a checkpoint on `data:split` (or precomputed `logits`) and return the report (nothing written).

    With a class `hierarchy` (a file or built-in name; default: the data set's built-in one, if any) the
    report also holds mistake-severity metrics. `robustness` asks for out-of-distribution detection (AUROC,
    AUPR and FPR95 of every OOD score), FGSM/PGD attacks and corrupted test splits (CIFAR-10-C or ImageNet-C
    strengths); see `vcal_cli.evaluations.robustness.RobustnessOptions`. With `suggest` (and `split` test)
    the val split is loaded too (extracted once, then cached for `vcal retrain`) and temperature scaling
    fitted on it is scored on the test split: the report's suggested fix. `conformal` adds prediction sets with a
    coverage guarantee and risk-controlled abstention, calibrated on val (`vcal_cli.metrics.conformal`,
    `vcal_cli.metrics.risk_control`). `checkpoint` may be a `Workbench` already open (then `data` and `options` are
    its own). Several checkpoints (a list, or an `Ensemble`) are audited as a deep ensemble: the mean of the
    members' probabilities, every section as for one model, plus each member's row and the ensemble's paired
    verdict against its best member (`vcal_cli.session.ensemble`).
    """
    s = settings or AuditSettings()
    hierarchy, robustness, conformal = s.hierarchy, s.robustness, s.conformal
    if (checkpoint is None) == (logits is None):
        raise UsageError("give a CHECKPOINT or --logits FILE, not both and not neither")
    if logits is not None:
        if robustness:
            raise UsageError("--ood, --adversarial and --shift need a CHECKPOINT, not --logits")
        check_guarantees(conformal, None)
        return audit_logits(logits, split, hierarchy, s)
    assert checkpoint is not None
    bench = open_bench(checkpoint, data, options, progress)
    if robustness:
        if bench.from_file:
            bench.images(split)  # features from a file have no images: one line, before any work
        # a bad corruption or OOD set fails before any extraction
        check_options(robustness, bench.options.data.data_root)
    conformal, skipped = check_guarantees(conformal, bench)
    fs = bench.features(split)
    suggestion = suggest_fix(bench, split, fs, s.n_bins) if s.suggest else None
    val = bench.features("val") if conformal else None
    bench.release()  # under torchrun: the ranks shared the extraction; the audit runs on rank 0
    report = audit_features(bench, split, fs, hierarchy, s)
    report.suggestion = suggestion
    if isinstance(bench, Ensemble):
        report.sections["ensemble"] = ensemble_section(fs, bench, s.n_bins, s.n_bootstrap, s.seed)
    sets = {}
    if conformal and val is not None:
        found, sets = guarantees(val.logits, val.labels, fs.logits, fs.labels, conformal, bench.class_names)
        report.sections.update(found)
        report.settings["conformal"] = {"calibrated_on": "val", "scored_on": split, "skipped": skipped}
        report.warnings += [f"--conformal: {s} skipped: {why}" for s, why in skipped.items()]
    if robustness:
        variants = [Variant("original", bench.model)]
        robustness_sections(report, bench, variants, robustness, split, s.n_bins, s.seed, {"original": sets})
    return report


def open_bench(
    checkpoint: str | Path | LoadedModel | Workbench | Ensemble | list[str | Path],
    data: str | None,
    options: ExtractOptions | None,
    progress: Track,
    logit_space: bool = False,
) -> Workbench | Ensemble:
    """One model's Workbench, or an Ensemble for several checkpoints (a list of one is that checkpoint);
    `logit_space`: the heads' view of an ensemble (`Ensemble.logit_space`)."""
    if isinstance(checkpoint, Ensemble):
        return checkpoint
    if isinstance(checkpoint, list | tuple):
        if len(checkpoint) == 1:
            return Workbench.open(checkpoint[0], data, options, progress=progress)
        return Ensemble.open(list(checkpoint), data, options, progress=progress, logit_space=logit_space)
    return Workbench.open(checkpoint, data, options, progress=progress)


def ensemble_section(
    fs: EnsembleFeatureSet, bench: Ensemble, n_bins: int, n_bootstrap: int, seed: int
) -> dict[str, Any]:
    """Each member's metrics on the audited split and the ensemble's paired verdict against its best member (the
    lowest NLL on this split: chosen on the data it is compared on, so the verdict leans toward the member)."""
    assert fs.members is not None
    rows = []
    for i, (m, z) in enumerate(zip(bench.members, fs.members, strict=True)):
        # the same interval rule as the ensemble's own (bias-bounded ECEs), without the tables and diagrams' details
        r = compute_metrics(fs.labels, logits=z, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed, with_details=False)
        rows.append({"member": i + 1, "path": str(m.model.path), **r.metrics.as_dict(), "intervals": r.intervals})
    best = min(range(len(rows)), key=lambda i: rows[i]["nll"])
    out: dict[str, Any] = {"members": rows, "best_member": best + 1, "combine": "mean of the members' probabilities"}
    if n_bootstrap:
        out["vs_best_member"] = verdicts(
            fs.members[best], fs.logits, fs.labels, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed
        )
    return out


def audit_features(
    bench: Workbench | Ensemble, split: str, fs: FeatureSet, hierarchy: str | Path | None, stats: Statistics
) -> AuditReport:
    """The report of the checkpoint's own head on one split's cached logits."""
    n_bins, n_bootstrap, seed = stats.n_bins, stats.n_bootstrap, stats.seed
    result = compute_metrics(fs.labels, logits=fs.logits, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
    o, prep = bench.options, bench.split_preprocessing(split)
    said = (
        {
            "preprocessing": {
                **prep.to_dict(),
                "source": prep.source,
                **({"probe": list(prep.probe)} if prep.probe else {}),
            }
        }
        if prep
        else {}
    )
    settings = {
        **stats.to_dict(),
        **said,
        "device": o.runtime.device,
        "batch_size": o.runtime.batch_size,
        "cache": {"hit": fs.from_cache, "path": str(fs.path) if fs.path else None},
        "options": {k: v for k, v in o.flat().items() if v is not None},
    }
    tree = resolve_hierarchy(hierarchy, bench)
    return AuditReport(
        checkpoint=bench.model.describe(),
        data={"name": bench.name, "split": split, "n": len(fs)},
        result=result,
        settings=settings,
        hierarchy=hierarchy_section(tree, fs.logits, fs.labels, n_bootstrap, seed),
        warnings=audit_warnings(fs.logits, fs.labels),
        class_names=bench.class_names,
        sections=compute_sections(fs.logits, fs.labels),
    )


def audit_logits(logits: str | Path, split: str, hierarchy: str | Path | None, stats: Statistics) -> AuditReport:
    """The report of logits (or probabilities) computed elsewhere, read from a file."""
    n_bins, n_bootstrap, seed = stats.n_bins, stats.n_bootstrap, stats.seed
    lg, pr, labels = load_logits(logits)
    result = compute_metrics(labels, logits=lg, probs=pr, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
    scores = lg if lg is not None else pr
    k = scores.shape[1]  # type: ignore[union-attr]
    ck = {"path": str(logits), "sha256": sha256_file(logits), "arch": None, "num_classes": k, "head_module": None}
    tree = load_tree(hierarchy, [str(i) for i in range(k)])
    return AuditReport(
        checkpoint=ck,
        data={"name": f"logits:{Path(logits).name}", "split": split, "n": result.n},
        result=result,
        settings={**stats.to_dict(), "input": "probs" if lg is None else "logits"},
        hierarchy=hierarchy_section(tree, scores, labels, n_bootstrap, seed),
        warnings=audit_warnings(torch.as_tensor(scores), torch.as_tensor(labels)),
        sections=compute_sections(scores, labels, probs=lg is None),
    )


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
    bench = Workbench.open(checkpoint, data, options, progress=progress)
    fs = bench.features(split)
    bench.release()
    meta = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": bench.model.sha256,
        "data": bench.name,
        "split": split,
        "preprocessing": str(bench.preprocessing_for(bench.images(split)).to_dict()),
    }
    fs.save(out, meta)
    return fs
