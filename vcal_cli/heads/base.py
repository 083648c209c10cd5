"""The shared head interface and the registry every head file registers into.

A head follows the scikit-learn estimator contract: `__init__` stores its params and nothing else;
`fit(train, val)` validates, learns and returns `self`; learned state ends in `_` (`module_`).

Every fitted head becomes a `module_`: an `nn.Module` mapping penultimate features (N, D) to *log
predictive probabilities* (N, K). softmax(module(x)) is the predictive for every head, so metrics,
the exported checkpoint and attacks all share one code path. Stochastic heads draw their Monte-Carlo
noise once at fit time into a buffer, so the module is deterministic and a saved checkpoint
reproduces the retrain's numbers exactly.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

import torch
from torch import Tensor, nn

from vcal_cli._mapped import release_pages
from vcal_cli._progress import Track, quiet
from vcal_cli._registry import Registry
from vcal_cli.errors import HeadError, NotFittedError, UsageError
from vcal_cli.hierarchy import Hierarchy

HEAD_FORMAT = 1


class DeadlinePassed(HeadError):
    """A fit passed its `deadline` before it had anything to keep (`--head auto` skips the candidate, saying why)."""


@dataclass(frozen=True)
class FitData:
    """Cached features and labels of one split (a `FeatureSet` without the file bookkeeping).

    Features may be float16/bfloat16 and memory-mapped (a cache larger than memory): heads read them in
    batches converted to float32 and release the pages they are done with (`release_pages`).
    """

    features: Tensor  # (N, D) float32, float16 or bfloat16
    logits: Tensor  # (N, K) the original head's outputs
    labels: Tensor  # (N,) int64

    def fraction(self, fraction: float, seed: int = 0) -> FitData:
        """A seeded, class-stratified `fraction` of the rows (at least one per class present), in their order;
        `self` when fraction is 1. Rows are gathered (a copy): for the heads' low-data studies, not for scale."""
        if fraction >= 1:
            return self
        gen = torch.Generator().manual_seed(seed)
        keep = []
        for c in torch.unique(self.labels).tolist():
            rows = torch.nonzero(self.labels == c)[:, 0]
            take = max(1, round(fraction * len(rows)))
            keep.append(rows[torch.randperm(len(rows), generator=gen)[:take]])
        idx = torch.cat(keep).sort().values
        return FitData(self.features[idx], self.logits[idx], self.labels[idx])

    def feature_batches(self, batch_size: int = 8192) -> Iterator[tuple[int, Tensor]]:
        """(start, float32 features) of consecutive row blocks, each block's pages released once read."""
        for a in range(0, len(self.labels), batch_size):
            block = self.features[a : a + batch_size]
            x = block.to(torch.float32, copy=True)
            release_pages(block)
            yield a, x


@dataclass(frozen=True)
class HeadParams:
    """Hyperparameters every head has. Subclasses add theirs, with the paper's defaults."""

    seed: int = 0  # seeds initialisation, shuffling and Monte-Carlo noise: same seed, same bytes


class HeadModule(nn.Module, abc.ABC):
    """What a fitted head becomes: penultimate features (N, D) -> log predictive probabilities (N, K).

    `Head.Module(**module.config())` rebuilds it (the weights come from the checkpoint's state dict);
    `uncertainty` gives the head's own OOD scores, if it has any.
    """

    @abc.abstractmethod
    def forward(self, features: Tensor) -> Tensor:
        """Log predictive probabilities (N, K)."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON-serialisable)."""

    def uncertainty(self, features: Tensor) -> dict[str, Tensor]:
        """The head's own OOD scores, name -> (N,), higher = more uncertain; none by default."""
        return {}

    def as_linear(self) -> tuple[Tensor, Tensor] | None:
        """(W, b) in float64 when the head's logits are one linear map W f + b of the features (its log_softmax only
        shifts each row), so it folds into a model's last linear layer (`vcal_cli.checkpoints.export`); else None."""
        return None


P = TypeVar("P", bound=HeadParams)


