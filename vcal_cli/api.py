"""The functions behind the commands. Users can import these directly:

from vcal_cli import audit
report = audit("sample_checkpoints/mlp_digits.safetensors", data="digits")
print(report.metrics["ece"])
"""

from __future__ import annotations

import dataclasses as dc
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from vcal_cli._io import same_file, sha256_file
from vcal_cli.checkpoints import LoadedModel, save_checkpoint, save_head
from vcal_cli.data import load_split
from vcal_cli.errors import DataError, ReportError, UsageError, VcalError
from vcal_cli.evaluations.robustness import RobustnessOptions, Variant, check_options
from vcal_cli.evaluations.robustness import evaluate as evaluate_robustness
from vcal_cli.features import FeatureSet, Track, quiet
from vcal_cli.features.distributed import release_workers
from vcal_cli.features.options import ExtractOptions, default_data, load_features, model_preprocessing, open_checkpoint
from vcal_cli.gate import DEFAULT_RULES, GateResult, load_config
from vcal_cli.gate import evaluate as evaluate_rules
from vcal_cli.heads import FitData, get_head, list_heads
from vcal_cli.heads.select import AUTO, select_head
from vcal_cli.heads.temperature import fit_inverse_temperature
from vcal_cli.hierarchy import builtin_for, load_hierarchy
from vcal_cli.metrics import DEFAULT_N_BINS, compute_metrics
from vcal_cli.metrics._validate import check_bins
from vcal_cli.metrics.hierarchy import hierarchy_metrics
from vcal_cli.metrics.paired import paired_deltas, verdicts
from vcal_cli.metrics.sanity import audit_warnings, val_warning
from vcal_cli.reports import read_report
from vcal_cli.reports.schema import AuditReport, robustness_dict
from vcal_cli.reports.summary import audit_summary, retrain_summary

__all__ = [  # ExtractOptions .. open_checkpoint: re-exported from the features layer (`vcal_cli.features.options`)
    "ExtractOptions",
    "default_data",
    "load_features",
    "model_preprocessing",
    "open_checkpoint",
    "audit",
    "export_features",
    "load_logits",
    "retrain",
    "gate",
    "compare",
]


