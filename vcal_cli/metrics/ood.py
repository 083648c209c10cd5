"""Out-of-distribution detection: the threshold-free metrics of a score (the detectors are `vcal_cli.detectors`).

Convention (torch-uncertainty, OpenOOD, pytorch-ood): OOD is the positive class and every score is
"higher = more OOD". AUROC is exact (average ranks for ties, as scikit-learn's trapezoid); AUPR is the
average precision over distinct thresholds (scikit-learn's `average_precision_score`); FPR95 is the
fraction of in-distribution samples flagged at the first threshold that recalls 95% of the OOD ones.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vcal_cli.errors import MetricError


def _labels_scores(id_scores: Tensor, ood_scores: Tensor) -> tuple[Tensor, Tensor]:
    if len(id_scores) == 0 or len(ood_scores) == 0:
        raise MetricError("OOD metrics need in- and out-of-distribution samples")
    s = torch.cat([id_scores.double(), ood_scores.double()])
    if not torch.isfinite(s).all():
        raise MetricError("OOD scores hold NaN or inf")
    y = torch.cat([torch.zeros(len(id_scores)), torch.ones(len(ood_scores))]).double()
    return s, y


def _ranking(s: Tensor) -> tuple[Tensor, Tensor]:
    """(the order of the scores, highest first; in that order, the last position of each run of tied scores)."""
    order = torch.sort(s, descending=True, stable=True).indices
    ranked = s[order]
    last = torch.ones(len(s), dtype=torch.bool)
    last[:-1] = ranked[1:] != ranked[:-1]
    return order, last


def _curve(s: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative true and false positives at each distinct threshold, highest score first."""
    order, last = _ranking(s)
    y = y[order]
    return y.cumsum(0)[last], (1 - y).cumsum(0)[last]


def auroc(id_scores: Tensor, ood_scores: Tensor) -> float:
    s, y = _labels_scores(id_scores, ood_scores)
    tp, fp = _curve(s, y)
    tpr = torch.cat([torch.zeros(1, dtype=tp.dtype), tp / tp[-1]])
    fpr = torch.cat([torch.zeros(1, dtype=fp.dtype), fp / fp[-1]])
    return float(torch.trapezoid(tpr, fpr))


def aupr(id_scores: Tensor, ood_scores: Tensor) -> float:
    s, y = _labels_scores(id_scores, ood_scores)
    tp, fp = _curve(s, y)
    precision, recall = tp / (tp + fp), tp / tp[-1]
    return float(((recall - torch.cat([torch.zeros(1, dtype=recall.dtype), recall[:-1]])) * precision).sum())


def fpr_at_95_tpr(id_scores: Tensor, ood_scores: Tensor) -> float:
    s, y = _labels_scores(id_scores, ood_scores)
    tp, fp = _curve(s, y)
    i = int(torch.nonzero(tp / tp[-1] >= 0.95)[0])
    return float(fp[i] / fp[-1])


OOD_METRICS = ("auroc", "aupr", "aupr_in", "fpr95")  # AUPR with OOD positive (as `aupr`) and with ID positive
HIGHER_IS_BETTER = {"auroc": True, "aupr": True, "aupr_in": True, "fpr95": False}
RESAMPLE_ROWS = 50  # resamples per block: each (rows, N) float64 temporary stays small


def resampled_metrics(
    id_scores: Tensor, ood_scores: Tensor, id_counts: Tensor, ood_counts: Tensor
) -> dict[str, Tensor]:
    """Every OOD metric (1 + R,) on the sample (row 0 of the counts, all ones) and on each stratified resample: row r
    counts how often each ID and each OOD sample is drawn (`compute.resample_counts` for each set apart, so both
    sets keep their sizes). One sort of the pooled scores serves every resample: a resample only re-weights the
    cumulative true and false positives at each distinct threshold. Row 0 equals `auroc`, `aupr`, `fpr_at_95_tpr`."""
    s, y = _labels_scores(id_scores, ood_scores)
    out: dict[str, list[Tensor]] = {k: [] for k in OOD_METRICS}
    w_all = torch.cat([id_counts, ood_counts], 1)
    out_rank, in_rank = _ranking(s), _ranking(-s)  # OOD positive, and ID positive (scores negated)
    for a in range(0, len(w_all), RESAMPLE_ROWS):
        w = w_all[a : a + RESAMPLE_ROWS].double()
        tp, fp = _weighted_curve(y, w, *out_rank)
        out["auroc"].append(_trapezoid(tp, fp))
        out["aupr"].append(_average_precision(tp, fp))
        out["fpr95"].append(_fpr_at(tp, fp, 0.95))
        tp_in, fp_in = _weighted_curve(1 - y, w, *in_rank)
        out["aupr_in"].append(_average_precision(tp_in, fp_in))
    return {k: torch.cat(v) for k, v in out.items()}


def _weighted_curve(y: Tensor, w: Tensor, order: Tensor, last: Tensor) -> tuple[Tensor, Tensor]:
    """`_curve` for each row of weights w (R, N), in a ranking `_ranking` made: (R, T) cumulative weighted true and
    false positives."""
    y, w = y[order], w[:, order]
    return (w * y).cumsum(1)[:, last], (w * (1 - y)).cumsum(1)[:, last]


def _with_zero(x: Tensor) -> Tensor:
    return torch.cat([torch.zeros(len(x), 1, dtype=x.dtype), x], 1)


def _trapezoid(tp: Tensor, fp: Tensor) -> Tensor:
    tpr, fpr = _with_zero(tp / tp[:, -1:]), _with_zero(fp / fp[:, -1:])
    return ((fpr[:, 1:] - fpr[:, :-1]) * (tpr[:, 1:] + tpr[:, :-1]) / 2).sum(1)


def _average_precision(tp: Tensor, fp: Tensor) -> Tensor:
    recall = _with_zero(tp / tp[:, -1:])
    flagged = tp + fp
    precision = torch.where(flagged > 0, tp / flagged.clamp_min(1e-300), torch.zeros_like(tp))
    return ((recall[:, 1:] - recall[:, :-1]) * precision).sum(1)


def _fpr_at(tp: Tensor, fp: Tensor, recall: float) -> Tensor:
    i = (tp / tp[:, -1:] >= recall).double().argmax(1, keepdim=True)  # the first threshold that reaches it
    return (fp.gather(1, i) / fp[:, -1:])[:, 0]


def aupr_in(id_scores: Tensor, ood_scores: Tensor) -> float:
    """Average precision with the in-distribution samples positive (scores negated)."""
    return aupr(-ood_scores.double(), -id_scores.double())
