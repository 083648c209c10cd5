"""Every head through one contract (parametrised over the registry), plus each head's math against a
naive reference in float64, and the temperature solver against a known temperature."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from scipy.optimize import minimize_scalar

from vcal_cli.errors import HeadError, NotFittedError, UsageError
from vcal_cli.heads import FitData, build_module, get_head, list_heads
from vcal_cli.heads._train import Loop, train_epochs
from vcal_cli.hierarchy import Hierarchy

FAST = {name: get_head(name).fast_params for name in list_heads()}  # each head declares its quick params
STOCHASTIC = {"ce", "vtst", "vc", "haframe"}  # heads whose fit draws random numbers (init, shuffling, noise)
TREE = Hierarchy(("c0", "c1", "c2", "c3"), (("a", "c0"), ("a", "c1"), ("b", "c2"), ("b", "c3")), "test")


def _synthetic(n: int = 240, d: int = 12, k: int = 4, seed: int = 0) -> tuple[FitData, FitData, torch.nn.Linear]:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g) * 2
    y = torch.randint(0, k, (2 * n,), generator=g)
    x = means[y] + torch.randn(2 * n, d, generator=g)
    base = torch.nn.Linear(d, k)
    with torch.no_grad():
        base.weight.copy_(means * 3)  # an overconfident linear head
        base.bias.zero_()
        logits = base(x)
    return FitData(x[:n], logits[:n], y[:n]), FitData(x[n:], logits[n:], y[n:]), base


def test_registry_lists_every_head() -> None:
    seeds = {"temperature", "ce", "vtst", "vc", "bayes", "haframe"}
    baselines = {"vector", "matrix", "dirichlet", "isotonic", "histogram"}
    assert seeds | baselines <= set(list_heads())
    assert get_head("vtst+temperature").name == "vtst+temperature"
    with pytest.raises(UsageError, match="choose one of"):
        get_head("vtsst")


@pytest.mark.parametrize("name", list_heads())
def test_head_contract(name: str) -> None:
    train, val, base = _synthetic()
    cls = get_head(name)
    head = cls(cls.make_params(**FAST[name]))
    with pytest.raises(NotFittedError):
        head.predict_proba(val.features)
    assert head.fit(train, val, base=base, hierarchy=TREE) is head
    logp = head.predict_log_proba(val.features)
    assert logp.shape == (len(val.labels), 4)
    assert torch.allclose(logp.logsumexp(1), torch.zeros(len(logp)), atol=1e-5), "rows must be log probabilities"
    assert torch.allclose(torch.softmax(head.module_(val.features), 1), head.predict_proba(val.features), atol=1e-6)
    # the same seed gives the same bytes; another seed does not (for heads with randomness)
    again = cls(cls.make_params(**FAST[name])).fit(train, val, base=base, hierarchy=TREE)
    for (k1, v1), (k2, v2) in zip(head.module_.state_dict().items(), again.module_.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2), k1
    if name in STOCHASTIC:
        other = cls(cls.make_params(**{**FAST[name], "seed": 1})).fit(train, val, base=base, hierarchy=TREE)
        assert not all(
            torch.equal(a, b)
            for a, b in zip(head.module_.state_dict().values(), other.module_.state_dict().values(), strict=True)
        ), "another seed must give another fit"
    # rebuilt from its metadata and weights, the module predicts the same
    rebuilt = build_module(head.info())
    rebuilt.load_state_dict(head.module_.state_dict())
    assert torch.equal(rebuilt.eval()(val.features), head.module_(val.features))
    # bad inputs
    bad = FitData(train.features.clone(), train.logits, train.labels)
    bad.features[0, 0] = float("nan")
    with pytest.raises(HeadError, match="NaN"):
        cls(cls.make_params(**FAST[name])).fit(bad, val, base=base, hierarchy=TREE)
    with pytest.raises(HeadError, match="first dimension"):
        cls().fit(FitData(train.features[:-1], train.logits, train.labels), val, base=base, hierarchy=TREE)


def test_flags_a_head_does_not_take_are_errors() -> None:
    with pytest.raises(UsageError, match="--beta does not apply to head 'ce'"):
        get_head("ce").make_params(beta=0.1)
    assert get_head("ce").make_params(epochs=None).epochs is None  # None means "the paper's default"


def test_temperature_recovers_a_known_temperature() -> None:
    """peers.md 4.3: labels drawn from softmax(z / T*) with T* = 2.5; LBFGS recipes stop short."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 10, generator=g, dtype=torch.float64) * 4
    y = torch.multinomial(torch.softmax(z / 2.5, 1), 1, generator=g)[:, 0]
    from vcal_cli.heads.temperature import fit_inverse_temperature

    t = 1 / fit_inverse_temperature(z, y)
    assert abs(t - 2.5) < 0.05

    # and it is the exact minimiser of the val NLL: scipy's bounded scalar search agrees to 1e-5
    def nll(temp: float) -> float:
        return float(torch.nn.functional.cross_entropy(z / temp, y))

    ref = minimize_scalar(nll, bounds=(0.5, 10), method="bounded", options={"xatol": 1e-9}).x
    assert abs(t - ref) < 1e-5


