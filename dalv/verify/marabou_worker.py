"""What runs in a Marabou worker: the paper's solver loop for one input, one box.

Owns: ``MarabouOutcome``, ``solve_task`` (and the witness check it
uses); may import: numpy, the standard library, ``dalv.verify.{marabou_query, property,
verifier}`` (numpy paths only), ``maraboupy`` (inside the functions that need it).

Workers are forked from a process that has used torch, so they run numpy and Marabou
only: a task holds numpy arrays and frozen dataclasses, and the box, rounding and
acceptance rules come from the numpy paths of ``dalv.verify.box`` and
``dalv.verify.property`` (the same rules the torch code applies). The query of each
call is ``dalv.verify.marabou_query.build_query``.

As in the paper's loop, one solver call yields one counterexample, which then joins the
exclusions of the next call. Witnesses sit on the constraint boundary, so each call asks
for a slightly stricter margin and distance (``+1e-4``, ``+2e-5``) and the witness is
re-checked in float64 against the requested ones. An UNSAT answer to the stricter query
is asked again on a slightly looser one; if that is UNSAT too, the loop ends with an
*unsat claim*, which is not a proof: Marabou's own UNSAT is sometimes wrong (its
floating-point bound tightening can cut away a thin region that holds counterexamples;
loosening the margin by 1e-6 does not help, because the error is relative to the
solver's internal tolerances on every variable, amplified by the network). The caller
(``dalv.verify.marabou``) confirms each claim with an independent sound method before it
reports "unsat", and grows the box under a schedule. A solver TIMEOUT (or any other
exit code), the absolute deadline of the whole call, or the task's budget of solver
calls makes the answer "unknown"; what was found so far is kept.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dalv.verify.marabou_query import Box, build_query
from dalv.verify.network import forward_weights
from dalv.verify.property import DELTA_STRICT, LOOSE, MARGIN_STRICT, satisfies
from dalv.verify.task import SolverTask

__all__ = ["MarabouOutcome", "solve_task"]


@dataclass(frozen=True)
class MarabouOutcome:
    """Result of one input's solver loop.

    Attributes:
        witnesses: ``[m, d]`` re-checked points in the witness dtype.
        unsat_claim: The solver answered UNSAT (strict and loose query) for the box
            minus the exclusions and the witnesses found: a claim to confirm, not a
            proof.
        timed_out: The loop stopped on a timeout.
        calls: Solver calls made.
        tree_states: Search-tree states Marabou visited, summed over calls.
        rejected: Solver witnesses that failed the float64 re-check.
        seconds: Wall-clock seconds of the loop.
        last_code: Marabou's last exit code.
        notes: Human-readable remarks (logged by the caller).
        eps: The radius of the box searched.
    """

    witnesses: np.ndarray
    unsat_claim: bool
    timed_out: bool
    calls: int
    tree_states: int
    rejected: int
    seconds: float
    last_code: str = ""
    notes: list[str] = field(default_factory=list)
    eps: float = float("nan")


def _solve(ipq: Any, timeout: float | None) -> tuple[str, dict[int, float], int]:
    """One Marabou call: exit code, assignment, visited search-tree states."""
    from maraboupy import MarabouCore  # noqa: PLC0415

    options = MarabouCore.Options()
    options._verbosity = 0
    options._timeoutInSeconds = 0 if timeout is None else max(1, math.ceil(timeout))
    code, vals, stats = MarabouCore.solve(ipq, options)
    states = 0
    if code in ("sat", "unsat"):
        states = int(stats.getUnsignedAttribute(MarabouCore.NUM_VISITED_TREE_STATES))
    elif stats.hasTimedOut():
        code = "TIMEOUT"
    return code, vals, states


def _check(task: SolverTask, box: Box, w: np.ndarray, exclude: np.ndarray) -> bool:
    """Float64 re-check of one witness (``property.satisfies``: box, margin, far)."""
    w64 = w.astype(np.float64)
    y = forward_weights(task.weights, w64)
    g = np.array([min(y[task.c1] - y[t] for t in task.rivals)])
    return bool(satisfies(w64[None], g, box.lo, box.hi, exclude, task.prop)[0])


def solve_task(task: SolverTask) -> MarabouOutcome:
    """Run the paper's loop for one input and one box: one Marabou call per
    counterexample, until ``task.k`` are found, the solver claims that no more exist
    (``unsat_claim``), or a limit stops it.

    Args:
        task: The input's task.

    Returns:
        A ``MarabouOutcome``.
    """
    t0 = time.monotonic()
    deadline, prop = task.deadline, task.prop
    exclude = task.exclude.astype(np.float64)
    eps = task.eps
    box = Box.around(task.x, eps, task.witness_dtype)
    found: list[np.ndarray] = []
    counts = {"calls": 0, "states": 0}
    rejected, claim, timed_out, code = 0, False, False, ""
    notes: list[str] = []

    def attempt(margin: float, delta: float) -> tuple[str, np.ndarray | None]:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return "TIMEOUT", None
        ipq = build_query(task, box, exclude, margin, delta)
        if ipq is None:
            return "unsat", None
        if task.max_calls is not None and counts["calls"] >= task.max_calls:
            return "BUDGET", None
        counts["calls"] += 1
        c, vals, states = _solve(ipq, remaining)
        counts["states"] += states
        if c != "sat":
            return c, None
        w = np.array([vals[i] for i in range(task.x.shape[0])], dtype=np.float64)
        return c, np.clip(w.astype(task.witness_dtype), box.lo_w, box.hi_w)

    while len(found) < task.k:
        code, w = attempt(prop.margin + MARGIN_STRICT, prop.delta + DELTA_STRICT)
        if code == "unsat":
            loose = (max(prop.margin - LOOSE, 0.0), max(prop.delta - LOOSE, 0.0))
            code, w = attempt(*loose)
            if code == "unsat":
                claim = True
                break
        if code != "sat" or w is None:
            timed_out = code == "TIMEOUT"
            if code == "BUDGET":
                notes.append(f"the budget of {task.max_calls} solver calls is spent")
            break
        if not _check(task, box, w, exclude):
            rejected += 1
            notes.append("a witness failed the float64 re-check (boundary); stopped")
            break
        found.append(w)
        exclude = np.concatenate([exclude, w.astype(np.float64)[None]])
    d = task.x.shape[0]
    wit = np.stack(found) if found else np.zeros((0, d), dtype=task.witness_dtype)
    seconds = time.monotonic() - t0
    return MarabouOutcome(
        wit,
        claim,
        timed_out,
        counts["calls"],
        counts["states"],
        rejected,
        seconds,
        code,
        notes,
        eps,
    )
