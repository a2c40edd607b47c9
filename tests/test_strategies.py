"""Query strategies: invariants, determinism, each rule against a plain reference."""

import numpy as np
import pytest
import torch
from torch import nn

import dalv
from dalv import attacks
from dalv.strategies import (
    BADGE,
    CertifiedRadius,
    CoreSet,
    DeepFoolDistance,
    Entropy,
    FGSMDistance,
    Margin,
    Mixture,
    Random,
    top_budget,
)

STRATEGIES = [
    (Random(), None),
    (Entropy(), 300),
    (Margin(), 300),
    (BADGE(), 300),
    (CoreSet(), 300),
    (Entropy(), None),
    (DeepFoolDistance(), 300),
    (FGSMDistance(), 300),
    (Mixture(), 300),
]


def _pred(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.mark.parametrize("strategy,candidates", STRATEGIES, ids=repr)
def test_selection_invariants_and_determinism(strategy, candidates, trained_mlp, pool):
    def select(seed):
        rng = np.random.default_rng(seed)
        return strategy.select(trained_mlp, pool, 25, rng=rng, candidates=candidates)

    sel = select(3)
    idx = sel.idx
    assert len(idx) == 25 and len(np.unique(idx)) == 25
    assert (pool.labeled_at[idx] == -1).all()  # all currently unlabelled, global rows
    np.testing.assert_array_equal(idx, select(3).idx)
    if candidates is not None or isinstance(strategy, Random):  # it draws at random
        assert not np.array_equal(idx, select(4).idx)


@pytest.mark.parametrize("strategy,candidates", STRATEGIES[:5], ids=repr)
def test_budget_larger_than_pool_is_refused(strategy, candidates, trained_mlp, pool):
    with pytest.raises(ValueError, match="exceeds"):
        strategy.select(
            trained_mlp, pool, pool.n_unlabeled + 1, rng=np.random.default_rng(0)
        )


def test_candidates_limit_what_is_scored(trained_mlp, pool, monkeypatch):
    seen = []
    orig = Entropy.score
    monkeypatch.setattr(
        Entropy, "score", lambda self, m, x: (seen.append(len(x)), orig(self, m, x))[1]
    )
    Entropy().select(trained_mlp, pool, 5, rng=np.random.default_rng(0), candidates=123)
    Entropy().select(trained_mlp, pool, 5, rng=np.random.default_rng(0))
    assert seen == [123, pool.n_unlabeled]
    with pytest.raises(ValueError, match="candidates"):
        Entropy().select(
            trained_mlp, pool, 5, rng=np.random.default_rng(0), candidates=0
        )


def test_entropy_picks_highest_entropy(trained_mlp, pool):
    cand = pool.unlabeled_idx
    p = dalv.train.predict_logits(trained_mlp, pool.x[cand]).softmax(1).double()
    h = -(p * p.log()).sum(1).numpy()
    sel = Entropy().select(trained_mlp, pool, 10, rng=np.random.default_rng(0))
    assert set(sel.idx) == set(cand[np.argsort(-h)[:10]])
    assert np.all(np.diff(sel.scores) <= 0)


def test_top_budget_breaks_ties_by_position():
    assert top_budget(np.array([1.0, 3.0, 3.0, 0.0, 3.0]), 2).tolist() == [1, 2]


def test_coreset_is_greedy_k_centre(trained_mlp, pool):
    """Each chosen point is the farthest (in penultimate features) from all centres."""
    sel = CoreSet().select(trained_mlp, pool, 5, rng=np.random.default_rng(0))
    feats = dalv.models.embed(trained_mlp, pool.x).detach().double()
    centres = list(pool.labeled_idx)
    cand = pool.unlabeled_idx
    for j in sel.idx:
        d = torch.cdist(feats[cand], feats[centres]).min(1).values
        assert float(d.max()) == pytest.approx(
            float(d[np.searchsorted(cand, j)]), rel=1e-9
        )
        centres.append(j)
        cand = cand[cand != j]


def test_badge_first_centre_has_largest_gradient_embedding(trained_mlp, pool):
    sel = BADGE().select(trained_mlp, pool, 3, rng=np.random.default_rng(0))
    cand = pool.unlabeled_idx
    with torch.no_grad():
        h = dalv.models.embed(trained_mlp, pool.x[cand])
        p = trained_mlp[-1](h).softmax(1).double()
        h = h.double()
    q = -p
    q[torch.arange(len(q)), p.argmax(1)] += 1
    g = (q[:, :, None] * h[:, None, :]).flatten(1)  # the explicit [n, C·h] embedding
    assert sel.idx[0] == cand[int(g.norm(dim=1).argmax())]


# ------------------------------------------------- adversarial distances


@pytest.mark.parametrize(
    "strategy,norm",
    [(DeepFoolDistance(), "l2"), (FGSMDistance(), "linf"), (Mixture(), "linf")],
    ids=lambda s: getattr(s, "name", s),
)
def test_distance_strategies_carry_typed_by_products(trained_mlp, pool, strategy, norm):
    sel = strategy.select(
        trained_mlp, pool, 15, rng=np.random.default_rng(7), candidates=300
    )
    assert sel.distance.value.shape == (15,) and sel.distance.norm == norm
    assert not sel.distance.certified
    assert sel.own.x.shape == (15, 1, 8, 8)
    assert sel.own.valid.dtype == torch.bool and sel.own.flipped.dtype == torch.bool
    assert torch.equal(
        sel.own.flipped,
        _pred(trained_mlp, sel.own.x) != _pred(trained_mlp, pool.x[sel.idx]),
    )
    np.testing.assert_allclose(sel.scores, -sel.distance.value.double().numpy())
    assert strategy.makes_examples


def test_fvaal_takes_the_smallest_eps_ties_by_index(trained_mlp, pool):
    sel = FGSMDistance().select(trained_mlp, pool, 40, rng=np.random.default_rng(0))
    unl = pool.unlabeled_idx
    eps_all = attacks.min_fgsm_eps(trained_mlp, pool.x[torch.from_numpy(unl)])[0]
    want = unl[np.lexsort((unl, eps_all.numpy()))[:40]]  # by ε, then by global index
    np.testing.assert_array_equal(sel.idx, want)
    assert torch.equal(sel.own.valid, sel.own.flipped)  # FGSM: kept only if it flips


def test_fvaal_ranks_never_flipped_rows_last(pool):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.arange(10.0))
    sel = FGSMDistance().select(model, pool, 5, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(sel.idx, pool.unlabeled_idx[:5])
    assert (sel.distance.value == 1.0).all() and not sel.own.valid.any()


def test_dfal_scores_are_deepfool_l2_norms(trained_mlp, pool):
    sel = DeepFoolDistance().select(
        trained_mlp, pool, 10, rng=np.random.default_rng(0), candidates=200
    )
    x = pool.x[torch.from_numpy(sel.idx)]
    x_adv, r = attacks.deepfool(trained_mlp, x)
    assert torch.allclose(sel.distance.value, r, atol=1e-5)
    assert torch.allclose(sel.own.x, x_adv, atol=1e-5)
    assert sel.own.valid.all()  # DFAL keeps its example whether or not it flips
    assert (np.diff(sel.scores) <= 0).all()


def test_mixture_is_half_fvaal_half_random(trained_mlp, pool):
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    mix = Mixture().select(trained_mlp, pool, 11, rng=rng_a, candidates=200)
    top = FGSMDistance().select(trained_mlp, pool, 5, rng=rng_b, candidates=200)
    np.testing.assert_array_equal(mix.idx[:5], top.idx)  # ⌊11/2⌋ by score
    assert len(set(mix.idx[5:]) & set(top.idx)) == 0 and len(mix.idx) == 11
    assert Mixture().name == "FVAAL_rand"
    assert not Mixture(base=dalv.strategies.Entropy()).makes_examples
    with pytest.raises(ValueError, match="fraction"):
        Mixture(fraction=1.5)


def test_certified_radius_brackets_the_attack_radius(trained_mlp, pool):
    x = pool.x[:40]
    scored = CertifiedRadius().score(trained_mlp, x)
    r_atk = attacks.min_fgsm_eps(trained_mlp, x)[0]
    assert scored.distance.certified and scored.distance.norm == "linf"
    assert (scored.distance.value <= r_atk.double() + 1e-3).all()
    np.testing.assert_allclose(-scored.scores, scored.distance.value.double().numpy())
