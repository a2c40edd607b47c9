import pathlib
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


@pytest.mark.parametrize(
    "args,expect",
    [
        (["--seeds", "3-1"], "argument --seed/--seeds: invalid seed range '3-1'"),
        (["--seeds", "0,0"], "seed(s) [0] given twice"),
        (["--seeds=-1"], "argument --seed/--seeds: invalid seeds '-1'"),
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["--method", "Random+FV-Adv(0)"], "unknown method 'Random+FV-Adv(0)'"),
    ],
)
def test_bad_settings_name_the_flag_in_one_line(tmp_path, args, expect):
    r = _cli("run", "--dataset", "digits", "--out", str(tmp_path / "o"), *args)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and expect in err[0], r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is here")
def test_cuda_on_a_cpu_machine_is_refused_before_any_work(tmp_path):
    r = _cli(
        "run", "--dataset", "digits", "--device", "cuda", "--out", str(tmp_path / "o")
    )
    assert r.returncode == 2 and "no CUDA GPU is visible; use --device cpu" in r.stderr
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_or_unwritable_is_refused_before_any_work(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("keep")
    r = _cli("run", "--dataset", "digits", "--out", str(f))
    assert r.returncode == 2 and "is a file, not a folder" in r.stderr
    assert f.read_text() == "keep"
    # /proc takes no new files, even for root
    r = _cli("run", "--dataset", "digits", "--out", "/proc/dalv-test-out")
    assert r.returncode == 2 and "is not writable" in r.stderr
    r = _cli(
        "reproduce",
        "--preset",
        "smoke",
        "--runs",
        str(tmp_path / "runs"),
        "--out",
        "/proc/dalv-test-report",
    )
    assert (
        r.returncode == 2 and "--out /proc/dalv-test-report is not writable" in r.stderr
    )
    assert not (tmp_path / "runs").exists()  # refused before the grid ran


def test_console_script_help_and_version():
    import shutil

    exe = shutil.which("dalv") or str(pathlib.Path(sys.executable).parent / "dalv")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("usage: dalv ")
    v = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    from dalv import __version__

    assert v.stdout.strip() == f"dalv {__version__}"


def test_help_shows_defaults_presets_and_datasets():
    run_help = _cli("run", "--help").stdout
    assert "(default: 20)" in run_help and "``" not in run_help
    rep = _cli("reproduce", "--help").stdout
    assert "presets:" in rep and "paper-mnist" in rep and "mnist5k" in rep
    dl = _cli("download", "--help").stdout
    assert "fashion_mnist" in dl and "cifar10" in dl
