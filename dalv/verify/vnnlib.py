"""VNN-LIB in and out for local robustness: an input box, optional exclusions, and an
output disjunction ``Y_j - Y_c >= m`` for one class ``c``.

Owns: ``VnnlibError``, ``VnnProperty``, ``parse_vnnlib``, ``read_vnnlib``,
``write_vnnlib`` and ``format_number``; may import: numpy, the standard library.

A VNN-LIB file (the VNN-COMP standard, SMT-LIB syntax) states the NEGATION of the
property to prove: "sat" means some input satisfies every assertion. The fragment read
here is what a local-robustness query says, and what dalv's ``Property`` asks with
``target="any"`` (or the runner-up) and its ``margin``:

* ``(declare-const X_i Real)`` / ``(declare-const Y_j Real)``: inputs and outputs;
* per input ``X_i`` a lower and an upper bound ``(assert (>= X_i lo))``,
  ``(assert (<= X_i hi))`` (also inside ``(and ...)``; ``<=``/``>=`` either way);
* the output condition, ONE assertion: ``(or (and (>= Y_j Y_c)) ...)`` for rivals
  ``j`` of one class ``c`` (a lone atom, ``(or atom ...)`` and ``(<= Y_c Y_j)`` are
  read the same), optionally with a margin ``m >= 0``: ``(>= (- Y_j Y_c) m)``;
* optionally the exclusions of dalv's ``Property`` around earlier counterexamples
  ``a``: the paper's rule (``every_coord``) as one
  ``(or (<= X_i a_i-d) (>= X_i a_i+d))`` per coordinate and point, or ``any_coord`` as
  one disjunction of those ``2n`` atoms per point. VNN-LIB 1.0's grammar (SMT-LIB)
  expresses these disjunctions over inputs, but the VNN-COMP tools accept only boxes
  (or disjunctions of whole boxes) as input constraints, and the paper's exclusions
  would need exponentially many boxes; so ``write_vnnlib`` writes a query with
  exclusions in this form, and ``dalv export-queries`` also writes the exclusions as a
  CSV sidecar and an exclusion-free box query beside it that every tool reads (its
  UNSAT implies the full query's; a SAT point of it needs the exclusions checked). See
  ``dalv.queries``.

Anything else (a constant bound on an output, a general linear output constraint,
conjunctions across classes, input constraints that are not bounds or exclusions,
undeclared variables, unbalanced parentheses) is refused with a ``VnnlibError`` whose
one line says what was found. Comments (``;`` to the end of a line) are ignored.

Numbers are written in positional notation with the shortest digits that read back to
the same float64 (``format_number``), so a written box reads back bit for bit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "VnnlibError",
    "VnnProperty",
    "parse_vnnlib",
    "read_vnnlib",
    "write_vnnlib",
    "format_number",
]

_VAR = re.compile(r"^([XY])_(\d+)$")


class VnnlibError(ValueError):
    """A VNN-LIB file outside the fragment dalv reads (the message says what was
    found)."""


@dataclass(frozen=True)
class VnnProperty:
    """A local-robustness query: does some ``x`` in the box (outside the exclusions)
    give ``Y_j - Y_c >= margin`` for some rival ``j``?

    Attributes:
        lo: ``[n_inputs]`` lower bounds (float64).
        hi: ``[n_inputs]`` upper bounds (float64).
        target: the class ``c``.
        rivals: the classes ``j`` of the disjunction (sorted).
        n_outputs: declared outputs.
        margin: ``m >= 0`` (0 for the usual ``Y_j >= Y_c``).
        exclude_lo: ``[n, n_inputs]`` lower ends of the excluded open intervals
            (``a - delta``): an excluded point ``a`` per row.
        exclude_hi: ``[n, n_inputs]`` upper ends (``a + delta``).
        separation: ``"every_coord"`` (outside every coordinate's interval) or
            ``"any_coord"`` (outside at least one); meaningless without exclusions.
    """

    lo: np.ndarray
    hi: np.ndarray
    target: int
    rivals: tuple[int, ...]
    n_outputs: int
    margin: float = 0.0
    exclude_lo: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    exclude_hi: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    separation: str = "every_coord"

    @property
    def n_inputs(self) -> int:
        return int(self.lo.shape[0])

    @property
    def n_excluded(self) -> int:
        return int(self.exclude_lo.shape[0])

    def holds_at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Exact test of the file's assertions at points ``xs`` with outputs ``ys``
        (both float64): in the box, outside the exclusions, some rival beats the
        target by the margin.

        Shapes:
            xs: ``[m, n_inputs]``; ys: ``[m, n_outputs]`` -> ``[m]`` booleans.
        """
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        ok = ((xs >= self.lo) & (xs <= self.hi)).all(-1)
        if self.n_excluded:
            out = (xs[:, None, :] <= self.exclude_lo) | (
                xs[:, None, :] >= self.exclude_hi
            )
            far = out.all(-1) if self.separation == "every_coord" else out.any(-1)
            ok &= far.all(-1)
        rivals = list(self.rivals)
        beat = (ys[:, rivals] - ys[:, [self.target]]) >= self.margin
        return ok & beat.any(-1)


# ------------------------------------------------------------------ parsing


def _tokens(text: str) -> list[str]:
    text = re.sub(r";[^\n]*", " ", text)
    return re.findall(r"\(|\)|[^\s()]+", text)


def _sexprs(text: str) -> list:
    """The file's top-level s-expressions as nested lists of strings."""
    stack: list[list] = [[]]
    for tok in _tokens(text):
        if tok == "(":
            stack.append([])
        elif tok == ")":
            if len(stack) == 1:
                raise VnnlibError("unbalanced parentheses: a ')' without its '('")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise VnnlibError(f"unbalanced parentheses: {len(stack) - 1} '(' left open")
    return stack[0]


def _show(e) -> str:
    s = e if isinstance(e, str) else "(" + " ".join(_show(x) for x in e) + ")"
    return s if len(s) <= 70 else s[:67] + "..."


def _number(tok: str) -> float | None:
    try:
        v = float(tok)
    except ValueError:
        return None
    return v if np.isfinite(v) else None


class _Lin:
    """A linear term ``sum coef * var + const``."""

    def __init__(self, coefs: dict | None = None, const: float = 0.0):
        self.coefs = dict(coefs or {})
        self.const = const

    def __add__(self, o):
        c = dict(self.coefs)
        for k, v in o.coefs.items():
            c[k] = c.get(k, 0.0) + v
        return _Lin({k: v for k, v in c.items() if v != 0}, self.const + o.const)

    def scale(self, s: float):
        return _Lin(
            {k: v * s for k, v in self.coefs.items() if v * s != 0}, self.const * s
        )


def _term(e, declared: set) -> _Lin:
    if isinstance(e, str):
        v = _number(e)
        if v is not None:
            return _Lin(const=v)
        if e not in declared:
            raise VnnlibError(f"variable {e} is used but not declared")
        return _Lin({e: 1.0})
    if not e:
        raise VnnlibError("an empty expression ()")
    op, args = e[0], [_term(a, declared) for a in e[1:]]
    if op == "-" and len(args) == 1:
        return args[0].scale(-1.0)
    if op == "-" and len(args) >= 2:
        out = args[0]
        for a in args[1:]:
            out = out + a.scale(-1.0)
        return out
    if op == "+" and args:
        out = args[0]
        for a in args[1:]:
            out = out + a
        return out
    if op == "*" and len(args) == 2 and (not args[0].coefs or not args[1].coefs):
        k, t = (args[0], args[1]) if not args[0].coefs else (args[1], args[0])
        return t.scale(k.const)
    raise VnnlibError(
        f"unsupported term {_show(e)} (dalv reads + - and * by a constant)"
    )


def _atom(e, declared: set) -> _Lin:
    """``(<= a b)`` / ``(>= a b)`` as ``L >= 0``."""
    if isinstance(e, list) and len(e) == 3 and e[0] in ("<=", ">="):
        a, b = _term(e[1], declared), _term(e[2], declared)
        return a + b.scale(-1.0) if e[0] == ">=" else b + a.scale(-1.0)
    raise VnnlibError(
        f"unsupported constraint {_show(e)}: dalv reads (<= a b) and (>= a b) "
        "combined with and/or"
    )


def _kind(lin: _Lin) -> str:
    kinds = {k[0] for k in lin.coefs}
    if not kinds:
        raise VnnlibError("a constraint without variables")
    if len(kinds) > 1:
        raise VnnlibError(
            "a constraint mixing inputs X and outputs Y "
            f"({' '.join(sorted(lin.coefs))}): not a local-robustness query"
        )
    return kinds.pop()


def _bound(lin: _Lin) -> tuple[int, str, float]:
    """An input atom ``s * X_i + k >= 0`` as ``(i, '>=' or '<=', value)``."""
    if len(lin.coefs) != 1:
        raise VnnlibError(
            "an input constraint over several inputs "
            f"({' '.join(sorted(lin.coefs))}): dalv reads per-input bounds only"
        )
    ((name, s),) = lin.coefs.items()
    i = int(_VAR.match(name).group(2))
    value = -lin.const / s
    return i, (">=" if s > 0 else "<="), value


def parse_vnnlib(text: str, *, source: str = "the VNN-LIB text") -> VnnProperty:
    """Read a local-robustness query from VNN-LIB text (see the module docstring).

    Args:
        text: The file's contents.
        source: Name used in error messages.

    Returns:
        The query.

    Raises:
        VnnlibError: Malformed, or outside the fragment (one line says what was found).
    """
    try:
        return _parse(text)
    except VnnlibError as e:
        raise VnnlibError(f"{source}: {e}") from None


def _parse(text: str) -> VnnProperty:
    declared: set[str] = set()
    asserts = []
    for cmd in _sexprs(text):
        if not isinstance(cmd, list) or not cmd:
            raise VnnlibError(f"unexpected {_show(cmd)} at the top level")
        if cmd[0] == "declare-const":
            if len(cmd) != 3 or not isinstance(cmd[1], str) or cmd[2] != "Real":
                raise VnnlibError(f"unsupported declaration {_show(cmd)}")
            if not _VAR.match(cmd[1]):
                raise VnnlibError(
                    f"variable {cmd[1]}: dalv reads inputs X_i and outputs Y_j only"
                )
            declared.add(cmd[1])
        elif cmd[0] == "assert":
            if len(cmd) != 2:
                raise VnnlibError(f"assert takes one formula: {_show(cmd)}")
            asserts.append(cmd[1])
        else:
            raise VnnlibError(
                f"unsupported command {cmd[0]!r}: dalv reads declare-const and assert"
            )
    xs = sorted(int(v[2:]) for v in declared if v[0] == "X")
    ys = sorted(int(v[2:]) for v in declared if v[0] == "Y")
    if not xs or xs != list(range(len(xs))) or not ys or ys != list(range(len(ys))):
        raise VnnlibError(
            f"inputs X_0..X_n-1 and outputs Y_0..Y_m-1 must all be declared, found "
            f"{len(xs)} X and {len(ys)} Y declarations with gaps or none"
        )
    n_in, n_out = len(xs), len(ys)
    lo = np.full(n_in, -np.inf)
    hi = np.full(n_in, np.inf)
    excl_atoms: list[list[tuple[int, str, float]]] = []
    outputs = []
    todo = list(asserts)
    while todo:
        f = todo.pop(0)
        if isinstance(f, list) and f and f[0] == "and":
            todo = list(f[1:]) + todo
            continue
        if isinstance(f, list) and f and f[0] == "or":
            disj = [_disjunct(d, declared) for d in f[1:]]
            if not disj:
                raise VnnlibError("an empty (or)")
            kinds = {_kind(lin) for d in disj for lin in d}
            if kinds == {"Y"}:
                outputs.append(disj)
            elif kinds == {"X"}:
                if any(len(d) != 1 for d in disj):
                    raise VnnlibError(
                        "a disjunction of input boxes: dalv reads one box (with "
                        "exclusions written as disjunctions of single bounds)"
                    )
                excl_atoms.append([_bound(d[0]) for d in disj])
            else:
                raise VnnlibError(
                    f"a disjunction mixing input and output constraints: {_show(f)}"
                )
            continue
        lin = _atom(f, declared)
        if _kind(lin) == "Y":
            outputs.append([[lin]])
            continue
        i, op, v = _bound(lin)
        if op == ">=":
            lo[i] = max(lo[i], v)
        else:
            hi[i] = min(hi[i], v)
    missing = np.flatnonzero(~np.isfinite(lo) | ~np.isfinite(hi))
    if missing.size:
        raise VnnlibError(
            f"inputs without a lower and an upper bound: X_{missing[0]} and "
            f"{missing.size - 1} more; dalv needs a box"
        )
    if bool((lo > hi).any()):
        i = int(np.flatnonzero(lo > hi)[0])
        raise VnnlibError(f"an empty box: X_{i} >= {lo[i]} and <= {hi[i]}")
    target, rivals, margin = _output(outputs, n_out)
    ex_lo, ex_hi, separation = _exclusions(excl_atoms, n_in)
    return VnnProperty(lo, hi, target, rivals, n_out, margin, ex_lo, ex_hi, separation)


def _disjunct(d, declared) -> list[_Lin]:
    if isinstance(d, list) and d and d[0] == "and":
        return [_atom(a, declared) for a in d[1:]]
    return [_atom(d, declared)]


def _output(outputs: list, n_out: int) -> tuple[int, tuple[int, ...], float]:
    if len(outputs) != 1:
        raise VnnlibError(
            f"{len(outputs)} output constraints asserted together; dalv reads one "
            "disjunction (or (>= Y_j Y_c) ...) for one class c"
        )
    targets, rivals, margins = set(), [], set()
    for d in outputs[0]:
        if len(d) != 1:
            raise VnnlibError(
                f"a conjunction of {len(d)} output constraints in one disjunct; dalv "
                "reads one comparison Y_j >= Y_c per disjunct"
            )
        lin = d[0]
        pos = [k for k, v in lin.coefs.items() if v == 1.0]
        neg = [k for k, v in lin.coefs.items() if v == -1.0]
        if len(lin.coefs) != 2 or len(pos) != 1 or len(neg) != 1 or lin.const > 0:
            terms = " ".join(f"{v:+g}*{k}" for k, v in sorted(lin.coefs.items()))
            raise VnnlibError(
                f"output constraint {terms} {lin.const:+g} >= 0 is not Y_j - Y_c >= m "
                "with m >= 0 (general linear output constraints are not read)"
            )
        targets.add(int(neg[0][2:]))
        rivals.append(int(pos[0][2:]))
        margins.add(-lin.const)
    if len(targets) != 1:
        raise VnnlibError(
            f"the output disjunction compares against classes {sorted(targets)}; "
            "dalv reads rivals of one class c"
        )
    if len(margins) != 1:
        raise VnnlibError(f"the disjuncts have different margins {sorted(margins)}")
    (c,), (m,) = targets, margins
    if c >= n_out or any(j >= n_out for j in rivals):
        raise VnnlibError("an output index beyond the declared outputs")
    return c, tuple(sorted(set(rivals))), float(m) + 0.0


def _exclusions(groups, n_in: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Exclusion disjunctions as per-point open intervals ``(lo, hi)`` per input."""
    if not groups:
        return np.zeros((0, n_in)), np.zeros((0, n_in)), "every_coord"

    def interval(atoms):
        le = [v for _, op, v in atoms if op == "<="]
        ge = [v for _, op, v in atoms if op == ">="]
        if len(le) != 1 or len(ge) != 1 or not le[0] < ge[0]:
            raise VnnlibError(
                "an input disjunction that is not X_i <= a - d or X_i >= a + d"
            )
        return le[0], ge[0]

    if all(len(g) == 2 and g[0][0] == g[1][0] for g in groups):  # every_coord
        per: list[list[tuple[float, float]]] = [[] for _ in range(n_in)]
        for g in groups:
            per[g[0][0]].append(interval(g))
        counts = {len(p) for p in per}
        if len(counts) != 1:
            raise VnnlibError(
                "exclusions must cover every input as often (one disjunction per "
                f"input and excluded point), found {sorted(counts)} per input"
            )
        arr = np.array(per, dtype=np.float64)  # [n_in, n, 2]
        return arr[:, :, 0].T.copy(), arr[:, :, 1].T.copy(), "every_coord"
    ex_lo, ex_hi = np.zeros((len(groups), n_in)), np.zeros((len(groups), n_in))
    for k, g in enumerate(groups):  # any_coord: one disjunction of 2n atoms per point
        by: dict[int, list] = {}
        for a in g:
            by.setdefault(a[0], []).append(a)
        if sorted(by) != list(range(n_in)):
            raise VnnlibError(
                f"an input disjunction over {len(by)} of the {n_in} inputs: dalv "
                "reads exclusions over all of them"
            )
        for i, atoms in by.items():
            ex_lo[k, i], ex_hi[k, i] = interval(atoms)
    return ex_lo, ex_hi, "any_coord"


def read_vnnlib(path: str | os.PathLike) -> VnnProperty:
    """``parse_vnnlib`` on a file (``.vnnlib``; a ``.gz`` file is decompressed).

    Raises:
        VnnlibError: Unreadable, malformed, or outside the fragment.
    """
    path = os.fspath(path)
    try:
        if path.endswith(".gz"):
            import gzip

            with gzip.open(path, "rt") as f:
                text = f.read()
        else:
            with open(path) as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise VnnlibError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    return parse_vnnlib(text, source=path)


# ------------------------------------------------------------------ writing


def format_number(v: float) -> str:
    """A float64 in positional notation that reads back to the same float64."""
    s = np.format_float_positional(float(v), unique=True, trim="-")
    return "0" if s in ("-0", "0") else s


def write_vnnlib(
    path: str | os.PathLike,
    lo: np.ndarray,
    hi: np.ndarray,
    target: int,
    rivals: list[int] | tuple[int, ...],
    n_outputs: int,
    *,
    margin: float = 0.0,
    exclude: np.ndarray | None = None,
    delta: float = 1e-3,
    separation: str = "every_coord",
    comment: str = "",
) -> None:
    """Write a local-robustness query (the fragment ``read_vnnlib`` reads).

    Args:
        path: Where to write.
        lo: ``[n_inputs]`` lower bounds.
        hi: ``[n_inputs]`` upper bounds.
        target: The class ``c``.
        rivals: The classes ``j`` of the disjunction ``Y_j - Y_c >= margin``.
        n_outputs: Outputs to declare.
        margin: ``>= 0``; 0 writes ``(>= Y_j Y_c)``, more writes
            ``(>= (- Y_j Y_c) margin)``.
        exclude: ``[n, n_inputs]`` earlier counterexamples to keep away from (written
            as disjunctions over inputs, see the module docstring), or ``None``.
        delta: Exclusion distance per coordinate.
        separation: ``"every_coord"`` (the paper) or ``"any_coord"``.
        comment: Lines written as ``;`` comments at the top.
    """
    lo, hi = np.asarray(lo, np.float64).ravel(), np.asarray(hi, np.float64).ravel()
    rivals = sorted(set(int(j) for j in rivals))
    if lo.shape != hi.shape or not rivals or target in rivals or margin < 0:
        raise ValueError("write_vnnlib: mismatched box, no rivals, or margin < 0")
    fmt = format_number
    lines = [f"; {line}" for line in comment.splitlines()] if comment else []
    lines += ["; written by dalv (local robustness: SAT = a counterexample exists)", ""]
    lines += [f"(declare-const X_{i} Real)" for i in range(lo.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_outputs)]
    lines += ["", "; input box"]
    for i in range(lo.size):
        lines.append(f"(assert (>= X_{i} {fmt(lo[i])}))")
        lines.append(f"(assert (<= X_{i} {fmt(hi[i])}))")
    if exclude is not None and len(exclude):
        ex = np.asarray(exclude, np.float64).reshape(len(exclude), -1)
        lines += ["", f"; exclusions: |X_i - a_i| >= {fmt(delta)} ({separation})"]
        for k, a in enumerate(ex):
            lines.append(f"; excluded point {k}")
            atoms = [
                (f"(<= X_{i} {fmt(a[i] - delta)})", f"(>= X_{i} {fmt(a[i] + delta)})")
                for i in range(a.size)
            ]
            if separation == "every_coord":
                lines += [f"(assert (or {p} {q}))" for p, q in atoms]
            else:
                lines.append(
                    "(assert (or " + " ".join(p + " " + q for p, q in atoms) + "))"
                )
    lines += ["", "; output: some rival j beats class c"]
    if margin == 0:
        disj = [f"(and (>= Y_{j} Y_{target}))" for j in rivals]
    else:
        disj = [f"(and (>= (- Y_{j} Y_{target}) {fmt(margin)}))" for j in rivals]
    lines += ["(assert (or", *[f"    {d}" for d in disj], "))", ""]
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines))
