"""Idle cores a grid lends to its running cells' solvers (``dalv.verify.cores``): the
tokens are taken without waiting and given back, a grid counts its idle cores right,
and lent cores change no answer of the MILP and Marabou backends."""

import multiprocessing as mp

import pytest
import torch

from dalv import reproduce as rp
from dalv.verify import Budget, MilpVerifier, cores
from dalv.verify import milp as milp_mod


@pytest.fixture
def lent():
    """Lend a semaphore in this process for the test; stop lending afterwards."""
    made = []

    def make(n):
        spare = mp.get_context("spawn").Semaphore(n)
        cores.lend(spare)
        made.append(spare)
        return spare

    yield make
    cores.lend(None)


def _value(spare) -> int:
    n = 0
    while spare.acquire(block=False):
        n += 1
    for _ in range(n):
        spare.release()
    return n


def test_borrowed_takes_only_idle_cores_and_gives_them_back(lent):
    with cores.borrowed(3) as n:
        assert n == 0  # not in a grid: nothing to borrow
    spare = lent(2)
    assert cores.lending()
    with cores.borrowed(5) as n:
        assert n == 2 and _value(spare) == 0
        with cores.borrowed(1) as m:
            assert m == 0  # none left, and no waiting for one
    assert _value(spare) == 2
    with pytest.raises(RuntimeError), cores.borrowed(1) as n:
        assert n == 1
        raise RuntimeError("a failing batch")
    assert _value(spare) == 2  # given back on error too


class _Tokens:
    def __init__(self) -> None:
        self.n = 0

    def release(self) -> None:
        self.n += 1


@pytest.mark.parametrize(
    ("jobs", "cells", "n_cores", "start", "after_each"),
    [
        (2, 5, 2, 0, [0, 0, 0, 1, 2]),  # the last cell runs alone: one core idle
        (4, 2, 4, 2, [3, 4]),  # two processes never start
        (1, 3, 2, 0, [0, 0, 1]),
        (3, 1, 4, 2, [3]),
        (8, 2, 2, 0, [1, 2]),  # more processes asked than cores: no phantom cores
        (2, 3, 8, 0, [0, 1, 2]),  # cores the grid was not given are not lent
    ],
)
def test_a_grid_counts_its_idle_cores(jobs, cells, n_cores, start, after_each):
    tokens = _Tokens()
    idle = rp._IdleCores(tokens, jobs, cells, n_cores)
    assert idle.processes == min(jobs, cells) and tokens.n == start
    seen = []
    for _ in range(cells):
        idle.cell_done()
        seen.append(tokens.n)
    assert seen == after_each


def test_lent_cores_change_no_answer(
    lent, trained_mlp, digits, monkeypatch, one_thread
):
    """The same rows with and without three lent cores: every status, example and
    count is the same; with them, the batch ran in four processes (and with two torch
    threads here it would not borrow: its workers compute with one)."""
    used = []
    solve = milp_mod._solve
    monkeypatch.setattr(
        milp_mod, "_solve", lambda t, c, n: used.append(n) or solve(t, c, n)
    )
    xs = torch.as_tensor(digits.x_test[:6])
    args = (trained_mlp, xs, 0.08, 3)
    kw = {"budget": Budget(work=40), "seed": 5}
    alone = MilpVerifier().find_batch(*args, **kw)
    spare = lent(3)
    helped = MilpVerifier().find_batch(*args, **kw)
    assert used == [1, 4] and _value(spare) == 3
    assert sum(r.status == "sat" for r in alone) >= 2
    for a, b in zip(alone, helped, strict=True):
        assert a.status == b.status and a.eps == b.eps
        assert torch.equal(a.counterexamples, b.counterexamples)
        sa, sb = a.stats, b.stats
        assert (sa.calls, sa.subdomains, sa.proofs, sa.stop) == (
            sb.calls,
            sb.subdomains,
            sb.proofs,
            sb.stop,
        )
    # a verifier asked for its own number of processes does not borrow
    MilpVerifier(workers=2).find_batch(*args, **kw)
    assert used[-1] == 2
    torch.set_num_threads(2)
    MilpVerifier().find_batch(*args, **kw)
    assert used[-1] == 1 and _value(spare) == 3


def test_marabou_in_a_grid_borrows_instead_of_taking_every_core(lent, monkeypatch):
    """``MarabouVerifier()`` (workers=None) takes min(rows, cpu count) processes on its
    own, but in a grid only one plus the lent cores; the answers are those of one
    process."""
    pytest.importorskip("maraboupy")
    from torch import nn

    from dalv.verify import MarabouVerifier
    from dalv.verify import marabou as marabou_mod

    used = []
    solve = marabou_mod.MarabouVerifier._solve
    monkeypatch.setattr(
        marabou_mod.MarabouVerifier,
        "_solve",
        lambda self, runs, n, d: used.append(n) or solve(self, runs, n, d),
    )
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()
    xs = torch.rand(3, 2, generator=torch.Generator().manual_seed(1)).double()
    one = MarabouVerifier(workers=1).find_batch(net, xs, 0.3, 2, budget=Budget(20))
    lent(1)
    grid = MarabouVerifier().find_batch(net, xs, 0.3, 2, budget=Budget(20))
    assert used == [1, 2]
    for a, b in zip(one, grid, strict=True):
        assert a.status == b.status
        assert torch.equal(a.counterexamples, b.counterexamples)
    assert any(r.status == "sat" for r in one)


@pytest.mark.parametrize("lend", [True, False])
def test_a_grids_spawned_processes_borrow_from_its_semaphore(lend):
    """The pool run_cells uses: its spawned processes hold the grid's semaphore (or
    none, with lend=False), which starts with the cores no cell takes."""
    pool, idle = rp._local_pool(2, 1, lend)
    with pool:
        assert pool.submit(cores.lending).result(timeout=120) is lend
    assert idle.processes == 1
    assert _value(idle.spare) == min(2, mp.cpu_count()) - 1
