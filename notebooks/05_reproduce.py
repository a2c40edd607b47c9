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
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] tags=["remove-in-report"]
# # 05 · The reproduction report
#
# **You will learn** how dalv turns a grid of runs into a report: curves beside the
# paper's, the paper's claims tested as paired statistics with confidence intervals,
# the diversity of the added examples, what the verifier did, and the environment.
#
# This notebook is the template behind `python -m dalv reproduce --preset NAME`: that
# command runs the grid (one process per method × seed, finished cells skipped), then
# executes this notebook on the report folder with papermill and renders it to HTML with
# the inputs and this cell hidden. Opened by hand, it runs (or reloads) the grid its
# parameters describe. **Time**: seconds to re-render a finished grid; a grid takes
# what its cells take (see the README's preset table).

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
REPORT_DIR: str = None  # a folder with results.csv, config.json (`dalv reproduce`)
TITLE: str = "dalv report"  # the report's title
PRESET: str = "smoke"  # a preset of `python -m dalv reproduce --help`
DATASET: str = None  # digits, mnist5k, mnist, fashion_mnist, cifar10
METHODS: list = None  # e.g. ["Random", "FVAAL-No-Adv", "FVAAL"]
SEEDS: list = None  # e.g. [0, 1, 2]
CYCLES: int = None  # active-learning cycles
BUDGET: int = None  # labels bought per cycle
CANDIDATES: int = None  # unlabelled rows a strategy scores per cycle; 0 means all
VERIFIER: str = None  # an FV-Adv backend: "milp", "lirpa" or "marabou" (default: own)
PROTOCOL: str = None  # "paper" or "clean"
HIDDEN: int = None  # hidden units of the MLP
DEVICE: str = "auto"  # "auto", "cpu" or "cuda"

# %%
import json
import pathlib
from dataclasses import replace
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import HTML, Image, Markdown, display
from dalv import plots, report, stats
from dalv.verify import VERIFIERS
from dalv.methods import get
from dalv.reproduce import PRESETS, cells, collect, grid_diversity, run_cells

def show(df, precision=4, red_rows=None):
    """A rounded table; rows where ``red_rows`` is True are drawn in red."""
    df = df.reset_index(drop=True)
    sty = df.style.format(precision=precision, na_rep="–").hide(axis="index")
    if red_rows is not None:
        flags = list(red_rows)
        red = "background:#fde4e1;color:#b42318"
        sty = sty.apply(lambda r: [red if flags[r.name] else "" for _ in r], axis=1)
    display(sty)

# %%
if REPORT_DIR and (pathlib.Path(REPORT_DIR) / "results.csv").exists():
    out = pathlib.Path(REPORT_DIR)
    table = pd.read_csv(out / "results.csv")
    config = json.loads((out / "config.json").read_text())
    div_path = out / "diversity.csv"
    div = None   # without diversity.csv the run folders would be needed
    if div_path.exists():
        div = pd.read_csv(div_path) if div_path.stat().st_size > 1 else pd.DataFrame()
else:  # run the grid the parameters describe
    p = PRESETS[PRESET]
    exp = dict(dataset=DATASET, n_cycles=CYCLES, budget=BUDGET,
               candidates=CANDIDATES, protocol=PROTOCOL)
    cfg = replace(p.config, **{k: v for k, v in exp.items() if v is not None})
    if HIDDEN: cfg = replace(cfg, model=replace(cfg.model, hidden=HIDDEN))
    methods = tuple(get(m) for m in METHODS) if METHODS else p.methods
    grid = replace(p, name="notebook", config=cfg, description="from notebook 05",
                   methods=methods)
    verifier = VERIFIERS[VERIFIER]() if VERIFIER else None
    todo = cells(grid, seeds=SEEDS, runs=dalv.paths.project_path("runs/notebook"),
                 device=DEVICE, verifier=verifier)
    run_cells(todo)
    out = dalv.paths.project_path("runs/notebook/report")  # figures go here, not beside
    out.mkdir(parents=True, exist_ok=True)  # the notebook: the clone stays clean
    table, div = collect(todo), grid_diversity(todo)
    config = {"preset": PRESET, "methods": grid.method_names}

