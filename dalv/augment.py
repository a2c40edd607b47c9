"""Augmenters: adversarial examples added to the training set for free.

Owns ``AugmentedBatch``, ``Augmenter`` and ``NoAugment`` (the gradient and verification
augmenters live in ``dalv.adversarial`` and ``dalv.verify.augment``). May import numpy,
torch and ``dalv.strategies`` (for the ``Selection`` type).

Every adversarial example takes the true label of the queried example it came from (the
paper's label-invariance assumption, spec §6) and uses no labelling budget.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from dalv.strategies import Selection

__all__ = ["AugmentedBatch", "Augmenter", "NoAugment"]


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
    def empty(input_shape: tuple[int, ...]) -> "AugmentedBatch":
        return AugmentedBatch(
            torch.empty((0, *input_shape)),
            torch.empty(0, dtype=torch.long),
            np.empty(0, dtype=np.int64),
        )

    def __add__(self, other: "AugmentedBatch") -> "AugmentedBatch":
        """Concatenate (statistics are per batch, so the sum keeps none)."""
        return AugmentedBatch(
            torch.cat([self.x, other.x.to(self.x.device)]),
            torch.cat([self.y, other.y.to(self.y.device)]),
            np.concatenate([self.source_idx, other.source_idx]),
        )


class Augmenter(abc.ABC):
    """Base class: ``generate(model, x, y, source_idx=..., hints=..., rng=...)``.

    ``x``, ``y`` are the queried examples and their true labels; ``hints`` is the strategy's
    ``Selection``, whose extras (e.g. a minimal ε and its adversarial example) an augmenter
    may reuse. ``k`` (how many per source) is a field of the augmenter: part of the method.
    """

    name: ClassVar[str] = "augmenter"

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


@dataclass(frozen=True)
class NoAugment(Augmenter):
    """Adds nothing (the paper's "-No-Adv" methods and the plain baselines)."""

    name: ClassVar[str] = "No-Adv"

    def generate(self, model, x, y, *, source_idx, hints=None, rng):
        return AugmentedBatch.empty(tuple(x.shape[1:]))
