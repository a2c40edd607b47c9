"""The box minus the exclusions: the feasible set of the paper's query in input space.

Owns: ``shrink_slabs`` and ``box_in_ball`` (the two rules that decide a box against the
exclusions, written once for numpy arrays and torch tensors alike), ``project_slabs``
(the exact projection for ``every_coord``, likewise), ``project`` / ``Cut`` /
``cut_box`` / ``region_box`` (numpy: the MILP and Marabou backends, one box shared by
all points) and ``project_feasible`` (torch, batched with per-row exclusions: the branch
and bound); may import: numpy, torch, the standard library, ``dalv.verify.property``.

The feasible set (``dalv.verify.property``, protocol section 4.4) is the clipped box
``[lo, hi]`` minus, for every excluded point ``a``: with ``every_coord`` the open slabs
``(a_i - delta, a_i + delta)`` of each coordinate, with ``any_coord`` the open L-inf
ball of radius ``delta`` around ``a``. Two rules decide much of it on the box alone:

* every_coord (``shrink_slabs``): a slab that covers an end of ``[lo_i, hi_i]`` moves
  that end past the slab; repeated until nothing moves. A slab covering both ends
  leaves nothing (``lo > hi``); a slab strictly inside stays a disjunction.
* any_coord (``box_in_ball``): a box inside an open ball is empty.

The numpy and torch forms give the same numbers on the same input (tests compare
them); the float64 re-check (``property.satisfies``) has the last word on every point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dalv.verify.property import Property, Separation

__all__ = [
    "shrink_slabs",
    "box_in_ball",
    "project_slabs",
    "project",
    "Cut",
    "cut_box",
    "region_box",
    "project_feasible",
]

Array = Any
"""A numpy array or a torch tensor (the shared rules take either)."""


def _xp(a: Array):
    return torch if isinstance(a, Tensor) else np


# ---- the shared rules (numpy or torch) ----------------------------------------------


def shrink_slabs(
    lo: Array, hi: Array, below: Array, above: Array, live: Array | None = None
) -> tuple[Array, Array]:
    """every_coord: move each end of ``[lo, hi]`` past the open slabs that cover it.

    A slab ``(below_i, above_i)`` covers ``lo_i`` if ``below_i < lo_i < above_i``; then
    ``lo_i`` moves to ``above_i`` (likewise ``hi_i`` down to ``below_i``), repeated to a
    fixpoint. Every end passes each slab at most once, so ``2 n + 1`` rounds suffice.

    Args:
        lo, hi: Box corners ``[..., d]``.
        below, above: Slab ends ``[..., n, d]`` (``a - delta``, ``a + delta``).
        live: Which slabs are real ``[..., n, 1]`` (padding; ``None``: all).

    Returns:
        ``(lo, hi)``; some ``lo_i > hi_i`` when nothing is left.
    """
    xp = _xp(lo)
    for _ in range(2 * below.shape[-2] + 1):
        lo_e, hi_e = lo[..., None, :], hi[..., None, :]
        cover_lo = (below < lo_e) & (above > lo_e)
        cover_hi = (below < hi_e) & (above > hi_e)
        if live is not None:
            cover_lo, cover_hi = cover_lo & live, cover_hi & live
        if not bool(cover_lo.any() or cover_hi.any()):
            break
        lo = xp.maximum(lo, xp.amax(xp.where(cover_lo, above, -math.inf), -2))
        hi = xp.minimum(hi, xp.amin(xp.where(cover_hi, below, math.inf), -2))
    return lo, hi


def box_in_ball(
    lo: Array,
    hi: Array,
    below: Array,
    above: Array,
    open_lo: Array | None = None,
    open_hi: Array | None = None,
) -> Array:
    """any_coord: whether the box ``[lo, hi]`` lies inside the open ball ``(below,
    above)`` (so nothing of it is feasible).

    A face the box does not hold (``open_lo`` / ``open_hi``: ``[..., d]`` booleans) may
    lie on the ball's face.

    Shapes:
        lo, hi: ``[..., d]``; below, above: ``[..., d]`` or ``[..., n, d]`` (broadcast
        against ``lo``) -> the leading shape, ``d`` reduced.
    """
    in_lo, in_hi = lo > below, hi < above
    if open_lo is not None:
        in_lo = in_lo | (open_lo & (lo >= below))
    if open_hi is not None:
        in_hi = in_hi | (open_hi & (hi <= above))
    inside = in_lo & in_hi
    return inside.all(-1)


def project_slabs(
    y: Array, lo: Array, hi: Array, excl: Array, delta: float, mask: Array | None = None
) -> tuple[Array, Array]:
    """every_coord: the exact Euclidean projection of points into ``[lo, hi]`` minus
    the open slabs ``(a_i - delta, a_i + delta)``.

    The set is a product over coordinates, so each coordinate moves to the nearer of
    two values: pushed up past every slab it falls in (repeatedly, slabs may overlap),
    or likewise down, keeping the nearer one that stays in ``[lo_i, hi_i]``.

    Args:
        y: Points ``[m, d]``, already in the box.
        lo, hi: ``[d]`` or ``[m, d]``.
        excl: Excluded points ``[n, d]`` or ``[m, n, d]``.
        mask: Which excluded points are real, ``[m, n, 1]`` (``None``: all).

    Returns:
        ``(projected [m, d], feasible [m])``.
    """
    up = _push(y, excl, delta, +1, mask)
    down = _push(y, excl, delta, -1, mask)
    up_ok, down_ok = up <= hi, down >= lo
    take_up = up_ok & (~down_ok | ((up - y) <= (y - down)))
    xp = _xp(y)
    out = xp.where(take_up, up, xp.where(down_ok, down, y))
    return out, (up_ok | down_ok).all(-1)


def _push(y: Array, excl: Array, delta: float, direction: int, mask) -> Array:
    """Push each coordinate out of all open slabs ``(a_i - delta, a_i + delta)``."""
    xp, out = _xp(y), y
    for _ in range(excl.shape[-2]):
        inside = xp.abs(out[:, None, :] - excl) < delta  # [m, n, d]
        if mask is not None:
            inside = inside & mask
        if not bool(inside.any()):
            break
        if direction > 0:
            out = xp.maximum(out, xp.amax(xp.where(inside, excl + delta, -math.inf), 1))
        else:
            out = xp.minimum(out, xp.amin(xp.where(inside, excl - delta, math.inf), 1))
    return out


# ---- numpy: one box, shared exclusions (MILP, Marabou) -----------------------------


def project(
    y: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    exclude: np.ndarray,
    delta: float,
    separation: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Move points into ``[lo, hi]`` minus the exclusions (numpy; ``project_feasible``
    is the torch form).

    every_coord: ``project_slabs``, the exact Euclidean projection. any_coord: a point
    inside the open L-inf ball of some ``a`` moves the one coordinate that needs the
    smallest move onto the ball's surface.

    Shapes:
        y: ``[m, d]``; lo, hi: ``[d]``; exclude: ``[n, d]`` -> ``[m, d]``, ``[m]``.
    """
    y = np.clip(np.asarray(y, np.float64), lo, hi)
    ok = np.ones(y.shape[0], dtype=bool)
    if exclude.shape[0] == 0:
        return y, ok
    if separation == "every_coord":
        return project_slabs(y, lo, hi, exclude, delta)
    out = y.copy()
    for _ in range(exclude.shape[0]):
        inside = (np.abs(out[:, None, :] - exclude) < delta).all(-1)  # [m, n]
        rows = np.nonzero(inside.any(1))[0]
        if rows.size == 0:
            break
        a = exclude[inside[rows].argmax(1)]  # the first ball each point is in
        cur = out[rows]
        move_up = np.where(a + delta <= hi, a + delta - cur, np.inf)
        move_dn = np.where(a - delta >= lo, cur - (a - delta), np.inf)
        i_up, i_dn = move_up.argmin(1), move_dn.argmin(1)
        r = np.arange(rows.size)
        use_up = move_up[r, i_up] <= move_dn[r, i_dn]
        col = np.where(use_up, i_up, i_dn)
        val = np.where(use_up, a[r, col] + delta, a[r, col] - delta)
        # No face of the ball inside the box: the point stays (and stays infeasible).
        can = np.isfinite(np.minimum(move_up[r, i_up], move_dn[r, i_dn]))
        out[rows[can], col[can]] = val[can]
    still = (np.abs(out[:, None, :] - exclude) < delta).all(-1).any(1)
    return out, ~still


