"""Query strategies: which unlabelled rows to label next.

Owns ``Selection`` (with its typed by-products ``BoundaryDistance`` and
``OwnExamples``), ``Strategy``, ``ScoreStrategy`` and every strategy: ``Random``,
``Entropy``, ``Margin``, ``BADGE``, ``CoreSet``, ``DeepFoolDistance`` (DFAL),
``FGSMDistance`` (FVAAL), ``Mixture`` (FVAAL_rand) and ``CertifiedRadius``. May import
numpy, torch, ``dalv.data``, ``dalv.models``, ``dalv.train``, ``dalv.attacks``,
``dalv.verify``.

A strategy is a frozen dataclass: its fields are its whole configuration, so it prints,
hashes and serialises as itself. ``select`` returns a ``Selection`` of global indices.
How many unlabelled rows a strategy may look at (the candidate pool, 10,000 in the
paper) is a setting of the experiment, passed to ``select``; Random ignores it and
samples from every unlabelled row, as the paper's Random does.

The adversarial-distance strategies also measure how far each row is from the decision
boundary and make an adversarial example of it (the reference code's "slot 0"). Both
travel in the ``Selection`` as typed fields, so an augmenter reads them without guessing
what a key means.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from dalv.attacks import deepfool, min_fgsm_eps
from dalv.data import ActivePool
from dalv.models import embed, model_device
from dalv.train import predict_logits
from dalv.verify import certified_radius

__all__ = [
    "BoundaryDistance",
    "OwnExamples",
    "Selection",
    "Strategy",
    "ScoreStrategy",
    "Scored",
    "Random",
    "Entropy",
    "Margin",
    "BADGE",
    "CoreSet",
    "DeepFoolDistance",
    "FGSMDistance",
    "Mixture",
    "CertifiedRadius",
    "draw_candidates",
    "top_budget",
]


# ------------------------------------------------------------------ selections


@dataclass(frozen=True)
class BoundaryDistance:
    """Each row's distance to the decision boundary, as a strategy measured it.

    Attributes:
        value: [b] float64 distances.
        norm: ``"linf"`` (an L∞ radius in pixel units) or ``"l2"``.
        certified: True when ``value`` is a proved lower bound (no input that close
            changes the class); False when it is an attack's radius (an input that far
            does change it, or nothing was found up to ``value``).
    """

    value: Tensor
    norm: Literal["linf", "l2"]
    certified: bool = False

    def take(self, pos: Tensor) -> BoundaryDistance:
        return BoundaryDistance(
            self.value[pos.to(self.value.device)], self.norm, self.certified
        )


@dataclass(frozen=True)
class OwnExamples:
    """The adversarial example a strategy made of each row while scoring it.

    Attributes:
        x: [b, *input_shape] the examples (the row itself where ``valid`` is False).
        valid: [b] bool, whether the row has an example for an augmenter to add. FVAAL:
            when some tested FGSM step changed the class. DFAL: always, as in the
            reference code, although the clipped DeepFool point often keeps the class.
        flipped: [b] bool, whether the example changes the model's class.
    """

    x: Tensor
    valid: Tensor
    flipped: Tensor

    def take(self, pos: Tensor) -> OwnExamples:
        p = pos.to(self.x.device)
        return OwnExamples(
            self.x[p],
            self.valid[p.to(self.valid.device)],
            self.flipped[p.to(self.flipped.device)],
        )


@dataclass(frozen=True)
class Selection:
    """What a strategy chose.

    Attributes:
        idx: [b] global row indices, unique, all unlabelled when chosen; in query order.
        scores: [b] the strategy's scores (higher = queried first), when it has scores.
        distance: each row's distance to the boundary, for strategies that measure one.
        own: each row's adversarial example, for strategies that make one.
    """

    idx: np.ndarray
    scores: np.ndarray | None = None
    distance: BoundaryDistance | None = None
    own: OwnExamples | None = None

    def __len__(self) -> int:
        return len(self.idx)


@dataclass(frozen=True)
class Scored:
    """What ``ScoreStrategy.score`` returns for ``n`` candidates (rows as given).

    Attributes:
        scores: [n] higher = more informative.
        distance: optional, as in ``Selection``.
        own: optional, as in ``Selection``.
    """

    scores: np.ndarray
    distance: BoundaryDistance | None = None
    own: OwnExamples | None = None

    def select(self, cand: np.ndarray, pos: np.ndarray) -> Selection:
        """The ``Selection`` of candidate positions ``pos`` (global indices
        ``cand``)."""
        p = torch.from_numpy(np.asarray(pos, dtype=np.int64))
        return Selection(
            cand[pos],
            np.asarray(self.scores)[pos],
            None if self.distance is None else self.distance.take(p),
            None if self.own is None else self.own.take(p),
        )


def draw_candidates(
    pool: ActivePool, n: int | None, rng: np.random.Generator
) -> np.ndarray:
    """``min(n, n_unlabelled)`` unlabelled global indices drawn without replacement,
    sorted.

    Sorting makes ties in later scores break by global index (a stable rule, protocol
    §3). ``n = None`` takes every unlabelled row.
    """
    unl = pool.unlabeled_idx
    if n is None or n >= len(unl):
        return unl
    return np.sort(rng.choice(unl, size=n, replace=False))


def top_budget(scores: np.ndarray, budget: int) -> np.ndarray:
    """Positions of the ``budget`` highest scores; ties keep the earlier position."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:budget]


