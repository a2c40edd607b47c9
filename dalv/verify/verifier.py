"""The verifier interface: one question, several backends.

Owns: the abstract ``Verifier`` (``find``, ``find_batch``, ``search``); may import:
torch, the standard library, ``dalv.verify.{budget, network, property, query,
results}`` (``Property``, ``Budget``, ``Schedule`` and ``Query`` are re-exported here).

Every backend answers the paper's question (protocol §4.4) for a batch of inputs: inside
the box ``max(0, x - eps) <= x' <= min(1, x + eps)``, find up to ``k`` points ``x'``
that satisfy the output property and keep away from earlier counterexamples, or prove
that none (or no more) exist. The question is one object, a ``Query`` (inputs, radii,
counts, exclusions, ``Property``, ``Budget``, ``Schedule``, seed), checked once and
passed whole to the backend; a backend is a frozen dataclass whose fields are only its
own knobs.

Example:
    >>> from dalv.verify import LirpaVerifier, Property
    >>> res = LirpaVerifier().find(model, x, 0.1, 9, exclude=x_fgsm)  # doctest: +SKIP
    >>> res.status, res.counterexamples.shape                         # doctest: +SKIP
    ('sat', torch.Size([9, 1, 28, 28]))
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from dalv.verify.budget import NO_LIMIT, Budget, Schedule
from dalv.verify.network import check_model, single_input
from dalv.verify.property import PAPER_PROPERTY, Property
from dalv.verify.query import Query, check_exclude
from dalv.verify.results import SearchResult

__all__ = ["Property", "Budget", "NO_LIMIT", "Query", "Schedule", "Verifier"]

WitnessSource = Literal["solver", "pgd"]
"""Where a backend's counterexamples come from: an exact solver's answer, or PGD
(lirpa's branch and bound proves, but its witnesses are PGD's)."""


class Verifier(abc.ABC):
    """A counterexample search: ``find`` for one input, ``find_batch`` for many.

    Statuses: "sat" when at least one counterexample is returned; "unsat" when none was
    found and the search proved that none exists; "unknown" otherwise (budget spent).
    Every returned point has passed an exact float64 re-check (box, margin, separation
    from the excluded points and from each other); failures are dropped and counted in
    ``stats.rejected``. Running out of budget never raises.

    Inputs: ``x`` and the excluded points must be floating-point torch tensors (numpy
    arrays are rejected with a ``ValueError``; excluded points must be finite). They
    are detached (``requires_grad`` is allowed and ignored). The box is built around the
    input exactly as given (a float64 ``x`` is not rounded to a float32 model's dtype
    first); the winner and runner-up are the model's own, at ``x`` in the model dtype.
    Each input's search is independent of the other inputs of a batch: ``find`` on one
    input returns what ``find_batch`` returns for it, given the same seed (except where
    ``Budget.seconds`` or a shared memory cap cuts a search short).

    Class attributes:
        name: the backend's name (the CLI's ``--verifier``).
        complete: whether, given unlimited budget, every answer is "sat" or "unsat".
        supports_conv: whether the backend accepts ``Conv2d`` layers.
    """

    name: ClassVar[str] = "verifier"
    complete: ClassVar[bool] = False
    # where its counterexamples come from: "solver" (an exact solver's answer) or "pgd"
    witness_source: ClassVar[WitnessSource] = "solver"
    supports_conv: ClassVar[bool] = False

    def find(
        self,
        model: nn.Module,
        x: Tensor,
        eps: float,
        k: int,
        exclude: Sequence[Tensor] | Tensor | None = (),
        prop: Property = PAPER_PROPERTY,
        budget: Budget = NO_LIMIT,
        *,
        seed: int = 0,
    ) -> SearchResult:
        """Up to ``k`` NEW counterexamples around ONE input.

        Args:
            model: a Flatten/Linear/ReLU ``nn.Sequential`` (Conv2d where the backend
                supports it).
            x: the input in [0, 1], shape ``input_shape`` or ``[1, *input_shape]``.
            eps: box radius (> 0), L∞.
            k: counterexamples wanted (>= 1); ``exclude`` does not count.
            exclude: earlier counterexamples (``[n, *input_shape]`` or a sequence;
                ``None``: none, as ``find_batch``'s ``excludes``).
            prop: the property.
            budget: the limits.
            seed: seed of any randomness in the backend.
        """
        x1 = single_input(model, x)
        excl = _stack_exclude(() if exclude is None else exclude, x1)
        return self.find_batch(
            model, x1[None], eps, k, [excl], prop, budget, seed=seed
        )[0]

    def find_batch(
        self,
        model: nn.Module,
        xs: Tensor,
        eps: float | Tensor,
        k: int | Sequence[int],
        excludes: Sequence[Tensor] | None = None,
        prop: Property = PAPER_PROPERTY,
        budget: Budget = NO_LIMIT,
        *,
        schedule: Schedule | None = None,
        seed: int = 0,
    ) -> list[SearchResult]:
        """Up to ``k`` counterexamples around each of many inputs.

        Args:
            model: the network (see ``find``).
            xs: inputs ``[B, *input_shape]`` in [0, 1].
            eps: radius, a float or one per input.
            k: new counterexamples wanted, for all inputs or one per input.
            excludes: per input, earlier counterexamples ``[n_b, *input_shape]``.
            prop: the property.
            budget: the limits (work per input; seconds for the whole call).
            schedule: if given, an input whose box is proved to hold no (further)
                counterexample goes on at a larger radius (per input: an input never
                waits for the others); ``SearchResult.eps`` is the last radius searched.
            seed: seed of any randomness in the backend.

        Returns:
            One ``SearchResult`` per input; an empty list for an empty batch
            (``xs`` of shape ``[0, *input_shape]``, after the arguments are checked).

        Raises:
            ValueError: bad arguments, shapes or layers (the message names the problem).
        """
        self._check_network(model)
        query = Query(model, xs, eps, k, excludes, prop, budget, schedule, seed)
        return self._search(query) if len(query) else []

    def search(self, query: Query) -> list[SearchResult]:
        """Answer a ``Query`` built once (the same query can go to several backends).

        Returns one ``SearchResult`` per input (see ``find_batch``).

        Raises:
            ValueError: the backend does not accept the query's network.
        """
        if not isinstance(query, Query):
            raise ValueError(f"search takes a Query, got {type(query).__name__}")
        self._check_network(query.model)
        return self._search(query) if len(query) else []

    @abc.abstractmethod
    def _search(self, query: Query) -> list[SearchResult]:
        """The backend's search on a checked query with at least one input.

        ``query.xs`` is the exact input in float64 on the model's device (the backend
        casts it to the model dtype where it runs the model); ``query.excludes`` are
        detached, finite and on the model's device.
        """

    # ---- argument checks, shared by every backend ------------------------------------

    def _check_network(self, model: nn.Module) -> None:
        """Reject layers the backend cannot handle (a backend may narrow this)."""
        check_model(
            model, allow_conv=self.supports_conv, who=f"the {self.name} backend"
        )


def _stack_exclude(exclude: Sequence[Tensor] | Tensor, x1: Tensor) -> Tensor:
    """Excluded points for one input as ``[n, *input_shape]``."""
    if isinstance(exclude, Tensor):
        check_exclude(exclude, "exclude")
        if exclude.numel() % x1.numel():
            raise ValueError(
                f"exclude has {exclude.numel()} elements, not a multiple of the input "
                f"size {x1.numel()}"
            )
        return exclude.to(x1.device).reshape(-1, *x1.shape)
    if not isinstance(exclude, (list, tuple)):
        raise ValueError(
            "exclude must be a torch.Tensor [n, *input_shape] or a list of tensors, "
            f"got {type(exclude).__module__}.{type(exclude).__name__}"
        )
    items = list(exclude)
    for i, e in enumerate(items):
        check_exclude(e, f"exclude[{i}]")
        if e.numel() != x1.numel():
            raise ValueError(
                f"each excluded point must have the input's {x1.numel()} elements, "
                f"got shape {tuple(e.shape)}"
            )
    if not items:
        return x1.new_empty(0, *x1.shape)
    return torch.stack([e.detach().to(x1.device).reshape(x1.shape) for e in items])
