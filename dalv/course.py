"""The course around the chapters: parameters checked before work starts, committed
run summaries read back, and exercise checks.

Owns ``Param``, ``CHAPTERS``, ``ParameterError``, ``settings``, ``Settings``,
``committed``, ``estimate_seconds``, ``check_exercise`` and ``EXERCISES``. May import:
dalv.config, dalv.data, dalv.methods, dalv.metrics, dalv.attacks, dalv.verify, and
dalv.cli (for the verifier names, lazily).

Every chapter declares its parameters in a tagged ``parameters`` cell, typed and with a
comment each (what ``papermill --help-notebook`` lists). Parameters that a reader may
leave alone default to ``None``; ``settings("04", SMOKE=..., K=...)`` checks every value
given (one line saying the type and the allowed values, before any work starts) and
fills each ``None`` from the chapter's ``SMOKE`` settings or its teaching settings, so
an explicit parameter always wins over ``SMOKE``.

Chapters read back the committed summaries of their teaching runs (``reports/<preset>/
results.csv``, ``diversity.csv``: small tables, no checkpoints) instead of recomputing
them; ``RECOMPUTE = True`` recomputes, printing its expected time first.

The solutions of the exercises are in ``docs/solutions/``, not in the chapters; the
checks here recompute each answer from the reader's own objects (or the committed
tables), never from a stored number.
"""

from __future__ import annotations

import ast
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from dalv.config import ExperimentConfig, to_dict

# ---------------------------------------------------------------- parameters


class ParameterError(ValueError):
    """A chapter parameter of the wrong type or value; shown as one line in Jupyter."""

    def _render_traceback_(self) -> list[str]:  # IPython: no traceback, one line
        return [f"ParameterError: {self}"]


def _datasets() -> tuple[str, ...]:
    from dalv.data import DATASETS

    return tuple(sorted(DATASETS))


def _methods() -> tuple[str, ...]:
    from dalv.methods import method_names

    return tuple(method_names())


def _verifiers() -> tuple[str, ...]:
    from dalv.verify import VERIFIERS

    return tuple(VERIFIERS)


@dataclass(frozen=True)
class Param:
    """One chapter parameter.

    Args:
        kind: ``"bool"``, ``"int"``, ``"str"``, ``"list[int]"`` or ``"list[str]"``.
        teaching: the value at the teaching setting (what the chapter states its time
            for); ``None`` for a required explicit value.
        smoke: the value under ``SMOKE = True`` (default: the teaching value).
        choices: the allowed values (of a ``str`` or of a list's items), or a function
            returning them.
        minimum: the smallest allowed ``int`` (or list item).
    """

    kind: str
    teaching: Any = None
    smoke: Any = "same"
    choices: tuple | Callable[[], tuple] | None = None
    minimum: int | None = None

    def allowed(self) -> tuple | None:
        return self.choices() if callable(self.choices) else self.choices


_KINDS = ("bool", "int", "str", "list[int]", "list[str]")


def _describe(p: Param) -> str:
    what = {
        "bool": "True or False",
        "int": "an int",
        "str": "a str",
        "list[int]": "a list of ints",
        "list[str]": "a list of str",
    }[p.kind]
    if p.minimum is not None:
        what += f" >= {p.minimum}"
    allowed = p.allowed()
    if allowed is not None:
        what += " from " + ", ".join(repr(c) for c in allowed)
    return what


def _where(name: str) -> str:
    """Where a value is set (a list item's parameter is the whole list)."""
    whole = name.split("[")[0]
    return f"Set it in the parameters cell or with papermill -p {whole} VALUE"


