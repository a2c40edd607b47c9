"""What would ``paper-cifar10`` cost? One cycle of every method on CIFAR-10-shaped data.

    python benchmarks/bench_cifar_cost.py [--methods ...] [--labelled 1000 4000]
        [--search-rows 100] [--threads 1]

CIFAR-10 is not available offline, so this writes synthetic files in CIFAR-10's own
on-disk format (``cifar-10-batches-py``: five training batches of 10,000 3×32×32 images
and a test batch, random pixels and labels) to a temporary folder, loads them through
``dalv.data.load("cifar10", root)`` as a user's download would be loaded, and times one
``dalv.run_cycle`` per method (n = 1000 queried per cycle, 10,000 candidates, the
paper's MLP on 3,072 inputs) from two mid-run states: ``--labelled`` acquired rows
(and the adversarial examples an augmented method would have added by then, 9 per
queried row). Random pixels make the model's decisions meaningless, but the amount of
work per cycle (scoring 10,000 candidates, training on the acquired and adversarial
rows, searching the boxes) is that of the real data.

The box searches of FV-Adv and PGD-Adv solve one independent problem per queried row,
so their cost is linear in the query size; to keep the benchmark to minutes, the search
is run on ``--search-rows`` of the 1,000 queried rows and its time scaled by
1000 / search-rows (the examples found are repeated to the full count, so training
still sees the full-size set). ``--search-rows 1000`` times the full search. The
verifier's wall-clock safety net (``Budget.seconds``, 120 s per cycle by default) is
lifted here, so the figure is the search's own cost, not the cap.

It prints, per method, the phase times at both states, the growth ratio per phase
against the growth of the training set (a check that nothing grows worse than
linearly), and the projected cost of the preset: 20 cycles per cell, interpolated
linearly in the training-set size, summed over the preset's methods and 5 seeds, on 2
cores (cells side by side) and as a Slurm array (the longest cell bounds the wall
time).
"""

import argparse
import copy
import dataclasses
import math
import pickle
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import dalv
from dalv.augment import AugmentedBatch, Augmenter, FVAdv, PGDAdv
from dalv.loop import run_cycle, start
from dalv.reproduce import PRESETS
from dalv.strategies import Selection
from dalv.verify import Budget


