"""Candidate counterexamples inside the subdomains that survived bounding.

Owns: ``Objective`` (the property margin in the model dtype, its gradient, and the
projection onto ``box minus exclusions``) and ``Falsifier`` (the bound's minimising
corner plus projected-gradient descent from random starts); may import: torch, the
standard library, ``dalv.verify.{descent, geometry, property}``,
``dalv.verify.bab.state``.

Per surviving subdomain the candidates are the corner that minimises CROWN's linear
lower bound and PGD on the margin: many random starts (and the input itself) at an
input's root box (``max(8, 2 k)`` for an input that wants ``k``, unless fixed), one
start in each later subdomain. Each input draws its random starts from its own
``torch.Generator``, seeded by the search's seed, so a seed fixes the candidates and an
input's candidates do not depend on the other inputs of a batch. Candidates are only
proposals: ``dalv.verify.bab.accept`` projects, repairs and re-checks them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dalv.verify.bab.state import SearchState
from dalv.verify.descent import decaying_step, margin_pgd
from dalv.verify.geometry import project_feasible
from dalv.verify.property import spec_margin

__all__ = ["FAST_SLACK", "Objective", "Falsifier"]

# How much a float32 candidate's repair aims to beat the margin by (in the model dtype),
# so that the float64 re-check agrees. Not a filter: any candidate whose model-dtype
# margin meets the property goes to the exact re-check, which decides (a filter with
# slack never accepts a counterexample within the slack of the boundary, and the search
# then splits around it without end).
FAST_SLACK = 1e-5
# Added to delta when projecting float32 points (absorbs float32 rounding).
_DELTA_PAD = 1e-6
# Both for float64 models (rounding of float64 values only).
_SLACK64 = 1e-12


class Objective:
    """The property margin and the feasible set, in the model dtype.

    Args:
        state: The search's shared state.
    """

    def __init__(self, state: SearchState) -> None:
        self.state = state
        wide = state.dtype == torch.float64
        self.slack = _SLACK64 if wide else FAST_SLACK  # the repair's target
        self.pad = _SLACK64 if wide else _DELTA_PAD

    def margin(
        self, y: Tensor, rows: Tensor, grad: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Property margin ``min_s (C f(y))_s`` in the model dtype, and its gradient.

        Shapes:
            y: ``[m, d]``; rows: ``[m]`` owners -> ``[m]`` and ``[m, d]``.
        """
        st = self.state
        with torch.enable_grad() if grad else torch.no_grad():
            y = y.detach().requires_grad_(grad)
            logits = st.model(y.view(-1, *st.shape))
            g = spec_margin(st.C[rows], logits)
            if not grad:
                return g.detach(), None
            (dg,) = torch.autograd.grad(g.sum(), y)
        return g.detach(), dg

    def project(
        self, y: Tensor, lo: Tensor, hi: Tensor, rows: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Project onto ``[lo, hi]`` minus the owners' exclusions (delta padded)."""
        excl = self.state.excl
        return project_feasible(
            y, lo, hi, excl.E[rows], excl.mask[rows], self.state.prop, self.pad
        )


class Falsifier:
    """Proposes candidates in a batch of subdomains (see the module docstring).

    Args:
        state: The search's shared state.
        objective: Margin and projection.
        restarts: Random PGD starts per input at the root (``None``: ``max(8, 2 k)``
            with the input's own ``k``).
        pgd_steps: PGD steps at the root.
        domain_pgd_steps: PGD steps inside each subdomain after the root.
        seed: Seed of the random starts.
    """

    def __init__(
        self,
        state: SearchState,
        objective: Objective,
        restarts: int | None,
        pgd_steps: int,
        domain_pgd_steps: int,
        seed: int,
    ) -> None:
        self.state, self.objective = state, objective
        ks = state.progress.k
        n = [max(8, 2 * k) if restarts is None else restarts for k in ks]
        self.restarts = torch.tensor(n, dtype=torch.long, device=state.device)
        self.pgd_steps, self.domain_pgd_steps = pgd_steps, domain_pgd_steps
        self.gens = [torch.Generator(device=state.device).manual_seed(seed) for _ in ks]

    def _random_starts(
        self, lo: Tensor, hi: Tensor, own: Tensor, n: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``n[r]`` uniform points in box ``r``, drawn from its owner's generator.

        Returns the points and the box each was drawn in, grouped by owner (in order
        of first appearance), each owner's boxes in order: an owner gets the same
        draws whatever else is in the batch.

        Shapes:
            lo, hi: ``[m, d]``; own, n: ``[m]`` -> ``[sum(n), d]`` and ``[sum(n)]``.
        """
        rows = torch.repeat_interleave(torch.arange(own.shape[0], device=own.device), n)
        parts, order = [lo[:0]], [rows[:0]]
        for b in dict.fromkeys(own[rows].tolist()):
            mine = rows[own[rows] == b]
            u = torch.rand(
                mine.shape[0],
                lo.shape[1],
                generator=self.gens[b],
                dtype=lo.dtype,
                device=lo.device,
            )
            parts.append(lo[mine] + (hi[mine] - lo[mine]) * u)
            order.append(mine)
        return torch.cat(parts), torch.cat(order)

    def __call__(
        self, lo: Tensor, hi: Tensor, own: Tensor, lb: Tensor, A: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Candidates from the bound's minimising corner and PGD.

        Args:
            lo, hi: Subdomain corners (model dtype).
            own: Their owners.
            lb: ``[m, S]`` their lower bounds.
            A: ``[m, S, d]`` the bounds' input coefficients.

        Returns:
            ``(candidates, owners, margins)`` of the candidates that meet the margin
            in the model dtype, in no particular order.
        """
        st = self.state
        boxes, progress = st.boxes, st.progress
        m = lo.shape[0]
        a = A[torch.arange(m, device=st.device), lb.argmin(1)]
        r_lo = torch.maximum(lo, boxes.lo_in[own])  # the subdomain, within the box
        r_hi = torch.minimum(hi, boxes.hi_in[own])
        r_lo = torch.minimum(r_lo, r_hi)
        vertex = torch.where(a > 0, r_lo, r_hi)
        root = progress.fresh[own]
        progress.fresh[own] = False
        cands, rows_all, scores = [], [], []
        for is_root in (True, False):
            sel = torch.nonzero(root == is_root).flatten()
            if sel.numel() == 0:
                continue
            lo_s, hi_s, own_s = r_lo[sel], r_hi[sel], own[sel]
            if is_root:
                centre = torch.minimum(torch.maximum(st.x_flat[own_s], lo_s), hi_s)
                fixed, n_rand = [vertex[sel], centre], self.restarts[own_s]
                steps = self.pgd_steps
            else:
                fixed, steps = [vertex[sel]], self.domain_pgd_steps
                n_rand = torch.ones_like(own_s)
            rand, src = self._random_starts(lo_s, hi_s, own_s, n_rand)
            idx = torch.arange(len(sel), device=st.device).repeat(len(fixed))
            idx = torch.cat([idx, src])
            rows = own_s[idx]
            best, g = self.pgd(
                torch.cat([*fixed, rand]),
                lo_s[idx],
                hi_s[idx],
                rows,
                steps,
                exclude=is_root,
            )
            good = g <= -st.prop.margin
            cands.append(best[good])
            rows_all.append(rows[good])
            scores.append(g[good])
        return torch.cat(cands), torch.cat(rows_all), torch.cat(scores)

    def pgd(
        self, y: Tensor, lo: Tensor, hi: Tensor, rows: Tensor, steps: int, exclude: bool
    ) -> tuple[Tensor, Tensor]:
        """PGD on the margin in ``[lo, hi]`` (minus exclusions): best points, margins.

        A point stops once its margin is below ``-2 margin``, so witnesses stay near
        their (diverse) random starts instead of all running to the same corner. With
        ``exclude=False`` the steps only stay in the box (the acceptance step projects
        and repairs later), which saves the costly projection in deep rounds.
        """
        st, obj = self.state, self.objective
        if exclude:
            project = lambda v: obj.project(v, lo, hi, rows)  # noqa: E731
        else:
            everywhere = torch.ones(y.shape[0], dtype=torch.bool, device=st.device)
            project = lambda v: (torch.minimum(torch.maximum(v, lo), hi), everywhere)  # noqa: E731
        return margin_pgd(
            y,
            project,
            lambda v, grad: obj.margin(v, rows, grad=grad),
            steps,
            decaying_step(hi - lo, steps),
            target=-2 * st.prop.margin - obj.slack,
            freeze=True,
            stop=st.clock.timed_out,
        )