def _item(name: str, p: Param, v: Any, kind: str) -> Any:
    """Check one scalar value (a parameter or a list item) of ``kind``."""
    bad = ParameterError(
        f"{name} must be {_describe(p)}; got {v!r} ({type(v).__name__}). "
        + _where(name)
    )
    if kind == "bool":
        if not isinstance(v, (bool, np.bool_)):
            raise bad
        return bool(v)
    if kind == "int":
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise bad
        v = int(v)
        if p.minimum is not None and v < p.minimum:
            raise bad
    elif kind == "str" and not isinstance(v, str):
        raise bad
    allowed = p.allowed()
    if allowed is not None and v not in allowed:
        near = difflib.get_close_matches(str(v), [str(c) for c in allowed], n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ParameterError(
            f"{name} must be {_describe(p)}; got {v!r}{hint}. " + _where(name)
        )
    return v


def check_value(name: str, p: Param, v: Any) -> Any:
    """``v`` checked (and a list given as a string, as papermill's ``-p`` passes one,
    parsed); raises ``ParameterError`` with one line otherwise."""
    if p.kind not in _KINDS:
        raise ValueError(f"unknown parameter kind {p.kind!r}")
    if not p.kind.startswith("list"):
        return _item(name, p, v, p.kind)
    item_kind = p.kind[5:-1]
    if isinstance(v, str):  # papermill -p SEEDS "[0, 1]" passes the text
        try:
            parsed = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            parsed = [v] if item_kind == "str" and "[" not in v else None
        if parsed is None:
            raise ParameterError(
                f"{name} must be {_describe(p)}, e.g. [0, 1]; could not read {v!r}. "
                "With papermill, use -y '"
                + name
                + ": [0, 1]' or -p "
                + name
                + ' "[0, 1]"'
            )
        v = parsed
    if isinstance(v, tuple):
        v = list(v)
    if not isinstance(v, list):
        v = [v] if item_kind == "int" and isinstance(v, (int, np.integer)) else v
    if not isinstance(v, list) or not v:
        raise ParameterError(
            f"{name} must be {_describe(p)} (not empty); got {v!r} ({type(v).__name__})"
        )
    out = [_item(f"{name}[{i}]", p, x, item_kind) for i, x in enumerate(v)]
    if len(set(out)) != len(out):
        raise ParameterError(f"{name} lists a value twice: {out!r}")
    return out


@dataclass(frozen=True)
class Settings:
    """A chapter's resolved parameters: ``s.DATASET``, ``s["K"]``, ``s.given``."""

    chapter: str
    values: dict[str, Any]
    given: frozenset = field(default_factory=frozenset)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("values", "given", "chapter"):
            raise AttributeError(name)
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __repr__(self) -> str:
        mode = "SMOKE" if self.values.get("SMOKE") else "teaching"
        shown = ", ".join(f"{k}={v!r}" for k, v in self.values.items() if k != "SMOKE")
        return f"chapter {self.chapter} ({mode} setting): {shown}"


_TEACH_01 = ["Random", "Entropy", "BADGE", "Core-set"]
_ARMS_04 = ["FVAAL-No-Adv", "FVAAL+FGSM-Adv", "FVAAL", "FVAAL+PGD-Adv"]

CHAPTERS: dict[str, dict[str, Param]] = {
    "01": {
        "SMOKE": Param("bool", False),
        "RECOMPUTE": Param("bool", False),
        "DATASET": Param("str", "mnist5k", "digits", _datasets),
        "METHODS": Param("list[str]", _TEACH_01, choices=_methods),
        "SEEDS": Param("list[int]", [0, 1, 2], [0], minimum=0),
        "CYCLES": Param("int", 20, 3, minimum=1),
        "BUDGET": Param("int", 50, 10, minimum=1),
        "INITIAL": Param("int", 50, 20, minimum=1),
        "CANDIDATES": Param("int", 10_000, 300, minimum=1),
        "RUNS_DIR": Param("str", "runs/01_baselines"),
    },
    "02": {
        "SMOKE": Param("bool", False),
        "RECOMPUTE": Param("bool", False),
        "DATASET": Param("str", "mnist5k", "digits", _datasets),
        "N_POOL": Param("int", 2000, 300, minimum=1),
        "EPOCHS": Param("int", 10, 3, minimum=1),
        "SEEDS": Param("list[int]", [0, 1, 2], [0], minimum=0),
        "CYCLES": Param("int", 20, 2, minimum=1),
        "BUDGET": Param("int", 50, 10, minimum=1),
        "INITIAL": Param("int", 50, 20, minimum=1),
        "CANDIDATES": Param("int", 10_000, 200, minimum=1),
        "RUNS_DIR": Param("str", "runs/02_gradient"),
    },
    "03": {
        "SMOKE": Param("bool", False),
        "DATASET": Param("str", "mnist5k", "digits", _datasets),
        "HIDDEN": Param("int", 128, 32, minimum=1),
        "N_TRAIN": Param("int", 2000, 500, minimum=1),
        "N_POOL": Param("int", 300, 40, minimum=1),
        "K": Param("int", 10, 4, minimum=1),
    },
    "04": {
        "SMOKE": Param("bool", False),
        "RECOMPUTE": Param("bool", False),
        "DATASET": Param("str", "mnist5k", "digits", _datasets),
        "SEEDS": Param("list[int]", [0, 1, 2, 3, 4], [0], minimum=0),
        "CYCLES": Param("int", 20, 2, minimum=1),
        "BUDGET": Param("int", 50, 10, minimum=1),
        "K": Param("int", 10, 3, minimum=1),
        "VERIFIER": Param("str", "milp", choices=_verifiers),
        "RUNS_DIR": Param("str", "runs/04_fvaal"),
    },
}
"""Each chapter's parameters: type, teaching value, SMOKE value, allowed values. The
chapters' parameters cells declare exactly these names (a test checks it)."""


def settings(chapter: str, **given: Any) -> Settings:
    """Check a chapter's parameters and fill the ones left at ``None``.

    Every value given (not ``None``) is checked first, whatever ``SMOKE`` says; then
    each ``None`` takes the chapter's ``SMOKE`` value (when ``SMOKE``) or its teaching
    value. Raises ``ParameterError`` (one line: the name, the type, the allowed values)
    on the first bad or unknown parameter.
    """
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; have {sorted(CHAPTERS)}")
    spec = CHAPTERS[chapter]
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ParameterError(
            f"chapter {chapter} has no parameter {unknown[0]}; its parameters are "
            + ", ".join(spec)
        )
    checked = {k: check_value(k, spec[k], v) for k, v in given.items() if v is not None}
    smoke = checked.get("SMOKE", spec["SMOKE"].teaching)
    values = {}
    for name, p in spec.items():
        if name in checked:
            values[name] = checked[name]
        else:
            fill = p.smoke if smoke and p.smoke != "same" else p.teaching
            values[name] = check_value(name, p, fill) if fill is not None else None
    return Settings(chapter, values, frozenset(checked))


# ---------------------------------------------------------------- read-back


def _root() -> Path:
    from dalv.paths import project_root

    root = project_root()
    return root if root is not None else Path.cwd()


def _same_experiment(stored: dict, cfg: ExperimentConfig) -> list[str]:
    """Fields of ``cfg`` that differ from a report's ``experiment`` record (the number
    of cycles may be smaller: cycle t does not depend on what comes after it)."""
    mine = to_dict(cfg)
    out = []
    for key, value in mine.items():
        if key == "device":
            continue
        theirs = stored.get(key)
        if key == "n_cycles":
            if theirs is None or value > theirs:
                out.append(f"n_cycles ({theirs} there, {value} here)")
        elif theirs != value:
            out.append(f"{key} ({theirs!r} there, {value!r} here)")
    return out


@dataclass(frozen=True)
class Committed:
    """A committed run summary read back, or why it could not be (``table`` None).

    ``stale`` names the methods whose committed rows carry another run identity
    (``config_hash``) than this dalv computes for them: rows made under an earlier
    definition of the method (a chapter says so beside its results).
    """

    table: pd.DataFrame | None
    source: str
    reason: str = ""
    stale: tuple[str, ...] = ()

    def note(self) -> str:
        """One line saying what was read back (or why not)."""
        if self.table is None:
            return self.reason
        line = (
            f"read back {self.source} ({len(self.table)} rows); RECOMPUTE = True "
            "recomputes them"
        )
        if self.stale:
            line += (
                f". Note: the rows of {', '.join(self.stale)} were computed under an "
                "earlier definition of the method (their config_hash differs from "
                "this dalv's)"
            )
        return line


def committed(
    preset: str,
    cfg: ExperimentConfig,
    methods: list,
    seeds: list[int],
    file: str = "results.csv",
) -> Committed:
    """The committed ``reports/<preset>/<file>`` rows for ``methods`` × ``seeds`` and
    the first ``cfg.n_cycles`` cycles, when the report ran exactly this experiment.

    Args:
        preset: the report folder under ``reports/``.
        cfg: the experiment the chapter would run.
        methods: ``Method`` objects or names (``dalv.methods.get``).
        seeds: the seeds wanted.
        file: ``results.csv`` (rows carry ``config_hash``) or another table of the
            report with ``method`` and ``seed`` columns (``diversity.csv``).

    Returns a ``Committed`` whose ``table`` is None (and ``reason`` says why) when the
    report is missing, ran another experiment, or lacks a method or a seed.
    """
    from dalv.loop import RunSpec
    from dalv.methods import get

    methods = [get(m) if isinstance(m, str) else m for m in methods]
    names = [m.name for m in methods]
    folder = _root() / "reports" / preset
    source = f"reports/{preset}/{file}"
    try:
        record = json.loads((folder / "config.json").read_text())
        table = pd.read_csv(folder / file)
    except (OSError, ValueError) as e:
        return Committed(None, source, f"{source} cannot be read ({type(e).__name__})")
    diff = _same_experiment(record.get("experiment", {}), cfg)
    if diff:
        return Committed(None, source, f"{source} ran another experiment: {diff[0]}")
    missing = [m for m in names if m not in set(table["method"])]
    missing += [f"seed {s}" for s in seeds if s not in set(table["seed"])]
    if missing:
        return Committed(None, source, f"{source} has no {missing[0]}")
    keep = table["method"].isin(names) & table["seed"].isin(seeds)
    if "cycle" in table:
        keep &= table["cycle"] < cfg.n_cycles
    out = table[keep].reset_index(drop=True)
    stale = []
    if "config_hash" in out:
        for m in methods:
            want = {RunSpec(m, cfg, s).hash for s in seeds}
            have = set(out.loc[out["method"] == m.name, "config_hash"])
            if have != want:
                stale.append(m.name)
    return Committed(out, source, stale=tuple(stale))


def estimate_seconds(
    preset: str, dataset: str, methods: list[str], seeds: list[int], n_cycles: int
) -> float | None:
    """Expected compute time of ``methods`` × ``seeds`` × ``n_cycles`` on ``dataset``,
    from the phase times the committed report recorded (one thread per run, on the
    machine that made it); None without a committed report of that dataset and those
    methods."""
    path = _root() / "reports" / preset / "results.csv"
    try:
        t = pd.read_csv(path)
    except (OSError, ValueError):
        return None
    phases = [c for c in ("query_s", "augment_s", "train_s", "eval_s") if c in t]
    t = t[
        t["method"].isin(methods) & (t["cycle"] < n_cycles) & (t["dataset"] == dataset)
    ]
    if t.empty or not phases:
        return None
    per_run = t.groupby(["method", "seed"])[phases].sum().sum(axis=1)
    per_method = per_run.groupby(level="method").mean()
    return float(per_method.sum() * len(seeds))


def announce(seconds: float | None, what: str) -> str:
    """The line a chapter prints before it recomputes."""
    if seconds is None:
        return f"recomputing {what}: no committed timing to estimate from"
    return (
        f"recomputing {what}: expect about {max(seconds, 1) / 60:.1f} min of compute "
        "(measured where the committed report was made; a busy laptop takes 2-5x)"
    )


# ---------------------------------------------------------------- exercises


@dataclass(frozen=True)
class Check:
    """The verdict of one exercise check."""

    exercise: str
    correct: bool
    message: str

    def __repr__(self) -> str:
        return f"{self.exercise}: {self.message}"

    def __bool__(self) -> bool:
        return self.correct


def _number(answer: Any, what: str) -> float | None:
    try:
        return float(answer)
    except (TypeError, ValueError):
        return None


def _run_aubc(table: pd.DataFrame, method: str, seed: int) -> float:
    from dalv.metrics import aubc

    run = table[(table["method"] == method) & (table["seed"] == seed)]
    if run.empty:
        raise ValueError(f"the table has no {method} run for seed {seed}")
    return aubc(run.sort_values("cycle")["test_acc"].to_numpy())


def _ex_01_1(answer, table):
    truth = _run_aubc(table, "Random", 0)
    v = _number(answer, "AUBC")
    if v is None:
        return False, f"give one number (a float), not {type(answer).__name__}"
    if abs(v - truth) <= 1e-6:
        return True, "correct"
    run = table[(table["method"] == "Random") & (table["seed"] == 0)]
    acc = run.sort_values("cycle")["test_acc"].to_numpy()
    if abs(v - float(acc.mean())) <= 1e-6:
        return False, "that is the plain mean of the accuracies: use the trapezoid rule"
    if abs(v - float(acc.sum())) <= 1e-6 or v > 1:
        return False, "an AUBC lies in [0, 1]: divide the area by T - 1"
    return False, f"not quite: off by {v - truth:+.4f}; check the formula's end points"


def _ex_01_2(answer, table):
    from dalv.metrics import paired_wins

    w = paired_wins(table, "BADGE", "Random")
    if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)):
        return False, "give a whole number of seeds (an int)"
    if int(answer) == int(w["wins"]):
        return True, "correct"
    return False, (
        f"not quite: compare the two methods' AUBCs seed by seed ({int(w['seeds'])} "
        "seeds), then count the seeds where BADGE's is larger"
    )


