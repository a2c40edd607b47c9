"""The rounds of the branch and bound: select, bound, falsify, accept, split, repeat.

Owns: ``BranchAndBound`` (rounds, budgets, radius growth, results); may import: torch,
the standard library, ``dalv.verify.{network, query, results}``,
``dalv.verify.bab.*``.

The search keeps a pool of subdomains, starting with each input's whole box, and
repeats, batched over the subdomains of all inputs:

1. **Select** up to ``batch_domains`` subdomains per input, lowest bound first, never
   more than the input's remaining work (``pool.select``).
2. **Bound** them after tightening them by the exclusions (``branching``,
   ``bounding``): a subdomain whose bound is ``> -margin`` by more than the bound's
   rounding allowance holds no counterexample and is dropped.
3. **Falsify** in the survivors (``falsify``) and **accept** the candidates that pass
   the exact re-check (``accept``).
4. **Split** the survivors of inputs that still need witnesses (``branching``).

An input is finished when it has ``k`` witnesses, when its pool is empty (a proof that
its box holds no further counterexample; under a ``Schedule`` the box then grows and
the search goes on), or when a budget stops it: ``Budget.work`` subdomains bounded
(exactly: an input never bounds more; ``None``: no limit), the memory cap
``max_live_floats``, or the wall clock ``Budget.seconds`` (the whole call). Deeper
layers are not split, so on deep networks hard queries can end as "unknown" at the
budget.

Networks: a Flatten/Linear/ReLU network is bounded by the pure-torch CROWN of
``dalv.verify.crown`` (its leading ReLU-free affine layers folded into one, so that the
first ReLU layer's phases are half-spaces of the input); a network with ``Conv2d`` by
auto_LiRPA on a float64 twin (input splitting only). Anything else is rejected.

Each input's search is independent of its batch-mates: its quota per round, its random
PGD starts (one generator per input, seeded by ``seed``) and its budget are its own, so
a batch returns what one call per input returns. Only the wall clock and the memory
cap are shared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from dalv.verify.bab.accept import Acceptor
from dalv.verify.bab.bounding import Bounder
from dalv.verify.bab.branching import Brancher
from dalv.verify.bab.falsify import Falsifier, Objective
from dalv.verify.bab.pool import Pool, select
from dalv.verify.bab.state import Clock, SearchState
from dalv.verify.network import affine_relu_layers, check_model, fold_leading_affine
from dalv.verify.query import Query
from dalv.verify.results import SearchResult, SearchStats, Status

if TYPE_CHECKING:
    from dalv.verify.bab.backend import LirpaVerifier

__all__ = ["BranchAndBound"]


class BranchAndBound:
    """One batched search (see the module docstring); ``run`` returns the results.

    Args:
        config: The backend's knobs (a ``LirpaVerifier``).
        query: The question (``dalv.verify.query.Query``): exact inputs on the model's
            device, radii, ``k`` and exclusions per input, property, budget
            (``work``: subdomains bounded per input, over all its radii; ``seconds``:
            the whole search), schedule (an input whose box is proved to hold no
            further counterexample restarts on the box of radius ``eps + step``, as
            long as it stays ``<= max_eps``) and the seed of the random PGD starts.
    """

    def __init__(self, config: LirpaVerifier, query: Query) -> None:
        model, budget, seed = query.model, query.budget, query.seed
        self.config, self.schedule = config, query.schedule
        self.max_work = budget.work
        clock = Clock(budget.seconds)
        layers = None
        leaves = check_model(model, who="the lirpa backend")
        if not any(isinstance(layer, nn.Conv2d) for layer in leaves):
            # Flatten/Linear/ReLU: pure-torch CROWN (a bad structure raises here);
            # with Conv2d: auto_LiRPA bounds, input splitting only.
            layers = affine_relu_layers(model, dtype=torch.float64, who="lirpa")
            layers = fold_leading_affine(layers)
        self.state = st = SearchState.build(query, clock)
        h = 0
        if layers is not None and len(layers) > 1:
            h = layers[0].weight.shape[0]
        relu = config.relu_split
        relu_split = h > 0 and (st.d > h if relu is None else relu)
        # The pool of subdomains: outward-rounded boxes in the model dtype, their
        # owner, priority (the parent's bound) and first-layer ReLU phases (+1, -1, 0).
        self.pool = Pool.of_roots(*st.boxes.outward(), h * relu_split)
        self.bound = Bounder(st, layers, config.beta_steps)
        self.brancher = Brancher(st, relu_split)
        objective = Objective(st)
        self.falsify = Falsifier(
            st,
            objective,
            config.restarts,
            config.pgd_steps,
            config.domain_pgd_steps,
            seed,
        )
        self.accept = Acceptor(st, objective, config.repair_steps)

    def run(self) -> list[SearchResult]:
        """Run rounds until every input is finished or time is up; build the results."""
        progress, clock = self.state.progress, self.state.clock
        while bool((~progress.done).any()) and not clock.timed_out():
            self._step()
        return self._results(clock.elapsed())

    def _step(self) -> None:
        """One round: select, tighten, bound, prune, falsify, accept, split."""
        st, pool = self.state, self.pool
        progress = st.progress
        pool.keep(~progress.done[pool.own])
        room = None
        if self.max_work is not None:
            room = self.max_work - progress.bounded
        lo, hi, own, phase, box = pool.take(
            select(pool, progress.done, self.config.batch_domains, room)
        )
        if lo.shape[0]:
            lo, hi, empty = self.brancher.tighten(lo, hi, own, pool.box_open[box])
            pool.box_lo[box], pool.box_hi[box] = lo, hi
            bnd = self.bound(lo, hi, own, phase)
            progress.calls[torch.unique(own).cpu()] += 1
            progress.bounded.index_add_(0, own.cpu(), torch.ones_like(own.cpu()))
            # A proof must clear the margin by the bound's rounding allowance.
            unresolved = bnd.lower <= -st.prop.margin + bnd.slack
            keep = unresolved.any(1) & ~empty
            if bool(keep.any()):
                kept = bnd.select(keep)
                cands = self.falsify(lo[keep], hi[keep], own[keep], kept.lower, kept.A)
                self.accept(*cands)
            keep &= ~progress.done[own]
            if bool(keep.any()):
                sub = (lo[keep], hi[keep], own[keep], phase[keep], box[keep])
                stuck = self.brancher.split(
                    pool, sub, bnd.select(keep), unresolved[keep]
                )
                progress.cut_short[stuck] = True
        self._enforce_budgets()
        counts = torch.bincount(pool.own, minlength=len(progress.k))
        proved = torch.nonzero((counts == 0) & ~progress.done).flatten().tolist()
        progress.finish(self._grow(proved))

    def _enforce_budgets(self) -> None:
        """Stop inputs whose work is spent while subdomains are left, then the largest
        over the memory cap. (An input whose pool emptied on its last unit of work is
        proved, not stopped.)"""
        st, pool = self.state, self.pool
        progress = st.progress
        over = torch.zeros_like(progress.done)
        if self.max_work is not None:
            left = torch.bincount(pool.own, minlength=len(progress.k)) > 0
            over = (progress.bounded.to(st.device) >= self.max_work) & left
        over &= ~progress.done
        if bool(over.any()):
            stop = torch.nonzero(over).flatten()
            progress.cut_short[stop] = True
            progress.finish(stop.tolist())
        pool.compact()
        while pool.floats() > self.config.max_live_floats and len(pool):
            b = int(torch.bincount(pool.own, minlength=len(progress.k)).argmax())
            progress.cut_short[b] = True
            progress.finish([b])
            pool.keep(pool.own != b)
            pool.compact()

    def _grow(self, owners: list[int]) -> list[int]:
        """Restart proved inputs on a larger box (``schedule``); return the rest."""
        if self.schedule is None:
            return owners
        st, step = self.state, self.schedule.step
        progress, boxes = st.progress, st.boxes
        grow = [
            b
            for b in owners
            if not bool(progress.cut_short[b])
            and float(boxes.eps[b]) + step <= self.schedule.max_eps + 1e-12
        ]
        if grow:
            rows = torch.tensor(grow, device=st.device)
            boxes.grow(rows, step)
            self.pool.add_roots(*boxes.outward(rows), rows)
            progress.fresh[rows] = True
        return [b for b in owners if b not in grow]

    def _results(self, now: float) -> list[SearchResult]:
        st = self.state
        progress = st.progress
        results = []
        for b in range(len(progress.k)):
            timed_out = not bool(progress.done[b])
            reached_k = len(progress.found[b]) >= progress.k[b]
            exhausted = not (timed_out or reached_k or bool(progress.cut_short[b]))
            if progress.found[b]:
                cex = torch.stack(progress.found[b]).view(-1, *st.shape)
            else:
                cex = torch.empty(0, *st.shape, device=st.device, dtype=st.dtype)
            status: Status = "unsat" if exhausted else "unknown"
            if progress.found[b]:
                status = "sat"
            stats = SearchStats(
                calls=int(progress.calls[b]),
                subdomains=int(progress.bounded[b]),
                seconds=float(now if timed_out else progress.finished_at[b]),
                rejected=int(progress.rejected[b]),
                timed_out=timed_out,
            )
            c1, c2 = int(st.c1[b]), int(st.c2[b])
            eps = float(st.boxes.eps[b])
            results.append(SearchResult(status, cex, stats, exhausted, c1, c2, eps))
        return results
