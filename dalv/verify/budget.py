"""How much a search may spend and how its box grows: the same for every backend.

Owns: ``Budget``, ``NO_LIMIT``, ``Schedule``; may import: the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Budget", "NO_LIMIT", "Schedule"]


@dataclass(frozen=True)
class Budget:
    """How much a search may spend. ``None`` means no limit.

    Args:
        work: per input, units of work a backend counts: subdomains bounded (lirpa; an
            input never bounds more than ``work``, over all its radii) or solver calls
            (the complete solvers; the paper allows 1000 per point). ``None``: no
            limit (lirpa's memory cap ``max_live_floats`` still applies). Work does
            not depend on the machine, so a seed fixes the answer everywhere.
        seconds: wall-clock limit of the whole call (all inputs together), for every
            backend. A safety net: when it fires, what was found so far is returned (and
            the answer then depends on the machine's speed).
    """

    work: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.work is not None and (isinstance(self.work, bool) or self.work < 1):
            raise ValueError(f"budget work must be >= 1 or None, got {self.work!r}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(
                f"budget seconds must be > 0 or None, got {self.seconds!r}"
            )


NO_LIMIT = Budget()
"""A budget without limits (the default of every search)."""


@dataclass(frozen=True)
class Schedule:
    """The paper's growing box: after a proof that the box holds no (more)
    counterexamples, the radius grows by ``step``, as long as it stays ``<= max_eps``.

    Args:
        step: radius increment (the paper: 0.05).
        max_eps: largest radius searched (the paper: 1).
    """

    step: float = 0.05
    max_eps: float = 1.0

    def __post_init__(self) -> None:
        if not self.step > 0 or not self.max_eps > 0:
            raise ValueError(
                f"step and max_eps must be > 0, got {self.step} and {self.max_eps}"
            )
