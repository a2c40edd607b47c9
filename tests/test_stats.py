"""dalv.stats on constructed data with known answers."""

import numpy as np
import pytest

from dalv.stats import ALPHA, holm, paired_test, seeds_needed, tost, verdict


def _claim(d, relation="beats", margin=0.005, family=1):
    t = paired_test(np.asarray(d), margin)
    p_adj = min(1.0, t.p * family)
    tost_adj = min(1.0, t.p_tost * family)
    return t, verdict(t, relation, p_adj, tost_adj)


def test_a_true_effect_is_supported_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    d = 0.02 + 0.005 * rng.standard_normal(10)
    t, v = _claim(d)
    assert v == "supported" and t.p < 1e-6
    assert t.ci_t[0] < 0.02 < t.ci_t[1] and t.ci_boot[0] < 0.02 < t.ci_boot[1]
    assert t.effect == pytest.approx(d.mean() / d.std(ddof=1))
    assert _claim(-d)[1] == "contradicted"


def test_no_effect_is_rarely_called_and_never_on_three_seeds_with_holm():
    rng = np.random.default_rng(1)
    calls = [_claim(0.005 * rng.standard_normal(5))[1] for _ in range(2000)]
    false_positive = np.mean([c in ("supported", "contradicted") for c in calls])
    assert 0.025 < false_positive < 0.075  # the test's level, α = 0.05
    # what the old "mean and most seeds" rule called a win fires far more often
    old = [
        (d.mean() > 0) and (d > 0).sum() >= 2
        for d in (0.005 * rng.standard_normal(3) for _ in range(2000))
    ]
    assert np.mean(old) > 0.35


def test_equivalence_within_the_margin():
    rng = np.random.default_rng(2)
    d = 0.0005 * rng.standard_normal(10)  # no difference, measured precisely
    t, v = _claim(d, "beats")
    assert v == "not supported" and t.p_tost < ALPHA
    assert _claim(d, "on_par")[1] == "supported"
    wide = 0.01 * rng.standard_normal(3)  # no difference, measured badly
    assert _claim(wide, "on_par")[1] == "inconclusive"
    far = 0.03 + 0.001 * rng.standard_normal(5)
    assert _claim(far, "on_par")[1] == "contradicted"


def test_tost_holds_its_level_at_the_margin():
    rng = np.random.default_rng(3)
    p = [tost(0.005 + 0.004 * rng.standard_normal(6), 0.005) for _ in range(3000)]
    assert np.mean(np.array(p) < ALPHA) <= ALPHA + 0.01


def test_holm_matches_a_hand_computed_example():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    np.testing.assert_allclose(holm(p)[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm(p)[4])


def test_seeds_needed_for_the_mnist_effects():
    # paired AUBC differences have sd ~ 0.005: 0.005 needs about 10 seeds for 80 %
    assert 9 <= seeds_needed(0.005, 0.005) <= 12
    assert seeds_needed(0.015, 0.005) <= 4


def test_bootstrap_is_seeded_and_degenerate_inputs_are_safe():
    d = np.array([0.01, 0.02, 0.015])
    assert paired_test(d, 0.005).ci_boot == paired_test(d, 0.005).ci_boot
    one = paired_test(np.array([0.01]), 0.005)
    assert one.n == 1 and np.isnan(one.p)
    assert verdict(one, "beats", float("nan"), float("nan")) == "inconclusive"
    same = paired_test(np.array([0.01, 0.01, 0.01]), 0.005)
    assert same.ci_t == (0.01, 0.01) and same.p == 0.0
