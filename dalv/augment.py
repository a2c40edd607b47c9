"""Augmenters: adversarial examples added to the training set for free.

Owns ``AugmentedBatch``, ``Augmenter`` and every augmenter: ``NoAugment``, ``OwnAdv``
(the strategy's own example), ``FGSMAdv`` (an FGSM sweep), ``FVAdv`` (a verifier's
counterexamples) and ``PGDAdv`` (its control: PGD's examples). May import numpy, torch,
``dalv.models``, ``dalv.attacks``, ``dalv.verify`` and ``dalv.strategies`` (for the
``Selection`` type).

Every adversarial example takes the true label of the queried example it came from (the
paper's label-invariance assumption, protocol §4) and uses no labelling budget. An
augmenter's ``k`` (examples per queried row) is a field, so it is part of the method and
of its name.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from dalv.attacks import fgsm_sweep
from dalv.models import model_device
from dalv.strategies import OwnExamples, Selection
from dalv.verify import (
    Budget,
    LirpaVerifier,
    MilpVerifier,
    Property,
    Schedule,
    Verifier,
)

# The verifier FV-Adv uses unless told otherwise: the paper's exact query as a MILP.
DEFAULT_VERIFIER = MilpVerifier

__all__ = [
    "AugmentedBatch",
    "Augmenter",
    "NoAugment",
    "OwnAdv",
    "FGSMAdv",
    "FVAdv",
    "PGDAdv",
]


@dataclass(frozen=True)
class AugmentedBatch:
    """Adversarial examples with their inherited labels.

    Attributes:
        x: [m, *input_shape] inputs in [0, 1].
        y: [m] int64, each the label of its source example.
        source_idx: [m] global index of the queried example each came from.
        stats: counts and seconds (e.g. ``requested``, ``found``, ``timeouts``).
    """

    x: Tensor
    y: Tensor
    source_idx: np.ndarray
    stats: Mapping[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    @staticmethod
    def empty(
        input_shape: tuple[int, ...], device: torch.device | str = "cpu"
    ) -> AugmentedBatch:
        return AugmentedBatch(
            torch.empty((0, *input_shape), device=device),
            torch.empty(0, dtype=torch.long, device=device),
            np.empty(0, dtype=np.int64),
        )

    def __add__(self, other: AugmentedBatch) -> AugmentedBatch:
        """Concatenate (statistics are per batch, so the sum keeps none)."""
        return AugmentedBatch(
            torch.cat([self.x, other.x.to(self.x.device)]),
            torch.cat([self.y, other.y.to(self.y.device)]),
            np.concatenate([self.source_idx, other.source_idx]),
        )


class Augmenter(abc.ABC):
    """Base class: ``generate(model, x, y, source_idx=..., hints=..., rng=...)``.

    ``x``, ``y`` are the queried examples and their true labels; ``hints`` is the
    strategy's ``Selection``, whose by-products (a distance to the boundary, an
    adversarial example) an augmenter may reuse.
    """

    name: ClassVar[str] = "augmenter"
    kind: ClassVar[str] = "augmenter"  # the family whatever k: "FGSM-Adv", "FV-Adv"

    @abc.abstractmethod
    def generate(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        source_idx: np.ndarray,
        hints: Selection | None = None,
        rng: np.random.Generator,
    ) -> AugmentedBatch: ...

    def with_verifier(self, verifier: Verifier) -> Augmenter:
        """The same augmenter on another verifier (unchanged if it uses none)."""
        return self

    def with_k(self, k: int) -> Augmenter:
        """The same augmenter with ``k`` examples per row (unchanged if it has no k)."""
        return self


@dataclass(frozen=True)
class NoAugment(Augmenter):
    """Adds nothing (the paper's "-No-Adv" methods and the plain baselines)."""

    name: ClassVar[str] = "No-Adv"
    kind: ClassVar[str] = "No-Adv"

    def generate(self, model, x, y, *, source_idx, hints=None, rng):
        return AugmentedBatch.empty(tuple(x.shape[1:]), x.device)


def _own_examples(
    hints: Selection | None, source_idx: np.ndarray
) -> OwnExamples | None:
    """The strategy's own examples of the queried rows, or None if it made none."""
    if hints is None:
        return None
    if not np.array_equal(np.asarray(hints.idx), np.asarray(source_idx)):
        raise ValueError(
            "hints must be the Selection the queried rows came from "
            "(hints.idx differs from source_idx)"
        )
    return hints.own


def _batch(
    x: Tensor, mask: Tensor, y: Tensor, source_idx: np.ndarray, stats: dict[str, float]
) -> AugmentedBatch:
    """Flatten per-source slots ``x [n, S, ...]`` where ``mask [n, S]``,
    source-major."""
    n_slots = mask.shape[1]
    y_rep = y.to(x.device)[:, None].expand(-1, n_slots)
    src = np.repeat(np.asarray(source_idx, dtype=np.int64)[:, None], n_slots, axis=1)
    return AugmentedBatch(x[mask], y_rep[mask], src[mask.cpu().numpy()], stats)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")


# ------------------------------------------------------------------ the strategy's own


@dataclass(frozen=True)
class OwnAdv(Augmenter):
    """Adds the query strategy's own adversarial example of each queried row (slot 0).

    With DFAL this is the original DFAL recipe (protocol §3.5, §6.2): the clipped
    DeepFool example of every queried row, labelled with the row's true label. With
    FVAAL it is the FGSM example at the smallest successful ε (rows the search never
    flipped add nothing). Needs a strategy that makes examples.
    """

    name: ClassVar[str] = "Own-Adv"
    kind: ClassVar[str] = "Own-Adv"

    def generate(self, model, x, y, *, source_idx, hints=None, rng):
        own = _own_examples(hints, source_idx)
        if own is None:
            raise ValueError(
                "OwnAdv adds the query strategy's own adversarial example, so it needs "
                "a strategy that makes one (DeepFoolDistance, FGSMDistance, Mixture or "
                "CertifiedRadius); this selection has none"
            )
        has = own.valid.to(x.device).bool()
        stats = {"requested": float(len(x)), "found": float(has.sum())}
        return _batch(own.x.to(x.device)[:, None], has[:, None], y, source_idx, stats)


# ------------------------------------------------------------------ FGSM sweep


@dataclass(frozen=True)
class FGSMAdv(Augmenter):
    """Up to ``k`` adversarial examples per queried row from an FGSM sweep (protocol
    §4.3).

    Per row x: ``ε_lo`` = the strategy's distance when it measures one (FVAAL: its
    minimal L∞ ε; DFAL: its DeepFool **L2** norm, read as an L∞ value as the paper
    does), else ``eps_start``; ``ε_hi = eps_max``; if ``ε_lo ≥ ε_hi`` then ``ε_lo = 0``.
    If the strategy has its own example of x, it is kept as slot 0 and counts toward k,
    so ``s = k − 1`` new examples are sought, else ``s = k``. FGSM (gradient at x, own
    prediction) runs at the ``2s`` points of ``linspace(ε_lo, ε_hi, 2s)``; a point
    succeeds if the class changes. At each odd position j = 1, 3, …, 2s − 1 the sweep
    takes point j if it succeeded, else j − 1 if it succeeded and is unused, else j + 1
    if it exists, succeeded and is unused, else nothing; each point is used at most
    once. All rows and grid points are evaluated in one batch.

    Every example is labelled with its source's true label; rows can yield fewer than k.

    Args:
        k: examples per queried row, own example included (≥ 1).
        eps_max: ``ε_hi``, the L∞ top of the sweep (0.1: the paper's "bounded").
        eps_start: L∞ ``ε_lo`` for strategies that measure no distance (Random, BADGE).
    """

    kind: ClassVar[str] = "FGSM-Adv"
    k: int = 10
    eps_max: float = 0.1
    eps_start: float = 0.05

    def __post_init__(self) -> None:
        _check_k(self.k)
        if not 0.0 < self.eps_max <= 1.0:
            raise ValueError(
                f"eps_max is an L∞ radius and must lie in (0, 1], got {self.eps_max}"
            )
        if not 0.0 <= self.eps_start <= 1.0:
            raise ValueError(f"eps_start must lie in [0, 1], got {self.eps_start}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"FGSM-Adv({self.k})"

    def with_k(self, k: int) -> FGSMAdv:
        return dataclasses.replace(self, k=k)

    def grid(self, eps_lo: Tensor, n_new: Tensor) -> tuple[Tensor, Tensor]:
        """The sweep's ε values ``[n, 2k]`` (float64) and which of them exist ``[n,
        2k]``.

        Row i holds ``linspace(ε_lo_i', eps_max, 2·n_new_i)`` padded with zeros, where
        ``ε_lo_i' = 0`` if ``ε_lo_i ≥ eps_max``.
        """
        lo = torch.where(eps_lo >= self.eps_max, 0.0, eps_lo.double())
        n_pts = 2 * n_new.to(lo.device)
        j = torch.arange(2 * self.k, device=lo.device, dtype=torch.float64)
        step = (self.eps_max - lo) / (n_pts - 1).clamp_min(1)  # as np.linspace
        eps = j * step[:, None] + lo[:, None]
        last = j == (n_pts - 1)[:, None]
        eps = torch.where(last, self.eps_max, eps)  # the exact end point
        valid = j < n_pts[:, None]
        return torch.where(valid, eps, 0.0), valid

    def generate(self, model, x, y, *, source_idx, hints=None, rng):
        n = len(x)
        if n == 0:
            return AugmentedBatch.empty(tuple(x.shape[1:]), x.device)
        own = _own_examples(hints, source_idx)
        if own is not None:
            x_own, has = own.x.to(x.device), own.valid.to(x.device).bool()
        else:
            x_own, has = x, torch.zeros(n, dtype=torch.bool, device=x.device)
        if hints is not None and hints.distance is not None:
            eps_lo = hints.distance.value.to(x.device)
        else:
            eps_lo = torch.full(
                (n,), self.eps_start, dtype=torch.float64, device=x.device
            )
        eps, valid = self.grid(eps_lo, self.k - has.long())
        cand, flipped = fgsm_sweep(model, x, eps.float())  # [n, 2k, ...], [n, 2k]
        avail = flipped & valid.to(flipped.device)
        rows = torch.arange(n, device=avail.device)
        never = torch.zeros_like(avail[:, 0])
        picks = []
        for t in range(self.k):  # odd positions j = 2t + 1
            j = 2 * t + 1
            nxt = avail[:, j + 1] if j + 1 < avail.shape[1] else never
            fallback = torch.where(avail[:, j - 1], j - 1, torch.where(nxt, j + 1, -1))
            pick = torch.where(avail[:, j], j, fallback)
            took = pick >= 0
            avail[rows[took], pick[took]] = False
            picks.append(pick)
        pick = torch.stack(picks, 1)  # [n, k]
        new_x = cand[rows[:, None], pick.clamp_min(0)]  # [n, k, ...]
        slots = torch.cat([x_own.to(cand.device)[:, None], new_x], 1)  # [n, 1 + k, ...]
        mask = torch.cat([has.to(cand.device)[:, None], pick >= 0], 1)
        stats = {
            "requested": float(n * self.k),
            "found": float(mask.sum()),
            "own": float(has.sum()),
            "fgsm": float((pick >= 0).sum()),
        }
        return _batch(slots, mask, y, source_idx, stats)


# ------------------------------------------------------------------ box searches


def _search_boxes(aug, search, model, x, y, source_idx, hints, rng) -> AugmentedBatch:
    """The paper's FV-Adv loop (protocol §4.4) with ``search`` answering the queries;
    shared by FV-Adv (a verifier) and PGD-Adv (the PGD falsifier, its control)."""
    b = len(x)
    device = model_device(model)
    x = x.to(device)
    eps0 = torch.full((b,), aug.eps_default, dtype=torch.float64, device=device)
    if hints is not None and hints.distance is not None:
        e = hints.distance.value.to(device, torch.float64)
        eps0 = torch.where(e <= aug.eps_reset_above, e, eps0)
    own = _own_examples(hints, source_idx)
    has_own = torch.zeros(b, dtype=torch.bool, device=device)
    x_own = x
    if own is not None:
        has_own, x_own = own.valid.to(device).bool(), own.x.to(device)
    empty = x.new_empty(0, *x.shape[1:])
    seeds = [x_own[i : i + 1] if has_own[i] else empty for i in range(b)]
    eps = eps0 + aug.schedule.step
    need = [aug.k - len(s) for s in seeds]
    limit = aug.schedule.max_eps + 1e-12
    todo = [i for i in range(b) if need[i] > 0 and float(eps[i]) <= limit]
    seed = int(rng.integers(2**31))
    found: list[Tensor] = [empty] * b
    results = []
    if todo:
        results = search.find_batch(
            model,
            x[todo],
            eps[todo],
            [need[i] for i in todo],
            [seeds[i] for i in todo],
            aug.prop,
            aug.budget,
            schedule=aug.schedule,
            seed=seed,
        )
        for i, res in zip(todo, results, strict=True):
            found[i] = res.counterexamples[: need[i]]
    xs, src, ys = [], [], []
    for i in range(b):
        block = torch.cat([seeds[i], found[i]])
        xs.append(block)
        ys.append(y[i].repeat(len(block)))
        src.append(np.full(len(block), source_idx[i], dtype=np.int64))
    n_own = int(has_own.sum())
    n_new = sum(len(f) for f in found)
    # radius steps proved empty: each growth of the box, and a final proof at the end
    proved = 0
    for i, res in zip(todo, results, strict=True):
        steps = round((res.eps - float(eps[i])) / aug.schedule.step)
        proved += max(steps, 0) + int(res.exhausted)
    source = search.witness_source
    stats = {
        "requested": float(b * aug.k),
        "found": float(n_own + n_new),
        "own": float(n_own),
        "solver": float(n_new if source == "solver" else 0),
        "pgd": float(n_new if source == "pgd" else 0),
        "proved": float(proved),
        "sat": float(sum(r.status == "sat" for r in results)),
        "unsat": float(sum(r.status == "unsat" for r in results)),
        "unknown": float(b - len(results))
        + float(sum(r.status == "unknown" for r in results)),
        "timeouts": float(sum(r.stats.timed_out for r in results)),
        "calls": float(sum(r.stats.calls for r in results)),
        "rejected": float(sum(r.stats.rejected for r in results)),
    }
    return AugmentedBatch(torch.cat(xs), torch.cat(ys), np.concatenate(src), stats)


def _check_search(aug) -> None:
    _check_k(aug.k)
    if not 0 < aug.eps_default <= 1 or not 0 <= aug.eps_reset_above <= 1:
        raise ValueError(
            f"eps_default must lie in (0, 1] and eps_reset_above in [0, 1], got "
            f"{aug.eps_default} and {aug.eps_reset_above}"
        )


@dataclass(frozen=True)
class FVAdv(Augmenter):
    """Up to ``k`` verifier counterexamples per queried row (the paper's +FV-Adv, §4.4).

    Per queried row x with winner c1 and runner-up c2: the search starts at the radius
    ε0 + ``schedule.step`` (ε0 = the strategy's distance when it is ≤
    ``eps_reset_above``, else ``eps_default``), seeded with the strategy's own
    adversarial example (which counts towards k); it asks the verifier for points x'
    in the clipped L∞ box where c2 beats c1 by ``prop.margin`` and which differ by ≥
    ``prop.delta`` in every coordinate from every earlier one; after each proof that
    no more exist, the box grows by ``schedule.step``, up to ``schedule.max_eps``. All
    queried rows of a cycle are searched together (batched). Every returned
    counterexample has been re-checked by an exact float64 forward pass.

    Args:
        verifier: the backend answering the queries (default: the exact MILP,
            ``MilpVerifier()``, as the paper's Marabou ``--milp``).
        k: examples per queried row, the strategy's own example included (paper: 10).
        schedule: radius growth after each proof (0.05 up to 1 in the paper).
        eps_default: start radius when the strategy gives none or one above
            ``eps_reset_above`` (0.01 and 0.5 in the paper).
        eps_reset_above: see ``eps_default``.
        budget: what the search may spend: ``work`` per queried row in the verifier's
            unit (solver calls, or subdomains for lirpa). Work alone ends a search by
            default, so a seed fixes the examples on any machine. ``seconds`` (off by
            default) adds a wall-clock safety net for the whole cycle's search, for
            interactive use: when it fires, the rows it cut are counted in the results
            row's ``aug_timeouts`` (the report flags them) and the run then depends on
            the machine's speed.
        prop: the property (target class, separation rule, δ and margin).
    """

    kind: ClassVar[str] = "FV-Adv"
    verifier: Verifier = field(default_factory=lambda: DEFAULT_VERIFIER())
    k: int = 10
    schedule: Schedule = field(default_factory=Schedule)
    eps_default: float = 0.01
    eps_reset_above: float = 0.5
    budget: Budget = field(default_factory=lambda: Budget(work=1000))
    prop: Property = field(default_factory=Property)

    def __post_init__(self) -> None:
        _check_search(self)
        if not isinstance(self.verifier, Verifier):
            raise ValueError(
                f"verifier must be a dalv.verify.Verifier, got {self.verifier!r}"
            )

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"FV-Adv({self.k})"

    def with_verifier(self, verifier: Verifier) -> FVAdv:
        return dataclasses.replace(self, verifier=verifier)

    def with_k(self, k: int) -> FVAdv:
        return dataclasses.replace(self, k=k)

    def generate(self, model, x, y, *, source_idx, hints=None, rng):
        return _search_boxes(self, self.verifier, model, x, y, source_idx, hints, rng)


@dataclass(frozen=True)
class PGDAdv(Augmenter):
    """The control arm of FV-Adv: the same box, property, exclusion rule, radius
    schedule and labels, but every example comes from projected gradient descent
    (protocol §4.5).

    The search is the batched branch and bound of ``LirpaVerifier``: CROWN bounds prove
    a box empty (so the radius grows exactly as FV-Adv's does), and its witnesses are
    PGD points from random starts, projected onto the box minus the exclusions. So
    FV-Adv against PGD-Adv tells "a verifier's counterexample" from "a stronger
    attack's example".

    Args:
        search: the PGD-plus-bounds engine (its knobs: restarts, PGD steps, ...).
        k, schedule, eps_default, eps_reset_above, budget, prop: as for ``FVAdv``
            (``budget.work`` counts subdomains bounded per queried row).
    """

    kind: ClassVar[str] = "PGD-Adv"
    search: LirpaVerifier = field(default_factory=LirpaVerifier)
    k: int = 10
    schedule: Schedule = field(default_factory=Schedule)
    eps_default: float = 0.01
    eps_reset_above: float = 0.5
    budget: Budget = field(default_factory=lambda: Budget(work=1000))
    prop: Property = field(default_factory=Property)

    def __post_init__(self) -> None:
        _check_search(self)
        if not isinstance(self.search, LirpaVerifier):
            raise ValueError(f"search must be a LirpaVerifier, got {self.search!r}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"PGD-Adv({self.k})"

    def with_k(self, k: int) -> PGDAdv:
        return dataclasses.replace(self, k=k)

    def generate(self, model, x, y, *, source_idx, hints=None, rng):
        return _search_boxes(self, self.search, model, x, y, source_idx, hints, rng)
