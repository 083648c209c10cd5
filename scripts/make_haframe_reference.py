"""Write tests/data/haframe_official.json: HAFrame's official functions run once on fixed inputs, so CI can compare
vcal's `haframe` head with the official code without a checkout of it (and without copying any of it).

    python scripts/make_haframe_reference.py --official PATH/TO/HAFrame [--out tests/data/haframe_official.json]

PATH is a checkout of github.com/ltong1130ztr/HAFrame at commit abe73b4 (the commit is checked). The official
modules are imported from the checkout (the training and evaluation scripts, which import their whole project at
module level, only for the two functions used, defined from their own source). What is stored, with its inputs:

1. per built-in hierarchy (CIFAR-100, Fashion-MNIST): s_min from `find_max_separation_matrix_factorization_solver`
   with the exponential map (gamma 2), the similarity per LCA height from the map, and the loss targets of
   `hdistance_to_similarity_matrix` per height;
2. `MixedLoss_CEandGeneralSCSL(beta=0.6, alpha=0.4)` on a fixed frame, fixed features and labels;
3. the official `Linear` (the 1x1 convolution after pooling) + `BatchNorm1d` + `NarrowResidualTransformationHead`
   from torch seed 0: its weights, a fixed input and its outputs in eval and in train mode;
4. `cosine_anneal_schedule(t, 100) / 10` for t = 0..99;
5. `better_mistakes_metrics` on fixed scores and labels under the Fashion-MNIST hierarchy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vcal_cli.heads.haframe import hierarchy_frame
from vcal_cli.hierarchy import load_hierarchy

REPO = "ltong1130ztr/HAFrame"
COMMIT = "abe73b4"
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "haframe_official.json"
sys.path.insert(0, str(ROOT / "benchmarks"))
from check_haframe_official import functions  # noqa: E402  (the official functions, defined from their own source)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    head = subprocess.run(["git", "-C", str(a.official), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = head.stdout.strip() or "unknown"
    if not commit.startswith(COMMIT):
        sys.exit(f"{a.official} is at {commit}, not {COMMIT}")
    sys.path.insert(0, str(a.official))
    from HAFrame import solve_HAF
    from HAFrame.losses import MixedLoss_CEandGeneralSCSL
    from util.arch.HAF_resnet import NarrowResidualTransformationHead

    crm = functions(a.official / "MBM/scripts/crm_eval.py", "get_topk_dist", "better_mistakes_metrics")
    cosine = functions(a.official / "MBM/scripts/start_training.py", "cosine_anneal_schedule")["cosine_anneal_schedule"]
    out: dict[str, Any] = {
        "provenance": {
            "repository": f"github.com/{REPO}",
            "commit": commit,
            "script": "scripts/make_haframe_reference.py",
            "torch": torch.__version__,
        },
        "gamma": 2.0,
        "similarity": {},
    }
    for name in ("cifar100", "fashion-mnist"):
        d = load_hierarchy(name).distances().numpy()
        k = len(d)
        s_min = solve_HAF.find_max_separation_matrix_factorization_solver(
            d, k, 100, solve_HAF.map_hdistance_to_cosine_similarity_exponential_decay, 2.0
        )
        s = solve_HAF.map_hdistance_to_cosine_similarity_exponential_decay(hdistance=d, gamma=2.0, min_similarity=s_min)
        targets = solve_HAF.hdistance_to_similarity_matrix(d, 2.0, k)
        heights = sorted({int(h) for h in np.unique(d)})
        out["similarity"][name] = {
            "s_min": float(s_min),
            "by_height": {str(h): float(s[d == h][0]) for h in heights},
            "targets_by_height": {str(h): float(targets[d == h][0]) for h in heights},
        }

    tree = load_hierarchy("fashion-mnist")
    d = tree.distances()
    k = len(d)
    frame, sim = hierarchy_frame(d, 2.0, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    z = torch.randn(32, k, generator=g)
    y = torch.randint(0, k, (32,), generator=g)
    s_off = torch.as_tensor(
        solve_HAF.map_hdistance_to_cosine_similarity_exponential_decay(
            hdistance=d.numpy(), gamma=2.0, min_similarity=out["similarity"]["fashion-mnist"]["s_min"]
        ),
        dtype=torch.float32,
    )
    loss = MixedLoss_CEandGeneralSCSL(k)(0.6, 0.4, frame.float(), z, y, s_off[:, y].T)
    out["loss"] = {"frame": frame.tolist(), "z": z.tolist(), "y": y.tolist(), "value": float(loss)}

    torch.manual_seed(0)
    conv, bn = nn.Linear(16, k, bias=False), nn.BatchNorm1d(k)  # built in this order: the seeded weights
    official = nn.Sequential(conv, bn, NarrowResidualTransformationHead(k, k, "prelu"))
    x = torch.randn(64, 16, generator=g)
    state = {key: v.tolist() for key, v in official.state_dict().items()}
    with torch.no_grad():
        official.eval()
        eval_out = official(x)
        official.train()
        train_out = official(x)
    out["transform"] = {"state": state, "x": x.tolist(), "eval": eval_out.tolist(), "train": train_out.tolist()}

    out["schedule"] = [cosine(t, 100) / 10 for t in range(100)]

    logits = 3 * torch.randn(200, k, generator=g, dtype=torch.float64)
    labels = torch.randint(0, k, (200,), generator=g)
    names = list(tree.classes)
    dd = {(names[i], names[j]): int(d[i, j]) for i in range(k) for j in range(k)}
    res, _ = crm["better_mistakes_metrics"](torch.softmax(logits, 1).numpy(), labels.numpy(), dd, names)
    out["metrics"] = {
        "logits": logits.tolist(),
        "labels": labels.tolist(),
        "top1": float(res["top1"]),
        "mistake": float(res["mistake"]),
        "hie_avg_1": float(res["hie_avg_1"]),
        "hie_avg_5": float(res["hie_avg_5"]),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out) + "\n", encoding="utf-8")
    print(f"wrote {a.out} from {REPO} @ {commit}")


if __name__ == "__main__":
    main()
