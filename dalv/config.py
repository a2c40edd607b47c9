"""Experiment configuration as frozen dataclasses.

Owns ``ModelConfig``, ``TrainConfig``, ``ExperimentConfig``, ``to_dict``/``from_dict``
and ``config_hash``. May import: the standard library only.

Every policy the reference code left implicit is a named field here (protocol §9): the
retraining protocol, whether the initial labelled set is trained on, the candidate-pool
size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Protocol = Literal["paper", "clean"]
PROTOCOLS: tuple[str, ...] = ("paper", "clean")


@dataclass(frozen=True)
class ModelConfig:
    """The classifier.

    Args:
        arch: ``"mlp"`` (the paper's Flatten → Linear → ReLU → Linear(bias=False)) or
            ``"cnn"`` (a small convolutional option, not used by the paper).
        hidden: width of the hidden layer (the paper's ``--emb_size``; 128 as shipped,
            32 likely for the published MNIST runs, protocol §9).
    """

    arch: Literal["mlp", "cnn"] = "mlp"
    hidden: int = 128

    def __post_init__(self) -> None:
        if self.arch not in ("mlp", "cnn"):
            raise ValueError(f"unknown arch {self.arch!r}; choose 'mlp' or 'cnn'")
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")


@dataclass(frozen=True)
class TrainConfig:
    """How every model is fitted (protocol §2: Adam 1e-3, 10 epochs, Keras' default
    batch 32).

    Args:
        epochs: passes over the training set per fit.
        lr: Adam learning rate; a fresh optimiser each fit.
        batch_size: mini-batch size; batches are reshuffled each epoch.
    """

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"the learning rate must be > 0, got {self.lr}")


@dataclass(frozen=True)
class ExperimentConfig:
    """One active-learning experiment on one dataset (method and seed are given to
    ``run``).

    Args:
        dataset: a name known to ``dalv.data.load``.
        n_initial: size of the initial labelled set, drawn uniformly (not
        class-balanced). budget: examples queried per cycle.
        n_cycles: acquisition cycles; the results table has one row per cycle.
        candidates: size of the random candidate subset a strategy scores each cycle
            (``None`` = every unlabelled example). Random always samples the whole pool.
        protocol: ``"paper"`` restarts every cycle from the initial trained weights and
            trains on the acquired plus adversarial examples *without* the initial set
            (what the reference code runs, protocol §1/§4); ``"clean"`` uses a fresh
            seeded initialisation each cycle and trains on every labelled example.
        model: the classifier.
        train: the fitting procedure.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    """

    dataset: str = "mnist5k"
    n_initial: int = 50
    budget: int = 50
    n_cycles: int = 20
    candidates: int | None = 10_000
    protocol: Protocol = "paper"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.n_cycles < 1:
            raise ValueError(f"cycles must be >= 1, got {self.n_cycles}")
        if self.budget < 1:
            raise ValueError(f"budget must be >= 1, got {self.budget}")
        if self.n_initial < 1:
            raise ValueError(f"n_initial must be >= 1, got {self.n_initial}")
        if self.candidates is not None and self.candidates < 1:
            raise ValueError(f"candidates must be >= 1 or None, got {self.candidates}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"unknown protocol {self.protocol!r}; choose one of {PROTOCOLS}"
            )
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith(
            "cuda:"
        ):
            raise ValueError(
                f"unknown device {self.device!r}; choose auto, cpu or cuda"
            )

    @property
    def n_labels_needed(self) -> int:
        """Labels the whole experiment asks the oracle for."""
        return self.n_initial + self.n_cycles * self.budget

    def replace(self, **changes: Any) -> "ExperimentConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(obj)


def experiment_from_dict(d: dict[str, Any]) -> ExperimentConfig:
    """Inverse of ``to_dict`` for ``ExperimentConfig``; unknown keys are an error."""
    d = dict(d)
    model = ModelConfig(**d.pop("model", {}))
    train = TrainConfig(**d.pop("train", {}))
    return ExperimentConfig(model=model, train=train, **d)


def config_hash(obj: Any) -> str:
    """A short stable hash of any JSON-serialisable config (dicts or dataclasses)."""
    if dataclasses.is_dataclass(obj):
        obj = to_dict(obj)
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
