"""Fitting and evaluating models.

Owns ``fit``, ``predict_logits``, ``evaluate``. May import torch, ``dalv.config``,
``dalv.models``.

Everything is seeded through an explicit ``torch.Generator``: the same seed, data and
device give the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dalv.config import TrainConfig
from dalv.models import model_device

__all__ = ["fit", "predict_logits", "evaluate"]


def fit(
    model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, *, seed: int
) -> nn.Module:
    """Train ``model`` in place with Adam and cross-entropy on logits; returns it.

    A fresh optimiser every call (as the reference code compiles one per cycle); batches
    are reshuffled each epoch by a generator seeded with ``seed``.

    Shapes:
        x [N, *input_shape] on any device (moved to the model's); y [N] int64.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if len(x) == 0:
        raise ValueError("cannot fit on an empty training set")
    device = model_device(model)
    x, y = x.to(device), y.to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    n = len(x)
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, cfg.batch_size):
            b = order[start : start + cfg.batch_size]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """Logits for ``x`` in chunks, on the model's device.

    Shapes:
        x [N, *input_shape] → [N, n_classes] on the model's device.
    """
    device = model_device(model)
    model.eval()
    out = [
        model(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out) if out else torch.empty(0, device=device)


def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    pred = predict_logits(model, x).argmax(1).cpu()
    return float((pred == y.cpu()).float().mean())
