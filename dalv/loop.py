"""The active-learning loop: one cycle (``run_cycle``), a whole run with checkpoints and
resume (``run``), and a grid of runs (``run_grid``).

Owns ``CycleState``, ``CycleRecord``, ``start``, ``run_cycle``, ``run``, ``run_grid``,
``load_cycle``, the random streams (``rng_for`` and friends) and the on-disk layout of a
run. May import config, data, models, train, strategies, augment and methods.

One cycle t (the paper's row t, measured after acquisition round t + 1):

1. the strategy scores with the previous model θ_{t−1} (θ_init at t = 0) and selects;
2. the oracle labels the selection (``ActivePool.label``);
3. the augmenter adds adversarial examples of the selection, labelled like their source;
   they accumulate across cycles;
4. a model is trained: protocol ``paper`` restarts from θ_init on acquired + adversarial
   examples (the initial set is left out, as the reference code does); protocol
   ``clean`` starts from a fresh seeded initialisation on every labelled + adversarial
   example;
5. test accuracy is recorded.

Randomness: each (seed, purpose, cycle) gets its own generator from
``np.random.SeedSequence``, so results do not depend on which other methods run or on
how many cycles a run has, and every method of a seed starts from the same initial set
and θ_init (a paired design).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from dalv.augment import AugmentedBatch
from dalv.config import ExperimentConfig, config_hash, experiment_from_dict, to_dict
from dalv.data import ActivePool, Dataset
from dalv.methods import Method, method_from_dict, method_to_dict
from dalv.models import build, resolve_device
from dalv.strategies import Selection
from dalv.train import evaluate, fit
from dalv.version import __version__

__all__ = [
    "CycleState",
    "CycleRecord",
    "start",
    "run_cycle",
    "run",
    "run_grid",
    "rng_for",
    "torch_seed",
    "cycle_rng",
    "fit_seed",
    "RunSpec",
    "CheckpointError",
    "load_checkpoint",
    "load_cycle",
]

log = logging.getLogger(__name__)

# Purposes of derived random streams.
_INIT_SET, _INIT_MODEL, _INIT_FIT, _CYCLE, _MODEL, _FIT = range(6)


class CheckpointError(RuntimeError):
    """A checkpoint or run folder cannot be used (corrupt, or written by another
    config)."""


def rng_for(seed: int, purpose: int, cycle: int = 0) -> np.random.Generator:
    """An independent NumPy generator for (seed, purpose, cycle)."""
    return np.random.default_rng(np.random.SeedSequence([seed, purpose, cycle]))


def torch_seed(seed: int, purpose: int, cycle: int = 0) -> int:
    """An independent torch seed for (seed, purpose, cycle)."""
    return int(np.random.SeedSequence([seed, purpose, cycle]).generate_state(1)[0])


def cycle_rng(seed: int, cycle: int) -> np.random.Generator:
    """The generator cycle ``cycle`` of seed ``seed`` hands to its strategy and
    augmenter."""
    return rng_for(seed, _CYCLE, cycle)


def fit_seed(seed: int, cycle: int) -> int:
    """The torch seed of cycle ``cycle``'s training run."""
    return torch_seed(seed, _FIT, cycle)


# ------------------------------------------------------------------ one cycle


@dataclass
class CycleState:
    """What a cycle reads and changes.

    Attributes:
        pool: labelled/unlabelled state over the training set (on the run's device).
        bank: every adversarial example added so far.
        theta_init: the model trained on the initial labelled set.
        model: the latest model (θ_{t−1} for the next cycle t).
        x_test, y_test: the test split, on the run's device.
        n_classes: classes of the dataset.
        cycle: the next cycle to run.
    """

    pool: ActivePool
    bank: AugmentedBatch
    theta_init: nn.Module
    model: nn.Module
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    cycle: int = 0


@dataclass(frozen=True)
class CycleRecord:
    """What one cycle did.

    Attributes:
        cycle: its index.
        selection: the strategy's choice (global indices and by-products).
        added: the adversarial examples it added.
        n_train: examples the model was trained on.
        test_acc: test accuracy of the model it trained.
        seconds: ``query``, ``augment``, ``train`` and ``eval`` wall-clock seconds.
    """

    cycle: int
    selection: Selection
    added: AugmentedBatch
    n_train: int
    test_acc: float
    seconds: dict[str, float]


