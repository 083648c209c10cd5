"""A deep ensemble (Lakshminarayanan et al. 2017) audited like one model: several checkpoints on the same data, their
predictions the mean of the members' probabilities.

`Ensemble` answers what the commands ask a `Workbench` (a split's features, another data set's, its images and
preprocessing, the model's description), each member opening, extracting and caching as it would alone. A split's
`EnsembleFeatureSet` holds the ensemble's log-probabilities as its logits (log of the mean member probability), the
members' features side by side (what the feature-space OOD detectors read) and every member's logits (what the
ensemble's mutual information and disagreement read, and each member's row of the report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vcal_cli.checkpoints import LoadedModel
from vcal_cli.data import ImageSplit, Preprocessing
from vcal_cli.errors import UsageError
from vcal_cli.features import ExtractOptions, FeatureSet, Track, quiet
from vcal_cli.heads import FitData
from vcal_cli.session.workbench import Workbench

ROWS = 65_536  # rows per block when the members' probabilities are averaged


def mean_log_probs(member_logits: list[Tensor]) -> Tensor:
    """log of the mean of the members' softmax probabilities, (N, K) float32, in row blocks (logsumexp: exact in
    float64 however confident the members are)."""
    n = len(member_logits[0])
    out = torch.empty(n, member_logits[0].shape[1], dtype=torch.float32)
    for a in range(0, n, ROWS):
        lp = torch.stack([torch.log_softmax(z[a : a + ROWS].double(), 1) for z in member_logits])
        out[a : a + ROWS] = (torch.logsumexp(lp, 0) - math.log(len(member_logits))).float()
    return out


@dataclass(eq=False, kw_only=True)
class EnsembleFeatureSet(FeatureSet):
    """One split of an ensemble: `logits` the ensemble's log-probabilities, `features` the members' side by side,
    `members` every member's own logits (M, N, K)."""

    members: Tensor | None = field(default=None, repr=False)

    @classmethod
    def combine(cls, sets: list[FeatureSet], where: str, logit_space: bool = False) -> EnsembleFeatureSet:
        first = sets[0]
        for i, fs in enumerate(sets[1:], 2):
            if len(fs) != len(first) or not torch.equal(fs.labels[:], first.labels[:]):
                raise UsageError(
                    f"ensemble member {i} sees other labels on {where} than member 1: give every member the same data"
                )
        logits = [fs.logits[:] for fs in sets]
        log_probs = mean_log_probs(logits)
        return cls(
            features=log_probs if logit_space else torch.cat([fs.features[:].float() for fs in sets], 1),
            logits=log_probs,
            labels=first.labels[:],
            info=dict(first.info),
            from_cache=all(fs.from_cache for fs in sets),
            path=first.path,
            members=torch.stack([z.float() for z in logits]),
        )


