"""Augmenters: the strategy's own example, the FGSM sweep (protocol §4.3) and FV-Adv
(§6.4)."""

import numpy as np
import pytest
import torch

import dalv
from dalv import attacks
from dalv.augment import AugmentedBatch, FGSMAdv, FVAdv, NoAugment, OwnAdv, PGDAdv
from dalv.methods import Method, get
from dalv.strategies import FGSMDistance, Random, Selection
from dalv.verify import Budget, LirpaVerifier, MarabouVerifier, MilpVerifier


@pytest.fixture
def adv_pool(digits):
    p = dalv.data.ActivePool(digits.x_train, digits.y_train)
    p.label(np.arange(0, 60, 3), round=0)
    return p


def _pred(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def _augment(method, model, pool, budget=12, seed=0, candidates=None):
    rng = np.random.default_rng(seed)
    sel = method.strategy.select(model, pool, budget, rng=rng, candidates=candidates)
    t = torch.from_numpy(sel.idx)
    batch = method.augmenter.generate(
        model, pool.x[t], pool.y[t], source_idx=sel.idx, hints=sel, rng=rng
    )
    return sel, batch


# ------------------------------------------------------------------ FGSM-Adv


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
def test_fgsm_adv_follows_the_sweep_rule(trained_mlp, adv_pool, name):
    net = trained_mlp
    sel, batch = _augment(get(name), net, adv_pool)
    assert max(int(np.sum(batch.source_idx == s)) for s in sel.idx) <= 10
    assert set(batch.source_idx) <= set(sel.idx)
    assert torch.equal(batch.y, adv_pool.y[torch.from_numpy(batch.source_idx)])
    assert batch.stats["found"] == len(batch)
    assert batch.stats["requested"] == 10 * len(sel.idx)
    has = sel.own.valid if sel.own is not None else torch.zeros(len(sel), dtype=bool)
    for i, src in enumerate(sel.idx):
        x1 = adv_pool.x[src : src + 1]
        mine = batch.x[torch.from_numpy(batch.source_idx == src)]
        hint = None if sel.distance is None else float(sel.distance.value[i])
        new = _fgsm_adv_reference(net, x1, hint, bool(has[i]), k=10)
        expected = ([sel.own.x[i]] if has[i] else []) + [c[0] for c in new]
        assert len(mine) == len(expected)
        for a, b in zip(mine, expected, strict=True):
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
    np.testing.assert_array_equal(eps[1].numpy(), np.linspace(0.0, 0.1, 8))  # 0.3 → 0
    np.testing.assert_array_equal(eps[2].numpy(), np.linspace(0.05, 0.1, 8))
    assert valid.sum(1).tolist() == [6, 8, 8]


def test_fgsm_adv_k1_with_own_example_adds_only_it(trained_mlp, adv_pool):
    method = Method(FGSMDistance(), FGSMAdv(k=1))
    sel, batch = _augment(method, trained_mlp, adv_pool, candidates=200)
    assert len(batch) == int(sel.own.valid.sum()) and batch.stats["fgsm"] == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"k": 0}, "k must"),
        ({"k": -3}, "k must"),
        ({"k": True}, "k must"),
        ({"eps_max": 0.0}, "eps_max"),
        ({"eps_max": 1.5}, "eps_max"),
        ({"eps_start": -0.1}, "eps_start"),
    ],
)
def test_fgsm_adv_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FGSMAdv(**kwargs)


# ------------------------------------------------------------------ Own-Adv, No-Adv


def test_own_adv_adds_the_strategys_example(trained_mlp, adv_pool):
    sel, batch = _augment(get("DFAL"), trained_mlp, adv_pool)
    np.testing.assert_array_equal(batch.source_idx, sel.idx)  # DeepFool: always one
    assert torch.equal(batch.x, sel.own.x)
    assert torch.equal(batch.y, adv_pool.y[torch.from_numpy(sel.idx)])
    with pytest.raises(ValueError, match="makes one"):
        _augment(Method(Random(), OwnAdv()), trained_mlp, adv_pool)


