"""Pure-torch output bounds (no auto_LiRPA): interval bounds and CROWN.

Owns: ``interval_bounds``, ``crown_bounds``, ``crown_linear_lower``, ``LinearBound``,
``concretize_lower``, the ReLU relaxation and back-substitution they share,
``RoundingAllowance`` (how far rounding can move a bound) and the specification helpers
``apply_spec_interval`` / ``check_spec``; may import: torch, the standard library,
``dalv.verify.{box, network}``.

The box of radius ``eps`` around ``x`` is ``max(0, x - eps) <= x' <= min(1, x + eps)``.
Bounds are sound: for every ``x'`` in the box, ``lo <= C f(x') <= hi``.

These are short textbook versions. ``interval_bounds`` handles
Flatten/Linear/ReLU/Conv2d networks; ``crown_bounds`` handles Flatten/Linear/ReLU
networks in float64 (a Linear may follow a Linear directly: the relaxation is applied
only where a ReLU is), and its core, ``crown_linear_lower``, also returns the linear
lower bound ``A x' + c`` that the branch and bound uses to choose split coordinates and
candidate points. Tests check that both match auto_LiRPA (``dalv.verify.lirpa``) and
contain the exact range of small networks (``tests/test_verify_soundness.py``).

Example:
    >>> lo, hi = crown_bounds(model, x, 0.05)          # doctest: +SKIP
    >>> lo, hi = interval_bounds(model, x, 0.05, C)    # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dalv.verify.box import input_box
from dalv.verify.network import (
    AffineLayer,
    affine_relu_layers,
    check_batch,
    check_model,
)

__all__ = [
    "interval_bounds",
    "crown_bounds",
    "LinearBound",
    "crown_linear_lower",
    "concretize_lower",
    "apply_spec_interval",
    "check_spec",
    "RoundingAllowance",
]


def apply_spec_interval(lo: Tensor, hi: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """Interval arithmetic for ``C y`` given ``lo <= y <= hi`` (``C``: [B, S, n])."""
    C = C.to(lo.dtype)
    cp, cn = C.clamp(min=0), C.clamp(max=0)
    new_lo = (cp @ lo.unsqueeze(-1) + cn @ hi.unsqueeze(-1)).squeeze(-1)
    new_hi = (cp @ hi.unsqueeze(-1) + cn @ lo.unsqueeze(-1)).squeeze(-1)
    return new_lo, new_hi


def check_spec(C: Tensor | None, batch: int) -> None:
    """Raise unless ``C`` is a ``[B, S, n_classes]`` specification of ``batch`` rows."""
    if C is not None and (C.dim() != 3 or C.shape[0] != batch):
        raise ValueError(
            f"C must have shape [B, n_spec, n_classes], B={batch}; got {tuple(C.shape)}"
        )


class RoundingAllowance:
    """How far floating-point rounding can move a CROWN bound computed in ``dtype``.

    A CROWN lower bound is a chain of dot products: back-substitution multiplies the
    coefficients by each weight matrix (sums of ``fan_in`` products), the ReLU
    relaxations add intercepts no larger than the pre-activation bounds, and the
    concretisation sums over the input. The rounding error of a sum of ``n`` products
    is at most ``n u`` times the sum of their absolute values (``u``: the unit roundoff
    of ``dtype``), and every such sum of absolute values is at most the output of the
    *absolute network* (``|W|``, ``|b|``, fed ``max(|lo|, |hi|)``), multiplied by
    ``|C|``. Intermediate bounds off by their own rounding shift the relaxations by as
    much again. So the first-order error of the bound is at most
    ``(sum of fan-ins + layers + classes) u |C| M``, ``M`` the absolute network's
    output; the allowance is eight times that (room for the second-order terms and the
    relaxation shifts), plus ``extra`` magnitudes a caller adds (beta terms).

    This is the slack a proof must clear: relative to the magnitudes the computation
    handles, not to the bound itself, so a steep network (large activations, a margin
    near 0) is not "proved" by rounding noise.

    Args:
        model: The network (Flatten/Linear/ReLU/Conv2d ``nn.Sequential``).
        input_shape: Shape of one input.
        dtype: The dtype the bound is computed in.
    """

    def __init__(
        self, model: nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype
    ) -> None:
        self.input_shape = tuple(input_shape)
        self.layers = []
        ops, n_out = 0, 0
        for layer in check_model(model, who="RoundingAllowance"):
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                w = layer.weight.detach().double().abs()
                b = None if layer.bias is None else layer.bias.detach().double().abs()
                ops += math.prod(w.shape[1:]) + 1
                n_out = w.shape[0]
                self.layers.append((layer, w, b))
            elif isinstance(layer, nn.Flatten):
                self.layers.append((layer, None, None))
        d = math.prod(self.input_shape)
        self.ops = ops + n_out + d + len(self.layers) + 16
        self.unit = torch.finfo(dtype).eps / 2

    def magnitude(self, lo: Tensor, hi: Tensor, upto: int | None = None) -> Tensor:
        """The absolute network's output on the boxes ``[lo, hi]`` (float64).

        Args:
            lo, hi: The boxes.
            upto: Stop after this many Linear/Conv2d layers (``None``: all).

        Shapes:
            lo, hi: ``[M, d]`` or ``[M, *input_shape]`` -> ``[M, n_out]``.
        """
        m = torch.maximum(lo.double().abs(), hi.double().abs())
        m = m.reshape(-1, *self.input_shape)
        done = 0
        with torch.no_grad():
            for layer, w, b in self.layers:
                if w is None:
                    m = layer(m)
                    continue
                if upto is not None and done == upto:
                    break
                if isinstance(layer, nn.Linear):
                    m = nn.functional.linear(m, w, b)
                else:
                    args = (layer.stride, layer.padding, layer.dilation, layer.groups)
                    m = nn.functional.conv2d(m, w, b, *args)
                done += 1
        return m.flatten(1)

    def tolerance(self, magnitude: Tensor) -> Tensor:
        """The allowance for values of the given magnitudes (float64)."""
        return 8.0 * self.ops * self.unit * magnitude + torch.finfo(torch.float64).tiny

    def __call__(
        self, lo: Tensor, hi: Tensor, C: Tensor, extra: Tensor | None = None
    ) -> Tensor:
        """The allowance of each bound ``C f`` over each box (float64, ``[M, S]``).

        Args:
            lo, hi: The boxes.
            C: ``[M, S, n_classes]`` specification matrices.
            extra: ``[M, S]`` magnitudes of terms the caller added to the bound.
        """
        mag = (C.double().abs() @ self.magnitude(lo, hi).unsqueeze(-1)).squeeze(-1)
        if extra is not None:
            mag = mag + extra
        return self.tolerance(mag)


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
    check_batch(model, x)
    check_spec(C, x.shape[0])
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
        lo, hi = apply_spec_interval(lo, hi, C)
    return lo, hi


@dataclass(frozen=True)
class LinearBound:
    """A linear lower bound ``C f(x') >= A x' + c`` on a box, and its minimum there.

    Attributes:
        lower: Minimum of ``A x' + c`` over the box, ``[M, S]``.
        A: Coefficients on the flattened input, ``[M, S, d]``.
        c: Constant term, ``[M, S]``.
        hidden: Coefficients on the first layer's ReLU outputs before their
            relaxation, ``[M, S, h]`` (``None`` when no ReLU follows the first layer);
            the search uses them to choose which ReLU to split.
        pre: Bounds ``(l, u)`` on the first layer's pre-activations, ``[M, h]`` each
            (after any phase split was applied), or ``None`` (as ``hidden``).
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

    Here ``z_i = W_i a_{i-1} + b_i`` with ``a_{-1} = x``, and ``a_i = relu(z_i)`` when
    a ReLU follows layer ``i`` (``layers[i].relu``), else ``a_i = z_i`` (consecutive
    affine layers pass the coefficients through unrelaxed). ``pre[i]`` bounds ``z_i``
    (needed only where a ReLU follows). If ``record`` is given and a ReLU follows layer
    0, the coefficients on ``a_0`` (before its relaxation) are appended to it.

    Returns:
        ``(A, c)`` with ``lam . a_upto + const >= A x + c`` on the box.
    """
    for i in range(upto, -1, -1):
        if layers[i].relu:
            if i == 0 and record is not None:
                record.append(lam)
            s_lo, s_up, b_up = _relu_relaxation(*pre[i])
            lam_pos, lam_neg = lam.clamp(min=0), lam.clamp(max=0)
            const = const + (lam_neg * b_up.unsqueeze(1)).sum(-1)
            lam = lam_pos * s_lo.unsqueeze(1) + lam_neg * s_up.unsqueeze(1)
        const = const + lam @ layers[i].bias
        lam = lam @ layers[i].weight
    return lam, const


def concretize_lower(A: Tensor, c: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
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
    """Bounds on the pre-activations ``z_j`` of every layer but the last.

    The first layer uses interval arithmetic (exact for an affine map of a box). For a
    deeper layer followed by a ReLU, IBP finds the neurons that may be unstable and
    CROWN bounds those only, which is auto_LiRPA's default
    (``sparse_intermediate_bounds``). A layer without a ReLU after it needs no
    relaxation: its IBP bounds only feed the next layer's IBP. ``first_split``
    (``[M, h]`` in {-1, 0, 1}, only when a ReLU follows layer 0) fixes the phases of
    first-layer ReLUs: +1 means ``z >= 0`` (lower bound raised to 0), -1 means
    ``z <= 0`` (upper bound lowered to 0); such bounds hold on the part of the box
    where the phases hold.
    """
    l0, u0 = _affine_interval(layers[0], lo, hi)
    if first_split is not None:
        if not layers[0].relu:
            raise ValueError("first_split needs a ReLU after the first affine layer")
        l0 = torch.where(first_split > 0, l0.clamp(min=0), l0)
        u0 = torch.where(first_split < 0, u0.clamp(max=0), u0)
    pre = [(l0, u0)]
    for j in range(1, len(layers) - 1):
        lj, uj = pre[-1]
        if layers[j - 1].relu:
            lj, uj = lj.clamp(min=0), uj.clamp(min=0)
        ibp_l, ibp_u = _affine_interval(layers[j], lj, uj)
        if not layers[j].relu:
            pre.append((ibp_l, ibp_u))
            continue
        unstable = (ibp_l < 0) & (ibp_u > 0)
        cols = torch.nonzero(unstable.any(0)).flatten()
        l_new, u_new = ibp_l.clone(), ibp_u.clone()
        if cols.numel():
            w_sel, b_sel = layers[j].weight[cols], layers[j].bias[cols]
            m, k = lo.shape[0], cols.numel()
            lam = torch.cat([w_sel, -w_sel]).unsqueeze(0).expand(m, -1, -1)
            const = torch.cat([b_sel, -b_sel]).unsqueeze(0).expand(m, -1)
            A, c = _backsubstitute(lam, const, j - 1, layers, pre)
            val = concretize_lower(A, c, lo, hi)
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
    pre: list[tuple[Tensor, Tensor]] | None = None,
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
        pre: ``_intermediate_bounds(layers, lo, hi, first_split)`` when the caller
            has them already (they are not computed again).

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
        return LinearBound(concretize_lower(lam, const, lo, hi), lam, const)
    if pre is None:
        pre = _intermediate_bounds(layers, lo, hi, first_split)
    record: list[Tensor] = []
    A, c = _backsubstitute(lam, const, len(layers) - 2, layers, pre, record)
    lower = concretize_lower(A, c, lo, hi)
    if not layers[0].relu:  # no ReLU right after the first layer: nothing to split
        return LinearBound(lower, A, c)
    return LinearBound(lower, A, c, record[0], pre[0])


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
    check_batch(model, x)
    check_spec(C, x.shape[0])
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