# ------------------------------------------------------------------ base classes


class Strategy(abc.ABC):
    """Base class: ``select(model, pool, budget, rng=..., candidates=...) ->
    Selection``.

    Subclasses implement ``_select``; ``select`` checks, in one place, the invariants
    every strategy owes: ``budget`` unique, currently unlabelled, global indices.

    Class attributes:
        name: the name methods are displayed by (``"FVAAL"``, ``"BADGE"``, ...).
        makes_examples: whether ``select`` returns ``own`` adversarial examples (such a
            strategy without augmentation is called "<name>-No-Adv").
    """

    name: ClassVar[str] = "strategy"
    makes_examples: ClassVar[bool] = False

    def select(
        self,
        model: nn.Module,
        pool: ActivePool,
        budget: int,
        *,
        rng: np.random.Generator,
        candidates: int | None = None,
    ) -> Selection:
        """Choose ``budget`` unlabelled rows.

        Args:
            model: the current classifier (in eval mode).
            pool: labelled/unlabelled state; only read.
            budget: rows to choose.
            rng: the source of every random choice.
            candidates: how many unlabelled rows, drawn at random, to consider
                (``None``: all of them).
        """
        if budget < 1:
            raise ValueError(f"budget must be >= 1, got {budget}")
        if budget > pool.n_unlabeled:
            raise ValueError(
                f"budget {budget} exceeds the {pool.n_unlabeled} unlabelled examples "
                "left"
            )
        if candidates is not None and candidates < 1:
            raise ValueError(f"candidates must be >= 1 or None, got {candidates}")
        sel = self._select(model, pool, budget, rng, candidates)
        idx = np.asarray(sel.idx, dtype=np.int64)
        if len(idx) != budget or len(np.unique(idx)) != budget:
            raise RuntimeError(
                f"{self!r} returned {len(idx)} indices "
                f"({len(np.unique(idx))} unique) for budget {budget}"
            )
        if (pool.labeled_at[idx] >= 0).any():
            raise RuntimeError(f"{self!r} selected already labelled rows")
        return sel

    @abc.abstractmethod
    def _select(
        self,
        model: nn.Module,
        pool: ActivePool,
        budget: int,
        rng: np.random.Generator,
        candidates: int | None,
    ) -> Selection: ...


class ScoreStrategy(Strategy):
    """Score the candidates and take the ``budget`` best (ties: lower global index)."""

    @abc.abstractmethod
    def score(self, model: nn.Module, x: Tensor) -> Scored:
        """Score the rows ``x`` [n, *input_shape]; higher = more informative."""

    def _select(self, model, pool, budget, rng, candidates):
        cand = draw_candidates(pool, candidates, rng)
        scored = self.score(model, pool.x[torch.from_numpy(cand)])
        return scored.select(cand, top_budget(scored.scores, budget))


# ------------------------------------------------------------------ baselines


@dataclass(frozen=True)
class Random(Strategy):
    """Uniform sampling from *all* unlabelled rows (the paper's Random, protocol §3.1).

    The candidate-pool size does not apply, as in the reference code.
    """

    name: ClassVar[str] = "Random"

    def _select(self, model, pool, budget, rng, candidates):
        return Selection(rng.choice(pool.unlabeled_idx, size=budget, replace=False))


def _probs(model: nn.Module, x: Tensor) -> Tensor:
    return torch.softmax(predict_logits(model, x).double(), dim=1)


@dataclass(frozen=True)
class Entropy(ScoreStrategy):
    """Highest predictive entropy first.

    The reference code sorts entropy ascending, i.e. picks the *most confident* points
    (protocol §3.2); this is the standard max-entropy rule. Entropy appears in no paper
    result.
    """

    name: ClassVar[str] = "Entropy"

    def score(self, model, x):
        p = _probs(model, x)
        return Scored(torch.special.entr(p).sum(1).cpu().numpy())


