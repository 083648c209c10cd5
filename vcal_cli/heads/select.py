"""`--head auto`: fit the candidates, score each on val without judging it on the samples it was fitted to, and pick
the best by `--select nll|ece|brier`.

A head fitted on train (ce, vtst, bayes, ...) is scored on val directly (its epoch selection on val is the only
optimism). A head fitted on val (temperature, vector, matrix, dirichlet, isotonic, histogram) would look best simply
for having seen val, so it is cross-fitted: val is cut into 5 fixed folds and each fold is predicted by the head
refitted on the other four. `X+temperature` keeps X (fitted on train) and cross-fits only its temperature. The
winner's margin over the runner-up comes with the paired-bootstrap interval on val, as `vcal gate` computes it (for
`--auto-select ece` bias-bounded by both candidates' noise floors, `vcal_cli.metrics.paired`).

`budget` (seconds, `--auto-budget`) bounds the whole selection. Candidates run cheapest first; each gets an equal
share of what is left (time a cheap one does not use goes to the ones after it). A trained head (`ce`, `vtst`,
`bayes`, ...) stops at the end of its share and keeps its best epoch so far (a part of an epoch counts: on 1.28M
rows that is a subsample of train; `bayes` keeps its L-BFGS iterations so far, and is skipped when its first pass
over train outruns its share); a logit map stops its penalty path at its share (the best penalty so far); a
head fitted on val is skipped when its 5-fold cross-fit, predicted as 4x its own fit's time (an upper bound: the
folds refit at the chosen penalty, without the path), could overrun its share; a candidate whose turn comes with
under 2% of the budget left is skipped. Each of these is recorded with its reason (`Selection.limited`) and printed
as a warning, never silent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from vcal_cli._defaults import DEFAULT_AUTO_BUDGET
from vcal_cli._progress import Track, quiet
from vcal_cli.errors import HeadError, UsageError
from vcal_cli.estimation import Statistics
from vcal_cli.heads.base import DeadlinePassed, FitData, Head
from vcal_cli.heads.compose import TemperedHead, get_head, temper
from vcal_cli.heads.temperature import fit_inverse_temperature
from vcal_cli.metrics import compute_metrics
from vcal_cli.metrics.paired import floors_of, paired_deltas

# The candidates of `--head auto`, in order of preference on ties: the cheap post-hoc maps first.
AUTO = ("temperature", "vector", "dirichlet", "matrix", "isotonic", "histogram", "bayes", "ce", "vtst")
SELECT = ("nll", "ece", "brier")
FOLDS = 5
CROSS_FIT_COST = 4.0  # a 5-fold cross-fit refits on 4/5 of val five times: about 4x the head's own (re)fit
MIN_SHARE = 0.02  # of the budget: a candidate whose turn comes with less left is skipped


@dataclass(frozen=True, kw_only=True)
class AutoOptions:
    """`--head auto`'s settings: the val criterion and the time budget in seconds (None: unbounded)."""

    select: str = "nll"
    budget: float | None = DEFAULT_AUTO_BUDGET

    def __post_init__(self) -> None:
        if self.select not in SELECT:
            raise UsageError(f"--auto-select '{self.select}' is not one of: {', '.join(SELECT)}")
        if self.budget is not None and not self.budget > 0:
            raise UsageError(f"--auto-budget {self.budget:g} must be a positive number of seconds")


UNFIT = "skipped, could not be fitted"  # a candidate's own error, not the budget's doing


@dataclass(kw_only=True)
class Selection:
    picked: Head
    scores: dict[str, dict[str, float]]  # candidate -> {nll, ece, brier} on val (cross-fitted where fitted there)
    select: str
    runner_up: str | None
    delta: float | None = None  # picked - runner-up in the selected metric
    interval: tuple[float, float] | None = None  # its paired-bootstrap 95% interval on val
    verdict: str = ""
    heads: dict[str, Head] = field(default_factory=dict, repr=False)
    budget: float | None = None  # seconds (`--auto-budget`); None: unbounded
    spent: float = 0.0  # seconds the selection took
    limited: dict[str, str] = field(default_factory=dict)  # candidate -> what the budget did to it, and why

    def to_dict(self) -> dict[str, Any]:
        return {
            "picked": self.picked.name,
            "select": self.select,
            "scored_on": "val (heads fitted on val: 5-fold cross-fitted)",
            "runner_up": self.runner_up,
            "delta": self.delta,
            "interval": list(self.interval) if self.interval else None,
            "verdict": self.verdict,
            "candidates": self.scores,
            "budget": {"seconds": self.budget, "spent": round(self.spent, 1), "limited": self.limited},
        }

    def warnings(self) -> list[str]:
        """One line per candidate the budget cut short or skipped, or that could not be fitted."""
        budget = f"--auto-budget {self.budget:g} s" if self.budget is not None else "--head auto"
        return [
            f"{'--head auto' if why.startswith(UNFIT) else budget}: {name} {why}" for name, why in self.limited.items()
        ]

    def reason(self) -> str:
        s = self.scores[self.picked.name][self.select]
        if self.runner_up is None:
            return f"{self.picked.name}: the only candidate (val {self.select} {s:.4f})"
        r = self.scores[self.runner_up][self.select]
        lo, hi = self.interval or (float("nan"), float("nan"))
        return (
            f"picked {self.picked.name}: lowest val {self.select} {s:.4f} of {len(self.scores)} candidates, "
            f"{self.runner_up} next at {r:.4f} (difference {self.delta:+.4f}, 95% paired interval "
            f"[{lo:+.4f}, {hi:+.4f}]: {self.verdict})"
        )


