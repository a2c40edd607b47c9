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
# # 03 · Formal verification: proofs, bounds and counterexamples
#
# **You will learn** what it means to *verify* a network on a box of inputs; how
# interval bounds and CROWN bound its outputs (and prove a box safe); how the paper's
# question — "is there an input in this box where the runner-up class wins, away from
# the examples found so far?" — is written as a mixed-integer linear program and solved
# exactly; how branch and bound splits a box until bounds decide it; and why a
# verifier's counterexamples differ from an attack's.
#
# The question (protocol §4.4), for an input x with winner c1 and runner-up c2, a
# radius ε and earlier counterexamples E: find x′ with
#
# * **box**: max(0, x_i − ε) ≤ x′_i ≤ min(1, x_i + ε) for every pixel i;
# * **margin**: f_c1(x′) − f_c2(x′) ≤ −0.001;
# * **exclusion**: |x′_i − a_i| ≥ 0.001 for every a in E and **every** pixel i.
#
# "Unsat" is a proof that no such x′ exists; "sat" comes with a witness, re-checked by
# an exact float64 forward pass before dalv uses it.
#
# **Prerequisites**: chapters 01–02; linear programming at the level of "an LP finds a
# vertex of a polytope". **Time**: about 80 s on 2 CPU cores; `SMOKE = True` takes
# seconds.

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
DATASET: str = None  # "mnist5k" (5,000 real MNIST digits)
HIDDEN: int = None  # hidden units of the network verified (128)
N_TRAIN: int = None  # images the network is trained on (2000)
N_POOL: int = None  # images for the radius comparison (300)
K: int = None  # counterexamples wanted for the showcase digit (10)

# %%
import dalv.course  # the course helpers: parameters checked before work starts
P = dalv.course.settings("03", SMOKE=SMOKE, DATASET=DATASET, HIDDEN=HIDDEN,
                         N_TRAIN=N_TRAIN, N_POOL=N_POOL, K=K)
DATASET, HIDDEN, N_TRAIN, N_POOL, K = P.DATASET, P.HIDDEN, P.N_TRAIN, P.N_POOL, P.K
print(P)

# %%
import time
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from scipy.optimize import Bounds, LinearConstraint, milp
from dalv.verify import Budget, LirpaVerifier, MarabouVerifier, MilpVerifier
from dalv.verify import bounds, certified_radius, crown_bounds, interval_bounds
from dalv.plots import show_images
data = dalv.data.load(DATASET)
model = dalv.models.build(dalv.ModelConfig(hidden=HIDDEN), data.input_shape, 10, seed=0)
dalv.train.fit(model, data.x_train[:N_TRAIN], data.y_train[:N_TRAIN],
               dalv.TrainConfig(), seed=0)
acc = dalv.train.evaluate(model, data.x_test, data.y_test)
print(f"an MLP-{HIDDEN} trained on {N_TRAIN} images: test accuracy {acc:.3f}")

# %% [markdown]
# ## Interval bounds, by hand
#
# Interval bound propagation (IBP) pushes a box through the network: an affine layer
# maps centre m and radius r to W·m + b and |W|·r; a ReLU is monotone, so it maps the
# interval's ends. Ten lines; they must agree with dalv's pure-torch IBP and with
# auto_LiRPA's.

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
# Soundness: every sampled point of the box maps inside the bounds.
gen = torch.Generator().manual_seed(0)
xs = (x[:1] + eps * (2 * torch.rand(2000, *x.shape[1:], generator=gen) - 1)).clamp(0, 1)
with torch.no_grad():
    out = model(xs)
for method in ["IBP", "CROWN"]:
    low, high = bounds(model, x[:1], eps, method=method)
    assert (out >= low - 1e-5).all() and (out <= high + 1e-5).all()
    width_ = float((high - low).mean())
    print(f"{method:6s} mean width of the logit bounds: {width_:.3f}")

# %% [markdown]
# ## CROWN: linear bounds, back-substituted
#
# IBP forgets that a hidden unit's value depends on x. CROWN keeps linear functions of
# x. For a hidden unit with pre-activation z ∈ [l, u]:
#
# * if l ≥ 0 the ReLU is the identity, if u ≤ 0 it is 0;
# * if l < 0 < u it lies between two lines:
#   $\alpha z \le \mathrm{relu}(z) \le \frac{u}{u-l}(z - l)$, with α ∈ {0, 1} (1 when
#   u > −l, the smaller-area choice).
#
# For a one-hidden-layer network f(x) = W₂ relu(W₁x + b₁), a lower bound of a margin
# cᵀf(x) takes, per hidden unit j, the lower line when λ_j = (cᵀW₂)_j ≥ 0 and the upper
# line when λ_j < 0. That gives cᵀf(x) ≥ Aᵀx + c₀ on the whole box, and its minimum over
# the box is attained at a corner: $\min = c_0 + \sum_i \min(A_i l_i, A_i u_i)$. If that
# minimum is above −margin, the box is proved safe.

