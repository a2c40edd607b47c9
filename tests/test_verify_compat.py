"""auto_LiRPA 0.3 shims: they work on the pinned torch and are no-ops when not
needed."""

import importlib
import sys
import types

import pytest
import torch
from torch import nn

from dalv.verify import compat  # noqa: E402

try:
    compat.import_auto_lirpa()
except ImportError as err:  # pragma: no cover - environment without auto_LiRPA
    pytest.skip(str(err), allow_module_level=True)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lirpa():
    return compat.import_auto_lirpa()


def test_import_returns_module_and_shims_are_in_place(lirpa):
    assert lirpa.__name__ == "auto_LiRPA" and hasattr(lirpa, "BoundedModule")
    arraysetops = importlib.import_module("numpy.lib.arraysetops")
    assert arraysetops.isin([1, 2, 3], [2]).tolist() == [False, True, False]
    import torch.onnx.symbolic_helper as helper

    glb = compat.onnx_globals()
    assert glb is not None
    old = glb.export_onnx_opset_version
    try:
        helper._set_opset_version(12)
        assert glb.export_onnx_opset_version == 12
    finally:
        glb.export_onnx_opset_version = old
    assert hasattr(torch._C.Node, "__getitem__")
    assert glb.autograd_inlining is False


def test_second_application_changes_nothing(lirpa):
    assert compat.apply_shims() == ()
    assert compat.apply_post_import_shims(lirpa) == ()


def test_arraysetops_shim_leaves_an_existing_module_alone(monkeypatch):
    existing = types.ModuleType("numpy.lib.arraysetops")
    monkeypatch.setitem(sys.modules, "numpy.lib.arraysetops", existing)
    assert compat._shim_arraysetops() is False
    assert sys.modules["numpy.lib.arraysetops"] is existing
    assert not hasattr(existing, "isin")


def test_opset_shim_leaves_an_existing_function_alone(monkeypatch):
    import torch.onnx.symbolic_helper as helper

    def mine(v):
        return v

    monkeypatch.setattr(helper, "_set_opset_version", mine, raising=False)
    assert compat._shim_set_opset_version() is False
    assert helper._set_opset_version is mine


def test_node_getitem_shim_leaves_an_existing_method_alone(monkeypatch):
    def mine(self, key):
        return key

    monkeypatch.setattr(torch._C.Node, "__getitem__", mine, raising=False)
    assert compat._shim_node_getitem() is False
    assert torch._C.Node.__getitem__ is mine


def test_autograd_inlining_shim_is_noop_when_already_off(monkeypatch):
    glb = compat.onnx_globals()
    monkeypatch.setattr(glb, "autograd_inlining", False)
    assert compat._shim_autograd_inlining() is False


def test_alpha_clamp_shim_skips_other_versions(lirpa, monkeypatch):
    monkeypatch.setattr(lirpa, "__version__", "0.6.0")
    assert compat.apply_post_import_shims(lirpa) == ()


def test_missing_auto_lirpa_gives_install_hint(monkeypatch):
    monkeypatch.delitem(sys.modules, "auto_LiRPA")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(ImportError, match="pip install --no-deps auto-lirpa==0.3"):
        compat.import_auto_lirpa()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_lirpa_computes_all_three_bounds(lirpa, kind):
    torch.manual_seed(0)
    if kind == "mlp":
        model = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10, bias=False)
        )
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64, 10),
        )
    x = torch.rand(4, 1, 8, 8)
    opts = {"sparse_features_alpha": False, "sparse_spec_alpha": False}
    bm = lirpa.BoundedModule(model, torch.zeros(1, 1, 8, 8), bound_opts=opts)
    lo, hi = (x - 0.1).clamp(min=0), (x + 0.1).clamp(max=1)
    ptb = lirpa.PerturbationLpNorm(norm=float("inf"), x_L=lo, x_U=hi)
    out = {}
    for method in ("IBP", "CROWN", "alpha-CROWN"):
        bx = lirpa.BoundedTensor(x, ptb)
        lb, _ = bm.compute_bounds(
            x=(bx,), method=method, bound_upper=method != "alpha-CROWN"
        )
        out[method] = lb.detach()
    y = model(x).detach()
    for method, lb in out.items():
        assert (lb <= y + 1e-5).all(), method
    assert (out["CROWN"] >= out["IBP"] - 1e-5).all()
    assert (out["alpha-CROWN"] >= out["CROWN"] - 1e-5).all()
    # With the clamp-gradient shim alpha-CROWN really optimises (torch 2.x froze it).
    assert (out["alpha-CROWN"] > out["CROWN"] + 1e-4).any()
