"""The paper's counterexample property (spec section 6.4), its re-check and projection.

Owns: ``Target``, ``Separation``, ``winner_runner_up``, ``property_spec``,
``separated``, ``recheck``, ``project_feasible``; may import: torch,
``dalv.verify.network``, ``dalv.verify.bounds``.

For one input ``x`` with winner ``c1`` (top logit) and runner-up ``c2`` (second logit),
a radius ``eps`` and a set ``E`` of earlier counterexamples, a counterexample is an
``x'`` with

* box: ``max(0, x - eps) <= x' <= min(1, x + eps)`` in every coordinate;
* margin: ``f_c1(x') - f_c2(x') <= -margin`` (``target="runner_up"``), or
  ``f_c1(x') - f_j(x') <= -margin`` for some ``j != c1`` (``target="any"``);
* exclusion: for every ``a`` in ``E``, ``|x'_i - a_i| >= delta`` in EVERY coordinate
  ``i`` (``separation="every_coord"``, the paper's rule: one disjunction per
  coordinate), or in at least one coordinate (``"any_coord"``: ``x'`` lies outside the
  open L-inf ball of radius ``delta`` around ``a``).

Both margins read ``min_s (C f(x'))_s <= -margin`` with a specification matrix ``C``
(one row for the runner-up, ``n_classes - 1`` rows for "any").
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from dalv.verify.bounds import input_box, spec_matrix
from dalv.verify.network import forward64

__all__ = [
    "Target",
    "Separation",
    "TARGETS",
    "SEPARATIONS",
    "winner_runner_up",
    "property_spec",
    "separated",
    "recheck",
    "project_feasible",
]

Target = Literal["runner_up", "any"]
Separation = Literal["every_coord", "any_coord"]
TARGETS: tuple[str, ...] = ("runner_up", "any")
SEPARATIONS: tuple[str, ...] = ("every_coord", "any_coord")


def winner_runner_up(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Top and second class of each row (a stable descending sort breaks ties by index).

    Shapes:
        logits: ``[B, n_classes]`` -> ``([B], [B])``.
    """
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices
    return order[:, 0], order[:, 1]


