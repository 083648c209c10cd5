"""The seed papers' claims on real Fashion-MNIST models: four studies, each with paired-bootstrap verdicts.

1. hierarchy: `haframe` against `ce` and the original head on the built-in Fashion-MNIST hierarchy: top-1 error,
   mistake severity and average hierarchical distance @1/@5 with 95% intervals, and paired verdicts.
2. two-stage: the papers' regime (a backbone trained with crop+flip augmentation, stage 2 fitted on augmented
   views of train): clean accuracy/ECE/NLL and the mean over 9 corruptions x 5 severities of ECE and accuracy for
   the original, temperature, `ce` (TST) and `vtst`; pooled shift ECE with a paired verdict; the reproduction
   study's finding (V-TST's shift ECE far below TST's and the original's) checked, and the same run's
   `--protocol vtst` table next to the published CIFAR-10 WRN rows.
3. low-data: `vc`, `ce`, `vtst`, `bayes` fitted on seeded class-stratified 1% ... 100% of train (ECE, NLL,
   accuracy with intervals; `vc` against `ce` paired).
4. attack: `vc` against `ce` under FGSM and PGD (L-inf, 1/255 ... 8/255, the first 1,000 test images; PGD 10 steps
   of 2.5 eps / 10 from a random start), each head attacked through the whole model, with the clean accuracy of
   both on those images (the claim is at equal clean accuracy) and paired verdicts per attack.

Models come from `benchmarks/train_models.py` (`augmented.pth.tar` for every study, `early.pth.tar` also for the
hierarchy). Results go to `--out` as JSON, one file per study, and are printed as tables.

    python benchmarks/bench_seeds.py [--study hierarchy,two-stage,low-data,attack] [--bootstrap 500]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from vcal_cli.api import ExtractOptions, RetrainSettings, Workbench, retrain
from vcal_cli.evaluations.adversarial import PixelModel, fgsm, pgd
from vcal_cli.evaluations.robustness import RobustnessOptions
from vcal_cli.evaluations.shift import corrupted_split, strengths_for
from vcal_cli.hierarchy import load_hierarchy
from vcal_cli.metrics import compute_metrics
from vcal_cli.metrics.hierarchy import hierarchy_verdicts
from vcal_cli.metrics.paired import verdicts

ROOT = "/usr/share/datasets/fashion-mnist"
MODELS = Path("~/.cache/vcal-bench/models").expanduser()
STUDIES = ("hierarchy", "two-stage", "low-data", "attack")
FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
# the reproduction study's CIFAR-10 WRN-28-10 rows (seeds.md section 3.5; ECE and shift ECE x100, 10 bins)
PUBLISHED = {
    "original": {"acc": 92.52, "ece": 6.06, "nll": 0.512, "shift_ece": 20.06, "auroc": 0.874},
    "temperature": {"acc": 92.52, "ece": 4.70, "nll": 0.302, "shift_ece": 16.44, "auroc": 0.885},
    "ce": {"acc": 92.55, "ece": 3.34, "nll": 0.252, "shift_ece": 13.09, "auroc": 0.883},  # TST Z=128
    "vtst": {"acc": 92.44, "ece": 1.38, "nll": 0.258, "shift_ece": 9.41, "auroc": 0.851},  # V-TST Z=128, M=10
}


def open_model(name: str) -> Workbench:
    return Workbench.open(str(MODELS / name), "fashion-mnist", ExtractOptions.of(data_root=ROOT))


def ci(m: Any, key: str, scale: float = 1.0, digits: int = 4) -> str:
    iv = m.result.intervals.get(key)
    v = getattr(m.result.metrics, key)
    return f"{v * scale:.{digits}f}" + (f" [{iv[0] * scale:.{digits}f}, {iv[1] * scale:.{digits}f}]" if iv else "")


def verdict(v: dict[str, Any]) -> str:
    return f"{v['verdict']} ({v['delta']:+.4f} [{v['interval'][0]:+.4f}, {v['interval'][1]:+.4f}])"


def run_retrain(bench: Workbench, heads: list[str], boot: int, **kw: Any) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        rep = retrain(bench, heads, settings=RetrainSettings(out_dir=tmp, n_bootstrap=boot, **kw))
        print(f"  ({', '.join(heads)} fitted and scored in {time.perf_counter() - t:.0f} s)", flush=True)
        return rep


def study_hierarchy(boot: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in ("early.pth.tar", "augmented.pth.tar"):
        if not (MODELS / model).exists():
            print(f"{model}: missing, skipped (python benchmarks/train_models.py)")
            continue
        bench = open_model(model)
        tree = load_hierarchy("fashion-mnist").reorder(list(bench.class_names or []))
        rep = run_retrain(bench, ["ce", "haframe"], boot, hierarchy="fashion-mnist")
        print(f"\n{model}: Fashion-MNIST hierarchy (height {tree.height}); 95% intervals; lower is better")
        print(f"  {'head':10s} {'top-1 error':26s} {'mistake severity':26s} {'hdist@1':26s} {'hdist@5':26s}")
        rows = {}
        for name, h in rep.heads.items():
            hm, iv = h.hierarchy["metrics"], h.hierarchy["intervals"]
            cells = [
                f"{hm[k]:.4f} [{iv[k][0]:.4f}, {iv[k][1]:.4f}]"
                for k in ("top1_error", "mistake_severity", "avg_hdist_at_1", "avg_hdist_at_5")
            ]
            print(f"  {name:10s} " + " ".join(f"{c:26s}" for c in cells))
            rows[name] = {"metrics": hm, "intervals": iv}
        test = bench.features("test")
        vs_ce = hierarchy_verdicts(
            rep.heads["ce"].log_probs,
            rep.heads["haframe"].log_probs,
            test.labels,
            tree.distances(),
            n_bootstrap=boot,
            seed=0,
        )
        pairs = {"ce": vs_ce, **rep.heads["haframe"].hierarchy["verdicts"]}
        for against, v in pairs.items():
            print(
                f"  haframe vs {against:12s} "
                + "; ".join(
                    f"{k}: {verdict(v[k])}"
                    for k in ("top1_error", "mistake_severity", "avg_hdist_at_1", "avg_hdist_at_5")
                )
            )
        out[model] = {"heads": rows, "haframe_verdicts": pairs}
    return out


def _shift_predictions(bench: Workbench, modules: dict[str, Any], corruptions: list[str]) -> tuple[dict, torch.Tensor]:
    """Every head's log-probabilities (the original's logits) on all corrupted test splits, concatenated (cached)."""
    base = bench.images("test")
    table = strengths_for(*base.images.shape[-2:])
    preds: dict[str, list[torch.Tensor]] = {n: [] for n in modules}
    labels = []
    for c in corruptions:
        for s in (1, 2, 3, 4, 5):
            fs = bench.features_of(corrupted_split(base, c, s, 0, strengths=table))
            labels.append(fs.labels)
            for n, m in modules.items():
                with torch.inference_mode():
                    preds[n].append(fs.logits if m is None else torch.cat([m(x) for x in fs.features.split(4096)]))
    return {n: torch.cat(p) for n, p in preds.items()}, torch.cat(labels)


def study_two_stage(boot: int, views: int) -> dict[str, Any]:
    bench = open_model("augmented.pth.tar")
    r = RobustnessOptions(ood=("digits",), protocol="vtst")
    heads_fitted = ["temperature", "ce", "vtst", "vc", "bayes"]
    rep = run_retrain(bench, heads_fitted, boot, train_views=views, augment="crop+flip", robustness=r)
    heads = rep.heads
    print(
        f"\naugmented.pth.tar, stage 2 on {views} crop+flip views of train; clean test with 95% intervals; shift: "
        f"mean over {len(r.shift)} corruptions x 5 severities"
    )
    print(f"  {'head':12s} {'accuracy':24s} {'ECE-15':24s} {'NLL':24s} {'shift acc.':10s} {'shift ECE-15':12s}")
    out: dict[str, Any] = {"views": views, "heads": {}}
    for name, h in heads.items():
        rows = h.robustness["shift"] if h.robustness else []
        sa = sum(x["accuracy"] for x in rows) / len(rows)
        se = sum(x["ece"] for x in rows) / len(rows)
        print(f"  {name:12s} {ci(h, 'accuracy'):24s} {ci(h, 'ece'):24s} {ci(h, 'nll'):24s} {sa:<10.4f} {se:<12.4f}")
        out["heads"][name] = {
            "metrics": h.result.metrics.as_dict(),
            "shift_accuracy": sa,
            "shift_ece": se,
            "protocol": h.robustness.get("protocol") if h.robustness else None,
            "verdicts": h.verdicts,
        }
    for name in heads_fitted[1:]:
        for against, v in (heads[name].verdicts or {}).items():
            print(f"  clean: {name} vs {against:12s} ECE {verdict(v['ece'])}; NLL {verdict(v['nll'])}")
    modules = {n: (None if n == "original" else h.head.module_) for n, h in heads.items()}
    preds, labels = _shift_predictions(bench, modules, list(r.shift))
    nb = min(boot, 100)  # 450,000 pooled rows: 100 paired resamples
    out["shift_verdicts"] = {}
    for name, against in (
        ("vtst", "ce"),
        ("vtst", "original"),
        ("vtst", "temperature"),
        ("ce", "original"),
        ("ce", "temperature"),
        ("vc", "temperature"),
        ("bayes", "temperature"),
    ):
        v = verdicts(preds[against], preds[name], labels, n_bins=15, n_bootstrap=nb, seed=0)
        out["shift_verdicts"][f"{name} vs {against}"] = {k: v[k] for k in ("ece", "nll", "accuracy")}
        print(
            f"  shift (pooled {len(labels)} rows): {name} vs {against:12s} ECE {verdict(v['ece'])}; "
            f"accuracy {verdict(v['accuracy'])}"
        )
    print(
        "\n  --protocol vtst (ECE x100 with 10 bins; shift pooled; MSP AUROC, ID positive, OOD: digits) next to the "
        "reproduction study's CIFAR-10 WRN-28-10 rows"
    )
    protocol_table({name: h.robustness["protocol"] for name, h in heads.items()})
    return out


def protocol_table(rows: dict[str, dict[str, Any]]) -> None:
    """Print `--protocol vtst` rows (each head's report.json `protocol`) beside the published ones."""
    print(
        f"  {'head':12s} {'acc %':>14s} {'ECE':>12s} {'MCE':>6s} {'NLL':>14s} {'Brier/K':>8s} {'shift ECE':>14s} "
        f"{'OOD AUROC':>14s} {'FPR95':>6s}  shift ECE per severity"
    )
    nan = float("nan")
    for name, p in rows.items():
        pub = PUBLISHED.get(name, {"acc": nan, "ece": nan, "nll": nan, "shift_ece": nan, "auroc": nan})
        t, s, o = p["test"], p["shift"], p.get("ood", {})
        sev = " ".join(f"{100 * v:.2f}" for v in s["ece_by_severity"].values())
        print(
            f"  {name:12s} {100 * t['accuracy']:6.2f} ({pub['acc']:5.2f}) {100 * t['ece']:5.2f} ({pub['ece']:4.2f}) "
            f"{100 * t['mce']:6.2f} {t['nll']:6.3f} ({pub['nll']:.3f}) {t['brier_k']:8.5f} {100 * s['ece']:6.2f} "
            f"({pub['shift_ece']:5.2f}) {o.get('auroc', nan):6.3f} ({pub['auroc']:.3f}) {o.get('fpr95', nan):6.3f}  "
            f"{sev}"
        )


def study_low_data(boot: int) -> dict[str, Any]:
    bench = open_model("augmented.pth.tar")
    test = bench.features("test")
    out: dict[str, Any] = {}
    print("\naugmented.pth.tar: heads fitted on a seeded class-stratified fraction of train (selected on the full val)")
    print(f"  {'fraction':8s} {'head':6s} {'accuracy':24s} {'ECE-15':24s} {'NLL':24s}")
    for f in FRACTIONS:
        rep = run_retrain(bench, ["ce", "vc", "vtst", "bayes"], boot, train_fraction=f)
        out[str(f)] = {}
        for name in ("ce", "vc", "vtst", "bayes"):
            h = rep.heads[name]
            print(f"  {f:<8g} {name:6s} {ci(h, 'accuracy'):24s} {ci(h, 'ece'):24s} {ci(h, 'nll'):24s}")
            out[str(f)][name] = {
                "metrics": h.result.metrics.as_dict(),
                "intervals": {k: list(v) for k, v in h.result.intervals.items()},
            }
        v = verdicts(
            rep.heads["ce"].log_probs, rep.heads["vc"].log_probs, test.labels, n_bins=15, n_bootstrap=boot, seed=0
        )
        out[str(f)]["vc_vs_ce"] = v
        print(
            f"           vc vs ce: ECE {verdict(v['ece'])}; NLL {verdict(v['nll'])}; accuracy {verdict(v['accuracy'])}"
        )
    return out


def study_attack(boot: int) -> dict[str, Any]:
    """Each head attacked through the whole model (its own adversarial images, vcal's FGSM and PGD), outputs kept so
    the two heads are compared image by image with the paired bootstrap."""
    bench = open_model("augmented.pth.tar")
    rep = run_retrain(bench, ["ce", "vc"], boot)
    n = 1000
    ds = bench.images("test")
    prep = bench.preprocessing_for(ds)
    pixels, labels = prep.to_pixels(ds.images[:n]), ds.labels[:n]
    models = {
        name: PixelModel(
            bench.model.with_head(rep.heads[name].head.module_, {"name": name}).model, prep.normalize
        ).eval()
        for name in ("ce", "vc")
    }
    out: dict[str, Any] = {"n": n, "rows": []}

    def outputs(name: str, attack: str | None, eps: float) -> torch.Tensor:
        model, gen, parts = models[name], torch.Generator().manual_seed(0), []
        for i in range(0, n, 250):
            x, y = pixels[i : i + 250], labels[i : i + 250]
            if attack == "fgsm":
                x = fgsm(model, x, y, eps)
            elif attack == "pgd":
                x = pgd(model, x, y, eps, generator=gen)
            adv = x
            with torch.no_grad():
                parts.append(model(adv).float())
        return torch.cat(parts)

    print(
        f"\naugmented.pth.tar: the first {n} test images, each head attacked through the whole model; paired "
        f"verdicts of vc against ce"
    )
    print(f"  {'attack':6s} {'eps':6s} {'ce acc.':8s} {'vc acc.':8s} {'ce ECE':8s} {'vc ECE':8s} vc vs ce")
    for attack, eps in [(None, 0.0)] + [(a, e) for a in ("fgsm", "pgd") for e in EPS]:
        z = {name: outputs(name, attack, eps) for name in models}
        m = {name: compute_metrics(labels, logits=v, n_bootstrap=0).metrics for name, v in z.items()}
        v = verdicts(z["ce"], z["vc"], labels, n_bins=15, n_bootstrap=boot, seed=0)
        label = attack or "clean"
        print(
            f"  {label:6s} {round(eps * 255)}/255  {m['ce'].accuracy:<8.4f} {m['vc'].accuracy:<8.4f} "
            f"{m['ce'].ece:<8.4f} {m['vc'].ece:<8.4f} accuracy {verdict(v['accuracy'])}; ECE {verdict(v['ece'])}",
            flush=True,
        )
        out["rows"].append(
            {
                "attack": label,
                "eps": eps,
                "ce": m["ce"].as_dict(),
                "vc": m["vc"].as_dict(),
                "vc_vs_ce": {k: v[k] for k in ("accuracy", "ece", "nll")},
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default=",".join(STUDIES))
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--views", type=int, default=2, help="augmented views of train for the two-stage study")
    ap.add_argument("--out", type=Path, default=Path("~/.cache/vcal-bench/seeds").expanduser())
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    for study in a.study.split(","):
        t = time.perf_counter()
        print(f"=== {study}", flush=True)
        if study == "hierarchy":
            res = study_hierarchy(a.bootstrap)
        elif study == "two-stage":
            res = study_two_stage(a.bootstrap, a.views)
        elif study == "low-data":
            res = study_low_data(a.bootstrap)
        elif study == "attack":
            res = study_attack(a.bootstrap)
        else:
            raise SystemExit(f"--study '{study}' is not one of {', '.join(STUDIES)}")
        (a.out / f"{study}.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
        print(f"=== {study}: {time.perf_counter() - t:.0f} s; {a.out / (study + '.json')}", flush=True)


if __name__ == "__main__":
    main()
