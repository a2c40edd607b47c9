"""Batched attacks vs one-input-at-a-time loops, on an MLP-128 trained on mnist5k.

    python benchmarks/bench_attacks.py                 # 10,000 inputs, 2 CPU threads
    python benchmarks/bench_attacks.py --device cuda   # the same on a GPU

Inputs: the 5,000 real mnist5k digits plus 5,000 noisy copies of them (uniform noise of
±0.05, clipped), so 10,000 MNIST-shaped inputs in [0, 1].

Reports, side by side:

* ``min_fgsm_eps`` (FVAAL's score: 1 gradient + 11 FGSM evaluations per input), batched,
  vs a plain-torch loop scoring one input at a time as the reference code does; their
  ratio; and the arithmetic floor: one gradient plus eleven bare forward passes over the
  batch.
* ``deepfool`` (DFAL's score) over the same inputs, batched, vs a one-at-a-time loop on
  a subset (extrapolated).

Targets on 2 CPU cores: min_fgsm_eps ≥ 5× faster than the loop and ≤ 1 s; DeepFool ≤ 10
s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

import dalv
from dalv import attacks
from dalv.config import TrainConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int = 1) -> tuple[float, object]:
    """Median wall time over ``repeats`` calls (after one warm-up call when repeats >
    1)."""
    out = None
    if repeats > 1:
        out = fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def min_eps_loop(model, x: torch.Tensor, tol: float = 5e-4) -> torch.Tensor:
    """The reference code's search, one input at a time (plain torch)."""
    out = torch.empty(len(x), device=x.device)
    for i in range(len(x)):
        xi = x[i : i + 1].clone().requires_grad_(True)
        logits = model(xi)
        pred = logits.argmax(1)
        (g,) = torch.autograd.grad(F.cross_entropy(logits, pred), xi)
        sign = g.sign()
        left, right, eps, found = 0.0, 1.0, 0.5, False
        with torch.no_grad():
            while right - left > tol:
                if model((x[i : i + 1] + eps * sign).clamp(0, 1)).argmax(1) != pred:
                    right, found = eps, True
                else:
                    left = eps
                eps = left + (right - left) / 2
        out[i] = eps if found else 1.0
    return out


def deepfool_loop(model, x: torch.Tensor) -> torch.Tensor:
    """DeepFool one input at a time (the same algorithm, batch of one)."""
    return torch.cat([attacks.deepfool(model, x[i : i + 1])[1] for i in range(len(x))])


def floor(model, x: torch.Tensor, n_eval: int = 11) -> None:
    """One input-gradient pass and ``n_eval`` forward passes over the whole batch."""
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    torch.autograd.grad(F.cross_entropy(logits, logits.argmax(1), reduction="sum"), xg)
    with torch.no_grad():
        for _ in range(n_eval):
            model(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="inputs to score")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=5, help="training epochs of the MLP")
    p.add_argument(
        "--repeats", type=int, default=3, help="timed repeats of batched calls"
    )
    p.add_argument(
        "--loop-n",
        type=int,
        default=None,
        help="inputs for the min_fgsm_eps loop (default: all; else extrapolated)",
    )
    p.add_argument(
        "--deepfool-loop-n",
        type=int,
        default=200,
        help="inputs for the DeepFool loop (extrapolated to --n)",
    )
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    data = dalv.data.load("mnist5k")
    model = dalv.models.build(
        dalv.ModelConfig(hidden=128), data.input_shape, 10, seed=0
    )
    dalv.train.fit(
        model, data.x_train, data.y_train, TrainConfig(epochs=a.epochs), seed=0
    )
    model = model.to(device).eval()
    acc = dalv.train.evaluate(model, data.x_test, data.y_test)

    real = torch.cat([data.x_train, data.x_test])
    gen = torch.Generator().manual_seed(0)
    noisy = (real + (torch.rand(real.shape, generator=gen) - 0.5) * 0.1).clamp(0, 1)
    x = torch.cat([real, noisy])[: a.n].to(device)
    print(
        f"device {device} ({torch.get_num_threads()} threads), MLP-128 test acc "
        f"{acc:.3f}, "
        f"{len(x)} inputs of shape {tuple(x.shape[1:])}"
    )
    load_start = os.getloadavg()[0]

    # Interleaved after a warm-up, so that a change in machine load hits both alike.
    attacks.min_fgsm_eps(model, x), floor(model, x)
    t_batch, t_floor = [], []
    for _ in range(a.repeats):
        t, (eps, _, flipped) = timed(lambda: attacks.min_fgsm_eps(model, x), device)
        t_batch.append(t)
        t_floor.append(timed(lambda: floor(model, x), device)[0])
    t_batch, t_floor = statistics.median(t_batch), statistics.median(t_floor)
    loop_n = min(a.loop_n or len(x), len(x))
    t_loop, eps_loop = timed(lambda: min_eps_loop(model, x[:loop_n]), device)
    t_loop_full = t_loop * len(x) / loop_n
    same = float((eps_loop == eps[:loop_n]).float().mean())

    t_df, (x_df, r_df) = timed(lambda: attacks.deepfool(model, x), device, a.repeats)
    x_raw, _ = attacks.deepfool(model, x, clip=False)
    df_n = min(a.deepfool_loop_n, len(x))
    t_df_loop, r_loop = timed(lambda: deepfool_loop(model, x[:df_n]), device)
    t_df_loop_full = t_df_loop * len(x) / df_n
    df_close = float(((r_loop - r_df[:df_n]).abs() < 1e-4).float().mean())
    with torch.no_grad():
        pred = model(x).argmax(1)
        raw_rate = float((model(x_raw).argmax(1) != pred).float().mean())
        clip_rate = float((model(x_df).argmax(1) != pred).float().mean())

    ext = "" if loop_n == len(x) else f" (extrapolated from {loop_n})"
    print("\nmin_fgsm_eps (FVAAL score, 1 gradient + 11 forward passes per input)")
    print(f"  batched                 {t_batch:8.3f} s   target <= 1 s")
    print(f"  per-example loop        {t_loop_full:8.3f} s{ext}")
    print(f"  speed-up                {t_loop_full / t_batch:8.1f} x   target >= 5x")
    print(
        f"  arithmetic floor        {t_floor:8.3f} s   (batched = "
        f"{t_batch / t_floor:.2f} x floor)"
    )
    print(
        f"  same ε as the loop      {same:8.1%}   flipped "
        f"{float(flipped.float().mean()):.1%}"
    )
    print("\ndeepfool (DFAL score, <= 20 steps, all 10 classes)")
    print(f"  batched                 {t_df:8.3f} s   target <= 10 s")
    print(
        f"  per-example loop        {t_df_loop_full:8.3f} s (extrapolated from {df_n})"
    )
    print(f"  speed-up                {t_df_loop_full / t_df:8.1f} x")
    print(f"  same norm as the loop   {df_close:8.1%}")
    print(f"  class changed: x + r {raw_rate:.1%}, clip(x + r) {clip_rate:.1%}")
    print(
        f"\n1-minute load average: {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at "
        f"the end ({os.cpu_count()} CPUs); other processes inflate every time above."
    )


if __name__ == "__main__":
    main()
