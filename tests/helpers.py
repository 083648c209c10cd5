"""Test helpers: tiny models and the one-line-error assertion."""

from __future__ import annotations

import re

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
        model,
        find_head(model, num_classes),
        "vcal:mlp",
        num_classes,
        "",
        class_names=[str(i) for i in range(num_classes)],
        preprocessing=Preprocessing((1, 8, 8), (0.5,), (0.5,)),
        arch_kwargs=kwargs,
        metadata={"trained_on": "digits:train"},  # `--data` defaults to it, as for the shipped samples
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
