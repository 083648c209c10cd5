"""`retrain`: fit heads on the cached features, audit each on test, write checkpoints."""

from __future__ import annotations

import dataclasses as dc
from pathlib import Path
from typing import Any

import torch

from vcal_cli._defaults import DEFAULT_AUGMENT, DEFAULT_TRAIN_VIEWS
from vcal_cli._io import same_file
from vcal_cli.checkpoints import LoadedModel, save_checkpoint, save_head
from vcal_cli.commands._shared import _hierarchy_section, _resolve_hierarchy, _robustness
from vcal_cli.commands.audit import audit
from vcal_cli.data.augment import check_augment
from vcal_cli.errors import UsageError
from vcal_cli.evaluations.robustness import RobustnessOptions, Variant, check_options
from vcal_cli.features import Track, quiet
from vcal_cli.features.distributed import release_workers
from vcal_cli.features.options import (
    ExtractOptions,
    default_data,
    load_features,
    load_train_views,
    open_checkpoint,
)
from vcal_cli.heads import FitData, check_train_options, get_head, list_heads
from vcal_cli.heads.select import AUTO, select_head
from vcal_cli.metrics import DEFAULT_N_BINS, compute_metrics, nll
from vcal_cli.metrics._validate import check_bins
from vcal_cli.metrics.paired import verdicts
from vcal_cli.metrics.sanity import val_warning
from vcal_cli.reports.retrain_schema import HeadResult, RetrainReport
from vcal_cli.reports.sections import compute_sections


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
    """Per-head params: each flag goes to every chosen head that takes it; a flag none takes is an error."""

    given = {k: v for k, v in overrides.items() if v is not None}
    takes = {n: {f.name for f in dc.fields(get_head(n).Params)} for n in names}
    unused = [k for k in given if not any(k in t for t in takes.values())]
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise UsageError(f"{flags} does not apply to head(s) {', '.join(names)}")
    return {n: get_head(n).make_params(**{k: v for k, v in given.items() if k in takes[n]}) for n in names}


