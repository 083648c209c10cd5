"""Generated bad input, surface by surface (Hypothesis): logits files, reports given to the gate, hierarchy files and
numeric flags. For every generated case the command either succeeds (exit 0; for the gate, exit 1 is its verdict on
a regression) or fails with exactly one `error:` line as the last stderr line (exit 2); never an internal error,
never a traceback, never an input changed. A fixed number of examples per surface keeps CI within a minute or two
(VCAL_HYPOTHESIS_EXAMPLES raises it for a longer local run)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vcal_cli.cli import app

from .helpers import REPORT_METRICS, hand_report

EXAMPLES = int(os.environ.get("VCAL_HYPOTHESIS_EXAMPLES", "25"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _check(r, allowed: tuple[int, ...] = (0, 2)) -> None:
    """exit 0, or 2 with one `error:` line as the last stderr line; never 1 from a crash, never a traceback."""
    err = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-600:]
    assert r.exit_code in allowed, (r.exit_code, r.stderr[-600:])
    if r.exit_code == 2:
        assert err and err[-1].startswith("error:"), r.stderr[-600:]
        assert sum(x.startswith("error:") for x in err) == 1, r.stderr[-600:]


FLOATS = st.sampled_from([0.0, 1.0, -1.0, 1e300, -1e300, float("nan"), float("inf"), -float("inf"), 0.5, 1e-320])
DTYPES = st.sampled_from(["float16", "float32", "float64", "int8", "int64", "uint8", "bool"])


@st.composite
def logits_files(draw: st.DrawFn) -> dict[str, np.ndarray]:
    n = draw(st.integers(0, 40))
    k = draw(st.integers(0, 6))
    scores = draw(st.lists(st.floats(-50, 50, allow_nan=False), min_size=n * k, max_size=n * k))
    x = np.array(scores, dtype=np.float64).reshape(n, k) if n * k else np.zeros((n, k))
    if draw(st.booleans()) and x.size:  # a poisoned value
        x.flat[draw(st.integers(0, x.size - 1))] = draw(FLOATS)
    if draw(st.booleans()):
        with np.errstate(all="ignore"):
            x = x.astype(draw(DTYPES))
    labels = np.array(draw(st.lists(st.integers(-3, k + 2), min_size=n, max_size=n)), dtype=np.int64)
    kind = draw(st.sampled_from(["ints", "floats", "strings", "short", "2d"]))
    if kind == "floats":
        labels = labels.astype(np.float64) + draw(st.sampled_from([0.0, 0.5]))
    elif kind == "strings":
        labels = labels.astype(str)
    elif kind == "short":
        labels = labels[: max(0, n - 1)]
    elif kind == "2d":
        labels = labels.reshape(-1, 1)
    key = draw(st.sampled_from(["logits", "probs"]))
    if key == "probs" and draw(st.booleans()) and x.size and x.dtype.kind == "f":
        with np.errstate(all="ignore"):
            e = np.exp(x - np.nanmax(x, axis=1, keepdims=True))
            x = e / e.sum(1, keepdims=True)
    return {key: x, "labels": labels}


@SETTINGS
@given(arrays=logits_files())
def test_generated_logits_files(runner, arrays: dict[str, np.ndarray]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.npz"
        np.savez(path, **arrays)
        before = _sha(path)
        r = runner.invoke(app, ["audit", "--logits", str(path), "--bootstrap", "20", "--out", str(Path(d) / "o")])
        _check(r)
        assert _sha(path) == before
        if r.exit_code == 2:
            assert str(path) in r.stderr or "--logits" in r.stderr or "label" in r.stderr, r.stderr[-400:]
        else:
            rep = json.loads((Path(d) / "o" / "report.json").read_text(), parse_constant=pytest.fail)
            assert 0.0 <= rep["metrics"]["accuracy"] <= 1.0 and rep["metrics"]["ece"] >= 0.0


VALUES = st.one_of(
    FLOATS, st.none(), st.text(max_size=5), st.booleans(), st.lists(FLOATS, max_size=3), st.integers(-5, 5)
)


@st.composite
def reports(draw: st.DrawFn) -> dict:
    rep = hand_report()
    rep["schema_version"] = draw(st.sampled_from([1, 2, 3, "2", None]))
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(["metrics", "intervals", "top"]))
        key = draw(st.sampled_from([*REPORT_METRICS, "settings", "metrics", "intervals"]))
        value = draw(VALUES)
        if where == "top":
            rep[key] = value
        elif isinstance(rep.get(where), dict):
            rep[where][key] = value
    return rep


@SETTINGS
@given(current=reports(), rule=st.sampled_from([[], ["--max-increase", "ece=0.01"], ["--max", "nll=nan"]]))
def test_generated_reports_given_to_the_gate(runner, current: dict, rule: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        base, cur = Path(d) / "base.json", Path(d) / "cur.json"
        base.write_text(json.dumps(hand_report()))
        cur.write_text(json.dumps(current, allow_nan=True))
        hashes = (_sha(base), _sha(cur))
        r = runner.invoke(app, ["gate", str(cur), "--baseline", str(base), *rule, "--junit", str(Path(d) / "j.xml")])
        _check(r, (0, 1, 2))  # 1: the gate's own verdict
        if r.exit_code == 1:
            assert "gate failed" in r.stderr or "FAIL" in r.stdout, r.stderr[-400:]
        assert (_sha(base), _sha(cur)) == hashes


HIERARCHY_TEXT = st.one_of(
    st.binary(max_size=64).map(lambda b: ("bytes", b)),
    st.recursive(
        st.text(max_size=4), lambda kids: st.dictionaries(st.text(max_size=4), kids, max_size=3), max_leaves=8
    ).map(lambda j: ("json", json.dumps(j).encode())),
    st.lists(st.tuples(st.sampled_from("abcde"), st.sampled_from("abcde")), max_size=6).map(
        lambda rows: ("csv", ("parent,child\n" + "\n".join(f"{p},{c}" for p, c in rows)).encode())
    ),
)


@SETTINGS
@given(content=HIERARCHY_TEXT)
def test_generated_hierarchy_files(runner, content: tuple[str, bytes]) -> None:
    kind, blob = content
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("h.json" if kind == "json" else "h.csv")
        path.write_bytes(blob)
        r = runner.invoke(app, ["hierarchy", "show", str(path)])
        _check(r)
        assert path.read_bytes() == blob


def test_a_deeply_nested_hierarchy_is_one_line(runner, tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("{" * 5000 + "}" * 5000)
    _check(runner.invoke(app, ["hierarchy", "show", str(path)]))


NUMBERS = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "0", "-1", "1e400", "99999999999999999999", "0.5", "", "abc"]),
    st.integers(-10, 10).map(str),
)


@SETTINGS
@given(flag=st.sampled_from(["--bins", "--bootstrap", "--seed"]), value=NUMBERS)
def test_generated_numeric_flags(runner, flag: str, value: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.npz"
        g = np.random.default_rng(0)
        np.savez(path, logits=g.normal(size=(50, 3)), labels=g.integers(0, 3, 50))
        r = runner.invoke(
            app, ["audit", "--logits", str(path), "--bootstrap", "10", flag, value, "--out", str(Path(d) / "o")]
        )
        _check(r)
        if r.exit_code == 2:
            assert flag in r.stderr or "Invalid value" in r.stderr, r.stderr[-300:]


META_KEYS = st.sampled_from(["num_classes", "class_names", "arch_kwargs", "preprocessing", "arch", "vcal_head"])
META_VALUES = st.one_of(
    st.text(max_size=8),
    st.integers(-10, 10**12).map(str),
    st.sampled_from(["nan", "inf", "[]", "{}", "null", '["a"]', '{"in_features": "x"}', '{"hidden": [-1]}']),
    st.recursive(
        st.one_of(st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=3)),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
        max_leaves=6,
    ).map(json.dumps),
)


@SETTINGS
@given(changes=st.dictionaries(META_KEYS, META_VALUES, min_size=1, max_size=2))
def test_generated_vcal_checkpoint_metadata(runner, changes: dict[str, str]) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from .conftest import SAMPLES

    source = SAMPLES / "mlp_digits.safetensors"
    with safe_open(str(source), "pt") as f:
        meta = {**f.metadata(), **changes}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.safetensors"
        save_file(load_file(str(source)), str(path), metadata=meta)
        before = _sha(path)
        r = runner.invoke(
            app,
            ["audit", str(path), "--data", "digits", "--bootstrap", "0", "--no-suggest", "--out", str(Path(d) / "o")],
        )
        _check(r)
        assert _sha(path) == before


IMAGE_BLOBS = st.one_of(
    st.binary(max_size=64).map(lambda b: ("junk", b)),
    st.sampled_from(["L", "RGB", "RGBA", "I;16", "P", "1", "CMYK", "F"]).map(lambda m: ("mode", m.encode())),
    st.integers(1, 60).map(lambda cut: ("truncated", cut.to_bytes(2, "little"))),
)


def _image_bytes(kind: str, payload: bytes) -> bytes:
    import io

    from PIL import Image

    if kind == "junk":
        return payload
    mode = payload.decode() if kind == "mode" else "L"
    buf = io.BytesIO()
    fmt = "TIFF" if mode in ("F", "I;16", "CMYK") else "PNG"
    Image.new(mode, (8, 8)).save(buf, format=fmt)
    data = buf.getvalue()
    return data[: int.from_bytes(payload, "little")] if kind == "truncated" else data


@SETTINGS
@given(blob=IMAGE_BLOBS, where=st.sampled_from(["first", "later"]))
def test_generated_image_folders(runner, blob: tuple[str, bytes], where: str) -> None:
    from PIL import Image

    from .conftest import SAMPLES

    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "imgs"
        for c in range(10):
            (root / str(c)).mkdir(parents=True)
            for i in range(2):
                Image.new("L", (8, 8), color=c * 20 + i).save(root / str(c) / f"{i}.png")
        odd = root / ("0" if where == "first" else "5") / ("0.png" if blob[0] != "mode" else "0.tif")
        if odd.suffix == ".tif":
            (root / odd.parent.name / "0.png").unlink()
        odd.write_bytes(_image_bytes(*blob))
        r = runner.invoke(
            app,
            [
                "audit",
                str(SAMPLES / "cnn_digits.safetensors"),
                "--data",
                f"imagefolder:{root}",
                "--split",
                "train",
                "--bootstrap",
                "0",
                "--no-suggest",
                "--out",
                str(Path(d) / "o"),
            ],
        )
        _check(r)
        if r.exit_code == 2:
            assert "imgs" in r.stderr or "image" in r.stderr, r.stderr[-300:]


OUT_NAMES = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00/"), min_size=1, max_size=20),
    st.integers(200, 400).map(lambda n: "x" * n),
    st.sampled_from(["existing-file", "nested/deeper/out", ".", "..", "input"]),
)


@SETTINGS
@given(name=OUT_NAMES)
def test_generated_output_paths(runner, name: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.npz"
        g = np.random.default_rng(0)
        np.savez(path, logits=g.normal(size=(50, 3)), labels=g.integers(0, 3, 50))
        (Path(d) / "existing-file").write_text("keep me")
        before = _sha(path)
        out = str(path) if name == "input" else str(Path(d) / name)
        r = runner.invoke(app, ["audit", "--logits", str(path), "--bootstrap", "0", "--out", out])
        _check(r)
        assert _sha(path) == before and (Path(d) / "existing-file").read_text() == "keep me"
