"""Shared fixtures: an isolated cache per test, tiny models saved in every supported form."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vcal_cli import save_checkpoint

from .helpers import tiny_mlp

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_checkpoints"
THREADS = torch.get_num_threads()  # as torch starts: every test runs with it


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own feature cache and working directory; no test sees the user's. The thread count is
    reset too: an in-process `vcal` command sets it from the cores idle at that moment (one, on a busy machine), and
    a fit's floating-point sums depend on it, so a later test's numbers would depend on the machine's load."""
    monkeypatch.setenv("VCAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VCAL_DEBUG", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", str(THREADS)))
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def mlp_ckpt(tmp_path: Path) -> Path:
    return save_checkpoint(tiny_mlp(), tmp_path / "mlp.safetensors")


@pytest.fixture(scope="session")
def sample_mlp() -> Path:
    return SAMPLES / "mlp_digits.safetensors"
