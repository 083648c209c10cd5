"""Per-sample scores (accuracy, NLL, Brier) from row chunks, and the area under the risk-coverage curve."""

from __future__ import annotations

import torch
from torch import Tensor

from vcal_cli.errors import MetricError
from vcal_cli.metrics._validate import PROB_CLAMP


def chunk_stats(
    x: Tensor, labels: Tensor, is_logits: bool, buffer: Tensor | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """(probs (n, K) float64, per-sample conf, correct, nll, brier (n,) float64) of a chunk of logits or probs.

    From logits: softmax by exp(x - max) / s, so conf = 1/s and nll = log s + max - x_y (log-sum-exp).
    brier = sum_c p_c^2 - 2 p_y + 1: the sum over classes of (p - onehot)^2 without a one-hot matrix.
    `buffer` (float64, at least n * K elements) receives the float64 copy, so a loop over chunks reuses
    one allocation; the returned probabilities live in it until the next call.
    """
    y = labels[:, None]
    # this chunk's own float64 copy (changed in place below)
    x = buffer[: x.numel()].view(x.shape).copy_(x) if buffer is not None else x.to(torch.float64, copy=True)
    if is_logits:
        bad = ~torch.isfinite(x.sum(1))  # a NaN or inf anywhere in a row makes its float64 sum non-finite
        if bad.any():
            raise MetricError(f"logits hold NaN or inf in {int(bad.sum())} rows")
        m, pred = x.max(1)
        x_y = x.gather(1, y)[:, 0]
        p = x.sub_(m[:, None]).exp_()
        s = p.sum(1)
        p.div_(s[:, None])
        conf, nll = s.reciprocal(), s.log() + m - x_y
    else:
        p = x
        conf, pred = p.max(1)
        nll = -p.gather(1, y)[:, 0].clamp_min(PROB_CLAMP).log()
    p_y = p.gather(1, y)[:, 0]
    brier = torch.bmm(p[:, None, :], p[:, :, None])[:, 0, 0] - 2 * p_y + 1  # row dot products, no (n, K) temporary
    return p, {"conf": conf, "correct": (pred == labels).double(), "nll": nll, "brier": brier, "pred": pred.double()}


def aurc_prepare(conf: Tensor, correct: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """What AURC needs of the samples alone: the descending stable order, the errors in that order, and
    the harmonic numbers H_0..H_N. Loops over resamples reuse it."""
    n = conf.shape[0]
    order = torch.sort(conf, descending=True, stable=True).indices
    h = torch.zeros(n + 1, dtype=torch.float64)
    torch.cumsum(1.0 / torch.arange(1, n + 1, dtype=torch.float64), 0, out=h[1:])
    return order, 1.0 - correct[order], h


def aurc_kernel(conf: Tensor, correct: Tensor, w: Tensor, prepared: tuple[Tensor, ...] | None = None) -> Tensor:
    """AURC for each resample row of `w` (R, N): risk at coverage k/N of the k most confident, trapezoid,
    / (1 - 1/N). torch-uncertainty's definition (scores sorted descending, stable). N < 2 gives NaN.

    A sample drawn w times holds w consecutive places of the descending order; over its run the risk is
    (E + i e) / k for places k, so the run's sum of risks takes harmonic numbers H instead of a loop.
    """
    n = conf.shape[0]
    if n < 2:
        return torch.full((w.shape[0],), float("nan"), dtype=torch.float64)
    order, err, h = prepared or aurc_prepare(conf, correct)
    ww = w[:, order]
    first = err[(ww > 0).long().argmax(1)]  # risk at k = 1: the most confident sample drawn
    we = ww * err
    last = we.sum(1) / n  # risk at k = N
    end = ww.cumsum(1)
    start = end - ww
    dh = h[end.long()].sub_(h[start.long()])  # sum of 1/k over the run's places
    e_before = we.cumsum(1).sub_(we)
    total = e_before.mul_(dh).sum(1) + ww.sub_(start.mul_(dh)).mul_(err).sum(1)  # sum over k of risk_k
    return (total - (first + last) / 2) / n / (1.0 - 1.0 / n)
