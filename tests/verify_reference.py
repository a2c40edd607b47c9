"""An exact reference for the verification property on tiny networks (tests only).

A second encoding of the question ``dalv.verify`` answers, written without any of its
code: for a Flatten/Linear/ReLU network (consecutive Linear layers allowed) with an
input of dimension 1-3 and about ten hidden ReLUs in all, it decides exactly whether
the box minus the exclusions holds a point ``x'`` with
``min_t (f_c1(x') - f_t(x')) <= -margin`` (``t`` over the rivals), with a witness.

How:

1. **Exclusions to boxes.** The feasible set (box minus exclusions) is a finite union
   of closed boxes. ``every_coord``: per coordinate, the interval minus the open slabs
   ``(a_i - delta, a_i + delta)`` is a union of intervals, and the set is their
   product. ``any_coord``: each excluded point needs one of ``2 d`` half-spaces
   ``x_i <= a_i - delta`` / ``x_i >= a_i + delta``; every choice of one side per point
   intersected with the box is a box (the side of every exclusion disjunction).
2. **Activation patterns.** Within a box, a depth-first enumeration fixes the ReLUs one
   by one, layer by layer (a neuron's pre-activation is affine in ``x`` once the
   earlier phases are fixed). A phase the box rules out by interval arithmetic is not
   branched on; otherwise each side is kept when a known point of the region lies on it
   or when HiGHS (through highspy, else ``scipy.optimize.linprog``) finds the region
   with that side non-empty. Each leaf is a polytope on which the network is affine.
3. **LPs.** On each polytope, one LP per rival minimises the (affine) margin. The
   minimum over all polytopes and boxes is the exact minimum of the margin over the
   feasible set. Every LP solution is clipped into its box and evaluated by this
   module's own float64 forward pass, so a witness is certified by the network itself,
   not by the LP.

Tolerances: ``decide`` answers "sat" only with a certified witness whose margin is at
most ``-margin - tol`` and that keeps ``delta + tol_x`` away from every excluded point
(a robust counterexample: no 1-ulp or solver-tolerance argument can make it wrong);
"unsat" only when the minimum over the set with exclusions *loosened* by ``tol_x`` is
above ``-margin + tol`` (an LP's rounding cannot flip that); and "ambiguous" for
queries whose answer lies within these bands of the boundary (a verifier may answer
either way there; its witnesses are still checked exactly).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linprog
from torch import nn

Layers = list[tuple[np.ndarray, np.ndarray, bool]]

_LP_OPTIONS = {
    "primal_feasibility_tolerance": 1e-10,
    "dual_feasibility_tolerance": 1e-10,
}


def layers_of(model: nn.Module) -> Layers:
    """``(W, b, relu)`` per Linear layer, float64 (own extraction: no dalv code)."""
    mods = []

    def walk(m: nn.Module) -> None:
        for c in m.children():
            if isinstance(c, nn.Sequential):
                walk(c)
            else:
                mods.append(c)

    walk(model)
    out: Layers = []
    for m in mods:
        if isinstance(m, nn.Linear):
            w = m.weight.detach().double().cpu().numpy()
            b = np.zeros(w.shape[0])
            if m.bias is not None:
                b = m.bias.detach().double().cpu().numpy()
            out.append((w, b, False))
        elif isinstance(m, nn.ReLU):
            w, b, _ = out[-1]
            out[-1] = (w, b, True)
        elif not isinstance(m, nn.Flatten):
            raise ValueError(f"the reference does not handle {type(m).__name__}")
    return out


def forward(layers: Layers, x: np.ndarray) -> np.ndarray:
    """Float64 logits ``[m, n_classes]`` of points ``[m, d]``."""
    h = np.asarray(x, dtype=np.float64)
    for w, b, relu in layers:
        h = h @ w.T + b
        if relu:
            h = np.maximum(h, 0.0)
    return h


def abs_scale(layers: Layers) -> float:
    """The absolute network's largest output on inputs of magnitude 1 (a scale)."""
    m = np.ones(layers[0][0].shape[1])
    for w, b, _ in layers:
        m = np.abs(w) @ m + np.abs(b)
    return float(m.max())