def _ex_02_1(answer, model, x):
    import torch

    from dalv.attacks import fgsm

    with torch.no_grad():
        pred = model(x).argmax(1)
    x_adv = fgsm(model, x, 0.05)
    with torch.no_grad():
        truth = float((model(x_adv).argmax(1) != pred).float().mean())
    v = _number(answer, "fraction")
    if v is None:
        return False, "give the fraction as one number in [0, 1]"
    if v > 1 and abs(v / 100 - truth) <= 1e-6:
        return False, "that is a percentage: give a fraction in [0, 1]"
    if abs(v - truth) <= 1e-6:
        return True, "correct"
    return False, (
        f"not quite (off by {v - truth:+.4f}): attack at ε = 0.05 against the model's "
        "own predictions, and count changed predictions over the whole pool"
    )


def _fgsm_targeted(model, x, eps, target):
    """The reference for exercise 02.2 (its worked solution is in docs/solutions)."""
    import torch
    import torch.nn.functional as F

    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), target, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return (x - eps * grad.sign()).clamp(0, 1).detach()


def _ex_02_2(answer):
    import torch

    if not callable(answer):
        return False, "pass your function itself: check_exercise('02.2', fgsm_targeted)"
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(16, 8),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 3),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.rand(6, 1, 4, 4, generator=g)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    want = _fgsm_targeted(net, x, 0.1, target)
    try:
        got = answer(net, x, 0.1, target)
    except Exception as e:  # the student's code: say what failed, in one line
        return False, f"your function raised {type(e).__name__}: {e}"
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return False, f"return a tensor shaped like x {tuple(x.shape)}"
    if torch.allclose(got, want, atol=1e-6):
        return True, "correct"
    away = _fgsm_targeted(net, x, -0.1, target)
    if torch.allclose(got, away, atol=1e-6):
        return False, "your step goes up the target's loss: step against the gradient"
    if got.min() < 0 or got.max() > 1:
        return False, "clip the result to [0, 1]"
    return False, "not quite: one signed step of size eps on the target class's loss"