def test_temperature_head_scales_the_base_logits() -> None:
    train, val, base = _synthetic()
    head = get_head("temperature")().fit(train, val, base=base)
    t = head.extra_report()["temperature"]
    assert t > 1  # the base head is overconfident
    expected = torch.log_softmax(base(val.features) / t, 1)
    assert torch.allclose(head.predict_log_proba(val.features), expected, atol=1e-5)


def test_temperature_needs_the_linear_base() -> None:
    train, val, _ = _synthetic()
    with pytest.raises(HeadError, match="linear head"):
        get_head("temperature")().fit(train, val, base=None)


def test_ce_hidden_zero_is_linear() -> None:
    train, val, base = _synthetic()
    head = get_head("ce")(get_head("ce").make_params(hidden=0, epochs=2)).fit(train, val)
    assert isinstance(head.module_.out, torch.nn.Linear) and head.module_.out.in_features == 12


def test_vtst_kl_and_mc_predictive_against_naive() -> None:
    from vcal_cli.heads.vtst import VTSTModule

    torch.manual_seed(0)
    m = VTSTModule(6, 3, 5, samples=4).double()
    m.eps.normal_()
    x = torch.randn(7, 6, dtype=torch.float64)
    mu, logvar = m.encode(x)
    ref_kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(torch.zeros_like(mu), 1.0)
    ).sum(1)
    assert torch.allclose(m.kl(mu, logvar), ref_kl, atol=1e-12)
    assert (logvar <= 0).all()  # bounded variance: logsigmoid
    naive = torch.stack([torch.softmax(m.out(mu + (0.5 * logvar).exp() * e), 1) for e in m.eps]).mean(0)
    assert torch.allclose(m(x).exp(), naive, atol=1e-12)


def test_vc_logits_are_gaussian_log_likelihoods() -> None:
    from vcal_cli.heads.vc import VCModule

    torch.manual_seed(0)
    m = VCModule(6, 3, 4).double()
    with torch.no_grad():
        m.log_covs.normal_(0, 0.3)
    z = torch.randn(5, 4, dtype=torch.float64)
    ref = torch.stack(
        [torch.distributions.Normal(m.centers[c], (0.5 * m.log_covs[c]).exp()).log_prob(z).sum(1) for c in range(3)], 1
    ) + 2 * math.log(2 * math.pi)
    assert torch.allclose(m.class_log_likelihood(z), ref, atol=1e-12)
    # Bayes' rule with a uniform prior: p(y|z) = p(z|y) / sum_c p(z|c)
    assert torch.allclose(torch.log_softmax(m.class_log_likelihood(z), 1), ref - ref.logsumexp(1, keepdim=True))
    # float32 at 1,000 classes (the expanded form's cancellation): against the float64 differences, 1e-4 relative
    m = VCModule(6, 1000, 32)
    with torch.no_grad():
        m.log_covs.normal_(0, 0.3)
    z = 3 * torch.randn(64, 32)
    d = z.double()[:, None] - m.centers.double()[None]
    ref = -0.5 * (m.log_covs.double().sum(1)[None] + (d.pow(2) / m.log_covs.double().exp()[None]).sum(-1))
    assert torch.allclose(m.class_log_likelihood(z).double(), ref, rtol=1e-4, atol=1e-4)


