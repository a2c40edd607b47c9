"""Notebooks: each chapter's paired sources agree, and every one runs in its smoke
setting.

A chapter is a percent-format ``notebooks/NN_name.py`` (the source people edit, lint and
diff) paired by jupytext with ``notebooks/NN_name.ipynb`` (what Jupyter opens); ``make
sync`` rewrites the notebook from the source. For the smoke run, papermill injects
``SMOKE = True`` after the tagged ``parameters`` cell (without executing); nbval then
executes the copy in a fresh kernel. Outputs are not compared (``--nbval-lax``): the
notebooks assert what they teach.
"""

import json
import pathlib
import subprocess
import sys

import pytest

NOTEBOOKS = sorted(
    (pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")
)


def _cells(nb):
    return [
        (c["cell_type"], c["source"], sorted(c.get("metadata", {}).get("tags", [])))
        for c in nb["cells"]
    ]


def test_every_chapter_has_both_sources():
    folder = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
    py = {p.stem for p in folder.glob("[0-9][0-9]_*.py")}
    assert py and py == {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_matches_its_python_source(path):
    import jupytext
    import nbformat

    source = jupytext.read(path.with_suffix(".py"))
    notebook = nbformat.read(path, as_version=4)
    assert _cells(source) == _cells(notebook), (
        f"{path.name} has drifted from {path.with_suffix('.py').name}: run `make sync`"
    )


def test_the_drift_check_can_fail(tmp_path):
    import jupytext
    import nbformat

    path = NOTEBOOKS[0]
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].source += "\n# an edit made in Jupyter only"
    assert _cells(jupytext.read(path.with_suffix(".py"))) != _cells(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parametrised(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code), (
        "stored outputs"
    )
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_smoke_mode_under_nbval(path, tmp_path):
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(path))  # adds the metadata papermill expects
    smoke = parameterize_notebook(nb, {"SMOKE": True}, report_mode=False)
    copy = tmp_path / path.name
    nbformat.write(smoke, copy)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbval-lax",
            str(copy),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
