"""The field's formats on the command line: ``dalv verify`` (an ONNX network and a
VNN-LIB property) and ``dalv export-queries`` (FV-Adv's queries of one cycle as a
VNN-COMP benchmark folder).

Owns: ``add_parsers`` and ``COMMANDS`` (registered by ``dalv.cli``), ``verify_files``,
``FvQuery``, ``cycle_queries`` and ``export_queries``; may import: the standard library
at module level (so ``dalv --help`` stays fast), and inside the functions torch, numpy,
pandas, ``dalv.verify``, ``dalv.data``, ``dalv.strategies``, ``dalv.augment`` and
``dalv.loop``.

**Which queries FV-Adv asked.** A run folder stores per cycle the model, the labelled
set and the adversarial examples added (``dalv.loop``): per queried row, first the
strategy's own example when it has one (a seed exclusion), then the verifier's
counterexamples in the order found. FV-Adv's queries are reconstructed from that and
from the seed, deterministically: the strategy's selection of the cycle is recomputed on
the previous model with the cycle's random stream (it gives the start radius and the own
example; the selected rows are checked against the stored labels), and each found
counterexample's radius is the smallest radius of the schedule whose box holds it
(the search grows the box only after proving it holds no more, so it cannot have been
found at a larger one). Query ``j`` of a row asks for a point in that box, with the
row's runner-up beating its winner by the margin, separated from the seeds and the
counterexamples found before it; FV-Adv answered "sat" (the next stored example). A
radius passed without an example was answered "unsat" (a proof). The row's last query
(after its last example, when fewer than ``k`` were found) was answered "unsat" at every
remaining radius or ended by the work budget: the checkpoint does not say which, so it
is exported with FV-Adv's answer "unsat-or-unknown".
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "add_parsers",
    "COMMANDS",
    "verify_files",
    "FvQuery",
    "cycle_queries",
    "export_queries",
]


# ------------------------------------------------------------------ dalv verify


def verify_files(
    net: str | os.PathLike,
    prop: str | os.PathLike,
    verifier: str = "milp",
    timeout: float | None = None,
    out: str | os.PathLike | None = None,
    seed: int = 0,
):
    """Load an ONNX network and a VNN-LIB property, answer it, write the result file.

    Returns:
        The ``InstanceResult``.

    Raises:
        ValueError: A malformed or unsupported file (``OnnxError``, ``VnnlibError``).
    """
    from dalv.verify.onnx_io import load_onnx
    from dalv.verify.vnncomp import verify_instance, write_result
    from dalv.verify.vnnlib import read_vnnlib

    network = load_onnx(net)
    query = read_vnnlib(prop)
    res = verify_instance(network.model, query, verifier, timeout=timeout, seed=seed)
    if out is not None:
        write_result(out, res)
    return res


GRACE_S = 5.0
"""Seconds past ``--timeout`` after which ``dalv verify`` stops a backend."""


def _watchdog(seconds: float, out) -> None:
    """Hold ``--timeout`` as a hard wall clock: a backend still running ``seconds``
    after the start is stopped (its worker processes killed), the answer is
    "timeout", and the process exits."""
    import multiprocessing
    import threading
    import time

    t0 = time.perf_counter()

    def fire():
        for child in multiprocessing.active_children():
            child.kill()
        if out is not None:
            with open(out, "w") as f:
                f.write("timeout\n")
        wall = time.perf_counter() - t0
        print(f"timeout  {wall:.2f} s  (the backend overran the clock; stopped)")
        sys.stdout.flush()
        os._exit(0)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def _cmd_verify(a: argparse.Namespace) -> int:
    for path, what in ((a.net, "network"), (a.prop, "property")):
        if not Path(path).is_file():
            raise ValueError(f"{what} file {path} does not exist")
    if a.timeout is not None and not a.timeout > 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {a.timeout}")
    if a.timeout is not None:
        _watchdog(a.timeout + GRACE_S, a.out)
    res = verify_files(a.net, a.prop, a.verifier, a.timeout, a.out, a.seed)
    note = f"  ({res.note})" if res.note else ""
    print(f"{res.status}  {res.seconds:.2f} s{note}")
    if a.out:
        print(f"result: {a.out}")
    return 0


# ------------------------------------------------------------------ FV-Adv's queries


@dataclass(frozen=True)
class FvQuery:
    """One question FV-Adv asked its verifier for a queried row.

    Attributes:
        row: Global index of the queried training row.
        step: Position of the query in the row's sequence.
        x: The row's input (flattened, as queried).
        eps: Box radius.
        c1: Winner at ``x`` (previous model).
        c2: Runner-up at ``x``.
        exclude: ``[n, d]`` points the answer had to keep away from.
        answer: FV-Adv's answer: ``"sat"``, ``"unsat"`` or ``"unsat-or-unknown"``.
        witness: The counterexample FV-Adv found (``"sat"``), else ``None``.
    """

    row: int
    step: int
    x: object
    eps: float
    c1: int
    c2: int
    exclude: object
    answer: str
    witness: object = field(default=None)


def cycle_queries(run_dir: str | os.PathLike, cycle: int, data_root=None):
    """Reconstruct the queries FV-Adv asked in ``cycle`` of a run (module docstring).

    Returns:
        ``(queries, info)``: the ``FvQuery`` list and a dict with ``model`` (the model
        queried, θ_{cycle-1}), ``augmenter``, ``input_shape`` and ``n_classes``.

    Raises:
        ValueError: Not an FV-Adv run, a missing cycle, or a reconstruction that does
            not match what the checkpoint stored.
    """
    import numpy as np
    import torch

    from dalv.augment import FVAdv
    from dalv.data import ActivePool, load
    from dalv.loop import cycle_rng, load_cycle
    from dalv.verify.box import clip_box
    from dalv.verify.property import winner_runner_up

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"{run_dir} is not a run folder (no config.json)")
    ckpt = run_dir / "checkpoints" / f"cycle_{cycle:03d}.pt"
    if not ckpt.is_file():
        raise ValueError(f"{run_dir} has no finished cycle {cycle} ({ckpt.name})")
    st = load_cycle(run_dir, cycle)
    spec = st["spec"]
    aug = spec.method.augmenter
    if not isinstance(aug, FVAdv):
        raise ValueError(
            f"{run_dir} is a {spec.method.name} run; export-queries reads FV-Adv runs"
        )
    cfg = spec.config
    data = load(cfg.dataset, root=data_root)
    model = st["previous"].to(torch.float32)
    pool = ActivePool(data.x_train, data.y_train)
    labeled_at = np.asarray(st["labeled_at"])
    for r in range(cycle + 1):  # the labels before this cycle
        idx = np.flatnonzero(labeled_at == r)
        if len(idx):
            pool.label(idx, round=r)
    rng = cycle_rng(spec.seed, cycle)
    sel = spec.method.strategy.select(
        model, pool, cfg.budget, rng=rng, candidates=cfg.candidates
    )
    stored = np.flatnonzero(labeled_at == cycle + 1)
    if sorted(np.asarray(sel.idx).tolist()) != stored.tolist():
        raise ValueError(
            f"the recomputed selection of cycle {cycle} differs from the stored labels "
            "(another dalv version or thread count?); cannot reconstruct its queries"
        )
    x_sel = data.x_train[torch.from_numpy(np.asarray(sel.idx))]
    with torch.no_grad():
        c1s, c2s = winner_runner_up(model(x_sel))
    b = len(sel.idx)
    eps0 = torch.full((b,), aug.eps_default, dtype=torch.float64)
    if sel.distance is not None:
        e = sel.distance.value.to(torch.float64).cpu()
        eps0 = torch.where(e <= aug.eps_reset_above, e, eps0)
    own_valid = np.zeros(b, bool)
    if sel.own is not None:
        own_valid = sel.own.valid.cpu().numpy().astype(bool)
    adv_x, adv_src = st["adv_x"].flatten(1).double().numpy(), np.asarray(st["adv_src"])
    step, limit = aug.schedule.step, aug.schedule.max_eps + 1e-12
    queries: list[FvQuery] = []
    for i, row in enumerate(np.asarray(sel.idx).tolist()):
        block = adv_x[adv_src == row]
        n_seed = int(own_valid[i])
        seeds, found = block[:n_seed], block[n_seed:]
        x64 = x_sel[i].flatten().double().numpy()
        eps = float(eps0[i]) + step
        need = aug.k - n_seed
        if need <= 0 or eps > limit:
            continue
        excl = seeds
        asked = []  # (radius, answer, witness, exclusions) in the order asked
        for w in found:
            while True:  # the smallest scheduled radius whose box holds w
                lo, hi = clip_box(x64, eps)
                if bool((w >= lo).all() and (w <= hi).all()):
                    break
                asked.append((eps, "unsat", None, excl))
                eps += step
                if eps > limit:
                    raise ValueError(
                        f"row {row}: a stored counterexample lies outside every box "
                        "of the schedule; cannot reconstruct its queries"
                    )
            asked.append((eps, "sat", w, excl))
            excl = np.concatenate([excl, w[None]])
        if len(found) < need:
            asked.append((eps, "unsat-or-unknown", None, excl))
        c1, c2 = int(c1s[i]), int(c2s[i])
        for n, (e, answer, w, ex) in enumerate(asked):
            queries.append(FvQuery(row, n, x64, e, c1, c2, ex, answer, w))
    info = {
        "model": model,
        "augmenter": aug,
        "input_shape": tuple(data.input_shape),
        "n_classes": data.n_classes,
    }
    return queries, info


def export_queries(
    run_dir: str | os.PathLike,
    cycle: int,
    out: str | os.PathLike,
    *,
    data_root=None,
    timeout: float = 300.0,
) -> Path:
    """Write FV-Adv's queries of one cycle as a VNN-COMP benchmark folder.

    Layout of ``out``: ``nets/model_cycle_T.onnx`` (the model FV-Adv queried,
    θ_{T-1}); ``specs/q_ROW_STEP.vnnlib`` per query (box, margin, exclusions as
    VNN-LIB disjunctions over inputs) and, for a query with exclusions,
    ``specs/q_ROW_STEP.box.vnnlib`` without them (a plain box: what every VNN-COMP tool
    reads; its UNSAT implies the query's, a SAT point of it needs the exclusions
    checked) and ``specs/q_ROW_STEP.exclusions.csv`` (one excluded point per line,
    with ``delta`` and the separation rule in ``queries.csv``); ``instances.csv``
    (network, property, timeout: the full queries), ``instances_box.csv`` (the box
    relaxations), ``queries.csv`` (per query: row, step, radius, classes, number
    of exclusions, FV-Adv's answer, and the files) and ``results.csv`` (FV-Adv's
    answers in the published-results layout ``benchmarks/bench_vnncomp.py`` compares
    with).

    Returns:
        The folder.
    """
    import numpy as np
    import pandas as pd

    from dalv.verify.box import clip_box
    from dalv.verify.onnx_io import save_onnx
    from dalv.verify.vnnlib import write_vnnlib

    queries, info = cycle_queries(run_dir, cycle, data_root)
    aug = info["augmenter"]
    prop = aug.prop
    if prop.target != "runner_up":
        raise ValueError("export-queries writes FV-Adv's runner-up property only")
    out = Path(out)
    (out / "nets").mkdir(parents=True, exist_ok=True)
    (out / "specs").mkdir(parents=True, exist_ok=True)
    net = f"nets/model_cycle_{cycle}.onnx"
    save_onnx(info["model"], out / net, info["input_shape"])
    rows, inst, inst_box = [], [], []
    for q in queries:
        lo, hi = clip_box(np.asarray(q.x), q.eps)
        stem = f"specs/q_{q.row}_{q.step}"
        note = (
            f"dalv FV-Adv query: row {q.row}, step {q.step}, eps {q.eps!r}, "
            f"winner {q.c1}, runner-up {q.c2}\nFV-Adv answered: {q.answer}"
        )
        common = dict(margin=prop.margin, delta=prop.delta, separation=prop.separation)
        spec = f"{stem}.vnnlib"
        excl = np.asarray(q.exclude).reshape(-1, lo.size)
        write_vnnlib(
            out / spec,
            lo,
            hi,
            q.c1,
            [q.c2],
            info["n_classes"],
            exclude=excl,
            comment=note,
            **common,
        )
        box_spec, excl_file = spec, ""
        if len(excl):
            box_spec = f"{stem}.box.vnnlib"
            write_vnnlib(
                out / box_spec,
                lo,
                hi,
                q.c1,
                [q.c2],
                info["n_classes"],
                comment=note + "\n(exclusions left out: see the .exclusions.csv)",
                **common,
            )
            excl_file = f"{stem}.exclusions.csv"
            np.savetxt(out / excl_file, excl, delimiter=",", fmt="%.17g")
        inst.append((net, spec, timeout))
        inst_box.append((net, box_spec, timeout))
        rows.append(
            {
                "row": q.row,
                "step": q.step,
                "eps": q.eps,
                "winner": q.c1,
                "runner_up": q.c2,
                "n_exclusions": len(excl),
                "delta": prop.delta,
                "separation": prop.separation,
                "margin": prop.margin,
                "fvadv_answer": q.answer,
                "network": net,
                "property": spec,
                "box_property": box_spec,
                "exclusions": excl_file,
            }
        )
        if q.witness is not None:
            np.savetxt(
                out / f"{stem}.fvadv_witness.csv",
                np.asarray(q.witness)[None],
                delimiter=",",
                fmt="%.17g",
            )
    pd.DataFrame(inst).to_csv(out / "instances.csv", header=False, index=False)
    pd.DataFrame(inst_box).to_csv(out / "instances_box.csv", header=False, index=False)
    pd.DataFrame(rows).to_csv(out / "queries.csv", index=False)
    published = pd.DataFrame(
        {
            "tool": "FV-Adv",
            "network": Path(net).name,
            "spec": [Path(r["property"]).name for r in rows],
            "prepare_s": float("nan"),
            "result": [r["fvadv_answer"] for r in rows],
            "seconds": float("nan"),
        }
    )
    published.to_csv(out / "results.csv", index=False)  # bench_vnncomp.py reads it
    return out


def _cmd_export(a: argparse.Namespace) -> int:
    if a.cycle < 0:
        raise ValueError(f"--cycle must be >= 0, got {a.cycle}")
    out = export_queries(
        a.run_dir, a.cycle, a.out, data_root=a.data_root, timeout=a.timeout
    )
    import pandas as pd

    q = (
        pd.read_csv(out / "queries.csv")
        if (out / "queries.csv").stat().st_size > 1
        else None
    )
    n = 0 if q is None else len(q)
    counts = (
        ""
        if q is None
        else ", ".join(f"{k}: {v}" for k, v in q["fvadv_answer"].value_counts().items())
    )
    print(f"{n} queries of cycle {a.cycle} written to {out} ({counts})")
    return 0


# ------------------------------------------------------------------ registration


def add_parsers(sub, formatter=argparse.ArgumentDefaultsHelpFormatter) -> None:
    """Add ``verify`` and ``export-queries`` to the CLI's subparsers."""
    v = sub.add_parser(
        "verify",
        help="answer a VNN-LIB property on an ONNX network (VNN-COMP style)",
        description="Answer a local-robustness VNN-LIB property on a fully-connected "
        "ReLU ONNX network: prints sat, unsat, timeout or unknown with the time and "
        "writes the VNN-COMP result file (a sat answer's counterexample is re-checked "
        "in float64 first). --timeout is a wall clock: an answer it cuts is 'timeout'.",
        formatter_class=formatter,
    )
    v.add_argument("net", metavar="NET.onnx", help="the network")
    v.add_argument("prop", metavar="PROP.vnnlib", help="the property")
    v.add_argument(
        "--verifier",
        choices=["milp", "marabou", "lirpa"],
        default="milp",
        help="the backend that answers",
    )
    v.add_argument("--timeout", type=float, default=None, help="wall-clock seconds")
    v.add_argument("--out", default=None, metavar="RESULT", help="result file to write")
    v.add_argument("--seed", type=int, default=0, help="seed of the backend")
    e = sub.add_parser(
        "export-queries",
        help="write the queries FV-Adv asked in one cycle as a VNN-COMP benchmark",
        description="Write the model FV-Adv queried in cycle T of a run folder as "
        "ONNX, one VNN-LIB file per query it asked (box, margin, exclusions), "
        "instances.csv and FV-Adv's own answers (queries.csv).",
        formatter_class=formatter,
    )
    e.add_argument("run_dir", metavar="RUN_DIR", help="an FV-Adv run folder")
    e.add_argument("--cycle", type=int, required=True, metavar="T", help="the cycle")
    e.add_argument("out", metavar="OUT", help="folder to write")
    e.add_argument("--data-root", default=None, help="dataset cache folder")
    e.add_argument(
        "--timeout", type=float, default=300.0, help="timeout column of instances.csv"
    )


COMMANDS = {"verify": _cmd_verify, "export-queries": _cmd_export}
"""Subcommand name → handler (``args`` in, exit status out)."""


if __name__ == "__main__":  # pragma: no cover - use ``dalv verify``
    sys.exit("use: dalv verify / dalv export-queries")