@dataclass(frozen=True)
class Cut:
    """The box minus the exclusions, after the box decided what it could.

    Attributes:
        lo: Tightened lower bounds ``[d]``.
        hi: Tightened upper bounds ``[d]``.
        pairs: every_coord disjunctions the box leaves open: ``(coord [p], below [p],
            above [p])``, each ``x_coord <= below OR x_coord >= above``.
        balls: any_coord disjunctions, one per excluded point the box leaves open:
            ``(coord [c], bound [c], side [c])`` with side ``+1`` (``x >= bound``) or
            ``-1`` (``x <= bound``); at least one case must hold.
    """

    lo: np.ndarray
    hi: np.ndarray
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
    balls: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...] = ()


def cut_box(
    lo: np.ndarray,
    hi: np.ndarray,
    exclude: np.ndarray,
    delta: float,
    separation: str,
) -> Cut | None:
    """Drop the disjunctions the box decides (to a fixpoint); ``None``: nothing is left.

    Args:
        lo, hi: The box ``[d]`` (float64).
        exclude: Points to stay away from ``[n, d]``.
        delta: The exclusion distance of this query.
        separation: ``"every_coord"`` or ``"any_coord"``.
    """
    lo, hi = lo.astype(np.float64).copy(), hi.astype(np.float64).copy()
    below, above = exclude - delta, exclude + delta
    no_pairs = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    if separation == "every_coord":
        lo, hi = shrink_slabs(lo, hi, below, above)
        if (lo > hi).any():
            return None
        touches = (below < hi) & (above > lo)
        rows, cols = np.nonzero(touches)
        return Cut(
            lo, hi, (cols.astype(np.int64), below[rows, cols], above[rows, cols])
        )
    balls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    changed = True
    while changed:
        changed, balls = False, []
        for j in range(exclude.shape[0]):
            if ((above[j] <= lo) | (below[j] >= hi)).any():
                continue  # some coordinate of the box lies wholly outside the ball
            if box_in_ball(lo, hi, below[j], above[j]):
                return None
            left = np.nonzero(below[j] >= lo)[0]
            right = np.nonzero(above[j] <= hi)[0]
            if left.size + right.size == 1:
                if left.size:
                    hi[left] = np.minimum(hi[left], below[j, left])
                else:
                    lo[right] = np.maximum(lo[right], above[j, right])
                changed = True
                break
            coord = np.concatenate([left, right])
            bound = np.concatenate([below[j, left], above[j, right]])
            side = np.concatenate([-np.ones(left.size), np.ones(right.size)])
            balls.append((coord, bound, side))
        if (lo > hi).any():
            return None
    return Cut(lo, hi, no_pairs, tuple(balls))


