"""`CalibrationMonitor` with a real `lightning.Trainer`: a tiny model trained for two epochs, the callback's logged
numbers equal vcal's metrics on the same validation logits, and the report written at the end of fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from vcal_cli import load_split
from vcal_cli.metrics import compute_metrics

lightning = pytest.importorskip("lightning")

from vcal_cli.integrations.lightning import CalibrationMonitor  # noqa: E402


def _loader(split: str, shuffle: bool = False) -> DataLoader:
    s = load_split("digits", split)
    return DataLoader(TensorDataset(s.images.float(), s.labels), batch_size=64, shuffle=shuffle)


class Tiny(lightning.LightningModule):
    def __init__(self, return_logits: bool) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
        )
        self.return_logits = return_logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _):  # noqa: ANN001, ANN202
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, _):  # noqa: ANN001, ANN202
        x, y = batch
        logits = self(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        return {"logits": logits, "labels": y} if self.return_logits else None

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def _trainer(monitor: CalibrationMonitor, logger: object, **kw: object) -> lightning.Trainer:
    quiet = {"enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False}
    return lightning.Trainer(callbacks=[monitor], logger=logger, log_every_n_steps=1, accelerator="cpu", **quiet, **kw)


def _logged(csv: Path) -> list[dict[str, str]]:
    """The rows of a CSVLogger's metrics.csv, by column."""
    rows = csv.read_text().splitlines()
    header = rows[0].split(",")
    return [dict(zip(header, r.split(","), strict=False)) for r in rows[1:]]


def _fit(tmp_path: Path, return_logits: bool) -> tuple[Tiny, CalibrationMonitor, Path]:
    torch.manual_seed(0)
    model = Tiny(return_logits)
    monitor = CalibrationMonitor(n_bootstrap=100, report_dir=tmp_path / "report")
    logger = lightning.pytorch.loggers.CSVLogger(str(tmp_path), name="run")
    trainer = _trainer(monitor, logger, max_epochs=2, devices=1, num_sanity_val_steps=1)
    trainer.fit(model, _loader("train", True), _loader("val"))
    return model, monitor, Path(logger.log_dir)


@pytest.mark.parametrize("return_logits", [True, False])
def test_the_monitor_logs_vcals_metrics_of_each_validation_epoch(tmp_path: Path, return_logits: bool) -> None:
    model, monitor, log_dir = _fit(tmp_path, return_logits)
    assert [h["epoch"] for h in monitor.history] == [0, 1]  # the sanity check is not an epoch
    model.eval()
    val = load_split("digits", "val")
    with torch.no_grad():
        logits = model(val.images.float())
    want = compute_metrics(val.labels, logits=logits, n_bootstrap=100, seed=0)
    last = monitor.history[-1]
    assert last["n"] == len(val.labels) == 180
    assert last["ece"] == pytest.approx(want.metrics.ece, abs=1e-6)
    assert last["nll"] == pytest.approx(want.metrics.nll, abs=1e-6)
    assert (last["ece_low"], last["ece_high"]) == pytest.approx(want.intervals["ece"], abs=1e-6)
    assert last["verdict"].startswith(("calibrated within noise", "miscalibrated"))
    # the trainer's logger has them too
    logged = _logged(log_dir / "metrics.csv")
    assert {"vcal/ece", "vcal/ece_low", "vcal/nll", "vcal/miscalibrated"} <= set(logged[0])
    eces = [float(r["vcal/ece"]) for r in logged if r.get("vcal/ece")]
    assert eces[-1] == pytest.approx(want.metrics.ece, abs=1e-6)
    # and the report of the last epoch
    rep = json.loads((tmp_path / "report" / "report.json").read_text())
    assert rep["metrics"]["ece"] == pytest.approx(want.metrics.ece, abs=1e-6)
    assert (tmp_path / "report" / "reliability.png").stat().st_size > 0


def test_the_monitor_gathers_both_devices_rows(tmp_path: Path) -> None:
    """Two CPU processes (`ddp_spawn`, gloo), each validating half of the val split: the logged ECE and NLL are those
    of all 180 rows (gathered), not of one rank's half."""
    torch.manual_seed(0)
    model = Tiny(return_logits=True)
    monitor = CalibrationMonitor(n_bootstrap=20)
    logger = lightning.pytorch.loggers.CSVLogger(str(tmp_path), name="run")
    trainer = _trainer(monitor, logger, max_epochs=1, devices=2, strategy="ddp_spawn", num_sanity_val_steps=0)
    trainer.fit(model, _loader("train", True), _loader("val"))
    (csv,) = (tmp_path / "run").glob("*/metrics.csv")  # written by rank 0 (this process may name another version)
    last = [r for r in _logged(csv) if r.get("vcal/ece")][-1]
    model.eval()  # ddp_spawn hands rank 0's trained weights back to this process
    val = load_split("digits", "val")
    with torch.no_grad():
        logits = model(val.images.float())
    want = compute_metrics(val.labels, logits=logits, n_bootstrap=0).metrics
    assert float(last["vcal/ece"]) == pytest.approx(want.ece, abs=1e-5)
    assert float(last["vcal/nll"]) == pytest.approx(want.nll, abs=1e-5)
