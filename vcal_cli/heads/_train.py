"""Heads trained by mini-batch gradient descent on cached features: shared params, one loop, one `_fit`.

`SGDHead` holds what the four trained heads (`ce`, `vtst`, `vc`, `haframe`) share: the `epochs`, `lr`,
`batch_size` and `patience` params, shuffling from the seeded RNG, a NaN guard, and keeping the epoch with the
best val score (NLL unless the head says otherwise), stopping once that score has not improved for `patience`
epochs. A head gives only its maths: `build` (the module), `loss` (one batch's scalar objective) and, where
it differs from Adam at a constant rate, `optimizer`, `schedule` and `after_step`.
"""

from __future__ import annotations

import abc
import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

from vcal_cli._mapped import take_rows
from vcal_cli.errors import HeadError
from vcal_cli.heads.base import FitData, Head, HeadModule, HeadParams, Track, param

PAPER_STEPS = 6000  # the two-stage papers' budget: 40 epochs x ~157 batches of 256 (CIFAR-10, 40k train)


@dataclass(frozen=True, kw_only=True)
class SGDParams(HeadParams):
    """What every mini-batch-trained head takes (each head file sets its paper's defaults)."""

    epochs: int | None = param(None, "Training epochs (auto: 40, raised on small splits until ~6,000 steps run).")
    lr: float = param(1e-4, "Learning rate.")
    batch_size: int = param(256, "Mini-batch size.", flag="--train-batch-size")
    patience: int | None = param(
        None, "Stop after this many epochs without a better val score (auto: max(5, epochs/8); 0: run all)."
    )
    train_precision: str = param(
        "auto",
        "Arithmetic of the head's training steps: fp32, bf16 (autocast), or auto (bf16 where this CPU has "
        "AVX-512 BF16 and a step is at least 256 rows x 256 features: 1.5x faster for vtst at 256 x 640, same "
        "kept epochs; the val scoring and the saved head stay float32).",
    )
    train_device: str = param(
        "auto",
        "Where the head trains: cpu, cuda (or cuda:N), or auto (CUDA when torch sees a GPU, else the CPU). On CUDA "
        "the train and val features are copied to the GPU once; the saved head is moved back to the CPU.",
    )


def resolve_epochs(epochs: int | None, n: int, batch_size: int, paper_epochs: int = 40) -> int:
    """`None` -> the paper's 40 epochs, raised on small splits until about 6,000 Adam steps run.

    40 epochs of 1,077 digits are 200 steps, which leaves a fresh head far from converged; matching the
    papers' number of optimizer steps (not epochs) keeps their learning rate meaningful.
    """
    if epochs is not None:
        return epochs
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    return max(paper_epochs, math.ceil(PAPER_STEPS / steps_per_epoch))