# %%
def crown_margin_lower(model, x, eps, c):   # one hidden layer, c: [classes]
    W1, b1, W2 = (t.double() for t in (model[1].weight, model[1].bias, model[3].weight))
    lo, hi = (x - eps).clamp(0, 1).double(), (x + eps).clamp(0, 1).double()
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    zl, zu = W1 @ mid + b1 - rad @ W1.abs().T, W1 @ mid + b1 + rad @ W1.abs().T
    lam = c.double() @ W2                                        # [hidden]
    unstable = (zl < 0) & (zu > 0)
    up_slope = torch.where(unstable, zu / (zu - zl), (zl >= 0).double())
    low_slope = torch.where(unstable, (zu > -zl).double(), (zl >= 0).double())
    slope = torch.where(lam >= 0, low_slope, up_slope)
    shift = torch.where((lam < 0) & unstable, -up_slope * zl, torch.zeros_like(zl))
    A = (lam * slope) @ W1                                       # [pixels]
    c0 = (lam * slope) @ b1 + lam @ shift
    return c0 + torch.minimum(A * lo, A * hi).sum()

x0 = data.x_test[0].flatten()
with torch.no_grad():
    c1, c2 = model(x0[None]).topk(2).indices[0]
c = torch.zeros(10); c[c1], c[c2] = 1.0, -1.0           # the margin f_c1 − f_c2
with torch.no_grad():                                    # bounds need no gradients
    mine = crown_margin_lower(model, x0, 0.02, c)
    C = c[None, None].double()
    theirs = crown_bounds(model, x0[None], 0.02, C)[0][0, 0]
assert torch.allclose(mine, theirs, atol=1e-8), (mine, theirs)
print(f"CROWN lower bound of f_c1 − f_c2 at ε = 0.02: {float(mine):.4f}")

# %%
radii = np.linspace(0.002, 0.05, 10)
width = {m: [float((bounds(model, x, r, method=m)[1] - bounds(model, x, r, method=m)[0])
                   .mean()) for r in radii] for m in ["IBP", "CROWN"]}
for m, w in width.items():
    plt.plot(radii, w, marker="o", label=m)
plt.yscale("log"); plt.xlabel("ε (L∞)"); plt.ylabel("mean logit-bound width")
plt.title("CROWN keeps the bounds tight as the box grows"); plt.legend();
assert all(c <= i + 1e-6 for c, i in zip(width["CROWN"], width["IBP"], strict=True))

# %% [markdown]
# ## The true boundary lies between a proof and a witness
#
# For each image, the **certified radius** (largest ε that CROWN proves robust, by
# bisection) is a lower bound on its distance to the decision boundary; the **minimal
# FGSM radius** (chapter 02) is an upper bound. FVAAL ranks by the upper bound.

# %%
pool = data.x_train[N_TRAIN:N_TRAIN + N_POOL]
t0 = time.perf_counter()
r_cert = certified_radius(model, pool, method="CROWN")
seconds = time.perf_counter() - t0
r_atk, _, flipped = dalv.attacks.min_fgsm_eps(model, pool)
assert (r_cert <= r_atk + 1e-3).all()           # a proof never exceeds a witness
print(f"{N_POOL} certified radii in {seconds:.1f} s; median bracket "
      f"[{float(r_cert.median()):.4f}, {float(r_atk.median()):.4f}]")
top = float(r_atk.max())
plt.scatter(r_atk, r_cert, s=6); plt.plot([0, top], [0, top], "k--", lw=1)
plt.xlabel("minimal FGSM radius (witness)")
plt.ylabel("CROWN-certified radius (proof)")
plt.title("every image's distance to the boundary lies in this bracket");

# %% [markdown]
# ## The exact question as a MILP, by hand
#
# Bounds can prove a box safe but can also fail to decide. An **exact** answer needs
# the network's ReLUs encoded exactly. The paper ran Marabou in its MILP mode: a
# mixed-integer linear program. For a ReLU y = max(0, z) with z ∈ [l, u], l < 0 < u, a
# binary d says which side is active:
#
# $y \ge z,\quad y \ge 0,\quad y \le z - l(1-d),\quad y \le u\,d,\quad d \in \{0,1\}$
#
# (d = 1 forces y = z, d = 0 forces y = 0). The margin is one more linear row, and an
# exclusion "x′_i ≤ a_i − δ or x′_i ≥ a_i + δ" is one more binary. We ask for any
# feasible point (a zero objective), as the paper does. Here, written out for a network
# with 2 inputs and 2 hidden units, and solved with SciPy's HiGHS:

