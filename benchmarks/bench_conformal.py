"""Conformal prediction sets at ImageNet scale: vcal against TorchCP and MAPIE on the same arrays, in the same run.

Calibrates every score at one alpha on N val rows and builds the sets of N test rows (K classes; default 50,000 x
1,000 each), then prints each library's time and the ratio. Thresholds and sets are checked to agree where the
definitions do (LAC, non-randomised APS, class-conditional LAC; RAPS with the same k_reg and lambda).

    python benchmarks/bench_conformal.py [--n 50000] [--k 1000] [--alpha 0.1] [--repeat 3]

TorchCP's package imports `torchsort` (a source-only package that needs a C++ toolchain) for its training losses;
it is stubbed here, as in the tests. MAPIE runs on the probabilities through a lookup estimator (`prefit`). A library
that is not installed is skipped with a line that says so.
"""

from __future__ import annotations

import argparse
import sys
import time
import types

import numpy as np
import torch

from vcal_cli.metrics.conformal import calibrate

DIFFERS = {  # where MAPIE's definition is not the one vcal and TorchCP share (so its sets are not compared)
    "aps": "other definition (calibration scores randomised, the label crossing the threshold included)",
    "raps": "other definition (as its APS, plus k_reg and lambda tuned on its own 20% of val)",
}


def problem(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 3 + torch.randn(1, k, generator=g) * 0.3
    probs = torch.softmax(logits.double(), 1)
    labels = torch.multinomial(probs.float(), 1, generator=g)[:, 0]
    return probs, labels


def timed(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def vcal_run(score: str, vp, vy, tp, alpha: float):
    def run():
        c = calibrate(vp, vy, score, alpha, k_reg=2, lam=0.01)
        return float(c.threshold.mean()), c.sets(tp)

    return run


def torchcp_run(score: str, vp, vy, tp, alpha: float):
    if "torchsort" not in sys.modules:
        try:
            import torchsort  # noqa: F401
        except ImportError:
            stub = types.ModuleType("torchsort")
            stub.soft_rank = stub.soft_sort = None
            sys.modules["torchsort"] = stub
    import torchcp.classification as tcp
    from torchcp.classification.predictor import ClassConditionalPredictor, SplitPredictor

    make = {
        "lac": lambda: SplitPredictor(tcp.score.LAC(score_type="identity")),
        "aps": lambda: SplitPredictor(tcp.score.APS(score_type="identity", randomized=False)),
        "raps": lambda: SplitPredictor(tcp.score.RAPS(score_type="identity", randomized=False, penalty=0.01, kreg=2)),
        "lac-class": lambda: ClassConditionalPredictor(tcp.score.LAC(score_type="identity")),
    }[score]

    def run():
        pred = make()
        pred.calculate_threshold(vp, vy, alpha=alpha)
        return float(pred.q_hat.double().mean()), pred.predict_with_logits(tp).bool()

    return run


def mapie_run(score: str, vp, vy, tp, alpha: float):
    from mapie.classification import SplitConformalClassifier
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Lookup(ClassifierMixin, BaseEstimator):
        def __init__(self, probs=None):
            self.probs = probs

        def fit(self, x, y):
            self.classes_ = np.arange(self.probs.shape[1])
            return self

        def predict_proba(self, x):
            return self.probs[np.asarray(x)[:, 0].astype(int)]

        def predict(self, x):
            return self.predict_proba(x).argmax(1)

    allp = np.concatenate([vp.numpy(), tp.numpy()])
    n = len(vp)
    kw = {"lac": "lac", "aps": "aps", "raps": "raps"}[score]

    def run():
        m = SplitConformalClassifier(
            Lookup(allp).fit(None, None), confidence_level=1 - alpha, conformity_score=kw, prefit=True
        )
        m.conformalize(np.arange(n)[:, None], vy.numpy())
        _, sets = m.predict_set(np.arange(n, 2 * n)[:, None])
        return None, torch.from_numpy(sets[:, :, 0])

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    vp, vy = problem(a.n, a.k, 0)
    tp, _ = problem(a.n, a.k, 1)
    print(
        f"{a.n:,} val + {a.n:,} test rows x {a.k:,} classes, alpha {a.alpha}, best of {a.repeat}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'score':<10} {'vcal s':>8} {'TorchCP s':>10} {'ratio':>6} {'MAPIE s':>9} {'ratio':>6}  agreement")
    for score in ("lac", "aps", "raps", "lac-class"):
        t_v, (q_v, s_v) = timed(vcal_run(score, vp, vy, tp, a.alpha), a.repeat)
        cells, notes = [], []
        for name, make in (("TorchCP", torchcp_run), ("MAPIE", mapie_run)):
            if name == "MAPIE" and score == "lac-class":
                cells.append("      -       -")
                continue
            try:
                t, (q, s) = timed(make(score, vp, vy, tp, a.alpha), max(1, a.repeat - 1))
            except ImportError as e:
                cells.append(f"{'n/a':>9} {'-':>6}")
                notes.append(f"{name} not installed ({e.name})")
                continue
            same = float((s == s_v).all(1).double().mean())
            cells.append(f"{t:9.2f} {t / t_v:5.1f}x")
            if name == "MAPIE" and score != "lac":
                notes.append(f"MAPIE: {DIFFERS[score]}")
                continue
            notes.append(f"{name}: {same:.2%} of sets equal" + (f", threshold diff {abs(q - q_v):.1e}" if q else ""))
        print(f"{score:<10} {t_v:8.2f} {cells[0]} {cells[1]}  {'; '.join(notes)}")


if __name__ == "__main__":
    main()