def _check_size(data: Dataset, cfg: ExperimentConfig) -> None:
    n = len(data.x_train)
    if cfg.n_labels_needed > n:
        raise ValueError(
            f"the experiment needs {cfg.n_labels_needed} labels ({cfg.n_initial} "
            "initial "
            f"+ {cfg.n_cycles} cycles × {cfg.budget}) but {data.name} has {n} training "
            "rows; lower --cycles or --budget"
        )


def initial_labels(n_train: int, cfg: ExperimentConfig, seed: int) -> np.ndarray:
    """The seed's initial labelled set (sorted global indices), shared by every
    method."""
    rng = rng_for(seed, _INIT_SET)
    return np.sort(rng.choice(n_train, size=cfg.n_initial, replace=False))


def initial_model(
    data: Dataset, cfg: ExperimentConfig, seed: int, init_idx: np.ndarray, device
) -> nn.Module:
    """θ_init: a seeded initialisation trained on the initial labelled set."""
    model = build(
        cfg.model, data.input_shape, data.n_classes, seed=torch_seed(seed, _INIT_MODEL)
    ).to(device)
    t = torch.from_numpy(init_idx)
    x, y = data.x_train[t].to(device), data.y_train[t].to(device)
    return fit(model, x, y, cfg.train, seed=torch_seed(seed, _INIT_FIT))


def start(
    data: Dataset,
    cfg: ExperimentConfig,
    seed: int,
    *,
    device: torch.device | str | None = None,
    init: tuple[np.ndarray, nn.Module] | None = None,
) -> CycleState:
    """The state before cycle 0: the seed's initial labelled set and θ_init.

    Args:
        data: the dataset.
        cfg: the experiment.
        seed: fixes the initial set and θ_init (the same for every method).
        device: where tensors live (default: ``cfg.device``).
        init: a stored ``(initial indices, θ_init)`` to use instead of computing them.
    """
    if cfg.dataset != data.name:
        raise ValueError(f"config is for dataset {cfg.dataset!r} but got {data.name!r}")
    _check_size(data, cfg)
    device = resolve_device(cfg.device) if device is None else torch.device(device)
    if init is None:
        init_idx = initial_labels(len(data.x_train), cfg, seed)
        theta_init = initial_model(data, cfg, seed, init_idx, device)
    else:
        init_idx, theta_init = init
    pool = ActivePool(data.x_train.to(device), data.y_train.to(device))
    pool.label(init_idx, round=0)
    return CycleState(
        pool=pool,
        bank=AugmentedBatch.empty(data.input_shape, device),
        theta_init=theta_init,
        model=theta_init,
        x_test=data.x_test.to(device),
        y_test=data.y_test.to(device),
        n_classes=data.n_classes,
    )


def run_cycle(
    state: CycleState, method: Method, cfg: ExperimentConfig, *, seed: int
) -> CycleRecord:
    """Run cycle ``state.cycle`` of ``method``: select, label, augment, train, evaluate.

    Updates ``state`` (labels, adversarial bank, model, cycle) and returns what the
    cycle did. The cycle's randomness comes from ``cycle_rng(seed, t)`` and
    ``fit_seed(seed, t)`` only.
    """
    t, pool = state.cycle, state.pool
    rng = cycle_rng(seed, t)
    t0 = time.perf_counter()
    sel = method.strategy.select(
        state.model, pool, cfg.budget, rng=rng, candidates=cfg.candidates
    )
    t1 = time.perf_counter()
    y_sel = pool.label(sel.idx, round=t + 1)
    x_sel = pool.x[torch.from_numpy(sel.idx)]
    added = method.augmenter.generate(
        state.model, x_sel, y_sel, source_idx=sel.idx, hints=sel, rng=rng
    )
    t2 = time.perf_counter()
    state.bank = state.bank + added
    if cfg.protocol == "paper":
        train_idx = pool.acquired_idx
        model = copy.deepcopy(state.theta_init)
    else:
        train_idx = pool.labeled_idx
        shape, seed_t = tuple(pool.x.shape[1:]), torch_seed(seed, _MODEL, t)
        model = build(cfg.model, shape, state.n_classes, seed=seed_t).to(pool.x.device)
    ti = torch.from_numpy(train_idx)
    x_fit = torch.cat([pool.x[ti], state.bank.x])
    y_fit = torch.cat([pool.y[ti], state.bank.y])
    fit(model, x_fit, y_fit, cfg.train, seed=fit_seed(seed, t))
    t3 = time.perf_counter()
    acc = evaluate(model, state.x_test, state.y_test)
    t4 = time.perf_counter()
    state.model, state.cycle = model, t + 1
    seconds = {"query": t1 - t0, "augment": t2 - t1, "train": t3 - t2, "eval": t4 - t3}
    return CycleRecord(t, sel, added, len(x_fit), acc, seconds)