# %%
tiny = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
with torch.no_grad():
    tiny[0].weight.copy_(torch.tensor([[1.0, -1.0], [1.0, 1.0]]))
    tiny[0].bias.copy_(torch.tensor([0.2, -0.6]))
    tiny[2].weight.copy_(torch.tensor([[-1.0, 1.0], [1.0, -1.0]]))
    tiny[2].bias.copy_(torch.tensor([0.3, 0.0]))
xt, e, m = torch.tensor([0.35, 0.5]), 0.2, 1e-3
with torch.no_grad():
    logits = tiny(xt[None])[0]
print("logits at x:", logits.numpy(), "→ class", int(logits.argmax()))

# %%
def np64(t):
    return t.detach().double().numpy()

W1, b1 = np64(tiny[0].weight), np64(tiny[0].bias)
W2, b2 = np64(tiny[2].weight), np64(tiny[2].bias)
lo, hi = np.clip(xt.numpy() - e, 0, 1), np.clip(xt.numpy() + e, 0, 1)
zc, zr = W1 @ (lo + hi) / 2 + b1, np.abs(W1) @ (hi - lo) / 2
L, U = zc - zr, zc + zr                      # pre-activation bounds over the box
# variables v = [x1, x2, y1, y2, d1, d2]; rows: y ≥ z, y ≤ z − L(1−d), y ≤ U d, margin
rows, low, high = [], [], []
for j in range(2):
    y, d = np.eye(6)[2 + j], np.eye(6)[4 + j]
    z = np.r_[W1[j], 0, 0, 0, 0]
    rows += [y - z, y - z - L[j] * d, y - U[j] * d]
    low += [b1[j], -np.inf, -np.inf]
    high += [np.inf, b1[j] - L[j], 0.0]
f = np.c_[np.zeros((2, 2)), W2, np.zeros((2, 2))]   # logits = W2 y + b2
rows.append(f[0] - f[1]); low.append(-np.inf); high.append(-m - (b2[0] - b2[1]))
res = milp(np.zeros(6), constraints=LinearConstraint(np.array(rows), low, high),
           integrality=[0, 0, 0, 0, 1, 1],
           bounds=Bounds(np.r_[lo, 0, 0, 0, 0], np.r_[hi, np.inf, np.inf, 1, 1]))
print(res.message, "witness:", None if res.x is None else res.x[:2].round(4))

# %%
ours = MilpVerifier().find(tiny, xt, e, 1)
assert (ours.status == "sat") == (res.status == 0)       # the same answer as by hand
with torch.no_grad():
    for name, w in [("by hand", torch.tensor(res.x[:2], dtype=torch.float32)),
                    ("dalv MILP", ours.counterexamples[0])]:
        logit = tiny(w[None])[0]
        print(f"{name:10s} x' = {w.numpy().round(4)}, f_0 − f_1 = "
              f"{float(logit[0] - logit[1]):+.4f}")
pgd_x = dalv.attacks.pgd(tiny, xt[None], e, steps=50)[0]
with torch.no_grad():
    print(f"PGD        x' = {pgd_x.numpy().round(4)}, f_0 − f_1 = "
          f"{float(tiny(pgd_x[None])[0, 0] - tiny(pgd_x[None])[0, 1]):+.4f}")

# %% [markdown]
# A solver's witness is a vertex of the feasible region: every coordinate sits at a
# bound of the box or where a constraint row is tight. dalv's MILP backend asks first
# for the margin row to be tight, so its witness sits on the margin, f_0 − f_1 ≈ −0.001:
# just across the boundary. PGD walks downhill as far as its steps go, into the other
# class. That is the difference between "a verifier's counterexample" and "an attack's
# example", and it is why dalv's FV-Adv has a PGD-Adv control (chapter 04).

