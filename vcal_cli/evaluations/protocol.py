"""Paper protocols: a published table's metric conventions, so a vcal row lines up with it column by column.

`--protocol vtst` follows the evaluation code of Jordahn & Olmos (ICML 2024) and of its reproduction study
(`01_eval_models.py`, `utils/metrics.py`):

- ECE and MCE: top-label, 10 equal-width bins, as torchmetrics' `MulticlassCalibrationError`: bins [lo, hi)
  and a confidence of exactly 1.0 in a bin of its own (vcal's own ECE closes the last bin at 1.0 instead),
  reported x100;
- NLL: scikit-learn's `log_loss` on the float32 probabilities the paper's code holds: each probability clipped to
  [eps, 1 - eps] with float32's eps (1.2e-7), so one confident mistake costs at most 15.9 nats (vcal's own NLL
  does not clip);
- Brier/K: scikit-learn's `mean_squared_error(probs, onehot)`, the mean over N x K entries, i.e. the usual
  multi-class Brier score divided by K (about 0.011 for a good CIFAR-10 model, not 0.11);
- shift: ECE, MCE and accuracy *pooled* over every corruption x severity (one calibration over all corrupted
  predictions, not a mean of per-split ECEs), and per severity the ECE averaged over the corruptions (with
  the right denominator; the study's CIFAR-100 script divides by 13 where it has 18);
- OOD: the maximum softmax probability, the in-distribution set as the positive class, every OOD set pooled
  into one; AUROC and FPR95 (the fraction of OOD samples accepted at the threshold that keeps 95% of the
  in-distribution ones).

The CIFAR-10-C list the study uses has 13 corruptions; vcal builds 9 of them (fog, frost, glass blur and snow
need image files or ImageMagick), so the shift columns pool 9 x 5 corrupted splits and the table says so.
All of it is computed from sufficient statistics (per-bin counts and sums), so pooling 45 corrupted splits at
1,000 classes holds one split in memory at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vcal_cli._registry import Registry
from vcal_cli.errors import UsageError
from vcal_cli.evaluations.shift import CORRUPTIONS
from vcal_cli.metrics.ood import auroc, fpr_at_95_tpr

EPS32 = float(torch.finfo(torch.float32).eps)  # scikit-learn's log_loss clip for float32 probabilities


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """One paper's conventions."""

    name: str
    source: str
    n_bins: int
    corruptions: tuple[str, ...]  # the paper's list, built or not
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    scale: float = 100.0  # ECE and MCE are printed times this; accuracy in percent

    def built(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(the paper's corruptions vcal builds, those it does not)."""
        have = set(CORRUPTIONS.names())
        return tuple(c for c in self.corruptions if c in have), tuple(c for c in self.corruptions if c not in have)

    def describe(self, used: Any = None) -> dict[str, Any]:
        """The conventions, and (given the RobustnessOptions `used`) the corruptions and severities the shift
        columns pool: the paper's that vcal builds unless the user named others."""
        built, missing = self.built()
        corr, sevs = (list(used.shift), list(used.severities)) if used is not None else (list(built), self.severities)
        return {
            "name": self.name,
            "source": self.source,
            "ece_bins": self.n_bins,
            "scale": self.scale,
            "brier": "mean over N x K entries (Brier / K)",
            "ood": "MSP, in-distribution positive, OOD sets pooled",
            "corruptions": corr,
            "corruptions_not_built": list(missing),
            "papers_corruptions_not_used": [c for c in self.corruptions if c not in corr],
            "severities": list(sevs),
        }


PROTOCOLS: Registry[Protocol] = Registry("protocol")
VTST = PROTOCOLS.register("vtst", "V-TST (Jordahn & Olmos 2024) and its reproduction study's tables")(
    Protocol(
        name="vtst",
        source="Jordahn & Olmos, ICML 2024; reproduction study's 01_eval_models.py",
        n_bins=10,
        corruptions=(
            "brightness",
            "contrast",
            "defocus_blur",
            "elastic_transform",
            "fog",
            "frost",
            "glass_blur",
            "impulse_noise",
            "jpeg_compression",
            "motion_blur",
            "pixelate",
            "shot_noise",
            "snow",
        ),
    )
)


def get_protocol(name: str) -> Protocol:
    """The protocol `name`, or a UsageError naming `--protocol` and the choices."""
    if name not in PROTOCOLS.names():
        raise UsageError(f"--protocol '{name}' is not a protocol; choose one of: {', '.join(PROTOCOLS.names())}")
    return PROTOCOLS.get(name)


@dataclass(kw_only=True)
class Pooled:
    """Sufficient statistics of top-label calibration, NLL, Brier/K and accuracy over any number of splits.

    Bins as torchmetrics: `n_bins` equal-width bins [lo, hi) on [0, 1) and one more for a confidence of 1.0."""

    n_bins: int
    count: Tensor = field(init=False)
    conf: Tensor = field(init=False)
    hits: Tensor = field(init=False)
    n: int = 0
    nll: float = 0.0
    brier: float = 0.0  # summed over rows and classes
    classes: int = 0

    def __post_init__(self) -> None:
        self.count, self.conf, self.hits = (torch.zeros(self.n_bins + 1, dtype=torch.float64) for _ in range(3))

    def add(self, scores: Tensor, labels: Tensor) -> Pooled:
        """Add one split's predictions: logits or log-probabilities (N, K) and labels (N,)."""
        edges = torch.linspace(0, 1, self.n_bins + 1, dtype=torch.float64)
        for lp, y in zip(torch.log_softmax(scores.double(), 1).split(65536), labels.split(65536), strict=True):
            p = lp.exp()
            conf, pred = p.max(1)
            correct = (pred == y).double()
            b = torch.bucketize(conf, edges, right=True) - 1
            self.count.scatter_add_(0, b, torch.ones_like(conf))
            self.conf.scatter_add_(0, b, conf)
            self.hits.scatter_add_(0, b, correct)
            self.n += len(y)
            self.nll -= float(p.gather(1, y[:, None]).clamp(EPS32, 1 - EPS32).log().sum())
            p[torch.arange(len(y)), y] -= 1
            self.brier += float(p.square().sum())
            self.classes = lp.shape[1]
        return self

    def merge(self, other: Pooled) -> Pooled:
        """Add another split's statistics (the same bins) to these."""
        for t, o in ((self.count, other.count), (self.conf, other.conf), (self.hits, other.hits)):
            t += o
        self.n, self.nll, self.brier = self.n + other.n, self.nll + other.nll, self.brier + other.brier
        self.classes = other.classes
        return self

    def result(self) -> dict[str, float]:
        """accuracy, ece, mce (fractions), nll and brier_k of everything added."""
        used = self.count > 0
        gap = (self.hits[used] - self.conf[used]).abs()
        return {
            "accuracy": float(self.hits.sum() / self.n),
            "ece": float(gap.sum() / self.n),
            "mce": float((gap / self.count[used]).max()),
            "nll": self.nll / self.n,
            "brier_k": self.brier / (self.n * self.classes),
        }


def ood_id_positive(id_msp: Tensor, ood_msp: list[Tensor]) -> dict[str, float]:
    """AUROC and FPR95 of the maximum softmax probability with the in-distribution set positive and the OOD
    sets pooled; FPR95 is the fraction of OOD samples at or above the threshold that keeps 95% of the ID ones."""
    pooled = torch.cat(ood_msp)
    # vcal's OOD metrics take (negatives, positives) with "higher = more positive": here ID is the positive class
    return {"auroc": auroc(pooled, id_msp), "fpr95": fpr_at_95_tpr(pooled, id_msp), "ood_n": len(pooled)}


def protocol_row(
    p: Protocol, test: Pooled, shift: dict[tuple[str, int], Pooled] | None, ood: dict[str, float] | None
) -> dict[str, Any]:
    """One head's row: clean test, pooled shift and per-severity shift ECE, pooled OOD (None where not run)."""
    row: dict[str, Any] = {"test": test.result()}
    if shift:
        pooled = Pooled(n_bins=p.n_bins)
        for s in shift.values():
            pooled.merge(s)
        row["shift"] = pooled.result()
        sevs = sorted({s for _, s in shift})
        row["shift"]["ece_by_severity"] = {
            str(v): sum(st.result()["ece"] for (_, s), st in shift.items() if s == v)
            / sum(1 for _, s in shift if s == v)
            for v in sevs
        }
        row["shift"]["splits"] = len(shift)
    if ood is not None:
        row["ood"] = ood
    return row
