"""What the verifiers need to know about a network: its layers and a float64 forward.

Owns: layer validation, the affine/ReLU view of a network, ``forward64`` (and
``forward_weights``, the same in NumPy for solver workers), the handling of input shapes
and the checks of tensor arguments; may import: torch, numpy, the standard library. (A
model's device and dtype are read by ``dalv.models.model_device`` / ``model_dtype``.)

The verifiers accept ``nn.Sequential`` stacks of ``Flatten``, ``Linear``, ``ReLU`` and
``Conv2d`` (nested ``Sequential`` blocks are flattened) that end with a ``Linear`` or
``Conv2d`` (the logits: a final ``ReLU`` is rejected by every entry point). A ``Conv2d``
must have ``dilation=1``, ``groups=1``, ``padding_mode="zeros"`` and numeric padding:
auto_LiRPA 0.3 bounds dilated and grouped convolutions unsoundly and crashes on the
other padding modes, so ``check_model`` rejects them by name before any bound is
computed. The auto_LiRPA bounds and the ``lirpa`` counterexample search handle all four
layer types; the Marabou backend and the pure-torch CROWN need the affine/ReLU form (no
``Conv2d``), which ``affine_relu_layers`` extracts. Consecutive ``Linear`` layers
without a ``ReLU`` between them are allowed everywhere (``AffineLayer.relu`` says where
a ReLU follows).

The verifiers read the weights, not ``forward``, so ``check_model`` also refuses, by
name and before any work, what would make ``model(x)`` differ from the layers: forward
hooks and pre-hooks (on any submodule, or global ones), a layer or ``Sequential`` whose
``forward`` is overridden, and ``Flatten`` with ``start_dim != 1`` or ``end_dim != -1``
(the backends flatten each input whole). The weights must share one dtype, float16,
float32 or float64 (float64 products of them are exact); bfloat16 is refused with the
exact fix (``model.float()``), since NumPy, which the solvers use, has none.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "SUPPORTED_LAYERS",
    "AffineLayer",
    "leaf_layers",
    "check_model",
    "affine_relu_layers",
    "forward64",
    "forward_weights",
    "fold_leading_affine",
    "single_input",
    "check_batch",
    "check_tensor",
]

SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Flatten,
    nn.Linear,
    nn.ReLU,
    nn.Conv2d,
)


@dataclass(frozen=True)
class AffineLayer:
    """One affine map ``z = W a + b`` of an affine/ReLU network.

    Attributes:
        weight: ``[n_out, n_in]``.
        bias: ``[n_out]`` (zeros when the layer has no bias).
        relu: Whether a ReLU follows this layer.
    """

    weight: Tensor
    bias: Tensor
    relu: bool


def leaf_layers(model: nn.Module) -> Iterator[nn.Module]:
    """Yield the layers of a (possibly nested) ``nn.Sequential`` in order.

    Raises:
        ValueError: ``model`` is not an ``nn.Sequential``.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(
            "verification needs an nn.Sequential of Flatten/Linear/ReLU/Conv2d, "
            f"got {type(model).__name__}"
        )
    for layer in model:
        if isinstance(layer, nn.Sequential):
            yield from leaf_layers(layer)
        else:
            yield layer


