"""Classifiers.

Owns ``mlp``, ``cnn``, ``build``, ``embed`` (penultimate features), ``resolve_device``
and ``model_device`` / ``model_dtype`` (the one place a model's device is read). May
import torch and ``dalv.config``.

Models are plain ``nn.Sequential`` so that gradient attacks, auto_LiRPA and Marabou all
read the very same object. The last layer is a bias-free ``Linear`` producing logits.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dalv.config import ModelConfig

__all__ = [
    "mlp",
    "cnn",
    "build",
    "embed",
    "resolve_device",
    "model_device",
    "model_dtype",
    "glorot_init_",
]


def glorot_init_(
    model: nn.Module, generator: torch.Generator | None = None
) -> nn.Module:
    """Keras' defaults (Glorot-uniform weights, zero biases), as the reference code
    trains."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel()
            fan_out = m.weight.shape[0] * (
                m.weight[0][0].numel() if m.weight.dim() > 2 else 1
            )
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            with torch.no_grad():
                m.weight.copy_(
                    torch.empty_like(m.weight).uniform_(
                        -bound, bound, generator=generator
                    )
                )
                if m.bias is not None:
                    m.bias.zero_()
    return model


def mlp(in_features: int, hidden: int = 128, n_classes: int = 10) -> nn.Sequential:
    """The paper's network: Flatten → Linear(d, h) → ReLU → Linear(h, C, bias=False).

    Shapes:
        input [B, *shape] with prod(shape) = in_features; output logits [B, n_classes].
    """
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_classes, bias=False),
    )


def cnn(
    input_shape: tuple[int, ...], hidden: int = 128, n_classes: int = 10
) -> nn.Sequential:
    """A small CNN option: two stride-2 3×3 convolutions, then the MLP head.

    Shapes:
        input [B, c, h, w]; output logits [B, n_classes].
    """
    c, h, w = input_shape
    oh, ow = (h + 1) // 2, (w + 1) // 2
    oh, ow = (oh + 1) // 2, (ow + 1) // 2
    return nn.Sequential(
        nn.Conv2d(c, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * oh * ow, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_classes, bias=False),
    )


def build(
    cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int, *, seed: int
) -> nn.Sequential:
    """A freshly initialised model (Glorot-uniform from ``seed``), on the CPU."""
    if cfg.arch == "mlp":
        n_in = math.prod(input_shape)
        model = mlp(n_in, cfg.hidden, n_classes)
    else:
        if len(input_shape) != 3:
            raise ValueError(f"cnn needs [c, h, w] inputs, got shape {input_shape}")
        model = cnn(input_shape, cfg.hidden, n_classes)
    return glorot_init_(model, torch.Generator().manual_seed(seed))


def embed(model: nn.Sequential, x: Tensor) -> Tensor:
    """Penultimate features: everything but the last layer (the MLP's hidden ReLU
    output).

    Shapes:
        x [B, *shape] → [B, hidden].
    """
    return model[:-1](x)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            "device 'cuda' requested but no CUDA GPU is visible; use --device cpu"
        )
    return torch.device(device)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for parameter-free models)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating parameter (torch's default otherwise)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()