@dataclass(frozen=True)
class Query:
    """The question for one input (the property of ``dalv.verify.Property``)."""

    layers: Layers
    lo: np.ndarray  # the exact box
    hi: np.ndarray
    c1: int
    rivals: tuple[int, ...]
    exclude: np.ndarray  # [n, d]
    separation: str = "every_coord"
    delta: float = 1e-3
    margin: float = 1e-3

    def margins(self, x: np.ndarray) -> np.ndarray:
        """The property margin ``min_t f_c1 - f_t`` of points ``[m, d]``."""
        z = forward(self.layers, x)
        return np.min(z[:, [self.c1]] - z[:, list(self.rivals)], axis=1)


def query_for(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    c1: int,
    c2: int,
    exclude: torch.Tensor,
    *,
    target: str = "runner_up",
    separation: str = "every_coord",
    delta: float = 1e-3,
    margin: float = 1e-3,
) -> Query:
    """The reference's ``Query`` for one search (box from the exact input)."""
    layers = layers_of(model)
    x64 = x.detach().double().flatten().cpu().numpy()
    lo, hi = np.maximum(x64 - eps, 0.0), np.minimum(x64 + eps, 1.0)
    n = layers[-1][0].shape[0]
    rivals = (c2,) if target == "runner_up" else tuple(j for j in range(n) if j != c1)
    ex = exclude.detach().double().reshape(-1, x64.size).cpu().numpy()
    return Query(layers, lo, hi, c1, rivals, ex, separation, delta, margin)


# ------------------------------------------------------------------ feasible boxes


