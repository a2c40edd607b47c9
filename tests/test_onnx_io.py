"""ONNX in and out: dalv's models round-trip bit for bit, normalisation folds
exactly, a final Relu stays, onnxruntime agrees, and every unsupported node is
refused by name."""

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from dalv.verify.network import affine_relu_layers, check_model  # noqa: E402
from dalv.verify.onnx_io import OnnxError, load_onnx, save_onnx  # noqa: E402


def _mlp(seed=0, d=12, h=7, n=4):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(d, h),
        nn.ReLU(),
        nn.Linear(h, h),
        nn.ReLU(),
        nn.Linear(h, n),
    )


def _save(
    tmp_path, nodes, inits, in_shape, n_out, name="g.onnx", elem=TensorProto.FLOAT
):
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("input", elem, ["N", *in_shape])],
        [helper.make_tensor_value_info("out", elem, ["N", n_out])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    path = tmp_path / name
    onnx.save(m, path)
    return path


def _ort(path, x):
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def test_round_trip_is_bit_identical_and_onnxruntime_agrees(tmp_path):
    model = _mlp()
    path = tmp_path / "m.onnx"
    save_onnx(model, path, input_shape=(3, 4))
    back = load_onnx(path, dtype=torch.float32)
    assert back.input_shape == (3, 4) and back.n_outputs == 4 and not back.folded
    x = torch.rand(5, 3, 4)
    with torch.no_grad():
        assert torch.equal(back.model(x), model(x))  # identical logits
        y64 = load_onnx(path).model(x.double())
        torch.testing.assert_close(y64.float(), model(x), rtol=1e-5, atol=1e-6)
    y_ort = _ort(path, x.numpy())
    np.testing.assert_allclose(y_ort, model(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    check_model(back.model, allow_conv=False)


def test_digits_model_exports_and_reads_back(tmp_path, trained_mlp, digits):
    path = tmp_path / "d.onnx"
    save_onnx(trained_mlp, path, input_shape=digits.input_shape)
    back = load_onnx(path, dtype=torch.float32)
    x = digits.x_test[:8]
    with torch.no_grad():
        assert torch.equal(back.model(x), trained_mlp(x))
    np.testing.assert_allclose(
        _ort(path, x.numpy()), trained_mlp(x).detach().numpy(), rtol=1e-5, atol=1e-5
    )


def test_normalisation_gemm_attributes_matmul_add_and_final_relu(tmp_path):
    rng = np.random.default_rng(0)
    mean = np.float32(0.1307)
    std = rng.uniform(0.2, 0.5, size=(1, 1, 2, 3)).astype(np.float32)
    w0 = rng.normal(size=(6, 5)).astype(np.float32)  # transB=0: [in, out]
    b0 = rng.normal(size=5).astype(np.float32)
    w1 = rng.normal(size=(5, 3)).astype(np.float32)  # MatMul: [in, out]
    b1 = rng.normal(size=3).astype(np.float32)
    nodes = [
        helper.make_node(
            "Constant",
            [],
            ["m"],
            value=numpy_helper.from_array(np.array(mean)),
            name="c0",
        ),
        helper.make_node("Sub", ["input", "m"], ["s"], name="sub"),
        helper.make_node("Div", ["s", "std"], ["n"], name="div"),
        helper.make_node("Flatten", ["n"], ["f"], axis=1, name="flat"),
        helper.make_node(
            "Gemm", ["f", "W0", "b0"], ["g"], alpha=0.5, beta=2.0, name="gemm"
        ),
        helper.make_node("Relu", ["g"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "W1"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "b1"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["out"], name="relu_out"),
    ]
    path = _save(
        tmp_path,
        nodes,
        {"std": std, "W0": w0, "b0": b0, "W1": w1, "b1": b1},
        (1, 2, 3),
        3,
    )
    net = load_onnx(path)
    assert net.folded and net.final_relu and net.input_shape == (1, 2, 3)
    layers = affine_relu_layers(net.model)  # what the MILP and Marabou take
    assert [a.relu for a in layers] == [True, True, False]
    x = rng.uniform(0, 1, size=(7, 1, 2, 3))
    # independent NumPy evaluation of the graph in float64
    h = ((x - mean) / std).reshape(7, -1) @ (0.5 * w0) + 2.0 * b0
    ref = np.maximum(np.maximum(h, 0) @ w1 + b1, 0)
    with torch.no_grad():
        got = net.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)  # folded exactly
    np.testing.assert_allclose(
        _ort(path, x.astype(np.float32)), ref, rtol=1e-5, atol=1e-5
    )


def test_gemm_trans_b_and_reshape(tmp_path):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 4)).astype(np.float32)  # transB=1: [out, in]
    nodes = [
        helper.make_node("Reshape", ["input", "shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "W"], ["out"], transB=1, name="gemm"),
    ]
    path = _save(tmp_path, nodes, {"W": w, "shape": np.array([1, 4])}, (2, 2), 3)
    net = load_onnx(path)
    x = rng.uniform(size=(1, 2, 2)).astype(np.float32)
    with torch.no_grad():
        got = net.model(torch.from_numpy(x).double()).numpy()
    np.testing.assert_allclose(got, x.reshape(1, 4) @ w.T, rtol=1e-6)


@pytest.mark.parametrize(
    "bad, match",
    [
        ("sigmoid", r"Sigmoid node 'act' is not supported"),
        ("conv", r"Conv node 'conv0' is not supported"),
        ("transA", r"Gemm node 'gemm'.*transA=1"),
        ("sub_late", r"Sub node 'late'.*after the first affine layer"),
        ("reshape", r"Reshape node 'rs'.*Reshape to \[2, 2\]"),
        ("branch", r"Add node 'skip' does not read the previous node's output"),
    ],
)
def test_unsupported_graphs_are_refused_by_name(tmp_path, bad, match):
    w = np.ones((4, 4), np.float32)
    gemm = helper.make_node("Gemm", ["input", "W"], ["g"], transB=1, name="gemm")
    tail = {
        "sigmoid": [
            gemm,
            helper.make_node("Sigmoid", ["g"], ["h"], name="act"),
            helper.make_node("Gemm", ["h", "W"], ["out"], name="g2"),
        ],
        "conv": [helper.make_node("Conv", ["input", "K"], ["out"], name="conv0")],
        "transA": [
            helper.make_node("Gemm", ["input", "W"], ["out"], transA=1, name="gemm")
        ],
        "sub_late": [gemm, helper.make_node("Sub", ["g", "W"], ["out"], name="late")],
        "reshape": [helper.make_node("Reshape", ["input", "S"], ["out"], name="rs")],
        "branch": [
            gemm,
            helper.make_node("Relu", ["g"], ["r"], name="relu"),
            helper.make_node("Add", ["r", "g"], ["out"], name="skip"),
        ],
    }[bad]
    inits = {"W": w, "K": np.ones((1, 1, 1, 1), np.float32), "S": np.array([2, 2])}
    path = _save(tmp_path, tail, inits, (4,), 4)
    with pytest.raises(OnnxError, match=match):
        load_onnx(path)


def test_a_file_that_is_not_onnx_is_one_clear_error(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_bytes(b"\x00\x01 not a protobuf \xff" * 7)
    with pytest.raises(OnnxError, match="not a readable ONNX model"):
        load_onnx(path)


def test_export_refuses_convolutions_and_wrong_shapes(tmp_path):
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="Conv2d"):
        save_onnx(conv, tmp_path / "c.onnx", input_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="elements"):
        save_onnx(_mlp(), tmp_path / "m.onnx", input_shape=(5,))
