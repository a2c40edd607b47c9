"""Marabou backend: the query it builds, agreement with the lirpa backend, timeouts."""

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("maraboupy")

from dalv.verify import marabou as mb  # noqa: E402
from dalv.verify.compat import import_auto_lirpa  # noqa: E402
from dalv.verify.property import property_spec, recheck, winner_runner_up  # noqa: E402
from dalv.verify.search import (  # noqa: E402
    find_counterexamples,
    find_counterexamples_batch,
)

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
    for net, x, eps, excl, separation, target in queries():
        kw = dict(exclude=excl, separation=separation, target=target, timeout=3)
        a = find_counterexamples(net, x, eps, 2, **kw)
        b = find_counterexamples(net, x, eps, 2, backend="marabou", **kw)
        for res in (a, b):
            c1, c2 = winner_runner_up(net(x[None]))
            C = property_spec(c1, c2, target, 3)[0]
            ok = recheck(
                net,
                x,
                eps,
                C,
                res.counterexamples,
                excl,
                separation=separation,
                delta=1e-3,
                margin=1e-3,
            )
            assert ok.all()
        if a.status != "unknown" and b.status != "unknown":
            decided += 1
            assert a.status == b.status, (eps, target, separation, a, b)
            sat += a.status == "sat"
            unsat += a.status == "unsat"
    assert decided >= 60 and sat >= 10 and unsat >= 10, (decided, sat, unsat)


def test_query_drops_sides_the_box_rules_out():
    net = random_net(0)
    eps = torch.tensor([0.1], dtype=torch.float64)
    task = mb._tasks(
        net,
        torch.full((1, 5), 0.5),
        eps,
        torch.tensor([1]),
        [torch.empty(0, 5)],
        "runner_up",
        "every_coord",
        1e-3,
        1e-3,
        None,
    )[0][0]
    box = mb._Box.around(task.x, task.eps, task.witness_dtype)
    # a point on the box's lower face: only the "above" side survives, as a bound
    a = np.full(5, 0.4)
    ipq = mb.build_query(task, box, a[None], 1e-3, 1e-3)
    assert ipq.getLowerBound(0) == pytest.approx(0.401)
    # a slab wider than the box: infeasible, no solver call needed
    assert mb.build_query(task, box, a[None] + 0.1, 1e-3, 0.5) is None


def test_solver_timeout_gives_unknown_with_partial_results(monkeypatch):
    net = random_net(1)
    x = torch.full((5,), 0.5)
    real = mb._solve
    calls = {"n": 0}

    def flaky(ipq, timeout):
        calls["n"] += 1
        return ("TIMEOUT", {}, 0) if calls["n"] > 1 else real(ipq, timeout)

    monkeypatch.setattr(mb, "_solve", flaky)
    res = find_counterexamples(net, x, 0.5, 3, backend="marabou", timeout=5)
    assert res.stats.timed_out and not res.exhausted
    assert res.status == "sat" and len(res.counterexamples) == 1


def test_process_pool_matches_in_process():
    net = random_net(2)
    xs = torch.rand(4, 5, generator=torch.Generator().manual_seed(5))
    kw = dict(backend="marabou", timeout=10)
    one = find_counterexamples_batch(net, xs, 0.3, 2, workers=1, **kw)
    two = find_counterexamples_batch(net, xs, 0.3, 2, workers=2, **kw)
    assert [r.status for r in one] == [r.status for r in two]
    for a, b in zip(one, two):
        torch.testing.assert_close(a.counterexamples, b.counterexamples)
