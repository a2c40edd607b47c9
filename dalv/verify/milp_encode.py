"""The MILP backend's encodings, in numpy: the exact query and its linear restrictions.

Owns: ``Layers`` (an affine/ReLU network with runs of Linear layers composed),
``forward``, ``margin_and_grad``, ``MilpProblem`` / ``encode_milp`` (the paper's query
as a mixed-integer program) and ``encode_region`` (the linear program of one activation
pattern and one side of every disjunction); may import: numpy, scipy, the standard
library, ``dalv.verify.geometry`` (the box minus the exclusions, ``Cut``).

The query of one solver call (protocol §4.4, ``dalv.verify.property``) is, with the
spec rows ``s`` of the property (one row ``e_c1 - e_c2``, or one per rival for
``target="any"``):

* inputs in the clipped box ``[lo, hi]``;
* per hidden neuron ``a = relu(z)``, ``z = W a_prev + b``, with pre-activation bounds
  ``L <= z <= U`` on the box: ``L >= 0`` gives ``a = z``; ``U <= 0`` gives ``a = 0``;
  otherwise the big-M encoding with one binary ``q``: ``a >= 0``, ``a >= z``,
  ``a <= z - L (1 - q)``, ``a <= U q``;
* the margin ``s . f(x') <= -margin`` (for "any": one binary per rival, at least one
  on, big-M from an upper bound of ``s . f`` on the box);
* per excluded point ``a`` (``every_coord``): per coordinate,
  ``x'_i <= a_i - delta  OR  x'_i >= a_i + delta`` with one binary and big-M from the
  box; (``any_coord``): at least one of the ``2 d`` one-sided conditions.

The box decides many disjunctions: a side outside ``[lo_i, hi_i]`` forces the other
side (a tighter bound), a slab outside the box constrains nothing, and a disjunction
with no side left makes the query infeasible. ``dalv.verify.geometry.cut_box`` applies
these rules to a fixpoint before anything is encoded.

Fixing every binary (the ReLU phases, the sides of the disjunctions, the rival) leaves a
linear program over the inputs alone: ``encode_region``. Its feasible points are
feasible points of the MILP (a restriction), so a vertex a simplex solver returns for
it is a solver's counterexample of the exact query.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from dalv.verify.geometry import Cut

__all__ = [
    "Layers",
    "merge_layers",
    "forward",
    "margin_and_grad",
    "inflate",
    "MilpProblem",
    "encode_milp",
    "encode_region",
]

Layers = list[tuple[np.ndarray, np.ndarray]]
"""``(W [n_out, n_in], b [n_out])`` float64; a ReLU follows every layer but the last."""

_INFLATE = 1e-9


def merge_layers(weights: list[tuple[np.ndarray, np.ndarray, bool]]) -> Layers:
    """Compose runs of affine layers that have no ReLU between them.

    Args:
        weights: Per affine layer ``(W, b, relu)`` (``network.affine_relu_layers``).

    Returns:
        The same function as affine layers each followed by a ReLU, except the last.
    """
    out: Layers = []
    cur: tuple[np.ndarray, np.ndarray] | None = None
    for i, (w, b, relu) in enumerate(weights):
        w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
        cur = (w, b) if cur is None else (w @ cur[0], w @ cur[1] + b)
        if relu or i == len(weights) - 1:
            out.append(cur)
            cur = None
    return out


def forward(layers: Layers, x: np.ndarray) -> np.ndarray:
    """Logits of points ``x [m, d]`` -> ``[m, n_classes]`` (float64)."""
    h = np.asarray(x, np.float64)
    for w, b in layers[:-1]:
        h = np.maximum(h @ w.T + b, 0.0)
    w, b = layers[-1]
    return h @ w.T + b


def margin_and_grad(
    layers: Layers, spec: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The property margin ``min_s (S f(x))_s`` and its (sub)gradient, per point.

    Shapes:
        spec: ``[S, n_classes]``; x: ``[m, d]`` -> ``[m]``, ``[m, d]``.
    """
    acts, h = [], np.asarray(x, np.float64)
    for w, b in layers[:-1]:
        z = h @ w.T + b
        acts.append(z > 0)
        h = np.maximum(z, 0.0)
    w, b = layers[-1]
    vals = (h @ w.T + b) @ spec.T  # [m, S]
    pick = vals.argmin(1)
    g = spec[pick] @ w  # [m, n_last_hidden]
    for (w, _), on in zip(reversed(layers[:-1]), reversed(acts), strict=True):
        g = (g * on) @ w
    return vals[np.arange(len(pick)), pick], g


