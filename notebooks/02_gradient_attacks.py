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
# # 02 · Gradient attacks and adversarial active learning
#
# **You will learn** FGSM, PGD and DeepFool, each written in a few lines and checked
# against `dalv.attacks`; what an adversarial example looks like; and how the paper's
# two distance-based query strategies use them:
#
# * **DFAL** (Ducoffe & Precioso, 2018) ranks by the **L2** length of a DeepFool
#   perturbation;
# * **FVAAL** (the paper's proposal) ranks by the smallest **L∞** FGSM step that changes
#   the predicted class, found by binary search.
#
# Both attacks also produce an *adversarial example*, which the "+Adv" methods add to
# the training set with the label of its source (protocol §4). Every ε is an L∞ radius
# in pixel units (pixels lie in [0, 1]) unless it says L2.
#
# **Prerequisites**: chapter 01; gradients with `torch.autograd`.
# **Time**: about 30 s at the teaching setting on 2 CPU cores (the last section reads
# back committed runs; `RECOMPUTE = True` recomputes them and prints its expected time
# first); seconds with `SMOKE = True`.

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
RECOMPUTE: bool = False  # recompute the last section's runs instead of reading them
DATASET: str = None  # "mnist5k" (5,000 real MNIST digits: 4,000 train, 1,000 test)
N_POOL: int = None  # unlabelled images the attacks score (2000)
EPOCHS: int = None  # training epochs of every model (10)
SEEDS: list = None  # seeds of the short active-learning run, e.g. [0, 1, 2]
CYCLES: int = None  # its acquisition cycles (20)
BUDGET: int = None  # its labels per cycle (50)
INITIAL: int = None  # its initial labels (50)
CANDIDATES: int = None  # images its strategies score per cycle (10,000: all)
RUNS_DIR: str = None  # where RECOMPUTE writes its runs (runs/02_gradient)

# %%
import dalv.course  # the course helpers: parameters checked before work starts
P = dalv.course.settings("02", SMOKE=SMOKE, RECOMPUTE=RECOMPUTE, DATASET=DATASET,
                         N_POOL=N_POOL, EPOCHS=EPOCHS, SEEDS=SEEDS, CYCLES=CYCLES,
                         BUDGET=BUDGET, INITIAL=INITIAL, CANDIDATES=CANDIDATES,
                         RUNS_DIR=RUNS_DIR)
DATASET, N_POOL, EPOCHS, SEEDS = P.DATASET, P.N_POOL, P.EPOCHS, P.SEEDS
CYCLES, BUDGET, INITIAL, CANDIDATES = P.CYCLES, P.BUDGET, P.INITIAL, P.CANDIDATES
print(P)
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from dalv.plots import aubc_table, learning_curves

data = dalv.data.load(DATASET)
model = dalv.models.build(dalv.ModelConfig(hidden=128), data.input_shape,
                          data.n_classes, seed=0)
dalv.train.fit(model, data.x_train[:1000], data.y_train[:1000],
               dalv.TrainConfig(epochs=EPOCHS), seed=0)
x = data.x_train[1000:1000 + N_POOL]          # the "unlabelled pool" we attack
acc = dalv.train.evaluate(model, data.x_test, data.y_test)
print(f"{DATASET}: test accuracy {acc:.3f}; pool of {len(x)} images")


# %% [markdown]
# ## FGSM: one signed-gradient step
#
# FGSM (Goodfellow et al., 2015) moves every pixel by ±ε in the direction that increases
# the loss, then clips to the valid range:
# $x' = \mathrm{clip}_{[0,1]}\big(x + \varepsilon\,\mathrm{sign}(\nabla_x
# \mathrm{CE}(f(x), \hat y))\big)$. As in the paper, $\hat y$ is the model's **own
# prediction** (no label is needed, so it works on unlabelled images). The step has L∞
# length ε (less where clipping bites).