def _val_log_probs(
    head: Head, cls: type[Head], train: FitData, val: FitData, base: nn.Module | None, hierarchy: Any, seed: int
) -> Tensor:
    """Val log-probabilities of a fitted head, cross-fitted over FOLDS where the head fits val."""
    if head.fits_on == "train":
        return head.predict_log_proba(val.features)
    n = len(val.labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = torch.empty(n, val.logits.shape[1])
    inner = None  # X+temperature with X fitted on train: only the temperature saw val
    if isinstance(head, TemperedHead) and head.fits_on == "train+val":
        inner = head.inner_.predict_log_proba(val.features)
    for f in range(FOLDS):
        held = perm[f::FOLDS].sort().values
        keep = torch.cat([perm[g::FOLDS] for g in range(FOLDS) if g != f]).sort().values
        if inner is not None:
            s = fit_inverse_temperature(inner[keep], val.labels[keep])
            out[held] = torch.log_softmax(inner[held] * s, dim=1).float()
            continue
        sub = FitData(val.features[keep], val.logits[keep], val.labels[keep])
        fold = cls(head.refit_params()).fit(train, sub, base=base, hierarchy=hierarchy)
        out[held] = fold.predict_log_proba(val.features[held])
    return out


def _metrics(logp: Tensor, labels: Tensor, n_bins: int) -> dict[str, float]:
    m = compute_metrics(labels, logits=logp, n_bins=n_bins, n_bootstrap=0).metrics
    return {"nll": m.nll, "ece": m.ece, "brier": m.brier, "accuracy": m.accuracy}


def select_head(
    train: FitData,
    val: FitData,
    *,
    candidates: tuple[str, ...] = AUTO,
    params: dict[str, Any] | None = None,
    base: nn.Module | None = None,
    hierarchy: Any = None,
    auto: AutoOptions | None = None,
    stats: Statistics | None = None,
    progress: Track = quiet,
) -> Selection:
    """Fit every candidate (and `X+temperature` for each X fitted on train), score them on val by `auto.select`
    and pick one; within `auto.budget` seconds when given (default: unbounded; see the module docstring). `stats`
    gives the bins of the ECE, the resamples of the paired interval against the runner-up and every head's seed."""
    auto = auto or AutoOptions(budget=None)
    stats = stats or Statistics()
    select, budget = auto.select, auto.budget
    n_bins, n_bootstrap, seed = stats.n_bins, stats.n_bootstrap, stats.seed
    params = params or {}
    fitted: dict[str, Head] = {}
    logps: dict[str, Tensor] = {}
    limited: dict[str, str] = {}
    start = time.monotonic()
    for i, name in enumerate(candidates):
        cls = get_head(name)
        share = deadline = None
        if budget is not None:
            left = budget - (time.monotonic() - start)
            if left < MIN_SHARE * budget and fitted:
                limited[name] = f"skipped: {max(left, 0):.0f} s of the budget left when its turn came"
                continue
            share = left / (len(candidates) - i)
            deadline = time.monotonic() + share
        t0 = time.monotonic()
        try:
            head = cls(params.get(name) or cls.Params(seed=seed)).fit(
                train, val, base=base, hierarchy=hierarchy, progress=progress, deadline=deadline
            )
        except DeadlinePassed as e:
            limited[name] = f"skipped: {e.message} ({share:.0f} s share)"
            continue
        except HeadError as e:  # one candidate that cannot be fitted here does not end the selection
            limited[name] = f"{UNFIT}: {e.message}"
            continue
        took = time.monotonic() - t0
        # conservative: a fold's fit (cold, at the chosen penalty) is cheaper than the path, dearer than a warm refit
        if share is not None and head.fits_on != "train" and fitted and CROSS_FIT_COST * took > share - took:
            limited[name] = (
                f"skipped: its fit took {took:.0f} s, so its 5-fold cross-fit could take up to "
                f"{CROSS_FIT_COST * took:.0f} s, over the rest of its {share:.0f} s share"
            )
            continue
        if stopped := head.extra_report().get("stopped"):
            limited[name] = f"stopped at its {share:.0f} s share, {stopped} (the best so far kept)"
        fitted[name] = head
        logps[name] = _val_log_probs(head, cls, train, val, base, hierarchy, seed)
        if head.fits_on == "train":
            try:
                tempered = temper(head, val)
            except HeadError as e:  # e.g. a head stopped by the budget before it learned: no T to fit
                limited[f"{name}+temperature"] = f"{UNFIT}: {e.message}"
                continue
            fitted[tempered.name] = tempered
            logps[tempered.name] = _val_log_probs(tempered, type(tempered), train, val, base, hierarchy, seed)
    scores = {n: _metrics(lp, val.labels, n_bins) for n, lp in logps.items()}
    order = sorted(scores, key=lambda n: scores[n][select])
    picked, runner = order[0], (order[1] if len(order) > 1 else None)
    sel = Selection(
        picked=fitted[picked],
        scores=scores,
        select=select,
        runner_up=runner,
        heads=fitted,
        budget=budget,
        limited=limited,
    )
    if runner is not None:
        # the ECE's paired interval is bias-bounded by both sides' noise floors (`metrics.paired`)
        sides = (logps[runner], logps[picked])
        boot = max(n_bootstrap, 2)
        floors = (
            tuple(floors_of(lp, val.labels, n_bins=n_bins, n_bootstrap=boot, seed=seed) for lp in sides)
            if select == "ece"
            else None
        )
        iv = paired_deltas(
            *sides, val.labels, n_bins=n_bins, n_bootstrap=max(n_bootstrap, 1), seed=seed, floors=floors
        )[select]
        sel.delta = scores[picked][select] - scores[runner][select]
        sel.interval = (float(iv[0]), float(iv[1]))
        sel.verdict = "better beyond noise" if iv[1] < 0 else "no different beyond noise"
    sel.spent = time.monotonic() - start
    return sel
