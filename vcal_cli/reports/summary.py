"""The verdict a report opens with: what the numbers mean and what to do, in words and numbers.

An audit: "calibrated within noise" only when no calibration test rejects (Holm's rule over the five tests at
family-wise 5%, `vcal_cli.metrics.calibration_tests`); otherwise over-confident, under-confident, or both with
the confidence ranges where each holds ("over-confident above 0.80, under-confident below 0.55"), then where
(the confidence range holding most of the ECE, the classes with the worst binary ECE), and the fix
(temperature scaling fitted on val, scored on this test split, when val was at
hand). A retrain: the head to use, and each head's paired verdicts against the original and temperature
scaling. Everything comes from report.json's own keys, so an older report gets a summary too.
"""

from __future__ import annotations

from typing import Any

from vcal_cli.metrics.evidence import describe as describe_ranges

VERDICT_METRICS = {"nll": "NLL", "ece": "ECE", "brier": "Brier", "aurc": "AURC", "accuracy": "accuracy"}


def _where(reliability: list[dict[str, Any]], ece: float) -> str | None:
    """The narrowest run of adjacent bins holding at least half of the ECE, as 'confidence 0.80-1.00 (71%)'."""
    n = sum(b["count"] for b in reliability)
    if not n or ece <= 0:
        return None
    share = [b["count"] / n * abs(b["accuracy"] - b["confidence"]) if b["count"] else 0.0 for b in reliability]
    best = None
    for i in range(len(share)):
        total = 0.0
        for j in range(i, len(share)):
            total += share[j]
            if total >= 0.5 * ece:
                if best is None or (j - i, -total) < (best[1] - best[0], -best[2]):
                    best = (i, j, total)
                break
    if best is None:
        return None
    i, j, total = best
    return f"confidence {reliability[i]['lo']:.2f}-{reliability[j]['hi']:.2f} ({total / ece:.0%} of the ECE)"


def _classes(per_class: list[dict[str, Any]], names: list[str] | None, top: int = 3) -> str:
    rows = per_class[:top]
    label = (lambda r: names[r["index"]]) if names else (lambda r: f"class {r['index']}")
    return ", ".join(
        f"{label(r)} (ECE {r['ece']:.3f}, accuracy {r['accuracy']:.3f}, confidence {r['confidence']:.3f})" for r in rows
    )


def audit_summary(report: dict[str, Any]) -> dict[str, Any]:
    """`summary` of an audit report.json: {verdict, gap, gap_interval, lines}."""
    m, det = report["metrics"], report.get("details")
    bins = report.get("settings", {}).get("bins", 15)
    lines: list[str] = []
    verdict = "unknown"
    if det and report.get("tests"):
        verdict, lines = _tested(report, bins)
    elif det:  # a report from before the calibration tests: the verdict from the gap's interval
        gap, iv = det["gap"], det.get("gap_interval")
        conf = m["accuracy"] + gap
        if iv and iv[0] > 0:
            verdict = "over-confident"
        elif iv and iv[1] < 0:
            verdict = "under-confident"
        elif iv:
            verdict = "calibrated within noise"
        else:
            verdict = "over-confident" if gap > 0 else "under-confident" if gap < 0 else "calibrated"
        ci = f", 95% interval [{iv[0]:+.4f}, {iv[1]:+.4f}]" if iv else ""
        lines.append(
            f"{verdict.capitalize()}: mean confidence {conf:.4f} against accuracy {m['accuracy']:.4f} "
            f"(gap {gap:+.4f}{ci}); ECE-{bins} {m['ece']:.4f}, smooth ECE {det['smooth']['smece']:.4f}."
        )
        where = _where(report.get("reliability") or [], m["ece"])
        if where and verdict != "calibrated within noise":
            lines.append(f"Where: {where}; worst classes: {_classes(det['per_class'], report.get('class_names'))}.")
    s = report.get("suggestion")
    if s and s.get("temperature") is not None:
        lines.append(
            f"Temperature scaling fitted on val (T = {s['temperature']:.3f}) changes test ECE from {m['ece']:.4f} "
            f"to {s['ece']:.4f} and NLL from {m['nll']:.4f} to {s['nll']:.4f}: `{s['command']}`."
        )
    elif s:
        lines.append(f"{s['reason']}; to recalibrate: `{s['command']}`.")
    return {"verdict": verdict, "lines": lines}