# %%
def fgsm(model, x, eps):
    x = x.clone().requires_grad_(True)
    logits = model(x)
    # a summed loss gives each row its own example's gradient
    loss = F.cross_entropy(logits, logits.argmax(1), reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()

assert torch.allclose(fgsm(model, x, 0.1), dalv.attacks.fgsm(model, x, 0.1))


# %% [markdown]
# ## PGD: FGSM, repeated and projected
#
# PGD (Madry et al., 2018) takes several smaller signed steps of size α, and after each
# one projects back onto the L∞ ball of radius ε around x (intersected with [0, 1]).
# `dalv` also offers random restarts; with none, the run starts at x itself.

# %%
def pgd(model, x, eps, steps=10):
    alpha, y = 2.5 * eps / steps, model(x).argmax(1)
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)      # the ε-box ∩ [0, 1]
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), lo), hi)
    return x_adv

assert torch.allclose(pgd(model, x, 0.1), dalv.attacks.pgd(model, x, 0.1, steps=10))


# %% [markdown]
# ## DeepFool: walk to the nearest linearised boundary
#
# DeepFool (Moosavi-Dezfooli et al., 2016) linearises every logit difference $f_j - f_k$
# around the current point ($k$ = the clean class), steps to the nearest of those
# hyperplanes (in L2), adds a 2 % overshoot, and repeats until the class changes (at
# most 20 steps). DFAL's score is the L2 length of the total perturbation r. Below, one
# input at a time; the package computes the Jacobian of all classes for the whole batch
# at once.

# %%
def deepfool_one(model, x0, max_iter=20, overshoot=0.02):
    k, r = model(x0[None]).argmax().item(), torch.zeros_like(x0)
    for _ in range(max_iter):
        logits = model((x0 + r)[None])[0].detach()
        if logits.argmax().item() != k:
            break
        J = torch.autograd.functional.jacobian(lambda z: model(z[None])[0], x0 + r)
        J = J.flatten(1)                                    # [classes, pixels]
        w, f = J - J[k], logits - logits[k]                 # ∇(f_j − f_k) and f_j − f_k
        dist = f.abs() / (w.norm(dim=1) + 1e-12)
        dist[k] = float("inf")
        j = dist.argmin()                                   # the nearest boundary
        r_i = f[j].abs() / (w[j].pow(2).sum() + 1e-12) * w[j]
        r = r + (1 + overshoot) * r_i.reshape(x0.shape)
        if r_i.norm() < 1e-6:
            break
    return (x0 + r).clamp(0, 1), r.norm()


# %%
mine = [deepfool_one(model, xi) for xi in x[:20]]
x_df, r_df = dalv.attacks.deepfool(model, x[:20])
assert torch.allclose(torch.stack([m[0] for m in mine]), x_df, atol=1e-5)
assert torch.allclose(torch.stack([m[1] for m in mine]), r_df, atol=1e-4)
print("L2 norms of the first five DeepFool perturbations:", r_df[:5].numpy().round(3))

# %% [markdown]
# ## Do the adversarial examples fool the model?
#
# FGSM and PGD at ε = 0.1 flip part of the pool. DeepFool's raw point x + r flips nearly
# every image, because that is its stopping rule. But the paper's DFAL adds **clip(x +
# r, 0, 1)**, and on digit images, whose pixels mostly sit at 0, clipping removes much
# of r and moves the point back across the boundary: the clipped DeepFool example
# usually keeps the clean class. It is still a point near the boundary, labelled like
# its source.

# %%
with torch.no_grad():
    pred = model(x).argmax(1)
    def fooled(x_adv):
        return f"{(model(x_adv).argmax(1) != pred).float().mean().item():.1%}"
x_fgsm, x_pgd = dalv.attacks.fgsm(model, x, 0.1), dalv.attacks.pgd(model, x, 0.1)
x_raw, _ = dalv.attacks.deepfool(model, x, clip=False)
x_deep, r_l2 = dalv.attacks.deepfool(model, x)
pd.Series({"FGSM ε=0.1": fooled(x_fgsm), "PGD ε=0.1": fooled(x_pgd),
           "DeepFool x + r": fooled(x_raw), "DeepFool clip(x + r)": fooled(x_deep)},
          name="class changed")


