"""Typed results of a counterexample search.

Owns: ``Status``, ``SearchStats``, ``SearchResult``; may import: torch, the standard
library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor

__all__ = ["Status", "SearchStats", "SearchResult"]

Status = Literal["sat", "unsat", "unknown"]


@dataclass(frozen=True)
class SearchStats:
    """Cost and bookkeeping of one input's search.

    Attributes:
        calls: Bound computations (lirpa) or solver calls (marabou) for this input.
        subdomains: Subdomains bounded (lirpa) or search-tree states visited (marabou).
        seconds: Wall-clock seconds until this input's search ended.
        rejected: Witnesses dropped because the exact float64 re-check failed.
        timed_out: Whether the clock stopped the search (``Budget.seconds``, or a
            Marabou call's TIMEOUT); a search stopped by ``Budget.work`` is not.
    """

    calls: int = 0
    subdomains: int = 0
    seconds: float = 0.0
    rejected: int = 0
    timed_out: bool = False


@dataclass(frozen=True)
class SearchResult:
    """Outcome of a counterexample search for one input.

    Attributes:
        status: "sat" (at least one counterexample returned), "unsat" (proved that none
            exists) or "unknown" (none found, nothing proved: a budget ran out).
        counterexamples: The validated counterexamples, ``[m, *input_shape]`` with
            ``m <= k``, pairwise separated and separated from the excluded points.
        stats: Cost and bookkeeping.
        exhausted: Proved that no counterexample exists beyond those returned (always
            true for "unsat"; for "sat" with ``m < k``: the rest was proved absent).
        c1: The winner class at ``x``.
        c2: The runner-up class at ``x``.
        eps: The radius of the last box searched (it grows under the FV-Adv schedule).
    """

    status: Status
    counterexamples: Tensor
    stats: SearchStats = field(default_factory=SearchStats)
    exhausted: bool = False
    c1: int = -1
    c2: int = -1
    eps: float = float("nan")
