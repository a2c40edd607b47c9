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
# # 01 · Deep active learning: the baselines
#
# **You will learn** what pool-based active learning is, what one cycle does (select,
# label, retrain, evaluate), how the four classic query strategies choose, and how to
# compare them fairly: paired by seed, summarised by the area under the budget curve.
#
# **Prerequisites**: Python, NumPy, a first course in deep learning (an MLP, Adam,
# cross-entropy). **Time**: about a minute with the default settings on 2 CPU cores
# (rerunning reads the runs back); `SMOKE = True` (what the tests run) takes seconds.
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
SMOKE = False            # seconds-long settings (the tests set this)
DATASET = "mnist5k"      # 4,000 real MNIST digits to label, 1,000 to test on
METHODS = ["Random", "Entropy", "BADGE", "Core-set"]
SEEDS = [0, 1, 2]
CYCLES, BUDGET, INITIAL, CANDIDATES = 20, 50, 50, 10_000
RUNS_DIR = "runs/01_baselines"  # under the clone's root; rerunning reads runs back

# %%
if SMOKE:
    DATASET, SEEDS, CYCLES, BUDGET, INITIAL, CANDIDATES = "digits", [0], 3, 10, 20, 300
import copy
import matplotlib.pyplot as plt
import numpy as np
import torch
from dalv.plots import aubc_table, learning_curves, show_images
data = dalv.data.load(DATASET)
cfg = dalv.ExperimentConfig(dataset=DATASET, n_initial=INITIAL, budget=BUDGET,
                            n_cycles=CYCLES, candidates=CANDIDATES)
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
runs = None if SMOKE else dalv.paths.project_path(RUNS_DIR)
table = dalv.run_grid(methods, data, cfg, seeds=SEEDS, out_dir=runs)
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
# 1. Set `CANDIDATES = 500`. Which strategies change, and why does Random not?
# 2. Replace Entropy by `"Margin"` (smallest gap between the two most probable classes).
#    Does it suffer from the cold start as much?
# 3. Change the protocol to `"clean"` (`cfg.replace(protocol="clean")`: a fresh
#    initialisation each cycle, trained on every label). Does the ranking change?
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