def test_bayes_posterior_and_probit_against_naive_kronecker() -> None:
    train, val, base = _synthetic(n=120, d=5, k=3)
    p = get_head("bayes").make_params(tol=1e-7, max_iter=1000)
    head = get_head("bayes")(p).fit(train, val)
    m = head.module_
    a = torch.cat([train.features.double(), torch.ones(len(train.labels), 1, dtype=torch.float64)], 1)
    w = m.weight.double()
    # the fixed point is the MAP of CE + (tau / 2 alpha) ||W||^2: its gradient vanishes
    probs = torch.softmax(a @ w.T, 1)
    grad = (probs - torch.nn.functional.one_hot(train.labels, 3)).T @ a + (p.prior_precision / p.step) * w
    assert grad.abs().max() < 1e-5 * len(train.labels)
    lam = p.prior_precision * torch.eye(6, dtype=torch.float64) + a.T @ a
    assert torch.allclose(m.cov.double(), torch.linalg.inv(lam), atol=1e-6)
    # predictive: the full covariance of vec(W) (row-major, K blocks) is sigma^2 I_K (x) Lambda^-1
    cov_vec = torch.kron(torch.eye(3, dtype=torch.float64), torch.linalg.inv(lam).contiguous()) * float(m.sigma2)
    va = torch.cat([val.features.double(), torch.ones(len(val.labels), 1, dtype=torch.float64)], 1)
    jac = torch.stack([torch.kron(torch.eye(3, dtype=torch.float64), row[None]) for row in va])  # (N, K, K(D+1))
    f_var = torch.einsum("nkp,pq,nkq->nk", jac, cov_vec, jac)
    kappa = 1 / torch.sqrt(1 + math.pi / 8 * f_var)
    ref = torch.log_softmax(kappa * (va @ w.T), 1)
    assert torch.allclose(head.predict_log_proba(val.features).double(), ref, atol=1e-5)


def test_divergence_is_an_error_and_names_the_fix() -> None:
    train, val, _ = _synthetic()
    lin = torch.nn.Linear(12, 4)
    with pytest.raises(HeadError, match="diverged.*smaller --lr"):
        train_epochs(
            lin,
            lambda x, y: (lin(x) * float("nan")).sum(),
            train,
            val,
            Loop(name="ce", epochs=1, lr=1e-3, batch_size=32),
            progress=lambda it, **_: it,
        )


def test_params_are_dataclasses_with_paper_defaults() -> None:
    assert get_head("ce").Params().lr == 1e-4 and get_head("vtst").Params().samples == 10
    assert get_head("vc").Params().beta == 0.01
    for name in list_heads():
        assert dataclasses.is_dataclass(get_head(name).Params)


