"""``dalv export-queries``: a tiny FV-Adv run's cycle, exported as a VNN-COMP folder,
is re-read by ``dalv verify`` and answered as FV-Adv answered, query by query."""

import csv

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("onnx")

import dalv  # noqa: E402
from dalv.augment import FVAdv  # noqa: E402
from dalv.cli import main  # noqa: E402
from dalv.config import ExperimentConfig, TrainConfig  # noqa: E402
from dalv.loop import run  # noqa: E402
from dalv.methods import Method  # noqa: E402
from dalv.queries import verify_files  # noqa: E402
from dalv.strategies import Random  # noqa: E402
from dalv.verify import Budget, Schedule  # noqa: E402
from dalv.verify.network import forward64  # noqa: E402
from dalv.verify.onnx_io import load_onnx  # noqa: E402
from dalv.verify.vnnlib import read_vnnlib  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory, digits):
    d = tmp_path_factory.mktemp("fv")
    cfg = ExperimentConfig(
        dataset="digits",
        n_initial=20,
        budget=2,
        n_cycles=1,
        candidates=60,
        train=TrainConfig(epochs=2),
    )
    # a small radius step, so that some boxes are proved empty before one holds
    aug = FVAdv(
        k=3,
        schedule=Schedule(step=0.01, max_eps=0.2),
        eps_default=0.001,
        budget=Budget(work=60),
    )
    run(Method(Random(), aug), digits, cfg, seed=0, out_dir=d / "run", progress=False)
    out = d / "bench"
    assert main(["export-queries", str(d / "run"), "--cycle", "0", str(out)]) == 0
    return d, out


def test_folder_layout_and_fvadv_witnesses_satisfy_their_files(exported):
    d, out = exported
    q = pd.read_csv(out / "queries.csv")
    assert len(q) > 0 and set(q["fvadv_answer"]) >= {"sat"}
    with open(out / "instances.csv") as f:
        inst = list(csv.reader(f))
    assert [r[1] for r in inst] == q["property"].tolist()
    pub = pd.read_csv(out / "results.csv")  # FV-Adv's answers, for bench_vnncomp.py
    assert pub["result"].tolist() == q["fvadv_answer"].tolist()
    net = load_onnx(out / inst[0][0])
    stored = dalv.loop.load_cycle(d / "run", 0)
    adv = stored["adv_x"].flatten(1).double().numpy()
    for r in q.itertuples():
        prop = read_vnnlib(out / r.property)
        assert (prop.target, prop.rivals, prop.margin) == (
            r.winner,
            (r.runner_up,),
            1e-3,
        )
        assert prop.n_excluded == r.n_exclusions
        if r.fvadv_answer == "sat":
            w = np.loadtxt(
                out / r.property.replace(".vnnlib", ".fvadv_witness.csv"), delimiter=","
            )
            assert any(np.array_equal(w, a) for a in adv)  # a stored example
            y = forward64(net.model, torch.from_numpy(w)[None]).numpy()
            assert prop.holds_at(w[None], y)[0]  # the file asks what FV-Adv asked
        if r.n_exclusions:
            box = read_vnnlib(out / r.box_property)
            assert box.n_excluded == 0 and np.array_equal(box.lo, prop.lo)


def test_dalv_verify_answers_every_query_as_fvadv_did(exported, one_thread):
    _, out = exported
    q = pd.read_csv(out / "queries.csv")
    answers = []
    for r in q.itertuples():
        res = verify_files(out / r.network, out / r.property, "milp", timeout=60)
        answers.append(res.status)
        if r.fvadv_answer == "unsat-or-unknown":
            assert res.status in ("unsat", "unknown", "timeout"), r.property
        else:
            assert res.status == r.fvadv_answer, (r.property, res.note)
    assert "unsat" in answers  # the schedule made FV-Adv prove some boxes empty


def test_a_run_that_is_not_fvadv_or_a_missing_cycle_is_one_line(exported, capsys):
    d, _ = exported
    assert main(["export-queries", str(d / "run"), "--cycle", "5", str(d / "x")]) == 2
    assert "no finished cycle 5" in capsys.readouterr().err
    assert main(["export-queries", str(d), "--cycle", "0", str(d / "x")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_lirpa_witnesses_on_exclusion_faces_are_accepted(exported, one_thread):
    """lirpa puts its points on dalv's exclusion faces, a hair inside the file's: they
    are moved onto the file's faces and re-checked, not dropped."""
    _, out = exported
    q = pd.read_csv(out / "queries.csv")
    q = q[(q.fvadv_answer == "sat") & (q.n_exclusions > 0)]
    got = [
        verify_files(out / n, out / p, "lirpa", timeout=60)
        for n, p in zip(q.network, q.property, strict=True)
    ]
    assert "unsat" not in {r.status for r in got}
    sat = [(r, p) for r, p in zip(got, q.property, strict=True) if r.status == "sat"]
    assert sat
    for r, p in sat:
        assert read_vnnlib(out / p).holds_at(r.x[None], r.y[None])[0]
