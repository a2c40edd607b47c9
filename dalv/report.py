"""Report pieces (tables, claims, figures, environment) and HTML rendering via notebook
05.

Owns ``comparison``, ``claims``, ``save_figures``, ``environment``, ``render_report``.
May import pandas, matplotlib, ``dalv.metrics``, ``dalv.paper``, ``dalv.plots``;
papermill and nbconvert only inside ``render_report``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from dalv.metrics import per_seed, summarize
from dalv.paper import FIGURE_METHODS, paper_table
from dalv.stats import holm, paired_test, verdict
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
    """

    a: str
    b: str
    relation: Literal["beats", "on_par"]
    text: str
    source: Literal["paper", "control"] = "paper"


def _fv_vs(other: str, source: str) -> list[Claim]:
    out = []
    for s in ("DFAL", "BADGE", "Random"):
        out.append(
            Claim(
                f"{s}+FV-Adv(10)",
                f"{s}+{other}(10)",
                "beats",
                f"FV-Adv beats {other} for {s}",
                source,
            )
        )
    out.append(
        Claim(
            "FVAAL",
            f"FVAAL+{other}(10)",
            "beats",
            f"FV-Adv beats {other} for FVAAL",
            source,
        )
    )
    return out


CLAIMS = [
    *_fv_vs("FGSM-Adv", "paper"),
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
    *_fv_vs("PGD-Adv", "control"),
    *[
        Claim(
            f"{s}+PGD-Adv(10)",
            f"{s}+FGSM-Adv(10)",
            "beats",
            f"PGD-Adv beats FGSM-Adv for {s}",
            "control",
        )
        for s in ("DFAL", "BADGE", "Random", "FVAAL")
    ],
]
"""The comparisons ``claims`` checks, where both methods ran."""

MARGINS = {"aubc": 0.005, "final": 0.01}
"""Equivalence margins, fixed in advance: |Δ AUBC| < 0.005 or |Δ final accuracy| < 0.01
counts as "on par" (about the paired spread of AUBC over seeds on MNIST)."""


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


def _test_claims(
    table: pd.DataFrame, claims: list[Claim], *, seed: int = 0
) -> pd.DataFrame:
    """Paired tests of ``claims`` on ``table`` for AUBC and final accuracy, with Holm's
    correction over the claims of each metric."""
    rows = []
    for metric in ("aubc", "final"):
        wide = _per_seed(table, metric)
        tests = []
        for c in claims:
            d = (wide[c.a] - wide[c.b]).dropna().to_numpy()
            tests.append((c, paired_test(d, MARGINS[metric], seed=seed)))
        p_adj = holm(np.array([t.p for _, t in tests]))
        tost_adj = holm(np.array([t.p_tost for _, t in tests]))
        for (c, t), pa, ta in zip(tests, p_adj, tost_adj, strict=True):
            rows.append(
                {
                    "claim": c.text,
                    "source": c.source,
                    "A": c.a,
                    "B": c.b,
                    "relation": c.relation,
                    "metric": metric,
                    "seeds": t.n,
                    "Δ mean": t.mean,
                    "sd": t.sd,
                    "CI low": t.ci_t[0],
                    "CI high": t.ci_t[1],
                    "boot low": t.ci_boot[0],
                    "boot high": t.ci_boot[1],
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


def claims(table: pd.DataFrame, dataset: str | None = None) -> pd.DataFrame:
    """Every claim (``CLAIMS``) whose two methods ran, as paired statistics over seeds
    (``dalv.stats``; the rule is ``dalv.stats.VERDICT_RULES``), for AUBC and final
    accuracy. The same tests on the paper's own per-seed numbers (its five per-seed
    files; claims whose methods are only in its averages get none) sit beside ours as
    ``paper …`` columns, with their own Holm family.

    Returns one row per (claim, metric).
    """
    dataset = dataset or str(table["dataset"].iloc[0])
    have = set(table["method"])
    ours_claims = [c for c in CLAIMS if c.a in have and c.b in have]
    if not ours_claims:
        return pd.DataFrame()
    ours = _test_claims(table, ours_claims)
    try:
        paper = paper_table(dataset, per_seed=True)
    except ValueError:
        return ours
    paper_claims = [c for c in ours_claims if {c.a, c.b} <= set(paper["method"])]
    if paper_claims:
        theirs = _test_claims(paper, paper_claims)
        keep = {
            "Δ mean": "paper Δ",
            "CI low": "paper CI low",
            "CI high": "paper CI high",
            "seeds": "paper seeds",
            "verdict": "paper verdict",
        }
        theirs = theirs[["claim", "metric", *keep]].rename(columns=keep)
        ours = ours.merge(theirs, on=["claim", "metric"], how="left")
    return ours


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


def fidelity(table: pd.DataFrame) -> pd.DataFrame:
    """How far our mean curve is from the paper's, per method: RMS and largest absolute
    difference over cycles (and at cycle 0), where the paper's curves are comparable
    (``paper_curves_for``); empty otherwise."""
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
                "Δ cycle 0": float(d.loc[0]),
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
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

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
    exporter = HTMLExporter(
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    exporter.log.setLevel(logging.ERROR)
    hide = TagRemovePreprocessor(remove_cell_tags={"remove-in-report"}, enabled=True)
    exporter.register_preprocessor(hide, enabled=True)
    with contextlib.redirect_stderr(open(os.devnull, "w")):
        html, _ = exporter.from_notebook_node(
            nb, resources={"metadata": {"name": title}}
        )
    (report_dir / "index.html").write_text(html)
    return report_dir / "index.html"


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
