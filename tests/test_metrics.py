import numpy as np
import pandas as pd
import pytest

from dalv.metrics import (
    aubc,
    paired_wins,
    pairwise_distance_stats,
    summarize,
    within_group_distance_stats,
)


def test_aubc_of_known_curves():
    assert aubc([0.5] * 20) == pytest.approx(0.5)
    assert aubc(np.linspace(0, 1, 20)) == pytest.approx(0.5)  # a straight line 0 → 1
    assert aubc([0.0, 1.0, 1.0]) == pytest.approx(0.75)  # trapezoids: (0.5 + 1) / 2
    assert aubc([0.7]) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        aubc([])


def test_aubc_matches_the_papers_published_value():
    """Spec §8: MNIST FVAAL (avg curve) has AUBC 0.8719 and Random 0.8080."""
    from dalv.paper import paper_table

    t = paper_table("mnist")
    curve = lambda m: t[t.method == m].sort_values("cycle").test_acc.to_numpy()  # noqa: E731
    assert aubc(curve("FVAAL")) == pytest.approx(0.8719, abs=5e-5)
    assert aubc(curve("Random")) == pytest.approx(0.8080, abs=5e-5)


def _table():
    rows = []
    for seed, (a, b) in enumerate([(0.8, 0.7), (0.6, 0.65), (0.9, 0.5)]):
        for c in range(3):
            rows.append({"method": "A", "seed": seed, "cycle": c, "test_acc": a})
            rows.append({"method": "B", "seed": seed, "cycle": c, "test_acc": b})
    return pd.DataFrame(rows)


def test_summarize_and_paired_wins():
    s = summarize(_table()).set_index("method")
    assert s.loc["A", "aubc_mean"] == pytest.approx((0.8 + 0.6 + 0.9) / 3)
    assert s.loc["B", "final_std"] == pytest.approx(np.std([0.7, 0.65, 0.5], ddof=1))
    w = paired_wins(_table(), "A", "B")
    assert w == {
        "wins": 2,
        "seeds": 3,
        "mean_delta": pytest.approx((0.1 - 0.05 + 0.4) / 3),
    }


def test_paired_wins_against_paper_per_seed_table():
    """Spec §8: MNIST FVAAL − FVAAL-No-Adv wins 5/5 with mean Δ AUBC +0.0360."""
    from dalv.paper import paper_table

    w = paired_wins(paper_table("mnist", per_seed=True), "FVAAL", "FVAAL-No-Adv")
    assert w["wins"] == 5 and w["mean_delta"] == pytest.approx(0.0360, abs=1e-4)


def test_pairwise_distance_stats():
    s = pairwise_distance_stats(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 8.0]]))
    assert s["num_points"] == 3
    assert s["min"] == pytest.approx(5.0) and s["max"] == pytest.approx(8.0)
    assert s["mean"] == pytest.approx((5 + 8 + 5) / 3)


def test_within_group_distance_stats_pools_only_same_group_pairs():
    # group "a": a 3-4-5 triangle's legs from the origin; group "b": two points 10 apart
    f = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [100.0, 0.0], [110.0, 0.0]])
    s = within_group_distance_stats(f, np.array(["a", "a", "a", "b", "b"]))
    assert s["num_points"] == 5 and s["min"] == 3.0 and s["max"] == 10.0
    assert s["mean"] == pytest.approx((3 + 4 + 5 + 10) / 4)
    # rows need not be sorted by group; singletons contribute no pair
    perm = [4, 0, 3, 2, 1]
    s2 = within_group_distance_stats(f[perm], np.array(["b", "a", "b", "a", "a"]))
    assert s2["mean"] == pytest.approx(s["mean"])
    assert np.isnan(within_group_distance_stats(f[:2], np.array([1, 2]))["mean"])
    with pytest.raises(ValueError, match="groups has"):
        within_group_distance_stats(f, np.array([1, 2]))
