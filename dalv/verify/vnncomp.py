"""One VNN-COMP instance (an ONNX network and a VNN-LIB property) answered by a dalv
backend, and the competition's result file.

Owns: ``InstanceResult``, ``make_verifier``, ``query_of``, ``verify_instance``,
``write_result`` and ``read_result``; may import: torch, numpy, the standard library,
``dalv.verify.*``.

dalv's backends answer "is there an ``x'`` in ``[max(0, x - eps), min(1, x + eps)]``,
separated from the excluded points, where a rival beats the winner ``c1`` of ``x`` by
the margin?" (``Verifier.find``). A VNN-LIB local-robustness query (``VnnProperty``) is
mapped onto that question soundly:

* the box: ``x`` and ``eps`` are chosen so that dalv's box CONTAINS the file's box and
  exceeds it by at most ``BOX_SLACK`` per side (a file's decimals are rounded, so the
  two rarely coincide bit for bit); a box that is not a clipped L∞ box (widths that
  differ by more than that) is refused with a line saying so. UNSAT on the larger box
  is UNSAT on the file's.
* the exclusions: dalv's excluded open intervals lie INSIDE the file's (their radius is
  shrunk by a relative ``1e-9``), so dalv's search space contains the file's.
* the output: the file's class ``c`` must be the network's top class at ``x`` (else the
  centre is tested as a counterexample: where ``c`` does not win, it is one unless the
  margin forbids); rivals = every other class map to ``target="any"``, the runner-up
  alone to ``target="runner_up"``, any other set to ``"any"`` (a superset).
* every counterexample is clipped into the file's box (and a coordinate inside the
  sliver between dalv's and the file's excluded intervals moved to the file's face)
  and re-checked against the FILE's assertions (``VnnProperty.holds_at``) on a float64
  forward pass; one that fails makes the answer "unknown", never "sat".

The time limit is a wall clock (VNN-COMP's semantics, ``Budget(seconds=...)``): an
answer it cut is "timeout", and says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dalv.verify.box import clip_box
from dalv.verify.network import forward64
from dalv.verify.property import Property, winner_runner_up
from dalv.verify.verifier import Budget, Verifier
from dalv.verify.vnnlib import VnnlibError, VnnProperty, format_number

__all__ = [
    "BOX_SLACK",
    "VERIFIERS",
    "InstanceResult",
    "make_verifier",
    "query_of",
    "verify_instance",
    "write_result",
    "read_result",
]

BOX_SLACK = 1e-6
"""How far dalv's box may exceed a file's box per side (files round to 8 decimals)."""

VERIFIERS = ("milp", "marabou", "lirpa")


@dataclass(frozen=True)
class InstanceResult:
    """dalv's answer to one instance.

    Attributes:
        status: ``"sat"``, ``"unsat"``, ``"timeout"`` (the wall clock cut the search)
            or ``"unknown"`` (nothing proved or found within the backend's limits).
        seconds: Wall-clock seconds of the answer (loading excluded).
        x: The counterexample (``[n_inputs]`` float64) for "sat", else ``None``.
        y: Its outputs on a float64 forward pass, else ``None``.
        note: Why, in one line (e.g. which check rejected a witness).
    """

    status: str
    seconds: float
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    note: str = ""


def make_verifier(name: str) -> Verifier:
    """A backend by name, configured for single instances: ``milp`` without a node
    limit (complete up to the clock), ``marabou`` with one worker, ``lirpa``."""
    from dalv.verify.bab import LirpaVerifier
    from dalv.verify.marabou import MarabouVerifier
    from dalv.verify.milp import MilpVerifier

    if name == "milp":
        return MilpVerifier(node_limit=None)
    if name == "marabou":
        return MarabouVerifier(workers=1)
    if name == "lirpa":
        return LirpaVerifier()
    raise ValueError(f"verifier must be one of {VERIFIERS}, got {name!r}")


def _box_center(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, float]:
    """``(x, eps)`` whose clipped box contains ``[lo, hi]``, tightly.

    Raises:
        VnnlibError: The box is not a clipped L∞ box in ``[0, 1]``.
    """
    if bool((lo < 0).any()) or bool((hi > 1).any()):
        raise VnnlibError(
            f"the input box leaves [0, 1] (min {lo.min():g}, max {hi.max():g}); "
            "dalv's boxes are clipped to [0, 1]"
        )
    low, high = lo <= 0, hi >= 1
    inner = ~low & ~high
    half = (hi - lo) / 2
    if inner.any():
        eps = float(half[inner].max())
    else:  # every coordinate touches 0 or 1: any radius the clipped ends allow
        need = np.where(low & ~high, hi / 2, np.where(high & ~low, (1 - lo) / 2, 0.5))
        eps = float(need.max())
    if not eps > 0:
        raise VnnlibError("the input box has zero width: nothing to search")
    x = np.where(low & ~high, hi - eps, np.where(high & ~low, lo + eps, (lo + hi) / 2))
    x = np.where(low & high, 0.5, x).clip(0.0, 1.0)
    for _ in range(64):  # widen by ulps until the box contains the file's
        blo, bhi = clip_box(x, eps)
        if bool((blo <= lo).all() and (bhi >= hi).all()):
            break
        eps = math.nextafter(eps, math.inf) + eps * 2**-50
    excess = max(float((lo - blo).max()), float((bhi - hi).max()))
    if excess > BOX_SLACK or not bool((blo <= lo).all() and (bhi >= hi).all()):
        w = 2 * half[inner] if inner.any() else 2 * half
        raise VnnlibError(
            "the input box is not a clipped L∞ box around one point (widths from "
            f"{w.min():.9g} to {w.max():.9g}); dalv's verifiers search such boxes only"
        )
    return x, eps


def query_of(
    prop: VnnProperty, model: nn.Module
) -> tuple[np.ndarray, float, Property, np.ndarray, int, int]:
    """dalv's question for a VNN-LIB query: ``(x, eps, prop, exclude, c1, c2)``.

    ``c1``/``c2`` are the network's winner and runner-up at ``x``; the caller checks
    that ``c1`` is the file's class (see ``verify_instance``).

    Raises:
        VnnlibError: The box or the exclusions are outside what dalv can ask.
    """
    x, eps = _box_center(prop.lo, prop.hi)
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None].to(dtype))
    c1, c2 = (int(v[0]) for v in winner_runner_up(logits))
    n = logits.shape[-1]
    target = "any"
    if prop.rivals == (c2,) and c1 == prop.target:
        target = "runner_up"
    delta, exclude = 1e-3, np.zeros((0, x.size))
    if prop.n_excluded:
        a = (prop.exclude_lo + prop.exclude_hi) / 2
        rad = np.minimum(a - prop.exclude_lo, prop.exclude_hi - a)
        delta = float(rad.min()) * (1 - 1e-9)
        if not delta > 0 or float(rad.max()) > delta * (1 + 1e-6):
            raise VnnlibError(
                f"exclusion radii range from {rad.min():.9g} to {rad.max():.9g}; "
                "dalv's Property excludes one radius delta per point and coordinate"
            )
        exclude = a
    p = Property(target, prop.separation, delta, prop.margin)
    if n != prop.n_outputs:
        raise VnnlibError(
            f"the property declares {prop.n_outputs} outputs, the network has {n}"
        )
    return x, eps, p, exclude, c1, c2


def verify_instance(
    model: nn.Module,
    prop: VnnProperty,
    verifier: Verifier | str = "milp",
    *,
    timeout: float | None = None,
    seed: int = 0,
) -> InstanceResult:
    """Answer one VNN-LIB query on a network (see the module docstring).

    Args:
        model: A Flatten/Linear/ReLU network (e.g. ``load_onnx(...).model``).
        prop: The query (``read_vnnlib``).
        verifier: A backend or its name (``milp``, ``marabou``, ``lirpa``).
        timeout: Wall-clock seconds (``None``: none); an answer it cut is "timeout".
        seed: Seed of the backend's randomness.

    Raises:
        VnnlibError: The query does not fit the network or dalv's question.
    """
    t0 = time.perf_counter()
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    if first.in_features != prop.n_inputs:
        raise VnnlibError(
            f"the property declares {prop.n_inputs} inputs, the network takes "
            f"{first.in_features}"
        )
    x, eps, p, exclude, c1, _ = query_of(prop, model)

    def check(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pts = _snap(np.asarray(points, np.float64), prop)
        with torch.no_grad():
            ys = forward64(model, torch.from_numpy(pts)).numpy()
        return pts, ys, prop.holds_at(pts, ys)

    pts, ys, ok = check(x[None])  # the centre first: a free counterexample?
    if ok[0]:
        return InstanceResult(
            "sat", time.perf_counter() - t0, pts[0], ys[0], "the box centre"
        )
    if c1 != prop.target:
        return InstanceResult(
            "unknown",
            time.perf_counter() - t0,
            note=f"class {prop.target} is not the top class ({c1}) at the box centre, "
            "and the centre is no counterexample (margin); dalv asks about the top "
            "class",
        )
    backend = make_verifier(verifier) if isinstance(verifier, str) else verifier
    dtype = first.weight.dtype
    budget = Budget(seconds=timeout) if timeout else Budget()
    res = backend.find(
        model,
        torch.from_numpy(x).to(dtype),
        eps,
        1,
        exclude=torch.from_numpy(exclude).to(dtype),
        prop=p,
        budget=budget,
        seed=seed,
    )
    seconds = time.perf_counter() - t0
    if res.status == "sat":
        cand = res.counterexamples.reshape(len(res.counterexamples), -1)
        pts, ys, ok = check(cand.to(torch.float64).cpu().numpy())
        if ok.any():
            i = int(np.flatnonzero(ok)[0])
            return InstanceResult("sat", seconds, pts[i], ys[i], f"{backend.name}")
        return InstanceResult(
            "unknown",
            seconds,
            note=f"{backend.name}'s counterexample fails the file's own assertions "
            "(float64 re-check) and was dropped",
        )
    if res.status == "unsat":
        return InstanceResult("unsat", seconds, note=f"{backend.name}: proved")
    if res.stats.timed_out or (timeout and seconds >= timeout):
        return InstanceResult(
            "timeout", seconds, note=f"the {timeout:g} s wall clock cut the search"
        )
    return InstanceResult("unknown", seconds, note=f"{backend.name}: limits reached")


def _snap(pts: np.ndarray, prop: VnnProperty) -> np.ndarray:
    """Move points by at most dalv's slack onto the file's region: clip into the box,
    and (every_coord) push a coordinate that lies inside a file's excluded interval
    but outside dalv's slightly narrower one to the interval's nearer end. The caller
    re-checks the moved points against every assertion of the file."""
    pts = np.clip(pts, prop.lo, prop.hi)
    if prop.n_excluded and prop.separation == "every_coord":
        for lo_k, hi_k in zip(prop.exclude_lo, prop.exclude_hi, strict=True):
            inside = (pts > lo_k) & (pts < hi_k)
            near_lo = (pts - lo_k) <= (hi_k - pts)
            tiny = np.minimum(pts - lo_k, hi_k - pts) <= 1e-9 * (hi_k - lo_k)
            fix = inside & tiny
            pts = np.where(fix & near_lo, lo_k, np.where(fix, hi_k, pts))
        pts = np.clip(pts, prop.lo, prop.hi)
    return pts


def write_result(path, result: InstanceResult) -> None:
    """The VNN-COMP result file: the status line, then for "sat" the counterexample as
    ``((X_i value) ... (Y_j value))``, numbers that read back to the same float64."""
    lines = [result.status]
    if result.status == "sat":
        assert result.x is not None and result.y is not None
        pairs = [f"(X_{i} {format_number(v)})" for i, v in enumerate(result.x)]
        pairs += [f"(Y_{j} {format_number(v)})" for j, v in enumerate(result.y)]
        lines.append("(" + "\n ".join(pairs) + ")")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def read_result(path) -> tuple[str, dict[str, float]]:
    """A VNN-COMP result file back: its status and the ``X_i``/``Y_j`` values."""
    import re

    text = open(path).read()
    status = text.split(None, 1)[0] if text.strip() else ""
    values = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"\(\s*([XY]_\d+)\s+([^\s()]+)\s*\)", text)
    }
    return status, values
