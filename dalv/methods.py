"""Methods = a query strategy composed with an augmenter, plus the paper's names for them.

Owns ``Method``, ``registry`` (the one place paper names map to compositions),
``method_to_dict`` / ``method_from_dict``. May import ``dalv.strategies``,
``dalv.augment`` and the modules that define further strategies and augmenters.

Nothing here parses a name: ``--method "DFAL+FGSM-Adv(10)"`` is an exact key of the
registry, and a stored method is its dataclass fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from dalv.augment import Augmenter, NoAugment
from dalv.strategies import BADGE, CoreSet, Entropy, Margin, Random, Strategy

__all__ = [
    "Method",
    "registry",
    "get",
    "method_names",
    "method_to_dict",
    "method_from_dict",
    "register_type",
]


@dataclass(frozen=True)
class Method:
    """A strategy plus an augmenter.

    Args:
        strategy: chooses what to label.
        augmenter: adds adversarial examples of the chosen rows (default: none).
        label: the paper's name, for display only.
    """

    strategy: Strategy
    augmenter: Augmenter = field(default_factory=NoAugment)
    label: str | None = None

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        if isinstance(self.augmenter, NoAugment):
            return self.strategy.name
        return f"{self.strategy.name}+{self.augmenter.name}"

    @property
    def slug(self) -> str:
        """A file-system-safe version of ``name``."""
        return "".join(c if c.isalnum() or c in "-_" else "_" for c in self.name).strip(
            "_"
        )

    def with_verifier(self, backend: str) -> "Method":
        """The same method with its augmenter on another verifier backend (``"lirpa"`` or
        ``"marabou"``); methods whose augmenter uses no verifier come back unchanged."""
        set_backend = getattr(self.augmenter, "with_backend", None)
        return (
            dataclasses.replace(self, augmenter=set_backend(backend))
            if set_backend
            else self
        )


# ------------------------------------------------------------------ the registry


def _baselines() -> dict[str, Method]:
    return {
        "Random": Method(Random(), label="Random"),
        "Entropy": Method(Entropy(), label="Entropy"),
        "Margin": Method(Margin(), label="Margin"),
        "BADGE": Method(BADGE(), label="BADGE"),
        "Core-set": Method(CoreSet(), label="Core-set"),
    }


_PROVIDERS: list[Callable[[int], dict[str, Method]]] = [lambda k: _baselines()]


def add_provider(provider: Callable[[int], dict[str, Method]]) -> None:
    """Let a module that defines further strategies or augmenters add its paper methods."""
    _PROVIDERS.append(provider)


def registry(k: int = 10) -> dict[str, Method]:
    """Every named method, paper names as keys (``k`` = adversarial examples per query)."""
    _load_extensions()
    out: dict[str, Method] = {}
    for provider in _PROVIDERS:
        out.update(provider(k))
    return out


def method_names() -> list[str]:
    return list(registry())


def get(name: str, k: int = 10) -> Method:
    """The method registered under exactly ``name``.

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    methods = registry(k)
    if name not in methods:
        raise ValueError(
            f"unknown method {name!r}; choose one of: {', '.join(methods)}"
        )
    return methods[name]


def _load_extensions() -> None:
    # Modules that register methods on import; imported lazily so this module stays light.
    import importlib

    for mod in ("dalv.adversarial", "dalv.verify.augment"):
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
        else:
            _register_extension(module)


_EXTENSIONS: set[str] = set()


def _register_extension(module: Any) -> None:
    """Register, once, what an extension module below this one in the layering offers.

    Such a module cannot import ``dalv.methods``, so it exposes plain hooks instead:
    ``SERIALISABLE`` (dataclasses for ``register_type``) and ``paper_compositions(k) ->
    {paper name: (strategy, augmenter)}`` (added to the registry under those names).
    """
    if module.__name__ in _EXTENSIONS:
        return
    _EXTENSIONS.add(module.__name__)
    for cls in getattr(module, "SERIALISABLE", ()):
        register_type(cls)
    compose = getattr(module, "paper_compositions", None)
    if compose is not None:
        add_provider(
            lambda k: {
                name: Method(strategy, augmenter, label=name)
                for name, (strategy, augmenter) in compose(k).items()
            }
        )


# ------------------------------------------------------------------ (de)serialisation

_TYPES: dict[str, type] = {}


def register_type(cls: type) -> type:
    """Make a dataclass (de)serialisable by its class name. Usable as a decorator."""
    _TYPES[cls.__name__] = cls
    return cls


for _cls in (Random, Entropy, Margin, BADGE, CoreSet, NoAugment):
    register_type(_cls)


def _encode(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if type(obj).__name__ not in _TYPES:
            raise TypeError(
                f"{type(obj).__name__} is not registered with register_type"
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
    """JSON-ready fields of a method: ``{"label", "strategy": {...}, "augmenter": {...}}``."""
    _load_extensions()
    return {
        "label": method.label,
        "strategy": _encode(method.strategy),
        "augmenter": _encode(method.augmenter),
    }


def method_from_dict(d: dict[str, Any]) -> Method:
    """Inverse of ``method_to_dict``."""
    _load_extensions()
    return Method(_decode(d["strategy"]), _decode(d["augmenter"]), d.get("label"))
