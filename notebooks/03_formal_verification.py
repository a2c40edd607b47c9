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
# # 03 · Formal verification: bounds, proofs and counterexamples
#
# A gradient attack *looks* for an adversarial input and may miss one. A verifier
# *decides*: either it proves that no input in a box changes the prediction (**UNSAT**),
# or it returns a witness (**SAT**), which we re-check with an exact forward pass. The
# paper's question (protocol §4.4), for an input x with winner c1 and runner-up c2, a radius
# ε and earlier
# counterexamples E:
#
# > is there an x′ with max(0, x−ε) ≤ x′ ≤ min(1, x+ε), f_c1(x′) − f_c2(x′) ≤ −0.001,
# differing > from every a ∈ E by at least 0.001 in **every** coordinate?
#
# dalv answers it two ways: a batched branch and bound driven by **auto_LiRPA** bounds
# (IBP, CROWN; on the GPU when there is one), and **Marabou**, the complete solver the
# paper used.

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
SMOKE = False
DATASET = "mnist5k"
HIDDEN = 128
N_TRAIN = 2000           # images the network is trained on
N_POOL = 300             # images for the radius comparison
K = 10                   # counterexamples wanted for the showcase digit

# %%
import time
import numpy as np
import torch
import matplotlib.pyplot as plt
from torch import nn
import dalv.attacks
import dalv.verify
from dalv.verify import Budget, LirpaVerifier, MarabouVerifier
from dalv.verify import bounds, certified_radius, interval_bounds
from dalv.plots import show_images
if SMOKE:
    DATASET, HIDDEN, N_TRAIN, N_POOL, K = "digits", 32, 500, 40, 4
data = dalv.data.load(DATASET)
model = dalv.models.build(dalv.ModelConfig(hidden=HIDDEN), data.input_shape, 10, seed=0)
dalv.train.fit(model, data.x_train[:N_TRAIN], data.y_train[:N_TRAIN], dalv.TrainConfig(), seed=0)
print("test accuracy", dalv.train.evaluate(model, data.x_test, data.y_test))


# %% [markdown]
# ## Interval bounds, by hand
#
# Interval bound propagation pushes a box through the network: an affine layer maps
# centre m and radius r to W·m + b and |W|·r; ReLU is monotone. Ten lines; they must
# agree with dalv's pure-torch IBP and with auto_LiRPA's.

# %%
def ibp(model, x, eps):
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    for layer in model:
        if isinstance(layer, nn.Linear):
            mid, rad = (lo + hi) / 2, (hi - lo) / 2
            mid, rad = layer(mid), rad @ layer.weight.abs().T
            lo, hi = mid - rad, mid + rad
        else:                          # Flatten reshapes, ReLU is monotone
            lo, hi = layer(lo), layer(hi)
    return lo, hi

x, eps = data.x_test[:8], 0.02
with torch.no_grad():
    lo, hi = ibp(model, x, eps)
assert torch.allclose(lo, interval_bounds(model, x, eps)[0], atol=1e-5)
assert torch.allclose(hi, bounds(model, x, eps, method="IBP")[1], atol=1e-4)

# %%
# Soundness: every sampled point of the box maps inside the bounds, for IBP and CROWN.
xs = (x[:1] + eps * (2 * torch.rand(2000, *x.shape[1:], generator=torch.Generator().manual_seed(0)) - 1)).clamp(0, 1)
with torch.no_grad():
    out = model(xs)
for method in ["IBP", "CROWN"]:
    l, h = bounds(model, x[:1], eps, method=method)
    assert (out >= l - 1e-5).all() and (out <= h + 1e-5).all()
    print(f"{method:6s} mean width of the logit bounds: {float((h - l).mean()):.3f}")

# %% [markdown]
# ## CROWN versus IBP
#
# CROWN bounds each neuron by linear functions of the input and back-substitutes, so it
# keeps the correlations IBP throws away. The gap grows with the radius.

# %%
radii = np.linspace(0.002, 0.05, 10)
width = {m: [float((lambda b: (b[1] - b[0]).mean())(bounds(model, x, r, method=m))) for r in radii]
         for m in ["IBP", "CROWN"]}
for m, w in width.items():
    plt.plot(radii, w, marker="o", label=m)
plt.yscale("log"); plt.xlabel("ε (L∞)"); plt.ylabel("mean logit-bound width"); plt.legend();
assert all(c <= i + 1e-6 for c, i in zip(width["CROWN"], width["IBP"]))

# %% [markdown]
# ## The true boundary lies between a proof and a witness
#
# For each image, the **certified radius** (largest ε that CROWN proves robust, by
# bisection) is a lower bound on its distance to the decision boundary; the **minimal
# FGSM radius** (chapter 02) is an upper bound. FVAAL ranks by the upper bound.

