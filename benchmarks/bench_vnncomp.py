"""dalv's verifiers on a VNN-COMP benchmark folder, beside the published tools' answers.

Usage:
    python benchmarks/bench_vnncomp.py FOLDER [--results CSV] [--timeout S]
        [--verifier milp|marabou|lirpa] [--record reports/benchmarks/NAME]
        [--limit N]

FOLDER holds ``instances.csv`` (network, property, timeout per line), the networks and
the properties (VNN-COMP layout). Each instance runs as its own ``dalv verify`` process
(so a solver that hangs is killed ``--grace`` seconds after the wall clock), and its
answer and time are printed beside each published tool's (``results.csv`` /
``results_2021.csv`` in FOLDER, or ``--results``: columns tool, network, spec,
prepare_s, result, seconds; ``holds``/``UNSAT`` = proved, ``violated``/``SAT`` = a
counterexample, anything else = undecided).

Summary: instances decided by dalv and by each tool, dalv's answers agreeing and
disagreeing with every published decided answer, and any CONTRADICTION (dalv "sat"
where a tool proved UNSAT, or dalv "unsat" where a tool found a counterexample) in red
on a terminal and marked ``CONTRADICTION`` in the record. ``--record PATH`` writes
``PATH.md`` and ``PATH.csv``; an instance already in ``PATH.csv`` with the same
verifier and timeout is read back, not rerun (``--fresh`` reruns all).

Times are wall-clock seconds on this machine (shared, CPU only); the published ones came
from other hardware (several tools on GPUs) and the competition's 300 s timeout: compare
decided counts and answers, and times only as rough orders.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROVED = {"holds", "unsat"}
FOUND = {"violated", "sat"}


def _norm(result: str) -> str:
    r = str(result).strip().lower()
    return "unsat" if r in PROVED else "sat" if r in FOUND else "-"


def read_instances(folder: Path) -> list[tuple[str, str, float]]:
    rows = []
    with open(folder / "instances.csv") as f:
        for line in csv.reader(f):
            if line and line[0].strip():
                rows.append((line[0].strip(), line[1].strip(), float(line[2])))
    return rows


def read_published(path: Path | None) -> dict[str, dict[str, tuple[str, float]]]:
    """spec file name -> tool -> (normalised result, seconds)."""
    out: dict[str, dict[str, tuple[str, float]]] = defaultdict(dict)
    if path is None or not path.is_file():
        return out
    with open(path) as f:
        for r in csv.DictReader(f):
            spec = Path(r["spec"]).name
            try:
                sec = float(r.get("seconds") or "nan")
            except ValueError:
                sec = float("nan")
            out[spec][r["tool"]] = (_norm(r["result"]), sec)
    return out


def run_one(
    folder, net, spec, verifier, timeout, grace, work
) -> tuple[str, float, str]:
    res_file = work / (Path(spec).stem + f".{verifier}.result")
    cmd = [
        sys.executable,
        "-m",
        "dalv",
        "verify",
        str(folder / net),
        str(folder / spec),
        "--verifier",
        verifier,
        "--timeout",
        str(timeout),
        "--out",
        str(res_file),
    ]
    t0 = time.monotonic()
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # its solver workers too are killed at the deadline
    )
    try:
        stdout, stderr = p.communicate(timeout=timeout + grace)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        wall = time.monotonic() - t0
        return "timeout", wall, f"the search overran the clock; killed at {wall:.0f} s"
    wall = time.monotonic() - t0
    if p.returncode != 0:
        err = (stderr.strip().splitlines() or ["?"])[-1]
        return "error", wall, err[:120]
    line = stdout.strip().splitlines()[0]
    status, sec = line.split()[0], float(line.split()[1])
    note = line.split("(", 1)[1].rstrip(")") if "(" in line else ""
    return status, sec, note


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--timeout", type=float, default=None, help="per instance, s")
    ap.add_argument("--verifier", default="milp", choices=["milp", "marabou", "lirpa"])
    ap.add_argument("--record", type=Path, default=None)
    ap.add_argument("--grace", type=float, default=60.0)
    ap.add_argument("--limit", type=int, default=None, help="first N instances only")
    ap.add_argument("--fresh", action="store_true")
    a = ap.parse_args(argv)
    folder = a.folder.resolve()
    instances = read_instances(folder)[: a.limit]
    results = a.results
    if results is None:
        for name in ("results.csv", "results_2021.csv"):
            if (folder / name).is_file():
                results = folder / name
    published = read_published(results)
    tools = sorted({t for by in published.values() for t in by})
    done: dict[str, dict] = {}
    if (
        a.record is not None
        and (a.record.with_suffix(".csv")).is_file()
        and not a.fresh
    ):
        with open(a.record.with_suffix(".csv")) as f:
            for r in csv.DictReader(f):
                done[r["spec"]] = r
    work = ROOT / "runs" / "vnn" / f"bench_{a.verifier}"
    work.mkdir(parents=True, exist_ok=True)
    red = "\033[31m" if sys.stdout.isatty() else ""
    reset = "\033[0m" if red else ""
    rows = []
    for n, (net, spec, t_pub) in enumerate(instances):
        timeout = a.timeout or t_pub
        name = Path(spec).name
        old = done.get(name)
        if old and old["verifier"] == a.verifier and float(old["timeout"]) == timeout:
            status, sec, note = old["dalv"], float(old["dalv_s"]), old["note"]
        else:
            status, sec, note = run_one(
                folder, net, spec, a.verifier, timeout, a.grace, work
            )
        pub = published.get(name, {})
        decided = {t: r for t, (r, _) in pub.items() if r != "-"}
        agree = [t for t, r in decided.items() if status == r]
        clash = [
            t for t, r in decided.items() if status in ("sat", "unsat") and r != status
        ]
        row = {
            "spec": name,
            "network": Path(net).name,
            "verifier": a.verifier,
            "timeout": timeout,
            "published_timeout": t_pub,
            "dalv": status,
            "dalv_s": round(sec, 2),
            "note": note,
            "agree": len(agree),
            "contradicts": ";".join(clash),
            **{f"{t}": pub.get(t, ("", float("nan")))[0] for t in tools},
            **{f"{t}_s": round(pub.get(t, ("", float("nan")))[1], 2) for t in tools},
        }
        rows.append(row)
        mark = f"{red}CONTRADICTION with {', '.join(clash)}{reset}" if clash else ""
        pubs = " ".join(f"{t}={pub[t][0]}" for t in tools if t in pub)
        print(
            f"[{n + 1}/{len(instances)}] {name}: dalv {status} {sec:.1f} s  "
            f"{pubs} {mark}",
            flush=True,
        )
        if a.record is not None:
            _write_csv(rows, a.record.with_suffix(".csv"))
    summary = _summary(rows, tools)
    print("\n" + summary.replace("**CONTRADICTION**", f"{red}CONTRADICTION{reset}"))
    if a.record is not None:
        _write_csv(rows, a.record.with_suffix(".csv"))
        _write_md(rows, tools, summary, a, folder, results)
    return 1 if any(r["contradicts"] for r in rows) else 0


def _write_csv(rows, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _summary(rows, tools) -> str:
    n = len(rows)
    dec = [r for r in rows if r["dalv"] in ("sat", "unsat")]
    times = sorted(r["dalv_s"] for r in dec)
    med = times[len(times) // 2] if times else float("nan")
    lines = [
        f"instances: {n}",
        f"dalv decided: {len(dec)} (unsat {sum(r['dalv'] == 'unsat' for r in dec)}, "
        f"sat {sum(r['dalv'] == 'sat' for r in dec)}), median time of the decided "
        f"{med:.1f} s, total {sum(r['dalv_s'] for r in rows):.0f} s",
        "undecided: "
        + ", ".join(
            f"{s} {sum(r['dalv'] == s for r in rows)}"
            for s in sorted({r["dalv"] for r in rows} - {"sat", "unsat"})
        ),
    ]
    agree = sum(1 for r in dec if r["agree"])
    clash = [r for r in rows if r["contradicts"]]
    lines.append(
        f"dalv's decided answers agreeing with at least one published decided answer: "
        f"{agree}; disagreeing with a published decided answer: {len(clash)}"
    )
    if clash:
        for r in clash:
            lines.append(
                f"**CONTRADICTION**: {r['spec']}: dalv {r['dalv']} vs "
                f"{r['contradicts']}"
            )
    for t in tools:
        d = [r for r in rows if r[t] in ("sat", "unsat")]
        ts = sorted(r[f"{t}_s"] for r in d)
        m = ts[len(ts) // 2] if ts else float("nan")
        both = sum(1 for r in d if r["dalv"] in ("sat", "unsat"))
        within = sum(1 for r in d if r[f"{t}_s"] <= float(r["timeout"]))
        lines.append(
            f"{t}: decided {len(d)}/{n} (median {m:.1f} s; {within} within dalv's "
            f"timeout here); both decided {both}"
        )
    return "\n".join(lines)


def _write_md(rows, tools, summary, a, folder, results) -> None:
    path = a.record.with_suffix(".md")
    t = rows[0]["timeout"] if rows else a.timeout
    cmd = (
        f"nice -n 10 python benchmarks/bench_vnncomp.py {folder.name} --verifier "
        f"{a.verifier} --timeout {t:g} --record {a.record}"
    )
    head = [
        f"# VNN-COMP instances ({folder.name}): dalv `{a.verifier}` beside the "
        "published tools",
        "",
        f"Command: `{cmd}` (FOLDER: the development set, not part of the project).",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other "
        "jobs, no GPU; one `dalv verify` process per instance.",
        f"Timeout: **{t:g} s wall clock per instance here**, against the competition's "
        f"{rows[0]['published_timeout']:g} s; published results: "
        f"`{results.name if results else '-'}` (other hardware: times are rough "
        "orders only). An instance cut by the clock is `timeout` (undecided).",
        "",
        "## Summary",
        "",
        *[f"- {line}" for line in summary.splitlines()],
        "",
        "## Per instance",
        "",
        "| spec | dalv | s | " + " | ".join(tools) + " | note |",
        "|---|---|---|" + "---|" * len(tools) + "---|",
    ]
    body = []
    for r in rows:
        cells = [f"{r[t]} {r[t + '_s']:.0f}s" if r[t] != "-" else "-" for t in tools]
        flag = f" **CONTRADICTION ({r['contradicts']})**" if r["contradicts"] else ""
        body.append(
            f"| {r['spec']} | {r['dalv']}{flag} | {r['dalv_s']:.1f} | "
            + " | ".join(cells)
            + f" | {r['note']} |"
        )
    path.write_text("\n".join(head + body) + "\n")


if __name__ == "__main__":
    sys.exit(main())
