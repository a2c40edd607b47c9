"""Time one full active-learning cycle (query + retrain + evaluate) per baseline on mnist5k.

    python benchmarks/bench_cycle.py [--labelled 500] [--repeats 3] [--threads 2]

The state is a mid-run one: ``--labelled`` acquired rows (plus the 50 initial ones), the
paper's MLP-128 and training (Adam, 10 epochs, batch 32, restart from θ_init). Figures are
medians over repeats, measured side by side in one process.
"""

import argparse
import copy
import statistics
import time

import numpy as np
import torch

import dalv
from dalv.loop import cycle_rng, fit_seed, initial_state


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--labelled", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--methods",
        nargs="+",
        default=["Random", "Entropy", "Margin", "BADGE", "Core-set"],
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = dalv.data.load("mnist5k")
    cfg = dalv.ExperimentConfig(dataset="mnist5k")
    init_idx, theta = initial_state(data, cfg, 0, torch.device("cpu"))
    pool0 = dalv.data.ActivePool(data.x_train, data.y_train)
    pool0.label(init_idx, 0)
    pool0.label(
        np.random.default_rng(0).choice(pool0.unlabeled_idx, a.labelled, replace=False),
        1,
    )
    print(
        f"mnist5k, {pool0.n_labeled} labelled, {pool0.n_unlabeled} unlabelled candidates, "
        f"budget {cfg.budget}, torch threads {a.threads}, device cpu"
    )
    print(
        f"{'method':10s} {'query s':>8s} {'train s':>8s} {'eval s':>8s} {'cycle s':>8s}"
    )
    for name in a.methods:
        strat = dalv.loop.with_candidates(
            dalv.methods.get(name).strategy, cfg.candidates
        )
        times = []
        for r in range(a.repeats):
            pool = dalv.data.ActivePool(data.x_train, data.y_train, pool0.labeled_at)
            t0 = time.perf_counter()
            sel = strat.select(theta, pool, cfg.budget, rng=cycle_rng(0, r))
            pool.label(sel.idx, 2)
            t1 = time.perf_counter()
            model = copy.deepcopy(theta)
            idx = torch.from_numpy(pool.acquired_idx)
            dalv.train.fit(
                model,
                data.x_train[idx],
                data.y_train[idx],
                cfg.train,
                seed=fit_seed(0, r),
            )
            t2 = time.perf_counter()
            dalv.train.evaluate(model, data.x_test, data.y_test)
            t3 = time.perf_counter()
            times.append((t1 - t0, t2 - t1, t3 - t2, t3 - t0))
        med = [statistics.median(c) for c in zip(*times)]
        print(f"{name:10s} {med[0]:8.3f} {med[1]:8.3f} {med[2]:8.3f} {med[3]:8.3f}")


if __name__ == "__main__":
    main()
