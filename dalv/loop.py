"""The active-learning loop, with per-cycle checkpoints and resume.

Owns ``run`` (one method × seed), ``run_grid`` (methods × seeds), ``rng_for`` and the
on-disk layout of a run. May import everything above it: config, data, models, train,
strategies, augment, methods, metrics.

One cycle t (the paper's row t, measured after acquisition round t + 1):

1. the strategy scores with the previous model θ_{t−1} (θ_init at t = 0) and selects;
2. the oracle labels the selection (``ActivePool.label``);
3. the augmenter adds adversarial examples of the selection, labelled like their source;
   they accumulate across cycles;
4. a model is trained: protocol ``paper`` restarts from θ_init on acquired + adversarial
   examples (the initial set is left out, as the reference code does); protocol ``clean``
   starts from a fresh seeded initialisation on every labelled + adversarial example;
5. test accuracy is recorded, a checkpoint written and the table rewritten atomically.

Randomness: each (seed, purpose, cycle) gets its own generator from ``np.random.SeedSequence``,
so results do not depend on which other methods run, and every method of a seed starts from
the same initial set and θ_init (a paired design).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from dalv import __version__
from dalv.augment import AugmentedBatch
from dalv.config import ExperimentConfig, config_hash, experiment_from_dict, to_dict
from dalv.data import ActivePool, Dataset
from dalv.methods import Method, method_from_dict, method_to_dict
from dalv.models import build, resolve_device
from dalv.train import evaluate, fit

__all__ = [
    "run",
    "run_grid",
    "rng_for",
    "torch_seed",
    "cycle_rng",
    "fit_seed",
    "RunSpec",
    "CheckpointError",
    "load_checkpoint",
    "initial_state",
    "load_cycle",
    "with_candidates",
]

log = logging.getLogger(__name__)

# Purposes of derived random streams.
_INIT_SET, _INIT_MODEL, _INIT_FIT, _CYCLE, _MODEL, _FIT = range(6)


class CheckpointError(RuntimeError):
    """A checkpoint or run folder cannot be used (corrupt, or written by another config)."""


def rng_for(seed: int, purpose: int, cycle: int = 0) -> np.random.Generator:
    """An independent NumPy generator for (seed, purpose, cycle)."""
    return np.random.default_rng(np.random.SeedSequence([seed, purpose, cycle]))


def torch_seed(seed: int, purpose: int, cycle: int = 0) -> int:
    """An independent torch seed for (seed, purpose, cycle)."""
    return int(np.random.SeedSequence([seed, purpose, cycle]).generate_state(1)[0])


def cycle_rng(seed: int, cycle: int) -> np.random.Generator:
    """The generator cycle ``cycle`` of seed ``seed`` hands to its strategy and augmenter."""
    return rng_for(seed, _CYCLE, cycle)


def fit_seed(seed: int, cycle: int) -> int:
    """The torch seed of cycle ``cycle``'s training run."""
    return torch_seed(seed, _FIT, cycle)


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
        return config_hash(self.to_dict())

    @staticmethod
    def from_dict(d: dict) -> "RunSpec":
        return RunSpec(
            method_from_dict(d["method"]),
            experiment_from_dict(d["experiment"]),
            int(d["seed"]),
        )