# %% [markdown]
# ## Branch and bound: when a bound cannot decide
#
# CROWN over a whole box is often too loose to prove it safe, and an attack may find
# nothing: neither answer. **Branch and bound** keeps a pool of sub-boxes
# ("subdomains"). Each round it bounds them all (batched), drops those whose lower bound
# on the margin is above −margin (they hold no counterexample: together with the dropped
# ones, that is a proof), tries to find a witness in the rest (the bound's minimising
# corner, PGD), and splits what is left — on an input coordinate, or on a hidden unit's
# sign (then the unit is linear on each half and the bound tightens). When the pool is
# empty the box is proved; a witness ends the search early. dalv's `LirpaVerifier` runs
# this for many inputs at once, on a GPU when there is one.
#
# A network that hides its counterexample in a tiny pocket shows the difference: class 0
# wins everywhere except inside a small L1 ball, where a ReLU bump lifts class 1.
# Outside the ball the bump is exactly zero, so its gradient is too: PGD has nothing to
# follow.

# %%
def pocket_net(p, radius=0.02, gain=100.0):
    d = p.numel()
    l1, l2, l3 = nn.Linear(d, 2 * d), nn.Linear(2 * d, 1), nn.Linear(1, 2)
    with torch.no_grad():
        l1.weight.copy_(torch.cat([torch.eye(d), -torch.eye(d)]))
        l1.bias.copy_(torch.cat([-p, p]))
        l2.weight.fill_(-1.0); l2.bias.fill_(radius)        # relu(radius − ‖x − p‖₁)
        l3.weight.copy_(torch.tensor([[0.0], [gain]]))
        l3.bias.copy_(torch.tensor([1.0, 0.0]))
    return nn.Sequential(l1, nn.ReLU(), l2, nn.ReLU(), l3)

p, x_c = torch.tensor([0.8, 0.2, 0.75]), torch.full((3,), 0.5)
net = pocket_net(p)
adv = dalv.attacks.pgd(net, x_c[None], 0.4, steps=50, restarts=100)
print("PGD (100 restarts) flips it:", bool(net(adv).argmax(1) != 0))
for v in (LirpaVerifier(), MilpVerifier()):
    found = v.find(net, x_c, 0.4, 1, budget=Budget(seconds=60))
    assert found.status == "sat" and net(found.counterexamples).argmax(1).item() == 1
    w = found.counterexamples[0].numpy().round(3)
    work = found.stats.subdomains or found.stats.calls
    print(f"{v.name:6s}: {found.status}, x' = {w}, work {work}")

# %% [markdown]
# ## k counterexamples for one digit
#
# The paper's FV-Adv asks for counterexamples one at a time, each excluded from the
# next by 0.001 in **every** pixel. We start from the digit's FGSM example (the seed set
# E) at its FGSM radius + 0.05, as FVAAL+FV-Adv does, and ask the exact MILP backend.

