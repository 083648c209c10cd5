"""Why `vtst` and `vc` lose to temperature scaling on a real model: their fit against the schedule, and
`vtst`'s predictive against the number of Monte-Carlo draws.

On one model kept by `benchmarks/train_models.py` (default: `early.pth.tar`), with the features `vcal` caches:
1. the scale of the features (what the KL weight and the learning rate act on);
2. `vtst` and `vc` at the papers' schedule (Adam lr 1e-4, 40 epochs, epoch by val NLL) and with the same
   objective run to convergence: lr 1e-3, or up to 200 epochs, both with early stopping on val NLL; the
   kept epoch and the test NLL, ECE and AURC of each, with the paired verdict against temperature scaling;
3. `vtst`'s test NLL and AURC with M = 1, 3, 10, 30 and 100 stored draws (the same fitted encoder).

    python benchmarks/study_seed_heads.py [--model ~/.cache/vcal-bench/models/early.pth.tar]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vcal_cli.api import ExtractOptions, Workbench
from vcal_cli.heads import FitData, get_head
from vcal_cli.heads.vtst import VTSTModule
from vcal_cli.metrics import compute_metrics
from vcal_cli.metrics.paired import verdicts

ROOT = "/usr/share/datasets/fashion-mnist"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("~/.cache/vcal-bench/models/early.pth.tar").expanduser())
    ap.add_argument("--val-from", default="train")
    ap.add_argument("--bootstrap", type=int, default=200)
    a = ap.parse_args()
    o = ExtractOptions.of(data_root=ROOT, val_from=a.val_from)
    bench = Workbench.open(str(a.model), "fashion-mnist", o)
    loaded = bench.model
    tr, va, te = (bench.features(s) for s in ("train", "val", "test"))
    train, val = FitData(tr.features, tr.logits, tr.labels), FitData(va.features, va.logits, va.labels)
    f = tr.features.float()
    print(
        f"{a.model.name}: features {tuple(f.shape)}, mean {f.mean():.3f}, std {f.std():.3f}, mean row norm "
        f"{f.norm(dim=1).mean():.2f}, fraction of zeros {(f == 0).float().mean():.2f}"
    )
    temp = get_head("temperature")().fit(train, val, base=loaded.head).predict_log_proba(te.features)
    kw = {"n_bins": 15, "n_bootstrap": a.bootstrap, "seed": 0}

    def report(label: str, lp: torch.Tensor, extra: str = "") -> None:
        m = compute_metrics(te.labels, logits=lp, n_bootstrap=0, with_details=False).metrics
        v = verdicts(temp, lp, te.labels, **kw)
        print(
            f"  {label:34s} NLL {m.nll:.4f}  ECE {m.ece:.4f}  AURC {m.aurc:.4f}  vs temperature: NLL "
            f"{v['nll']['verdict']} ({v['nll']['delta']:+.4f}), ECE {v['ece']['verdict']}, AURC "
            f"{v['aurc']['verdict']} {extra}",
            flush=True,
        )

    report("original", te.logits)
    report("temperature", temp)
    fitted = {}
    for name in ("vtst", "vc"):
        for label, params in (
            ("papers' schedule", {}),
            ("lr 1e-3", {"lr": 1e-3}),
            ("up to 200 epochs", {"epochs": 200}),
        ):
            cls = get_head(name)
            t = time.perf_counter()
            head = cls(cls.make_params(**params)).fit(train, val, base=loaded.head)
            log = head.fit_log_
            report(
                f"{name}, {label}",
                head.predict_log_proba(te.features),
                f"(epoch {log.best_epoch} of {log.epochs_run} run, {time.perf_counter() - t:.0f} s)",
            )
            fitted[name, label] = head
    print("vtst's predictive against the number of draws (the fit of the best schedule above):")
    head = min((h for (n, _), h in fitted.items() if n == "vtst"), key=lambda h: h.fit_log_.best_score)
    m0 = head.module_
    assert isinstance(m0, VTSTModule)
    for draws in (1, 3, 10, 30, 100):
        m = VTSTModule(m0.in_features, m0.num_classes, m0.hidden, draws)
        state = {k: v for k, v in m0.state_dict().items() if k != "eps"}
        m.load_state_dict(state | {"eps": torch.randn(draws, m0.hidden, generator=torch.Generator().manual_seed(0))})
        with torch.no_grad():
            lp = torch.cat([m(x.float()) for x in te.features.split(2048)])
        report(f"vtst, M = {draws}", lp)


if __name__ == "__main__":
    main()
