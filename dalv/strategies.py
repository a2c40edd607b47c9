"""Query strategies: which unlabelled rows to label next.

Owns ``Selection``, ``Strategy``, ``ScoreStrategy``, ``draw_candidates`` and the strategies
``Random``, ``Entropy``, ``Margin``, ``BADGE``, ``CoreSet`` (plus, from ``dalv.adversarial``,
the adversarial-distance strategies). May import numpy, torch, ``dalv.data``,
``dalv.models``, ``dalv.train``.

A strategy is a frozen dataclass: its fields are its whole configuration, so it prints,
hashes and serialises as itself. ``select`` returns a ``Selection`` of global indices; any
by-product an augmenter may reuse (a minimal ε, an adversarial example) travels in
``Selection.extras``, in memory.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from dalv.data import ActivePool
from dalv.models import embed
from dalv.train import predict_logits

__all__ = [
    "Selection",
    "Strategy",
    "ScoreStrategy",
    "Random",
    "Entropy",
    "Margin",
    "BADGE",
    "CoreSet",
    "draw_candidates",
    "top_budget",
]


@dataclass(frozen=True)
class Selection:
    """What a strategy chose.

    Attributes:
        idx: [b] global row indices, unique, all unlabelled when chosen; in query order.
        scores: [b] the strategy's scores (higher = queried first), when it has scores.
        extras: per-row by-products aligned with ``idx`` (e.g. ``"eps"`` [b], ``"x_adv"``
            [b, *input_shape], ``"adv_ok"`` [b] bool), for an augmenter to reuse.
    """

    idx: np.ndarray
    scores: np.ndarray | None = None
    extras: Mapping[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.idx)


def draw_candidates(
    pool: ActivePool, n: int | None, rng: np.random.Generator
) -> np.ndarray:
    """``min(n, n_unlabelled)`` unlabelled global indices drawn without replacement, sorted.

    Sorting makes ties in later scores break by global index (a stable rule, spec §11.10).
    """
    unl = pool.unlabeled_idx
    if n is None or n >= len(unl):
        return unl
    return np.sort(rng.choice(unl, size=n, replace=False))


def top_budget(scores: np.ndarray, budget: int) -> np.ndarray:
    """Positions of the ``budget`` highest scores; ties keep the earlier position."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:budget]


def _check_budget(pool: ActivePool, budget: int) -> None:
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if budget > pool.n_unlabeled:
        raise ValueError(
            f"budget {budget} exceeds the {pool.n_unlabeled} unlabelled examples left"
        )


class Strategy(abc.ABC):
    """Base class: ``select(model, pool, budget, rng=...) -> Selection``.

    Subclasses implement ``_select``; ``select`` checks the invariants every strategy owes
    (``budget`` unique, currently unlabelled, global indices) in one place.
    """

    name: ClassVar[str] = "strategy"

    def select(
        self,
        model: nn.Module,
        pool: ActivePool,
        budget: int,
        *,
        rng: np.random.Generator,
    ) -> Selection:
        _check_budget(pool, budget)
        sel = self._select(model, pool, budget, rng)
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
        self, model: nn.Module, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> Selection: ...


@dataclass(frozen=True)
class ScoreStrategy(Strategy):
    """Score a random candidate subset and take the top ``budget`` (stable by index).

    Args:
        candidates: how many unlabelled rows to score per cycle (``None`` = all); the paper
            uses 10,000.
    """

    candidates: int | None = 10_000

    @abc.abstractmethod
    def score(
        self, model: nn.Module, x: Tensor
    ) -> tuple[np.ndarray, dict[str, Tensor]]:
        """Higher = more informative. Returns ``(scores [n], extras {name: [n, ...]})``."""

    def _select(self, model, pool, budget, rng):
        cand = draw_candidates(pool, self.candidates, rng)
        scores, extras = self.score(model, pool.x[torch.from_numpy(cand)])
        top = top_budget(scores, budget)
        top_t = torch.from_numpy(top)
        return Selection(
            cand[top],
            np.asarray(scores)[top],
            {k: v[top_t.to(v.device)] for k, v in extras.items()},
        )


