"""The paper-faithful complete backend: Marabou, one solver call per counterexample.

Owns: ``MarabouVerifier`` (tasks from the torch side, the process pool, the
confirmation of Marabou's UNSAT answers, the radius schedule, the results); may import:
torch, the standard library, ``dalv.models``, ``dalv.verify.{budget, cores, network,
property, query, results, task, verifier, marabou_query, marabou_worker, bab}``,
``maraboupy`` (only to check that it is installed).

Each input becomes a ``SolverTask`` (numpy arrays only) that a worker solves with the
paper's loop on one box (``dalv.verify.marabou_worker``). ``Budget.work`` caps the
solver calls per input (the paper allows 1000); ``Budget.seconds`` is one absolute
deadline for the whole call, shared by every worker, so inputs still queued when it
passes end at once as "unknown". Every witness is re-checked once more here, in torch,
by ``dalv.verify.property.recheck``.

**Confirmed UNSAT.** Marabou's UNSAT is not trusted on its own: near the margin or on
tiny boxes its floating-point bound tightening sometimes cuts away a thin region that
holds counterexamples (``tests/test_verify_fixes.py`` has such a query: a 2-4-2 net
with weights in multiples of 0.5, where the box corner beats the margin by 1e-5).
Asking again with the margin loosened by 1e-6 does not catch it: there Marabou answers
UNSAT for every margin above about 0.99e-3, although the corner reaches 1.01e-3, an
error ten times the loosening. The error comes from the solver's internal tolerances
on every variable (on other queries its answer changes with the preprocessor's bound
tolerance), which the network amplifies by its Lipschitz constant, so no fixed
loosening of the margin bounds it. A worker's unsat claim is therefore confirmed by an
independent sound method, the ``lirpa`` branch and bound (float64 CROWN with a
rounding allowance, ``dalv.verify.bab``), on the same box, exclusions and property,
with ``confirm_work`` subdomains: if it proves the claim, the answer is "unsat" (or,
under a ``Schedule``, the box grows and the solver loop goes on); if it finds a
counterexample, that re-checked point is kept and the solver loop goes on; otherwise
the answer is "unknown". Confirmations run between rounds, batched over the inputs
that made a claim.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection as mp_connection
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dalv.models import model_dtype
from dalv.verify import cores
from dalv.verify.bab import LirpaVerifier
from dalv.verify.budget import Budget
from dalv.verify.marabou_worker import MarabouOutcome, solve_task
from dalv.verify.network import affine_relu_layers
from dalv.verify.property import recheck
from dalv.verify.query import Query
from dalv.verify.results import SearchResult, SearchStats, Status
from dalv.verify.task import SolverTask, SolverTasks
from dalv.verify.verifier import Verifier

logger = logging.getLogger(__name__)

__all__ = ["MarabouVerifier"]


@dataclass(frozen=True)
class MarabouVerifier(Verifier):
    """The paper's complete solver, Marabou: one call per counterexample.

    Inputs are solved by up to ``workers`` worker processes. Budget work is counted in
    solver calls per input (the paper allows 1000); budget seconds limit the whole
    call. Workers are forked: that starts them at once and does not re-run the
    caller's script (spawn does, which breaks scripts without a ``__main__`` guard);
    they only run numpy and Marabou, never torch. Where fork is unavailable, spawn is
    used. With one worker and no ``Budget.seconds`` the solver runs in process; with
    ``Budget.seconds`` set, every solver loop runs in a process, so that a Marabou call
    that hangs past the deadline (it does not always honour its own timeout) can be
    killed. Every UNSAT answer of the solver is confirmed by the ``lirpa`` branch and
    bound before it is reported (see the module docstring); a claim it can neither
    prove nor refute within ``confirm_work`` subdomains ends as "unknown".

    Args:
        workers: solver processes (``None``: ``min(B, cpu count)``, or, in a grid
            that runs one cell per core, one plus the idle cores it lends,
            ``dalv.verify.cores``; 1: one at a time). Their number never changes an
            answer under a work budget.
        confirm_work: subdomains the confirmation of one UNSAT answer may bound.
    """

    name: ClassVar[str] = "marabou"
    complete: ClassVar[bool] = True
    workers: int | None = None
    confirm_work: int = 20_000

    def __post_init__(self) -> None:
        if isinstance(self.confirm_work, bool) or not self.confirm_work >= 1:
            raise ValueError(f"confirm_work must be >= 1, got {self.confirm_work!r}")

    def _check_network(self, model: nn.Module) -> None:
        affine_relu_layers(model, who="the marabou backend")

    def _search(self, query: Query) -> list[SearchResult]:
        t0 = time.monotonic()
        seconds = query.budget.seconds
        deadline = None if seconds is None else t0 + seconds
        try:
            import maraboupy  # noqa: F401, PLC0415 - optional dependency
        except ImportError as err:
            hint = "the marabou backend needs maraboupy: pip install maraboupy"
            raise ImportError(hint) from err
        runs = _Runs(query, deadline, t0)
        with contextlib.ExitStack() as lent:
            if self.workers is None and cores.lending():
                # a grid already runs a cell per core: only its idle cores are free
                extra = lent.enter_context(cores.borrowed(len(runs.rows) - 1))
                n_workers = 1 + extra
            else:
                cap = (os.cpu_count() or 1) if self.workers is None else self.workers
                n_workers = max(1, min(cap, len(runs.rows)))
            return self._solve(runs, n_workers, deadline)

    def _solve(
        self, runs: _Runs, n_workers: int, deadline: float | None
    ) -> list[SearchResult]:
        with _Workers(n_workers, killable=deadline is not None) as workers:
            pending = list(range(len(runs.rows)))
            while pending:
                tasks = [runs.task(b) for b in pending]
                outcomes = workers.run(tasks, deadline)
                answered = zip(pending, outcomes, strict=True)
                claims = [b for b, out in answered if runs.absorb(b, out)]
                pending = self._confirm(runs, claims)
        return runs.results()

    def _confirm(self, runs: _Runs, claims: list[int]) -> list[int]:
        """Check the solver's unsat claims independently; return the inputs whose
        solver loop goes on (a grown box, or a refuted claim with witnesses wanted)."""
        if not claims:
            return []
        remaining = runs.time_left()
        if remaining is not None and remaining <= 0:
            for b in claims:
                runs.rows[b].stop(timed_out=True, note="no time left to confirm UNSAT")
            return []
        rows = [runs.rows[b] for b in claims]
        q = runs.query
        confirm = Query(
            q.model,
            q.xs[claims],
            torch.tensor([r.eps for r in rows], dtype=torch.float64),
            1,
            [runs.excluded(b) for b in claims],
            q.prop,
            Budget(work=self.confirm_work, seconds=remaining),
            seed=q.seed,
        )
        answers = LirpaVerifier().search(confirm)
        schedule = q.schedule
        again = []
        for b, row, ans in zip(claims, rows, answers, strict=True):
            if ans.status == "unsat":
                grow = schedule is not None and (
                    row.eps + schedule.step <= schedule.max_eps + 1e-12
                )
                if grow:
                    row.eps += schedule.step
                    again.append(b)
                else:
                    row.stop(exhausted=True)
            elif ans.status == "sat":
                row.notes.append(
                    f"Marabou answered UNSAT at eps={row.eps:g} but the independent "
                    "check found a counterexample; kept it and went on"
                )
                kept = len(row.found)
                runs.add(b, ans.counterexamples)
                if len(row.found) == kept:  # cannot happen (same re-check); be safe
                    row.stop(note="the confirmation's counterexample was rejected")
                elif row.need() > 0 and runs.budget_left(b):
                    again.append(b)
                else:
                    row.stop()
            else:
                row.stop(
                    timed_out=ans.stats.timed_out,
                    note=(
                        f"Marabou answered UNSAT at eps={row.eps:g}; the independent "
                        f"check could not confirm it within {self.confirm_work} "
                        "subdomains: unknown"
                    ),
                )
        return again


# How long past the deadline a worker may take to return before it is stopped (Marabou
# does not always honour its own timeout: some queries at the margin boundary hang).
_GRACE = 2.0


class _Workers:
    """Runs solver loops: in process, or each in a forked worker process.

    Processes are used for ``n > 1`` or whenever the call has a deadline
    (``killable``): a Marabou call does not always honour its own timeout (some queries
    at the margin boundary hang, and Marabou ignores SIGTERM there), and only a process
    can be stopped. A worker that has not returned ``_GRACE`` seconds after the
    deadline is killed; its input ends as timed out, keeping what earlier rounds found.
    At most ``n`` workers run at a time.
    """

    def __init__(self, n: int, killable: bool) -> None:
        self.n, self.use_processes = n, n > 1 or killable
        methods = multiprocessing.get_all_start_methods()
        self.ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(
        self, tasks: list[SolverTask], deadline: float | None
    ) -> list[MarabouOutcome | None]:
        """The outcome of each task (``None``: stopped at the deadline)."""
        if not self.use_processes:
            return [solve_task(t) for t in tasks]
        results: list[MarabouOutcome | None] = [None] * len(tasks)
        queue = list(range(len(tasks)))
        running: dict[int, tuple[Any, Any]] = {}
        try:
            while queue or running:
                while queue and len(running) < self.n:
                    i = queue.pop(0)
                    recv, send = self.ctx.Pipe(duplex=False)
                    proc = self.ctx.Process(
                        target=_solve_in_child, args=(send, tasks[i]), daemon=True
                    )
                    proc.start()
                    send.close()
                    running[i] = (proc, recv)
                wait = None
                if deadline is not None:
                    wait = max(0.0, deadline - time.monotonic()) + _GRACE
                conns = {id(r): i for i, (_, r) in running.items()}
                ready = mp_connection.wait([r for _, r in running.values()], wait)
                if not ready:  # past the deadline: the rest end as timed out
                    queue.clear()
                    break
                for conn in ready:
                    i = conns[id(conn)]
                    proc, recv = running.pop(i)
                    try:
                        results[i] = recv.recv()
                    except EOFError:  # the worker died
                        results[i] = None
                    recv.close()
                    proc.join()
        finally:
            for proc, recv in running.values():
                proc.kill()
                proc.join()
                recv.close()
        return results


def _solve_in_child(conn: Any, task: SolverTask) -> None:
    """A worker process: solve one task and send the outcome back."""
    try:
        conn.send(solve_task(task))
    finally:
        conn.close()


@dataclass
class _Row:
    """One input's search across rounds (solver loops and confirmations)."""

    eps: float
    k: int
    found: list[Tensor] = field(default_factory=list)
    calls: int = 0
    states: int = 0
    rejected: int = 0
    timed_out: bool = False
    exhausted: bool = False
    done: bool = False
    finished_at: float = 0.0
    notes: list[str] = field(default_factory=list)

    def need(self) -> int:
        return self.k - len(self.found)

    def stop(
        self, *, exhausted: bool = False, timed_out: bool = False, note: str = ""
    ) -> None:
        self.done, self.exhausted = True, exhausted
        self.timed_out = self.timed_out or timed_out
        self.finished_at = time.monotonic()
        if note:
            self.notes.append(note)


