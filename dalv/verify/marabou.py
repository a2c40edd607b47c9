"""The paper-faithful complete backend: the property as a Marabou query, in process.

Owns: ``MarabouTask``, ``MarabouOutcome``, ``build_query``, ``solve_task``,
``marabou_search_batch``; may import: numpy, torch, ``dalv.verify.{network, bounds,
property, results}``, ``maraboupy`` (inside the functions that need it).

The query is built directly with ``maraboupy.MarabouCore`` (no ONNX round trip):

* one variable per input coordinate, bounded by ``[max(0, x - eps), min(1, x + eps)]``;
* per Linear layer, one variable per output and one equation
  ``sum_i W_ri a_i - z_r = -b_r`` (float64 weights); per ReLU, a post-activation
  variable and ``addReluConstraint(z, a)``;
* the margin ``f_c1 - f_c2 <= -margin`` as one ``Equation(LE)`` (maraboupy 2.0 takes an
  equation's type in its constructor; it has no ``setType``); for ``target="any"``, a
  disjunction over the classes ``j != c1``;
* per excluded point ``a``: with "every_coord", one disjunction per coordinate,
  ``x'_i <= a_i - delta  OR  x'_i >= a_i + delta``; with "any_coord", one disjunction
  over all coordinates and both sides. A side that the box already rules out is dropped
  (a disjunction left with one side becomes a bound; with none, the query is
  infeasible): the same set, fewer case splits.

As in the paper's loop, one solver call yields one counterexample, which then joins the
exclusions of the next call. Witnesses sit on the constraint boundary, so each call asks
for a slightly stricter margin and distance (``+1e-4``, ``+2e-5``) and the witness is
re-checked in float64 against the requested ones. An UNSAT answer to the stricter query
is confirmed on a slightly looser one before it counts as a proof. A solver TIMEOUT (or
any other exit code) makes the answer "unknown"; what was found so far is kept.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dalv.verify.network import affine_relu_layers, model_dtype
from dalv.verify.property import property_spec, recheck, winner_runner_up
from dalv.verify.results import SearchResult, SearchStats, Status

logger = logging.getLogger(__name__)

__all__ = [
    "MarabouTask",
    "MarabouOutcome",
    "build_query",
    "solve_task",
    "marabou_search_batch",
]

_MARGIN_STRICT = 1e-4
_DELTA_STRICT = 2e-5
_LOOSE = 1e-6

Weights = list[tuple[np.ndarray, np.ndarray, bool]]


@dataclass(frozen=True)
class MarabouTask:
    """Everything one input's solver loop needs, as numpy arrays (picklable, no torch).

    Attributes:
        weights: Per affine layer ``(W [n_out, n_in], b [n_out], relu)``, float64.
        x: The input, flattened, float64.
        eps: Box radius.
        witness_dtype: numpy dtype name of the witnesses (the model's dtype).
        c1: Winner class.
        targets: Classes that may beat ``c1`` (the runner-up, or all others).
        exclude: Earlier counterexamples ``[n, d]`` (float64).
        k: Counterexamples wanted.
        separation: "every_coord" or "any_coord".
        delta: Exclusion distance.
        margin: Required margin.
        timeout: Seconds for this input (``None``: no limit).
        grow_eps: Radius increment after a proof (``None``: no schedule).
        max_eps: Largest radius of the schedule.
    """

    weights: Weights
    x: np.ndarray
    eps: float
    witness_dtype: str
    c1: int
    targets: list[int]
    exclude: np.ndarray
    k: int
    separation: str
    delta: float
    margin: float
    timeout: float | None
    grow_eps: float | None = None
    max_eps: float = 1.0


@dataclass(frozen=True)
class _Box:
    """A clipped box: exact float64 corners and inward-rounded witness-dtype corners."""

    lo: np.ndarray
    hi: np.ndarray
    lo_w: np.ndarray
    hi_w: np.ndarray

    @classmethod
    def around(cls, x: np.ndarray, eps: float, dtype: str) -> _Box:
        lo = np.maximum(x - eps, 0.0)
        hi = np.minimum(x + eps, 1.0)
        lo_w, hi_w = lo.astype(dtype), hi.astype(dtype)
        lo_w = np.where(lo_w < lo, np.nextafter(lo_w, np.inf, dtype=lo_w.dtype), lo_w)
        hi_w = np.where(hi_w > hi, np.nextafter(hi_w, -np.inf, dtype=hi_w.dtype), hi_w)
        return cls(lo, hi, lo_w, hi_w)


@dataclass(frozen=True)
class MarabouOutcome:
    """Result of one input's solver loop.

    Attributes:
        witnesses: ``[m, d]`` re-checked points in the witness dtype.
        exhausted: The last call proved that no further counterexample exists.
        timed_out: The loop stopped on a timeout.
        calls: Solver calls made.
        tree_states: Search-tree states Marabou visited, summed over calls.
        rejected: Solver witnesses that failed the float64 re-check.
        seconds: Wall-clock seconds of the loop.
        last_code: Marabou's last exit code.
        notes: Human-readable remarks (logged by the caller).
        eps: The radius of the last box searched.
    """

    witnesses: np.ndarray
    exhausted: bool
    timed_out: bool
    calls: int
    tree_states: int
    rejected: int
    seconds: float
    last_code: str = ""
    notes: list[str] = field(default_factory=list)
    eps: float = float("nan")


def _forward(weights: Weights, x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float64)
    for w, b, relu in weights:
        h = h @ w.T + b
        if relu:
            h = np.maximum(h, 0.0)
    return h


def _exclusion_cases(
    task: MarabouTask, box: _Box, exclude: np.ndarray, delta: float
) -> tuple[np.ndarray, np.ndarray, list[list[tuple[int, float, int]]]] | None:
    """Tightened input bounds, and the exclusion disjunctions as ``(var, bound, side)``.

    Returns ``None`` when the box minus the exclusions is empty.
    """
    lo, hi = box.lo.copy(), box.hi.copy()
    disjunctions: list[list[tuple[int, float, int]]] = []
    for a in exclude:
        below, above = a - delta, a + delta
        left_ok, right_ok = below >= lo, above <= hi
        if task.separation == "every_coord":
            touches = (above > lo) & (below < hi)
            if bool((touches & ~left_ok & ~right_ok).any()):
                return None
            only_left = touches & left_ok & ~right_ok
            only_right = touches & right_ok & ~left_ok
            hi[only_left] = np.minimum(hi[only_left], below[only_left])
            lo[only_right] = np.maximum(lo[only_right], above[only_right])
            for i in np.nonzero(touches & left_ok & right_ok)[0]:
                disjunctions.append(
                    [(int(i), float(below[i]), -1), (int(i), float(above[i]), 1)]
                )
        else:
            if bool(((above <= lo) | (below >= hi)).any()):
                continue  # some coordinate of the box lies wholly outside this ball
            cases = [(int(i), float(below[i]), -1) for i in np.nonzero(left_ok)[0]]
            cases += [(int(i), float(above[i]), 1) for i in np.nonzero(right_ok)[0]]
            if not cases:
                return None
            disjunctions.append(cases)
    if bool((lo > hi).any()):
        return None
    return lo, hi, disjunctions


def build_query(
    task: MarabouTask, box: _Box, exclude: np.ndarray, margin: float, delta: float
) -> Any:
    """Build the Marabou ``InputQuery`` of one call.

    Args:
        task: The input's task.
        box: The current box.
        exclude: Points to stay away from (the task's and those found so far), [n, d].
        margin: Margin to ask for.
        delta: Exclusion distance to ask for.

    Returns:
        A ``MarabouCore.InputQuery``, or ``None`` when the box minus the exclusions is
        empty (trivially UNSAT).
    """
    from maraboupy import MarabouCore  # noqa: PLC0415 - optional dependency

    cut = _exclusion_cases(task, box, exclude, delta)
    if cut is None:
        return None
    lo, hi, disjunctions = cut
    d = lo.shape[0]
    n_vars = d + sum(w.shape[0] * (2 if relu else 1) for w, _, relu in task.weights)
    ipq = MarabouCore.InputQuery()
    ipq.setNumberOfVariables(n_vars)
    for i in range(d):
        ipq.markInputVariable(i, i)
        ipq.setLowerBound(i, float(lo[i]))
        ipq.setUpperBound(i, float(hi[i]))
    prev, nxt = list(range(d)), d
    for w, b, relu in task.weights:
        z = list(range(nxt, nxt + w.shape[0]))
        nxt += w.shape[0]
        for r, zr in enumerate(z):
            eq = MarabouCore.Equation(MarabouCore.Equation.EQ)
            for i in np.nonzero(w[r])[0]:
                eq.addAddend(float(w[r, i]), prev[i])
            eq.addAddend(-1.0, zr)
            eq.setScalar(-float(b[r]))
            ipq.addEquation(eq)
        if not relu:
            prev = z
            continue
        post = list(range(nxt, nxt + w.shape[0]))
        nxt += w.shape[0]
        for zr, ar in zip(z, post):
            MarabouCore.addReluConstraint(ipq, zr, ar)
            ipq.setLowerBound(ar, 0.0)
        prev = post
    for j, var in enumerate(prev):
        ipq.markOutputVariable(var, j)

    def margin_eq(t: int) -> Any:
        eq = MarabouCore.Equation(MarabouCore.Equation.LE)
        eq.addAddend(1.0, prev[task.c1])
        eq.addAddend(-1.0, prev[t])
        eq.setScalar(-margin)
        return eq

    if len(task.targets) == 1:
        ipq.addEquation(margin_eq(task.targets[0]))
    else:
        cases = [[margin_eq(t)] for t in task.targets]
        MarabouCore.addDisjunctionConstraint(ipq, cases)
    le, ge = MarabouCore.Equation.LE, MarabouCore.Equation.GE
    for cases in disjunctions:
        disjuncts = []
        for var, bound, side in cases:
            eq = MarabouCore.Equation(ge if side > 0 else le)
            eq.addAddend(1.0, var)
            eq.setScalar(bound)
            disjuncts.append([eq])
        MarabouCore.addDisjunctionConstraint(ipq, disjuncts)
    return ipq


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


def _check(task: MarabouTask, box: _Box, w: np.ndarray, exclude: np.ndarray) -> bool:
    """Float64 re-check of one witness: box, margin, separation."""
    w64 = w.astype(np.float64)
    if bool((w64 < box.lo).any() or (w64 > box.hi).any()):
        return False
    y = _forward(task.weights, w64)
    if not min(y[task.c1] - y[t] for t in task.targets) <= -task.margin:
        return False
    if exclude.shape[0]:
        far = np.abs(w64[None, :] - exclude) >= task.delta
        per = far.all(-1) if task.separation == "every_coord" else far.any(-1)
        return bool(per.all())
    return True


def solve_task(task: MarabouTask) -> MarabouOutcome:
    """Run the paper's loop for one input: one Marabou call per counterexample.

    With ``task.grow_eps`` set, a proof that the box holds no more counterexamples
    moves the search to the box of radius ``eps + grow_eps`` (up to ``max_eps``).

    Args:
        task: The input's task.

    Returns:
        A ``MarabouOutcome``.
    """
    t0 = time.monotonic()
    deadline = None if task.timeout is None else t0 + task.timeout
    exclude = task.exclude.astype(np.float64)
    eps = task.eps
    box = _Box.around(task.x, eps, task.witness_dtype)
    found: list[np.ndarray] = []
    counts = {"calls": 0, "states": 0}
    rejected, exhausted, timed_out, code = 0, False, False, ""
    notes: list[str] = []

    def attempt(margin: float, delta: float) -> tuple[str, np.ndarray | None]:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return "TIMEOUT", None
        ipq = build_query(task, box, exclude, margin, delta)
        if ipq is None:
            return "unsat", None
        counts["calls"] += 1
        c, vals, states = _solve(ipq, remaining)
        counts["states"] += states
        if c != "sat":
            return c, None
        w = np.array([vals[i] for i in range(task.x.shape[0])], dtype=np.float64)
        return c, np.clip(w.astype(task.witness_dtype), box.lo_w, box.hi_w)

    while len(found) < task.k:
        code, w = attempt(task.margin + _MARGIN_STRICT, task.delta + _DELTA_STRICT)
        if code == "unsat":
            loose = (max(task.margin - _LOOSE, 0.0), max(task.delta - _LOOSE, 0.0))
            code, w = attempt(*loose)
            if code == "unsat":
                grow = task.grow_eps
                if grow is not None and eps + grow <= task.max_eps + 1e-12:
                    eps += grow
                    box = _Box.around(task.x, eps, task.witness_dtype)
                    continue
                exhausted = True
                break
        if code != "sat" or w is None:
            timed_out = code == "TIMEOUT"
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
        exhausted,
        timed_out,
        counts["calls"],
        counts["states"],
        rejected,
        seconds,
        code,
        notes,
        eps,
    )


def _tasks(
    model: nn.Module,
    xs: Tensor,
    eps: Tensor,
    k: Tensor,
    excludes: list[Tensor],
    target: str,
    separation: str,
    delta: float,
    margin: float,
    timeout: float | None,
    grow_eps: float | None = None,
    max_eps: float = 1.0,
) -> tuple[list[MarabouTask], Tensor, Tensor, Tensor]:
    """One ``MarabouTask`` per input, plus ``c1``, ``c2`` and the spec matrices."""
    layers = affine_relu_layers(model, dtype=torch.float64, who="the marabou backend")
    weights = [(l.weight.cpu().numpy(), l.bias.cpu().numpy(), l.relu) for l in layers]
    with torch.no_grad():
        logits = model(xs)
    n_classes = logits.shape[-1]
    c1, c2 = winner_runner_up(logits)
    C = property_spec(c1, c2, target, n_classes)  # type: ignore[arg-type]
    dtype = str(torch.empty(0, dtype=model_dtype(model)).numpy().dtype)
    tasks = []
    for b in range(xs.shape[0]):
        w1 = int(c1[b])
        others = [j for j in range(n_classes) if j != w1]
        targets = [int(c2[b])] if target == "runner_up" else others
        task = MarabouTask(
            weights=weights,
            x=xs[b].flatten().to(torch.float64).cpu().numpy(),
            eps=float(eps[b]),
            witness_dtype=dtype,
            c1=w1,
            targets=targets,
            exclude=excludes[b].flatten(1).to(torch.float64).cpu().numpy(),
            k=int(k[b]),
            separation=separation,
            delta=delta,
            margin=margin,
            timeout=timeout,
            grow_eps=grow_eps,
            max_eps=max_eps,
        )
        tasks.append(task)
    return tasks, c1, c2, C


def marabou_search_batch(
    model: nn.Module,
    xs: Tensor,
    eps: Tensor,
    k: Tensor,
    excludes: list[Tensor],
    *,
    target: str,
    separation: str,
    delta: float,
    margin: float,
    timeout: float | None,
    workers: int | None,
    grow_eps: float | None = None,
    max_eps: float = 1.0,
) -> list[SearchResult]:
    """Solve many inputs' queries with Marabou, in a process pool when ``workers > 1``.

    The arguments are those of ``find_counterexamples_batch`` (already validated);
    ``timeout`` is per input. Workers are forked: that starts them at once and does not
    re-run the caller's script (spawn does, which breaks scripts without a ``__main__``
    guard); they only run numpy and Marabou, never torch. Where fork is unavailable,
    spawn is used.

    Returns:
        One ``SearchResult`` per input.

    Shapes:
        xs: ``[B, *input_shape]``; eps: ``[B]``; excludes[b]: ``[n_b, *input_shape]``.
    """
    try:
        import maraboupy  # noqa: F401, PLC0415
    except ImportError as err:
        hint = "the marabou backend needs maraboupy: pip install maraboupy"
        raise ImportError(hint) from err
    tasks, c1, c2, C = _tasks(
        model,
        xs,
        eps,
        k,
        excludes,
        target,
        separation,
        delta,
        margin,
        timeout,
        grow_eps,
        max_eps,
    )
    cap = (os.cpu_count() or 1) if workers is None else workers
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
        ok = recheck(
            model,
            xs[b],
            out.eps,
            C[b],
            cand,
            excludes[b],
            separation=separation,
            delta=delta,
            margin=margin,  # type: ignore[arg-type]
        )
        dropped = int((~ok).sum())
        cex = cand[ok]
        exhausted = out.exhausted and dropped == 0
        status: Status = "sat" if len(cex) else ("unsat" if exhausted else "unknown")
        rejected = out.rejected + dropped
        stats = SearchStats(
            out.calls, out.tree_states, out.seconds, rejected, out.timed_out
        )
        cls = (int(c1[b]), int(c2[b]))
        res = SearchResult(status, cex, stats, exhausted, *cls, out.eps)
        results.append(res)
    return results