def retrain(
    checkpoint: str | Path | LoadedModel,
    heads: list[str],
    *,
    data: str | None = None,
    options: ExtractOptions | None = None,
    params: dict[str, Any] | None = None,
    out_dir: str | Path = "vcal-report",
    out: str | Path | None = None,
    head_only: bool = False,
    hierarchy: str | Path | None = None,
    robustness: RobustnessOptions | None = None,
    select: str = "nll",
    train_views: int = DEFAULT_TRAIN_VIEWS,
    augment: str = DEFAULT_AUGMENT,
    n_bins: int = DEFAULT_N_BINS,
    n_bootstrap: int = 200,
    seed: int = 0,
    progress: Track = quiet,
) -> RetrainReport:
    """Fit each head on the cached train features (selecting on val), audit it on test and write its checkpoint.

    Checkpoints go to `out` (one head) or `out_dir/<stem>.<head>.safetensors`; with `head_only`, only the
    head's weights are written (tied to the base by sha256). Nothing is written if any head fails.
    `hierarchy` (a file or built-in name; default: the data set's built-in one, if any) feeds the heads
    that need one; `heads=["all"]` skips those when there is none. `robustness` adds the shift, OOD and
    adversarial evaluations for the original and every head, on the same cached features. With `train_views`
    K > 0 the heads that learn on train learn on K augmented views of it (`vcal_cli.data.augment`, policy
    `augment`), each extracted once and cached, instead of the clean train features.
    """

    check_bins(n_bins)
    auto = "auto" in heads
    names = resolve_heads(heads)
    o = options or ExtractOptions()
    loaded = open_checkpoint(checkpoint, o)
    data = default_data(loaded, data)
    if robustness:
        check_options(robustness, o.data_root)  # a bad corruption or OOD set fails before any fitting
    if train_views < 0:
        raise UsageError(f"--train-views {train_views} must be 0 or more")
    check_augment(augment)  # before any extraction
    check_train_options(params or {})
    loaded, train, _ = load_features(loaded, data, "train", o, progress=progress)
    tree = _resolve_hierarchy(hierarchy, data, loaded, o)
    skipped = {}
    if tree is None:
        needy = [n for n in names if get_head(n).needs_hierarchy]
        if needy and "all" not in heads:
            raise UsageError(
                f"head '{needy[0]}' needs a class hierarchy and '{data}' has no built-in one",
                hint="pass --hierarchy FILE",
            )
        skipped = {n: "no class hierarchy" for n in needy}
        names = [n for n in names if n not in skipped]
    per_head = head_params(names, {"seed": seed, **(params or {})})
    if out is not None and len(names) > 1 and not auto:
        raise UsageError("--checkpoint-out names one checkpoint file; with several heads, checkpoints go into --out")
    stem = Path(loaded.path).name.split(".")[0] if loaded.path else "model"
    suffix = ".head.safetensors" if head_only else ".safetensors"
    paths = {n: Path(out) if out is not None else Path(out_dir) / f"{stem}.{n}{suffix}" for n in names}
    if auto:  # the pick (maybe NAME+temperature) is known only after fitting; every candidate's path is checked
        paths.update({f"{n}+temperature": Path(out_dir) / f"{stem}.{n}+temperature{suffix}" for n in names})
        if out is not None:
            paths = {n: Path(out) for n in paths}
    inputs = tuple(Path(p) for p in (loaded.path, o.head_file) if p)
    for path in paths.values():  # fail before fitting, not after
        if any(same_file(src, path) for src in inputs):
            raise UsageError(f"refusing to write '{path}' over an input file", hint="choose another --out")
    _, val, _ = load_features(loaded, data, "val", o, progress=progress)
    _, test, prep = load_features(loaded, data, "test", o, progress=progress)
    release_workers()  # under torchrun: the ranks shared the three extractions; fitting runs on rank 0
    base = audit(
        loaded,
        data=data,
        split="test",
        options=o,
        hierarchy=hierarchy,
        n_bins=n_bins,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    warning = val_warning((train.logits, train.labels), (val.logits, val.labels), (test.logits, test.labels))
    if warning:
        base.warnings.append(warning)
    results: dict[str, HeadResult] = {
        "original": HeadResult(
            "original", base.result, None, str(loaded.path) if loaded.path else None, base.hierarchy,
            sections=base.sections,
        )
    }  # fmt: skip
    fit = {s: FitData(f.features, f.logits, f.labels) for s, f in (("train", train), ("val", val))}
    if train_views:
        fit["train"] = load_train_views(loaded, data, train_views, augment, o, seed=seed, progress=progress)
    fitted: list[Any] = []
    if auto:
        selection = select_head(
            fit["train"], fit["val"], candidates=tuple(names), params=per_head, base=loaded.head, hierarchy=tree,
            select=select, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed, progress=progress,
        )  # fmt: skip
        fitted = [selection.picked]
        names = [selection.picked.name]
        paths = {names[0]: paths[names[0]]}
        auto_info = {**selection.to_dict(), "reason": selection.reason()}
    else:
        for name in names:
            fitted.append(
                get_head(name)(per_head[name]).fit(
                    fit["train"], fit["val"], base=loaded.head, hierarchy=tree, progress=progress
                )
            )
    original_val_nll = nll(val.logits, val.labels)
    reference = None  # temperature scaling's test predictions: every head's verdict is also against it
    for head in fitted:
        name = head.name
        # a head fitted on train but worse on val than what it replaces: say so (val only, no test peeking)
        if head.fits_on == "train" and (v := nll(head.predict_log_proba(val.features), val.labels)) > original_val_nll:
            why = (f"it learned from {train_views} augmented views of train; try --head {name}+temperature"
                   if train_views else "it learned from train features the backbone may have memorised; try "
                   f"--train-views 4 (augmented views), --head {name}+temperature")  # fmt: skip
            base.warnings.append(
                f"head '{name}' has val NLL {v:.4f}, worse than the original head's {original_val_nll:.4f}: {why} "
                "or --head auto"
            )
        log_probs = head.predict_log_proba(test.features, batch_size=o.batch_size)
        if name == "temperature":
            reference = log_probs
        res = compute_metrics(test.labels, logits=log_probs, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
        results[name] = HeadResult(
            name, res, head, None, _hierarchy_section(tree, log_probs, test.labels, n_bootstrap, seed)
        )
        results[name].log_probs = log_probs
        results[name].sections = compute_sections(log_probs, test.labels)
    if reference is None and isinstance(loaded.head, torch.nn.Linear):
        t = get_head("temperature")(get_head("temperature").Params(seed=seed)).fit(
            fit["train"], fit["val"], base=loaded.head
        )
        reference = t.predict_log_proba(test.features, batch_size=o.batch_size)
    for name, r in results.items():
        if name == "original":
            continue
        against = {"original": test.logits, **({"temperature": reference} if reference is not None else {})}
        r.verdicts = {
            who: verdicts(ref, r.log_probs, test.labels, n_bins=n_bins, n_bootstrap=max(n_bootstrap, 20), seed=seed)
            for who, ref in against.items()
        }
    if robustness:
        variants = [Variant("original", loaded)] + [Variant(n, loaded, results[n].head.module_) for n in names]
        sections = _robustness(base, variants, robustness, data, "test", test, prep, o, n_bins, seed, progress)
        for n, sec in sections.items():
            results[n].robustness = sec
    for name, path in paths.items():  # every head fitted: only now is anything written
        head = results[name].head
        if head_only:
            save_head(head.module_, head.info(), loaded, path)
        else:
            meta = {
                "retrained_from": loaded.sha256,
                "retrained_on": f"{data}:train (selected on val{', val from test' if o.val_from == 'test' else ''})",
                "data": data,
            }
            save_checkpoint(
                loaded.with_head(head.module_, head.info()),
                path,
                preprocessing=prep,
                extra_metadata=meta,
                inputs=inputs,
            )
        results[name].checkpoint = str(path)
    base.settings["retrain"] = {
        **({"auto": auto_info} if auto else {}),
        "heads": names,
        "data": data,
        "head_only": head_only,
        "skipped": skipped,
        "hierarchy": tree.source if tree else None,
        "train_views": {"views": train_views, "augment": augment} if train_views else None,
    }
    return RetrainReport(base, results)