# ------------------------------------------------------------------ run folders


@dataclass(frozen=True)
class RunSpec:
    """Everything that fixes one run: written as ``config.json`` beside its results."""

    method: Method
    config: ExperimentConfig
    seed: int

    def to_dict(self) -> dict:
        return {
            "method": method_to_dict(self.method),
            "experiment": to_dict(self.config),
            "seed": self.seed,
        }

    @property
    def hash(self) -> str:
        """Identifies the run's cycles: everything but the number of cycles (cycle t is
        the same whatever comes after it, so a finished run can be extended)."""
        d = self.to_dict()
        d["experiment"] = {k: v for k, v in d["experiment"].items() if k != "n_cycles"}
        d["method"] = {k: v for k, v in d["method"].items() if k != "name"}
        return config_hash(d)

    @staticmethod
    def from_dict(d: dict) -> RunSpec:
        return RunSpec(
            method_from_dict(d["method"]),
            experiment_from_dict(d["experiment"]),
            int(d["seed"]),
        )


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; use the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_csv(table: pd.DataFrame, path: Path) -> None:
    _atomic_write(Path(path), lambda tmp: table.to_csv(tmp, index=False))


def write_json(obj: dict, path: Path) -> None:
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")

    _atomic_write(Path(path), w)


def _save_torch(obj: dict, path: Path) -> None:
    _atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: Path) -> dict:
    """Load one checkpoint; any failure becomes a ``CheckpointError`` saying what to
    do."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        if path.name == "init.pt":
            advice = (
                "Delete it: it is recomputed from the seed, and the finished cycles "
                "are kept."
            )
        else:
            advice = (
                "Delete it and the cycle_*.pt files after it to recompute from that "
                "cycle; earlier cycles are kept."
            )
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(e).__name__}). {advice}"
        ) from None


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} ({a!r} there, {b!r} now)")
    return out


def _folder_threads(out: Path, old: dict) -> set[int]:
    """The torch thread counts a run folder's finished work was computed with."""
    done = (out / "checkpoints" / "init.pt", out / "results.csv")
    if not any(p.exists() for p in done):
        return set()  # nothing computed yet: any thread count may start it
    if "threads" in old:
        return {int(old["threads"])}
    try:  # folders written before config.json recorded it: the rows say
        return {int(t) for t in pd.read_csv(out / "results.csv")["threads"].unique()}
    except (OSError, ValueError, KeyError):
        return set()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """What a run's floats depend on besides its configuration and thread count.

    Two CPUs can take different vector kernels and BLAS code paths for the same
    operation, and libraries change their arithmetic between versions, so the same
    seed can give rows that differ in the last bits, and training then carries the
    difference on (a rerun of ``paper-mnist``'s seed 0 on another machine differed in
    12 of 17 methods by at most 0.0011 AUBC where the configuration was unchanged:
    ``reports/benchmarks/rerun_paper-mnist_seed0.txt``). Recorded in each run's
    ``config.json``; not part of the configuration hash.
    """
    out = {
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


def _check_folder(out: Path, spec: RunSpec) -> None:
    cfg_path = out / "config.json"
    threads = torch.get_num_threads()
    record = {
        **spec.to_dict(),
        "hash": spec.hash,
        "dalv_version": __version__,
        # float sums in training depend on the thread count: one count per folder
        "threads": threads,
        # and on the machine: the one that started the folder is kept
        "machine": machine(),
    }
    if not cfg_path.exists():
        write_json(record, cfg_path)
        return
    try:
        old = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{cfg_path} is not valid JSON ({e}); fix or delete it"
        ) from None
    if old.get("hash") != spec.hash:
        changed = _differences(
            {k: old.get(k) for k in ("method", "experiment", "seed")}, spec.to_dict()
        )
        what = "; ".join(changed[:4]) or "the configuration format"
        raise CheckpointError(
            f"{out} holds a run with another configuration (changed: {what}); choose "
            "another --out folder, or delete that one to start over"
        )
    before = _folder_threads(out, old)
    if before and before != {threads}:
        n = ", ".join(str(t) for t in sorted(before))
        raise CheckpointError(
            f"{out} was computed with {n} torch thread(s) and this process uses "
            f"{threads}: results differ between thread counts, so the seed would not "
            f"reproduce its rows. Call torch.set_num_threads({min(before)}) to read it "
            "back or extend it, or choose another folder"
        )
    here = record["machine"]
    if before:  # keep where the finished work was computed (None: not recorded)
        there = record["machine"] = old.get("machine")
        changed = sorted(
            k for k in here if isinstance(there, dict) and there.get(k) != here[k]
        )
        if changed:
            log.warning(
                "%s was started on another machine (%s differ: %s there, %s here); "
                "its finished cycles are read back as they are, but cycles computed "
                "here may differ in the last bits from what that machine would give",
                out,
                ", ".join(changed),
                ", ".join(str(there.get(k)) for k in changed),
                ", ".join(str(here[k]) for k in changed),
            )
    if (
        old != record
    ):  # more cycles than before, or a newer dalv: keep the record current
        write_json(record, cfg_path)


