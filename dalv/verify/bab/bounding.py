"""Lower bounds of the property margins on a batch of subdomains.

Owns: ``Bounds`` (the bounds of a batch, with what branching needs) and ``Bounder``:
pure-torch CROWN in float64 for Flatten/Linear/ReLU networks, plus beta multipliers for
fixed first-layer ReLU phases, and auto_LiRPA CROWN (on a float64 twin of the model) for
networks with Conv2d; may import: torch, the standard library,
``dalv.verify.{crown, lirpa, compat, network}``, ``dalv.verify.bab.state`` (auto_LiRPA
only through ``compat.import_auto_lirpa``, for Conv2d networks).

Every bound is computed in float64 and comes with its rounding allowance
(``dalv.verify.crown.RoundingAllowance``: relative to the magnitudes of the
activations, not to the bound), which a proof must clear.

A subdomain is a box plus, optionally, fixed phases of first-layer ReLUs. Since
``z_j = W_j x + b_j`` is linear in ``x``, each phase ``s_j z_j >= 0`` is a half-space;
the bound uses it through a Lagrange multiplier ``beta_j >= 0``, as beta-CROWN does:
``min over the box of A x + c - sum_j beta_j s_j z_j(x)`` is a valid lower bound for
every ``beta >= 0`` and is maximised over ``beta`` by projected Adam. With every
first-layer ReLU fixed, a one-hidden-layer network is linear on the subdomain and the
optimal ``beta`` makes the bound the exact LP value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dalv.verify.bab.state import SearchState
from dalv.verify.compat import import_auto_lirpa
from dalv.verify.crown import (
    LinearBound,
    RoundingAllowance,
    concretize_lower,
    crown_linear_lower,
)
from dalv.verify.lirpa import bounded_module, float64_twin
from dalv.verify.network import AffineLayer, affine_relu_layers

__all__ = ["Bounds", "Bounder"]

# Step size of the Adam ascent on the Lagrange multipliers of ReLU phase splits.
_BETA_LR = 0.5


@dataclass(frozen=True)
class Bounds:
    """Bounds of a batch of subdomains (all float64).

    Attributes:
        lower: ``[m, S]`` lower bounds of the margins.
        A: ``[m, S, d]`` input coefficients of the (beta-adjusted) linear bound.
        hidden: ``[m, S, h]`` coefficients on the first ReLU layer (``None`` for
            auto_LiRPA bounds or a network without hidden layer).
        pre_lo, pre_hi: ``[m, h]`` first-layer pre-activation bounds (or ``None``).
        slack: ``[m, S]`` how far rounding can have moved each bound: a proof needs
            ``lower > -margin + slack``.
    """

    lower: Tensor
    A: Tensor
    hidden: Tensor | None
    pre_lo: Tensor | None
    pre_hi: Tensor | None
    slack: Tensor

    def select(self, mask: Tensor) -> Bounds:
        opt = (self.hidden, self.pre_lo, self.pre_hi)
        pick = [None if t is None else t[mask] for t in opt]
        return Bounds(self.lower[mask], self.A[mask], *pick, self.slack[mask])

    @staticmethod
    def cat(parts: list[Bounds]) -> Bounds:
        def join(name: str) -> Tensor | None:
            first = getattr(parts[0], name)
            if first is None:
                return None
            return torch.cat([getattr(p, name) for p in parts])

        names = ("lower", "A", "hidden", "pre_lo", "pre_hi", "slack")
        joined = [join(n) for n in names]
        return Bounds(*joined)  # type: ignore[arg-type]


class Bounder:
    """Bounds the margins of a batch of subdomains (see the module docstring).

    Args:
        state: The search's shared state (model, specification matrices, shapes).
        layers: The network's affine/ReLU layers in float64 with the leading affine
            layers folded (``network.fold_leading_affine``: a ReLU follows
            ``layers[0]`` unless there is one layer), or ``None`` for a network with
            Conv2d (bounded by auto_LiRPA, input splitting only).
        beta_steps: Adam steps on the Lagrange multipliers of ReLU phase splits.
    """

    def __init__(
        self, state: SearchState, layers: list[AffineLayer] | None, beta_steps: int
    ) -> None:
        self.state, self.layers, self.beta_steps = state, layers, beta_steps
        # Rounding allowances. Every box lies in [0, 1]^d, so the absolute network at
        # the all-ones input bounds the magnitudes of every subdomain's computation.
        self.allowance = RoundingAllowance(state.model, state.shape, torch.float64)
        ones = torch.ones(1, state.d, dtype=torch.float64, device=state.device)
        self._mag = self.allowance.magnitude(ones, ones)[0]  # [n_classes]
        self._first_mag = None  # the first ReLU layer's pre-activations, [h]
        if layers is not None and layers[0].relu:
            # layers[0] folds the model's affine layers up to its first ReLU
            relus = [a.relu for a in affine_relu_layers(state.model)]
            upto = relus.index(True) + 1
            self._first_mag = self.allowance.magnitude(ones, ones, upto=upto)[0]

    def _slack(self, C: Tensor, extra: Tensor | None = None) -> Tensor:
        """Rounding allowance ``[m, S]`` of bounds ``C f`` (plus ``extra``)."""
        mag = C.double().abs() @ self._mag
        return self.allowance.tolerance(mag if extra is None else mag + extra)

    def __call__(self, lo: Tensor, hi: Tensor, own: Tensor, phase: Tensor) -> Bounds:
        """CROWN (plus beta for ReLU phases) lower bounds of a batch of subdomains.

        Shapes:
            lo, hi: ``[m, d]``; own: ``[m]``; phase: ``[m, h]`` -> ``Bounds`` of ``m``.
        """
        if self.layers is None:
            return self._bound_lirpa(lo, hi, own)
        # Chunks keep back-substitution tensors [chunk, rows, d] near 2**24 floats.
        hidden = [2 * layer.weight.shape[0] for layer in self.layers[1:-1]]
        widest = max([self.state.C.shape[1], *hidden])
        chunk = max(1, 2**24 // (widest * self.state.d))
        lo, hi = lo.double(), hi.double()
        parts = []
        for s in range(0, lo.shape[0], chunk):
            sl = slice(s, s + chunk)
            parts.append(self._bound_affine(lo[sl], hi[sl], own[sl], phase[sl]))
        return Bounds.cat(parts)

    def _bound_affine(
        self, lo: Tensor, hi: Tensor, own: Tensor, phase: Tensor
    ) -> Bounds:
        layers = self.layers
        assert layers is not None
        split = phase.double() if phase.shape[1] else None
        C = self.state.C64[own]
        res = crown_linear_lower(layers, lo, hi, C, split)
        lower, A, extra = res.lower, res.A, None
        if split is not None and bool((split != 0).any()):
            lower, A, extra = self._optimise_beta(res, lo, hi, split)
        slack = self._slack(C, extra)
        pre_lo, pre_hi = res.pre if res.pre is not None else (None, None)
        if pre_lo is not None:  # a phase the box cannot take: an empty subdomain
            # (only when the bounds cross by more than their rounding allowance)
            assert self._first_mag is not None
            tol = self.allowance.tolerance(self._first_mag)
            empty = (pre_lo > pre_hi + tol).any(1)
            lower = torch.where(empty[:, None], math.inf, lower)
        return Bounds(lower, A, res.hidden, pre_lo, pre_hi, slack)

    def _optimise_beta(
        self, res: LinearBound, lo: Tensor, hi: Tensor, split: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Maximise ``min_box A x + c - sum_j beta_j s_j z_j(x)`` over ``beta >= 0``.

        ``s_j z_j(x) >= 0`` holds on the subdomain for every split ReLU ``j``, so every
        ``beta >= 0`` gives a valid lower bound. The ascent runs in float32 (it only
        has to find a good ``beta``); the bound at the best ``beta`` is then evaluated
        once more in float64, and the larger of it and the plain CROWN bound is kept.

        Returns:
            ``(lower, A, extra)``: the bound, its input coefficients, and ``[m, S]``
            magnitudes of the beta terms (for the rounding allowance).
        """
        assert self.layers is not None
        f32 = torch.float32
        w1, b1 = self.layers[0].weight.to(f32), self.layers[0].bias.to(f32)
        a0, c0 = res.A.to(f32), res.c.to(f32)
        lo3, hi3 = lo.to(f32)[:, None, :], hi.to(f32)[:, None, :]
        s = split.to(f32)[:, None, :]
        beta = torch.zeros(*res.A.shape[:2], split.shape[1], dtype=f32).to(lo.device)
        m1, m2 = torch.zeros_like(beta), torch.zeros_like(beta)
        best, best_beta = torch.full_like(c0, -math.inf), beta
        for t in range(1, self.beta_steps + 1):
            # Projected Adam ascent, written out. The bound is min over the box of a
            # linear function, so its gradient in beta_j is -s_j z_j(x*) at the
            # minimising corner x*.
            bs = beta * s
            A = a0 - bs @ w1
            corner = torch.where(A > 0, lo3, hi3)  # [m, S, d]
            lower = (A * corner).sum(-1) + c0 - bs @ b1
            better = lower > best
            best = torch.where(better, lower, best)
            best_beta = torch.where(better[..., None], beta, best_beta)
            grad = -s * (corner @ w1.T + b1)
            m1 = 0.9 * m1 + 0.1 * grad
            m2 = 0.999 * m2 + 0.001 * grad**2
            step = (m1 / (1 - 0.9**t)) / ((m2 / (1 - 0.999**t)).sqrt() + 1e-12)
            beta = (beta + _BETA_LR * step).clamp(min=0)
        layer = self.layers[0]
        bs = best_beta.double() * split[:, None, :]
        A = res.A - bs @ layer.weight
        lower = concretize_lower(A, res.c - bs @ layer.bias, lo, hi)
        better = lower > res.lower
        best_A = torch.where(better[..., None], A, res.A)
        assert self._first_mag is not None
        extra = bs.abs() @ self._first_mag
        return torch.where(better, lower, res.lower), best_A, extra

    def _bound_lirpa(self, lo: Tensor, hi: Tensor, own: Tensor) -> Bounds:
        """auto_LiRPA CROWN for networks with Conv2d (input splitting only).

        The bound is computed on a float64 twin of the model (``lirpa.float64_twin``),
        so its rounding error is that of float64 arithmetic, which the allowance
        bounds for the magnitudes involved.
        """
        st = self.state
        lirpa = import_auto_lirpa()
        twin = float64_twin(st.model)
        bm = bounded_module(twin, st.shape, st.device)
        lo_t = lo.double().view(-1, *st.shape)
        hi_t = hi.double().view(-1, *st.shape)
        ptb = lirpa.PerturbationLpNorm(norm=math.inf, x_L=lo_t, x_U=hi_t)
        out, inp = bm.output_name[0], bm.input_name[0]
        C = st.C64[own]
        with torch.no_grad():
            lb, _, A = bm.compute_bounds(
                x=(lirpa.BoundedTensor((lo_t + hi_t) / 2, ptb),),
                C=C,
                method="CROWN",
                bound_upper=False,
                return_A=True,
                needed_A_dict={out: [inp]},
            )
        coeff = A[out][inp]["lA"].reshape(lo.shape[0], st.C.shape[1], st.d)
        lower, coeff = lb.detach().double(), coeff.detach().double()
        return Bounds(lower, coeff, None, None, None, self._slack(C))
