"""Report pieces (tables, claims under the analysis plan, the answer-first headline,
figures, warnings, environment), HTML rendering via notebook 05, and the summary across
datasets.

Owns ``comparison``, ``claims`` (and ``CLAIMS``, ``FAMILIES``), ``paper_claims``,
``headline``, ``claims_html``, ``plan_markdown``, ``report_warnings``, ``timeouts``,
``grid_time``, ``save_figures``, ``environment``, ``notebook_html`` (a notebook to
self-contained HTML, equations rendered at build time), ``render_report`` and
``render_summary``. May import pandas, matplotlib, ``dalv.metrics``, ``dalv.paper``,
``dalv.stats``, ``dalv.plots``; papermill, nbconvert and latex2mathml only inside the
rendering functions.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from dalv.metrics import per_seed, summarize
from dalv.paper import FIGURE_METHODS, paper_table
from dalv.stats import (
    ALPHA,
    EFFECT,
    MARGIN_SD,
    PILOT_DF,
    PILOT_SD,
    PILOT_SDS,
    PRIMARY_SIZE,
    holm,
    holm_power,
    paired_test,
    planned_seeds,
    sd_upper,
    verdict,
)
from dalv.stats import MARGINS as PLAN_MARGINS
from dalv.version import __version__

__all__ = [
    "comparison",
    "claims",
    "paper_claims",
    "headline",
    "claims_html",
    "plan_markdown",
    "report_warnings",
    "timeouts",
    "grid_time",
    "dataset_note",
    "FAMILIES",
    "STRATEGIES",
    "VERDICT_COLORS",
    "notebook_html",
    "render_summary",
    "save_figures",
    "environment",
    "render_report",
    "CLAIMS",
    "timings",
    "diversity",
    "diversity_summary",
    "MARGINS",
    "paper_curves_for",
    "fidelity",
    "verifier_work",
]


@dataclass(frozen=True)
class Claim:
    """A comparison to check: A beats B, or A is on par with B.

    Args:
        a: the first method's name.
        b: the second method's name.
        relation: ``"beats"`` or ``"on_par"``.
        text: the claim in words.
        source: ``"paper"`` (a claim of the paper, protocol §7) or ``"control"`` (dalv's
            question: does a verifier's counterexample matter, or a stronger attack's?)
        group: the plan's group (protocol §10): ``"thesis"`` (FV-Adv beats FGSM-Adv,
            the paper's thesis), ``"paper"`` (its other claims) or ``"control"``.
    """

    a: str
    b: str
    relation: Literal["beats", "on_par"]
    text: str
    source: Literal["paper", "control"] = "paper"
    group: Literal["thesis", "paper", "control"] = "paper"


STRATEGIES = ("DFAL", "BADGE", "Random", "FVAAL")
"""The strategies of the primary family, in the order reports list them."""


def _pair(strategy: str, aug: str) -> str:
    """The method name of ``strategy`` with augmentation ``aug`` (10 examples)."""
    if strategy == "FVAAL":
        return "FVAAL" if aug == "FV-Adv" else f"FVAAL+{aug}(10)"
    return f"{strategy}+{aug}(10)"


def _fv_vs(other: str, source: str, group: str) -> list[Claim]:
    return [
        Claim(
            _pair(s, "FV-Adv"),
            _pair(s, other),
            "beats",
            f"FV-Adv beats {other} for {s}",
            source,
            group,
        )
        for s in STRATEGIES
    ]


CLAIMS = [
    *_fv_vs("FGSM-Adv", "paper", "thesis"),
    Claim("FVAAL", "FVAAL-No-Adv", "beats", "FV-Adv improves FVAAL"),
    Claim("FVAAL", "DFAL", "beats", "FVAAL beats DFAL"),
    Claim(
        "FVAAL-No-Adv",
        "DFAL-No-Adv",
        "on_par",
        "FVAAL-No-Adv is on par with DFAL-No-Adv",
    ),
    Claim("FVAAL-No-Adv", "BADGE", "beats", "FVAAL-No-Adv beats BADGE"),
    Claim("FVAAL-No-Adv", "Random", "beats", "FVAAL-No-Adv beats Random"),
    Claim("BADGE", "Random", "beats", "BADGE beats Random"),
    # the control question (protocol §4.5)
    *_fv_vs("PGD-Adv", "control", "control"),
    *[
        Claim(
            _pair(s, "PGD-Adv"),
            _pair(s, "FGSM-Adv"),
            "beats",
            f"PGD-Adv beats FGSM-Adv for {s}",
            "control",
            "control",
        )
        for s in STRATEGIES
    ],
]
"""The comparisons ``claims`` checks, where both methods ran."""


@dataclass(frozen=True)
class Family:
    """A family of claims with its own Holm correction (protocol §10).

    Args:
        key: short name.
        group: the claims' ``Claim.group``.
        metric: ``"aubc"`` or ``"final"``.
        role: ``"primary"``, ``"secondary"`` or ``"control"``.
        title: the family in words.
    """

    key: str
    group: str
    metric: str
    role: Literal["primary", "secondary", "control"]
    title: str


FAMILIES = (
    Family("primary", "thesis", "aubc", "primary", "FV-Adv beats FGSM-Adv, AUBC"),
    Family(
        "thesis-final",
        "thesis",
        "final",
        "secondary",
        "FV-Adv beats FGSM-Adv, final accuracy",
    ),
    Family(
        "paper-aubc", "paper", "aubc", "secondary", "the paper's other claims, AUBC"
    ),
    Family(
        "paper-final",
        "paper",
        "final",
        "secondary",
        "the paper's other claims, final accuracy",
    ),
    Family("control-aubc", "control", "aubc", "control", "controls (PGD-Adv), AUBC"),
    Family(
        "control-final",
        "control",
        "final",
        "control",
        "controls (PGD-Adv), final accuracy",
    ),
)
"""The plan's families, primary first: Holm runs within each, at α = 0.05."""

MARGINS = dict(PLAN_MARGINS)
"""Equivalence margins, fixed in advance (``dalv.stats.MARGINS``: 1.28 pilot paired sds
for both metrics, AUBC 0.0050, final accuracy 0.0047)."""