class Head(abc.ABC, Generic[P]):
    """One recalibration method. Subclasses set the class attributes and implement `_fit`."""

    name: ClassVar[str]  # registry key = CLI value = file name = report key
    summary: ClassVar[str]  # one line for `vcal heads`
    paper: ClassVar[str]
    Params: ClassVar[type[HeadParams]]  # the P of Head[P]
    Module: ClassVar[type[HeadModule]]  # what `_fit` returns and `build_module` rebuilds
    needs_linear_base: ClassVar[bool] = False  # True if fit needs the checkpoint's own nn.Linear head
    needs_hierarchy: ClassVar[bool] = False  # True if fit needs a class hierarchy
    fits_on: ClassVar[str] = "train"  # train: fitted on train, selected on val; val: fitted on val (post-hoc)
    fast_params: ClassVar[dict[str, Any]] = {}  # params that make the fit quick, for the tests
    hierarchy: Hierarchy | None = None  # set by fit: the class hierarchy it was given
    deadline: float | None = None  # set by fit: a time.monotonic() the iterative fits stop at (`--auto-budget`)
    module_: HeadModule  # set by fit

    def __init__(self, params: P | None = None) -> None:
        self.params: P = params if params is not None else cast(P, self.Params())

    @classmethod
    def make_params(cls, **overrides: Any) -> Any:
        """Params with `overrides` applied; None means "the paper's default"; unknown names are an error."""
        names = {f.name for f in dataclasses.fields(cls.Params)}
        given = {k: v for k, v in overrides.items() if v is not None}
        bad = sorted(set(given) - names)
        if bad:
            raise UsageError(
                f"{', '.join(flag_of(b) for b in bad)} does not apply to head '{cls.name}'",
                hint=f"it takes: {', '.join(sorted(flag_of(f.name, f) for f in dataclasses.fields(cls.Params)))}",
            )
        for k, v in given.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if not math.isfinite(v) or v < 0 or (k in AT_LEAST_ONE and v < 1):
                least = "at least 1" if k in AT_LEAST_ONE else "a finite number >= 0"
                raise UsageError(f"{flag_of(k)} {v} is not valid for head '{cls.name}': it must be {least}")
        return cls.Params(**given)

    def fit(
        self,
        train: FitData,
        val: FitData,
        *,
        base: nn.Module | None = None,
        hierarchy: Hierarchy | None = None,
        progress: Track = quiet,
        deadline: float | None = None,
    ) -> Self:
        """Fit on train features (selecting on val where the method does); returns self.

        `base` is the checkpoint's own head (temperature scaling rescales it); `hierarchy` the class
        hierarchy in the model's class order (HAFrame builds its frame from it). `deadline` (a `time.monotonic()`
        value) stops the heads that iterate over train early: the trained heads after the batch that passes it
        (the part epoch is scored and kept if best), `bayes` after the L-BFGS iterations that pass it; each
        says so in `extra_report()["stopped"]`. `--head auto` sets it from `--auto-budget`.
        """
        check_fit_data(train, "train")
        check_fit_data(val, "val")
        if train.features.shape[1] != val.features.shape[1] or train.logits.shape[1] != val.logits.shape[1]:
            raise HeadError("train and val features have different widths or class counts")
        if self.needs_linear_base and not isinstance(base, nn.Linear):
            raise HeadError(
                f"head '{self.name}' needs the checkpoint's own linear head",
                hint="retrain from the original checkpoint, not from a retrained one",
            )
        if self.needs_hierarchy and hierarchy is None:
            raise HeadError(
                f"head '{self.name}' needs a class hierarchy",
                hint="pass --hierarchy FILE (or use a data set with a built-in one, such as cifar100)",
            )
        if hierarchy is not None and len(hierarchy.classes) != train.logits.shape[1]:
            raise HeadError(
                f"the hierarchy has {len(hierarchy.classes)} classes, the checkpoint {train.logits.shape[1]}"
            )
        self.hierarchy, self.deadline = hierarchy, deadline
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.params.seed)
            module = self._fit(train, val, base=base, progress=progress)
        self.module_ = module.eval()
        for p in self.module_.parameters():
            p.requires_grad_(False)
        return self

    @abc.abstractmethod
    def _fit(self, train: FitData, val: FitData, *, base: nn.Module | None, progress: Track) -> HeadModule:
        """Learn and return the module (features -> log probabilities)."""

    def _check_fitted(self) -> HeadModule:
        if not hasattr(self, "module_"):
            raise NotFittedError(f"head '{self.name}' is not fitted yet; call fit() first")
        return self.module_

    @torch.inference_mode()
    def predict_log_proba(self, features: Tensor, batch_size: int = 256) -> Tensor:
        """Log predictive probabilities (N, K), applied in batches like the feature extraction."""
        module = self._check_fitted()
        # a fresh float32 copy of each batch: a mapped cache's rows sit at arbitrary byte offsets, and BLAS
        # kernels may round differently on unaligned memory than on the model's own (aligned) activations
        return torch.cat(
            [
                module(features[i : i + batch_size].to(torch.float32, copy=True))
                for i in range(0, len(features), batch_size)
            ]
        )

    def predict_proba(self, features: Tensor) -> Tensor:
        return self.predict_log_proba(features).exp()

    def info(self) -> dict[str, Any]:
        """What rebuilds the module from a checkpoint: head name, params and the module's constructor args."""
        module = self._check_fitted()
        return {
            "name": self.name,
            "format": HEAD_FORMAT,
            "params": dataclasses.asdict(self.params),
            "module": module.config(),
        }

    def extra_report(self) -> dict[str, Any]:
        """Fitted quantities worth a line in the report (e.g. the temperature)."""
        return {}

    def cut_short(self) -> str | None:
        """Why the fit ran less than its method's full schedule (a deadline, fewer epochs or iterations), in words
        that finish "it ...", or None: a warning about the head's quality says so before blaming the data."""
        return None

    def refit_params(self) -> P:
        """Params for refitting this head on part of the data (cross-fitting): its own, with anything it chose
        by an inner search fixed at the choice (Dirichlet's lambda)."""
        return self.params


