"""dalv.adversarial: DFAL / FVAAL / FVAAL_rand selection, Own-Adv and FGSM-Adv, the registry."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import dalv
from dalv import attacks, methods
from dalv.adversarial import (
    DeepFoolDistance,
    FGSMAdv,
    FGSMDistance,
    Mixture,
    OwnAdv,
    paper_compositions,
)
from dalv.config import ExperimentConfig, TrainConfig
from dalv.strategies import Random, Selection

torch.set_num_threads(2)

PAPER_NAMES = [
    "FVAAL-No-Adv",
    "FVAAL+FGSM-Adv({k})",
    "DFAL",
    "DFAL-No-Adv",
    "DFAL+FGSM-Adv({k})",
    "BADGE+FGSM-Adv({k})",
    "Random+FGSM-Adv({k})",
]


@pytest.fixture(scope="module")
def digits_data(digits):
    return digits


@pytest.fixture(scope="module")
def net(trained_mlp):
    """conftest's MLP-32 trained on 300 digits."""
    return trained_mlp


@pytest.fixture
def adv_pool(digits_data):
    p = dalv.data.ActivePool(digits_data.x_train, digits_data.y_train)
    p.label(np.arange(0, 60, 3), round=0)
    return p


def _pred(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def _augment(method, model, pool, budget=12, seed=0):
    rng = np.random.default_rng(seed)
    sel = method.strategy.select(model, pool, budget, rng=rng)
    t = torch.from_numpy(sel.idx)
    batch = method.augmenter.generate(
        model, pool.x[t], pool.y[t], source_idx=sel.idx, hints=sel, rng=rng
    )
    return sel, batch


# ------------------------------------------------------------------ strategies

STRATEGIES = [
    DeepFoolDistance(candidates=300),
    FGSMDistance(candidates=300),
    Mixture(candidates=300),
]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.name)
def test_strategies_select_budget_unique_unlabelled_rows_deterministically(
    net, adv_pool, strategy
):
    a = strategy.select(net, adv_pool, 15, rng=np.random.default_rng(7))
    b = strategy.select(net, adv_pool, 15, rng=np.random.default_rng(7))
    assert len(a.idx) == 15 == len(np.unique(a.idx))
    assert (adv_pool.labeled_at[a.idx] == -1).all()
    np.testing.assert_array_equal(a.idx, b.idx)
    for key, shape in [
        ("eps", (15,)),
        ("adv_ok", (15,)),
        ("has_adv", (15,)),
        ("x_adv", (15, 1, 8, 8)),
    ]:
        assert tuple(a.extras[key].shape) == shape
    assert a.extras["adv_ok"].dtype == torch.bool
    np.testing.assert_allclose(a.scores, -a.extras["eps"].double().numpy())
    c = strategy.select(net, adv_pool, 15, rng=np.random.default_rng(8))
    assert not np.array_equal(a.idx, c.idx)


def test_fvaal_takes_the_smallest_eps_ties_by_index(net, adv_pool):
    sel = FGSMDistance(candidates=None).select(
        net, adv_pool, 40, rng=np.random.default_rng(0)
    )
    unl = adv_pool.unlabeled_idx
    eps_all = attacks.min_fgsm_eps(net, adv_pool.x[torch.from_numpy(unl)])[0].numpy()
    want = unl[np.lexsort((unl, eps_all))[:40]]  # by ε, then by global index
    np.testing.assert_array_equal(sel.idx, want)
    adv_ok = sel.extras["adv_ok"]
    assert torch.equal(
        adv_ok, _pred(net, sel.extras["x_adv"]) != _pred(net, adv_pool.x[sel.idx])
    )


def test_fvaal_ranks_never_flipped_rows_last(adv_pool):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.arange(10.0))
    sel = FGSMDistance(candidates=None).select(
        model, adv_pool, 5, rng=np.random.default_rng(0)
    )
    np.testing.assert_array_equal(sel.idx, adv_pool.unlabeled_idx[:5])
    assert (sel.extras["eps"] == 1.0).all() and not sel.extras["has_adv"].any()


