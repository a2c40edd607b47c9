"""ONNX networks in and out: fully-connected ReLU classifiers as ``nn.Sequential``.

Owns: ``OnnxError``, ``OnnxNetwork``, ``load_onnx`` and ``save_onnx``; may import:
torch, numpy, the standard library, ``dalv.verify.network``, and ``onnx`` (an optional
extra: ``pip install -e ".[onnx]"``) only inside the functions that need it.

The loader reads the graphs the VNN-COMP benchmarks of fully-connected ReLU networks
use: a chain of ``Gemm`` (``alpha``, ``beta``, ``transB`` applied; ``transA=1`` refused)
or ``MatMul`` followed by an ``Add`` of a constant, ``Relu``, ``Flatten`` (axis 1) and a
``Reshape`` to ``[batch, features]``, optionally starting with a normalisation of the
input by constants (``Sub`` and ``Div``, in any order and number, before the first
``Gemm``/``MatMul``). The normalisation ``a * x + c`` is folded into the first affine
layer in float64 (``W' = W diag(a)``, ``b' = b + W c``), which is exact up to one
float64 rounding; so by default the network comes back in float64 (pass
``dtype=torch.float32`` to keep a graph without normalisation bit-identical). Any other
operator, a node that does not read the previous node's output, or a constant that is
not an initializer or a ``Constant`` node is refused by name (operator and node), never
guessed.

The result is ``nn.Sequential(Flatten, Linear, ReLU, ..., Linear)``, the form every dalv
backend takes (``dalv.verify.network.check_model``). A graph that ends with a ``Relu``
(the VNN-COMP 2021 ERAN MNIST nets do: their outputs are ``relu(z)``) gets an identity
``Linear`` after it, so the outputs stay exactly the graph's (dalv's backends want the
logits from a Linear layer; dropping the ``Relu`` would change the question).
``save_onnx`` writes dalv's Flatten/Linear/ReLU models as ``Flatten`` +
``Gemm(transB=1)`` + ``Relu`` (opset 13), so a round trip dalv -> ONNX -> dalv keeps
every weight bit for bit.

Example:
    >>> net = load_onnx("mnist_relu_9_200.onnx")                     # doctest: +SKIP
    >>> net.model(torch.zeros(1, 784, dtype=torch.float64)).shape     # doctest: +SKIP
    torch.Size([1, 10])
    >>> save_onnx(model, "model.onnx", input_shape=(1, 28, 28))       # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dalv.verify.network import check_model, leaf_layers

__all__ = ["OnnxError", "OnnxNetwork", "load_onnx", "save_onnx", "import_onnx"]

OPSET = 13
SUPPORTED_OPS = ("Gemm", "MatMul", "Add", "Relu", "Flatten", "Reshape", "Sub", "Div")


class OnnxError(ValueError):
    """An ONNX file dalv cannot read (the message says what was found)."""


@dataclass(frozen=True)
class OnnxNetwork:
    """A network read from ONNX.

    Attributes:
        model: ``nn.Sequential(Flatten, Linear, ReLU, ..., Linear)``.
        input_shape: The graph input's shape without the batch dimension.
        n_outputs: Number of logits.
        folded: Whether a leading normalisation was folded into the first layer.
        final_relu: Whether the graph ends with a ``Relu`` (then an identity
            ``Linear`` follows it, so the model's outputs are the graph's, exactly).
    """

    model: nn.Sequential
    input_shape: tuple[int, ...]
    n_outputs: int
    folded: bool
    final_relu: bool = False

    @property
    def n_inputs(self) -> int:
        return math.prod(self.input_shape)


def import_onnx():
    """The ``onnx`` package, or an ``OnnxError`` that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise OnnxError(
            "reading and writing ONNX needs the onnx package: "
            'pip install -e ".[onnx]" (or pip install onnx)'
        ) from None
    return onnx


def _node_name(node) -> str:
    return f"{node.op_type} node {node.name or '(unnamed)'!r}"