def adam(params: Any, lr: float, *, decoupled: bool = False) -> torch.optim.Optimizer:
    """Adam (AdamW with `decoupled`) with torch's fused kernel: one pass over each parameter instead of the
    for-loop's five (`bench_heads.py`: 0.22 ms against 0.66 ms a `vtst` step, 13% of its bf16 step). It rounds
    differently from the for-loop kernel, which moves a fit's numbers in the last digits, not beyond noise."""
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    try:
        return cls(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # a parameter type or device without a fused kernel
        return cls(params, lr=lr)


TRAIN_PRECISIONS = ("fp32", "bf16", "auto")


def bf16_is_fast() -> bool:
    """True where this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX tiles).

    oneDNN's own check (`torch.ops.mkldnn._is_mkldnn_bf16_supported`) is also true on AVX-512 CPUs without
    either, where it emulates bf16: there autocast made a training step 3.5x slower than float32 (an Intel Xeon
    with AVX-512 and VNNI only: 84 against 24 ms a `ce` step at batch 256 x 2,048 features, 1,000 classes)."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(bool(check()) for check in checks if check is not None)
    except RuntimeError:  # a torch build without these probes
        return False


BF16_MIN_STEP = 256 * 256  # batch rows x feature width below which autocast costs more than it saves


def resolve_train_precision(
    precision: str, batch_size: int = 256, in_features: int = 512, device: torch.device | None = None
) -> bool:
    """Whether the training steps run under bf16 autocast: `bf16`, or `auto` on a CPU with native bf16 (or a
    CUDA device that supports bf16) when the step's products are large enough to pay for the casts (measured on
    the CPU: 1.5x for `vtst` at batch 256 x 640; on the digits sample's 64-wide features, or `haframe`'s batches
    of 64, autocast made the fits up to 2x slower)."""
    if precision not in TRAIN_PRECISIONS:
        raise HeadError(
            f"--train-precision '{precision}' is not a choice; choose one of: {', '.join(TRAIN_PRECISIONS)}"
        )
    big = batch_size * in_features >= BF16_MIN_STEP
    fast = torch.cuda.is_bf16_supported() if device is not None and device.type == "cuda" else bf16_is_fast()
    return precision == "bf16" or (precision == "auto" and big and fast)


def resolve_train_device(device: str) -> torch.device:
    """`--train-device`: `auto` is the current CUDA device when torch sees one, else the CPU."""
    if device == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if device != "cpu" and device != "cuda" and not device.startswith("cuda:"):
        raise HeadError(f"--train-device '{device}' is not a device; choose one of: auto, cpu, cuda, cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HeadError(f"--train-device {device}: torch sees no CUDA device here", hint="use --train-device cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise HeadError(f"--train-device '{device}' is not a device; choose one of: auto, cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise HeadError(
            f"--train-device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)",
            hint="use cuda:0 .. cuda:N-1, or auto",
        )
    return dev


def check_train_options(params: dict[str, Any]) -> None:
    """A bad `--train-precision` or `--train-device` among a command's head params, before any extraction."""
    if params.get("train_precision") is not None:
        resolve_train_precision(params["train_precision"])
    if params.get("train_device") is not None:
        resolve_train_device(params["train_device"])


def on_device(data: FitData, device: torch.device, split: str) -> FitData:
    """The split with its features and labels on `device` (one copy, in the cache's own dtype); unchanged on the
    CPU. The logits stay where they are: a trained head reads only their width."""
    if device.type == "cpu":
        return data
    try:
        return FitData(data.features.to(device), data.logits, data.labels.to(device))
    except torch.OutOfMemoryError:
        gb = data.features.numel() * data.features.element_size() / 1e9
        raise HeadError(
            f"the {split} features ({gb:.1f} GB) do not fit in the memory of {device}",
            hint="use --train-device cpu (the CPU path streams a mapped cache in batches)",
        ) from None


