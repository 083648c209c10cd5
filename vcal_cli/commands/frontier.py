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
from pathlib import Path
from typing import Any

import torch

from vcal_cli._io import same_file
from vcal_cli._progress import Track, quiet
from vcal_cli.checkpoints import save_checkpoint
from vcal_cli.commands.settings import FRONTIER_SELECT, FrontierSettings
from vcal_cli.errors import UsageError
from vcal_cli.evaluations.frontier import FrontierModule, Settings, Surface, iso_classification, walk, warm_epochs_for
from vcal_cli.heads import FitData, resolve_epochs, resolve_train_device
from vcal_cli.heads.ce import default_latent
from vcal_cli.heads.vtst import VTSTHead, VTSTModule, VTSTParams
from vcal_cli.metrics import compute_metrics
from vcal_cli.metrics.sanity import val_warning
from vcal_cli.reports.frontier import FrontierPoint, FrontierResult
from vcal_cli.session.workbench import ExtractOptions, Workbench


def select_point(points: list[FrontierPoint], tolerance: float, by: str, n_val: int = 0) -> tuple[int, str]:
    """Iso-classification: among points within `tolerance` (accuracy, as a fraction) of the best val accuracy,
    the lowest val ECE, rate or NLL."""
    if by not in FRONTIER_SELECT:
        raise UsageError(f"--select '{by}' is not one of: {', '.join(FRONTIER_SELECT)}")
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


def frontier(
    checkpoint: Any,
    *,
    data: str | None = None,
    options: ExtractOptions | None = None,
    settings: FrontierSettings | None = None,
    progress: Track = quiet,
) -> FrontierResult:
    """Fit V-TST's (beta, lambda) surface on the cached features (each point from its neighbour's fit, the
    quasi-static walk; `warm=False` fits each from scratch, see `vcal_cli.evaluations.frontier`), measure R, D, C
    and the metrics, select a point on val, and optionally write its checkpoint (as `vcal retrain` does). `iso_c`
    traces the iso-classification process instead: for each beta the lambda whose val C is `iso_c`. `tolerance`
    is a fraction of accuracy (0.005: half a point), as every accuracy vcal reports."""
    f = settings or FrontierSettings()  # every flag checked by its constructor, before any extraction
    device = str(resolve_train_device(f.train_device))
    bench = Workbench.open(checkpoint, data, options, progress=progress)
    if f.write_best is not None and bench.model.path and same_file(bench.model.path, f.write_best):
        raise UsageError(f"refusing to write '{f.write_best}' over the checkpoint", hint="choose another --write-best")
    tr, va, te = (bench.features(name) for name in ("train", "val", "test"))
    bench.release()  # under torchrun: the ranks shared the extractions; the sweep runs on rank 0
    warning = val_warning((tr.logits, tr.labels), (va.logits, va.labels), (te.logits, te.labels))
    # the sweep holds the splits in memory, as fresh float32 (aligned) tensors; the bench's own stay as they are
    tr, va, te = (dataclasses.replace(fs, features=fs.features.to(torch.float32, copy=True)) for fs in (tr, va, te))
    n_epochs = resolve_epochs(f.epochs, len(tr.labels), f.batch_size)
    s = Settings(
        hidden=f.hidden or default_latent(tr.logits.shape[1]),
        samples=f.samples,
        epochs=n_epochs,
        warm_epochs=f.warm_epochs or warm_epochs_for(n_epochs),
        lr=f.lr,
        batch_size=f.batch_size,
        seed=f.seed,
        warm_lr=f.warm_lr,
        device=device,
    )
    surface = Surface.of(FitData(tr.features, tr.logits, tr.labels), FitData(va.features, va.logits, va.labels), s)
    points = sweep(surface, te, f, progress)
    i, reason = select_point(points, f.tolerance, f.select, len(va.labels))
    settings_ = report_settings(f, s, bench.name)
    result = FrontierResult(
        points=points, selected=i, reason=reason, settings=settings_, checkpoint=bench.model.describe()
    )
    result.warnings += ([warning] if warning else []) + _missed_iso(points, f.iso_c)
    if f.write_best is not None:
        result.written = str(_write(bench.model, points[i], settings_, bench.preprocessing, f.write_best, bench.name))
    return result


def report_settings(f: FrontierSettings, fit: Settings, data: str) -> dict[str, Any]:
    """frontier.json's `settings`: what was asked, and what the fits resolved it to."""
    walked = f.warm and f.iso_c is None  # the iso-classification process fits every bisection step from scratch
    return {
        "data": data,
        "head": f.head,
        "betas": sorted(f.betas),
        "lambdas": list(f.lambdas) if f.iso_c is None else None,
        "iso_c": f.iso_c,
        "tolerance": f.tolerance,
        "select": f.select,
        "hidden": fit.hidden,
        "samples": f.samples,
        "epochs": fit.epochs,
        "warm": walked,
        "warm_epochs": fit.warm_epochs if walked else None,
        "warm_lr": fit.warm_rate if walked else None,
        "lr": f.lr,
        "batch_size": f.batch_size,
        "train_device": fit.device,
        "seed": f.seed,
        "bins": f.n_bins,
        "split_for_selection": "val",
    }


def _missed_iso(points: list[FrontierPoint], iso_c: float | None) -> list[str]:
    if iso_c is None or all(p.iso_reached for p in points):
        return []
    missed = ", ".join(f"{p.beta:g}" for p in points if not p.iso_reached)
    return [
        f"val C = {iso_c:g} was not reached at beta = {missed} for lambda in [1e-4, 10]; those points are the "
        "closest found"
    ]


def sweep(surface: Surface, test: Any, f: FrontierSettings, progress: Track = quiet) -> list[FrontierPoint]:
    """Fit the surface (the walk over (beta, lambda), or the iso-classification process for `iso_c`) and score
    every point on val and `test`."""
    if f.iso_c is None:
        walked = walk(surface, f.betas, f.lambdas, warm=f.warm, progress=progress)
        fitted = [(b, lam, m, None) for b, lam, m in walked]
    else:
        fitted = list(iso_classification(surface, f.betas, f.iso_c, progress=progress))
    return [score_point(point, surface, test, f.n_bins) for point in fitted]


def score_point(
    point: tuple[float, float, FrontierModule, bool | None], surface: Surface, test: Any, n_bins: int
) -> FrontierPoint:
    """One fitted point (beta, lambda, module, whether the iso-classification target was reached): its R, D, C
    on val and its val and test metrics."""
    beta, lam, model, reached = point
    va, te = surface.val, test
    m = surface.measure(model)
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
