"""Out-of-distribution detection on cached features: every score, every metric, per OOD data set."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vcal_cli.metrics.ood import (
    aupr,
    auroc,
    energy_score,
    entropy_score,
    fpr_at_95_tpr,
    mahalanobis_fit,
    mahalanobis_score,
    max_logit_score,
    msp_score,
)

SCORES = ("msp", "entropy", "max_logit", "energy", "mahalanobis")  # then each head's own (see Variant.uncertainty)


def ood_scores(variant: Any, fs: Any, maha: tuple[Tensor, Tensor] | None) -> dict[str, Tensor]:
    """Every score (higher = more OOD) of one head on one FeatureSet.

    MSP and predictive entropy for every head; max logit and energy only for a head that outputs logits
    (vcal's heads output log-probabilities, whose energy is 0); Mahalanobis on the features (`maha`: class
    means and tied precision, or None to skip); and the head's own uncertainty where it has one.
    """
    scores = variant.scores(fs)
    out = {"msp": msp_score(scores), "entropy": entropy_score(scores)}
    if variant.raw_logits:
        out |= {"max_logit": max_logit_score(scores), "energy": energy_score(scores)}
    if maha is not None:
        out["mahalanobis"] = mahalanobis_score(fs.features, *maha)
    return out | variant.uncertainty(fs.features)


def ood_evaluation(
    id_test: Any, ood_sets: dict[str, Any], train: Any, variant: Any, *, mahalanobis: bool = True
) -> tuple[list[dict[str, Any]], dict[str, dict[str, tuple[Tensor, Tensor]]]]:
    """report.json's `ood` rows ({dataset, score, auroc, aupr, fpr95}) and the raw scores for histograms.

    `id_test`, `train` and each OOD set are FeatureSets of the same backbone; `variant` the head scored
    (`vcal_cli.evaluations.robustness.Variant`). Mahalanobis uses the class means and tied covariance of
    the train features; it does not depend on the head, so a retrain reports it once, for the original.
    """
    maha = mahalanobis_fit(train.features, train.labels, train.logits.shape[1]) if mahalanobis else None
    id_s = ood_scores(variant, id_test, maha)
    rows, raw = [], {}
    for name, fs in ood_sets.items():
        o_s = ood_scores(variant, fs, maha)
        raw[name] = {k: (id_s[k], o_s[k]) for k in id_s}
        for k in id_s:
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