# %%
n_m, n_c = (int(table[c].nunique()) for c in ("method", "cycle"))
n_by = table.groupby("method")["seed"].nunique()  # the plan may give some methods more
n_s = int(n_by.max())
seeds_text = (f"{n_s} seed{'s' * (n_s != 1)}" if n_by.min() == n_s else
              f"{n_s} seeds for the primary family and its controls, {n_by.min()} for "
              "the other methods")
dataset = str(table["dataset"].iloc[0])
cl = report.claims(table)
files = ["results.csv", "diversity.csv", "config.json", "report.ipynb", "figures/"]
links = " · ".join(f"[{f}]({f})" for f in files if (out / f).exists())
display(Markdown(f"# {TITLE}"))
display(HTML('<div style="border-left:4px solid #444;padding:0.2em 0.8em;'
             'margin:0.5em 0 1em;background:#fafafa">'
             + report.headline(cl, dataset, n_s) + "</div>"))
for w in report.report_warnings(table):
    display(HTML('<div style="border:2px solid #b42318;background:#fde4e1;'
                 'color:#7a1a12;padding:0.4em 0.8em;margin:0.4em 0">'
                 f"<b>Warning.</b> {w}</div>"))
display(Markdown(
    f"{config.get('description', '')}\n\n"
    f"{n_m} method{'s' * (n_m != 1)} × {seeds_text} × {n_c} cycles "
    f"on **{dataset}**, "
    f"protocol `{table['protocol'].iloc[0]}`. Files: {links}\n\n"
    "The protocol is described in dalv's `docs/protocol.md` (cited as protocol §N); "
    "the analysis plan the verdicts follow is its §10."))

# %% [markdown]
# ## Learning curves
#
# Test accuracy per cycle, mean ± 1 std over seeds; one panel per query strategy with
# its augmentations (colour: strategy; shade, line style and marker: augmentation —
# FGSM-Adv light and dashed, PGD-Adv middle and dash-dotted, FV-Adv darkest and solid,
# the same everywhere in dalv). Where the runs follow the paper's protocol on its
# dataset, the paper's 5-seed averages are drawn thin and faint with crosses; otherwise
# (another pool, fewer cycles) they are left out, since they are not comparable point
# for point.

# %%
for path in report.save_figures(table, out / "figures"):
    display(Image(filename=str(path)))

# %% [markdown]
# ## The claims, under the analysis plan
#
# Each comparison whose two methods ran here, grouped by the plan's families (primary
# first): the paper's thesis (FV-Adv beats FGSM-Adv per strategy), its other claims
# (protocol §7) and dalv's control claims, which ask whether a *verifier's*
# counterexample matters or just a stronger attack's (protocol §4.5). For each: the mean
# over seeds of the paired difference A − B, its 95 % t interval, the standardised
# effect, the p values Holm-adjusted within the family, and the verdict. The paper's own
# per-seed numbers get the same plan (`paper …` columns).

# %%
display(Markdown(report.plan_markdown(n_s, dataset)))
display(Markdown("**Rule.** " + stats.VERDICT_RULES))
display(HTML(report.claims_html(cl)))

# %%
for metric in ("aubc", "final"):
    if len(cl) and (cl["metric"] == metric).any():
        fig = plots.forest(cl, metric)
        plots.save_figure(fig, out / "figures" / f"claims_{metric}")
        plt.show()

# %% [markdown]
# ## AUBC and final accuracy
#
# Normalised AUBC (protocol §5.2) and final accuracy, mean ± std over seeds, beside the
# paper's 5-seed values for the same method.

# %%
comparable = report.paper_curves_for(table) is not None
display(Markdown(report.dataset_note(dataset, comparable)))
cut = report.timeouts(table)
comp = report.comparison(table)
show(comp, red_rows=comp["method"].isin(set(cut["method"])))
if len(cut):
    display(Markdown("Methods in red had searches cut by the seconds safety net in "
                     "some cells (listed under *What the augmenters did*)."))

# %% [markdown]
# ## Fidelity to the paper's curves
#
# Where the runs follow the paper's protocol on its dataset: per method, the RMS and the
# largest difference between our mean curve and the paper's, and the differences at
# cycles 0, 1, 5 and the last. `fidelity.csv`, when the report folder has one,
# compares hidden widths (`benchmarks/bench_fidelity.py`).

