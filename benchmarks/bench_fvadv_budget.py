"""What FV-Adv's per-point search budget buys: seconds per cycle against examples found.

    python benchmarks/bench_fvadv_budget.py [--method "Random+FV-Adv(10)"] [--cycles 6]
        [--budgets 200 1000 5000 100000] [--timeout 120] [--seed 0]

Runs the same method, seed and cycles once per ``FVAdv.budget.work`` value (the
largest is the pre-budget behaviour, where only the per-cycle ``--timeout`` stopped the
search) and prints, per budget, the mean FV-Adv seconds per cycle, the examples found
out of those requested, how many cycles hit the timeout, and the final test accuracy.
The runs are sequential in one process, one torch thread each, so the seconds compare
side by side.
"""

import argparse
import dataclasses
import time

import torch

import dalv
from dalv.methods import Method
from dalv.verify import Budget


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="Random+FV-Adv(10)")
    ap.add_argument("--cycles", type=int, default=6)
    ap.add_argument(
        "--budgets", type=int, nargs="+", default=[200, 1000, 5000, 100_000]
    )
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = dalv.data.load("mnist5k")
    cfg = dalv.ExperimentConfig(dataset="mnist5k", n_cycles=a.cycles)
    base = dalv.methods.get(a.method)
    print(
        f"{a.method}, mnist5k, seed {a.seed}, {a.cycles} cycles, per-cycle timeout "
        f"{a.timeout:g} s, 1 torch thread, cpu"
    )
    print(
        f"{'budget':>8s} {'FV s/cycle':>11s} {'max s':>7s} {'found':>7s} "
        f"{'requested':>10s} "
        f"{'timeouts':>9s} {'final acc':>10s} {'total s':>8s}"
    )
    for b in a.budgets:
        aug = dataclasses.replace(base.augmenter, budget=Budget(b, a.timeout))
        m = Method(base.strategy, aug)
        t0 = time.perf_counter()
        df = dalv.loop.run(m, data, cfg, seed=a.seed, progress=False)
        total = time.perf_counter() - t0
        print(
            f"{b:8d} {df.augment_s.mean():11.1f} {df.augment_s.max():7.1f} "
            f"{int(df.aug_found.sum()):7d} {int(df.aug_requested.sum()):10d} "
            f"{int((df.aug_timeouts > 0).sum()):9d} {df.test_acc.iloc[-1]:10.4f} "
            f"{total:8.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
