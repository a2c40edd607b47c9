"""One input's question to an exact solver: one type for the MILP and Marabou backends.

Owns: ``SolverTask`` (numpy only, picklable: what a worker process needs),
``SolverTasks`` (a ``Query``'s tasks, sharing one copy of the weights) and
``numpy_weights`` (the model as float64 affine layers); may import: numpy, torch, the
standard library, ``dalv.models``, ``dalv.verify.{budget, milp_encode, network,
property, query}``.

The torch side (``milp.MilpVerifier``, ``marabou.MarabouVerifier``) turns its
``Query`` into one task per input (``SolverTasks``); the solver loops
(``milp_search.solve_task``, ``marabou_worker.solve_task``) read them. The property's
spec rows carry the classes: row ``s`` is ``e_c1 - e_j`` for one rival ``j``, so the
winner and the rivals follow from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dalv.models import model_dtype
from dalv.verify.budget import Schedule
from dalv.verify.milp_encode import Layers, merge_layers
from dalv.verify.network import affine_relu_layers
from dalv.verify.property import Property
from dalv.verify.query import Query

__all__ = ["SolverTask", "SolverTasks", "Weights", "numpy_weights"]

Weights = list[tuple[np.ndarray, np.ndarray, bool]]
"""Per affine layer ``(W [n_out, n_in], b [n_out], relu)``, float64."""


def numpy_weights(model: nn.Module, who: str) -> Weights:
    """The model as float64 numpy affine layers (refused by name, for ``who``, when a
    layer is not supported)."""
    layers = affine_relu_layers(model, dtype=torch.float64, who=who)
    return [(a.weight.cpu().numpy(), a.bias.cpu().numpy(), a.relu) for a in layers]


@dataclass(frozen=True)
class SolverTask:
    """One input's question (numpy only; picklable).

    Attributes:
        weights: The network as given, for the exact re-check (and Marabou's query).
        x: The input, flattened, float64.
        eps: The (first) radius.
        witness_dtype: numpy dtype name of the witnesses (the model's dtype).
        spec: The property's spec rows ``[S, n_classes]``, float64: ``e_c1 - e_j``
            per rival ``j`` (``Property.spec``).
        exclude: Earlier counterexamples ``[n, d]`` (float64).
        k: Counterexamples wanted.
        prop: The property.
        deadline: ``time.monotonic()`` instant at which the whole call ends (``None``:
            no limit). The monotonic clock is system-wide on the platforms that fork,
            so every worker reads the same instant.
        max_calls: Solver calls allowed (what is left of ``Budget.work``; ``None``:
            no limit).
        schedule: Radius growth after a proof (``None``: none; the MILP backend).
        seed: Seed of the PGD starts and of the solver (the MILP backend).
        layers: ``weights`` with runs of Linear layers composed (``merge_layers``);
            computed when not given (pass it to share one copy across a batch).
    """

    weights: Weights
    x: np.ndarray
    eps: float
    witness_dtype: str
    spec: np.ndarray
    exclude: np.ndarray
    k: int
    prop: Property
    deadline: float | None = None
    max_calls: int | None = None
    schedule: Schedule | None = None
    seed: int = 0
    layers: Layers | None = None

    def __post_init__(self) -> None:
        if self.layers is None:
            object.__setattr__(self, "layers", merge_layers(self.weights))

    @property
    def c1(self) -> int:
        """The winner class (the ``+1`` of every spec row)."""
        return int(np.argmax(self.spec[0]))

    @property
    def rivals(self) -> list[int]:
        """The classes that may beat ``c1`` (the ``-1`` of each spec row), in order."""
        return [int(np.argmin(row)) for row in self.spec]


class SolverTasks:
    """A ``Query`` as solver tasks: the weights converted once, one task per input.

    Args:
        query: The question.
        who: The backend, named in the error for an unsupported layer.
        deadline: ``time.monotonic()`` instant at which the whole call ends.
    """

    def __init__(self, query: Query, who: str, deadline: float | None) -> None:
        self.query, self.deadline = query, deadline
        self.weights = numpy_weights(query.model, who)
        self.layers = merge_layers(self.weights)
        self.spec = query.spec(torch.float64).cpu().numpy()
        dtype = model_dtype(query.model)
        self.witness_dtype = str(torch.empty(0, dtype=dtype).numpy().dtype)

    def task(
        self,
        b: int,
        *,
        eps: float | None = None,
        exclude: torch.Tensor | None = None,
        k: int | None = None,
        calls_used: int = 0,
        grow: bool = True,
    ) -> SolverTask:
        """Input ``b``'s task: by default its whole question; a backend that runs the
        radius schedule itself passes the current ``eps``, the points to keep away
        from (given and found), the ``k`` still wanted, the calls already spent and
        ``grow=False``."""
        q = self.query
        excl = q.excludes[b] if exclude is None else exclude
        work = q.budget.work
        return SolverTask(
            weights=self.weights,
            layers=self.layers,
            x=q.xs[b].flatten().to(torch.float64).cpu().numpy(),
            eps=float(q.eps[b]) if eps is None else float(eps),
            witness_dtype=self.witness_dtype,
            spec=self.spec[b],
            exclude=excl.flatten(1).to(torch.float64).cpu().numpy(),
            k=int(q.k[b]) if k is None else int(k),
            prop=q.prop,
            deadline=self.deadline,
            max_calls=None if work is None else work - calls_used,
            schedule=q.schedule if grow else None,
            seed=q.seed % 2**31,  # per input: a batch changes nothing
        )

    def all(self) -> list[SolverTask]:
        """One task per input, each its whole question."""
        return [self.task(b) for b in range(len(self.query))]
