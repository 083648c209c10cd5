"""`retrain`: fit heads on the cached features, audit each on test, write checkpoints.

It reads as its steps: `plan_retrain` (validate every flag, resolve the heads and the output paths: nothing is
extracted or fitted before the plan stands), `fit_heads`, `score_heads`, `add_verdicts`, the robustness
evaluations, and `write_heads` (only once every head is fitted).
"""

from __future__ import annotations

import dataclasses as dc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vcal_cli._io import same_file
from vcal_cli.checkpoints import LoadedModel, save_checkpoint, save_head
from vcal_cli.checkpoints.export import check_export
from vcal_cli.checkpoints.export import export as export_model
from vcal_cli.commands.audit import audit_features, open_bench
from vcal_cli.commands.settings import RetrainSettings, Statistics
from vcal_cli.commands.steps import (
    check_guarantees,
    guarantees,
    hierarchy_section,
    resolve_hierarchy,
    robustness_sections,
)
from vcal_cli.data.augment import check_augment
from vcal_cli.errors import UsageError
from vcal_cli.evaluations.robustness import Variant, check_options
from vcal_cli.features import Track, quiet
from vcal_cli.heads import FitData, Head, check_train_options, get_head, list_heads
from vcal_cli.heads.base import flag_of
from vcal_cli.heads.select import AUTO, AutoOptions, select_head
from vcal_cli.hierarchy import Hierarchy
from vcal_cli.metrics import compute_metrics, nll
from vcal_cli.metrics.conformal import Calibrated, ConformalOptions
from vcal_cli.metrics.hierarchy import hierarchy_verdicts
from vcal_cli.metrics.paired import floors_of, noise_floors, verdicts
from vcal_cli.metrics.sanity import val_warning
from vcal_cli.reports.retrain_schema import HeadResult, RetrainReport
from vcal_cli.reports.schema import AuditReport
from vcal_cli.reports.sections import compute_sections
from vcal_cli.session.ensemble import Ensemble
from vcal_cli.session.workbench import ExtractOptions, Workbench

REFERENCE = "temperature"  # every head's verdicts are also taken against temperature scaling, the cheapest fix


def resolve_heads(names: list[str]) -> list[str]:
    """`all` expands to every registered head (in registry order); `auto` to the candidates of the automatic
    choice (`vcal_cli.heads.select.AUTO`), and stands alone; duplicates are dropped."""

    if "auto" in (names or []):
        if len(set(names)) > 1:
            raise UsageError("--head auto picks one head itself; do not combine it with other --head values")
        return list(AUTO)
    out: list[str] = []
    for n in names or []:
        for m in list_heads() if n == "all" else [n]:
            get_head(m)
            if m not in out:
                out.append(m)
    if not out:
        raise UsageError("name at least one --head", hint=f"choose from: auto, all, {', '.join(list_heads())}")
    return out