def _ex_03_1(answer, model, x):
    from dalv.verify import interval_bounds

    x0 = x[:1]
    lo, hi = interval_bounds(model, x0, 0.01)
    pred = int(model(x0).argmax(1))
    truth = bool(all(lo[0, pred] > hi[0, j] for j in range(lo.shape[1]) if j != pred))
    if not isinstance(answer, (bool, np.bool_)):
        return False, "answer True (certified) or False (not certified)"
    if bool(answer) == truth:
        return True, "correct"
    return False, (
        "not quite: IBP certifies when the predicted logit's lower bound beats every "
        "other logit's upper bound on the box"
    )


def _ex_03_2(answer, model, x):
    from dalv.verify import certified_radius

    truth = float(certified_radius(model, x[:1], method="IBP", tol=1e-4)[0])
    v = _number(answer, "radius")
    if v is None:
        return False, "give the radius as one number"
    if abs(v - truth) <= 2e-3:
        return True, f"correct (bisection gives {truth:.4f})"
    if v > truth:
        return False, "too large: IBP cannot prove the prediction at that radius"
    return False, "too small: IBP still proves the prediction at a larger radius"


def _ex_04_1(answer, table):
    from dalv.metrics import paired_wins

    w = paired_wins(table, "FVAAL", "FVAAL+FGSM-Adv(10)")
    v = _number(answer, "difference")
    if v is None:
        return False, "give the mean paired difference as one number"
    if abs(v - w["mean_delta"]) <= 1e-6:
        return True, "correct"
    if abs(v + w["mean_delta"]) <= 1e-6:
        return False, "sign flipped: FV-Adv (FVAAL) minus FGSM-Adv"
    return False, "not quite: AUBC per seed first, then the mean of the differences"


