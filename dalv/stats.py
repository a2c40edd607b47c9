"""Statistics for claims about paired runs: intervals, multiplicity, equivalence, power,
and the analysis plan that fixes them before the data (protocol §10).

Owns ``PairedTest`` (one comparison of two methods over seeds), ``paired_test``,
``holm``, ``tost``, ``verdict``, ``holm_power`` / ``seeds_needed`` and the plan's
constants (``ALPHA``, ``PILOT_SD``, ``MARGIN_SD``, ``MARGINS``, ``EFFECT``,
``PRIMARY_SIZE``). May import numpy, scipy and pandas.

Every method of a seed starts from the same initial labels and model, so two methods
are compared through their per-seed differences d_s = m_A(s) − m_B(s) (AUBC or final
accuracy). For n seeds:

* the mean difference with its 95 % t interval, mean ± t_{n−1, 0.975} · sd / √n (the
  reported interval; a percentile bootstrap covered only about 83 % at 5 seeds, so
  there is none);
* the standardised effect d_z = mean / sd;
* a two-sided one-sample t test of "no difference", its p value Holm-adjusted within
  the claim's family (``holm``; the families are set by the plan, protocol §10);
* an equivalence test (two one-sided t tests, ``tost``) with the plan's margin:
  equivalence is shown when the whole 90 % interval lies inside (−margin, +margin).

Verdicts (``verdict``), at family-wise level α = 0.05 within each family:

* a claim "A beats B" is **supported** when the adjusted test rejects "no difference"
  and A is ahead; **contradicted** when it rejects and B is ahead; **not supported**
  when equivalence within the margin is shown (the data rule out a difference as large
  as the margin); otherwise **inconclusive**.
* a claim "A is on par with B" is **supported** when equivalence is shown (the TOST p
  value, Holm-adjusted); **contradicted** when the adjusted test rejects "no
  difference" and the interval lies outside the margin on one side; otherwise
  **inconclusive**.

Power is computed under the rule as applied (``holm_power``): a paired t test inside a
Holm family of m claims, for a claim whose effect is real while the family's other
claims are null (the least favourable case, where Holm's first step, α/m, is the bar).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as st

__all__ = [
    "ALPHA",
    "PILOT_SD",
    "PILOT_DF",
    "MARGIN_SD",
    "MARGINS",
    "EFFECT",
    "PRIMARY_SIZE",
    "POWER",
    "PairedTest",
    "paired_test",
    "holm",
    "tost",
    "verdict",
    "holm_power",
    "seeds_needed",
    "planned_seeds",
    "sd_upper",
    "FASHION_PILOT_SD",
    "PILOT_SDS",
    "VERDICT_RULES",
]

ALPHA = 0.05
"""Family-wise error rate within each family of claims (Holm within the family)."""

PILOT_SD = {"aubc": 0.0039, "final": 0.0037}
"""Paired sd of the per-seed differences in the pilot:
``reports/pilot/paper-mnist-5-seeds.csv`` (the paper's MNIST protocol, 5 seeds), pooled
over the four primary-family pairs (FV-Adv(10) vs FGSM-Adv(10) for DFAL, BADGE, Random
and FVAAL; 4 × 4 = 16 degrees of freedom).
``tests/test_stats.py`` recomputes them from the committed CSV."""

PILOT_DF = 16
"""Degrees of freedom of ``PILOT_SD``."""

FASHION_PILOT_SD = {"aubc": 0.00762, "final": 0.00757}
"""The same, from Fashion-MNIST's own 5-seed internal pilot
(``reports/pilot/paper-fashion-mnist-5-seeds.csv``, 16 degrees of freedom; variance
only, computed before any later seed ran). It sets Fashion-MNIST's seed count
(``planned_seeds(FASHION_PILOT_SD["aubc"])`` = 30); the margins stay those fixed from
``PILOT_SD``."""

PILOT_SDS = {"mnist": PILOT_SD, "fashion_mnist": FASHION_PILOT_SD}
"""The pilot sd that sets each dataset's seed count (others: ``PILOT_SD``)."""

MARGIN_SD = 1.28
"""Equivalence margins in pilot sds, the same for both metrics: 1.28 sd is 0.005 AUBC,
the smallest AUBC effect the plan is powered to find."""

MARGINS = {m: round(MARGIN_SD * s, 4) for m, s in PILOT_SD.items()}
"""Equivalence margins per metric (AUBC 0.0050, final accuracy 0.0047)."""

EFFECT = {"aubc": 0.005}
"""The smallest effect worth finding, per metric of the primary family."""

PRIMARY_SIZE = 4
"""Claims in the primary family (FV-Adv beats FGSM-Adv for DFAL, BADGE, Random,
FVAAL)."""

POWER = 0.8
"""The power the seed count is chosen for."""

Verdict = Literal["supported", "not supported", "contradicted", "inconclusive"]

VERDICT_RULES = (
    "Per-seed paired differences d = A − B; the mean with its 95 % t interval; a "
    "two-sided t test of d = 0 with Holm's correction within the claim's family "
    f"(family-wise α = {ALPHA} in each family; the primary family is the paper's "
    "thesis, the others are secondary); equivalence by two one-sided t tests (TOST) "
    "with margins fixed in advance. 'A beats B' is supported when the adjusted test "
    "rejects and A is ahead, contradicted when it rejects and B is ahead, not "
    "supported when equivalence within the margin is shown, else inconclusive. 'A is "
    "on par with B' is supported when the (Holm-adjusted) TOST shows equivalence, "
    "contradicted when the adjusted test rejects and the interval lies beyond the "
    "margin, else inconclusive."
)


@dataclass(frozen=True)
class PairedTest:
    """One paired comparison of A and B over seeds.

    Attributes:
        n: seeds both methods ran.
        mean: mean difference A − B.
        sd: standard deviation of the differences (ddof 1; NaN for n < 2).
        ci_t: 95 % t interval of the mean.
        effect: standardised effect d_z = mean / sd.
        p: two-sided p value of the t test of "no difference".
        p_tost: p value of the equivalence test within ±``margin``.
        margin: the equivalence margin.
        wins: seeds on which A is ahead.
    """

    n: int
    mean: float
    sd: float
    ci_t: tuple[float, float]
    effect: float
    p: float
    p_tost: float
    margin: float
    wins: int


def tost(d: np.ndarray, margin: float) -> float:
    """Two one-sided t tests of equivalence: p value for "|mean| < margin".

    The larger of the p values of H0: mean ≤ −margin and H0: mean ≥ +margin; small
    means both are rejected (equivalence at that level).
    """
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    if n < 2:
        return float("nan")
    se = d.std(ddof=1) / np.sqrt(n)
    if se == 0:
        return 0.0 if abs(d.mean()) < margin else 1.0
    t_lo = (d.mean() + margin) / se  # H0: mean <= -margin
    t_hi = (d.mean() - margin) / se  # H0: mean >= +margin
    p_lo = st.t.sf(t_lo, n - 1)
    p_hi = st.t.cdf(t_hi, n - 1)
    return float(max(p_lo, p_hi))


def paired_test(d: np.ndarray, margin: float) -> PairedTest:
    """Summarise per-seed differences ``d`` (see the module docstring)."""
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    if n > 1 and sd > 0:
        half = st.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
        ci_t = (mean - half, mean + half)
        p = float(st.ttest_1samp(d, 0.0).pvalue)
    elif n > 1:  # identical differences: the interval collapses
        ci_t = (mean, mean)
        p = 0.0 if mean != 0 else 1.0
    else:
        ci_t, p = (float("nan"), float("nan")), float("nan")
    effect = mean / sd if n > 1 and sd > 0 else float("nan")
    return PairedTest(
        n=n,
        mean=mean,
        sd=sd,
        ci_t=ci_t,
        effect=effect,
        p=p,
        p_tost=tost(d, margin),
        margin=margin,
        wins=int((d > 0).sum()),
    )


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of p values (NaNs stay NaN and do not count)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def verdict(
    test: PairedTest,
    relation: Literal["beats", "on_par"],
    p_adj: float,
    p_tost_adj: float,
    alpha: float = ALPHA,
) -> Verdict:
    """The verdict of one claim from its test and its Holm-adjusted p values."""
    if test.n < 2 or np.isnan(p_adj):
        return "inconclusive"
    rejects = p_adj < alpha
    equivalent = (not np.isnan(p_tost_adj)) and p_tost_adj < alpha
    if relation == "beats":
        if rejects:
            return "supported" if test.mean > 0 else "contradicted"
        return "not supported" if equivalent else "inconclusive"
    if equivalent:
        return "supported"
    lo, hi = test.ci_t
    if rejects and (lo > test.margin or hi < -test.margin):
        return "contradicted"
    return "inconclusive"


def holm_power(
    effect: float, sd: float, n: int, m: int = 1, alpha: float = ALPHA
) -> float:
    """Power of "A beats B" to come out **supported** under the rule as applied: a
    two-sided paired t test on ``n`` seeds, Holm-adjusted in a family of ``m`` claims.

    Analytic, for the least favourable case: this claim's mean difference is
    ``effect`` (differences of sd ``sd``), the family's other m − 1 claims are null.
    Holm then rejects this claim whenever its p value is below α/m (the first step's
    bar), plus in the rare draws where a null claim goes first; the noncentral t gives
    the first part, P(t > t_{n−1, 1−α/(2m)}) with noncentrality effect/sd·√n, which is
    the figure returned (it is a lower bound, tight to about 0.01; the simulation in
    ``tests/test_stats.py`` checks it).
    """
    if n < 2 or not (sd > 0):
        return 0.0
    df = n - 1
    nc = effect / sd * np.sqrt(n)
    t_crit = st.t.ppf(1 - alpha / (2 * m), df)
    return float(st.nct.sf(t_crit, df, nc))


def seeds_needed(
    effect: float,
    sd: float,
    m: int = 1,
    alpha: float = ALPHA,
    power: float = POWER,
) -> int:
    """Seeds that give ``power`` for a mean difference ``effect`` (differences of sd
    ``sd``) in a Holm family of ``m`` claims (``holm_power``)."""
    if not (effect > 0 and sd > 0):
        return 0
    n = 2
    while n < 10_000 and holm_power(effect, sd, n, m, alpha) < power:
        n += 1
    return n


def planned_seeds(sd: float | None = None) -> int:
    """The plan's seed count: 80 % power for a 0.005 AUBC effect in the primary family
    (Holm over its ``PRIMARY_SIZE`` claims) at the pilot's paired sd (or ``sd``)."""
    return seeds_needed(
        EFFECT["aubc"], PILOT_SD["aubc"] if sd is None else sd, PRIMARY_SIZE
    )


def sd_upper(sd: float, df: int, level: float = 0.8) -> float:
    """One-sided upper confidence limit of a standard deviation estimated on ``df``
    degrees of freedom (how large the true sd may plausibly be)."""
    return float(sd * np.sqrt(df / st.chi2.ppf(1 - level, df)))
