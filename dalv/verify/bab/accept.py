"""Turning candidates into witnesses: projection, repair, exact re-check, bookkeeping.

Owns: ``Acceptor``; may import: torch, the standard library, ``dalv.verify.{descent,
network, property}``, ``dalv.verify.bab.{falsify, pool, state}``.

Per input, candidates are taken one at a time, best (lowest margin) first: projected
onto the box minus all exclusions (the given ones and those accepted so far), repaired
with a few PGD steps if the projection broke the margin, and re-checked exactly in
float64 (``dalv.verify.property.satisfies``). Accepted witnesses join the exclusions
before the next candidate is examined, so they are pairwise separated.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dalv.verify.bab.falsify import Objective
from dalv.verify.bab.pool import rank_within
from dalv.verify.bab.state import SearchState
from dalv.verify.descent import margin_pgd
from dalv.verify.network import forward64
from dalv.verify.property import satisfies, spec_margin

__all__ = ["Acceptor"]


class Acceptor:
    """Accepts candidates as witnesses (see the module docstring).

    Args:
        state: The search's shared state (its progress and exclusions are updated).
        objective: Margin and projection.
        repair_steps: PGD steps that repair a candidate after projection.
    """

    def __init__(
        self, state: SearchState, objective: Objective, repair_steps: int
    ) -> None:
        self.state, self.objective, self.repair_steps = state, objective, repair_steps

    def __call__(self, cand: Tensor, own: Tensor, score: Tensor) -> None:
        """Per input, take candidates best first; repair, re-check, then exclude.

        Args:
            cand: ``[m, d]`` candidates (model dtype).
            own: ``[m]`` their owners.
            score: ``[m]`` their margins (lower is better).
        """
        st = self.state
        progress = st.progress
        keep = ~progress.done[own]
        cand, own, score = cand[keep], own[keep], score[keep]
        if cand.shape[0] == 0:
            return
        order = torch.argsort(score, stable=True)
        order = order[torch.argsort(own[order], stable=True)]
        cand, own = cand[order], own[order]
        slot = rank_within(own)
        # A few more tries than witnesses still wanted: repairs can fail.
        need = torch.tensor(progress.need(), device=own.device)
        use = slot < 2 * need[own] + 2
        cand, own, slot = cand[use], own[use], slot[use]
        for j in range(int(slot.max()) + 1):
            sel = (slot == j) & ~progress.done[own]
            if not bool(sel.any()):
                continue
            rows = own[sel]
            y, fast_ok = self._repair(cand[sel], rows)
            exact = self._exact_ok(y, rows) & fast_ok
            dropped = rows[fast_ok & ~exact].cpu()
            progress.rejected.index_add_(0, dropped, torch.ones_like(dropped))
            if bool(exact.any()):
                for b, w in zip(rows[exact].tolist(), y[exact], strict=True):
                    progress.found[b].append(w.detach().clone())
                    if len(progress.found[b]) >= progress.k[b]:
                        progress.finish([b])
                st.excl.rebuild(progress.found)
            if st.clock.timed_out():
                return

    def _repair(self, y: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Project onto the box minus exclusions; PGD steps if the margin broke.

        The steps aim at the margin plus the objective's slack (room for the float64
        re-check); a point that meets the margin without it is still returned (the
        best one met along the way), for the exact re-check to decide.
        """
        st, obj = self.state, self.objective
        lo, hi = st.boxes.lo_in[rows], st.boxes.hi_in[rows]
        best, best_g = margin_pgd(
            y,
            lambda v: obj.project(v, lo, hi, rows),
            lambda v, grad: obj.margin(v, rows, grad=grad),
            self.repair_steps,
            lambda t: 0.05 * (hi - lo),
            target=-st.prop.margin - obj.slack,
            freeze=True,
        )
        return best, best_g <= -st.prop.margin

    def _exact_ok(self, y: Tensor, rows: Tensor) -> Tensor:
        """Float64 re-check: box, margin and separation from the current exclusions."""
        st = self.state
        y64 = y.to(torch.float64)
        with torch.no_grad():
            logits = forward64(st.model, y64.view(-1, *st.shape))
        g = spec_margin(st.C64[rows], logits)
        boxes, excl = st.boxes, st.excl
        lo, hi = boxes.lo64[rows], boxes.hi64[rows]
        return satisfies(y64, g, lo, hi, excl.E64[rows], st.prop, excl.mask[rows])