# %%
def gallery(rows, n=8):
    # One row per attack; each title is the model's prediction for that image.
    fig, axes = plt.subplots(len(rows), n, figsize=(1.2 * n, 1.4 * len(rows)),
                             squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        with torch.no_grad():
            preds = model(imgs[:n]).argmax(1)
        for i, ax in enumerate(axes[r]):
            ax.imshow(imgs[i, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"pred {int(preds[i])}", fontsize=7)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r][0].set_ylabel(name, fontsize=8)
    fig.tight_layout()

gallery({"clean": x, "FGSM 0.1": x_fgsm, "PGD 0.1": x_pgd, "DeepFool": x_deep})


# %% [markdown]
# ## FVAAL's score: the smallest FGSM step that flips the class
#
# The gradient is computed once at x; then a binary search over ε ∈ [0, 1] starts at
# 0.5, moves the upper end down on success and the lower end up on failure, and stops
# when the interval is narrower than 5·10⁻⁴: 11 FGSM evaluations. The score is the
# midpoint of the final interval. Images no ε flips get ε = 1 and are ranked last. First
# for one image, by
# hand:

# %%
def min_eps_one(model, x0, tol=5e-4):
    x1 = x0[None].clone().requires_grad_(True)
    logits = model(x1)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, logits.argmax(1)), x1)
    pred, lo, hi, eps, found = logits.argmax(1), 0.0, 1.0, 0.5, False
    while hi - lo > tol:                                # 11 tests for tol = 5e-4
        with torch.no_grad():
            x_eps = (x0[None] + eps * grad.sign()).clamp(0, 1)
            flips = bool(model(x_eps).argmax(1) != pred)
        lo, hi = (lo, eps) if flips else (eps, hi)
        found = found or flips
        eps = (lo + hi) / 2
    return eps if found else 1.0

by_hand = [min_eps_one(model, xi) for xi in x[:20]]
assert by_hand == dalv.attacks.min_fgsm_eps(model, x[:20])[0].tolist()
print("ε of the first five images:", [round(e, 5) for e in by_hand[:5]])

# %%
eps, x_min, flipped = dalv.attacks.min_fgsm_eps(model, x)
print(f"flipped by some tested ε: {flipped.float().mean():.1%}; "
      f"median ε = {eps.median():.4f}")
plt.figure(figsize=(6, 3))
plt.hist(eps.numpy(), bins=60)
plt.xlabel("minimal FGSM ε (L∞)"), plt.ylabel("images")
plt.title("FVAAL scores of the pool")
closest = torch.from_numpy(np.argsort(eps.numpy(), kind="stable")[:8])
gallery({"clean": x[closest], "FGSM at min ε": x_min[closest]})

# %% [markdown]
# ## Do DFAL and FVAAL agree?
#
# Both strategies query the images with the *smallest* distance. We compare their
# rankings over the same pool with Spearman's rank correlation, and count how many of
# the 50 images each would query first are shared. (The two distances are in different
# norms, L2 and L∞, so only the ranks are comparable.)

# %%
rho = spearmanr(eps.numpy(), r_l2.numpy()).correlation
first_fvaal = set(np.argsort(eps.numpy(), kind="stable")[:50])
first_dfal = set(np.argsort(r_l2.numpy(), kind="stable")[:50])
print(f"Spearman rank correlation: {rho:.3f}")
print(f"shared among the first 50 queries: {len(first_fvaal & first_dfal)} of 50")
plt.figure(figsize=(4, 4))
plt.scatter(r_l2.numpy(), eps.numpy(), s=4, alpha=0.4)
plt.xlabel("DeepFool ‖r‖₂ (DFAL)"), plt.ylabel("minimal FGSM ε, L∞ (FVAAL)")
plt.title("two distances to the boundary, same pool");

# %% [markdown]
# ## An active-learning run
#
# The three selection rules, with no adversarial examples added: Random, FVAAL-No-Adv
# and DFAL-No-Adv. Each cycle scores `CANDIDATES` unlabelled images with the current
# model, labels `BUDGET` of them and retrains (the paper's protocol: from the initial
# weights, on the acquired examples). The paper found FVAAL-No-Adv and DFAL-No-Adv
# indistinguishable and both ahead of Random on MNIST. At the teaching setting the
# runs are read back from `reports/gradient` (`python -m dalv reproduce --preset
# gradient`, MLP-30 as in the paper); `RECOMPUTE = True` recomputes them.

