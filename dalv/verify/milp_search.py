"""The MILP backend's loop for one input: one solver call per counterexample.

Owns: ``MilpConfig`` (the backend's knobs, picklable), ``Proof`` and ``MilpStats``
(per-input bookkeeping, a ``SearchStats``), ``MilpOutcome``, ``solve_task`` and
``solve_tasks``; may import: numpy, torch, the standard library, ``dalv.verify.{box,
crown, descent, geometry, network, property, results, task, verifier, milp_encode,
milp_solve}``.

Per input, as in the paper (and ``dalv.verify.marabou_worker``): one query per
counterexample; each witness joins the exclusions of the next query; with a
``Schedule``, a proof that the box holds no (more) counterexample grows the radius by
``step`` up to ``max_eps``. One query is answered in this order:

1. **Cheap proofs.** The box minus the exclusions is empty (``cut_box``), or CROWN's
   lower bound of the margin on the (tightened) box already exceeds ``-margin``: the
   box holds no counterexample ("empty" and "bound" proofs).
2. **Region LPs.** Candidate points (the last witness and ``x``, moved out of the
   exclusions; then seeded PGD points) each fix every binary of the MILP (ReLU phases,
   disjunction sides, the rival): the LP that remains (``encode_region``) is a
   restriction of the exact encoding, so the vertex the simplex solver returns is a
   feasible point of the MILP, found by the solver. The first feasible LP answers the
   query. The candidates only choose where the solver looks; no candidate is returned.
   Each region LP is asked first for a point on the margin's boundary (its margin row
   an equality), then for any point; its rows come from bounds on the whole box, so
   consecutive LPs of one input usually share them and the solver starts from the
   last vertex (a warm start; the next witness is the last one pushed out of its new
   exclusion slabs, as far as the LP needs).
3. **The MILP** (``encode_milp``), when no candidate's LP is feasible: the looser
   query's first (``loose_first``; its "infeasible" proves the box empty), decided
   first by ``milp_solve.branch_lps`` (a branch and bound on the LP relaxation, within
   ``lp_branch`` LPs) and by HiGHS's MILP only at that limit; then the stricter
   query's, whose point is the witness.

``solve_tasks`` runs the cheap steps of every input before any MILP, so that under
``Budget.seconds`` no input waits for another's MILPs; without a time limit each
input's answer is the one ``solve_task`` gives.

Tolerances: each query asks for a slightly stricter margin and distance (``+1e-4``,
``+2e-5``) so that the solver's float64 point survives the cast to the model's dtype;
"no counterexample" is claimed only when a slightly looser query (``-1e-6``) is proved
empty, by the box, by the bound, or by the solver's proof of infeasibility. When the
stricter query is infeasible but the looser one is not, and the looser one's point
misses the requested margin or distance, a last query asks for ``+1e-7``; if that
fails too, the input ends "unknown" (stop "band"). Every
witness is cast, clipped to the inward-rounded box and re-checked in float64 against
the requested margin and distance and every exclusion (``property.satisfies``).
A node, iteration, call or time limit, or any other solver status, ends the input's
search as "unknown", never as a proof.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from dalv.verify.box import clip_box, round_down, round_up
from dalv.verify.crown import _intermediate_bounds, crown_linear_lower
from dalv.verify.descent import decaying_step, margin_pgd
from dalv.verify.geometry import Cut, cut_box, project, region_box
from dalv.verify.milp_encode import (
    Layers,
    encode_milp,
    encode_region,
    inflate,
    margin_and_grad,
)
from dalv.verify.milp_solve import Answer, LpSession, branch_lps, solve_milp
from dalv.verify.network import AffineLayer, forward_weights
from dalv.verify.property import (
    DELTA_STRICT,
    LOOSE,
    MARGIN_STRICT,
    TIGHT,
    satisfies,
)
from dalv.verify.results import SearchStats
from dalv.verify.task import SolverTask

__all__ = [
    "MARGIN_STRICT",
    "DELTA_STRICT",
    "LOOSE",
    "TIGHT",
    "MilpConfig",
    "Proof",
    "MilpStats",
    "MilpOutcome",
    "solve_task",
    "solve_tasks",
]


ProofKind = Literal["empty", "bound", "solver"]
StopReason = Literal[
    "", "k", "proof", "budget", "limit", "time", "band", "rejected", "error"
]
"""Why a search ended (``MilpStats.stop``; "" while it runs)."""
QueryKind = Literal["sat", "proof", "stop", "pause"]
"""What one query at one radius came to (``_Search.query``)."""


@dataclass(frozen=True)
class MilpConfig:
    """The knobs of one search (``MilpVerifier``'s fields, resolved).

    Attributes:
        engine: ``"highs"``, ``"scipy"`` or ``"gurobi"`` (``milp_solve``).
        node_limit: Branch-and-bound nodes per MILP call (``None``: no limit).
        warm: Try the regions of the last witness and of ``x`` first.
        pgd_starts: Random PGD starts whose regions are tried next (0: none).
        pgd_steps: PGD steps per start.
        bound_proofs: Try CROWN's bound before the solver to prove a box empty.
        boundary: Ask each region LP for a point on the margin's boundary first (the
            margin row as an equality), then for any point of the region.
        loose_first: Once the region LPs fail, ask the looser query's MILP first: its
            "infeasible" proves the box empty with one MILP instead of two.
        guide: That first MILP minimises the margin (``solve_milp``'s ``guide``).
        lp_branch: With ``guide`` and HiGHS, that first MILP is decided first by
            ``branch_lps`` within this many LPs (0: never): its "infeasible" is the
            proof, its "feasible" skips the guided MILP (whose point would be set
            aside anyway); at its LP limit the guided MILP runs as before.
    """

    engine: str = "highs"
    node_limit: int | None = 500
    warm: bool = True
    pgd_starts: int = 4
    pgd_steps: int = 20
    bound_proofs: bool = True
    boundary: bool = True
    loose_first: bool = True
    guide: bool = True
    lp_branch: int = 1000


@dataclass(frozen=True)
class Proof:
    """One box proved to hold no (further) counterexample.

    Attributes:
        eps: Its radius.
        how: "empty" (the exclusions cover the box), "bound" (CROWN's margin bound)
            or "solver" (the MILP is infeasible).
    """

    eps: float
    how: ProofKind


@dataclass(frozen=True)
class MilpStats(SearchStats):
    """``SearchStats`` plus the MILP backend's own bookkeeping.

    ``calls`` counts solver calls as the Marabou backend does: one per query (its
    region LPs and its MILP together answer it), and one more for the looser query
    that confirms a proof; ``subdomains`` counts the MILP branch-and-bound nodes.

    Attributes:
        lp_calls: Region LPs solved.
        milp_calls: MILPs solved.
        lp_examples: Accepted counterexamples that came from a region LP.
        milp_examples: Accepted counterexamples that came from a MILP.
        proofs: The radii proved empty, in order, and how.
        example_eps: The radius at which each returned counterexample was found.
        lp_iterations: Simplex iterations, summed.
        stop: Why the search ended: "k", "proof" (the last radius is proved empty),
            "budget", "limit" (a MILP's node limit), "time", "band" (the solver finds
            points only within the tolerances around the requested margin or distance:
            neither a witness nor a proof), "rejected" or "error".
        branch_lps: LPs solved by ``branch_lps`` (before a guided MILP).
    """

    lp_calls: int = 0
    milp_calls: int = 0
    lp_examples: int = 0
    milp_examples: int = 0
    proofs: tuple[Proof, ...] = ()
    example_eps: tuple[float, ...] = ()
    lp_iterations: int = 0
    stop: StopReason = ""
    branch_lps: int = 0

    @property
    def bound_proofs(self) -> int:
        """Radii proved empty without the solver (by the bound or the exclusions)."""
        return sum(p.how != "solver" for p in self.proofs)

    @property
    def solver_proofs(self) -> int:
        """Radii proved empty by the solver."""
        return sum(p.how == "solver" for p in self.proofs)

    @property
    def solver_examples(self) -> int:
        """Accepted counterexamples (all found by the solver: LP or MILP)."""
        return self.lp_examples + self.milp_examples


@dataclass(frozen=True)
class MilpOutcome:
    """Result of one input's loop.

    Attributes:
        witnesses: ``[m, d]`` re-checked points in the witness dtype.
        exhausted: The last radius was proved to hold no further counterexample and
            the schedule could not grow.
        eps: The last radius searched.
        stats: Bookkeeping.
        notes: Remarks for the log.
    """

    witnesses: np.ndarray
    exhausted: bool
    eps: float
    stats: MilpStats
    notes: list[str] = field(default_factory=list)


class CrownBounds:
    """Pre-activation and spec bounds on a box from ``dalv.verify.crown`` (float64),
    widened so that float error cannot cut off a feasible point.

    Each bound moves out by ``1e-9 (1 + |b|)`` (``milp_encode.inflate``) plus a
    rounding allowance relative to the magnitudes the computation handles (the
    absolute network's output, as ``crown.RoundingAllowance`` reasons): eight times
    the number of products summed times the unit roundoff times that magnitude, so a
    steep network's bound near 0 is not off by more than its widening.
    """

    def __init__(self, layers: Layers) -> None:
        n = len(layers)
        self.layers = [
            AffineLayer(torch.from_numpy(w), torch.from_numpy(b), relu=i < n - 1)
            for i, (w, b) in enumerate(layers)
        ]
        self.abs = [(np.abs(w), np.abs(b)) for w, b in layers]
        unit = np.finfo(np.float64).eps / 2
        fan = np.cumsum([w.shape[1] + 1 for w, _ in layers]) + 16 + len(layers)
        self.rel = [8.0 * unit * f for f in fan]

    def _slack(self, lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
        """Per layer, the rounding allowance of bounds on its outputs."""
        m = np.maximum(np.abs(lo), np.abs(hi))
        out = []
        for (aw, ab), rel in zip(self.abs, self.rel, strict=True):
            m = aw @ m + ab
            out.append(rel * m)
        return out

    def __call__(
        self, lo: np.ndarray, hi: np.ndarray, spec: np.ndarray
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
        """``(pre, (spec_lower, spec_upper))`` on ``[lo, hi]``, widened."""
        lo_t, hi_t = torch.from_numpy(lo)[None], torch.from_numpy(hi)[None]
        slack = self._slack(lo, hi)
        with torch.no_grad():
            pre, raw = [], None
            if len(self.layers) > 1:
                raw = _intermediate_bounds(self.layers, lo_t, hi_t)
                for (a, b), r in zip(raw, slack, strict=False):
                    low, up = inflate(a[0].numpy(), b[0].numpy())
                    pre.append((low - r, up + r))
            S = torch.from_numpy(spec)
            C = torch.cat([S, -S])[None]
            bound = crown_linear_lower(self.layers, lo_t, hi_t, C, pre=raw)
            low = bound.lower[0].numpy()
        s = spec.shape[0]
        r = np.abs(spec) @ slack[-1]
        lower, upper = inflate(low[:s], -low[s:])
        return pre, (lower - r, upper + r)


class _Search:
    """One input's loop (see the module docstring); ``run`` returns the outcome."""

    def __init__(self, task: SolverTask, cfg: MilpConfig) -> None:
        self.t, self.cfg = task, cfg
        self.bounds = CrownBounds(task.layers)
        self.lp = LpSession(cfg.engine, task.seed)
        self.rng = np.random.default_rng(task.seed)
        self.exclude = task.exclude.astype(np.float64).reshape(-1, task.x.shape[0])
        self.last = self.exclude[-1] if self.exclude.shape[0] else None
        self.found: list[np.ndarray] = []
        self.notes: list[str] = []
        counters = "calls lp milp lp_ex milp_ex nodes its rej branch_lps"
        self.n = dict.fromkeys(counters.split(), 0)
        self.proofs: list[Proof] = []
        self.example_eps: list[float] = []
        self.stop = ""
        self.eps, self.exhausted, self.seconds = task.eps, False, 0.0
        self._paused = False  # the last query stopped before its MILP
        self._charged = False  # the current query has been charged its solver call
        self._pre_eps, self._pre = float("nan"), []

    # ---- limits ---------------------------------------------------------------------

    def _remaining(self) -> float | None:
        if self.t.deadline is None:
            return None
        return self.t.deadline - time.monotonic()

    def _may_call(self) -> Literal["", "time", "budget"]:
        """Charge the current query one solver call, the first time it uses the
        solver; the reason it may not ("" when it may)."""
        rem = self._remaining()
        if rem is not None and rem <= 0:
            return "time"
        if self._charged:
            return ""
        if self.t.max_calls is not None and self.n["calls"] >= self.t.max_calls:
            return "budget"
        self.n["calls"] += 1
        self._charged = True
        return ""

    # ---- witnesses ------------------------------------------------------------------

    def _finish(self, y: np.ndarray, box) -> np.ndarray:
        """Cast a solver point to the witness dtype inside the inward-rounded box."""
        lo, hi, lo_w, hi_w = box
        y = np.clip(y, lo, hi).astype(self.t.witness_dtype)
        return np.clip(y, lo_w, hi_w)

    def _accept(self, w: np.ndarray, box) -> bool:
        """Exact float64 re-check against the requested margin, box and exclusions."""
        w64 = w.astype(np.float64)
        g = (self.t.spec @ forward_weights(self.t.weights, w64[None])[0]).min()
        lo, hi = box[0], box[1]
        return bool(
            satisfies(w64[None], np.array([g]), lo, hi, self.exclude, self.t.prop)[0]
        )

    # ---- one query ------------------------------------------------------------------

    def _candidates(self, cut: Cut, delta: float, margin: float):
        """Points whose regions are tried, best guesses first (a generator: PGD runs
        only if the first ones fail)."""
        t, prop = self.t, self.t.prop
        if self.cfg.warm:
            starts = [s for s in (self.last, t.x) if s is not None]
            y, ok = project(
                np.stack(starts), cut.lo, cut.hi, self.exclude, delta, prop.separation
            )
            yield from y[ok]
        if self.cfg.pgd_starts > 0:
            yield from self._pgd(cut, delta, margin)

    def _pgd(self, cut: Cut, delta: float, margin: float):
        """Seeded PGD on the margin in the cut box minus the exclusions: the best
        point of each start, lowest margin first."""
        lo, hi, sep = cut.lo, cut.hi, self.t.prop.separation
        n = self.cfg.pgd_starts
        u = self.rng.random((n, lo.shape[0]))
        y = np.concatenate([self.t.x[None], lo + (hi - lo) * u])
        best, best_g = margin_pgd(
            y,
            lambda v: project(v, lo, hi, self.exclude, delta, sep),
            lambda v, grad: margin_and_grad(self.t.layers, self.t.spec, v),
            self.cfg.pgd_steps,
            decaying_step(hi - lo, self.cfg.pgd_steps),
            target=-2 * margin,
            freeze=False,
        )
        order = np.argsort(best_g, kind="stable")
        yield from best[order][np.isfinite(best_g[order])]

    def _lp_answer(self, box, cut, pre, margin, delta) -> np.ndarray | str | None:
        """Try the candidates' regions: an accepted witness, a stop reason, or None
        (no candidate's LP was feasible)."""
        seen: set[bytes] = set()
        for y in self._candidates(cut, delta, margin):
            rb = region_box(cut, y)
            if rb is None:
                continue
            A, b = encode_region(self.t.layers, pre, y, self.t.spec, margin)
            key = A.tobytes() + b.tobytes() + rb[0].tobytes() + rb[1].tobytes()
            if key in seen:
                continue
            seen.add(key)
            # On the margin's boundary first (the margin row an equality), then below.
            row_los = [None]
            if self.cfg.boundary:
                on = np.full(b.shape, -np.inf)
                on[-1] = b[-1]
                row_los.insert(0, on)
            for row_lo in row_los:
                why = self._may_call()
                if why:
                    return why
                self.n["lp"] += 1
                ans = self.lp.solve(A, b, rb[0], rb[1], self._remaining(), row_lo)
                self.n["its"] += ans.iterations
                if ans.status != "feasible" or ans.x is None:
                    continue
                w = self._finish(ans.x, box)
                if self._accept(w, box):
                    self.n["lp_ex"] += 1
                    return w
                self.n["rej"] += 1
                self.notes.append("a region LP's point failed the exact re-check")
        return None

    def _milp(self, pre, spec_b, margin, cut) -> Answer | str:
        problem = encode_milp(self.t.layers, pre, self.t.spec, spec_b, margin, cut)
        if problem is None:  # the bounds rule out every rival
            return Answer("infeasible", note="bound")
        why = self._may_call()
        if why:
            return why
        return self._solve(problem)

    def _solve(self, problem, guide: bool = False) -> Answer:
        """One MILP call (charged by the caller)."""
        self.n["milp"] += 1
        ans = solve_milp(
            problem,
            self.cfg.engine,
            node_limit=self.cfg.node_limit,
            time_limit=self._remaining(),
            seed=self.t.seed,
            guide=guide,
        )
        self.n["nodes"] += ans.nodes
        self.n["its"] += ans.iterations
        return ans

    def _unsolved(self, ans: Answer) -> Literal["time", "limit", "error"]:
        if ans.status == "limit":
            rem = self._remaining()
            return "time" if rem is not None and rem <= 0 else "limit"
        self.notes.append(f"solver answered {ans.note!r}")
        return "error"

    def _box_pre(self, eps: float, box) -> list[tuple[np.ndarray, np.ndarray]]:
        """Pre-activation bounds on the whole box (the region LPs' rows: they change
        only with the radius and the pattern, so consecutive LPs share their rows)."""
        if self._pre_eps != eps:
            self._pre = self.bounds(box[0], box[1], self.t.spec)[0]
            self._pre_eps = eps
        return self._pre

    def query(
        self, eps: float, lp: bool = True, milp: bool = True
    ) -> tuple[QueryKind, np.ndarray | ProofKind | StopReason | None]:
        """One query at radius ``eps``: ``("sat", witness)``, ``("proof", how)``,
        ``("stop", reason)`` or, with ``milp=False``, ``("pause", None)`` where the
        MILP would come next (``lp=False`` resumes there: the LPs were all infeasible).
        """
        t, prop = self.t, self.t.prop
        if lp:  # a new query (a resumed one was charged before it paused)
            self._charged = False
        lo, hi = clip_box(t.x, eps)
        box = (lo, hi, round_up(lo, t.witness_dtype), round_down(hi, t.witness_dtype))
        m_s, d_s = prop.margin + MARGIN_STRICT, prop.delta + DELTA_STRICT
        m_l, d_l = max(prop.margin - LOOSE, 0.0), max(prop.delta - LOOSE, 0.0)
        cut_l = cut_box(lo, hi, self.exclude, d_l, prop.separation)
        if cut_l is None:
            return "proof", "empty"
        pre_l, spec_l = self.bounds(cut_l.lo, cut_l.hi, t.spec)
        if self.cfg.bound_proofs and bool((spec_l[0] > -m_l).all()):
            return "proof", "bound"
        cut_s = cut_box(lo, hi, self.exclude, d_s, prop.separation)
        # (the loose cut box contains the strict one: its bound may rule the latter out)
        loose: Answer | None = None  # the looser query's MILP, when asked first
        if cut_s is not None and not bool((spec_l[0] > -m_s).all()):
            if lp:
                got = self._lp_answer(box, cut_s, self._box_pre(eps, box), m_s, d_s)
                if isinstance(got, np.ndarray):
                    return "sat", got
                if isinstance(got, str):
                    return "stop", got
            if not milp:
                return "pause", None
            pre_s, spec_s = self.bounds(cut_s.lo, cut_s.hi, t.spec)
            strict = encode_milp(t.layers, pre_s, t.spec, spec_s, m_s, cut_s)
            if strict is not None:
                why = self._may_call()
                if why:
                    return "stop", why
                loose = self._loose_first(pre_l, spec_l, m_l, cut_l)
                if loose is not None and loose.status == "infeasible":
                    # The looser query is infeasible, so the stricter one is too: one
                    # MILP proves the box empty, charged as the pair it answers.
                    self._charged = False
                    why = self._may_call()
                    return ("stop", why) if why else ("proof", "solver")
                if self.cfg.guide:  # its point is a guided vertex: ask the old way
                    loose = None
                ans = self._solve(strict)
                if ans.status != "infeasible":
                    return self._take(ans, box)
        # The stricter query has no solution: is the looser one infeasible too?
        if not milp:
            return "pause", None
        self._charged = False  # the looser query is a solver call of its own
        if loose is not None:  # already solved (not infeasible)
            why = self._may_call()
            ans = why if why else loose
        else:
            ans = self._milp(pre_l, spec_l, m_l, cut_l)
        if isinstance(ans, str):
            return "stop", ans
        if ans.status == "infeasible":
            return "proof", "bound" if ans.note == "bound" else "solver"
        kind, val = self._take(ans, box)
        if kind == "sat" or val != "rejected":
            return kind, val
        # The looser query's point misses the requested margin or distance: the answer
        # lies in the band between the two queries. Ask once more, just beyond the
        # requested margin and distance (a float64 model's point survives its cast).
        m_t, d_t = prop.margin + TIGHT, prop.delta + TIGHT
        cut_t = cut_box(lo, hi, self.exclude, d_t, prop.separation)
        if cut_t is None:
            return "stop", "band"
        pre_t, spec_t = self.bounds(cut_t.lo, cut_t.hi, t.spec)
        self._charged = False
        ans = self._milp(pre_t, spec_t, m_t, cut_t)
        if isinstance(ans, str):
            return "stop", ans
        if ans.status == "infeasible":
            return "stop", "band"
        kind, val = self._take(ans, box)
        if kind == "stop" and val == "rejected":
            return "stop", "band"
        return kind, val

    def _loose_first(self, pre_l, spec_l, m_l, cut_l) -> Answer | None:
        """The looser query's MILP, asked before the stricter one (``None``: not
        asked). Its "infeasible" proves both empty in one call; any other answer is
        kept for the looser step after the stricter MILP (which alone may return a
        witness, so witnesses are those of strict-then-loose). With ``guide`` it
        minimises the margin (``solve_milp``), which proves emptiness in far fewer
        nodes; then only its "infeasible" is used, and any other answer is asked
        again, unguided, where the looser query comes in the old order. Not asked
        when the second call would not be allowed, or the bounds decide the looser
        query."""
        if not self.cfg.loose_first:
            return None
        if self.t.max_calls is not None and self.n["calls"] >= self.t.max_calls:
            return None
        rem = self._remaining()
        if rem is not None and rem <= 0:
            return None
        problem = encode_milp(self.t.layers, pre_l, self.t.spec, spec_l, m_l, cut_l)
        if problem is None:
            return None
        cfg = self.cfg
        if cfg.guide and cfg.lp_branch > 0 and cfg.engine == "highs":
            ans = branch_lps(
                problem, cfg.lp_branch, time_limit=self._remaining(), seed=self.t.seed
            )
            self.n["branch_lps"] += ans.nodes
            self.n["its"] += ans.iterations
            if ans.status != "limit":
                return ans  # "infeasible": the proof; "feasible": set aside (guide)
        return self._solve(problem, guide=cfg.guide)

    def _take(self, ans: Answer, box) -> tuple[str, np.ndarray | str]:
        """A MILP's answer other than "infeasible": its witness if it passes the exact
        re-check, else the reason to stop."""
        if ans.status != "feasible" or ans.x is None:
            return "stop", self._unsolved(ans)
        w = self._finish(ans.x, box)
        if self._accept(w, box):
            self.n["milp_ex"] += 1
            return "sat", w
        self.n["rej"] += 1
        self.notes.append("a MILP point failed the exact re-check (at the boundary)")
        return "stop", "rejected"

    def run(self, milp: bool = True) -> bool:
        """Go on with the loop; ``milp=False`` pauses it before its first MILP.

        Returns:
            Whether the input's search has ended.
        """
        t0 = time.monotonic()
        t = self.t
        try:
            while len(self.found) < t.k:
                kind, val = self.query(self.eps, lp=not self._paused, milp=milp)
                self._paused = kind == "pause"
                if self._paused:
                    return False
                if kind == "sat":
                    w = val
                    self.found.append(w)
                    self.example_eps.append(self.eps)
                    w64 = w.astype(np.float64)
                    self.exclude = np.concatenate([self.exclude, w64[None]])
                    self.last = w64
                    continue
                if kind == "proof":
                    self.proofs.append(Proof(self.eps, val))
                    grow = t.schedule
                    if (
                        grow is not None
                        and self.eps + grow.step <= grow.max_eps + 1e-12
                    ):
                        self.eps += grow.step
                        continue
                    self.exhausted, self.stop = True, "proof"
                    return True
                self.stop = val
                if val == "budget":
                    self.notes.append(
                        f"the budget of {t.max_calls} solver calls is spent"
                    )
                return True
            self.stop = "k"
            return True
        finally:
            self.seconds += time.monotonic() - t0

    def outcome(self) -> MilpOutcome:
        """The result of the ended search."""
        t = self.t
        d = t.x.shape[0]
        wit = (
            np.stack(self.found)
            if self.found
            else np.zeros((0, d), dtype=t.witness_dtype)
        )
        n = self.n
        stats = MilpStats(
            calls=n["calls"],
            subdomains=n["nodes"],
            seconds=self.seconds,
            rejected=n["rej"],
            timed_out=self.stop == "time",
            lp_calls=n["lp"],
            milp_calls=n["milp"],
            lp_examples=n["lp_ex"],
            milp_examples=n["milp_ex"],
            proofs=tuple(self.proofs),
            example_eps=tuple(self.example_eps),
            lp_iterations=n["its"],
            stop=self.stop,
            branch_lps=n["branch_lps"],
        )
        return MilpOutcome(wit, self.exhausted, self.eps, stats, self.notes)


def solve_task(task: SolverTask, cfg: MilpConfig) -> MilpOutcome:
    """Run the paper's loop for one input (see the module docstring)."""
    search = _Search(task, cfg)
    search.run()
    return search.outcome()


def solve_tasks(tasks: list[SolverTask], cfg: MilpConfig) -> list[MilpOutcome]:
    """Run the loops of several inputs in this process, cheap work first.

    Every input runs until it ends or needs its first MILP; then the paused ones go on,
    in order. Each input's answer is the one ``solve_task`` gives (its steps are the
    same); only when ``Budget.seconds`` cuts the call short does the order matter, and
    then no input waits for another's MILPs before its LPs have run.
    """
    searches = [_Search(t, cfg) for t in tasks]
    paused = [s for s in searches if not s.run(milp=False)]
    for s in paused:
        s.run(milp=True)
    return [s.outcome() for s in searches]
