"""report.json does not move by accident: the audits of the two shipped sample checkpoints, figure by figure (every
metric, its interval, the debiased ECEs, every estimator's value and interval, the verdict), equal a stored copy
(`tests/data/sample_reports.json`) to 1e-5 relative (float32 forward passes may round differently on another CPU).
A deliberate change rewrites the copy (`python -m tests.test_sample_reports`) in the same commit, where its diff
shows what moved."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from vcal_cli import AuditSettings, audit

from .conftest import SAMPLES

STORED = Path(__file__).parent / "data" / "sample_reports.json"
SAMPLE_NAMES = ("cnn_digits", "mlp_digits")


def figures(name: str) -> dict:
    rep = audit(
        SAMPLES / f"{name}.safetensors", data="digits", settings=AuditSettings(n_bootstrap=200, seed=0)
    ).to_dict()
    return {
        "metrics": rep["metrics"],
        "intervals": rep["intervals"],
        "debiased": {k: [v["debiased"], *v["interval"]] for k, v in rep["debiased"].items()},
        "estimators": {k: [v["value"], *v["interval"]] for k, v in rep["estimators"].items()},
        "verdict": rep["summary"]["verdict"],
    }


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_reports_are_unchanged(name: str) -> None:
    want = json.loads(STORED.read_text())[name]
    got = json.loads(json.dumps(figures(name)))  # the JSON form: tuples as lists
    assert got["verdict"] == want["verdict"]
    for part in ("metrics", "intervals", "debiased", "estimators"):
        assert sorted(got[part]) == sorted(want[part]), part
        for key, value in want[part].items():
            assert got[part][key] == pytest.approx(value, rel=1e-5, abs=1e-9), (part, key)


if __name__ == "__main__" and sys.argv[1:] == []:
    STORED.write_text(json.dumps({n: figures(n) for n in SAMPLE_NAMES}, indent=1, sort_keys=True) + "\n")
