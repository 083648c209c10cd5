"""The shared mini-batch loop: shuffling from the seeded RNG, a NaN guard, and epoch selection on val."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from vcal_cli._mapped import take_rows
from vcal_cli.errors import HeadError
from vcal_cli.heads.base import FitData, Track

PAPER_STEPS = 6000  # the two-stage papers' budget: 40 epochs x ~157 batches of 256 (CIFAR-10, 40k train)


def resolve_epochs(epochs: int | None, n: int, batch_size: int, paper_epochs: int = 40) -> int:
    """`None` -> the paper's 40 epochs, raised on small splits until about 6,000 Adam steps run.

    40 epochs of 1,077 digits are 200 steps, which leaves a fresh head far from converged; matching the
    papers' number of optimizer steps (not epochs) keeps their learning rate meaningful.
    """
    if epochs is not None:
        return epochs
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    return max(paper_epochs, math.ceil(PAPER_STEPS / steps_per_epoch))


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


def train_epochs(
    module: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    train: FitData,
    val: FitData,
    *,
    name: str,
    epochs: int,
    lr: float,
    batch_size: int,
    param_groups: list[dict] | None = None,
    select: Callable[[nn.Module, FitData], float] = val_nll,
    after_step: Callable[[], None] | None = None,
    optimizer: Callable[[list], torch.optim.Optimizer] | None = None,
    schedule: Callable[[int], float] | None = None,
    progress: Track,
) -> nn.Module:
    """Adam (or `optimizer(params)`) over shuffled mini-batches; keep the epoch with the lowest
    `select(module, val)`. `schedule(epoch)` scales every group's learning rate.

    `loss_fn(features, labels)` returns the scalar loss of one batch. A NaN or inf loss stops the fit
    with a `HeadError` (nothing gets written).
    """
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise HeadError(
            f"head '{name}' needs --epochs >= 1, --batch-size >= 1 and --lr > 0 (got {epochs}, {batch_size}, {lr})"
        )
    params = param_groups or list(module.parameters())
    opt = optimizer(params) if optimizer is not None else torch.optim.Adam(params, lr=lr)
    base_lrs = [g["lr"] for g in opt.param_groups]
    n = len(train.labels)
    best, best_state = math.inf, copy.deepcopy(module.state_dict())
    for epoch in progress(range(epochs), total=epochs, description=f"fit {name}"):
        if schedule is not None:  # a per-epoch learning-rate factor
            for g, base_lr in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = base_lr * schedule(epoch)
        module.train()
        perm = torch.randperm(n)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(take_rows(train.features, idx).float(), train.labels[idx])
            if not torch.isfinite(loss):
                raise HeadError(
                    f"head '{name}' diverged to {loss.item()} at epoch {epoch + 1} (lr={lr})", hint="try a smaller --lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
        module.eval()
        score = select(module, val)
        if not math.isfinite(score):
            raise HeadError(
                f"head '{name}' gave a non-finite val score at epoch {epoch + 1} (lr={lr})", hint="try a smaller --lr"
            )
        if score < best:
            best, best_state = score, copy.deepcopy(module.state_dict())
    module.load_state_dict(best_state)
    return module.eval()
