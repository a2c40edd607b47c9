"""Writes notebooks/05_reproduce.ipynb (the papermill report template)."""

from nbtools import SETUP, code, md, write

cells = [
    md("""
# 05 · Reproducing the paper's benchmarks

A papermill template. Its `parameters` cell is the whole configuration; `python -m dalv
reproduce --preset NAME` runs the grid (one process per method × seed, finished cells
skipped), then executes this notebook on the report folder and renders it to HTML with the
inputs hidden. Opened by hand, it runs (or reloads) the grid its parameters describe.

Our curves are solid with a ±1 std band over seeds; the paper's 5-seed averages are dashed.
"""),
    code(SETUP),
    code(
        """
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
K = None                 # adversarial examples per queried point
VERIFIER = None          # "lirpa" or "marabou"
PROTOCOL = None          # "paper" or "clean"
HIDDEN = None
DEVICE = "auto"
""",
        tags=["parameters"],
    ),
    code("""
import json, pathlib
import pandas as pd
from IPython.display import Markdown, display
from dalv import report
from dalv.reproduce import PRESETS, Preset, cells, collect, grid_diversity, run_cells
from dataclasses import replace
"""),
    code("""
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
    PRESETS["notebook"] = Preset(cfg, tuple(METHODS or p.methods), tuple(SEEDS or p.seeds),
                                 K or p.k, VERIFIER or p.verifier, "from notebook 05")
    todo = cells("notebook", seeds=None, runs=pathlib.Path("runs/notebook"), data_root=None, device=DEVICE)
    run_cells(todo)
    out, table, div = pathlib.Path("."), collect(todo), grid_diversity(todo)
    config = {"preset": PRESET, "methods": list(PRESETS["notebook"].methods)}
display(Markdown(f"# {TITLE}\\n\\n{config.get('description', '')}\\n\\n"
                 f"{table['method'].nunique()} methods × {table['seed'].nunique()} seeds × "
                 f"{table['cycle'].nunique()} cycles on **{table['dataset'].iloc[0]}**."))
"""),
    md("## Learning curves"),
    code("""
from IPython.display import Image
for path in report.save_figures(table, out / "figures"):
    display(Image(filename=str(path)))
"""),
    md("""
## AUBC and final accuracy

Normalised AUBC (trapezoid over cycles, divided by the number of cycles − 1, spec §7), mean ± std over
seeds, beside the paper's 5-seed values. The paper's MNIST numbers are for the full 60k-image pool; mnist5k
has a 4,000-image pool and a 1,000-image test set, so absolute values differ and the ranking is what to compare.
"""),
    code("""
cmp = report.comparison(table)
display(cmp.style.format(precision=4, na_rep="–").hide(axis="index"))
"""),
    md("""
## The paper's claims, checked (paired by seed)

For each comparison the paper draws (spec §8) whose two methods ran here: the mean over
seeds of Δ AUBC (A − B) and the seeds on which A wins. **we agree** is "yes" when the mean
and the majority of seeds both favour A, "no" when both favour B, "mixed" when they split
(an on-par claim: |Δ| < 0.005). **paper's own numbers** applies the same rule to the paper's
published curves (its five per-seed files; its averages where a method is missing there):
the text's claims are not all borne out by its own figures.
"""),
    code("""
cl = report.claims(table)
display(cl.style.format(precision=4, na_rep="–").hide(axis="index") if len(cl)
        else Markdown("_None of the paper's compared pairs ran in this grid._"))
"""),
    md("""
## Diversity of the added adversarial examples

Mean pairwise Euclidean distance between the adversarial examples a cycle added, in the
model's **penultimate** layer (what the paper intends) and in its **logit** layer (what the
reference code measured, spec §7), for the first and the last cycle; mean and std over seeds.
Scope **all** compares every pair, as the paper did; **per image** only pairs of examples of
the same queried image: FGSM-Adv's lie on a single ray, FV-Adv's must differ in every pixel.
"""),
    code("""
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
"""),
    md("## Time per cycle (seconds)"),
    code("""
display(report.timings(table).style.format(precision=2).hide(axis="index"))
"""),
    md("## Configuration and environment"),
    code("""
display(Markdown("```json\\n" + json.dumps(config, indent=1) + "\\n```"))
display(pd.Series(report.environment(), name="version").to_frame())
"""),
]
write("notebooks/05_reproduce.ipynb", cells)
