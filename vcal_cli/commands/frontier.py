"""`vcal frontier`: sweep V-TST's (beta, lambda) surface on cached features, measure R, D, C, select on val.

The method (the free energy, the warm-started walk, the iso-classification process) is
`vcal_cli.evaluations.frontier`; this module loads the splits, runs it, scores every point and writes the
selected head. Differences from Gao & Chaudhari: the input is the cached feature vector, not the image; the
decoder is a Gaussian MLP on standardised features, not an autoregressive image model.

Selection (iso-classification on val): among the points whose val accuracy is within `tolerance` of the best,
the lowest val ECE (or rate, or NLL).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vcal_cli._io import same_file
from vcal_cli._progress import Track, quiet
from vcal_cli.checkpoints import save_checkpoint
from vcal_cli.errors import UsageError
from vcal_cli.evaluations.frontier import Settings, iso_classification, measure, walk, warm_epochs_for
from vcal_cli.heads import FitData, resolve_epochs, resolve_train_device
from vcal_cli.heads.ce import default_latent
from vcal_cli.heads.vtst import VTSTHead, VTSTModule, VTSTParams
from vcal_cli.metrics import compute_metrics
from vcal_cli.metrics.sanity import val_warning
from vcal_cli.reports.frontier import FrontierPoint, FrontierResult
from vcal_cli.session.workbench import ExtractOptions, Workbench

DEFAULT_BETAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
SELECT = ("ece", "rate", "nll")
FRONTIER_HEADS = ("vtst",)


def parse_grid(text: str | None, flag: str, default: tuple[float, ...]) -> tuple[float, ...]:
    if text is None:
        return default
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or any(not math.isfinite(v) or v < 0 for v in vals):
        raise UsageError(f"{flag} '{text}' must be comma-separated numbers >= 0, e.g. 0.001,0.01,0.1")
    return vals


def select_point(points: list[FrontierPoint], tolerance: float, by: str, n_val: int = 0) -> tuple[int, str]:
    """Iso-classification: among points within `tolerance` (accuracy, as a fraction) of the best val accuracy,
    the lowest val ECE, rate or NLL."""
    if by not in SELECT:
        raise UsageError(f"--select '{by}' is not one of: {', '.join(SELECT)}")
    best = max(p.val_accuracy for p in points)
    ok = [i for i, p in enumerate(points) if p.val_accuracy >= best - tolerance - 1e-12]
    key = {"ece": lambda p: p.val_ece, "rate": lambda p: p.rate, "nll": lambda p: p.val_nll}[by]
    i = min(ok, key=lambda j: (key(points[j]), j))
    p = points[i]
    reason = (
        f"{len(ok)} of {len(points)} points have val accuracy within {tolerance * 100:g} points of the best "
        f"({best:.4f}); beta={p.beta:g}, lambda={p.lam:g} has the lowest val {by} among them "
        f"({key(p):.4f}; val accuracy {p.val_accuracy:.4f})"
    )
    if n_val and tolerance < 1 / n_val:
        reason += f"; note: one of the {n_val} val samples is {100 / n_val:.2g} points, more than the tolerance"
    return i, reason


def check_frontier(
    head: str,
    tolerance: float,
    select: str,
    warm_epochs: int | None,
    warm_lr: float | None,
    iso_c: float | None,
    train_device: str,
) -> str:
    """Every flag of `frontier` checked before any extraction; returns the resolved training device."""
    if head not in FRONTIER_HEADS:
        raise UsageError(f"--head '{head}' has no frontier; choose one of: {', '.join(FRONTIER_HEADS)}")
    if not 0 <= tolerance < 1:
        raise UsageError(f"--tolerance {tolerance} must be a fraction of accuracy in [0, 1), e.g. 0.005")
    if select not in SELECT:
        raise UsageError(f"--select '{select}' is not one of: {', '.join(SELECT)}")
    if warm_epochs is not None and warm_epochs < 1:
        raise UsageError(f"--warm-epochs {warm_epochs} must be at least 1")
    if warm_lr is not None and not (math.isfinite(warm_lr) and warm_lr > 0):
        raise UsageError(f"--warm-lr {warm_lr} must be a learning rate > 0, e.g. 1e-3")
    if iso_c is not None and not (math.isfinite(iso_c) and iso_c > 0):
        raise UsageError(f"--iso-c {iso_c} must be a classification loss in nats > 0, e.g. 0.2")
    return str(resolve_train_device(train_device))


def frontier(
    checkpoint: Any,
    *,
    data: str | None = None,
    head: str = "vtst",
    betas: tuple[float, ...] = DEFAULT_BETAS,
    lambdas: tuple[float, ...] = (0.0,),
    tolerance: float = 0.005,
    select: str = "ece",
    hidden: int | None = None,
    samples: int = 10,
    epochs: int | None = None,
    warm_epochs: int | None = None,
    warm: bool = True,
    warm_lr: float | None = None,
    iso_c: float | None = None,
    lr: float = 1e-4,
    batch_size: int = 256,
    train_device: str = "auto",
    options: ExtractOptions | None = None,
    n_bins: int = 15,
    seed: int = 0,
    write_best: str | Path | None = None,
    progress: Track = quiet,
) -> FrontierResult:
    """Fit V-TST's (beta, lambda) surface on the cached features (each point from its neighbour's fit, the
    quasi-static walk; `warm=False` fits each from scratch, see `vcal_cli.evaluations.frontier`), measure R, D, C
    and the metrics, select a point on val, and optionally write its checkpoint (as `vcal retrain` does). `iso_c`
    traces the iso-classification process instead: for each beta the lambda whose val C is `iso_c`. `tolerance`
    is a fraction of accuracy (0.005: half a point), as every accuracy vcal reports."""
    device = check_frontier(head, tolerance, select, warm_epochs, warm_lr, iso_c, train_device)
    bench = Workbench.open(checkpoint, data, options, progress=progress)
    if write_best is not None and bench.model.path and same_file(bench.model.path, write_best):
        raise UsageError(f"refusing to write '{write_best}' over the checkpoint", hint="choose another --write-best")
    tr, va, te = (bench.features(s) for s in ("train", "val", "test"))
    bench.release()  # under torchrun: the ranks shared the extractions; the sweep runs on rank 0
    warning = val_warning((tr.logits, tr.labels), (va.logits, va.labels), (te.logits, te.labels))
    # the sweep holds the splits in memory, as fresh float32 (aligned) tensors; the bench's own stay as they are
    tr, va, te = (dataclasses.replace(fs, features=fs.features.to(torch.float32, copy=True)) for fs in (tr, va, te))
    n_epochs = resolve_epochs(epochs, len(tr.labels), batch_size)
    s = Settings(
        hidden=hidden or default_latent(tr.logits.shape[1]),
        samples=samples,
        epochs=n_epochs,
        warm_epochs=warm_epochs or warm_epochs_for(n_epochs),
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        warm_lr=warm_lr,
        device=device,
    )
    points = sweep(tr, va, te, betas, lambdas, iso_c, s, warm=warm, n_bins=n_bins, progress=progress)
    i, reason = select_point(points, tolerance, select, len(va.labels))
    walked = warm and iso_c is None  # the iso-classification process fits every bisection step from scratch
    settings = {
        "data": bench.name,
        "head": head,
        "betas": sorted(betas),
        "lambdas": list(lambdas) if iso_c is None else None,
        "iso_c": iso_c,
        "tolerance": tolerance,
        "select": select,
        "hidden": s.hidden,
        "samples": samples,
        "epochs": n_epochs,
        "warm": walked,
        "warm_epochs": s.warm_epochs if walked else None,
        "warm_lr": s.warm_rate if walked else None,
        "lr": lr,
        "batch_size": batch_size,
        "train_device": device,
        "seed": seed,
        "bins": n_bins,
        "split_for_selection": "val",
    }
    result = FrontierResult(points, i, reason, settings, bench.model.describe())
    result.warnings += ([warning] if warning else []) + _missed_iso(points, iso_c)
    if write_best is not None:
        result.written = str(_write(bench.model, points[i], settings, bench.preprocessing, write_best, bench.name))
    return result


def _missed_iso(points: list[FrontierPoint], iso_c: float | None) -> list[str]:
    if iso_c is None or all(p.iso_reached for p in points):
        return []
    missed = ", ".join(f"{p.beta:g}" for p in points if not p.iso_reached)
    return [
        f"val C = {iso_c:g} was not reached at beta = {missed} for lambda in [1e-4, 10]; those points are the "
        "closest found"
    ]


def sweep(
    tr: Any,
    va: Any,
    te: Any,
    betas: tuple[float, ...],
    lambdas: tuple[float, ...],
    iso_c: float | None,
    s: Settings,
    *,
    warm: bool,
    n_bins: int,
    progress: Track,
) -> list[FrontierPoint]:
    """Fit the surface (the walk over (beta, lambda), or the iso-classification process for `iso_c`) and score
    every point."""
    train, val = FitData(tr.features, tr.logits, tr.labels), FitData(va.features, va.logits, va.labels)
    mean, std = tr.features.mean(0), tr.features.std(0).clamp_min(1e-6)
    if iso_c is None:
        fitted = [
            (b, lam, m, None)
            for b, lam, m in walk(train, val, betas, lambdas, s, mean, std, warm=warm, progress=progress)
        ]
    else:
        fitted = list(iso_classification(train, val, betas, iso_c, s, mean, std, progress=progress))
    return [score_point(b, lam, model, reached, va, te, mean, std, n_bins) for b, lam, model, reached in fitted]


def score_point(
    beta: float, lam: float, model: Any, reached: bool | None, va: Any, te: Any, mean: Tensor, std: Tensor, n_bins: int
) -> FrontierPoint:
    """One fitted point: its R, D, C on val and its val and test metrics."""
    m = measure(model, va.features, va.labels, mean, std)
    with torch.no_grad():
        mv = compute_metrics(va.labels, logits=model(va.features), n_bins=n_bins, n_bootstrap=0).metrics
        mt = compute_metrics(te.labels, logits=model(te.features), n_bins=n_bins, n_bootstrap=0).metrics
    return FrontierPoint(
        beta=beta,
        lam=lam,
        rate=m["rate"],
        distortion=m["distortion"],
        mse=m["mse"],
        classification=m["classification"],
        val_accuracy=mv.accuracy,
        val_ece=mv.ece,
        val_nll=mv.nll,
        test_accuracy=mt.accuracy,
        test_ece=mt.ece,
        test_nll=mt.nll,
        iso_reached=reached,
        module=model,
    )


def _write(loaded: Any, p: FrontierPoint, s: dict[str, Any], prep: Any, path: str | Path, data: str) -> Path:
    """The selected head as a vcal checkpoint: a `vtst` head whose params record the point."""
    params = VTSTParams(
        seed=s["seed"],
        hidden=s["hidden"],
        beta=p.beta,
        samples=s["samples"],
        epochs=s["epochs"],
        lr=s["lr"],
        batch_size=s["batch_size"],
    )
    assert p.module is not None
    module = VTSTModule(p.module.in_features, p.module.num_classes, p.module.hidden, p.module.samples)
    module.load_state_dict(p.module.vtst_state())
    head = VTSTHead(params)
    head.module_ = module.eval()
    info = head.info()
    info["frontier"] = {"beta": p.beta, "lambda": p.lam, "rate": p.rate, "distortion": p.distortion}
    meta = {"retrained_from": loaded.sha256, "retrained_on": f"{data}:train (vcal frontier, selected on val)"}
    inputs = tuple(Path(x) for x in (loaded.path,) if x)
    return save_checkpoint(
        loaded.with_head(head.module_, info), path, preprocessing=prep, extra_metadata=meta, inputs=inputs
    )