def _replay(state: CycleState, ckpt_dir: Path, n_cycles: int) -> list[dict]:
    """Apply the finished cycles stored in ``ckpt_dir``; return their results rows."""
    rows, device = [], state.pool.x.device
    while state.cycle < n_cycles:
        path = ckpt_dir / f"cycle_{state.cycle:03d}.pt"
        if not path.exists():
            break
        st = load_checkpoint(path)
        t = state.cycle
        state.pool.label(np.flatnonzero(st["labeled_at"] == t + 1), round=t + 1)
        stored = AugmentedBatch(
            st["adv_x"].to(device), st["adv_y"].to(device), st["adv_src"]
        )
        state.bank = state.bank + stored
        model = copy.deepcopy(state.theta_init)
        model.load_state_dict(st["model"])
        state.model, state.cycle = model, t + 1
        rows.append(st["row"])
    return rows


def _initial(data, cfg, seed, device, ckpt_dir: Path | None) -> CycleState:
    init_path = ckpt_dir / "init.pt" if ckpt_dir else None
    if init_path is not None and init_path.exists():
        st = load_checkpoint(init_path)
        model = build(cfg.model, data.input_shape, data.n_classes, seed=0).to(device)
        model.load_state_dict(st["model"])
        return start(data, cfg, seed, device=device, init=(st["init_idx"], model))
    state = start(data, cfg, seed, device=device)
    if init_path is not None:
        init = {
            "init_idx": state.pool.labeled_idx,
            "model": state.theta_init.state_dict(),
        }
        _save_torch(init, init_path)
    return state