@dataclass(frozen=True)
class Margin(ScoreStrategy):
    """Smallest gap between the two most probable classes first."""

    name: ClassVar[str] = "Margin"

    def score(self, model, x):
        top2 = _probs(model, x).topk(2, dim=1).values
        return Scored((-(top2[:, 0] - top2[:, 1])).cpu().numpy())


def _hidden_and_probs(
    model: nn.Module, x: Tensor, chunk: int = 4096
) -> tuple[Tensor, Tensor]:
    device = model_device(model)
    hs, ps = [], []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            h = embed(model, x[i : i + chunk].to(device))
            hs.append(h)
            ps.append(torch.softmax(model[-1](h), dim=1))
    return torch.cat(hs).double(), torch.cat(ps).double()


@dataclass(frozen=True)
class BADGE(Strategy):
    """Batch Active learning by Diverse Gradient Embeddings (Ash et al., 2020), protocol
    §3.3.

    The last-layer gradient embedding of x is ``g = q ⊗ h`` with ``h`` the penultimate
    features and ``q = onehot(argmax p) − p``. k-means++ seeding picks the query: the
    first centre maximises ‖g‖ = ‖q‖‖h‖, each next one is drawn ∝ D², D the distance to
    the nearest chosen centre. ‖g_i − g_j‖² = ‖q_i‖²‖h_i‖² + ‖q_j‖²‖h_j‖² −
    2(q_i·q_j)(h_i·h_j), so the [n, C·h] embeddings are never built.
    """

    name: ClassVar[str] = "BADGE"

    def _select(self, model, pool, budget, rng, candidates):
        cand = draw_candidates(pool, candidates, rng)
        h, p = _hidden_and_probs(model, pool.x[torch.from_numpy(cand)])
        q = -p
        q[torch.arange(len(q)), p.argmax(1)] += 1.0
        sq = (q * q).sum(1) * (h * h).sum(1)  # ‖g_i‖²  [n]
        chosen = [int(torch.argmax(sq))]
        d2 = torch.full_like(sq, float("inf"))
        for _ in range(budget - 1):
            c = chosen[-1]
            dist = sq + sq[c] - 2.0 * (q @ q[c]) * (h @ h[c])  # ‖g_i − g_c‖²  [n]
            d2 = torch.minimum(d2, dist.clamp_min(0.0))
            d2[chosen] = 0.0
            w = d2.cpu().numpy()
            total = w.sum()
            if not total > 0:  # every candidate coincides with a centre: go uniform
                w = np.ones_like(w)
                w[chosen] = 0.0
                total = w.sum()
            chosen.append(int(rng.choice(len(w), p=w / total)))
        return Selection(cand[np.asarray(chosen)])


@dataclass(frozen=True)
class CoreSet(Strategy):
    """Greedy k-centre on penultimate features (Sener & Savarese, 2018), protocol §3.4.

    Every labelled row counts as an existing centre (the reference code counts only the
    acquired ones and starts cycle 0 from an unseeded random point; protocol §3.4). Each
    step takes the candidate farthest from its nearest centre (ties: lowest index).
    """

    name: ClassVar[str] = "Core-set"

    def _select(self, model, pool, budget, rng, candidates):
        cand = draw_candidates(pool, candidates, rng)
        feats = _hidden_and_probs(model, pool.x[torch.from_numpy(cand)])[0]
        labelled = pool.x[torch.from_numpy(pool.labeled_idx)]
        centres = _hidden_and_probs(model, labelled)[0]
        mind = torch.full(
            (len(cand),), float("inf"), dtype=feats.dtype, device=feats.device
        )
        for i in range(0, len(centres), 2048):
            nearest = torch.cdist(feats, centres[i : i + 2048]).min(1).values
            mind = torch.minimum(mind, nearest)
        chosen = []
        for _ in range(budget):
            j = int(torch.argmax(mind))
            chosen.append(j)
            mind = torch.minimum(mind, (feats - feats[j]).norm(dim=1))
            mind[j] = -1.0
        return Selection(cand[np.asarray(chosen)])


# ------------------------------------------------------------------ adversarial
# distances