def load_logits(path: str | Path) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """(logits, probs, labels) from an .npz or .safetensors file holding `logits` or `probs`, and `labels`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--logits '{path}' does not exist")
    try:
        if path.suffix == ".safetensors":
            arrays = {k: v for k, v in load_file(str(path)).items()}
        else:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: torch.from_numpy(np.asarray(z[k])) for k in z.files}
    except (SafetensorError, ValueError, OSError, EOFError, Exception) as e:  # a bad file
        raise DataError(f"--logits '{path}' is not a readable .npz or .safetensors file ({e})") from None
    if "labels" not in arrays or not ({"logits", "probs"} & set(arrays)):
        raise DataError(f"--logits '{path}' holds {sorted(arrays)}; it needs 'labels' and 'logits' or 'probs'")
    return arrays.get("logits"), arrays.get("probs") if "logits" not in arrays else None, arrays["labels"]


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
    s = fit_inverse_temperature(val.logits, val.labels)
    m = compute_metrics(test.labels, logits=test.logits.double() * s, n_bins=n_bins, n_bootstrap=0, with_details=False)
    return {"temperature": 1 / s, "ece": m.metrics.ece, "nll": m.metrics.nll, "command": command}


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
        class_names=loaded.class_names,
        suggestion=suggestion,
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


# ---------------------------------------------------------------------------------------------------------------
# retrain


@dataclass
class HeadResult:
    """One head of a retrain: its fitted estimator, test metrics and the files written for it."""

    name: str
    result: Any  # MetricsResult on the test split
    head: Any = None  # the fitted Head (None for the original)
    checkpoint: str | None = None
    hierarchy: dict[str, Any] | None = None  # mistake-severity metrics, when a hierarchy is known
    robustness: dict[str, Any] | None = None  # ood / shift / adversarial sections (see RobustnessOptions)
    verdicts: dict[str, Any] | None = None  # against the original and temperature scaling (metrics.paired)
    log_probs: Any = field(default=None, repr=False)  # test log-probabilities (not written)


@dataclass
class RetrainReport:
    """The original head and every retrained head, audited on the same test split."""

    base: AuditReport  # the original checkpoint's audit (top-level report keys)
    heads: dict[str, HeadResult]

    def to_dict(self) -> dict[str, Any]:
        d = self.base._dict()
        d["heads"] = {
            name: {
                "metrics": h.result.metrics.as_dict(),
                "intervals": {k: list(v) for k, v in h.result.intervals.items()},
                "reliability": [asdict(b) for b in h.result.reliability],
                "checkpoint": h.checkpoint,
                **({"hierarchy": h.hierarchy} if h.hierarchy else {}),
                **({"params": asdict(h.head.params), "fitted": h.head.extra_report()} if h.head else {}),
                **({"verdicts": h.verdicts} if h.verdicts else {}),
                **robustness_dict(h.robustness or {}),
                **({"details": h.result.details.to_dict()} if h.result.details else {}),
            }
            for name, h in self.heads.items()
        }
        d.pop("suggestion", None)  # the retrain itself is the fix
        d["summary"] = retrain_summary(d)
        d["summary"]["lines"] += [f"Original head: {x}" for x in audit_summary(d)["lines"][:2]]  # verdict, where
        return d

    def to_json(self) -> str:

        return json.dumps(self.to_dict(), indent=2) + "\n"


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
    adversarial evaluations for the original and every head, on the same cached features.
    """

    check_bins(n_bins)
    auto = "auto" in heads
    names = resolve_heads(heads)
    o = options or ExtractOptions()
    loaded = open_checkpoint(checkpoint, o)
    data = default_data(loaded, data)
    if robustness:
        check_options(robustness, o.data_root)  # a bad corruption or OOD set fails before any fitting
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
        "original": HeadResult("original", base.result, None, str(loaded.path) if loaded.path else None, base.hierarchy)
    }
    fit = {s: FitData(f.features, f.logits, f.labels) for s, f in (("train", train), ("val", val))}
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
    reference = None  # temperature scaling's test predictions: every head's verdict is also against it
    for head in fitted:
        name = head.name
        log_probs = head.predict_log_proba(test.features, batch_size=o.batch_size)
        if name == "temperature":
            reference = log_probs
        res = compute_metrics(test.labels, logits=log_probs, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
        results[name] = HeadResult(
            name, res, head, None, _hierarchy_section(tree, log_probs, test.labels, n_bootstrap, seed)
        )
        results[name].log_probs = log_probs
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
    }
    return RetrainReport(base, results)


def _robustness(report, variants, r, data, split, test, prep, o, n_bins, seed, progress) -> dict[str, Any]:
    """Run the robustness evaluations; the original head's sections and the settings go into `report`."""

    sections, extra = evaluate_robustness(
        variants, r, data=data, split=split, test=test, prep=prep, options=o, n_bins=n_bins, seed=seed,
        progress=progress,
    )  # fmt: skip
    report.set_robustness(sections["original"])
    report.settings.update(extra)
    return sections


def _resolve_hierarchy(spec: str | Path | None, data: str, loaded: LoadedModel, o: ExtractOptions):
    """The hierarchy in the model's class order: `spec`, else the data set's built-in one, else None."""

    spec = spec or builtin_for(data)
    if spec is None:
        return None
    names = loaded.class_names or load_split(data, "test", root=o.data_root).classes
    return _load_tree(spec, list(names))


def _load_tree(spec: str | Path | None, names: list[str]):
    """The hierarchy `spec` in the order of `names`, or None without a spec."""

    return load_hierarchy(spec).reorder(names) if spec else None


def _hierarchy_section(tree, scores, labels, n_bootstrap: int, seed: int) -> dict[str, Any] | None:
    """report.json's `hierarchy` object for a tree (None without one)."""
    if tree is None:
        return None

    hm = hierarchy_metrics(
        torch.as_tensor(scores), torch.as_tensor(labels), tree.distances(), n_bootstrap=n_bootstrap, seed=seed
    )
    return {"source": tree.source, "height": tree.height, **hm.to_dict()}


# ---------------------------------------------------------------------------------------------------------------
# gate and compare


