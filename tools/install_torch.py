"""Install torch before dalv: the CPU-only build on a machine without an NVIDIA GPU.

``make setup`` runs this with the environment's Python before ``pip install -e``. PyPI's
Linux torch wheels pull about 3 GB of CUDA libraries, useless without a GPU; PyTorch's
CPU index (``TORCH_CPU_INDEX``, default https://download.pytorch.org/whl/cpu) has
CPU-only ones. In order:

1. an NVIDIA GPU (``nvidia-smi -L`` lists one), or ``DALV_TORCH=default``: nothing to
   do; ``pip install -e`` brings the default (CUDA) wheels;
2. otherwise the ``+cpu`` build of the very torch and torchvision versions pip would
   install by default (from the CPU index, or from any index or ``--find-links`` folder
   pip is configured with), but only after a dry run showed that pip would really take
   those ``+cpu`` wheels (so a fallback never downloads the CUDA build twice). Another
   version is never swapped in: results must not depend on which route ran, and a
   torchvision built for another torch fails to load its operators;
3. no such build reachable: one line says so, and the default wheels follow.

Only the standard library is used (it runs before anything is installed). Prints one
line saying which build was chosen and why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata

TORCH = "torch>=2.4,<2.15"  # the same pins as pyproject.toml (tests check)
TORCHVISION = "torchvision>=0.19,<0.30"
CPU_INDEX = os.environ.get("TORCH_CPU_INDEX", "https://download.pytorch.org/whl/cpu")
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


def has_nvidia_gpu() -> bool:
    """True when the NVIDIA driver lists at least one GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    r = subprocess.run([exe, "-L"], capture_output=True, text=True)
    return r.returncode == 0 and "GPU" in r.stdout


def _would_install(args: list[str]) -> dict[str, str] | None:
    """Name → version that ``pip install args`` would install (a dry run), or None;
    ``"torch from"`` is where its torch wheel would come from."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        cmd = [*PIP, "install", "--dry-run", "-q", "--report", report, *args]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(report):
            return None
        with open(report) as f:
            items = json.load(f).get("install", [])
    out = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in items}
    for i in items:
        if i["metadata"]["name"].lower() == "torch":
            url = i.get("download_info", {}).get("url", "")
            out["torch from"] = url.rsplit("/", 1)[0] if url else "?"
    return out


def _cpu_versions() -> list[str]:
    """``+cpu`` torch versions that pip can see (its indexes and find-links)."""
    r = subprocess.run(
        [*PIP, "index", "versions", "torch"], capture_output=True, text=True
    )
    m = re.search(r"Available versions: (.*)", r.stdout)
    found = m.group(1).split(", ") if m else []
    return [v.strip() for v in found if v.strip().endswith("+cpu")]


def plans(torch_v: str, vision_v: str) -> list[tuple[str, list[str]]]:
    """The ways to the CPU-only build of the versions pip would otherwise install,
    in the order tried: (description, pip args)."""
    quick = ["--retries", "0", "--timeout", "20"]
    pins = [f"torch=={torch_v}", f"torchvision=={vision_v}"]
    out = [(CPU_INDEX, [*quick, "--index-url", CPU_INDEX, *pins])]
    if f"{torch_v}+cpu" in _cpu_versions():
        cpu_pins = [f"torch=={torch_v}+cpu", f"torchvision=={vision_v}+cpu"]
        out.append((f"torch {torch_v}+cpu found by pip", [*quick, *cpu_pins]))
    return out


def _is_cpu_build(planned: dict[str, str] | None, torch_v: str, vision_v: str) -> bool:
    """The dry run would install exactly ``torch_v+cpu`` and a matching torchvision."""
    if not planned:
        return False
    return (
        planned.get("torch") == f"{torch_v}+cpu"
        and planned.get("torchvision", "").split("+")[0] == vision_v.split("+")[0]
    )


def main() -> int:
    choice = os.environ.get("DALV_TORCH", "auto")
    if choice == "default":
        print("torch: DALV_TORCH=default: the default wheels")
        return 0
    if choice != "cpu" and has_nvidia_gpu():
        print("torch: NVIDIA GPU found: the default (CUDA) wheels")
        return 0
    try:
        installed = metadata.version("torch")
    except metadata.PackageNotFoundError:
        installed = None
    if installed is not None:  # a rerun: keep it (remove .venv to change builds)
        kind = "CPU-only" if installed.endswith("+cpu") else "default"
        print(f"torch: {kind} torch {installed} already installed")
        return 0
    default = _would_install([TORCH, TORCHVISION])
    if not default or "torch" not in default or "torchvision" not in default:
        print("torch: no GPU, but pip cannot resolve torch here: the default wheels")
        return 0
    torch_v, vision_v = default["torch"], default["torchvision"]
    # The CPU build of the very versions pip would take: the CPU kernels (and so every
    # result) are those of the default install; another version is never swapped in.
    for where, args in plans(torch_v, vision_v):
        planned = _would_install(args)
        if not _is_cpu_build(planned, torch_v, vision_v):
            continue
        r = subprocess.run([*PIP, "install", "-q", *args], capture_output=True)
        if r.returncode == 0:
            source = planned.get("torch from", where)
            print(f"torch: no GPU: CPU-only torch {planned['torch']} (from {source})")
            return 0
    print(
        f"torch: no GPU, but no CPU-only build of torch {torch_v} can be had here "
        f"({CPU_INDEX} unreachable, none in pip's other sources): the default wheels "
        "(about 3 GB more, with CUDA libraries)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
