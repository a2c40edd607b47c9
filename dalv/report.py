"""Report pieces (tables, claims, figures, environment) and HTML rendering via notebook
05.

Owns ``comparison``, ``claims``, ``save_figures``, ``environment``, ``render_report``.
May import pandas, matplotlib, ``dalv.metrics``, ``dalv.paper``, ``dalv.plots``;
papermill and nbconvert only inside ``render_report``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from dalv.metrics import paired_wins, summarize
from dalv.paper import FIGURE_METHODS, paper_table
from dalv.version import __version__

__all__ = [
    "comparison",
    "claims",
    "save_figures",
    "environment",
    "render_report",
    "CLAIMS",
    "timings",
    "diversity",
    "diversity_summary",
    "verdict",
]


@dataclass(frozen=True)
class Claim:
    """A comparison the paper draws (protocol §7): A beats B, or A is on par with B.

    Args:
        a: the first method's name.
        b: the second method's name.
        relation: ``"beats"`` or ``"on_par"``.
        text: the claim in words.
    """

    a: str
    b: str
    relation: Literal["beats", "on_par"]
    text: str

    @property
    def on_par(self) -> bool:
        return self.relation == "on_par"


CLAIMS = [
    Claim(
        "DFAL+FV-Adv(10)",
        "DFAL+FGSM-Adv(10)",
        "beats",
        "FV-Adv beats FGSM-Adv for DFAL",
    ),
    Claim(
        "BADGE+FV-Adv(10)",
        "BADGE+FGSM-Adv(10)",
        "beats",
        "FV-Adv beats FGSM-Adv for BADGE",
    ),
    Claim(
        "Random+FV-Adv(10)",
        "Random+FGSM-Adv(10)",
        "beats",
        "FV-Adv beats FGSM-Adv for Random",
    ),
    Claim("FVAAL", "FVAAL+FGSM-Adv(10)", "beats", "FV-Adv beats FGSM-Adv for FVAAL"),
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
]
"""The paper's comparisons, checked by ``claims``."""


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


ON_PAR = 0.005
"""|Δ AUBC| below which two methods count as on par."""


def verdict(mean_delta: float, wins: int, seeds: int, on_par: bool = False) -> str:
    """Does a paired comparison support "A beats B" (or, with ``on_par``, "A ≈ B")?

    "yes" when the mean Δ AUBC and the majority of seeds both favour A; "no" when both
    favour B; "mixed" when they disagree (e.g. a small mean gain carried by one seed).
    For an on-par claim: "yes" when |Δ| < ``ON_PAR``, else "no".
    """
    if on_par:
        return "yes" if abs(mean_delta) < ON_PAR else "no"
    more, fewer = wins * 2 > seeds, wins * 2 < seeds
    if mean_delta > 0 and more:
        return "yes"
    if mean_delta < 0 and fewer:
        return "no"
    return "mixed"


def claims(table: pd.DataFrame, dataset: str | None = None) -> pd.DataFrame:
    """Each paper comparison whose two methods we ran: our mean Δ AUBC, seed wins and
    ``verdict``, and the paper's (5 seeds, from its per-seed files when it has both
    methods there, else from its averages) with the verdict its own numbers give: a
    claim made in the text is not always borne out by the published curves."""
    dataset = dataset or str(table["dataset"].iloc[0])
    have = set(table["method"])
    try:
        ps_paper = paper_table(dataset, per_seed=True)
        avg_paper = summarize(paper_table(dataset)).set_index("method")["aubc_mean"]
    except ValueError:
        ps_paper, avg_paper = None, pd.Series(dtype=float)
    rows = []
    for claim in CLAIMS:
        a, b, text, on_par = claim.a, claim.b, claim.text, claim.on_par
        if a not in have or b not in have:
            continue
        w = paired_wins(table, a, b)
        row = {
            "claim": text,
            "A": a,
            "B": b,
            "our Δ AUBC (A−B)": w["mean_delta"],
            "our seed wins": f"{w['wins']}/{w['seeds']}",
        }
        if ps_paper is not None and {a, b} <= set(ps_paper["method"]):
            pw = paired_wins(ps_paper, a, b)
            row["paper Δ AUBC"] = pw["mean_delta"]
            row["paper seed wins"] = f"{pw['wins']}/{pw['seeds']}"
            row["paper's own numbers"] = verdict(
                pw["mean_delta"], pw["wins"], pw["seeds"], on_par=on_par
            )
        elif a in avg_paper and b in avg_paper:
            d = float(avg_paper[a] - avg_paper[b])
            row["paper Δ AUBC"] = d
            row["paper seed wins"] = "n/a (averages only)"
            # without seeds only the sign of the averages speaks
            row["paper's own numbers"] = verdict(d, int(d > 0), 1, on_par=on_par)
        row["we agree"] = verdict(w["mean_delta"], w["wins"], w["seeds"], on_par=on_par)
        rows.append(row)
    return pd.DataFrame(rows)


def diversity(
    runs: dict[str, Path],
    cycles: tuple[int, ...] = (0, -1),
    max_points: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Pairwise-distance diversity of the adversarial examples each run added (protocol
    §5).

    For each run folder and each of ``cycles`` (negative = from the end), the examples
    added in that cycle are embedded by that cycle's model, in the **penultimate** layer
    (what the paper intends) and in the **logit** layer (what the reference code
    measured), and all pairwise Euclidean distances summarised. At most ``max_points``
    examples (a seeded subsample) per cell keep it quick.

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
            with torch.no_grad():
                feats = {"penultimate": st["model"][:-1](x), "logits": st["model"](x)}
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
            "points": g["num_points"].mean(),
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
        label = "with adversarial examples" if name == "advs" else "without"
        learning_curves(
            table,
            x="cycle",
            methods=sel,
            paper=paper,
            ax=ax,
            title=f"{dataset}: the paper's figure {label}",
        )
        paths.append(save_figure(fig, fig_dir / f"curves_{name}")[0])
        plt.close(fig)
    return paths


def environment() -> dict[str, str]:
    """Versions and device, for the report's last section."""
    import torch

    env = {
        "dalv": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
        "cpu threads": str(torch.get_num_threads()),
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
    report_dir: Path, title: str = "dalv report", timeout: int = 600
) -> Path:
    """Execute notebook 05 on ``report_dir`` with papermill and write ``index.html``
    (inputs hidden) and ``figures/``."""
    import tempfile

    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    report_dir = Path(report_dir).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        executed = Path(tmp) / "report.ipynb"
        pm.execute_notebook(
            str(notebook_path()),
            str(executed),
            parameters={"REPORT_DIR": str(report_dir), "TITLE": title},
            cwd=str(report_dir),
            progress_bar=False,
            kernel_name="python3",
            execution_timeout=timeout,
        )
        nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    html, _ = exporter.from_notebook_node(nb)
    (report_dir / "index.html").write_text(html)
    return report_dir / "index.html"