def check_model(
    model: nn.Module, *, allow_conv: bool = True, who: str = "verification"
) -> list[nn.Module]:
    """Validate a network's layers and return them, flattened.

    Args:
        model: The network.
        allow_conv: Whether ``Conv2d`` is acceptable to the caller.
        who: The caller's name, for error messages.

    Returns:
        The leaf layers in order.

    Raises:
        ValueError: A layer type is not supported (the message names it), a
            ``Conv2d`` option is not supported (dilation, groups, padding mode, string
            padding), a ``Flatten`` other than ``Flatten(1, -1)``, a layer or
            ``Sequential`` whose ``forward`` is overridden, forward hooks or pre-hooks
            (on any submodule, or global ones), the network ends with a ReLU, it has no
            Linear/Conv2d layer, or its weights are bfloat16 or of mixed dtypes.
    """
    _check_hooks(model, who)
    layers = list(leaf_layers(model))
    for m in model.modules():
        if isinstance(m, nn.Sequential) and (
            type(m).forward is not nn.Sequential.forward or "forward" in vars(m)
        ):
            raise ValueError(
                f"{who} needs a plain nn.Sequential, but {type(m).__name__} "
                "overrides forward (the verifiers read the layers, not forward)"
            )
    for i, layer in enumerate(layers):
        if not isinstance(layer, SUPPORTED_LAYERS):
            raise ValueError(
                f"{who} does not support layer {i} of type {type(layer).__name__}; "
                "supported: Flatten, Linear, ReLU, Conv2d"
            )
        _check_own_forward(layer, i, who)
        if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) != (
            1,
            -1,
        ):
            raise ValueError(
                f"{who} does not support layer {i}, Flatten(start_dim="
                f"{layer.start_dim}, end_dim={layer.end_dim}); supported: "
                "Flatten(start_dim=1, end_dim=-1) (the default), which flattens "
                "each input whole"
            )
        if isinstance(layer, nn.Conv2d):
            if not allow_conv:
                raise ValueError(
                    f"{who} does not support layer {i} of type Conv2d (use the "
                    "auto_LiRPA bounds or backend='lirpa' for convolutional networks)"
                )
            _check_conv(layer, i, who)
    if not any(isinstance(layer, (nn.Linear, nn.Conv2d)) for layer in layers):
        raise ValueError(f"{who} needs at least one Linear or Conv2d layer")
    prev = None  # the last layer that is not a Flatten
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.ReLU) and not isinstance(prev, (nn.Linear, nn.Conv2d)):
            raise ValueError(
                f"{who}: the ReLU at layer {i} must follow a Linear or Conv2d layer"
            )
        if not isinstance(layer, nn.Flatten):
            prev = layer
    last = [layer for layer in layers if not isinstance(layer, nn.Flatten)][-1]
    if isinstance(last, nn.ReLU):
        raise ValueError(
            f"{who}: the network must end with a Linear or Conv2d layer (the logits); "
            "a final ReLU is not supported (drop it: it clips the logits at 0)"
        )
    _check_dtypes(layers, who)
    return layers


def _check_hooks(model: nn.Module, who: str) -> None:
    """Refuse forward hooks and pre-hooks (on any submodule, or global ones).

    The verifiers read the layers' weights; a hook that changes what ``model(x)``
    returns would make the model's own classes and the verified function differ.
    """
    glob = nn.modules.module
    for name in ("_global_forward_pre_hooks", "_global_forward_hooks"):
        if getattr(glob, name, None):
            kind = "pre-hook" if "pre" in name else "hook"
            raise ValueError(
                f"{who} does not support global forward {kind}s "
                f"(torch.nn.modules.module.register_module_forward_{kind}): remove "
                "them (their handles' .remove()) before verifying"
            )
    for path, m in model.named_modules():
        for attr, kind in (
            ("_forward_pre_hooks", "pre-hook"),
            ("_forward_hooks", "hook"),
        ):
            if getattr(m, attr, None):
                where = f"submodule {path!r}" if path else "the model itself"
                raise ValueError(
                    f"{who} does not support forward {kind}s; {where} "
                    f"({type(m).__name__}) has {len(getattr(m, attr))}: remove them "
                    "(the handle's .remove()) before verifying"
                )


def _check_own_forward(layer: nn.Module, i: int, who: str) -> None:
    """Refuse a layer whose ``forward`` is not its torch class's (a subclass or an
    instance attribute that overrides it computes something the weights do not)."""
    base = next(t for t in SUPPORTED_LAYERS if isinstance(layer, t))
    if type(layer).forward is not base.forward or "forward" in vars(layer):
        raise ValueError(
            f"{who} does not support layer {i} ({type(layer).__name__}): its forward "
            f"is not nn.{base.__name__}'s; use a plain nn.{base.__name__}"
        )


_DTYPES = (torch.float16, torch.float32, torch.float64)


