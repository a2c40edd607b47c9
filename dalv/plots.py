"""Figures from results tables.

Owns ``method_style`` (one fixed colour, line style and marker per method, the same in
every figure and report), ``learning_curves``, ``curves_by_strategy`` (small multiples),
``save_figure``, ``forest`` / ``forest_rows`` (paired differences with their
intervals), ``aubc_table`` and
``show_images``. May import matplotlib, pandas,
numpy, ``dalv.metrics`` and ``dalv.methods``.

Colours encode the query strategy (a hue per strategy) and the augmentation (its shade:
middle without adversarial examples, darkest with a verifier's). FGSM-Adv, PGD-Adv and
FV-Adv sit far apart on that scale (lightest, middle, darkest) and differ in line style
(dashed, dash-dot, solid), marker (square, triangle, down-triangle) and width, so they
stay apart in a panel of one strategy and in grey scale.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dalv.methods import get
from dalv.metrics import summarize

__all__ = [
    "Style",
    "method_style",
    "learning_curves",
    "curves_by_strategy",
    "save_figure",
    "forest",
    "forest_rows",
    "aubc_table",
    "show_images",
]

# A colormap per strategy; the shade within it comes from the augmentation.
_HUES = {
    "Random": "Greys",
    "BADGE": "Blues",
    "DFAL": "Greens",
    "FVAAL": "Reds",
    "Core-set": "YlOrBr",
    "Entropy": "Purples",
    "Margin": "RdPu",
    "FVAAL_rand": "Oranges",
    "CertifiedRadius": "GnBu",
}
_SHADES = {
    "No-Adv": 0.55,
    "Own-Adv": 0.62,
    "FGSM-Adv": 0.42,
    "PGD-Adv": 0.72,
    "FV-Adv": 1.0,
}
_LINES = {
    "No-Adv": ":",
    "Own-Adv": (0, (5, 1, 1, 1)),
    "FGSM-Adv": "--",
    "PGD-Adv": "-.",
    "FV-Adv": "-",
}
_WIDTHS = {
    "No-Adv": 1.3,
    "Own-Adv": 1.4,
    "FGSM-Adv": 1.4,
    "PGD-Adv": 1.6,
    "FV-Adv": 2.1,
}
_MARKERS = {
    "No-Adv": "o",
    "Own-Adv": "D",
    "FGSM-Adv": "s",
    "PGD-Adv": "^",
    "FV-Adv": "v",
}
AUGMENTATIONS = tuple(_SHADES)
"""Augmentation kinds in the order figures list them."""


@dataclass(frozen=True)
class Style:
    """How one method is drawn everywhere."""

    color: tuple[float, ...]
    linestyle: object
    marker: str
    strategy: str
    augmentation: str
    linewidth: float = 1.6


def method_style(name: str) -> Style:
    """The fixed style of the method called ``name`` (see the module docstring).

    Methods outside the registry get a colour derived from their name (stable across
    runs) and a solid line.
    """
    try:
        m = get(name)
    except ValueError:
        cmap = plt.get_cmap("tab20")
        color = cmap(zlib.crc32(name.encode()) % 20)
        return Style(tuple(color), "-", "o", name, "?", 1.6)
    strategy, kind = m.strategy.name, m.augmenter.kind
    cmap = plt.get_cmap(_HUES.get(strategy, "cividis"))
    shade = _SHADES.get(kind, 0.8)
    return Style(
        tuple(cmap(shade)),
        _LINES.get(kind, "-"),
        _MARKERS.get(kind, "o"),
        strategy,
        kind,
        _WIDTHS.get(kind, 1.6),
    )


def _mean_std(table: pd.DataFrame, x: str, metric: str) -> pd.DataFrame:
    g = table.groupby(["method", x], sort=True)[metric]
    return g.agg(["mean", "std"]).reset_index()


def learning_curves(
    table: pd.DataFrame,
    *,
    x: str = "n_labeled",
    metric: str = "test_acc",
    methods: Sequence[str] | None = None,
    paper: pd.DataFrame | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
    legend: str | None = "outside",
) -> plt.Axes:
    """Mean test accuracy per method with a ±1 std band over seeds.

    Args:
        table: the tidy results table (one row per method × seed × cycle).
        x: ``"n_labeled"`` (labels bought) or ``"cycle"``.
        methods: which methods and in what order (default: all, by AUBC).
        paper: optional paper curves in the same tidy form (``method``, ``cycle``,
            ``test_acc``, and ``n_labeled`` if x is ``n_labeled``), drawn thin and faint
            in the method's colour. Pass them only where dataset and protocol match.
        ax: the axes to draw on (default: a new figure).
        title: the axes title.
        legend: ``"outside"`` (right of the axes), ``"inside"`` or ``None``.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.5))
    if methods is None:
        methods = list(summarize(table, metric)["method"])
    stats = _mean_std(table[table["method"].isin(methods)], x, metric)
    for m in methods:
        s, st = stats[stats["method"] == m], method_style(m)
        ax.plot(
            s[x],
            s["mean"],
            color=st.color,
            ls=st.linestyle,
            marker=st.marker,
            ms=3.5,
            lw=st.linewidth,
            label=m,
        )
        if s["std"].notna().any():
            ax.fill_between(
                s[x],
                s["mean"] - s["std"],
                s["mean"] + s["std"],
                color=st.color,
                alpha=0.15,
                lw=0,
            )
    if paper is not None and len(paper):
        for m, g in paper[paper["method"].isin(methods)].groupby("method", sort=False):
            ax.plot(
                g[x],
                g[metric],
                color=method_style(m).color,
                lw=0.9,
                alpha=0.55,
                ls=method_style(m).linestyle,
                marker="x",
                ms=3,
                label=f"{m} (paper)",
            )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("labelled examples" if x == "n_labeled" else "cycle")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    if legend == "outside":
        ax.legend(
            fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False
        )
    elif legend == "inside":
        ax.legend(fontsize=8, loc="lower right")
    return ax


