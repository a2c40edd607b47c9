"""Output bounds of a network over an L-infinity box clipped to [0, 1].

Owns: ``input_box``, ``spec_matrix``, ``bounds`` (auto_LiRPA IBP / CROWN / alpha-CROWN),
``margin_lower_bounds``, the pure-torch ``interval_bounds`` and ``crown_bounds``, and
``certified_radius``; may import: torch, ``dalv.verify.network``, ``dalv.verify.compat``
(auto_LiRPA only through ``import_auto_lirpa``).

The box of radius ``eps`` around ``x`` is ``max(0, x - eps) <= x' <= min(1, x + eps)``.
Bounds are sound: for every ``x'`` in the box, ``lo <= C f(x') <= hi``.

Two implementations sit side by side, as in a textbook chapter:

* ``interval_bounds`` and ``crown_bounds`` are short pure-torch versions, without
  auto_LiRPA. ``crown_bounds`` handles Flatten/Linear/ReLU networks in float64; its
  core, ``crown_linear_lower``, also returns the linear lower bound ``A x' + c`` that
  the counterexample search uses to choose split coordinates and candidate points.
  Tests check that both match auto_LiRPA.
* ``bounds`` wraps the user's model in an auto_LiRPA ``BoundedModule`` (built once per
  model, input shape and device, then cached) and also handles ``Conv2d`` and
  alpha-CROWN.

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
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dalv.verify.compat import import_auto_lirpa
from dalv.verify.network import (
    AffineLayer,
    affine_relu_layers,
    check_model,
    model_device,
    model_dtype,
)

logger = logging.getLogger(__name__)

__all__ = [
    "BoundMethod",
    "input_box",
    "spec_matrix",
    "bounds",
    "bounded_module",
    "margin_lower_bounds",
    "interval_bounds",
    "crown_bounds",
    "LinearBound",
    "crown_linear_lower",
    "certified_radius",
]

BoundMethod = Literal["IBP", "CROWN", "alpha-CROWN"]
_METHODS = ("IBP", "CROWN", "alpha-CROWN")

# auto_LiRPA 0.3's sparse alpha variables crash when the batch size changes between
# calls (shape mismatch in reconstruct_full_alpha); dense alphas work and are as tight.
_LIRPA_OPTS = {"sparse_features_alpha": False, "sparse_spec_alpha": False}


# ------------------------------------------------------------------------------------
# boxes and specifications
# ------------------------------------------------------------------------------------


def _eps_tensor(eps: float | Tensor, batch: int, device: torch.device) -> Tensor:
    """Broadcast ``eps`` to a float64 tensor ``[B]`` and validate it."""
    e = torch.as_tensor(eps, dtype=torch.float64, device=device).reshape(-1)
    if e.numel() == 1:
        e = e.expand(batch)
    if e.numel() != batch:
        raise ValueError(
            f"eps must be a float or one value per input ({batch}), got {e.numel()}"
        )
    if not bool(torch.isfinite(e).all()) or bool((e <= 0).any()):
        raise ValueError(f"eps must be finite and > 0, got {e.tolist()[:8]}")
    return e


def input_box(
    x: Tensor,
    eps: float | Tensor,
    *,
    dtype: torch.dtype | None = None,
    rounding: Literal["outward", "inward", "exact"] = "outward",
) -> tuple[Tensor, Tensor]:
    """The clipped L-infinity box ``[max(0, x - eps), min(1, x + eps)]``.

    The box is computed in float64, then cast to ``dtype``. ``rounding`` says which way
    to round an inexact cast: "outward" (the result contains the float64 box: use it for
    bounds and proofs), "inward" (every point of the result lies in the float64 box: use
    it for witnesses) or "exact" (no cast: float64).

    Args:
        x: Inputs.
        eps: Radius, a float or one value per input.
        dtype: Output dtype (default ``x.dtype``; ignored when ``rounding="exact"``).
        rounding: Direction of rounding, see above.

    Returns:
        ``(lo, hi)`` with the shape of ``x``.

    Shapes:
        x: ``[B, *input_shape]``; eps: scalar or ``[B]``; lo, hi: like ``x``.
    """
    e = _eps_tensor(eps, x.shape[0], x.device).view(-1, *([1] * (x.dim() - 1)))
    x64 = x.to(torch.float64)
    lo64 = (x64 - e).clamp(min=0.0)
    hi64 = (x64 + e).clamp(max=1.0)
    if rounding == "exact":
        return lo64, hi64
    if rounding not in ("outward", "inward"):
        raise ValueError(f"rounding must be outward, inward or exact, got {rounding!r}")
    dtype = dtype or x.dtype
    lo, hi = lo64.to(dtype), hi64.to(dtype)
    if dtype == torch.float64:
        return lo, hi
    inf = torch.tensor(math.inf, dtype=dtype, device=x.device)
    if rounding == "outward":
        lo = torch.where(lo.double() > lo64, torch.nextafter(lo, -inf), lo)
        hi = torch.where(hi.double() < hi64, torch.nextafter(hi, inf), hi)
    else:
        lo = torch.where(lo.double() < lo64, torch.nextafter(lo, inf), lo)
        hi = torch.where(hi.double() > hi64, torch.nextafter(hi, -inf), hi)
    return lo, hi


def spec_matrix(
    c1: Tensor,
    n_classes: int,
    c2: Tensor | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Specification matrices for margins ``f_c1 - f_c2`` (or ``f_c1 - f_j``, j != c1).

    Args:
        c1: Winner class per input.
        n_classes: Number of logits.
        c2: Other class per input, or ``None`` for all other classes.
        dtype: Output dtype.

    Returns:
        ``C`` such that ``C @ logits`` are the margins. With ``c2=None`` the rows are
        the classes ``j != c1`` in increasing order.

    Shapes:
        c1, c2: ``[B]`` -> ``[B, 1, n_classes]`` or ``[B, n_classes - 1, n_classes]``.
    """
    c1 = c1.reshape(-1).long()
    b = c1.shape[0]
    ar = torch.arange(b, device=c1.device)
    if c2 is not None:
        c2 = c2.reshape(-1).long().to(c1.device)
        if bool((c1 == c2).any()):
            raise ValueError("c2 must differ from c1")
        C = torch.zeros(b, 1, n_classes, dtype=dtype, device=c1.device)
        C[ar, 0, c1] = 1.0
        C[ar, 0, c2] = -1.0
        return C
    others = torch.arange(n_classes, device=c1.device).expand(b, n_classes)
    others = others[others != c1[:, None]].view(b, n_classes - 1)
    C = torch.zeros(b, n_classes - 1, n_classes, dtype=dtype, device=c1.device)
    C[ar, :, c1] = 1.0
    C.scatter_(2, others[:, :, None], -1.0)
    return C


