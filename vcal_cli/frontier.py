"""The rate-distortion-classification frontier of a variational head on cached features.

Gao & Chaudhari (ICML 2020) put the rate R, distortion D and classification loss C of a representation
on one convex equilibrium surface, F(lambda, gamma) = min R + lambda D + gamma C. On cached features the
backbone's penultimate features h play the part of the input x:

    encoder   e(z|h) = N(mu(h), diag sigma^2(h))          (V-TST's encoder, `vcal_cli.heads.vtst`)
    prior     m(z)   = N(0, I)
    decoder   d(h|z) = N(h_std; g(z), I)                   (h standardised with train statistics)
    classifier c(y|z) = softmax(W z + b)

    R = E_h KL(e(z|h) || m(z))                                           (closed form, nats)
    D = E_h E_z [ ||h_std - g(z)||^2 / 2 + (d/2) log 2 pi ]             (nats; `mse` is the mean squared part / d)
    C = E_h E_z [ -log c(y|z) ]                                          (nats)

Each grid point (beta, lambda) minimises C + beta R + lambda D, i.e. the free energy with gamma = 1/beta and
the distortion weight lambda/beta, scaled by beta. lambda = 0 is the information-bottleneck edge (V-TST itself
at beta = 1/Z): there the decoder still learns to reconstruct h from z, with no gradient into the encoder,
so D measures what the latent keeps about the features without shaping it. Expectations over z use the head's
M stored Monte-Carlo draws (the same draws as its predictive). Differences from the paper: the input is the
cached feature vector, not the image; the decoder is a Gaussian MLP on standardised features, not an
autoregressive image model; the surface is traced by independent fits on a grid (seeded, same initial
weights), not by quasi-static processes.

Selection (iso-classification on val): among the points whose val accuracy is within `tolerance` of the best,
the lowest val ECE (or rate, or NLL).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vcal_cli._progress import Track, quiet
from vcal_cli.errors import UsageError

DEFAULT_BETAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
SELECT = ("ece", "rate", "nll")
FRONTIER_HEADS = ("vtst",)


@dataclass
class FrontierPoint:
    beta: float
    lam: float
    rate: float  # val R, nats
    distortion: float  # val D, nats
    mse: float  # val mean squared reconstruction error per standardised feature
    classification: float  # val C, nats
    val_accuracy: float
    val_ece: float
    val_nll: float
    test_accuracy: float
    test_ece: float
    test_nll: float
    module: nn.Module | None = field(default=None, repr=False)


@dataclass
class FrontierResult:
    points: list[FrontierPoint]
    selected: int
    reason: str
    settings: dict[str, Any]
    checkpoint: dict[str, Any]
    written: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in dataclasses.asdict(p).items() if k != "module"} | {"selected": i == self.selected}
            for i, p in enumerate(self.points)
        ]

    def to_dict(self) -> dict[str, Any]:
        from vcal_cli._version import __version__

        return {
            "vcal_version": __version__,
            "checkpoint": self.checkpoint,
            "settings": self.settings,
            "warnings": list(self.warnings),
            "points": self.rows(),
            "selected": {"index": self.selected, "reason": self.reason, **self.rows()[self.selected]},
            "written": self.written,
        }


class _Model(nn.Module):
    """The head (what gets written) plus the decoder (used for D only)."""

    def __init__(self, head: nn.Module, width: int) -> None:
        super().__init__()
        z = head.hidden
        self.head = head
        self.decoder = nn.Sequential(nn.Linear(z, 3 * z), nn.ReLU(), nn.Linear(3 * z, width))

    def forward(self, features: Tensor) -> Tensor:
        return self.head(features)


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


@torch.no_grad()
def measure(model: _Model, features: Tensor, labels: Tensor, mean: Tensor, std: Tensor) -> dict[str, float]:
    """R, D, MSE and C of `model` on one split (averages over samples and the stored draws)."""
    head = model.head
    z, mu, logvar = head.sample_latents(features)  # z: (M, N, Z)
    rate = head.kl(mu, logvar).mean()
    target = (features - mean) / std
    sq = (target[None] - model.decoder(z)).pow(2).sum(-1)  # (M, N)
    d = target.shape[1]
    distortion = (sq / 2).mean() + d / 2 * math.log(2 * math.pi)
    logp = torch.log_softmax(head.out(z), -1)
    c = -logp.gather(-1, labels[None, :, None].expand(len(z), -1, 1)).mean()
    return {
        "rate": float(rate),
        "distortion": float(distortion),
        "mse": float(sq.mean() / d),
        "classification": float(c),
    }


def fit_point(
    train: Any,
    val: Any,
    beta: float,
    lam: float,
    *,
    hidden: int,
    samples: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    mean: Tensor,
    std: Tensor,
    progress: Track = quiet,
) -> _Model:
    """Minimise C + beta R + lambda D on train; keep the epoch with the lowest val objective (the point's
    free energy, measured with the stored draws), so each point sits at its own optimum."""
    import torch.nn.functional as F

    from vcal_cli.heads._train import train_epochs
    from vcal_cli.heads.vtst import VTSTModule

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = VTSTModule(train.features.shape[1], train.logits.shape[1], hidden, samples)
        head.eps.copy_(torch.randn(samples, hidden))
        model = _Model(head, train.features.shape[1])

        def loss(x: Tensor, y: Tensor) -> Tensor:
            mu, logvar = head.encode(x)
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
            target = (x - mean) / std
            d_enc = (target - model.decoder(z)).pow(2).sum(1).mean() / 2
            d_dec = (target - model.decoder(z.detach())).pow(2).sum(1).mean() / 2  # the decoder always learns
            return F.cross_entropy(head.out(z), y) + beta * head.kl(mu, logvar).mean() + lam * d_enc + d_dec

        def objective(m: nn.Module, v: Any) -> float:
            r = measure(m, v.features, v.labels, mean, std)
            return r["classification"] + beta * r["rate"] + lam * r["distortion"]

        return train_epochs(
            model,
            loss,
            train,
            val,
            name=f"vtst beta={beta:g} lambda={lam:g}",
            select=objective,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            progress=progress,
        )


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
    lr: float = 1e-4,
    batch_size: int = 256,
    options: Any = None,
    n_bins: int = 15,
    seed: int = 0,
    write_best: str | Path | None = None,
    progress: Track = quiet,
) -> FrontierResult:
    """Fit one variational head per (beta, lambda) on the cached features, measure R, D, C and the metrics,
    select a point on val, and optionally write its checkpoint (as `vcal retrain` does)."""
    from vcal_cli.features.distributed import release_workers
    from vcal_cli.features.options import ExtractOptions, default_data, load_features, open_checkpoint
    from vcal_cli.heads import FitData
    from vcal_cli.heads._train import resolve_epochs
    from vcal_cli.heads.ce import default_latent
    from vcal_cli.metrics import compute_metrics

    if head not in FRONTIER_HEADS:
        raise UsageError(f"--head '{head}' has no frontier; choose one of: {', '.join(FRONTIER_HEADS)}")
    if not 0 <= tolerance < 1:
        raise UsageError(f"--tolerance {tolerance} must be a fraction of accuracy in [0, 1), e.g. 0.005")
    if select not in SELECT:
        raise UsageError(f"--select '{select}' is not one of: {', '.join(SELECT)}")
    o = options or ExtractOptions()
    loaded = open_checkpoint(checkpoint, o)
    data = default_data(loaded, data)
    loaded, tr, _ = load_features(loaded, data, "train", o, progress=progress)
    if write_best is not None and loaded.path and Path(write_best).resolve() == Path(loaded.path).resolve():
        raise UsageError(f"refusing to write '{write_best}' over the checkpoint", hint="choose another --write-best")
    _, va, _ = load_features(loaded, data, "val", o, progress=progress)
    _, te, prep = load_features(loaded, data, "test", o, progress=progress)
    release_workers()  # under torchrun: the ranks shared the extractions; the sweep runs on rank 0
    from vcal_cli.metrics.sanity import val_warning

    warning = val_warning((tr.logits, tr.labels), (va.logits, va.labels), (te.logits, te.labels))
    for fs in (tr, va, te):  # the sweep holds the splits in memory, as fresh float32 (aligned) tensors
        fs.features = fs.features.to(torch.float32, copy=True)
    train, val = FitData(tr.features, tr.logits, tr.labels), FitData(va.features, va.logits, va.labels)
    mean, std = tr.features.mean(0), tr.features.std(0).clamp_min(1e-6)
    k = tr.logits.shape[1]
    z = hidden or default_latent(k)
    n_epochs = resolve_epochs(epochs, len(tr.labels), batch_size)
    grid = [(b, lam) for lam in lambdas for b in betas]
    points = []
    for b, lam in progress(grid, total=len(grid), description="frontier"):
        model = fit_point(
            train, val, b, lam, hidden=z, samples=samples, epochs=n_epochs, lr=lr, batch_size=batch_size,
            seed=seed, mean=mean, std=std,
        )  # fmt: skip
        m = measure(model, va.features, va.labels, mean, std)
        with torch.no_grad():
            mv = compute_metrics(va.labels, logits=model(va.features), n_bins=n_bins, n_bootstrap=0).metrics
            mt = compute_metrics(te.labels, logits=model(te.features), n_bins=n_bins, n_bootstrap=0).metrics
        points.append(
            FrontierPoint(
                b,
                lam,
                m["rate"],
                m["distortion"],
                m["mse"],
                m["classification"],
                mv.accuracy,
                mv.ece,
                mv.nll,
                mt.accuracy,
                mt.ece,
                mt.nll,
                model.head,
            )  # fmt: skip
        )
    i, reason = select_point(points, tolerance, select, len(va.labels))
    settings = {
        "data": data,
        "head": head,
        "betas": list(betas),
        "lambdas": list(lambdas),
        "tolerance": tolerance,
        "select": select,
        "hidden": z,
        "samples": samples,
        "epochs": n_epochs,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "bins": n_bins,
        "split_for_selection": "val",
    }
    result = FrontierResult(points, i, reason, settings, loaded.describe())
    if warning:
        result.warnings.append(warning)
    if write_best is not None:
        result.written = str(_write(loaded, points[i], settings, prep, write_best, data))
    return result


def _write(loaded: Any, p: FrontierPoint, s: dict[str, Any], prep: Any, path: str | Path, data: str) -> Path:
    """The selected head as a vcal checkpoint: a `vtst` head whose params record the point."""
    from vcal_cli.checkpoints import save_checkpoint
    from vcal_cli.heads.vtst import VTSTHead, VTSTParams

    params = VTSTParams(
        seed=s["seed"], hidden=s["hidden"], beta=p.beta, samples=s["samples"], epochs=s["epochs"], lr=s["lr"],
        batch_size=s["batch_size"],
    )  # fmt: skip
    head = VTSTHead(params)
    head.module_ = p.module.eval()
    info = head.info()
    info["frontier"] = {"beta": p.beta, "lambda": p.lam, "rate": p.rate, "distortion": p.distortion}
    meta = {"retrained_from": loaded.sha256, "retrained_on": f"{data}:train (vcal frontier, selected on val)"}
    inputs = tuple(Path(x) for x in (loaded.path,) if x)
    return save_checkpoint(
        loaded.with_head(head.module_, info), path, preprocessing=prep, extra_metadata=meta, inputs=inputs
    )
