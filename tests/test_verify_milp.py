"""MILP backend: exactness against an independent reference on tiny networks, the
encoding's rules, the tolerance logic, schedules, budgets and argument checks.

The reference (``reference``) knows nothing of the backend: it splits the exact feasible
set of a 2-D query (the box minus the exclusions, as a union of closed boxes) into cells
and bounds the margin on each cell by interval arithmetic, until every cell is ruled
out (no counterexample) or a cell's centre or corner is a counterexample (one exists).
"""

import itertools
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from dalv.verify import Budget, Property, Schedule, winner_runner_up
from dalv.verify.geometry import cut_box, project, region_box
from dalv.verify.milp import MilpVerifier
from dalv.verify.milp_encode import (
    MilpProblem,
    encode_milp,
    encode_region,
    forward,
    merge_layers,
)
from dalv.verify.milp_search import MilpStats
from dalv.verify.milp_solve import LpSession, engine_name, solve_milp
from dalv.verify.network import affine_relu_layers

pytestmark = pytest.mark.usefixtures("one_thread")

DELTA = 0.04  # visible in 2-D


# ---- the independent reference -------------------------------------------------------


def _weights(net: nn.Module) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    return [
        (a.weight.numpy(), a.bias.numpy(), a.relu)
        for a in affine_relu_layers(net, dtype=torch.float64)
    ]


def _forward(weights, x: np.ndarray) -> np.ndarray:
    h = x
    for w, b, relu in weights:
        h = h @ w.T + b
        if relu:
            h = np.maximum(h, 0.0)
    return h


def _ibp_lower(weights, spec: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Interval lower bound of ``min_s spec_s . f`` on cells ``[lo, hi]`` ([N, 2])."""
    for w, b, relu in weights[:-1]:
        mid, rad = (lo + hi) / 2, (hi - lo) / 2
        c, r = mid @ w.T + b, rad @ np.abs(w).T
        lo, hi = c - r, c + r
        if relu:
            lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
    w, b, _ = weights[-1]
    sw = spec @ w  # [S, n]
    low = np.maximum(sw, 0) @ lo.T + np.minimum(sw, 0) @ hi.T + (spec @ b)[:, None]
    return low.min(0)


def _feasible_boxes(lo, hi, exclude, delta, separation):
    """The box minus the exclusions as a list of closed boxes."""
    if separation == "every_coord":
        per_coord = []
        for i in range(lo.shape[0]):
            ivs = [(lo[i], hi[i])]
            for a in exclude[:, i]:
                nxt = []
                for u, v in ivs:
                    if u <= a - delta:
                        nxt.append((u, min(v, a - delta)))
                    if v >= a + delta:
                        nxt.append((max(u, a + delta), v))
                ivs = nxt
            per_coord.append(ivs)
        return [
            (np.array([p[0] for p in c]), np.array([p[1] for p in c]))
            for c in itertools.product(*per_coord)
        ]
    boxes = [(lo.copy(), hi.copy())]
    for a in exclude:
        nxt = []
        for blo, bhi in boxes:
            for i in range(lo.shape[0]):
                if blo[i] <= a[i] - delta:
                    h2 = bhi.copy()
                    h2[i] = min(h2[i], a[i] - delta)
                    nxt.append((blo, h2))
                if bhi[i] >= a[i] + delta:
                    l2 = blo.copy()
                    l2[i] = max(l2[i], a[i] + delta)
                    nxt.append((l2, bhi))
        boxes = nxt
    return boxes


def reference(weights, spec, margin, lo, hi, exclude, delta, separation):
    """The exact query's answer: "exists" (with a point), "none" or "unclear"."""
    boxes = _feasible_boxes(lo, hi, exclude, delta, separation)
    if not boxes:
        return "none", None
    clo = np.stack([b[0] for b in boxes])
    chi = np.stack([b[1] for b in boxes])
    for _ in range(60):
        probes = [(clo + chi) / 2, clo, chi, np.stack([clo[:, 0], chi[:, 1]], 1)]
        probes.append(np.stack([chi[:, 0], clo[:, 1]], 1))
        for p in probes:
            g = (_forward(weights, p) @ spec.T).min(1)
            hit = np.nonzero(g <= -margin - 1e-9)[0]
            if hit.size:
                return "exists", p[hit[0]]
        keep = _ibp_lower(weights, spec, clo, chi) <= -margin
        clo, chi = clo[keep], chi[keep]
        if clo.shape[0] == 0:
            return "none", None
        if clo.shape[0] > 200_000:
            break
        axis = (chi - clo).argmax(1)
        mid = (clo + chi)[np.arange(len(axis)), axis] / 2
        lo2, hi2 = clo.copy(), chi.copy()
        hi2[np.arange(len(axis)), axis] = mid
        lo3 = clo.copy()
        lo3[np.arange(len(axis)), axis] = mid
        clo, chi = np.concatenate([lo2, lo3]), np.concatenate([hi2, chi])
    return "unclear", None


def _is_counterexample(weights, spec, prop, lo, hi, exclude, w) -> bool:
    """Own float64 acceptance test, independent of ``dalv.verify.property``."""
    g = (_forward(weights, w[None]) @ spec.T).min()
    if g > -prop.margin or (w < lo).any() or (w > hi).any():
        return False
    for a in exclude:
        far = np.abs(w - a) >= prop.delta
        if not (far.all() if prop.separation == "every_coord" else far.any()):
            return False
    return True


# ---- tiny random networks and queries ------------------------------------------------


def random_net(seed: int) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    kind = seed % 6
    if kind == 0:
        layers = [
            nn.Linear(2, 4),
            nn.ReLU(),
            nn.Linear(4, 4),
            nn.ReLU(),
            nn.Linear(4, 3),
        ]
    elif kind == 1:
        layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU()]
        layers += [nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3)]
    elif kind == 2:  # consecutive Linear layers first
        layers = [nn.Linear(2, 4), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3)]
    elif kind == 3:  # ... and last
        layers = [nn.Flatten(), nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 3)]
        layers += [nn.Linear(3, 3)]
    elif kind == 4:  # no biases
        layers = [nn.Linear(2, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=False)]
        layers += [nn.ReLU(), nn.Linear(4, 3, bias=False)]
    else:  # Linear between two ReLU layers
        layers = [nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3), nn.Linear(3, 4)]
        layers += [nn.ReLU(), nn.Linear(4, 3)]
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 1.5)
    if seed % 4 == 3:
        net = net.double()
    return net.eval()


