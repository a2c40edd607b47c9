"""The exact solver in the paper's MILP mode: ``MilpVerifier``.

Owns: ``MilpVerifier`` (tasks from the torch side, the optional process pool, the
results); may import: torch, the standard library, ``dalv.models``, ``dalv.verify.{
cores, network, property, query, results, task, verifier, milp_search, milp_solve}``.

The reference code asks Marabou with ``--milp``: a mixed-integer encoding of the query
solved by Gurobi, one call per counterexample (protocol §4.4). This backend asks the
same question of HiGHS (or Gurobi when ``gurobipy`` is installed and licensed), and
answers most queries with a linear program: the MILP with every binary fixed to the
side a candidate point lies on (``dalv.verify.milp_search``). Every returned point is a
vertex the solver found for the exact encoding or a restriction of it, never a
candidate; every "unsat" is a proof (by the box, CROWN's bound, or the solver's
infeasibility certificate of a slightly looser query).

Example:
    >>> from dalv.verify import MilpVerifier
    >>> res = MilpVerifier().find(model, x, 0.06, 9, exclude=x_fgsm)   # doctest: +SKIP
    >>> res.status, res.stats.solver_examples, res.stats.proofs         # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from dalv.models import model_dtype
from dalv.verify import cores
from dalv.verify.milp_search import MilpConfig, MilpOutcome, solve_task, solve_tasks
from dalv.verify.milp_solve import ENGINES, engine_name
from dalv.verify.network import affine_relu_layers
from dalv.verify.property import recheck
from dalv.verify.query import Query
from dalv.verify.results import SearchResult, Status
from dalv.verify.task import SolverTask, SolverTasks
from dalv.verify.verifier import Verifier

logger = logging.getLogger(__name__)

__all__ = ["MilpVerifier"]


@dataclass(frozen=True)
class MilpVerifier(Verifier):
    """The paper's query as a MILP (HiGHS; Gurobi optional), one call per example.

    Budget work counts solver calls per input as for Marabou (one per query, whether
    its region LPs or its MILP answer it, and one more for the looser query that
    confirms a proof; the paper allows 1000 per point); budget seconds limit the
    whole call.

    Args:
        solver: ``"auto"`` (highspy if installed, else SciPy's HiGHS), ``"highs"``,
            ``"scipy"`` or ``"gurobi"``.
        node_limit: branch-and-bound nodes per MILP call (``None``: no limit); a MILP
            that reaches it ends the input as "unknown".
        warm: try the region of the last counterexample (moved out of its new
            exclusion) and of ``x`` before anything else.
        pgd_starts: seeded PGD starts whose regions are tried next (0: none).
        pgd_steps: PGD steps per start.
        bound_proofs: try CROWN's margin bound before the solver to prove a box empty.
        boundary: ask each region LP for a point on the margin's boundary first (the
            margin row as an equality, so the example sits at margin + 1e-4, as the
            native Marabou engine's do), then for any point of the region.
        loose_first: once the region LPs fail, ask the looser query's MILP first,
            so that one MILP (not two) proves a box empty; witnesses stay the
            stricter query's.
        guide: that first MILP minimises the margin and stops at its first feasible
            point (far fewer nodes to prove a box empty); only its "infeasible" is
            used, so witnesses are unchanged.
        lp_branch: with ``guide`` and HiGHS, that MILP is first decided by a branch
            and bound on its LP relaxation (no cuts; ``milp_solve.branch_lps``)
            within this many LPs (0: never); only at that limit does HiGHS's MILP
            run. Work, not time: a seed still fixes the answer.
        workers: processes (1: in process, the default, for experiment grids that
            already run one process per core, plus any idle cores such a grid lends
            near its end, ``dalv.verify.cores``; ``None``: ``min(B, cpu count)``).
            Workers are forked and use one torch thread. Cores are borrowed only
            while this process uses one torch thread too (a grid's cells do), so the
            bounds' float sums are the in-process ones; without ``Budget.seconds``
            the number of workers then never changes an answer.
    """

    name: ClassVar[str] = "milp"
    complete: ClassVar[bool] = True
    supports_conv: ClassVar[bool] = False
    solver: str = "auto"
    # the search's knobs: their defaults are MilpConfig's (one home)
    node_limit: int | None = MilpConfig.node_limit
    warm: bool = MilpConfig.warm
    pgd_starts: int = MilpConfig.pgd_starts
    pgd_steps: int = MilpConfig.pgd_steps
    bound_proofs: bool = MilpConfig.bound_proofs
    boundary: bool = MilpConfig.boundary
    loose_first: bool = MilpConfig.loose_first
    guide: bool = MilpConfig.guide
    lp_branch: int = MilpConfig.lp_branch
    workers: int | None = 1

    def __post_init__(self) -> None:
        if self.solver not in ENGINES:
            raise ValueError(f"solver must be one of {ENGINES}, got {self.solver!r}")
        if self.node_limit is not None and self.node_limit < 1:
            raise ValueError(f"node_limit must be >= 1 or None, got {self.node_limit}")
        if self.pgd_starts < 0 or self.pgd_steps < 0:
            raise ValueError("pgd_starts and pgd_steps must be >= 0")
        if isinstance(self.lp_branch, bool) or self.lp_branch < 0:
            raise ValueError(f"lp_branch must be >= 0, got {self.lp_branch!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1 or None, got {self.workers}")

    def _check_network(self, model: nn.Module) -> None:
        affine_relu_layers(model, who="the milp backend")

    def config(self) -> MilpConfig:
        """The knobs a worker needs (the solver resolved): every ``MilpConfig`` field
        but ``engine`` is this verifier's field of the same name."""
        knobs = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(MilpConfig)
            if f.name != "engine"
        }
        return MilpConfig(engine_name(self.solver), **knobs)

    def _search(self, query: Query) -> list[SearchResult]:
        deadline = None
        if query.budget.seconds is not None:
            deadline = time.monotonic() + query.budget.seconds
        cfg = self.config()
        tasks = SolverTasks(query, "the milp backend", deadline).all()
        cap = (os.cpu_count() or 1) if self.workers is None else self.workers
        n_workers = max(1, min(cap, len(tasks)))
        # borrow only where the workers compute as this process does (one thread)
        lent = self.workers == 1 and torch.get_num_threads() == 1
        with cores.borrowed(len(tasks) - 1 if lent else 0) as extra:
            outcomes = _solve(tasks, cfg, n_workers + extra)
        C = query.spec()
        return [_result(query, b, out, C[b]) for b, out in enumerate(outcomes)]


def _solve(
    tasks: list[SolverTask], cfg: MilpConfig, n_workers: int
) -> list[MilpOutcome]:
    """Each task's outcome: in this process, or in ``n_workers`` forked processes
    (the same answers without a time limit: each input's search runs alone)."""
    if n_workers == 1:
        return solve_tasks(tasks, cfg)
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with cf.ProcessPoolExecutor(
        max_workers=n_workers, mp_context=ctx, initializer=_one_thread
    ) as pool:
        return list(pool.map(solve_task, tasks, [cfg] * len(tasks)))


def _one_thread() -> None:
    # (more threads in a forked child can deadlock: the parent's OpenMP pool is
    # not fork-safe)
    torch.set_num_threads(1)


def _result(query: Query, b: int, out: MilpOutcome, C: torch.Tensor) -> SearchResult:
    """The torch side's last re-check of input ``b``'s witnesses (``C``: its spec
    rows), and its result."""
    for note in out.notes:
        logger.info("milp: %s", note)
    x = query.xs[b]
    dtype = model_dtype(query.model)
    cand = torch.from_numpy(out.witnesses).to(device=x.device, dtype=dtype)
    cand = cand.view(-1, *x.shape)
    ok = recheck(query.model, x, out.eps, C, cand, query.excludes[b], query.prop)
    dropped = int((~ok).sum())
    cex = cand[ok]
    exhausted = out.exhausted and dropped == 0
    status: Status = "sat" if len(cex) else ("unsat" if exhausted else "unknown")
    kept = tuple(
        e for e, keep in zip(out.stats.example_eps, ok.tolist(), strict=True) if keep
    )
    stats = dataclasses.replace(
        out.stats, rejected=out.stats.rejected + dropped, example_eps=kept
    )
    c1, c2 = int(query.c1[b]), int(query.c2[b])
    return SearchResult(status, cex, stats, exhausted, c1, c2, out.eps)
