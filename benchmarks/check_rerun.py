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

With ``--claims METHOD ...``: the plan's claims (``dalv.report.claims``) on the
committed table and on the committed table with those methods' rows taken from the
rerun (its finished cells), side by side, for the claims that involve them: how far
the verdicts depend on those cells.

    python benchmarks/check_rerun.py reports/paper-mnist/results.csv runs/check \
        --claims 'Random+FV-Adv(10)' 'BADGE+FV-Adv(10)' 'DFAL+FV-Adv(10)' FVAAL
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from dalv.metrics import aubc
from dalv.report import claims

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


def read_rerun(path: str) -> pd.DataFrame:
    """A results.csv, or a run folder's finished cells (``*/seed_*/results.csv``)."""
    p = Path(path)
    if p.is_file():
        return pd.read_csv(p)
    parts = [pd.read_csv(f) for f in sorted(p.glob("*/seed_*/results.csv"))]
    cells = [t for t in parts if len(t) and len(t) == t["cycle"].max() + 1]
    top = max((len(t) for t in cells), default=0)
    return pd.concat([t for t in cells if len(t) == top], ignore_index=True)


def claims_side_by_side(
    old: pd.DataFrame, new: pd.DataFrame, methods: list[str], dataset: str
) -> pd.DataFrame:
    mixed = pd.concat(
        [old[~old.method.isin(methods)], new[new.method.isin(methods)]],
        ignore_index=True,
    )
    key = ["family", "claim", "metric"]
    m = claims(old, dataset).merge(
        claims(mixed, dataset), on=key, suffixes=("_o", "_n")
    )
    m = m[m["A_o"].isin(methods) | m["B_o"].isin(methods)]

    def ci(s: str) -> list[str]:
        return [
            f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]"
            for d, lo, hi in zip(
                m[f"Δ mean{s}"], m[f"CI low{s}"], m[f"CI high{s}"], strict=True
            )
        ]

    return pd.DataFrame(
        {
            "family": m["family"],
            "claim": m["claim"],
            "seeds": m["seeds_n"],
            "committed Δ [95% CI]": ci("_o"),
            "verdict": m["verdict_o"],
            "rerun Δ [95% CI]": ci("_n"),
            "verdict ": m["verdict_n"],
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("committed", help="the committed report's results.csv")
    ap.add_argument("rerun", help="the rerun's results.csv, or its run folder")
    ap.add_argument("--claims", nargs="+", metavar="METHOD", default=None)
    ap.add_argument("--dataset", default="mnist", help="for the paper's numbers")
    a = ap.parse_args()
    old, new = pd.read_csv(a.committed), read_rerun(a.rerun)
    if a.claims:
        side = claims_side_by_side(old, new, a.claims, a.dataset)
        with pd.option_context("display.width", 250, "display.max_colwidth", 45):
            print(side.to_string(index=False))
        moved = int((side["verdict"] != side["verdict "]).sum())
        print(f"\nverdicts that differ: {moved} of {len(side)}")
        return
    table = compare(old, new)
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
