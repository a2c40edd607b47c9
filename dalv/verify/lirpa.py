"""Output bounds through auto_LiRPA, margins and the certified radius.

Owns: ``bounded_module`` (the cached auto_LiRPA ``BoundedModule``), ``bounds`` (IBP /
CROWN / alpha-CROWN), ``margin_lower_bounds`` and ``certified_radius``; may import:
torch, the standard library, ``dalv.models``, ``dalv.verify.{box, compat, crown,
network, property}`` (auto_LiRPA only through ``compat.import_auto_lirpa``, inside the
functions that need it).

The box of radius ``eps`` around ``x`` is ``max(0, x - eps) <= x' <= min(1, x + eps)``.
Bounds are sound: for every ``x'`` in the box, ``lo <= C f(x') <= hi``.

``bounds`` wraps the user's model in an auto_LiRPA ``BoundedModule`` (built once per
model, input shape and device, then cached) and handles ``Conv2d`` and alpha-CROWN; the
pure-torch versions live in ``dalv.verify.crown``.

Example:
    >>> lo, hi = bounds(model, x, 0.05, method="CROWN")          # doctest: +SKIP
    >>> lb = margin_lower_bounds(model, x, 0.05, c1=pred)        # doctest: +SKIP
    >>> r = certified_radius(model, x)                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import weakref
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dalv.models import model_device, model_dtype
from dalv.verify.box import input_box
from dalv.verify.compat import import_auto_lirpa
from dalv.verify.crown import apply_spec_interval, check_spec
from dalv.verify.network import check_model
from dalv.verify.property import spec_matrix

logger = logging.getLogger(__name__)

__all__ = [
    "BoundMethod",
    "bounded_module",
    "bounds",
    "margin_lower_bounds",
    "certified_radius",
]

BoundMethod = Literal["IBP", "CROWN", "alpha-CROWN"]
_METHODS = ("IBP", "CROWN", "alpha-CROWN")

# auto_LiRPA 0.3's sparse alpha variables crash when the batch size changes between
# calls (shape mismatch in reconstruct_full_alpha); dense alphas work and are as tight.
_LIRPA_OPTS = {"sparse_features_alpha": False, "sparse_spec_alpha": False}

_LIRPA_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple[Any, tuple]]]
_LIRPA_CACHE = weakref.WeakKeyDictionary()


def _param_fingerprint(model: nn.Module) -> tuple:
    return tuple((p.data_ptr(), p.dtype, tuple(p.shape)) for p in model.parameters())


def bounded_module(
    model: nn.Module, input_shape: tuple[int, ...], device: torch.device | None = None
) -> Any:
    """The auto_LiRPA ``BoundedModule`` for ``model``, built once and cached.

    The cache is keyed weakly by the model object, then by device and input shape. The
    BoundedModule shares the model's parameter tensors, so in-place training shows up
    without a rebuild; if a parameter is replaced (new storage), it is rebuilt.

    Args:
        model: The network.
        input_shape: Shape of one input (no batch dimension).
        device: Device (default: the model's).

    Returns:
        An ``auto_LiRPA.BoundedModule``.
    """
    lirpa = import_auto_lirpa()
    device = device or model_device(model)
    key = (str(device), tuple(input_shape))
    per_model = _LIRPA_CACHE.setdefault(model, {})
    fingerprint = _param_fingerprint(model)
    hit = per_model.get(key)
    if hit is not None and hit[1] == fingerprint:
        return hit[0]
    dummy = torch.zeros(1, *input_shape, device=device, dtype=model_dtype(model))
    logger.debug("building a BoundedModule for inputs %s on %s", input_shape, device)
    opts = dict(_LIRPA_OPTS)
    with contextlib.redirect_stdout(io.StringIO()):
        bm = lirpa.BoundedModule(model, dummy, bound_opts=opts, device=device)
    per_model[key] = (bm, fingerprint)
    return bm


def bounds(
    model: nn.Module,
    x: Tensor,
    eps: float | Tensor,
    method: BoundMethod = "CROWN",
    C: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Sound bounds on the logits (or ``C @ logits``) over the clipped box (auto_LiRPA).

    Args:
        model: A Flatten/Linear/ReLU/Conv2d ``nn.Sequential`` (left unchanged).
        x: Inputs in [0, 1].
        eps: L-infinity radius, a float or one value per input.
        method: "IBP", "CROWN" or "alpha-CROWN" (20 Adam steps on the ReLU slopes).
        C: Optional specification matrix. For IBP, interval arithmetic is applied to
            the logit box (auto_LiRPA 0.3 cannot fold ``C`` into a bias-free layer).

    Returns:
        ``(lo, hi)``, detached, in the model's dtype, on its device.

    Raises:
        ValueError: Unknown method, unsupported layer, bad ``eps`` or ``C``.
        ImportError: auto_LiRPA is missing.

    Shapes:
        x: ``[B, *input_shape]``; eps: scalar or ``[B]``; C: ``[B, S, n_classes]``;
        lo, hi: ``[B, n_classes]`` or ``[B, S]``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    check_model(model, who="bounds")
    check_spec(C, x.shape[0])
    lirpa = import_auto_lirpa()
    device, dtype = model_device(model), model_dtype(model)
    x = x.to(device=device, dtype=dtype)
    bm = bounded_module(model, tuple(x.shape[1:]), device)
    lo, hi = input_box(x, eps, rounding="outward")
    ptb = lirpa.PerturbationLpNorm(norm=math.inf, x_L=lo, x_U=hi)
    bx = lirpa.BoundedTensor(x, ptb)
    spec = None if (C is None or method == "IBP") else C.to(device=device, dtype=dtype)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):  # auto_LiRPA prints progress messages
        if method == "alpha-CROWN":
            kw = dict(x=(bx,), method="alpha-CROWN", C=spec)
            lb, _ = bm.compute_bounds(**kw, bound_upper=False)
            _, ub = bm.compute_bounds(**kw, bound_lower=False)
        else:
            with torch.no_grad():
                lb, ub = bm.compute_bounds(x=(bx,), method=method, C=spec)
    if sink.getvalue():
        logger.debug("auto_LiRPA: %s", sink.getvalue().strip())
    lb, ub = lb.detach(), ub.detach()
    if C is not None and method == "IBP":
        lb, ub = apply_spec_interval(lb, ub, C.to(device=device, dtype=dtype))
    return lb, ub


def margin_lower_bounds(
    model: nn.Module,
    x: Tensor,
    eps: float | Tensor,
    c1: Tensor | int,
    c2: Tensor | int | None = None,
    method: BoundMethod = "CROWN",
) -> Tensor:
    """Lower bounds of the margins ``f_c1(x') - f_c2(x')`` over the box.

    Args:
        model: The network.
        x: Inputs.
        eps: Radius, a float or one value per input.
        c1: Class per input (or one int for all).
        c2: Other class per input; ``None`` means every class.
        method: "IBP", "CROWN" or "alpha-CROWN".

    Returns:
        ``[B]`` when ``c2`` is given. With ``c2=None``: ``[B, n_classes]``, where column
        ``j`` bounds ``f_c1 - f_j`` and column ``c1`` is ``+inf``, so ``min(dim=1)`` is
        the worst margin and ``> 0`` proves the prediction ``c1`` robust.

    Shapes:
        x: ``[B, *input_shape]``; c1, c2: ``[B]``.
    """
    b = x.shape[0]
    device, dtype = model_device(model), model_dtype(model)
    c1 = torch.as_tensor(c1, device=device).long().reshape(-1).expand(b)
    with torch.no_grad():
        n_classes = int(model(x[:1].to(device, dtype)).shape[-1])
    if c2 is not None:
        c2 = torch.as_tensor(c2, device=device).long().reshape(-1).expand(b)
        C = spec_matrix(c1, n_classes, c2, dtype=dtype)
        return bounds(model, x, eps, method, C)[0][:, 0]
    lb = bounds(model, x, eps, method, spec_matrix(c1, n_classes, dtype=dtype))[0]
    out = torch.full((b, n_classes), math.inf, dtype=lb.dtype, device=lb.device)
    mask = torch.ones_like(out, dtype=torch.bool)
    mask[torch.arange(b, device=device), c1] = False
    out[mask] = lb.reshape(-1)
    return out


def certified_radius(
    model: nn.Module,
    x: Tensor,
    *,
    method: BoundMethod = "CROWN",
    hi: float = 1.0,
    tol: float = 1e-3,
) -> Tensor:
    """Largest L-infinity radius at which the bound proves each prediction robust.

    Bisection, all inputs at once: each step bounds every input at its own midpoint.
    "Proved" means every margin ``f_pred - f_j`` has a lower bound ``> 0`` on the box.

    Args:
        model: The network.
        x: Inputs in [0, 1].
        method: Bound method used as the robustness test.
        hi: Upper end of the search interval.
        tol: Stop when the bracket is narrower than this.

    Returns:
        ``[B]`` float64 radii, each proved robust (0 when no tested radius could be
        proved; ``hi`` when ``hi`` is proved).

    Shapes:
        x: ``[B, *input_shape]`` -> ``[B]``.
    """
    if hi <= 0 or tol <= 0:
        raise ValueError(f"hi and tol must be > 0, got {hi} and {tol}")
    device = model_device(model)
    x = x.to(device, model_dtype(model))
    with torch.no_grad():
        pred = model(x).argmax(-1)

    def proved(eps: Tensor) -> Tensor:
        lb = margin_lower_bounds(model, x, eps, pred, method=method)
        return lb.min(dim=1).values > 0

    b = x.shape[0]
    lo_r = torch.zeros(b, dtype=torch.float64, device=device)
    hi_r = torch.full((b,), float(hi), dtype=torch.float64, device=device)
    at_hi = proved(hi_r)
    lo_r[at_hi] = hi
    for _ in range(max(1, math.ceil(math.log2(hi / tol)))):
        open_ = ~at_hi
        if not bool(open_.any()):
            break
        mid = (lo_r + hi_r) / 2
        ok = proved(mid)
        lo_r = torch.where(open_ & ok, mid, lo_r)
        hi_r = torch.where(open_ & ~ok, mid, hi_r)
    return lo_r
