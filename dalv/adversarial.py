"""Adversarial DAL: query strategies and augmenters built on gradient attacks.

Owns the strategies ``DeepFoolDistance`` (the paper's DFAL selection), ``FGSMDistance``
(FVAAL) and ``Mixture`` (FVAAL_rand); the augmenters ``OwnAdv`` (the strategy's own
adversarial example) and ``FGSMAdv`` (the FGSM sweep); and ``paper_compositions``, the paper
methods made of them. May import numpy, torch, ``dalv.attacks``, ``dalv.strategies``,
``dalv.augment`` and ``dalv.train``.

``dalv.methods`` sits below this module in the layering and imports it lazily: it registers
the classes in ``SERIALISABLE`` for (de)serialisation and adds ``paper_compositions`` to its
registry under the paper's names (``dalv.methods.get("FVAAL-No-Adv")``).

By-products. The distance strategies return, in ``Selection.extras`` (aligned with the
selected rows):

* ``"eps"`` [b]: the row's distance to the decision boundary as the strategy measures it:
  the minimal **L∞** FGSM step for FVAAL, the **L2** norm of the DeepFool perturbation for
  DFAL. The paper mixes the two norms on purpose: FGSM-Adv (and FV-Adv) start their L∞
  search at this value for either strategy (spec §6.3, §6.4).
* ``"x_adv"`` [b, *input_shape]: the strategy's own adversarial example (the reference
  code's "slot 0").
* ``"adv_ok"`` [b] bool: whether ``x_adv`` really changes the model's class.
* ``"has_adv"`` [b] bool: whether the row *has* an own example for augmenters to add. FGSM:
  only when the search succeeded (``== adv_ok``; otherwise ``x_adv`` is ``x`` itself).
  DeepFool: always, as in the reference code, although the clipped DeepFool example often
  does not flip the class (see ``dalv.attacks.deepfool``).

Every augmented example takes the true label of its source (spec §6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from dalv.attacks import deepfool, fgsm_sweep, min_fgsm_eps
from dalv.augment import AugmentedBatch, Augmenter, NoAugment
from dalv.strategies import (
    BADGE,
    Random,
    ScoreStrategy,
    Selection,
    Strategy,
    draw_candidates,
    top_budget,
)
from dalv.train import predict_logits

__all__ = [
    "DeepFoolDistance",
    "FGSMDistance",
    "Mixture",
    "OwnAdv",
    "FGSMAdv",
    "paper_compositions",
    "SERIALISABLE",
]


# ------------------------------------------------------------------ strategies


@dataclass(frozen=True)
class DeepFoolDistance(ScoreStrategy):
    """DFAL's selection (Ducoffe & Precioso, 2018; spec §5.5): smallest DeepFool norm first.

    Each candidate's score is ``−‖r‖₂``, ``r`` the DeepFool perturbation (before clipping),
    so the candidates closest to the boundary in L2 are queried first; ties go to the lower
    global index.

    Args:
        candidates: rows scored per cycle (``None`` = every unlabelled row).
        max_iter: DeepFool's step limit (20 in the paper).
        overshoot: DeepFool's per-step overshoot (0.02 in the paper).
    """

    name: ClassVar[str] = "DFAL"
    max_iter: int = 20
    overshoot: float = 0.02

    def score(
        self, model: nn.Module, x: Tensor
    ) -> tuple[np.ndarray, dict[str, Tensor]]:
        x_adv, r_l2 = deepfool(model, x, self.max_iter, self.overshoot)
        adv_ok = predict_logits(model, x_adv).argmax(1) != predict_logits(
            model, x
        ).argmax(1)
        extras = {
            "eps": r_l2,
            "x_adv": x_adv,
            "adv_ok": adv_ok,
            "has_adv": torch.ones_like(adv_ok),
        }
        return -r_l2.double().cpu().numpy(), extras


@dataclass(frozen=True)
class FGSMDistance(ScoreStrategy):
    """FVAAL's selection (spec §5.6): smallest FGSM step that changes the class first.

    Each candidate's score is ``−ε``, ε the minimal L∞ FGSM step found by the binary
    search of ``dalv.attacks.min_fgsm_eps`` (the midpoint of its final interval). Scores
    take few distinct values, so ties are common; they go to the lower global index (the
    reference code breaks them arbitrarily, spec §11.10). Candidates no tested ε flips get
    ε = 1 and come last.

    Args:
        candidates: rows scored per cycle (``None`` = every unlabelled row).
        tol: width at which the binary search stops (5e-4: 11 FGSM evaluations).
    """

    name: ClassVar[str] = "FVAAL"
    tol: float = 5e-4

    def score(
        self, model: nn.Module, x: Tensor
    ) -> tuple[np.ndarray, dict[str, Tensor]]:
        eps, x_adv, flipped = min_fgsm_eps(model, x, self.tol)
        extras = {"eps": eps, "x_adv": x_adv, "adv_ok": flipped, "has_adv": flipped}
        return -eps.double().cpu().numpy(), extras


@dataclass(frozen=True)
class Mixture(ScoreStrategy):
    """Half by a score, half at random (the paper's FVAAL_rand, spec §5.7).

    Scores every candidate with ``base``; the first ``⌊fraction · budget⌋`` rows are the
    top-scoring ones, the rest are drawn uniformly from the remaining candidates. Every
    selected row carries ``base``'s scores and by-products (so augmenters can seed from
    them).

    Args:
        candidates: rows scored per cycle (``None`` = every unlabelled row).
        base: the scoring strategy (its own ``candidates`` is not used).
        fraction: share of the budget taken by score, in [0, 1].
    """

    base: ScoreStrategy = field(default_factory=FGSMDistance)
    fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction must lie in [0, 1], got {self.fraction}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.base.name}_rand"

    def score(
        self, model: nn.Module, x: Tensor
    ) -> tuple[np.ndarray, dict[str, Tensor]]:
        return self.base.score(model, x)

    def _select(self, model, pool, budget, rng):
        cand = draw_candidates(pool, self.candidates, rng)
        if len(cand) < budget:
            raise ValueError(
                f"{self.name} needs at least budget={budget} candidates, got "
                f"{len(cand)}"
            )
        scores, extras = self.score(model, pool.x[torch.from_numpy(cand)])
        n_top = math.floor(self.fraction * budget)
        top = top_budget(scores, n_top)
        rest = np.setdiff1d(np.arange(len(cand)), top)
        pos = np.concatenate(
            [top, rng.choice(rest, size=budget - n_top, replace=False)]
        )
        pos_t = torch.from_numpy(pos)
        return Selection(
            cand[pos],
            np.asarray(scores)[pos],
            {k: v[pos_t.to(v.device)] for k, v in extras.items()},
        )


# ------------------------------------------------------------------ augmenters


def _own_examples(
    hints: Selection | None, source_idx: np.ndarray, x: Tensor
) -> tuple[Tensor, Tensor] | None:
    """The strategy's own examples ``(x_adv [n, ...], has [n] bool)``, or None if it made none."""
    if hints is None:
        return None
    if not np.array_equal(np.asarray(hints.idx), np.asarray(source_idx)):
        raise ValueError(
            "hints must be the Selection the queried rows came from "
            "(hints.idx differs from source_idx)"
        )
    extras = hints.extras
    if "x_adv" not in extras:
        return None
    has = extras.get("has_adv", extras.get("adv_ok"))
    x_adv = extras["x_adv"].to(x.device)
    if has is None:
        has = torch.ones(len(x_adv), dtype=torch.bool)
    return x_adv, has.to(x.device).bool()


