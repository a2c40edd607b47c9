"""The names the command line checks and shows before any work starts.

Owns ``DATASETS``, ``EMBEDDED``, ``METHODS`` (with ``check_method``, the method-name
grammar), ``PRESETS`` (name → description) and ``VERIFIERS`` (the backends' command-line
names). May import: the standard library only, so ``dalv --help`` and a typo's error
answer without importing torch.

These are copies of the real registries (``dalv.data.DATASETS``,
``dalv.methods.REGISTRY``, ``dalv.reproduce.PRESETS``, the verifier map);
``tests/test_cli.py`` fails when one drifts from its registry, so a method, preset or
dataset added there must be added here too.
"""

from __future__ import annotations

import difflib
import re

__all__ = [
    "DATASETS",
    "EMBEDDED",
    "METHODS",
    "PAPER_ALIASES",
    "K_FAMILIES",
    "PRESETS",
    "VERIFIERS",
    "check_dataset",
    "check_method",
    "check_preset",
]

DATASETS: tuple[str, ...] = ("digits", "mnist5k", "mnist", "fashion_mnist", "cifar10")
"""Every dataset name, in ``dalv.data.DATASETS``'s order."""

EMBEDDED: tuple[str, ...] = ("digits", "mnist5k")
"""Datasets that ship inside installed Python packages (nothing to download)."""

METHODS: tuple[str, ...] = (
    "Random",
    "Entropy",
    "Margin",
    "BADGE",
    "Core-set",
    "FVAAL",
    "FVAAL-No-Adv",
    "FVAAL+FGSM-Adv(10)",
    "DFAL",
    "DFAL-No-Adv",
    "DFAL+FV-Adv(10)",
    "DFAL+FGSM-Adv(10)",
    "BADGE+FV-Adv(10)",
    "BADGE+FGSM-Adv(10)",
    "Random+FV-Adv(10)",
    "Random+FGSM-Adv(10)",
    "Core-set+FV-Adv(10)",
    "FVAAL_rand+FV-Adv(10)",
    "FVAAL+PGD-Adv(10)",
    "DFAL+PGD-Adv(10)",
    "BADGE+PGD-Adv(10)",
    "Random+PGD-Adv(10)",
    "CertifiedRadius-No-Adv",
    "CertifiedRadius+FV-Adv(10)",
)
"""``dalv.methods.REGISTRY``'s names, in its order."""

PAPER_ALIASES: dict[str, str] = {"FVAAL": "FVAAL+FV-Adv(10)"}
"""Registry names that stand for a composition with a k (the paper's short names that
carry one); the long form itself is not a name (the method is called ``FVAAL``)."""

_WITH_K = re.compile(r"(?P<base>.+)\((?P<k>\d+)\)")


def _families() -> tuple[str, ...]:
    out = []
    for name in (*METHODS, *PAPER_ALIASES.values()):
        m = _WITH_K.fullmatch(name)
        if m and m["base"] not in out:
            out.append(m["base"])
    return tuple(out)


K_FAMILIES: tuple[str, ...] = _families()
"""Method names whose k may be any integer >= 1 (``"Random+FV-Adv"`` → ``"Random+FV-
Adv(3)"``)."""


def check_method(name: str) -> str:
    """``name`` if it names a method (``dalv.methods.get`` would accept it), else the
    same ValueError ``get`` raises.

    A registry name, or one with another k in parentheses: ``"Random+FV-Adv(3)"``,
    ``"FVAAL+FV-Adv(5)"`` (FVAAL with k = 5).
    """
    if name in METHODS:
        return name
    m = _WITH_K.fullmatch(name)
    aliased = set(PAPER_ALIASES.values())
    if m and int(m["k"]) >= 1 and m["base"] in K_FAMILIES and name not in aliased:
        return name
    lower = {n.lower(): n for n in METHODS}
    close = difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)
    close = [lower[c] for c in close]
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"unknown method {name!r}.{hint} Choose one of: {', '.join(METHODS)} "
        "(any k in parentheses, e.g. 'Random+FV-Adv(3)'; names are case-sensitive)"
    )


PRESETS: dict[str, str] = {
    "smoke": "seconds: digits, 3 cycles, 4 methods, one seed",
    "baselines": "mnist5k, the baseline strategies, 3 seeds × 20 cycles",
    "gradient": "mnist5k, the gradient-attack methods (no verifier), 3 seeds × 20 "
    "cycles",
    "demo": "mnist5k, one seed: Random, and FVAAL without, with FGSM, with verifier "
    "(MILP) and with PGD examples",
    "mnist5k": "mnist5k, the paper's twelve figure methods, FVAAL+FGSM-Adv(10) and the "
    "four PGD-Adv controls, 5 seeds (--seeds 0-10: the 11 the analysis plan asks for)",
    "paper-mnist": "the paper's protocol on mnist (hidden 30): its figure methods, "
    "FVAAL+FGSM-Adv(10) and the PGD-Adv controls, 11 seeds",
    "paper-fashion-mnist": "the paper's protocol on fashion_mnist (hidden 30): its "
    "figure methods, FVAAL+FGSM-Adv(10) and the PGD-Adv controls, 5 seeds (12 "
    "primary/control methods: 30)",
    "paper-cifar10": "the paper's protocol on cifar10 (hidden 128): its figure "
    "methods, FVAAL+FGSM-Adv(10) and the PGD-Adv controls, 5 seeds",
}
"""``dalv.reproduce.PRESETS``: each preset's name and description, in its order."""

VERIFIERS: tuple[str, ...] = ("milp", "lirpa", "marabou")
"""The verifier backends' command-line names (the keys of the verifier map)."""


def check_dataset(name: str) -> str:
    """``name`` if it is a dataset, else the ValueError ``dalv.data.load`` raises."""
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}"
        )
    return name


def check_preset(name: str) -> str:
    """``name`` if it is a preset, else the ValueError ``dalv.reproduce.preset``
    raises."""
    if name not in PRESETS:
        raise ValueError(
            f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}"
        )
    return name
