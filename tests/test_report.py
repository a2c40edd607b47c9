"""Report pieces: the claims table and its verdicts, the diversity summary."""

import numpy as np
import pandas as pd
import pytest

from dalv import report


def _curves(deltas: dict[str, list[float]], cycles: int = 4) -> pd.DataFrame:
    """A results table: method B flat at 0.8, each other method B + its per-seed
    offset."""
    rows = []
    for seed in range(3):
        for c in range(cycles):
            rows.append(
                {
                    "dataset": "mnist5k",
                    "method": "BADGE",
                    "seed": seed,
                    "cycle": c,
                    "test_acc": 0.8,
                }
            )
            for m, d in deltas.items():
                rows.append(
                    {
                        "dataset": "mnist5k",
                        "method": m,
                        "seed": seed,
                        "cycle": c,
                        "test_acc": 0.8 + d[seed],
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "mean,wins,seeds,on_par,want",
    [
        (0.01, 3, 3, False, "yes"),
        (0.001, 1, 3, False, "mixed"),
        (-0.01, 0, 3, False, "no"),
        (-0.001, 2, 3, False, "mixed"),
        (0.0, 1, 2, False, "mixed"),
        (0.004, 3, 3, True, "yes"),
        (-0.02, 0, 3, True, "no"),
    ],
)
def test_verdict(mean, wins, seeds, on_par, want):
    assert report.verdict(mean, wins, seeds, on_par) == want


def test_claims_pair_by_seed_and_use_the_papers_per_seed_numbers():
    # FVAAL-No-Adv beats BADGE on seeds 0 and 1 by a lot, loses on seed 2 by a little
    t = _curves({"FVAAL-No-Adv": [0.02, 0.01, -0.005], "Random": [-0.03, -0.02, -0.01]})
    cl = report.claims(t).set_index("claim")
    row = cl.loc["FVAAL-No-Adv beats BADGE"]
    assert row["our seed wins"] == "2/3" and row["we agree"] == "yes"
    assert row["our Δ AUBC (A−B)"] == pytest.approx(np.mean([0.02, 0.01, -0.005]))
    assert row["paper seed wins"] == "5/5" and row["paper Δ AUBC"] == pytest.approx(
        0.0109, abs=1e-4
    )
    assert cl.loc["BADGE beats Random", "we agree"] == "yes"
    assert cl.loc["BADGE beats Random", "paper's own numbers"] == "yes"
    # only pairs whose two methods ran appear
    assert "FV-Adv improves FVAAL" not in cl.index and len(cl) == 3


def test_claims_report_where_the_papers_own_numbers_disagree():
    # protocol §7: on MNIST, DFAL+FGSM-Adv(10) edges out DFAL+FV-Adv(10) (AUBC 0.8720 vs
    # 0.8680)
    t = _curves({"DFAL+FV-Adv(10)": [0.01, 0.01, 0.01], "DFAL+FGSM-Adv(10)": [0, 0, 0]})
    row = report.claims(t).set_index("claim").loc["FV-Adv beats FGSM-Adv for DFAL"]
    assert row["we agree"] == "yes" and row["paper Δ AUBC"] < 0
    assert row["paper's own numbers"] in ("no", "mixed")


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
    assert s.loc[0, "seeds"] == 2 and s.loc[0, "std over seeds"] == pytest.approx(
        np.sqrt(2)
    )
