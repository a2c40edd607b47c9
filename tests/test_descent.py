"""``dalv.verify.descent.margin_pgd``: one loop for numpy and torch.

The MILP backend runs it in numpy on merged float64 layers, the branch and bound in
torch on the model; on the same network, starts and box they must walk the same way.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dalv.verify import Property
from dalv.verify.descent import decaying_step, margin_pgd
from dalv.verify.geometry import project, project_feasible
from dalv.verify.milp_encode import margin_and_grad, merge_layers
from dalv.verify.network import affine_relu_layers


def _layers(model: nn.Module):
    return merge_layers(
        [
            (a.weight.numpy(), a.bias.numpy(), a.relu)
            for a in affine_relu_layers(model, dtype=torch.float64)
        ]
    )


def _net(seed: int, d: int = 6, h: int = 16, c: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, c)).double()


@pytest.mark.parametrize("freeze", [False, True])
@pytest.mark.parametrize("separation", ["every_coord", "any_coord"])
@pytest.mark.parametrize("seed", range(4))
def test_numpy_and_torch_walk_the_same_way(freeze, separation, seed):
    model = _net(seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 0.8, size=6)
    lo, hi = np.clip(x - 0.15, 0, 1), np.clip(x + 0.15, 0, 1)
    exclude = rng.uniform(lo, hi, size=(3, 6))
    delta = 0.01
    with torch.no_grad():
        top = model(torch.tensor(x)[None]).argsort(descending=True)[0]
    spec = np.zeros((1, 3))
    spec[0, int(top[0])], spec[0, int(top[1])] = 1.0, -1.0
    layers = _layers(model)
    starts = np.concatenate([x[None], rng.uniform(lo, hi, size=(7, 6))])
    steps, target = 12, -0.05

    best_np, g_np = margin_pgd(
        starts,
        lambda v: project(v, lo, hi, exclude, delta, separation),
        lambda v, grad: margin_and_grad(layers, spec, v),
        steps,
        decaying_step(hi - lo, steps),
        target,
        freeze,
    )

    m = starts.shape[0]
    lo_t = torch.tensor(lo).expand(m, -1)
    hi_t = torch.tensor(hi).expand(m, -1)
    ex_t = torch.tensor(exclude).expand(m, -1, -1)
    mask = torch.ones(m, 3, dtype=torch.bool)
    prop = Property(separation=separation, delta=delta)
    s_t = torch.tensor(spec)

    def margin_t(v, grad):
        with torch.enable_grad():
            v = v.detach().requires_grad_(grad)
            g = (model(v) @ s_t.T)[:, 0]
            if not grad:
                return g.detach(), None
            (dg,) = torch.autograd.grad(g.sum(), v)
        return g.detach(), dg

    best_t, g_t = margin_pgd(
        torch.tensor(starts),
        lambda v: project_feasible(v, lo_t, hi_t, ex_t, mask, prop),
        margin_t,
        steps,
        decaying_step(hi_t - lo_t, steps),
        target,
        freeze,
    )
    assert np.allclose(best_np, best_t.numpy(), atol=1e-12)
    assert np.allclose(g_np, g_t.numpy(), atol=1e-9, equal_nan=True)


def test_freeze_keeps_a_done_start_where_it_arrived():
    """A frozen start keeps the first point at or below the target; without freezing
    it runs on, and its best margin can only be lower."""
    model = _net(7, d=4)
    rng = np.random.default_rng(7)
    x = rng.uniform(0.3, 0.7, size=4)
    lo, hi = np.clip(x - 0.3, 0, 1), np.clip(x + 0.3, 0, 1)
    with torch.no_grad():
        top = model(torch.tensor(x)[None]).argsort(descending=True)[0]
    spec = np.zeros((1, 3))
    spec[0, int(top[0])], spec[0, int(top[1])] = 1.0, -1.0
    layers = _layers(model)
    starts = rng.uniform(lo, hi, size=(16, 4))
    empty = np.zeros((0, 4))
    calls = []

    def margin(v, grad):
        calls.append(1)
        return margin_and_grad(layers, spec, v)

    args = (
        lambda v: project(v, lo, hi, empty, 0.0, "every_coord"),
        margin,
        30,
        decaying_step(hi - lo, 30),
    )
    g0, _ = margin_and_grad(layers, spec, starts)
    target = float(np.quantile(g0, 0.5))  # half the starts are done at once
    frozen, g_f = margin_pgd(starts, *args, target, freeze=True)
    free, g_n = margin_pgd(starts, *args, target, freeze=False)
    done0 = g0 <= target
    assert done0.any() and (~done0).any()
    assert np.array_equal(frozen[done0], starts[done0])  # never moved
    assert (g_n <= g_f + 1e-12).all()
    assert (g_f[np.isfinite(g_f)] <= g0[np.isfinite(g_f)] + 1e-12).all()
