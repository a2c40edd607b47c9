"""How close are our curves to the paper's, by hidden width? (the real 60k MNIST)

    python benchmarks/bench_fidelity.py --data-root ../shared/data \
        [--widths 128 32 30] [--seeds 0 1 2] [--methods Random BADGE ...] \
        [--runs runs/fidelity] [--out reports/paper-mnist/fidelity.csv] [--jobs 2]

For each width, runs the paper's protocol (MNIST, 50 + 20 × 50 labels, 10 epochs,
restart from θ_init) for each method and seed as a grid of cells (finished cells are
read back, so a rerun only prints), then prints and writes, per width and method, the
RMS and largest difference between our mean curve and the paper's 5-seed average, and
the differences at cycles 0 and 19 (``dalv.report.fidelity``).
"""

import argparse
from pathlib import Path

import pandas as pd

from dalv.config import ExperimentConfig, ModelConfig
from dalv.methods import get
from dalv.report import fidelity
from dalv.reproduce import Preset, cells, collect, run_cells

DEFAULT_METHODS = ["Random", "BADGE", "DFAL-No-Adv", "FVAAL-No-Adv", "DFAL", "FVAAL"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 32, 30])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--runs", default="runs/fidelity")
    ap.add_argument("--out", default="reports/paper-mnist/fidelity.csv")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    methods = tuple(get(m) for m in a.methods)
    frames = []
    for w in a.widths:
        cfg = ExperimentConfig(dataset="mnist", model=ModelConfig(hidden=w))
        grid = Preset(f"fidelity-h{w}", cfg, methods, tuple(a.seeds))
        todo = cells(grid, runs=Path(a.runs) / f"h{w}", data_root=a.data_root)
        run_cells(todo, jobs=a.jobs)
        fid = fidelity(collect(todo))
        frames.append(fid.assign(hidden=w, seeds=len(a.seeds)))
    table = pd.concat(frames, ignore_index=True)
    table = table[
        ["hidden", "method", "seeds", "RMS Δ", "max |Δ|", "Δ cycle 0", "Δ last"]
    ]
    print(table.round(4).to_string(index=False))
    per_width = table.groupby("hidden")[["RMS Δ", "max |Δ|"]].mean().round(4)
    print("\nmean over methods, per width:\n" + per_width.to_string())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(a.out, index=False)
    print(f"\nwritten: {a.out}")


if __name__ == "__main__":
    main()
