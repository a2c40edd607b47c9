# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Reproducing the paper's benchmarks
#
# A papermill template. Its `parameters` cell is the whole configuration; `python -m
# dalv reproduce --preset NAME` runs the grid (one process per method × seed, finished
# cells skipped), then executes this notebook on the report folder and renders it to
# HTML with the inputs hidden. Opened by hand, it runs (or reloads) the grid its
# parameters describe.
#
# Our curves are solid with a ±1 std band over seeds; the paper's 5-seed averages are
# dashed.

# %%
# Setup: in a fresh Jupyter or Colab kernel this installs dalv (with its verification
# extras and auto_LiRPA) from the clone the notebook sits in, or from the pip spec in
# $DALV_SOURCE, and imports it in the same run (no kernel restart).
import importlib, importlib.util, os, pathlib, subprocess, sys
if not all(importlib.util.find_spec(m) for m in ("dalv", "auto_LiRPA")):
    here = pathlib.Path.cwd()
    up = (here, *here.parents)
    clone = next((p for p in up if (p / "dalv" / "loop.py").exists()), None)
    spec = f"{clone}[verify]" if clone else os.environ.get("DALV_SOURCE")
    if not spec:
        raise RuntimeError("open this notebook from a clone of dalv, or set "
                           "DALV_SOURCE to a pip spec (a git URL) and rerun this cell")
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.check_call([*pip, *(["-e"] if clone else []), spec])
    subprocess.check_call([*pip, "--no-deps", "auto-lirpa==0.3"])
    if clone:  # an editable install is only seen by a new interpreter: look there now
        sys.path.insert(0, str(clone))
    importlib.invalidate_caches()
import dalv

# %% tags=["parameters"]
# Parameters: None means "the preset's value".
REPORT_DIR = None        # a folder holding results.csv + config.json (set by `dalv reproduce`)
TITLE = "dalv report"
PRESET = "smoke"         # smoke, baselines, demo, mnist5k, paper-mnist, paper-fashion-mnist, paper-cifar10
DATASET = None           # digits, mnist5k, mnist, fashion_mnist, cifar10
METHODS = None           # e.g. ["Random", "FVAAL-No-Adv", "FVAAL"]
SEEDS = None             # e.g. [0, 1, 2]
CYCLES = None
BUDGET = None
CANDIDATES = None
VERIFIER = None          # "lirpa" or "marabou" (default: the methods' own)
PROTOCOL = None          # "paper" or "clean"
HIDDEN = None
DEVICE = "auto"

# %%
import json
import pathlib
import pandas as pd
from IPython.display import Markdown, display
from dalv import report
from dalv.cli import VERIFIERS
from dalv.methods import get
from dalv.reproduce import PRESETS, cells, collect, grid_diversity, run_cells
from dataclasses import replace

# %%
if REPORT_DIR and (pathlib.Path(REPORT_DIR) / "results.csv").exists():
    out = pathlib.Path(REPORT_DIR)
    table = pd.read_csv(out / "results.csv")
    config = json.loads((out / "config.json").read_text())
    div_path = out / "diversity.csv"
    div = pd.read_csv(div_path) if div_path.exists() and div_path.stat().st_size > 1 else pd.DataFrame()
    if not div_path.exists():
        div = None   # rendered from results.csv alone: the run folders are needed for it
else:  # run the grid the parameters describe
    p = PRESETS[PRESET]
    exp = {k: v for k, v in dict(dataset=DATASET, n_cycles=CYCLES, budget=BUDGET,
           candidates=CANDIDATES, protocol=PROTOCOL).items() if v is not None}
    cfg = replace(p.config, **exp)
    if HIDDEN: cfg = replace(cfg, model=replace(cfg.model, hidden=HIDDEN))
    grid = replace(p, name="notebook", config=cfg, description="from notebook 05",
                   methods=tuple(get(m) for m in METHODS) if METHODS else p.methods)
    verifier = VERIFIERS[VERIFIER]() if VERIFIER else None
    todo = cells(grid, seeds=SEEDS, runs=pathlib.Path("runs/notebook"), device=DEVICE,
                 verifier=verifier)
    run_cells(todo)
    out, table, div = pathlib.Path("."), collect(todo), grid_diversity(todo)
    config = {"preset": PRESET, "methods": grid.method_names}
display(Markdown(f"# {TITLE}\n\n{config.get('description', '')}\n\n"
                 f"{table['method'].nunique()} methods × {table['seed'].nunique()} seeds × "
                 f"{table['cycle'].nunique()} cycles on **{table['dataset'].iloc[0]}**."))

# %% [markdown]
# ## Learning curves

# %%
from IPython.display import Image
for path in report.save_figures(table, out / "figures"):
    display(Image(filename=str(path)))

# %% [markdown]
# ## AUBC and final accuracy
#
# Normalised AUBC (trapezoid over cycles, divided by the number of cycles − 1, protocol
# §5), mean ± std over seeds, beside the paper's 5-seed values. The paper's MNIST
# numbers are for the full 60k-image pool; mnist5k has a 4,000-image pool and a
# 1,000-image test set, so absolute values differ and the ranking is what to compare.

# %%
cmp = report.comparison(table)
display(cmp.style.format(precision=4, na_rep="–").hide(axis="index"))

# %% [markdown]
# ## The paper's claims, checked (paired by seed)
#
# For each comparison the paper draws (protocol §7) whose two methods ran here: the mean
# over seeds of Δ AUBC (A − B) and the seeds on which A wins. **we agree** is "yes" when
# the mean and the majority of seeds both favour A, "no" when both favour B, "mixed"
# when they split (an on-par claim: |Δ| < 0.005). **paper's own numbers** applies the
# same rule to the paper's published curves (its five per-seed files; its averages where
# a method is missing there): the text's claims are not all borne out by its own
# figures.

# %%
cl = report.claims(table)
display(cl.style.format(precision=4, na_rep="–").hide(axis="index") if len(cl)
        else Markdown("_None of the paper's compared pairs ran in this grid._"))

# %% [markdown]
# ## Diversity of the added adversarial examples
#
# Mean pairwise Euclidean distance between the adversarial examples a cycle added, in
# the model's **penultimate** layer (what the paper intends) and in its **logit** layer
# (what the reference code measured, protocol §5), for the first and the last cycle;
# mean and std over seeds. Scope **all** compares every pair, as the paper did; **per
# image** only pairs of examples of the same queried image: FGSM-Adv's lie on a single
# ray, FV-Adv's must differ in every pixel.

# %%
if div is None:
    display(Markdown("_Not computed: this report folder has no `diversity.csv` "
                     "(`dalv reproduce` writes it from the run folders)._"))
elif len(div):
    ds = report.diversity_summary(div)
    display(ds.style.format(precision=3, na_rep="–").hide(axis="index"))
    import seaborn as sns
    div = div.assign(cycle=div["cycle"].where(div["cycle"] == 0, "last"))
    g = sns.catplot(data=div, x="mean", y="method", hue="cycle", col="layer", row="scope",
                    kind="bar", sharex=False, errorbar="sd", aspect=1.3,
                    height=max(2.5, 0.35 * div["method"].nunique() + 1.2))
    g.set_axis_labels("mean pairwise distance", "")
else:
    display(Markdown("_No method in this grid added adversarial examples._"))

# %% [markdown]
# ## Time per cycle (seconds)

# %%
display(report.timings(table).style.format(precision=2).hide(axis="index"))

# %% [markdown]
# ## Configuration and environment

# %%
display(Markdown("```json\n" + json.dumps(config, indent=1) + "\n```"))
display(pd.Series(report.environment(), name="version").to_frame())
