"""Time one full active-learning cycle (query + retrain + evaluate) per method on
mnist5k.

    python benchmarks/bench_cycle.py [--labelled 500] [--repeats 3] [--threads 2]

The state is a mid-run one: ``--labelled`` acquired rows (plus the 50 initial ones), the
paper's MLP-128 and training (Adam, 10 epochs, batch 32, restart from θ_init). Each
repeat runs ``dalv.run_cycle`` (the very cycle every run is made of) on a copy of that
state; figures are medians over repeats, measured side by side in one process.
"""

import argparse
import copy
import statistics

import numpy as np
import torch

import dalv
from dalv.loop import run_cycle, start


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
    state0 = start(data, cfg, 0, device="cpu")
    pool = state0.pool
    acquired = np.random.default_rng(0).choice(pool.unlabeled_idx, a.labelled, False)
    pool.label(acquired, 1)
    state0.cycle = 1
    print(
        f"mnist5k, {pool.n_labeled} labelled, {pool.n_unlabeled} unlabelled "
        "candidates, "
        f"budget {cfg.budget}, torch threads {a.threads}, device cpu"
    )
    print(
        f"{'method':10s} {'query s':>8s} {'train s':>8s} {'eval s':>8s} {'cycle s':>8s}"
    )
    for name in a.methods:
        method = dalv.methods.get(name)
        times = []
        for r in range(a.repeats):
            state = copy.copy(state0)
            state.pool = dalv.data.ActivePool(pool.x, pool.y, pool.labeled_at)
            rec = run_cycle(state, method, cfg, seed=r)
            s = rec.seconds
            times.append((s["query"], s["train"], s["eval"], sum(s.values())))
        med = [statistics.median(c) for c in zip(*times, strict=True)]
        print(f"{name:10s} {med[0]:8.3f} {med[1]:8.3f} {med[2]:8.3f} {med[3]:8.3f}")


if __name__ == "__main__":
    main()