# %%
from dalv.reproduce import PRESETS
# the `gradient` preset's experiment (MLP-30), whose runs are committed in reports/
cfg = PRESETS["gradient"].config.replace(
    dataset=DATASET, n_initial=INITIAL, budget=BUDGET, n_cycles=CYCLES,
    candidates=CANDIDATES, train=dalv.TrainConfig(epochs=EPOCHS))
names = ["Random", "FVAAL-No-Adv", "DFAL-No-Adv"]
saved = dalv.course.committed("gradient", cfg, names, SEEDS)
if saved.table is not None and not P.RECOMPUTE:
    table = saved.table
    print(saved.note())
else:
    print(saved.note() if saved.table is None else "RECOMPUTE = True")
    guess = dalv.course.estimate_seconds("gradient", DATASET, names, SEEDS, CYCLES)
    print(dalv.course.announce(guess, f"3 methods × {len(SEEDS)} seeds"))
    torch.set_num_threads(1)  # one thread count per run folder
    runs = None if SMOKE else dalv.paths.project_path(P.RUNS_DIR)
    table = dalv.run_grid([dalv.methods.get(n) for n in names], data, cfg,
                          seeds=SEEDS, out_dir=runs, progress=False)
learning_curves(table, title=f"{DATASET}: three selection rules, {len(SEEDS)} seed(s)")
plt.show()
aubc_table(table)

# %% [markdown]
# ## What to take away
#
# * FGSM, PGD and DeepFool are a few lines each; `dalv.attacks` runs them on whole
#   batches (one gradient plus eleven forward passes for FVAAL's score, one Jacobian
#   per DeepFool step).
# * FVAAL's ε is an L∞ distance along one gradient-sign ray; DFAL's is an L2 distance
#   to a linearised boundary. They rank the pool similarly, but not identically.
# * The clipped DeepFool example that the paper's DFAL adds rarely flips the model on
#   digits: it is a point near the boundary, not always across it.
# * An attack finds *some* adversarial example when it succeeds; when it fails, it
#   proves nothing. Chapter 03 turns to methods that can prove an ε-box safe.
#
# ## Exercises
#
# Check your answers with `dalv.course.check_exercise` (it says "correct" or what is
# off); worked solutions are in the project's `docs/solutions/02.md`.
#
# 1. What fraction of the pool `x` does FGSM at ε = 0.05 flip (against the model's own
#    predictions)? Check: `dalv.course.check_exercise("02.1", frac, model=model, x=x)`.
# 2. Write `fgsm_targeted(model, x, eps, target)`: one signed step that *lowers* the
#    cross-entropy of a chosen class `target` (a tensor of class indices). Check:
#    `dalv.course.check_exercise("02.2", fgsm_targeted)`.
# 3. (Open.) FVAAL's binary search assumes that success is monotone in ε. Find an image
#    of the pool where FGSM succeeds at some ε but fails at a larger one.
#
# ## References
#
# * I. Goodfellow, J. Shlens, C. Szegedy, [Explaining and Harnessing Adversarial
#   Examples](https://arxiv.org/abs/1412.6572) (FGSM), ICLR 2015.
# * A. Madry et al., [Towards Deep Learning Models Resistant to Adversarial
#   Attacks](https://arxiv.org/abs/1706.06083) (PGD), ICLR 2018.
# * S.-M. Moosavi-Dezfooli, A. Fawzi, P. Frossard, [DeepFool: a simple and accurate
#   method to fool deep neural networks](https://arxiv.org/abs/1511.04599), CVPR 2016.
# * M. Ducoffe, F. Precioso, [Adversarial Active Learning for Deep
#   Networks](https://arxiv.org/abs/1802.09841) (DFAL), 2018.
#
# Next: **chapter 03** bounds a model's outputs over a whole ε-box, which can prove
# that no adversarial example exists there, and asks exact solvers for
# counterexamples.