def _check_dtypes(layers: list[nn.Module], who: str) -> None:
    """One floating dtype for every weight and bias, float16, float32 or float64.

    bfloat16 is refused (NumPy, which the solvers and the witnesses' directed rounding
    use, has no bfloat16); mixed dtypes are refused by the layers' names.
    """
    seen: list[tuple[int, str, torch.dtype]] = []
    for i, layer in enumerate(layers):
        for pname, p in layer.named_parameters(recurse=False):
            seen.append((i, f"{type(layer).__name__}.{pname}", p.dtype))
    for i, what, dtype in seen:
        if dtype not in _DTYPES:
            raise ValueError(
                f"{who} does not support {dtype} weights (layer {i}, {what}); "
                "supported: float16, float32, float64 (convert with model.float(), "
                "which is exact for bfloat16)"
            )
    dtypes = {dtype for _, _, dtype in seen}
    if len(dtypes) > 1:
        first = seen[0]
        other = next(s for s in seen if s[2] != first[2])
        raise ValueError(
            f"{who} needs one dtype for the whole network, but layer {first[0]} "
            f"({first[1]}) is {first[2]} and layer {other[0]} ({other[1]}) is "
            f"{other[2]}: convert the model with model.float() or model.double()"
        )


def _check_conv(layer: nn.Conv2d, i: int, who: str) -> None:
    """Reject the Conv2d options auto_LiRPA 0.3 bounds unsoundly or cannot handle."""
    bad = []
    if tuple(layer.dilation) != (1, 1):
        bad.append(f"dilation={tuple(layer.dilation)}")
    if layer.groups != 1:
        bad.append(f"groups={layer.groups}")
    if layer.padding_mode != "zeros":
        bad.append(f"padding_mode={layer.padding_mode!r}")
    if isinstance(layer.padding, str):
        bad.append(f"padding={layer.padding!r}")
    if bad:
        raise ValueError(
            f"{who} does not support Conv2d layer {i} with {', '.join(bad)}; "
            "supported: dilation=1, groups=1, padding_mode='zeros' and integer padding"
        )


def affine_relu_layers(
    model: nn.Module, *, dtype: torch.dtype = torch.float64, who: str = "verification"
) -> list[AffineLayer]:
    """The network as a chain of affine maps, each optionally followed by a ReLU.

    ``Flatten`` is dropped (callers flatten the inputs). The last affine map produces
    the logits (``check_model`` rejects a final ReLU); an affine map may be followed by
    another without a ReLU between them (``relu=False``).

    Args:
        model: A Flatten/Linear/ReLU ``nn.Sequential``.
        dtype: dtype of the returned weights (float64 by default, for exact checks).
        who: The caller's name, for error messages.

    Returns:
        The affine layers, first to last.

    Raises:
        ValueError: ``Conv2d`` or another unsupported layer, a ReLU that does not follow
            a Linear, or a ReLU after the last Linear (see ``check_model``).
    """
    out: list[AffineLayer] = []
    for layer in check_model(model, allow_conv=False, who=who):
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().to(dtype)
            if layer.bias is None:
                b = torch.zeros(w.shape[0], dtype=dtype, device=w.device)
            else:
                b = layer.bias.detach().to(dtype)
            out.append(AffineLayer(w, b, relu=False))
        elif isinstance(layer, nn.ReLU):  # check_model: it follows a Linear
            out[-1] = AffineLayer(out[-1].weight, out[-1].bias, relu=True)
    return out


def fold_leading_affine(layers: list[AffineLayer]) -> list[AffineLayer]:
    """Merge the affine layers before the first ReLU into one (float64 products).

    After folding, ``layers[0]`` is followed by a ReLU unless the network has none (then
    one affine layer is left), so the pre-activations of the first ReLU layer are an
    affine function of the input: what the branch and bound's ReLU splits need.

    Args:
        layers: An affine/ReLU chain (``affine_relu_layers``).

    Returns:
        The chain with its leading ReLU-free affine layers folded into the next one.
    """
    head = 0
    while head < len(layers) - 1 and not layers[head].relu:
        head += 1
    if head == 0:
        return list(layers)
    w, b = layers[0].weight, layers[0].bias
    for layer in layers[1 : head + 1]:
        w, b = layer.weight @ w, layer.weight @ b + layer.bias
    return [AffineLayer(w, b, layers[head].relu), *layers[head + 1 :]]