HEADS: Registry[type[Head]] = Registry("head")


def register(cls: type[Head]) -> type[Head]:
    HEADS.register(cls.name, cls.summary)(cls)
    return cls


def check_fit_data(d: FitData, split: str) -> None:
    n = len(d.labels)
    if d.features.ndim != 2 or len(d.features) != n or len(d.logits) != n:
        raise HeadError(
            f"{split} split: features {tuple(d.features.shape)}, logits {tuple(d.logits.shape)} and "
            f"labels ({n},) must share their first dimension"
        )
    if n == 0:
        raise HeadError(f"{split} split is empty")
    if not all(torch.isfinite(x).all() for _, x in d.feature_batches()):
        raise HeadError(f"{split} features hold NaN or inf", hint="clear the cache (vcal cache clear) and re-extract")
    k = d.logits.shape[1]
    if d.labels.min() < 0 or d.labels.max() >= k:
        raise HeadError(f"{split} labels lie outside 0..{k - 1}, the checkpoint's classes")


def list_heads() -> list[str]:
    return HEADS.names()


def flag_of(name: str, f: dataclasses.Field | None = None) -> str:
    """The command-line flag of a Params field: its own `flag` (see `param`), else --name-with-dashes. Without the
    field itself, the first head whose Params has `name` says."""
    if f is None:
        f = next((g for h in HEADS.names() for g in dataclasses.fields(HEADS.get(h).Params) if g.name == name), None)
    if f is not None and "flag" in f.metadata:
        return f.metadata["flag"]
    return "--" + name.replace("_", "-")


AT_LEAST_ONE = {"samples", "batch_size", "max_iter", "epochs"}  # counts a fit cannot run with zero of


def param(default: Any, help: str, flag: str | None = None) -> Any:
    """A Params field: its default and the help line `vcal retrain --help` shows for it (`flag` where its name
    would collide with a shared flag, e.g. batch_size -> --train-batch-size). A new hyperparameter is one
    such line in its head's file."""
    return dataclasses.field(default=default, metadata={"help": help, **({"flag": flag} if flag else {})})