def _ex_04_2(answer, table):
    from dalv.metrics import paired_wins

    w = paired_wins(table, "FVAAL", "FVAAL+PGD-Adv(10)")
    if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)):
        return False, "give a whole number of seeds (an int)"
    if int(answer) == int(w["wins"]):
        return True, "correct"
    return False, "not quite: count the seeds where FVAAL's AUBC beats PGD-Adv's"


EXERCISES: dict[str, tuple[Callable, str]] = {
    "01.1": (_ex_01_1, "the AUBC of Random, seed 0, by the trapezoid rule (table=)"),
    "01.2": (_ex_01_2, "seeds on which BADGE's AUBC beats Random's (table=)"),
    "02.1": (_ex_02_1, "fraction of the pool FGSM at ε = 0.05 flips (model=, x=)"),
    "02.2": (_ex_02_2, "a targeted FGSM: fgsm_targeted(model, x, eps, target)"),
    "03.1": (_ex_03_1, "is x[0] certified by IBP at ε = 0.01? (model=, x=)"),
    "03.2": (_ex_03_2, "IBP's certified radius of x[0], to 1e-3 (model=, x=)"),
    "04.1": (_ex_04_1, "mean paired Δ AUBC, FVAAL − FVAAL+FGSM-Adv(10) (table=)"),
    "04.2": (_ex_04_2, "seeds on which FVAAL beats FVAAL+PGD-Adv(10) (table=)"),
}
"""The exercise checks by number: the function and what the answer is."""


def check_exercise(exercise: str, answer: Any, **objects: Any) -> Check:
    """Check an exercise's answer; prints and returns ``"correct"`` or what is off.

    Args:
        exercise: its number, e.g. ``"04.1"`` (see ``EXERCISES``).
        answer: the reader's answer (a number, a bool or a function).
        **objects: the chapter's objects the check recomputes the answer from
            (``table=``, ``model=``, ``x=``), as each exercise says.
    """
    if exercise not in EXERCISES:
        raise ParameterError(
            f"no exercise {exercise!r}; the checks are " + ", ".join(EXERCISES)
        )
    fn, _ = EXERCISES[exercise]
    try:
        ok, message = fn(answer, **objects)
    except TypeError as e:
        raise ParameterError(
            f"exercise {exercise} checks {EXERCISES[exercise][1]}; {e}"
        ) from None
    check = Check(exercise, ok, message)
    print(repr(check))
    return check
