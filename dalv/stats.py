"""Statistics for claims about paired runs: intervals, multiplicity, equivalence.

Owns ``PairedTest`` (one comparison of two methods over seeds), ``paired_test``,
``holm``, ``tost`` and ``Verdict`` rules. May import numpy, scipy and pandas.

Every method of a seed starts from the same initial labels and model, so two methods
are compared through their per-seed differences d_s = m_A(s) − m_B(s) (AUBC or final
accuracy). For n seeds:

* the mean difference with a 95 % t interval, mean ± t_{n−1, 0.975} · sd / √n, and a
  percentile bootstrap interval of the mean (seeded, so a report re-renders the same);
* the standardised effect d_z = mean / sd;
* a two-sided one-sample t test of "no difference", its p value Holm-adjusted over the
  family of claims a report checks (``holm``);
* for "on par" claims, an equivalence test (two one-sided t tests, ``tost``) with a
  margin fixed in advance: equivalence is shown when the whole 90 % interval lies
  inside (−margin, +margin).

Verdicts (``verdict``), at family-wise level α = 0.05:

* a claim "A beats B" is **supported** when the adjusted test rejects "no difference"
  and A is ahead; **contradicted** when it rejects and B is ahead; **not supported**
  when equivalence within the margin is shown (the data rule out a difference as large
  as the margin); otherwise **inconclusive**.
* a claim "A is on par with B" is **supported** when equivalence is shown (the TOST p
  value, Holm-adjusted); **contradicted** when the adjusted test rejects "no
  difference" and the interval lies outside the margin on one side; otherwise
  **inconclusive**.

With 3 seeds almost nothing reaches a verdict, which is the honest answer: the report
says how many seeds a difference of a given size would need (``seeds_needed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as st

__all__ = [
    "ALPHA",
    "PairedTest",
    "paired_test",
    "holm",
    "tost",
    "verdict",
    "seeds_needed",
    "VERDICT_RULES",
]

ALPHA = 0.05
"""Family-wise error rate of a report's claims."""

Verdict = Literal["supported", "not supported", "contradicted", "inconclusive"]

VERDICT_RULES = (
    "Per-seed paired differences d = A − B; 95 % t and bootstrap intervals of the "
    "mean; two-sided t test of d = 0 with Holm's correction over the report's claims "
    f"(family-wise α = {ALPHA}); equivalence by two one-sided t tests (TOST) with the "
    "margin fixed in advance. 'A beats B' is supported when the adjusted test rejects "
    "and A is ahead, contradicted when it rejects and B is ahead, not supported when "
    "equivalence within the margin is shown, else inconclusive. 'A is on par with B' "
    "is supported when the (Holm-adjusted) TOST shows equivalence, contradicted when "
    "the adjusted test rejects and the interval lies beyond the margin, else "
    "inconclusive."
)


@dataclass(frozen=True)
class PairedTest:
    """One paired comparison of A and B over seeds.

    Attributes:
        n: seeds both methods ran.
        mean: mean difference A − B.
        sd: standard deviation of the differences (ddof 1; NaN for n < 2).
        ci_t: 95 % t interval of the mean.
        ci_boot: 95 % percentile bootstrap interval of the mean.
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
    ci_boot: tuple[float, float]
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


def paired_test(
    d: np.ndarray, margin: float, *, n_boot: int = 10_000, seed: int = 0
) -> PairedTest:
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
    if n > 1:
        rng = np.random.default_rng(seed)
        boots = rng.choice(d, size=(n_boot, n), replace=True).mean(1)
        ci_boot = (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)))
    else:
        ci_boot = (float("nan"), float("nan"))
    effect = mean / sd if n > 1 and sd > 0 else float("nan")
    return PairedTest(
        n=n,
        mean=mean,
        sd=sd,
        ci_t=ci_t,
        ci_boot=ci_boot,
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


def seeds_needed(
    effect: float, sd: float, alpha: float = ALPHA, power: float = 0.8
) -> int:
    """Seeds a two-sided paired t test needs to detect a mean difference ``effect``
    with the given power, for differences of standard deviation ``sd``."""
    if not (effect > 0 and sd > 0):
        return 0
    n = 2
    while n < 10_000:
        df = n - 1
        nc = effect / sd * np.sqrt(n)
        t_crit = st.t.ppf(1 - alpha / 2, df)
        achieved = st.nct.sf(t_crit, df, nc) + st.nct.cdf(-t_crit, df, nc)
        if achieved >= power:
            return n
        n += 1
    return n
