"""Methods = a query strategy composed with an augmenter, and the paper's methods.

Owns ``Method``, ``REGISTRY`` (the one place the paper's methods are listed), ``get``
(the lookup the command line uses) and ``method_to_dict`` / ``method_from_dict``. May
import ``dalv.strategies``, ``dalv.augment`` and ``dalv.verify``.

A method's name is derived from its composition, never the other way round: the
strategy's name, then the augmenter's (``"BADGE+FGSM-Adv(10)"``); a strategy that makes
its own adversarial examples but adds none is "-No-Adv" (``"FVAAL-No-Adv"``); two
compositions carry the paper's short names (``PAPER_NAMES``). A stored method is its
dataclass fields, looked up by class name when read back.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from dalv.augment import Augmenter, FGSMAdv, FVAdv, NoAugment, OwnAdv, PGDAdv
from dalv.strategies import (
    BADGE,
    CertifiedRadius,
    CoreSet,
    DeepFoolDistance,
    Entropy,
    FGSMDistance,
    Margin,
    Mixture,
    Random,
    Strategy,
)
from dalv.verify import (
    Budget,
    LirpaVerifier,
    MarabouVerifier,
    MilpVerifier,
    Property,
    Schedule,
    Verifier,
)

__all__ = [
    "Method",
    "REGISTRY",
    "PAPER_NAMES",
    "get",
    "method_names",
    "method_to_dict",
    "method_from_dict",
]

PAPER_NAMES: dict[tuple[str, str], str] = {
    ("DFAL", "Own-Adv"): "DFAL",  # Ducoffe & Precioso's recipe: its DeepFool example
    ("FVAAL", "FV-Adv(10)"): "FVAAL",  # the paper's proposal
}
"""(strategy name, augmenter name) → the paper's short name for that composition."""


@dataclass(frozen=True)
class Method:
    """A strategy plus an augmenter.

    Args:
        strategy: chooses what to label.
        augmenter: adds adversarial examples of the chosen rows (default: none).
    """

    strategy: Strategy
    augmenter: Augmenter = field(default_factory=NoAugment)

    @property
    def name(self) -> str:
        """The display name, derived from the composition (see the module docstring)."""
        s, a = self.strategy.name, self.augmenter
        if isinstance(a, NoAugment):
            return f"{s}-No-Adv" if self.strategy.makes_examples else s
        return PAPER_NAMES.get((s, a.name), f"{s}+{a.name}")

    @property
    def slug(self) -> str:
        """A file-system-safe version of ``name``."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.name)
        return safe.strip("_")

    def with_verifier(self, verifier: Verifier) -> Method:
        """The same method with its augmenter on another verifier (unchanged if the
        augmenter uses none)."""
        return dataclasses.replace(
            self, augmenter=self.augmenter.with_verifier(verifier)
        )

    def with_k(self, k: int) -> Method:
        """The same method with ``k`` adversarial examples per queried row."""
        return dataclasses.replace(self, augmenter=self.augmenter.with_k(k))


# ------------------------------------------------------------------ the registry

_FVAAL, _DFAL = FGSMDistance(), DeepFoolDistance()
_FGSM, _FV, _PGD = FGSMAdv(k=10), FVAdv(k=10), PGDAdv(k=10)

REGISTRY: dict[str, Method] = {
    # baselines (protocol §3)
    "Random": Method(Random()),
    "Entropy": Method(Entropy()),
    "Margin": Method(Margin()),
    "BADGE": Method(BADGE()),
    "Core-set": Method(CoreSet()),
    # the paper's methods (protocol §6)
    "FVAAL": Method(_FVAAL, _FV),
    "FVAAL-No-Adv": Method(_FVAAL),
    "FVAAL+FGSM-Adv(10)": Method(_FVAAL, _FGSM),
    "DFAL": Method(_DFAL, OwnAdv()),
    "DFAL-No-Adv": Method(_DFAL),
    "DFAL+FV-Adv(10)": Method(_DFAL, _FV),
    "DFAL+FGSM-Adv(10)": Method(_DFAL, _FGSM),
    "BADGE+FV-Adv(10)": Method(BADGE(), _FV),
    "BADGE+FGSM-Adv(10)": Method(BADGE(), _FGSM),
    "Random+FV-Adv(10)": Method(Random(), _FV),
    "Random+FGSM-Adv(10)": Method(Random(), _FGSM),
    "Core-set+FV-Adv(10)": Method(CoreSet(), _FV),
    "FVAAL_rand+FV-Adv(10)": Method(Mixture(), _FV),
    # the control arm (protocol §4.5): FV-Adv's box and schedule, PGD's examples
    "FVAAL+PGD-Adv(10)": Method(_FVAAL, _PGD),
    "DFAL+PGD-Adv(10)": Method(_DFAL, _PGD),
    "BADGE+PGD-Adv(10)": Method(BADGE(), _PGD),
    "Random+PGD-Adv(10)": Method(Random(), _PGD),
    # beyond the paper: rank by a certified radius instead of an attack's
    "CertifiedRadius-No-Adv": Method(CertifiedRadius()),
    "CertifiedRadius+FV-Adv(10)": Method(CertifiedRadius(), _FV),
}
"""Every named method; each key is its method's derived ``name`` (a test checks)."""

