"""Do the two verifier backends return equally spread counterexamples?

    python benchmarks/bench_fv_diversity.py [--points 20] [--k 10] [--seed 0]

On mnist5k's cycle-0 model (θ_init) and ``--points`` random pool images, runs the FV-Adv
search (spec §6.4, from radius 0.06, no seed example) with the ``lirpa`` backend (FV-Adv's
default work budget) and with Marabou (``--marabou-timeout`` seconds per image), then compares, per image, the spread of its counterexamples: mean pairwise L∞ and
L2 distance in input space and L2 distance in the penultimate layer, and the FGSM-Adv
examples of the same images for reference. Also prints each backend's seconds and counts.
"""

import argparse
import time

import numpy as np
import torch

import dalv
from dalv.adversarial import FGSMAdv
from dalv.loop import initial_state
from dalv.metrics import within_group_distance_stats
from dalv.verify.augment import FVAdv
from dalv.verify.bab import LirpaConfig
from dalv.verify.search import fv_adv_counterexamples


def spread(model, xs: torch.Tensor, src: np.ndarray) -> dict[str, float]:
    flat = xs.flatten(1).double().numpy()
    with torch.no_grad():
        pen = model[:-1](xs).double().numpy()
    linf = []
    for s in np.unique(src):  # L∞ has no Gram trick; groups hold at most k rows
        f = flat[src == s]
        linf += [
            np.abs(f[i] - f[j]).max()
            for i in range(len(f))
            for j in range(i + 1, len(f))
        ]
    return {
        "L∞ input": float(np.mean(linf)) if linf else np.nan,
        "L2 input": within_group_distance_stats(flat, src)["mean"],
        "L2 penultimate": within_group_distance_stats(pen, src)["mean"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--marabou-timeout", type=float, default=60.0, help="seconds per image"
    )
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = dalv.data.load("mnist5k")
    cfg = dalv.ExperimentConfig(dataset="mnist5k")
    _, model = initial_state(data, cfg, a.seed, torch.device("cpu"))
    model.eval()
    idx = np.sort(
        np.random.default_rng(a.seed).choice(len(data.x_train), a.points, replace=False)
    )
    x, y = data.x_train[idx], data.y_train[idx]
    eps0 = torch.full((len(x),), 0.01, dtype=torch.float64)
    print(
        f"mnist5k θ_init (seed {a.seed}), {a.points} random images, k = {a.k}, start radius "
        f"0.06, 1 torch thread, cpu"
    )
    print(
        f"{'examples from':14s} {'seconds':>8s} {'found':>6s} {'images≥2':>9s} "
        f"{'L∞ input':>9s} {'L2 input':>9s} {'L2 penult.':>11s}"
    )
    budget = LirpaConfig(
        max_bounded_per_input=FVAdv().max_subdomains
    )  # as FV-Adv runs it
    for backend, kw in (
        ("lirpa", {"timeout": None, "config": budget}),
        ("marabou", {"timeout": a.marabou_timeout, "workers": 1}),
    ):
        t0 = time.perf_counter()
        res = fv_adv_counterexamples(model, x, eps0, a.k, backend=backend, **kw)
        sec = time.perf_counter() - t0
        xs = torch.cat([r.counterexamples for r in res]).float()
        src = np.concatenate(
            [np.full(len(r.counterexamples), i) for i, r in enumerate(res)]
        )
        n2 = sum(len(r.counterexamples) >= 2 for r in res)
        s = spread(model, xs, src)
        print(
            f"{backend:14s} {sec:8.1f} {len(xs):6d} {n2:9d} {s['L∞ input']:9.3f} "
            f"{s['L2 input']:9.3f} {s['L2 penultimate']:11.3f}",
            flush=True,
        )
    t0 = time.perf_counter()
    b = FGSMAdv(k=a.k).generate(
        model, x, y, source_idx=idx, rng=np.random.default_rng(0)
    )
    sec = time.perf_counter() - t0
    n2 = sum((b.source_idx == i).sum() >= 2 for i in idx)
    s = spread(model, b.x, b.source_idx)
    print(
        f"{'FGSM-Adv':14s} {sec:8.1f} {len(b.x):6d} {n2:9d} {s['L∞ input']:9.3f} "
        f"{s['L2 input']:9.3f} {s['L2 penultimate']:11.3f}"
    )


if __name__ == "__main__":
    main()
