"""Helpers to write notebooks as lists of cells (keeps the .ipynb JSON free of outputs).

Usage: python tools/nbtools.py  (rewrites nothing by itself; imported by tools/make_*.py)
"""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

SETUP = """# Works in a fresh JupyterLab or Colab kernel: installs dalv if it is missing, from the
# clone this notebook sits in, or from the pip spec in $DALV_SOURCE (e.g. a git URL).
import importlib.util, os, pathlib, subprocess, sys
if importlib.util.find_spec("dalv") is None:
    clone = next((p for p in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents)
                  if (p / "pyproject.toml").exists() and (p / "dalv").is_dir()), None)
    spec = ["-e", str(clone)] if clone else [os.environ.get("DALV_SOURCE", "")]
    if not spec[-1]:
        raise RuntimeError("dalv is not installed: clone the repository and open this notebook "
                           "from it, or set DALV_SOURCE to a pip spec such as a git URL")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *spec])
import dalv"""


def md(text):
    return new_markdown_cell(text.strip("\n"))


def code(text, tags=()):
    c = new_code_cell(text.strip("\n"))
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def write(path, cells):
    import pathlib

    stem = pathlib.Path(path).stem.split("_")[0]
    for i, c in enumerate(cells):  # stable ids: regenerating changes only edited cells
        c.id = f"c{stem}-{i:02d}"
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, pathlib.Path(__file__).resolve().parent.parent / path)
