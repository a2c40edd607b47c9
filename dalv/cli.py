"""Command line: ``dalv run | reproduce | download`` (also ``python -m dalv ...``).

Owns argument parsing, the one-line error contract (bad input exits with status 2 and a
single ``dalv: error: ...`` line saying what to do, found before any work starts;
nothing already written is touched) and ``VERIFIERS``, the verifier backends by their
command-line names. May import every dalv module.

Start-up is light: at import this module reads only ``dalv.names`` (no torch), so
``--help`` and a misspelt name answer at once; torch and the rest are imported inside
the command that does the work. A new subcommand is one ``_add_<name>`` function called
from ``build_parser`` and one entry in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import textwrap
from pathlib import Path

from dalv import names

__all__ = ["main", "build_parser", "VERIFIERS", "COMMANDS", "MAX_SEEDS"]  # noqa: F822

log = logging.getLogger("dalv")


def _verifiers() -> dict:
    """The verifier backends by their command-line names (imports dalv.verify)."""
    from dalv.verify import VERIFIERS

    return VERIFIERS


def __getattr__(name: str):
    if name == "VERIFIERS":  # loaded on first use: it imports torch
        return _verifiers()
    raise AttributeError(f"module 'dalv.cli' has no attribute {name!r}")


VERIFIER_HELP = (
    "milp: the paper's query as a MILP solved by HiGHS (Gurobi when licensed), the "
    "default; marabou: the solver the paper used, far slower; lirpa: batched branch "
    "and bound whose examples come from PGD (GPU when present)"
)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (where it has one) and keeps the epilogs' layout."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS)
        if shown and action.option_strings and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as one ``dalv: error: ...`` line (exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        hint = f" (see {self.prog} --help)"
        self.exit(2, f"dalv: error: {' '.join(message.split())}{hint}\n")


MAX_SEEDS = 1000
"""The most seeds one command runs (each seed is a full run of every method)."""


def _seeds(text: str) -> list[int]:
    """``"0-4"`` → [0..4]; ``"0,2,5"`` → [0, 2, 5]; no negatives, no repeats, at most
    ``MAX_SEEDS``."""
    bad = f"invalid seeds {text!r}; use e.g. 0, 0-4 or 0,2,5 (seeds are >= 0)"
    spans: list[tuple[int, int]] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = (int(v) for v in part.split("-", 1))
                if b < a:
                    raise argparse.ArgumentTypeError(
                        f"invalid seed range {part!r}: the end is below the start "
                        f"(did you mean {b}-{a}?)"
                    )
                spans.append((a, b))
            else:
                spans.append((int(part), int(part)))
    except ValueError:
        raise argparse.ArgumentTypeError(bad) from None
    count = sum(b - a + 1 for a, b in spans)  # counted before any list is built
    if count > MAX_SEEDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is {count} seeds, each a full run; one command runs at most "
            f"{MAX_SEEDS}: run more in batches into the same --out (e.g. "
            f"0-{MAX_SEEDS - 1}, then {MAX_SEEDS}-{2 * MAX_SEEDS - 1}; finished seeds "
            "are read back, not rerun)"
        )
    out = [s for a, b in spans for s in range(a, b + 1)]
    if any(s < 0 for s in out):
        raise argparse.ArgumentTypeError(bad)
    if len(set(out)) != len(out):
        dup = sorted({s for s in out if out.count(s) > 1})
        raise argparse.ArgumentTypeError(f"seed(s) {dup} given twice in {text!r}")
    return out


def _at_least(low: int, note: str = ""):
    """An argparse type: an integer >= ``low`` (``note`` says what ``low`` means)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}{note}, got {v}")
        return v

    return parse


def _positive(name: str):
    return _at_least(1)


def _run_epilog() -> str:
    def wrap(items):
        return textwrap.fill(
            ", ".join(items), 86, initial_indent="  ", subsequent_indent="  "
        )

    return (
        f"datasets:\n{wrap(names.DATASETS)}\n\nmethods (exact names; any k in "
        f"parentheses, e.g. 'Random+FV-Adv(3)'):\n{wrap(names.METHODS)}\n\nexample:\n"
        "  dalv run --dataset digits --method Random BADGE --seeds 0-2"
    )