def _gate_side(
    spec: str | Path,
    role: str,
    data: str | None,
    split: str,
    o: ExtractOptions,
    n_bins: int,
    n_bootstrap: int,
    seed: int,
    progress: Track,
) -> tuple[dict[str, Any], FeatureSet | None]:
    """A report dict for one side of the gate; a checkpoint is audited (its features come back for pairing)."""

    path = Path(spec)
    if not path.exists():
        raise ReportError(f"{role} '{path}' does not exist", hint="give a report.json or a checkpoint")
    if path.suffix == ".json":
        return read_report(path), None
    loaded = open_checkpoint(path, o)
    data = default_data(loaded, data)
    loaded, fs, _ = load_features(loaded, data, split, o, progress=progress)
    rep = audit(loaded, data=data, split=split, options=o, n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed)
    return rep.to_dict(), fs


def gate(
    current: str | Path,
    baseline: str | Path,
    *,
    rules: list[Any] | None = None,
    data: str | None = None,
    split: str = "test",
    options: ExtractOptions | None = None,
    config_dir: str | Path = ".",
    n_bins: int = DEFAULT_N_BINS,
    n_bootstrap: int = 200,
    seed: int = 0,
    progress: Track = quiet,
) -> Any:
    """Check `current` against `baseline` (each a report.json or a checkpoint) and return a `GateResult`.

    Rules: `rules` if given, else `[gate]` in vcal.toml / `[tool.vcal.gate]` in pyproject.toml (searched
    from `config_dir` upwards), else the defaults (`vcal_cli.gate.DEFAULT_RULES`).
    """

    o = options or ExtractOptions()
    if not rules:
        rules, _ = load_config(config_dir)
    rules = list(rules or DEFAULT_RULES)
    base, base_fs = _gate_side(baseline, "baseline", data, split, o, n_bins, n_bootstrap, seed, progress)
    cur, cur_fs = _gate_side(current, "current", data, split, o, n_bins, n_bootstrap, seed, progress)
    paired = None
    method = "the two reports' 95% bootstrap intervals (difference > 1.96 combined standard errors)"
    if base_fs is not None and cur_fs is not None:
        if not torch.equal(base_fs.labels, cur_fs.labels):
            raise ReportError("the two checkpoints were audited on different samples; use the same --data and --split")
        paired = paired_deltas(
            base_fs.logits, cur_fs.logits, cur_fs.labels, n_bins=n_bins, n_bootstrap=max(n_bootstrap, 1), seed=seed
        )
        method = f"paired bootstrap on the same {len(cur_fs.labels)} test samples ({max(n_bootstrap, 1)} resamples)"
    check_comparable(base, cur, str(baseline), str(current))
    results = evaluate_rules(rules, base, cur, paired=paired, names=(str(baseline), str(current)))
    warnings = [f"{role} {name}: {w}" for role, name, rep in (("baseline", baseline, base), ("current", current, cur))
                for w in rep.get("warnings") or []]  # fmt: skip
    return GateResult(results, method, str(baseline), str(current), warnings)


def check_comparable(base: dict[str, Any], cur: dict[str, Any], base_name: str, cur_name: str) -> None:
    """The gate compares like with like: the same data set, split, sample count and bins, or it stops."""

    facts = {
        "data set": lambda r: r["data"].get("name"),
        "split": lambda r: r["data"].get("split"),
        "sample count": lambda r: r["data"].get("n"),
        "bins": lambda r: r["settings"].get("bins"),
        "calibration split": lambda r: (r["settings"].get("options") or {}).get("val_from", "train"),
    }
    for what, get in facts.items():
        b, c = get(base), get(cur)
        if b != c:
            raise ReportError(
                f"the baseline '{base_name}' and the current '{cur_name}' differ in {what} ({b} vs {c}); "
                "the gate compares like with like",
                hint="audit both on the same --data, --split and --bins",
            )


def compare(reports: list[str | Path]) -> list[dict[str, Any]]:
    """Read several report.json files for a side-by-side comparison (at least two)."""

    if len(reports) < 2:
        raise UsageError("compare needs at least two reports")
    return [read_report(r) for r in reports]
