"""The one projected descent on the property margin, for numpy arrays and torch tensors.

Owns: ``margin_pgd``; may import: numpy, torch, the standard library.

Every search that looks for a counterexample near a point runs the same loop: project
onto the box minus the exclusions, evaluate the margin ``s . f(y)`` and its gradient,
keep each start's best feasible point, step against the gradient's sign. The MILP
backend runs it in numpy on its float64 layers (``milp_search``), the branch and bound
in torch on the model (``bab.falsify`` from random starts, ``bab.accept`` to repair a
projected candidate). They differ only in the arguments: the step schedule, whether a
start that has reached its target stops moving, and a clock for interactive use.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["margin_pgd", "decaying_step"]

Array = Any
"""A numpy array or a torch tensor."""


def decaying_step(width: Array, steps: int) -> Callable[[int], Array]:
    """The falsifiers' schedule: ``(0.25 (1 - t / steps) + 0.02) * width`` at step t
    (a quarter of the box at first, a fiftieth at the end)."""
    return lambda t: (0.25 * (1 - t / steps) + 0.02) * width


def margin_pgd(
    y: Array,
    project: Callable[[Array], tuple[Array, Array]],
    margin: Callable[[Array, bool], tuple[Array, Array | None]],
    steps: int,
    step: Callable[[int], Array],
    target: float,
    freeze: bool,
    stop: Callable[[], bool] | None = None,
) -> tuple[Array, Array]:
    """Sign-gradient descent on the margin, projected: each start's best feasible point.

    Args:
        y: Starts ``[m, d]`` (numpy or torch; the result has the same type).
        project: ``y -> (projected y, feasible [m])``.
        margin: ``(y, grad) -> (margin [m], gradient [m, d] or None)``; the gradient
            is asked for on every step but the last.
        steps: Gradient steps (``steps + 1`` evaluations at most).
        step: The step's size at step t (a number or ``[d]`` / ``[m, d]``).
        target: A start is done once its best margin is at or below this; the loop
            ends when all are done.
        freeze: Whether a done start stops moving (so witnesses stay near their,
            diverse, starts) instead of running on to lower margins.
        stop: Asked after each step; ``True`` ends the loop (a clock's safety net).

    Returns:
        ``(best [m, d], best margin [m])``; ``inf`` for a start never feasible.
    """
    xp = torch if isinstance(y, Tensor) else np
    best = y.clone() if xp is torch else y.copy()
    best_g = None
    done = None
    for t in range(steps + 1):
        y, feasible = project(y)
        g, dg = margin(y, t < steps)
        if best_g is None:
            best_g = xp.full_like(g, math.inf)
        better = feasible & (g < best_g)
        if freeze and done is not None:
            better = better & ~done
        best[better], best_g[better] = y[better], g[better]
        done = best_g <= target
        if t == steps or bool(done.all()) or (stop is not None and stop()):
            break
        move = step(t) * xp.sign(dg)
        y = xp.where(done[:, None], y, y - move) if freeze else y - move
    return best, best_g