OFFICIAL = json.loads((Path(__file__).parent / "data" / "haframe_official.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["cifar100", "fashion-mnist"])
def test_haframe_similarity_matches_the_official_code(name: str) -> None:
    """s_min, S and the loss targets against HAFrame's official `solve_HAF` (tests/data/haframe_official.json, made
    by scripts/make_haframe_reference.py from the official repository at the commit it names)."""
    from vcal_cli.heads.haframe import hierarchy_frame, similarity_matrix
    from vcal_cli.hierarchy import load_hierarchy

    ref = OFFICIAL["similarity"][name]
    d = load_hierarchy(name).distances()
    s, s_min = similarity_matrix(d, OFFICIAL["gamma"])
    assert s_min == pytest.approx(ref["s_min"], abs=1e-12)
    for h, cos in ref["by_height"].items():
        assert torch.allclose(s[d == int(h)], torch.full_like(s[d == int(h)], cos), atol=1e-12), h
        assert ref["targets_by_height"][h] == pytest.approx(cos, abs=1e-12), h
    w, s2 = hierarchy_frame(d, OFFICIAL["gamma"], torch.Generator().manual_seed(0))
    assert torch.allclose(w @ w.T, s2, atol=1e-10)
    assert torch.allclose(w.norm(dim=1), torch.ones(len(d), dtype=torch.float64), atol=1e-10)


def test_haframe_loss_schedule_and_transform_match_the_official_code() -> None:
    from vcal_cli.heads.haframe import HAFrameModule

    ref = OFFICIAL["loss"]
    frame, z, y = torch.tensor(ref["frame"]), torch.tensor(ref["z"]), torch.tensor(ref["y"])
    k = len(frame)
    head = get_head("haframe")(get_head("haframe").make_params())
    head.sim32 = torch.tensor(
        [
            [OFFICIAL["similarity"]["fashion-mnist"]["by_height"][str(int(h))] for h in row]
            for row in _fashion_distances().tolist()
        ]
    )
    module = HAFrameModule(k, k)
    module.frame.copy_(frame)
    module.embed = lambda x: x  # the loss on given features
    assert float(head.loss(module, z, y)) == pytest.approx(ref["value"], abs=1e-5)
    sched = head.schedule(100)
    for t, lr in enumerate(OFFICIAL["schedule"]):
        assert head.params.lr * sched(t) == pytest.approx(lr, abs=1e-12), t
    tr = OFFICIAL["transform"]
    ours = HAFrameModule(16, k)
    ours.transform.load_state_dict(
        dict(zip(ours.transform.state_dict(), (torch.tensor(v) for v in tr["state"].values()), strict=True))
    )
    x = torch.tensor(tr["x"])
    with torch.no_grad():
        ours.eval()
        assert torch.allclose(ours.embed(x), torch.tensor(tr["eval"]), atol=1e-5)
        ours.train()
        assert torch.allclose(ours.embed(x), torch.tensor(tr["train"]), atol=1e-5)


def test_hierarchy_metrics_match_the_official_better_mistakes_metrics() -> None:
    from vcal_cli.metrics.hierarchy import hierarchy_metrics

    ref = OFFICIAL["metrics"]
    m = hierarchy_metrics(
        torch.tensor(ref["logits"], dtype=torch.float64),
        torch.tensor(ref["labels"]),
        _fashion_distances(),
        n_bootstrap=0,
    ).metrics
    assert 100 * m["top1_error"] == pytest.approx(100 - ref["top1"], abs=1e-9)
    assert m["mistake_severity"] == pytest.approx(ref["mistake"], abs=1e-12)
    assert m["avg_hdist_at_1"] == pytest.approx(ref["hie_avg_1"], abs=1e-12)
    assert m["avg_hdist_at_5"] == pytest.approx(ref["hie_avg_5"], abs=1e-12)


def _fashion_distances() -> torch.Tensor:
    from vcal_cli.hierarchy import load_hierarchy

    return load_hierarchy("fashion-mnist").distances()


def test_haframe_needs_a_hierarchy() -> None:
    train, val, base = _synthetic()
    with pytest.raises(HeadError, match="needs a class hierarchy.*--hierarchy"):
        get_head("haframe")().fit(train, val)


def test_haframe_loss_terms_against_naive() -> None:
    """The fitted module predicts with the fixed frame: logits = embed(x) W^T, W unchanged by training."""
    train, val, _ = _synthetic()
    head = get_head("haframe")(get_head("haframe").make_params(epochs=2)).fit(train, val, hierarchy=TREE)
    m = head.module_
    assert torch.allclose(m.frame.double(), head.frame_, atol=1e-6)
    x = val.features[:5]
    assert torch.allclose(m(x), torch.log_softmax(m.embed(x) @ m.frame.T, 1), atol=1e-6)
    # siblings (c0, c1) are closer in the frame than cousins (c0, c2)
    assert float(m.frame[0] @ m.frame[1]) > float(m.frame[0] @ m.frame[2])


@pytest.mark.parametrize("name", ["ce", "vtst", "vc"])
def test_bf16_training_steps_land_near_fp32(name: str) -> None:
    """--train-precision bf16 runs the training steps under bfloat16 autocast (on any CPU; slow where it is not
    native): the fitted head stays float32 and scores within 0.05 nats of the float32 fit on this easy problem
    (bf16 keeps 8 bits of mantissa: the two runs part ways after the first steps, so not to the digit)."""
    train, val, _ = _synthetic()
    cls = get_head(name)
    fp32 = cls(cls.make_params(**FAST[name], seed=0)).fit(train, val)
    bf16 = cls(cls.make_params(**FAST[name], seed=0, train_precision="bf16")).fit(train, val)
    assert all(p.dtype == torch.float32 for p in bf16.module_.parameters())
    nll = {h: float(-h.predict_log_proba(val.features).gather(1, val.labels[:, None]).mean()) for h in (fp32, bf16)}
    assert abs(nll[fp32] - nll[bf16]) < 0.05, nll
    with pytest.raises(HeadError, match="--train-precision 'fp8'.*fp32, bf16, auto"):
        cls(cls.make_params(**FAST[name], train_precision="fp8")).fit(train, val)


def test_train_device_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    """--train-device: auto is CUDA when torch sees a GPU, else the CPU; a device that is not there, or not a
    device, is a HeadError naming the flag."""
    from vcal_cli.heads._train import on_device, resolve_train_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_train_device("cpu") == resolve_train_device("auto") == torch.device("cpu")
    with pytest.raises(HeadError, match="--train-device cuda: torch sees no CUDA device"):
        resolve_train_device("cuda")
    with pytest.raises(HeadError, match="--train-device 'gpu' is not a device"):
        resolve_train_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_train_device("auto") == torch.device("cuda", 1)
    assert resolve_train_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(HeadError, match="this machine has 2 CUDA device"):
        resolve_train_device("cuda:2")
    with pytest.raises(HeadError, match="--train-device 'cuda:x' is not a device"):
        resolve_train_device("cuda:x")
    train, _, _ = _synthetic()
    assert on_device(train, torch.device("cpu"), "train") is train  # the CPU path copies nothing
    moved = on_device(train, torch.device("meta"), "train")  # another device: features and labels go, logits stay
    assert moved.features.device.type == moved.labels.device.type == "meta" and moved.logits is train.logits
    assert moved.features.dtype == train.features.dtype  # one copy in the cache's own dtype


def test_train_split_too_large_for_the_device_names_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from vcal_cli.heads._train import on_device

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    train, _, _ = _synthetic()
    monkeypatch.setattr(torch.Tensor, "to", oom)
    with pytest.raises(HeadError, match=r"the train features \(0\.0 GB\) do not fit in the memory of meta") as e:
        on_device(train, torch.device("meta"), "train")
    assert "--train-device cpu" in str(e.value.hint)


def test_auto_precision_takes_bf16_only_for_large_steps_on_a_native_cpu() -> None:
    from vcal_cli.heads._train import bf16_is_fast, resolve_train_precision

    assert resolve_train_precision("bf16", 8, 4) and not resolve_train_precision("fp32", 4096, 4096)
    assert not resolve_train_precision("auto", 256, 64)  # the digits sample's 64-wide features: fp32
    assert not resolve_train_precision("auto", 64, 640)  # haframe's batches of 64: fp32
    assert resolve_train_precision("auto", 256, 640) == bf16_is_fast()


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_bf16_counts_as_fast_only_where_the_cpu_multiplies_it_natively(
    monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, expected: bool
) -> None:
    """oneDNN reports bf16 support on any AVX-512 CPU, where it emulates it (3.5x slower steps): not a reason."""
    from vcal_cli.heads._train import bf16_is_fast, resolve_train_precision

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert bf16_is_fast() is expected
    assert resolve_train_precision("auto", 256, 2048) is expected


def test_a_fit_cut_short_says_so_before_the_data_is_blamed() -> None:
    """A head worse than the original on val after 1 of 40 epochs is unfinished, not a sign of memorised features."""
    from vcal_cli.commands.retrain import _worse_on_val
    from vcal_cli.heads.compose import temper

    train, val, base = _synthetic()
    ce = get_head("ce")(get_head("ce").make_params(epochs=1)).fit(train, val)
    assert ce.cut_short() == "it ran 1 of the papers' 40 epochs (--epochs)"
    msg = _worse_on_val(ce, 2.0, 1.0, 0)
    assert "it ran 1 of the papers' 40 epochs" in msg and "memorised" not in msg
    assert temper(ce, val).cut_short() == ce.cut_short()
    full = get_head("ce")(get_head("ce").make_params(epochs=40, patience=1)).fit(train, val)
    assert full.cut_short() is None and "memorised" in _worse_on_val(full, 2.0, 1.0, 0)
    bayes = get_head("bayes")(get_head("bayes").make_params(max_iter=1)).fit(train, val)
    assert bayes.cut_short() == "it ran all 1 L-BFGS iterations (--max-iter) without reaching --tol"
    assert get_head("temperature")().fit(train, val, base=base).cut_short() is None


def test_training_prints_progress_per_batch_and_where_an_early_stop_ended(capsys: pytest.CaptureFixture[str]) -> None:
    """An epoch at 1.28M rows takes minutes: the plain log lines count batches, and a finished fit ends with
    `done, N/N` while an early-stopped one says where it stopped."""
    from vcal_cli.cli._output import _log_track

    train, val, _ = _synthetic()

    def fit(epochs: int, patience: int, lr: float) -> str:
        lin = torch.nn.Linear(12, 4)
        loss = lambda x, y: torch.nn.functional.cross_entropy(lin(x), y)  # noqa: E731
        loop = Loop(name="ce", epochs=epochs, lr=lr, batch_size=80, patience=patience, select=lambda m, v: 1.0)
        train_epochs(lin, loss, train, val, loop, progress=_log_track)
        return capsys.readouterr().err

    err = fit(2, 0, 1e-3)  # 240 rows in batches of 80: 3 batches an epoch
    assert "fit ce: 2 epochs x 3 batches: started (6 steps)" in err and "fit ce: 2 epochs x 3 batches: done, 6/6" in err
    err = fit(10, 1, 1e-3)  # a constant val score: no new best after epoch 1, stopped after epoch 2
    assert "fit ce: 10 epochs x 3 batches: done, stopped at 6/30" in err
