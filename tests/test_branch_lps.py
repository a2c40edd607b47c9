"""``branch_lps``: the LP branch and bound that decides the guided MILP first.

Its "infeasible" becomes a proof, so it must agree with HiGHS's MILP on every problem
the search asks; checked here on the problems of many random networks (1-3 hidden
layers, with exclusions, both separations and both targets), collected from searches
that run with ``lp_branch=0`` and no region LPs (so that feasible queries reach the
MILP too), every MILP they ask, guided or not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("highspy")

import dalv.verify.milp_search as ms  # noqa: E402
from dalv.verify import Budget, MilpVerifier, Property, Schedule  # noqa: E402
from dalv.verify.milp_solve import branch_lps, solve_milp  # noqa: E402


def random_net(gen: torch.Generator, d: int, depth: int, width: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    n_in = d
    for _ in range(depth):
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, 3))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.8)
    return net


@pytest.fixture(scope="module")
def asked():
    """The MILPs the search asks on 24 random networks (guided loose-first ones and
    the others), with HiGHS's decided answers; collected once for this file."""
    out = []
    real = ms.solve_milp

    def spy(problem, engine, **kw):
        ans = real(problem, engine, **kw)
        if ans.status in ("feasible", "infeasible"):
            out.append((problem, ans))
        return ans

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ms, "solve_milp", spy)
        _search_random_nets(24)
    return out


def _search_random_nets(n_nets: int) -> None:
    gen = torch.Generator().manual_seed(11)
    for i in range(n_nets):
        d = int(torch.randint(2, 9, (1,), generator=gen))
        depth = 1 + i % 3
        net = random_net(gen, d, depth, 6 + 2 * (i % 4))
        x = torch.rand(2, d, generator=gen, dtype=torch.float64)
        prop = Property(
            target=("runner_up", "any")[i % 2],
            separation=("every_coord", "any_coord")[(i // 2) % 2],
            delta=0.02,
        )
        MilpVerifier(lp_branch=0, warm=False, pgd_starts=0).find_batch(
            net, x, 0.05, 4, None, prop, Budget(work=40), schedule=Schedule(0.1, 0.5)
        )


def test_branch_lps_agrees_with_the_milp(asked):
    statuses = [ans.status for _, ans in asked]
    # the sweep must hold both kinds, or it checks nothing
    assert statuses.count("infeasible") >= 5 and statuses.count("feasible") >= 5
    for problem, ans in asked:
        got = branch_lps(problem, 100_000, time_limit=None)
        assert got.status == ans.status, (got, ans)


def test_branch_lps_without_binaries_is_the_lp():
    """A problem with no binaries is one LP: its own answer."""
    from scipy import sparse  # noqa: PLC0415

    from dalv.verify.milp_encode import MilpProblem  # noqa: PLC0415

    A = sparse.csr_matrix(np.array([[1.0, 1.0]]))

    def problem(rhs: float) -> MilpProblem:
        return MilpProblem(
            A,
            np.array([-np.inf]),
            np.array([rhs]),
            np.zeros(2),
            np.ones(2),
            np.zeros(2, bool),
            2,
            0,
        )

    assert branch_lps(problem(-0.5), 10, time_limit=None).status == "infeasible"
    assert branch_lps(problem(0.5), 10, time_limit=None).status == "feasible"
    assert (
        solve_milp(problem(-0.5), "highs", node_limit=None, time_limit=None).status
        == "infeasible"
    )


def test_branch_lps_stops_at_its_lp_limit(asked):
    """At the limit it says "limit" (never a proof), and the guided MILP then runs."""
    hard = [p for p, ans in asked if ans.status == "infeasible" and p.n_binary >= 3]
    assert hard
    assert branch_lps(hard[0], 1, time_limit=None).status in ("limit", "infeasible")
    limited = [branch_lps(p, 1, time_limit=None).status for p in hard]
    assert "limit" in limited


def test_branch_lps_time_limit_covers_all_its_lps(asked, monkeypatch):
    """The seconds net is one allowance for the whole branch and bound, not per LP."""
    import dalv.verify.milp_solve as mso  # noqa: PLC0415

    hard = max(
        (p for p, a in asked if a.status == "infeasible"), key=lambda p: p.n_binary
    )
    clock = iter(range(10**6))
    monkeypatch.setattr(mso.time, "monotonic", lambda: float(next(clock)))
    got = branch_lps(hard, 10**6, time_limit=3.0)  # each clock read advances 1 s
    assert got.status == "limit" and got.nodes <= 3