def test_dfal_scores_are_deepfool_l2_norms(net, adv_pool):
    sel = DeepFoolDistance(candidates=200).select(
        net, adv_pool, 10, rng=np.random.default_rng(0)
    )
    x = adv_pool.x[torch.from_numpy(sel.idx)]
    x_adv, r = attacks.deepfool(net, x)
    assert torch.allclose(sel.extras["eps"], r, atol=1e-5)
    assert torch.allclose(sel.extras["x_adv"], x_adv, atol=1e-5)
    assert sel.extras["has_adv"].all()
    assert (np.diff(sel.scores) <= 0).all()


def test_mixture_is_half_fvaal_half_random(net, adv_pool):
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    mix = Mixture(candidates=200).select(net, adv_pool, 11, rng=rng_a)
    top = FGSMDistance(candidates=200).select(net, adv_pool, 5, rng=rng_b)
    np.testing.assert_array_equal(mix.idx[:5], top.idx)  # ⌊11/2⌋ by score
    assert len(set(mix.idx[5:]) & set(top.idx)) == 0 and len(mix.idx) == 11
    assert Mixture().name == "FVAAL_rand"
    with pytest.raises(ValueError, match="fraction"):
        Mixture(fraction=1.5)


# ------------------------------------------------------------------ augmenters


def _fgsm_adv_reference(model, x1, hint_eps, own, k, eps_max=0.1, eps_start=0.05):
    """Spec §6.3 for one queried row, as plain loops (returns the new examples only)."""
    lo = eps_start if hint_eps is None else hint_eps
    lo = 0.0 if lo >= eps_max else lo
    s = k - 1 if own else k
    if s == 0:
        return []
    grid = np.linspace(lo, eps_max, 2 * s)
    cands = [attacks.fgsm(model, x1, float(np.float32(e))) for e in grid]
    ok = [bool(_pred(model, c) != _pred(model, x1)) for c in cands]
    out = []
    for j in range(1, 2 * s, 2):
        for i in (j, j - 1, j + 1):
            if i < 2 * s and ok[i]:
                out.append(cands[i])
                ok[i] = False
                break
    return out


@pytest.mark.parametrize(
    "name",
    [
        "FVAAL+FGSM-Adv(10)",
        "DFAL+FGSM-Adv(10)",
        "Random+FGSM-Adv(10)",
        "BADGE+FGSM-Adv(10)",
    ],
)
def test_fgsm_adv_follows_the_sweep_rule(net, adv_pool, name):
    method = methods.get(name, k=10)
    sel, batch = _augment(method, net, adv_pool)
    assert max(int(np.sum(batch.source_idx == s)) for s in sel.idx) <= 10
    assert set(batch.source_idx) <= set(sel.idx)
    assert torch.equal(batch.y, adv_pool.y[torch.from_numpy(batch.source_idx)])
    assert batch.stats["found"] == len(batch) and batch.stats["requested"] == 10 * len(
        sel.idx
    )
    has = sel.extras.get("has_adv", torch.zeros(len(sel.idx), dtype=torch.bool))
    for i, src in enumerate(sel.idx):
        x1 = adv_pool.x[src : src + 1]
        mine = batch.x[torch.from_numpy(batch.source_idx == src)]
        hint = float(sel.extras["eps"][i]) if "eps" in sel.extras else None
        new = _fgsm_adv_reference(net, x1, hint, bool(has[i]), k=10)
        expected = ([sel.extras["x_adv"][i]] if has[i] else []) + [c[0] for c in new]
        assert len(mine) == len(expected)
        for a, b in zip(mine, expected):
            assert torch.equal(a, b)
        for a in mine[int(has[i]) :]:  # the sweep's own examples
            assert float((a - x1[0]).abs().max()) <= 0.1 + 1e-6
            assert _pred(net, a[None]) != _pred(net, x1)