@dataclass(frozen=True)
class DeepFoolDistance(ScoreStrategy):
    """DFAL's selection (Ducoffe & Precioso, 2018; protocol §3.5): smallest DeepFool
    norm first.

    Each candidate's score is ``−‖r‖₂``, ``r`` the DeepFool perturbation (before
    clipping), so the candidates closest to the boundary in L2 are queried first; ties
    go to the lower global index. The distance is an **L2** norm; the own example is the
    clipped DeepFool point, kept for every row.

    Args:
        max_iter: DeepFool's step limit (20 in the paper).
        overshoot: DeepFool's per-step overshoot (0.02 in the paper).
    """

    name: ClassVar[str] = "DFAL"
    makes_examples: ClassVar[bool] = True
    max_iter: int = 20
    overshoot: float = 0.02

    def score(self, model: nn.Module, x: Tensor) -> Scored:
        x_adv, r_l2 = deepfool(model, x, self.max_iter, self.overshoot)
        pred = predict_logits(model, x).argmax(1)
        flipped = predict_logits(model, x_adv).argmax(1) != pred
        own = OwnExamples(x_adv, torch.ones_like(flipped), flipped)
        return Scored(-r_l2.double().cpu().numpy(), BoundaryDistance(r_l2, "l2"), own)


@dataclass(frozen=True)
class FGSMDistance(ScoreStrategy):
    """FVAAL's selection (protocol §3.6): smallest FGSM step that changes the class
    first.

    Each candidate's score is ``−ε``, ε the minimal L∞ FGSM step found by the binary
    search of ``dalv.attacks.min_fgsm_eps`` (the midpoint of its final interval). Scores
    take few distinct values, so ties are common; they go to the lower global index (the
    reference code breaks them arbitrarily, protocol §3). Candidates no tested ε flips
    get ε = 1 and come last. The own example is the FGSM input at the smallest
    successful ε tested (none where no ε succeeded).

    Args:
        tol: width at which the binary search stops (5e-4: 11 FGSM evaluations).
    """

    name: ClassVar[str] = "FVAAL"
    makes_examples: ClassVar[bool] = True
    tol: float = 5e-4

    def score(self, model: nn.Module, x: Tensor) -> Scored:
        eps, x_adv, flipped = min_fgsm_eps(model, x, self.tol)
        own = OwnExamples(x_adv, flipped, flipped)
        return Scored(-eps.double().cpu().numpy(), BoundaryDistance(eps, "linf"), own)


@dataclass(frozen=True)
class Mixture(ScoreStrategy):
    """Part by a score, the rest at random (the paper's FVAAL_rand, protocol §3.7).

    Scores every candidate with ``base``; the first ``⌊fraction · budget⌋`` rows are the
    top-scoring ones, the rest are drawn uniformly from the remaining candidates. Every
    selected row carries ``base``'s scores and by-products (so augmenters can seed from
    them).

    Args:
        base: the scoring strategy.
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

    @property
    def makes_examples(self) -> bool:  # type: ignore[override]
        return self.base.makes_examples

    def score(self, model: nn.Module, x: Tensor) -> Scored:
        return self.base.score(model, x)

    def _select(self, model, pool, budget, rng, candidates):
        cand = draw_candidates(pool, candidates, rng)
        if len(cand) < budget:
            raise ValueError(
                f"{self.name} needs at least budget={budget} candidates, "
                f"got {len(cand)}"
            )
        scored = self.score(model, pool.x[torch.from_numpy(cand)])
        n_top = math.floor(self.fraction * budget)
        top = top_budget(scored.scores, n_top)
        rest = np.setdiff1d(np.arange(len(cand)), top)
        drawn = rng.choice(rest, size=budget - n_top, replace=False)
        return scored.select(cand, np.concatenate([top, drawn]))


@dataclass(frozen=True)
class CertifiedRadius(ScoreStrategy):
    """Smallest CROWN-certified L∞ radius first (beyond the paper).

    The certified radius r_cert is a proof: no input within r_cert of x changes the
    class. The minimal FGSM radius r_atk is a witness: one at r_atk does. The true
    distance to the boundary lies in [r_cert, r_atk]. The distance handed on is r_cert
    (so FV-Adv starts its search there and spends no time on boxes already proved
    empty), and the own example is FGSM's at r_atk.

    Args:
        method: bound method of the certification (``"CROWN"`` or ``"IBP"``).
        tol: bisection tolerance of the certified radius.
    """

    name: ClassVar[str] = "CertifiedRadius"
    makes_examples: ClassVar[bool] = True
    method: str = "CROWN"
    tol: float = 1e-3

    def score(self, model: nn.Module, x: Tensor) -> Scored:
        x = x.to(model_device(model))
        r_cert = certified_radius(model, x, method=self.method, tol=self.tol)
        _, x_adv, flipped = min_fgsm_eps(model, x)
        own = OwnExamples(x_adv, flipped, flipped)
        distance = BoundaryDistance(r_cert, "linf", certified=True)
        return Scored(-r_cert.double().cpu().numpy(), distance, own)