def load_onnx(path: str | os.PathLike, *, dtype: torch.dtype = torch.float64):
    """Read a fully-connected ReLU classifier from an ONNX file.

    Args:
        path: The ``.onnx`` file.
        dtype: dtype of the returned model (float64 by default: the folded
            normalisation is then exact up to float64 rounding).

    Returns:
        An ``OnnxNetwork``.

    Raises:
        OnnxError: The file is not a readable ONNX model, or it holds an operator,
            attribute or graph shape dalv does not read (the message names the node).
    """
    onnx = import_onnx()
    from onnx import numpy_helper

    try:
        proto = onnx.load(os.fspath(path))
    except Exception as e:  # protobuf's errors have no common base class
        raise OnnxError(
            f"{path} is not a readable ONNX model ({type(e).__name__}: {e})"
        ) from None
    graph = proto.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise OnnxError(
            f"{path}: dalv reads graphs with one input and one output, found "
            f"{len(inputs)} inputs and {len(graph.output)} outputs"
        )
    dims = [
        d.dim_value if d.HasField("dim_value") else None
        for d in inputs[0].type.tensor_type.shape.dim
    ]
    if not dims or any(d is None or d < 1 for d in dims[1:]):
        raise OnnxError(
            f"{path}: the input {inputs[0].name!r} needs a known shape "
            f"[batch, features...], found {dims}"
        )
    if len(dims) == 1:  # an unbatched input [features]
        dims = [1, *dims]
    in_shape = tuple(int(d) for d in dims[1:])
    b = _Builder(in_shape)
    current = inputs[0].name
    pending_matmul = None  # (node, W) of a MatMul waiting for its Add
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = _constant(node, numpy_helper)
            continue
        data = [i for i in node.input if i and i not in consts]
        if data != [current]:
            raise OnnxError(
                f"{_node_name(node)} does not read the previous node's output "
                f"({current!r}) as its one non-constant input: dalv reads a chain of "
                "layers only"
            )
        const = [consts[i] for i in node.input if i and i in consts]
        op = node.op_type
        if pending_matmul is not None and op != "Add":
            b.linear(pending_matmul[1], None)
            pending_matmul = None
        if op == "Gemm":
            w, bias = _gemm(node, const, current == node.input[0])
            b.linear(w, bias, node)
        elif op == "MatMul":
            if node.input[0] != current or len(const) != 1 or const[0].ndim != 2:
                raise OnnxError(
                    f"{_node_name(node)}: dalv reads MatMul(x, W) with a constant 2-D W"
                )
            pending_matmul = (node, const[0].T)
        elif op == "Add" and pending_matmul is not None:
            (c,) = const
            b.linear(pending_matmul[1], c, node)
            pending_matmul = None
        elif op in ("Sub", "Div"):
            if len(const) != 1 or node.input[0] != current:
                raise OnnxError(
                    f"{_node_name(node)}: dalv reads {op}(x, constant) only (a "
                    "normalisation of the input)"
                )
            b.normalise(op, const[0], node)
        elif op == "Relu":
            b.relu(node)
        elif op == "Flatten":
            axis = _attrs(node).get("axis", 1)
            if axis != 1:
                raise OnnxError(
                    f"{_node_name(node)}: Flatten axis {axis}, dalv needs 1"
                )
            b.flatten()
        elif op == "Reshape":
            if len(const) != 1:
                raise OnnxError(
                    f"{_node_name(node)}: the target shape must be constant"
                )
            b.reshape(const[0], node)
        else:
            raise OnnxError(
                f"{_node_name(node)} is not supported: dalv reads "
                f"{', '.join(SUPPORTED_OPS)} (a leading Sub/Div normalisation, "
                "MatMul followed by Add) of fully-connected ReLU networks"
            )
        current = node.output[0]
    if pending_matmul is not None:
        b.linear(pending_matmul[1], None)
    if current != graph.output[0].name:
        raise OnnxError(
            f"{path}: the graph output {graph.output[0].name!r} is not the last "
            f"node's output ({current!r})"
        )
    model = b.finish(dtype)
    try:
        check_model(model, allow_conv=False, who="an ONNX network")
    except ValueError as e:
        raise OnnxError(f"{path}: {e}") from None
    n_out = model[-1].out_features
    final_relu = b.layers[-1][0] == "relu"
    return OnnxNetwork(model, in_shape, n_out, b.folded, final_relu)


