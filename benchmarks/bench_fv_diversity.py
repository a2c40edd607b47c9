"""Do the two verifier backends return equally spread counterexamples?

    python benchmarks/bench_fv_diversity.py [--points 20] [--k 10] [--seed 0]

On mnist5k's cycle-0 model (θ_init) and ``--points`` random pool images, runs FV-Adv
(``dalv.augment.FVAdv``, protocol §4.4, from radius 0.06, no seed example) on the
``LirpaVerifier`` (FV-Adv's default budget) and on the ``MarabouVerifier`` (the same
1000 solver calls per image, and ``--marabou-timeout`` seconds per image as one
allowance for the whole call), then compares, per image, the spread of its
counterexamples: mean pairwise L∞ and L2 distance in input space and L2 distance in the
penultimate layer, and the FGSM-Adv examples of the same images for reference. Also
prints each backend's seconds and counts.
"""

import argparse
import time

import numpy as np
import torch

import dalv
from dalv.augment import FGSMAdv, FVAdv
from dalv.loop import initial_labels, initial_model
from dalv.metrics import within_group_distance_stats
from dalv.verify import Budget, LirpaVerifier, MarabouVerifier


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
    init = initial_labels(len(data.x_train), cfg, a.seed)
    model = initial_model(data, cfg, a.seed, init, torch.device("cpu")).eval()
    idx = np.sort(
        np.random.default_rng(a.seed).choice(len(data.x_train), a.points, replace=False)
    )
    x, y = data.x_train[idx], data.y_train[idx]
    print(
        f"mnist5k θ_init (seed {a.seed}), {a.points} random images, k = {a.k}, "
        "start radius 0.06, 1 torch thread, cpu"
    )
    print(
        f"{'examples from':14s} {'seconds':>8s} {'found':>6s} {'images≥2':>9s} "
        f"{'L∞ input':>9s} {'L2 input':>9s} {'L2 penult.':>11s}"
    )
    lirpa = FVAdv(verifier=LirpaVerifier(), k=a.k)  # as FVAAL runs it
    marabou_budget = Budget(work=1000, seconds=a.marabou_timeout * a.points)
    marabou = FVAdv(verifier=MarabouVerifier(workers=1), k=a.k, budget=marabou_budget)
    for aug in (lirpa, marabou):
        t0 = time.perf_counter()
        # No strategy hints: no seed example, and the default start radius 0.01 + step.
        b = aug.generate(model, x, y, source_idx=idx, rng=np.random.default_rng(a.seed))
        sec = time.perf_counter() - t0
        n2 = sum((b.source_idx == i).sum() >= 2 for i in idx)
        s = spread(model, b.x.float(), b.source_idx)
        print(
            f"{aug.verifier.name:14s} {sec:8.1f} {len(b.x):6d} {n2:9d} "
            f"{s['L∞ input']:9.3f} {s['L2 input']:9.3f} {s['L2 penultimate']:11.3f}",
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
