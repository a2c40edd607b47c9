"""The paper-faithful complete backend: Marabou, one solver call per counterexample.

Owns: ``MarabouVerifier`` (tasks from the torch side, the process pool, the results);
may import: torch, the standard library, ``dalv.models``, ``dalv.verify.{network,
property, results, verifier, marabou_worker}``, ``maraboupy`` (only to check that it is
installed).

Each input becomes a ``MarabouTask`` (numpy arrays only) that a worker solves with the
paper's loop (``dalv.verify.marabou_worker``). ``Budget.work`` caps the solver calls per
input (the paper allows 1000); ``Budget.seconds`` is one absolute deadline for the
whole call, shared by every worker, so inputs still queued when it passes end at once
as "unknown". Every witness is re-checked once more here, in torch, by
``dalv.verify.property.recheck``.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from dalv.models import model_dtype
from dalv.verify.marabou_query import MarabouTask
from dalv.verify.marabou_worker import solve_task
from dalv.verify.network import affine_relu_layers
from dalv.verify.property import Property, recheck, winner_runner_up
from dalv.verify.results import SearchResult, SearchStats, Status
from dalv.verify.verifier import Budget, Schedule, Verifier

logger = logging.getLogger(__name__)

__all__ = ["MarabouVerifier"]


@dataclass(frozen=True)
class MarabouVerifier(Verifier):
    """The paper's complete solver, Marabou, in process: one call per counterexample.

    Inputs are solved in a pool of ``workers`` processes. Budget work is counted in
    solver calls per input (the paper allows 1000); budget seconds limit the whole
    call. Workers are forked: that starts them at once and does not re-run the
    caller's script (spawn does, which breaks scripts without a ``__main__`` guard);
    they only run numpy and Marabou, never torch. Where fork is unavailable, spawn is
    used.

    Args:
        workers: solver processes (``None``: ``min(B, cpu count)``; 1: in process).
    """

    name: ClassVar[str] = "marabou"
    complete: ClassVar[bool] = True
    workers: int | None = None

    def _check_network(self, model: nn.Module) -> None:
        affine_relu_layers(model, who="the marabou backend")

    def _search(self, model, xs, eps, k, excludes, prop, budget, schedule, seed):
        deadline = None
        if budget.seconds is not None:
            deadline = time.monotonic() + budget.seconds
        try:
            import maraboupy  # noqa: F401, PLC0415 - optional dependency
        except ImportError as err:
            hint = "the marabou backend needs maraboupy: pip install maraboupy"
            raise ImportError(hint) from err
        tasks, c1, c2, C = _tasks(
            model, xs, eps, k, excludes, prop, budget, schedule, deadline
        )
        cap = (os.cpu_count() or 1) if self.workers is None else self.workers
        n_workers = max(1, min(cap, len(tasks)))
        if n_workers == 1:
            outcomes = [solve_task(t) for t in tasks]
        else:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with cf.ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
                outcomes = list(pool.map(solve_task, tasks))
        results = []
        dtype = model_dtype(model)
        for b, out in enumerate(outcomes):
            for note in out.notes:
                logger.info("marabou, input %d: %s", b, note)
            cand = torch.from_numpy(out.witnesses).to(device=xs.device, dtype=dtype)
            cand = cand.view(-1, *xs.shape[1:])
            ok = recheck(model, xs[b], out.eps, C[b], cand, excludes[b], prop)
            dropped = int((~ok).sum())
            cex = cand[ok]
            exhausted = out.exhausted and dropped == 0
            status: Status = (
                "sat" if len(cex) else ("unsat" if exhausted else "unknown")
            )
            rejected = out.rejected + dropped
            stats = SearchStats(
                out.calls, out.tree_states, out.seconds, rejected, out.timed_out
            )
            cls = (int(c1[b]), int(c2[b]))
            results.append(SearchResult(status, cex, stats, exhausted, *cls, out.eps))
        return results


def _tasks(
    model: nn.Module,
    xs: Tensor,
    eps: Tensor,
    k: list[int],
    excludes: list[Tensor],
    prop: Property,
    budget: Budget,
    schedule: Schedule | None,
    deadline: float | None,
) -> tuple[list[MarabouTask], Tensor, Tensor, Tensor]:
    """One ``MarabouTask`` per input, plus ``c1``, ``c2`` and the spec matrices.

    Args:
        model, xs, eps, k, excludes, prop, schedule: As ``Verifier._search`` gets them.
        budget: Its ``work`` is each task's number of solver calls.
        deadline: The absolute ``time.monotonic()`` end of the whole call, or ``None``.
    """
    layers = affine_relu_layers(model, dtype=torch.float64, who="the marabou backend")
    weights = [(a.weight.cpu().numpy(), a.bias.cpu().numpy(), a.relu) for a in layers]
    with torch.no_grad():
        logits = model(xs)
    n_classes = logits.shape[-1]
    c1, c2 = winner_runner_up(logits)
    C = prop.spec(c1, c2, n_classes)
    dtype = str(torch.empty(0, dtype=model_dtype(model)).numpy().dtype)
    tasks = []
    for b in range(xs.shape[0]):
        task = MarabouTask(
            weights=weights,
            x=xs[b].flatten().to(torch.float64).cpu().numpy(),
            eps=float(eps[b]),
            witness_dtype=dtype,
            c1=int(c1[b]),
            rivals=prop.rivals(int(c1[b]), int(c2[b]), n_classes),
            exclude=excludes[b].flatten(1).to(torch.float64).cpu().numpy(),
            k=int(k[b]),
            prop=prop,
            deadline=deadline,
            max_calls=budget.work,
            schedule=schedule,
        )
        tasks.append(task)
    return tasks, c1, c2, C
