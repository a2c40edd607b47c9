import numpy as np
import pandas as pd
import pytest
import torch

import dalv
from dalv.loop import CheckpointError, run
from dalv.methods import get

VOLATILE = ["query_s", "augment_s", "train_s", "eval_s"]


def test_run_grows_labels_by_budget_and_has_expected_columns(digits, small_cfg):
    t = run(get("Random"), digits, small_cfg, seed=0, progress=False)
    assert list(t.cycle) == [0, 1, 2]
    assert list(t.n_labeled) == [30, 40, 50]  # 20 initial + 10 per cycle
    # paper protocol: trains on the acquired examples only
    assert list(t.n_train) == [10, 20, 30]
    for col in [
        "dataset",
        "method",
        "seed",
        "test_acc",
        "n_adv",
        "config_hash",
        *VOLATILE,
    ]:
        assert col in t
    assert t.test_acc.between(0, 1).all()


def test_clean_protocol_trains_on_every_label(digits, small_cfg):
    t = run(
        get("Random"),
        digits,
        small_cfg.replace(protocol="clean"),
        seed=0,
        progress=False,
    )
    assert list(t.n_train) == [30, 40, 50]


def test_same_seed_same_table(digits, small_cfg):
    a = run(get("BADGE"), digits, small_cfg, seed=1, progress=False).drop(
        columns=VOLATILE
    )
    b = run(get("BADGE"), digits, small_cfg, seed=1, progress=False).drop(
        columns=VOLATILE
    )
    pd.testing.assert_frame_equal(a, b)
    c = run(get("BADGE"), digits, small_cfg, seed=2, progress=False)
    assert not np.array_equal(a.test_acc, c.test_acc)


