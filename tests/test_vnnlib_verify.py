"""``dalv verify`` on files the test writes: a digits MLP as ONNX, local-robustness
properties as VNN-LIB; answers match the backend asked directly, every counterexample
in the result file satisfies the file's assertions, and bad files are one line."""

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")

from dalv.cli import main  # noqa: E402
from dalv.verify import MilpVerifier, Property  # noqa: E402
from dalv.verify.box import clip_box  # noqa: E402
from dalv.verify.onnx_io import load_onnx, save_onnx  # noqa: E402
from dalv.verify.vnncomp import query_of, read_result, verify_instance  # noqa: E402
from dalv.verify.vnnlib import VnnlibError, parse_vnnlib, read_vnnlib, write_vnnlib  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory, trained_mlp, digits):
    d = tmp_path_factory.mktemp("vnn")
    save_onnx(trained_mlp, d / "net.onnx", digits.input_shape)
    x = digits.x_test[1].flatten().double().numpy()  # robust at 0.005 (row 0 is not)
    c = int(trained_mlp(digits.x_test[1:2]).argmax())
    for eps in (0.005, 0.3):
        lo, hi = clip_box(x, eps)
        rivals = [j for j in range(10) if j != c]
        write_vnnlib(d / f"p_{eps}.vnnlib", lo, hi, c, rivals, 10)
    return d, x, c


def test_answers_match_the_backend_and_witnesses_hold(files, trained_mlp, one_thread):
    d, x, c = files
    net = load_onnx(d / "net.onnx")
    seen = set()
    for eps in (0.005, 0.3):
        prop = read_vnnlib(d / f"p_{eps}.vnnlib")
        res = verify_instance(net.model, prop, MilpVerifier(), timeout=120)
        direct = MilpVerifier().find(
            trained_mlp,
            torch.from_numpy(x).float(),
            eps,
            1,
            prop=Property(target="any", margin=0.0),
        )
        assert res.status == direct.status, (eps, res.note)
        seen.add(res.status)
        if res.status == "sat":  # the float64 re-check of the file's assertions
            assert prop.holds_at(res.x[None], res.y[None])[0]
            with torch.no_grad():
                y = trained_mlp(torch.from_numpy(res.x).float()[None]).double()
            np.testing.assert_allclose(y[0].numpy(), res.y, atol=1e-4)
    assert seen == {"sat", "unsat"}  # the test covers both answers


def test_box_center_contains_the_files_box(files):
    d, x, c = files
    net = load_onnx(d / "net.onnx")
    prop = read_vnnlib(d / "p_0.3.vnnlib")
    xc, eps, p, excl, c1, _ = query_of(prop, net.model)
    lo, hi = clip_box(xc, eps)
    assert (lo <= prop.lo).all() and (hi >= prop.hi).all()
    assert max((prop.lo - lo).max(), (hi - prop.hi).max()) < 1e-12
    assert c1 == c and p.target == "any" and p.margin == 0 and len(excl) == 0


def test_cli_writes_the_vnncomp_result_file(files, tmp_path, capsys):
    d, x, c = files
    out = tmp_path / "res.txt"
    args = [str(d / "net.onnx"), str(d / "p_0.3.vnnlib"), "--timeout", "120"]
    assert main(["verify", *args, "--out", str(out)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.split()[0] == "sat" and line.split()[2] == "s"
    status, values = read_result(out)
    assert status == "sat"
    xs = np.array([values[f"X_{i}"] for i in range(x.size)])
    ys = np.array([values[f"Y_{j}"] for j in range(10)])
    prop = read_vnnlib(d / "p_0.3.vnnlib")
    assert prop.holds_at(xs[None], ys[None])[0]
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(str(d / "net.onnx"), providers=["CPUExecutionProvider"])
    y_ort = s.run(None, {"input": xs.reshape(1, 1, 8, 8).astype(np.float32)})[0][0]
    np.testing.assert_allclose(y_ort, ys, atol=1e-4)


def test_malformed_files_exit_non_zero_with_one_line(files, tmp_path, capsys):
    d, _, _ = files
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1)")
    assert main(["verify", str(d / "net.onnx"), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unbalanced parentheses" in err[0]
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x07garbage")
    assert main(["verify", str(junk), str(d / "p_0.3.vnnlib")]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
    small = tmp_path / "small.vnnlib"
    write_vnnlib(small, np.zeros(3), np.ones(3), 0, [1], 10)
    assert main(["verify", str(d / "net.onnx"), str(small)]) == 2
    assert "declares 3 inputs, the network takes 64" in capsys.readouterr().err


def test_a_box_that_is_not_an_linf_box_is_refused(files):
    d, x, c = files
    net = load_onnx(d / "net.onnx")
    lo = np.full(64, 0.2)
    hi = np.where(np.arange(64) % 2 == 0, 0.4, 0.3)  # widths 0.2 and 0.1
    text = "\n".join(
        [f"(declare-const X_{i} Real)" for i in range(64)]
        + [f"(declare-const Y_{j} Real)" for j in range(10)]
        + [
            f"(assert (>= X_{i} {float(lo[i])}))\n(assert (<= X_{i} {float(hi[i])}))"
            for i in range(64)
        ]
        + [f"(assert (>= Y_{(c + 1) % 10} Y_{c}))"]
    )
    with pytest.raises(VnnlibError, match="not a clipped L∞ box"):
        query_of(parse_vnnlib(text), net.model)