def write_fake_cifar(root: Path, seed: int = 0) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            "data": rng.integers(0, 256, size=(10_000, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, size=10_000).tolist(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


@dataclass(frozen=True)
class SampledSearch(Augmenter):
    """Runs ``inner`` on the first ``rows`` queried rows only and repeats what it found
    to the full query size; ``seconds`` holds the search's own time."""

    inner: Augmenter
    rows: int
    seconds: list = dataclasses.field(default_factory=list)

    def generate(self, model, x, y, *, source_idx, hints=None, rng):
        n = min(self.rows, len(x))
        pos = torch.arange(n)
        sub = None
        if hints is not None:
            sub = Selection(
                hints.idx[:n],
                None if hints.scores is None else hints.scores[:n],
                None if hints.distance is None else hints.distance.take(pos),
                None if hints.own is None else hints.own.take(pos),
            )
        t0 = time.perf_counter()
        got = self.inner.generate(
            model, x[:n], y[:n], source_idx=source_idx[:n], hints=sub, rng=rng
        )
        self.seconds.append(time.perf_counter() - t0)
        reps = math.ceil(len(x) / n)
        m = round(len(got) * len(x) / n)
        return AugmentedBatch(
            got.x.repeat(reps, *[1] * (got.x.dim() - 1))[:m],
            got.y.repeat(reps)[:m],
            np.tile(got.source_idx, reps)[:m],
            dict(got.stats),
        )


def sampled(method, rows: int):
    """``method`` with its box search (FV-Adv, PGD-Adv) timed on ``rows`` rows, or
    ``None`` when it searches no boxes."""
    aug = method.augmenter
    if not isinstance(aug, FVAdv | PGDAdv):
        return None
    aug = dataclasses.replace(aug, budget=Budget(work=aug.budget.work))
    return dataclasses.replace(method, augmenter=SampledSearch(aug, rows))


def mid_run_state(data, cfg, n_acquired: int, with_advs: int, seed: int = 0):
    """A state after ``n_acquired`` acquisitions and ``with_advs`` examples per row."""
    state = start(data, cfg, seed, device="cpu")
    pool = state.pool
    rng = np.random.default_rng(seed)
    acquired = rng.choice(pool.unlabeled_idx, n_acquired, replace=False)
    pool.label(acquired, 1)
    if with_advs:
        x = pool.x[torch.from_numpy(acquired)].repeat_interleave(with_advs, 0)
        noise = 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        adv = dalv.augment.AugmentedBatch(
            (x + noise).clamp(0, 1),
            pool.y[torch.from_numpy(acquired)].repeat_interleave(with_advs),
            np.repeat(acquired, with_advs),
        )
        state.bank = state.bank + adv
    state.cycle = 1
    return state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    preset = PRESETS["paper-cifar10"]
    ap.add_argument("--methods", nargs="+", default=preset.method_names)
    ap.add_argument("--labelled", type=int, nargs=2, default=[1000, 4000])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--search-rows",
        type=int,
        default=100,
        help="queried rows whose box search is timed (scaled to the query size)",
    )
    ap.add_argument("--seeds", type=int, default=len(preset.seeds))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = preset.config.replace(device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        write_fake_cifar(Path(tmp))
        data = dalv.data.load("cifar10", tmp)
    print(
        f"{data}; budget {cfg.budget}, candidates {cfg.candidates}, "
        f"hidden {cfg.model.hidden}, torch threads {a.threads}, cpu"
    )
    states = {}
    rows = []
    for name in a.methods:
        method = dalv.methods.get(name)
        k = getattr(method.augmenter, "k", 0)
        timed = sampled(method, a.search_rows)
        times = []
        for n in a.labelled:
            key = (n, k > 1)
            if key not in states:
                states[key] = mid_run_state(data, cfg, n, 9 if k > 1 else 0)
            state = copy.copy(states[key])
            state.pool = dalv.data.ActivePool(
                state.pool.x, state.pool.y, state.pool.labeled_at
            )
            t0 = time.perf_counter()
            rec = run_cycle(state, timed or method, cfg, seed=0)
            wall = time.perf_counter() - t0
            secs = dict(rec.seconds)
            if timed is not None:  # the search on all rows, scaled linearly
                search = timed.augmenter.seconds[-1]
                full = search * cfg.budget / min(a.search_rows, cfg.budget)
                wall += full - secs["augment"]
                secs["augment"] = full
            times.append((rec.n_train, secs, wall))
        (n1, s1, w1), (n2, s2, w2) = times
        growth = {p: s2[p] / max(s1[p], 1e-9) for p in ("query", "augment", "train")}
        # linear in the training-set size: cycle t trains on about (t+1)·n·(1+k') rows
        # (a second state no slower than the first: no measurable growth; keep w1)
        per_row = max((w2 - w1) / max(n2 - n1, 1), 0.0)
        base = w1 - per_row * n1
        train_sizes = [(t + 1) * cfg.budget * (10 if k > 1 else 1) for t in range(20)]
        cell = sum(base + per_row * m for m in train_sizes)
        rows.append((name, w1, w2, growth, n2 / n1, cell))
        print(
            f"{name:24s} cycle at {n1:6d} train rows {w1:7.1f} s, at {n2:6d} "
            f"{w2:7.1f} s; growth query ×{growth['query']:.2f} augment "
            f"×{growth['augment']:.2f} train ×{growth['train']:.2f} "
            f"(rows ×{n2 / n1:.1f}); "
            f"projected cell {cell / 3600:.2f} h"
            + (f" (search timed on {a.search_rows} rows)" if timed else ""),
            flush=True,
        )
    cells = [r[5] for r in rows for _ in range(a.seeds)]
    total = sum(cells)
    print(
        f"\nprojected paper-cifar10 ({len(rows)} methods × {a.seeds} seeds × "
        "20 cycles):"
    )
    print(f"  {total / 3600:.1f} core-hours; on 2 cores {total / 2 / 3600:.1f} h")
    print(
        f"  as a Slurm array ({len(cells)} tasks, one per cell): the longest cell, "
        f"{max(cells) / 3600:.1f} h"
    )


if __name__ == "__main__":
    main()
