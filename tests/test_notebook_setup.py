"""The chapters' first cell works in a fresh kernel that has no dalv: it installs dalv
and imports it in the same run, with no kernel restart (the Colab and workshop path).

The fresh environment is a new virtual environment whose interpreter sees this
project's third-party packages (a ``.pth`` line; nothing is downloaded) but not dalv
itself: a package installed in editable mode is found through a hook that only the
project environment's own start-up runs.
"""

import json
import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fresh_kernel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fresh")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    (pathlib.Path(site) / "project-packages.pth").write_text(ours + "\n")
    probe = subprocess.run([py, "-c", "import dalv"], cwd=tmp, capture_output=True)
    assert probe.returncode != 0, "the fresh environment must not see dalv"
    kernels = tmp / "jupyter"
    spec = kernels / "kernels" / "fresh"
    spec.mkdir(parents=True)
    argv = [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "fresh", "language": "python"})
    )
    return py, kernels


def test_first_cells_install_and_import_dalv_in_one_run(fresh_kernel, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    py, kernels = fresh_kernel
    monkeypatch.setenv("JUPYTER_PATH", str(kernels))
    nb = nbformat.read(
        ROOT / "notebooks" / "03_formal_verification.ipynb", as_version=4
    )
    code = [c for c in nb.cells if c.cell_type == "code"]
    setup, params = code[0], code[1]
    check = nbformat.v4.new_code_cell(  # dalv and auto_LiRPA work in the same kernel
        "import torch\n"
        "net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(),"
        " torch.nn.Linear(3, 2))\n"
        "lo, hi = dalv.verify.bounds(net, torch.full((1, 2), 0.5), 0.1)\n"
        "print('DALV', dalv.__version__, dalv.__file__, bool((lo <= hi).all()))"
    )
    nb.cells = [setup, params, check]
    client = NotebookClient(
        nb,
        kernel_name="fresh",
        timeout=600,
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    )
    client.execute()
    out = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert "DALV" in out and str(ROOT / "dalv") in out and out.strip().endswith("True")
    # dalv is now installed in the fresh environment itself
    r = subprocess.run(
        [py, "-c", "import dalv; print(dalv.__file__)"],
        cwd=os.path.expanduser("~"),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
