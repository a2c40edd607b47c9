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

# %% [markdown]
# # 01 · Deep active learning: the baselines
#
# **You will learn** what pool-based active learning is, what one cycle does (select,
# label, retrain, evaluate), how the four classic query strategies choose, and how to
# compare them fairly: paired by seed, summarised by the area under the budget curve.
#
# **Prerequisites**: Python, NumPy, a first course in deep learning (an MLP, Adam,
# cross-entropy). **Time**: about 10 s at the teaching setting (it reads back the
# committed runs of `python -m dalv reproduce --preset baselines`); `RECOMPUTE = True`
# recomputes them (about 12 runs of 20 cycles: it prints its expected time first);
# `SMOKE = True` (what the tests run) takes seconds.
#
# Chapters: **01 baselines** → 02 gradient attacks → 03 formal verification → 04 FVAAL
# → 05 the reproduction report. The protocol these chapters follow is written up in
# the project's `docs/protocol.md` ("protocol §N" below).

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
# None = the teaching setting (or SMOKE's); a value set here or with papermill -p wins.
SMOKE: bool = False  # seconds-long settings on 8x8 digits (what the tests run)
RECOMPUTE: bool = False  # recompute the runs instead of reading the committed table
DATASET: str = None  # "mnist5k" (4,000 MNIST digits to label, 1,000 to test on)
METHODS: list = None  # strategies, e.g. ["Random", "Entropy", "BADGE", "Core-set"]
SEEDS: list = None  # e.g. [0, 1, 2]; every method of a seed shares its initial labels
CYCLES: int = None  # acquisition cycles (20)
BUDGET: int = None  # labels bought per cycle (50)
INITIAL: int = None  # initial labelled images (50)
CANDIDATES: int = None  # unlabelled images a strategy scores per cycle (10,000: all)
RUNS_DIR: str = None  # where RECOMPUTE writes its runs (runs/01_baselines)

# %%
import dalv.course  # the course helpers: parameters checked before work starts
P = dalv.course.settings("01", SMOKE=SMOKE, RECOMPUTE=RECOMPUTE, DATASET=DATASET,
                         METHODS=METHODS, SEEDS=SEEDS, CYCLES=CYCLES, BUDGET=BUDGET,
                         INITIAL=INITIAL, CANDIDATES=CANDIDATES, RUNS_DIR=RUNS_DIR)
DATASET, METHODS, SEEDS, CYCLES = P.DATASET, P.METHODS, P.SEEDS, P.CYCLES
BUDGET, INITIAL, CANDIDATES = P.BUDGET, P.INITIAL, P.CANDIDATES
import copy
import matplotlib.pyplot as plt
import numpy as np
import torch
from dalv.plots import aubc_table, learning_curves, show_images
from dalv.reproduce import PRESETS
torch.set_num_threads(1)  # the committed runs' thread count: the seed reproduces them
data = dalv.data.load(DATASET)
# the `baselines` preset's experiment (an MLP with 30 hidden units, the paper's width),
# whose runs are committed in reports/baselines
cfg = PRESETS["baselines"].config.replace(dataset=DATASET, n_initial=INITIAL,
                                          budget=BUDGET, n_cycles=CYCLES,
                                          candidates=CANDIDATES)
print(P)
data

# %%
names = [data.classes[y] for y in data.y_train[:12]]
show_images([data.x_train[:12].numpy()], titles=names);

# %% [markdown]
# ## The loop
#
# We hold a pool of unlabelled images, a model θ and a budget of `BUDGET` labels per
# cycle. Cycle t:
#
# 1. the **query strategy** scores unlabelled images with the current model θ_{t−1}
#    (the paper scores a random subset of `CANDIDATES` of them) and picks `BUDGET`;
# 2. the **oracle** labels them (here: the dataset's labels; in practice a person);
# 3. a model is **trained** again — in the paper's protocol from the weights θ_init of
#    the model trained on the initial labels, on every image acquired so far;
# 4. its **test accuracy** is recorded.
#
# Twenty cycles give a learning curve: accuracy against labels bought. Its normalised
# area, the **AUBC** (protocol §5.2), summarises it in one number:
# $\mathrm{AUBC} = \frac{1}{T-1}\sum_{t=0}^{T-2} \frac{a_t + a_{t+1}}{2}$.

# %% [markdown]
# ## One cycle, written out by hand
#
# Everything a cycle does, for the Entropy strategy, in plain torch. The randomness
# comes from dalv's per-(seed, cycle) streams, so the result must equal
# `dalv.run_cycle` — the one cycle every dalv run is made of — exactly.

# %%
seed = 0
state = dalv.loop.start(data, cfg, seed)          # the seed's initial labels and θ_init
theta_init = copy.deepcopy(state.theta_init).cpu()  # a CPU copy to work with by hand
labelled = state.pool.labeled_idx
rng = dalv.loop.cycle_rng(seed, 0)                # cycle 0's random stream
unlabelled = np.setdiff1d(np.arange(len(data.x_train)), labelled)
if CANDIDATES >= len(unlabelled):
    cand = unlabelled                             # score every unlabelled image
else:
    cand = np.sort(rng.choice(unlabelled, size=CANDIDATES, replace=False))

# %%
with torch.no_grad():
    p = torch.softmax(theta_init(data.x_train[cand]).double(), dim=1)
entropy = torch.special.entr(p).sum(1).numpy()               # −Σ p log p
chosen = cand[np.argsort(-entropy, kind="stable")[:BUDGET]]  # most uncertain first
train_idx = np.sort(chosen)        # the acquired images (the initial ones are left out)
model = copy.deepcopy(theta_init)  # paper protocol: restart from θ_init every cycle
dalv.train.fit(model, data.x_train[train_idx], data.y_train[train_idx], cfg.train,
               seed=dalv.loop.fit_seed(seed, 0))
