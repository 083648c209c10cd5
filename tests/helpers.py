"""Test helpers: tiny models and the one-line-error assertion."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from vcal_cli import LoadedModel
from vcal_cli.checkpoints import build_arch, find_head
from vcal_cli.data import Preprocessing


def tiny_mlp(seed: int = 0, num_classes: int = 10) -> LoadedModel:
    """An untrained MLP on 8x8 grey images, as a LoadedModel with digits-style preprocessing."""
    torch.manual_seed(seed)
    kwargs = {"in_features": 64, "hidden": [32]}
    model = build_arch("vcal:mlp", num_classes, in_chans=1, kwargs=kwargs).eval()
    return LoadedModel(
        model=model,
        head_name=find_head(model, num_classes),
        arch="vcal:mlp",
        num_classes=num_classes,
        sha256="",
        class_names=[str(i) for i in range(num_classes)],
        preprocessing=Preprocessing(input_size=(1, 8, 8), mean=(0.5,), std=(0.5,)),
        arch_kwargs=kwargs,
        metadata={"trained_on": "digits:train"},
    )


PROGRESS = re.compile(r"^[\w:./ -]+: (started \(|done, |\d+(/\d+)? )")  # the plain progress lines of a log


def one_line_error(result) -> str:  # a typer Result
    """Assert the CLI failed with exit 2 and exactly one `error:` line and no traceback; return the line.

    Progress lines (stderr is not a terminal under CliRunner, so long steps print plain lines) may precede it."""
    text = result.stderr if result.stderr_bytes is not None else result.output
    lines = [ln for ln in text.splitlines() if ln.strip() and not PROGRESS.match(ln)]
    assert result.exit_code == 2, (result.exit_code, text, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert "Traceback" not in result.output
    return lines[0]


# a report.json's eight metrics, for tests that build reports by hand
REPORT_METRICS = {
    "accuracy": 0.9,
    "nll": 0.3,
    "brier": 0.15,
    "ece": 0.02,
    "ece_adaptive": 0.02,
    "mce": 0.1,
    "classwise_ece": 0.01,
    "aurc": 0.02,
}


def hand_report(metrics: dict | None = None) -> dict:
    """A minimal report.json as `read_report` accepts it, each metric with a +-10% interval."""
    m = {**REPORT_METRICS, **(metrics or {})}
    intervals = {k: [v * 0.9, v * 1.1] for k, v in REPORT_METRICS.items()}
    top = {"schema_version": 2, "vcal_version": "0", "created": "now", "checkpoint": {}, "data": {}, "reliability": []}
    return {**top, "settings": {}, "metrics": m, "intervals": intervals}


def trained_digits_mlp(path: Path, seed: int, epochs: int = 40, hidden: int = 64) -> Path:
    """A small MLP trained on digits' train split (seconds on a CPU), saved as a vcal checkpoint: an ensemble's
    member, seeds apart."""
    import torch.nn.functional as F

    from vcal_cli import load_split, save_checkpoint

    torch.manual_seed(seed)
    loaded = tiny_mlp(seed)
    kwargs = {"in_features": 64, "hidden": [hidden]}
    model = build_arch("vcal:mlp", 10, in_chans=1, kwargs=kwargs)
    split = load_split("digits", "train")
    x, y = loaded.preprocessing.to_model_input(split.images), split.labels
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(128):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    member = LoadedModel(
        model=model,
        head_name=find_head(model, 10),
        arch="vcal:mlp",
        num_classes=10,
        sha256="",
        class_names=split.classes,
        preprocessing=loaded.preprocessing,
        arch_kwargs=kwargs,
        metadata={"trained_on": "digits:train"},
    )
    return save_checkpoint(member, path, extra_metadata={"trained_on": "digits:train", "seed": str(seed)})
