"""Bridges between auto_LiRPA 0.3 and the pinned torch 2.x / numpy 2.x.

Owns: the four compatibility shims auto_LiRPA 0.3 needs and ``import_auto_lirpa``;
may import: stdlib, numpy, torch (auto_LiRPA only inside ``import_auto_lirpa``).

auto_LiRPA 0.3 (the last release on PyPI) was written for torch 1.x and numpy 1.x. On
torch 2.x and numpy 2.x four things it relies on are gone:

1. ``numpy.lib.arraysetops`` (numpy 2 made it private). auto_LiRPA imports only ``isin``
   from it, so a tiny stand-in module that re-exports ``numpy.isin`` is enough.
2. ``torch.onnx.symbolic_helper._set_opset_version``. The opset is now a property of the
   exporter's ``GLOBALS`` object (``torch.onnx._globals`` in torch 2.0-2.5,
   ``torch.onnx._internal.torchscript_exporter._globals`` later).
3. ``torch._C.Node.__getitem__`` (``node["value"]`` reads an attribute of a traced graph
   node). ``torch.onnx.symbolic_helper._node_get`` does the same lookup.
4. Autograd-function inlining in the ONNX graph optimiser
   (``GLOBALS.autograd_inlining``, added in torch 2.1). auto_LiRPA traces with
   ``torch.jit`` and then calls the optimiser outside an ONNX export, so the pass meant
   for exports is switched off.

Each shim is applied only when the thing it provides is missing (or, for 4, still on),
so a newer auto_LiRPA installed from source meets an untouched environment. Applying is
idempotent; ``apply_shims`` reports what it changed.

A fifth gap only shows once auto_LiRPA is imported: since torch 2.x ``clamp`` passes
no gradient at its bounds, and auto_LiRPA 0.3 starts every alpha-CROWN slope exactly at
0 or 1 and clamps it to [0, 1] before use, so the optimiser never moves it and
alpha-CROWN silently returns the CROWN bound. ``import_auto_lirpa`` swaps in a clamp
whose gradient also flows at the bounds (the forward value is unchanged, and
auto_LiRPA clips the slopes to [0, 1] after each step anyway). It is applied only to
auto_LiRPA 0.3 and only when this torch's clamp has the zero boundary gradient.

Example:
    >>> from dalv.verify.compat import import_auto_lirpa
    >>> lirpa = import_auto_lirpa()
    >>> lirpa.BoundedModule  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import sys
import types
import warnings
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "apply_shims",
    "apply_post_import_shims",
    "import_auto_lirpa",
    "onnx_globals",
    "INSTALL_HINT",
]

INSTALL_HINT = (
    "auto_LiRPA is not installed. Install the pinned release without its (outdated) "
    "dependency pins:  pip install --no-deps auto-lirpa==0.3"
)

_GLOBALS_LOCATIONS = (
    "torch.onnx._globals",
    "torch.onnx._internal.torchscript_exporter._globals",
)


def onnx_globals() -> Any | None:
    """Return torch's ONNX-exporter ``GLOBALS`` object, wherever this torch keeps it.

    Returns:
        The ``GLOBALS`` instance, or ``None`` when no known location has one.
    """
    for name in _GLOBALS_LOCATIONS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        glb = getattr(module, "GLOBALS", None)
        if glb is not None:
            return glb
    return None


def _shim_arraysetops() -> bool:
    """Register a stand-in ``numpy.lib.arraysetops`` (just ``isin``) if missing."""
    try:
        importlib.import_module("numpy.lib.arraysetops")
        return False
    except ImportError:
        pass
    import numpy

    module = types.ModuleType("numpy.lib.arraysetops")
    module.__doc__ = "dalv stand-in for a module numpy 2 removed; only isin."
    module.isin = numpy.isin  # type: ignore[attr-defined]
    sys.modules["numpy.lib.arraysetops"] = module
    return True


def _shim_set_opset_version() -> bool:
    """Add ``torch.onnx.symbolic_helper._set_opset_version`` if this torch lacks it."""
    import torch.onnx.symbolic_helper as helper

    if hasattr(helper, "_set_opset_version"):
        return False
    glb = onnx_globals()
    if glb is None:
        logger.warning("no ONNX GLOBALS found; cannot provide _set_opset_version")
        return False

    def _set_opset_version(opset_version: int) -> None:
        glb.export_onnx_opset_version = opset_version

    helper._set_opset_version = _set_opset_version  # type: ignore[attr-defined]
    return True


def _shim_node_getitem() -> bool:
    """Give ``torch._C.Node`` a ``__getitem__`` (attribute lookup) if it has none."""
    import torch
    import torch.onnx.symbolic_helper as helper

    if hasattr(torch._C.Node, "__getitem__"):
        return False
    node_get = getattr(helper, "_node_get", None)
    if node_get is None:

        def node_get(node: Any, key: str) -> Any:
            return getattr(node, node.kindOf(key))(key)

    def __getitem__(self: Any, key: str) -> Any:  # noqa: N807 - dunder by design
        return node_get(self, key)

    torch._C.Node.__getitem__ = __getitem__  # type: ignore[attr-defined]
    return True


def _shim_autograd_inlining() -> bool:
    """Switch off the exporter's autograd-function inlining if this torch has it on."""
    glb = onnx_globals()
    if glb is None or not getattr(glb, "autograd_inlining", False):
        return False
    glb.autograd_inlining = False
    return True


