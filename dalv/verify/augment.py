"""FV-Adv: counterexamples from a verifier as free training examples, and the methods using it.

Owns the augmenter ``FVAdv``, the strategy ``CertifiedRadius`` and the hooks
(``paper_compositions``, ``SERIALISABLE``) through which ``dalv.methods`` registers the
paper's FV-Adv methods. May import numpy, torch, ``dalv.strategies``, ``dalv.augment``,
``dalv.adversarial``, ``dalv.attacks``, ``dalv.train`` and ``dalv.verify.*``.

The paper's loop (spec §6.4), per queried point x with winner c1 and runner-up c2:
start at the radius ε0 + 0.05 (ε0 = the strategy's distance when it is ≤ 0.5, else 0.01),
seeded with the strategy's own adversarial example (which counts towards k); ask for
points x' in the clipped L∞ box where c2 beats c1 by 0.001 and which differ by ≥ 0.001 in
every coordinate from every earlier one; after each proof that no more exist, widen the
box by 0.05, up to 1. Every returned counterexample has been re-checked by an exact
float64 forward pass. All queried points of a cycle are searched together (batched).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from dalv.adversarial import DeepFoolDistance, FGSMDistance, Mixture
from dalv.attacks import min_fgsm_eps
from dalv.augment import AugmentedBatch, Augmenter, NoAugment
from dalv.strategies import BADGE, CoreSet, Random, ScoreStrategy, Selection
from dalv.verify.bab import LirpaConfig
from dalv.verify.bounds import certified_radius
from dalv.verify.search import fv_adv_counterexamples

__all__ = ["FVAdv", "CertifiedRadius", "paper_compositions", "SERIALISABLE"]


@dataclass(frozen=True)
class FVAdv(Augmenter):
    """Up to ``k`` verifier counterexamples per queried point (the paper's +FV-Adv).

    Args:
        k: examples per queried point, the strategy's own example included (paper: 10).
        backend: ``"lirpa"`` (batched branch and bound, GPU when the model is on one) or
            ``"marabou"`` (the paper's complete solver, in process).
        step: radius increment after each proof of "no more counterexamples" (0.05).
        eps_default: start radius when the strategy gives none or one above
            ``eps_reset_above`` (0.01 and 0.5 in the paper).
        eps_reset_above: see ``eps_default``.
        max_subdomains: per queried point, the subdomains branch and bound may bound
            over all its radii before that point stops as "unknown" (lirpa only). This
            plays the part of the paper's per-query Marabou timeout, but counts work
            instead of seconds, so a seed fixes the examples on any machine. On mnist5k
            the points the search cannot settle stall at the first radius whatever the
            budget; 1000 keeps a cycle to seconds (benchmarks/bench_fvadv_budget.py).
        timeout: seconds for the whole cycle's search (``None``: no limit), a safety net
            that should not fire: when it runs out, what was found so far is kept and the
            cycle goes on, but the result then depends on the machine's speed.
        target: ``"runner_up"`` (the paper) or ``"any"`` other class.
        separation: ``"every_coord"`` (the paper) or ``"any_coord"``.
        delta: exclusion distance per coordinate (0.001).
        margin: how much the other class must win by (0.001).
    """

    k: int = 10
    backend: str = "lirpa"
    step: float = 0.05
    eps_default: float = 0.01
    eps_reset_above: float = 0.5
    max_subdomains: int = 1000
    timeout: float | None = 120.0
    target: str = "runner_up"
    separation: str = "every_coord"
    delta: float = 1e-3
    margin: float = 1e-3

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.backend not in ("lirpa", "marabou"):
            raise ValueError(
                f"unknown backend {self.backend!r}; choose 'lirpa' or 'marabou'"
            )
        if not self.step > 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        if self.max_subdomains < 1:
            raise ValueError(f"max_subdomains must be >= 1, got {self.max_subdomains}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"FV-Adv({self.k})"

    def with_backend(self, backend: str) -> "FVAdv":
        """The same augmenter on another verifier backend."""
        return replace(self, backend=backend)

    def generate(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        source_idx: np.ndarray,
        hints: Selection | None = None,
        rng: np.random.Generator,
    ) -> AugmentedBatch:
        b = len(x)
        device = next(model.parameters()).device
        x = x.to(device)
        extras = dict(hints.extras) if hints is not None else {}
        eps0 = torch.full((b,), self.eps_default, dtype=torch.float64, device=device)
        if "eps" in extras:
            e = extras["eps"].to(device, torch.float64)
            eps0 = torch.where(e <= self.eps_reset_above, e, eps0)
        has_own = torch.zeros(b, dtype=torch.bool, device=device)
        if "x_adv" in extras:
            has_own = (
                extras.get("has_adv", extras.get("adv_ok", has_own)).to(device).bool()
            )
        x_own = extras["x_adv"].to(device) if "x_adv" in extras else x
        empty = x.new_empty(0, *x.shape[1:])
        seeds = [x_own[i : i + 1] if has_own[i] else empty for i in range(b)]
        results = fv_adv_counterexamples(
            model,
            x,
            eps0,
            self.k,
            seeds=seeds,
            step=self.step,
            backend=self.backend,
            timeout=self.timeout,
            target=self.target,
            separation=self.separation,
            delta=self.delta,
            margin=self.margin,
            seed=int(rng.integers(2**31)),
            **(
                {"config": LirpaConfig(max_bounded_per_input=self.max_subdomains)}
                if self.backend == "lirpa"
                else {}
            ),
        )
        xs, src, ys = [], [], []
        for i, res in enumerate(results):
            block = res.counterexamples[: self.k - int(has_own[i])]
            if has_own[i]:
                block = torch.cat([x_own[i : i + 1], block])
            xs.append(block)
            ys.append(y[i].repeat(len(block)))
            src.append(np.full(len(block), source_idx[i], dtype=np.int64))
        n_own = int(has_own.sum())
        n_new = sum(len(r.counterexamples) for r in results)
        stats = {
            "requested": float(b * self.k),
            "found": float(n_own + n_new),
            "own": float(n_own),
            "fv": float(n_new),
            "sat": float(sum(r.status == "sat" for r in results)),
            "unsat": float(sum(r.status == "unsat" for r in results)),
            "unknown": float(sum(r.status == "unknown" for r in results)),
            "timeouts": float(sum(r.stats.timed_out for r in results)),
            "calls": float(sum(r.stats.calls for r in results)),
            "rejected": float(sum(r.stats.rejected for r in results)),
        }
        return AugmentedBatch(
            torch.cat(xs) if xs else empty,
            torch.cat(ys) if ys else y.new_empty(0),
            np.concatenate(src) if src else np.empty(0, dtype=np.int64),
            stats,
        )


@dataclass(frozen=True)
class CertifiedRadius(ScoreStrategy):
    """Smallest CROWN-certified L∞ radius first (beyond the paper).

    The certified radius r_cert is a proof: no input within r_cert of x changes the class.
    The minimal FGSM radius r_atk is a witness: one at r_atk does. The true distance to the
    boundary lies in [r_cert, r_atk]; both are returned as by-products (``"eps"`` = r_cert,
    ``"r_atk"`` with its FGSM example ``"x_adv"``), so FV-Adv starts its search at r_cert
    and spends no time on boxes already proved empty.

    Args:
        candidates: rows scored per cycle (``None`` = every unlabelled row).
        method: bound method of the certification (``"CROWN"`` or ``"IBP"``).
        tol: bisection tolerance of the certified radius.
    """

    name: ClassVar[str] = "CertifiedRadius"
    method: str = "CROWN"
    tol: float = 1e-3

    def score(
        self, model: nn.Module, x: Tensor
    ) -> tuple[np.ndarray, dict[str, Tensor]]:
        device = next(model.parameters()).device
        x = x.to(device)
        r_cert = certified_radius(model, x, method=self.method, tol=self.tol)
        eps, x_adv, flipped = min_fgsm_eps(model, x)
        extras = {
            "eps": r_cert,
            "r_atk": eps,
            "x_adv": x_adv,
            "adv_ok": flipped,
            "has_adv": flipped,
        }
        return -r_cert.double().cpu().numpy(), extras


def paper_compositions(k: int = 10) -> dict[str, tuple]:
    """The paper's FV-Adv methods (spec §6.6) plus the certified-radius extension."""
    fv = FVAdv(k=k)
    return {
        "FVAAL": (FGSMDistance(), fv),
        f"DFAL+FV-Adv({k})": (DeepFoolDistance(), fv),
        f"BADGE+FV-Adv({k})": (BADGE(), fv),
        f"Random+FV-Adv({k})": (Random(), fv),
        f"Core-set+FV-Adv({k})": (CoreSet(), fv),
        f"FVAAL_rand+FV-Adv({k})": (Mixture(), fv),
        f"CertifiedRadius+FV-Adv({k})": (CertifiedRadius(), fv),
        "CertifiedRadius-No-Adv": (CertifiedRadius(), NoAugment()),
    }


SERIALISABLE = (FVAdv, CertifiedRadius)
