"""What one branch-and-bound search knows about its inputs, shared by its parts.

Owns: ``Clock`` (the wall-clock safety net), ``Boxes`` (each input's radius and box),
``Exclusions`` (the points each input's witnesses keep away from), ``Progress`` (found
witnesses, finished inputs, counters) and ``SearchState``, which bundles them with the
network's specification; may import: torch, the standard library, ``dalv.models``,
``dalv.verify.{box, property, query}``.

The parts of the search (bounding, branching, falsification, acceptance, the driver)
are separate objects; they read and update the per-input facts kept here, so that each
fact has one owner.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dalv.models import model_dtype
from dalv.verify.box import input_box, round_down, round_up
from dalv.verify.property import Property
from dalv.verify.query import Query

__all__ = ["Clock", "Boxes", "Exclusions", "Progress", "SearchState"]


class Clock:
    """The optional wall-clock limit of a search (``Budget.seconds``).

    Args:
        seconds: Limit from now (``None``: no limit).
    """

    def __init__(self, seconds: float | None) -> None:
        self.t0 = time.monotonic()
        self.deadline = None if seconds is None else self.t0 + seconds

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


class Boxes:
    """Each input's current radius and its box, flattened.

    ``lo64``/``hi64`` are the exact float64 corners (re-checks); ``lo_in``/``hi_in``
    are rounded inward to the model dtype (every point of them is a valid witness
    position). ``outward`` gives the model-dtype corners rounded outward, which
    subdomains start from (a proof on them covers the float64 box).

    Args:
        xs: The exact inputs ``[B, *input_shape]`` (float64: the box is built around
            them, not around their rounding to the model dtype).
        eps: Radii ``[B]``.
        dtype: The model dtype.
    """

    def __init__(self, xs: Tensor, eps: Tensor, dtype: torch.dtype) -> None:
        self.xs, self.dtype = xs, dtype
        self.eps = eps.to(dtype=torch.float64, device=xs.device).clone()
        self.lo64, self.hi64, self.lo_in, self.hi_in = _corners(xs, self.eps, dtype)

    def grow(self, rows: Tensor, step: float) -> None:
        """Add ``step`` to the radius of inputs ``rows`` and recompute their boxes."""
        self.eps[rows] += step
        new = _corners(self.xs[rows], self.eps[rows], self.dtype)
        tables = (self.lo64, self.hi64, self.lo_in, self.hi_in)
        for table, part in zip(tables, new, strict=True):
            table[rows] = part

    def outward(self, rows: Tensor | slice = slice(None)) -> tuple[Tensor, Tensor]:
        """The boxes of inputs ``rows`` in the model dtype, rounded outward."""
        dtype = self.dtype
        return round_down(self.lo64[rows], dtype), round_up(self.hi64[rows], dtype)


def _corners(
    xs: Tensor, eps: Tensor, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The float64 boxes (flattened) and their inward-rounded model-dtype copies."""
    lo64, hi64 = input_box(xs, eps, rounding="exact")
    lo_in, hi_in = input_box(xs, eps, dtype=dtype, rounding="inward")
    return lo64.flatten(1), hi64.flatten(1), lo_in.flatten(1), hi_in.flatten(1)


