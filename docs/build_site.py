"""Render the chapters into a small static site: ``docs/site/``.

    python docs/build_site.py [--chapters 01 02 ...] [--timeout 3600]   (or: make site)

Each chapter in ``notebooks/`` is executed at its teaching setting (its parameters cell
as committed, ``SMOKE = False``) with the working directory set to ``notebooks/``, as a
reader would run it, and exported with its outputs to ``docs/site/chapters/``: an HTML
page (inputs shown) and the executed notebook. ``docs/site/index.html`` links the
chapters, the committed reports under ``reports/`` and the protocol notes. Chapters
that share runs with ``python -m dalv reproduce`` (04) read them back when they exist,
so render after the reproductions.

A Colab badge is added to each chapter when ``[project.urls] Repository`` in
``pyproject.toml`` names the project's GitHub repository.
"""

from __future__ import annotations

import argparse
import html
import re
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "docs" / "site"


def colab_url(notebook: str) -> str | None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    repo = meta.get("urls", {}).get("Repository", "")
    m = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)(\.git)?/?", repo)
    if not m:
        return None
    return (
        f"https://colab.research.google.com/github/{m.group(1)}/blob/main/"
        f"notebooks/{notebook}"
    )


def title_of(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            first = cell.source.strip().splitlines()[0]
            return first.lstrip("# ").strip()
    return "chapter"


def render(path: Path, timeout: int) -> tuple[str, float]:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    seconds = time.perf_counter() - t0
    nb.metadata.setdefault("dalv", {})["executed_seconds"] = round(seconds, 1)
    out = SITE / "chapters"
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / path.name)
    title = title_of(nb)
    body, _ = HTMLExporter().from_notebook_node(
        nb, resources={"metadata": {"name": title}}
    )
    url = colab_url(path.name)
    if url:
        badge = (
            f'<p><a href="{url}"><img alt="Open in Colab" '
            'src="https://colab.research.google.com/assets/colab-badge.svg"></a></p>'
        )
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + badge, body, count=1)
    (out / path.with_suffix(".html").name).write_text(body)
    return title, seconds


def index(chapters: list[tuple[str, str, float]]) -> str:
    reports = sorted(p.parent.name for p in (ROOT / "reports").glob("*/index.html"))
    items = "\n".join(
        f'<li><a href="chapters/{html.escape(n)}.html">{html.escape(t)}</a> '
        f'(<a href="chapters/{html.escape(n)}.ipynb">notebook</a>'
        + (f"; executed in {s / 60:.1f} min" if s == s else "")
        + ")</li>"
        for n, t, s in chapters
    )
    reps = "\n".join(
        f'<li><a href="../../reports/{r}/index.html">{r}</a></li>' for r in reports
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dalv: chapters and reports</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;
line-height:1.5;padding:0 1rem}}</style></head><body>
<h1>dalv: deep active learning with formal verification</h1>
<p>A teaching and reproducibility suite for Spiegelman, Amir &amp; Katz,
<a href="https://arxiv.org/abs/2512.14170"><i>On Improving Deep Active Learning with
Formal Verification</i></a> (2025). The chapters below were executed at their teaching
settings; the reports are the committed reproductions. The protocol they follow is in
<a href="../protocol.md">docs/protocol.md</a>.</p>
<h2>Chapters</h2><ol>{items}</ol>
<h2>Reports</h2><ul>{reps}</ul>
</body></html>
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--chapters",
        nargs="*",
        default=None,
        help="chapter numbers to render (default: all)",
    )
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    a = ap.parse_args()
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if a.chapters:
        paths = [p for p in paths if p.name[:2] in a.chapters]
    done = {}
    for p in paths:
        title, seconds = render(p, a.timeout)
        done[p.stem] = (title, seconds)
        print(f"{p.name}: {seconds / 60:.1f} min", flush=True)
    # keep chapters rendered earlier in the index
    for old in sorted((SITE / "chapters").glob("*.ipynb")):
        if old.stem not in done:
            import nbformat

            nb = nbformat.read(old, as_version=4)
            seconds = nb.metadata.get("dalv", {}).get("executed_seconds", float("nan"))
            done[old.stem] = (title_of(nb), float(seconds))
    chapters = [(n, t, s) for n, (t, s) in sorted(done.items())]
    (SITE / "index.html").write_text(index(chapters))
    print(f"site: {SITE / 'index.html'}")


if __name__ == "__main__":
    main()
