"""Command line: ``python -m dalv run | reproduce | download``.

Owns argument parsing and the one-line error contract: bad input exits with status 2 and a
single ``dalv: error: ...`` line naming the valid choices; nothing already written is
touched. May import every dalv module.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

log = logging.getLogger("dalv")


def _epilog() -> str:
    from dalv.data import DATASETS
    from dalv.methods import method_names

    return (
        "datasets: "
        + ", ".join(DATASETS)
        + "\nmethods:  "
        + ", ".join(method_names())
        + "\n(method names are matched exactly, ignoring case; quote names with spaces"
        " or parentheses)"
    )


def _seeds(text: str) -> list[int]:
    """``"0-4"`` → [0..4]; ``"0,2,5"`` → [0, 2, 5]."""
    try:
        out: list[int] = []
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid seeds {text!r}; use e.g. 0, 0-4 or 0,2,5"
        )
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dalv",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser(
        "run",
        help="run methods × seeds on one dataset",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_epilog(),
    )
    r.add_argument("--dataset", default="mnist5k")
    r.add_argument(
        "--method",
        nargs="+",
        default=["Random"],
        metavar="NAME",
        help="one or more method names (see below)",
    )
    r.add_argument(
        "--seed",
        "--seeds",
        dest="seeds",
        type=_seeds,
        default=[0],
        help="seed(s): 0, 0-2 or 0,3 (default 0)",
    )
    r.add_argument("--cycles", type=int, default=20)
    r.add_argument("--budget", type=int, default=50, help="examples queried per cycle")
    r.add_argument("--initial", type=int, default=50, help="initial labelled set size")
    r.add_argument(
        "--candidates",
        type=int,
        default=10_000,
        help="candidates scored per cycle (0 = all unlabelled)",
    )
    r.add_argument("--k", type=int, default=10, help="adversarial examples per query")
    r.add_argument(
        "--verifier",
        choices=["lirpa", "marabou"],
        default="lirpa",
        help="backend of the FV-Adv methods (lirpa: batched branch and bound; "
        "marabou: the paper's complete solver, far slower)",
    )
    r.add_argument("--protocol", choices=["paper", "clean"], default="paper")
    r.add_argument("--arch", choices=["mlp", "cnn"], default="mlp")
    r.add_argument("--hidden", type=int, default=128)
    r.add_argument("--epochs", type=int, default=10)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu or cuda"
    )
    r.add_argument(
        "--data-root", default=None, help="dataset cache (default $DALV_DATA)"
    )
    r.add_argument("--out", default=None, help="output folder (default runs/<dataset>)")
    r.add_argument("--no-progress", action="store_true")

    rep = sub.add_parser("reproduce", help="run a preset grid and render its report")
    rep.add_argument("--preset", required=True)
    rep.add_argument("--seeds", type=_seeds, default=None)
    rep.add_argument(
        "--out", default=None, help="report folder (default reports/<preset>)"
    )
    rep.add_argument("--runs", default=None, help="run folder (default runs/<preset>)")
    rep.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="cells run in parallel (default: one per CPU core, one thread each)",
    )
    rep.add_argument(
        "--executor",
        choices=["local", "slurm"],
        default="local",
        help="local processes, or a Slurm job array through submitit (--runs "
        "must then be on a folder the nodes share)",
    )
    rep.add_argument(
        "--slurm-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a submitit/sbatch parameter, repeatable: partition=gpu, "
        "account=lab, gpus_per_node=1, timeout_min=600, mem_gb=16",
    )
    rep.add_argument("--data-root", default=None)
    rep.add_argument(
        "--verifier",
        choices=["lirpa", "marabou"],
        default=None,
        help="backend of the FV-Adv methods (default: the preset's, lirpa)",
    )
    rep.add_argument("--device", default="auto")

    d = sub.add_parser("download", help="fetch a torchvision dataset into the cache")
    d.add_argument("dataset")
    d.add_argument("--root", default=None)
    return p


def _resolve_methods(names: list[str], k: int):
    from dalv.methods import registry

    reg = registry(k)
    lower = {n.lower(): n for n in reg}
    out = []
    for n in names:
        key = n if n in reg else lower.get(n.lower())
        if key is None:
            raise ValueError(f"unknown method {n!r}; choose one of: {', '.join(reg)}")
        out.append(reg[key])
    return out


def _cmd_run(a: argparse.Namespace) -> int:
    from dalv import data as ddata
    from dalv.config import ExperimentConfig, ModelConfig, TrainConfig
    from dalv.loop import run_grid
    from dalv.plots import aubc_table

    if a.dataset not in ddata.DATASETS:
        raise ValueError(
            f"unknown dataset {a.dataset!r}; choose one of: {', '.join(ddata.DATASETS)}"
        )
    if a.k < 1:
        raise ValueError(f"--k must be >= 1, got {a.k}")
    methods = [m.with_verifier(a.verifier) for m in _resolve_methods(a.method, a.k)]
    cfg = ExperimentConfig(
        dataset=a.dataset,
        n_initial=a.initial,
        budget=a.budget,
        n_cycles=a.cycles,
        candidates=a.candidates or None,
        protocol=a.protocol,
        model=ModelConfig(a.arch, a.hidden),
        train=TrainConfig(a.epochs, a.lr, a.batch_size),
        device=a.device,
    )
    data = ddata.load(a.dataset, a.data_root)
    if cfg.n_labels_needed > len(data.x_train):
        raise ValueError(
            f"{cfg.n_initial} initial + {cfg.n_cycles} cycles × {cfg.budget} = "
            f"{cfg.n_labels_needed} labels, but {a.dataset} has only "
            f"{len(data.x_train)} training rows; lower --cycles or --budget"
        )
    out = Path(a.out) if a.out else Path("runs") / a.dataset
    table = run_grid(
        methods, data, cfg, seeds=a.seeds, out_dir=out, progress=not a.no_progress
    )
    print(aubc_table(table).to_string(index=False))
    print(f"results: {out / 'results.csv'}")
    return 0


def _key_values(items: list[str]) -> dict[str, object]:
    """``["partition=gpu", "mem_gb=16"]`` → ``{"partition": "gpu", "mem_gb": 16}``."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--slurm-arg takes KEY=VALUE, got {item!r}")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def _cmd_reproduce(a: argparse.Namespace) -> int:
    from dalv.reproduce import reproduce

    reproduce(
        a.preset,
        seeds=a.seeds,
        out=a.out,
        runs=a.runs,
        jobs=a.jobs,
        executor=a.executor,
        data_root=a.data_root,
        device=a.device,
        slurm=_key_values(a.slurm_arg),
        verifier=a.verifier,
    )
    return 0


def _cmd_download(a: argparse.Namespace) -> int:
    from dalv.data import EMBEDDED, load

    if a.dataset in EMBEDDED:
        print(f"{a.dataset} ships with its Python package; nothing to download")
        return 0
    d = load(a.dataset, a.root)
    print(f"{d} ready")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    from dalv.data import DatasetNotFoundError
    from dalv.loop import CheckpointError

    try:
        return {
            "run": _cmd_run,
            "reproduce": _cmd_reproduce,
            "download": _cmd_download,
        }[args.command](args)
    except (ValueError, CheckpointError, DatasetNotFoundError) as e:
        msg = (
            " ".join(str(e).split())
            if not isinstance(e, DatasetNotFoundError)
            else str(e)
        )
        print(f"dalv: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "dalv: interrupted; finished cycles are saved, rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