# ------------------------------------------------------------------ atomic files


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
    """Load one checkpoint, turning any failure into a ``CheckpointError`` that says what to do."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(e).__name__}: {str(e)[:100]}). Delete it "
            f"and any later cycle_*.pt files to recompute from that cycle; earlier cycles are "
            f"kept."
        ) from None


# ------------------------------------------------------------------ the loop


def with_candidates(strategy, n: int | None):
    """``strategy`` with every ``candidates`` field (nested ones too) set to ``n``.

    The experiment's ``candidates`` is the one setting of the candidate-pool size in a run;
    a strategy's own field only matters when it is used on its own.
    """
    import dataclasses

    if not dataclasses.is_dataclass(strategy):
        return strategy
    changes = {}
    for f in dataclasses.fields(strategy):
        v = getattr(strategy, f.name)
        if f.name == "candidates":
            changes[f.name] = n
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            changes[f.name] = with_candidates(v, n)
        elif isinstance(v, tuple) and any(dataclasses.is_dataclass(e) for e in v):
            changes[f.name] = tuple(
                with_candidates(e, n)
                if dataclasses.is_dataclass(e)
                else (
                    tuple(with_candidates(i, n) for i in e)
                    if isinstance(e, tuple)
                    else e
                )
                for e in v
            )
    return dataclasses.replace(strategy, **changes) if changes else strategy


def _check_size(data: Dataset, cfg: ExperimentConfig) -> None:
    n = len(data.x_train)
    if cfg.n_labels_needed > n:
        raise ValueError(
            f"the experiment needs {cfg.n_labels_needed} labels "
            f"({cfg.n_initial} initial + {cfg.n_cycles} cycles × {cfg.budget}) but "
            f"{data.name} has {n} training rows; lower --cycles or --budget"
        )


def initial_state(
    data: Dataset, cfg: ExperimentConfig, seed: int, device: torch.device
) -> tuple[np.ndarray, nn.Module]:
    """The seed's initial labelled set and θ_init (shared by every method of the seed)."""
    _check_size(data, cfg)
    n = len(data.x_train)
    init_idx = np.sort(
        rng_for(seed, _INIT_SET).choice(n, size=cfg.n_initial, replace=False)
    )
    model = build(
        cfg.model, data.input_shape, data.n_classes, seed=torch_seed(seed, _INIT_MODEL)
    ).to(device)
    t = torch.from_numpy(init_idx)
    fit(
        model,
        data.x_train[t].to(device),
        data.y_train[t].to(device),
        cfg.train,
        seed=torch_seed(seed, _INIT_FIT),
    )
    return init_idx, model


