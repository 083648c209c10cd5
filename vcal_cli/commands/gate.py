"""`gate` and `compare`: a calibration regression check for CI, and reports side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vcal_cli.commands.audit import audit_features
from vcal_cli.errors import ReportError, UsageError
from vcal_cli.estimation import Statistics
from vcal_cli.features import FeatureSet, Track, quiet
from vcal_cli.gate import DEFAULT_RULES, GateResult, load_config
from vcal_cli.gate import evaluate as evaluate_rules
from vcal_cli.metrics.paired import noise_floors, paired_deltas
from vcal_cli.reports import read_report
from vcal_cli.session.workbench import ExtractOptions, Workbench


def gate_side(
    spec: str | Path,
    role: str,
    data: str | None,
    split: str,
    o: ExtractOptions,
    stats: Statistics,
    progress: Track,
) -> tuple[dict[str, Any], FeatureSet | None]:
    """A report dict for one side of the gate; a checkpoint is audited (its features come back for pairing)."""
    path = Path(spec)
    if not path.exists():
        raise ReportError(f"{role} '{path}' does not exist", hint="give a report.json or a checkpoint")
    if path.suffix == ".json":
        return read_report(path), None
    bench = Workbench.open(path, data, o, progress=progress)
    fs = bench.features(split)
    return audit_features(bench, split, fs, None, stats).to_dict(), fs


def gate(
    current: str | Path,
    baseline: str | Path,
    *,
    rules: list[Any] | None = None,
    data: str | None = None,
    split: str = "test",
    options: ExtractOptions | None = None,
    config_dir: str | Path = ".",
    stats: Statistics | None = None,
    progress: Track = quiet,
) -> Any:
    """Check `current` against `baseline` (each a report.json or a checkpoint) and return a `GateResult`.

    Rules: `rules` if given, else `[gate]` in vcal.toml / `[tool.vcal.gate]` in pyproject.toml (searched
    from `config_dir` upwards), else the defaults (`vcal_cli.gate.DEFAULT_RULES`). A checkpoint is audited with
    `stats` (bins, bootstrap resamples, seed; the paired intervals use them too).
    """

    o = options or ExtractOptions()
    if not rules:
        rules, _ = load_config(config_dir)
    rules = list(rules or DEFAULT_RULES)
    stats = stats or Statistics()
    n_bins, n_bootstrap, seed = stats.n_bins, stats.n_bootstrap, stats.seed
    before, before_fs = gate_side(baseline, "baseline", data, split, o, stats, progress)
    after, after_fs = gate_side(current, "current", data, split, o, stats, progress)
    paired = None
    method = "the two reports' 95% bootstrap intervals (difference > 1.96 combined standard errors)"
    if before_fs is not None and after_fs is not None:
        if not torch.equal(before_fs.labels, after_fs.labels):
            raise ReportError("the two checkpoints were audited on different samples; use the same --data and --split")
        paired = paired_deltas(
            before_fs.logits,
            after_fs.logits,
            after_fs.labels,
            n_bins=n_bins,
            n_bootstrap=max(n_bootstrap, 1),
            seed=seed,
            floors=(noise_floors(before.get("debiased")), noise_floors(after.get("debiased"))),
        )
        method = f"paired bootstrap on the same {len(after_fs.labels)} test samples ({max(n_bootstrap, 1)} resamples)"
    check_comparable(before, after, str(baseline), str(current))
    results = evaluate_rules(rules, before, after, paired=paired, names=(str(baseline), str(current)))
    sides = (("baseline", baseline, before), ("current", current, after))
    warnings = [f"{role} {name}: {w}" for role, name, rep in sides for w in rep.get("warnings") or []]
    return GateResult(results=results, method=method, baseline=str(baseline), current=str(current), warnings=warnings)


def check_comparable(before: dict[str, Any], after: dict[str, Any], base_name: str, cur_name: str) -> None:
    """The gate compares like with like: the same data set, split, sample count and bins, or it stops."""

    facts = {
        "data set": lambda r: r["data"].get("name"),
        "split": lambda r: r["data"].get("split"),
        "sample count": lambda r: r["data"].get("n"),
        "bins": lambda r: r["settings"].get("bins"),
        "calibration split": lambda r: (r["settings"].get("options") or {}).get("val_from", "train"),
    }
    for what, get in facts.items():
        b, c = get(before), get(after)
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
