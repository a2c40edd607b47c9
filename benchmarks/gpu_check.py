"""The prepared device check: every GPU figure of dalv, CPU and CUDA side by side.

    python benchmarks/gpu_check.py                        # the device sizes (<= 8 min)
    python benchmarks/gpu_check.py --size tiny --out DIR  # seconds (the test's mode)
    python benchmarks/gpu_check.py --only bounds search   # some steps only
    make gpu-check

Writes ``<out>/gpu.txt`` (a table and the machine) and ``<out>/gpu.csv`` (one row per
figure), default ``reports/benchmarks``; both are rewritten after every step, so a run
cut short keeps what it finished. Steps, each measured on the CPU and then on CUDA in
the same process, with the same weights and inputs:

* ``tests``: pytest on the tests marked ``cuda`` (they skip without a GPU): counts.
* ``bounds``: ``dalv.verify.bounds`` with IBP, CROWN and alpha-CROWN on the paper's
  MNIST MLP (hidden 30 and 128, trained by ``dalv.train.fit``) for 1,000 test images.
* ``radius``: ``dalv.verify.certified_radius`` (CROWN bisection) on 1,000 test images.
* ``search``: ``LirpaVerifier().find_batch`` on 200 test images with the paper's
  property and query (box radius = minimal FGSM radius + 0.05, the FGSM example
  excluded and counted in k = 10), a work budget of subdomains per input (the same on
  both devices, so neither half is cut by a clock).
* ``cnn``: ``dalv.models.cnn`` (two Conv2d layers) through auto_LiRPA (IBP, CROWN),
  batch 256.
* ``cycles``: one ``dalv.loop.run_cycle`` (query + augmentation + training +
  evaluation) of FVAAL and of Random+FV-Adv(10) from a mid-run state (500 acquired
  rows), with FV-Adv's default verifier (the MILP, which runs on the CPU whatever the
  device) and with the lirpa verifier (which runs on the model's device).

Timing: ``torch.cuda.synchronize()`` around every timed call, a warm-up call before it
(the cycles' warm-up is a cycle with a budget of 2 rows), and the median of
``repeats`` calls where a call is cheap (bounds, the CNN); one call otherwise. The peak
GPU memory of a step is ``torch.cuda.max_memory_allocated`` over its CUDA half (reset
before it; tensors kept from earlier steps, such as the data, count too).

Sizes are fixed up front (``SIZES``), never cut by a clock. Without a GPU the CPU half
runs, the output says "no CUDA device found: GPU half not run", the CUDA columns read
"not run" and the exit code is 0. A step that raises is recorded with its one-line
error and the others still run; the exit code is 1 when any step failed.

On the device machine (no registry there; dalv need not be installed: the script puts
its checkout on ``sys.path``), carry wheels of what its image lacks (auto-LiRPA 0.3,
mlxtend, highspy, appdirs) and run ``PYTHONUNBUFFERED=1 python3
benchmarks/gpu_check.py --out $OUT`` with a timeout of about 9 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import gc
import io
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # a bare checkout (the device machine) runs it too
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import dalv  # noqa: E402
from dalv.attacks import min_fgsm_eps  # noqa: E402
from dalv.config import ExperimentConfig, ModelConfig, TrainConfig  # noqa: E402
from dalv.data import ActivePool, Dataset  # noqa: E402
from dalv.loop import run_cycle, start  # noqa: E402
from dalv.verify import (  # noqa: E402
    Budget,
    LirpaVerifier,
    Property,
    bounds,
    certified_radius,
)

NO_GPU = "no CUDA device found: GPU half not run"
NOT_RUN = "not run"
STEPS = ("tests", "bounds", "radius", "search", "cnn", "cycles")
CSV_COLUMNS = (
    "step",
    "size",
    "cpu_s",
    "cuda_s",
    "cpu_over_cuda",
    "cuda_peak_mib",
    "status",
    "note",
)


@dataclass(frozen=True)
class Sizes:
    """What every step computes (fixed before the run; no clock changes it).

    Attributes:
        dataset: the embedded dataset the models train on and the inputs come from
            (``--data-root`` with MNIST replaces ``mnist5k`` by ``mnist``).
        hidden: hidden widths of the MLPs bounded.
        train_rows, train_epochs: the MLPs' training set and epochs (Adam, batch 32).
        eps: the box radius of the bounds and of the CNN.
        bounds_batch, radius_batch, search_batch, cnn_batch: inputs per call.
        search_k, search_work: counterexamples per input (the FGSM example counted)
            and the subdomains each input may bound.
        repeats: timed calls per cheap figure (the median is reported).
        cycle_labelled: acquired rows of the mid-run state the cycles start from.
        cycle_budget, cycle_candidates, cycle_epochs, cycle_hidden: the experiment
            of the cycles (the paper's MLP of width ``cycle_hidden``).
        cycle_fv_work: FV-Adv's work budget per queried row (``None``: its default).
        cnn_epochs: training epochs of the CNN.
        pytest_timeout: seconds the CUDA tests may take.
    """

    dataset: str = "mnist5k"
    hidden: tuple[int, ...] = (30, 128)
    train_rows: int = 4000
    train_epochs: int = 10
    eps: float = 0.02
    bounds_batch: int = 1000
    radius_batch: int = 1000
    search_batch: int = 200
    search_k: int = 10
    search_work: int = 200
    cnn_batch: int = 256
    cnn_epochs: int = 2
    repeats: int = 3
    cycle_labelled: int = 500
    cycle_budget: int = 50
    cycle_candidates: int | None = 10_000
    cycle_epochs: int = 10
    cycle_hidden: int = 128
    cycle_fv_work: int | None = None
    pytest_timeout: float = 300.0


SIZES: dict[str, Sizes] = {
    "device": Sizes(),
    "tiny": Sizes(
        dataset="digits",
        hidden=(8,),
        train_rows=300,
        train_epochs=1,
        bounds_batch=6,
        radius_batch=6,
        search_batch=3,
        search_k=2,
        search_work=8,
        cnn_batch=4,
        cnn_epochs=1,
        repeats=1,
        cycle_labelled=20,
        cycle_budget=3,
        cycle_candidates=60,
        cycle_epochs=1,
        cycle_hidden=8,
        cycle_fv_work=4,
        pytest_timeout=300.0,
    ),
}


# ------------------------------------------------------------------ formatting


def ratio(
    cpu_s: float | None,
    cuda_s: float | None,
    cpu_n: int | None = None,
    cuda_n: int | None = None,
) -> float | None:
    """CPU time over CUDA time (> 1: the GPU is faster), per input when the halves ran
    on different numbers of inputs (``--cpu-scale``); ``None`` when a half is missing.
    """
    if cpu_s is None or cuda_s is None or cuda_s <= 0:
        return None
    if cpu_n and cuda_n and cpu_n != cuda_n:
        return (cpu_s / cpu_n) / (cuda_s / cuda_n)
    return cpu_s / cuda_s


def fmt_ratio(r: float | None) -> str:
    """``12.3x`` style: two decimals below 10, one below 100, none above."""
    if r is None or not math.isfinite(r):
        return NOT_RUN
    if r >= 100:
        return f"{r:.0f}x"
    if r >= 10:
        return f"{r:.1f}x"
    return f"{r:.2f}x"


def fmt_seconds(s: float | None) -> str:
    """Seconds to 4 significant digits; ``not run`` for a missing figure."""
    if s is None:
        return NOT_RUN
    if s >= 100:
        return f"{s:.1f}"
    return f"{s:.4g}"


def fmt_mib(m: float | None) -> str:
    return "" if m is None else f"{m:.1f}"


def one_line(e: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    msg = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {msg[0]}" if msg else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def shown_args(args: Sequence[str]) -> list[str]:
    """The command line as the report shows it: a path inside the checkout relative
    to it, any other path as ``DIR`` (reports never name a machine's folders)."""
    out = []
    for arg in args:
        if "/" in arg or os.sep in arg:
            p = Path(arg).resolve()
            arg = str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else "DIR"
        out.append(arg)
    return out


def scaled(n: int, scale: float) -> int:
    """``ceil(n * scale)``, at least 1 (the CPU half's size under ``--cpu-scale``)."""
    return max(1, math.ceil(n * scale))


# ------------------------------------------------------------------ records


@dataclass
class Half:
    """One device's measurement of a figure."""

    seconds: float | None = None
    n: int | None = None
    peak_mib: float | None = None
    error: str | None = None
    info: str = ""
    value: Any = None


@dataclass
class Figure:
    """One row of the table: a step measured on both devices."""

    step: str
    size: str
    cpu: Half = field(default_factory=Half)
    cuda: Half | None = None  # None: not run (no GPU, or the step is CPU-only)
    note: str = ""
    status: str = ""

    def row(self) -> dict[str, str]:
        cuda = self.cuda or Half()
        r = ratio(self.cpu.seconds, cuda.seconds, self.cpu.n, cuda.n)
        return {
            "step": self.step,
            "size": self.size,
            "cpu_s": "" if self.cpu.seconds is None else f"{self.cpu.seconds:.6g}",
            "cuda_s": NOT_RUN if cuda.seconds is None else f"{cuda.seconds:.6g}",
            "cpu_over_cuda": "" if r is None else f"{r:.4g}",
            "cuda_peak_mib": fmt_mib(cuda.peak_mib),
            "status": self.status,
            "note": self.note,
        }


def settle(fig: Figure) -> Figure:
    """Set the figure's status from its halves and gather their notes (a status the
    step set itself stands unless a half failed)."""
    errors = [
        f"{name}: {h.error}"
        for name, h in (("cpu", fig.cpu), ("cuda", fig.cuda))
        if h is not None and h.error
    ]
    infos = [
        f"{name}: {h.info}"
        for name, h in (("cpu", fig.cpu), ("cuda", fig.cuda))
        if h is not None and h.info and not h.error
    ]
    parts = [p for p in (fig.note, *infos, *errors) if p]
    fig.note = "; ".join(parts)
    if errors:
        fig.status = "failed"
    elif not fig.status:
        fig.status = "ok" if fig.cuda is not None else "cpu only (no GPU)"
    return fig


# ------------------------------------------------------------------ timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fresh_memory(device: torch.device) -> None:
    """Free cached blocks and reset the peak counter (between steps)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def measure(
    fn: Callable[[], Any],
    device: torch.device,
    repeats: int,
    warmup: Callable[[], Any] | None = None,
    n: int | None = None,
) -> Half:
    """Warm up, then time ``repeats`` calls of ``fn`` (median); errors are recorded.

    ``warmup`` defaults to ``fn`` itself. The peak GPU memory covers the warm-up and
    the timed calls.
    """
    half = Half(n=n)
    try:
        fresh_memory(device)
        (warmup or fn)()
        sync(device)
        times, value = [], None
        for _ in range(max(1, repeats)):
            sync(device)
            t0 = time.perf_counter()
            value = fn()
            sync(device)
            times.append(time.perf_counter() - t0)
        half.seconds, half.value = statistics.median(times), value
        if device.type == "cuda":
            half.peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    except Exception as e:  # one failing half is recorded, the run goes on
        half.error = one_line(e)
        traceback.print_exc(file=sys.stderr)
    return half


# ------------------------------------------------------------------ environment


def _nvidia_smi(query: str) -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({type(e).__name__})"
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(cuda: torch.device | None, threads: int) -> list[tuple[str, str]]:
    """The machine and the software, as (name, value) lines."""
    try:
        from importlib.metadata import version

        lirpa = version("auto_LiRPA")
    except Exception:
        lirpa = "not installed"
    env = [
        ("date (UTC)", time.strftime("%Y-%m-%d %H:%M", time.gmtime())),
        ("dalv", f"{dalv.__version__} (commit {_git_commit()})"),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("torch CUDA build", str(torch.version.cuda)),
        ("auto_LiRPA", lirpa),
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} logical cores"),
        ("CPU threads (torch)", str(threads)),
    ]
    if cuda is None:
        env.append(("GPU", NO_GPU))
        return env
    props = torch.cuda.get_device_properties(cuda)
    env += [
        ("GPU", f"{props.name}, {props.total_memory / 2**30:.0f} GiB"),
        ("GPU count", str(torch.cuda.device_count())),
        ("driver", _nvidia_smi("driver_version")),
        ("cuDNN", str(torch.backends.cudnn.version())),
    ]
    return env


# ------------------------------------------------------------------ the setting


@dataclass
class Setting:
    """What the steps share: data, trained models (CPU masters), devices, sizes."""

    data: Dataset
    sizes: Sizes
    cpu_scale: float
    cuda: torch.device | None
    mlps: dict[int, torch.nn.Module]
    seed: int = 0

    def on(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """A copy of a (CPU) master model on ``device``."""
        return copy.deepcopy(model).to(device).eval()

    def n_cpu(self, n: int) -> int:
        return scaled(n, self.cpu_scale)

    def devices(self) -> list[torch.device]:
        cpu = [torch.device("cpu")]
        return cpu if self.cuda is None else cpu + [self.cuda]


def load_data(sizes: Sizes, data_root: str | None) -> tuple[Dataset, str]:
    """The dataset and a note; real MNIST when ``data_root`` holds its four files."""
    if data_root and sizes.dataset == "mnist5k":
        raw = Path(data_root) / "MNIST" / "raw"
        files = dalv.data.MNIST_FILES
        if all((raw / f).exists() or (raw / (f + ".gz")).exists() for f in files):
            return dalv.data.load("mnist", data_root), "MNIST (60,000 / 10,000)"
        note = f"MNIST not found under --data-root ({len(files)} idx files): mnist5k"
        return dalv.data.load("mnist5k"), note
    data = dalv.data.load(sizes.dataset)
    return data, f"{data.name} ({len(data.x_train)} / {len(data.x_test)})"


def train_mlp(data: Dataset, hidden: int, sizes: Sizes, seed: int) -> torch.nn.Module:
    """The paper's MLP (``dalv.models.build``) trained on the CPU by ``dalv.train``."""
    model = dalv.models.build(
        ModelConfig(hidden=hidden), data.input_shape, data.n_classes, seed=seed
    )
    n = min(sizes.train_rows, len(data.x_train))
    cfg = TrainConfig(epochs=sizes.train_epochs)
    dalv.train.fit(model, data.x_train[:n], data.y_train[:n], cfg, seed=seed)
    return model.eval()


def test_inputs(data: Dataset, n: int) -> torch.Tensor:
    """The first ``n`` test images (repeated when the test split is smaller)."""
    x = data.x_test
    if n > len(x):
        x = x.repeat(math.ceil(n / len(x)), *([1] * (x.dim() - 1)))
    return x[:n]


# ------------------------------------------------------------------ steps


def _size(n_cuda: int, n_cpu: int, unit: str = "inputs") -> str:
    if n_cpu == n_cuda:
        return f"{n_cuda} {unit}"
    return f"{n_cuda} {unit} (CPU: {n_cpu})"


def step_bounds(s: Setting) -> Iterator[Figure]:
    n = s.sizes.bounds_batch
    x_all = test_inputs(s.data, n)
    for h, master in s.mlps.items():
        for method in ("IBP", "CROWN", "alpha-CROWN"):
            fig = Figure(f"bounds {method}, MLP-{h}", _size(n, s.n_cpu(n)))
            outs = {}
            for dev in s.devices():
                m = n if dev.type == "cuda" else s.n_cpu(n)
                model, x = s.on(master, dev), x_all[:m].to(dev)
                half = measure(
                    lambda model=model, x=x, method=method: bounds(
                        model, x, s.sizes.eps, method
                    ),
                    dev,
                    s.sizes.repeats,
                    n=m,
                )
                if half.value is not None:
                    outs[dev.type] = half.value[0].cpu()
                if dev.type == "cuda":
                    fig.cuda = half
                else:
                    fig.cpu = half
            if len(outs) == 2:
                k = min(len(outs["cpu"]), len(outs["cuda"]))
                diff = float((outs["cpu"][:k] - outs["cuda"][:k]).abs().max())
                fig.note = f"max |lower CPU - lower CUDA| = {diff:.2e}"
            yield fig


def step_radius(s: Setting) -> Iterator[Figure]:
    n = s.sizes.radius_batch
    x_all = test_inputs(s.data, n)
    for h, master in s.mlps.items():
        fig = Figure(f"certified_radius (CROWN), MLP-{h}", _size(n, s.n_cpu(n)))
        for dev in s.devices():
            m = n if dev.type == "cuda" else s.n_cpu(n)
            model, x = s.on(master, dev), x_all[:m].to(dev)
            half = measure(
                lambda model=model, x=x: certified_radius(model, x),
                dev,
                1,
                warmup=lambda model=model, x=x: certified_radius(model, x[:2]),
                n=m,
            )
            if half.value is not None:
                half.info = f"mean radius {float(half.value.mean()):.4f}"
            if dev.type == "cuda":
                fig.cuda = half
            else:
                fig.cpu = half
        yield fig


def paper_query(model: torch.nn.Module, x: torch.Tensor, k: int):
    """FV-Adv's query for ``x``: radius = FGSM radius (reset to 0.01 above 0.5) +
    0.05; the FGSM example excluded and counted in ``k``."""
    eps, x_adv, flipped = min_fgsm_eps(model, x)
    eps = torch.where(eps <= 0.5, eps, torch.full_like(eps, 0.01)).double() + 0.05
    excl = [x_adv[i : i + 1] if flipped[i] else x_adv[i:i][:0] for i in range(len(x))]
    ks = [max(1, k - len(e)) for e in excl]
    return eps, excl, ks


def step_search(s: Setting) -> Iterator[Figure]:
    h = max(s.mlps)
    master = s.mlps[h]
    n, k, work = s.sizes.search_batch, s.sizes.search_k, s.sizes.search_work
    x_all = test_inputs(s.data, n)
    size = _size(n, s.n_cpu(n)) + f", k={k}, work {work}/input"
    fig = Figure(f"LirpaVerifier.find_batch, MLP-{h}", size)
    verifier, prop, budget = LirpaVerifier(), Property(), Budget(work=work)
    for dev in s.devices():
        m = n if dev.type == "cuda" else s.n_cpu(n)
        model, x = s.on(master, dev), x_all[:m].to(dev)
        eps, excl, ks = paper_query(model, x, k)

        def run(model=model, x=x, eps=eps, excl=excl, ks=ks, upto=None):
            sl = slice(None, upto)
            return verifier.find_batch(
                model, x[sl], eps[sl], ks[sl], excl[sl], prop, budget, seed=s.seed
            )

        half = measure(run, dev, 1, warmup=lambda run=run: run(upto=2), n=m)
        if half.value is not None:
            res = half.value
            found = sum(len(r.counterexamples) for r in res)
            unsat = sum(r.status == "unsat" for r in res)
            half.info = f"{found} counterexamples, {unsat} unsat of {len(res)}"
        if dev.type == "cuda":
            fig.cuda = half
        else:
            fig.cpu = half
    yield fig
    return


def step_cnn(s: Setting) -> Iterator[Figure]:
    n = s.sizes.cnn_batch
    data = s.data
    model = dalv.models.build(
        ModelConfig(arch="cnn", hidden=128), data.input_shape, data.n_classes, seed=0
    )
    rows = min(s.sizes.train_rows, len(data.x_train))
    cfg = TrainConfig(epochs=s.sizes.cnn_epochs)
    dalv.train.fit(model, data.x_train[:rows], data.y_train[:rows], cfg, seed=0)
    x_all = test_inputs(data, n)
    for method in ("IBP", "CROWN"):
        fig = Figure(f"bounds {method}, CNN (2 conv)", _size(n, s.n_cpu(n)))
        for dev in s.devices():
            m = n if dev.type == "cuda" else s.n_cpu(n)
            net, x = s.on(model, dev), x_all[:m].to(dev)
            half = measure(
                lambda net=net, x=x, method=method: bounds(net, x, s.sizes.eps, method),
                dev,
                s.sizes.repeats,
                n=m,
            )
            if dev.type == "cuda":
                fig.cuda = half
            else:
                fig.cpu = half
        yield fig


def cycle_methods(sizes: Sizes) -> list[tuple[str, Any, str]]:
    """(label, method, note) of the cycles timed: FV-Adv's default verifier, then the
    lirpa one."""
    out = []
    for name in ("FVAAL", "Random+FV-Adv(10)"):
        base = dalv.methods.get(name)
        if sizes.cycle_fv_work is not None:
            aug = dataclasses.replace(
                base.augmenter, budget=Budget(work=sizes.cycle_fv_work)
            )
            base = dataclasses.replace(base, augmenter=aug)
        verifier = base.augmenter.verifier.name
        note = f"{verifier} verifier" + (
            " (CPU-only solver)" if verifier != "lirpa" else ""
        )
        out.append((f"{name} [{verifier}]", base, note))
        if verifier != "lirpa":
            lirpa = base.with_verifier(LirpaVerifier())
            out.append((f"{name} [lirpa]", lirpa, "lirpa verifier (on the device)"))
    return out


def mid_run_state(s: Setting, cfg: ExperimentConfig, device: torch.device):
    """``start`` on ``device``, then ``cycle_labelled`` random rows acquired."""
    state = start(s.data, cfg, s.seed, device=device)
    pool = state.pool
    n = min(s.sizes.cycle_labelled, pool.n_unlabeled - 2 * cfg.budget)
    rng = np.random.default_rng(s.seed)
    pool.label(rng.choice(pool.unlabeled_idx, n, replace=False), 1)
    state.cycle = 1
    return state


def _copy_state(state0):
    state = copy.copy(state0)
    state.pool = ActivePool(state0.pool.x, state0.pool.y, state0.pool.labeled_at)
    return state


def step_cycles(s: Setting) -> Iterator[Figure]:
    z = s.sizes
    cfg = ExperimentConfig(
        dataset=s.data.name,
        budget=z.cycle_budget,
        candidates=z.cycle_candidates,
        n_cycles=2,
        model=ModelConfig(hidden=z.cycle_hidden),
        train=TrainConfig(epochs=z.cycle_epochs),
        device="cpu",
    )
    warm_cfg = cfg.replace(budget=min(2, z.cycle_budget))
    states = {}
    for dev in s.devices():
        try:
            states[dev.type] = mid_run_state(s, cfg, dev)
        except Exception as e:
            states[dev.type] = e
    labelled = z.cycle_labelled
    for label, method, note in cycle_methods(z):
        size = f"{labelled} acquired, budget {z.cycle_budget}, k={method.augmenter.k}"
        fig = Figure(f"cycle {label}", size, note=note)
        for dev in s.devices():
            state0 = states[dev.type]
            if isinstance(state0, Exception):
                half = Half(error=f"start: {one_line(state0)}")
            else:
                rec: dict[str, Any] = {}

                def cycle(state0=state0, c=cfg, rec=rec, method=method):
                    r = run_cycle(_copy_state(state0), method, c, seed=s.seed)
                    rec["r"] = r
                    return r

                half = measure(
                    cycle,
                    dev,
                    1,
                    warmup=lambda state0=state0, method=method: run_cycle(
                        _copy_state(state0), method, warm_cfg, seed=s.seed
                    ),
                )
                r = rec.get("r")
                if r is not None:
                    sec = r.seconds
                    half.info = (
                        f"query {sec['query']:.2f} s, augment {sec['augment']:.2f} s, "
                        f"train {sec['train']:.2f} s, eval {sec['eval']:.2f} s, "
                        f"{len(r.added.x)} added, acc {r.test_acc:.3f}"
                    )
            if dev.type == "cuda":
                fig.cuda = half
            else:
                fig.cpu = half
        yield fig


# ------------------------------------------------------------------ the CUDA tests


def cuda_test_files(tests: Path) -> list[Path]:
    """Test files that mark a test ``cuda``."""
    return sorted(
        p
        for p in tests.glob("test_*.py")
        if "pytest.mark.cuda" in p.read_text(encoding="utf-8")
    )


def junit_counts(path: Path) -> dict[str, int]:
    """tests / failures / errors / skipped / passed from a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in total:
            total[key] += int(suite.get(key, 0))
    total["passed"] = (
        total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    )
    return total


def junit_failed(path: Path) -> list[str]:
    """Names of the failed or erroring tests in a pytest JUnit XML file."""
    root = ET.parse(path).getroot()
    return [
        case.get("name", "?")
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]


def step_tests(s: Setting) -> Iterator[Figure]:
    files = cuda_test_files(ROOT / "tests")
    fig = Figure("CUDA tests (pytest -m cuda)", f"{len(files)} files")
    fig.cpu = Half(info="")
    if not files:
        fig.cpu.error = "no test file marks a test with pytest.mark.cuda"
        yield fig
        return
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p"]
        cmd += ["no:cacheprovider", f"--junitxml={xml}", *map(str, files)]
        t0 = time.perf_counter()
        try:
            out = subprocess.run(
                cmd,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=s.sizes.pytest_timeout,
            )
        except subprocess.TimeoutExpired:
            fig.cpu.error = f"pytest ran past {s.sizes.pytest_timeout:.0f} s"
            yield fig
            return
        seconds = time.perf_counter() - t0
        if not xml.exists():
            tail = (out.stdout + out.stderr).strip().splitlines()[-1:]
            fig.cpu.error = f"pytest wrote no report (rc {out.returncode}): {tail}"
            yield fig
            return
        c, bad = junit_counts(xml), junit_failed(xml)
    counts = (
        f"{c['passed']} passed, {c['failures'] + c['errors']} failed, "
        f"{c['skipped']} skipped of {c['tests']}"
    )
    half = Half(seconds=seconds, info=counts)
    if c["failures"] + c["errors"]:
        half.error = counts + ": " + ", ".join(bad[:6]) + (" ..." if bad[6:] else "")
        print(out.stdout[-6000:], file=sys.stderr)
    elif c["tests"] == 0:
        half.error = "pytest -m cuda selected no test"
    if s.cuda is not None:
        fig.cpu, fig.cuda = Half(), half
        if c["skipped"] and not half.error:
            half.error = f"{c['skipped']} CUDA tests skipped on a machine with a GPU"
    else:  # without a GPU the tests skip: this checks that they are found
        fig.cpu = half
        fig.status = "skipped (no GPU)"
        if c["passed"] and not half.error:
            half.info = counts + " (a test marked cuda ran without a GPU)"
    yield fig
    return


def _step_figures(step: Callable[[Setting], Iterator[Figure]], s: Setting):
    """A step's figures, with the step itself called on the first ``next`` (so that a
    step failing before its first figure is caught where the figures are)."""
    yield from step(s)


STEP_FUNCS: dict[str, Callable[[Setting], Iterator[Figure]]] = {
    "tests": step_tests,
    "bounds": step_bounds,
    "radius": step_radius,
    "search": step_search,
    "cnn": step_cnn,
    "cycles": step_cycles,
}


# ------------------------------------------------------------------ output


def render(
    figs: Sequence[Figure],
    env: Sequence[tuple[str, str]],
    header: Sequence[str],
    footer: Sequence[str],
) -> str:
    """The text report: the command and setting, the machine, the table, the notes."""
    lines = list(header) + [""]
    width = max(len(k) for k, _ in env)
    lines += [f"{k:<{width}}  {v}" for k, v in env] + [""]
    cols = ("step", "size", "CPU s", "CUDA s", "CPU/CUDA", "GPU peak MiB", "status")
    rows = []
    for f in figs:
        r = f.row()
        cuda = f.cuda or Half()
        rows.append(
            (
                f.step,
                f.size,
                fmt_seconds(f.cpu.seconds) if f.cpu.seconds is not None else "",
                fmt_seconds(cuda.seconds),
                fmt_ratio(ratio(f.cpu.seconds, cuda.seconds, f.cpu.n, cuda.n)),
                r["cuda_peak_mib"],
                f.status,
            )
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    notes = [f"  {f.step}: {f.note}" for f in figs if f.note]
    if notes:
        lines += ["", "Notes per step:", *notes]
    lines += ["", *footer]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def write_outputs(
    out: Path,
    figs: Sequence[Figure],
    env: Sequence[tuple[str, str]],
    header: Sequence[str],
    footer: Sequence[str],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.txt").write_text(render(figs, env, header, footer), encoding="utf-8")
    with open(out / "gpu.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for f in figs:
            w.writerow(f.row())


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "reports" / "benchmarks"))
    ap.add_argument("--size", choices=sorted(SIZES), default="device")
    ap.add_argument(
        "--cpu-scale",
        type=float,
        default=1.0,
        help="the CPU half bounds/searches this share of the inputs (ratios per input)",
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--data-root", default=None, help="a folder holding MNIST/raw")
    ap.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS))
    ap.add_argument(
        "--no-cuda", action="store_true", help="run the CPU half only, even with a GPU"
    )
    a = ap.parse_args(argv)
    if not 0 < a.cpu_scale <= 1:
        ap.error(f"--cpu-scale must lie in (0, 1], got {a.cpu_scale}")
    if a.threads < 1:
        ap.error(f"--threads must be >= 1, got {a.threads}")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_num_threads(a.threads)
    sizes = SIZES[a.size]
    cuda = None
    if torch.cuda.is_available() and not a.no_cuda:
        cuda = torch.device("cuda", 0)
        torch.zeros(1, device=cuda)  # the CUDA context, outside every timed call
        torch.cuda.synchronize(cuda)
    env = environment(cuda, a.threads)
    data, data_note = load_data(sizes, a.data_root)
    cmd = "python benchmarks/gpu_check.py " + " ".join(
        shown_args(sys.argv[1:] if argv is None else argv)
    )
    header = [
        f"$ {cmd.strip()}",
        f"dalv device check, sizes {a.size!r}: {data_note}; CPU half on "
        f"{a.threads} torch threads"
        + (f", on {a.cpu_scale:g} of the inputs" if a.cpu_scale < 1 else ""),
    ]
    if cuda is None:
        header.append(NO_GPU + ("" if not a.no_cuda else " (--no-cuda)"))
    print("\n".join(header), flush=True)
    for k, v in env:
        print(f"  {k}: {v}", flush=True)

    t0 = time.perf_counter()
    mlps = {h: train_mlp(data, h, sizes, 0) for h in sizes.hidden}
    setting = Setting(data, sizes, a.cpu_scale, cuda, mlps)
    accs = ", ".join(
        f"MLP-{h} {dalv.train.evaluate(m, data.x_test, data.y_test):.3f}"
        for h, m in mlps.items()
    )
    train_note = (
        f"models: dalv.models.build + dalv.train.fit on the CPU "
        f"({min(sizes.train_rows, len(data.x_train))} rows, {sizes.train_epochs} "
        f"epochs; {time.perf_counter() - t0:.1f} s), test accuracy {accs}; "
        f"bounds radius {sizes.eps}"
    )
    footer = [
        train_note,
        "CPU/CUDA = CPU seconds over CUDA seconds (> 1: the GPU is faster)"
        + (
            ", per input (the CPU half ran on a subset, --cpu-scale)"
            if a.cpu_scale < 1
            else ""
        )
        + ".",
        "Timing: torch.cuda.synchronize() around each call, a warm-up call first, "
        f"median of {sizes.repeats} calls for bounds and the CNN, one call otherwise.",
        "GPU peak MiB: torch.cuda.max_memory_allocated over the step's CUDA half "
        "(reset before it; resident tensors count).",
        "FV-Adv's default verifier is the MILP: its solver runs on the CPU whatever "
        "the device, so the [milp] cycles show only what training and the query gain; "
        "the [lirpa] cycles run the verifier on the device.",
    ]
    if cuda is None:
        footer.append(NO_GPU + ": the CUDA columns read 'not run'.")
    figs: list[Figure] = []
    failed = []
    for name in STEPS:
        if name not in a.only:
            continue
        t_step = time.perf_counter()
        print(f"--- {name}", flush=True)
        figures = _step_figures(STEP_FUNCS[name], setting)  # runs inside next()
        while True:  # each figure is printed and written as soon as it is measured
            quiet = io.StringIO()
            try:
                with contextlib.redirect_stdout(quiet):  # auto_LiRPA's messages
                    f = next(figures)
            except StopIteration:
                break
            except Exception as e:  # a step that fails outside its measurements
                traceback.print_exc(file=sys.stderr)
                f = Figure(name, "", cpu=Half(error=one_line(e)))
                figures = iter(())
            chatter = quiet.getvalue().strip()
            if chatter:
                print(chatter[-2000:], file=sys.stderr)
            settle(f)
            if f.status == "failed":
                failed.append(f.step)
            r, c = f.row(), f.cuda or Half()
            speed = fmt_ratio(ratio(f.cpu.seconds, c.seconds, f.cpu.n, c.n))
            print(
                f"{f.step:45s} cpu {r['cpu_s'] or '-':>9s}  cuda {r['cuda_s']:>9s}  "
                f"{speed:>8s}  {f.status}  {f.note}",
                flush=True,
            )
            figs.append(f)
            elapsed = time.perf_counter() - t_start
            progress = f"(in progress: {len(figs)} figures after {elapsed:.0f} s)"
            write_outputs(Path(a.out), figs, env, header, footer + [progress])
        print(f"    ({time.perf_counter() - t_step:.1f} s)", flush=True)
    total = time.perf_counter() - t_start
    end = [f"Total {total:.0f} s (process CPU time {time.process_time():.0f} s)."]
    if failed:
        end.append(f"{len(failed)} failed: {', '.join(failed)}.")
    write_outputs(Path(a.out), figs, env, header, footer + end)
    print("\n".join(end), flush=True)
    print(f"wrote {Path(a.out) / 'gpu.txt'} and gpu.csv", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
