"""The pool of subdomains waiting to be bounded, and which of them go next.

Owns: ``Pool`` (subdomain storage: a shared box table plus one row per subdomain),
``rank_within`` and ``select`` (lowest bound first, a fixed quota per input); may
import: torch, the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["OPEN_LO", "OPEN_HI", "Pool", "rank_within", "select"]

OPEN_LO = 1
"""``Pool.box_open`` bit: the box's lower face in that coordinate is not part of it."""
OPEN_HI = 2
"""``Pool.box_open`` bit: the box's upper face in that coordinate is not part of it."""


def rank_within(sorted_owner: Tensor) -> Tensor:
    """Position of each row among the rows with the same (sorted) owner: 0, 1, 2, ..."""
    first = torch.searchsorted(sorted_owner, sorted_owner)
    return torch.arange(sorted_owner.shape[0], device=sorted_owner.device) - first


@dataclass
class Pool:
    """Subdomains waiting to be processed (rows of parallel tensors).

    Boxes live in a table shared by the rows: a ReLU split keeps its parent's box, so
    the thousands of subdomains of a ReLU-split search cost a phase vector each, not a
    copy of a 784-dimensional box.

    ``box_open`` marks the faces of a box that do not belong to it (bit ``OPEN_LO``:
    the box holds only ``x_i > lo_i``; ``OPEN_HI``: only ``x_i < hi_i``): a cut at an
    exactly representable face of an excluded ball gives the face itself to the outer
    child and leaves the inner one open there (see ``dalv.verify.bab.branching``).
    Bounds are taken on the closed box (a superset); only the test "inside an open
    ball" reads the flags.
    """

    box_lo: Tensor  # [NB, d] box corners (model dtype, rounded outward)
    box_hi: Tensor  # [NB, d]
    box_open: Tensor  # [NB, d] int8 open faces (OPEN_LO | OPEN_HI bits)
    box: Tensor  # [M] row -> box index
    own: Tensor  # [M] input index
    prio: Tensor  # [M] the parent's lower bound (lowest first)
    phase: Tensor  # [M, h] int8 first-layer ReLU phases (h = 0 without ReLU splits)

    @classmethod
    def of_roots(cls, lo: Tensor, hi: Tensor, h: int) -> Pool:
        """A pool holding each input's whole box (row ``b`` is input ``b``'s box).

        Args:
            lo: ``[B, d]`` lower corners (model dtype, rounded outward).
            hi: ``[B, d]`` upper corners.
            h: Width of the phase vectors (0 without ReLU splits).
        """
        b, device = lo.shape[0], lo.device
        return cls(
            lo,
            hi,
            torch.zeros(lo.shape, dtype=torch.int8, device=device),
            torch.arange(b, device=device),
            torch.arange(b, device=device),
            torch.full((b,), -math.inf, dtype=torch.float64, device=device),
            torch.zeros(b, h, dtype=torch.int8).to(device),
        )

    def add_roots(self, lo: Tensor, hi: Tensor, owners: Tensor) -> None:
        """Add whole boxes (no phases fixed, lowest priority value) for ``owners``."""
        ids = self.new_boxes(lo, hi)
        phase = torch.zeros(len(owners), self.phase.shape[1], dtype=torch.int8)
        prio = torch.full(
            (len(owners),), -math.inf, dtype=torch.float64, device=lo.device
        )
        self.add(ids, owners, prio, phase.to(lo.device))

    def __len__(self) -> int:
        return self.own.shape[0]

    def floats(self) -> int:
        """Memory held, in floats (box table plus rows)."""
        table = 2 * self.box_lo.numel() + self.box_open.numel() // 4
        return table + len(self) * (4 + self.phase.shape[1] // 4)

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

    def new_boxes(self, lo: Tensor, hi: Tensor, open_: Tensor | None = None) -> Tensor:
        """Append boxes (closed unless ``open_`` says so); return their indices."""
        first = self.box_lo.shape[0]
        if open_ is None:
            open_ = torch.zeros(lo.shape, dtype=torch.int8, device=lo.device)
        self.box_lo = torch.cat([self.box_lo, lo])
        self.box_hi = torch.cat([self.box_hi, hi])
        self.box_open = torch.cat([self.box_open, open_])
        return torch.arange(first, first + lo.shape[0], device=self.box.device)

    def compact(self) -> None:
        """Drop boxes no row refers to (when they are most of the table)."""
        used, remap = torch.unique(self.box, return_inverse=True)
        if used.numel() * 2 < self.box_lo.shape[0]:
            self.box_lo, self.box_hi = self.box_lo[used], self.box_hi[used]
            self.box_open = self.box_open[used]
            self.box = remap


def select(
    pool: Pool, done: Tensor, batch_domains: int, room: Tensor | None = None
) -> Tensor:
    """Rows of the pool to process next: lowest bound first, a quota per input.

    Each unfinished input gets up to ``batch_domains`` of its rows, and never more than
    its ``room`` (the work it has left), whatever the other inputs hold: an input's
    search does not depend on its batch-mates.

    Args:
        pool: The pool.
        done: ``[B]`` finished inputs (their rows are skipped).
        batch_domains: Rows per input per round.
        room: ``[B]`` rows each input may still take (``None``: no limit).

    Returns:
        Row indices, grouped by input.
    """
    idx = torch.nonzero(~done[pool.own]).flatten()
    if idx.numel() == 0:
        return idx
    idx = idx[torch.argsort(pool.prio[idx], stable=True)]
    idx = idx[torch.argsort(pool.own[idx], stable=True)]
    cap = torch.full_like(done, batch_domains, dtype=torch.long)
    if room is not None:
        cap = torch.minimum(cap, room.to(cap.device).clamp(min=0))
    own = pool.own[idx]
    return idx[rank_within(own) < cap[own]]