def _tested(report: dict[str, Any], bins: int) -> tuple[str, list[str]]:
    """The verdict from the calibration tests and the confidence ranges off beyond noise."""
    m, det, tests = report["metrics"], report["details"], report["tests"]
    cal = report.get("calibration") or {}
    ranges = cal.get("ranges") or []
    rejected = [k for k, t in tests.items() if t.get("rejected")]
    directions = {r["direction"] for r in ranges}
    if not rejected:
        verdict = "calibrated within noise"
    elif len(directions) == 2:
        verdict = "over- and under-confident"
    elif directions:
        verdict = directions.pop()
    else:  # rejected, but no bin range is off on its own: the mean gap says the direction only when beyond noise
        iv = det.get("gap_interval") or [0.0, 0.0]
        verdict = "over-confident" if iv[0] > 0 else "under-confident" if iv[1] < 0 else "miscalibrated"
    deb = (report.get("debiased") or {}).get("ece") or {}
    ece = f"ECE-{bins} {m['ece']:.4f}"
    if deb and deb.get("noise_floor") is not None:
        lo, hi = deb["interval"]
        ece += (
            f" (debiased {deb['debiased']:.4f}, 95% interval [{lo:.4f}, {hi:.4f}]; "
            f"a calibrated model of this size shows up to {deb['noise_floor']:.4f})"
        )
    where = describe_ranges(ranges)
    if verdict == "miscalibrated":
        where = "no confidence range is off beyond noise on its own, and the mean gap is within noise"
    if where and len({r["direction"] for r in ranges}) == 1:
        head = where[0].upper() + where[1:]  # "Over-confident above 0.93"
    else:
        head = verdict.capitalize() + (f": {where}" if where and rejected else "")
    ps = ", ".join(f"{k} p {_p(tests[k]['p_value'])}" for k in ("tcal", "kuiper", "spiegelhalter") if k in tests)
    tested = "no calibration test rejects" if not rejected else f"rejected by {', '.join(rejected)}"
    lines = [
        f"{head}. Mean confidence {m['accuracy'] + det['gap']:.4f} against accuracy {m['accuracy']:.4f} "
        f"(gap {det['gap']:+.4f}); {tested} ({ps}; Holm, family-wise 5%).",
        f"{ece}; smooth ECE {det['smooth']['smece']:.4f}.",
    ]
    where = _where(report.get("reliability") or [], m["ece"])
    if where and rejected:
        lines.append(f"Where: {where}; worst classes: {_classes(det['per_class'], report.get('class_names'))}.")
    return verdict, lines


def _p(v: float | None) -> str:
    return "unknown" if v is None else ("< 0.001" if v < 0.001 else f"= {v:.3f}")


def verdict_cells(v: dict[str, Any]) -> list[str]:
    """'NLL better (-0.0320)', ... for one comparison's verdicts."""
    return [f"{label} {v[k]['verdict']} ({v[k]['delta']:+.4f})" for k, label in VERDICT_METRICS.items() if k in v]


def verdict_line(verdicts: dict[str, Any], name: str = "") -> str:
    """'vs original: NLL better (-0.0320), ...; vs temperature: ...', leaving out a head against itself."""
    return "; ".join(f"vs {a}: " + ", ".join(verdict_cells(v)) for a, v in verdicts.items() if a != name)


def retrain_summary(report: dict[str, Any]) -> dict[str, Any]:
    """`summary` of a retrain report.json: the head to use (lowest test NLL among the heads not worse than the
    original on NLL or accuracy beyond noise), why, and every head's verdicts."""
    heads = report["heads"]
    lines: list[str] = []
    fitted = {n: h for n, h in heads.items() if n != "original"}
    if not fitted:
        return {"pick": None, "lines": lines}

    def ok(h: dict[str, Any]) -> bool:
        v = (h.get("verdicts") or {}).get("original") or {}
        return all((v.get(k) or {}).get("verdict") != "worse" for k in ("nll", "accuracy"))

    safe = {n: h for n, h in fitted.items() if ok(h)}
    best = min(safe or fitted, key=lambda n: (fitted[n]["metrics"]["nll"], n))
    h, o = fitted[best], heads["original"]["metrics"]
    if safe:
        pick = best
        lines.append(
            f"Use {pick}: lowest test NLL ({h['metrics']['nll']:.4f}, original {o['nll']:.4f}) among the heads not "
            f"worse than the original on NLL or accuracy; ECE {o['ece']:.4f} -> {h['metrics']['ece']:.4f}."
        )
    else:  # nothing to recommend: say what the best one would cost
        pick = "original"
        lines.append(
            f"Keep the original head: every retrained head is worse than it on NLL or accuracy beyond noise "
            f"(lowest test NLL: {best}, {h['metrics']['nll']:.4f} against {o['nll']:.4f}, accuracy "
            f"{h['metrics']['accuracy']:.4f} against {o['accuracy']:.4f})."
        )
    if h.get("verdicts"):
        lines.append(f"{best}: {verdict_line(h['verdicts'], best)}.")
    if auto := (report.get("settings", {}).get("retrain") or {}).get("auto"):
        lines.append(f"--head auto: {auto['reason']}.")
    lines.append(
        "Verdicts: 95% paired bootstrap on the test split; picking on test is optimistic, `--head auto` picks on val."
    )
    return {"pick": pick, "lines": lines}
