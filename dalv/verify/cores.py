"""Idle cores a grid lends to the solvers of the cells still running.

Owns: ``lend`` (a grid's pool initializer calls it), ``lending`` and ``borrowed`` (a
solver's batch asks it for spare cores); may import: the standard library.

A local grid runs one cell per process, ``jobs`` at a time. Near its end fewer cells
are left than processes, and the cores of the finished ones sit idle while the last
cells search for counterexamples. The grid (``dalv.reproduce.run_cells``) keeps one
token per idle core (of the ``min(jobs, cpu count)`` it may use) in a semaphore that
its worker processes share; a batch of
exact-solver searches (``MilpVerifier`` with ``workers=1``, ``MarabouVerifier`` with
``workers=None``, which outside a grid takes every core; the MILP only while its
process uses one torch thread, as its forked workers do) takes what tokens it can
without waiting, runs that many extra solver processes, and gives them back when the
batch ends.

Lent cores change how fast a cell runs, never what it computes: each input's search
runs alone with its own seed and work budget (``milp_search.solve_task``,
``marabou_worker.solve_task``), so its answer does not depend on which process runs it
or on how many run beside it. Only a
``Budget.seconds`` safety net can end a search differently, and a row it cuts is
flagged whatever the number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["lend", "borrowed", "lending"]

_SPARE: Any = None  # the grid's semaphore of idle cores (None: not in a grid)


def lend(spare: Any) -> None:
    """Make ``spare`` (a ``multiprocessing`` semaphore whose value is the grid's idle
    cores) the pool this process borrows from; ``None`` stops borrowing."""
    global _SPARE
    _SPARE = spare


def lending() -> bool:
    """Whether this process runs in a grid that lends its idle cores."""
    return _SPARE is not None


@contextmanager
def borrowed(want: int) -> Iterator[int]:
    """Borrow up to ``want`` idle cores for the block, without waiting.

    Yields:
        How many were borrowed (0 outside a grid, or when none is idle); they are
        given back when the block ends, also on error.
    """
    spare, n = _SPARE, 0
    if spare is not None:
        while n < want and spare.acquire(block=False):
            n += 1
    try:
        yield n
    finally:
        for _ in range(n):
            spare.release()
