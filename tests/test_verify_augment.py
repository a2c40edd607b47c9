"""FV-Adv as an augmenter: the paper's loop (spec §6.4) inside a cycle, and its methods."""

import numpy as np
import pytest
import torch

import dalv
from dalv.adversarial import FGSMDistance
from dalv.methods import get, method_from_dict, method_to_dict
from dalv.verify.augment import CertifiedRadius, FVAdv


def _own_and_new(model, pool, k, strategy):
    sel = strategy.select(model, pool, 6, rng=np.random.default_rng(0))
    x, y = pool.x[torch.from_numpy(sel.idx)], pool.y[torch.from_numpy(sel.idx)]
    batch = FVAdv(k=k, timeout=60).generate(
        model, x, y, source_idx=sel.idx, hints=sel, rng=np.random.default_rng(0)
    )
    return sel, x, y, batch


def test_fvadv_examples_are_sound_labelled_and_at_most_k(trained_mlp, pool):
    k = 4
    sel, x, y, batch = _own_and_new(trained_mlp, pool, k, FGSMDistance(candidates=200))
    assert len(batch) > 0 and batch.stats["rejected"] == 0
    for j, i in enumerate(sel.idx):
        mine = batch.x[torch.from_numpy(batch.source_idx == i)]
        assert len(mine) <= k
        assert (batch.y[torch.from_numpy(batch.source_idx == i)] == y[j]).all()
        if len(mine) == 0:
            continue
        # slot 0 is the strategy's own FGSM example when it has one
        if sel.extras["has_adv"][j]:
            assert torch.equal(mine[0], sel.extras["x_adv"][j])
        with torch.no_grad():
            logits = trained_mlp(x[j : j + 1]).double()
            c1, c2 = logits.topk(2).indices[0]
            f = trained_mlp(mine[1:] if sel.extras["has_adv"][j] else mine).double()
        assert (
            (f[:, c1] - f[:, c2]) <= -1e-3 + 1e-9
        ).all()  # runner-up wins by the margin
        # the verifier's points differ from each other and the seed in every pixel
        for a in range(len(mine)):
            for b in range(a + 1, len(mine)):
                assert float((mine[a] - mine[b]).abs().min()) >= 1e-3 - 1e-7
        # inside the box of the schedule: radius ≤ 1
        assert float((mine - x[j]).abs().max()) <= 1.0


def test_fvadv_without_hints_starts_at_default_radius(trained_mlp, pool):
    sel = dalv.strategies.Random().select(
        trained_mlp, pool, 3, rng=np.random.default_rng(1)
    )
    x, y = pool.x[torch.from_numpy(sel.idx)], pool.y[torch.from_numpy(sel.idx)]
    batch = FVAdv(k=2, timeout=5).generate(
        trained_mlp, x, y, source_idx=sel.idx, hints=sel, rng=np.random.default_rng(0)
    )
    assert batch.stats["own"] == 0 and len(batch) == batch.stats["fv"] <= 6
    # a timeout ends the search with what was found, never an exception
    assert batch.stats["sat"] + batch.stats["unsat"] + batch.stats["unknown"] == 3


def test_fvadv_bad_arguments():
    with pytest.raises(ValueError, match="k must be >= 1"):
        FVAdv(k=0)
    with pytest.raises(ValueError, match="backend"):
        FVAdv(backend="gurobi")
    with pytest.raises(ValueError, match="max_subdomains"):
        FVAdv(max_subdomains=0)


def test_fvadv_work_budget_fixes_the_examples(trained_mlp, pool):
    """With the per-point budget (not the clock) ending the search, two runs agree exactly,
    and a smaller budget bounds fewer subdomains."""
    sel = dalv.strategies.Random().select(
        trained_mlp, pool, 4, rng=np.random.default_rng(2)
    )
    x, y = pool.x[torch.from_numpy(sel.idx)], pool.y[torch.from_numpy(sel.idx)]

    def gen(budget):
        aug = FVAdv(k=3, max_subdomains=budget, timeout=None)
        return aug.generate(
            trained_mlp,
            x,
            y,
            source_idx=sel.idx,
            hints=sel,
            rng=np.random.default_rng(0),
        )

    a, b, small = gen(300), gen(300), gen(20)
    assert torch.equal(a.x, b.x) and a.stats == b.stats
    # the tiny budget stops a point that the larger one settles (here: finds all 3)
    assert small.stats["unknown"] > a.stats["unknown"]
    assert small.stats["found"] < a.stats["found"] == 12


def test_certified_radius_brackets_the_attack_radius(trained_mlp, pool):
    scores, extras = CertifiedRadius(candidates=None).score(trained_mlp, pool.x[:40])
    assert (extras["eps"] <= extras["r_atk"] + 1e-3).all()
    np.testing.assert_allclose(-scores, extras["eps"].double().numpy())


@pytest.mark.parametrize(
    "name",
    [
        "FVAAL",
        "DFAL+FV-Adv(10)",
        "BADGE+FV-Adv(10)",
        "Random+FV-Adv(10)",
        "Core-set+FV-Adv(10)",
        "FVAAL_rand+FV-Adv(10)",
        "CertifiedRadius+FV-Adv(10)",
    ],
)
def test_fv_methods_registered_and_round_trip(name):
    m = get(name)
    assert m.name == name and isinstance(m.augmenter, FVAdv)
    assert method_from_dict(method_to_dict(m)) == m
    assert m.augmenter.with_backend("marabou").backend == "marabou"
    assert m.with_verifier("marabou").augmenter.backend == "marabou"
    assert get("Random").with_verifier("marabou") == get(
        "Random"
    )  # no verifier to switch


def test_fvaal_runs_in_the_loop(digits, small_cfg):
    t = dalv.run(
        get("FVAAL", k=3), digits, small_cfg.replace(n_cycles=2), seed=0, progress=False
    )
    assert (t.n_adv_new > 0).all() and (t.n_adv_new <= 3 * small_cfg.budget).all()
    assert t.aug_rejected.eq(0).all()