METRIC_NAMES = {"aubc": "AUBC", "final": "final accuracy"}


def comparison(table: pd.DataFrame, dataset: str | None = None) -> pd.DataFrame:
    """Our AUBC / final accuracy (mean ± std over seeds) beside the paper's 5-seed
    values."""
    ours = summarize(table)
    dataset = dataset or str(table["dataset"].iloc[0])
    try:
        paper = summarize(paper_table(dataset)).set_index("method")
    except ValueError:
        paper = pd.DataFrame()
    out = ours.rename(
        columns={
            "aubc_mean": "AUBC",
            "aubc_std": "AUBC std",
            "final_mean": "final",
            "final_std": "final std",
        }
    )
    if len(paper):
        out["paper AUBC"] = out["method"].map(paper["aubc_mean"])
        out["paper final"] = out["method"].map(paper["final_mean"])
        out["Δ AUBC"] = out["AUBC"] - out["paper AUBC"]
    return out


def _per_seed(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    return per_seed(table).pivot(index="seed", columns="method", values=metric)


def _test_claims(table: pd.DataFrame, claims: list[Claim]) -> pd.DataFrame:
    """Paired tests of ``claims`` on ``table``, family by family (``FAMILIES``), with
    Holm's correction within each family."""
    rows = []
    wide = {m: _per_seed(table, m) for m in ("aubc", "final")}
    for fam in FAMILIES:
        members = [c for c in claims if c.group == fam.group]
        if not members:
            continue
        tests = []
        for c in members:
            d = (wide[fam.metric][c.a] - wide[fam.metric][c.b]).dropna().to_numpy()
            tests.append((c, paired_test(d, MARGINS[fam.metric])))
        p_adj = holm(np.array([t.p for _, t in tests]))
        tost_adj = holm(np.array([t.p_tost for _, t in tests]))
        for (c, t), pa, ta in zip(tests, p_adj, tost_adj, strict=True):
            rows.append(
                {
                    "claim": c.text,
                    "source": c.source,
                    "family": fam.title,
                    "role": fam.role,
                    "family size": len(members),
                    "A": c.a,
                    "B": c.b,
                    "relation": c.relation,
                    "metric": fam.metric,
                    "seeds": t.n,
                    "Δ mean": t.mean,
                    "sd": t.sd,
                    "CI low": t.ci_t[0],
                    "CI high": t.ci_t[1],
                    "effect d_z": t.effect,
                    "A ahead": f"{t.wins}/{t.n}",
                    "p": t.p,
                    "p Holm": pa,
                    "p TOST Holm": ta,
                    "margin": t.margin,
                    "verdict": verdict(t, c.relation, pa, ta),
                }
            )
    return pd.DataFrame(rows)


def paper_claims(dataset: str) -> pd.DataFrame:
    """The plan applied to the paper's own per-seed numbers on ``dataset`` (its five
    per-seed files; claims whose methods are only in its averages — FVAAL+FGSM-Adv(10),
    the PGD-Adv controls — get none, so its primary family has three claims)."""
    paper = paper_table(dataset, per_seed=True)
    have = set(paper["method"])
    return _test_claims(paper, [c for c in CLAIMS if {c.a, c.b} <= have])


def claims(table: pd.DataFrame, dataset: str | None = None) -> pd.DataFrame:
    """Every claim (``CLAIMS``) whose two methods ran, as paired statistics over seeds
    under the analysis plan (``FAMILIES``, ``dalv.stats``; the rule is
    ``dalv.stats.VERDICT_RULES``), for AUBC and final accuracy. The same plan on the
    paper's own per-seed numbers (``paper_claims``) sits beside ours as ``paper …``
    columns, with the paper's own families.

    Returns one row per (claim, metric), primary family first.
    """
    dataset = dataset or str(table["dataset"].iloc[0])
    have = set(table["method"])
    ours_claims = [c for c in CLAIMS if c.a in have and c.b in have]
    if not ours_claims:
        return pd.DataFrame()
    ours = _test_claims(table, ours_claims)
    try:
        theirs = paper_claims(dataset)
    except ValueError:
        return ours
    if len(theirs):
        keep = {
            "Δ mean": "paper Δ",
            "CI low": "paper CI low",
            "CI high": "paper CI high",
            "seeds": "paper seeds",
            "p Holm": "paper p Holm",
            "verdict": "paper verdict",
        }
        theirs = theirs[["claim", "metric", *keep]].rename(columns=keep)
        ours = ours.merge(theirs, on=["claim", "metric"], how="left")
    return ours


VERDICT_COLORS = {
    "supported": ("#1a7f37", "#dcf5e3"),
    "contradicted": ("#b42318", "#fde4e1"),
    "not supported": ("#9a5b00", "#fff1d6"),
    "inconclusive": ("#555555", "#ececec"),
}
"""verdict → (text colour, background colour) in the reports' HTML."""


def _chip(verdict_: str) -> str:
    fg, bg = VERDICT_COLORS.get(str(verdict_), ("#000", "#fff"))
    return (
        f'<span style="background:{bg};color:{fg};font-weight:600;'
        f'padding:1px 6px;border-radius:4px;white-space:nowrap">{verdict_}</span>'
    )


def _interval(lo: float, hi: float, digits: int = 4) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "–"
    return f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _strategy_of(claim_text: str) -> str:
    return claim_text.rsplit(" for ", 1)[-1]


def headline(
    cl: pd.DataFrame,
    dataset: str,
    n_seeds: int,
) -> str:
    """The report's first lines (HTML): what the paper claims, what dalv found in the
    primary family (colour-coded verdicts with intervals), and what the same plan says
    of the paper's own per-seed numbers."""
    prim = cl[cl["role"] == "primary"] if len(cl) and "role" in cl else pd.DataFrame()
    lines = [
        "<b>The paper claims</b> that counterexamples from a verifier (FV-Adv) help "
        "active learning more than FGSM's adversarial examples (FGSM-Adv), for every "
        "query strategy: DFAL, BADGE, Random and its own FVAAL (AUBC, protocol §7)."
    ]
    if len(prim):
        parts = [
            f"{_strategy_of(r['claim'])} {_chip(r['verdict'])} "
            f"Δ {r['Δ mean']:+.4f} {_interval(r['CI low'], r['CI high'])}"
            for _, r in prim.iterrows()
        ]
        lines.append(
            f"<b>dalv finds</b> ({dataset}, {n_seeds} seed{'s' * (n_seeds != 1)}, "
            "primary family of "
            f"{len(prim)}, Holm at α = {ALPHA}; Δ AUBC FV-Adv − FGSM-Adv, 95 % t "
            "interval): " + " · ".join(parts) + "."
        )
        if "paper verdict" in prim and prim["paper verdict"].notna().any():
            pp = prim[prim["paper verdict"].notna()]
            parts = [
                f"{_strategy_of(r['claim'])} {_chip(r['paper verdict'])} "
                f"Δ {r['paper Δ']:+.4f} "
                f"{_interval(r['paper CI low'], r['paper CI high'])}"
                for _, r in pp.iterrows()
            ]
            lines.append(
                "<b>The paper's own per-seed numbers</b>, same plan "
                f"(its {PAPER_DATASET_NAMES.get(dataset, dataset)} files, 5 seeds, "
                f"family of {len(pp)}): " + " · ".join(parts) + "."
            )
        else:
            lines.append(
                "<b>The paper's own per-seed numbers</b>: none for these pairs (its "
                "per-seed files have no FVAAL+FGSM-Adv(10), and none exist for this "
                "pool if it is not one of the paper's datasets), so no verdict to set "
                "beside these."
            )
    else:
        lines.append(
            "<b>dalv finds</b>: nothing on the thesis here — this grid runs none of "
            "the primary family's pairs (FV-Adv(10) beside FGSM-Adv(10) for one "
            "strategy); its other comparisons, if any, are secondary and below."
        )
        lines.append(
            "The primary family is answered by <code>reports/paper-mnist</code> "
            "(and <code>reports/summary</code> across datasets)."
        )
    return "".join(f'<p style="margin:0.3em 0">{line}</p>' for line in lines)


PAPER_DATASET_NAMES = {
    "mnist": "MNIST",
    "mnist5k": "MNIST",
    "digits": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
}


def claims_html(cl: pd.DataFrame) -> str:
    """The claims as one coloured table per family, primary first (HTML): rounded
    numbers, intervals as [low, high], verdicts colour-coded, the paper's own verdict
    beside ours."""
    if not len(cl):
        return "<p><i>None of the compared pairs ran in this grid.</i></p>"
    out = [CLAIMS_CSS]
    for fam in FAMILIES:
        rows = cl[(cl["family"] == fam.title) & (cl["metric"] == fam.metric)]
        if not len(rows):
            continue
        label = {
            "primary": "Primary family",
            "secondary": "Secondary family",
            "control": "Control family (secondary)",
        }[fam.role]
        n = int(rows["family size"].iloc[0])
        out.append(
            f'<h4 style="margin-bottom:0.2em">{label}: {fam.title} '
            f'<span style="font-weight:normal">(Holm over {n} claim'
            f"{'s' if n != 1 else ''}, α = {ALPHA}"
            f"{'' if fam.role == 'primary' else '; exploratory'})</span></h4>"
        )
        body = pd.DataFrame(
            {
                "claim": rows["claim"],
                "seeds": rows["seeds"].astype(int),
                "Δ mean": rows["Δ mean"].map(lambda v: f"{v:+.4f}"),
                "95 % CI": [
                    _interval(a, b)
                    for a, b in zip(rows["CI low"], rows["CI high"], strict=True)
                ],
                "d_z": rows["effect d_z"].map(
                    lambda v: f"{v:+.2f}" if np.isfinite(v) else "–"
                ),
                "A ahead": rows["A ahead"],
                "p Holm": rows["p Holm"].map(_p),
                "p TOST Holm": rows["p TOST Holm"].map(_p),
                "verdict": rows["verdict"].map(_chip),
            }
        )
        if "paper verdict" in rows:
            body["paper Δ"] = rows["paper Δ"].map(
                lambda v: f"{v:+.4f}" if np.isfinite(v) else "–"
            )
            body["paper 95 % CI"] = [
                _interval(a, b)
                for a, b in zip(
                    rows["paper CI low"], rows["paper CI high"], strict=True
                )
            ]
            body["paper verdict"] = rows["paper verdict"].map(
                lambda v: _chip(v) if isinstance(v, str) else "–"
            )
        out.append(
            body.to_html(index=False, escape=False, border=0, classes="dalv-claims")
        )
    return "\n".join(out)


CLAIMS_CSS = """<style>
table.dalv-claims { border-collapse: collapse; font-size: 0.85em;
  margin: 0.3em 0 1.2em }
table.dalv-claims th, table.dalv-claims td { padding: 3px 8px; text-align: left;
  white-space: nowrap; border-bottom: 1px solid #ddd }
table.dalv-claims td:first-child { white-space: normal; min-width: 16em }
</style>"""


def _p(v: float) -> str:
    if not np.isfinite(v):
        return "–"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def plan_markdown(n_seeds: int | None = None, dataset: str | None = None) -> str:
    """The analysis plan (protocol §10) as a report prints it, with the power of the
    primary family at ``n_seeds`` seeds (at ``dataset``'s pilot sd, ``PILOT_SDS``)."""
    sd = PILOT_SDS.get(dataset or "", PILOT_SD)["aubc"]
    need = planned_seeds(sd)
    need_hi = planned_seeds(sd_upper(sd, PILOT_DF))
    lines = [
        "**Analysis plan** (fixed before the runs it decides; protocol §10).",
        f"*Primary family*: FV-Adv(10) beats FGSM-Adv(10) for DFAL, BADGE, Random and "
        f"FVAAL (FVAAL vs FVAAL+FGSM-Adv(10)), on AUBC; Holm within the family at "
        f"family-wise α = {ALPHA}. *Secondary families*, each with its own Holm and "
        "read as exploratory: the same pairs on final accuracy; the paper's other "
        "claims on AUBC, and on final accuracy. *Control family* (secondary): FV-Adv "
        "vs PGD-Adv and PGD-Adv vs FGSM-Adv, per metric.",
        "*Intervals*: 95 % t intervals of the mean paired difference (no bootstrap: at "
        "5 seeds it covers about 83 %).",
        f"*Equivalence margins*: ±{MARGIN_SD:g} pilot paired sds on both metrics — "
        f"AUBC ±{MARGINS['aubc']:.4f}, final accuracy ±{MARGINS['final']:.4f} (pilot: "
        "`reports/pilot/paper-mnist-5-seeds.csv`, 5 seeds, paired sd "
        f"{PILOT_SD['aubc']:.4f} AUBC and "
        f"{PILOT_SD['final']:.4f} final accuracy over the primary pairs).",
        f"*Seeds*: 80 % power for a 0.005 AUBC effect in the primary family (Holm over "
        f"{PRIMARY_SIZE}, paired t, noncentral t) needs **{need} seeds** at the pilot "
        f"sd ({need_hi} if the sd is at its 80 % upper confidence limit)"
        + (
            f"; on Fashion-MNIST the pilot is its own first 5 seeds (paired sd "
            f"{sd:.5f} AUBC, `reports/pilot/paper-fashion-mnist-5-seeds.csv`)."
            if dataset == "fashion_mnist"
            else "."
        ),
    ]
    if n_seeds:
        pw = holm_power(EFFECT["aubc"], sd, n_seeds, PRIMARY_SIZE)
        lines.append(
            f"*This report*: {n_seeds} seed{'s' if n_seeds != 1 else ''}, so the "
            f"primary family has {pw:.0%} power for a 0.005 AUBC effect"
            + (
                " — fewer seeds than the plan asks for: its verdicts are a pilot's."
                if n_seeds < need
                else "."
            )
        )
    return "\n\n".join(lines)


def report_warnings(table: pd.DataFrame) -> list[str]:
    """Warnings a reader must see before the numbers: a smoke-size grid, accuracies
    near chance, searches cut by the clock."""
    out = []
    n_s, n_c = table["seed"].nunique(), table["cycle"].nunique()
    if n_s < 3 or n_c < 10:
        out.append(
            f"Smoke-size grid ({n_s} seed{'s' if n_s != 1 else ''} × {n_c} cycles): "
            "this report shows that the pipeline runs. Its numbers and verdicts are "
            "not evidence about the paper's claims."
        )
    final = per_seed(table).groupby("method")["final"].mean()
    low = final[final < 0.3]
    if len(low):
        out.append(
            "Near chance (10 classes: 0.10): final accuracy below 0.30 for "
            + ", ".join(f"{m} ({v:.2f})" for m, v in low.items())
            + "."
        )
    cut = timeouts(table)
    if len(cut):
        out.append(
            f"{len(cut)} row{'s' if len(cut) != 1 else ''} "
            f"({cut['method'].nunique()} method"
            f"{'s' if cut['method'].nunique() != 1 else ''}) had FV-Adv searches cut "
            "by the seconds safety net (<code>aug_timeouts</code> > 0, in red below): "
            "what those "
            "cells trained on depends on the machine's speed and load there, so a "
            "seed does not fix them."
        )
    return out


def timeouts(table: pd.DataFrame) -> pd.DataFrame:
    """The results rows in which the seconds safety net cut FV-Adv searches
    (``aug_timeouts`` > 0)."""
    if "aug_timeouts" not in table:
        return table.iloc[:0]
    cols = [
        c
        for c in (
            "method",
            "seed",
            "cycle",
            "aug_timeouts",
            "aug_requested",
            "aug_found",
            "augment_s",
        )
        if c in table
    ]
    return table.loc[table["aug_timeouts"].fillna(0) > 0, cols]


def grid_time(table: pd.DataFrame, config: dict) -> str:
    """The grid's time from the rows' own per-phase seconds (a rerun that reads
    finished cells back does not change it), with the last ``dalv reproduce`` call's
    wall time only where that call computed something."""
    cols = [c for c in ("query_s", "augment_s", "train_s", "eval_s") if c in table]
    core_s = float(table[cols].to_numpy().sum())
    jobs = int(config.get("jobs") or 1)
    text = (
        f"The grid's cells spent {_hours(core_s)} of compute inside their cycles "
        f"(the sum of every row's per-phase seconds); with {jobs} cell"
        f"{'s' if jobs != 1 else ''} side by side that is at least "
        f"{_hours(core_s / jobs)} of wall time."
    )
    last = config.get("grid_seconds")
    if isinstance(last, (int, float)) and last >= 0.5 * core_s / jobs:
        text += (
            f" The `dalv reproduce` call that wrote this report took {_hours(last)}."
        )
    elif isinstance(last, (int, float)):
        text += (
            f" The last `dalv reproduce` call took {last:.0f} s: it read finished "
            "cells back instead of rerunning them."
        )
    return text


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def dataset_note(dataset: str, comparable: bool) -> str:
    """What the AUBC table's levels mean for this dataset and protocol."""
    if dataset == "mnist5k":
        return (
            "On mnist5k (a 4,000-image pool and a 1,000-image test set) absolute "
            "values differ from the paper's full-MNIST numbers; compare rankings and "
            "paired differences, not levels."
        )
    if dataset == "digits":
        return (
            "On scikit-learn's 8×8 digits (a tiny smoke-test pool) levels are not "
            "comparable with the paper's MNIST numbers at all."
        )
    if comparable:
        name = PAPER_DATASET_NAMES.get(dataset, dataset)
        return (
            f"These runs follow the paper's protocol on {name}, so levels compare "
            "directly with the paper's 5-seed values."
        )
    return (
        "These runs do not follow the paper's protocol point for point (pool, cycles "
        "or query size differ), so compare rankings and paired differences, not levels."
    )


def diversity(
    runs: dict[str, Path],
    cycles: tuple[int, ...] = (0, -1),
    max_points: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Pairwise-distance diversity of the adversarial examples each run added (protocol
    §5).

    For each run folder and each of ``cycles`` (negative = from the end), the examples
    added in that cycle are embedded by that cycle's model (the one trained on them, as
    the reference code's measure intends), in the **penultimate** layer (what the paper
    intends)
    and in the **logit** layer (what the reference code measured). Two scopes: **per
    image** pools the distances between examples of the same queried image (what a
    method's examples look like around one point, free of which images each method
    queried and how many examples it got), and **all** compares every pair (the paper's
    measure). At most ``max_points`` examples (a seeded subsample) per cell are used for
    scope "all".

    Args:
        runs: label → run folder (``<method>/seed_<s>``).
    """
    import torch

    from dalv.loop import load_cycle
    from dalv.metrics import pairwise_distance_stats, within_group_distance_stats

    rows = []
    for label, run_dir in runs.items():
        n_cycles = len(list((Path(run_dir) / "checkpoints").glob("cycle_*.pt")))
        for c in cycles:
            cyc = c if c >= 0 else n_cycles + c
            if not 0 <= cyc < n_cycles:
                continue
            st = load_cycle(run_dir, cyc)
            x, src = st["adv_x"], np.asarray(st["adv_src"])
            if len(x) < 2:
                continue
            model = st["model"]
            with torch.no_grad():
                feats = {"penultimate": model[:-1](x), "logits": model(x)}
            keep = np.arange(len(x))
            if len(x) > max_points:
                keep = np.sort(
                    np.random.default_rng(seed).choice(
                        len(x), max_points, replace=False
                    )
                )
            for layer, f in feats.items():
                f = f.double().numpy()
                for scope, stats in (
                    ("all", pairwise_distance_stats(f[keep])),
                    ("per image", within_group_distance_stats(f, src)),
                ):
                    rows.append(
                        {
                            "run": label,
                            "cycle": cyc,
                            "layer": layer,
                            "scope": scope,
                            **stats,
                        }
                    )
    return pd.DataFrame(rows)


def diversity_summary(div: pd.DataFrame) -> pd.DataFrame:
    """Mean pairwise distance per method, scope, layer and cycle: mean ± std over seeds.

    ``div`` is ``diversity``'s table with a ``method`` column (``run`` may hold the
    seed). Cycle -1 in the index stands for "the last cycle" whatever its number.
    """
    if not len(div):
        return pd.DataFrame(
            columns=[
                "method",
                "scope",
                "layer",
                "cycle",
                "points",
                "mean distance",
                "std over seeds",
                "seeds",
            ]
        )
    d = div.copy()
    last = d.groupby("run")["cycle"].transform("max")
    d["cycle"] = np.where((d["cycle"] == last) & (d["cycle"] > 0), -1, d["cycle"])
    g = d.groupby(["method", "scope", "layer", "cycle"], sort=False)
    out = pd.DataFrame(
        {
            "points": g["num_points"].mean().round().astype(int),
            "mean distance": g["mean"].mean(),
            "std over seeds": g["mean"].std(),
            "seeds": g.size(),
        }
    )
    return out.reset_index().replace({"cycle": {-1: "last"}})


def timings(table: pd.DataFrame) -> pd.DataFrame:
    """Mean seconds per cycle for each phase, per method."""
    cols = [c for c in ("query_s", "augment_s", "train_s", "eval_s") if c in table]
    t = table.groupby("method", sort=False)[cols].mean()
    t["total_s"] = t.sum(1)
    return t.reset_index()


FIDELITY_CYCLES = (0, 1, 5)
"""Cycles at which ``fidelity`` reports the difference (besides the last)."""


def fidelity(table: pd.DataFrame) -> pd.DataFrame:
    """How far our mean curve is from the paper's, per method: RMS and largest absolute
    difference over cycles, and the difference at cycles 0, 1, 5 and the last, where
    the paper's curves are comparable (``paper_curves_for``); empty otherwise."""
    paper = paper_curves_for(table)
    if paper is None:
        return pd.DataFrame()
    ours = table.groupby(["method", "cycle"])["test_acc"].mean()
    theirs = paper.set_index(["method", "cycle"])["test_acc"]
    rows = []
    for m in sorted(set(table["method"]) & set(paper["method"])):
        d = (ours.loc[m] - theirs.loc[m]).dropna()
        rows.append(
            {
                "method": m,
                "RMS Δ": float(np.sqrt((d**2).mean())),
                "max |Δ|": float(d.abs().max()),
                **{
                    f"Δ cycle {c}": float(d.loc[c]) if c in d.index else np.nan
                    for c in FIDELITY_CYCLES
                },
                "Δ last": float(d.iloc[-1]),
            }
        )
    return pd.DataFrame(rows)


