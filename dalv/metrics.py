"""Metrics over learning curves and feature sets.

Owns ``aubc``, ``summarize``, ``paired_wins``, ``pairwise_distance_stats``,
``within_group_distance_stats``. May import numpy
and pandas only (callers pass arrays).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "aubc",
    "curves",
    "summarize",
    "paired_wins",
    "pairwise_distance_stats",
    "within_group_distance_stats",
]


def aubc(acc: np.ndarray | list[float]) -> float:
    """Normalised area under the budget curve (protocol §5).

    Trapezoid rule over the cycle index 0..T−1, divided by T−1: the area with the x-axis
    rescaled to [0, 1]. Because label counts are affine in the cycle index, using them
    as x gives the same value. A single-cycle curve has AUBC equal to its one accuracy.
    """
    y = np.asarray(acc, dtype=np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"aubc needs a non-empty 1-D curve, got shape {y.shape}")
    if len(y) == 1:
        return float(y[0])
    return float(((y[1:] + y[:-1]) / 2).sum() / (len(y) - 1))


def curves(table: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Mean, std and count of ``metric`` per (method, cycle) over seeds."""
    g = table.groupby(["method", "cycle"], sort=False)[metric]
    return g.agg(["mean", "std", "count"]).reset_index()


def per_seed(table: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """AUBC and final value per (method, seed)."""
    rows = []
    for (m, s), g in table.sort_values("cycle").groupby(["method", "seed"], sort=False):
        rows.append(
            {
                "method": m,
                "seed": s,
                "aubc": aubc(g[metric].to_numpy()),
                "final": float(g[metric].iloc[-1]),
                "cycles": len(g),
            }
        )
    return pd.DataFrame(rows)


def summarize(table: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Per method: AUBC and final accuracy as mean ± std over seeds, sorted by AUBC.

    AUBC here is the mean of per-seed AUBCs, which equals the AUBC of the mean curve
    (the paper's way, protocol §5) because AUBC is linear in the curve.
    """
    ps = per_seed(table, metric)
    out = ps.groupby("method", sort=False).agg(
        aubc_mean=("aubc", "mean"),
        aubc_std=("aubc", "std"),
        final_mean=("final", "mean"),
        final_std=("final", "std"),
        seeds=("seed", "nunique"),
        cycles=("cycles", "max"),
    )
    return out.sort_values("aubc_mean", ascending=False).reset_index()


def paired_wins(
    table: pd.DataFrame, a: str, b: str, metric: str = "test_acc", on: str = "aubc"
) -> dict[str, float]:
    """Seeds where method ``a`` beats ``b`` (by per-seed ``on`` = "aubc" or "final").

    Returns ``{"wins", "seeds", "mean_delta"}`` over the seeds both methods ran.
    """
    ps = per_seed(table, metric).pivot(index="seed", columns="method", values=on)
    if a not in ps or b not in ps:
        raise ValueError(f"both methods must be in the table; have {list(ps.columns)}")
    d = (ps[a] - ps[b]).dropna()
    return {
        "wins": int((d > 0).sum()),
        "seeds": int(len(d)),
        "mean_delta": float(d.mean()),
    }


def pairwise_distance_stats(feats: np.ndarray) -> dict[str, float]:
    """Statistics of all pairwise Euclidean distances between rows (the diversity
    measure).

    Shapes:
        feats [n, d].
    """
    f = np.asarray(feats, dtype=np.float64)
    n = len(f)
    sq = (f * f).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * f @ f.T, 0.0)
    return _distance_stats(np.sqrt(d2[np.triu_indices(n, 1)]), n)


def _distance_stats(d: np.ndarray, n: int) -> dict[str, float]:
    if len(d) == 0:
        return {
            "num_points": n,
            "mean": np.nan,
            "std": np.nan,
            "median": np.nan,
            "p10": np.nan,
            "p90": np.nan,
            "min": np.nan,
            "max": np.nan,
        }
    return {
        "num_points": n,
        "mean": d.mean(),
        "std": d.std(),
        "median": np.median(d),
        "p10": np.percentile(d, 10),
        "p90": np.percentile(d, 90),
        "min": d.min(),
        "max": d.max(),
    }


def within_group_distance_stats(
    feats: np.ndarray, groups: np.ndarray
) -> dict[str, float]:
    """``pairwise_distance_stats`` over the pairs that share a group only (e.g. the
    adversarial examples of one queried image), pooled over groups.

    FGSM-Adv's examples of one image lie on one ray, FV-Adv's spread through the box:
    the spread *within* an image shows the difference that distances across images hide.

    Shapes:
        feats [n, d]; groups [n] (any labels).
    """
    f = np.asarray(feats, dtype=np.float64)
    g = np.asarray(groups)
    if len(f) != len(g):
        raise ValueError(f"feats has {len(f)} rows but groups has {len(g)}")
    _, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    order = np.argsort(inv, kind="stable")
    slot = np.arange(len(g)) - np.repeat(
        np.cumsum(counts) - counts, counts
    )  # rank in group
    pad = np.zeros((len(counts), counts.max(initial=0), f.shape[1]))
    valid = np.zeros(pad.shape[:2], dtype=bool)
    pad[inv[order], slot], valid[inv[order], slot] = f[order], True
    diff = pad[:, :, None, :] - pad[:, None, :, :]  # [G, k, k, d]
    dist = np.sqrt((diff * diff).sum(-1))
    upper = np.triu(np.ones(dist.shape[1:], dtype=bool), 1)[None]
    pairs = upper & valid[:, :, None] & valid[:, None, :]
    return _distance_stats(dist[pairs], len(f))
