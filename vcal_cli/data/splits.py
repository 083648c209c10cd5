"""Deterministic splits. vcal's rule, documented in the README:

- A source with official train and test parts (SVHN, CIFAR, MNIST, Fashion-MNIST, an npz with
  `x_train`/`x_test`, an image folder with `train/` and `test/`): `test` is the official test part;
  `val` is 10% of the official train part (at most 5,000 images), drawn with seed 0; `train` is the rest.
- A single pool (scikit-learn's digits, an npz with only `x`/`y`, a plain image folder): a seeded
  permutation (seed 0) puts the first 30% (rounded up) in `test`, the next 10% (rounded up) in `val`
  and the rest in `train`. For digits (1,797 images) that is 540 test, 180 val, 1,077 train.

Indices come back sorted, so a split is the same set in the same order on every machine.

`--val-from test` is for models trained on the whole official train part (what most users do): there
vcal's `val` would be data the network has seen. With it, `train` is the whole official train part (or
the train and val shares of a pool) and the official test part is cut in two fixed halves by a seeded
permutation (seed 0): the first half (rounded up) is `val`, the rest `test`. The test split is then half
as large, so intervals are about 1.4x wider: the price of calibrating on data the network never saw.
"""

from __future__ import annotations

import math

import torch

from vcal_cli.errors import UsageError

SPLITS = ("train", "val", "test")
VAL_FROM = ("train", "test")
SEED = 0
TEST_FRACTION = 0.3
VAL_FRACTION = 0.1
VAL_MAX = 5000


def _check(split: str) -> None:
    if split not in SPLITS:
        raise UsageError(f"--split '{split}' is not a split; choose one of: {', '.join(SPLITS)}")


def _perm(n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(SEED))


def pool_split(n: int, split: str) -> torch.Tensor:
    """Indices of `split` within a single pool of `n` items (30% test, 10% val, 60% train)."""
    _check(split)
    perm = _perm(n)
    n_test, n_val = math.ceil(TEST_FRACTION * n), math.ceil(VAL_FRACTION * n)
    part = {"test": perm[:n_test], "val": perm[n_test : n_test + n_val], "train": perm[n_test + n_val :]}[split]
    return part.sort().values


def train_val_split(n_train: int, split: str) -> torch.Tensor:
    """Indices of `train` or `val` within an official train part of `n_train` items."""
    _check(split)
    perm = _perm(n_train)
    n_val = min(math.ceil(VAL_FRACTION * n_train), VAL_MAX)
    return (perm[:n_val] if split == "val" else perm[n_val:]).sort().values


def test_halves(n_test: int, split: str) -> torch.Tensor:
    """Indices of `val` (first half, rounded up) or `test` within an official test part (`--val-from test`)."""
    _check(split)
    perm = _perm(n_test)
    n_val = math.ceil(n_test / 2)
    return (perm[:n_val] if split == "val" else perm[n_val:]).sort().values