def _batch(
    x: Tensor, mask: Tensor, y: Tensor, source_idx: np.ndarray, stats: dict[str, float]
) -> AugmentedBatch:
    """Flatten per-source slots ``x [n, S, ...]`` where ``mask [n, S]``, source-major."""
    n_slots = mask.shape[1]
    y_rep = y.to(x.device)[:, None].expand(-1, n_slots)
    src = np.repeat(np.asarray(source_idx, dtype=np.int64)[:, None], n_slots, axis=1)
    return AugmentedBatch(x[mask], y_rep[mask], src[mask.cpu().numpy()], stats)


@dataclass(frozen=True)
class OwnAdv(Augmenter):
    """Adds the query strategy's own adversarial example of each queried row (slot 0).

    With DFAL this is the original DFAL recipe (spec §5.5, §6.2): the clipped DeepFool
    example of every queried row, labelled with the row's true label. With FVAAL it is the
    FGSM example at the smallest successful ε (rows the search never flipped add nothing).
    Needs a strategy that returns ``x_adv`` in its extras.
    """

    name: ClassVar[str] = "Own-Adv"

    def generate(self, model, x, y, *, source_idx, hints=None, rng):
        own = _own_examples(hints, source_idx, x)
        if own is None:
            raise ValueError(
                "OwnAdv adds the query strategy's own adversarial example, so it "
                "needs a strategy that makes one (DeepFoolDistance, FGSMDistance "
                "or Mixture); this selection has no 'x_adv' extra"
            )
        x_adv, has = own
        stats = {"requested": float(len(x)), "found": float(has.sum())}
        return _batch(x_adv[:, None], has[:, None], y, source_idx, stats)