class _Runs:
    """The inputs of one ``find_batch``: their tasks, witnesses and results."""

    def __init__(self, query: Query, deadline: float | None, t0: float) -> None:
        self.query, self.deadline, self.t0 = query, deadline, t0
        self.tasks = SolverTasks(query, "the marabou backend", deadline)
        self.dtype = model_dtype(query.model)
        self.C = query.spec()  # once: each re-check reads its input's rows
        pairs = zip(query.eps.tolist(), query.k, strict=True)
        self.rows = [_Row(float(e), int(n)) for e, n in pairs]

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def budget_left(self, b: int) -> bool:
        work = self.query.budget.work
        return work is None or self.rows[b].calls < work

    def excluded(self, b: int) -> Tensor:
        """The given excluded points of input ``b`` and its witnesses so far."""
        found = self.rows[b].found
        given = self.query.excludes[b].to(torch.float64)  # exactly as given
        if not found:
            return given
        mine = torch.stack(found).to(torch.float64).view(-1, *given.shape[1:])
        return torch.cat([given, mine])

    def task(self, b: int) -> SolverTask:
        """The solver loop of input ``b`` on its current box (this backend grows the
        box itself, after confirming a proof)."""
        row = self.rows[b]
        return self.tasks.task(
            b,
            eps=row.eps,
            exclude=self.excluded(b),
            k=row.need(),
            calls_used=row.calls,
            grow=False,
        )

    def add(self, b: int, cand: Tensor) -> int:
        """Re-check candidates of input ``b`` (torch, float64); keep those that pass."""
        row = self.rows[b]
        q = self.query
        cand = cand.to(device=q.xs.device, dtype=self.dtype).view(-1, *q.input_shape)
        ok = recheck(
            q.model, q.xs[b], row.eps, self.C[b], cand, self.excluded(b), q.prop
        )
        row.found.extend(c.clone() for c in cand[ok][: max(row.need(), 0)])
        dropped = int((~ok).sum())
        row.rejected += dropped
        return dropped

    def absorb(self, b: int, out: MarabouOutcome | None) -> bool:
        """Take a worker's outcome; return whether it claims UNSAT (to confirm)."""
        row = self.rows[b]
        if out is None:
            note = "the solver did not return by the deadline; its worker was stopped"
            row.stop(timed_out=True, note=note)
            return False
        for note in out.notes:
            row.notes.append(note)
        row.calls += out.calls
        row.states += out.tree_states
        row.rejected += out.rejected
        dropped = self.add(b, torch.from_numpy(out.witnesses))
        if out.unsat_claim and dropped == 0 and row.need() > 0:
            return True
        row.stop(timed_out=out.timed_out)
        return False

    def results(self) -> list[SearchResult]:
        q, out = self.query, []
        for b, row in enumerate(self.rows):
            for note in row.notes:
                logger.info("marabou, input %d: %s", b, note)
            if row.found:
                cex = torch.stack(row.found).view(-1, *q.input_shape)
            else:
                cex = torch.empty(
                    0, *q.input_shape, dtype=self.dtype, device=q.xs.device
                )
            exhausted = row.exhausted and row.done
            status: Status = (
                "sat" if len(cex) else ("unsat" if exhausted else "unknown")
            )
            seconds = row.finished_at - self.t0
            stats = SearchStats(
                row.calls, row.states, seconds, row.rejected, row.timed_out
            )
            cls = (int(q.c1[b]), int(q.c2[b]))
            out.append(SearchResult(status, cex, stats, exhausted, *cls, row.eps))
        return out