class Exclusions:
    """Per input, the given excluded points and the witnesses accepted so far.

    Stored padded: ``E64 [B, n, d]`` (float64, for exact tests), ``E`` (the same in the
    model dtype, for projections) and ``mask [B, n]`` (which rows are real; an input's
    real points come first).

    Args:
        given: Per input, the excluded points ``[n_b, *input_shape]``.
        d: Input size.
        dtype: The model dtype.
        device: The model's device.
    """

    def __init__(
        self, given: list[Tensor], d: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        self.given = [e.flatten(1).to(torch.float64) for e in given]
        self.d, self.dtype, self.device = d, dtype, device
        self.rebuild([[] for _ in given])

    @property
    def n(self) -> int:
        """Padded number of excluded points per input."""
        return self.E64.shape[1]

    def rebuild(self, found: list[list[Tensor]]) -> None:
        """Re-pad after witnesses were found (they join their input's exclusions)."""
        lists = []
        for b, own in enumerate(found):
            new = [f.flatten().to(torch.float64)[None] for f in own]
            lists.append(torch.cat([self.given[b], *new]))
        n, b = max(t.shape[0] for t in lists), len(lists)
        self.E64 = torch.zeros(b, n, self.d, dtype=torch.float64, device=self.device)
        self.mask = torch.zeros(b, n, dtype=torch.bool, device=self.device)
        for b, t in enumerate(lists):
            self.E64[b, : t.shape[0]] = t
            self.mask[b, : t.shape[0]] = True
        self.E = self.E64.to(self.dtype)


class Progress:
    """Witnesses found, which inputs are finished and why, and the work counters.

    Attributes:
        k: Witnesses wanted per input.
        found: Per input, the accepted witnesses (flattened, model dtype).
        done: ``[B]`` finished inputs (k reached, proved, or stopped by a budget).
        cut_short: ``[B]`` inputs stopped without a proof (budget, memory, a box too
            narrow to split): never reported as exhausted.
        finished_at: Per input, seconds from the start until it finished.
        fresh: ``[B]`` inputs whose current root box has not been searched yet (they
            get the random PGD restarts).
        calls, bounded, rejected: ``[B]`` CPU counters: rounds with a bound
            computation, subdomains bounded, witnesses the exact re-check rejected.
    """

    def __init__(self, k: list[int], device: torch.device, clock: Clock) -> None:
        b = len(k)
        self.k, self.clock = k, clock
        self.found: list[list[Tensor]] = [[] for _ in range(b)]
        self.done = torch.zeros(b, dtype=torch.bool, device=device)
        self.cut_short = torch.zeros(b, dtype=torch.bool, device=device)
        self.finished_at = [0.0] * b
        self.fresh = torch.ones(b, dtype=torch.bool, device=device)
        self.calls = torch.zeros(b, dtype=torch.long)
        self.bounded = torch.zeros(b, dtype=torch.long)
        self.rejected = torch.zeros(b, dtype=torch.long)

    def finish(self, owners: list[int]) -> None:
        """Mark inputs finished (once), recording when."""
        now = self.clock.elapsed()
        for b in owners:
            if not bool(self.done[b]):
                self.done[b] = True
                self.finished_at[b] = now

    def need(self) -> list[int]:
        """Witnesses still wanted per input."""
        return [k - len(f) for k, f in zip(self.k, self.found, strict=True)]


@dataclass
class SearchState:
    """Everything the parts of one search share.

    Attributes:
        model: The network.
        prop: The property.
        shape: One input's shape; ``d`` its size.
        c1, c2: ``[B]`` winner and runner-up at each input (the model's own
            prediction, at the input in the model dtype).
        C, C64: ``[B, S, n_classes]`` specification matrices (model dtype, float64).
        x_flat: ``[B, d]`` the inputs in the model dtype, flattened.
        boxes, excl, progress, clock: see their classes.
    """

    model: nn.Module
    prop: Property
    shape: tuple[int, ...]
    d: int
    c1: Tensor
    c2: Tensor
    C: Tensor
    C64: Tensor
    x_flat: Tensor
    boxes: Boxes
    excl: Exclusions
    progress: Progress
    clock: Clock

    @property
    def device(self) -> torch.device:
        return self.x_flat.device

    @property
    def dtype(self) -> torch.dtype:
        return self.x_flat.dtype

    @classmethod
    def build(cls, query: Query, clock: Clock) -> SearchState:
        """The state at the start of a search of ``query``."""
        xs = query.xs
        shape = query.input_shape
        d = int(math.prod(shape))
        dtype = model_dtype(query.model)
        C = query.spec(dtype)
        return cls(
            model=query.model,
            prop=query.prop,
            shape=shape,
            d=d,
            c1=query.c1,
            c2=query.c2,
            C=C,
            C64=C.to(torch.float64),
            x_flat=xs.to(dtype).flatten(1),
            boxes=Boxes(xs, query.eps, dtype),
            excl=Exclusions(list(query.excludes), d, dtype, xs.device),
            progress=Progress(list(query.k), xs.device, clock),
            clock=clock,
        )
