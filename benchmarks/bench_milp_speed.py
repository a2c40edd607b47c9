"""The MILP backend against an older tree of dalv, on identical rows, in one run.

    python benchmarks/bench_milp_speed.py --base /path/to/old/dalv/checkout
        [--preset paper-mnist] [--method Random+FV-Adv(10)] [--rows 50] [--seed 0]
        [--only 6,21,47] [--variant loose_first=0]

The rows are the ones a grid's cycle 0 hands to FV-Adv: ``--preset``'s dataset and
θ_init of ``--seed`` (as ``dalv.loop.start`` builds it), ``--method``'s selection with
the cycle's generator, and its augmenter's question (``dalv.augment``'s box search:
first radius ε0 + 0.05, the strategy's own example as the first exclusion where it has
one, ``k`` minus that, ``Schedule()``, the work budget only, the seed the augmenter
draws). Two worker processes answer them one row at a time, one importing dalv from
``--base`` and one from this checkout, in alternating order (so that the load of a
shared machine falls on both alike); each times its own call.

Printed per row: the old and new seconds (wall), statuses, examples found, solver
calls, MILP calls and nodes, and whether the two trees returned bit-identical
examples; then the totals, the ratio old / new, the load average before and after, and
a re-check here of every example either tree returned (float64 forward: inside the
box, margin at most ``-margin``, ``delta`` away from the exclusions and from the
row's earlier examples). ``--variant key=value`` sets a ``MilpVerifier`` field in the
new tree only (e.g. ``loose_first=0``: compare this tree with a step switched off).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# ---- the worker (runs inside either tree) ------------------------------------------


def worker(rows_file: str, variant: str) -> None:
    import torch  # noqa: PLC0415

    import dalv  # noqa: PLC0415
    from dalv.verify import Budget, Schedule  # noqa: PLC0415
    from dalv.verify.milp import MilpVerifier  # noqa: PLC0415

    torch.set_num_threads(1)
    q = torch.load(rows_file, weights_only=False)
    kw = {}
    for item in filter(None, variant.split(",")):
        key, val = item.split("=")
        kw[key] = type(getattr(MilpVerifier, key))(int(val))
    v = MilpVerifier(**kw)
    print(json.dumps({"dalv": dalv.__file__}), flush=True)
    for line in sys.stdin:
        i = int(line)
        t0, c0 = time.perf_counter(), time.process_time()
        res = v.find_batch(
            q["model"],
            q["x"][i : i + 1],
            q["eps"][i : i + 1],
            [q["k"][i]],
            [q["seeds"][i]],
            q["prop"],
            Budget(work=q["work"]),
            schedule=Schedule(*q["schedule"]),
            seed=q["seed"],
        )[0]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        s = res.stats
        ex = res.counterexamples.detach().double().cpu().numpy()
        out = {
            "status": res.status,
            "n": len(ex),
            "eps": res.eps,
            "calls": s.calls,
            "milp": getattr(s, "milp_calls", 0),
            "nodes": s.subdomains,
            "wall": wall,
            "cpu": cpu,
            "ex": ex.tobytes().hex(),
        }
        print(json.dumps(out), flush=True)


# ---- the rows ----------------------------------------------------------------------


def build_rows(preset: str, method: str, n_rows: int, seed: int, data_root, path):
    import torch  # noqa: PLC0415

    import dalv  # noqa: PLC0415
    import dalv.loop  # noqa: PLC0415
    import dalv.methods  # noqa: PLC0415
    from dalv.reproduce import PRESETS  # noqa: PLC0415

    cfg = PRESETS[preset].config
    data = dalv.data.load(cfg.dataset, root=data_root)
    state = dalv.loop.start(data, cfg, seed, device="cpu")
    model = state.theta_init.eval()
    m = dalv.methods.get(method)
    rng = dalv.loop.cycle_rng(seed, 0)
    sel = m.strategy.select(
        model, state.pool, cfg.budget, rng=rng, candidates=cfg.candidates
    )
    aug = m.augmenter
    search_seed = int(rng.integers(2**31))  # as dalv.augment draws it
    t = torch.from_numpy(sel.idx)
    x = state.pool.x[t].double()
    b = len(x)
    eps0 = torch.full((b,), aug.eps_default, dtype=torch.float64)
    if sel.distance is not None:
        e = sel.distance.value.double()
        eps0 = torch.where(e <= aug.eps_reset_above, e, eps0)
    eps = eps0 + aug.schedule.step
    own = sel.own
    seeds = [
        own.x[i : i + 1].double() if own is not None and own.valid[i] else x[:0]
        for i in range(b)
    ]
    keep = [i for i in range(b) if aug.k - len(seeds[i]) > 0][:n_rows]
    q = {
        "model": model,
        "x": x[keep],
        "eps": eps[keep],
        "k": [aug.k - len(seeds[i]) for i in keep],
        "seeds": [seeds[i] for i in keep],
        "idx": sel.idx[keep],
        "prop": aug.prop,
        "work": aug.budget.work,
        # plain numbers: the trees may keep Schedule in different modules
        "schedule": (aug.schedule.step, aug.schedule.max_eps),
        "seed": search_seed,
    }
    torch.save(q, path)
    return q


def check(q, i: int, ex: np.ndarray) -> int:
    """Invalid examples among ``ex`` (the exact float64 re-check here)."""
    import torch  # noqa: PLC0415

    from dalv.verify.network import forward64  # noqa: PLC0415
    from dalv.verify.property import winner_runner_up  # noqa: PLC0415

    model, prop = q["model"], q["prop"]
    x = q["x"][i].flatten().numpy()
    eps = float(q["eps"][i])
    if len(ex) == 0:
        return 0
    with torch.no_grad():
        logits = model(q["x"][i : i + 1].float())
        f = forward64(model, torch.from_numpy(ex.copy()).view(-1, *q["x"].shape[1:]))
    c1, c2 = winner_runner_up(logits)
    C = prop.spec(c1, c2, logits.shape[-1], dtype=torch.float64)[0]
    g = (f @ C.T).min(1).values.numpy()
    bad = 0
    earlier = q["seeds"][i].flatten(1).numpy()
    r_max = eps + 1.0  # a schedule may grow the box: the row's last radius bounds it
    for j, e in enumerate(ex):
        ok = g[j] <= -prop.margin and (e >= 0).all() and (e <= 1).all()
        ok &= bool(np.abs(e - x).max() <= r_max)
        if len(earlier):
            gap = np.abs(e - earlier)
            if prop.separation == "every_coord":
                ok &= bool((gap >= prop.delta).all())
            else:
                ok &= bool((gap.max(1) >= prop.delta).all())
        bad += not ok
        earlier = np.concatenate([earlier, e[None]])
    return bad


# ---- the comparison ----------------------------------------------------------------


def start(
    tree: Path, rows_file: str, label: str, variant: str = ""
) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", rows_file]
    if variant:
        cmd += ["--variant", variant]
    p = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),  # so that '' on sys.path is not a dalv checkout
    )
    hello = json.loads(p.stdout.readline())
    if not Path(hello["dalv"]).resolve().is_relative_to(tree):
        sys.exit(f"the {label} worker imported dalv from outside its tree")
    print(f"  {label}: dalv imported from its own tree")  # (no machine paths)
    return p


def ask(p: subprocess.Popen, i: int) -> dict:
    p.stdin.write(f"{i}\n")
    p.stdin.flush()
    return json.loads(p.stdout.readline())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--base", type=Path, help="the older dalv checkout")
    ap.add_argument("--preset", default="paper-mnist")
    ap.add_argument("--method", default="Random+FV-Adv(10)")
    ap.add_argument("--rows", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=os.environ.get("DALV_DATA"))
    ap.add_argument("--only", default="", help="row positions, comma separated")
    ap.add_argument("--variant", default="", help="MilpVerifier fields, new tree")
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.variant)
        return
    if a.base is None:
        ap.error("--base is required (a checkout of the older dalv)")
    load0 = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="bench_milp_speed_")
    rows_file = os.path.join(tmp, "rows.pt")
    sys.path.insert(0, str(ROOT))
    q = build_rows(a.preset, a.method, a.rows, a.seed, a.data_root, rows_file)
    n = len(q["x"])
    print(
        f"{a.preset} seed {a.seed}, cycle 0, {a.method}'s rows ({n}), "
        f"work budget {q['work']} calls, search seed {q['seed']}, one torch thread "
        f"per worker; load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
    )
    old = start(a.base.resolve(), rows_file, "old (--base)")
    new = start(ROOT, rows_file, "new (this checkout)", a.variant)
    rows = [int(s) for s in a.only.split(",")] if a.only else range(n)
    head = (
        f"{'row':>4s} {'pool':>6s} {'old s':>7s} {'new s':>7s} {'old':>12s} "
        f"{'new':>12s} {'calls o/n':>9s} {'milp o/n':>8s} {'nodes o/n':>11s} same"
    )
    print(head)
    tot = {"old": 0.0, "new": 0.0, "old_cpu": 0.0, "new_cpu": 0.0}
    diff_status = diff_ex = bad = 0
    for j, i in enumerate(rows):
        pair = (
            (("old", old), ("new", new)) if j % 2 == 0 else (("new", new), ("old", old))
        )
        got = {name: ask(p, i) for name, p in pair}
        o, w = got["old"], got["new"]
        for name in ("old", "new"):
            tot[name] += got[name]["wall"]
            tot[name + "_cpu"] += got[name]["cpu"]
        same = o["ex"] == w["ex"]
        diff_status += o["status"] != w["status"]
        diff_ex += not same
        d = q["x"][i].numel()
        for r in (o, w):
            ex = np.frombuffer(bytes.fromhex(r["ex"]), np.float64).reshape(-1, d)
            bad += check(q, i, ex)
        print(
            f"{i:4d} {int(q['idx'][i]):6d} {o['wall']:7.2f} {w['wall']:7.2f} "
            f"{o['status']:>7s}/{o['n']:<4d} {w['status']:>7s}/{w['n']:<4d} "
            f"{o['calls']:4d}/{w['calls']:<4d} {o['milp']:3d}/{w['milp']:<4d} "
            f"{o['nodes']:5d}/{w['nodes']:<5d} {'yes' if same else 'NO'}",
            flush=True,
        )
    for p in (old, new):
        p.stdin.close()
        p.wait()
    load1 = os.getloadavg()
    ratio = tot["old"] / max(tot["new"], 1e-9)
    ratio_cpu = tot["old_cpu"] / max(tot["new_cpu"], 1e-9)
    print(
        f"total wall: old {tot['old']:.1f} s, new {tot['new']:.1f} s, ratio "
        f"{ratio:.2f}x; cpu: old {tot['old_cpu']:.1f} s, new {tot['new_cpu']:.1f} s, "
        f"ratio {ratio_cpu:.2f}x"
    )
    print(
        f"rows whose status differs: {diff_status}; rows whose examples differ: "
        f"{diff_ex}; invalid examples (either tree): {bad}; load average after "
        f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}"
    )


if __name__ == "__main__":
    main()
