"""ImageNet-shaped head fits on one machine: every post-hoc map and `bayes` at 1,000 classes, timed per step with
peak memory, against the cost each step must have (one forward and backward pass of cross-entropy over the same
val logits), in the same run.

The workload: val and test logits of an overconfident 1,000-class classifier whose mistakes are structured (class c
taken for c+1), features of width D (default 2,048) for `bayes`, train rows N for `bayes` (streamed in blocks).
Each step prints its wall time, the ratio to one pass, the peak RSS so far, and the test NLL against the original
logits and temperature scaling's.

    python benchmarks/bench_scale.py [--val 50000] [--k 1000] [--train 64000] [--d 2048] [--heads ...]

Sizes from 64k to 1.28M train rows take `--train`; memory stays O(block) in N for `bayes` (its statistics are
accumulated over row blocks), so the peak grows with D^2 and K D, not with N.

One epoch of each trained head (`ce`, `vtst`, `vc`) on N synthetic rows against the float32 GEMM rate of this
machine on the head's first-layer shape, measured in the same run (the fraction of peak):

    python benchmarks/bench_scale.py --epoch-rows 64000 [--image-heads ce,vtst,vc]

`ce` at several latent sizes Z at 1,000 classes, the same epochs each, paired bootstrap against the default Z:

    python benchmarks/bench_scale.py --z-rows 64000 --d 512 --z-vtst ""

Every OOD detector at ImageNet shape: N train rows x D features (float16, memory-mapped from a file, as vcal's
cache holds them), K classes, 50,000 test rows, fitted and scored in one child process the way `vcal audit --ood`
does it (the Gaussian moments shared), each step's wall time and its peak RSS (the process's, reset before each
detector; the file pages it reads count, as they do for vcal reading its cache); with faiss-cpu
installed, KNN's search by faiss' exact inner-product index against vcal's blocked products on the same rows:

    python benchmarks/bench_scale.py --detectors 1280000 [--d 2048] [--k 1000]

The image workload runs the whole product the way a user does, one `vcal` process per step, at each size:

    python benchmarks/bench_scale.py --images 64000,256000,1280000 [--epochs 1] [--auto-budget 900]

An `npz:` data set of 3x8x8 images (one noisy template per class; `--k` classes; N train rows, `--test` test rows;
val is vcal's own 10% of train, at most 5,000 rows) and a `vcal:mlp` checkpoint whose penultimate layer is
`--d` wide (2,048) and whose head is a scaled nearest-centroid classifier (right about 65% of the time, and
overconfident). Steps: extract train, extract val and test (the cache, `--cache-dtype float16`), audit, retrain
with each head (trained heads for `--epochs`, `bayes` for `--bayes-iter` L-BFGS iterations; each retrain writes
its report and checkpoint), and `--head auto` with its defaults under `--auto-budget`. Each step prints its wall
time, its own peak RSS (the child process's, mapped cache pages included) and its growth against the previous size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vcal_cli.heads import FitData, get_head


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def logits_problem(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    z = torch.randn(n, k, generator=g) * 1.5
    z[torch.arange(n), y] += 5 + torch.randn(n, generator=g)
    z[torch.arange(n), (y + 1) % k] += 4.5 * (torch.rand(n, generator=g) < 0.3)
    return z * 1.6, y  # overconfident: temperature scaling has something to fix


def features_problem(n: int, d: int, k: int, seed: int) -> FitData:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * (2.0 / d**0.5)
    y = torch.randint(0, k, (n,), generator=g)
    f = centres[y] + torch.randn(n, d, generator=g) * (1.0 / d**0.5)
    return FitData(f, torch.zeros(n, k), y)  # bayes reads only the class count off the logits


def one_pass(z: torch.Tensor, y: torch.Tensor) -> float:
    """One forward and backward pass of cross-entropy over the val logits: the unit a map's fit is made of."""
    w = torch.ones(z.shape[1], requires_grad=True)
    t = time.perf_counter()
    F.cross_entropy(z * w, y).backward()
    return time.perf_counter() - t


IMAGE_HEADS = ("temperature", "vector", "matrix", "dirichlet", "isotonic", "histogram", "bayes", "ce", "vtst", "vc")
TRAINED = ("ce", "vtst", "vc")


