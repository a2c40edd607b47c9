"""Report pieces: the claims as statistics, paper curves only where comparable, the
diversity summary, the figures."""

import numpy as np
import pandas as pd
import pytest

from dalv import report


def _curves(deltas: dict[str, list[float]], cycles: int = 4, dataset="mnist5k"):
    """A results table: BADGE flat at 0.8, every other method BADGE + an offset."""
    rows = []
    n_seeds = len(next(iter(deltas.values())))
    for seed in range(n_seeds):
        for c in range(cycles):
            base = {
                "dataset": dataset,
                "seed": seed,
                "cycle": c,
                "protocol": "paper",
                "n_labeled": 100 + 50 * c,
            }
            rows.append({**base, "method": "BADGE", "test_acc": 0.8})
            for m, d in deltas.items():
                rows.append({**base, "method": m, "test_acc": 0.8 + d[seed]})
    return pd.DataFrame(rows)


def test_claims_are_paired_statistics_with_the_papers_beside_them():
    # FVAAL-No-Adv beats BADGE clearly on 8 seeds; Random loses on every seed
    rng = np.random.default_rng(0)
    t = _curves(
        {
            "FVAAL-No-Adv": list(0.02 + 0.003 * rng.standard_normal(8)),
            "Random": list(-0.03 + 0.003 * rng.standard_normal(8)),
        }
    )
    cl = report.claims(t).set_index(["claim", "metric"])
    row = cl.loc[("FVAAL-No-Adv beats BADGE", "aubc")]
    assert row["verdict"] == "supported" and row["seeds"] == 8
    assert row["CI low"] < row["Δ mean"] < row["CI high"] and row["CI low"] > 0
    assert row["p Holm"] >= row["p"]  # adjusted over the claims that ran
    assert row["paper seeds"] == 5 and row["paper Δ"] == pytest.approx(0.0109, abs=1e-4)
    assert cl.loc[("BADGE beats Random", "aubc"), "verdict"] == "supported"
    assert cl.loc[("FVAAL-No-Adv beats Random", "final"), "verdict"] == "supported"
    # only claims whose two methods ran appear, once per metric
    assert len(cl) == 3 * 2


def test_three_noisy_seeds_give_no_verdict():
    t = _curves({"FVAAL-No-Adv": [0.02, 0.01, -0.005]})
    row = (
        report.claims(t)
        .set_index(["claim", "metric"])
        .loc[("FVAAL-No-Adv beats BADGE", "aubc")]
    )
    assert row["verdict"] == "inconclusive" and row["A ahead"] == "2/3"


def test_the_papers_own_numbers_get_the_same_treatment():
    # on MNIST, the paper's DFAL+FGSM-Adv edges out DFAL+FV-Adv (AUBC 0.8720 vs 0.8680)
    t = _curves({"DFAL+FV-Adv(10)": [0.01] * 5, "DFAL+FGSM-Adv(10)": [0.0] * 5})
    row = (
        report.claims(t)
        .set_index(["claim", "metric"])
        .loc[("FV-Adv beats FGSM-Adv for DFAL", "aubc")]
    )
    assert row["paper Δ"] < 0 and row["paper verdict"] in (
        "inconclusive",
        "contradicted",
    )


def test_control_claims_appear_when_pgd_adv_ran():
    t = _curves(
        {
            "Random+FV-Adv(10)": [0.01] * 3,
            "Random+PGD-Adv(10)": [0.0] * 3,
            "Random+FGSM-Adv(10)": [0.0] * 3,
        }
    )
    cl = report.claims(t)
    assert set(cl[cl.source == "control"].claim) == {
        "FV-Adv beats PGD-Adv for Random",
        "PGD-Adv beats FGSM-Adv for Random",
    }


def test_paper_curves_only_where_dataset_and_protocol_match():
    assert (
        report.paper_curves_for(_curves({"Random": [0.0]}, dataset="mnist5k")) is None
    )
    full = _curves({"Random": [0.0]}, cycles=20, dataset="mnist")
    assert report.paper_curves_for(full) is not None
    assert report.paper_curves_for(full.assign(protocol="clean")) is None
    assert report.paper_curves_for(full[full.cycle < 3]) is None


def test_diversity_summary_names_the_last_cycle():
    div = pd.DataFrame(
        {
            "run": ["a", "a", "b", "b"],
            "method": ["M"] * 4,
            "seed": [0, 0, 1, 1],
            "layer": ["logits"] * 4,
            "scope": ["all"] * 4,
            "cycle": [0, 19, 0, 19],
            "num_points": [10, 10, 10, 10],
            "mean": [1.0, 2.0, 3.0, 4.0],
        }
    )
    s = report.diversity_summary(div).set_index("cycle")
    assert s.loc["last", "mean distance"] == 3.0 and s.loc[0, "mean distance"] == 2.0
    assert s.loc[0, "seeds"] == 2
    assert s.loc[0, "std over seeds"] == pytest.approx(np.sqrt(2))
