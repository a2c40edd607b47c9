"""Marabou backend: the query it builds, agreement with the lirpa backend, budgets and
the whole-call deadline."""

import dataclasses
import time

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("maraboupy")

from dalv.verify import (  # noqa: E402
    Budget,
    LirpaVerifier,
    MarabouVerifier,
    Property,
    Query,
    Schedule,
    recheck,
    winner_runner_up,
)
from dalv.verify import marabou as mb  # noqa: E402
from dalv.verify import marabou_query as mq  # noqa: E402
from dalv.verify import marabou_worker as mw  # noqa: E402
from dalv.verify.compat import import_auto_lirpa  # noqa: E402

try:
    import_auto_lirpa()
except ImportError as err:  # pragma: no cover - environment without auto_LiRPA
    pytest.skip(str(err), allow_module_level=True)


pytestmark = pytest.mark.usefixtures("one_thread")


def random_net(seed: int, d: int = 5, h: int = 10, n: int = 3, scale: float = 2.5):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, n)
    )
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    return net.eval()


def queries():
    """66 small queries, with and without an excluded point, both rules, both targets.

    36 on 5-input nets with two hidden layers of 10 (input splitting) and 30 on 16-input
    nets with one hidden layer of 8 (ReLU splitting with beta).
    """
    gen = torch.Generator().manual_seed(0)
    out = []
    for q in range(66):
        wide = q >= 36
        d = 16 if wide else 5
        if wide:
            torch.manual_seed(q)
            net = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
            with torch.no_grad():
                for p in net.parameters():
                    p.mul_(2.5)
        else:
            net = random_net(q % 6)
        x = torch.rand(d, generator=gen)
        eps = float(0.05 + (0.2 if wide else 0.45) * torch.rand(1, generator=gen))
        noise = (0.1 if wide else 0.2) * (torch.rand(d, generator=gen) - 0.5)
        excl = (x + noise).clamp(0, 1)[None] if q % 2 else x[:0].reshape(0, d)
        separation = "every_coord" if q % 4 < 2 else "any_coord"
        out.append((net, x, eps, excl, separation, "runner_up" if q % 3 else "any"))
    return out


def test_backends_agree_on_small_random_queries():
    decided = sat = unsat = 0
    lirpa, marabou = LirpaVerifier(), MarabouVerifier(workers=1)
    for net, x, eps, excl, separation, target in queries():
        prop = Property(target=target, separation=separation)
        a = lirpa.find(net, x, eps, 2, excl, prop, Budget(work=20_000))
        b = marabou.find(net, x, eps, 2, excl, prop, Budget(work=10))
        for res in (a, b):
            c1, c2 = winner_runner_up(net(x[None]))
            C = prop.spec(c1, c2, 3)[0]
            assert recheck(net, x, eps, C, res.counterexamples, excl, prop).all()
        if a.status != "unknown" and b.status != "unknown":
            decided += 1
            assert a.status == b.status, (eps, target, separation, a, b)
            sat += a.status == "sat"
            unsat += a.status == "unsat"
    # Under work budgets (no clock) every query is decided, on any machine.
    assert decided == 66 and sat >= 10 and unsat >= 10, (decided, sat, unsat)


def test_query_drops_sides_the_box_rules_out():
    net = random_net(0)
    eps = torch.tensor([0.1], dtype=torch.float64)
    xs, excl = torch.full((1, 5), 0.5), [torch.empty(0, 5)]
    task = _task(net, xs, eps, excl)
    box = mq.Box.around(task.x, task.eps, task.witness_dtype)
    # a point on the box's lower face: only the "above" side survives, as a bound
    a = np.full(5, 0.4)
    ipq = mq.build_query(task, box, a[None], 1e-3, 1e-3)
    assert ipq.getLowerBound(0) == pytest.approx(0.401)
    # a slab wider than the box: infeasible, no solver call needed
    assert mq.build_query(task, box, a[None] + 0.1, 1e-3, 0.5) is None