def resolve_patience(patience: int | None, epochs: int) -> int:
    """`None` -> max(5, epochs / 8): five of the papers' 40 epochs, an eighth of a longer small-split schedule.
    0 runs the whole schedule (the papers' protocol: every epoch scored, the best kept)."""
    if patience is None:
        return max(5, epochs // 8)
    if patience < 0:
        raise HeadError(f"--patience {patience} must be >= 0 (0 runs every epoch)")
    return patience


def val_error(module: nn.Module, val: FitData) -> float:
    """Top-1 error on val (selection by best val accuracy), in row blocks."""
    with torch.no_grad():
        wrong = sum(int((module(x).argmax(1) != val.labels[a : a + len(x)]).sum()) for a, x in val.feature_batches())
    return wrong / len(val.labels)


def val_nll(module: nn.Module, val: FitData) -> float:
    """Mean NLL of the module's log probabilities on val (the default selection criterion), in row blocks."""
    with torch.no_grad():
        total = sum(
            float(module(x).gather(1, val.labels[a : a + len(x), None]).double().sum())
            for a, x in val.feature_batches()
        )
    return -total / len(val.labels)


@dataclass(frozen=True, kw_only=True)
class FitLog:
    """What the loop did: the kept epoch (1-based), the epochs run, the schedule's length and the kept score."""

    best_epoch: int
    epochs_run: int
    epochs: int
    best_score: float
    stopped: str | None = None  # why the schedule was cut short by a deadline, e.g. "after 0.42 of 40 epochs"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"best_epoch": self.best_epoch, "epochs_run": self.epochs_run, "epochs": self.epochs}
        return {**d, "stopped": self.stopped} if self.stopped else d


M = TypeVar("M", bound=nn.Module)


@contextmanager
def _ticks(progress: Track, total: int, description: str) -> Iterator[Callable[[], None]]:
    """`tick()` once per batch: a progress line every few seconds inside an epoch, which at 1.28M rows takes
    minutes. The tracker is closed however the loop ends (early stop, deadline, a diverged fit)."""
    it = iter(progress(range(total), total=total, description=description))
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        next(it, None)

    try:
        yield tick
    finally:
        if done >= total:
            next(it, None)  # past the last step: the tracker ends as a finished loop
        close = getattr(it, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True, kw_only=True)
class Loop:
    """How `train_epochs` runs: its name in progress lines and errors, epochs, learning rate, batch size, early
    stopping (`patience` epochs without a new best; 0: run all) on `select(module, val)`, a hook after each step,
    the optimizer (Adam by default), a per-epoch learning-rate factor, bfloat16 autocast, and a deadline
    (`time.monotonic()`). Validated once, here."""

    name: str
    epochs: int
    lr: float
    batch_size: int
    patience: int = 0
    select: Callable[[Any, FitData], float] = val_nll
    after_step: Callable[[], None] | None = None
    optimizer: torch.optim.Optimizer | None = None
    schedule: Callable[[int], float] | None = None
    bf16: bool = False
    deadline: float | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise HeadError(
                f"head '{self.name}' needs --epochs >= 1, --batch-size >= 1 and --lr > 0 "
                f"(got {self.epochs}, {self.batch_size}, {self.lr})"
            )


def train_epochs(
    module: M,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    train: FitData,
    val: FitData,
    loop: Loop,
    *,
    progress: Track,
) -> tuple[M, FitLog]:
    """Adam (or `loop.optimizer`) over shuffled mini-batches; keep the epoch with the lowest `loop.select(module,
    val)`, stopping after `loop.patience` epochs without a new best (0: run all). `loop.schedule(epoch)` scales every
    group's learning rate.

    `loss_fn(features, labels)` returns the scalar loss of one batch. A NaN or inf loss stops the fit
    with a `HeadError` (nothing gets written). With `loop.bf16` the batches' forward passes run under bfloat16
    autocast (the weights, the optimizer and the val scoring stay float32). The module and both splits must
    already be on one device (the labels' device is the one the loop uses). Past `loop.deadline`
    (`time.monotonic()`) the loop stops after the current batch; that part epoch is scored like any other.
    """
    name, epochs, lr, batch_size, patience = loop.name, loop.epochs, loop.lr, loop.batch_size, loop.patience
    select, after_step, optimizer, schedule = loop.select, loop.after_step, loop.optimizer, loop.schedule
    bf16, deadline = loop.bf16, loop.deadline
    opt = optimizer if optimizer is not None else adam(module.parameters(), lr)
    base_lrs = [g["lr"] for g in opt.param_groups]
    n, device = len(train.labels), train.labels.device
    best, best_epoch, best_state = math.inf, 0, copy.deepcopy(module.state_dict())
    run, stopped = 0, None
    batches = math.ceil(n / batch_size)
    with _ticks(progress, epochs * batches, f"fit {name}: {epochs} epochs x {batches} batches") as tick:
        for epoch in range(epochs):
            if schedule is not None:  # a per-epoch learning-rate factor
                for g, base_lr in zip(opt.param_groups, base_lrs, strict=True):
                    g["lr"] = base_lr * schedule(epoch)
            module.train()
            perm = torch.randperm(n).to(device)  # drawn on the CPU: the same batches on every device
            for i in range(0, n, batch_size):
                tick()
                idx = perm[i : i + batch_size]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = loss_fn(take_rows(train.features, idx).float(), train.labels.index_select(0, idx))
                if not math.isfinite(loss.item()):
                    raise HeadError(
                        f"head '{name}' diverged to {loss.item()} at epoch {epoch + 1} (lr={lr})",
                        hint="try a smaller --lr",
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if after_step is not None:
                    after_step()
                if deadline is not None and time.monotonic() > deadline:
                    stopped = f"after {epoch + min(i + batch_size, n) / n:.2f} of {epochs} epochs"
                    break
            module.eval()
            run = epoch + 1
            score = select(module, val)
            if not math.isfinite(score):
                raise HeadError(
                    f"head '{name}' gave a non-finite val score at epoch {epoch + 1} (lr={lr})",
                    hint="try a smaller --lr",
                )
            if score < best:
                best, best_epoch, best_state = score, epoch + 1, copy.deepcopy(module.state_dict())
            elif patience and epoch + 1 - best_epoch >= patience:
                break
            if stopped:
                break
    module.load_state_dict(best_state)
    return module.eval(), FitLog(best_epoch=best_epoch, epochs_run=run, epochs=epochs, best_score=best, stopped=stopped)


P = TypeVar("P", bound=SGDParams)
HM = TypeVar("HM", bound=HeadModule)


class SGDHead(Head[P], Generic[P, HM]):
    """A head trained by mini-batch gradient descent on train features, its epoch chosen on val."""

    paper_epochs: int = 40  # `epochs=None` resolves to this, raised on small splits (see `resolve_epochs`)

    @abc.abstractmethod
    def build(self, train: FitData) -> HM:
        """A freshly initialised module for these features (the RNG is already seeded), on the CPU; the fit moves
        it to the features' device. Anything else `loss` uses must be put on `train.features.device` here."""

    @abc.abstractmethod
    def loss(self, module: HM, x: Tensor, y: Tensor) -> Tensor:
        """The scalar training objective of one batch."""

    def optimizer(self, module: HM) -> torch.optim.Optimizer:
        """Adam at a constant rate (torch's fused kernel, see `adam`)."""
        return adam(module.parameters(), self.params.lr)

    def schedule(self, epochs: int) -> Callable[[int], float] | None:
        """A per-epoch learning-rate factor, or None for a constant rate."""
        return None

    def after_step(self, module: HM) -> None:
        """Called after every optimizer step (VC's discriminator takes its own step here)."""

    def label(self) -> str:
        """What the progress line calls this fit."""
        return self.name

    def select(self, module: HM, val: FitData) -> float:
        """The val score the kept epoch minimises: NLL (the two-stage papers' rule)."""
        return val_nll(module, val)

    def _fit(self, train: FitData, val: FitData, *, base: nn.Module | None, progress: Track) -> HM:
        p = self.params
        epochs = resolve_epochs(p.epochs, len(train.labels), p.batch_size, self.paper_epochs)
        self.device_ = device = resolve_train_device(p.train_device)
        bf16 = resolve_train_precision(p.train_precision, p.batch_size, train.features.shape[1], device)
        train, val = on_device(train, device, "train"), on_device(val, device, "val")
        module = self.build(train).to(device)  # initialised on the CPU: the same weights on every device
        loop = Loop(
            name=self.label(),
            epochs=epochs,
            lr=p.lr,
            batch_size=p.batch_size,
            patience=resolve_patience(p.patience, epochs),
            select=self.select,
            optimizer=self.optimizer(module),
            schedule=self.schedule(epochs),
            after_step=lambda: self.after_step(module),
            bf16=bf16,
            deadline=self.deadline,
        )
        module, self.fit_log_ = train_epochs(
            module, lambda x, y: self.loss(module, x, y), train, val, loop, progress=progress
        )
        return module.cpu()

    def extra_report(self) -> dict[str, Any]:
        return {**self.fit_log_.to_dict(), "device": str(self.device_)}

    def cut_short(self) -> str | None:
        log = self.fit_log_
        if log.stopped:
            return f"its fit stopped at its deadline {log.stopped}"
        if log.epochs < self.paper_epochs:
            return f"it ran {log.epochs} of the papers' {self.paper_epochs} epochs (--epochs)"
        return None