@dataclass(frozen=True)
class FGSMAdv(Augmenter):
    """Up to ``k`` adversarial examples per queried row from an FGSM sweep (spec §6.3).

    Per row x: ``ε_lo`` = the strategy's ``"eps"`` hint when present (FVAAL: its minimal
    L∞ ε; DFAL: its DeepFool **L2** norm, used as an L∞ value as the paper does), else
    ``eps_start``; ``ε_hi = eps_max``; if ``ε_lo ≥ ε_hi`` then ``ε_lo = 0``. If the strategy
    has its own example for x (``has_adv``), it is kept as slot 0 and counts toward k, so
    ``s = k − 1`` new examples are sought, else ``s = k``. FGSM (gradient at x, own
    prediction) runs at the ``2s`` points of ``linspace(ε_lo, ε_hi, 2s)``; a point succeeds
    if the class changes. At each odd position j = 1, 3, …, 2s − 1 the sweep takes point j
    if it succeeded, else j − 1 if it succeeded and is unused, else j + 1 if it exists,
    succeeded and is unused, else nothing; each point is used at most once. All rows and
    grid points are evaluated in one batch.

    Every example is labelled with its source's true label; rows can yield fewer than k.

    Args:
        k: examples per queried row, own example included (≥ 1).
        eps_max: ``ε_hi``, the L∞ top of the sweep (0.1: the paper's "bounded").
        eps_start: L∞ ``ε_lo`` for strategies without an ``"eps"`` hint (Random, BADGE).
    """

    k: int = 10
    eps_max: float = 0.1
    eps_start: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")
        if not 0.0 < self.eps_max <= 1.0:
            raise ValueError(
                f"eps_max is an L∞ radius and must lie in (0, 1], got {self.eps_max}"
            )
        if not 0.0 <= self.eps_start <= 1.0:
            raise ValueError(f"eps_start must lie in [0, 1], got {self.eps_start}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"FGSM-Adv({self.k})"

    def grid(self, eps_lo: Tensor, n_new: Tensor) -> tuple[Tensor, Tensor]:
        """The sweep's ε values ``[n, 2k]`` (float64) and which of them exist ``[n, 2k]``.

        Row i holds ``linspace(ε_lo_i', eps_max, 2·n_new_i)`` padded with zeros, where
        ``ε_lo_i' = 0`` if ``ε_lo_i ≥ eps_max``.
        """
        lo = torch.where(eps_lo >= self.eps_max, 0.0, eps_lo.double())
        n_pts = 2 * n_new.to(lo.device)
        j = torch.arange(2 * self.k, device=lo.device, dtype=torch.float64)
        step = (self.eps_max - lo) / (n_pts - 1).clamp_min(1)  # as np.linspace
        eps = j * step[:, None] + lo[:, None]
        eps = torch.where(
            j == (n_pts - 1)[:, None], self.eps_max, eps
        )  # exact end point
        valid = j < n_pts[:, None]
        return torch.where(valid, eps, 0.0), valid

    def generate(self, model, x, y, *, source_idx, hints=None, rng):
        n = len(x)
        if n == 0:
            return AugmentedBatch.empty(tuple(x.shape[1:]))
        own = _own_examples(hints, source_idx, x)
        x_own, has = (
            own
            if own is not None
            else (x, torch.zeros(n, dtype=torch.bool, device=x.device))
        )
        extras = hints.extras if hints is not None else {}
        eps_lo = (
            extras["eps"].to(x.device)
            if "eps" in extras
            else torch.full((n,), self.eps_start, dtype=torch.float64, device=x.device)
        )
        eps, valid = self.grid(eps_lo, self.k - has.long())
        cand, flipped = fgsm_sweep(model, x, eps.float())  # [n, 2k, ...], [n, 2k]
        avail = flipped & valid.to(flipped.device)
        rows = torch.arange(n, device=avail.device)
        picks = []
        for t in range(self.k):  # odd positions j = 2t + 1
            j = 2 * t + 1
            nxt = (
                avail[:, j + 1]
                if j + 1 < avail.shape[1]
                else torch.zeros_like(avail[:, j])
            )
            pick = torch.where(
                avail[:, j],
                j,
                torch.where(avail[:, j - 1], j - 1, torch.where(nxt, j + 1, -1)),
            )
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


# ------------------------------------------------------------------ paper methods


def paper_compositions(k: int = 10) -> dict[str, tuple[Strategy, Augmenter]]:
    """The paper's gradient-attack methods, ``{exact paper name: (strategy, augmenter)}``.

    FVAAL-No-Adv and DFAL-No-Adv only select; DFAL adds its DeepFool example;
    ``…+FGSM-Adv(k)`` add an FGSM sweep of up to k examples per query (spec §6.6). The
    FV-Adv variants come from ``dalv.verify``. ``dalv.methods.registry(k)`` wraps these as
    ``Method``s labelled with their names.
    """
    fvaal, dfal, sweep = FGSMDistance(), DeepFoolDistance(), FGSMAdv(k=k)
    return {
        "FVAAL-No-Adv": (fvaal, NoAugment()),
        f"FVAAL+FGSM-Adv({k})": (fvaal, sweep),
        "DFAL": (dfal, OwnAdv()),
        "DFAL-No-Adv": (dfal, NoAugment()),
        f"DFAL+FGSM-Adv({k})": (dfal, sweep),
        f"BADGE+FGSM-Adv({k})": (BADGE(), sweep),
        f"Random+FGSM-Adv({k})": (Random(), sweep),
    }


# Dataclasses ``dalv.methods`` registers for (de)serialisation by class name.
SERIALISABLE = (DeepFoolDistance, FGSMDistance, Mixture, OwnAdv, FGSMAdv)