def run(
    method: Method,
    data: Dataset,
    cfg: ExperimentConfig,
    *,
    seed: int,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run one active-learning experiment; returns its tidy table (one row per cycle).

    With ``out_dir``, the run writes ``config.json``, ``results.csv`` (rewritten
    atomically after every cycle) and ``checkpoints/cycle_NNN.pt`` (model, labelled set
    and that cycle's adversarial examples). Called again with the same arguments, it
    resumes after the last finished cycle and ends with the same table (timing columns
    aside); called with more cycles, it extends the run.

    Raises:
        ValueError: the dataset is too small for the requested cycles × budget.
        CheckpointError: the folder belongs to another configuration, or a checkpoint is
            corrupt (the message says which file to delete).
    """
    if cfg.dataset != data.name:
        raise ValueError(f"config is for dataset {cfg.dataset!r} but got {data.name!r}")
    _check_size(data, cfg)
    device = resolve_device(cfg.device)
    spec = RunSpec(method, cfg, seed)
    out = Path(out_dir) if out_dir is not None else None
    ckpt_dir = out / "checkpoints" if out else None
    if out:
        _check_folder(out, spec)
    state = _initial(data, cfg, seed, device, ckpt_dir)
    rows = _replay(state, ckpt_dir, cfg.n_cycles) if ckpt_dir else []
    if 0 < state.cycle < cfg.n_cycles:
        log.info("resuming %s seed %d at cycle %d", method.name, seed, state.cycle)
    desc = f"{method.name} · seed {seed}"
    bar = _progress(
        range(state.cycle, cfg.n_cycles), progress, desc, cfg.n_cycles, state.cycle
    )
    for _ in bar:
        rec = run_cycle(state, method, cfg, seed=seed)
        row = _row(rec, state, data, method, cfg, spec, device)
        rows.append(row)
        if ckpt_dir is not None:
            ckpt = {
                "model": state.model.state_dict(),
                "labeled_at": state.pool.labeled_at.copy(),
                "adv_x": rec.added.x.cpu(),
                "adv_y": rec.added.y.cpu(),
                "adv_src": rec.added.source_idx,
                "row": row,
            }
            _save_torch(ckpt, ckpt_dir / f"cycle_{rec.cycle:03d}.pt")
            write_csv(pd.DataFrame(rows), out / "results.csv")
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(acc=f"{rec.test_acc:.3f}", adv=len(state.bank))
    table = pd.DataFrame(rows)
    if out is not None:
        write_csv(table, out / "results.csv")
    return table


def _row(rec, state, data, method, cfg, spec, device) -> dict[str, Any]:
    row = {
        "dataset": data.name,
        "method": method.name,
        "seed": spec.seed,
        "cycle": rec.cycle,
        "n_labeled": state.pool.n_labeled,
        "n_train": rec.n_train,
        "n_adv": len(state.bank),
        "n_adv_new": len(rec.added),
        "test_acc": rec.test_acc,
        **{f"{phase}_s": s for phase, s in rec.seconds.items()},
        "protocol": cfg.protocol,
        "config_hash": spec.hash,
        # float sums in training depend on the thread count: record it
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    row.update({f"aug_{k}": v for k, v in rec.added.stats.items()})
    return row


def load_cycle(run_dir: str | os.PathLike, cycle: int) -> dict:
    """Read back one finished cycle of a run folder.

    Returns a dict with ``model`` (θ_cycle, the model trained in that cycle, on the
    CPU), ``previous`` (the model that cycle queried and attacked with: θ_{cycle−1}, or
    θ_init for cycle 0), ``adv_x`` [m, *shape], ``adv_y`` [m], ``adv_src`` [m] (the
    adversarial examples added in that cycle), ``labeled_at`` and ``row`` (the results
    row), plus ``spec`` (the RunSpec).
    """
    run_dir = Path(run_dir)
    spec = RunSpec.from_dict(json.loads((run_dir / "config.json").read_text()))
    ckpts = run_dir / "checkpoints"
    st = load_checkpoint(ckpts / f"cycle_{cycle:03d}.pt")
    init = load_checkpoint(ckpts / "init.pt")
    shape = tuple(st["adv_x"].shape[1:])
    n_classes = init["model"][next(reversed(init["model"]))].shape[0]

    def model_from(state_dict):
        m = build(spec.config.model, shape, n_classes, seed=0)
        m.load_state_dict(state_dict)
        return m.eval()

    prev = init if cycle == 0 else load_checkpoint(ckpts / f"cycle_{cycle - 1:03d}.pt")
    return {
        **st,
        "model": model_from(st["model"]),
        "previous": model_from(prev["model"]),
        "spec": spec,
    }


def _progress(it: Iterable, on: bool, desc: str, total: int, initial: int):
    """A progress bar over the cycles still to run (none for a finished run)."""
    if not on or initial >= total:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, initial=initial, leave=False, unit="cycle")


def run_grid(
    methods: Sequence[Method],
    data: Dataset,
    cfg: ExperimentConfig,
    *,
    seeds: Sequence[int],
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every (method, seed) in turn (finished ones are read back, not rerun).

    Layout: ``out_dir/<method slug>/seed_<s>/`` per run and ``out_dir/results.csv`` with
    every row.
    """
    tables = []
    out = Path(out_dir) if out_dir is not None else None
    for m in methods:
        for s in seeds:
            run_dir = out / m.slug / f"seed_{s}" if out else None
            tables.append(run(m, data, cfg, seed=s, out_dir=run_dir, progress=progress))
            if out is not None:
                write_csv(pd.concat(tables, ignore_index=True), out / "results.csv")
    return pd.concat(tables, ignore_index=True)
