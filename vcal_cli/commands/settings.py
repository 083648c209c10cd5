"""What each command is asked to do, one settings object per command, each field declared once with its default
(from `vcal_cli._defaults`) and checked once, in the constructor: the same `UsageError` whether the object comes
from the command line or from Python. Torch-free, so the CLI's help reads the defaults without loading torch.

    audit(path, data="digits", settings=AuditSettings(n_bootstrap=0))
    retrain(path, ["vtst"], settings=RetrainSettings(params={"epochs": 5}, out_dir="runs/vtst"))
    frontier(path, settings=FrontierSettings(betas=(0.0, 1.0), lambdas=(0.0,)))

Loading and extraction have their own (`vcal_cli.features.settings.ExtractOptions`), as do the robustness and
conformal sections (`RobustnessOptions`, `ConformalOptions`), which audit and retrain hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vcal_cli._defaults import (
    DEFAULT_AUGMENT,
    DEFAULT_AUTO_BUDGET,
    DEFAULT_N_BINS,
    DEFAULT_REPORT_DIR,
    DEFAULT_TRAIN_VIEWS,
)
from vcal_cli.errors import UsageError
from vcal_cli.estimation import Statistics, whole

if TYPE_CHECKING:
    from vcal_cli.evaluations.robustness import RobustnessOptions
    from vcal_cli.metrics.conformal import ConformalOptions

FRONTIER_HEADS = ("vtst",)  # the heads with a (beta, lambda) surface
FRONTIER_SELECT = ("ece", "rate", "nll")  # frontier --select
DEFAULT_BETAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # the frontier's beta grid


@dataclass(frozen=True, kw_only=True)
class Sections:
    """What an audit evaluates beyond the calibration metrics: mistake severity on a class `hierarchy` (a file or
    built-in name; None: the data set's built-in one, if any), `robustness` (shift, OOD, adversarial) and
    `conformal` (prediction sets and risk control, calibrated on val)."""

    hierarchy: str | Path | None = None
    robustness: RobustnessOptions | None = None
    conformal: ConformalOptions | None = None


@dataclass(frozen=True, kw_only=True)
class AuditSettings(Statistics, Sections):
    """`vcal audit`: the statistics, the sections and `suggest` (also score temperature scaling fitted on val)."""

    suggest: bool = True


@dataclass(frozen=True, kw_only=True)
class RetrainSettings(Statistics, Sections):
    """`vcal retrain`: the heads' `params` (name -> value, for every head that has it), where the checkpoints go
    (`out` for one head, else `out_dir/<stem>.<head>.safetensors`; `head_only` writes only the head, `export` the
    model with the head folded in, in its own format), `--head auto`'s criterion and time budget, and what the heads
    that learn on train see: `train_views` augmented views (0: the clean features) and a `train_fraction` of it."""

    params: dict[str, Any] = field(default_factory=dict)
    out_dir: str | Path = Path(DEFAULT_REPORT_DIR)
    out: str | Path | None = None
    head_only: bool = False
    export: str | None = None
    auto_select: str = "nll"
    auto_budget: float | None = DEFAULT_AUTO_BUDGET
    train_views: int = DEFAULT_TRAIN_VIEWS
    augment: str = DEFAULT_AUGMENT
    train_fraction: float = 1.0

    def __post_init__(self) -> None:  # the auto options are checked by `AutoOptions`, the export by `check_export`
        super().__post_init__()
        if Path(self.out_dir).suffix in (".safetensors", ".pt", ".pth"):
            raise UsageError(
                f"--out '{self.out_dir}' names the report directory, not a checkpoint file",
                hint=f"write one head's checkpoint with --checkpoint-out {self.out_dir}",
            )
        if not whole(self.train_views) or self.train_views < 0:
            raise UsageError(f"--train-views {self.train_views} must be 0 or more")
        if not 0 < self.train_fraction <= 1:
            raise UsageError(
                f"--train-fraction {self.train_fraction} must lie in (0, 1], e.g. 0.1 for a tenth of train"
            )


def parse_grid(text: str, flag: str) -> tuple[float, ...]:
    """A comma-separated grid of weights >= 0 (`--betas`, `--lambdas`)."""
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        vals = ()
    if not vals or any(not math.isfinite(v) or v < 0 for v in vals):
        raise UsageError(f"{flag} '{text}' must be comma-separated numbers >= 0, e.g. 0.001,0.01,0.1")
    return vals


@dataclass(frozen=True, kw_only=True)
class FrontierSettings:
    """`vcal frontier`: the head and its (beta, lambda) grid, the walk (`warm`: each point from its neighbour's
    fit, re-equilibrated for `warm_epochs` at `warm_lr`; or cold fits), the point selected on val (`select`,
    within `tolerance` of the best accuracy), the fits' schedule and device, `iso_c` (trace the
    iso-classification process instead: for each beta the lambda whose val C is `iso_c`), the bins and seed, and
    `write_best` (write the selected point's checkpoint)."""

    head: str = "vtst"
    betas: tuple[float, ...] = DEFAULT_BETAS
    lambdas: tuple[float, ...] = (0.0,)
    tolerance: float = 0.005
    select: str = "ece"
    hidden: int | None = None
    samples: int = 10
    epochs: int | None = None
    warm_epochs: int | None = None
    warm: bool = True
    warm_lr: float | None = None
    iso_c: float | None = None
    lr: float = 1e-4
    batch_size: int = 256
    train_device: str = "auto"
    n_bins: int = DEFAULT_N_BINS
    seed: int = 0
    write_best: str | Path | None = None

    def __post_init__(self) -> None:
        """Every flag checked before any extraction."""
        if self.head not in FRONTIER_HEADS:
            raise UsageError(f"--head '{self.head}' has no frontier; choose one of: {', '.join(FRONTIER_HEADS)}")
        if not 0 <= self.tolerance < 1:
            raise UsageError(f"--tolerance {self.tolerance} must be a fraction of accuracy in [0, 1), e.g. 0.005")
        if self.select not in FRONTIER_SELECT:
            raise UsageError(f"--select '{self.select}' is not one of: {', '.join(FRONTIER_SELECT)}")
        if self.warm_epochs is not None and self.warm_epochs < 1:
            raise UsageError(f"--warm-epochs {self.warm_epochs} must be at least 1")
        if self.warm_lr is not None and not (math.isfinite(self.warm_lr) and self.warm_lr > 0):
            raise UsageError(f"--warm-lr {self.warm_lr} must be a learning rate > 0, e.g. 1e-3")
        if self.iso_c is not None and not (math.isfinite(self.iso_c) and self.iso_c > 0):
            raise UsageError(f"--iso-c {self.iso_c} must be a classification loss in nats > 0, e.g. 0.2")
        Statistics(n_bins=self.n_bins, n_bootstrap=0, seed=self.seed)  # the same bounds as every command
