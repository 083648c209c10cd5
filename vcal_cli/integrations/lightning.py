"""`CalibrationMonitor`: vcal's calibration audit on every Lightning validation epoch.

```python
from lightning import Trainer
from vcal_cli.integrations.lightning import CalibrationMonitor

trainer = Trainer(callbacks=[CalibrationMonitor(report_dir="vcal-report")])
```

At the end of each validation epoch the callback computes, on the epoch's logits and labels gathered from every
device, vcal's metrics with their 95% intervals (ECE with its bias-bounded interval and debiased value, NLL, Brier,
accuracy) and the calibration tests' verdict, and logs them with the trainer's logger (`vcal/ece`, `vcal/ece_low`,
`vcal/ece_high`, `vcal/ece_debiased`, `vcal/nll`, `vcal/brier`, `vcal/accuracy`, `vcal/miscalibrated` 0 or 1).
`history` keeps each epoch's numbers and verdict in words. With `report_dir`, the last epoch's predictions are
audited at the end of fit and the full report (report.json, report.html, diagrams) written there.

Where the logits come from: a `validation_step` that returns a dict with `logits` (and `labels` or `target`) gives
them directly, at no cost; otherwise the callback runs the module on the batch's first element under `no_grad`
(one more forward pass per validation batch) and takes the labels from its second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

try:
    import lightning as L
except ImportError as e:  # pragma: no cover - the extra is not installed
    raise ImportError("CalibrationMonitor needs Lightning: pip install 'vcal[lightning]'") from e

from vcal_cli._defaults import DEFAULT_N_BINS, DEFAULT_N_BOOTSTRAP
from vcal_cli.commands.audit import audit
from vcal_cli.commands.settings import AuditSettings
from vcal_cli.metrics import compute_metrics
from vcal_cli.metrics.evidence import describe
from vcal_cli.reports import write_report


class CalibrationMonitor(L.Callback):
    """Log vcal's calibration metrics, with intervals and the verdict, after every validation epoch (see the module)."""

    def __init__(
        self,
        *,
        n_bins: int = DEFAULT_N_BINS,
        n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
        seed: int = 0,
        prefix: str = "vcal/",
        report_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.n_bins, self.n_bootstrap, self.seed, self.prefix = n_bins, n_bootstrap, seed, prefix
        self.report_dir = Path(report_dir) if report_dir is not None else None
        self.history: list[dict[str, Any]] = []
        self._logits: list[Tensor] = []
        self._labels: list[Tensor] = []
        self._last: tuple[Tensor, Tensor] | None = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._logits, self._labels = [], []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        logits, labels = _from_outputs(outputs)
        if logits is None:
            x, labels = batch[0], batch[1]
            with torch.no_grad():
                logits = pl_module(x)
        elif labels is None:
            labels = batch[1]
        self._logits.append(logits.detach().float().cpu())
        self._labels.append(torch.as_tensor(labels).detach().long().cpu())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self._logits:
            return
        logits, labels = _gather(pl_module, torch.cat(self._logits), torch.cat(self._labels))
        self._last = (logits, labels)
        r = compute_metrics(labels, logits=logits, n_bins=self.n_bins, n_bootstrap=self.n_bootstrap, seed=self.seed)
        m = r.metrics
        values = {"ece": m.ece, "nll": m.nll, "brier": m.brier, "accuracy": m.accuracy}
        if "ece" in r.intervals:
            values["ece_low"], values["ece_high"] = r.intervals["ece"]
        if "ece" in r.debiased:
            values["ece_debiased"] = r.debiased["ece"].debiased
        verdict = "not tested (too few rows or no bootstrap)"
        if r.evidence is not None:
            values["miscalibrated"] = float(not r.evidence.calibrated)
            where = describe(r.evidence.ranges)
            verdict = (
                "calibrated within noise" if r.evidence.calibrated else f"miscalibrated{': ' + where if where else ''}"
            )
        pl_module.log_dict({self.prefix + k: float(v) for k, v in values.items()}, rank_zero_only=True)
        self.history.append({"epoch": trainer.current_epoch, **values, "verdict": verdict, "n": len(labels)})

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.report_dir is None or self._last is None or not trainer.is_global_zero:
            return
        write_epoch_report(
            *self._last, self.report_dir, n_bins=self.n_bins, n_bootstrap=self.n_bootstrap, seed=self.seed
        )


def _from_outputs(outputs: Any) -> tuple[Tensor | None, Tensor | None]:
    if isinstance(outputs, dict) and isinstance(outputs.get("logits"), Tensor):
        labels = outputs.get("labels", outputs.get("target"))
        return outputs["logits"], labels
    return None, None


def _gather(pl_module: L.LightningModule, logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Every device's rows (ranks may hold different counts: padded to the largest, then trimmed)."""
    world = pl_module.trainer.world_size if pl_module.trainer is not None else 1
    if world <= 1:
        return logits, labels
    n = torch.tensor([len(labels)], device=pl_module.device)
    counts = pl_module.all_gather(n).flatten().tolist()
    top = int(max(counts))
    pad = top - len(labels)
    z = torch.cat([logits, logits.new_zeros(pad, logits.shape[1])]).to(pl_module.device)
    y = torch.cat([labels, labels.new_zeros(pad)]).to(pl_module.device)
    zs, ys = pl_module.all_gather(z).cpu(), pl_module.all_gather(y).cpu()
    return (
        torch.cat([zs[i, : int(c)] for i, c in enumerate(counts)]),
        torch.cat([ys[i, : int(c)] for i, c in enumerate(counts)]),
    )


def write_epoch_report(
    logits: Tensor, labels: Tensor, out_dir: Path, *, n_bins: int, n_bootstrap: int, seed: int
) -> Path:
    """vcal's full audit report of one epoch's validation predictions, written to `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "val_logits.npz"
    np.savez(path, logits=logits.numpy(), labels=labels.numpy())
    report = audit(logits=path, split="val", settings=AuditSettings(n_bins=n_bins, n_bootstrap=n_bootstrap, seed=seed))
    write_report(report, out_dir, inputs=(path,))
    return out_dir
