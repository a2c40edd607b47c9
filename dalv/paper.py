"""The paper's published per-cycle accuracies, shipped as package data.

Owns ``paper_table`` and the map from the reference code's column names to paper names
(protocol §6). May import pandas and the standard library.

The CSVs in ``dalv/paper_results`` are the reference repository's ``results/tables``:
one 5-seed average file and five per-seed files per dataset, 20 rows = cycles 0..19.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["paper_table", "PAPER_DATASETS", "COLUMN_NAMES", "FIGURE_METHODS"]

PAPER_DATASETS = {
    "mnist": "MNIST",
    "fashion_mnist": "fashionMNIST",
    "cifar10": "CIFAR10",
}
"""dalv dataset name → file prefix. mnist5k compares against MNIST."""

_QUERY = {
    "mnist": 50,
    "fashion_mnist": 50,
    "cifar10": 1000,
}  # n = n_init per cycle (protocol §9)


def _column_names() -> dict[str, str]:
    base = {
        "FGSM_0": "FVAAL-No-Adv",
        "DFAL": "DFAL",
        "DFAL_0": "DFAL-No-Adv",
        "badge": "BADGE",
        "rand": "Random",
        "coreset": "Core-set",
    }
    for k in (5, 10):
        base.update(
            {
                f"FGSM_w_samples_{k}": "FVAAL" if k == 10 else f"FVAAL+FV-Adv({k})",
                f"FGSM_bounded_{k}": f"FVAAL+FGSM-Adv({k})",
                f"DFAL_w_samples_{k}": f"DFAL+FV-Adv({k})",
                f"DFAL_FGSM_bounded_{k}": f"DFAL+FGSM-Adv({k})",
                f"badge_w_samples_{k}": f"BADGE+FV-Adv({k})",
                f"badge_FGSM_bounded_{k}": f"BADGE+FGSM-Adv({k})",
                f"rand_w_samples_{k}": f"Random+FV-Adv({k})",
                f"rand_FGSM_bounded_{k}": f"Random+FGSM-Adv({k})",
                f"coreset_w_samples_{k}": f"Core-set+FV-Adv({k})",
                f"FVAAL_rand_w_samples_{k}": f"FVAAL_rand+FV-Adv({k})",
            }
        )
    # per-seed file headers
    base.update(
        {
            "FGSM-No-Adv": "FVAAL-No-Adv",
            "DFAL+FV-Adv": "DFAL+FV-Adv(10)",
            "DFAL+FGSM-Adv": "DFAL+FGSM-Adv(10)",
            "BADGE+FV-Adv": "BADGE+FV-Adv(10)",
            "BADGE+FGSM-Adv": "BADGE+FGSM-Adv(10)",
            "Random+FV-Adv": "Random+FV-Adv(10)",
            "Random+FGSM-Adv": "Random+FGSM-Adv(10)",
            "FVAAL": "FVAAL",
            "BADGE": "BADGE",
            "Random": "Random",
        }
    )
    return base


COLUMN_NAMES = _column_names()

FIGURE_METHODS = {
    "advs": [
        "FVAAL",
        "DFAL",
        "DFAL+FV-Adv(10)",
        "DFAL+FGSM-Adv(10)",
        "BADGE+FV-Adv(10)",
        "BADGE+FGSM-Adv(10)",
        "Random+FV-Adv(10)",
        "Random+FGSM-Adv(10)",
    ],
    "no_advs": ["FVAAL-No-Adv", "DFAL-No-Adv", "BADGE", "Random"],
}
"""The methods of the paper's two figures per dataset (protocol §6)."""


def _read(name: str) -> pd.DataFrame:
    with resources.files("dalv").joinpath("paper_results", name).open() as f:
        return pd.read_csv(f)


def paper_table(dataset: str, per_seed: bool = False) -> pd.DataFrame:
    """The paper's curves as a tidy table like dalv's (method, seed, cycle, n_labeled,
    test_acc).

    Args:
        dataset: ``mnist``, ``fashion_mnist``, ``cifar10`` (``mnist5k`` and ``digits``
            map to MNIST for comparison).
        per_seed: the five per-seed files (12 methods, seeds 0–4) instead of the 5-seed
            averages (all methods, ``seed`` = -1).
    """
    key = {"mnist5k": "mnist", "digits": "mnist"}.get(dataset, dataset)
    if key not in PAPER_DATASETS:
        raise ValueError(
            f"no paper results for {dataset!r}; have {list(PAPER_DATASETS)}"
        )
    prefix, n = PAPER_DATASETS[key], _QUERY[key]
    frames = (
        [(j, _read(f"{prefix}_exp{j}.csv")) for j in range(5)]
        if per_seed
        else [(-1, _read(f"{prefix}_avg.csv"))]
    )
    rows = []
    for seed, wide in frames:
        for col in wide.columns:
            for t, acc in enumerate(wide[col]):
                rows.append(
                    {
                        "dataset": key,
                        "method": COLUMN_NAMES.get(col, col),
                        "source_column": col,
                        "seed": seed,
                        "cycle": t,
                        "n_labeled": n + (t + 1) * n,
                        "test_acc": float(acc),
                    }
                )
    return pd.DataFrame(rows)