def feasible_boxes(
    lo: np.ndarray, hi: np.ndarray, exclude: np.ndarray, separation: str, delta: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Closed boxes whose union is ``[lo, hi]`` minus the exclusions (real numbers)."""
    if separation == "every_coord":
        per_coord = []
        for i in range(lo.size):
            pieces = [(lo[i], hi[i])]
            for a in exclude[:, i]:
                nxt = []
                for p, q in pieces:  # [p, q] minus (a - delta, a + delta)
                    if a + delta <= p or a - delta >= q:
                        nxt.append((p, q))
                        continue
                    if a - delta >= p:
                        nxt.append((p, a - delta))
                    if a + delta <= q:
                        nxt.append((a + delta, q))
                pieces = nxt
            if not pieces:
                return []
            per_coord.append(pieces)
        return [
            (np.array([p for p, _ in c]), np.array([q for _, q in c]))
            for c in itertools.product(*per_coord)
        ]
    boxes = [(lo.copy(), hi.copy())]
    for a in exclude:
        nxt = []
        for b_lo, b_hi in boxes:
            if np.any(b_hi <= a - delta) or np.any(b_lo >= a + delta):
                nxt.append((b_lo, b_hi))  # wholly outside the ball already
                continue
            for i in range(lo.size):
                if a[i] - delta >= b_lo[i]:
                    n_hi = b_hi.copy()
                    n_hi[i] = min(b_hi[i], a[i] - delta)
                    nxt.append((b_lo.copy(), n_hi))
                if a[i] + delta <= b_hi[i]:
                    n_lo = b_lo.copy()
                    n_lo[i] = max(b_lo[i], a[i] + delta)
                    nxt.append((n_lo, b_hi.copy()))
        boxes = _drop_contained(nxt)
    return boxes


def _drop_contained(boxes):
    keep = []
    for i, (lo, hi) in enumerate(boxes):
        inside = any(
            j != i
            and np.all(lo2 <= lo)
            and np.all(hi2 >= hi)
            and (j < i or not (np.all(lo2 == lo) and np.all(hi2 == hi)))
            for j, (lo2, hi2) in enumerate(boxes)
        )
        if not inside:
            keep.append((lo, hi))
    return keep


# ------------------------------------------------------------------ regions


@dataclass
class Region:
    """A polytope ``G x <= h`` within a box, on which the logits are ``M x + c``."""

    lo: np.ndarray
    hi: np.ndarray
    G: np.ndarray
    h: np.ndarray
    M: np.ndarray
    c: np.ndarray
    point: np.ndarray  # a point of the region


@dataclass
class Counter:
    lps: int = 0
    regions: int = 0
    boxes: int = 0


def _lp(cost, G, h, lo, hi, counter: Counter):
    """min cost . x on ``G x <= h``, ``lo <= x <= hi``; ``None`` if infeasible."""
    counter.lps += 1
    if _HIGHS is not None:
        return _highs_lp(np.asarray(cost, float), np.asarray(G, float), h, lo, hi)
    res = linprog(
        cost,
        A_ub=G if len(G) else None,
        b_ub=h if len(h) else None,
        bounds=list(zip(lo, hi, strict=True)),
        method="highs",
        options=_LP_OPTIONS,
    )
    if res.status == 2:
        return None
    if res.status != 0:
        raise RuntimeError(f"linprog failed: {res.message}")
    return np.clip(res.x, lo, hi), float(res.fun)


def _make_highs():
    """One reusable HiGHS instance (highspy), or ``None`` without highspy: the solver
    ``linprog(method="highs")`` wraps (SciPy bundles its own copy), without its
    per-call set-up (the sweeps solve tens of thousands of tiny LPs)."""
    try:
        import highspy  # noqa: PLC0415
    except ImportError:  # pragma: no cover - SciPy's HiGHS then
        return None
    solver = getattr(highspy, "_Highs", highspy.Highs)()  # no banner
    # threads=1 as dalv's own HiGHS: HiGHS keeps one thread pool per process and
    # refuses to run an instance whose count differs from the first one's.
    for k, v in {**_LP_OPTIONS, "output_flag": False, "threads": 1}.items():
        solver.setOptionValue(k, v)
    return solver


_HIGHS = _make_highs()


def _highs_lp(cost, G, h, lo, hi):
    import highspy  # noqa: PLC0415

    solver = _HIGHS
    solver.clearModel()
    lp = highspy.HighsLp()
    m, d = (G.shape[0], cost.size) if G.size else (0, cost.size)
    lp.num_col_, lp.num_row_ = d, m
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, lo, hi
    lp.row_lower_ = np.full(m, -highspy.kHighsInf)
    lp.row_upper_ = np.asarray(h, float)
    a = lp.a_matrix_
    a.format_ = highspy.MatrixFormat.kRowwise
    a.start_ = np.arange(0, m * d + 1, d, dtype=np.int32)
    a.index_ = np.tile(np.arange(d, dtype=np.int32), m)
    a.value_ = G.reshape(-1) if m else np.zeros(0)
    lp.a_matrix_ = a
    solver.passModel(lp)
    if solver.run() == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS refused to run the reference's LP")
    status = solver.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return None
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"HiGHS failed: {solver.modelStatusToString(status)}")
    x = np.array(solver.getSolution().col_value, dtype=float)
    return np.clip(x, lo, hi), float(cost @ x)


def regions(
    layers: Layers, lo: np.ndarray, hi: np.ndarray, counter: Counter | None = None
) -> list[Region]:
    """The linear regions of the network within the box (see the module docstring)."""
    counter = counter or Counter()
    d = lo.size
    out: list[Region] = []
    start = (lo + hi) / 2

    def rec(layer, j, A, a, Z, z0, pattern, G, h, w):
        if layer == len(layers):
            counter.regions += 1
            out.append(Region(lo, hi, np.array(G).reshape(-1, d), np.array(h), A, a, w))
            return
        W, b, relu = layers[layer]
        if Z is None:  # enter the layer
            Z, z0 = W @ A, W @ a + b
            if not relu:
                rec(layer + 1, 0, Z, z0, None, None, None, G, h, w)
                return
            pattern = np.zeros(W.shape[0])
            j = 0
        if j == Z.shape[0]:
            A2, a2 = pattern[:, None] * Z, pattern * z0
            rec(layer + 1, 0, A2, a2, None, None, None, G, h, w)
            return
        r, s = Z[j], z0[j]
        zmin = s + np.sum(np.minimum(r * lo, r * hi))
        zmax = s + np.sum(np.maximum(r * lo, r * hi))
        sides = []
        if zmin >= 0:
            sides = [(1.0, None, None, w)]
        elif zmax <= 0:
            sides = [(0.0, None, None, w)]
        else:
            v = float(r @ w + s)
            for phase, row, rhs in ((1.0, -r, s), (0.0, r, -s)):
                if (phase == 1.0 and v >= 0) or (phase == 0.0 and v <= 0):
                    sides.append((phase, row, rhs, w))
                    continue
                found = _lp(
                    np.zeros(d),
                    np.array([*G, row]),
                    np.array([*h, rhs]),
                    lo,
                    hi,
                    counter,
                )
                if found is not None:
                    sides.append((phase, row, rhs, found[0]))
        for phase, row, rhs, pt in sides:
            p2 = pattern.copy()
            p2[j] = phase
            G2, h2 = (G, h) if row is None else ([*G, row], [*h, rhs])
            rec(layer, j + 1, A, a, Z, z0, p2, G2, h2, pt)

    rec(0, 0, np.eye(d), np.zeros(d), None, None, None, [], [], start)
    return out


# ------------------------------------------------------------------ decisions


def _ibp_margin_lower(q: Query, lo: np.ndarray, hi: np.ndarray) -> float:
    """A sound (interval) lower bound of the margin on a box: for pruning only."""
    m, r = (lo + hi) / 2, (hi - lo) / 2
    for w, b, relu in q.layers:
        m, r = w @ m + b, np.abs(w) @ r
        if relu:
            l_, u_ = np.maximum(m - r, 0), np.maximum(m + r, 0)
            m, r = (l_ + u_) / 2, (u_ - l_) / 2
    l_, u_ = m - r, m + r
    return float(min(l_[q.c1] - u_[t] for t in q.rivals))


@dataclass
class Minimum:
    """The minimum of the margin over a set, as far as it was needed."""

    value: float  # exact minimum (inf: empty set), or a value <= the stop threshold
    point: np.ndarray | None  # a point with margin ``certified`` (exact forward)
    certified: float  # the network's own margin at ``point``
    counter: Counter = field(default_factory=Counter)


def minimum(
    q: Query,
    delta: float,
    *,
    stop_below: float = -np.inf,
    prune_above: float = np.inf,
) -> Minimum:
    """Minimum of the margin over the box minus the exclusions at distance ``delta``.

    Boxes whose interval bound exceeds ``prune_above`` are skipped (the result is then
    exact only where it is ``<= prune_above``); the search stops at the first
    certified point with margin ``<= stop_below``.
    """
    counter = Counter()
    best = Minimum(np.inf, None, np.inf, counter)
    for b_lo, b_hi in feasible_boxes(q.lo, q.hi, q.exclude, q.separation, delta):
        counter.boxes += 1
        if _ibp_margin_lower(q, b_lo, b_hi) > prune_above:
            continue
        # cheap first: the centre and the corners, certified by the forward pass
        pts = np.stack([(b_lo + b_hi) / 2, *_corners(b_lo, b_hi)])
        g = q.margins(pts)
        i = int(np.argmin(g))
        if g[i] < best.certified:
            best.point, best.certified = pts[i], float(g[i])
            best.value = min(best.value, float(g[i]))
        if best.certified <= stop_below:
            return best
        for reg in regions(q.layers, b_lo, b_hi, counter):
            for t in q.rivals:
                cost = reg.M[q.c1] - reg.M[t]
                found = _lp(cost, reg.G, reg.h, reg.lo, reg.hi, counter)
                if found is None:
                    continue
                x, val = found
                val += float(reg.c[q.c1] - reg.c[t])
                best.value = min(best.value, val)
                cert = float(q.margins(x[None])[0])
                if cert < best.certified:
                    best.point, best.certified = x, cert
                if best.certified <= stop_below:
                    return best
    return best


def _corners(lo, hi):
    return [
        np.where(np.array(bits, bool), hi, lo)
        for bits in itertools.product((0, 1), repeat=lo.size)
    ]


@dataclass(frozen=True)
class Verdict:
    """The reference's answer: "sat", "unsat" or "ambiguous" (within the bands)."""

    answer: str
    witness: np.ndarray | None
    witness_margin: float
    outer_min: float
    lps: int


def tolerance(q: Query) -> float:
    """The margin band: 1e-6, widened for steep networks by their scale."""
    return 1e-6 + 1e-10 * abs_scale(q.layers)


TOL_X = 1e-9  # the exclusion band (input units)


def decide(q: Query) -> Verdict:
    """Decide the query exactly, up to the bands (see the module docstring)."""
    tol = tolerance(q)
    outer = minimum(
        q,
        max(q.delta - TOL_X, 0.0),
        stop_below=-q.margin + tol,
        prune_above=-q.margin + tol,
    )
    lps = outer.counter.lps
    if outer.value > -q.margin + tol and outer.certified > -q.margin + tol:
        return Verdict("unsat", None, np.inf, outer.value, lps)
    inner = minimum(
        q, q.delta + TOL_X, stop_below=-q.margin - tol, prune_above=-q.margin - tol
    )
    lps += inner.counter.lps
    if inner.point is not None and inner.certified <= -q.margin - tol:
        return Verdict("sat", inner.point, inner.certified, outer.value, lps)
    return Verdict("ambiguous", inner.point, inner.certified, outer.value, lps)


def margin_range(q: Query) -> tuple[np.ndarray, np.ndarray]:
    """Exact min and max of ``f_c1 - f_t`` per rival over the whole box (no
    exclusions): the reference for bound soundness."""
    counter = Counter()
    lo_v = np.full(len(q.rivals), np.inf)
    hi_v = np.full(len(q.rivals), -np.inf)
    for reg in regions(q.layers, q.lo, q.hi, counter):
        for k, t in enumerate(q.rivals):
            cost = reg.M[q.c1] - reg.M[t]
            off = float(reg.c[q.c1] - reg.c[t])
            for sign in (1.0, -1.0):
                found = _lp(sign * cost, reg.G, reg.h, reg.lo, reg.hi, counter)
                if found is None:
                    continue
                val = sign * found[1] + off
                if sign > 0:
                    lo_v[k] = min(lo_v[k], val)
                else:
                    hi_v[k] = max(hi_v[k], val)
    return lo_v, hi_v


# ------------------------------------------------------------------ checks of answers


def check_witnesses(q: Query, points: np.ndarray, given: np.ndarray) -> list[str]:
    """Problems with returned counterexamples (empty list: all valid).

    Each point must lie in the box, meet the margin and keep ``delta`` away from the
    given excluded points and from the points returned before it (float64, by this
    module's own forward pass).
    """
    bad = []
    seen = [e for e in given]
    for j, p in enumerate(np.asarray(points, dtype=np.float64).reshape(-1, q.lo.size)):
        if np.any(p < q.lo) or np.any(p > q.hi):
            bad.append(f"point {j} is outside the box")
        g = float(q.margins(p[None])[0])
        if g > -q.margin:
            bad.append(f"point {j} has margin {g:.3g} > -{q.margin}")
        for e in seen:
            far = np.abs(p - e) >= q.delta
            ok = far.all() if q.separation == "every_coord" else far.any()
            if not ok:
                bad.append(f"point {j} is within delta of an excluded point")
                break
        seen.append(p)
    return bad
