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


# ---------------------------------------------------------------- light start-up

_PROBE = """
import sys
from dalv.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as e:
    rc = e.code
heavy = sorted(m for m in ("torch", "numpy", "pandas", "scipy") if m in sys.modules)
print("HEAVY", ",".join(heavy), "RC", rc)
"""


def _probe(cwd, *args):
    r = subprocess.run(  # in a scratch folder: a check that let work start writes there
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    line = [x for x in r.stdout.splitlines() if x.startswith("HEAVY")][-1].split()
    return line[1] if line[1] != "RC" else "", line[-1], r


def test_importing_the_package_and_cli_loads_no_torch():
    code = (
        "import sys, dalv, dalv.cli, dalv.names;"
        "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["reproduce", "--help"],
        ["download", "--help"],
        ["run", "--method", "Radnom"],
        ["run", "--dataset", "imagenet"],
        ["run", "--seeds", "0-99999"],
        ["reproduce", "--preset", "nope"],
    ],
)
def test_help_and_typos_answer_without_importing_torch(tmp_path, args):
    heavy, rc, r = _probe(tmp_path, *args)
    assert heavy == "", f"{args} imported {heavy}"
    assert rc == ("0" if "--help" in args else "2"), r.stdout + r.stderr


def test_names_stay_equal_to_the_registries():
    from dalv import data, names, reproduce
    from dalv.cli import VERIFIERS
    from dalv.methods import REGISTRY

    assert names.METHODS == tuple(REGISTRY)
    assert names.DATASETS == tuple(data.DATASETS)
    assert names.EMBEDDED == data.EMBEDDED
    assert names.PRESETS == {k: p.description for k, p in reproduce.PRESETS.items()}
    assert sorted(names.VERIFIERS) == sorted(VERIFIERS)
    for short, long in names.PAPER_ALIASES.items():
        k = int(long.rsplit("(", 1)[1].rstrip(")"))
        assert REGISTRY[short].with_k(k + 1).name == long.replace(
            f"({k})", f"({k + 1})"
        )


def test_method_grammar_agrees_with_get():
    from dalv import names
    from dalv.methods import get

    candidates = [*names.METHODS, *names.PAPER_ALIASES.values()]
    candidates += [f"{b}({k})" for b in names.K_FAMILIES for k in (0, 1, 3, 10, 11)]
    candidates += ["Radnom", "badge", "Random(3)", "Random+FV-Adv(x)", "", "FVAAL(3)"]
    candidates += ["Random-No-Adv", "DFAL+Own-Adv", "BADGE+FV-Adv(-1)"]
    for name in candidates:
        try:
            expect = get(name).name
        except ValueError as e:
            with pytest.raises(ValueError) as light:
                names.check_method(name)
            assert str(light.value) == str(e), name
        else:
            assert names.check_method(name) == name == expect


