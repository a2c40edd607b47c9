"""Cutting subdomains: exclusion tightening, ReLU splits, input splits, ball faces.

Owns: ``Brancher``; may import: torch, the standard library,
``dalv.verify.{box, geometry}``, ``dalv.verify.bab.{bounding, pool, state}``.

* **Tightening** (before bounding). With ``every_coord``, a slab
  ``(a_i - delta, a_i + delta)`` that covers an end of the interval of coordinate ``i``
  moves that end past it (Marabou's bound tightening does the same); a box left empty,
  or inside an excluded ball (``any_coord``), is dropped. Only infeasible points are
  ever cut away, so a proof always covers the whole feasible set.
* **ReLU splitting** (default when the input has more coordinates than the first hidden
  layer has neurons, e.g. MNIST): split the unstable first-layer ReLU with the largest
  ``|lambda_j| * min(u_j, -l_j)`` (its coefficient in the bound times the looseness of
  its relaxation) into ``z_j >= 0`` and ``z_j <= 0`` (bounded with beta multipliers,
  see ``dalv.verify.bab.bounding``).
* **Input splitting** (small inputs, and whenever no unstable first-layer ReLU is
  left): cut the box in two along the coordinate with the largest
  ``|A_i| * width_i`` (``A``: the bound's input coefficients). With ``every_coord``
  exclusion the feasible set is, per coordinate, an interval minus slabs
  ``(a_i - delta, a_i + delta)``, a union of boxes: when a slab crosses the chosen
  coordinate the cut removes it exactly. With ``any_coord`` each excluded point is an
  open box; a subdomain overlapping one is cut at one of its faces first (**ball
  faces**), so that the part inside is isolated and dropped. When a face
  ``a_i -/+ delta`` is exactly representable in the model dtype, the face (feasible:
  ``|x_i - a_i| = delta``) goes to the outer child and the inner child holds the same
  corner as an **open face** (``Pool.box_open``): it still holds the real points
  strictly between the face and the next value of the model dtype, and it is dropped
  once it lies inside the open ball. (Starting it one step inside instead dropped that
  gap, and "unsat" could be answered where counterexamples lay only there.)

Input splitting keeps subdomains plain boxes, represents both exclusion rules exactly
and is complete in the limit for any piecewise-linear network (CROWN becomes exact as
boxes shrink), but it scales badly with the input dimension. ReLU splitting on the first
layer scales with the hidden width instead and is complete for the paper's
one-hidden-layer MLP (up to the exclusion slabs, which the input-split fallback then
handles). Deeper layers are not split (their phases are not linear in ``x``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dalv.verify.bab.bounding import Bounds
from dalv.verify.bab.pool import OPEN_HI, OPEN_LO, Pool
from dalv.verify.bab.state import SearchState
from dalv.verify.box import round_down, round_up
from dalv.verify.geometry import box_in_ball, shrink_slabs

__all__ = ["Brancher"]


# A subdomain narrower than this in every coordinate is not split further.
_MIN_WIDTH = 1e-9
# Chunk size of the float64 exclusion tests (subdomains per chunk).
_CHUNK = 256


class Brancher:
    """Tightens subdomains by the exclusions and splits them (see the module docstring).

    Args:
        state: The search's shared state (exclusions, property, dtype).
        relu_split: Whether to split first-layer ReLUs before input coordinates.
    """

    def __init__(self, state: SearchState, relu_split: bool) -> None:
        self.state, self.relu_split = state, relu_split

    def tighten(
        self, lo: Tensor, hi: Tensor, own: Tensor, open_: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Shrink boxes to what the exclusions leave; flag the boxes left empty.

        every_coord: a slab ``(a_i - delta, a_i + delta)`` that covers an end of the
        interval ``[lo_i, hi_i]`` moves that end past the slab; repeated until nothing
        moves. any_coord: a box inside an excluded open ball is empty (a face the box
        does not hold, ``open_``, may lie on the ball's face). Corners never move with
        any_coord, the only rule that opens faces, so ``open_`` stays valid.

        Args:
            lo, hi: ``[m, d]`` corners.
            own: ``[m]`` owners.
            open_: ``[m, d]`` open faces (``Pool.box_open``; ``None``: closed boxes).

        Returns:
            ``(lo, hi, empty)``; the corners are rounded outward in the model dtype.
        """
        st, delta = self.state, self.state.prop.delta
        excl = st.excl
        empty = torch.zeros(lo.shape[0], dtype=torch.bool, device=st.device)
        if excl.n == 0:
            return lo, hi, empty
        lo, hi = lo.clone(), hi.clone()
        for s in range(0, lo.shape[0], _CHUNK):
            sl = slice(s, s + _CHUNK)
            a, live = excl.E64[own[sl]], excl.mask[own[sl]][:, :, None]
            lo_d, hi_d = lo[sl].double(), hi[sl].double()
            below, above = a - delta, a + delta
            if st.prop.separation == "any_coord":
                op = None if open_ is None else open_[sl][:, None]
                inside = box_in_ball(
                    lo_d[:, None],
                    hi_d[:, None],
                    below,
                    above,
                    None if op is None else (op & OPEN_LO) > 0,
                    None if op is None else (op & OPEN_HI) > 0,
                )
                empty[sl] = (inside & live[..., 0]).any(-1)
                continue
            lo_d, hi_d = shrink_slabs(lo_d, hi_d, below, above, live)
            empty[sl] = (lo_d > hi_d).any(-1)
            lo[sl] = torch.maximum(lo[sl], round_down(lo_d, st.dtype))
            hi[sl] = torch.minimum(hi[sl], round_up(hi_d, st.dtype))
        return lo, hi, empty

    def split(
        self,
        pool: Pool,
        sub: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
        bnd: Bounds,
        unresolved: Tensor,
    ) -> Tensor:
        """Split the surviving subdomains and put the children in the pool.

        Args:
            pool: Where the children go.
            sub: The subdomains ``(lo, hi, own, phase, box)`` as ``Pool.take`` gives.
            bnd: Their bounds.
            unresolved: ``[m, S]`` margins their bound did not prove.

        Returns:
            The owners of subdomains too narrow to split (their search is cut short).
        """
        lo, hi, own, phase, box = sub
        dev = self.state.device
        prio = bnd.lower.min(1).values
        by_relu = torch.zeros(lo.shape[0], dtype=torch.bool, device=dev)
        if self.relu_split:
            j, by_relu = self._split_relu(bnd, unresolved, phase)
            r = torch.nonzero(by_relu).flatten()
            if r.numel():
                up, down = phase[r].clone(), phase[r].clone()
                up[torch.arange(r.numel(), device=dev), j[r]] = 1
                down[torch.arange(r.numel(), device=dev), j[r]] = -1
                two = torch.cat([r, r])
                pool.add(box[two], own[two], prio[two], torch.cat([up, down]))
        rest = torch.nonzero(~by_relu).flatten()
        if rest.numel() == 0:
            return own[:0]
        a = bnd.A[rest]
        score = (a.abs() * unresolved[rest].unsqueeze(-1)).sum(1)
        score = score * (hi[rest] - lo[rest]).double()
        lo_r, hi_r, own_r = lo[rest], hi[rest], own[rest]
        open_r = pool.box_open[box[rest]]
        n_lo, n_hi, n_open, parent, stuck = self._split_input(
            lo_r, hi_r, own_r, score, open_r
        )
        p = rest[parent]
        pool.add(pool.new_boxes(n_lo, n_hi, n_open), own[p], prio[p], phase[p])
        return own_r[stuck]

    def _split_relu(
        self, bnd: Bounds, unresolved: Tensor, phase: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The first-layer ReLU to split in each subdomain, and which ones have one."""
        l0, u0 = bnd.pre_lo, bnd.pre_hi
        assert bnd.hidden is not None and l0 is not None and u0 is not None
        lam = (bnd.hidden.abs() * unresolved.unsqueeze(-1)).sum(1)  # [m, h]
        open_ = (l0 < 0) & (u0 > 0) & (phase == 0)
        score = torch.where(open_, lam * torch.minimum(u0, -l0), -1.0)
        j = score.argmax(1)
        return j, score.gather(1, j[:, None]).squeeze(1) > 0

    def _split_input(
        self, lo: Tensor, hi: Tensor, own: Tensor, score: Tensor, open_: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Cut each box in two (see the module docstring for where).

        Args:
            lo, hi: ``[m, d]`` the boxes.
            own: ``[m]`` their owners.
            score: ``[m, d]`` how much splitting each coordinate is worth.
            open_: ``[m, d]`` their open faces (``Pool.box_open``).

        Returns:
            The children's ``lo``, ``hi``, open faces and parent index, and a mask of
            the boxes too narrow to split.
        """
        st, delta = self.state, self.state.prop.delta
        m = lo.shape[0]
        ar = torch.arange(m, device=st.device)
        width = (hi - lo).double()
        score = torch.where(width > _MIN_WIDTH, score + 1e-12 * width, -1.0)
        n = st.excl.n
        if st.prop.separation == "any_coord" and n:
            score = self._prefer_ball_faces(lo, hi, own, score)
        dim = score.argmax(1)
        splittable = score[ar, dim] > 0
        l_i, h_i = lo[ar, dim].double(), hi[ar, dim].double()
        mid = (l_i + h_i) / 2
        left_hi, right_lo = mid.clone(), mid.clone()
        # Which new face is open: the inner child's, at an exact ball face.
        open_left_hi = torch.zeros(m, dtype=torch.bool, device=st.device)
        open_right_lo = torch.zeros(m, dtype=torch.bool, device=st.device)
        if n:
            cols = torch.arange(n, device=st.device)[None, :]
            a = st.excl.E64[own[:, None], cols, dim[:, None]]  # [m, n]
            # Edges as the children will store them (rounded outward); an edge counts
            # only if strictly inside the interval, so a slab once cut stays cut.
            e_lo = round_up(a - delta, st.dtype).double()
            e_hi = round_down(a + delta, st.dtype).double()
            live = st.excl.mask[own]
            if st.prop.separation == "every_coord":
                cross = live & (e_lo < h_i[:, None]) & (e_hi > l_i[:, None])
                dist = torch.where(cross, (a - mid[:, None]).abs(), math.inf)
                j = dist.argmin(1)
                has = cross[ar, j]
                left_hi = torch.where(has, e_lo[ar, j], left_hi)
                right_lo = torch.where(has, e_hi[ar, j], right_lo)
            else:
                faces = torch.cat([e_lo, e_hi], 1)
                inside = (faces > l_i[:, None]) & (faces < h_i[:, None])
                inner = live.repeat(1, 2) & inside
                dist = torch.where(inner, (faces - mid[:, None]).abs(), math.inf)
                j = dist.argmin(1)
                has = inner[ar, j]
                face = faces[ar, j]
                # The face itself (|x_i - a_i| = delta, feasible) goes to the outer
                # child only: when it is representable, the inner child shares the
                # corner but not the face (an open face, ``Pool.box_open``), so that it
                # can lie inside the open ball and be dropped, while the real points
                # strictly between the face and the next value of the model dtype stay
                # in it (starting the inner child one step inside lost them).
                exact = torch.cat([a - delta, a + delta], 1)[ar, j] == face
                lower_face = j < n
                left_hi = torch.where(has, face, left_hi)
                right_lo = left_hi.clone()
                open_right_lo = has & exact & lower_face  # inner child of a - delta
                open_left_hi = has & exact & ~lower_face  # inner child of a + delta
        left_ok = splittable & (left_hi >= l_i)
        right_ok = splittable & (right_lo <= h_i)
        lo_l, hi_l = lo.clone(), hi.clone()
        hi_l[ar, dim] = torch.minimum(round_up(left_hi, st.dtype), hi[ar, dim])
        lo_r, hi_r = lo.clone(), hi.clone()
        lo_r[ar, dim] = torch.maximum(round_down(right_lo, st.dtype), lo[ar, dim])
        # A child keeps its parent's open faces, except at the cut: a new corner is
        # closed unless it is the inner side of an exact ball face.
        old = open_[ar, dim]
        op_l, op_r = open_.clone(), open_.clone()
        new_hi_l = hi_l[ar, dim] < hi[ar, dim]
        keep_l = old & ~OPEN_HI
        op_l[ar, dim] = torch.where(
            new_hi_l, keep_l | (open_left_hi.to(torch.int8) * OPEN_HI), old
        )
        new_lo_r = lo_r[ar, dim] > lo[ar, dim]
        keep_r = old & ~OPEN_LO
        op_r[ar, dim] = torch.where(
            new_lo_r, keep_r | (open_right_lo.to(torch.int8) * OPEN_LO), old
        )
        parent = torch.cat([ar[left_ok], ar[right_ok]])
        new_lo = torch.cat([lo_l[left_ok], lo_r[right_ok]])
        new_hi = torch.cat([hi_l[left_ok], hi_r[right_ok]])
        new_open = torch.cat([op_l[left_ok], op_r[right_ok]])
        return new_lo, new_hi, new_open, parent, ~splittable

    def _prefer_ball_faces(
        self, lo: Tensor, hi: Tensor, own: Tensor, score: Tensor
    ) -> Tensor:
        """any_coord: a box overlapping an excluded ball is cut at one of its faces."""
        excl, delta = self.state.excl, self.state.prop.delta
        out = score.clone()
        for s in range(0, lo.shape[0], _CHUNK):
            sl = slice(s, s + _CHUNK)
            a = excl.E64[own[sl]]
            lo_d, hi_d = lo[sl].double()[:, None], hi[sl].double()[:, None]
            overlap = ((lo_d < a + delta) & (hi_d > a - delta)).all(-1)
            overlap &= excl.mask[own[sl]]
            face_inside = ((a - delta > lo_d) & (a - delta < hi_d)) | (
                (a + delta > lo_d) & (a + delta < hi_d)
            )
            cuttable = (face_inside & overlap[:, :, None]).any(1)  # [chunk, d]
            boost = cuttable.any(-1, keepdim=True)
            boosted = torch.where(cuttable, score[sl] + 1.0, -0.5)
            out[sl] = torch.where(boost, boosted, score[sl])
        return out
