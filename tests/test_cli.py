import subprocess
import sys

import pandas as pd
import pytest

from dalv.cli import main


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "dalv", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_lists_datasets_and_methods():
    r = _cli("run", "--help")
    assert r.returncode == 0
    assert "mnist5k" in r.stdout and "BADGE" in r.stdout and "Core-set" in r.stdout


def test_run_writes_results_and_config(tmp_path, capsys):
    out = tmp_path / "o"
    assert (
        main(
            [
                "run",
                "--dataset",
                "digits",
                "--method",
                "BADGE",
                "Random",
                "--cycles",
                "2",
                "--budget",
                "20",
                "--seed",
                "0-1",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    t = pd.read_csv(out / "results.csv")
    assert sorted(t.method.unique()) == ["BADGE", "Random"] and sorted(
        t.seed.unique()
    ) == [0, 1]
    assert len(t) == 2 * 2 * 2
    assert (out / "BADGE" / "seed_0" / "config.json").exists()
    assert "AUBC" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,expect",
    [
        (["--dataset", "imagenet"], "choose one of: digits, mnist5k"),
        (["--method", "oracle"], "Choose one of: Random"),
        (["--method", "badge"], "Did you mean 'BADGE'"),
        (["--cycles", "0"], "argument --cycles: must be >= 1, got 0"),
        (["--cycles", "-3"], "argument --cycles: must be >= 1, got -3"),
        (["--budget", "5000", "--cycles", "1"], "lower --cycles or --budget"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, expect):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "results.csv").write_text("precious\n")
    r = _cli("run", "--dataset", "digits", "--out", str(out), *args)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dalv: error:") and expect in err[0]
    assert (out / "results.csv").read_text() == "precious\n"  # nothing written is lost


def test_unknown_preset_lists_presets():
    r = _cli("reproduce", "--preset", "nope")
    assert r.returncode == 2 and "smoke" in r.stderr and "paper-mnist" in r.stderr


def test_bad_slurm_arg_is_one_line(tmp_path, capsys):
    code = main(
        [
            "reproduce",
            "--preset",
            "smoke",
            "--executor",
            "slurm",
            "--runs",
            str(tmp_path / "r"),
            "--out",
            str(tmp_path / "o"),
            "--slurm-arg",
            "partition",
        ]
    )
    assert code == 2 and "--slurm-arg takes KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