def _apply_spec_interval(lo: Tensor, hi: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """Interval arithmetic for ``C y`` given ``lo <= y <= hi`` (``C``: [B, S, n])."""
    C = C.to(lo.dtype)
    cp, cn = C.clamp(min=0), C.clamp(max=0)
    new_lo = (cp @ lo.unsqueeze(-1) + cn @ hi.unsqueeze(-1)).squeeze(-1)
    new_hi = (cp @ hi.unsqueeze(-1) + cn @ lo.unsqueeze(-1)).squeeze(-1)
    return new_lo, new_hi


def _check_spec(C: Tensor | None, batch: int) -> None:
    if C is not None and (C.dim() != 3 or C.shape[0] != batch):
        raise ValueError(
            f"C must have shape [B, n_spec, n_classes], B={batch}; got {tuple(C.shape)}"
        )


# ------------------------------------------------------------------------------------
# pure-torch IBP and CROWN
# ------------------------------------------------------------------------------------


def interval_bounds(
    model: nn.Module, x: Tensor, eps: float | Tensor, C: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Interval bound propagation (IBP) in pure torch; no auto_LiRPA needed.

    Each layer maps a box to the smallest box containing its image: an affine map sends
    centre ``m`` and radius ``r`` to ``W m + b`` and ``|W| r``; ReLU is monotone. With
    ``C``, interval arithmetic is applied to the box of the logits.

    Args:
        model: A Flatten/Linear/ReLU/Conv2d ``nn.Sequential``.
        x: Inputs in [0, 1].
        eps: L-infinity radius, a float or one value per input.
        C: Optional specification matrix.

    Returns:
        ``(lo, hi)`` bounds on the logits (or on ``C @ logits``).

    Shapes:
        x: ``[B, *input_shape]``; C: ``[B, S, n_classes]``;
        lo, hi: ``[B, n_classes]`` or ``[B, S]``.
    """
    layers = check_model(model, who="interval_bounds")
    _check_spec(C, x.shape[0])
    lo, hi = input_box(x, eps, rounding="outward")
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, (nn.Flatten, nn.ReLU)):
                lo, hi = layer(lo), layer(hi)
                continue
            mid, rad = (hi + lo) / 2, (hi - lo) / 2
            if isinstance(layer, nn.Linear):
                mid = nn.functional.linear(mid, layer.weight, layer.bias)
                rad = nn.functional.linear(rad, layer.weight.abs())
            else:  # Conv2d
                args = (layer.stride, layer.padding, layer.dilation, layer.groups)
                mid = nn.functional.conv2d(mid, layer.weight, layer.bias, *args)
                rad = nn.functional.conv2d(rad, layer.weight.abs(), None, *args)
            lo, hi = mid - rad, mid + rad
    if C is not None:
        lo, hi = _apply_spec_interval(lo, hi, C)
    return lo, hi


@dataclass(frozen=True)
class LinearBound:
    """A linear lower bound ``C f(x') >= A x' + c`` on a box, and its minimum there.

    Attributes:
        lower: Minimum of ``A x' + c`` over the box, ``[M, S]``.
        A: Coefficients on the flattened input, ``[M, S, d]``.
        c: Constant term, ``[M, S]``.
        hidden: Coefficients on the first ReLU layer's outputs before its relaxation,
            ``[M, S, h]`` (``None`` for a network without hidden layer); the search
            uses them to choose which ReLU to split.
        pre: Bounds ``(l, u)`` on the first layer's pre-activations, ``[M, h]`` each
            (after any phase split was applied), or ``None``.
    """

    lower: Tensor
    A: Tensor
    c: Tensor
    hidden: Tensor | None = None
    pre: tuple[Tensor, Tensor] | None = None


def _relu_relaxation(lo: Tensor, up: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """CROWN's ReLU relaxation with the adaptive lower slope (auto_LiRPA's default).

    Returns ``(lower_slope, upper_slope, upper_intercept)`` such that
    ``lower_slope z <= relu(z) <= upper_slope z + upper_intercept`` on ``[lo, up]``.
    """
    active = lo >= 0
    unstable = (lo < 0) & (up > 0)
    denom = torch.where(unstable, up - lo, torch.ones_like(up))
    s_up = torch.where(unstable, up / denom, active.to(up.dtype))
    b_up = torch.where(unstable, -s_up * lo, torch.zeros_like(lo))
    s_lo = torch.where(unstable, (up > -lo).to(up.dtype), active.to(up.dtype))
    return s_lo, s_up, b_up


def _backsubstitute(
    lam: Tensor,
    const: Tensor,
    upto: int,
    layers: list[AffineLayer],
    pre: list[tuple[Tensor, Tensor]],
    record: list[Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Push a lower bound ``lam . a_upto + const`` back to the input.

    Here ``a_i = relu(z_i)``, ``z_i = W_i a_{i-1} + b_i`` and ``a_{-1} = x``; ``pre[i]``
    bounds ``z_i``. If ``record`` is given, the coefficients on ``a_0`` (before its
    relaxation) are appended to it.

    Returns:
        ``(A, c)`` with ``lam . a_upto + const >= A x + c`` on the box.
    """
    for i in range(upto, -1, -1):
        if i == 0 and record is not None:
            record.append(lam)
        s_lo, s_up, b_up = _relu_relaxation(*pre[i])
        lam_pos, lam_neg = lam.clamp(min=0), lam.clamp(max=0)
        const = const + (lam_neg * b_up.unsqueeze(1)).sum(-1)
        lam = lam_pos * s_lo.unsqueeze(1) + lam_neg * s_up.unsqueeze(1)
        const = const + lam @ layers[i].bias
        lam = lam @ layers[i].weight
    return lam, const


def _concretize_lower(A: Tensor, c: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """``min over lo <= x <= hi`` of ``A x + c`` (A: [M, S, d], boxes: [M, d])."""
    pos = (A.clamp(min=0) @ lo.unsqueeze(-1)).squeeze(-1)
    neg = (A.clamp(max=0) @ hi.unsqueeze(-1)).squeeze(-1)
    return c + pos + neg


def _affine_interval(
    layer: AffineLayer, lo: Tensor, hi: Tensor
) -> tuple[Tensor, Tensor]:
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    centre = mid @ layer.weight.T + layer.bias
    spread = rad @ layer.weight.abs().T
    return centre - spread, centre + spread


def _intermediate_bounds(
    layers: list[AffineLayer], lo: Tensor, hi: Tensor, first_split: Tensor | None = None
) -> list[tuple[Tensor, Tensor]]:
    """Bounds on every pre-activation that feeds a ReLU.

    The first layer uses interval arithmetic (exact for an affine map of a box). Deeper
    layers use IBP to find the neurons that may be unstable and CROWN for those only,
    which is auto_LiRPA's default (``sparse_intermediate_bounds``). ``first_split``
    (``[M, h]`` in {-1, 0, 1}) fixes the phases of first-layer ReLUs: +1 means
    ``z >= 0`` (lower bound raised to 0), -1 means ``z <= 0`` (upper bound lowered to
    0); such bounds hold on the part of the box where the phases hold.
    """
    l0, u0 = _affine_interval(layers[0], lo, hi)
    if first_split is not None:
        l0 = torch.where(first_split > 0, l0.clamp(min=0), l0)
        u0 = torch.where(first_split < 0, u0.clamp(max=0), u0)
    pre = [(l0, u0)]
    for j in range(1, len(layers) - 1):
        lj, uj = pre[-1]
        ibp_l, ibp_u = _affine_interval(layers[j], lj.clamp(min=0), uj.clamp(min=0))
        unstable = (ibp_l < 0) & (ibp_u > 0)
        cols = torch.nonzero(unstable.any(0)).flatten()
        l_new, u_new = ibp_l.clone(), ibp_u.clone()
        if cols.numel():
            w_sel, b_sel = layers[j].weight[cols], layers[j].bias[cols]
            m, k = lo.shape[0], cols.numel()
            lam = torch.cat([w_sel, -w_sel]).unsqueeze(0).expand(m, -1, -1)
            const = torch.cat([b_sel, -b_sel]).unsqueeze(0).expand(m, -1)
            A, c = _backsubstitute(lam, const, j - 1, layers, pre)
            val = _concretize_lower(A, c, lo, hi)
            sel = unstable[:, cols]
            l_new[:, cols] = torch.where(sel, val[:, :k], ibp_l[:, cols])
            u_new[:, cols] = torch.where(sel, -val[:, k:], ibp_u[:, cols])
        pre.append((l_new, u_new))
    return pre


def crown_linear_lower(
    layers: list[AffineLayer],
    lo: Tensor,
    hi: Tensor,
    C: Tensor,
    first_split: Tensor | None = None,
) -> LinearBound:
    """CROWN lower bound of ``C f(x')`` over boxes, with its linear form.

    Args:
        layers: The network as affine layers (``affine_relu_layers``), one dtype.
        lo: Lower corners of the boxes (flattened inputs), in the layers' dtype.
        hi: Upper corners.
        C: Specification matrices.
        first_split: Optional phases of the first-layer ReLUs (see
            ``_intermediate_bounds``). The bound then holds on the part of each box
            where those phases hold (the caller adds the Lagrangian terms that make
            use of the phase constraints, as beta-CROWN does).

    Returns:
        A ``LinearBound``.

    Shapes:
        lo, hi: ``[M, d]``; C: ``[M, S, n_classes]``; first_split: ``[M, h]``;
        lower: ``[M, S]``; A: ``[M, S, d]``.
    """
    C = C.to(lo.dtype)
    lam = C @ layers[-1].weight
    const = C @ layers[-1].bias
    if len(layers) == 1:
        return LinearBound(_concretize_lower(lam, const, lo, hi), lam, const)
    pre = _intermediate_bounds(layers, lo, hi, first_split)
    record: list[Tensor] = []
    A, c = _backsubstitute(lam, const, len(layers) - 2, layers, pre, record)
    return LinearBound(_concretize_lower(A, c, lo, hi), A, c, record[0], pre[0])


def crown_bounds(
    model: nn.Module,
    x: Tensor,
    eps: float | Tensor,
    C: Tensor | None = None,
    *,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor]:
    """CROWN bounds in pure torch (Flatten/Linear/ReLU networks), computed in ``dtype``.

    Matches auto_LiRPA's ``CROWN`` (adaptive ReLU lower slopes, IBP-filtered
    intermediate bounds) up to floating-point error.

    Args:
        model: A Flatten/Linear/ReLU ``nn.Sequential``.
        x: Inputs in [0, 1].
        eps: L-infinity radius, a float or one value per input.
        C: Optional specification matrix (identity when omitted).
        dtype: Computation dtype; float64 keeps proofs clear of float32 rounding.

    Returns:
        ``(lo, hi)`` on the logits or on ``C @ logits``, in ``dtype``.

    Shapes:
        x: ``[B, *input_shape]``; C: ``[B, S, n_classes]``; lo, hi: ``[B, S]``.
    """
    layers = affine_relu_layers(model, dtype=dtype, who="crown_bounds")
    _check_spec(C, x.shape[0])
    n_out = layers[-1].weight.shape[0]
    if C is None:
        C = torch.eye(n_out, dtype=dtype, device=x.device).expand(x.shape[0], -1, -1)
    rounding = "exact" if dtype == torch.float64 else "outward"
    lo, hi = input_box(x, eps, rounding=rounding, dtype=dtype)
    lo, hi, C = lo.flatten(1).to(dtype), hi.flatten(1).to(dtype), C.to(dtype)
    with torch.no_grad():
        lower = crown_linear_lower(layers, lo, hi, C).lower
        upper = -crown_linear_lower(layers, lo, hi, -C).lower
    return lower, upper


# ------------------------------------------------------------------------------------
# auto_LiRPA
# ------------------------------------------------------------------------------------

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
    _check_spec(C, x.shape[0])
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
        lb, ub = _apply_spec_interval(lb, ub, C.to(device=device, dtype=dtype))
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
