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


def _primary_table(effects: dict[str, float], seeds: int = 6, extra=None):
    """FV-Adv(10) vs FGSM-Adv(10) for the four strategies, FGSM at 0.8 + noise and
    FV-Adv at FGSM + effect + noise."""
    rng = np.random.default_rng(5)
    deltas = {}
    for s, eff in effects.items():
        fv = "FVAAL" if s == "FVAAL" else f"{s}+FV-Adv(10)"
        fgsm = f"{s}+FGSM-Adv(10)"
        deltas[fgsm] = list(0.001 * rng.standard_normal(seeds))
        deltas[fv] = [d + eff + 0.002 * rng.standard_normal() for d in deltas[fgsm]]
    deltas.update(extra or {})
    return _curves(deltas)


def test_the_primary_family_has_its_own_holm_and_comes_first():
    t = _primary_table(
        {"DFAL": 0.01, "BADGE": 0.0, "Random": 0.0, "FVAAL": 0.0},
        extra={"FVAAL-No-Adv": [0.02] * 6, "Random": [-0.01] * 6},
    )
    cl = report.claims(t)
    prim = cl[cl["role"] == "primary"]
    assert list(cl["role"])[: len(prim)] == ["primary"] * len(prim)
    assert len(prim) == 4 and set(prim["metric"]) == {"aubc"}
    assert (prim["family size"] == 4).all()
    # Holm over the four primary claims only, not over every claim of the report
    np.testing.assert_allclose(prim["p Holm"], report.holm(prim["p"].to_numpy()))
    assert prim.set_index("claim").loc["FV-Adv beats FGSM-Adv for DFAL", "verdict"] == (
        "supported"
    )
    other = cl[cl["family"] == "the paper's other claims, AUBC"]
    assert len(other) and (other["role"] == "secondary").all()
    assert "boot low" not in cl  # t intervals only


def test_headline_says_the_answer_first_with_coloured_verdicts():
    t = _primary_table({"DFAL": 0.01, "BADGE": 0.0, "Random": 0.0, "FVAAL": 0.0})
    cl = report.claims(t)
    h = report.headline(cl, "mnist5k", 6)
    assert h.index("The paper claims") < h.index("dalv finds")
    assert "DFAL" in h and report.VERDICT_COLORS["supported"][1] in h
    assert "The paper's own per-seed numbers" in h
    none = report.headline(report.claims(_curves({"Random": [0.0] * 3})), "mnist5k", 3)
    assert "none of the primary family's pairs" in none


def test_claims_table_is_coloured_grouped_and_rounded():
    t = _primary_table(
        {"DFAL": 0.01, "BADGE": 0.0, "Random": 0.0, "FVAAL": 0.0},
        extra={"FVAAL-No-Adv": [0.02] * 6},
    )
    h = report.claims_html(report.claims(t))
    assert h.index("Primary family") < h.index("Secondary family")
    assert "background:" in h and "np.float64" not in h
    import re

    for num in re.findall(r"[+-]\d\.\d+", h):
        assert len(num.split(".")[1]) <= 4


def test_warnings_for_smoke_size_near_chance_and_clock_cut_rows():
    t = _curves({"Random": [-0.6]}, cycles=3)  # one seed, 3 cycles, 0.2 accuracy
    w = " ".join(report.report_warnings(t))
    assert "Smoke-size" in w and "Near chance" in w
    full = _curves({"Random": [0.0] * 3}, cycles=12).assign(aug_timeouts=0)
    assert report.report_warnings(full) == []
    full.loc[full.index[5], "aug_timeouts"] = 2
    w = report.report_warnings(full)
    assert len(w) == 1 and "machine's speed" in w[0]
    assert len(report.timeouts(full)) == 1


def test_grid_time_comes_from_the_rows_not_a_rerun_that_read_them_back():
    t = _curves({"Random": [0.0] * 2}).assign(train_s=30.0, query_s=0.0)
    line = report.grid_time(t, {"jobs": 2, "grid_seconds": 0.1})
    # 2 methods x 2 seeds x 4 cycles x 30 s = 480 s = 8 min of compute
    assert "8 min of compute" in line and "4 min of wall time" in line
    assert "took 0 s: it read finished cells back" in line


def test_dataset_note_names_the_dataset():
    assert "mnist5k" in report.dataset_note("mnist5k", False)
    assert "mnist5k" not in report.dataset_note("mnist", True)
    assert "MNIST" in report.dataset_note("mnist", True)


def test_equations_render_offline_and_no_cdn_script_is_left():
    import nbformat

    assert "<math" in report.math_to_mathml(r"area $\frac{a_t + a_{t+1}}{2}$ here")
    for text in ("costs $5 and $6", "`$x$`", "set $DALV_SOURCE now"):
        assert report.math_to_mathml(text) == text
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(r"AUBC $\sum_t a_t$ and $$x^2$$")]
    html = report.notebook_html(nb, "t")
    assert "<math" in html and 'display="block"' in html
    assert "mathjax" not in html.lower() and "require.min.js" not in html


def test_summary_reads_dalvs_runs_and_marks_what_has_not_run(tmp_path):
    t = _primary_table({"DFAL": 0.01, "BADGE": 0.0, "Random": 0.0, "FVAAL": 0.0})
    src = tmp_path / "reports" / "paper-mnist"
    src.mkdir(parents=True)
    t.assign(dataset="mnist").to_csv(src / "results.csv", index=False)
    s = report.summary_table(tmp_path)
    mnist = s[(s.dataset == "mnist") & (s.source == "dalv")]
    assert set(mnist[mnist.role == "primary"].claim) == {
        f"FV-Adv beats FGSM-Adv for {x}" for x in report.STRATEGIES
    }
    assert (
        s[(s.dataset == "fashion_mnist") & (s.source == "dalv")].verdict
        == ("not run yet")
    ).all()
    cifar = s[(s.dataset == "cifar10") & (s.role == "primary")]
    assert len(cifar) == 3 and (cifar.source == "paper").all()
    page = report.render_summary(tmp_path / "summary", root=tmp_path)
    text = page.read_text()
    assert "not run yet" in text and "Fashion-MNIST" in text and "CIFAR-10" in text
    assert len(list((tmp_path / "summary" / "figures").glob("claim_*_aubc.png"))) >= 4


def test_fidelity_gives_the_difference_at_the_checkpoint_cycles():
    """RMS, max and the Δ at cycles 0, 1, 5 and the last agree with the curves' own
    differences, recomputed here from the paper's files."""
    from dalv.paper import paper_table

    t = _curves({"Random": [0.01]}, cycles=20, dataset="fashion_mnist")
    paper = paper_table("fashion_mnist").groupby(["method", "cycle"])["test_acc"].mean()
    fid = report.fidelity(t).set_index("method")
    for m in ("BADGE", "Random"):
        ours = 0.8 + (0.01 if m == "Random" else 0.0)
        d = ours - paper.loc[m].to_numpy()
        assert fid.loc[m, "RMS Δ"] == pytest.approx(np.sqrt(np.mean(d**2)))
        assert fid.loc[m, "max |Δ|"] == pytest.approx(np.abs(d).max())
        for c in (0, 1, 5):
            assert fid.loc[m, f"Δ cycle {c}"] == pytest.approx(d[c])
        assert fid.loc[m, "Δ last"] == pytest.approx(d[-1])