def region_box(cut: Cut, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The box of the disjunction sides a point ``y`` lies on (``None``: it lies on
    none of some disjunction's sides, or outside the cut box)."""
    if (y < cut.lo).any() or (y > cut.hi).any():
        return None
    lo, hi = cut.lo.copy(), cut.hi.copy()
    coord, below, above = cut.pairs
    if coord.size:
        left, right = y[coord] <= below, y[coord] >= above
        if not (left | right).all():
            return None
        np.minimum.at(hi, coord[left], below[left])
        np.maximum.at(lo, coord[right & ~left], above[right & ~left])
    for coord, bound, side in cut.balls:
        slack = np.where(side > 0, y[coord] - bound, bound - y[coord])
        best = int(slack.argmax())
        if slack[best] < 0:
            return None
        i = coord[best]
        if side[best] > 0:
            lo[i] = max(lo[i], bound[best])
        else:
            hi[i] = min(hi[i], bound[best])
    return lo, hi


# ---- torch: batched, per-row exclusions (branch and bound) ---------------------


def project_feasible(
    y: Tensor,
    lo: Tensor,
    hi: Tensor,
    excl: Tensor,
    excl_mask: Tensor,
    prop: Property,
    pad: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Move points into ``box minus exclusions``, batched (torch; ``project`` is the
    numpy form, and both give the same points).

    every_coord: ``project_slabs``, the exact Euclidean projection. any_coord: a point
    inside the open L-inf ball of an excluded ``a`` moves the single coordinate that
    needs the smallest move onto the ball's surface (a heuristic).

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
    if separation == "every_coord":
        return project_slabs(y, lo, hi, excl, delta, excl_mask[:, :, None])
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
        # No face of the ball inside the box: the point stays (and stays infeasible).
        can = torch.minimum(move_up.values, move_dn.values).isfinite()
        hit = torch.nonzero(inside.any(1) & can).flatten()
        out[hit, idx[hit, 0]] = val[hit, 0]
    still = excl_mask & ((out[:, None, :] - excl).abs() < delta).all(-1)
    return out, ~still.any(1)
