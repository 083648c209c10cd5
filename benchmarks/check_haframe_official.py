"""Check vcal's `haframe` head against HAFrame's official code, piece by piece, on Fashion-MNIST's built-in hierarchy
and a real model's cached features.

Needs a checkout of the official repository (github.com/ltong1130ztr/HAFrame, commit abe73b4; its Python files
suffice) and runs its own functions on the same inputs; nothing of it is copied into vcal:

1. the similarity matrix S and its s_min (`solve_HAF.find_max_separation_matrix_factorization_solver` with the
   exponential map) and the loss targets (`hdistance_to_similarity_matrix`);
2. the frame: both factorisations satisfy W W^T = S (their random rotations differ: numpy's global state there,
   a seeded torch generator here);
3. the transformation: vcal's module's weights copied into the official `BatchNorm1d` +
   `NarrowResidualTransformationHead`, outputs compared in train and eval mode on real features;
4. the loss: `MixedLoss_CEandGeneralSCSL(beta=0.6, alpha=0.4)` against `HAFrameHead.loss` on the same batch;
5. the learning rate: the official per-epoch `cosine_anneal_schedule` / 10 (CIFAR-100's backbone + transformation
   group) against vcal's schedule;
6. the metrics: `crm_eval.better_mistakes_metrics` against `vcal_cli.metrics.hierarchy` on the model's test
   predictions.

    python benchmarks/check_haframe_official.py --official PATH [--model ~/.cache/vcal-bench/models/early.pth.tar]
"""

from __future__ import annotations

import argparse
import ast
import heapq
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vcal_cli.api import ExtractOptions, Workbench
from vcal_cli.heads import FitData, get_head
from vcal_cli.heads.haframe import hierarchy_frame, similarity_matrix
from vcal_cli.hierarchy import load_hierarchy
from vcal_cli.metrics.hierarchy import hierarchy_metrics

ROOT = "/usr/share/datasets/fashion-mnist"


def functions(path: Path, *names: str) -> dict[str, Any]:
    """The named top-level functions of a Python file, defined from its source alone (numpy and heapq in scope)."""
    tree = ast.parse(path.read_text())
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    scope: dict[str, Any] = {"np": np, "heapq": heapq}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), scope)  # noqa: S102
    return scope