def image_workload(folder: Path, n_train: int, n_test: int, k: int, d: int, seed: int = 0) -> tuple[Path, Path]:
    """An npz data set of 3x8x8 uint8 images (class template + noise) and a vcal:mlp checkpoint on it."""
    from vcal_cli import LoadedModel, save_checkpoint
    from vcal_cli.checkpoints import build_arch, find_head
    from vcal_cli.data import Preprocessing

    rng = np.random.default_rng(seed)
    templates = 128 + 12 * rng.standard_normal((k, 3, 8, 8))  # close templates, noise 40: about 65% right

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, k, size=n)
        x = np.empty((n, 3, 8, 8), np.uint8)
        for lo in range(0, n, 65536):  # in chunks: the float64 temporaries of 1.28M rows would be 2 GB
            hi = min(n, lo + 65536)
            x[lo:hi] = np.clip(templates[y[lo:hi]] + rng.normal(0, 40, size=(hi - lo, 3, 8, 8)), 0, 255)
        return x, y

    data = folder / f"images_{n_train}_{k}.npz"
    if not data.exists():
        (xtr, ytr), (xte, yte) = images(n_train), images(n_test)
        np.savez(data, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    ckpt = folder / f"mlp_{k}_{d}.safetensors"
    if not ckpt.exists():
        torch.manual_seed(seed)
        prep = Preprocessing(input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.5,) * 3)
        kwargs = {"in_features": 192, "hidden": [d]}
        model = build_arch("vcal:mlp", k, in_chans=3, kwargs=kwargs).eval()
        with torch.no_grad():  # the head: nearest template in feature space, logits scaled to be overconfident
            f = model.features(prep.to_model_input(torch.from_numpy(np.clip(templates, 0, 255).astype(np.uint8))))
            mu, w = f.mean(0), f - f.mean(0)
            w = w / w.norm(dim=1, keepdim=True)
            sample, _ = images(4096)
            c = 6.0 / float(((model.features(prep.to_model_input(torch.from_numpy(sample))) - mu) @ w.T).std())
            model.fc.weight.copy_(w * c)
            model.fc.bias.copy_(-(mu @ w.T) * c)
        loaded = LoadedModel(
            model=model,
            head_name=find_head(model, k),
            arch="vcal:mlp",
            num_classes=k,
            sha256="",
            class_names=[f"c{i}" for i in range(k)],
            preprocessing=prep,
            arch_kwargs=kwargs,
        )
        save_checkpoint(loaded, ckpt)
    return data, ckpt


EXTRACT = """
import sys
from vcal_cli import ExtractOptions
from vcal_cli.api import Workbench
options = ExtractOptions.of(cache_dir=sys.argv[3], cache_dtype="float16")
bench = Workbench.open(sys.argv[1], "npz:" + sys.argv[2], options)
for split in sys.argv[4].split(","):
    bench.features(split)
"""


def run_step(cmd: list[str], log: Path) -> tuple[float, float, int]:
    """(wall seconds, the child's peak RSS in GB, exit code) of one process."""
    t = time.perf_counter()
    with open(log, "ab") as f:
        # every step gets this process's threads: vcal's default (the idle cores by the 1-minute load average)
        # would see the previous step's load and take one core of two
        env = {**os.environ, "VCAL_THREADS": os.environ.get("VCAL_THREADS", str(torch.get_num_threads()))}
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        # Linux keeps the forking parent's peak across exec: the child's figure is at least this process's RSS at
        # the fork (a few hundred MB with torch loaded), far below every step's peak measured here
        _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t, usage.ru_maxrss / 1e6, os.waitstatus_to_exitcode(status)


