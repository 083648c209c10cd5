"""Experiment trackers: `--log-to mlflow` and `--log-to wandb` log an audit, a retrain or a gate to the run users
already keep (the active one, else a new one the command starts and ends).

By each tracker's conventions:

- **MLflow** (`MLFLOW_TRACKING_URI`, or the active run): every metric as a metric (`vcal.ece`), its 95% interval as
  two more (`vcal.ece.ci_low`, `vcal.ece.ci_high`), the debiased ECE (`vcal.ece.debiased`); the data set, split and
  checkpoint as params; the verdict as the tag `vcal.verdict`; report.json, report.html, report.md and the pictures
  as artifacts under `vcal-report/`. A retrain logs every head's metrics (`vcal.temperature.ece`), a gate
  `vcal.gate.passed` (1 or 0) and its failing rules as a tag.
- **Weights & Biases** (`WANDB_MODE=offline` works; `WANDB_PROJECT`, default `vcal`): the same numbers in the run's
  summary (`vcal/ece`, `vcal/ece_ci_low`, ...), a table of every metric with its interval (`vcal/metrics`), the
  reliability diagram as an image, the verdict in the summary.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from vcal_cli.errors import UsageError

TRACKERS = {"mlflow": "mlflow", "wandb": "wandb"}  # name -> module
IMAGES = ("reliability.png", "reliability_bands.png", "confusion.png")


def check_trackers(names: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Validate `--log-to` before any work: a known tracker whose library is installed."""
    out = tuple(dict.fromkeys(names or ()))
    for n in out:
        if n not in TRACKERS:
            raise UsageError(f"--log-to '{n}' is not a tracker; choose from: {', '.join(TRACKERS)}")
        try:
            importlib.import_module(TRACKERS[n])
        except ImportError:
            raise UsageError(f"--log-to {n} needs the {n} library", hint=f"pip install 'vcal[{n}]'") from None
    return out


def audit_numbers(report: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flat numbers of an audit report.json: each metric, its interval's ends, the debiased ECEs, the row count."""
    out: dict[str, float] = {}
    for k, v in (report.get("metrics") or {}).items():
        out[f"{prefix}{k}"] = float(v)
        iv = (report.get("intervals") or {}).get(k)
        if iv:
            out[f"{prefix}{k}.ci_low"], out[f"{prefix}{k}.ci_high"] = float(iv[0]), float(iv[1])
    for k, d in (report.get("debiased") or {}).items():
        if isinstance(d, dict) and d.get("debiased") is not None:
            out[f"{prefix}{k}.debiased"] = float(d["debiased"])
    if report.get("data", {}).get("n") is not None:
        out[f"{prefix}n"] = float(report["data"]["n"])
    return out


def _verdict(report: dict[str, Any]) -> str:
    return str((report.get("summary") or {}).get("verdict", "unknown"))


def log_audit(names: tuple[str, ...], report: dict[str, Any], out_dir: Path) -> None:
    params = {
        "data": report["data"]["name"],
        "split": report["data"]["split"],
        "checkpoint": report["checkpoint"].get("path"),
    }
    for n in names:
        LOGGERS[n](audit_numbers(report), params, {"verdict": _verdict(report)}, out_dir, report)


def log_retrain(names: tuple[str, ...], report: dict[str, Any], out_dir: Path) -> None:
    numbers: dict[str, float] = {}
    for head, h in (report.get("heads") or {}).items():
        numbers |= audit_numbers({**h, "data": report.get("data", {})}, prefix=f"{head}.")
    tags = {"verdict": _verdict(report), "heads": ",".join(report.get("heads") or {})}
    params = {"data": report["data"]["name"], "checkpoint": report["checkpoint"].get("path")}
    for n in names:
        LOGGERS[n](numbers, params, tags, out_dir, report)


def log_gate(names: tuple[str, ...], result: dict[str, Any]) -> None:
    failed = [r["rule"] for r in result.get("rules", []) if not r.get("passed")]
    numbers = {"gate.passed": float(bool(result.get("passed")))}
    tags = {"gate": "passed" if result.get("passed") else "failed", "gate.failed_rules": ",".join(failed) or "none"}
    for n in names:
        LOGGERS[n](numbers, {}, tags, None, None)


def _mlflow(
    numbers: dict[str, float], params: dict[str, Any], tags: dict[str, str], out_dir: Path | None, _: Any
) -> None:
    import mlflow

    started = mlflow.active_run() is None
    if started:
        mlflow.start_run(run_name="vcal")
    try:
        mlflow.log_metrics({f"vcal.{k}": v for k, v in numbers.items()})
        if params:
            mlflow.log_params({f"vcal.{k}": str(v) for k, v in params.items() if v is not None})
        mlflow.set_tags({f"vcal.{k}": v for k, v in tags.items()})
        if out_dir is not None:
            for f in sorted(out_dir.iterdir()):
                if f.is_file() and f.suffix in (".json", ".html", ".md", ".csv", ".png"):
                    mlflow.log_artifact(str(f), artifact_path="vcal-report")
    finally:
        if started:
            mlflow.end_run()


def _wandb(
    numbers: dict[str, float], params: dict[str, Any], tags: dict[str, str], out_dir: Path | None, report: Any
) -> None:
    import wandb

    started = wandb.run is None
    run = (
        wandb.init(project=os.environ.get("WANDB_PROJECT", "vcal"), job_type="vcal", config=params)
        if started
        else wandb.run
    )
    try:
        run.summary.update({f"vcal/{k.replace('.', '_')}": v for k, v in numbers.items()})
        run.summary.update({f"vcal/{k.replace('.', '_')}": v for k, v in tags.items()})
        if report is not None and report.get("metrics"):
            table = wandb.Table(columns=["metric", "value", "ci_low", "ci_high"])
            for k, v in report["metrics"].items():
                iv = (report.get("intervals") or {}).get(k) or [None, None]
                table.add_data(k, v, iv[0], iv[1])
            run.log({"vcal/metrics": table})
        if out_dir is not None and (out_dir / "reliability.png").exists():
            run.log({"vcal/reliability": wandb.Image(str(out_dir / "reliability.png"))})
    finally:
        if started:
            run.finish()


LOGGERS = {"mlflow": _mlflow, "wandb": _wandb}
