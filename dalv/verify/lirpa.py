"""Output bounds through auto_LiRPA, margins and the certified radius.

Owns: ``bounded_module`` (the cached auto_LiRPA ``BoundedModule``), ``float64_twin``
(a float64 copy of a model, for bounds that must be clear of float32 rounding),
``bounds`` (IBP / CROWN / alpha-CROWN), ``margin_lower_bounds`` and
``certified_radius``; may import:
torch, the standard library, ``dalv.models``, ``dalv.verify.{box, compat, crown,
network, property}`` (auto_LiRPA only through ``compat.import_auto_lirpa``, inside the
functions that need it).

The box of radius ``eps`` around ``x`` is ``max(0, x - eps) <= x' <= min(1, x + eps)``.
Bounds are sound: for every ``x'`` in the box, ``lo <= C f(x') <= hi``.

``bounds`` wraps the user's model in an auto_LiRPA ``BoundedModule`` (built once per
model, input shape, device and kind of method, then cached) and handles ``Conv2d`` and
alpha-CROWN; the pure-torch versions live in ``dalv.verify.crown``. alpha-CROWN gets a
``BoundedModule`` of its own (its optimised slopes are state), runs with torch's default
dtype set to the model's (auto_LiRPA 0.3 casts its best bounds to the default dtype,
which crashed float64 models and rounded their bounds to float32), and a call that
raises drops its cached module, so a failure never leaves state behind for later calls.
Bounds are computed in the model's dtype: a float32 model's bounds carry float32
rounding (``dalv.verify.bab`` bounds a float64 twin for its proofs).

Example:
    >>> lo, hi = bounds(model, x, 0.05, method="CROWN")          # doctest: +SKIP
    >>> lb = margin_lower_bounds(model, x, 0.05, c1=pred)        # doctest: +SKIP
    >>> r = certified_radius(model, x)                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import weakref
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dalv.models import model_device, model_dtype
from dalv.verify.box import input_box
from dalv.verify.compat import import_auto_lirpa
from dalv.verify.crown import apply_spec_interval, check_spec
from dalv.verify.network import check_batch, check_model
from dalv.verify.property import spec_matrix

logger = logging.getLogger(__name__)

__all__ = [
    "BoundMethod",
    "bounded_module",
    "float64_twin",
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
    model: nn.Module,
    input_shape: tuple[int, ...],
    device: torch.device | None = None,
    *,
    optimized: bool = False,
) -> Any:
    """The auto_LiRPA ``BoundedModule`` for ``model``, built once and cached.

    The cache is keyed weakly by the model object, then by device, input shape and
    ``optimized``. The BoundedModule shares the model's parameter tensors, so in-place
    training shows up without a rebuild; if a parameter is replaced (new storage), it
    is rebuilt.

    Args:
        model: The network.
        input_shape: Shape of one input (no batch dimension).
        device: Device (default: the model's).
        optimized: The module for alpha-CROWN (kept apart from the one for IBP and
            CROWN, since the optimised slopes it stores are state).

    Returns:
        An ``auto_LiRPA.BoundedModule``.
    """
    lirpa = import_auto_lirpa()
    device = device or model_device(model)
    key = (str(device), tuple(input_shape), bool(optimized))
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


def _forget(model: nn.Module, input_shape: tuple[int, ...], device, optimized: bool):
    """Drop a cached BoundedModule (after a failed call: its state is suspect)."""
    key = (str(device), tuple(input_shape), bool(optimized))
    _LIRPA_CACHE.get(model, {}).pop(key, None)


_TWINS: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()


def float64_twin(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` holding its current parameter values.

    The copy is made once per model and cached (weakly); its parameters are refreshed
    from the model's at every call, so in-place training shows up, and the copy's own
    ``BoundedModule`` (``bounded_module(twin, ...)``) stays valid. A float64 model is
    its own twin.

    Args:
        model: The network.

    Returns:
        A float64 module computing the same function (in float64).
    """
    if model_dtype(model) == torch.float64:
        return model
    params = list(model.parameters())
    twin = _TWINS.get(model)
    if twin is not None:
        theirs = list(twin.parameters())
        same = len(theirs) == len(params) and all(
            t.shape == p.shape for t, p in zip(theirs, params, strict=True)
        )
        if not same:
            twin = None
    if twin is None:
        twin = copy.deepcopy(model).to(torch.float64).eval()
        for t in twin.parameters():
            t.requires_grad_(False)
        _TWINS[model] = twin
    with torch.no_grad():
        for t, p in zip(twin.parameters(), params, strict=True):
            t.copy_(p)
    return twin


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Set torch's default dtype for a block (auto_LiRPA's optimiser reads it)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


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
        ValueError: Unknown method, unsupported layer, bad ``x`` (a single unbatched
            input included: pass ``x[None]``), ``eps`` or ``C``.
        ImportError: auto_LiRPA is missing.

    Shapes:
        x: ``[B, *input_shape]``; eps: scalar or ``[B]``; C: ``[B, S, n_classes]``;
        lo, hi: ``[B, n_classes]`` or ``[B, S]``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    check_model(model, who="bounds")
    check_batch(model, x)
    check_spec(C, x.shape[0])
    lirpa = import_auto_lirpa()
    device, dtype = model_device(model), model_dtype(model)
    # The box from the exact input (a float64 x is not rounded to float32 first).
    lo, hi = input_box(x.detach().to(device), eps, dtype=dtype, rounding="outward")
    x = x.detach().to(device=device, dtype=dtype)
    optimized = method == "alpha-CROWN"
    shape = tuple(x.shape[1:])
    bm = bounded_module(model, shape, device, optimized=optimized)
    ptb = lirpa.PerturbationLpNorm(norm=math.inf, x_L=lo, x_U=hi)
    bx = lirpa.BoundedTensor(x.clamp(lo, hi), ptb)
    spec = None if (C is None or method == "IBP") else C.to(device=device, dtype=dtype)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink):  # auto_LiRPA prints progress messages
            if optimized:
                kw = dict(x=(bx,), method="alpha-CROWN", C=spec)
                with _default_dtype(dtype):
                    lb, _ = bm.compute_bounds(**kw, bound_upper=False)
                    _, ub = bm.compute_bounds(**kw, bound_lower=False)
            else:
                with torch.no_grad():
                    lb, ub = bm.compute_bounds(x=(bx,), method=method, C=spec)
    except Exception:
        _forget(model, shape, device, optimized)
        raise
    if sink.getvalue():
        logger.debug("auto_LiRPA: %s", sink.getvalue().strip())
    lb, ub = lb.detach().to(dtype), ub.detach().to(dtype)
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
    check_batch(model, x)
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
    check_model(model, who="certified_radius")
    check_batch(model, x)
    device = model_device(model)
    x = x.detach().to(device)  # the boxes are built around the exact input
    with torch.no_grad():
        pred = model(x.to(model_dtype(model))).argmax(-1)

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
