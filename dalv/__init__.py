"""dalv — deep active learning with formal verification.

A teaching and reproducibility suite for Spiegelman, Amir & Katz, *On Improving Deep Active
Learning with Formal Verification* (2025). The package is the source; the notebooks in
``notebooks/`` consume it.

    >>> import dalv
    >>> data = dalv.data.load("digits")
    >>> cfg = dalv.ExperimentConfig(dataset="digits", n_cycles=3, budget=20)
    >>> table = dalv.run(dalv.methods.get("BADGE"), data, cfg, seed=0)
"""

__version__ = "0.1.0"

from dalv import (
    adversarial,
    attacks,
    augment,
    data,
    metrics,
    methods,
    models,
    strategies,
    train,
)  # noqa: E402,E501
from dalv.config import ExperimentConfig, ModelConfig, TrainConfig  # noqa: E402
from dalv.loop import run, run_grid  # noqa: E402
from dalv.methods import Method  # noqa: E402

__all__ = [
    "ExperimentConfig",
    "ModelConfig",
    "TrainConfig",
    "Method",
    "run",
    "run_grid",
    "adversarial",
    "attacks",
    "augment",
    "data",
    "metrics",
    "methods",
    "models",
    "strategies",
    "train",
    "__version__",
]
