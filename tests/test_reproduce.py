from dataclasses import replace

import pandas as pd
import pytest

from dalv import reproduce as rp
from dalv.config import ExperimentConfig, TrainConfig
from dalv.methods import get
from dalv.verify import Budget, MarabouVerifier, MilpVerifier


@pytest.fixture
def tiny_preset():
    cfg = ExperimentConfig(
        dataset="digits",
        n_initial=20,
        budget=10,
        n_cycles=2,
        candidates=200,
        train=TrainConfig(epochs=2),
    )
    return rp.Preset("tiny", cfg, (get("Random"), get("BADGE")), (0,), "test")


def test_cells_run_skip_and_resume(tmp_path, tiny_preset, monkeypatch):
    todo = rp.cells(tiny_preset, seeds=[0, 1], runs=tmp_path)
    assert len(todo) == 4
    rp.run_cells(todo, jobs=1, progress=False)
    full = rp.collect(todo)
    assert len(full) == 4 * 2
    # one cell lost its results (killed before it finished): only that cell runs again
    victim = todo[3]
    (tmp_path / "BADGE" / "seed_1" / "results.csv").unlink()
    ran = []
    monkeypatch.setattr(rp, "run_cell", lambda c: ran.append(c) or rp.__dict__)
    rp.run_cells(todo, jobs=1, progress=False)
    assert [(c.method.name, c.seed) for c in ran] == [(victim.method.name, victim.seed)]


def test_submitit_local_executor_path(tmp_path, tiny_preset):
    pytest.importorskip("submitit")
    todo = rp.cells(tiny_preset, seeds=[0], runs=tmp_path / "runs")
    rp.run_cells(
        todo, executor="submitit-local", log_dir=tmp_path / "logs", progress=False
    )
    t = rp.collect(todo)
    assert sorted(t.method.unique()) == ["BADGE", "Random"] and len(t) == 4
    assert any((tmp_path / "logs").iterdir())  # a log per cell


def _fail_once(cell):
    """A cell function that fails the first time each cell runs (a node dying
    mid-cell)."""
    from pathlib import Path

    marker = Path(cell.out_dir).parent / f"failed_once_{cell.seed}"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        raise RuntimeError("simulated node failure")
    return rp.run_cell(cell)


def test_submitit_resubmits_failed_cells(tmp_path, tiny_preset):
    pytest.importorskip("submitit")
    import sys

    # the job processes cannot import this test module: ship _fail_once by value
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    todo = rp.cells(tiny_preset, seeds=[0], runs=tmp_path / "runs")
    rp._run_submitit(
        todo,
        tmp_path / "logs",
        cluster="local",
        fn=_fail_once,
        params=rp.slurm_parameters({"partition": "debug", "timeout_min": 10}),
    )
    assert len(rp.collect(todo)) == 4  # both cells finished on their second submission
    assert len(list((tmp_path / "runs").glob("*/failed_once_0"))) == 2
    with pytest.raises(RuntimeError, match="still fail after 0 resubmissions"):
        rp._run_submitit(
            rp.cells(tiny_preset, seeds=[1], runs=tmp_path / "r2", data_root=None),
            tmp_path / "logs2",
            cluster="local",
            fn=_fail_once,
            retries=0,
        )


def test_slurm_parameters_and_bad_ones(tmp_path, tiny_preset):
    p = rp.slurm_parameters({"partition": "gpu", "gpus_per_node": 1, "mem_gb": 16})
    assert (
        p["slurm_partition"] == "gpu" and p["gpus_per_node"] == 1 and p["mem_gb"] == 16
    )
    assert p["timeout_min"] == 24 * 60  # a default kept
    pytest.importorskip("submitit")
    todo = rp.cells(tiny_preset, seeds=[0], runs=tmp_path / "runs")
    with pytest.raises(ValueError, match="bad Slurm parameter.*partitionn"):
        rp.run_cells(
            todo,
            executor="submitit-local",
            log_dir=tmp_path / "logs",
            slurm={"partitionn": "gpu"},
        )
    with pytest.raises(ValueError, match="choose one of: local, slurm"):
        rp.run_cells(todo, executor="kubernetes")
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_unknown_preset_is_refused_with_the_list(tmp_path):
    with pytest.raises(
        ValueError, match="choose one of: smoke, baselines, .*demo, mnist5k"
    ):
        rp.preset("nope")
    with pytest.raises(ValueError, match="choose one of: smoke"):
        rp.reproduce("nope", runs=str(tmp_path / "r"), out=str(tmp_path / "o"))
    assert not (tmp_path / "r").exists()


