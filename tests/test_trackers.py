"""`--log-to mlflow` and `--log-to wandb` against the real libraries: a local MLflow file store and an offline W&B
run, read back after `vcal audit`, `vcal retrain` and `vcal gate` logged to them."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from vcal_cli.cli import app

from .conftest import SAMPLES
from .helpers import one_line_error

MLP = str(SAMPLES / "mlp_digits.safetensors")


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


def _runs(client) -> list:  # noqa: ANN001
    return client.search_runs([e.experiment_id for e in client.search_experiments()], order_by=["start_time ASC"])


def test_audit_retrain_and_gate_log_to_mlflow(runner, mlflow_store, tmp_path: Path) -> None:
    r = runner.invoke(app, ["audit", MLP, "--bootstrap", "50", "--log-to", "mlflow", "--json", "-o", "a"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    (run,) = _runs(mlflow_store)
    m = run.data.metrics
    assert m["vcal.ece"] == pytest.approx(rep["metrics"]["ece"])
    assert (m["vcal.ece.ci_low"], m["vcal.ece.ci_high"]) == pytest.approx(tuple(rep["intervals"]["ece"]))
    assert m["vcal.ece.debiased"] == pytest.approx(rep["debiased"]["ece"]["debiased"])
    assert run.data.tags["vcal.verdict"] == rep["summary"]["verdict"]
    assert run.data.params["vcal.data"] == "digits"
    arts = {a.path for a in mlflow_store.list_artifacts(run.info.run_id, "vcal-report")}
    assert {"vcal-report/report.json", "vcal-report/report.html", "vcal-report/reliability.png"} <= arts
    r = runner.invoke(
        app, ["retrain", MLP, "--head", "temperature", "--bootstrap", "0", "--log-to", "mlflow", "--json"]
    )
    assert r.exit_code == 0, r.output
    rt = json.loads(r.stdout)
    run = _runs(mlflow_store)[-1]
    assert run.data.metrics["vcal.temperature.ece"] == pytest.approx(rt["heads"]["temperature"]["metrics"]["ece"])
    assert run.data.metrics["vcal.original.ece"] == pytest.approx(rep["metrics"]["ece"])
    r = runner.invoke(app, ["gate", "a/report.json", "--baseline", "a/report.json", "--log-to", "mlflow"])
    assert r.exit_code == 0, r.output
    run = _runs(mlflow_store)[-1]
    assert run.data.metrics["vcal.gate.passed"] == 1.0 and run.data.tags["vcal.gate"] == "passed"


def _wandb_records(run_dir: Path) -> list:
    """Every record of an offline W&B run's .wandb file (a LevelDB-style log of protobuf `Record`s), read back."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = next(run_dir.glob("*.wandb")).read_bytes()
    pos, block, chunks, buf = 7, 32768, [], b""  # after the 7-byte header: 32 KiB blocks of (crc, length, type) records
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        part, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        buf = part if kind in (1, 2) else buf + part
        if kind in (1, 4):
            chunks.append(buf)
    records = []
    for c in chunks:
        rec = pb.Record()
        rec.ParseFromString(c)
        records.append(rec)
    return records


def test_audit_logs_to_an_offline_wandb_run(runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    r = runner.invoke(app, ["audit", MLP, "--bootstrap", "50", "--log-to", "wandb", "--json", "-o", "a"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)  # W&B's own messages stay off stdout
    summary, logged = {}, set()
    for rec in _wandb_records(tmp_path / "wandb" / "latest-run"):
        kind = rec.WhichOneof("record_type")
        if kind == "summary":
            summary |= {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in rec.summary.update}
        elif kind == "history":
            logged |= {i.key or "/".join(i.nested_key) for i in rec.history.item}
    assert summary["vcal/ece"] == pytest.approx(rep["metrics"]["ece"])
    assert summary["vcal/ece_ci_high"] == pytest.approx(rep["intervals"]["ece"][1])
    assert summary["vcal/verdict"] == rep["summary"]["verdict"]
    assert any(k.startswith("vcal/metrics") for k in logged) and any(k.startswith("vcal/reliability") for k in logged)


def test_bad_trackers_are_one_line_before_any_work(runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = one_line_error(runner.invoke(app, ["audit", MLP, "--log-to", "tensorboard", "-o", "a"]))
    assert "--log-to 'tensorboard' is not a tracker" in line
    import importlib

    real = importlib.import_module

    def missing(name: str, *a, **k):  # noqa: ANN002, ANN003, ANN202
        if name == "mlflow":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", missing)
    line = one_line_error(runner.invoke(app, ["audit", MLP, "--log-to", "mlflow", "-o", "a"]))
    assert "--log-to mlflow needs the mlflow library" in line and "vcal[mlflow]" in line
    assert not (tmp_path / "a").exists()
