"""Shift, OOD and adversarial evaluations for the original head and any retrained ones, in one pass.

The backbone's features of every split (test, train, each OOD set, each corrupted test split) are
extracted once and cached; every head is then applied to the same cached features, so comparing six
heads under 60 corrupted splits costs one extraction per split, not six. Attacks are the exception:
they differentiate through the whole model, so each head is attacked with its own backbone copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vcal_cli._defaults import DEFAULT_ADV_LIMIT, DEFAULT_N_BOOTSTRAP, DEFAULT_SEVERITIES
from vcal_cli.data import load_split
from vcal_cli.detectors import DEFAULT as DEFAULT_DETECTORS
from vcal_cli.errors import DataError, UsageError
from vcal_cli.evaluations.adversarial import Attacks, PixelModel, adversarial_evaluation
from vcal_cli.evaluations.ood import fit_detectors, ood_evaluation
from vcal_cli.evaluations.protocol import Pooled, get_protocol, ood_id_positive, protocol_row
from vcal_cli.evaluations.shift import CORRUPTIONS, STRENGTH_NAMES, STRENGTHS, corrupted_split, strengths_for
from vcal_cli.features import resolve_device
from vcal_cli.heads.base import HeadModule
from vcal_cli.metrics import compute_metrics
from vcal_cli.metrics.conformal import Calibrated, shifted_sets
from vcal_cli.session.workbench import Workbench


@dataclass(frozen=True, kw_only=True)
class RobustnessOptions:
    """What to evaluate beyond clean test data (empty: nothing)."""

    ood: tuple[str, ...] = ()  # OOD data sets, any --data form
    adversarial: tuple[float, ...] = ()  # L-infinity budgets in pixel units
    adv_limit: int = DEFAULT_ADV_LIMIT  # attack the first N test images
    shift: tuple[str, ...] = ()  # corruption names
    severities: tuple[int, ...] = DEFAULT_SEVERITIES
    strengths: str | None = None  # 'cifar' | 'imagenet' | None (by image size)
    protocol: str | None = None  # a paper's table beside vcal's (`vcal_cli.evaluations.protocol`)
    detectors: tuple[str, ...] = DEFAULT_DETECTORS  # OOD detectors, in the report's order (`vcal_cli.detectors`)
    knn_k: int | None = None  # KNN's k and share of train rows (None: the paper's defaults)
    knn_share: float | None = None
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP  # resamples of the OOD metrics' intervals and paired verdicts

    def __post_init__(self) -> None:
        """A paper protocol implies the shift evaluation over its corruptions that vcal builds, unless `shift` names
        some (an unknown protocol is a UsageError here)."""
        if self.protocol is not None and not self.shift:
            object.__setattr__(self, "shift", get_protocol(self.protocol).built()[0])

    def __bool__(self) -> bool:
        return bool(self.ood or self.adversarial or self.shift)


@dataclass
class Variant:
    """One head to evaluate: the checkpoint itself (`module` None: its cached logits) or a fitted vcal head."""

    name: str
    model: Any  # LoadedModel with this head in place (attacks run through it)
    module: HeadModule | None = None

    @property
    def head(self) -> nn.Module:
        return self.module if self.module is not None else self.model.head

    @property
    def raw_logits(self) -> bool:
        """True when the head outputs logits (max-logit and energy are meaningful), not vcal's log-probabilities."""
        return self.module is None and self.model.head_info is None

    @torch.inference_mode()
    def scores(self, fs: Any, batch_size: int = 1024) -> Tensor:
        if self.module is None:
            return fs.logits
        f = fs.features
        return torch.cat([self.module(f[i : i + batch_size]) for i in range(0, len(f), batch_size)])

    @torch.inference_mode()
    def uncertainty(self, features: Tensor, batch_size: int = 1024) -> dict[str, Tensor]:
        if self.module is None:  # the checkpoint's own head: no scores of its own
            return {}
        parts = [self.module.uncertainty(features[i : i + batch_size]) for i in range(0, len(features), batch_size)]
        return {k: torch.cat([p[k] for p in parts]).double() for k in parts[0]} if parts else {}


def check_options(r: RobustnessOptions, data_root: str | None = None) -> None:
    """Fail fast on a bad corruption, strength, budget count or OOD data set (before any fitting)."""

    for c in r.shift:
        CORRUPTIONS.get(c)
    if r.protocol is not None:
        get_protocol(r.protocol)
    if r.strengths is not None and r.strengths not in STRENGTHS:
        raise UsageError(f"--strengths '{r.strengths}' is not one of: auto, {', '.join(STRENGTHS)}")
    if r.knn_share is not None and not 0 < r.knn_share <= 1:
        raise UsageError(f"--knn-share {r.knn_share} must be above 0 and at most 1 (the share of train rows KNN uses)")
    if r.adversarial and r.adv_limit < 1:
        raise UsageError(f"--adv-limit {r.adv_limit} must be at least 1")
    for name in r.ood:
        try:
            load_split(name, "test", root=data_root)
        except DataError as e:
            raise DataError(str(e).replace("--data", "--ood", 1)) from None


