"""Figures from results tables.

Owns ``learning_curves``, ``aubc_table``, ``show_images``. May import matplotlib, seaborn,
pandas, numpy and ``dalv.metrics``. Nothing in dalv imports this module.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dalv.metrics import summarize

__all__ = ["learning_curves", "aubc_table", "show_images"]


def learning_curves(
    table: pd.DataFrame,
    *,
    x: str = "n_labeled",
    metric: str = "test_acc",
    methods: Sequence[str] | None = None,
    paper: pd.DataFrame | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
) -> plt.Axes:
    """Mean test accuracy per method with a ±1 std band over seeds.

    Args:
        table: the tidy results table (one row per method × seed × cycle).
        x: ``"n_labeled"`` (labels bought) or ``"cycle"``.
        methods: which methods and in what order (default: all, by AUBC).
        paper: optional paper curves in the same tidy form (``method``, ``cycle``,
            ``test_acc``, and ``n_labeled`` if x is ``n_labeled``), drawn dashed.
    """
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    if methods is None:
        methods = list(summarize(table, metric)["method"])
    data = table[table["method"].isin(methods)]
    palette = dict(
        zip(methods, sns.color_palette("tab10", n_colors=max(len(methods), 3)))
    )
    sns.lineplot(
        data=data,
        x=x,
        y=metric,
        hue="method",
        hue_order=list(methods),
        errorbar="sd",
        marker="o",
        markersize=3,
        ax=ax,
        palette=palette,
    )
    if paper is not None and len(paper):
        for m, g in paper.groupby("method", sort=False):
            ax.plot(
                g[x],
                g[metric],
                ls="--",
                lw=1,
                color=palette.get(m, "grey"),
                label=f"{m} (paper)",
            )
        ax.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("labelled examples" if x == "n_labeled" else "cycle")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return ax


def aubc_table(
    table: pd.DataFrame, metric: str = "test_acc", digits: int = 4
) -> pd.DataFrame:
    """AUBC and final accuracy as "mean ± std" strings per method, best first."""
    s = summarize(table, metric)

    def pm(m, sd):
        return (
            f"{m:.{digits}f}"
            if not np.isfinite(sd)
            else f"{m:.{digits}f} ± {sd:.{digits}f}"
        )

    return pd.DataFrame(
        {
            "method": s["method"],
            "AUBC": [pm(a, b) for a, b in zip(s["aubc_mean"], s["aubc_std"])],
            "final accuracy": [
                pm(a, b) for a, b in zip(s["final_mean"], s["final_std"])
            ],
            "seeds": s["seeds"],
            "cycles": s["cycles"],
        }
    )


def show_images(
    rows: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    cmap: str = "gray",
) -> plt.Figure:
    """A grid of images: ``rows[r][i]`` is image i of row r ([h, w] or [c, h, w] in [0, 1])."""
    n_r, n_c = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_r, n_c, figsize=(1.3 * n_c, 1.4 * n_r), squeeze=False)
    for r, imgs in enumerate(rows):
        for i in range(n_c):
            ax = axes[r][i]
            ax.axis("off")
            if i >= len(imgs):
                continue
            img = np.asarray(imgs[i])
            if img.ndim == 3 and img.shape[0] in (1, 3):
                img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
            ax.imshow(img, cmap=cmap if img.ndim == 2 else None, vmin=0, vmax=1)
            if titles is not None and r == 0 and i < len(titles):
                ax.set_title(titles[i], fontsize=8)
        if row_labels is not None:
            axes[r][0].text(
                -0.1,
                0.5,
                row_labels[r],
                transform=axes[r][0].transAxes,
                ha="right",
                va="center",
                fontsize=8,
            )
    fig.tight_layout()
    return fig
