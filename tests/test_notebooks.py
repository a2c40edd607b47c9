"""Every notebook runs under nbval in its smoke setting.

papermill injects ``SMOKE = True`` after the tagged ``parameters`` cell (without executing);
nbval then executes the copy in a fresh kernel. Outputs are not compared (``--nbval-lax``):
the notebooks assert what they teach.
"""

import json
import pathlib
import subprocess
import sys

import pytest

NOTEBOOKS = sorted(
    (pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")
)


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
