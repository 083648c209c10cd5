"""Steps shared by the commands: precomputed logits, hierarchies and the robustness sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from vcal_cli.errors import DataError, UsageError
from vcal_cli.evaluations.robustness import RobustnessOptions, Variant
from vcal_cli.evaluations.robustness import evaluate as evaluate_robustness
from vcal_cli.hierarchy import Hierarchy, builtin_for, load_hierarchy
from vcal_cli.metrics.conformal import Calibrated, ConformalOptions, conformal_sets
from vcal_cli.metrics.conformal import check_options as check_conformal
from vcal_cli.metrics.hierarchy import hierarchy_metrics
from vcal_cli.metrics.risk_control import abstention, check_risk
from vcal_cli.reports.schema import AuditReport
from vcal_cli.session.workbench import Workbench


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
    scores = arrays["logits"] if "logits" in arrays else arrays["probs"]
    if len(arrays["labels"]) == 0 or scores.ndim == 0 or len(scores) == 0:
        raise DataError(f"--logits '{path}' holds no rows", hint="write at least one prediction and its label")
    if len(scores) != len(arrays["labels"]):
        raise DataError(f"--logits '{path}': {len(scores)} rows of predictions but {len(arrays['labels'])} labels")
    return arrays.get("logits"), arrays.get("probs") if "logits" not in arrays else None, arrays["labels"]


def robustness_sections(
    report: AuditReport,
    bench: Workbench,
    variants: list[Variant],
    r: RobustnessOptions,
    split: str,
    n_bins: int,
    seed: int,
    sets: dict[str, dict[tuple[str, float], Calibrated]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the robustness evaluations for every variant; the original head's sections and the settings go into
    `report`, every variant's sections are returned by name. `sets` (per variant, its conformal calibrations) adds
    the prediction sets' coverage and size under each corruption, with the val thresholds."""
    sections, extra = evaluate_robustness(bench, variants, r, split=split, n_bins=n_bins, seed=seed, sets=sets)
    report.set_robustness(sections["original"])
    report.settings.update(extra)
    return sections


def resolve_hierarchy(spec: str | Path | None, bench: Workbench) -> Hierarchy | None:
    """The hierarchy in the model's class order: `spec`, else the data set's built-in one, else None. The
    built-in one is skipped while no class names are known (the data set not found yet): its mismatch error
    would hide the one that says where the data is."""
    names = list(bench.class_names or [])
    if not spec and not names:
        return None
    spec = spec or builtin_for(bench.name)
    return load_tree(spec, names) if spec else None


def load_tree(spec: str | Path | None, names: list[str]) -> Hierarchy | None:
    """The hierarchy `spec` in the order of `names`, or None without a spec."""
    return load_hierarchy(spec).reorder(names) if spec else None


def hierarchy_section(
    tree: Hierarchy | None, scores: Any, labels: Any, n_bootstrap: int, seed: int
) -> dict[str, Any] | None:
    """report.json's `hierarchy` object for a tree (None without one)."""
    if tree is None:
        return None
    hm = hierarchy_metrics(
        torch.as_tensor(scores), torch.as_tensor(labels), tree.distances(), n_bootstrap=n_bootstrap, seed=seed
    )
    return {"source": tree.source, "height": tree.height, **hm.to_dict()}


def check_guarantees(o: ConformalOptions | None, bench: Workbench | None) -> tuple[ConformalOptions | None, dict]:
    """`--conformal` and `--target-risk` checked before any extraction (an alpha too small for the val split too);
    returns the options with their scores settled, and the scores skipped with why."""
    if not o:
        return o, {}
    if bench is None:
        raise UsageError(
            "--conformal and --target-risk calibrate on a val split: give a CHECKPOINT, not --logits",
            hint="on arrays from any framework, call vcal_cli.prediction_sets(val_logits, val_labels, test_logits, "
            "test_labels, ...)",
        )
    check_risk(o.target_risk, o.delta)
    return check_conformal(o, bench.labels("val") if o.alphas else None, bench.class_names)


def guarantees(
    val_scores: Tensor,
    val_labels: Tensor,
    test_scores: Tensor,
    test_labels: Tensor,
    o: ConformalOptions,
    class_names: list[str] | None = None,
) -> tuple[dict[str, Any], dict[tuple[str, float], Calibrated]]:
    """One predictor's `conformal` and `risk_control` sections (calibrated on val, scored on test) from its logits or
    log-probabilities, and its conformal calibrations (to score shifted splits with the same thresholds)."""
    vp, tp = torch.softmax(val_scores.double(), 1), torch.softmax(test_scores.double(), 1)
    out: dict[str, Any] = {}
    fitted: dict[tuple[str, float], Calibrated] = {}
    if o.alphas:
        out["conformal"], fitted = conformal_sets(vp, val_labels, tp, test_labels, o, class_names)
    if o.target_risk is not None:
        out["risk_control"] = abstention(vp, val_labels, tp, test_labels, o.target_risk, o.delta)
    return out, fitted