def test_methods_share_the_initial_set(digits, small_cfg):
    from dalv.loop import start

    s1, s2 = start(digits, small_cfg, 0), start(digits, small_cfg, 0)
    np.testing.assert_array_equal(s1.pool.labeled_idx, s2.pool.labeled_idx)
    pairs = zip(s1.theta_init.parameters(), s2.theta_init.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    s3 = start(digits, small_cfg, 1)
    assert not np.array_equal(s1.pool.labeled_idx, s3.pool.labeled_idx)


def test_run_is_run_cycle_repeated(digits, small_cfg):
    from dalv.loop import run_cycle, start

    table = run(get("BADGE+FGSM-Adv(3)"), digits, small_cfg, seed=0, progress=False)
    state = start(digits, small_cfg, 0)
    records = [
        run_cycle(state, get("BADGE+FGSM-Adv(3)"), small_cfg, seed=0)
        for _ in range(small_cfg.n_cycles)
    ]
    assert [r.test_acc for r in records] == table.test_acc.tolist()
    assert [len(r.added) for r in records] == table.n_adv_new.tolist()
    assert (
        state.cycle == 3
        and state.pool.n_labeled == 50
        and len(state.bank) == sum(len(r.added) for r in records)
    )


def test_resumed_run_equals_uninterrupted(tmp_path, digits, small_cfg):
    full = run(
        get("Core-set"),
        digits,
        small_cfg,
        seed=0,
        out_dir=tmp_path / "a",
        progress=False,
    )
    # interrupted after two cycles: simulate by deleting the last checkpoint
    part = tmp_path / "b"
    run(get("Core-set"), digits, small_cfg, seed=0, out_dir=part, progress=False)
    (part / "checkpoints" / "cycle_002.pt").unlink()
    resumed = run(
        get("Core-set"), digits, small_cfg, seed=0, out_dir=part, progress=False
    )
    pd.testing.assert_frame_equal(
        full.drop(columns=VOLATILE), resumed.drop(columns=VOLATILE)
    )
    on_disk = pd.read_csv(part / "results.csv")
    assert len(on_disk) == 3 and (part / "config.json").exists()


def test_finished_run_is_skipped(tmp_path, digits, small_cfg, monkeypatch):
    run(get("Random"), digits, small_cfg, seed=0, out_dir=tmp_path, progress=False)
    monkeypatch.setattr(
        dalv.loop, "fit", lambda *a, **k: pytest.fail("retrained a finished run")
    )
    t = run(get("Random"), digits, small_cfg, seed=0, out_dir=tmp_path, progress=False)
    assert len(t) == 3


def test_folder_of_another_config_is_refused(tmp_path, digits, small_cfg):
    run(get("Random"), digits, small_cfg, seed=0, out_dir=tmp_path, progress=False)
    before = (tmp_path / "results.csv").read_bytes()
    with pytest.raises(CheckpointError, match="another configuration"):
        run(
            get("Random"),
            digits,
            small_cfg.replace(budget=5),
            seed=0,
            out_dir=tmp_path,
            progress=False,
        )
    assert (tmp_path / "results.csv").read_bytes() == before


def test_a_finished_run_extends_to_more_cycles(tmp_path, digits, small_cfg):
    short = run(
        get("Random"), digits, small_cfg, seed=0, out_dir=tmp_path, progress=False
    )
    longer = small_cfg.replace(n_cycles=5)
    ext = run(get("Random"), digits, longer, seed=0, out_dir=tmp_path, progress=False)
    fresh = run(get("Random"), digits, longer, seed=0, progress=False)
    assert ext.test_acc.tolist()[:3] == short.test_acc.tolist()
    assert ext.test_acc.tolist() == fresh.test_acc.tolist()


def test_another_config_names_the_changed_setting(tmp_path, digits, small_cfg):
    run(get("Random"), digits, small_cfg, seed=0, out_dir=tmp_path, progress=False)
    with pytest.raises(
        CheckpointError, match=r"experiment\.budget \(10 there, 5 now\)"
    ):
        run(
            get("Random"),
            digits,
            small_cfg.replace(budget=5),
            seed=0,
            out_dir=tmp_path,
            progress=False,
        )


def test_corrupt_init_checkpoint_is_recomputed_without_losing_cycles(
    tmp_path, digits, small_cfg
):
    first = run(
        get("Random"), digits, small_cfg, seed=0, out_dir=tmp_path, progress=False
    )
    init = tmp_path / "checkpoints" / "init.pt"
    init.write_bytes(b"garbage")
    with pytest.raises(
        CheckpointError, match="init.pt.*Delete it.*finished cycles are kept"
    ):
        run(get("Random"), digits, small_cfg, seed=0, out_dir=tmp_path, progress=False)
    init.unlink()  # as the message says
    again = run(
        get("Random"), digits, small_cfg, seed=0, out_dir=tmp_path, progress=False
    )
    pd.testing.assert_frame_equal(first, again)


def test_corrupt_checkpoint_says_what_to_delete(tmp_path, digits, small_cfg):
    run(get("Random"), digits, small_cfg, seed=0, out_dir=tmp_path, progress=False)
    bad = tmp_path / "checkpoints" / "cycle_001.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cycle_001.pt.*Delete it"):
        run(get("Random"), digits, small_cfg, seed=0, out_dir=tmp_path, progress=False)
    assert (tmp_path / "checkpoints" / "cycle_000.pt").exists()


def test_too_many_cycles_is_refused_before_writing(tmp_path, digits):
    cfg = dalv.ExperimentConfig(dataset="digits", n_cycles=100, budget=50)
    with pytest.raises(ValueError, match="lower --cycles or --budget"):
        run(get("Random"), digits, cfg, seed=0, out_dir=tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_invalid_configs():
    with pytest.raises(ValueError, match="cycles must be >= 1"):
        dalv.ExperimentConfig(n_cycles=0)
    with pytest.raises(ValueError, match="protocol"):
        dalv.ExperimentConfig(protocol="fancy")


def test_experiment_candidates_reach_the_strategy(digits, small_cfg, monkeypatch):
    from dalv.strategies import Entropy

    seen = []
    orig = Entropy.score
    monkeypatch.setattr(
        Entropy, "score", lambda self, m, x: (seen.append(len(x)), orig(self, m, x))[1]
    )
    run(
        get("Entropy"),
        digits,
        small_cfg.replace(n_cycles=1, candidates=123),
        seed=0,
        progress=False,
    )
    assert seen == [123]