acc = dalv.train.evaluate(model, data.x_test, data.y_test)

# %%
record = dalv.run_cycle(state, dalv.methods.get("Entropy"), cfg, seed=seed)
assert set(record.selection.idx) == set(chosen)
assert acc == record.test_acc, (acc, record.test_acc)
print(f"by hand: {acc:.4f}   dalv.run_cycle: {record.test_acc:.4f}")

# %% [markdown]
# ## The four baselines (protocol §3.1–3.4)
#
# | strategy | picks | kind |
# |---|---|---|
# | Random | uniformly from all unlabelled images | none |
# | Entropy | the highest predictive entropy | uncertainty |
# | BADGE | k-means++ seeds on last-layer gradient embeddings | both |
# | Core-set | the image farthest from every labelled one, greedily | diversity |
#
# `dalv.run_grid` runs every method × seed. Every method of a seed starts from the same
# initial labels and the same θ_init, so differences between methods are paired.

# %%
methods = [dalv.methods.get(m) for m in METHODS]
saved = dalv.course.committed("baselines", cfg, METHODS, SEEDS)
if saved.table is not None and not P.RECOMPUTE:
    table = saved.table  # the committed runs: same experiment, methods and seeds
    print(saved.note())
else:
    print(saved.note() if saved.table is None else "RECOMPUTE = True")
    guess = dalv.course.estimate_seconds("baselines", DATASET, METHODS, SEEDS, CYCLES)
    print(dalv.course.announce(guess, f"{len(METHODS)} methods × {len(SEEDS)} seeds"))
    runs = None if SMOKE else dalv.paths.project_path(P.RUNS_DIR)
    table = dalv.run_grid(methods, data, cfg, seeds=SEEDS, out_dir=runs)
mine = table.query("method == 'Entropy' and seed == @seed and cycle == 0")
if len(mine):  # the cycle computed by hand above is the table's first Entropy row
    print(f"Entropy, seed {seed}, cycle 0: {record.test_acc:.4f} computed here, "
          f"{mine.test_acc.iloc[0]:.4f} in the table")
table[["method", "seed", "cycle", "n_labeled", "test_acc"]].head()

# %%
title = f"{DATASET}: baselines (mean ± std over {len(SEEDS)} seeds)"
learning_curves(table, title=title)
plt.show()
aubc_table(table)

# %% [markdown]
# ## Comparing two strategies
#
# A mean over three seeds hides how often one strategy actually beats the other. Pair
# the seeds: the difference of AUBC on the same initial set, seed by seed.

# %%
for a in ["BADGE", "Entropy", "Core-set"]:
    w = dalv.metrics.paired_wins(table, a, "Random")
    print(f"{a:8s} − Random: mean Δ AUBC {w['mean_delta']:+.4f}, "
          f"better on {w['wins']} of {w['seeds']} seeds")

# %% [markdown]
# ## What to take away
#
# * A query strategy is a rule for ranking the unlabelled pool; the loop around it is
#   the same for every method, and `dalv.run_cycle` is that loop's body.
# * **BADGE** usually leads: it mixes uncertainty (the gradient's size) with diversity
#   (k-means++ seeding).
# * **Entropy** starts *below* Random: with 50 labels the model's uncertainty is poorly
#   calibrated and the most uncertain images are redundant (the cold-start problem);
#   it catches up later. (The reference code sorted entropy the other way, picking the
#   most *confident* images; dalv uses the usual rule, protocol §3.2.)
# * **Core-set** on a weak feature space favours outliers; the paper found it far below
#   Random (MNIST AUBC 0.665 against 0.808).
# * With three seeds, report paired differences, not a ranking of means: chapter 05's
#   report does this with confidence intervals.
#
# ## Exercises
#
# Check your answers with `dalv.course.check_exercise`: it recomputes each answer from
# your objects and says "correct" or what is off. Worked solutions are in the project's
# `docs/solutions/01.md`.
#
# 1. Compute the AUBC of Random, seed 0, from `table` with the trapezoid formula above
#    (NumPy only). Check: `dalv.course.check_exercise("01.1", value, table=table)`.
# 2. On how many seeds does BADGE's AUBC beat Random's? Check:
#    `dalv.course.check_exercise("01.2", n, table=table)`.
# 3. (Open; recomputes, so it prints its expected time first.) Set `CANDIDATES = 500`.
#    Which strategies change, and why does Random not? Replace Entropy by `"Margin"`:
#    does it suffer from the cold start as much? Try `cfg.replace(protocol="clean")`.
#
# ## References
#
# * B. Settles, [Active Learning Literature
#   Survey](https://burrsettles.com/pub/settles.activelearning.pdf), 2009.
# * J. T. Ash et al., [Deep Batch Active Learning by Diverse, Uncertain Gradient Lower
#   Bounds](https://arxiv.org/abs/1906.03671) (BADGE), ICLR 2020.
# * O. Sener, S. Savarese, [Active Learning for Convolutional Neural Networks: A
#   Core-Set Approach](https://arxiv.org/abs/1708.00489), ICLR 2018.
# * J. Spiegelman, G. Amir, G. Katz, [On Improving Deep Active Learning with Formal
#   Verification](https://arxiv.org/abs/2512.14170), 2025.
#
# Next: **chapter 02** attacks the model with gradients, and ranks images by how little
# it takes to change their class.
