"""Render the chapters into a small static site: ``docs/site/``, timing each one.

    python docs/build_site.py [--chapters 01 02 ...] [--timeout 3600]   (or: make site)

Each chapter in ``notebooks/`` is executed at its teaching setting (its parameters cell
as committed, ``SMOKE = False``) with the working directory set to ``notebooks/``, as a
reader would run it, and exported with its outputs to ``docs/site/chapters/``: an HTML
page (inputs shown; equations rendered to MathML at build time, so they read offline,
with no CDN) and the executed notebook. ``docs/site/index.html`` links the chapters,
the committed reports under ``reports/``, the protocol notes and the workshop kit.
Chapters 01, 02 and 04 read back the committed run summaries under ``reports/``.

Every chapter's wall time is printed beside the time the chapter states (its
``**Time**: about N s`` line), with the kernel's CPU time and the load average, and
recorded in ``docs/site/timings.json``: on a busy machine the wall time overstates a
quiet one, and the CPU time (one torch thread) is what a quiet 2-core machine needs.

A Colab badge (and a Binder badge) is added to each chapter when ``[project.urls]
Repository`` in ``pyproject.toml`` names the project's GitHub repository.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import resource
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "docs" / "site"


def _github_repo() -> str | None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    repo = meta.get("urls", {}).get("Repository", "")
    m = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)(\.git)?/?", repo)
    return m.group(1) if m else None


def colab_url(notebook: str) -> str | None:
    repo = _github_repo()
    if repo is None:
        return None
    return (
        f"https://colab.research.google.com/github/{repo}/blob/main/"
        f"notebooks/{notebook}"
    )


def binder_url(notebook: str) -> str | None:
    """mybinder.org builds from binder/ (environment.yml + postBuild)."""
    repo = _github_repo()
    if repo is None:
        return None
    return f"https://mybinder.org/v2/gh/{repo}/main?labpath=notebooks%2F{notebook}"


_STATED = re.compile(
    r"\*\*Time\*\*:\s*about\s+(\d+(?:\.\d+)?)\s*(s|seconds|min|minutes)\b"
)


def stated_seconds(nb) -> float | None:
    """The time a chapter states for its teaching setting (``**Time**: about N s``)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = _STATED.search(" ".join(cell.source.split()))
            if m:
                return float(m.group(1)) * (60 if m.group(2).startswith("min") else 1)
    return None


def to_html(nb, title: str) -> str:
    """The executed chapter as HTML with its equations readable offline."""
    try:
        from dalv.report import notebook_html
    except ImportError:  # an older dalv: nbconvert's page, MathJax from a CDN
        from nbconvert import HTMLExporter

        print("warning: dalv.report.notebook_html missing; equations need a CDN")
        return HTMLExporter().from_notebook_node(
            nb, resources={"metadata": {"name": title}}
        )[0]
    return notebook_html(nb, title, exclude_input=False)


def title_of(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            first = cell.source.strip().splitlines()[0]
            return first.lstrip("# ").strip()
    return "chapter"


def render(path: Path, timeout: int) -> tuple[str, dict]:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    load_before = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    seconds = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel has exited
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    timing = {
        "wall_s": round(seconds, 1),
        "cpu_s": round(cpu, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "stated_s": stated_seconds(nb),
        "cpu_count": os.cpu_count(),
    }
    nb.metadata.setdefault("dalv", {})["executed_seconds"] = round(seconds, 1)
    out = SITE / "chapters"
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / path.name)
    title = title_of(nb)
    body = to_html(nb, title)
    badges = ""
    for url, img, alt in (
        (
            colab_url(path.name),
            "https://colab.research.google.com/assets/colab-badge.svg",
            "Open in Colab",
        ),
        (binder_url(path.name), "https://mybinder.org/badge_logo.svg", "Launch Binder"),
    ):
        if url:
            badges += f'<a href="{url}"><img alt="{alt}" src="{img}"></a> '
    if badges:
        badge = f"<p>{badges.strip()}</p>"
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + badge, body, count=1)
    (out / path.with_suffix(".html").name).write_text(body)
    return title, timing


def _fmt(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "?"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def index(chapters: list[tuple[str, str, dict]]) -> str:
    reports = sorted(p.parent.name for p in (ROOT / "reports").glob("*/index.html"))
    items = "\n".join(
        f'<li><a href="chapters/{html.escape(n)}.html">{html.escape(t)}</a> '
        f'(<a href="chapters/{html.escape(n)}.ipynb">notebook</a>'
        + (
            f"; states about {_fmt(tm.get('stated_s'))}, executed in "
            f"{_fmt(tm.get('wall_s'))} at load {tm.get('load_before', '?')}"
            if tm
            else ""
        )
        + ")</li>"
        for n, t, tm in chapters
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
<a href="../protocol.md">docs/protocol.md</a>; a 3-hour workshop over the chapters
(schedule, instructor notes, exercise checks, troubleshooting) is in
<a href="../workshop.md">docs/workshop.md</a>.</p>
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
    timings_path = SITE / "timings.json"
    try:
        timings = json.loads(timings_path.read_text())
    except (OSError, ValueError):
        timings = {}
    done = {}
    print(f"{'chapter':28s} {'stated':>8s} {'wall':>8s} {'cpu':>8s}  load (1 min)")
    for p in paths:
        title, tm = render(p, a.timeout)
        done[p.stem] = title
        timings[p.stem] = tm
        print(
            f"{p.name:28s} {_fmt(tm['stated_s']):>8s} {_fmt(tm['wall_s']):>8s} "
            f"{_fmt(tm['cpu_s']):>8s}  {tm['load_before']} -> {tm['load_after']}",
            flush=True,
        )
        timings_path.parent.mkdir(parents=True, exist_ok=True)
        timings_path.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")
    if paths:
        total = sum(timings[p.stem]["wall_s"] for p in paths)
        print(f"{'all rendered':28s} {'':>8s} {_fmt(total):>8s}")
    # keep chapters rendered earlier in the index
    for old in sorted((SITE / "chapters").glob("*.ipynb")):
        if old.stem not in done:
            import nbformat

            done[old.stem] = title_of(nbformat.read(old, as_version=4))
    chapters = [(n, t, timings.get(n, {})) for n, t in sorted(done.items())]
    (SITE / "index.html").write_text(index(chapters))
    print(f"site: {SITE / 'index.html'}")


if __name__ == "__main__":
    main()