def head_params(names: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """Per-head params: each flag goes to every chosen head that takes it; a flag none takes is an error (named as
    the user typed it: a field's own flag, e.g. --train-batch-size)."""

    given = {k: v for k, v in overrides.items() if v is not None}
    takes = {n: {f.name for f in dc.fields(get_head(n).Params)} for n in names}
    unused = [k for k in given if not any(k in t for t in takes.values())]
    if unused:
        raise UsageError(f"{', '.join(flag_of(k) for k in unused)} does not apply to head(s) {', '.join(names)}")
    return {n: get_head(n).make_params(**{k: v for k, v in given.items() if k in takes[n]}) for n in names}


@dataclass(kw_only=True)
class RetrainPlan:
    """What `retrain` will do, settled before any extraction or fitting: the heads (for `auto`, the candidates),
    their params, where each checkpoint goes, the hierarchy, and the heads skipped with why."""

    names: list[str]
    auto: bool
    params: dict[str, Any]
    paths: dict[str, Path]
    inputs: tuple[Path, ...]
    tree: Hierarchy | None
    head_only: bool
    train_views: int
    augment: str
    conformal: ConformalOptions | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    auto_options: AutoOptions = field(default_factory=AutoOptions)
    auto_info: dict[str, Any] | None = None  # filled in by fit_heads for `auto`
    sets: dict[str, dict[tuple[str, float], Calibrated]] = field(default_factory=dict)  # by score_heads, per head
    notes: list[str] = field(default_factory=list)  # what the plan left out, for the report's warnings
    export: str | None = None  # write each head folded into the model, in its own format (`checkpoints.export`)


def plan_retrain(bench: Workbench, heads: list[str], settings: RetrainSettings) -> RetrainPlan:
    """Validate everything `retrain` was given and decide what it will fit and write; raises before any work."""
    s, robustness = settings, settings.robustness
    auto = "auto" in heads
    names = resolve_heads(heads)
    auto_options = AutoOptions(select=s.auto_select, budget=s.auto_budget)  # checks them
    if robustness:
        if bench.from_file:
            bench.images("test")  # features from a file have no images: one line, before any fitting
        check_options(robustness, bench.options.data.data_root)  # a bad corruption or OOD set fails before any fitting
    head_only = s.head_only or bench.from_file or bench.model.program is not None  # no backbone to write: the head
    if s.train_views and bench.from_file:
        raise UsageError("--train-views augments images; features computed elsewhere have none", hint="drop it")
    check_augment(s.augment)
    check_train_options(s.params)
    conformal, skipped_sets = check_guarantees(s.conformal, bench)
    tree = resolve_hierarchy(s.hierarchy, bench)
    skipped: dict[str, str] = {}
    if tree is None:
        needy = [n for n in names if get_head(n).needs_hierarchy]
        if needy and "all" not in heads:
            raise UsageError(
                f"head '{needy[0]}' needs a class hierarchy and '{bench.name}' has no built-in one",
                hint="pass --hierarchy FILE",
            )
        skipped = {n: "no class hierarchy" for n in needy}
        names = [n for n in names if n not in skipped]
    per_head = head_params(names, {"seed": s.seed, **s.params})
    if s.out is not None and len(names) > 1 and not auto:
        raise UsageError("--checkpoint-out names one checkpoint file; with several heads, checkpoints go into --out")
    inputs = tuple(Path(p) for p in (bench.model.path, bench.options.load.head_file) if p)
    paths = output_paths(bench.model, names, auto, s.out_dir, s.out, head_only)
    refuse_overwrite(inputs, paths)
    plan = RetrainPlan(
        names=names,
        auto=auto,
        params=per_head,
        paths=paths,
        inputs=inputs,
        tree=tree,
        head_only=head_only,
        train_views=s.train_views,
        augment=s.augment,
        conformal=conformal,
        skipped=skipped,
        auto_options=auto_options,
    )
    plan.notes += [f"--conformal: {s} skipped: {why}" for s, why in skipped_sets.items()]
    if bench.model.program:
        plan.notes.append(f"a {bench.model.program} program: heads written alone; audit with --head-file HEAD")
    return plan


def refuse_overwrite(inputs: tuple[Path, ...], paths: dict[str, Path]) -> None:
    """No checkpoint is written over a file `retrain` reads."""
    for path in paths.values():
        if any(same_file(src, path) for src in inputs):
            raise UsageError(f"refusing to write '{path}' over an input file", hint="choose another --out")


def output_paths(
    loaded: LoadedModel, names: list[str], auto: bool, out_dir: str | Path, out: str | Path | None, head_only: bool
) -> dict[str, Path]:
    """Where each head's checkpoint goes: `out` (one head), else `out_dir/<stem>.<head>[.head].safetensors`. For
    `auto` the pick (maybe NAME+temperature) is known only after fitting, so every candidate gets a path."""
    stem = Path(loaded.path).name.split(".")[0] if loaded.path else "model"
    suffix = ".head.safetensors" if head_only else ".safetensors"
    keys = names + ([f"{n}+temperature" for n in names] if auto else [])
    return {n: Path(out) if out is not None else Path(out_dir) / f"{stem}.{n}{suffix}" for n in keys}


def fit_heads(
    plan: RetrainPlan, bench: Workbench, fit: dict[str, FitData], n_bins: int, n_bootstrap: int, seed: int
) -> list[Head]:
    """Fit every planned head (for `auto`: every candidate within `plan.auto_options`' budget, then keep the pick,
    recorded in `plan.auto_info`; what the budget cut short or skipped joins `plan.notes`)."""
    base = bench.model.head
    if not plan.auto:
        return [
            get_head(n)(plan.params[n]).fit(
                fit["train"], fit["val"], base=base, hierarchy=plan.tree, progress=bench.progress
            )
            for n in plan.names
        ]
    selection = select_head(
        fit["train"],
        fit["val"],
        candidates=tuple(plan.names),
        params=plan.params,
        base=base,
        hierarchy=plan.tree,
        auto=plan.auto_options,
        stats=Statistics(n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed),
        progress=bench.progress,
    )
    plan.notes += selection.warnings()
    picked = selection.picked.name
    plan.names, plan.paths = [picked], {picked: plan.paths[picked]}
    plan.auto_info = {**selection.to_dict(), "reason": selection.reason()}
    return [selection.picked]


def score_heads(
    plan: RetrainPlan,
    bench: Workbench,
    fitted: list[Head],
    original: AuditReport,
    n_bins: int,
    n_bootstrap: int,
    seed: int,
) -> dict[str, HeadResult]:
    """Every head's test metrics, hierarchy metrics and sections, next to the original's; a head fitted on train
    that is worse on val than the original is flagged in the report's warnings (val only: no test peeking)."""
    val, test = bench.features("val"), bench.features("test")
    if plan.conformal:
        found, plan.sets["original"] = guarantees(
            val.logits, val.labels, test.logits, test.labels, plan.conformal, bench.class_names
        )
        original.sections.update(found)
    results = {
        "original": HeadResult(
            name="original",
            result=original.result,
            head=None,
            checkpoint=str(bench.model.path) if bench.model.path else None,
            hierarchy=original.hierarchy,
            sections=original.sections,
        )
    }
    original_val_nll = nll(val.logits, val.labels)
    for head in fitted:
        # val predictions only where something reads them: the warning (heads fitted on train) and the sets
        needs_val = head.fits_on == "train" or plan.conformal
        val_lp = (
            head.predict_log_proba(val.features, batch_size=bench.options.runtime.batch_size) if needs_val else None
        )
        if head.fits_on == "train" and (v := nll(val_lp, val.labels)) > original_val_nll:
            original.warnings.append(_worse_on_val(head, v, original_val_nll, plan.train_views))
        log_probs = head.predict_log_proba(test.features, batch_size=bench.options.runtime.batch_size)
        res = compute_metrics(test.labels, logits=log_probs, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
        r = HeadResult(
            name=head.name,
            result=res,
            head=head,
            checkpoint=None,
            hierarchy=hierarchy_section(plan.tree, log_probs, test.labels, n_bootstrap, seed),
        )
        r.log_probs, r.sections = log_probs, compute_sections(log_probs, test.labels)
        if plan.conformal and val_lp is not None:
            found, plan.sets[head.name] = guarantees(
                val_lp, val.labels, log_probs, test.labels, plan.conformal, bench.class_names
            )
            r.sections.update(found)
        results[head.name] = r
    return results


def _worse_on_val(head: Head, v: float, original: float, train_views: int) -> str:
    name, short = head.name, head.cut_short()
    if short:  # an unfinished fit says nothing about the data
        why = f"{short}; give it its whole schedule, or try --head {name}+temperature"
    elif train_views:
        why = f"it learned from {train_views} augmented views of train; try --head {name}+temperature"
    else:
        why = (
            f"it learned from train features the backbone may have memorised; try --train-views 4 (augmented "
            f"views), --head {name}+temperature"
        )
    return f"head '{name}' has val NLL {v:.4f}, worse than the original head's {original:.4f}: {why} or --head auto"


def add_verdicts(
    results: dict[str, HeadResult],
    bench: Workbench,
    fit: dict[str, FitData],
    n_bins: int,
    n_bootstrap: int,
    seed: int,
    tree: Hierarchy | None = None,
) -> None:
    """Paired-bootstrap verdicts of every head against the original and against temperature scaling (fitted here
    when it is not among the heads and the checkpoint's head is a linear layer); with a class hierarchy `tree`, the
    mistake-severity metrics' verdicts too (under each head's `hierarchy`)."""
    test = bench.features("test")
    reference = results[REFERENCE].log_probs if REFERENCE in results else None
    if reference is None and isinstance(bench.model.head, torch.nn.Linear):
        t = get_head(REFERENCE)(get_head(REFERENCE).Params(seed=seed)).fit(
            fit["train"], fit["val"], base=bench.model.head
        )
        reference = t.predict_log_proba(test.features, batch_size=bench.options.runtime.batch_size)
    against = {"original": test.logits, **({REFERENCE: reference} if reference is not None else {})}
    floors = {
        who: _floors(results.get(who), ref, test.labels, n_bins, n_bootstrap, seed) for who, ref in against.items()
    }
    for name, r in results.items():
        if name != "original":
            r.verdicts = {
                who: verdicts(
                    ref,
                    r.log_probs,
                    test.labels,
                    n_bins=n_bins,
                    n_bootstrap=max(n_bootstrap, 20),
                    seed=seed,
                    floors=(floors[who], noise_floors(r.result.debiased)),
                )
                for who, ref in against.items()
            }
            if tree is not None and r.hierarchy is not None:
                r.hierarchy["verdicts"] = {
                    who: hierarchy_verdicts(
                        ref, r.log_probs, test.labels, tree.distances(), n_bootstrap=max(n_bootstrap, 20), seed=seed
                    )
                    for who, ref in against.items()
                }


def _floors(
    result: HeadResult | None, log_probs: Any, labels: Any, n_bins: int, n_bootstrap: int, seed: int
) -> dict[str, float]:
    """The ECE-type noise-floor means of a reference predictor: from its result, else computed (temperature fitted
    only for the verdicts)."""
    if result is not None:
        return noise_floors(result.result.debiased)
    return floors_of(log_probs, labels, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)


def write_heads(plan: RetrainPlan, bench: Workbench, results: dict[str, HeadResult]) -> None:
    """Write every fitted head's checkpoint (or head file, or the model exported with it); called only once all are
    fitted and scored."""
    loaded, o = bench.model, bench.options
    for name, path in plan.paths.items():
        head = results[name].head
        if plan.export:
            path = export_model(loaded, head.module_, plan.export, exported_path(path, plan.export))
        elif plan.head_only:
            save_head(head.module_, head.info(), loaded, path)
        else:
            where = ", val from test" if o.data.val_from == "test" else ""
            meta = {
                "retrained_from": loaded.sha256,
                "retrained_on": f"{bench.name}:train (selected on val{where})",
                "data": bench.name,
            }
            save_checkpoint(
                loaded.with_head(head.module_, head.info()),
                path,
                preprocessing=bench.preprocessing,
                extra_metadata=meta,
                inputs=plan.inputs,
            )
        results[name].checkpoint = str(path)


def exported_path(path: Path, fmt: str) -> Path:
    """`<stem>.<head>.onnx`, `.pt` (TorchScript) or a folder (transformers) beside where the head file would go."""
    stem = path.name.removesuffix(".safetensors").removesuffix(".head")
    return path.with_name(stem + {"onnx": ".onnx", "torchscript": ".pt", "transformers": ""}[fmt])


def retrain(
    checkpoint: str | Path | LoadedModel | Workbench | Ensemble | list[str | Path],
    heads: list[str],
    *,
    data: str | None = None,
    options: ExtractOptions | None = None,
    settings: RetrainSettings | None = None,
    progress: Track = quiet,
) -> RetrainReport:
    """Fit each head on the cached train features (selecting on val), audit it on test and write its checkpoint.

    `settings` (a `RetrainSettings`; its fields named below) says how. Checkpoints go to `out` (one head) or
    `out_dir/<stem>.<head>.safetensors`; with `head_only`, only the head's weights are written (tied to the base by
    sha256). Nothing is written if any head fails.
    `hierarchy` (a file or built-in name; default: the data set's built-in one, if any) feeds the heads
    that need one; `heads=["all"]` skips those when there is none. `robustness` adds the shift, OOD and
    adversarial evaluations for the original and every head, on the same cached features. With `train_views`
    K > 0 the heads that learn on train learn on K augmented views of it (`vcal_cli.data.augment`, policy
    `augment`), each extracted once and cached, instead of the clean train features; `train_fraction` < 1 fits them
    on a seeded class-stratified share of the train rows (low-data studies). `auto_select` is the val criterion of
    `--head auto` (nll, ece or brier), `auto_budget` its time budget in seconds (None: unbounded; see
    `vcal_cli.heads.select`). `conformal` adds every head's prediction sets and risk-controlled abstention
    (each head's own val and test predictions), and their coverage under `--shift`. `export` ('onnx', 'torchscript'
    or 'transformers', the format the model came in) writes each head folded into the model's last linear layer
    instead of a head file (`vcal_cli.checkpoints.export`). Several checkpoints are a deep
    ensemble: the heads are fitted on the ensemble's predictions (the post-hoc maps on its val log-probabilities,
    the others on the members' features side by side) and reported, not written: no one checkpoint holds an
    ensemble.
    """
    s = settings or RetrainSettings()
    n_bins, n_bootstrap, seed = s.n_bins, s.n_bootstrap, s.seed
    bench = open_bench(checkpoint, data, options, progress, logit_space=True)
    plan = plan_retrain(bench, heads, s)
    if s.export is not None:
        check_export(s.export, bench.model, ["auto"] if plan.auto else plan.names)
        plan.export = s.export
    splits = {name: bench.features(name) for name in ("train", "val", "test")}
    bench.release()  # under torchrun: the ranks shared the three extractions; fitting runs on rank 0
    original = audit_features(bench, "test", splits["test"], s.hierarchy, s)
    original.settings = {**s.to_dict(), "train_fraction": s.train_fraction, **original.settings}
    if warning := val_warning(*((f.logits, f.labels) for f in splits.values())):
        original.warnings.append(warning)
    train = bench.train_views(s.train_views, s.augment, seed=seed) if s.train_views else bench.fit_data("train")
    fit = {"train": train.fraction(s.train_fraction, seed), "val": bench.fit_data("val")}
    fitted = fit_heads(plan, bench, fit, n_bins, n_bootstrap, seed)
    original.warnings += plan.notes  # the plan's, and what --auto-budget cut short
    results = score_heads(plan, bench, fitted, original, n_bins, n_bootstrap, seed)
    add_verdicts(results, bench, fit, n_bins, n_bootstrap, seed, plan.tree)
    if s.robustness:
        variants = [Variant("original", bench.model)] + [
            Variant(n, bench.model, results[n].head.module_) for n in plan.names
        ]
        for n, sec in robustness_sections(
            original, bench, variants, s.robustness, "test", n_bins, seed, plan.sets
        ).items():
            results[n].robustness = sec
    if isinstance(bench, Ensemble):
        original.warnings.append(
            "an ensemble: the heads are fitted and reported, not written (no one checkpoint holds it)"
        )
    else:
        write_heads(plan, bench, results)
    original.settings["retrain"] = retrain_settings(plan, bench.name, s.head_only)
    return RetrainReport(original, results)


def retrain_settings(plan: RetrainPlan, data: str, head_only: bool) -> dict[str, Any]:
    """report.json's `settings.retrain`: what was fitted, on what, and what was left out."""
    return {
        **({"auto": plan.auto_info} if plan.auto else {}),
        "heads": plan.names,
        "data": data,
        "head_only": head_only,  # as asked (the plan's is also true where there is no backbone to write)
        "skipped": plan.skipped,
        "hierarchy": plan.tree.source if plan.tree else None,
        "train_views": {"views": plan.train_views, "augment": plan.augment} if plan.train_views else None,
    }
