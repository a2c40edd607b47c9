"""dalv — deep active learning with formal verification.

A teaching and reproducibility suite for Spiegelman, Amir & Katz, *On Improving Deep
Active Learning with Formal Verification* (2025). The package is the source; the
notebooks in ``notebooks/`` consume it.

    >>> import dalv
    >>> data = dalv.data.load("digits")
    >>> cfg = dalv.ExperimentConfig(dataset="digits", n_cycles=3, budget=20)
    >>> table = dalv.run(dalv.methods.get("BADGE"), data, cfg, seed=0)

Modules, top to bottom (each imports only from those above it): ``version``,
``paths``, ``names``, ``config``, ``paper``, ``data``, ``models``, ``train``,
``metrics``, ``stats``, ``attacks``, ``verify``, ``strategies``, ``augment``,
``methods``, ``loop``, ``plots``, ``report``, ``reproduce``, ``cli``.

Importing ``dalv`` imports nothing heavy: each name below is loaded on first use
(PEP 562), so ``dalv --help`` answers without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from dalv.version import __version__

# name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "ExperimentConfig": ("dalv.config", "ExperimentConfig"),
    "ModelConfig": ("dalv.config", "ModelConfig"),
    "TrainConfig": ("dalv.config", "TrainConfig"),
    "Method": ("dalv.methods", "Method"),
    "run": ("dalv.loop", "run"),
    "run_cycle": ("dalv.loop", "run_cycle"),
    "run_grid": ("dalv.loop", "run_grid"),
    **{
        m: (f"dalv.{m}", None)
        for m in (
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
        )
    },
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'dalv' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from dalv import (  # noqa: F401
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
    from dalv.config import ExperimentConfig, ModelConfig, TrainConfig  # noqa: F401
    from dalv.loop import run, run_cycle, run_grid  # noqa: F401
    from dalv.methods import Method  # noqa: F401
