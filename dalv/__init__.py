"""dalv — deep active learning with formal verification.

A teaching and reproducibility suite for Spiegelman, Amir & Katz, *On Improving Deep
Active Learning with Formal Verification* (2025). The package is the source; the
notebooks in ``notebooks/`` consume it.

    >>> import dalv
    >>> data = dalv.data.load("digits")
    >>> cfg = dalv.ExperimentConfig(dataset="digits", n_cycles=3, budget=20)
    >>> table = dalv.run(dalv.methods.get("BADGE"), data, cfg, seed=0)

Modules, top to bottom (each imports only from those above it): ``version``,
``paths``, ``config``, ``paper``, ``data``, ``models``, ``train``, ``metrics``,
``stats``, ``attacks``, ``verify``, ``strategies``, ``augment``, ``methods``,
``loop``, ``plots``, ``report``, ``reproduce``, ``cli``.
"""

from dalv import (  # noqa: E402
    attacks,
    augment,
    data,
    loop,
    methods,
    metrics,
    models,
    paper,
    paths,
    stats,
    strategies,
    train,
    verify,
)
from dalv.config import ExperimentConfig, ModelConfig, TrainConfig  # noqa: E402
from dalv.loop import run, run_cycle, run_grid  # noqa: E402
from dalv.methods import Method  # noqa: E402
from dalv.version import __version__  # noqa: E402

__all__ = [
    "ExperimentConfig",
    "ModelConfig",
    "TrainConfig",
    "Method",
    "run",
    "run_cycle",
    "run_grid",
    "attacks",
    "augment",
    "data",
    "loop",
    "methods",
    "metrics",
    "models",
    "paper",
    "paths",
    "stats",
    "strategies",
    "train",
    "verify",
    "__version__",
]
