import numpy as np
import pytest

import dalv
from dalv.strategies import BADGE, CoreSet, Entropy, Margin, Random, top_budget

STRATEGIES = [
    Random(),
    Entropy(candidates=300),
    Margin(candidates=300),
    BADGE(candidates=300),
    CoreSet(candidates=300),
    Entropy(candidates=None),
]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=repr)
def test_selection_invariants_and_determinism(strategy, trained_mlp, pool):
    sel = strategy.select(trained_mlp, pool, 25, rng=np.random.default_rng(3))
    idx = sel.idx
    assert len(idx) == 25 and len(np.unique(idx)) == 25
    assert (pool.labeled_at[idx] == -1).all()  # all currently unlabelled, global rows
    again = strategy.select(trained_mlp, pool, 25, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(idx, again.idx)


@pytest.mark.parametrize("strategy", STRATEGIES[:5], ids=repr)
def test_budget_larger_than_pool_is_refused(strategy, trained_mlp, pool):
    with pytest.raises(ValueError, match="exceeds"):
        strategy.select(
            trained_mlp, pool, pool.n_unlabeled + 1, rng=np.random.default_rng(0)
        )


def test_entropy_picks_highest_entropy(trained_mlp, pool):
    cand = pool.unlabeled_idx
    p = dalv.train.predict_logits(trained_mlp, pool.x[cand]).softmax(1).double()
    h = -(p * p.log()).sum(1).numpy()
    sel = Entropy(candidates=None).select(
        trained_mlp, pool, 10, rng=np.random.default_rng(0)
    )
    assert set(sel.idx) == set(cand[np.argsort(-h)[:10]])
    assert np.all(np.diff(sel.scores) <= 0)


def test_top_budget_breaks_ties_by_position():
    assert top_budget(np.array([1.0, 3.0, 3.0, 0.0, 3.0]), 2).tolist() == [1, 2]


def test_coreset_is_greedy_k_centre(trained_mlp, pool):
    """Each chosen point is the farthest (in penultimate features) from all centres so far."""
    sel = CoreSet(candidates=None).select(
        trained_mlp, pool, 5, rng=np.random.default_rng(0)
    )
    import torch

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
    import torch

    sel = BADGE(candidates=None).select(
        trained_mlp, pool, 3, rng=np.random.default_rng(0)
    )
    cand = pool.unlabeled_idx
    with torch.no_grad():
        h = dalv.models.embed(trained_mlp, pool.x[cand])
        p = trained_mlp[-1](h).softmax(1).double()
        h = h.double()
    q = -p
    q[torch.arange(len(q)), p.argmax(1)] += 1
    g = (q[:, :, None] * h[:, None, :]).flatten(1)  # the explicit [n, C·h] embedding
    assert sel.idx[0] == cand[int(g.norm(dim=1).argmax())]