def forward64(model: nn.Module, x: Tensor) -> Tensor:
    """Run the network in float64 without modifying or copying the module.

    Args:
        model: A Flatten/Linear/ReLU/Conv2d ``nn.Sequential``.
        x: Inputs of any float dtype.

    Returns:
        The logits in float64.

    Shapes:
        x: ``[B, *input_shape]`` -> ``[B, n_classes]``.
    """
    h = x.detach().to(torch.float64)
    for layer in check_model(model, who="forward64"):
        if isinstance(layer, nn.Flatten):
            h = layer(h)
        elif isinstance(layer, nn.ReLU):
            h = torch.relu(h)
        else:
            w = layer.weight.detach().double()
            b = None if layer.bias is None else layer.bias.detach().double()
            if isinstance(layer, nn.Linear):
                h = nn.functional.linear(h, w, b)
                continue
            args = (layer.stride, layer.padding, layer.dilation, layer.groups)
            h = nn.functional.conv2d(h, w, b, *args)
    return h


def forward_weights(
    weights: list[tuple[np.ndarray, np.ndarray, bool]], x: np.ndarray
) -> np.ndarray:
    """``forward64`` in NumPy, on the layers as ``(W, b, relu)`` arrays (what solver
    workers hold instead of the module).

    Shapes:
        x: ``[..., d]`` -> ``[..., n_classes]`` (float64).
    """
    h = np.asarray(x, np.float64)
    for w, b, relu in weights:
        h = h @ w.T + b
        if relu:
            h = np.maximum(h, 0.0)
    return h


def _first_weight_layer(model: nn.Module) -> nn.Module:
    for layer in leaf_layers(model):
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            return layer
    raise ValueError("the network has no Linear or Conv2d layer")


def single_input(model: nn.Module, x: Tensor) -> Tensor:
    """Read ``x`` as ONE input: drop a leading batch dimension of size 1 if present.

    Rules: for a network starting with ``Conv2d`` an input is ``[C, H, W]`` and
    ``[1, C, H, W]`` is stripped. Otherwise a tensor of rank 2 or 4 with leading size 1
    (``[1, d]`` or ``[1, C, H, W]``) is stripped, and anything else is taken as the
    input shape itself (``[d]``, ``[C, H, W]``, ``[H, W]``).

    Args:
        model: The network (used to check the size).
        x: One input.

    Returns:
        ``x`` with shape ``input_shape``.

    Raises:
        ValueError: Not a floating-point tensor, or the shape does not fit the first
            layer.
    """
    check_tensor(x, "x")
    first = _first_weight_layer(model)
    if isinstance(first, nn.Conv2d):
        if x.dim() == 4 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != 3 or x.shape[0] != first.in_channels:
            raise ValueError(
                f"expected one input of shape [{first.in_channels}, H, W] (or with a "
                f"leading 1), got {tuple(x.shape)}"
            )
        return x
    if x.dim() in (2, 4) and x.shape[0] == 1:
        x = x[0]
    if x.numel() != first.in_features:
        raise ValueError(
            f"expected one input with {first.in_features} elements (the first Linear "
            f"layer's), got shape {tuple(x.shape)}"
        )
    return x


def check_tensor(t: object, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``t`` is a floating-point tensor.

    (numpy arrays and lists are rejected rather than converted: the verifiers return
    tensors on the model's device, and a silent conversion would hide a dtype change.)
    """
    if not isinstance(t, Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor, got {type(t).__module__}."
            f"{type(t).__name__} (convert with torch.as_tensor)"
        )
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")


def check_batch(model: nn.Module, xs: Tensor, name: str = "x") -> None:
    """Check that ``xs`` is a batch of inputs the network accepts.

    Raises:
        ValueError: Not a floating-point tensor, wrong rank or number of elements (a
            single unbatched input is rejected: pass ``x[None]``).
    """
    check_tensor(xs, name)
    first = _first_weight_layer(model)
    if xs.dim() < 2:
        raise ValueError(
            f"expected a batch [B, *input_shape], got {name} of shape "
            f"{tuple(xs.shape)} (for a single input, pass {name}[None])"
        )
    if isinstance(first, nn.Conv2d):
        if xs.dim() != 4 or xs.shape[1] != first.in_channels:
            raise ValueError(
                f"expected a batch [B, {first.in_channels}, H, W], got "
                f"{tuple(xs.shape)}"
            )
    elif math.prod(xs.shape[1:]) != first.in_features:
        raise ValueError(
            f"expected inputs with {first.in_features} elements (the first Linear "
            f"layer's), got a batch of shape {tuple(xs.shape)}"
        )
