"""The clipped L-infinity box, its radius checks, and directed rounding of its corners.

Owns: ``eps_tensor`` (the one check of a radius argument), ``round_up`` / ``round_down``
(the one home of directed rounding, for torch tensors and numpy arrays), ``clip_box``
and ``input_box``; may import: torch, numpy, the standard library.

The box of radius ``eps`` around ``x`` is ``max(0, x - eps) <= x' <= min(1, x + eps)``.
It is computed in float64; casting a corner to a narrower dtype must then round the
right way:

* outward (lower corner down, upper corner up) where the box must CONTAIN the float64
  box: bounds and proofs;
* inward (lower corner up, upper corner down) where every point must lie IN it:
  witnesses.

The Marabou workers run numpy only (no torch in forked processes), so ``clip_box`` and
the rounding functions accept numpy arrays as well as tensors and apply the same rule.
"""

from __future__ import annotations

import math
from typing import Literal, TypeVar

import numpy as np
import torch
from torch import Tensor

__all__ = ["eps_tensor", "round_up", "round_down", "clip_box", "input_box"]

Array = TypeVar("Array", Tensor, np.ndarray)


def eps_tensor(
    eps: float | Tensor, batch: int, device: torch.device | None = None
) -> Tensor:
    """Broadcast ``eps`` to a float64 tensor ``[B]`` and validate it.

    Args:
        eps: A radius, or one per input.
        batch: Number of inputs ``B``.
        device: Device of the result (default: that of ``eps``, or the CPU).

    Returns:
        ``[B]`` float64 radii.

    Raises:
        ValueError: Wrong number of values, or a radius that is not finite and > 0.
    """
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


def round_up(t64: Array, dtype: torch.dtype | str | np.dtype) -> Array:
    """Cast float64 values to ``dtype``, rounding up when the cast is inexact.

    Args:
        t64: float64 values, a tensor or a numpy array.
        dtype: The target dtype (a torch dtype for tensors, a numpy one for arrays).

    Returns:
        The smallest ``dtype`` values ``>= t64``, of the same kind as ``t64``.
    """
    if isinstance(t64, np.ndarray):
        t = t64.astype(dtype)
        return np.where(t < t64, np.nextafter(t, np.inf, dtype=t.dtype), t)
    t = t64.to(dtype)
    if dtype == torch.float64:
        return t
    up = torch.nextafter(t, torch.full_like(t, math.inf))
    return torch.where(t.to(torch.float64) < t64, up, t)


def round_down(t64: Array, dtype: torch.dtype | str | np.dtype) -> Array:
    """Cast float64 values to ``dtype``, rounding down when the cast is inexact.

    Args:
        t64: float64 values, a tensor or a numpy array.
        dtype: The target dtype (a torch dtype for tensors, a numpy one for arrays).

    Returns:
        The largest ``dtype`` values ``<= t64``, of the same kind as ``t64``.
    """
    if isinstance(t64, np.ndarray):
        t = t64.astype(dtype)
        return np.where(t > t64, np.nextafter(t, -np.inf, dtype=t.dtype), t)
    t = t64.to(dtype)
    if dtype == torch.float64:
        return t
    down = torch.nextafter(t, torch.full_like(t, -math.inf))
    return torch.where(t.to(torch.float64) > t64, down, t)


def clip_box(x64: Array, eps: float | Tensor) -> tuple[Array, Array]:
    """The exact float64 box ``[max(0, x - eps), min(1, x + eps)]``.

    Args:
        x64: float64 inputs, a tensor or a numpy array.
        eps: Radius (a float, or for tensors one that broadcasts against ``x64``).

    Returns:
        ``(lo, hi)`` like ``x64``.
    """
    if isinstance(x64, np.ndarray):
        return np.maximum(x64 - eps, 0.0), np.minimum(x64 + eps, 1.0)
    return (x64 - eps).clamp(min=0.0), (x64 + eps).clamp(max=1.0)


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
    e = eps_tensor(eps, x.shape[0], x.device).view(-1, *([1] * (x.dim() - 1)))
    lo64, hi64 = clip_box(x.to(torch.float64), e)
    if rounding == "exact":
        return lo64, hi64
    dtype = dtype or x.dtype
    if rounding == "outward":
        return round_down(lo64, dtype), round_up(hi64, dtype)
    if rounding == "inward":
        return round_up(lo64, dtype), round_down(hi64, dtype)
    raise ValueError(f"rounding must be outward, inward or exact, got {rounding!r}")