def _reproduce_epilog() -> str:
    lines = [f"  {name:<22} {text}" for name, text in names.PRESETS.items()]
    return "presets:\n" + "\n".join(lines)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    from dalv.version import __version__

    prog = prog or _prog()
    p = _Parser(
        prog=prog,
        description="dalv: deep active learning with formal verification "
        "(Spiegelman, Amir & Katz, 2025).",
    )
    p.add_argument("--version", action="version", version=f"dalv {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_reproduce(sub)
    _add_download(sub)
    from dalv.queries import add_parsers  # verify, export-queries (no torch at import)

    add_parsers(sub, _Formatter)
    return p


def _add_run(sub) -> None:
    r = sub.add_parser(
        "run",
        help="run methods × seeds on one dataset",
        description="Run active learning for every method × seed. Finished cycles are\n"
        "read back, so rerunning resumes (or extends a run to more --cycles).",
        formatter_class=_Formatter,
        epilog=_run_epilog(),
    )
    r.add_argument("--dataset", default="mnist5k", help="a dataset name (below)")
    r.add_argument(
        "--method",
        nargs="+",
        default=["Random"],
        metavar="NAME",
        help="one or more method names (below); quote names with parentheses",
    )
    r.add_argument(
        "--seed",
        "--seeds",
        dest="seeds",
        type=_seeds,
        default=[0],
        help="seed(s): 0, 0-2 or 0,3",
    )
    r.add_argument(
        "--cycles", type=_positive("--cycles"), default=20, help="acquisition cycles"
    )
    r.add_argument(
        "--budget",
        type=_positive("--budget"),
        default=50,
        help="examples queried per cycle",
    )
    r.add_argument(
        "--initial",
        type=_positive("--initial"),
        default=50,
        help="initial labelled set size",
    )
    r.add_argument(
        "--candidates",
        type=_at_least(0, " (0 = all)"),
        default=10_000,
        help="unlabelled examples scored per cycle (0 = all)",
    )
    r.add_argument(
        "--verifier",
        choices=sorted(names.VERIFIERS),
        default=None,
        help="verifier of the FV-Adv methods (default: the method's own); "
        + VERIFIER_HELP,
    )
    r.add_argument(
        "--protocol",
        choices=["paper", "clean"],
        default="paper",
        help="paper: retrain from θ_init on acquired + adversarial examples; "
        "clean: fresh initialisation on every labelled example",
    )
    r.add_argument(
        "--arch",
        choices=["mlp", "cnn"],
        default="mlp",
        help="mlp: the paper's network; cnn: a small convolutional one",
    )
    r.add_argument(
        "--hidden", type=_positive("--hidden"), default=128, help="hidden-layer width"
    )
    r.add_argument(
        "--epochs",
        type=_positive("--epochs"),
        default=10,
        help="training epochs per cycle",
    )
    r.add_argument(
        "--batch-size",
        type=_positive("--batch-size"),
        default=32,
        help="training mini-batch size",
    )
    r.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    r.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu or cuda"
    )
    r.add_argument(
        "--data-root",
        default=None,
        help="dataset cache (default: $DALV_DATA or ~/.cache/dalv)",
    )
    r.add_argument(
        "--out", default=None, help="output folder (default: runs/<dataset>)"
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_reproduce(sub) -> None:
    rep = sub.add_parser(
        "reproduce",
        help="run a preset grid and render its report",
        description="Run (or resume) a preset grid of cells, one process per core,\n"
        "then render its HTML report; a finished grid is only re-rendered.",
        formatter_class=_Formatter,
        epilog=_reproduce_epilog(),
    )
    rep.add_argument("--preset", required=True, help="a preset name (below)")
    rep.add_argument(
        "--seeds", type=_seeds, default=None, help="override the preset's seeds"
    )
    rep.add_argument(
        "--out", default=None, help="report folder (default: reports/<preset>)"
    )
    rep.add_argument("--runs", default=None, help="run folder (default: runs/<preset>)")
    rep.add_argument(
        "--jobs",
        type=_positive("--jobs"),
        default=None,
        help="cells run side by side (default: one per CPU core)",
    )
    rep.add_argument(
        "--executor",
        choices=["local", "slurm"],
        default="local",
        help="local processes, or a Slurm job array through submitit "
        "(--runs must then be on a folder the nodes share)",
    )
    rep.add_argument(
        "--slurm-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a submitit/sbatch parameter, repeatable: partition=gpu, "
        "account=lab, gpus_per_node=1, timeout_min=600, mem_gb=16",
    )
    rep.add_argument(
        "--data-root",
        default=None,
        help="dataset cache (default: $DALV_DATA or ~/.cache/dalv)",
    )
    rep.add_argument(
        "--verifier",
        choices=sorted(names.VERIFIERS),
        default=None,
        help="verifier of the FV-Adv methods (default: the preset's); " + VERIFIER_HELP,
    )
    rep.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _add_download(sub) -> None:
    d = sub.add_parser(
        "download",
        help="fetch a dataset into the cache",
        description="Download a torchvision dataset into the cache folder (needs "
        "internet).\n"
        + " and ".join(names.EMBEDDED)
        + " ship with their Python packages; fashion_mnist is also read from\n"
        "/usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist).",
        formatter_class=_Formatter,
    )
    d.add_argument(
        "dataset",
        choices=list(names.DATASETS),
        metavar="DATASET",
        help="one of: " + ", ".join(names.DATASETS),
    )
    d.add_argument(
        "--root",
        default=None,
        help="cache folder (default: $DALV_DATA or ~/.cache/dalv)",
    )


def _prog() -> str:
    """``dalv`` when run as the console script, ``python -m dalv`` otherwise."""
    return "dalv" if Path(sys.argv[0]).name == "dalv" else "python -m dalv"


def _check_writable(folder: str | os.PathLike, flag: str) -> Path:
    """Fail now, before any work, if ``folder`` cannot hold output."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder; choose a folder")
    probe_dir = path
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    try:
        with tempfile.TemporaryFile(dir=probe_dir):
            pass
    except OSError as e:
        raise ValueError(
            f"{flag} {path} is not writable ({e.strerror}); choose another folder"
        ) from None
    return path


def _check_device(device: str) -> None:
    from dalv.models import resolve_device

    try:
        resolve_device(device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(str(e)) from None


def _cmd_run(a: argparse.Namespace) -> int:
    from dalv.config import ExperimentConfig, ModelConfig, TrainConfig

    names.check_dataset(a.dataset)  # names first: a typo answers before torch loads
    for name in a.method:
        names.check_method(name)
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
    out = _check_writable(a.out or Path("runs") / a.dataset, "--out")
    from dalv import data as ddata

    data = ddata.load(a.dataset, a.data_root)  # missing files: said before torch loads

    from dalv.loop import run_grid
    from dalv.methods import get
    from dalv.plots import aubc_table

    methods = [get(name) for name in a.method]
    if a.verifier is not None:
        verifier = _verifiers()[a.verifier]()
        methods = [m.with_verifier(verifier) for m in methods]
    _check_device(a.device)
    if cfg.n_labels_needed > len(data.x_train):
        raise ValueError(
            f"{cfg.n_initial} initial + {cfg.n_cycles} cycles × {cfg.budget} = "
            f"{cfg.n_labels_needed} labels, but {a.dataset} has only "
            f"{len(data.x_train)} training rows; lower --cycles or --budget"
        )
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
    names.check_preset(a.preset)
    slurm = _key_values(a.slurm_arg)
    if a.out:
        _check_writable(a.out, "--out")
    if a.runs:
        _check_writable(a.runs, "--runs")

    from dalv.reproduce import preset, reproduce

    grid = preset(a.preset)
    _check_device(a.device)
    verifier = _verifiers()[a.verifier]() if a.verifier else None
    out = reproduce(
        grid,
        seeds=a.seeds,
        out=a.out,
        runs=a.runs,
        jobs=a.jobs,
        executor=a.executor,
        data_root=a.data_root,
        device=a.device,
        slurm=slurm,
        verifier=verifier,
    )
    print(f"report: {out / 'index.html'}")
    return 0


def _cmd_download(a: argparse.Namespace) -> int:
    if a.dataset in names.EMBEDDED:
        print(f"{a.dataset} ships with its Python package; nothing to download")
        return 0
    from dalv.data import download, locate

    d = download(a.dataset, a.root)
    print(f"{d} ready; files in {locate(a.dataset, a.root)}")
    return 0


def _queries_cmd(a: argparse.Namespace) -> int:
    from dalv.queries import COMMANDS as VNN_COMMANDS

    return VNN_COMMANDS[a.command](a)


COMMANDS = {
    "run": _cmd_run,
    "reproduce": _cmd_reproduce,
    "download": _cmd_download,
    "verify": _queries_cmd,
    "export-queries": _queries_cmd,
}
"""Subcommand name → the function that does its work (``args`` in, exit status out)."""


def _user_error(e: Exception) -> str | None:
    """The message of an error that is the user's to fix (bad input, missing data, a
    run folder of another config), else None. Checked without importing the modules
    that define those errors: one not yet imported cannot have been raised."""
    data, loop = sys.modules.get("dalv.data"), sys.modules.get("dalv.loop")
    if data is not None and isinstance(e, data.DatasetNotFoundError):
        return "\n  ".join(line.strip() for line in str(e).splitlines())
    if isinstance(e, ValueError) or (
        loop is not None and isinstance(e, loop.CheckpointError)
    ):
        return " ".join(str(e).split())
    return None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except Exception as e:
        msg = _user_error(e)
        if msg is None:
            raise
        print(f"dalv: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "dalv: interrupted; finished cycles are saved, rerun the same command to "
            "resume",
            file=sys.stderr,
        )
        return 130
