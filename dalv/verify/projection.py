"""Moving points into the feasible set ``box minus exclusions`` (the falsifier's step).

Owns: ``project_feasible``; may import: torch, the standard library,
``dalv.verify.property``.

The feasible set of the paper's property (``dalv.verify.property``) in the input space
is the clipped box minus the excluded regions: with ``every_coord`` the open slabs
``(a_i - delta, a_i + delta)`` of every excluded point ``a``, with ``any_coord`` its
open L-inf ball of radius ``delta``. The projections here work in the caller's dtype;
the float64 re-check (``property.satisfies``) has the last word on every point.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dalv.verify.property import Property, Separation

__all__ = ["project_feasible"]


def project_feasible(
    y: Tensor,
    lo: Tensor,
    hi: Tensor,
    excl: Tensor,
    excl_mask: Tensor,
    prop: Property,
    pad: float = 0.0,
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
        prop: The property (its ``separation`` and ``delta``).
        pad: Added to ``delta`` (a little, to absorb the rounding of float32 points).

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
        prop.separation,
        prop.delta + pad,
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
    tries = excl_mask.sum(1)  # a row's own number of moves: independent of the batch
    for t in range(excl.shape[1]):
        inside = excl_mask & ((out[:, None, :] - excl).abs() < delta).all(-1)  # [P, n]
        inside &= (t < tries)[:, None]
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
