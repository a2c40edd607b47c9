"""What do the examples of each FV-Adv backend look like, and what does each cost?

    python benchmarks/bench_verify_character.py [--points 20] [--k 10] [--seed 0]
        [--hidden 30]
        [--marabou-points 6] [--marabou-seconds 120] [--milp-only-points 6]

On identical queries: mnist5k's θ_init of ``--seed`` (as ``dalv.loop.start`` builds
it), the ``--points`` rows FVAAL queries in cycle 0 (``FVAAL-No-Adv``'s selection from
10,000 candidates), the paper's property and separation (protocol §4.4), FVAAL's seed
example (its FGSM example) and start radius (ε0 = the FGSM ε if ≤ 0.5 else 0.01; first
radius ε0 + 0.05; ``Schedule()``), ``k - 1`` new examples per row. Backends:

* ``milp``: ``MilpVerifier()`` (region LPs of the last witness, of x and of PGD
  points, then the MILP), and its variants: ``milp warm`` (no PGD candidates),
  ``milp pgd`` (no warm candidates) and ``milp only`` (every query a full MILP; on the
  first ``--milp-only-points`` rows);
* ``gurobi only``: every query a full MILP solved by Gurobi (the paper's solver), when
  ``gurobipy`` imports and its licence starts (the pip wheel's size-limited licence
  takes these models);
* ``marabou``: ``MarabouVerifier(workers=1)`` on the first ``--marabou-points`` rows,
  1000 calls per row and ``--marabou-seconds`` per row as one allowance for the call;
* ``PGD``: ``LirpaVerifier()`` with FV-Adv's default budget (its witnesses come from
  its PGD falsifier);
* ``FGSM-Adv``: ``FGSMAdv(k)`` with the selection as hints (its sweep's examples).

Columns: rows searched, validated examples, the median margin ``f_c1 - f_c2`` at the
examples (the property asks for ``<= -0.001``), the fraction of examples on the
margin's boundary (``-0.0012 <= margin <= -0.001``), the fraction of pixels equal to
``x``,
at a bound of the example's box (``max(0, x - r)`` or ``min(1, x + r)``, ``r`` the
example's L∞ distance from ``x``) and at an exclusion bound (``|x'_i - a_i|`` within
``[delta, delta + 5e-5]`` of an earlier example ``a`` of the row), the mean pairwise L2
distance between the examples of one row in input space and in the penultimate layer
(``dalv.models.embed``), radii proved empty (by the bound or the exclusions / by the
solver), rows left "unknown", and seconds per validated example. Then the same numbers
for the MILP backend on Marabou's rows, and the speed ratio. One torch thread.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import dalv
import dalv.loop
import dalv.methods
from dalv.augment import FGSMAdv
from dalv.metrics import within_group_distance_stats
from dalv.models import embed
from dalv.reproduce import PRESETS
from dalv.verify import Budget, LirpaVerifier, MarabouVerifier, Schedule
from dalv.verify.milp import MilpVerifier
from dalv.verify.property import PAPER_PROPERTY, winner_runner_up


def queries(points: int, seed: int, hidden: int):
    data = dalv.data.load("mnist5k")
    cfg = dalv.ExperimentConfig(
        dataset="mnist5k", model=dalv.ModelConfig(hidden=hidden)
    )
    state = dalv.loop.start(data, cfg, seed, device="cpu")
    model = state.theta_init.eval()
    strategy = dalv.methods.get("FVAAL-No-Adv").strategy
    sel = strategy.select(
        model,
        state.pool,
        points,
        rng=dalv.loop.cycle_rng(seed, 0),
        candidates=10_000,
    )
    t = torch.from_numpy(sel.idx)
    x, y = state.pool.x[t], state.pool.y[t]
    dist = sel.distance.value.double()
    eps0 = torch.where(dist <= 0.5, dist, torch.full_like(dist, 0.01))
    return model, x, y, sel, eps0 + Schedule().step


def character(model, x, results, seeds, name, seconds, delta=PAPER_PROPERTY.delta):
    """One row of the table from per-row example tensors ``results[b]``."""
    with torch.no_grad():
        logits = model(x)
    c1, c2 = winner_runner_up(logits)
    margins, at_x, at_box, at_excl, groups, feats, pens = [], [], [], [], [], [], []
    for b, ex in enumerate(results):
        if len(ex) == 0:
            continue
        xb = x[b].flatten().double()
        e = ex.flatten(1).double()
        with torch.no_grad():
            f = dalv.verify.network.forward64(model, ex.double())
            pen = embed(model, ex.to(x.dtype)).double()
        margins += (f[:, c1[b]] - f[:, c2[b]]).tolist()
        r = (e - xb).abs().amax(1, keepdim=True)
        lo, hi = (xb - r).clamp(min=0), (xb + r).clamp(max=1)
        at_x.append(((e - xb).abs() <= 1e-6).double().mean(1))
        box = ((e - lo).abs() <= 1e-6) | ((e - hi).abs() <= 1e-6)
        at_box.append(box.double().mean(1))
        earlier = seeds[b].flatten(1).double()
        for j in range(len(e)):
            if len(earlier):
                gap = (e[j] - earlier).abs()
                hit = ((gap >= delta - 1e-6) & (gap <= delta + 5e-5)).any(0)
                at_excl.append(hit.double().mean()[None])
            earlier = torch.cat([earlier, e[j : j + 1]])
        groups += [b] * len(e)
        feats.append(e.numpy())
        pens.append(pen.numpy())
    n = len(groups)
    if n == 0:
        return dict(name=name, n=0, seconds=seconds)
    g = np.array(groups)
    return dict(
        name=name,
        n=n,
        margin=float(np.median(margins)),
        on_bd=float(np.mean([-0.0012 <= m <= -0.001 for m in margins])),
        at_x=float(torch.cat(at_x).mean()),
        at_box=float(torch.cat(at_box).mean()),
        at_excl=float(torch.cat(at_excl).mean()) if at_excl else float("nan"),
        l2_in=within_group_distance_stats(np.concatenate(feats), g)["mean"],
        l2_pen=within_group_distance_stats(np.concatenate(pens), g)["mean"],
        seconds=seconds,
    )


def gurobi_works() -> bool:
    """Whether gurobipy imports and its licence starts."""
    try:
        import gurobipy as gp  # noqa: PLC0415 - optional

        with gp.Env(params={"OutputFlag": 0}) as env, gp.Model(env=env):
            return True
    except Exception:  # noqa: BLE001 - any failure means: not usable here
        return False


def search(verifier, model, x, eps, k, seeds, budget, seed):
    t0 = time.perf_counter()
    res = verifier.find_batch(
        model,
        x,
        eps,
        [k - len(s) for s in seeds],
        seeds,
        PAPER_PROPERTY,
        budget,
        schedule=Schedule(),
        seed=seed,
    )
    sec = time.perf_counter() - t0
    proofs_b = proofs_s = 0
    for r in res:
        if hasattr(r.stats, "proofs"):  # the milp backend's MilpStats
            proofs_b += r.stats.bound_proofs
            proofs_s += r.stats.solver_proofs
    unknown = sum(r.status == "unknown" for r in res)
    exhausted = sum(r.exhausted for r in res)
    return (
        [r.counterexamples for r in res],
        sec,
        (proofs_b, proofs_s, unknown, exhausted),
    )


HEADER = (
    f"{'examples from':16s} {'rows':>4s} {'found':>5s} {'margin':>9s} {'on bd':>5s} "
    f"{'at x':>5s} "
    f"{'at box':>6s} {'at excl':>7s} {'L2 in':>6s} {'L2 pen':>6s} {'proofs b/s':>10s} "
    f"{'unkn.':>5s} {'s/ex':>7s}"
)


def line(rows: int, c: dict, extra=None) -> str:
    pb, ps, unk, _ = extra if extra is not None else (None, None, None, None)
    proofs = "-" if pb is None else f"{pb}/{ps}"
    unk_s = "-" if unk is None else str(unk)
    if c["n"] == 0:
        return f"{c['name']:16s} {rows:4d} {0:5d}"
    per = c["seconds"] / c["n"]
    return (
        f"{c['name']:16s} {rows:4d} {c['n']:5d} {c['margin']:9.4f} {c['on_bd']:5.2f} "
        f"{c['at_x']:5.2f} "
        f"{c['at_box']:6.2f} {c['at_excl']:7.2f} {c['l2_in']:6.3f} {c['l2_pen']:6.3f} "
        f"{proofs:>10s} {unk_s:>5s} {per:7.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument(
        "--hidden",
        type=int,
        default=PRESETS["mnist5k"].config.model.hidden,
        help="hidden width of the MLP (default: the mnist5k preset's)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--marabou-points", type=int, default=6)
    ap.add_argument("--marabou-seconds", type=float, default=120.0, help="per row")
    ap.add_argument("--milp-only-points", type=int, default=6)
    ap.add_argument("--milp-only-seconds", type=float, default=120.0, help="per row")
    ap.add_argument("--gurobi-points", type=int, default=None, help="default: --points")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, x, y, sel, eps = queries(a.points, a.seed, a.hidden)
    own = sel.own
    seeds = [own.x[i : i + 1] if own.valid[i] else x[:0] for i in range(len(x))]
    print(
        f"mnist5k θ_init (hidden {a.hidden}, seed {a.seed}), the {a.points} rows "
        "FVAAL queries in cycle 0, "
        f"k = {a.k} (FGSM seed example + {a.k - 1}), first radius ε0 + 0.05 "
        f"(median {float(eps.median()):.4f}), Schedule(), paper property, 1 torch "
        "thread, cpu"
    )
    print(HEADER)
    lirpa_budget = Budget(work=1000, seconds=120.0)
    runs = [
        ("milp", MilpVerifier(), a.points, Budget(work=1000)),
        ("milp ≤", MilpVerifier(boundary=False), a.points, Budget(work=1000)),
        ("milp warm", MilpVerifier(pgd_starts=0), a.points, Budget(work=1000)),
        ("milp pgd", MilpVerifier(warm=False), a.points, Budget(work=1000)),
        (
            "milp only",
            MilpVerifier(warm=False, pgd_starts=0),
            a.milp_only_points,
            Budget(work=1000, seconds=a.milp_only_seconds * max(a.milp_only_points, 1)),
        ),
        (
            "gurobi only",
            MilpVerifier(solver="gurobi", warm=False, pgd_starts=0),
            a.points if a.gurobi_points is None else a.gurobi_points,
            Budget(work=1000, seconds=a.milp_only_seconds * a.points),
        ),
        (
            "marabou",
            MarabouVerifier(workers=1),
            a.marabou_points,
            Budget(work=1000, seconds=a.marabou_seconds * max(a.marabou_points, 1)),
        ),
        ("PGD (lirpa)", LirpaVerifier(), a.points, lirpa_budget),
    ]
    per_row: dict[str, tuple] = {}
    for name, verifier, n, budget in runs:
        if n <= 0 or (name.startswith("gurobi") and not gurobi_works()):
            continue
        ex, sec, extra = search(
            verifier, model, x[:n], eps[:n], a.k, seeds[:n], budget, a.seed
        )
        per_row[name] = (ex, sec, extra)
        c = character(model, x[:n], ex, seeds[:n], name, sec)
        print(line(n, c, extra), flush=True)
    t0 = time.perf_counter()
    batch = FGSMAdv(k=a.k).generate(
        model, x, y, source_idx=sel.idx, hints=sel, rng=np.random.default_rng(0)
    )
    sec = time.perf_counter() - t0
    fgsm = []
    for i, s in enumerate(sel.idx):
        rows = batch.x[torch.from_numpy(batch.source_idx == s)]
        if own.valid[i]:
            rows = rows[~(rows == own.x[i]).flatten(1).all(1)]
        fgsm.append(rows)
    print(line(len(x), character(model, x, fgsm, seeds, "FGSM-Adv", sec)))
    if "marabou" in per_row and "milp" in per_row:
        n = a.marabou_points
        ex_m, sec_m, _ = per_row["marabou"]
        ex_l, sec_l, _ = search(
            MilpVerifier(), model, x[:n], eps[:n], a.k, seeds[:n], Budget(1000), a.seed
        )
        n_m, n_l = sum(len(e) for e in ex_m), sum(len(e) for e in ex_l)
        if n_m and n_l:
            ratio = (sec_m / n_m) / (sec_l / n_l)
            print(
                f"\non Marabou's {n} rows: marabou {sec_m:.1f} s for {n_m} examples "
                f"({sec_m / n_m:.3f} s each), milp {sec_l:.2f} s for {n_l} "
                f"({sec_l / n_l:.4f} s each): milp is {ratio:.0f}x faster per example"
            )


if __name__ == "__main__":
    main()