# %%
pool = data.x_train[N_TRAIN:N_TRAIN + N_POOL]
t0 = time.perf_counter(); r_cert = certified_radius(model, pool, method="CROWN"); t1 = time.perf_counter()
r_atk, _, flipped = dalv.attacks.min_fgsm_eps(model, pool)
assert (r_cert <= r_atk + 1e-3).all()           # a proof never exceeds a witness
print(f"{N_POOL} certified radii in {t1 - t0:.1f}s; median bracket "
      f"[{r_cert.median():.4f}, {r_atk.median():.4f}]")
plt.scatter(r_atk, r_cert, s=6); plt.plot([0, r_atk.max()], [0, r_atk.max()], "k--", lw=1)
plt.xlabel("minimal FGSM radius (witness)"); plt.ylabel("CROWN-certified radius (proof)");

# %% [markdown]
# ## k counterexamples for one digit
#
# The paper's FV-Adv asks for counterexamples one at a time, each excluded from the next
# by
# 0.001 in every pixel. dalv's branch and bound asks for all k at once. We start from
# the digit's FGSM example (the seed set E) at its FGSM radius + 0.05, as FVAAL+FV-Adv
# does.

# %%
i = int(torch.argsort(r_atk)[N_POOL // 2])          # a typical image
x0, e0 = pool[i], float(r_atk[i]) + 0.05
x_fgsm = dalv.attacks.fgsm(model, x0[None], float(r_atk[i]))
res = LirpaVerifier().find(model, x0, e0, K - 1, exclude=x_fgsm)
print(res.status, len(res.counterexamples), "counterexamples;", res.stats)
cex = res.counterexamples
with torch.no_grad():
    print("predicted classes:", model(cex).argmax(1).tolist(), "(clean:", int(model(x0[None]).argmax()), ")")
show_images([[x0.numpy(), *x_fgsm.numpy()], cex[:8].numpy()], row_labels=["clean, FGSM", "verifier"]);

# %%
# Diversity: the FGSM sweep (FGSM-Adv) walks one ray; the verifier's points must differ
# in every pixel.
sweep = torch.stack([dalv.attacks.fgsm(model, x0[None], float(e))[0]
                     for e in np.linspace(float(r_atk[i]), 0.1 + float(r_atk[i]), len(cex))])
for name, pts in [("FGSM sweep", sweep), ("verifier", cex)]:
    s = dalv.metrics.pairwise_distance_stats(dalv.models.embed(model, pts).detach().numpy())
    print(f"{name:10s}: mean pairwise distance (penultimate layer) {s['mean']:.3f}")

# %% [markdown]
# ## Marabou answers the same question
#
# Marabou encodes the network exactly (linear equations, ReLU constraints, one
# disjunction per pixel per excluded point) and decides the query. Its witnesses sit on
# the margin, so dalv asks for a slightly stricter margin and re-checks in float64.

# %%
t0 = time.perf_counter()
res_m = MarabouVerifier(workers=1).find(model, x0, e0, 2, exclude=x_fgsm,
                                        budget=Budget(seconds=120))
print(f"Marabou: {res_m.status}, {len(res_m.counterexamples)} counterexamples "
      f"in {time.perf_counter() - t0:.1f}s")
res_l = LirpaVerifier().find(model, x0, e0, 2, exclude=x_fgsm)
assert res_m.status == res_l.status or "unknown" in (res_m.status, res_l.status)


# %% [markdown]
# ## A counterexample that gradient attacks miss
#
# A hand-built network: class 0 wins everywhere except inside a tiny L1 ball around a
# point p, where a ReLU "bump" lifts class 1. Outside the ball the bump is exactly zero,
# so its gradient is zero too: PGD from x sees nothing to follow. The branch and bound
# splits the box until the bounds isolate the pocket, and finds it.

# %%
def pocket_net(p, radius=0.02, gain=100.0):
    d = p.numel()
    l1, l2, l3 = nn.Linear(d, 2 * d), nn.Linear(2 * d, 1), nn.Linear(1, 2)
    with torch.no_grad():
        l1.weight.copy_(torch.cat([torch.eye(d), -torch.eye(d)])); l1.bias.copy_(torch.cat([-p, p]))
        l2.weight.fill_(-1.0); l2.bias.fill_(radius)          # relu(radius − ‖x − p‖₁)
        l3.weight.copy_(torch.tensor([[0.0], [gain]])); l3.bias.copy_(torch.tensor([1.0, 0.0]))
    return nn.Sequential(l1, nn.ReLU(), l2, nn.ReLU(), l3)

p, x_c = torch.tensor([0.8, 0.2, 0.75]), torch.full((3,), 0.5)
net = pocket_net(p)
adv = dalv.attacks.pgd(net, x_c[None], 0.4, steps=50, restarts=100)
print("PGD (100 restarts) flips it:", bool(net(adv).argmax(1) != 0))
found = LirpaVerifier().find(net, x_c, 0.4, 1, budget=Budget(seconds=60))
print("branch and bound:", found.status, found.counterexamples, "subdomains", found.stats.subdomains)
assert found.status == "sat" and net(found.counterexamples).argmax(1).item() == 1