def line(name: str, diff: float, tol: float) -> None:
    print(f"  {name:62s} max |diff| {diff:.2e}  {'ok' if diff <= tol else 'DIFFERS'} (tolerance {tol:g})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, required=True, help="checkout of ltong1130ztr/HAFrame")
    ap.add_argument("--model", type=Path, default=Path("~/.cache/vcal-bench/models/early.pth.tar").expanduser())
    a = ap.parse_args()
    sys.path.insert(0, str(a.official))
    from HAFrame import solve_HAF
    from HAFrame.losses import MixedLoss_CEandGeneralSCSL
    from util.arch.HAF_resnet import NarrowResidualTransformationHead

    # the training and evaluation scripts import the whole project (data files, wandb, nltk) at module level: run
    # just the functions used, from their own source
    crm = functions(a.official / "MBM/scripts/crm_eval.py", "get_topk_dist", "better_mistakes_metrics")
    better_mistakes_metrics = crm["better_mistakes_metrics"]
    cosine_anneal_schedule = functions(a.official / "MBM/scripts/start_training.py", "cosine_anneal_schedule")[
        "cosine_anneal_schedule"
    ]

    bench = Workbench.open(str(a.model), "fashion-mnist", ExtractOptions.of(data_root=ROOT))
    tree = load_hierarchy("fashion-mnist").reorder(list(bench.class_names or []))
    d = tree.distances()
    k, gamma = len(d), 2.0
    print(f"Fashion-MNIST hierarchy: {k} classes, height {tree.height}; gamma {gamma}")

    print("1. similarity matrix")
    s_min_off = solve_HAF.find_max_separation_matrix_factorization_solver(
        d.numpy(), k, 100, solve_HAF.map_hdistance_to_cosine_similarity_exponential_decay, gamma
    )
    s_off = solve_HAF.map_hdistance_to_cosine_similarity_exponential_decay(
        hdistance=d.numpy(), gamma=gamma, min_similarity=s_min_off
    )
    s, s_min = similarity_matrix(d, gamma)
    line(f"s_min (official {s_min_off:.6f}, vcal {s_min:.6f})", abs(s_min - s_min_off), 1e-12)
    line("S", float(np.abs(s.numpy() - s_off).max()), 1e-12)
    targets = solve_HAF.hdistance_to_similarity_matrix(d.numpy(), gamma, k)
    line("loss targets (hdistance_to_similarity_matrix)", float(np.abs(s.numpy() - targets).max()), 1e-12)

    print("2. frame")
    np.random.seed(0)
    w_off = solve_HAF.cls_weights_matrix_factorization_solver(k, k, s_off)
    w, _ = hierarchy_frame(d, gamma, torch.Generator().manual_seed(0))
    line("official W W^T - S", float(np.abs(w_off @ w_off.T - s_off).max()), 1e-10)
    line("vcal W W^T - S", float((w @ w.T - s).abs().max()), 1e-10)
    line("unit rows (vcal)", float((w.norm(dim=1) - 1).abs().max()), 1e-10)

    print("3. transformation on real features")
    tr, va, te = (bench.features(x) for x in ("train", "val", "test"))
    train, val = FitData(tr.features, tr.logits, tr.labels), FitData(va.features, va.logits, va.labels)
    head = get_head("haframe")(get_head("haframe").make_params(epochs=2)).fit(train, val, hierarchy=tree)
    ours = head.module_
    torch.manual_seed(0)
    conv = nn.Linear(ours.in_features, k, bias=False)  # the 1x1 convolution, after average pooling
    official = nn.Sequential(conv, nn.BatchNorm1d(k), NarrowResidualTransformationHead(k, k, "prelu"))
    n_ours = sum(p.numel() for p in ours.transform.parameters())
    n_off = sum(p.numel() for p in official.parameters())
    print(f"  parameters: vcal {n_ours}, official {n_off}")
    ours_state = list(ours.transform.state_dict().values())
    off_keys = list(official.state_dict())
    assert len(ours_state) == len(off_keys), (len(ours_state), len(off_keys))
    official.load_state_dict(dict(zip(off_keys, ours_state, strict=True)))
    x = te.features[:512].float()
    for mode in ("eval", "train"):
        ours.train(mode == "train")
        official.train(mode == "train")
        with torch.no_grad():
            line(f"features_1 output, {mode} mode", float((ours.embed(x) - official(x)).abs().max()), 1e-5)
    ours.eval()
    official.eval()

    print("4. loss")
    y = te.labels[:512]
    frame = ours.frame.float()
    with torch.no_grad():
        z = ours.embed(x)
        off = MixedLoss_CEandGeneralSCSL(k)(0.6, 0.4, frame, z, y, torch.as_tensor(s_off, dtype=torch.float32)[:, y].T)
        mine = head.loss(ours, x, y)
    line(f"mixed loss (official {float(off):.6f}, vcal {float(mine):.6f})", abs(float(off) - float(mine)), 1e-5)

    print("5. learning rate per epoch (100 epochs)")
    epochs = 100
    sched = head.schedule(epochs)
    diff = max(abs(cosine_anneal_schedule(t, epochs) / 10 - head.params.lr * sched(t)) for t in range(epochs))
    line("official cosine_anneal_schedule / 10 vs vcal lr x schedule", diff, 1e-12)

    print("6. metrics on the model's test predictions")
    names = list(tree.classes)
    dd = {(names[i], names[j]): int(d[i, j]) for i in range(k) for j in range(k)}
    scores = torch.softmax(te.logits.double(), 1).numpy()
    off, _ = better_mistakes_metrics(scores, te.labels.numpy(), dd, names)
    ours_m = hierarchy_metrics(te.logits, te.labels, d, n_bootstrap=0).metrics
    line(
        f"top-1 error % (official {100 - off['top1']:.3f})", abs((100 - off["top1"]) - 100 * ours_m["top1_error"]), 1e-9
    )
    line(f"mistake severity (official {off['mistake']:.4f})", abs(off["mistake"] - ours_m["mistake_severity"]), 1e-12)
    line("avg hierarchical distance @1", abs(off["hie_avg_1"] - ours_m["avg_hdist_at_1"]), 1e-12)
    line("avg hierarchical distance @5", abs(off["hie_avg_5"] - ours_m["avg_hdist_at_5"]), 1e-12)


if __name__ == "__main__":
    main()