@dataclass(frozen=True)
class Random(Strategy):
    """Uniform sampling from *all* unlabelled rows (as the paper's Random, spec §5.1)."""

    name: ClassVar[str] = "Random"

    def _select(self, model, pool, budget, rng):
        return Selection(rng.choice(pool.unlabeled_idx, size=budget, replace=False))


def _probs(model: nn.Module, x: Tensor) -> Tensor:
    return torch.softmax(predict_logits(model, x).double(), dim=1)


@dataclass(frozen=True)
class Entropy(ScoreStrategy):
    """Highest predictive entropy first.

    The reference code sorts entropy ascending, i.e. picks the *most confident* points
    (spec §5.2); this is the standard max-entropy rule. Entropy appears in no paper result.
    """

    name: ClassVar[str] = "Entropy"

    def score(self, model, x):
        p = _probs(model, x)
        return torch.special.entr(p).sum(1).cpu().numpy(), {}


@dataclass(frozen=True)
class Margin(ScoreStrategy):
    """Smallest gap between the two most probable classes first."""

    name: ClassVar[str] = "Margin"

    def score(self, model, x):
        top2 = _probs(model, x).topk(2, dim=1).values
        return (-(top2[:, 0] - top2[:, 1])).cpu().numpy(), {}


def _hidden_and_probs(
    model: nn.Module, x: Tensor, chunk: int = 4096
) -> tuple[Tensor, Tensor]:
    device = next(model.parameters()).device
    hs, ps = [], []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            h = embed(model, x[i : i + chunk].to(device))
            hs.append(h)
            ps.append(torch.softmax(model[-1](h), dim=1))
    return torch.cat(hs).double(), torch.cat(ps).double()


@dataclass(frozen=True)
class BADGE(Strategy):
    """Batch Active learning by Diverse Gradient Embeddings (Ash et al., 2020), spec §5.3.

    The last-layer gradient embedding of x is ``g = q ⊗ h`` with ``h`` the penultimate
    features and ``q = onehot(argmax p) − p``. k-means++ seeding picks the query: the first
    centre maximises ‖g‖ = ‖q‖‖h‖, each next one is drawn ∝ D², D the distance to the nearest
    chosen centre. ‖g_i − g_j‖² = ‖q_i‖²‖h_i‖² + ‖q_j‖²‖h_j‖² − 2(q_i·q_j)(h_i·h_j), so the
    [n, C·h] embeddings are never built.

    Args:
        candidates: rows scored per cycle (``None`` = all unlabelled).
    """

    name: ClassVar[str] = "BADGE"
    candidates: int | None = 10_000

    def _select(self, model, pool, budget, rng):
        cand = draw_candidates(pool, self.candidates, rng)
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
            if (
                not total > 0
            ):  # every candidate coincides with a centre: fall back to uniform
                w = np.ones_like(w)
                w[chosen] = 0.0
                total = w.sum()
            chosen.append(int(rng.choice(len(w), p=w / total)))
        return Selection(cand[np.asarray(chosen)])


@dataclass(frozen=True)
class CoreSet(Strategy):
    """Greedy k-centre on penultimate features (Sener & Savarese, 2018), spec §5.4.

    Every labelled row counts as an existing centre (the reference code counts only the
    acquired ones and starts cycle 0 from an unseeded random point; spec §9.9). Each step
    takes the candidate farthest from its nearest centre (ties: lowest index).

    Args:
        candidates: rows considered per cycle (``None`` = all unlabelled).
    """

    name: ClassVar[str] = "Core-set"
    candidates: int | None = 10_000

    def _select(self, model, pool, budget, rng):
        cand = draw_candidates(pool, self.candidates, rng)
        feats = _hidden_and_probs(model, pool.x[torch.from_numpy(cand)])[0]
        centres = _hidden_and_probs(model, pool.x[torch.from_numpy(pool.labeled_idx)])[
            0
        ]
        mind = torch.full(
            (len(cand),), float("inf"), dtype=feats.dtype, device=feats.device
        )
        for i in range(0, len(centres), 2048):
            mind = torch.minimum(
                mind, torch.cdist(feats, centres[i : i + 2048]).min(1).values
            )
        chosen = []
        for _ in range(budget):
            j = int(torch.argmax(mind))
            chosen.append(j)
            mind = torch.minimum(mind, (feats - feats[j]).norm(dim=1))
            mind[j] = -1.0
        return Selection(cand[np.asarray(chosen)])