def verifier_work(table: pd.DataFrame) -> pd.DataFrame:
    """What the augmenters did per cycle, averaged over seeds and cycles: examples
    requested and found, where they came from (the strategy's own example, an FGSM
    sweep, PGD, a solver), radius steps proved, and points left unknown."""
    cols = [c for c in table.columns if c.startswith("aug_")]
    if not cols:
        return pd.DataFrame()
    t = table.groupby("method", sort=False)[cols].mean()
    t = t.dropna(how="all").rename(columns=lambda c: c[4:])
    return t.reset_index()


def paper_curves_for(table: pd.DataFrame) -> pd.DataFrame | None:
    """The paper's per-cycle curves, when the runs follow its protocol on its dataset
    (same dataset, protocol ``paper``, the paper's query size and 20 cycles); else None.

    A curve on another pool (mnist5k, digits) or with fewer cycles is not comparable
    point for point, so it gets no paper curve beside it.
    """
    dataset = str(table["dataset"].iloc[0])
    protocol = set(table["protocol"]) if "protocol" in table else {"paper"}
    try:
        paper = paper_table(dataset)
    except ValueError:
        return None
    first = table[table["cycle"] == 0]["n_labeled"]
    same_budget = len(first) and int(first.iloc[0]) == int(
        paper[paper["cycle"] == 0]["n_labeled"].iloc[0]
    )
    same_cycles = table["cycle"].max() == paper["cycle"].max()
    if dataset != paper["dataset"].iloc[0] or protocol != {"paper"}:
        return None
    return paper if same_budget and same_cycles else None