_WITH_K = re.compile(r"(?P<base>.+)\((?P<k>\d+)\)")


def method_names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Method:
    """The method called exactly ``name``.

    A registry name, or a registry method with another k written into its name: the
    registry has ``"Random+FV-Adv(10)"``, so ``"Random+FV-Adv(3)"`` is that method with
    ``k = 3`` (and ``"FVAAL+FV-Adv(5)"`` is FVAAL with ``k = 5``). The match is exact:
    the candidate's own derived name must equal ``name``.

    Raises:
        ValueError: unknown name; the message suggests close names and lists the rest.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    m = _WITH_K.fullmatch(name)
    if m and int(m["k"]) >= 1:
        for method in REGISTRY.values():
            other = method.with_k(int(m["k"]))
            if other.name == name:
                return other
    lower = {n.lower(): n for n in REGISTRY}
    close = difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)
    close = [lower[c] for c in close]
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"unknown method {name!r}.{hint} Choose one of: {', '.join(REGISTRY)} "
        "(any k in parentheses, e.g. 'Random+FV-Adv(3)'; names are case-sensitive)"
    )


# ------------------------------------------------------------------ (de)serialisation

_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Random,
        Entropy,
        Margin,
        BADGE,
        CoreSet,
        DeepFoolDistance,
        FGSMDistance,
        Mixture,
        CertifiedRadius,
        NoAugment,
        OwnAdv,
        FGSMAdv,
        FVAdv,
        PGDAdv,
        LirpaVerifier,
        MarabouVerifier,
        MilpVerifier,
        Property,
        Budget,
        Schedule,
    )
}
"""Every dataclass a stored method may contain, by class name."""


def register_type(cls: type) -> type:
    """Make a further dataclass (a user's strategy, augmenter or verifier) storable.
    Usable as a decorator."""
    _TYPES[cls.__name__] = cls
    return cls


def _encode(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if _TYPES.get(type(obj).__name__) is not type(obj):
            raise TypeError(
                f"{type(obj).__name__} is not registered with "
                "dalv.methods.register_type"
            )
        d = {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"type": type(obj).__name__, **d}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict) and "type" in obj:
        d = dict(obj)
        name = d.pop("type")
        if name not in _TYPES:
            raise ValueError(
                f"unknown type {name!r} in a stored method; known: {sorted(_TYPES)}"
            )
        return _TYPES[name](**{k: _decode(v) for k, v in d.items()})
    if isinstance(obj, list):
        return tuple(_decode(v) for v in obj)
    return obj


def method_to_dict(method: Method) -> dict[str, Any]:
    """JSON-ready fields of a method: ``{"name", "strategy": {...}, "augmenter":
    {...}}`` (``name`` is for people reading the file; it is derived again when read
    back)."""
    return {
        "name": method.name,
        "strategy": _encode(method.strategy),
        "augmenter": _encode(method.augmenter),
    }


def method_from_dict(d: dict[str, Any]) -> Method:
    """Inverse of ``method_to_dict``."""
    return Method(_decode(d["strategy"]), _decode(d["augmenter"]))
