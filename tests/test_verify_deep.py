"""Soundness on deeper, wider networks: 2-4 hidden layers of 32-256 ReLUs, checked
against a dense grid in 2-D.

The exact reference of ``test_verify_soundness`` enumerates activation patterns and so
stops at about ten ReLUs. Here the input has two coordinates, so a 257 x 257 grid over
the box is an independent (incomplete, but never wrong) reference: a grid point whose
margin is at most ``-margin - tol`` and that lies ``delta + 1e-9`` away from every
excluded point in every coordinate is a robust counterexample, and a backend that
answers "unsat" there is unsound. Every example a backend returns is re-checked by this
file's own float64 forward pass. The sweep must decide both ways (some "sat", some
"unsat"), so it cannot pass by answering "unknown".
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from dalv.verify import Budget, LirpaVerifier, MilpVerifier, Property, winner_runner_up

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = [(2, 32), (2, 256), (3, 64), (3, 128), (4, 32), (4, 256)]
GRID = 257
TOL = 1e-6


def _net(depth: int, width: int, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    dims = [2] + [width] * depth + [3]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        lin = nn.Linear(a, b).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g, dtype=torch.float64))
            lin.weight.mul_((2.0 / a) ** 0.5)
            lin.bias.copy_(0.3 * torch.randn(b, generator=g, dtype=torch.float64))
        layers.append(lin)
        if i < depth:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _forward(net: nn.Module, pts: np.ndarray) -> np.ndarray:
    """This file's own float64 forward pass (numpy, from the weights)."""
    h = pts
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for i, lin in enumerate(linears):
        h = h @ lin.weight.detach().numpy().T + lin.bias.detach().numpy()
        if i < len(linears) - 1:
            h = np.maximum(h, 0.0)
    return h


def _cases():
    """Four queries per shape; half at inputs near the decision boundary (so that the
    larger radii hold counterexamples), half anywhere."""
    rng = np.random.default_rng(11)
    coarse = np.stack(np.meshgrid(*[np.linspace(0.1, 0.9, 41)] * 2), -1).reshape(-1, 2)
    out = []
    for depth, width in SHAPES:
        for j in range(4):
            for t in range(50):  # near-boundary cases: a net with a boundary inside
                net = _net(depth, width, seed=100 * depth + width + j + 1000 * t)
                win = _forward(net, coarse).argmax(1).reshape(41, 41)
                edge = np.zeros_like(win, dtype=bool)  # a neighbour has another winner
                edge[:-1] |= win[:-1] != win[1:]
                edge[:, :-1] |= win[:, :-1] != win[:, 1:]
                edge = edge.reshape(-1)
                if j >= 2 or edge.any():
                    break
            pool = (
                np.flatnonzero(edge) if j < 2 and edge.any() else np.arange(edge.size)
            )
            x = coarse[rng.choice(pool)] + rng.uniform(-0.005, 0.005, size=2)
            eps = float(rng.choice([0.03, 0.08] if j < 2 else [0.01, 0.03, 0.08]))
            out.append((f"{depth}x{width}#{j}", net, x, eps, j % 2 == 1))
    return out


def _grid_reference(net, x, eps, exclude, prop, c1, c2):
    lo, hi = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
    a = np.linspace(lo[0], hi[0], GRID)
    b = np.linspace(lo[1], hi[1], GRID)
    pts = np.stack(np.meshgrid(a, b, indexing="ij"), -1).reshape(-1, 2)
    y = _forward(net, pts)
    g = y[:, c1] - y[:, c2]
    far = np.ones(len(pts), dtype=bool)
    for e in exclude:
        far &= (np.abs(pts - e) >= prop.delta + 1e-9).all(1)
    robust = (g <= -prop.margin - TOL) & far
    return lo, hi, pts, g, robust


@pytest.mark.parametrize(
    "name, make",
    [
        ("milp", lambda: MilpVerifier()),
        ("lirpa", lambda: LirpaVerifier()),
    ],
)
def test_deep_networks_never_unsound_against_a_2d_grid(name, make):
    verifier = make()
    counts, problems = Counter(), []
    for label, net, x, eps, with_excl in _cases():
        prop = Property()
        xt = torch.tensor(x)[None]
        with torch.no_grad():
            c1, c2 = (int(v) for v in winner_runner_up(net(xt)))
        exclude = np.zeros((0, 2))
        if with_excl:  # exclude one grid counterexample, if there is one
            _, _, pts, _, robust = _grid_reference(net, x, eps, exclude, prop, c1, c2)
            if robust.any():
                exclude = pts[np.flatnonzero(robust)[robust.sum() // 2]][None]
        lo, hi, _, _, robust = _grid_reference(net, x, eps, exclude, prop, c1, c2)
        res = verifier.find(
            net, xt[0], eps, 1, torch.tensor(exclude), prop, Budget(work=400), seed=0
        )
        counts[res.status] += 1
        if res.status == "unsat" and robust.any():
            problems.append(f"{name} {label}: unsat, the grid holds {robust.sum()}")
        w = res.counterexamples.reshape(-1, 2).double().numpy()
        if len(w):
            y = _forward(net, w)
            ok = (w >= lo - 1e-12).all(1) & (w <= hi + 1e-12).all(1)
            ok &= y[:, c1] - y[:, c2] <= -prop.margin + 1e-12
            for e in exclude:
                ok &= (np.abs(w - e) >= prop.delta).all(1)
            if not ok.all():
                problems.append(
                    f"{name} {label}: {int((~ok).sum())} invalid example(s)"
                )
    print(f"\n{name} on 2-4 x 32-256 networks: {dict(counts)}")
    assert not problems, problems
    assert counts["sat"] >= 3 and counts["unsat"] >= 3, counts