def _constant(node, numpy_helper) -> np.ndarray:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_int"):
            return np.asarray(a.f if a.name == "value_float" else a.i)
        if a.name in ("value_floats", "value_ints"):
            return np.asarray(a.floats if a.name == "value_floats" else a.ints)
    raise OnnxError(f"{_node_name(node)}: an unsupported constant attribute")


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _gemm(node, const, data_first: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``Y = alpha * A B' + beta * C`` as a Linear layer's ``(W [out, in], b)``."""
    a = _attrs(node)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if not data_first or a.get("transA", 0):
        raise OnnxError(
            f"{_node_name(node)}: dalv reads Gemm(x, W, b) with the data as A and "
            f"transA=0 (found transA={a.get('transA', 0)}, data first: {data_first})"
        )
    if len(const) not in (1, 2) or const[0].ndim != 2:
        raise OnnxError(f"{_node_name(node)}: B must be a constant 2-D matrix")
    w = const[0].astype(np.float64)
    w = w if a.get("transB", 0) else w.T  # [out, in]
    w = alpha * w
    bias = None
    if len(const) == 2:
        bias = beta * np.broadcast_to(const[1].astype(np.float64), (w.shape[0],))
    return w, bias


class _Builder:
    """Collects the layers of the chain and a pending input normalisation."""

    def __init__(self, in_shape: tuple[int, ...]):
        self.shape = in_shape  # current tensor shape, batch dimension left out
        self.layers: list[tuple] = []  # ("linear", W, b) / ("relu",)
        self.flat = len(in_shape) == 1
        d = math.prod(in_shape)
        self.scale = np.ones(d)  # the normalisation: current = scale * x + shift
        self.shift = np.zeros(d)
        self.folded = False

    def _in_features(self) -> int:
        return math.prod(self.shape)

    def normalise(self, op: str, c: np.ndarray, node) -> None:
        if self.layers:
            raise OnnxError(
                f"{_node_name(node)}: {op} after the first affine layer is not "
                "supported (only a leading normalisation is folded)"
            )
        try:
            full = np.broadcast_to(c.astype(np.float64), (1, *self.shape))
        except ValueError:
            raise OnnxError(
                f"{_node_name(node)}: constant of shape {c.shape} does not broadcast "
                f"to the input shape {self.shape}"
            ) from None
        v = full.reshape(-1)
        if op == "Sub":
            self.shift = self.shift - v
        else:
            if not np.all(np.isfinite(v)) or np.any(v == 0):
                raise OnnxError(f"{_node_name(node)}: division by zero or non-finite")
            self.scale, self.shift = self.scale / v, self.shift / v
        self.folded = True

    def flatten(self) -> None:
        self.shape = (self._in_features(),)
        self.flat = True

    def reshape(self, target: np.ndarray, node) -> None:
        t = [int(v) for v in np.asarray(target).reshape(-1)]
        d = self._in_features()
        ok = len(t) == 2 and t[0] in (-1, 0, 1) and t[1] in (-1, d)
        ok = ok and not (t[0] == -1 and t[1] == -1)
        ok = ok or t == [d] or t == [-1]
        if not ok:
            raise OnnxError(
                f"{_node_name(node)}: Reshape to {t}; dalv reads a Reshape to "
                f"[batch, {d}] only"
            )
        self.flatten()

    def linear(self, w: np.ndarray, bias, node=None) -> None:
        w = np.asarray(w, np.float64)
        where = _node_name(node) if node is not None else "MatMul"
        if len(self.shape) != 1 or w.shape[1] != self.shape[0]:
            if not self.layers and self._in_features() == w.shape[1] and not self.flat:
                raise OnnxError(
                    f"{where}: an affine layer on an unflattened input of shape "
                    f"{self.shape}: add a Flatten before it"
                )
            raise OnnxError(
                f"{where}: weight of shape {w.shape[::-1]} does not fit the input "
                f"of shape {self.shape}"
            )
        b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, np.float64)
        if b.shape != (w.shape[0],):
            try:
                b = np.broadcast_to(b, (w.shape[0],))
            except ValueError:
                raise OnnxError(
                    f"{where}: bias of shape {b.shape} for {w.shape[0]} outputs"
                ) from None
        if not self.layers and self.folded:  # fold scale * x + shift, in float64
            b = b + w @ self.shift
            w = w * self.scale[None, :]
        self.layers.append(("linear", w, b))
        self.shape = (w.shape[0],)

    def relu(self, node) -> None:
        if not self.layers or self.layers[-1][0] != "linear":
            raise OnnxError(
                f"{_node_name(node)}: a Relu must follow a Gemm or MatMul(+Add)"
            )
        self.layers.append(("relu",))

    def finish(self, dtype: torch.dtype) -> nn.Sequential:
        if not any(kind == "linear" for kind, *_ in self.layers):
            raise OnnxError("the graph has no Gemm or MatMul layer")
        mods: list[nn.Module] = [nn.Flatten()]
        for kind, *rest in self.layers:
            if kind == "relu":
                mods.append(nn.ReLU())
                continue
            w, b = rest
            lin = nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
                lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
            mods.append(lin)
        if self.layers[-1][0] == "relu":  # the outputs are relu(z): keep them exact
            n = self.shape[0]
            eye = nn.Linear(n, n, dtype=dtype)
            with torch.no_grad():
                eye.weight.copy_(torch.eye(n, dtype=dtype))
                eye.bias.zero_()
            mods.append(eye)
        return nn.Sequential(*mods).eval()


def save_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_shape: tuple[int, ...],
    *,
    input_name: str = "input",
    output_name: str = "output",
) -> None:
    """Write a Flatten/Linear/ReLU ``nn.Sequential`` as an ONNX graph (opset 13).

    The graph reads ``[batch, *input_shape]`` (``batch`` symbolic), flattens it and
    applies ``Gemm(transB=1)`` / ``Relu`` nodes with the model's own weights in its
    dtype (float32 or float64), so ``load_onnx(path, dtype=model's dtype)`` gives the
    same weights bit for bit.

    Args:
        model: The network (``Conv2d`` is refused: the loader reads no convolutions).
        path: Where to write the ``.onnx`` file.
        input_shape: One input's shape, e.g. ``(1, 28, 28)`` or ``(784,)``.
        input_name: Name of the graph input.
        output_name: Name of the graph output.

    Raises:
        ValueError: A layer other than Flatten/Linear/ReLU, or an ``input_shape`` that
            does not fit the first Linear layer.
    """
    onnx = import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    layers = check_model(model, allow_conv=False, who="ONNX export")
    first = next(m for m in leaf_layers(model) if isinstance(m, nn.Linear))
    if math.prod(input_shape) != first.in_features:
        raise ValueError(
            f"input_shape {tuple(input_shape)} has {math.prod(input_shape)} elements; "
            f"the first Linear layer takes {first.in_features}"
        )
    dtype = first.weight.dtype
    elem = {torch.float32: TensorProto.FLOAT, torch.float64: TensorProto.DOUBLE}.get(
        dtype
    )
    if elem is None:
        raise ValueError(f"ONNX export writes float32 or float64 models, got {dtype}")
    nodes, inits = [], []
    cur = input_name
    if len(input_shape) > 1:
        nodes.append(
            helper.make_node("Flatten", [cur], ["flat"], axis=1, name="flatten")
        )
        cur = "flat"
    n_lin = 0
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Flatten):
            continue  # the graph flattens its input once
        out = f"h{i}"
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().cpu().numpy()
            b = (
                np.zeros(w.shape[0], w.dtype)
                if layer.bias is None
                else layer.bias.detach().cpu().numpy()
            )
            inits += [
                numpy_helper.from_array(w, f"W{n_lin}"),
                numpy_helper.from_array(b, f"b{n_lin}"),
            ]
            nodes.append(
                helper.make_node(
                    "Gemm",
                    [cur, f"W{n_lin}", f"b{n_lin}"],
                    [out],
                    transB=1,
                    name=f"gemm{n_lin}",
                )
            )
            n_lin += 1
        else:
            nodes.append(helper.make_node("Relu", [cur], [out], name=f"relu{i}"))
        cur = out
    nodes[-1].output[0] = output_name
    n_out = layers[-1].out_features if isinstance(layers[-1], nn.Linear) else None
    graph = helper.make_graph(
        nodes,
        "dalv",
        [helper.make_tensor_value_info(input_name, elem, ["batch", *input_shape])],
        [helper.make_tensor_value_info(output_name, elem, ["batch", n_out])],
        inits,
    )
    proto = helper.make_model(
        graph,
        producer_name="dalv",
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    proto.ir_version = 8  # readable by older runtimes and the VNN-COMP tools
    onnx.checker.check_model(proto)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    onnx.save(proto, os.fspath(path))