def inflate(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Widen bounds by ``1e-9 (1 + |b|)`` so float error cannot cut off a point."""
    return (
        lower - _INFLATE * (1.0 + np.abs(lower)),
        upper + _INFLATE * (1.0 + np.abs(upper)),
    )


# ---- the exact query as a MILP -----------------------------------------------------


@dataclass(frozen=True)
class MilpProblem:
    """A feasibility MILP ``row_lo <= A v <= row_hi``, ``col_lo <= v <= col_hi``.

    Attributes:
        A: The constraint matrix (CSR).
        row_lo, row_hi: Row bounds (``+-inf`` where open).
        col_lo, col_hi: Variable bounds.
        integer: Which variables are binary.
        n_x: The first ``n_x`` variables are the inputs.
        n_binary: Number of binaries (ReLU phases, disjunction sides, rivals).
        margin_cols, margin_coef: The margin's linear part ``s . f(x') - const`` as
            columns and coefficients (one rival only; empty otherwise): an objective
            that guides the branch and bound (``solve_milp(..., guide=True)``).
        relu_cols: Per unstable ReLU, the columns of its phase binary, its output
            ``a`` and its pre-activation ``z`` (``[n, 3]``): ``branch_lps`` branches
            on the ReLU whose relaxation gap ``a - max(z, 0)`` is largest.
    """

    A: sparse.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    integer: np.ndarray
    n_x: int
    n_binary: int
    margin_cols: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    margin_coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    relu_cols: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))


class _Rows:
    """Accumulates sparse rows ``lo <= sum coef v <= hi``."""

    def __init__(self) -> None:
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.n = 0

    def add(self, rows, cols, vals, lo, hi, n: int | None = None) -> None:
        """Add ``n`` rows (default ``max(rows) + 1``); ``rows`` index them from 0."""
        rows = np.asarray(rows, np.int64).ravel()
        if n is None:
            n = int(rows.max()) + 1 if rows.size else 0
        lo = np.broadcast_to(np.asarray(lo, np.float64), (n,))
        hi = np.broadcast_to(np.asarray(hi, np.float64), (n,))
        self.r.append(rows + self.n)
        self.c.append(np.asarray(cols, np.int64).ravel())
        self.v.append(np.asarray(vals, np.float64).ravel())
        self.lo.append(lo.copy())
        self.hi.append(hi.copy())
        self.n += lo.shape[0]

    def dense(self, block: np.ndarray, cols: np.ndarray, lo, hi, extra=None) -> None:
        """Add rows ``block @ v[cols]`` (+ ``extra``: (rows, cols, vals) triplets)."""
        rr, cc = np.nonzero(block)
        rows, vcols, vals = [rr], [cols[cc]], [block[rr, cc]]
        if extra is not None:
            rows.append(extra[0])
            vcols.append(extra[1])
            vals.append(extra[2])
        self.add(
            np.concatenate(rows),
            np.concatenate(vcols),
            np.concatenate(vals),
            lo,
            hi,
            block.shape[0],
        )

    def matrix(self, n_cols: int) -> sparse.csr_matrix:
        if not self.r:
            return sparse.csr_matrix((0, n_cols))
        data = (
            np.concatenate(self.v),
            (np.concatenate(self.r), np.concatenate(self.c)),
        )
        return sparse.csr_matrix(data, shape=(self.n, n_cols))


def encode_milp(
    layers: Layers,
    pre: list[tuple[np.ndarray, np.ndarray]],
    spec: np.ndarray,
    spec_bounds: tuple[np.ndarray, np.ndarray],
    margin: float,
    cut: Cut,
) -> MilpProblem | None:
    """The exact query of one solver call as a MILP (see the module docstring).

    Args:
        layers: The network (``merge_layers``).
        pre: Per hidden layer, bounds ``(L, U)`` of its pre-activations on the cut box,
            already inflated (``inflate``).
        spec: The property's spec rows ``[S, n_classes]``.
        spec_bounds: Lower and upper bounds of ``spec @ f`` on the cut box, inflated.
        margin: The margin of this query.
        cut: The box minus the exclusions (``cut_box``).

    Returns:
        The problem, or ``None`` when the bounds already rule out every rival.
    """
    s_lo, s_hi = spec_bounds
    rivals = np.nonzero(s_lo <= -margin)[0]
    if rivals.size == 0:
        return None
    d = cut.lo.shape[0]
    col_lo, col_hi, integer = [cut.lo], [cut.hi], [np.zeros(d, bool)]
    n = d

    def new_vars(lo, hi, binary=False) -> np.ndarray:
        nonlocal n
        lo = np.atleast_1d(np.asarray(lo, np.float64))
        col_lo.append(lo)
        col_hi.append(np.broadcast_to(np.asarray(hi, np.float64), lo.shape).copy())
        integer.append(np.full(lo.shape, binary))
        idx = np.arange(n, n + lo.shape[0])
        n += lo.shape[0]
        return idx

    rows = _Rows()
    relus: list[np.ndarray] = []
    prev = np.arange(d)  # variable index of each input of the current layer
    prev_live = np.ones(d, bool)  # inputs that are not fixed at zero
    n_bin = 0
    for (w, b), (lo_z, hi_z) in zip(layers[:-1], pre, strict=True):
        active, inactive = lo_z >= 0, hi_z <= 0
        unstable = ~active & ~inactive
        a = new_vars(np.where(active, np.maximum(lo_z, 0), 0.0), np.maximum(hi_z, 0.0))
        wl = w[:, prev_live]
        cols_prev = prev[prev_live]
        ia = np.nonzero(active)[0]
        if ia.size:  # a = W prev + b
            extra = (np.arange(ia.size), a[ia], np.ones(ia.size))
            rows.dense(-wl[ia], cols_prev, b[ia], b[ia], extra)
        iu = np.nonzero(unstable)[0]
        if iu.size:
            k = iu.size
            z = new_vars(lo_z[iu], hi_z[iu])
            q = new_vars(np.zeros(k), np.ones(k), binary=True)
            relus.append(np.stack([q, a[iu], z], 1))
            n_bin += k
            r = np.arange(k)
            # z - W prev = b
            rows.dense(-wl[iu], cols_prev, b[iu], b[iu], (r, z, np.ones(k)))
            # a - z >= 0
            rows.add(
                np.r_[r, r],
                np.r_[a[iu], z],
                np.r_[np.ones(k), -np.ones(k)],
                np.zeros(k),
                np.inf,
            )
            # a - z - L q <= -L
            L, U = lo_z[iu], hi_z[iu]
            rows.add(
                np.r_[r, r, r],
                np.r_[a[iu], z, q],
                np.r_[np.ones(k), -np.ones(k), -L],
                -np.inf,
                -L,
            )
            # a - U q <= 0
            rows.add(np.r_[r, r], np.r_[a[iu], q], np.r_[np.ones(k), -U], -np.inf, 0.0)
        prev, prev_live = a, ~inactive
    w, b = layers[-1]
    coef = spec[rivals] @ w[:, prev_live]  # [R, n_live]
    const = spec[rivals] @ b
    cols_prev = prev[prev_live]
    margin_cols, margin_coef = np.zeros(0, np.int64), np.zeros(0)
    if rivals.size == 1:
        rows.dense(coef, cols_prev, -np.inf, -margin - const)
        margin_cols, margin_coef = cols_prev.astype(np.int64), coef[0].copy()
    else:
        big = s_hi[rivals] + margin  # s.f + margin <= big on the box
        if (big <= 0).any():
            pass  # some rival always wins by the margin: no margin constraint at all
        else:
            t = new_vars(np.zeros(rivals.size), np.ones(rivals.size), binary=True)
            n_bin += rivals.size
            r = np.arange(rivals.size)
            # s.f <= -margin + big (1 - t)  <=>  s.f + big t <= -margin + big
            rows.dense(coef, cols_prev, -np.inf, -margin - const + big, (r, t, big))
            rows.add(np.zeros(rivals.size), t, np.ones(rivals.size), 1.0, np.inf)
    coord, below, above = cut.pairs
    if coord.size:
        p = coord.size
        s = new_vars(np.zeros(p), np.ones(p), binary=True)
        n_bin += p
        r = np.arange(p)
        lo_c, hi_c = cut.lo[coord], cut.hi[coord]
        # s = 0: x <= below;  x - (hi - below) s <= below
        rows.add(
            np.r_[r, r],
            np.r_[coord, s],
            np.r_[np.ones(p), -(hi_c - below)],
            -np.inf,
            below,
        )
        # s = 1: x >= above;  x - (above - lo) s >= lo
        rows.add(
            np.r_[r, r],
            np.r_[coord, s],
            np.r_[np.ones(p), -(above - lo_c)],
            lo_c,
            np.inf,
        )
    for coord, bound, side in cut.balls:
        c = coord.size
        s = new_vars(np.zeros(c), np.ones(c), binary=True)
        n_bin += c
        r = np.arange(c)
        lo_c, hi_c = cut.lo[coord], cut.hi[coord]
        pos = side > 0
        # side +1: x - (bound - lo) s >= lo;  side -1: x + (hi - bound) s <= hi
        coef_s = np.where(pos, -(bound - lo_c), hi_c - bound)
        rows.add(
            np.r_[r, r],
            np.r_[coord, s],
            np.r_[np.ones(c), coef_s],
            np.where(pos, lo_c, -np.inf),
            np.where(pos, np.inf, hi_c),
        )
        rows.add(np.zeros(c), s, np.ones(c), 1.0, np.inf)
    return MilpProblem(
        rows.matrix(n),
        np.concatenate(rows.lo) if rows.lo else np.zeros(0),
        np.concatenate(rows.hi) if rows.hi else np.zeros(0),
        np.concatenate(col_lo),
        np.concatenate(col_hi),
        np.concatenate(integer),
        d,
        n_bin,
        margin_cols,
        margin_coef,
        np.concatenate(relus) if relus else np.zeros((0, 3), np.int64),
    )


# ---- one linear region -------------------------------------------------------------


def encode_region(
    layers: Layers,
    pre: list[tuple[np.ndarray, np.ndarray]],
    y: np.ndarray,
    spec: np.ndarray,
    margin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The linear program of the activation pattern and rival of the point ``y``.

    Every binary of ``encode_milp`` fixed to ``y``'s value: each unstable neuron keeps
    ``y``'s phase (``z >= 0`` or ``z <= 0``, its pre-activation an affine function of
    the input under the earlier phases), and the margin row of ``y``'s best rival must
    hold. Stable neurons need no row: their bounds hold on the whole box.

    Args:
        layers: The network.
        pre: Inflated pre-activation bounds per hidden layer (as for ``encode_milp``).
        y: A point of the box ``[d]``.
        spec: Spec rows ``[S, n_classes]``.
        margin: The margin of this query.

    Returns:
        ``(A, b)``: the region's rows ``A x <= b`` (dense ``[r, d]``).
    """
    A: np.ndarray | None = None  # the current layer's input as A x + c (None: x)
    c = np.zeros(y.shape[0])
    h = y.astype(np.float64)
    rows_a, rows_b = [], []
    for (w, b), (lo_z, hi_z) in zip(layers[:-1], pre, strict=True):
        za, zc = (w if A is None else w @ A), w @ c + b
        zy = h @ w.T + b
        on = np.where(lo_z >= 0, True, np.where(hi_z <= 0, False, zy >= 0))
        iu = np.nonzero((lo_z < 0) & (hi_z > 0))[0]
        sign = np.where(on[iu], -1.0, 1.0)[:, None]  # active: -z <= 0
        rows_a.append(sign * za[iu])
        rows_b.append(-(sign[:, 0] * zc[iu]))
        A, c = za * on[:, None], zc * on
        h = np.maximum(zy, 0.0) * on
    w, b = layers[-1]
    vals = spec @ (h @ w.T + b)
    s = spec[int(vals.argmin())]
    sw = s @ w
    rows_a.append((sw if A is None else sw @ A)[None])
    rows_b.append(np.array([-margin - s @ (w @ c + b)]))
    return np.concatenate(rows_a), np.concatenate(rows_b)
