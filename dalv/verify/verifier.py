"""The verifier interface: one question, several backends.

Owns: ``Budget``, ``Schedule`` and the abstract ``Verifier`` with its argument checks;
may import: torch, the standard library, ``dalv.models``, ``dalv.verify.{box, network,
property, results}`` (``Property`` lives in ``dalv.verify.property`` and is re-exported
here).

Every backend answers the paper's question (protocol §4.4) for a batch of inputs: inside
the box ``max(0, x - eps) <= x' <= min(1, x + eps)``, find up to ``k`` points ``x'``
that satisfy the output property and keep away from earlier counterexamples, or prove
that none (or no more) exist. A backend is a frozen dataclass whose fields are its own
knobs; what is asked (``Property``), how much may be spent (``Budget``) and how the box
grows (``Schedule``) are arguments, the same for every backend.

Example:
    >>> from dalv.verify import LirpaVerifier, Property
    >>> res = LirpaVerifier().find(model, x, 0.1, 9, exclude=x_fgsm)  # doctest: +SKIP
    >>> res.status, res.counterexamples.shape                         # doctest: +SKIP
    ('sat', torch.Size([9, 1, 28, 28]))
"""

from __future__ import annotations

import abc
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from dalv.models import model_device, model_dtype
from dalv.verify.box import eps_tensor
from dalv.verify.network import check_batch, check_model, check_tensor, single_input
from dalv.verify.property import PAPER_PROPERTY, Property
from dalv.verify.results import SearchResult

__all__ = ["Property", "Budget", "NO_LIMIT", "Schedule", "Verifier"]

WitnessSource = Literal["solver", "pgd"]
"""Where a backend's counterexamples come from: an exact solver's answer, or PGD
(lirpa's branch and bound proves, but its witnesses are PGD's)."""


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
        eps_t, ks, excl = self._validate(model, xs, eps, k, excludes)
        if xs.shape[0] == 0:
            return []
        xs = xs.detach().to(device=model_device(model), dtype=torch.float64)
        return self._search(model, xs, eps_t, ks, excl, prop, budget, schedule, seed)

    @abc.abstractmethod
    def _search(
        self,
        model: nn.Module,
        xs: Tensor,
        eps: Tensor,
        k: list[int],
        excludes: list[Tensor],
        prop: Property,
        budget: Budget,
        schedule: Schedule | None,
        seed: int,
    ) -> list[SearchResult]:
        """The backend's search on validated arguments.

        ``xs`` is the exact input in float64 on the model's device (``B >= 1``; the
        backend casts it to the model dtype where it runs the model); ``excludes`` are
        detached, finite and on the model's device.
        """

    # ---- argument checks, shared by every backend ------------------------------------

    def _check_network(self, model: nn.Module) -> None:
        """Reject layers the backend cannot handle (a backend may narrow this)."""
        check_model(
            model, allow_conv=self.supports_conv, who=f"the {self.name} backend"
        )

    def _validate(
        self,
        model: nn.Module,
        xs: Tensor,
        eps: float | Tensor,
        k: int | Sequence[int],
        excludes: Sequence[Tensor] | None,
    ) -> tuple[Tensor, list[int], list[Tensor]]:
        """Check the arguments of ``find_batch``; return ``eps`` ``[B]`` (float64),
        ``k`` per input and the excluded points per input, on the model's device."""
        self._check_network(model)
        check_batch(model, xs)
        ks = _k_list(k, xs.shape[0])
        xs = xs.detach()
        if xs.numel() and (
            not bool(torch.isfinite(xs).all())
            or float(xs.min()) < 0
            or float(xs.max()) > 1
        ):
            raise ValueError("inputs must be finite and lie in [0, 1]")
        e = eps_tensor(eps, xs.shape[0])
        device = model_device(model)
        if excludes is None:
            excl = [xs.new_empty(0, *xs.shape[1:]).to(device) for _ in range(len(xs))]
        else:
            if not isinstance(excludes, (list, tuple, Tensor)):
                raise ValueError(
                    "excludes must be a list of tensors (one per input), got "
                    f"{type(excludes).__module__}.{type(excludes).__name__}"
                )
            if len(excludes) != xs.shape[0]:
                raise ValueError(
                    f"excludes must hold one tensor per input ({xs.shape[0]}), "
                    f"got {len(excludes)}"
                )
            for i, ex in enumerate(excludes):
                _check_exclude(ex, f"excludes[{i}]")
                if ex.numel() % xs[0].numel():
                    raise ValueError(
                        f"excludes[{i}] has shape {tuple(ex.shape)}, "
                        f"not [n, *{tuple(xs.shape[1:])}]"
                    )
            excl = [
                e_.detach().to(device).reshape(-1, *xs.shape[1:]) for e_ in excludes
            ]
        if xs.shape[0]:
            with torch.no_grad():
                n_classes = model(xs[:1].to(device, model_dtype(model))).shape[-1]
            if n_classes < 2:
                raise ValueError("the network must have at least 2 outputs")
        return e.to(device), ks, excl


def _check_exclude(ex: object, name: str) -> None:
    """Excluded points: a floating-point tensor with finite values."""
    check_tensor(ex, name)
    assert isinstance(ex, Tensor)
    if not bool(torch.isfinite(ex).all()):
        raise ValueError(f"{name} holds a value that is not finite (NaN or inf)")


def _stack_exclude(exclude: Sequence[Tensor] | Tensor, x1: Tensor) -> Tensor:
    """Excluded points for one input as ``[n, *input_shape]``."""
    if isinstance(exclude, Tensor):
        _check_exclude(exclude, "exclude")
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
        _check_exclude(e, f"exclude[{i}]")
        if e.numel() != x1.numel():
            raise ValueError(
                f"each excluded point must have the input's {x1.numel()} elements, "
                f"got shape {tuple(e.shape)}"
            )
    if not items:
        return x1.new_empty(0, *x1.shape)
    return torch.stack([e.detach().to(x1.device).reshape(x1.shape) for e in items])


def _k_list(k: int | Sequence[int], n: int) -> list[int]:
    """``k`` as one int >= 1 per input."""
    bad = ValueError(f"k must be an int >= 1, or one per input ({n}), got {k!r}")
    try:
        ks = [k] * n if isinstance(k, numbers.Integral) else list(k)  # type: ignore
    except TypeError:
        raise bad from None
    if len(ks) != n or any(
        isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in ks
    ):
        raise bad
    return [int(v) for v in ks]
