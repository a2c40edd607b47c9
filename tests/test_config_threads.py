"""One torch thread count per run folder: training's float sums depend on it, so a
folder written with one count is neither read back nor extended with another."""

import json

import pytest
import torch

import dalv
from dalv.loop import CheckpointError


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_folder_refuses_another_thread_count(tmp_path, digits, small_cfg, threads):
    cfg = small_cfg.replace(n_cycles=1)
    method = dalv.methods.get("Random")
    torch.set_num_threads(1)
    first = dalv.loop.run(method, digits, cfg, seed=0, out_dir=tmp_path, progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["threads"] == 1
    torch.set_num_threads(2)
    with pytest.raises(
        CheckpointError, match=r"1 torch thread.*uses 2.*set_num_threads\(1\)"
    ):
        dalv.loop.run(method, digits, cfg, seed=0, out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="thread"):  # nor extended
        dalv.loop.run(
            method,
            digits,
            cfg.replace(n_cycles=2),
            seed=0,
            out_dir=tmp_path,
            progress=False,
        )
    torch.set_num_threads(1)  # the same count reads it back
    again = dalv.loop.run(method, digits, cfg, seed=0, out_dir=tmp_path, progress=False)
    assert again["test_acc"].tolist() == first["test_acc"].tolist()


def test_older_folders_are_judged_by_their_rows(tmp_path, digits, small_cfg, threads):
    """A folder from before config.json recorded the count: its rows' column says."""
    cfg = small_cfg.replace(n_cycles=1)
    method = dalv.methods.get("Random")
    torch.set_num_threads(2)
    dalv.loop.run(method, digits, cfg, seed=0, out_dir=tmp_path, progress=False)
    record = json.loads((tmp_path / "config.json").read_text())
    del record["threads"]
    (tmp_path / "config.json").write_text(json.dumps(record))
    torch.set_num_threads(1)
    with pytest.raises(CheckpointError, match="2 torch thread"):
        dalv.loop.run(method, digits, cfg, seed=0, out_dir=tmp_path, progress=False)


def test_an_empty_folder_takes_any_thread_count(tmp_path, digits, small_cfg, threads):
    cfg = small_cfg.replace(n_cycles=1)
    method = dalv.methods.get("Random")
    torch.set_num_threads(2)
    spec = dalv.loop.RunSpec(method, cfg, 0)
    dalv.loop._check_folder(tmp_path, spec)  # config.json only, nothing computed
    torch.set_num_threads(1)
    dalv.loop.run(method, digits, cfg, seed=0, out_dir=tmp_path, progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["threads"] == 1


def test_the_machine_is_recorded_and_kept_and_another_one_warned_of(
    tmp_path, digits, small_cfg, threads, caplog
):
    """config.json records the machine that started the folder (not in the hash); a
    resume elsewhere keeps that record, warns naming what differs, and reads the
    finished rows back unchanged."""
    cfg = small_cfg.replace(n_cycles=1)
    method = dalv.methods.get("Random")
    torch.set_num_threads(1)
    first = dalv.loop.run(method, digits, cfg, seed=0, out_dir=tmp_path, progress=False)
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["machine"] == dalv.loop.machine()
    assert record["machine"]["torch"] == torch.__version__
    assert record["machine"]["cpu"]
    other = {**record["machine"], "cpu": "another CPU", "cpu_capability": "AVX512"}
    (tmp_path / "config.json").write_text(json.dumps({**record, "machine": other}))
    with caplog.at_level("WARNING", logger="dalv.loop"):
        again = dalv.loop.run(
            method, digits, cfg, seed=0, out_dir=tmp_path, progress=False
        )
    assert "another machine (cpu, cpu_capability differ" in caplog.text
    assert "another CPU" in caplog.text
    assert again["test_acc"].tolist() == first["test_acc"].tolist()
    assert json.loads((tmp_path / "config.json").read_text())["machine"] == other
    assert json.loads((tmp_path / "config.json").read_text())["hash"] == record["hash"]
