"""One home for the question every backend answers.

Owns: ``Query`` (the inputs, radii, counts, exclusions, property, budget, schedule and
seed of one search, checked once) and the argument checks behind it; may import:
torch, the standard library, ``dalv.models``, ``dalv.verify.{box, network, property,
budget}``.

A ``Query`` is built once, from loose arguments (a float or one radius per input, one
``k`` or one per input, excluded points or ``None``), and every backend reads the same
normalised fields: the exact inputs in float64 on the model's device, ``eps [B]``,
``k`` per input, excluded points per input, and the model's own winner and runner-up
at each input (computed once, in the model dtype). ``Verifier.find_batch`` builds one;
``Verifier.search`` takes one, so the same query can be put to several backends::

    q = Query(model, xs, 0.1, 9, excludes, budget=Budget(work=1000))
    answers = {name: VERIFIERS[name]().search(q) for name in ("milp", "lirpa")}

``Query.select`` gives the query of some of its inputs (a backend's sub-batch, or one
input for ``find``): each input's question does not depend on its batch-mates.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dalv.models import model_device, model_dtype
from dalv.verify.box import eps_tensor
from dalv.verify.budget import NO_LIMIT, Budget, Schedule
from dalv.verify.network import check_batch, check_model, check_tensor
from dalv.verify.property import PAPER_PROPERTY, Property, winner_runner_up

__all__ = ["Query"]


@dataclass(frozen=True, eq=False)
class Query:
    """The paper's question (protocol §4.4) for a batch of inputs.

    Inside each input's box ``max(0, x - eps) <= x' <= min(1, x + eps)``, find up to
    ``k`` points that satisfy ``prop`` and keep away from the excluded points, or prove
    that none (or no more) exist, spending at most ``budget``; with a ``schedule``, a
    box proved empty grows.

    Args:
        model: The network (which layers a backend accepts is the backend's check).
        xs: Inputs ``[B, *input_shape]`` in [0, 1] (a floating-point tensor). Stored as
            float64 on the model's device, exactly as given.
        eps: Radius, a float or one per input (> 0). Stored as ``[B]`` float64.
        k: New counterexamples wanted (>= 1), for all inputs or one per input. Stored
            as a tuple, one per input.
        excludes: Per input, earlier counterexamples ``[n_b, *input_shape]`` (finite;
            ``None``: none). Stored detached, on the model's device, in their own dtype.
        prop: The property.
        budget: The limits (work per input; seconds for the whole search).
        schedule: The growing box (``None``: one radius per input).
        seed: Seed of any randomness in a backend.

    Attributes (computed):
        c1, c2: The model's winner and runner-up at each input ``[B]`` (long).
        n_classes: Number of logits.

    Raises:
        ValueError: Bad arguments or shapes (the message names the argument).
    """

    model: nn.Module
    xs: Tensor
    eps: Tensor
    k: tuple[int, ...]
    excludes: tuple[Tensor, ...] | None = None
    prop: Property = PAPER_PROPERTY
    budget: Budget = NO_LIMIT
    schedule: Schedule | None = None
    seed: int = 0
    c1: Tensor = field(init=False, repr=False)
    c2: Tensor = field(init=False, repr=False)
    n_classes: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        model, xs = self.model, self.xs
        check_model(model, who="verification")
        check_batch(model, xs)
        if not isinstance(self.prop, Property):
            raise ValueError(f"prop must be a Property, got {_kind(self.prop)}")
        if not isinstance(self.budget, Budget):
            raise ValueError(f"budget must be a Budget, got {_kind(self.budget)}")
        if self.schedule is not None and not isinstance(self.schedule, Schedule):
            raise ValueError(
                f"schedule must be a Schedule or None, got {_kind(self.schedule)}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        n = xs.shape[0]
        ks = _k_tuple(self.k, n)
        xs = xs.detach()
        if xs.numel() and (
            not bool(torch.isfinite(xs).all())
            or float(xs.min()) < 0
            or float(xs.max()) > 1
        ):
            raise ValueError("inputs must be finite and lie in [0, 1]")
        device = model_device(model)
        eps = eps_tensor(self.eps, n).to(device)
        excl = _excludes(self.excludes, xs, device)
        xs = xs.to(device=device, dtype=torch.float64)
        c1 = c2 = torch.empty(0, dtype=torch.long, device=device)
        n_classes = 0
        if n:
            with torch.no_grad():  # the model's own classes, at x in the model dtype
                logits = model(xs.to(model_dtype(model)))
            n_classes = int(logits.shape[-1])
            if n_classes < 2:
                raise ValueError("the network must have at least 2 outputs")
            c1, c2 = winner_runner_up(logits)
        for name, value in (
            ("xs", xs),
            ("eps", eps),
            ("k", ks),
            ("excludes", excl),
            ("seed", int(self.seed)),
            ("c1", c1),
            ("c2", c2),
            ("n_classes", n_classes),
        ):
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return int(self.xs.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input."""
        return tuple(self.xs.shape[1:])

    def spec(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The property's spec matrices ``[B, S, n_classes]`` (``Property.spec``)."""
        return self.prop.spec(self.c1, self.c2, self.n_classes, dtype=dtype)

    def select(self, rows: Sequence[int]) -> Query:
        """The query of the inputs ``rows`` (in that order), everything else equal."""
        rows = [int(r) for r in rows]
        assert self.excludes is not None
        return Query(
            self.model,
            self.xs[rows],
            self.eps[rows],
            tuple(self.k[r] for r in rows),
            [self.excludes[r] for r in rows],
            self.prop,
            self.budget,
            self.schedule,
            self.seed,
        )


def _excludes(
    excludes: Sequence[Tensor] | Tensor | None, xs: Tensor, device: torch.device
) -> tuple[Tensor, ...]:
    """Excluded points per input, ``[n_b, *input_shape]`` on ``device``."""
    n, shape = xs.shape[0], xs.shape[1:]
    if excludes is None:
        return tuple(xs.new_empty(0, *shape).to(device) for _ in range(n))
    if not isinstance(excludes, (list, tuple, Tensor)):
        raise ValueError(
            "excludes must be a list of tensors (one per input), got "
            f"{type(excludes).__module__}.{type(excludes).__name__}"
        )
    if len(excludes) != n:
        raise ValueError(
            f"excludes must hold one tensor per input ({n}), got {len(excludes)}"
        )
    out = []
    for i, ex in enumerate(excludes):
        check_exclude(ex, f"excludes[{i}]")
        if ex.numel() % xs[0].numel():
            raise ValueError(
                f"excludes[{i}] has shape {tuple(ex.shape)}, not [n, *{tuple(shape)}]"
            )
        out.append(ex.detach().to(device).reshape(-1, *shape))
    return tuple(out)


def check_exclude(ex: object, name: str) -> None:
    """Excluded points: a floating-point tensor with finite values."""
    check_tensor(ex, name)
    assert isinstance(ex, Tensor)
    if not bool(torch.isfinite(ex).all()):
        raise ValueError(f"{name} holds a value that is not finite (NaN or inf)")


def _k_tuple(k: int | Sequence[int], n: int) -> tuple[int, ...]:
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
    return tuple(int(v) for v in ks)


def _kind(obj: object) -> str:
    return type(obj).__name__
