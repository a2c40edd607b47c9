"""The Marabou input query of one solver call, built directly with ``MarabouCore``.

Owns: ``Box`` (the clipped box in numpy, with inward-rounded witness corners),
``build_query`` and the exclusion disjunctions; may import: numpy, the standard
library, ``dalv.verify.{box, geometry, task}``, ``maraboupy`` (inside ``build_query``).

The query (no ONNX round trip):

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
  infeasible), to a fixpoint (``dalv.verify.geometry.cut_box``, the MILP's rules): the
  same set, fewer case splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dalv.verify.box import clip_box, round_down, round_up
from dalv.verify.geometry import cut_box
from dalv.verify.task import SolverTask

__all__ = ["Box", "build_query"]


@dataclass(frozen=True)
class Box:
    """A clipped box: exact float64 corners and inward-rounded witness-dtype corners."""

    lo: np.ndarray
    hi: np.ndarray
    lo_w: np.ndarray
    hi_w: np.ndarray

    @classmethod
    def around(cls, x: np.ndarray, eps: float, dtype: str) -> Box:
        lo, hi = clip_box(x, eps)
        return cls(lo, hi, round_up(lo, dtype), round_down(hi, dtype))


def _exclusion_cases(
    task: SolverTask, box: Box, exclude: np.ndarray, delta: float
) -> tuple[np.ndarray, np.ndarray, list[list[tuple[int, float, int]]]] | None:
    """Tightened input bounds, and the exclusion disjunctions as ``(var, bound, side)``:
    ``geometry.cut_box`` (the MILP's rules, to a fixpoint) in Marabou's terms.

    Returns ``None`` when the box minus the exclusions is empty.
    """
    cut = cut_box(box.lo, box.hi, exclude, delta, task.prop.separation)
    if cut is None:
        return None
    coord, below, above = cut.pairs
    disjunctions = [
        [(int(i), float(lo_side), -1), (int(i), float(hi_side), 1)]
        for i, lo_side, hi_side in zip(coord, below, above, strict=True)
    ]
    for coord, bound, side in cut.balls:
        disjunctions.append(
            [
                (int(i), float(v), int(t))
                for i, v, t in zip(coord, bound, side, strict=True)
            ]
        )
    return cut.lo, cut.hi, disjunctions


def build_query(
    task: SolverTask, box: Box, exclude: np.ndarray, margin: float, delta: float
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
        for zr, ar in zip(z, post, strict=True):
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

    if len(task.rivals) == 1:
        ipq.addEquation(margin_eq(task.rivals[0]))
    else:
        cases = [[margin_eq(t)] for t in task.rivals]
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
