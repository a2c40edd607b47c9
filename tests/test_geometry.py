"""The box minus the exclusions (``dalv.verify.geometry``): the numpy and torch forms
against each other, and both against a brute-force grid.

Boxes, excluded points and radii lie on a dyadic grid (multiples of 1/16) and the
reference grid is finer (multiples of 1/64), so every slab and ball face is exactly a
grid value and the open/closed ends are tested, not rounded away.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dalv.verify.geometry import (
    box_in_ball,
    cut_box,
    project,
    project_feasible,
    region_box,
    shrink_slabs,
)
from dalv.verify.property import Property

SEPARATIONS = ("every_coord", "any_coord")


def _case(rng: np.random.Generator, d: int, n: int):
    """A dyadic box, ``n`` excluded points and a radius."""
    a, b = np.sort(rng.integers(0, 17, size=(2, d)), axis=0) / 16
    exclude = rng.integers(0, 17, size=(n, d)) / 16
    delta = int(rng.integers(1, 6)) / 16
    return a.astype(np.float64), b.astype(np.float64), exclude, delta


def _feasible_grid(lo, hi, exclude, delta, separation, step=1 / 64):
    """Every grid point of ``[lo, hi]`` outside the exclusions: the reference."""
    axes = [
        np.arange(lo_i, hi_i + step / 2, step)
        for lo_i, hi_i in zip(lo, hi, strict=True)
    ]
    pts = np.array(list(itertools.product(*axes)), dtype=np.float64).reshape(
        -1, lo.shape[0]
    )
    if exclude.shape[0] == 0 or pts.shape[0] == 0:
        return pts
    far = np.abs(pts[:, None, :] - exclude) >= delta  # [m, n, d]
    ok = far.all(-1) if separation == "every_coord" else far.any(-1)
    return pts[ok.all(1)]


@pytest.mark.parametrize("separation", SEPARATIONS)
def test_cut_box_never_cuts_away_a_feasible_point(separation):
    """cut_box is sound (every feasible point stays in its box and on a side of every
    disjunction it keeps) and exact about emptiness on these cases (``None`` only when
    no grid point is feasible)."""
    rng = np.random.default_rng(0)
    n_empty = 0
    for _ in range(300):
        d, n = int(rng.integers(1, 4)), int(rng.integers(0, 4))
        lo, hi, exclude, delta = _case(rng, d, n)
        feas = _feasible_grid(lo, hi, exclude, delta, separation)
        cut = cut_box(lo, hi, exclude, delta, separation)
        if cut is None:
            n_empty += 1
            assert feas.shape[0] == 0, (lo, hi, exclude, delta)
            continue
        assert ((feas >= cut.lo) & (feas <= cut.hi)).all()
        assert _on_a_side_of_every_disjunction(cut, feas).all()
        # region_box itself, on a spread of the grid points (faces included)
        for y in feas[:: max(1, feas.shape[0] // 64)]:
            assert region_box(cut, y) is not None
    assert n_empty > 10  # the cases exercise the empty branch


def _on_a_side_of_every_disjunction(cut, pts):
    """Per point of ``pts [m, d]``, whether it satisfies every disjunction ``cut`` keeps
    (written here, batched, from ``Cut``'s definition)."""
    ok = np.ones(pts.shape[0], dtype=bool)
    coord, below, above = cut.pairs
    if coord.size:
        v = pts[:, coord]
        ok &= ((v <= below) | (v >= above)).all(1)
    for coord, bound, side in cut.balls:
        v = pts[:, coord]
        ok &= np.where(side > 0, v >= bound, v <= bound).any(1)
    return ok


@pytest.mark.parametrize("separation", SEPARATIONS)
def test_empty_box_rules_agree_with_the_grid(separation):
    """shrink_slabs leaving lo > hi, and box_in_ball, both mean: no feasible point."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        d, n = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        lo, hi, exclude, delta = _case(rng, d, n)
        feas = _feasible_grid(lo, hi, exclude, delta, separation)
        if separation == "every_coord":
            lo2, hi2 = shrink_slabs(lo, hi, exclude - delta, exclude + delta)
            if (lo2 > hi2).any():
                assert feas.shape[0] == 0
            else:
                assert ((feas >= lo2) & (feas <= hi2)).all()
        else:
            inside = box_in_ball(lo, hi, exclude - delta, exclude + delta)
            if inside.any():
                assert feas.shape[0] == 0


def test_shrink_slabs_numpy_and_torch_batched_agree():
    """The torch form on a padded batch (as the branch and bound calls it) gives, row by
    row, exactly the numpy form's corners."""
    rng = np.random.default_rng(2)
    m, n_max, d = 64, 4, 3
    cases = [_case(rng, d, int(rng.integers(1, n_max + 1))) for _ in range(m)]
    lo = torch.tensor(np.stack([c[0] for c in cases]))
    hi = torch.tensor(np.stack([c[1] for c in cases]))
    ex = torch.zeros(m, n_max, d, dtype=torch.float64)
    live = torch.zeros(m, n_max, 1, dtype=torch.bool)
    delta = torch.tensor([c[3] for c in cases], dtype=torch.float64)[:, None, None]
    for r, c in enumerate(cases):
        ex[r, : len(c[2])] = torch.tensor(c[2])
        live[r, : len(c[2])] = True
    t_lo, t_hi = shrink_slabs(lo, hi, ex - delta, ex + delta, live)
    for r, (lo_r, hi_r, exclude, dl) in enumerate(cases):
        n_lo, n_hi = shrink_slabs(lo_r, hi_r, exclude - dl, exclude + dl)
        empty_np = bool((n_lo > n_hi).any())
        assert empty_np == bool((t_lo[r] > t_hi[r]).any())
        if not empty_np:
            assert np.array_equal(n_lo, t_lo[r].numpy())
            assert np.array_equal(n_hi, t_hi[r].numpy())
        # and cut_box's verdict is the same rule's
        assert (cut_box(lo_r, hi_r, exclude, dl, "every_coord") is None) == empty_np


def test_box_in_ball_open_faces():
    """A face the box does not hold may lie on the ball's face: then the box is inside
    the open ball; closed, it is not (its face's points are feasible)."""
    lo, hi = np.array([0.25, 0.25]), np.array([0.75, 0.5])
    below, above = np.array([0.0, 0.0]), np.array([1.0, 0.5])
    assert not box_in_ball(lo, hi, below, above)
    assert box_in_ball(
        lo, hi, below, above, np.array([False, False]), np.array([False, True])
    )
    t = [torch.tensor(v) for v in (lo, hi, below, above)]
    assert not bool(box_in_ball(*t))
    assert bool(
        box_in_ball(*t, torch.tensor([False, False]), torch.tensor([False, True]))
    )


@pytest.mark.parametrize("separation", SEPARATIONS)
def test_project_numpy_and_torch_give_the_same_points(separation):
    """``project`` (numpy, the MILP's) and ``project_feasible`` (torch, the branch and
    bound's) move the same points to the same places; a point either calls feasible
    is feasible."""
    rng = np.random.default_rng(3)
    for trial in range(40):
        d, n, m = int(rng.integers(1, 6)), int(rng.integers(1, 5)), 32
        lo, hi, exclude, delta = _case(rng, d, n)
        y = rng.uniform(-0.1, 1.1, size=(m, d))
        if trial % 2:  # some points exactly on faces
            y = np.round(y * 16) / 16
        p_np, ok_np = project(y, lo, hi, exclude, delta, separation)
        prop = Property(separation=separation, delta=delta)
        rows = torch.ones(m, 1, dtype=torch.float64)
        p_t, ok_t = project_feasible(
            torch.tensor(y),
            rows * torch.tensor(lo),
            rows * torch.tensor(hi),
            torch.tensor(exclude).expand(m, n, d),
            torch.ones(m, n, dtype=torch.bool),
            prop,
        )
        assert np.array_equal(p_np, p_t.numpy())
        assert np.array_equal(ok_np, ok_t.numpy())
        far = np.abs(p_np[ok_np][:, None, :] - exclude) >= delta
        in_box = (p_np[ok_np] >= lo).all() and (p_np[ok_np] <= hi).all()
        assert in_box
        if separation == "every_coord":
            assert far.all()
        else:
            assert far.any(-1).all()


def test_every_coord_projection_is_the_nearest_feasible_point():
    """Per coordinate, no feasible grid value is nearer than the projected one."""
    rng = np.random.default_rng(4)
    for _ in range(200):
        lo, hi, exclude, delta = _case(rng, 1, int(rng.integers(1, 4)))
        y = rng.uniform(0, 1, size=(8, 1))
        p, ok = project(y, lo, hi, exclude, delta, "every_coord")
        grid = _feasible_grid(lo, hi, exclude, delta, "every_coord", step=1 / 256)
        for yi, pi, oki in zip(y[:, 0], p[:, 0], ok, strict=True):
            clipped = min(max(yi, lo[0]), hi[0])
            if not oki:
                assert grid.shape[0] == 0
                continue
            if grid.shape[0]:
                assert abs(pi - clipped) <= np.abs(grid[:, 0] - clipped).min() + 1e-12
