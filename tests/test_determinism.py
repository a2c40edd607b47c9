"""A seed fixes a run on any machine: the same cell run twice, the second time beside
processes that keep every core busy, writes the same ``results.csv`` byte for byte
(the wall-clock columns aside). With a wall clock deciding when a search stops, the
loaded run would find fewer examples and train on other data."""

import csv
import subprocess
import sys
from contextlib import contextmanager

import pytest

from dalv import data as dd
from dalv.config import ExperimentConfig, TrainConfig
from dalv.loop import run
from dalv.methods import get

TIMING = {"query_s", "augment_s", "train_s", "eval_s"}


def _rows_without_timing(path):
    """The file's rows as the exact strings written, timing columns dropped."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, name in enumerate(rows[0]) if name not in TIMING]
    return [[r[i] for i in keep] for r in rows]


@contextmanager
def _busy_cores(n):
    """``n`` processes spinning on the CPU while the block runs."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)
    ]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.parametrize("name", ["Random+FV-Adv(2)", "Random+PGD-Adv(3)"])
def test_a_cell_is_the_same_beside_a_cpu_burner(tmp_path, name, one_thread):
    cfg = ExperimentConfig(
        dataset="digits",
        n_initial=20,
        budget=6,
        n_cycles=2,
        candidates=200,
        train=TrainConfig(epochs=2),
    )
    digits = dd.load("digits")
    method = get(name)
    run(method, digits, cfg, seed=3, out_dir=tmp_path / "quiet", progress=False)
    with _busy_cores(3):
        run(method, digits, cfg, seed=3, out_dir=tmp_path / "loaded", progress=False)
    quiet = _rows_without_timing(tmp_path / "quiet" / "results.csv")
    loaded = _rows_without_timing(tmp_path / "loaded" / "results.csv")
    assert len(quiet) == 1 + cfg.n_cycles
    header = quiet[0]
    found = [float(r[header.index("aug_found")]) for r in quiet[1:]]
    assert sum(found) > 0  # the searches did work that a clock could have cut
    assert all(float(r[header.index("aug_timeouts")]) == 0 for r in quiet[1:])
    assert loaded == quiet