def property_spec(
    c1: Tensor,
    c2: Tensor,
    target: Target,
    n_classes: int,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Specification matrix of the property: margins whose minimum must be <= -margin.

    Shapes:
        c1, c2: ``[B]`` -> ``[B, 1, n_classes]`` (runner_up) or
        ``[B, n_classes - 1, n_classes]`` (any).
    """
    if target == "runner_up":
        return spec_matrix(c1, n_classes, c2, dtype=dtype)
    if target == "any":
        return spec_matrix(c1, n_classes, dtype=dtype)
    raise ValueError(f"target must be one of {TARGETS}, got {target!r}")


def separated(
    points: Tensor, others: Tensor, separation: Separation, delta: float
) -> Tensor:
    """Whether each point is separated from every point of ``others`` (float64 test).

    Args:
        points: Candidate points (flattened).
        others: Points to keep away from (flattened); may be empty.
        separation: "every_coord" (``|p_i - a_i| >= delta`` for all ``i``) or
            "any_coord" (for at least one ``i``).
        delta: Minimum separation.

    Returns:
        ``[m]`` booleans.

    Shapes:
        points: ``[m, d]``; others: ``[n, d]`` -> ``[m]``.
    """
    if others.numel() == 0:
        return torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
    diff = points.to(torch.float64)[:, None, :] - others.to(torch.float64)[None, :, :]
    far = diff.abs() >= delta
    per_pair = far.all(-1) if separation == "every_coord" else far.any(-1)
    return per_pair.all(-1)


def recheck(
    model: nn.Module,
    x: Tensor,
    eps: float,
    C: Tensor,
    candidates: Tensor,
    exclude: Tensor,
    *,
    separation: Separation,
    delta: float,
    margin: float,
) -> Tensor:
    """Exact float64 check of candidate counterexamples for ONE input, greedy in order.

    A candidate is accepted when it lies in the box (computed in float64), its float64
    logits meet the margin, and it is separated from ``exclude`` and from every
    candidate accepted before it.

    Args:
        model: The network.
        x: The input.
        eps: Radius.
        C: The property's specification matrix for this input.
        candidates: Points to check, in order of preference.
        exclude: Earlier counterexamples (may be empty).
        separation: Exclusion rule.
        delta: Exclusion distance.
        margin: Required margin.

    Returns:
        ``[m]`` booleans, the accepted candidates.

    Shapes:
        x: ``input_shape``; C: ``[S, n_classes]``; candidates: ``[m, *input_shape]``;
        exclude: ``[n, *input_shape]``.
    """
    m = candidates.shape[0]
    if m == 0:
        return torch.zeros(0, dtype=torch.bool, device=candidates.device)
    lo, hi = input_box(x[None], eps, rounding="exact")
    c64 = candidates.to(torch.float64).flatten(1)
    in_box = ((c64 >= lo.flatten(1)) & (c64 <= hi.flatten(1))).all(-1)
    with torch.no_grad():
        logits = forward64(model, candidates.to(torch.float64))
    margins = (C.to(torch.float64) @ logits.unsqueeze(-1)).squeeze(-1).min(-1).values
    far = separated(c64, exclude.flatten(1), separation, delta)
    ok = in_box & (margins <= -margin) & far
    accepted = torch.zeros(m, dtype=torch.bool, device=candidates.device)
    for j in torch.nonzero(ok).flatten().tolist():
        if bool(separated(c64[j : j + 1], c64[accepted], separation, delta)[0]):
            accepted[j] = True
    return accepted


def project_feasible(
    y: Tensor,
    lo: Tensor,
    hi: Tensor,
    excl: Tensor,
    excl_mask: Tensor,
    *,
    separation: Separation,
    delta: float,
) -> tuple[Tensor, Tensor]:
    """Move points into ``box minus exclusions``, batched.

    every_coord: the feasible set is, per coordinate, ``[lo_i, hi_i]`` minus the open
    slabs ``(a_i - delta, a_i + delta)``. It is a product, so moving each coordinate to
    its nearest allowed value is the exact Euclidean projection: push the coordinate up
    past every slab it falls in (repeatedly, as slabs may overlap), likewise down, and
    keep the nearer result that stays in ``[lo_i, hi_i]``.

    any_coord: a point inside the open L-inf ball of an excluded ``a`` moves the single
    coordinate that needs the smallest move onto the ball's surface (a heuristic).

    Args:
        y: Points (flattened).
        lo: Lower box corners.
        hi: Upper box corners.
        excl: Excluded points per row, padded.
        excl_mask: Which excluded points are real.
        separation: Exclusion rule.
        delta: Distance to keep (pass a slightly larger value to absorb rounding).

    Returns:
        ``(projected, feasible)``: the moved points, and whether each could be made
        feasible.

    Shapes:
        y, lo, hi: ``[P, d]``; excl: ``[P, n, d]``; excl_mask: ``[P, n]``;
        returns ``[P, d]`` and ``[P]``.
    """
    y = torch.minimum(torch.maximum(y, lo), hi)
    feasible = torch.ones(y.shape[0], dtype=torch.bool, device=y.device)
    # Only rows with exclusions need work, and only as many columns as they use (the
    # real exclusions of a row come first in its padded list).
    rows = torch.nonzero(excl_mask.any(1)).flatten()
    if rows.numel() == 0:
        return y, feasible
    n = int(excl_mask[rows].sum(1).max())
    moved, ok = _project_rows(
        y[rows],
        lo[rows],
        hi[rows],
        excl[rows, :n],
        excl_mask[rows, :n],
        separation,
        delta,
    )
    y = y.index_copy(0, rows, moved)
    return y, feasible.index_copy(0, rows, ok)


def _project_rows(
    y: Tensor,
    lo: Tensor,
    hi: Tensor,
    excl: Tensor,
    excl_mask: Tensor,
    separation: Separation,
    delta: float,
) -> tuple[Tensor, Tensor]:
    """``project_feasible`` for rows that all have at least one exclusion."""
    mask = excl_mask[:, :, None]
    if separation == "every_coord":
        up = _push(y, excl, mask, delta, direction=1)
        down = _push(y, excl, mask, delta, direction=-1)
        up_ok, down_ok = up <= hi, down >= lo
        take_up = up_ok & (~down_ok | ((up - y) <= (y - down)))
        out = torch.where(take_up, up, torch.where(down_ok, down, y))
        return out, (up_ok | down_ok).all(-1)
    out = y.clone()
    rows = torch.arange(y.shape[0], device=y.device)
    for _ in range(excl.shape[1]):
        inside = excl_mask & ((out[:, None, :] - excl).abs() < delta).all(-1)  # [P, n]
        if not bool(inside.any()):
            break
        a = excl[rows, inside.float().argmax(1)]  # the first ball each point is in
        up_t, down_t = a + delta, a - delta
        never = torch.full_like(out, math.inf)
        move_up = torch.where(up_t <= hi, up_t - out, never).min(-1)
        move_dn = torch.where(down_t >= lo, out - down_t, never).min(-1)
        use_up = move_up.values <= move_dn.values
        idx = torch.where(use_up, move_up.indices, move_dn.indices)[:, None]
        val = torch.where(use_up[:, None], up_t.gather(1, idx), down_t.gather(1, idx))
        hit = torch.nonzero(inside.any(1)).flatten()
        out[hit, idx[hit, 0]] = val[hit, 0]
    still = excl_mask & ((out[:, None, :] - excl).abs() < delta).all(-1)
    return out, ~still.any(1)


def _push(
    y: Tensor, excl: Tensor, mask: Tensor, delta: float, direction: int
) -> Tensor:
    """Push each coordinate out of all open slabs ``(a_i - delta, a_i + delta)``."""
    out = y
    for _ in range(excl.shape[1]):
        inside = mask & ((out[:, None, :] - excl).abs() < delta)  # [P, n, d]
        if not bool(inside.any()):
            break
        if direction > 0:
            edge = torch.where(inside, excl + delta, torch.full_like(excl, -math.inf))
            out = torch.maximum(out, edge.amax(1))
        else:
            edge = torch.where(inside, excl - delta, torch.full_like(excl, math.inf))
            out = torch.minimum(out, edge.amin(1))
    return out