def test_no_augment_adds_nothing(trained_mlp, adv_pool):
    sel, batch = _augment(get("FVAAL-No-Adv"), trained_mlp, adv_pool)
    assert len(batch) == 0 and batch.x.shape == (0, 1, 8, 8)


def test_augmenters_check_that_hints_match_the_sources(trained_mlp, adv_pool):
    sel = FGSMDistance().select(
        trained_mlp, adv_pool, 4, rng=np.random.default_rng(0), candidates=100
    )
    wrong = Selection(sel.idx[::-1].copy(), sel.scores, sel.distance, sel.own)
    t = torch.from_numpy(sel.idx)
    for aug in (FGSMAdv(), OwnAdv(), FVAdv(k=2)):
        with pytest.raises(ValueError, match="hints"):
            aug.generate(
                trained_mlp,
                adv_pool.x[t],
                adv_pool.y[t],
                source_idx=sel.idx,
                hints=wrong,
                rng=np.random.default_rng(0),
            )


def test_batches_concatenate():
    a = AugmentedBatch(
        torch.zeros(2, 3), torch.tensor([1, 2]), np.array([5, 6]), {"x": 1}
    )
    b = AugmentedBatch.empty((3,)) + a + a
    assert len(b) == 4 and b.source_idx.tolist() == [5, 6, 5, 6] and not b.stats


# ------------------------------------------------------------------ FV-Adv


def _fv(model, pool, aug, strategy, n=6, seed=0):
    sel = strategy.select(
        model, pool, n, rng=np.random.default_rng(seed), candidates=200
    )
    x, y = pool.x[torch.from_numpy(sel.idx)], pool.y[torch.from_numpy(sel.idx)]
    batch = aug.generate(
        model, x, y, source_idx=sel.idx, hints=sel, rng=np.random.default_rng(0)
    )
    return sel, x, y, batch


def test_fvadv_examples_are_sound_labelled_and_at_most_k(trained_mlp, pool):
    k = 4
    aug = FVAdv(k=k, budget=Budget(work=1000, seconds=60))
    sel, x, y, batch = _fv(trained_mlp, pool, aug, FGSMDistance())
    assert len(batch) > 0 and batch.stats["rejected"] == 0
    for j, i in enumerate(sel.idx):
        rows = torch.from_numpy(batch.source_idx == i)
        mine = batch.x[rows]
        assert len(mine) <= k and (batch.y[rows] == y[j]).all()
        if len(mine) == 0:
            continue
        own = bool(sel.own.valid[j])
        if own:  # slot 0 is the strategy's own FGSM example when it has one
            assert torch.equal(mine[0], sel.own.x[j])
        with torch.no_grad():
            c1, c2 = trained_mlp(x[j : j + 1]).double().topk(2).indices[0]
            f = trained_mlp(mine[1:] if own else mine).double()
        assert ((f[:, c1] - f[:, c2]) <= -1e-3 + 1e-9).all()  # runner-up wins
        # the verifier's points differ from each other and the seed in every pixel
        for a in range(len(mine)):
            for b in range(a + 1, len(mine)):
                assert float((mine[a] - mine[b]).abs().min()) >= 1e-3 - 1e-7
        assert float((mine - x[j]).abs().max()) <= 1.0  # inside the largest box


def test_fvadv_without_hints_counts_every_point(trained_mlp, pool):
    aug = FVAdv(k=2, budget=Budget(work=200))
    sel, x, y, batch = _fv(trained_mlp, pool, aug, Random(), n=3, seed=1)
    new = batch.stats["solver"] + batch.stats["pgd"]
    assert batch.stats["own"] == 0 and len(batch) == new <= 6
    statuses = batch.stats["sat"] + batch.stats["unsat"] + batch.stats["unknown"]
    assert statuses == 3  # every queried point ends with exactly one status


def test_fvadv_bad_arguments():
    with pytest.raises(ValueError, match="k must"):
        FVAdv(k=0)
    with pytest.raises(ValueError, match="Verifier"):
        FVAdv(verifier="gurobi")
    with pytest.raises(ValueError, match="work"):
        FVAdv(budget=Budget(work=0))


