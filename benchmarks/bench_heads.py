"""Fit every head on cached features of realistic size, time it against temperature scaling, and say how
close each comes to the machine's limit: the FLOPs its fit performs (torch's FlopCounterMode on one training
step, times the steps run, plus the val scoring; the whole fit for the closed-form and post-hoc heads), the
achieved GFLOP/s, and the machine's float32 matmul peak measured by a plain `torch.mm` loop in the same run.
The trained heads also run the papers' full schedule (`patience=0`) for the kept epoch and test NLL/ECE the
early stop gives up; `bayes`'s predictive is timed against laplace-torch's KFAC GLM probit.

    python benchmarks/bench_heads.py [--n 50000] [--dim 640] [--classes 10] [--laplace-n 2000] [--full] [--bf16]
                                     [--repeat 1] [--device cpu|cuda]

Synthetic features: Gaussian class clusters with an overconfident linear head (its logits are the
cached "original" logits). Times are wall-clock seconds on this machine, one run each (`--repeat R`: the
median of R seeded runs). The trained heads' first row is float32; `--bf16` adds a row under bf16 autocast
(what `--train-precision auto` picks on a CPU with AVX-512 BF16). `--device cuda` fits the trained heads on the
GPU (`--train-device cuda`) and measures the peak there; the closed-form and post-hoc heads stay on the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from vcal_cli.heads import FitData, get_head, list_heads
from vcal_cli.heads._train import SGDHead, bf16_is_fast
from vcal_cli.heads.ce import MLPHead
from vcal_cli.hierarchy import Hierarchy
from vcal_cli.metrics import compute_metrics


def matmul_peak(n: int = 2048, seconds: float = 2.0, dtype: torch.dtype = torch.float32, device: str = "cpu") -> float:
    """GFLOP/s of a plain torch.mm loop on n x n matrices of `dtype` (best of a few-second run)."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.mm(a, b)
    sync()
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def sgd_flops(head: SGDHead, train: FitData, val: FitData) -> float:
    """FLOPs of an SGD head's fit: one step (forward, backward) x the steps run + the val scoring per epoch."""
    p, log = head.params, head.fit_log_
    module = head.build(train)
    x, y = train.features[: p.batch_size].float(), train.labels[: p.batch_size]
    with FlopCounterMode(display=False) as fc:
        head.loss(module, x, y).backward()
    step = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        head.select(module, val)
    steps = log.epochs_run * -(-len(train.labels) // p.batch_size)
    return step * steps + fc.get_total_flops() * log.epochs_run


def step_variants(train: FitData, steps: int = 300) -> None:
    """What the issue's speed levers buy on `ce`'s step: Adam's for-loop, foreach and fused paths, and reading
    a batch by a per-batch gather (what the loop does) against slicing one per-epoch permuted copy."""
    x_all, y_all = train.features, train.labels
    n, d = x_all.shape
    k = int(y_all.max()) + 1
    for label, kw in (
        ("Adam (for-loop)", {"foreach": False}),
        ("Adam foreach", {"foreach": True}),
        ("Adam fused", {"fused": True}),
    ):
        torch.manual_seed(0)
        m = MLPHead(d, k, 128)
        opt = torch.optim.Adam(m.parameters(), lr=1e-4, **kw)
        idx = torch.randint(0, n, (steps, 256))
        t = time.perf_counter()
        for i in range(steps):
            loss = torch.nn.functional.cross_entropy(m.logits(x_all[idx[i]]), y_all[idx[i]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        print(f"  {label:24s} {(time.perf_counter() - t) / steps * 1e3:6.2f} ms/step", flush=True)
    bf16 = bf16_is_fast()  # native bf16 (AVX-512 BF16 or AMX) on this CPU
    torch.manual_seed(0)
    m = MLPHead(d, k, 128)
    opt = torch.optim.Adam(m.parameters(), lr=1e-4, fused=True)
    idx = torch.randint(0, n, (steps, 256))
    t = time.perf_counter()
    for i in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(m.logits(x_all[idx[i]]), y_all[idx[i]])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    print(
        f"  {'bf16 autocast (fused)':24s} {(time.perf_counter() - t) / steps * 1e3:6.2f} ms/step "
        f"(oneDNN bf16 support on this CPU: {bf16})",
        flush=True,
    )
    perm = torch.randperm(n)
    t = time.perf_counter()
    for i in range(0, n, 256):
        x_all[perm[i : i + 256]].sum()
    gather = time.perf_counter() - t
    t = time.perf_counter()
    xp = x_all[perm]
    for i in range(0, n, 256):
        xp[i : i + 256].sum()
    sliced = time.perf_counter() - t
    print(
        f"  one epoch of batches: per-batch gather {gather * 1e3:.0f} ms, permuted copy + slices {sliced * 1e3:.0f} ms",
        flush=True,
    )


def fit(
    name: str, train: FitData, val: FitData, base: torch.nn.Linear, tree: Hierarchy, repeat: int = 1, **params: object
):
    """The fitted head and its fit's wall-clock seconds (the median of `repeat` identical, seeded fits)."""
    cls = get_head(name)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        head = cls(cls.make_params(**params)).fit(train, val, base=base, hierarchy=tree)
        times.append(time.perf_counter() - t)
    return head, statistics.median(times)


def scores(head, test: FitData) -> tuple[float, float, float]:
    m = compute_metrics(test.labels, logits=head.predict_log_proba(test.features), n_bootstrap=0, with_details=False)
    return m.metrics.accuracy, m.metrics.nll, m.metrics.ece


def synthetic(n: int, d: int, k: int, seed: int = 0) -> tuple[FitData, FitData, FitData, torch.nn.Linear]:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g) * 0.15
    total = n + n // 10 + n // 5
    y = torch.randint(0, k, (total,), generator=g)
    x = (means[y] + torch.randn(total, d, generator=g) * 1.0).relu()
    base = torch.nn.Linear(d, k)
    with torch.no_grad():  # a least-squares head, scaled up: accurate but overconfident
        onehot = torch.nn.functional.one_hot(y[:n], k).float()
        a = torch.cat([x[:n], torch.ones(n, 1)], 1)
        w = torch.linalg.lstsq(a, onehot * 2 - 1).solution.T * 8
        base.weight.copy_(w[:, :-1])
        base.bias.copy_(w[:, -1])
        logits = base(x)
    parts = [(0, n), (n, n + n // 10), (n + n // 10, total)]
    return (*(FitData(x[a:b], logits[a:b], y[a:b]) for a, b in parts), base)


def laplace_predictive_time(head, test: FitData, n: int) -> tuple[float, float]:
    """Seconds per sample for laplace-torch's KFAC GLM probit predictive on the same posterior, and max diff."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.test_bayes_vs_laplace import laplace_with_posterior

    mod = head.module_.double()
    la = laplace_with_posterior(mod.weight, mod.cov, float(mod.sigma2), head.params.prior_precision)
    feats = torch.cat([test.features[:n].double(), torch.ones(n, 1, dtype=torch.float64)], 1)
    t = time.perf_counter()
    ref = torch.cat([la(feats[i : i + 100], pred_type="glm", link_approx="probit") for i in range(0, n, 100)])
    lap = (time.perf_counter() - t) / n
    diff = float((mod(test.features[:n].double()).exp() - ref).abs().max())
    head.module_.float()
    return lap, diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=640)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--laplace-n", type=int, default=2000)
    ap.add_argument("--heads", default=",".join(h for h in list_heads() if h != "haframe"))
    ap.add_argument("--full", action="store_true", help="also run the trained heads' full schedule (patience 0)")
    ap.add_argument("--bf16", action="store_true", help="also fit the trained heads under bf16 autocast")
    ap.add_argument("--repeat", type=int, default=1, help="time each fit as the median of this many runs")
    ap.add_argument("--device", default="cpu", help="where the trained heads fit (--train-device): cpu or cuda")
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch sees no CUDA device here")
    train, val, test, base = synthetic(args.n, args.dim, args.classes)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch's first optimizer imports torch._dynamo (~4 s)
    print(
        f"features: train {tuple(train.features.shape)}, val {len(val.labels)}, test {len(test.labels)}, "
        f"{args.classes} classes, torch threads {torch.get_num_threads()}"
    )
    tree = Hierarchy(
        tuple(map(str, range(args.classes))), tuple((f"g{i % 2}", str(i)) for i in range(args.classes)), "synthetic"
    )
    if not gpu:  # the CPU step's levers
        print("step variants (ce's 640-384-128-10 head, batch 256):")
        step_variants(train)
    size, where = (
        (8192, torch.cuda.get_device_name(args.device)) if gpu else (2048, f"{torch.get_num_threads()} threads")
    )
    peak = matmul_peak(size, device=args.device)
    bpeak = matmul_peak(size, dtype=torch.bfloat16, device=args.device)
    print(
        f"machine peak: {peak:,.0f} GFLOP/s (float32 torch.mm {size} x {size}, {where}); "
        f"bfloat16: {bpeak:,.0f} GFLOP/s (the bf16 rows' 'of peak')\n"
    )
    cols = f"{'head':12s} {'fit s':>8s} {'GFLOP':>9s} {'GFLOP/s':>8s} {'of peak':>7s}"
    print(cols + "  epochs kept/run  test acc / NLL / ECE")
    times, heads = {}, {}
    for name in args.heads.split(","):  # the trained heads in float32 here: the bf16 row below is --bf16
        sgd = issubclass(get_head(name), SGDHead)
        fp32 = {"train_precision": "fp32", "train_device": args.device} if sgd else {}
        heads[name], times[name] = fit(name, train, val, base, tree, args.repeat, **fp32)
        h = heads[name]
        if isinstance(h, SGDHead):
            flops, log = sgd_flops(h, train, val), h.fit_log_
            epochs = f"{log.best_epoch:>4d}/{log.epochs_run:<4d} of {log.epochs}"
        else:
            with FlopCounterMode(display=False) as fc:
                fit(name, train, val, base, tree, **fp32)
            flops, epochs = fc.get_total_flops(), ""
        rate = flops / times[name] / 1e9
        acc, nll, ece = scores(h, test)
        print(
            f"{name:12s} {times[name]:8.2f} {flops / 1e9:9.1f} {rate:8.1f} {rate / peak:7.1%}  {epochs:16s} "
            f"{acc:.4f} / {nll:.4f} / {ece:.4f}",
            flush=True,
        )
        if args.bf16 and isinstance(h, SGDHead):  # the same fit under bf16 autocast (--train-precision bf16)
            fast, t_fast = fit(
                name, train, val, base, tree, args.repeat, train_precision="bf16", train_device=args.device
            )
            bacc, bnll, bece = scores(fast, test)
            brate = sgd_flops(fast, train, val) / t_fast / 1e9
            print(
                f"{'  bf16':12s} {t_fast:8.2f} {'':9s} {brate:8.1f} {brate / bpeak:7.1%}  "
                f"{fast.fit_log_.best_epoch:>4d}/{fast.fit_log_.epochs_run:<4d} of {fast.fit_log_.epochs}  "
                f"{bacc:.4f} / {bnll:.4f} / {bece:.4f}   {times[name] / t_fast:.2f}x faster than fp32, "
                f"{(times[name] / log.epochs_run) / (t_fast / fast.fit_log_.epochs_run):.2f}x per epoch",
                flush=True,
            )
        if args.full and isinstance(h, SGDHead):
            full, t_full = fit(name, train, val, base, tree, patience=0, **fp32)
            facc, fnll, fece = scores(full, test)
            print(
                f"{'  full':12s} {t_full:8.2f} {'':9s} {'':8s} {'':7s}  "
                f"{full.fit_log_.best_epoch:>4d}/{full.fit_log_.epochs_run:<4d} of {full.fit_log_.epochs}  "
                f"{facc:.4f} / {fnll:.4f} / {fece:.4f}   early stop: {t_full / times[name]:.1f}x faster, "
                f"test NLL {nll - fnll:+.4f}, ECE {ece - fece:+.4f}",
                flush=True,
            )
    ref = times.get("temperature")
    if ref:
        print("\nratio to temperature: " + ", ".join(f"{n} {t / ref:.0f}x" for n, t in times.items()))
    if "bayes" in heads:
        h = heads["bayes"]
        t = time.perf_counter()
        h.predict_log_proba(test.features, batch_size=len(test.labels))
        ours = (time.perf_counter() - t) / len(test.labels)
        try:
            lap, diff = laplace_predictive_time(h, test, args.laplace_n)
        except ImportError:
            print("laplace-torch is not installed: pip install laplace-torch")
            return
        print(
            f"\nbayes predictive: vcal {1 / ours:,.0f} samples/s, laplace-torch KFAC GLM probit "
            f"{1 / lap:,.0f} samples/s: vcal is {lap / ours:,.0f}x faster (max abs diff {diff:.1e})"
        )


if __name__ == "__main__":
    main()