def test_solver_timeout_gives_unknown_with_partial_results(monkeypatch):
    net = random_net(1)
    x = torch.full((5,), 0.5)
    real = mw._solve
    calls = {"n": 0}

    def flaky(ipq, timeout):
        calls["n"] += 1
        return ("TIMEOUT", {}, 0) if calls["n"] > 1 else real(ipq, timeout)

    monkeypatch.setattr(mw, "_solve", flaky)
    res = MarabouVerifier(workers=1).find(net, x, 0.5, 3)
    assert res.stats.timed_out and not res.exhausted
    assert res.status == "sat" and len(res.counterexamples) == 1


def test_work_budget_cuts_the_loop_short_as_unknown_never_unsat():
    # This box holds no counterexample: the proof takes a strict call and a looser
    # confirmation, so one call is not enough to say "unsat".
    net, x = random_net(2), torch.rand(5, generator=torch.Generator().manual_seed(5))
    marabou = MarabouVerifier(workers=1)
    full = marabou.find(net, x, 0.05, 2)
    assert full.status == "unsat" and full.stats.calls == 2
    res = marabou.find(net, x, 0.05, 2, budget=Budget(work=1))
    assert res.status == "unknown" and not res.exhausted and not res.stats.timed_out
    assert res.stats.calls == 1
    # A box with counterexamples: two calls give two, and no claim about the rest.
    net, x = random_net(1), torch.full((5,), 0.5)
    res = marabou.find(net, x, 0.5, 5, budget=Budget(work=2))
    assert res.status == "sat" and len(res.counterexamples) == 2
    assert res.stats.calls == 2 and not res.exhausted and not res.stats.timed_out


def test_deadline_is_one_instant_for_the_whole_call(monkeypatch):
    # Budget.seconds limits the whole find_batch: every task carries the same absolute
    # deadline, and a task whose deadline has passed calls no solver.
    net = random_net(3)
    xs = torch.rand(3, 5, generator=torch.Generator().manual_seed(7))
    seen = []
    make = mb._Runs.task
    monkeypatch.setattr(
        mb._Runs, "task", lambda r, b: seen.append(make(r, b)) or seen[-1]
    )
    before = time.monotonic()
    MarabouVerifier(workers=1).find_batch(net, xs, 0.2, 1, budget=Budget(seconds=1e4))
    assert len({t.deadline for t in seen}) == 1
    assert before + 1e4 <= seen[0].deadline <= time.monotonic() + 1e4
    late = dataclasses.replace(seen[0], deadline=time.monotonic() - 1.0)
    out = mw.solve_task(late)
    assert out.timed_out and out.calls == 0 and not out.unsat_claim
    assert len(out.witnesses) == 0


def test_schedule_grows_the_box_after_each_proof():
    # This input is robust up to a radius of 0.7: from 0.05, every smaller radius is
    # proved empty (a strict call and a confirmation each), then 0.75 holds one.
    net, x = random_net(2), torch.rand(5, generator=torch.Generator().manual_seed(5))
    marabou = MarabouVerifier(workers=1)
    schedule = Schedule(step=0.05, max_eps=1.0)
    res = marabou.find_batch(net, x[None], 0.05, 1, schedule=schedule)[0]
    assert res.status == "sat" and res.eps == pytest.approx(0.75)
    assert res.stats.calls == 2 * 14 + 1
    assert marabou.find(net, x, 0.7, 1).status == "unsat"
    # Capped by max_eps: every radius is proved empty, and the last one is reported.
    capped = Schedule(step=0.05, max_eps=0.3)
    res = marabou.find_batch(net, x[None], 0.05, 1, schedule=capped)[0]
    assert res.status == "unsat" and res.exhausted and res.eps == pytest.approx(0.3)


def test_process_pool_matches_in_process():
    net = random_net(2)
    xs = torch.rand(4, 5, generator=torch.Generator().manual_seed(5))
    one = MarabouVerifier(workers=1).find_batch(net, xs, 0.3, 2)
    two = MarabouVerifier(workers=2).find_batch(net, xs, 0.3, 2)
    assert [r.status for r in one] == [r.status for r in two]
    for a, b in zip(one, two, strict=True):
        torch.testing.assert_close(a.counterexamples, b.counterexamples)


def _task(net, xs, eps, excl, prop=None):
    xs = xs.double()
    prop = prop or Property()
    runs = mb._Runs(Query(net, xs, eps, 1, excl, prop), None, time.monotonic())
    return runs.task(0)