# %%
fid = report.fidelity(table)
if len(fid):
    show(fid)
else:
    display(Markdown("_Not comparable: these runs do not follow the paper's protocol "
                     "on its dataset._"))
if (out / "fidelity.csv").exists():
    show(pd.read_csv(out / "fidelity.csv"))

# %% [markdown]
# ## Diversity of the added adversarial examples
#
# Euclidean distances between the adversarial examples a cycle added, embedded by that
# cycle's model (trained on them), in its **penultimate** layer (what the paper intends)
# and its
# **logit** layer (what the reference code measured, protocol §5.3), at the first and
# the last cycle. **Per image**: distances between examples of the same queried image —
# the measure that does not depend on which images a method queried or how many
# examples it got. **All**: every pair (the paper's measure). DFAL adds one example
# per image, so it has no per-image pairs.

# %%
if div is None:
    display(Markdown("_Not computed: this report folder has no `diversity.csv` "
                     "(`dalv reproduce` writes it from the run folders)._"))
elif len(div):
    per = div[div["scope"] == "per image"].assign(
        cycle=lambda d: d["cycle"].where(d["cycle"] == 0, "last").astype(str))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * per["method"].nunique() + 1.8))
    for ax, layer in zip(axes, ("penultimate", "logits"), strict=True):
        g = per[per["layer"] == layer].groupby(["method", "cycle"])["mean"].mean()
        g.unstack().plot.barh(ax=ax, legend=layer == "logits")
        ax.set_title(f"per image, {layer} layer"); ax.set_xlabel("mean distance")
    fig.tight_layout()
    plots.save_figure(fig, out / "figures" / "diversity_per_image")
    plt.show()
    summary = report.diversity_summary(div)
    wide = summary.pivot_table(index="method", columns=["scope", "layer", "cycle"],
                               values="mean distance", sort=False)
    wide.columns = [f"{s}, {lay[:5]}., cycle {c}" for s, lay, c in wide.columns]
    wide.insert(0, "examples per cycle", summary.groupby("method", sort=False)[
        "points"].max().astype(int))
    show(wide.reset_index(), precision=3)
    display(Markdown("Mean over seeds; `diversity.csv` holds every seed, cycle and "
                     "the spread."))
else:
    display(Markdown("_No method in this grid added adversarial examples._"))

# %% [markdown]
# ## What the augmenters did
#
# Per cycle, averaged over seeds and cycles: examples requested and found, where they
# came from (`own`: the strategy's own example; `fgsm`: the FGSM sweep; `solver`: a
# verifier's solver; `pgd`: projected gradient descent), the radius steps proved empty,
# queried points the search left undecided (`unknown`), and searches cut by the seconds
# safety net (`timeouts`, red when any).

# %%
work = report.verifier_work(table)
if len(work):
    flagged = work["timeouts"] > 0 if "timeouts" in work else None
    show(work, precision=1, red_rows=flagged)
else:
    display(Markdown("_No augmentation ran._"))
if len(cut):
    display(HTML('<p style="color:#b42318"><b>Cells cut by the clock.</b> In these '
                 "rows FV-Adv's seconds safety net cut searches, so what they trained "
                 "on depends on the machine's speed and load: a seed does not fix "
                 "them.</p>"))
    show(cut.reset_index(drop=True), precision=1, red_rows=[True] * len(cut))
elif "aug_timeouts" in table:
    display(Markdown("No search was cut by the seconds safety net (`aug_timeouts` = 0 "
                     "in every row): a seed fixes every cell."))

# %% [markdown]
# ## Time per cycle (seconds)

# %%
show(report.timings(table), precision=2)
display(Markdown(report.grid_time(table, config)))

# %% [markdown]
# ## Configuration and environment

# %%
def _values(col):  # plain Python values: "1", not "[np.int64(1)]"
    if col not in table:
        return "?"
    return ", ".join(str(v) for v in sorted(table[col].dropna().unique().tolist()))

env = {**report.environment(), "torch threads per cell": _values("threads"),
       "devices": _values("device")}
display(pd.Series(env, name="value").to_frame())
display(Markdown("```json\n" + json.dumps(config, indent=1) + "\n```"))