def random_query(seed: int, net: nn.Module):
    """A query on ``net``: ``x`` among the 64 random points nearest to a decision
    boundary (so that about half the queries have counterexamples)."""
    rng = np.random.default_rng(seed)
    cands = rng.random((64, 2))
    with torch.no_grad():
        logits = net(torch.from_numpy(cands).to(next(net.parameters()).dtype))
    top2 = logits.double().topk(2, dim=1).values
    order = np.argsort((top2[:, 0] - top2[:, 1]).numpy(), kind="stable")
    x = torch.from_numpy(cands[order[int(rng.integers(0, 24))]])
    eps = float(rng.uniform(0.05, 0.4))
    n_ex = int(rng.integers(0, 3))
    excl = np.clip(x.numpy() + rng.uniform(-0.15, 0.15, (n_ex, 2)), 0, 1)
    prop = Property(
        target=("runner_up", "any")[seed % 2],
        separation=("every_coord", "any_coord")[(seed // 2) % 2],
        delta=DELTA,
        margin=(1e-3, 0.05)[(seed // 4) % 2],
    )
    return x, eps, torch.from_numpy(excl), prop


def _spec(net, x, prop):
    with torch.no_grad():
        logits = net(x[None].to(next(net.parameters()).dtype))
    c1, c2 = winner_runner_up(logits)
    return prop.spec(c1, c2, logits.shape[-1], dtype=torch.float64)[0].numpy()


def _box(x: np.ndarray, eps: float):
    return np.maximum(x - eps, 0.0), np.minimum(x + eps, 1.0)


def _check_against_reference(net, x, eps, excl, prop, res, tally):
    """Every witness valid; 'unsat' only where the reference finds none; the final
    exhausted claim and every proof checked too."""
    weights, spec = _weights(net), _spec(net, x, prop)
    xn = x.numpy()
    found = res.counterexamples.flatten(1).double().numpy()
    excl_n = excl.numpy().reshape(-1, 2)
    lo, hi = _box(xn, res.eps)
    seen = excl_n
    for w in found:
        assert _is_counterexample(weights, spec, prop, lo, hi, seen, w), "bad witness"
        seen = np.concatenate([seen, w[None]])
    stats = res.stats
    assert isinstance(stats, MilpStats)
    assert res.status != "unknown", f"tiny query left unknown: {stats.stop}"
    radii = np.array(stats.example_eps)
    for proof in stats.proofs:
        before = found[radii <= proof.eps + 1e-12]
        ex = np.concatenate([excl_n, before])
        plo, phi = _box(xn, proof.eps)
        verdict, point = reference(
            weights, spec, prop.margin, plo, phi, ex, prop.delta, prop.separation
        )
        assert verdict != "exists", (
            f"unsound proof ({proof.how}) at {proof.eps}: {point}"
        )
        tally[verdict] += 1
        tally[proof.how] += 1
    if res.status == "sat" and not res.exhausted:
        tally["sat"] += 1


# ---- exactness -----------------------------------------------------------------------


@pytest.mark.parametrize("config", ["default", "milp_only"])
def test_single_queries_agree_with_the_reference(config):
    """120 networks, one query each: statuses agree with the reference."""
    verifier = (
        MilpVerifier()
        if config == "default"
        else MilpVerifier(warm=False, pgd_starts=0, bound_proofs=False)
    )
    agree = {"exists": 0, "none": 0, "unclear": 0}
    for seed in range(120):
        net = random_net(seed)
        x, eps, excl, prop = random_query(seed, net)
        res = verifier.find(net, x, eps, 1, exclude=excl, prop=prop, seed=seed)
        weights, spec = _weights(net), _spec(net, x, prop)
        lo, hi = _box(x.numpy(), eps)
        verdict, point = reference(
            weights,
            spec,
            prop.margin,
            lo,
            hi,
            excl.numpy(),
            prop.delta,
            prop.separation,
        )
        agree[verdict] += 1
        assert res.status != "unknown", (seed, res.stats.stop)
        if res.status == "sat":
            w = res.counterexamples[0].double().numpy()
            assert _is_counterexample(weights, spec, prop, lo, hi, excl.numpy(), w)
            assert verdict != "none", (seed, "witness where the reference has none")
        else:
            assert verdict != "exists", (seed, "unsound unsat", point)
            assert res.exhausted and len(res.counterexamples) == 0
        if config == "milp_only":
            assert res.stats.lp_calls == 0 and res.stats.lp_examples == 0
    assert agree["exists"] >= 20 and agree["none"] >= 20, agree
    assert agree["unclear"] <= 3, agree


def test_searches_with_a_schedule_are_exact():
    """120 networks, k = 3 under a growing box: every witness valid, every proof (at
    every radius, with the exclusions known then) confirmed by the reference."""
    tally = {"exists": 0, "none": 0, "unclear": 0, "sat": 0}
    tally.update(empty=0, bound=0, solver=0)
    sched = Schedule(step=0.1, max_eps=0.5)
    for seed in range(120, 240):
        net = random_net(seed)
        x, eps, excl, prop = random_query(seed, net)
        eps = min(eps, 0.2)
        res = MilpVerifier().find_batch(
            net, x[None], eps, 3, [excl], prop, schedule=sched, seed=seed
        )[0]
        _check_against_reference(net, x, eps, excl, prop, res, tally)
    assert tally["none"] >= 30 and tally["sat"] >= 20, tally
    assert tally["solver"] >= 5 and tally["bound"] + tally["empty"] >= 5, tally
    assert tally["unclear"] <= 3, tally


def test_batch_equals_single_inputs_and_seeds_fix_the_answer():
    net = random_net(0)
    xs = torch.rand(6, 2, generator=torch.Generator().manual_seed(1))
    v = MilpVerifier()
    batch = v.find_batch(net, xs, 0.3, 3, seed=5)
    again = v.find_batch(net, xs, 0.3, 3, seed=5)
    assert {r.status for r in batch} >= {"sat"}
    for i, (a, b) in enumerate(zip(batch, again, strict=True)):
        one = v.find(net, xs[i], 0.3, 3, seed=5)
        for other in (b, one):
            assert a.status == other.status
            assert torch.equal(a.counterexamples, other.counterexamples)


# ---- the encoding --------------------------------------------------------------------


def test_cut_box_drops_what_the_box_decides():
    lo, hi = np.array([0.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0])
    # coord 0: slab inside (open disjunction); coord 1: only the upper side fits;
    # coord 2: the slab lies outside the box.
    a = np.array([[0.5, 0.02, 1.5]])
    cut = cut_box(lo, hi, a, 0.1, "every_coord")
    assert cut is not None
    assert np.array_equal(cut.pairs[0], [0])
    assert cut.lo[1] == pytest.approx(0.12) and cut.hi[2] == 1.0
    # both sides outside the box: empty
    assert cut_box(lo, hi, np.array([[0.5, 0.5, 0.5]]), 0.6, "every_coord") is None
    # forced sides cascade: the second point's slab is decided by the first's bound
    two = np.array([[0.02, 0.5, 0.5], [0.2, 0.5, 0.5]])
    cut = cut_box(lo, hi, two, 0.1, "every_coord")
    assert cut is not None and cut.lo[0] == pytest.approx(0.3)
    # any_coord: a ball the box sticks out of in one coordinate constrains nothing
    cut = cut_box(lo, hi, np.array([[0.5, 0.5, 2.0]]), 0.1, "any_coord")
    assert cut is not None and cut.balls == ()
    cut = cut_box(lo, hi, np.array([[0.5, 0.5, 0.5]]), 0.1, "any_coord")
    assert cut is not None and len(cut.balls) == 1 and cut.balls[0][0].size == 6
    assert cut_box(lo, hi, np.array([[0.5, 0.5, 0.5]]), 0.6, "any_coord") is None


def test_region_lp_points_are_feasible_points_of_the_milp():
    """Fixing the binaries to a point's sides and phases gives a restriction: the LP's
    vertex, completed with its own phases, satisfies every MILP row."""
    rng = np.random.default_rng(0)
    engine = engine_name("auto")
    for seed in range(20):
        net = random_net(seed)
        layers = merge_layers(_weights(net))
        x = rng.random(2)
        lo, hi = _box(x, 0.3)
        excl = np.clip(x + rng.uniform(-0.1, 0.1, (2, 2)), 0, 1)
        cut = cut_box(lo, hi, excl, DELTA, "every_coord")
        if cut is None:
            continue
        pre = _exact_pre(layers, cut.lo, cut.hi)
        spec = np.zeros((1, 3))
        c = np.argsort(-forward(layers, x[None])[0], kind="stable")
        spec[0, c[0]], spec[0, c[1]] = 1, -1
        y, ok = project(
            rng.uniform(lo, hi, (1, 2)), cut.lo, cut.hi, excl, DELTA, "every_coord"
        )
        if not ok[0]:
            continue
        A, b = encode_region(layers, pre, y[0], spec, -1e6)  # margin row slack
        rb = region_box(cut, y[0])
        assert rb is not None
        ans = LpSession(engine).solve(A, b, *rb)
        assert ans.status == "feasible"
        # the same point is feasible for the MILP with every binary free
        problem = encode_milp(
            layers, pre, spec, (np.array([-1e9]), np.array([1e9])), -1e6, cut
        )
        fixed = problem.col_lo.copy(), problem.col_hi.copy()
        fixed[0][:2] = fixed[1][:2] = ans.x
        pinned = MilpProblem(
            problem.A,
            problem.row_lo,
            problem.row_hi,
            *fixed,
            problem.integer,
            problem.n_x,
            problem.n_binary,
        )
        assert solve_milp(pinned, engine, node_limit=100, time_limit=None).status == (
            "feasible"
        )


def _exact_pre(layers, lo, hi):
    """Interval pre-activation bounds (loose but valid), inflated a little."""
    pre = []
    low, up = lo, hi
    for w, b in layers[:-1]:
        mid, rad = (low + up) / 2, (up - low) / 2
        c, r = w @ mid + b, np.abs(w) @ rad
        pre.append((c - r - 1e-9, c + r + 1e-9))
        low, up = np.maximum(c - r, 0), np.maximum(c + r, 0)
    return pre


# ---- tolerances, budgets, schedules --------------------------------------------------


def _boundary_net() -> nn.Sequential:
    """f0 - f1 = x0 - 0.5: on the box x0 in [0.25, 1] its minimum is exactly -0.25."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        net[2].bias.copy_(torch.tensor([0.0, 0.5]))
    return net


def test_a_counterexample_exactly_at_the_margin_is_not_proved_absent():
    net = _boundary_net()
    x = torch.tensor([0.75, 0.5], dtype=torch.float64)
    prop = Property(margin=0.25)
    for cfg in (MilpVerifier(), MilpVerifier(warm=False, pgd_starts=0)):
        res = cfg.find(net, x, 0.5, 1, prop=prop)
        assert res.status != "unsat"
        if res.status == "sat":
            assert float(res.counterexamples[0, 0]) <= 0.25
    # a hair more margin: now there is none, and the bound proves it
    res = MilpVerifier().find(net, x, 0.5, 1, prop=Property(margin=0.2501))
    assert res.status == "unsat" and res.stats.proofs[0].how == "bound"
    # ... but 1e-7 more is within the solver's tolerance: not a proof
    for cfg in (MilpVerifier(), MilpVerifier(bound_proofs=False)):
        res = cfg.find(net, x, 0.5, 1, prop=Property(margin=0.25 + 1e-7))
        assert res.status != "unsat"


def test_an_excluded_box_is_proved_empty():
    net = _boundary_net()
    x = torch.tensor([0.75, 0.5], dtype=torch.float64)
    # one excluded point whose slab covers the whole box in coordinate 1
    excl = torch.tensor([[0.3, 0.5]], dtype=torch.float64)
    res = MilpVerifier().find(net, x, 0.05, 1, exclude=excl, prop=Property(delta=0.1))
    assert res.status == "unsat" and res.stats.proofs[0].how == "empty"


def test_the_schedule_grows_after_proofs():
    net = _boundary_net()
    x = torch.tensor([0.75, 0.5], dtype=torch.float64)
    # radius 0.1: x0 >= 0.65, no counterexample; the box reaches x0 <= 0.25 at 0.5
    res = MilpVerifier().find_batch(
        net,
        x[None],
        0.1,
        1,
        prop=Property(margin=0.2),
        schedule=Schedule(step=0.1, max_eps=0.6),
    )[0]
    assert res.status == "sat" and res.eps == pytest.approx(0.5)
    assert [round(p.eps, 6) for p in res.stats.proofs] == [0.1, 0.2, 0.3, 0.4]
    assert res.stats.example_eps == pytest.approx((0.5,))


def test_a_work_budget_gives_unknown_never_unsat():
    """With one solver call, a proof (which needs the looser query's call too) is out
    of reach: the answer is "unknown", never "unsat"."""
    cut_short = 0
    for seed in range(120):
        net = random_net(seed)
        x, eps, excl, prop = random_query(seed, net)
        v = MilpVerifier(bound_proofs=False)
        full = v.find(net, x, eps, 1, exclude=excl, prop=prop, seed=seed)
        res = v.find(
            net, x, eps, 1, exclude=excl, prop=prop, budget=Budget(work=1), seed=seed
        )
        assert res.stats.calls <= 1
        if full.stats.calls > 1:
            assert res.status in ("sat", "unknown") and not res.exhausted
            assert res.stats.stop == "budget"
            cut_short += full.status == "unsat"
    assert cut_short >= 8


def test_budget_seconds_returns_partial_results():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    xs = torch.rand(6, 64)
    t0 = time.monotonic()
    res = MilpVerifier().find_batch(net, xs, 0.5, 50, budget=Budget(seconds=0.2))
    assert time.monotonic() - t0 < 5
    assert len(res) == 6
    assert any(r.stats.timed_out for r in res)
    assert all(r.status in ("sat", "unknown") for r in res if r.stats.timed_out)


def test_conv_layers_are_rejected_by_name():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="Conv2d"):
        MilpVerifier().find(net, torch.rand(1, 4, 4), 0.1, 1)
    assert MilpVerifier.name == "milp" and MilpVerifier.complete


def test_bad_knobs_are_rejected():
    with pytest.raises(ValueError, match="solver"):
        MilpVerifier(solver="cplex")
    with pytest.raises(ValueError, match="node_limit"):
        MilpVerifier(node_limit=0)


def test_scipy_engine_agrees():
    """The SciPy engine (no highspy needed) gives the same statuses."""
    for seed in range(20):
        net = random_net(seed)
        x, eps, excl, prop = random_query(seed, net)
        a = MilpVerifier(solver="scipy").find(net, x, eps, 1, exclude=excl, prop=prop)
        b = MilpVerifier().find(net, x, eps, 1, exclude=excl, prop=prop)
        assert a.status == b.status, seed


def test_gurobi_engine_on_a_tiny_net():
    gp = pytest.importorskip("gurobipy")
    try:
        gp.Model().dispose()
    except gp.GurobiError as err:  # pragma: no cover - no licence
        pytest.skip(str(err))
    for seed in range(10):
        net = random_net(seed)
        x, eps, excl, prop = random_query(seed, net)
        a = MilpVerifier(solver="gurobi", warm=False, pgd_starts=0).find(
            net, x, eps, 1, exclude=excl, prop=prop
        )
        b = MilpVerifier().find(net, x, eps, 1, exclude=excl, prop=prop)
        assert a.status == b.status, seed


def test_worker_processes_give_the_same_answers():
    net = random_net(1)
    xs = torch.rand(4, 2, generator=torch.Generator().manual_seed(2))
    one = MilpVerifier().find_batch(net, xs, 0.3, 2, seed=3)
    two = MilpVerifier(workers=2).find_batch(net, xs, 0.3, 2, seed=3)
    for a, b in zip(one, two, strict=True):
        assert a.status == b.status
        assert torch.equal(a.counterexamples, b.counterexamples)
        assert a.stats.proofs == b.stats.proofs


def test_loose_first_and_its_guide_change_no_answer():
    """Asking the looser query first (guided, only its "infeasible" used) proves boxes
    with fewer MILP nodes; every status, radius and witness stays that of the
    strict-then-loose order, over random networks with growing boxes."""
    sched = Schedule(step=0.1, max_eps=0.5)
    fast, old = MilpVerifier(), MilpVerifier(loose_first=False, guide=False)
    solver_proofs = 0
    for seed in range(300, 340):
        net = random_net(seed)
        x, eps, excl, prop = random_query(seed, net)
        args = (net, x[None], min(eps, 0.2), 3, [excl], prop)
        a = fast.find_batch(*args, schedule=sched, seed=seed)[0]
        b = old.find_batch(*args, schedule=sched, seed=seed)[0]
        assert a.status == b.status and a.eps == b.eps, seed
        assert torch.equal(a.counterexamples, b.counterexamples), seed
        assert a.stats.calls == b.stats.calls, seed  # a proof is charged as the pair
        solver_proofs += a.stats.milp_calls < b.stats.milp_calls
    assert solver_proofs >= 3  # the first MILP did prove boxes empty on its own


def test_find_takes_none_for_no_exclusions_as_find_batch_does():
    net = random_net(3)
    x = torch.rand(2, generator=torch.Generator().manual_seed(3))
    a = MilpVerifier().find(net, x, 0.3, 2, None, seed=1)
    b = MilpVerifier().find(net, x, 0.3, 2, (), seed=1)
    c = MilpVerifier().find_batch(net, x[None], 0.3, 2, None, seed=1)[0]
    for other in (b, c):
        assert a.status == other.status
        assert torch.equal(a.counterexamples, other.counterexamples)


@pytest.mark.parametrize("target", ["runner_up", "any"])
def test_solver_task_reads_the_classes_from_its_spec_rows(target):
    """One task type for both exact backends: the winner and the rivals Marabou's
    query needs are the spec rows' +1 and -1, in ``Property.rivals``'s order."""
    from dalv.verify.task import SolverTask, numpy_weights

    prop = Property(target=target)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5)).double()
    weights = numpy_weights(net, "a test")
    c1, c2 = torch.tensor([3, 0]), torch.tensor([1, 4])
    C = prop.spec(c1, c2, 5, dtype=torch.float64)
    for b in range(2):
        task = SolverTask(
            weights,
            np.zeros(3),
            0.1,
            "float64",
            C[b].numpy(),
            np.zeros((0, 3)),
            1,
            prop,
        )
        assert task.c1 == int(c1[b])
        assert task.rivals == prop.rivals(int(c1[b]), int(c2[b]), 5)
        assert len(task.layers) == 2  # merged on construction


def test_a_highs_that_refuses_to_run_is_an_error_not_unknown():
    """HiGHS keeps one thread pool per process: after an instance with the default
    thread count has run, dalv's single-threaded one gets kError from every run().
    The search says so instead of answering "unknown" everywhere (in a subprocess:
    the state would stay in this one)."""
    code = (
        "import highspy, torch\n"
        "from torch import nn\n"
        "from dalv.verify import MilpVerifier\n"
        "h = highspy.Highs(); h.setOptionValue('output_flag', False)\n"
        "h.addVar(0, 1); h.run()\n"
        "net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))\n"
        "with torch.no_grad():\n"  # logits (x0, x1): the class flips at x0 = x1
        "    for m in (net[0], net[2]):\n"
        "        m.weight.copy_(torch.eye(2)); m.bias.zero_()\n"
        "x = torch.tensor([0.6, 0.4])\n"
        "try:\n"
        "    v = MilpVerifier(pgd_starts=0, warm=False)\n"
        "    print(v.find(net, x, 0.3, 1).status)\n"
        "except RuntimeError as err:\n"
        "    print('raised:', err)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert "raised: HiGHS refused to solve" in r.stdout, r.stdout + r.stderr
    assert "'threads'" in r.stdout