def test_every_preset_holds_registered_methods():
    for p in rp.PRESETS.values():
        assert p.methods and all(get(m.name) == m for m in p.methods)
        assert len(set(p.method_names)) == len(p.methods)


def test_every_preset_searches_end_on_work_alone():
    """No wall clock decides what a preset's cell trains on (a seed fixes it on any
    machine): every box search ends on its work budget."""
    budgets = [
        m.augmenter.budget
        for p in rp.PRESETS.values()
        for m in p.methods
        if hasattr(m.augmenter, "budget")
    ]
    assert budgets and all(b.seconds is None and b.work == 1000 for b in budgets)


def test_a_preset_refuses_a_clocked_search():
    timed = replace(
        get("FVAAL"),
        augmenter=replace(get("FVAAL").augmenter, budget=Budget(work=5, seconds=1.0)),
    )
    with pytest.raises(ValueError, match="work alone"):
        rp._check_work_only(timed)
    rp._check_work_only(get("FVAAL"))  # the registry's own: work only


def test_paper_preset_without_data_says_how_to_download(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    from dalv.data import DatasetNotFoundError

    monkeypatch.setattr(
        tvd, "MNIST", lambda *a, **k: (_ for _ in ()).throw(OSError("offline"))
    )
    with pytest.raises(DatasetNotFoundError, match="dalv download mnist"):
        rp.reproduce(
            "paper-mnist",
            runs=str(tmp_path / "r"),
            out=str(tmp_path / "o"),
            data_root=str(tmp_path / "data"),
            render=False,
        )
    assert not (tmp_path / "o").exists()


def test_smoke_report_renders(tmp_path):
    out = rp.reproduce("smoke", runs=str(tmp_path / "runs"), out=str(tmp_path / "rep"))
    html = (out / "index.html").read_text()
    assert "AUBC" in html and "FVAAL-No-Adv" in html and "<img" in html
    # diversity of the one augmented method, kept beside results.csv for re-rendering
    div = pd.read_csv(out / "diversity.csv")
    assert set(div.method) == {"FVAAL+FGSM-Adv(3)"} and set(div.layer) == {
        "penultimate",
        "logits",
    }
    assert "Diversity of the added" in html
    t = pd.read_csv(out / "results.csv")
    assert t.cycle.max() == 2 and t.method.nunique() == 4


def test_verifier_override_reaches_the_fv_methods(tmp_path):
    grid = rp.Preset(
        "fv",
        ExperimentConfig(dataset="digits"),
        (get("Random"), get("Random+FV-Adv(10)")),
    )
    todo = rp.cells(grid, runs=tmp_path, verifier=MarabouVerifier())
    assert todo[1].method.augmenter.verifier == MarabouVerifier()
    assert todo[0].method == get("Random")
    default = rp.cells(grid, runs=tmp_path)
    assert default[1].method.augmenter.verifier == MilpVerifier()


def test_plan_methods_are_the_primary_family_and_its_controls():
    """The methods the plan's seed count is for are exactly those of the thesis and
    control claims; the Fashion-MNIST preset gives them 30 seeds and the rest 5."""
    from dalv.report import CLAIMS
    from dalv.reproduce import PLAN_METHODS, cells, preset

    want = {n for c in CLAIMS if c.group in ("thesis", "control") for n in (c.a, c.b)}
    assert set(PLAN_METHODS) == want
    p = preset("paper-fashion-mnist")
    per = _by_method(cells(p, runs="unused"))
    assert all(per[m] == list(range(30)) for m in want)
    assert all(per[m] == [0, 1, 2, 3, 4] for m in set(per) - want)
    # --seeds still overrides every method
    assert {
        len(v) for v in _by_method(cells(p, seeds=[7], runs="unused")).values()
    } == {1}


def _by_method(todo) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for c in todo:
        out.setdefault(c.method.name, []).append(c.seed)
    return out