def image_main(a: argparse.Namespace) -> None:
    sizes = [int(s) for s in a.images.split(",")]
    work = Path(a.work or tempfile.mkdtemp(prefix="vcal-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    vcal = [sys.executable, "-m", "vcal_cli"]
    heads = [h for h in a.image_heads.split(",") if h]
    print(
        f"image workload: D {a.d:,}, K {a.k:,}, test {a.test:,}, trained heads {a.epochs} epoch(s), bayes "
        f"{a.bayes_iter} L-BFGS iterations, auto budget "
        f"{a.auto_budget:.0f} s, cache float16; folder {work}; threads {torch.get_num_threads()}"
    )
    print(f"{'train rows':>10}  {'step':<26}{'wall':>9}{'peak RSS':>10}{'x wall':>8}{'x RSS':>7}  result")
    previous: dict[str, tuple[float, float]] = {}
    for n in sizes:
        data, ckpt = image_workload(work, n, a.test, a.k, a.d)
        cache, log = work / f"cache_{n}", work / f"log_{n}.txt"
        common = ["--data", f"npz:{data}", "--cache-dir", str(cache), "--cache-dtype", "float16", "--bootstrap", "50"]
        steps: list[tuple[str, list[str], Path | None]] = [
            ("extract train", [sys.executable, "-c", EXTRACT, str(ckpt), str(data), str(cache), "train"], None),
            ("extract val, test", [sys.executable, "-c", EXTRACT, str(ckpt), str(data), str(cache), "val,test"], None),
            (
                "audit (cached)",
                vcal + ["audit", str(ckpt), *common, "--out", str(work / f"audit_{n}")],
                work / f"audit_{n}",
            ),
        ]
        for h in heads:
            extra = ["--epochs", str(a.epochs)] if h in TRAINED else []
            extra += ["--max-iter", str(a.bayes_iter)] if h == "bayes" else []
            steps.append(
                (
                    f"retrain {h}",
                    vcal + ["retrain", str(ckpt), *common, "--head", h, *extra, "--out", str(work / f"{h}_{n}")],
                    work / f"{h}_{n}",
                )
            )
        if a.auto_budget > 0:
            steps.append(
                (
                    "retrain auto",
                    vcal
                    + [
                        "retrain",
                        str(ckpt),
                        *common,
                        "--head",
                        "auto",
                        "--auto-budget",
                        str(a.auto_budget),
                        "--out",
                        str(work / f"auto_{n}"),
                    ],
                    work / f"auto_{n}",
                )
            )
        for name, cmd, out in steps:
            wall, rss, rc = run_step(cmd, log)
            grow = previous.get(name)
            gw = f"{wall / grow[0]:>7.1f}x" if grow else f"{'':>8}"
            gr = f"{rss / grow[1]:>6.1f}x" if grow else f"{'':>7}"
            previous[name] = (wall, rss)
            print(f"{n:>10,}  {name:<26}{wall:>8.1f}s{rss:>9.1f}G{gw}{gr}  {_result(out, rc, log)}", flush=True)


def _result(out: Path | None, rc: int, log: Path) -> str:
    """The step's headline from its report.json (accuracy, ECE and NLL of the head it fitted), or its failure."""
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        return f"FAILED (exit {rc}): {tail[0][:100]}"
    if out is None or not (out / "report.json").exists():
        return ""
    rep = json.loads((out / "report.json").read_text())
    heads = rep.get("heads") or {}
    name = next((h for h in heads if h != "original"), None)
    m = (heads[name] if name else rep)["metrics"]
    auto = ((rep.get("settings") or {}).get("retrain") or {}).get("auto") or {}
    pick = f"; {auto.get('reason', '')[:90]}" if auto else ""
    return f"{name or 'original'}: acc {m['accuracy']:.4f} ECE {m['ece']:.4f} NLL {m['nll']:.4f}{pick}"


def matmul_peak(d: int, width: int, batch: int = 256, reps: int = 30) -> float:
    """The machine's float32 GEMM rate (GFLOP/s) on the shape a trained head's first layer has: (batch, d) @ (d, width)
    and its two backward products, best of `reps`."""
    a, w, g = torch.randn(batch, d), torch.randn(d, width), torch.randn(batch, width)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ w
        g @ w.T
        a.T @ g
        best = min(best, time.perf_counter() - t)
    return 3 * 2 * batch * d * width / best / 1e9


def head_flops_per_row(module: torch.nn.Module) -> float:
    """Forward + backward FLOPs of one row through every Linear layer (2 per multiply-add, backward twice forward)."""
    return 3 * 2 * sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def epochs_main(a: argparse.Namespace) -> None:
    """One epoch of each trained head on N x D features at K classes, against the GEMM peak measured here."""
    tr, va = features_problem(a.epoch_rows, a.d, a.k, 3), features_problem(5_000, a.d, a.k, 4)
    print(f"{a.epoch_rows:,} x {a.d:,} features, {a.k:,} classes, threads {torch.get_num_threads()}")
    for name in filter(None, a.image_heads.split(",")):
        cls = get_head(name)
        if "epochs" not in cls.Params.__dataclass_fields__ or cls.needs_hierarchy:
            continue  # only the heads trained by epochs
        t = time.perf_counter()
        head = cls(cls.make_params(epochs=1)).fit(tr, va)
        dt = time.perf_counter() - t
        flops = head_flops_per_row(head.module_) * a.epoch_rows
        width = next(m for m in head.module_.modules() if isinstance(m, torch.nn.Linear)).out_features
        peak = matmul_peak(a.d, width)
        print(
            f"  {name:<8} epoch {dt:6.1f} s (with val and selection)  {flops / dt / 1e9:6.1f} GFLOP/s of the "
            f"Linear layers  peak (batch 256 x {a.d} x {width}) {peak:6.1f} GFLOP/s  fraction "
            f"{flops / dt / 1e9 / peak:.2f}",
            flush=True,
        )


def collapse_problem(n: int, centres: torch.Tensor, noise: float, seed: int) -> FitData:
    """N rows around K unit-scale class centres in D dimensions (random, so nearly orthogonal: the neural-collapse
    geometry of a well-trained network's penultimate features, whose class means span K - 1 dimensions, the hardest
    case for a latent Z < K); per-dimension noise `noise / sqrt(D)` (at D = 2,048, 10 leaves the true centres
    right 89% of the time; at D = 512, 4, the sweep's default, leaves them right 99%)."""
    g = torch.Generator().manual_seed(seed)
    k, d = centres.shape
    y = torch.randint(0, k, (n,), generator=g)
    f = centres[y] + torch.randn(n, d, generator=g) * (noise / d**0.5)
    return FitData(f, torch.zeros(n, k), y)


def z_main(a: argparse.Namespace) -> None:
    """Test accuracy, NLL and ECE of `ce` and `vtst` at K classes for several latent sizes Z, each against the
    default Z (512 above 10 classes) with paired-bootstrap intervals, at the same number of epochs."""
    from vcal_cli.metrics import accuracy, ece, nll
    from vcal_cli.metrics.paired import verdicts

    centres = torch.randn(a.k, a.d, generator=torch.Generator().manual_seed(0)) / a.d**0.5
    tr, va = collapse_problem(a.z_rows, centres, a.noise, 1), collapse_problem(5_000, centres, a.noise, 2)
    te = collapse_problem(a.test, centres, a.noise, 3)
    bayes = (te.features @ centres.T - 0.5 * centres.pow(2).sum(1)).argmax(1).eq(te.labels).float().mean()
    print(
        f"{a.z_rows:,} train x {a.d:,} features, {a.k:,} classes, {a.test:,} test, noise {a.noise}: the true "
        f"centres' accuracy {bayes:.4f}; {a.z_epochs} epochs each (the kept one by val NLL); threads "
        f"{torch.get_num_threads()}"
    )
    print(f"{'head':<6}{'Z':>6}{'fit':>9}{'acc':>8}{'NLL':>8}{'ECE':>8}   vs Z = 512: d NLL [95%], d ECE [95%]")
    for name, zs in (("ce", a.z_ce), ("vtst", a.z_vtst)):
        out = {}
        for z in [int(v) for v in zs.split(",") if v]:
            cls = get_head(name)
            t = time.perf_counter()
            head = cls(cls.make_params(epochs=a.z_epochs, hidden=z)).fit(tr, va)
            dt = time.perf_counter() - t
            with torch.no_grad():
                out[z] = (head.predict_log_proba(te.features), dt)
        if not out:
            continue
        base = out.get(512, next(iter(out.values())))[0]
        for z, (lp, dt) in out.items():
            v = verdicts(base, lp, te.labels, n_bins=15, n_bootstrap=200, seed=0)
            cells = [
                f"{v[k]['delta']:+.4f} [{v[k]['interval'][0]:+.4f}, {v[k]['interval'][1]:+.4f}] {v[k]['verdict']}"
                if z != 512
                else "-"
                for k in ("nll", "ece")
            ]
            p = lp.exp()
            print(
                f"{name:<6}{z:>6}{dt:>8.1f}s{accuracy(p, te.labels):>8.4f}{nll(lp, te.labels):>8.4f}"
                f"{ece(p, te.labels, n_bins=15):>8.4f}   {cells[0]}; {cells[1]}",
                flush=True,
            )


DETECTOR_CHILD = """
import sys, time
import numpy as np, torch
from vcal_cli.detectors import DETECTORS, ORDER, Linear, Scored, Train
from vcal_cli.detectors.knn import KNN

def peak_gb():
    with open("/proc/self/status") as f:
        return int(next(l for l in f if l.startswith("VmHWM:")).split()[1]) / 1e6

folder = sys.argv[1]
f = torch.from_numpy(np.load(folder + "/train.npy", mmap_mode="r"))
y = torch.from_numpy(np.load(folder + "/labels.npy"))
test = torch.from_numpy(np.load(folder + "/test.npy", mmap_mode="r"))
w = torch.from_numpy(np.load(folder + "/w.npy"))
head = torch.nn.Linear(w.shape[1], w.shape[0])
with torch.no_grad():
    head.weight.copy_(w)
    head.bias.zero_()
    out = np.lib.format.open_memmap(folder + "/logits.npy", "w+", np.float32, (len(f), w.shape[0]))
    for a in range(0, len(f), 65536):  # float32 logits in a file, as vcal's cache keeps them
        out[a : a + 65536] = head(f[a : a + 65536].float()).numpy()
    out.flush()
    del out
    test_logits = head(test.float())
logits = torch.from_numpy(np.load(folder + "/logits.npy", mmap_mode="r"))
train = Train(f, logits, y, w.shape[0], Linear.of(head), seed=0)
x = Scored(test, test_logits, raw_logits=True)
print(f"{'detector':<22}{'fit':>9}{'score':>9}{'peak RSS':>10}  settings", flush=True)
for name in ORDER:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # the peak RSS (VmHWM) starts again from the current RSS: each detector's own peak
    det = DETECTORS.get(name)()
    t = time.perf_counter(); det.fit(train); fit = time.perf_counter() - t
    t = time.perf_counter(); s = det.score(x); score = time.perf_counter() - t
    assert s.shape == (len(test),) and bool(torch.isfinite(s).all())
    print(f"{name:<22}{fit:>8.1f}s{score:>8.1f}s{peak_gb():>8.1f} GB  {det.settings()}", flush=True)
    if name == "knn":
        knn = det
try:
    import faiss
except ImportError:
    print("faiss-cpu not installed: KNN's faiss comparison skipped")
else:
    bank = knn.bank.numpy()
    index = faiss.IndexFlatIP(bank.shape[1]); index.add(bank)
    q = torch.nn.functional.normalize(test.float(), dim=1).numpy()
    t = time.perf_counter(); sims, _ = index.search(q, knn.k_used); tf = time.perf_counter() - t
    ours = knn.score(x)
    theirs = torch.from_numpy(np.sqrt(np.clip(2 - 2 * sims[:, -1], 0, None))).double()
    t = time.perf_counter(); knn.score(x); tv = time.perf_counter() - t
    print(f"KNN search, {len(q):,} queries x {len(bank):,} rows x k={knn.k_used}: vcal's blocked products {tv:.1f} s, "
          f"faiss IndexFlatIP {tf:.1f} s (ratio vcal/faiss {tv / tf:.2f}); max distance difference "
          f"{float((ours - theirs).abs().max()):.1e}")
"""


def detectors_main(a: argparse.Namespace) -> None:
    """Every OOD detector on a memory-mapped ImageNet-shaped cache, in one child process (its own peak RSS)."""
    n, d, k, n_test = a.detectors, a.d, a.k, 50_000
    with tempfile.TemporaryDirectory(dir=a.work or None) as folder:
        g = torch.Generator().manual_seed(0)
        centres = torch.randn(k, d, generator=g)
        labels = torch.randint(0, k, (n,), generator=g)
        t = time.perf_counter()
        train = np.lib.format.open_memmap(f"{folder}/train.npy", "w+", np.float16, (n, d))
        for s in range(0, n, 65536):  # post-ReLU features around each class's centre
            y = labels[s : s + 65536]
            train[s : s + len(y)] = (centres[y] + 1.5 * torch.randn(len(y), d, generator=g)).relu_().numpy()
        train.flush()
        del train
        test = centres[torch.randint(0, k, (n_test,), generator=g)] + 1.5 * torch.randn(n_test, d, generator=g)
        np.save(f"{folder}/test.npy", test.relu_().half().numpy())
        np.save(f"{folder}/labels.npy", labels.numpy())
        np.save(f"{folder}/w.npy", (centres / d**0.5).numpy())
        size = f"{n:,} train x {d:,} features (float16 file, {n * d * 2 / 1e9:.1f} GB), {k:,} classes"
        print(f"{size}, {n_test:,} test rows; written in {time.perf_counter() - t:.0f} s", flush=True)
        subprocess.run([sys.executable, "-c", DETECTOR_CHILD, folder], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--val", type=int, default=50_000)
    ap.add_argument("--test", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--train", type=int, default=64_000, help="train rows for bayes (0: skip it)")
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--heads", default="temperature,vector,matrix,dirichlet")
    ap.add_argument("--images", default="", help="the image workload at these train sizes, e.g. 64000,256000")
    ap.add_argument("--image-heads", default=",".join(IMAGE_HEADS), help="heads retrained in the image workload")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of the trained heads in the image workload")
    ap.add_argument("--bayes-iter", type=int, default=10, help="bayes' L-BFGS iterations in the image workload")
    ap.add_argument("--auto-budget", type=float, default=900, help="--auto-budget of the image workload (0: skip)")
    ap.add_argument("--work", default="", help="folder for the image workload's files (default: a temp folder)")
    ap.add_argument("--epoch-rows", type=int, default=0, help="time one epoch of each trained head on N rows")
    ap.add_argument("--z-rows", type=int, default=0, help="latent-size sweep of ce and vtst on N rows at --k classes")
    ap.add_argument("--z-ce", default="0,256,512,1024", help="the Z values of ce in the sweep (0: a linear head)")
    ap.add_argument("--z-vtst", default="256,512,1024", help="the Z values of vtst in the sweep")
    ap.add_argument("--z-epochs", type=int, default=30, help="epochs of every fit in the sweep")
    ap.add_argument("--noise", type=float, default=4.0, help="the sweep's per-dimension noise (x 1/sqrt(D))")
    ap.add_argument("--detectors", type=int, default=0, help="every OOD detector at N train rows (ImageNet: 1280000)")
    a = ap.parse_args()
    if a.detectors:
        return detectors_main(a)
    if a.z_rows:
        return z_main(a)
    if a.epoch_rows:
        return epochs_main(a)
    if a.images:
        if a.test == 20_000:
            a.test = 50_000  # ImageNet's 50,000 validation images, which users audit on
        return image_main(a)
    torch.manual_seed(0)
    zv, yv = logits_problem(a.val, a.k, 1)
    zt, yt = logits_problem(a.test, a.k, 2)
    base = torch.nn.Linear(a.k, a.k)
    with torch.no_grad():
        base.weight.copy_(torch.eye(a.k))
        base.bias.zero_()
    unit = min(one_pass(zv, yv) for _ in range(3))
    orig = F.cross_entropy(zt, yt).item()
    print(
        f"val {a.val:,} x {a.k:,} logits; one CE pass (forward + backward) {unit * 1e3:.0f} ms; "
        f"test NLL of the original logits {orig:.4f}; threads {torch.get_num_threads()}"
    )
    print(f"{'step':<22}{'wall':>9}{'passes':>9}{'peak RSS':>10}  {'test NLL':>9}  details")
    val, test = FitData(zv, zv, yv), FitData(zt, zt, yt)
    for name in filter(None, a.heads.split(",")):
        cls = get_head(name)
        t = time.perf_counter()
        head = cls(cls.Params()).fit(val, val, base=base)
        dt = time.perf_counter() - t
        nll = -head.predict_log_proba(test.features).gather(1, yt[:, None]).mean().item()
        extra = {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in head.extra_report().items()
            if k not in ("cv", "val_loss")
        }
        print(f"{name:<22}{dt:>8.1f}s{dt / unit:>9.0f}{rss_gb():>9.1f}G  {nll:>9.4f}  {extra}", flush=True)
    if a.train:
        del zv, zt, val, test
        tr, va = features_problem(a.train, a.d, a.k, 3), features_problem(min(a.val, 10_000), a.d, a.k, 4)
        cls = get_head("bayes")
        t = time.perf_counter()
        head = cls(cls.Params(max_iter=20)).fit(tr, va)
        dt = time.perf_counter() - t
        te = features_problem(5_000, a.d, a.k, 5)
        nll = -head.predict_log_proba(te.features).gather(1, te.labels[:, None]).mean().item()
        design = a.train * (a.d + 1) * 8 / 1e9
        print(
            f"{'bayes (' + format(a.train, ',') + ' train)':<22}{dt:>8.1f}s{'':>9}{rss_gb():>9.1f}G  {nll:>9.4f}  "
            f"{head.extra_report()} (the whole design matrix would be {design:.1f} GB)"
        )


if __name__ == "__main__":
    main()