def test_fgsm_adv_grid_matches_numpy_linspace():
    aug = FGSMAdv(k=4)
    eps, valid = aug.grid(
        torch.tensor([0.02, 0.3, 0.05], dtype=torch.float64), torch.tensor([3, 4, 4])
    )
    np.testing.assert_array_equal(eps[0, :6].numpy(), np.linspace(0.02, 0.1, 6))
    np.testing.assert_array_equal(
        eps[1].numpy(), np.linspace(0.0, 0.1, 8)
    )  # 0.3 ≥ 0.1 → 0
    np.testing.assert_array_equal(eps[2].numpy(), np.linspace(0.05, 0.1, 8))
    assert valid.sum(1).tolist() == [6, 8, 8]


def test_fgsm_adv_k1_with_own_example_adds_only_it(net, adv_pool):
    method = dalv.Method(FGSMDistance(candidates=200), FGSMAdv(k=1))
    sel, batch = _augment(method, net, adv_pool)
    assert len(batch) == int(sel.extras["has_adv"].sum()) and batch.stats["fgsm"] == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"k": 0}, "k must"),
        ({"k": -3}, "k must"),
        ({"eps_max": 0.0}, "eps_max"),
        ({"eps_max": 1.5}, "eps_max"),
        ({"eps_start": -0.1}, "eps_start"),
    ],
)
def test_fgsm_adv_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FGSMAdv(**kwargs)


def test_own_adv_adds_the_strategys_example(net, adv_pool):
    sel, batch = _augment(methods.get("DFAL"), net, adv_pool)
    np.testing.assert_array_equal(batch.source_idx, sel.idx)  # DeepFool: always one
    assert torch.equal(batch.x, sel.extras["x_adv"])
    assert torch.equal(batch.y, adv_pool.y[torch.from_numpy(sel.idx)])
    with pytest.raises(ValueError, match="x_adv"):
        _augment(dalv.Method(Random(), OwnAdv()), net, adv_pool)


def test_augmenters_check_that_hints_match_the_sources(net, adv_pool):
    sel = FGSMDistance(candidates=100).select(
        net, adv_pool, 4, rng=np.random.default_rng(0)
    )
    wrong = Selection(sel.idx[::-1].copy(), sel.scores, sel.extras)
    t = torch.from_numpy(sel.idx)
    with pytest.raises(ValueError, match="hints"):
        FGSMAdv().generate(
            net,
            adv_pool.x[t],
            adv_pool.y[t],
            source_idx=sel.idx,
            hints=wrong,
            rng=np.random.default_rng(0),
        )


# ------------------------------------------------------------------ registry


@pytest.mark.parametrize("k", [10, 5])
def test_paper_methods_are_registered_under_exact_names(k):
    names = [n.format(k=k) for n in PAPER_NAMES]
    reg = methods.registry(k)
    assert set(names) <= set(reg)
    assert set(paper_compositions(k)) == set(names)
    for name in names:
        m = methods.get(name, k)
        assert m.name == name
        stored = json.loads(json.dumps(methods.method_to_dict(m)))
        assert methods.method_from_dict(stored) == m
    assert isinstance(reg["DFAL"].augmenter, OwnAdv)
    assert reg[f"DFAL+FGSM-Adv({k})"].augmenter == FGSMAdv(k=k)


def test_mixture_round_trips():
    m = dalv.Method(
        Mixture(candidates=500, base=FGSMDistance(tol=1e-3), fraction=0.25),
        FGSMAdv(k=3, eps_max=0.2),
    )
    assert (
        methods.method_from_dict(json.loads(json.dumps(methods.method_to_dict(m)))) == m
    )


def test_a_short_run_of_dfal_adds_one_example_per_query(digits_data):
    cfg = ExperimentConfig(
        dataset="digits",
        n_initial=20,
        budget=10,
        n_cycles=2,
        candidates=200,
        train=TrainConfig(epochs=2),
    )
    table = dalv.run(methods.get("DFAL"), digits_data, cfg, seed=0, progress=False)
    assert table["n_labeled"].tolist() == [30, 40]
    assert table["n_adv_new"].tolist() == [10, 10]