def curves_by_strategy(
    table: pd.DataFrame,
    *,
    x: str = "cycle",
    metric: str = "test_acc",
    paper: pd.DataFrame | None = None,
    title: str | None = None,
    ncols: int = 3,
) -> plt.Figure:
    """Small multiples: one panel per query strategy, each with that strategy's
    augmentations (none, its own example, FGSM-Adv, PGD-Adv, FV-Adv), on shared axes.

    Args:
        table: the tidy results table.
        x: ``"cycle"`` or ``"n_labeled"``.
        metric: the column to plot.
        paper: the paper's curves (thin, faint), where dataset and protocol match.
        title: the figure title.
        ncols: panels per row.
    """
    names = list(summarize(table, metric)["method"])
    by_strategy: dict[str, list[str]] = {}
    for n in names:
        by_strategy.setdefault(method_style(n).strategy, []).append(n)
    order = [s for s in _HUES if s in by_strategy] + [
        s for s in by_strategy if s not in _HUES
    ]
    n = len(order)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(4.2 * ncols, 4.4 * nrows),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for ax, strategy in zip(axes.flat, order, strict=False):
        ms = sorted(
            by_strategy[strategy],
            key=lambda m: (
                AUGMENTATIONS.index(method_style(m).augmentation)
                if method_style(m).augmentation in AUGMENTATIONS
                else 99
            ),
        )
        learning_curves(
            table,
            x=x,
            metric=metric,
            methods=ms,
            paper=paper,
            ax=ax,
            title=strategy,
            legend=None,
        )
        # below the panel, outside the axes: the curves stay uncovered
        ax.legend(
            fontsize=7,
            loc="upper center",
            # clear of the tick labels and axis title, which only the last row has
            bbox_to_anchor=(
                0.5,
                -0.24 if ax.get_subplotspec().is_last_row() else -0.12,
            ),
            ncol=2,
            frameon=False,
        )
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    for ax in axes.flat:
        ax.tick_params(labelbottom=True)  # every panel has its own x ticks
        if not ax.get_subplotspec().is_last_row():
            ax.set_xlabel("")
        if not ax.get_subplotspec().is_first_col():
            ax.set_ylabel("")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path_stem: str | Path, dpi: int = 110) -> list[Path]:
    """Write ``fig`` as PNG and SVG beside each other; returns both paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for p in paths:
        fig.savefig(
            p,
            dpi=dpi,
            bbox_inches="tight",
            metadata={"Date": None} if p.suffix == ".svg" else None,
        )
    return paths


_VERDICT_COLORS = {
    "supported": "#1a9641",
    "contradicted": "#d7191c",
    "not supported": "#e08a00",
    "inconclusive": "#7f7f7f",
}


def forest(claims: pd.DataFrame, metric: str = "aubc", title: str | None = None):
    """A forest plot of the claims' paired differences A − B over seeds: the mean and
    its 95 % t interval, the equivalence margin (shaded) and the paper's own mean
    difference (a cross), coloured by verdict, one block per family (primary first).

    Args:
        claims: ``dalv.report.claims``'s table.
        metric: ``"aubc"`` or ``"final"``.
        title: the axes title.
    """
    rows = claims[claims["metric"] == metric].reset_index(drop=True)
    label = "AUBC" if metric == "aubc" else "final accuracy"
    labels = [
        f"{r['claim']} ({r['verdict']})"
        + (" [primary]" if r.get("role") == "primary" else "")
        for _, r in rows.iterrows()
    ]
    fig = _forest_axes(
        labels,
        rows["Δ mean"].to_numpy(float),
        rows["CI low"].to_numpy(float),
        rows["CI high"].to_numpy(float),
        list(rows["verdict"]),
        float(rows["margin"].iloc[0]) if len(rows) else 0.0,
        xlabel=f"Δ {label}, A − B (per-seed pairs; × = the paper's own)",
        title=title or f"claims, {label}: paired differences with 95 % t intervals",
        extra=rows["paper Δ"].to_numpy(float) if "paper Δ" in rows else None,
        groups=list(rows["family"]) if "family" in rows else None,
    )
    return fig


def forest_rows(
    rows: pd.DataFrame, *, margin: float, xlabel: str, title: str
) -> plt.Figure:
    """A forest plot of ready rows (``label``, ``Δ``, ``low``, ``high``, ``verdict``),
    e.g. one claim across datasets and sources (the summary report)."""
    return _forest_axes(
        list(rows["label"]),
        rows["Δ"].to_numpy(float),
        rows["low"].to_numpy(float),
        rows["high"].to_numpy(float),
        list(rows["verdict"]),
        margin,
        xlabel=xlabel,
        title=title,
    )


def _forest_axes(
    labels, mean, lo, hi, verdicts, margin, *, xlabel, title, extra=None, groups=None
) -> plt.Figure:
    n = len(labels)
    fig, ax = plt.subplots(figsize=(8.0, 0.42 * n + 1.4))
    y = np.arange(n)[::-1].astype(float)
    ax.axvspan(-margin, margin, color="0.9", zorder=0)
    ax.axvline(0, color="0.3", lw=0.8)
    for i in range(n):
        c = _VERDICT_COLORS.get(verdicts[i], "k")
        if np.isfinite(lo[i]) and np.isfinite(hi[i]):
            ax.plot([lo[i], hi[i]], [y[i], y[i]], color=c, lw=2.2)
        if np.isfinite(mean[i]):
            ax.plot(mean[i], y[i], "o", color=c, ms=6)
        if extra is not None and np.isfinite(extra[i]):
            ax.plot(extra[i], y[i], "x", color="k", ms=6)
        if groups is not None and i and groups[i] != groups[i - 1]:
            ax.axhline(y[i] + 0.5, color="0.6", lw=0.6, ls=":")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel(xlabel)
    handles = [
        plt.Line2D([], [], color=c, marker="o", lw=2.2, label=v)
        for v, c in _VERDICT_COLORS.items()
    ] + [plt.Rectangle((0, 0), 1, 1, color="0.9", label=f"±{margin:.4f} margin")]
    ax.legend(
        handles=handles,
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
    )
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def aubc_table(
    table: pd.DataFrame, metric: str = "test_acc", digits: int = 4
) -> pd.DataFrame:
    """AUBC and final accuracy as "mean ± std" strings per method, best first."""
    s = summarize(table, metric)

    def pm(m, sd):
        if not np.isfinite(sd):
            return f"{m:.{digits}f}"
        return f"{m:.{digits}f} ± {sd:.{digits}f}"

    return pd.DataFrame(
        {
            "method": s["method"],
            "AUBC": [
                pm(a, b) for a, b in zip(s["aubc_mean"], s["aubc_std"], strict=True)
            ],
            "final accuracy": [
                pm(a, b) for a, b in zip(s["final_mean"], s["final_std"], strict=True)
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
    """A grid of images: ``rows[r][i]`` is image i of row r ([h, w] or [c, h, w], in
    [0, 1])."""
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