def save_figures(table: pd.DataFrame, fig_dir: Path) -> list[Path]:
    """The report's learning-curve figures, as PNG and SVG: small multiples (one panel
    per strategy with its augmentations) and, when they ran, the paper's two figures
    (with / without adversarial examples). The paper's curves are drawn thin and faint
    only where the dataset and protocol match (``paper_curves_for``). Returns the PNGs.
    """
    import matplotlib.pyplot as plt

    from dalv.plots import curves_by_strategy, learning_curves, save_figure

    fig_dir = Path(fig_dir)
    dataset = str(table["dataset"].iloc[0])
    paper = paper_curves_for(table)
    have = list(summarize(table)["method"])
    paths = []
    fig = curves_by_strategy(
        table,
        paper=paper,
        title=f"{dataset}: test accuracy by query strategy (mean ± 1 std over seeds)",
    )
    paths.append(save_figure(fig, fig_dir / "curves_by_strategy")[0])
    plt.close(fig)
    for name, ms in FIGURE_METHODS.items():
        sel = [m for m in ms if m in have]
        if len(sel) < 2:
            continue
        fig, ax = plt.subplots(figsize=(7.5, 4.6))
        label = "with" if name == "advs" else "without"
        learning_curves(
            table,
            x="cycle",
            methods=sel,
            paper=paper,
            ax=ax,
            title=f"{dataset}: the paper's figure {label} adversarial examples",
        )
        paths.append(save_figure(fig, fig_dir / f"curves_{name}")[0])
        plt.close(fig)
    return paths