def test_the_package_still_exports_every_name():
    import dalv
    import dalv.config
    import dalv.loop
    import dalv.methods

    assert dalv.ExperimentConfig is dalv.config.ExperimentConfig
    assert dalv.run is dalv.loop.run and dalv.Method is dalv.methods.Method
    for name in dalv.__all__:
        assert getattr(dalv, name) is not None
    assert set(dalv.__all__) <= set(dir(dalv))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dalv.nope  # noqa: B018
    code = (
        "from dalv import ExperimentConfig, run, run_grid, Method, verify, plots, "
        "__version__; print(run.__module__, verify.__name__, plots.__name__)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert r.stdout.split() == ["dalv.loop", "dalv.verify", "dalv.plots"], r.stderr


def test_many_seeds_are_refused_with_how_to_batch_them():
    from dalv.cli import MAX_SEEDS, _seeds

    assert len(_seeds(f"0-{MAX_SEEDS - 1}")) == MAX_SEEDS
    with pytest.raises(Exception, match="is 100000 seeds.*in batches"):
        _seeds("0-99999")
    with pytest.raises(Exception, match=f"at most {MAX_SEEDS}"):
        _seeds("0-99999999999999999999")  # counted, never expanded
    assert _seeds("3,0-2,5") == [3, 0, 1, 2, 5]


def test_candidates_help_and_error_agree(tmp_path):
    assert "(0 = all)" in _cli("run", "--help").stdout
    r = _cli("run", "--dataset", "digits", "--candidates", "-5")
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1
    assert "argument --candidates: must be >= 0 (0 = all), got -5" in err[0]


def _offline(monkeypatch):
    import dalv.data

    monkeypatch.setattr(dalv.data, "_offline", lambda dataset: True)


def test_download_offline_does_not_say_run_download(tmp_path, monkeypatch, capsys):
    _offline(monkeypatch)
    root = tmp_path / "cache" / "dalv"
    assert main(["download", "cifar10", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("dalv: error: cifar10: could not")
    assert "dalv download" not in " ".join(err)
    assert str(root / "cifar-10-batches-py") in err[0] and "test_batch" in err[1]
    assert not (tmp_path / "cache").exists()  # no empty folders left behind


def test_run_offline_says_how_to_get_the_data_in_two_lines(
    tmp_path, monkeypatch, capsys
):
    _offline(monkeypatch)
    root = tmp_path / "data"
    args = ["run", "--dataset", "fashion_mnist", "--data-root", str(root)]
    assert main([*args, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err
    assert str(root / "FashionMNIST" / "raw") in err[0] and "t10k-labels" in err[0]
    assert "`dalv download fashion_mnist`" in err[1]
    assert "apt-get install dataset-fashion-mnist" in err[1]
    assert "<" not in " ".join(err)  # no exception reprs or server dumps
    assert not root.exists() and not (tmp_path / "o").exists()


# ---------------------------------------------------------------- setup and kernels

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_notebooks_store_the_kernel_metadata_jupyterlab_writes():
    """JupyterLab rewrites kernelspec and language_info from the running kernel when a
    notebook opens; any difference marks the tab modified. The stored values must be
    what `make setup`'s kernel reports (Python's patch version aside)."""
    import json
    import re

    import jupytext
    from ipykernel.ipkernel import IPythonKernel

    make = (ROOT / "Makefile").read_text()
    m = re.search(
        r'ipykernel install --sys-prefix --name (\S+) \\\s*--display-name "([^"]+)"',
        make,
    )
    assert m, "make setup registers the kernel inside the environment"
    spec = {"name": m[1], "display_name": m[2], "language": "python"}
    expect = {k: v for k, v in IPythonKernel.language_info.items() if k != "version"}
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        meta = json.loads(path.read_text())["metadata"]
        assert meta["kernelspec"] == spec, path.name
        info = dict(meta["language_info"])
        assert info.pop("version").count(".") == 2, path.name
        assert info == expect, path.name
        text = jupytext.read(path.with_suffix(".py"))
        assert text.metadata["kernelspec"] == spec, path.with_suffix(".py").name
    assert "--user" not in make.split("ipykernel install")[1].split("\n")[0]


def _install_torch():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "install_torch", ROOT / "tools" / "install_torch.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_install_torch_pins_are_pyprojects():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    mod = _install_torch()
    assert mod.TORCH in deps["dependencies"] and mod.TORCHVISION in deps["dependencies"]


DEFAULT = {"torch": "2.14.1", "torchvision": "0.29.1"}
CPU = {"torch": "2.14.1+cpu", "torchvision": "0.29.1+cpu", "torch from": "file:///w"}


@pytest.mark.parametrize(
    "gpu,planned,cpu_seen,expect,installs",
    [
        (True, CPU, ["2.14.1+cpu"], "NVIDIA GPU found", 0),
        (False, DEFAULT, ["2.14.1+cpu"], "no CPU-only build of torch 2.14.1", 0),
        (False, None, ["2.14.1+cpu"], "no CPU-only build of torch 2.14.1", 0),
        # a CPU build of another version is never taken (its torchvision mismatches)
        (False, {**CPU, "torch": "2.13.0+cpu"}, ["2.13.0+cpu"], "no CPU-only", 0),
        (False, CPU, ["2.14.1+cpu"], "CPU-only torch 2.14.1+cpu", 1),
        (False, CPU, [], "CPU-only torch 2.14.1+cpu", 1),  # from the CPU index
    ],
)
def test_install_torch_takes_the_cpu_build_of_the_default_version_only(
    monkeypatch, capsys, gpu, planned, cpu_seen, expect, installs
):
    mod = _install_torch()
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    def would(args):
        if "--index-url" not in args and not any("+cpu" in a for a in args):
            return DEFAULT  # the default resolution
        return planned

    monkeypatch.delenv("DALV_TORCH", raising=False)
    monkeypatch.setattr(mod, "has_nvidia_gpu", lambda: gpu)
    monkeypatch.setattr(mod.metadata, "version", _not_installed)
    monkeypatch.setattr(mod, "_cpu_versions", lambda: cpu_seen)
    monkeypatch.setattr(mod, "_would_install", would)
    monkeypatch.setattr(mod.subprocess, "run", fake_run)
    assert mod.main() == 0
    out = capsys.readouterr().out
    assert expect in out and out.count("\n") == 1
    real = [c for c in calls if "install" in c and "--dry-run" not in c]
    assert len(real) == installs  # never the CUDA build by way of the CPU route
    if installs:
        assert "torch==2.14.1" in real[0] or "torch==2.14.1+cpu" in real[0]
        assert any(a.startswith("torchvision==0.29.1") for a in real[0])


def _not_installed(name):
    from importlib.metadata import PackageNotFoundError

    raise PackageNotFoundError(name)
