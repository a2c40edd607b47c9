"""The paper's counterexample property (protocol §4.4): its statement and exact test.

Owns: ``Property`` (with ``Target``, ``Separation``), ``winner_runner_up``,
``spec_matrix``, ``spec_margin``, the one separation test (``pairwise_separated``,
``separated``) and the one exact acceptance test (``satisfies``, ``recheck``); may
import: torch, numpy, the standard library, ``dalv.verify.{box, network}``.

For one input ``x`` with winner ``c1`` (top logit) and runner-up ``c2`` (second logit),
a radius ``eps`` and a set ``E`` of earlier counterexamples, a counterexample is an
``x'`` with

* box: ``max(0, x - eps) <= x' <= min(1, x + eps)`` in every coordinate;
* margin: ``f_c1(x') - f_c2(x') <= -margin`` (``target="runner_up"``), or
  ``f_c1(x') - f_j(x') <= -margin`` for some ``j != c1`` (``target="any"``);
* exclusion: for every ``a`` in ``E``, ``|x'_i - a_i| >= delta`` in EVERY coordinate
  ``i`` (``separation="every_coord"``, the paper's rule: one disjunction per
  coordinate), or in at least one coordinate (``"any_coord"``: ``x'`` lies outside the
  open L-inf ball of radius ``delta`` around ``a``).

Both margins read ``min_s (C f(x'))_s <= -margin`` with a specification matrix ``C``
(one row for the runner-up, ``n_classes - 1`` rows for "any").

The separation and acceptance tests take torch tensors or numpy arrays (the Marabou
workers run numpy only), so every backend accepts a point by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from dalv.verify.box import input_box
from dalv.verify.network import forward64

__all__ = [
    "Target",
    "Separation",
    "TARGETS",
    "SEPARATIONS",
    "MARGIN_STRICT",
    "DELTA_STRICT",
    "LOOSE",
    "TIGHT",
    "Property",
    "PAPER_PROPERTY",
    "winner_runner_up",
    "spec_matrix",
    "spec_margin",
    "pairwise_separated",
    "separated",
    "satisfies",
    "recheck",
]

Target = Literal["runner_up", "any"]
Separation = Literal["every_coord", "any_coord"]
TARGETS: tuple[str, ...] = ("runner_up", "any")
SEPARATIONS: tuple[str, ...] = ("every_coord", "any_coord")

# The exact solvers' tolerances around a property (one home for the MILP and Marabou).
# A witness is searched for just inside the property (margin and delta raised by the
# STRICT amounts, so that it survives the cast to the model's dtype and the float64
# re-check); a proof is of a query looser by LOOSE (so that "unsat" holds for the exact
# property too); TIGHT is the band query's step past the requested margin and delta.
MARGIN_STRICT = 1e-4
DELTA_STRICT = 2e-5
LOOSE = 1e-6
TIGHT = 1e-7

Array = TypeVar("Array", Tensor, np.ndarray)


@dataclass(frozen=True)
class Property:
    """What a counterexample of input ``x`` (winner ``c1``, runner-up ``c2``) satisfies.

    * margin: ``f_c1(x') - f_c2(x') <= -margin`` (``target="runner_up"``, the paper), or
      ``f_c1(x') - f_j(x') <= -margin`` for some ``j != c1`` (``target="any"``);
    * exclusion: for every earlier counterexample ``a``, ``|x'_i - a_i| >= delta`` in
      EVERY coordinate ``i`` (``separation="every_coord"``, the paper: one disjunction
      per coordinate), or in at least one (``"any_coord"``: outside the open L∞ ball of
      radius ``delta`` around ``a``).

    Args:
        target: ``"runner_up"`` or ``"any"``.
        separation: ``"every_coord"`` or ``"any_coord"``.
        delta: exclusion distance per coordinate (the paper: 1e-3).
        margin: how much the other class must win by (the paper: 1e-3).
    """

    target: Target = "runner_up"
    separation: Separation = "every_coord"
    delta: float = 1e-3
    margin: float = 1e-3

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.separation not in SEPARATIONS:
            raise ValueError(
                f"separation must be one of {SEPARATIONS}, got {self.separation!r}"
            )
        if not self.delta > 0 or not self.margin >= 0:
            raise ValueError(
                f"delta must be > 0 and margin >= 0, got {self.delta} and {self.margin}"
            )

    def spec(
        self, c1: Tensor, c2: Tensor, n_classes: int, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Specification matrix of the margins whose minimum must be ``<= -margin``.

        Shapes:
            c1, c2: ``[B]`` -> ``[B, 1, n_classes]`` (runner_up) or
            ``[B, n_classes - 1, n_classes]`` (any).
        """
        if self.target == "runner_up":
            return spec_matrix(c1, n_classes, c2, dtype=dtype)
        return spec_matrix(c1, n_classes, dtype=dtype)

    def rivals(self, c1: int, c2: int, n_classes: int) -> list[int]:
        """The classes that may beat ``c1``: the runner-up, or every other class."""
        if self.target == "runner_up":
            return [c2]
        return [j for j in range(n_classes) if j != c1]