# %%
i = int(torch.argsort(r_atk)[N_POOL // 2])          # a typical image
x0, e0 = pool[i], float(r_atk[i]) + 0.05
x_fgsm = dalv.attacks.fgsm(model, x0[None], float(r_atk[i]))
t0 = time.perf_counter()
res = MilpVerifier().find(model, x0, e0, K - 1, exclude=x_fgsm)
print(f"{res.status}: {len(res.counterexamples)} counterexamples in "
      f"{time.perf_counter() - t0:.2f} s")
cex = res.counterexamples
with torch.no_grad():
    c1, c2 = model(x0[None]).topk(2).indices[0]
    f = model(cex)
print("margins f_c1 − f_c2:", (f[:, c1] - f[:, c2]).numpy().round(4))
show_images([[x0.numpy(), *x_fgsm.numpy()], cex[:8].numpy()],
            row_labels=["clean, FGSM", "verifier"]);

# %% [markdown]
# ## Marabou answers the same question
#
# Marabou, the solver the paper used, encodes the network exactly too (equations, ReLU
# constraints, one disjunction per pixel per excluded point) and decides the query with
# its own engine. Both exact backends must agree where both decide; Marabou is far
# slower (`benchmarks/bench_verify_character.py` measures both on the same queries).

# %%
t0 = time.perf_counter()
res_m = MarabouVerifier(workers=1).find(model, x0, e0, 2, exclude=x_fgsm,
                                        budget=Budget(seconds=120))
t_m = time.perf_counter() - t0
t0 = time.perf_counter()
res_q = MilpVerifier().find(model, x0, e0, 2, exclude=x_fgsm)
t_q = time.perf_counter() - t0
print(f"Marabou: {res_m.status}, {len(res_m.counterexamples)} in {t_m:.1f} s; "
      f"MILP: {res_q.status}, {len(res_q.counterexamples)} in {t_q:.2f} s")
assert res_m.status == res_q.status or "unknown" in (res_m.status, res_q.status)

# %% [markdown]
# ## FV-Adv's queries as a benchmark other verifiers can run
#
# `dalv export-queries RUN --cycle T OUT/` writes the model FV-Adv queried (ONNX), one
# VNN-LIB file per query it asked (box, margin, exclusions) and `instances.csv`: the
# VNN-COMP layout that α,β-CROWN, Marabou or nnenum read. `dalv verify NET PROP`
# answers one file. Here a one-cycle Random+FV-Adv run on 8x8 digits (seconds) is
# exported and every query re-answered from the files alone.

# %%
import tempfile
import pandas as pd
from dalv.augment import FVAdv
from dalv.queries import export_queries, verify_files
from dalv.verify import Schedule
tmp = pathlib.Path(tempfile.mkdtemp())
fv = FVAdv(k=3, schedule=Schedule(step=0.01, max_eps=0.2), eps_default=0.001,
           budget=Budget(work=60))
cfg = dalv.ExperimentConfig(dataset="digits", n_initial=20, budget=2, n_cycles=1,
                            candidates=60, train=dalv.TrainConfig(epochs=2))
method = dalv.methods.Method(dalv.strategies.Random(), fv)
dalv.loop.run(method, dalv.data.load("digits"), cfg, seed=0, out_dir=tmp / "run",
              progress=False)
out = export_queries(tmp / "run", 0, tmp / "bench")
q = pd.read_csv(out / "queries.csv")
q["dalv_verify"] = [verify_files(out / n, out / p, "milp", timeout=60).status
                    for n, p in zip(q.network, q.property, strict=True)]
q[["row", "step", "eps", "n_exclusions", "fvadv_answer", "dalv_verify"]]

# %% [markdown]
# ## What to take away
#
# * A bound (IBP, CROWN) over a box is a proof when it clears the margin, and says
#   nothing when it does not. CROWN is IBP with linear functions kept, and it is
#   tighter.
# * An exact solver decides the question: a MILP with one binary per unstable ReLU and
#   per exclusion disjunction. Its witnesses are vertices: on the margin, at bounds.
# * Branch and bound splits what bounds cannot decide; it finds counterexamples that
#   gradients miss, and proves boxes that one bound cannot.
# * dalv never trusts a solver blindly: every witness is re-checked in float64, and an
#   "unsat" is claimed only on a proof of a slightly looser question.
#
# ## Exercises
#
# Check your answers with `dalv.course.check_exercise` (it says "correct" or what is
# off); worked solutions are in the project's `docs/solutions/03.md`. `x` below is any
# batch of images, e.g. `data.x_test[:1]`.
#
# 1. Is the first test image certified robust by **IBP** at ε = 0.01 (True/False)? Use
#    your `ibp` above. Check:
#    `dalv.course.check_exercise("03.1", answer, model=model, x=data.x_test[:1])`.
# 2. Find IBP's certified radius of that image to 1e-3 by bisection on your `ibp`.
#    Check:
#    `dalv.course.check_exercise("03.2", radius, model=model, x=data.x_test[:1])`.
# 3. (Open.) In the by-hand MILP, replace the margin row by the "any other class"
#    version and add an exclusion of the witness found: one more binary, two more rows.
#    Is the question still feasible? Ask `LirpaVerifier` and `MilpVerifier` for the same
#    k counterexamples of a digit and compare their margins.
#
# ## References
#
# * S. Gowal et al., [On the Effectiveness of Interval Bound Propagation for Training
#   Verifiably Robust Models](https://arxiv.org/abs/1810.12715), 2018 (IBP).
# * H. Zhang et al., [Efficient Neural Network Robustness Certification with General
#   Activation Functions](https://arxiv.org/abs/1811.00866), NeurIPS 2018 (CROWN).
# * K. Xu et al., [Automatic Perturbation Analysis for Scalable Certified Robustness and
#   Beyond](https://arxiv.org/abs/2002.12920), NeurIPS 2020 (auto_LiRPA).
# * V. Tjeng, K. Xiao, R. Tedrake, [Evaluating Robustness of Neural Networks with Mixed
#   Integer Programming](https://arxiv.org/abs/1711.07356), ICLR 2019.
# * S. Wang et al., [Beta-CROWN: Efficient Bound Propagation with Per-neuron Split
#   Constraints](https://arxiv.org/abs/2103.06624), NeurIPS 2021.
# * G. Katz et al., [The Marabou Framework for Verification and Analysis of Deep Neural
#   Networks](https://doi.org/10.1007/978-3-030-25540-4_26), CAV 2019.
#
# Next: **chapter 04** puts the verifier into the active-learning loop.
