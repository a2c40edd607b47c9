"""Does a rerun give a committed report's rows? Cell by cell, timing columns aside.

    python -m dalv reproduce --preset paper-mnist --seeds 0 --data-root <data> \\
        --runs runs/check --out runs/check-report
    python benchmarks/check_rerun.py reports/paper-mnist/results.csv \\
        runs/check-report/results.csv

For each (method, seed) both tables hold: whether the configuration hash is the same
(a different hash means the method's configuration changed since the committed run,
so its rows may change by design), how many cycles have any differing column, the
largest per-cycle test-accuracy difference and the AUBC difference (rerun minus
committed). Timing columns (``*_s``), ``threads`` and ``device`` are not compared.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from dalv.metrics import aubc

SKIP = {"threads", "device"}


def compare(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    keys = ["method", "seed", "cycle"]
    cols = [
        c
        for c in old.columns
        if c in new.columns and c not in keys and c not in SKIP and not c.endswith("_s")
    ]
    both = old.merge(new, on=keys, suffixes=("_old", "_new"))
    rows = []
    for (method, seed), g in both.groupby(["method", "seed"], sort=True):
        g = g.sort_values("cycle")
        differs = np.zeros(len(g), dtype=bool)
        for c in cols:
            a, b = g[f"{c}_old"], g[f"{c}_new"]
            same = (a == b) | (a.isna() & b.isna())
            differs |= ~same.to_numpy()
        acc_old, acc_new = g["test_acc_old"].to_numpy(), g["test_acc_new"].to_numpy()
        rows.append(
            dict(
                method=method,
                seed=int(seed),
                cycles=len(g),
                same_hash=bool((g["config_hash_old"] == g["config_hash_new"]).all()),
                cycles_differing=int(differs.sum()),
                first_differing=int(g["cycle"].to_numpy()[differs][0])
                if differs.any()
                else -1,
                max_abs_acc=float(np.abs(acc_new - acc_old).max()),
                d_aubc=aubc(acc_new) - aubc(acc_old),
            )
        )
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("committed", help="the committed report's results.csv")
    ap.add_argument("rerun", help="the rerun's results.csv")
    a = ap.parse_args()
    table = compare(pd.read_csv(a.committed), pd.read_csv(a.rerun))
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table.to_string(index=False, float_format=lambda v: f"{v:+.4f}"))
    same = table[table.cycles_differing == 0]
    print(
        f"\n{len(same)} of {len(table)} cells identical; "
        f"{int((~table.same_hash).sum())} with a changed configuration hash; "
        f"largest |d AUBC| {table.d_aubc.abs().max():.4f}"
    )


if __name__ == "__main__":
    main()
