"""The solvers behind the MILP backend: HiGHS (highspy or SciPy), optionally Gurobi.

Owns: ``Answer``, ``engine_name`` (which solver ``"auto"`` means here),
``LpSession`` (one input's linear programs, warm-started) and ``solve_milp``; may
import: numpy, scipy, the standard library, ``dalv.verify.milp_encode``, ``highspy``
and ``gurobipy`` (inside the functions that need them).

Every call is a feasibility problem (zero objective, as the paper's Marabou ``--milp``
query). Work limits are deterministic: a node limit for the MILP, a simplex iteration
limit for the LPs; a time limit is passed only as the whole search's safety net.
Answers: "feasible" (with a point), "infeasible" (the solver's proof), "limit" (a work
or time limit stopped it) or "error" (any other solver status). Only "infeasible" may
ever become a proof, and only for the query that was asked.

Engines:

* ``"highs"``: HiGHS through ``highspy`` (an LP keeps its basis between calls, so the
  next counterexample's LP starts from the last vertex); one thread.
* ``"scipy"``: HiGHS through ``scipy.optimize.linprog`` / ``milp`` (no warm start).
* ``"gurobi"``: Gurobi through ``gurobipy`` (the paper's solver); one thread.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import sparse

from dalv.verify.milp_encode import MilpProblem

__all__ = ["ENGINES", "Answer", "branch_lps", "engine_name", "LpSession", "solve_milp"]

ENGINES = ("auto", "highs", "scipy", "gurobi")
_LP_ITERATIONS = 1_000_000  # per LP; far above what the region LPs need
_MIP_TOL = 1e-7  # integrality tolerance (x big-M stays well below the 1e-4 slack)

AnswerStatus = Literal["feasible", "infeasible", "limit", "error"]


@dataclass(frozen=True)
class Answer:
    """One solver call's answer.

    Attributes:
        status: "feasible", "infeasible", "limit" or "error".
        x: The inputs of the solution (``[d]`` float64) when feasible.
        nodes: Branch-and-bound nodes (MILP; for ``branch_lps``, the LPs it solved).
        iterations: Simplex iterations.
        note: The solver's own status, for the log.
    """

    status: AnswerStatus
    x: np.ndarray | None = None
    nodes: int = 0
    iterations: int = 0
    note: str = ""


def engine_name(solver: str) -> str:
    """The engine ``solver`` names here (``"auto"``: highspy if installed, else SciPy).

    Raises:
        ValueError: An unknown name.
        ImportError: The named engine's package is missing.
    """
    if solver not in ENGINES:
        raise ValueError(f"solver must be one of {ENGINES}, got {solver!r}")
    if solver == "auto":
        return "highs" if _installed("highspy") else "scipy"
    package = {"highs": "highspy", "gurobi": "gurobipy", "scipy": "scipy"}[solver]
    if not _installed(package):
        raise ImportError(f"the milp backend's solver={solver!r} needs {package}")
    return solver


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # e.g. blocked by sys.modules[package] = None
        return False


# ---- HiGHS through highspy ---------------------------------------------------------


def _highs(seed: int, time_limit: float | None):
    import highspy  # noqa: PLC0415 - optional dependency

    # The bare binding: no Python callbacks on every solver event, and no banner.
    h = getattr(highspy, "_Highs", highspy.Highs)()
    for key, val in (
        ("output_flag", False),
        ("threads", 1),
        ("random_seed", int(seed) % 2**31),
        ("mip_feasibility_tolerance", _MIP_TOL),
        ("simplex_iteration_limit", _LP_ITERATIONS),
    ):
        h.setOptionValue(key, val)
    _highs_time(h, time_limit)
    return h


def _run(h) -> None:
    """``h.run()``, raising where HiGHS refuses to start (its status ``kError``)
    instead of letting every query of the search end "unknown" without a word."""
    import highspy  # noqa: PLC0415

    if h.run() == highspy.HighsStatus.kError:
        raise RuntimeError(
            "HiGHS refused to solve (run() returned kError, model status "
            f"{h.modelStatusToString(h.getModelStatus())!r}). A known cause: another "
            "highspy.Highs in this process ran first with its default 'threads' "
            "option; HiGHS keeps one thread pool per process and refuses a later "
            "instance with a different count. dalv's runs single-threaded: call "
            "setOptionValue('threads', 1) on the other instance before its first run."
        )


def _highs_time(h, time_limit: float | None) -> None:
    h.setOptionValue("time_limit", float("inf") if time_limit is None else time_limit)


def _highs_pass(h, A, row_lo, row_hi, col_lo, col_hi, integer=None) -> None:
    """Pass a zero-objective model (column-wise arrays, the fast path of highspy)."""
    csc = sparse.csc_matrix(A)
    n_row, n_col = csc.shape
    integrality = np.zeros(n_col, np.int32) if integer is None else integer
    h.passModel(
        n_col,
        n_row,
        csc.nnz,
        1,  # MatrixFormat.kColwise
        1,  # ObjSense.kMinimize
        0.0,
        np.zeros(n_col),
        np.asarray(col_lo, np.float64),
        np.asarray(col_hi, np.float64),
        np.asarray(row_lo, np.float64),
        np.asarray(row_hi, np.float64),
        csc.indptr.astype(np.int32),
        csc.indices.astype(np.int32),
        csc.data.astype(np.float64),
        np.asarray(integrality, np.int32),
    )


def _highs_answer(h, n_x: int, mip: bool) -> Answer:
    import highspy  # noqa: PLC0415

    status = h.getModelStatus()
    info = h.getInfo()
    nodes = int(info.mip_node_count) if mip else 0
    its = max(int(info.simplex_iteration_count), 0)
    note = h.modelStatusToString(status)
    ms = highspy.HighsModelStatus
    has_point = int(info.primal_solution_status) == 2  # kSolutionStatusFeasible
    if status == ms.kOptimal or (status != ms.kInfeasible and mip and has_point):
        x = np.array(h.getSolution().col_value[:n_x], dtype=np.float64)
        return Answer("feasible", x, nodes, its, note)
    if status == ms.kInfeasible:
        return Answer("infeasible", None, nodes, its, note)
    limits = (
        ms.kTimeLimit,
        ms.kIterationLimit,
        ms.kSolutionLimit,
        ms.kInterrupt,
        ms.kMemoryLimit,
    )
    return Answer("limit" if status in limits else "error", None, nodes, its, note)


# ---- the engines -------------------------------------------------------------------


class LpSession:
    """One input's region LPs ``row_lo <= A x <= b``, ``lo <= x <= hi`` (zero
    objective).

    With the highs engine, an LP whose matrix and upper row bounds equal the last one's
    only changes the bounds, and the solver starts from the last basis (the last
    vertex).

    Args:
        engine: ``"highs"``, ``"scipy"`` or ``"gurobi"`` (Gurobi LPs go through HiGHS:
            the region LPs are a restriction, not the query, so any LP solver serves).
        seed: The solver's random seed.
    """

    def __init__(self, engine: str, seed: int = 0) -> None:
        self.engine = "scipy" if engine == "scipy" else "highs"
        self.seed = seed
        self._h = None
        self._rows: tuple[np.ndarray, np.ndarray] | None = None

    def solve(
        self,
        A: np.ndarray,
        b: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        time_limit: float | None = None,
        row_lo: np.ndarray | None = None,
    ) -> Answer:
        """Solve one region LP; the answer's ``x`` is the vertex found.

        Args:
            A, b: The rows ``A x <= b`` (dense).
            lo, hi: Variable bounds.
            time_limit: Seconds allowed (``None``: no limit).
            row_lo: Lower row bounds (default ``-inf``).
        """
        if row_lo is None:
            row_lo = np.full(A.shape[0], -np.inf)
        if self.engine == "scipy":
            return _scipy_lp(A, row_lo, b, lo, hi, time_limit)
        d, r = A.shape[1], A.shape[0]
        same = (
            self._h is not None
            and self._rows is not None
            and self._rows[0].shape == A.shape
            and np.array_equal(self._rows[0], A)
            and np.array_equal(self._rows[1], b)
        )
        if same:
            h = self._h
            _highs_time(h, time_limit)
            h.changeColsBounds(d, np.arange(d, dtype=np.int32), lo, hi)
            h.changeRowsBounds(r, np.arange(r, dtype=np.int32), row_lo, b)
        else:
            h = self._h if self._h is not None else _highs(self.seed, time_limit)
            h.setOptionValue("presolve", "off")
            _highs_time(h, time_limit)
            _highs_pass(h, A, row_lo, b, lo, hi)
            self._h, self._rows = h, (A.copy(), b.copy())
        _run(h)
        return _highs_answer(h, d, mip=False)


def _scipy_lp(A, row_lo, b, lo, hi, time_limit) -> Answer:
    from scipy.optimize import linprog  # noqa: PLC0415

    options: dict = {"presolve": False, "maxiter": _LP_ITERATIONS}
    if time_limit is not None:
        options["time_limit"] = max(time_limit, 1e-3)
    eq = row_lo == b
    low = np.isfinite(row_lo) & ~eq
    A_ub = np.concatenate([A[~eq], -A[low]])
    b_ub = np.concatenate([b[~eq], -row_lo[low]])
    res = linprog(
        np.zeros(A.shape[1]),
        A_ub=A_ub if A_ub.shape[0] else None,
        b_ub=b_ub if A_ub.shape[0] else None,
        A_eq=A[eq] if eq.any() else None,
        b_eq=b[eq] if eq.any() else None,
        bounds=np.stack([lo, hi], 1),
        method="highs-ds",
        options=options,
    )
    its = int(getattr(res, "nit", 0) or 0)
    if res.status == 0:
        return Answer("feasible", np.asarray(res.x, np.float64), 0, its, res.message)
    if res.status == 2:
        return Answer("infeasible", None, 0, its, res.message)
    return Answer("limit" if res.status == 1 else "error", None, 0, its, res.message)


def solve_milp(
    problem: MilpProblem,
    engine: str,
    *,
    node_limit: int | None,
    time_limit: float | None,
    seed: int = 0,
    guide: bool = False,
) -> Answer:
    """Solve one feasibility MILP.

    Args:
        problem: The encoding (``encode_milp``).
        engine: ``"highs"``, ``"scipy"`` or ``"gurobi"``.
        node_limit: Branch-and-bound nodes allowed (``None``: no limit).
        time_limit: Seconds allowed (``None``: no limit); the search's safety net.
        seed: The solver's random seed.
        guide: (highs) minimise the margin ``problem.margin_*`` instead of a zero
            objective, stopping at the first feasible point: the relaxations then
            point at the neurons that decide the margin, and an infeasible query is
            proved in far fewer nodes. The constraints are the same, so "infeasible"
            is the same proof; a feasible point is a different vertex.
    """
    if engine == "scipy":
        return _scipy_milp(problem, node_limit, time_limit)
    if engine == "gurobi":
        return _gurobi_milp(problem, node_limit, time_limit, seed)
    h = _highs(seed, time_limit)
    # RINS and RENS solve sub-MIPs around the relaxation: on these encodings they took
    # most of the time (8x per node) and the region LPs already play their part.
    h.setOptionValue("mip_heuristic_run_rins", False)
    h.setOptionValue("mip_heuristic_run_rens", False)
    if node_limit is not None:
        h.setOptionValue("mip_max_nodes", int(node_limit))
    p = problem
    _highs_pass(h, p.A, p.row_lo, p.row_hi, p.col_lo, p.col_hi, p.integer)
    if guide and p.margin_cols.size:
        h.changeColsCost(
            p.margin_cols.size, p.margin_cols.astype(np.int32), p.margin_coef
        )
        h.setOptionValue("mip_max_improving_sols", 1)
    _run(h)
    return _highs_answer(h, p.n_x, mip=True)


def branch_lps(
    problem: MilpProblem,
    max_lps: int,
    *,
    time_limit: float | None,
    seed: int = 0,
) -> Answer:
    """Decide a feasibility MILP by branch and bound on its LP relaxation alone
    (HiGHS LPs, warm-started, no cuts or heuristics), within ``max_lps`` LPs.

    Depth first: each node fixes some binaries (their column bounds); its LP minimises
    the margin (``problem.margin_*``, as ``solve_milp``'s ``guide``); an infeasible LP
    closes the node, an LP whose binaries are all integral (within ``_MIP_TOL``) means
    the MILP is feasible. Otherwise it branches (nearer side first) on the fractional
    ReLU with the largest relaxation gap ``a - max(z, 0)`` at the vertex, times the
    absolute margin coefficient of its output where it feeds the margin directly (the
    score BaBSR uses, read off the LP); on the most fractional binary when no ReLU is
    fractional. On the paper's encodings (tens of binaries, hundreds of continuous
    inputs) HiGHS's MILP spends most of its time in root cuts, which this skips: on
    the eight proofs of ``paper-mnist``'s first 50 Random rows it needs 11-443 LPs
    where HiGHS takes about 1 s each.

    Returns:
        "infeasible" when every leaf's LP is infeasible (the same proof the MILP's
        branch and bound gives: every integer point lies in a leaf); "feasible" (no
        point: ``x`` is ``None``) when an integral LP vertex was found; "limit" when
        ``max_lps`` LPs or the time ran out, or an LP ended otherwise.
    """
    import highspy  # noqa: PLC0415

    p = problem
    h = _highs(seed, time_limit)
    h.setOptionValue("presolve", "off")
    _highs_pass(h, p.A, p.row_lo, p.row_hi, p.col_lo, p.col_hi)
    if p.margin_cols.size:
        h.changeColsCost(
            p.margin_cols.size, p.margin_cols.astype(np.int32), p.margin_coef
        )
    ms = highspy.HighsModelStatus
    bins = np.flatnonzero(p.integer).astype(np.int32)
    lo0, hi0 = p.col_lo[bins].astype(np.float64), p.col_hi[bins].astype(np.float64)
    stack = [(lo0, hi0)]
    lps = its = 0
    relu, score, pos = p.relu_cols, None, None
    if relu.shape[0]:
        pos = np.searchsorted(bins, relu[:, 0])  # each ReLU's place among the binaries
        # a ReLU of the last hidden layer weighs by its output's margin coefficient
        coef = np.abs(p.margin_coef).tolist()
        w = dict(zip(p.margin_cols.tolist(), coef, strict=True))
        score = np.array([w.get(int(a), 1.0) for a in relu[:, 1]])
    end = None if time_limit is None else time.monotonic() + time_limit
    while stack:
        if lps >= max_lps:
            return Answer("limit", None, lps, its, "lp branching: LP limit")
        if end is not None:  # the safety net covers all the LPs together
            left = end - time.monotonic()
            if left <= 0:
                return Answer("limit", None, lps, its, "lp branching: time limit")
            _highs_time(h, left)
        lo, hi = stack.pop()
        h.changeColsBounds(bins.size, bins, lo, hi)
        _run(h)
        lps += 1
        its += max(int(h.getInfo().simplex_iteration_count), 0)
        status = h.getModelStatus()
        if status == ms.kInfeasible:
            continue
        if status != ms.kOptimal:
            return Answer("limit", None, lps, its, h.modelStatusToString(status))
        col = np.asarray(h.getSolution().col_value, np.float64)
        v = col[bins]
        frac = np.minimum(v - lo, hi - v)
        frac[hi - lo < 0.5] = 0.0  # fixed
        if not frac.size or frac.max() <= _MIP_TOL:
            return Answer("feasible", None, lps, its, "lp branching: integral vertex")
        j = int(np.argmax(frac))
        if score is not None:  # the ReLU whose relaxation the vertex uses most
            gap = col[relu[:, 1]] - np.maximum(col[relu[:, 2]], 0.0)
            s = np.where(frac[pos] > _MIP_TOL, gap * score, -1.0)
            if s.max() > 0:
                j = int(pos[np.argmax(s)])
        down, up = (lo, hi.copy()), (lo.copy(), hi)
        down[1][j] = lo[j]
        up[0][j] = hi[j]
        # depth first, the side the vertex leans to first (pushed last)
        stack += [down, up] if v[j] - lo[j] < hi[j] - v[j] else [up, down]
    return Answer("infeasible", None, lps, its, "lp branching: every leaf infeasible")


def _scipy_milp(p: MilpProblem, node_limit, time_limit) -> Answer:
    from scipy.optimize import Bounds, LinearConstraint, milp  # noqa: PLC0415

    options: dict = {"presolve": True, "disp": False}
    if node_limit is not None:
        options["node_limit"] = int(node_limit)
    if time_limit is not None:
        options["time_limit"] = max(time_limit, 1e-3)
    cons = LinearConstraint(p.A, p.row_lo, p.row_hi) if p.A.shape[0] else None
    res = milp(
        np.zeros(p.A.shape[1]),
        constraints=cons,
        integrality=p.integer.astype(np.int64),
        bounds=Bounds(p.col_lo, p.col_hi),
        options=options,
    )
    nodes = int(getattr(res, "mip_node_count", 0) or 0)
    if res.x is not None and res.status in (0, 1):
        return Answer("feasible", np.asarray(res.x[: p.n_x]), nodes, 0, res.message)
    if res.status == 2:
        return Answer("infeasible", None, nodes, 0, res.message)
    return Answer("limit" if res.status == 1 else "error", None, nodes, 0, res.message)


def _gurobi_milp(p: MilpProblem, node_limit, time_limit, seed) -> Answer:
    import gurobipy as gp  # noqa: PLC0415 - optional dependency

    try:
        return _gurobi_solve(gp, p, node_limit, time_limit, seed)
    except gp.GurobiError as err:  # licence, size limit of the free licence, ...
        return Answer("error", note=f"gurobi: {err}")


def _gurobi_solve(gp, p: MilpProblem, node_limit, time_limit, seed) -> Answer:
    GRB = gp.GRB
    with gp.Env(params={"OutputFlag": 0}) as env, gp.Model(env=env) as m:
        m.Params.Threads = 1
        m.Params.Seed = int(seed) % 2**31
        m.Params.IntFeasTol = 1e-9
        m.Params.FeasibilityTol = 1e-9
        if node_limit is not None:
            m.Params.NodeLimit = float(node_limit)
        if time_limit is not None:
            m.Params.TimeLimit = max(time_limit, 1e-3)
        vtype = np.where(p.integer, GRB.BINARY, GRB.CONTINUOUS)
        v = m.addMVar(p.A.shape[1], lb=p.col_lo, ub=p.col_hi, vtype=vtype)
        A = sparse.csr_matrix(p.A)
        eq = p.row_lo == p.row_hi
        for sel, sense, rhs in (
            (eq, GRB.EQUAL, p.row_lo),
            (~eq & np.isfinite(p.row_hi), GRB.LESS_EQUAL, p.row_hi),
            (~eq & np.isfinite(p.row_lo), GRB.GREATER_EQUAL, p.row_lo),
        ):
            if sel.any():
                m.addMConstr(A[sel], v, sense, rhs[sel])
        m.optimize()
        nodes, its = int(m.NodeCount), int(m.IterCount)
        note = f"gurobi status {m.Status}"
        if m.SolCount > 0:
            return Answer("feasible", np.array(v.X[: p.n_x]), nodes, its, note)
        if m.Status == GRB.INFEASIBLE:
            return Answer("infeasible", None, nodes, its, note)
        limits = (GRB.NODE_LIMIT, GRB.TIME_LIMIT, GRB.ITERATION_LIMIT)
        status = "limit" if m.Status in limits else "error"
        return Answer(status, None, nodes, its, note)
