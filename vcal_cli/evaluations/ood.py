"""Out-of-distribution detection on cached features: every detector, every metric with its bootstrap interval, and
the paired verdict of every detector against MSP (and of the best against the runner-up), per OOD data set.

Detectors on the head's outputs (MSP, entropy, GEN; max logit, energy, ViM and ReAct where the outputs are raw
logits) are scored for every head; detectors on the features alone (Mahalanobis, relative Mahalanobis, KNN) do not
depend on the head, so they are reported once, for the original. Each is fitted once on the train split.

Intervals: the ID and OOD samples are resampled apart (a stratified bootstrap: both sets keep their sizes), with the
same resamples for every detector of a set, so the difference of two detectors has a paired percentile interval; its
verdict is the project's rule (`metrics.paired.verdict_of`: better or worse when the interval excludes 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vcal_cli.detectors import DETECTORS, Detector, Linear, Scored, Train
from vcal_cli.metrics.compute import resample_counts
from vcal_cli.metrics.ood import HIGHER_IS_BETTER, OOD_METRICS, resampled_metrics
from vcal_cli.metrics.paired import verdict_of

BASELINE = "msp"
Q = torch.tensor([0.025, 0.975], dtype=torch.float64)


@dataclass
class Fitted:
    """The detectors fitted on one train split, and why any of them cannot run."""

    detectors: dict[str, Detector]
    skipped: dict[str, str]

    def settings(self, n_bootstrap: int, seed: int) -> dict[str, Any]:
        return {
            "detectors": {n: {"paper": DETECTORS.describe(n), **d.settings()} for n, d in self.detectors.items()},
            "skipped": self.skipped,
            "n_bootstrap": n_bootstrap,
            "seed": seed,
            "intervals": "stratified percentile bootstrap (ID and OOD resampled apart), paired across detectors",
            "baseline": BASELINE,
        }


def fit_detectors(names: tuple[str, ...], train: Any, head: Any, *, seed: int, **params: Any) -> Fitted:
    """Fit `names` on a train FeatureSet; `head` is the checkpoint's last layer (ViM and ReAct need it linear).
    `params`: knn_k, knn_share (None: the paper's defaults)."""
    linear = Linear.of(head)
    t = Train(
        features=train.features,
        logits=train.logits,
        labels=train.labels,
        num_classes=train.logits.shape[1],
        linear=linear,
        seed=seed,
    )
    fitted, skipped = {}, {}
    for name in names:
        cls = DETECTORS.get(name)
        det = cls(k=params.get("knn_k"), share=params.get("knn_share")) if name == "knn" else cls()
        if det.uses == "features+linear" and linear is None:
            skipped[name] = "needs the checkpoint's last layer as a linear map"
            continue
        det.fit(t)
        fitted[name] = det
    return Fitted(fitted, skipped)


def ood_scores(variant: Any, fs: Any, fitted: Fitted, *, first: bool) -> dict[str, Tensor]:
    """Every applicable detector's scores (higher = more OOD) of one head on one FeatureSet, then the head's own
    uncertainty scores. Feature-only detectors only for the `first` (original) variant."""
    members = getattr(fs, "members", None) if first else None  # an ensemble's, for the original only
    x = Scored(features=fs.features, outputs=variant.scores(fs), raw_logits=variant.raw_logits, members=members)
    out = {}
    for name, det in fitted.detectors.items():
        if det.uses == "features" and not first:
            continue
        if det.applies(x) is None:  # the fit already required the linear map
            out[name] = det.score(x)
    return out | variant.uncertainty(fs.features)


def ood_evaluation(
    id_test: Any, ood_sets: dict[str, Any], variant: Any, fitted: Fitted, *, first: bool, n_bootstrap: int, seed: int
) -> tuple[list[dict[str, Any]], dict[str, dict[str, tuple[Tensor, Tensor]]]]:
    """report.json's `ood` rows ({dataset, score, auroc, aupr, aupr_in, fpr95, intervals, vs_msp, rank}) and the raw
    scores for the pictures."""
    id_s = ood_scores(variant, id_test, fitted, first=first)
    rows, raw = [], {}
    for i, (name, fs) in enumerate(ood_sets.items()):
        o_s = ood_scores(variant, fs, fitted, first=first)
        raw[name] = {k: (id_s[k], o_s[k]) for k in id_s}
        id_c = resample_counts(len(id_test.labels), n_bootstrap, seed + 2 * i)
        ood_c = resample_counts(len(fs.features), n_bootstrap, seed + 2 * i + 1)
        values = {k: resampled_metrics(id_s[k], o_s[k], id_c, ood_c) for k in id_s}
        rows += _rows(name, values, n_bootstrap)
    return rows, raw


def _rows(dataset: str, values: dict[str, dict[str, Tensor]], n_bootstrap: int) -> list[dict[str, Any]]:
    rows = []
    for score, v in values.items():
        row: dict[str, Any] = {"dataset": dataset, "score": score, **{m: float(v[m][0]) for m in OOD_METRICS}}
        if n_bootstrap:
            row["intervals"] = metric_intervals(v)
            if score != BASELINE and BASELINE in values:
                row["vs_msp"] = paired_changes(v, values[BASELINE])
        rows.append(row)
    ranked = sorted(rows, key=lambda r: -r["auroc"])
    for rank, r in enumerate(ranked, 1):
        r["rank"] = rank
    if n_bootstrap and len(ranked) > 1:
        best, second = ranked[0]["score"], ranked[1]["score"]
        ranked[0]["vs_runner_up"] = {"runner_up": second, **paired_changes(values[best], values[second])}
    return rows


def metric_intervals(values: dict[str, Tensor]) -> dict[str, list[float]]:
    """Per metric: the percentile interval of its resamples (`values[m]`: the sample, then each resample, as
    `resampled_metrics` gives them). `benchmarks/bench_ood_intervals.py` measures its coverage."""
    return {m: torch.quantile(values[m][1:], Q).tolist() for m in OOD_METRICS}


def paired_changes(cur: dict[str, Tensor], base: dict[str, Tensor]) -> dict[str, Any]:
    """Per metric: current - base on the sample, its paired percentile interval and the verdict."""
    out = {}
    for m in OOD_METRICS:
        d = cur[m] - base[m]
        lo, hi = torch.quantile(d[1:], Q).tolist()
        out[m] = {"delta": float(d[0]), "interval": [lo, hi], "verdict": verdict_of(lo, hi, not HIGHER_IS_BETTER[m])}
    return out