def evaluate(
    bench: Workbench,
    variants: list[Variant],
    r: RobustnessOptions,
    *,
    split: str,
    n_bins: int,
    seed: int,
    sets: dict[str, dict[tuple[str, float], Calibrated]] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per variant name: {"ood", "ood_scores", "shift", "adversarial"} (those asked for), and the settings.

    The caller checks `r` first (`check_options`), before any extraction or fitting. `sets` holds, per variant, the
    conformal calibrations whose coverage and set size each corrupted split also reports (with the val thresholds).
    """
    out: dict[str, dict[str, Any]] = {v.name: {} for v in variants}
    settings: dict[str, Any] = {}
    test = bench.features(split)
    if r.ood:
        train = bench.features("train")
        sets = {n: bench.features_of(n, in_distribution=False) for n in r.ood}
        fitted = fit_detectors(
            r.detectors, train, variants[0].model.head, seed=seed, knn_k=r.knn_k, knn_share=r.knn_share
        )
        for i, v in enumerate(variants):
            out[v.name]["ood"], out[v.name]["ood_scores"] = ood_evaluation(
                test, sets, v, fitted, first=i == 0, n_bootstrap=r.n_bootstrap, seed=seed
            )
        settings["ood"] = fitted.settings(r.n_bootstrap, seed)
    images = bench.images(split) if r.shift or r.adversarial else None
    pooled: dict[str, dict[tuple[str, int], Pooled]] | None = {v.name: {} for v in variants} if r.protocol else None
    if r.shift:
        rows, table = _shift(bench, variants, r, images, n_bins, seed, sets or {}, pooled)
        for v in variants:
            out[v.name]["shift"] = rows[v.name]

        settings["shift"] = {
            "corruptions": list(r.shift),
            "severities": list(r.severities),
            "seed": seed,
            "strengths": STRENGTH_NAMES[table],
        }
    if r.protocol and pooled is not None:
        settings["protocol"] = _protocol(r.protocol, r, variants, test, out, pooled)
    if r.adversarial:
        n = min(r.adv_limit, len(images))
        for name, rows in _adversarial(bench, variants, r, images, n, n_bins, seed).items():
            out[name]["adversarial"] = rows
        settings["adversarial"] = {
            "n": n,
            "attacks": ["fgsm", "pgd"],
            "pgd_steps": 10,
            "pgd_step": "2.5*eps/10",
            "stochastic_heads": "attacked through their stored Monte-Carlo draws (what the checkpoint computes)",
        }
    return out, settings


def _protocol(
    name: str,
    used: RobustnessOptions,
    variants: list[Variant],
    test: Any,
    out: dict[str, dict[str, Any]],
    pooled: dict[str, dict[tuple[str, int], Pooled]],
) -> dict[str, Any]:
    """Each variant's `protocol` row (into `out`) from its test scores, pooled shift statistics and MSP OOD scores;
    returns the protocol's settings."""
    p = get_protocol(name)
    for v in variants:
        ood = None
        if out[v.name].get("ood_scores"):  # the msp score is minus the maximum probability
            pairs = [sc["msp"] for sc in out[v.name]["ood_scores"].values()]
            ood = ood_id_positive(-pairs[0][0], [-o for _, o in pairs])
        test_stats = Pooled(n_bins=p.n_bins).add(v.scores(test), test.labels)
        out[v.name]["protocol"] = protocol_row(p, test_stats, pooled[v.name], ood)
    return {**p.describe(used), "ood_sets": list(next(iter(out.values())).get("ood_scores") or [])}


def _shift(
    bench: Workbench,
    variants: list[Variant],
    r: RobustnessOptions,
    base: Any,
    n_bins: int,
    seed: int,
    sets: dict[str, dict[tuple[str, float], Calibrated]],
    pooled: dict[str, dict[tuple[str, int], Pooled]] | None,
) -> tuple[dict[str, list[dict[str, Any]]], str]:
    if base.images is None:
        raise DataError(
            f"--shift needs an in-memory data set; '{bench.name}' is read from image files",
            hint="export it to an .npz",
        )
    table = r.strengths or strengths_for(*base.images.shape[-2:])
    rows: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    for c in r.shift:
        for s in r.severities:
            fs = bench.features_of(corrupted_split(base, c, s, seed, strengths=table))
            for v in variants:
                scores = v.scores(fs)
                m = compute_metrics(fs.labels, logits=scores, n_bins=n_bins, n_bootstrap=0).metrics
                row = {"corruption": c, "severity": s, "accuracy": m.accuracy, "nll": m.nll, "ece": m.ece}
                if sets.get(v.name):
                    row["sets"] = shifted_sets(sets[v.name], torch.softmax(scores.double(), 1), fs.labels)
                if pooled is not None and r.protocol:  # pooled is there exactly when a protocol is
                    pooled[v.name][c, s] = Pooled(n_bins=get_protocol(r.protocol).n_bins).add(scores, fs.labels)
                rows[v.name].append(row)
    return rows, table


def _adversarial(bench: Workbench, variants, r, ds, n, n_bins, seed) -> dict[str, list[dict[str, Any]]]:
    """Rows per variant for the first `n` images of the split `ds`."""
    prep, o, progress = bench.preprocessing_for(ds), bench.options, bench.progress

    images = ds.images[:n] if ds.images is not None else ds.load(torch.arange(n), prep.input_size[1:])
    pixels = prep.to_pixels(images)
    out = {}
    for v in variants:
        model = v.model.model if v.module is None else v.model.with_head(v.module, {"name": v.name}).model
        out[v.name] = adversarial_evaluation(
            PixelModel(model, prep.normalize),
            pixels,
            ds.labels[:n],
            Attacks(eps=tuple(r.adversarial), seed=seed),
            batch_size=o.runtime.batch_size,
            device=resolve_device(o.runtime.device),
            n_bins=n_bins,
            progress=progress,
        )
    return out