_SHIMS = {
    "numpy.lib.arraysetops": _shim_arraysetops,
    "symbolic_helper._set_opset_version": _shim_set_opset_version,
    "torch._C.Node.__getitem__": _shim_node_getitem,
    "GLOBALS.autograd_inlining=False": _shim_autograd_inlining,
}


def apply_shims() -> tuple[str, ...]:
    """Apply every shim that is needed, and only those.

    Returns:
        The names of the shims applied by this call (empty when nothing was missing,
        for instance on a second call).
    """
    applied = tuple(name for name, shim in _SHIMS.items() if shim())
    if applied:
        logger.debug("auto_LiRPA compatibility shims applied: %s", ", ".join(applied))
    return applied


def _clamp_blocks_boundary_gradient() -> bool:
    """Whether ``torch.clamp`` passes zero gradient at a value equal to its bound."""
    import torch

    probe = torch.tensor([0.0, 1.0], requires_grad=True)
    probe.clamp(min=0.0, max=1.0).sum().backward()
    return bool((probe.grad == 0).all())


def _clamp01(t: Any) -> Any:
    """``clamp(t, 0, 1)`` in the forward pass, identity in the backward pass."""
    return t + (t.clamp(min=0.0, max=1.0) - t).detach()


def _relu_mask_alpha(lower: Any, upper: Any, lb_lower_d: Any, ub_lower_d: Any) -> tuple:
    """auto_LiRPA 0.3's ``BoundRelu._relu_mask_alpha`` with a gradient-passing clamp."""
    lower_mask = (lower >= 0).to(lower.dtype)
    upper_mask = upper <= 0
    zero_coeffs = upper_mask.all()
    no_mask = (1.0 - lower_mask) * (1.0 - upper_mask.to(upper.dtype))
    if lb_lower_d is not None:
        lb_lower_d = _clamp01(lb_lower_d) * no_mask + lower_mask
    if ub_lower_d is not None:
        ub_lower_d = _clamp01(ub_lower_d) * no_mask + lower_mask
    return lb_lower_d, ub_lower_d, zero_coeffs


def apply_post_import_shims(lirpa: types.ModuleType) -> tuple[str, ...]:
    """Apply the shims that patch auto_LiRPA itself (see the module docstring, gap 5).

    Args:
        lirpa: The imported ``auto_LiRPA`` package.

    Returns:
        The names of the shims applied by this call.
    """
    from auto_LiRPA.operators import activation  # noqa: PLC0415 - only after import

    relu = getattr(activation, "BoundRelu", None)
    current = getattr(relu, "_relu_mask_alpha", None)
    if (
        getattr(lirpa, "__version__", "") != "0.3"
        or current is None
        or current is _relu_mask_alpha
        or not _clamp_blocks_boundary_gradient()
    ):
        return ()
    relu._relu_mask_alpha = staticmethod(_relu_mask_alpha)
    logger.debug("auto_LiRPA shim applied: BoundRelu alpha clamp gradient")
    return ("BoundRelu._relu_mask_alpha clamp gradient",)


@contextlib.contextmanager
def _quiet_import():
    """Silence what importing auto_LiRPA 0.3 prints on torch 2.x and nobody can act on:
    the deprecation of ``torch.jit.script`` (it scripts helpers at import time, after
    resetting the warning filters itself) and torch's note that a CPU machine has no
    CUDA runtime."""
    import torch  # noqa: PLC0415

    cpp = logging.getLogger("torch.utils.cpp_extension")
    level, script = cpp.level, torch.jit.script

    def quiet_script(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return script(*args, **kwargs)

    cpp.setLevel(logging.ERROR)
    torch.jit.script = quiet_script
    try:
        yield
    finally:
        torch.jit.script = script
        cpp.setLevel(level)


def import_auto_lirpa() -> types.ModuleType:
    """Apply the shims, then import and return the ``auto_LiRPA`` module.

    Returns:
        The imported ``auto_LiRPA`` package.

    Raises:
        ImportError: auto_LiRPA is not installed (the message says how to install it).
    """
    apply_shims()
    with _quiet_import():
        lirpa = sys.modules.get("auto_LiRPA")
        if lirpa is None:
            if importlib.util.find_spec("auto_LiRPA") is None:
                raise ImportError(INSTALL_HINT)
            try:
                lirpa = importlib.import_module("auto_LiRPA")
            except ModuleNotFoundError as err:
                if err.name and err.name.split(".")[0] == "auto_LiRPA":
                    raise ImportError(INSTALL_HINT) from err
                raise
        apply_post_import_shims(lirpa)
    return lirpa