def _git_commit() -> str:
    import subprocess

    from dalv.paths import project_root

    root = project_root()
    if root is None:
        return "unknown (not a clone)"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "dalv"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip() or "unknown"
    return commit + (" (with uncommitted changes to dalv/)" if dirty.strip() else "")


def environment() -> dict[str, str]:
    """Versions, commit, date and machine, for the report's last section. Torch threads
    per cell are recorded in every results row (``threads``), not here."""
    import datetime

    import torch

    env = {
        "dalv": __version__,
        "git commit": _git_commit(),
        "rendered": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
        "cpu cores": str(os.cpu_count()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    for mod in ("auto_LiRPA", "maraboupy"):
        try:
            from importlib.metadata import version

            env[mod] = version({"auto_LiRPA": "auto-LiRPA"}.get(mod, mod))
        except Exception:
            env[mod] = "not installed"
    return env


def notebook_path(name: str = "05_reproduce.ipynb") -> Path:
    """The repository's notebook (dalv is installed editable from a clone)."""
    here = Path(__file__).resolve().parent.parent / "notebooks" / name
    if not here.exists():
        raise FileNotFoundError(
            f"{here} not found: reports are rendered from a clone of the "
            f"dalv repository (pip install -e .)"
        )
    return here


def render_report(
    report_dir: Path, title: str = "dalv report", timeout: int = 1200
) -> Path:
    """Execute notebook 05 on ``report_dir`` and write ``index.html`` (inputs and the
    template's own notes hidden) and ``report.ipynb`` (the executed notebook) there.

    The kernel's and converters' chatter goes to a log that is shown only when the
    notebook fails.
    """
    import logging
    import tempfile

    import nbformat
    import papermill as pm

    report_dir = Path(report_dir).resolve()
    executed = report_dir / "report.ipynb"
    for name in ("papermill", "traitlets", "nbconvert"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with tempfile.TemporaryFile(mode="w+") as log, _stderr_to(log):
        try:
            pm.execute_notebook(
                str(notebook_path()),
                str(executed),
                # relative to cwd, so the kept notebook names no machine's paths
                parameters={"REPORT_DIR": ".", "TITLE": title},
                cwd=str(report_dir),
                progress_bar=False,
                kernel_name="python3",
                execution_timeout=timeout,
            )
        except Exception:
            log.seek(0)
            tail = log.read()[-3000:]
            raise RuntimeError(
                f"rendering the report failed; its log ends:\n{tail}"
            ) from None
    nb = nbformat.read(executed, as_version=4)
    nb.metadata["title"] = title
    pm_meta = nb.metadata.get("papermill", {})
    pm_meta.update(
        input_path=f"notebooks/{notebook_path().name}", output_path=executed.name
    )
    nbformat.write(nb, executed)
    html = notebook_html(nb, title)
    (report_dir / "index.html").write_text(html)
    return report_dir / "index.html"


_MATH = re.compile(
    r"(?P<code>```.*?```|`[^`\n]*`)"  # code is left alone
    r"|(?<![\\$])\$\$(?P<block>.+?)\$\$"
    r"|(?<![\\$\w])\$(?P<inline>[^\s$](?:[^$]*?[^\s$\\])?)\$(?![\d$])",
    re.S,
)


def math_to_mathml(markdown: str) -> str:
    """Markdown with its ``$…$`` and ``$$…$$`` equations turned into MathML, which
    browsers draw without a script or a network (code spans and fences are left
    alone). Returns the text unchanged when latex2mathml is not installed."""
    try:
        from latex2mathml.converter import convert
    except ImportError:
        return markdown

    def sub(m: re.Match) -> str:
        if m.group("code") is not None:
            return m.group("code")
        tex = m.group("block") if m.group("block") is not None else m.group("inline")
        display = "block" if m.group("block") is not None else "inline"
        try:
            return convert(tex.strip(), display=display)
        except Exception:  # leave what the converter cannot read as it was
            return m.group(0)

    return _MATH.sub(sub, markdown)


_CDN_SCRIPTS = (
    re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S),
    re.compile(
        r'<script[^>]*src="https://[^"]*(?:mathjax|require)[^"]*"[^>]*>\s*</script>'
    ),
)


def notebook_html(
    nb,
    title: str,
    *,
    exclude_input: bool = True,
    remove_cell_tags: tuple[str, ...] = ("remove-in-report",),
) -> str:
    """A notebook as one self-contained HTML page, readable offline: equations are
    rendered to MathML at build time (``math_to_mathml``, in markdown cells and
    markdown outputs) and the template's CDN scripts (MathJax, require.js) are left
    out. Used for the reports and available to the site's chapters.

    Args:
        nb: an ``nbformat`` notebook (not modified).
        title: the page title.
        exclude_input: hide code cells' inputs (reports) or show them (chapters).
        remove_cell_tags: cells with any of these tags are left out.
    """
    import copy
    import logging

    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = math_to_mathml(cell.source)
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/markdown" in data:
                data["text/markdown"] = math_to_mathml(data["text/markdown"])
    exporter = HTMLExporter(
        exclude_input=exclude_input,
        exclude_input_prompt=exclude_input,
        exclude_output_prompt=exclude_input,
    )
    exporter.log.setLevel(logging.ERROR)
    hide = TagRemovePreprocessor(remove_cell_tags=set(remove_cell_tags), enabled=True)
    exporter.register_preprocessor(hide, enabled=True)
    with contextlib.redirect_stderr(open(os.devnull, "w")):
        html, _ = exporter.from_notebook_node(
            nb, resources={"metadata": {"name": title}}
        )
    widgets = "application/vnd.jupyter.widget" in html
    for pattern in _CDN_SCRIPTS:
        if widgets and "require" in pattern.pattern:
            continue  # widget views need require.js
        html = pattern.sub("", html)
    return html


@contextlib.contextmanager
def _stderr_to(file):
    """Point file descriptor 2 (and so the kernel's stderr) at ``file`` meanwhile."""

    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


SUMMARY_SOURCES = {
    "mnist": "reports/paper-mnist",
    "fashion_mnist": "reports/paper-fashion-mnist",
}
"""dataset → the committed report whose runs the summary reads (relative to the
clone)."""

SUMMARY_DATASETS = ("mnist", "fashion_mnist", "cifar10")


def summary_table(root: Path | None = None) -> pd.DataFrame:
    """Every paper claim per dataset and source under the plan: dalv's runs (MNIST,
    Fashion-MNIST, from ``SUMMARY_SOURCES``; a row "not run yet" where the report does
    not exist) and the paper's own per-seed numbers (MNIST, Fashion-MNIST, CIFAR-10).
    Each (dataset, source) is its own study with its own families."""
    from dalv.paths import project_root

    root = Path(root or project_root() or ".")
    rows = []
    paper_group = [c for c in CLAIMS if c.group in ("thesis", "paper")]
    for ds in SUMMARY_DATASETS:
        studies = []
        if ds in SUMMARY_SOURCES:
            path = root / SUMMARY_SOURCES[ds] / "results.csv"
            if path.exists():
                t = pd.read_csv(path)
                have = set(t["method"])
                cl = _test_claims(t, [c for c in paper_group if {c.a, c.b} <= have])
                studies.append(("dalv", SUMMARY_SOURCES[ds], cl))
            else:
                studies.append(("dalv", SUMMARY_SOURCES[ds], None))
        studies.append(("paper", "the paper's per-seed files", paper_claims(ds)))
        for who, where, cl in studies:
            if cl is None:
                for c in paper_group:
                    for metric in ("aubc", "final"):
                        rows.append(
                            {
                                "claim": c.text,
                                "metric": metric,
                                "dataset": ds,
                                "source": who,
                                "from": where,
                                "verdict": "not run yet",
                            }
                        )
                continue
            cl = cl[cl["source"] == "paper"]
            for _, r in cl.iterrows():
                rows.append(
                    {
                        "claim": r["claim"],
                        "metric": r["metric"],
                        "dataset": ds,
                        "source": who,
                        "from": where,
                        "role": r["role"],
                        "family size": r["family size"],
                        "seeds": r["seeds"],
                        "Δ mean": r["Δ mean"],
                        "CI low": r["CI low"],
                        "CI high": r["CI high"],
                        "p Holm": r["p Holm"],
                        "verdict": r["verdict"],
                    }
                )
    return pd.DataFrame(rows)


def _summary_label(r) -> str:
    name = PAPER_DATASET_NAMES.get(r["dataset"], r["dataset"])
    who = "dalv" if r["source"] == "dalv" else "the paper's"
    seeds = f", {int(r['seeds'])} seeds" if pd.notna(r.get("seeds")) else ""
    return f"{name}, {who}{seeds} ({r['verdict']})"


def summary_paragraph(summary: pd.DataFrame) -> str:
    """What the evidence supports, in words, from the summary's primary-family rows."""
    prim = summary[
        (summary["metric"] == "aubc")
        & summary["claim"].str.startswith("FV-Adv beats FGSM-Adv")
    ]
    parts = []
    for (ds, who), g in prim.groupby(["dataset", "source"], sort=False):
        name = PAPER_DATASET_NAMES.get(ds, ds)
        whose = "dalv's runs" if who == "dalv" else "the paper's own per-seed numbers"
        if (g["verdict"] == "not run yet").all():
            parts.append(f"On {name}, {whose}: not run yet.")
            continue
        by = {
            v: [_strategy_of(c) for c in g.loc[g["verdict"] == v, "claim"]]
            for v in ("supported", "contradicted", "not supported", "inconclusive")
        }
        said = [f"{v} for {', '.join(ms)}" for v, ms in by.items() if ms]
        parts.append(
            f"On {name}, {whose} ({int(g['seeds'].max())} seeds): "
            + "; ".join(said)
            + "."
        )
    n_plan = planned_seeds()
    return (
        "The paper's thesis is that a verifier's counterexamples (FV-Adv) help more "
        "than FGSM's examples (FGSM-Adv). Tested as the plan fixes it (paired t "
        f"over seeds, Holm within the primary family, α = {ALPHA}, AUBC): "
        + " ".join(parts)
        + " “Supported” means the corrected test rejects no difference with FV-Adv "
        "ahead; “not supported” that the difference is shown to lie within the "
        f"±{MARGINS['aubc']:.4f} margin; “inconclusive” that the seeds cannot tell. "
        f"dalv's 5-seed MNIST runs are the plan's pilot: the plan asks for {n_plan} "
        "seeds for 80 % power at a 0.005 AUBC effect, so an inconclusive verdict there "
        "is an open question, not a negative answer. CIFAR-10 rows are the paper's "
        "numbers only; dalv has not run CIFAR-10."
    )


def render_summary(out_dir: Path | str = "reports/summary", root: Path | None = None):
    """Write the summary across datasets: ``summary.csv``, one forest plot per claim
    (``figures/``) and ``index.html`` (self-contained, answer first). Regenerated from
    the committed reports and the paper's per-seed files, never written by hand.

    Run it with ``python -m dalv.report summary``.
    """
    import html as html_lib

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dalv.plots import forest_rows

    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    summary = summary_table(root)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    sections = []
    order = [c.text for c in CLAIMS if c.group in ("thesis", "paper")]
    for i, claim in enumerate(order):
        g = summary[summary["claim"] == claim]
        g = g.iloc[np.argsort(g["metric"].map({"aubc": 0, "final": 1}), kind="stable")]
        figs = []
        for metric in ("aubc", "final"):
            rows = g[g["metric"] == metric].copy()
            ran = rows[rows["verdict"] != "not run yet"]
            if not len(ran):
                continue
            ran = ran.assign(
                label=[_summary_label(r) for _, r in ran.iterrows()],
                **{"Δ": ran["Δ mean"], "low": ran["CI low"], "high": ran["CI high"]},
            )
            stem = f"claim_{i:02d}_{metric}"
            fig = forest_rows(
                ran,
                margin=MARGINS[metric],
                xlabel=f"Δ {METRIC_NAMES[metric]}, A − B, with 95 % t interval",
                title=f"{claim} — {METRIC_NAMES[metric]}",
            )
            fig.savefig(out / "figures" / f"{stem}.png", dpi=100, bbox_inches="tight")
            plt.close(fig)
            figs.append(f'<img src="figures/{stem}.png" style="max-width:49%">')
        table = pd.DataFrame(
            {
                "metric": g["metric"].map(METRIC_NAMES),
                "dataset": g["dataset"].map(PAPER_DATASET_NAMES),
                "from": [
                    "dalv's runs" if s == "dalv" else "the paper's numbers"
                    for s in g["source"]
                ],
                "family": [
                    r.get("role", "–") if isinstance(r.get("role"), str) else "–"
                    for _, r in g.iterrows()
                ],
                "seeds": g.get("seeds", pd.Series(dtype=float)).map(
                    lambda v: "–" if pd.isna(v) else str(int(v))
                ),
                "Δ mean": g.get("Δ mean", pd.Series(dtype=float)).map(
                    lambda v: "–" if pd.isna(v) else f"{v:+.4f}"
                ),
                "95 % CI": [
                    _interval(a, b) if pd.notna(a) else "–"
                    for a, b in zip(g.get("CI low"), g.get("CI high"), strict=True)
                ],
                "p Holm": g.get("p Holm").map(lambda v: "–" if pd.isna(v) else _p(v)),
                "verdict": g["verdict"].map(
                    lambda v: _chip(v) if v in VERDICT_COLORS else f"<i>{v}</i>"
                ),
            }
        )
        sections.append(
            f"<h3>{html_lib.escape(claim)}</h3>\n"
            + "\n".join(figs)
            + "\n"
            + table.to_html(index=False, escape=False, border=0, classes="dalv-claims")
        )
    para = summary_paragraph(summary)
    prim = summary[(summary["role"] == "primary")] if "role" in summary else summary
    heads = []
    for (ds, who), g in prim.groupby(["dataset", "source"], sort=False):
        name = PAPER_DATASET_NAMES.get(ds, ds)
        whose = "dalv" if who == "dalv" else "the paper's own numbers"
        chips = " · ".join(
            f"{_strategy_of(r['claim'])} {_chip(r['verdict'])}" for _, r in g.iterrows()
        )
        heads.append(f"<li><b>{name}, {whose}</b>: {chips}</li>")
    missing = summary[summary["verdict"] == "not run yet"]
    for ds in missing["dataset"].unique():
        heads.append(
            f"<li><b>{PAPER_DATASET_NAMES.get(ds, ds)}, dalv</b>: <i>not run yet</i> "
            f"(<code>{SUMMARY_SOURCES[ds]}</code> does not exist)</li>"
        )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>dalv · summary across datasets</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; line-height: 1.45; color: #222 }}
code {{ background: #f4f4f4; padding: 0 3px }}
</style>{CLAIMS_CSS}</head><body>
<h1>dalv · the paper's claims across datasets</h1>
<p><b>The paper claims</b> that counterexamples from a verifier (FV-Adv) help deep
active learning more than FGSM's adversarial examples (FGSM-Adv), for every query
strategy. <b>Primary family</b> (FV-Adv beats FGSM-Adv, AUBC; Holm within each
dataset and source, α = {ALPHA}):</p>
<ul>{"".join(heads)}</ul>
<p>{html_lib.escape(para)}</p>
<p>{_md_inline(plan_markdown())}</p>
<p>Rows: MNIST from dalv's runs (<code>reports/paper-mnist</code>), Fashion-MNIST
from dalv's runs (<code>reports/paper-fashion-mnist</code>) where they exist, and the
paper's own per-seed numbers for MNIST, Fashion-MNIST and CIFAR-10 (marked as the
paper's; dalv ships them as package data). The paper's per-seed files have no
FVAAL+FGSM-Adv(10), so its primary family has three claims. Regenerate with
<code>python -m dalv.report summary</code>; the numbers are in
<a href="summary.csv">summary.csv</a>.</p>
{"".join(sections)}
</body></html>
"""
    (out / "index.html").write_text(page)
    return out / "index.html"


def _md_inline(text: str) -> str:
    """The plan's markdown (bold, italics, code, paragraphs) as simple HTML."""
    import html as html_lib

    t = html_lib.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"\*(.+?)\*", r"<i>\1</i>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return t.replace("\n\n", "<br>")


if __name__ == "__main__":  # python -m dalv.report summary [OUT_DIR]
    if len(sys.argv) < 2 or sys.argv[1] != "summary":
        sys.exit("usage: python -m dalv.report summary [OUT_DIR]")
    print(render_summary(sys.argv[2] if len(sys.argv) > 2 else "reports/summary"))