class EnsembleHead(nn.Module):
    """The members' heads as one: the members' features side by side -> the log of the mean member probability
    (what the post-hoc heads fitted on an ensemble take as their base)."""

    def __init__(self, heads: list[nn.Module], widths: list[int]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.widths = widths

    def forward(self, features: Tensor) -> Tensor:
        parts = features.split(self.widths, dim=1)
        lp = torch.stack([torch.log_softmax(h(f), 1) for h, f in zip(self.heads, parts, strict=True)])
        return torch.logsumexp(lp, 0) - math.log(len(self.heads))


class EnsembleModule(nn.Module):
    """The members' networks as one: images -> the log of the mean member probability (attacks go through it)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        lp = torch.stack([torch.log_softmax(m(x), 1) for m in self.members])
        return torch.logsumexp(lp, 0) - math.log(len(self.members))


@dataclass(eq=False, kw_only=True)
class EnsembleModel:
    """What the commands read off a `LoadedModel`, for the ensemble: its description, its network (the members
    averaged) and its head (none that one linear layer is: ViM and ReAct skip it)."""

    members: list[LoadedModel]
    head: nn.Module | None = None  # an EnsembleHead once the feature widths are known
    head_info: dict[str, Any] = field(default_factory=lambda: {"name": "ensemble"})  # outputs log-probabilities
    path: Path | None = None  # no one file holds an ensemble
    sha256: str = ""
    program: str | None = None

    @property
    def model(self) -> nn.Module:
        return EnsembleModule([m.model for m in self.members])

    @property
    def num_classes(self) -> int:
        return self.members[0].num_classes

    @property
    def class_names(self) -> list[str] | None:
        return self.members[0].class_names

    def describe(self) -> dict[str, Any]:
        members = [m.describe() for m in self.members]
        return {
            "path": " + ".join(str(m.path) for m in self.members),
            "arch": f"ensemble of {len(members)}",
            "num_classes": self.num_classes,
            "sha256": None,
            "head_module": None,
            "ensemble": {"members": members, "combine": "mean of the members' softmax probabilities"},
        }


@dataclass(eq=False, kw_only=True)
class Ensemble:
    """Several checkpoints on one data set, audited as one model (see the module's docstring)."""

    members: list[Workbench]
    model: EnsembleModel
    _features: dict[str, EnsembleFeatureSet] = field(default_factory=dict, repr=False)
    from_file: bool = False
    # the heads' view (`vcal retrain`): a split's features are the ensemble's log-probabilities and its head the
    # identity on them, so every head fits on what the ensemble predicts (temperature: T on its log-probabilities)
    logit_space: bool = False

    @classmethod
    def open(
        cls,
        checkpoints: list[str | Path | LoadedModel],
        data: str | None = None,
        options: ExtractOptions | None = None,
        *,
        progress: Track = quiet,
        logit_space: bool = False,
    ) -> Ensemble:
        """Open every member on `data` (default: the data set the first member records); they must agree on the
        class count and, where both name them, on the class names. `logit_space`: see the class."""
        if len(checkpoints) < 2:
            raise UsageError("an ensemble needs two checkpoints or more; for one model, audit it alone")
        if options is not None and options.load.head_file:
            raise UsageError("--head-file applies to one checkpoint, not to an ensemble's members")
        members = []
        for ck in checkpoints:
            bench = Workbench.open(ck, data, options, progress=progress)
            members.append(bench)
            data = data or bench.name
        _check_members(members)
        from_file = any(m.from_file for m in members)
        model = EnsembleModel(members=[m.model for m in members])
        if logit_space:
            k = model.num_classes
            model.head = nn.Linear(k, k)
            with torch.no_grad():
                model.head.weight.copy_(torch.eye(k))
                model.head.bias.zero_()
        return cls(members=members, model=model, from_file=from_file, logit_space=logit_space)

    @property
    def name(self) -> str:
        return self.members[0].name

    @property
    def options(self) -> ExtractOptions:
        return self.members[0].options

    @property
    def progress(self) -> Track:
        return self.members[0].progress

    @property
    def class_names(self) -> list[str] | None:
        return self.members[0].class_names

    def labels(self, split: str) -> Tensor:
        return self.members[0].labels(split)

    def features(self, split: str = "test") -> EnsembleFeatureSet:
        if split not in self._features:
            sets = [m.features(split) for m in self.members]
            if self.model.head is None:  # the members' feature widths are known now
                widths = [fs.features.shape[1] for fs in sets]
                self.model.head = EnsembleHead([m.model.head for m in self.members], widths)
            self._features[split] = EnsembleFeatureSet.combine(sets, split, self.logit_space)
        return self._features[split]

    def fit_data(self, split: str) -> FitData:
        fs = self.features(split)
        return FitData(fs.features, fs.logits, fs.labels)

    def train_views(self, views: int, augment: str = "", *, seed: int = 0) -> FitData:
        raise UsageError("--train-views is for one model; an ensemble's heads learn on its clean train features")

    @property
    def preprocessing(self) -> Preprocessing:
        return self.members[0].preprocessing

    def features_of(self, ds: ImageSplit | str, *, in_distribution: bool = True) -> EnsembleFeatureSet:
        sets = [m.features_of(ds, in_distribution=in_distribution) for m in self.members]
        return EnsembleFeatureSet.combine(sets, ds if isinstance(ds, str) else ds.name, self.logit_space)

    def images(self, split: str = "test") -> ImageSplit:
        return self.members[0].images(split)

    def split_preprocessing(self, split: str) -> Preprocessing | None:
        return self.members[0].split_preprocessing(split)

    def preprocessing_for(self, ds: ImageSplit) -> Preprocessing:
        """One preprocessing for the attacks, which run on pixels through every member at once."""
        preps = {m.preprocessing_for(ds) for m in self.members}
        if len(preps) > 1:
            raise UsageError(
                "the ensemble's members preprocess images differently: --adversarial needs one preprocessing "
                "(every other section works)"
            )
        return preps.pop()

    def release(self) -> None:
        for m in self.members:
            m.release()


def _check_members(members: list[Workbench]) -> None:
    first = members[0]
    for i, m in enumerate(members[1:], 2):
        if m.model.num_classes != first.model.num_classes:
            raise UsageError(
                f"ensemble member {i} ('{m.model.path}') has {m.model.num_classes} classes, member 1 "
                f"('{first.model.path}') {first.model.num_classes}: an ensemble's members share their classes"
            )
        a, b = first.model.class_names, m.model.class_names
        if a and b and list(a) != list(b):
            raise UsageError(
                f"ensemble member {i} ('{m.model.path}') names its classes differently from member 1: "
                f"{list(b)[:3]}... against {list(a)[:3]}...; an ensemble's members share their classes"
            )
