"""Out-of-distribution detection on cached features: every score, every metric, per OOD data set."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vcal_cli.metrics.ood import (
    aupr,
    auroc,
    energy_score,
    fpr_at_95_tpr,
    mahalanobis_fit,
    mahalanobis_score,
    max_logit_score,
    msp_score,
)

SCORES = ("msp", "max_logit", "energy", "mahalanobis")


def ood_scores(logits: Tensor, features: Tensor, means: Tensor, precision: Tensor) -> dict[str, Tensor]:
    """Every score (higher = more OOD) for one set of samples."""
    return {
        "msp": msp_score(logits),
        "max_logit": max_logit_score(logits),
        "energy": energy_score(logits),
        "mahalanobis": mahalanobis_score(features, means, precision),
    }


def ood_evaluation(
    id_test: Any, ood_sets: dict[str, Any], train: Any
) -> tuple[list[dict[str, Any]], dict[str, dict[str, tuple[Tensor, Tensor]]]]:
    """report.json's `ood` rows ({dataset, score, auroc, aupr, fpr95}) and the raw scores for histograms.

    `id_test`, `train` and each OOD set are FeatureSets of the same model; Mahalanobis uses the class
    means and tied covariance of the train features.
    """
    means, precision = mahalanobis_fit(train.features, train.labels, train.logits.shape[1])
    id_s = ood_scores(id_test.logits, id_test.features, means, precision)
    rows, raw = [], {}
    for name, fs in ood_sets.items():
        o_s = ood_scores(fs.logits, fs.features, means, precision)
        raw[name] = {k: (id_s[k], o_s[k]) for k in SCORES}
        for k in SCORES:
            rows.append(
                {
                    "dataset": name,
                    "score": k,
                    "auroc": auroc(id_s[k], o_s[k]),
                    "aupr": aupr(id_s[k], o_s[k]),
                    "fpr95": fpr_at_95_tpr(id_s[k], o_s[k]),
                }
            )
    return rows, raw
