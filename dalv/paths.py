"""Where a project's folders are: the clone dalv was installed from, if any.

Owns ``project_root`` and ``project_path``. May import the standard library only.

``python -m dalv reproduce`` run from a clone's root writes ``runs/`` and ``reports/``
there. A notebook runs with its own folder (``notebooks/``) as the working directory, so
a relative ``runs/...`` would land in ``notebooks/runs/...`` and redo work the command
line already did; ``project_path`` resolves such paths against the clone's root instead.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_root", "project_path"]


def _is_clone(path: Path) -> bool:
    return (path / "pyproject.toml").is_file() and (path / "dalv" / "loop.py").is_file()


def project_root(start: str | os.PathLike | None = None) -> Path | None:
    """The clone containing ``start`` (default: the working directory), or the clone
    this dalv was installed from (an editable install), or None."""
    here = Path(start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if _is_clone(p):
            return p
    package_parent = Path(__file__).resolve().parent.parent
    return package_parent if _is_clone(package_parent) else None


def project_path(path: str | os.PathLike) -> Path:
    """``path`` itself when absolute; else relative to the project root (or the working
    directory when dalv is not used from a clone)."""
    path = Path(path)
    if path.is_absolute():
        return path
    root = project_root()
    return (root / path) if root is not None else path