@pytest.mark.parametrize(
    "verifier,big,small_work",
    [(LirpaVerifier(), 300, 20), (MilpVerifier(), 50, 2)],
    ids=["lirpa", "milp"],
)
def test_fvadv_work_budget_fixes_the_examples(
    trained_mlp, pool, verifier, big, small_work
):
    """With the per-point work budget (not the clock) ending the search, two runs agree
    exactly, and a smaller budget settles fewer points (lirpa counts subdomains, the
    MILP solver calls)."""

    def gen(work):
        aug = FVAdv(verifier, k=3, budget=Budget(work=work, seconds=None))
        return _fv(trained_mlp, pool, aug, Random(), n=4, seed=2)[3]

    a, b, small = gen(big), gen(big), gen(small_work)
    assert torch.equal(a.x, b.x) and a.stats == b.stats
    assert small.stats["unknown"] > a.stats["unknown"]
    assert small.stats["found"] < a.stats["found"] == 12


def test_fvadv_milp_examples_are_a_solvers(trained_mlp, pool):
    aug = FVAdv(k=3, budget=Budget(work=50))
    batch = _fv(trained_mlp, pool, aug, FGSMDistance(), n=4)[3]
    assert batch.stats["solver"] > 0 and batch.stats["pgd"] == 0
    assert batch.stats["found"] == batch.stats["own"] + batch.stats["solver"]


def test_pgd_adv_is_fv_adv_with_pgds_examples(trained_mlp, pool):
    """Same box, schedule, seeds and labels; every example counted as PGD's."""
    pgd = PGDAdv(k=3, budget=Budget(work=300))
    fv = FVAdv(LirpaVerifier(), k=3, budget=Budget(work=300))
    a = _fv(trained_mlp, pool, pgd, FGSMDistance(), n=4)[3]
    b = _fv(trained_mlp, pool, fv, FGSMDistance(), n=4)[3]
    assert torch.equal(a.x, b.x)  # the lirpa search's witnesses are PGD's
    assert (
        a.stats["pgd"] == a.stats["found"] - a.stats["own"] and a.stats["solver"] == 0
    )
    assert (
        PGDAdv().name == "PGD-Adv(10)"
        and PGDAdv().with_verifier(fv.verifier) == PGDAdv()
    )
    with pytest.raises(ValueError, match="LirpaVerifier"):
        PGDAdv(search=MarabouVerifier())


def test_proved_radius_steps_are_counted(trained_mlp, pool):
    # a tiny start radius around confident points: the first boxes are proved empty
    aug = FVAdv(
        LirpaVerifier(),
        k=2,
        eps_default=0.001,
        eps_reset_above=0.0,
        schedule=dalv.verify.Schedule(step=0.005, max_eps=0.05),
        budget=Budget(work=300),
    )
    batch = _fv(trained_mlp, pool, aug, Random(), n=3, seed=4)[3]
    assert batch.stats["proved"] >= 1


def test_fvadv_with_another_verifier_and_k():
    fv = FVAdv()
    assert isinstance(fv.verifier, MilpVerifier) and fv.name == "FV-Adv(10)"
    other = fv.with_verifier(MarabouVerifier(workers=1)).with_k(3)
    assert isinstance(other.verifier, MarabouVerifier) and other.k == 3
    assert FGSMAdv().with_verifier(MarabouVerifier()) == FGSMAdv()
    assert NoAugment().with_k(3) == NoAugment()


def test_fvaal_runs_in_the_loop(digits, small_cfg):
    t = dalv.run(
        get("FVAAL+FV-Adv(3)"),
        digits,
        small_cfg.replace(n_cycles=2),
        seed=0,
        progress=False,
    )
    assert (t.n_adv_new > 0).all() and (t.n_adv_new <= 3 * small_cfg.budget).all()
    assert t.aug_rejected.eq(0).all()


def test_a_short_run_of_dfal_adds_one_example_per_query(digits, small_cfg):
    table = dalv.run(
        get("DFAL"), digits, small_cfg.replace(n_cycles=2), seed=0, progress=False
    )
    assert table["n_labeled"].tolist() == [30, 40]
    assert table["n_adv_new"].tolist() == [10, 10]
