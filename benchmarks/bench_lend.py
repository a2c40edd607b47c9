"""Idle cores lent to a grid's last MILP searches, against no lending, in one run.

    python benchmarks/bench_lend.py [--cycles 4] [--jobs 2] [--dataset mnist5k]
        [--data-root ../shared/data]

A local grid of two cells, ``Random`` and ``Random+FV-Adv(10)`` (seed 0), runs twice
with ``--jobs`` processes (each cell one torch thread): first without lending
(``run_cells(..., lend=False)``), then with it (``--lend-first``: the other order).
``Random`` ends long before the FV-Adv cell, whose MILP batches may then borrow the
idle core(s) (``dalv.verify.cores``).

Printed: each grid's wall seconds and the FV-Adv cell's summed augmentation seconds, the
ratios, the load average before and after, and whether both cells' ``results.csv`` rows
are identical with and without lending (timing columns aside): lending must change how
fast a cell runs, never what it computes.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMING = {"query_s", "augment_s", "train_s", "eval_s"}


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, n in enumerate(rows[0]) if n not in TIMING]
    return [[r[i] for i in keep] for r in rows]


def _augment_seconds(path: Path) -> float:
    with open(path, newline="") as f:
        return sum(float(r["augment_s"] or 0) for r in csv.DictReader(f))


def main() -> None:
    from dalv import reproduce as rp
    from dalv.config import ExperimentConfig, ModelConfig
    from dalv.methods import get

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--dataset", default="mnist5k", help="mnist5k (embedded) or mnist (full)"
    )
    ap.add_argument("--data-root", default=None)
    ap.add_argument(
        "--lend-first", action="store_true", help="run the lending grid first"
    )
    args = ap.parse_args()

    cfg = ExperimentConfig(
        dataset=args.dataset, model=ModelConfig(hidden=30), n_cycles=args.cycles
    )
    grid = rp.Preset("lend", cfg, (get("Random"), get("Random+FV-Adv(10)")))
    print(
        f"$ python benchmarks/bench_lend.py --cycles {args.cycles} --jobs {args.jobs} "
        f"--dataset {args.dataset}" + (" --lend-first" if args.lend_first else "")
    )
    print(f"cpu count {os.cpu_count()}, load before {os.getloadavg()[0]:.2f}")
    out: dict[str, tuple[float, list[Path]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for lend in (True, False) if args.lend_first else (False, True):
            runs = Path(tmp) / ("lend" if lend else "alone")
            todo = rp.cells(grid, runs=runs, data_root=args.data_root)
            todo = [replace(c, threads=1) for c in todo]
            t0 = time.perf_counter()
            rp.run_cells(todo, jobs=args.jobs, progress=False, lend=lend)
            files = [Path(c.out_dir) / "results.csv" for c in todo]
            out["lend" if lend else "alone"] = (time.perf_counter() - t0, files)
        same = all(
            _rows(a) == _rows(b)
            for a, b in zip(out["alone"][1], out["lend"][1], strict=True)
        )
        aug = {k: _augment_seconds(files[1]) for k, (_, files) in out.items()}
    print(f"load after {os.getloadavg()[0]:.2f}")
    print(f"{'':24} {'no lending':>11} {'lending':>9} {'ratio':>7}")
    wa, wl = out["alone"][0], out["lend"][0]
    print(f"{'grid wall s':24} {wa:11.1f} {wl:9.1f} {wa / wl:7.2f}")
    a, b = aug["alone"], aug["lend"]
    print(f"{'FV-Adv augment s':24} {a:11.1f} {b:9.1f} {a / b:7.2f}")
    print(f"rows identical with and without lending (timing aside): {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