PAPER_PROPERTY = Property()
"""The paper's property: runner-up target, every-coordinate exclusion, 1e-3 and 1e-3."""


def winner_runner_up(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Top and second class of each row (a stable descending sort breaks ties by index).

    Shapes:
        logits: ``[B, n_classes]`` -> ``([B], [B])``.
    """
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices
    return order[:, 0], order[:, 1]


def spec_matrix(
    c1: Tensor,
    n_classes: int,
    c2: Tensor | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Specification matrices for margins ``f_c1 - f_c2`` (or ``f_c1 - f_j``, j != c1).

    Args:
        c1: Winner class per input.
        n_classes: Number of logits.
        c2: Other class per input, or ``None`` for all other classes.
        dtype: Output dtype.

    Returns:
        ``C`` such that ``C @ logits`` are the margins. With ``c2=None`` the rows are
        the classes ``j != c1`` in increasing order.

    Shapes:
        c1, c2: ``[B]`` -> ``[B, 1, n_classes]`` or ``[B, n_classes - 1, n_classes]``.
    """
    c1 = c1.reshape(-1).long()
    b = c1.shape[0]
    ar = torch.arange(b, device=c1.device)
    if c2 is not None:
        c2 = c2.reshape(-1).long().to(c1.device)
        if bool((c1 == c2).any()):
            raise ValueError("c2 must differ from c1")
        C = torch.zeros(b, 1, n_classes, dtype=dtype, device=c1.device)
        C[ar, 0, c1] = 1.0
        C[ar, 0, c2] = -1.0
        return C
    others = torch.arange(n_classes, device=c1.device).expand(b, n_classes)
    others = others[others != c1[:, None]].view(b, n_classes - 1)
    C = torch.zeros(b, n_classes - 1, n_classes, dtype=dtype, device=c1.device)
    C[ar, :, c1] = 1.0
    C.scatter_(2, others[:, :, None], -1.0)
    return C


def spec_margin(C: Tensor, logits: Tensor) -> Tensor:
    """The property margin ``min_s (C f)_s`` of each row (``<= -margin``: a witness).

    Shapes:
        C: ``[S, n_classes]`` or ``[m, S, n_classes]``; logits: ``[m, n_classes]``
        -> ``[m]``.
    """
    return (C @ logits.unsqueeze(-1)).squeeze(-1).min(-1).values


def pairwise_separated(points: Array, others: Array, prop: Property) -> Array:
    """Whether point ``i`` is separated from point ``j`` of ``others``, per pair.

    The one separation test of the package: tensors or numpy arrays, in the caller's
    dtype (pass float64 for an exact test).

    Args:
        points: Candidate points (flattened).
        others: Points to keep away from, shared by all candidates or one set each.
        prop: The property (its ``separation`` and ``delta``).

    Returns:
        ``[m, n]`` booleans.

    Shapes:
        points: ``[m, d]``; others: ``[n, d]`` or ``[m, n, d]`` -> ``[m, n]``.
    """
    if others.ndim == 2:
        others = others[None]
    far = abs(points[:, None, :] - others) >= prop.delta
    return far.all(-1) if prop.separation == "every_coord" else far.any(-1)


def separated(points: Tensor, others: Tensor, prop: Property) -> Tensor:
    """Whether each point is separated from every point of ``others`` (float64 test).

    Args:
        points: Candidate points (flattened).
        others: Points to keep away from (flattened); may be empty.
        prop: The property (its ``separation`` and ``delta``).

    Returns:
        ``[m]`` booleans.

    Shapes:
        points: ``[m, d]``; others: ``[n, d]`` -> ``[m]``.
    """
    if others.numel() == 0:
        return torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
    p64, o64 = points.to(torch.float64), others.to(torch.float64)
    return pairwise_separated(p64, o64, prop).all(-1)


def satisfies(
    points: Array,
    margins: Array,
    lo: Array,
    hi: Array,
    others: Array,
    prop: Property,
    mask: Array | None = None,
) -> Array:
    """The exact acceptance test: in the box, margin met, separated from ``others``.

    Every backend accepts a witness by this test, on float64 values (tensors or numpy
    arrays).

    Args:
        points: Candidate points (flattened, float64).
        margins: Their property margins ``min_s (C f(x'))_s`` (float64).
        lo: Lower box corners.
        hi: Upper box corners.
        others: Earlier counterexamples, shared or one (padded) set per point.
        prop: The property.
        mask: Which of a point's ``others`` are real (for padded sets).

    Returns:
        ``[m]`` booleans.

    Shapes:
        points: ``[m, d]``; margins: ``[m]``; lo, hi: ``[m, d]`` or ``[1, d]``;
        others: ``[n, d]`` or ``[m, n, d]``; mask: ``[m, n]``.
    """
    ok = ((points >= lo) & (points <= hi)).all(-1) & (margins <= -prop.margin)
    far = pairwise_separated(points, others, prop)
    if mask is not None:
        far = far | ~mask
    return ok & far.all(-1)


def recheck(
    model: nn.Module,
    x: Tensor,
    eps: float,
    C: Tensor,
    candidates: Tensor,
    exclude: Tensor,
    prop: Property = PAPER_PROPERTY,
) -> Tensor:
    """Exact float64 check of candidate counterexamples for ONE input, greedy in order.

    A candidate is accepted when it passes ``satisfies`` (box computed in float64,
    float64 logits) and is separated from every candidate accepted before it.

    Args:
        model: The network.
        x: The input.
        eps: Radius.
        C: The property's specification matrix for this input.
        candidates: Points to check, in order of preference.
        exclude: Earlier counterexamples (may be empty).
        prop: The property.

    Returns:
        ``[m]`` booleans, the accepted candidates.

    Shapes:
        x: ``input_shape``; C: ``[S, n_classes]``; candidates: ``[m, *input_shape]``;
        exclude: ``[n, *input_shape]``.
    """
    m = candidates.shape[0]
    if m == 0:
        return torch.zeros(0, dtype=torch.bool, device=candidates.device)
    lo, hi = input_box(x[None], eps, rounding="exact")
    c64 = candidates.to(torch.float64).flatten(1)
    with torch.no_grad():
        logits = forward64(model, candidates.to(torch.float64))
    margins = spec_margin(C.to(torch.float64), logits)
    e64 = exclude.flatten(1).to(torch.float64)
    ok = satisfies(c64, margins, lo.flatten(1), hi.flatten(1), e64, prop)
    accepted = torch.zeros(m, dtype=torch.bool, device=candidates.device)
    for j in torch.nonzero(ok).flatten().tolist():
        if bool(separated(c64[j : j + 1], c64[accepted], prop)[0]):
            accepted[j] = True
    return accepted
