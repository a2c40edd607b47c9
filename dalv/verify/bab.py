"""The ``lirpa`` backend: batched branch and bound over input boxes.

Owns: ``BranchAndBound`` (state and rounds of the search); may import: torch,
``dalv.verify.{network, bounds, property, results}``, auto_LiRPA through
``dalv.verify.compat`` (only for Conv2d networks).

The search keeps a pool of input boxes ("subdomains"), starting with each input's whole
box, and repeats, batched over the subdomains of all inputs:

1. **Bound.** First the box is shrunk by the exclusions where that is exact: with
   ``every_coord``, a slab ``(a_i - delta, a_i + delta)`` that covers an end of the
   interval of coordinate ``i`` moves that end past it (Marabou's bound tightening
   does the same); a box left empty, or inside an excluded ball (``any_coord``), is
   dropped. Then CROWN lower bounds of the property margins (pure-torch CROWN in
   float64 for Flatten/Linear/ReLU networks; auto_LiRPA CROWN for Conv2d): a
   subdomain whose bound is ``> -margin`` holds no counterexample and is dropped. Only
   infeasible points are ever cut away, so a proof always covers the whole feasible
   set.
2. **Falsify.** Candidates in the surviving subdomains: the corner that minimises
   CROWN's linear lower bound, plus projected-gradient descent (PGD) on the margin from
   random starts (many at the root), projected onto ``subdomain minus exclusions``.
3. **Accept.** Per input, candidates are taken one at a time, best first: projected
   onto the box minus all exclusions (the given ones and those accepted so far),
   repaired with a few PGD steps if the projection broke the margin, and re-checked
   exactly in float64. Accepted witnesses join the exclusions.
4. **Split.** A subdomain is a box plus, optionally, fixed phases of first-layer ReLUs.

   * ReLU splitting (default when the input has more coordinates than the first hidden
     layer has neurons, e.g. MNIST): split the unstable first-layer ReLU with the
     largest ``|lambda_j| * min(u_j, -l_j)`` (its coefficient in the bound times the
     looseness of its relaxation) into ``z_j >= 0`` and ``z_j <= 0``. Since
     ``z_j = W_j x + b_j`` is linear in ``x``, each phase is a half-space; the bound
     uses it through a Lagrange multiplier ``beta_j >= 0``, as beta-CROWN does:
     ``min over the box of A x + c - sum_j beta_j s_j z_j(x)`` is a valid lower bound
     for every ``beta >= 0`` and is maximised over ``beta`` by projected Adam. With
     every first-layer ReLU fixed, a one-hidden-layer network is linear on the
     subdomain and the optimal ``beta`` makes the bound the exact LP value.
   * Input splitting (small inputs, and whenever no unstable first-layer ReLU is left):
     cut the box in two along the coordinate with the largest ``|A_i| * width_i``
     (``A``: the bound's input coefficients). With ``every_coord`` exclusion the
     feasible set is, per coordinate, an interval minus slabs ``(a_i - delta,
     a_i + delta)``, a union of boxes: when a slab crosses the chosen coordinate the cut
     removes it exactly. With ``any_coord`` each excluded point is an open box; a
     subdomain overlapping one is cut at one of its faces first, so that the part
     inside is isolated and dropped.

Input splitting keeps subdomains plain boxes, represents both exclusion rules exactly
and is complete in the limit for any piecewise-linear network (CROWN becomes exact as
boxes shrink), but it scales badly with the input dimension. ReLU splitting on the first
layer scales with the hidden width instead and is complete for the paper's
one-hidden-layer MLP (up to the exclusion slabs, which the input-split fallback then
handles). Deeper layers are not split (their phases are not linear in ``x``), so on
deep networks hard queries can end as "unknown" at the timeout or budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dalv.verify.bounds import (
    LinearBound,
    bounded_module,
    crown_linear_lower,
    input_box,
)
from dalv.verify.compat import import_auto_lirpa
from dalv.verify.network import AffineLayer, affine_relu_layers, forward64
from dalv.verify.property import (
    Separation,
    Target,
    project_feasible,
    property_spec,
    winner_runner_up,
)
from dalv.verify.results import SearchResult, SearchStats, Status

__all__ = ["LirpaConfig", "BranchAndBound"]

# Float32 candidates must beat the margin by this much before the float64 re-check.
_FAST_SLACK = 1e-5
# Added to delta when projecting float32 points (absorbs float32 rounding).
_DELTA_PAD = 1e-6
# A subdomain narrower than this in every coordinate is not split further.
_MIN_WIDTH = 1e-9
# Chunk size of the float64 exclusion tests (subdomains per chunk).
_CHUNK = 256
# Step size of the Adam ascent on the Lagrange multipliers of ReLU phase splits.
_BETA_LR = 0.5


@dataclass(frozen=True)
class LirpaConfig:
    """Knobs of the ``lirpa`` branch and bound (the defaults suit MNIST MLPs on CPU).

    Attributes:
        relu_split: Split first-layer ReLUs before input coordinates (``None``: when
            the input has more coordinates than the first hidden layer has neurons).
        beta_steps: Adam steps on the Lagrange multipliers of ReLU phase splits.
        restarts: Random PGD starts per input at the root (``None``: ``max(8, 2 k)``).
        pgd_steps: PGD steps at the root.
        domain_pgd_steps: PGD steps inside each subdomain after the root.
        repair_steps: PGD steps that repair a candidate after projection.
        batch_domains: Subdomains bounded per round (over all inputs; shared fairly).
        max_live_floats: Cap on stored subdomain corners, in floats (a memory budget).
            When exceeded, the input with the most subdomains stops ("unknown").
        max_bounded_per_input: Subdomains bounded per input (over all its radii)
            before it stops ("unknown").
    """

    relu_split: bool | None = None
    beta_steps: int = 20
    restarts: int | None = None
    pgd_steps: int = 20
    domain_pgd_steps: int = 5
    repair_steps: int = 3
    batch_domains: int = 1024
    max_live_floats: int = 2**25
    max_bounded_per_input: int = 100_000


def _round_up(t64: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast float64 values to ``dtype``, rounding up when inexact."""
    t = t64.to(dtype)
    if dtype == torch.float64:
        return t
    up = torch.nextafter(t, torch.full_like(t, float("inf")))
    return torch.where(t.to(torch.float64) < t64, up, t)