def _check_folder(out: Path, spec: RunSpec) -> None:
    cfg_path = out / "config.json"
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(
                f"{cfg_path} is not valid JSON ({e}); fix or delete it"
            ) from None
        if old.get("hash") != spec.hash:
            raise CheckpointError(
                f"{out} holds a run with a different configuration (hash {old.get('hash')} vs "
                f"{spec.hash}); choose another --out folder or delete that one"
            )
    else:
        write_json(
            {**spec.to_dict(), "hash": spec.hash, "dalv_version": __version__}, cfg_path
        )


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

    With ``out_dir``, the run writes ``config.json``, ``results.csv`` (rewritten atomically
    after every cycle) and ``checkpoints/cycle_NNN.pt`` (model, labelled set and that
    cycle's adversarial examples). Called again with the same arguments, it resumes after the
    last finished cycle and ends with the same table (timing columns aside).

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

    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)

    init_path = ckpt_dir / "init.pt" if ckpt_dir else None
    if init_path is not None and init_path.exists():
        st = load_checkpoint(init_path)
        init_idx = st["init_idx"]
        theta_init = build(cfg.model, data.input_shape, data.n_classes, seed=0).to(
            device
        )
        theta_init.load_state_dict(st["model"])
    else:
        init_idx, theta_init = initial_state(data, cfg, seed, device)
        if init_path is not None:
            _save_torch(
                {"init_idx": init_idx, "model": theta_init.state_dict()}, init_path
            )

    pool = ActivePool(x_train, y_train)
    pool.label(init_idx, round=0)
    bank = AugmentedBatch.empty(data.input_shape)
    bank = AugmentedBatch(bank.x.to(device), bank.y.to(device), bank.source_idx)
    rows: list[dict] = []
    model = theta_init

    # Resume: replay finished cycles from their checkpoints.
    start = 0
    while ckpt_dir is not None and (ckpt_dir / f"cycle_{start:03d}.pt").exists():
        st = load_checkpoint(ckpt_dir / f"cycle_{start:03d}.pt")
        pool.label(np.flatnonzero(st["labeled_at"] == start + 1), round=start + 1)
        bank = bank + AugmentedBatch(
            st["adv_x"].to(device), st["adv_y"].to(device), st["adv_src"]
        )
        rows.append(st["row"])
        model = copy.deepcopy(theta_init)
        model.load_state_dict(st["model"])
        start += 1
    if start and start < cfg.n_cycles:
        log.info("resuming %s seed %d at cycle %d", method.name, seed, start)

    strategy = with_candidates(method.strategy, cfg.candidates)
    bar = _progress(
        range(start, cfg.n_cycles),
        progress,
        f"{method.name} · seed {seed}",
        cfg.n_cycles,
        start,
    )
    for t in bar:
        rng = cycle_rng(seed, t)
        t0 = time.perf_counter()
        sel = strategy.select(model, pool, cfg.budget, rng=rng)
        t1 = time.perf_counter()
        y_sel = pool.label(sel.idx, round=t + 1)
        idx_t = torch.from_numpy(sel.idx)
        batch = method.augmenter.generate(
            model, pool.x[idx_t], y_sel, source_idx=sel.idx, hints=sel, rng=rng
        )
        t2 = time.perf_counter()
        bank = bank + batch

        if cfg.protocol == "paper":
            train_idx = pool.acquired_idx
            model = copy.deepcopy(theta_init)
        else:
            train_idx = pool.labeled_idx
            model = build(
                cfg.model,
                data.input_shape,
                data.n_classes,
                seed=torch_seed(seed, _MODEL, t),
            ).to(device)
        ti = torch.from_numpy(train_idx)
        x_fit = torch.cat([pool.x[ti], bank.x])
        y_fit = torch.cat([pool.y[ti], bank.y])
        fit(model, x_fit, y_fit, cfg.train, seed=fit_seed(seed, t))
        t3 = time.perf_counter()
        acc = evaluate(model, x_test, y_test)
        t4 = time.perf_counter()

        row = {
            "dataset": data.name,
            "method": method.name,
            "seed": seed,
            "cycle": t,
            "n_labeled": pool.n_labeled,
            "n_train": len(x_fit),
            "n_adv": len(bank),
            "n_adv_new": len(batch),
            "test_acc": acc,
            "query_s": t1 - t0,
            "augment_s": t2 - t1,
            "train_s": t3 - t2,
            "eval_s": t4 - t3,
            "protocol": cfg.protocol,
            "config_hash": spec.hash,
            # float sums in training depend on the thread count: record it
            "threads": torch.get_num_threads(),
            "device": str(device),
        }
        row.update({f"aug_{k}": v for k, v in batch.stats.items()})
        rows.append(row)
        if ckpt_dir is not None:
            _save_torch(
                {
                    "model": model.state_dict(),
                    "labeled_at": pool.labeled_at.copy(),
                    "adv_x": batch.x.cpu(),
                    "adv_y": batch.y.cpu(),
                    "adv_src": batch.source_idx,
                    "row": row,
                },
                ckpt_dir / f"cycle_{t:03d}.pt",
            )
            write_csv(pd.DataFrame(rows), out / "results.csv")
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(acc=f"{acc:.3f}", adv=len(bank))

    table = pd.DataFrame(rows)
    if out is not None:
        write_csv(table, out / "results.csv")
    return table


def load_cycle(run_dir: str | os.PathLike, cycle: int) -> dict:
    """Read back one finished cycle of a run folder.

    Returns a dict with ``model`` (θ_cycle, the model trained in that cycle, on the CPU),
    ``adv_x`` [m, *shape], ``adv_y`` [m], ``adv_src`` [m] (the adversarial examples added in
    that cycle), ``labeled_at`` and ``row`` (the results row), plus ``spec`` (the RunSpec).
    """
    run_dir = Path(run_dir)
    spec = RunSpec.from_dict(json.loads((run_dir / "config.json").read_text()))
    st = load_checkpoint(run_dir / "checkpoints" / f"cycle_{cycle:03d}.pt")
    init = load_checkpoint(run_dir / "checkpoints" / "init.pt")
    shape = tuple(st["adv_x"].shape[1:])
    n_classes = init["model"][next(reversed(init["model"]))].shape[0]
    model = build(spec.config.model, shape, n_classes, seed=0)
    model.load_state_dict(st["model"])
    model.eval()
    return {**st, "model": model, "spec": spec}


def _progress(it: Iterable, on: bool, desc: str, total: int, initial: int):
    if not on:
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
