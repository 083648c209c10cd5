"""Real-data calibration benchmark: every head and baseline on real Fashion-MNIST models, with verdicts.

For each model trained by `benchmarks/train_models.py` (kept outside the repo), vcal extracts train, val
and test features once (`--data fashion-mnist` from Debian's `dataset-fashion-mnist` files), fits every
head on them as `vcal retrain` does, and prints one table per model: accuracy, ECE-15, adaptive ECE,
NLL, Brier and AURC on the 10,000 (or, with `--val-from test`, 5,000) test images with 95% bootstrap
intervals, the fit time, and the paired-bootstrap verdict against the original head and against
temperature scaling on the same test samples (as `vcal gate` computes it): + better, = no different,
- worse beyond noise, for ECE / NLL / AURC. laplace-torch's last-layer Laplace (KFAC, prior precision by
marginal likelihood, probit predictive) is in the same table as an outside reference.

    python benchmarks/train_models.py               # once: trains and keeps the models
    python benchmarks/bench_calibration.py [--models DIR] [--heads a,b,...] [--bootstrap 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import ast
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from vcal_cli.api import ExtractOptions, Workbench
from vcal_cli.heads import FitData, get_head, list_heads
from vcal_cli.heads._train import SGDHead
from vcal_cli.metrics import compute_metrics
from vcal_cli.metrics.paired import verdicts

MODELS = {  # file: (what it is, where val comes from)
    "early.pth.tar": ("resnet18, epoch 2 of the 16-epoch run on vcal's train split (train acc. ~0.90)", "train"),
    "overfit.pth.tar": ("resnet18, 16 epochs on vcal's train split, far past fitting", "train"),
    "whole.pth.tar": ("resnet18, 5 epochs on the whole official train part; val from test", "test"),
}
ROOT = "/usr/share/datasets/fashion-mnist"
DEFAULT_HEADS = [
    "temperature",
    "vector",
    "matrix",
    "dirichlet",
    "isotonic",
    "histogram",
    "bayes",
    "ce",
    "ce+temperature",
    "vtst",
    "vtst+temperature",
    "vc",
    "vc+temperature",
]
SHOWN = ("accuracy", "ece", "ece_adaptive", "nll", "brier", "aurc")
MARK = {"better": "+", "no different": "=", "worse": "-"}


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """`vc:gaussian_lr_ratio=1;beta=0.1` -> ("vc", {"gaussian_lr_ratio": 1, "beta": 0.1}): a head with params."""
    name, _, rest = spec.partition(":")
    return name, {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in rest.split(";") if kv)}


def laplace_reference(train: FitData, test_features: torch.Tensor, base: torch.nn.Linear) -> torch.Tensor:
    """laplace-torch: last-layer KFAC Laplace around the original head, prior precision by marginal likelihood,
    probit predictive; log-probabilities of the test split."""
    from laplace import Laplace
    from torch.utils.data import DataLoader, TensorDataset

    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(base.in_features, base.out_features))
    model[1].load_state_dict(base.state_dict())
    la = Laplace(model, "classification", subset_of_weights="last_layer", hessian_structure="kron")
    la.fit(DataLoader(TensorDataset(train.features.float(), train.labels), batch_size=1024))
    la.optimize_prior_precision(method="marglik")
    probs = torch.cat([la(x, pred_type="glm", link_approx="probit") for x in test_features.float().split(2048)])
    return probs.clamp_min(1e-12).log()


def bench_model(
    path: Path,
    val_from: str,
    heads: list[str],
    n_bootstrap: int,
    seed: int,
    full: bool = False,
    views: int = 0,
    augment: str = "crop",
) -> dict[str, Any]:
    o = ExtractOptions.of(data_root=ROOT, val_from=val_from)
    bench = Workbench.open(str(path), "fashion-mnist", o)
    loaded, prep = bench.model, bench.preprocessing
    tr, va, te = (bench.features(s) for s in ("train", "val", "test"))
    train, val = FitData(tr.features, tr.logits, tr.labels), FitData(va.features, va.logits, va.labels)
    fits = [(spec, spec, train) for spec in heads]
    if views:  # the heads that learn on train, again on augmented views of it (vcal retrain --train-views)
        t0 = time.perf_counter()
        viewed = bench.train_views(views, augment, seed=seed)
        print(f"  {views} augmented views ({augment}) of train: {time.perf_counter() - t0:.0f} s", flush=True)
        fits += [(f"{s} [{views} views]", s, viewed) for s in heads if get_head(parse_spec(s)[0]).fits_on != "val"]
    acc = {s: float((f.logits.argmax(1) == f.labels).float().mean()) for s, f in (("train", tr), ("val", va))}
    rows: dict[str, Any] = {}
    preds: dict[str, torch.Tensor] = {"original": te.logits}
    times: dict[str, float] = {"original": 0.0}
    for name, spec, fit_rows in fits:
        head_name, params = parse_spec(spec)
        cls = get_head(head_name)
        t0 = time.perf_counter()
        head = cls(cls.make_params(seed=seed, **params)).fit(fit_rows, val, base=loaded.head)
        times[name] = time.perf_counter() - t0
        preds[name] = head.predict_log_proba(te.features)
        log = getattr(head, "fit_log_", None)
        kept = f" (epoch {log.best_epoch} kept, {log.epochs_run} of {log.epochs} run)" if log else ""
        print(f"  {name}: fitted in {times[name]:.1f} s{kept}", flush=True)
        if full and isinstance(head, SGDHead):  # the papers' full schedule, against the early stop
            t0 = time.perf_counter()
            whole = cls(cls.make_params(seed=seed, **{**params, "patience": 0})).fit(fit_rows, val, base=loaded.head)
            t_full = time.perf_counter() - t0
            v = verdicts(
                head.predict_log_proba(te.features),
                whole.predict_log_proba(te.features),
                te.labels,
                n_bins=15,
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
            print(
                f"  {name} full schedule: {t_full:.1f} s (epoch {whole.fit_log_.best_epoch} kept); full minus early "
                f"stop on test: NLL {v['nll']['delta']:+.4f} {v['nll']['interval']}, ECE {v['ece']['delta']:+.4f} "
                f"{v['ece']['interval']} ({v['nll']['verdict']} / {v['ece']['verdict']})",
                flush=True,
            )
    try:
        t0 = time.perf_counter()
        preds["laplace-torch (LL KFAC, marglik)"] = laplace_reference(train, te.features, loaded.head)
        times["laplace-torch (LL KFAC, marglik)"] = time.perf_counter() - t0
    except ImportError:
        print("  laplace-torch is not installed (pip install laplace-torch): no outside reference")
    for name, lp in preds.items():
        r = compute_metrics(te.labels, logits=lp, n_bootstrap=n_bootstrap, seed=seed)
        row: dict[str, Any] = {"metrics": r.metrics.as_dict(), "intervals": r.intervals, "fit_s": times[name]}
        if name != "original":
            kw = {"n_bins": 15, "n_bootstrap": n_bootstrap, "seed": seed}
            row["vs_original"] = verdicts(te.logits, lp, te.labels, **kw)
            if "temperature" in preds and name != "temperature":
                row["vs_temperature"] = verdicts(preds["temperature"], lp, te.labels, **kw)
            if name.endswith(" views]"):  # the same head on the clean train features
                row["vs_clean"] = verdicts(preds[name.rsplit(" [", 1)[0]], lp, te.labels, **kw)
        rows[name] = row
    return {
        "n_test": len(te.labels),
        "train_accuracy": acc["train"],
        "val_accuracy": acc["val"],
        "preprocessing": prep.describe(),
        "rows": rows,
    }


def _verdicts(row: dict[str, Any], key: str) -> str:
    v = row.get(key)
    return " ".join(MARK[v[m]["verdict"]] for m in ("ece", "nll", "aurc")) if v else ""


def table(result: dict[str, Any]) -> str:
    head = ["head", *(m.replace("_", " ") for m in SHOWN), "fit s", "vs original", "vs temperature", "vs clean"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(SHOWN) + 1) + " :---: | :---: | :---: |"]
    for name, row in result["rows"].items():
        cells = [f"{row['metrics'][m]:.4f} [{row['intervals'][m][0]:.4f}, {row['intervals'][m][1]:.4f}]" for m in SHOWN]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {row['fit_s']:.1f} | {_verdicts(row, 'vs_original')} | "
            f"{_verdicts(row, 'vs_temperature')} | {_verdicts(row, 'vs_clean')} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Path("~/.cache/vcal-bench/models").expanduser())
    p.add_argument("--heads", default=",".join(DEFAULT_HEADS), help="comma-separated; NAME:param=value;... for params")
    p.add_argument("--only", default=None, help="comma-separated model files")
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--full", action="store_true", help="also fit the trained heads' full schedule (patience 0)")
    p.add_argument("--train-views", type=int, default=0, help="also fit the train-fitted heads on K augmented views")
    p.add_argument("--augment", default="crop", help="the views' augmentation (crop or crop+flip)")
    a = p.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)  # laplace-torch's notes on its defaults
    heads = [h for h in a.heads.split(",") if h]
    for h in heads:
        get_head(parse_spec(h)[0])  # a typo fails before any work
    out = {}
    for file, (what, val_from) in MODELS.items():
        if a.only and file not in a.only.split(","):
            continue
        path = a.models / file
        if not path.exists():
            print(f"{file}: not found in {a.models} (run benchmarks/train_models.py)")
            continue
        print(f"\n## {file}: {what} (--val-from {val_from})", flush=True)
        res = bench_model(path, val_from, heads, a.bootstrap, a.seed, a.full, a.train_views, a.augment)
        out[file] = res
        print(
            f"train accuracy {res['train_accuracy']:.4f}, val accuracy {res['val_accuracy']:.4f}, "
            f"{res['n_test']} test images; preprocessing {res['preprocessing']}"
        )
        print("verdicts (ECE NLL AURC, paired bootstrap 95% on test): + better, = no different, - worse\n")
        print(table(res), flush=True)
    if a.json:
        a.json.write_text(json.dumps(out, indent=1, default=float))
    print(f"\nheads in the registry: {', '.join(list_heads())}")


if __name__ == "__main__":
    main()