def _round_down(t64: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast float64 values to ``dtype``, rounding down when inexact."""
    t = t64.to(dtype)
    if dtype == torch.float64:
        return t
    down = torch.nextafter(t, torch.full_like(t, -float("inf")))
    return torch.where(t.to(torch.float64) > t64, down, t)


def _concretize(A: Tensor, c: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """``min over lo <= x <= hi`` of ``A x + c`` (A: [m, S, d], boxes: [m, d])."""
    pos = (A.clamp(min=0) @ lo.unsqueeze(-1)).squeeze(-1)
    return c + pos + (A.clamp(max=0) @ hi.unsqueeze(-1)).squeeze(-1)


def _rank_within(sorted_owner: Tensor) -> Tensor:
    """Position of each row among the rows with the same (sorted) owner: 0, 1, 2, ..."""
    first = torch.searchsorted(sorted_owner, sorted_owner)
    return torch.arange(sorted_owner.shape[0], device=sorted_owner.device) - first


@dataclass
class _Pool:
    """Subdomains waiting to be processed (rows of parallel tensors).

    Boxes live in a table shared by the rows: a ReLU split keeps its parent's box, so
    the thousands of subdomains of a ReLU-split search cost a phase vector each, not a
    copy of a 784-dimensional box.
    """

    box_lo: Tensor  # [NB, d] box corners (model dtype, rounded outward)
    box_hi: Tensor  # [NB, d]
    box: Tensor  # [M] row -> box index
    own: Tensor  # [M] input index
    prio: Tensor  # [M] the parent's lower bound (lowest first)
    phase: Tensor  # [M, h] int8 first-layer ReLU phases (h = 0 without ReLU splits)

    def __len__(self) -> int:
        return self.own.shape[0]

    def floats(self) -> int:
        """Memory held, in floats (box table plus rows)."""
        return 2 * self.box_lo.numel() + len(self) * (4 + self.phase.shape[1] // 4)

    def keep(self, mask: Tensor) -> None:
        self.box, self.own, self.prio = self.box[mask], self.own[mask], self.prio[mask]
        self.phase = self.phase[mask]

    def take(self, sel: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Remove rows ``sel``; return their ``lo, hi, own, phase`` and box index."""
        box = self.box[sel]
        out = self.box_lo[box], self.box_hi[box], self.own[sel], self.phase[sel], box
        mask = torch.ones(len(self), dtype=torch.bool, device=self.own.device)
        mask[sel] = False
        self.keep(mask)
        return out

    def add(self, box: Tensor, own: Tensor, prio: Tensor, phase: Tensor) -> None:
        """Add rows on existing boxes."""
        self.box, self.own = torch.cat([self.box, box]), torch.cat([self.own, own])
        self.prio = torch.cat([self.prio, prio])
        self.phase = torch.cat([self.phase, phase])

    def new_boxes(self, lo: Tensor, hi: Tensor) -> Tensor:
        """Append boxes to the table; return their indices."""
        first = self.box_lo.shape[0]
        self.box_lo = torch.cat([self.box_lo, lo])
        self.box_hi = torch.cat([self.box_hi, hi])
        return torch.arange(first, first + lo.shape[0], device=self.box.device)

    def compact(self) -> None:
        """Drop boxes no row refers to (when they are most of the table)."""
        used, remap = torch.unique(self.box, return_inverse=True)
        if used.numel() * 2 < self.box_lo.shape[0]:
            self.box_lo, self.box_hi = self.box_lo[used], self.box_hi[used]
            self.box = remap


@dataclass(frozen=True)
class _Bounds:
    """Bounds of a batch of subdomains (all float64)."""

    lower: Tensor  # [m, S]
    A: Tensor  # [m, S, d] input coefficients of the (beta-adjusted) linear bound
    hidden: Tensor | None  # [m, S, h] coefficients on the first ReLU layer
    pre_lo: Tensor | None  # [m, h] first-layer pre-activation bounds
    pre_hi: Tensor | None
    safety: float  # relative margin a proof must clear (rounding of the bound)

    def select(self, mask: Tensor) -> _Bounds:
        opt = (self.hidden, self.pre_lo, self.pre_hi)
        pick = [None if t is None else t[mask] for t in opt]
        return _Bounds(self.lower[mask], self.A[mask], *pick, self.safety)

    @staticmethod
    def cat(parts: list[_Bounds]) -> _Bounds:
        def join(name: str) -> Tensor | None:
            first = getattr(parts[0], name)
            if first is None:
                return None
            return torch.cat([getattr(p, name) for p in parts])

        names = ("lower", "A", "hidden", "pre_lo", "pre_hi")
        joined = [join(n) for n in names]
        return _Bounds(*joined, parts[0].safety)  # type: ignore[arg-type]


class BranchAndBound:
    """State and rounds of the batched counterexample search (see the module docstring).

    Args:
        model: The network (Flatten/Linear/ReLU/Conv2d ``nn.Sequential``).
        xs: Inputs on the model's device, in its dtype, ``[B, *input_shape]``.
        eps: Radii ``[B]`` (float64).
        k: Counterexamples wanted, for all inputs or per input ``[B]``.
        excludes: Earlier counterexamples per input, ``[n_b, *input_shape]`` each.
        target: "runner_up" or "any".
        separation: "every_coord" or "any_coord".
        delta: Exclusion distance.
        margin: Required margin.
        timeout: Seconds for the whole search (``None``: budgets only).
        seed: Seed of the random PGD starts.
        config: Knobs.
        grow_eps: If set, an input whose box is proved to hold no (further)
            counterexample restarts on the box of radius ``eps + grow_eps``, until the
            radius would exceed ``max_eps`` (the paper's FV-Adv schedule).
        max_eps: See ``grow_eps``.
    """

    def __init__(
        self,
        model: nn.Module,
        xs: Tensor,
        eps: Tensor,
        k: int | Tensor,
        excludes: list[Tensor],
        *,
        target: Target,
        separation: Separation,
        delta: float,
        margin: float,
        timeout: float | None,
        seed: int,
        config: LirpaConfig,
        grow_eps: float | None = None,
        max_eps: float = 1.0,
    ) -> None:
        self.t0 = time.monotonic()
        self.deadline = None if timeout is None else self.t0 + timeout
        self.model, self.cfg = model, config
        self.k = [int(k)] * xs.shape[0] if isinstance(k, int) else [int(v) for v in k]
        self.grow_eps, self.max_eps = grow_eps, max_eps
        self.separation, self.delta, self.margin = separation, delta, margin
        self.device, self.dtype = xs.device, xs.dtype
        self._f64 = dict(dtype=torch.float64, device=xs.device)
        self.shape = tuple(xs.shape[1:])
        self.B, self.d = xs.shape[0], int(math.prod(self.shape))
        with torch.no_grad():
            logits = model(xs)
        self.c1, self.c2 = winner_runner_up(logits)
        self.C = property_spec(self.c1, self.c2, target, logits.shape[-1], self.dtype)
        self.C64 = self.C.to(torch.float64)
        self.xs, self.x_flat = xs, xs.flatten(1)
        self.eps = eps.to(**self._f64).clone()
        self.lo64, self.hi64, self.lo_in, self.hi_in = self._boxes(self.xs, self.eps)
        self.layers: list[AffineLayer] | None
        try:
            self.layers = affine_relu_layers(model, dtype=torch.float64, who="lirpa")
        except ValueError:
            self.layers = None  # Conv2d: bound with auto_LiRPA
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.excl64 = [e.flatten(1).to(torch.float64) for e in excludes]
        self.found: list[list[Tensor]] = [[] for _ in range(self.B)]
        self.done = torch.zeros(self.B, dtype=torch.bool, device=self.device)
        self.cut_short = torch.zeros(self.B, dtype=torch.bool, device=self.device)
        self.finish = [0.0] * self.B
        self.calls = torch.zeros(self.B, dtype=torch.long)
        self.bounded = torch.zeros(self.B, dtype=torch.long)
        self.rejected = torch.zeros(self.B, dtype=torch.long)
        self._rebuild_exclusions()
        h = 0
        if self.layers is not None and len(self.layers) > 1:
            h = self.layers[0].weight.shape[0]
        relu = self.cfg.relu_split
        self.relu_split = h > 0 and (self.d > h if relu is None else relu)
        # The pool of subdomains: outward-rounded boxes in the model dtype, their
        # owner, priority (the parent's bound) and first-layer ReLU phases (+1, -1, 0).
        self.pool = _Pool(
            _round_down(self.lo64, self.dtype),
            _round_up(self.hi64, self.dtype),
            torch.arange(self.B, device=self.device),
            torch.arange(self.B, device=self.device),
            torch.full((self.B,), -math.inf, **self._f64),
            torch.zeros(self.B, h * self.relu_split, dtype=torch.int8).to(xs.device),
        )
        # Inputs whose root box has not been searched yet (they get the PGD restarts).
        self.fresh = torch.ones(self.B, dtype=torch.bool, device=self.device)

    @staticmethod
    def _boxes(xs: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The float64 boxes (flattened) and their inward-rounded model-dtype copies."""
        lo64, hi64 = input_box(xs, eps, rounding="exact")
        lo_in, hi_in = input_box(xs, eps, rounding="inward")
        return lo64.flatten(1), hi64.flatten(1), lo_in.flatten(1), hi_in.flatten(1)

    def _grow(self, owners: list[int]) -> list[int]:
        """Restart proved inputs on a larger box; return the rest."""
        if self.grow_eps is None:
            return owners
        grow = [
            b
            for b in owners
            if not bool(self.cut_short[b])
            and float(self.eps[b]) + self.grow_eps <= self.max_eps + 1e-12
        ]
        if grow:
            rows = torch.tensor(grow, device=self.device)
            self.eps[rows] += self.grow_eps
            boxes = self._boxes(self.xs[rows], self.eps[rows])
            tables = (self.lo64, self.hi64, self.lo_in, self.hi_in)
            for table, new in zip(tables, boxes):
                table[rows] = new
            ids = self.pool.new_boxes(
                _round_down(self.lo64[rows], self.dtype),
                _round_up(self.hi64[rows], self.dtype),
            )
            phase = torch.zeros(len(grow), self.pool.phase.shape[1], dtype=torch.int8)
            prio = torch.full((len(grow),), -math.inf, **self._f64)
            self.pool.add(ids, rows, prio, phase.to(self.device))
            self.fresh[rows] = True
        return [b for b in owners if b not in grow]

    # ---- bookkeeping --------------------------------------------------------------

    def _timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _rebuild_exclusions(self) -> None:
        """Padded exclusions: ``E64 [B, n, d]`` (float64), ``E`` (model dtype), mask."""
        lists = []
        for b in range(self.B):
            new = [f.flatten().to(torch.float64)[None] for f in self.found[b]]
            lists.append(torch.cat([self.excl64[b], *new]))
        n = max(t.shape[0] for t in lists)
        self.E64 = torch.zeros(self.B, n, self.d, **self._f64)
        self.Emask = torch.zeros(self.B, n, dtype=torch.bool, device=self.device)
        for b, t in enumerate(lists):
            self.E64[b, : t.shape[0]] = t
            self.Emask[b, : t.shape[0]] = True
        self.E = self.E64.to(self.dtype)

    def _finish(self, owners: list[int]) -> None:
        now = time.monotonic() - self.t0
        for b in owners:
            if not bool(self.done[b]):
                self.done[b] = True
                self.finish[b] = now

    # ---- margins, checks, projection -------------------------------------------------

    def _margin(
        self, y: Tensor, rows: Tensor, grad: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Property margin ``min_s (C f(y))_s`` in the model dtype, and its gradient."""
        with torch.enable_grad() if grad else torch.no_grad():
            y = y.detach().requires_grad_(grad)
            logits = self.model(y.view(-1, *self.shape))
            g = (self.C[rows] @ logits.unsqueeze(-1)).squeeze(-1).min(-1).values
            if not grad:
                return g.detach(), None
            (dg,) = torch.autograd.grad(g.sum(), y)
        return g.detach(), dg

    def _exact_ok(self, y: Tensor, rows: Tensor) -> Tensor:
        """Float64 re-check: box, margin and separation from the current exclusions."""
        y64 = y.to(torch.float64)
        ok = ((y64 >= self.lo64[rows]) & (y64 <= self.hi64[rows])).all(-1)
        with torch.no_grad():
            logits = forward64(self.model, y64.view(-1, *self.shape))
        g = (self.C64[rows] @ logits.unsqueeze(-1)).squeeze(-1).min(-1).values
        ok &= g <= -self.margin
        if self.E64.shape[1]:
            far = (y64[:, None, :] - self.E64[rows]).abs() >= self.delta
            per = far.all(-1) if self.separation == "every_coord" else far.any(-1)
            ok &= (per | ~self.Emask[rows]).all(-1)
        return ok

    def _project(
        self, y: Tensor, lo: Tensor, hi: Tensor, rows: Tensor
    ) -> tuple[Tensor, Tensor]:
        return project_feasible(
            y,
            lo,
            hi,
            self.E[rows],
            self.Emask[rows],
            separation=self.separation,
            delta=self.delta + _DELTA_PAD,
        )

    def _tighten(
        self, lo: Tensor, hi: Tensor, own: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Shrink boxes to what the exclusions leave; flag the boxes left empty.

        every_coord: a slab ``(a_i - delta, a_i + delta)`` that covers an end of the
        interval ``[lo_i, hi_i]`` moves that end past the slab (as Marabou's bound
        tightening does); repeated until nothing moves. Only infeasible points are
        cut, so proofs on the shrunk box still cover the whole feasible set.
        any_coord: a box inside an excluded open ball is empty.

        Returns:
            ``(lo, hi, empty)``; the corners are rounded outward in the model dtype.
        """
        empty = torch.zeros(lo.shape[0], dtype=torch.bool, device=self.device)
        if self.E64.shape[1] == 0:
            return lo, hi, empty
        lo, hi = lo.clone(), hi.clone()
        for s in range(0, lo.shape[0], _CHUNK):
            sl = slice(s, s + _CHUNK)
            a, live = self.E64[own[sl]], self.Emask[own[sl]][:, :, None]
            l, h = lo[sl].double(), hi[sl].double()
            if self.separation == "any_coord":
                inside = (l[:, None] > a - self.delta) & (h[:, None] < a + self.delta)
                empty[sl] = (inside.all(-1) & live[..., 0]).any(-1)
                continue
            below, above = a - self.delta, a + self.delta
            for _ in range(a.shape[1]):
                cover_lo = live & (below < l[:, None]) & (above > l[:, None])
                cover_hi = live & (below < h[:, None]) & (above > h[:, None])
                if not bool(cover_lo.any() or cover_hi.any()):
                    break
                l = torch.maximum(l, torch.where(cover_lo, above, -math.inf).amax(1))
                h = torch.minimum(h, torch.where(cover_hi, below, math.inf).amin(1))
            empty[sl] = (l > h).any(-1)
            lo[sl] = torch.maximum(lo[sl], _round_down(l, self.dtype))
            hi[sl] = torch.minimum(hi[sl], _round_up(h, self.dtype))
        return lo, hi, empty

    # ---- falsifier and acceptance --------------------------------------------------

    def _pgd(
        self, y: Tensor, lo: Tensor, hi: Tensor, rows: Tensor, steps: int, exclude: bool
    ) -> tuple[Tensor, Tensor]:
        """PGD on the margin in ``[lo, hi]`` (minus exclusions): best points, margins.

        A point stops once its margin is below ``-2 margin``, so witnesses stay near
        their (diverse) random starts instead of all running to the same corner. With
        ``exclude=False`` the steps only stay in the box (the acceptance step projects
        and repairs later), which saves the costly projection in deep rounds.
        """
        best = y.clone()
        best_g = torch.full((y.shape[0],), math.inf, dtype=self.dtype, device=y.device)
        frozen = torch.zeros(y.shape[0], dtype=torch.bool, device=self.device)
        width = hi - lo
        everywhere = torch.ones_like(frozen)
        for t in range(steps + 1):
            if exclude:
                y, feasible = self._project(y, lo, hi, rows)
            else:
                y, feasible = torch.minimum(torch.maximum(y, lo), hi), everywhere
            g, dg = self._margin(y, rows, grad=t < steps)
            better = feasible & (g < best_g) & ~frozen
            best[better], best_g[better] = y[better], g[better]
            frozen |= feasible & (g <= -2 * self.margin - _FAST_SLACK)
            if t == steps or bool(frozen.all()) or self._timed_out():
                break
            step = (0.25 * (1 - t / steps) + 0.02) * width
            y = torch.where(frozen[:, None], y, y - step * dg.sign())
        return best, best_g

    def _repair(self, y: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Project onto the box minus exclusions; PGD steps if the margin broke."""
        lo, hi = self.lo_in[rows], self.hi_in[rows]
        ok = torch.zeros(y.shape[0], dtype=torch.bool, device=self.device)
        for r in range(self.cfg.repair_steps + 1):
            y, feasible = self._project(y, lo, hi, rows)
            g, dg = self._margin(y, rows, grad=r < self.cfg.repair_steps)
            ok = feasible & (g <= -self.margin - _FAST_SLACK)
            if r == self.cfg.repair_steps or bool(ok.all()):
                break
            y = torch.where(ok[:, None], y, y - 0.05 * (hi - lo) * dg.sign())
        return y, ok

    def _accept(self, cand: Tensor, own: Tensor, score: Tensor) -> None:
        """Per input, take candidates best first; repair, re-check, then exclude."""
        keep = ~self.done[own]
        cand, own, score = cand[keep], own[keep], score[keep]
        if cand.shape[0] == 0:
            return
        order = torch.argsort(score, stable=True)
        order = order[torch.argsort(own[order], stable=True)]
        cand, own = cand[order], own[order]
        slot = _rank_within(own)
        need = [k - len(f) for k, f in zip(self.k, self.found)]
        need = torch.tensor(need, device=own.device)
        use = slot < 2 * need[own] + 2
        cand, own, slot = cand[use], own[use], slot[use]
        for j in range(int(slot.max()) + 1):
            sel = (slot == j) & ~self.done[own]
            if not bool(sel.any()):
                continue
            rows = own[sel]
            y, fast_ok = self._repair(cand[sel], rows)
            exact = self._exact_ok(y, rows) & fast_ok
            dropped = rows[fast_ok & ~exact].cpu()
            self.rejected.index_add_(0, dropped, torch.ones_like(dropped))
            if bool(exact.any()):
                for b, w in zip(rows[exact].tolist(), y[exact]):
                    self.found[b].append(w.detach().clone())
                    if len(self.found[b]) >= self.k[b]:
                        self._finish([b])
                self._rebuild_exclusions()
            if self._timed_out():
                return

    def _falsify(
        self, lo: Tensor, hi: Tensor, own: Tensor, lb: Tensor, A: Tensor
    ) -> None:
        """Candidates from the bound's minimising corner and PGD, then acceptance."""
        m = lo.shape[0]
        a = A[torch.arange(m, device=self.device), lb.argmin(1)]
        r_lo = torch.maximum(lo, self.lo_in[own])  # the subdomain, within the box
        r_hi = torch.minimum(hi, self.hi_in[own])
        r_lo = torch.minimum(r_lo, r_hi)
        vertex = torch.where(a > 0, r_lo, r_hi)
        root = self.fresh[own]
        self.fresh[own] = False
        cands, rows_all, scores = [], [], []
        for is_root in (True, False):
            sel = torch.nonzero(root == is_root).flatten()
            if sel.numel() == 0:
                continue
            lo_s, hi_s, own_s = r_lo[sel], r_hi[sel], own[sel]
            if is_root:
                n = self.cfg.restarts
                n = max(8, 2 * max(self.k)) if n is None else n
                centre = torch.minimum(torch.maximum(self.x_flat[own_s], lo_s), hi_s)
                fixed, n_rand, steps = [vertex[sel], centre], n, self.cfg.pgd_steps
            else:
                fixed, n_rand, steps = [vertex[sel]], 1, self.cfg.domain_pgd_steps
            rl, rh = lo_s.repeat(n_rand, 1), hi_s.repeat(n_rand, 1)
            gen, dev = self.gen, rl.device
            u = torch.rand(rl.shape, generator=gen, dtype=rl.dtype, device=dev)
            n_starts = len(fixed) + n_rand
            rows = own_s.repeat(n_starts)
            best, g = self._pgd(
                torch.cat([*fixed, rl + (rh - rl) * u]),
                lo_s.repeat(n_starts, 1),
                hi_s.repeat(n_starts, 1),
                rows,
                steps,
                exclude=is_root,
            )
            good = g <= -self.margin - _FAST_SLACK
            cands.append(best[good])
            rows_all.append(rows[good])
            scores.append(g[good])
        self._accept(torch.cat(cands), torch.cat(rows_all), torch.cat(scores))

    # ---- bounds ----------------------------------------------------------------------

    def _bound(self, lo: Tensor, hi: Tensor, own: Tensor, phase: Tensor) -> _Bounds:
        """CROWN (plus beta for ReLU phases) lower bounds of a batch of subdomains."""
        if self.layers is None:
            return self._bound_lirpa(lo, hi, own)
        hidden = [2 * layer.weight.shape[0] for layer in self.layers[1:-1]]
        chunk = max(1, 2**24 // (max([self.C.shape[1], *hidden]) * self.d))
        lo, hi = lo.double(), hi.double()
        parts = []
        for s in range(0, lo.shape[0], chunk):
            sl = slice(s, s + chunk)
            parts.append(self._bound_affine(lo[sl], hi[sl], own[sl], phase[sl]))
        return _Bounds.cat(parts)

    def _bound_affine(
        self, lo: Tensor, hi: Tensor, own: Tensor, phase: Tensor
    ) -> _Bounds:
        layers = self.layers
        assert layers is not None
        split = phase.double() if phase.shape[1] else None
        res = crown_linear_lower(layers, lo, hi, self.C64[own], split)
        lower, A = res.lower, res.A
        if split is not None and bool((split != 0).any()):
            lower, A = self._optimise_beta(res, lo, hi, split)
        pre_lo, pre_hi = res.pre if res.pre is not None else (None, None)
        if pre_lo is not None:  # a phase the box cannot take: an empty subdomain
            empty = (pre_lo > pre_hi).any(1)
            lower = torch.where(empty[:, None], math.inf, lower)
        return _Bounds(lower, A, res.hidden, pre_lo, pre_hi, 1e-9)

    def _optimise_beta(
        self, res: LinearBound, lo: Tensor, hi: Tensor, split: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Maximise ``min_box A x + c - sum_j beta_j s_j z_j(x)`` over ``beta >= 0``.

        ``s_j z_j(x) >= 0`` holds on the subdomain for every split ReLU ``j``, so every
        ``beta >= 0`` gives a valid lower bound. The ascent runs in float32 (it only
        has to find a good ``beta``); the bound at the best ``beta`` is then evaluated
        once more in float64, and the larger of it and the plain CROWN bound is kept.
        """
        assert self.layers is not None
        f32 = torch.float32
        w1, b1 = self.layers[0].weight.to(f32), self.layers[0].bias.to(f32)
        a0, c0 = res.A.to(f32), res.c.to(f32)
        lo3, hi3 = lo.to(f32)[:, None, :], hi.to(f32)[:, None, :]
        s = split.to(f32)[:, None, :]
        beta = torch.zeros(*res.A.shape[:2], split.shape[1], dtype=f32).to(lo.device)
        m1, m2 = torch.zeros_like(beta), torch.zeros_like(beta)
        best, best_beta = torch.full_like(c0, -math.inf), beta
        for t in range(1, self.cfg.beta_steps + 1):
            # Projected Adam ascent, written out. The bound is min over the box of a
            # linear function, so its gradient in beta_j is -s_j z_j(x*) at the
            # minimising corner x*.
            bs = beta * s
            A = a0 - bs @ w1
            corner = torch.where(A > 0, lo3, hi3)  # [m, S, d]
            lower = (A * corner).sum(-1) + c0 - bs @ b1
            better = lower > best
            best = torch.where(better, lower, best)
            best_beta = torch.where(better[..., None], beta, best_beta)
            grad = -s * (corner @ w1.T + b1)
            m1 = 0.9 * m1 + 0.1 * grad
            m2 = 0.999 * m2 + 0.001 * grad**2
            step = (m1 / (1 - 0.9**t)) / ((m2 / (1 - 0.999**t)).sqrt() + 1e-12)
            beta = (beta + _BETA_LR * step).clamp(min=0)
        layer = self.layers[0]
        bs = best_beta.double() * split[:, None, :]
        A = res.A - bs @ layer.weight
        lower = _concretize(A, res.c - bs @ layer.bias, lo, hi)
        better = lower > res.lower
        best_A = torch.where(better[..., None], A, res.A)
        return torch.where(better, lower, res.lower), best_A

    def _bound_lirpa(self, lo: Tensor, hi: Tensor, own: Tensor) -> _Bounds:
        """auto_LiRPA CROWN for networks with Conv2d (input splitting only)."""
        lirpa = import_auto_lirpa()
        bm = bounded_module(self.model, self.shape, self.device)
        lo_t, hi_t = lo.view(-1, *self.shape), hi.view(-1, *self.shape)
        ptb = lirpa.PerturbationLpNorm(norm=math.inf, x_L=lo_t, x_U=hi_t)
        out, inp = bm.output_name[0], bm.input_name[0]
        with torch.no_grad():
            lb, _, A = bm.compute_bounds(
                x=(lirpa.BoundedTensor((lo_t + hi_t) / 2, ptb),),
                C=self.C[own],
                method="CROWN",
                bound_upper=False,
                return_A=True,
                needed_A_dict={out: [inp]},
            )
        coeff = A[out][inp]["lA"].reshape(lo.shape[0], self.C.shape[1], self.d)
        lower, coeff = lb.detach().double(), coeff.detach().double()
        return _Bounds(lower, coeff, None, None, None, 1e-4)

    # ---- splitting -----------------------------------------------------------------

    def _split_relu(
        self, bnd: _Bounds, unresolved: Tensor, phase: Tensor
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
        self, lo: Tensor, hi: Tensor, own: Tensor, score: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Cut each box in two (see the module docstring for where).

        Returns:
            The children's ``lo``, ``hi`` and parent index, and a mask of the boxes
            too narrow to split.
        """
        m = lo.shape[0]
        ar = torch.arange(m, device=self.device)
        width = (hi - lo).double()
        score = torch.where(width > _MIN_WIDTH, score + 1e-12 * width, -1.0)
        n = self.E64.shape[1]
        if self.separation == "any_coord" and n:
            score = self._prefer_ball_faces(lo, hi, own, score)
        dim = score.argmax(1)
        splittable = score[ar, dim] > 0
        l_i, h_i = lo[ar, dim].double(), hi[ar, dim].double()
        mid = (l_i + h_i) / 2
        left_hi, right_lo = mid.clone(), mid.clone()
        if n:
            cols = torch.arange(n, device=self.device)[None, :]
            a = self.E64[own[:, None], cols, dim[:, None]]  # [m, n]
            # Edges as the children will store them (rounded outward); an edge counts
            # only if strictly inside the interval, so a slab once cut stays cut.
            e_lo = _round_up(a - self.delta, self.dtype).double()
            e_hi = _round_down(a + self.delta, self.dtype).double()
            live = self.Emask[own]
            if self.separation == "every_coord":
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
                left_hi = torch.where(has, faces[ar, j], left_hi)
                right_lo = left_hi.clone()
        left_ok = splittable & (left_hi >= l_i)
        right_ok = splittable & (right_lo <= h_i)
        lo_l, hi_l = lo.clone(), hi.clone()
        hi_l[ar, dim] = torch.minimum(_round_up(left_hi, self.dtype), hi[ar, dim])
        lo_r, hi_r = lo.clone(), hi.clone()
        lo_r[ar, dim] = torch.maximum(_round_down(right_lo, self.dtype), lo[ar, dim])
        parent = torch.cat([ar[left_ok], ar[right_ok]])
        new_lo = torch.cat([lo_l[left_ok], lo_r[right_ok]])
        new_hi = torch.cat([hi_l[left_ok], hi_r[right_ok]])
        return new_lo, new_hi, parent, ~splittable

    def _prefer_ball_faces(
        self, lo: Tensor, hi: Tensor, own: Tensor, score: Tensor
    ) -> Tensor:
        """any_coord: a box overlapping an excluded ball is cut at one of its faces."""
        out = score.clone()
        for s in range(0, lo.shape[0], _CHUNK):
            sl = slice(s, s + _CHUNK)
            a = self.E64[own[sl]]
            l, h = lo[sl].double()[:, None], hi[sl].double()[:, None]
            overlap = ((l < a + self.delta) & (h > a - self.delta)).all(-1)
            overlap &= self.Emask[own[sl]]
            face_inside = ((a - self.delta > l) & (a - self.delta < h)) | (
                (a + self.delta > l) & (a + self.delta < h)
            )
            cuttable = (face_inside & overlap[:, :, None]).any(1)  # [chunk, d]
            boost = cuttable.any(-1, keepdim=True)
            boosted = torch.where(cuttable, score[sl] + 1.0, -0.5)
            out[sl] = torch.where(boost, boosted, score[sl])
        return out

    def _split(
        self,
        lo: Tensor,
        hi: Tensor,
        own: Tensor,
        phase: Tensor,
        box: Tensor,
        bnd: _Bounds,
        unresolved: Tensor,
    ) -> None:
        """Split the surviving subdomains and put the children in the pool."""
        prio = bnd.lower.min(1).values
        by_relu = torch.zeros(lo.shape[0], dtype=torch.bool, device=self.device)
        if self.relu_split:
            j, by_relu = self._split_relu(bnd, unresolved, phase)
            r = torch.nonzero(by_relu).flatten()
            if r.numel():
                up, down = phase[r].clone(), phase[r].clone()
                up[torch.arange(r.numel(), device=self.device), j[r]] = 1
                down[torch.arange(r.numel(), device=self.device), j[r]] = -1
                two = torch.cat([r, r])
                self.pool.add(box[two], own[two], prio[two], torch.cat([up, down]))
        rest = torch.nonzero(~by_relu).flatten()
        if rest.numel():
            a = bnd.A[rest]
            score = (a.abs() * unresolved[rest].unsqueeze(-1)).sum(1)
            score = score * (hi[rest] - lo[rest]).double()
            lo_r, hi_r, own_r = lo[rest], hi[rest], own[rest]
            n_lo, n_hi, parent, stuck = self._split_input(lo_r, hi_r, own_r, score)
            self.cut_short[own_r[stuck]] = True
            p = rest[parent]
            self.pool.add(self.pool.new_boxes(n_lo, n_hi), own[p], prio[p], phase[p])

    # ---- rounds ----------------------------------------------------------------------

    def _select(self) -> Tensor:
        """Indices of the pool to process: lowest bound first, fair shares per input."""
        idx = torch.nonzero(~self.done[self.pool.own]).flatten()
        if idx.numel() == 0:
            return idx
        n_inputs = int(torch.unique(self.pool.own[idx]).numel())
        cap = max(1, math.ceil(self.cfg.batch_domains / n_inputs))
        idx = idx[torch.argsort(self.pool.prio[idx], stable=True)]
        idx = idx[torch.argsort(self.pool.own[idx], stable=True)]
        return idx[_rank_within(self.pool.own[idx]) < cap]

    def _step(self) -> None:
        """One round: bound, prune, falsify, split."""
        self.pool.keep(~self.done[self.pool.own])
        lo, hi, own, phase, box = self.pool.take(self._select())
        if lo.shape[0]:
            lo, hi, empty = self._tighten(lo, hi, own)
            self.pool.box_lo[box], self.pool.box_hi[box] = lo, hi
            bnd = self._bound(lo, hi, own, phase)
            self.calls[torch.unique(own).cpu()] += 1
            self.bounded.index_add_(0, own.cpu(), torch.ones_like(own.cpu()))
            unresolved = bnd.lower <= -self.margin + bnd.safety * (1 + bnd.lower.abs())
            keep = unresolved.any(1) & ~empty
            if bool(keep.any()):
                kept = bnd.select(keep)
                self._falsify(lo[keep], hi[keep], own[keep], kept.lower, kept.A)
            keep &= ~self.done[own]
            if bool(keep.any()):
                args = (lo[keep], hi[keep], own[keep], phase[keep], box[keep])
                self._split(*args, bnd.select(keep), unresolved[keep])
        self._enforce_budgets()
        counts = torch.bincount(self.pool.own, minlength=self.B)
        proved = torch.nonzero((counts == 0) & ~self.done).flatten().tolist()
        self._finish(self._grow(proved))

    def _enforce_budgets(self) -> None:
        over = self.bounded.to(self.device) > self.cfg.max_bounded_per_input
        over &= ~self.done
        if bool(over.any()):
            stop = torch.nonzero(over).flatten()
            self.cut_short[stop] = True
            self._finish(stop.tolist())
        self.pool.compact()
        while self.pool.floats() > self.cfg.max_live_floats and len(self.pool):
            b = int(torch.bincount(self.pool.own, minlength=self.B).argmax())
            self.cut_short[b] = True
            self._finish([b])
            self.pool.keep(self.pool.own != b)
            self.pool.compact()

    def run(self) -> list[SearchResult]:
        """Run rounds until every input is finished or time is up; build the results."""
        while bool((~self.done).any()) and not self._timed_out():
            self._step()
        now = time.monotonic() - self.t0
        results = []
        for b in range(self.B):
            timed_out = not bool(self.done[b])
            reached_k = len(self.found[b]) >= self.k[b]
            exhausted = not (timed_out or reached_k or bool(self.cut_short[b]))
            if self.found[b]:
                cex = torch.stack(self.found[b]).view(-1, *self.shape)
            else:
                cex = torch.empty(0, *self.shape, device=self.device, dtype=self.dtype)
            status: Status = "unsat" if exhausted else "unknown"
            if self.found[b]:
                status = "sat"
            stats = SearchStats(
                calls=int(self.calls[b]),
                subdomains=int(self.bounded[b]),
                seconds=float(now if timed_out else self.finish[b]),
                rejected=int(self.rejected[b]),
                timed_out=timed_out,
            )
            c1, c2 = int(self.c1[b]), int(self.c2[b])
            eps = float(self.eps[b])
            results.append(SearchResult(status, cex, stats, exhausted, c1, c2, eps))
        return results
