"""Bounds: sound on sampled points, IBP <= CROWN <= alpha-CROWN, pure torch =
auto_LiRPA, and the certified radius."""

import importlib

import pytest
import torch
from torch import nn

from dalv.verify.compat import import_auto_lirpa  # noqa: E402

try:
    import_auto_lirpa()
except ImportError as err:  # pragma: no cover - environment without auto_LiRPA
    pytest.skip(str(err), allow_module_level=True)

from dalv.verify import (  # noqa: E402
    bounds,
    certified_radius,
    crown_bounds,
    input_box,
    interval_bounds,
    margin_lower_bounds,
    spec_matrix,
)
from dalv.verify.lirpa import bounded_module  # noqa: E402


def _digits(n: int = 600):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:n, None] / 16.0, dtype=torch.float32)
    return x, torch.tensor(d.target[:n])


def _train(model: nn.Module, x, y, steps: int = 150, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return _digits()


@pytest.fixture(scope="module")
def mlp(data):
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10, bias=False)
    )
    return _train(m, *data)


@pytest.fixture(scope="module")
def deep(data):
    torch.manual_seed(1)
    m = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 24),
        nn.ReLU(),
        nn.Linear(24, 16),
        nn.ReLU(),
        nn.Linear(16, 10),
    )
    return _train(m, *data)


@pytest.fixture(scope="module")
def cnn(data):
    torch.manual_seed(2)
    m = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    return _train(m, *data, steps=80)


def _samples(x, eps, n, gen):
    """Random points of each input's box plus its two extreme corners: [B, n + 2, ...]
    (the box as witnesses see it, rounded inward)."""
    lo, hi = input_box(x, eps, rounding="inward")
    u = torch.rand(x.shape[0], n, *x.shape[1:], generator=gen)
    pts = lo[:, None] + (hi - lo)[:, None] * u
    return torch.cat([pts, lo[:, None], hi[:, None]], 1)


def _pgd_success(model, x, eps, steps=40, restarts=4, seed=0):
    """Untargeted PGD on the margin f_pred - max_other; True where it flips the
    prediction."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = input_box(x, eps, rounding="inward")
    pred = model(x).argmax(1)
    won = torch.zeros(x.shape[0], dtype=torch.bool)
    for r in range(restarts):
        y = x.clone() if r == 0 else lo + (hi - lo) * torch.rand(x.shape, generator=gen)
        for _ in range(steps):
            y.requires_grad_(True)
            z = model(y)
            top = z.gather(1, pred[:, None]).squeeze(1)
            mine = nn.functional.one_hot(pred, z.shape[1]).bool()
            other = z.masked_fill(mine, -1e9).max(1).values
            (g,) = torch.autograd.grad((top - other).sum(), y)
            y = (y.detach() - (hi - lo) * 0.1 * g.sign()).clamp(lo, hi)
        won |= model(y).argmax(1) != pred
    return won


@pytest.mark.parametrize("name", ["mlp", "deep", "cnn"])
@pytest.mark.parametrize("method", ["IBP", "CROWN", "alpha-CROWN"])
def test_bounds_contain_sampled_outputs(request, data, name, method):
    model = request.getfixturevalue(name)
    x = data[0][:6]
    eps = torch.tensor([0.01, 0.02, 0.05, 0.05, 0.1, 0.2])
    pred = model(x).argmax(1)
    C = spec_matrix(pred, 10)
    lo, hi = bounds(model, x, eps, method)
    clo, _ = bounds(model, x, eps, method, C)
    pts = _samples(x, eps, 200, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(pts.flatten(0, 1)).view(x.shape[0], -1, 10)
    assert (out >= lo[:, None] - 1e-5).all() and (out <= hi[:, None] + 1e-5).all()
    margins = (C[:, None] @ out.unsqueeze(-1)).squeeze(-1)
    assert (margins >= clo[:, None] - 1e-5).all()


@pytest.mark.parametrize("name", ["mlp", "deep", "cnn"])
def test_crown_is_no_looser_than_ibp_and_alpha_no_looser_than_crown(
    request, data, name
):
    model = request.getfixturevalue(name)
    x = data[0][:8]
    C = spec_matrix(model(x).argmax(1), 10)
    ibp = bounds(model, x, 0.05, "IBP", C)[0]
    crown = bounds(model, x, 0.05, "CROWN", C)[0]
    alpha = bounds(model, x, 0.05, "alpha-CROWN", C)[0]
    assert (crown >= ibp - 1e-5).all()
    assert (alpha >= crown - 1e-5).all()
    assert (crown > ibp + 1e-3).any()


@pytest.mark.parametrize("name", ["mlp", "deep", "cnn"])
def test_pure_torch_ibp_equals_lirpa_ibp(request, data, name):
    model = request.getfixturevalue(name)
    x, eps = data[0][:10], torch.linspace(0.01, 0.3, 10)
    lo, hi = interval_bounds(model, x, eps)
    llo, lhi = bounds(model, x, eps, "IBP")
    torch.testing.assert_close(lo, llo, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hi, lhi, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "deep"])
def test_pure_torch_crown_equals_lirpa_crown(request, data, name):
    model = request.getfixturevalue(name)
    x, eps = data[0][:10], torch.linspace(0.01, 0.3, 10)
    C = spec_matrix(model(x).argmax(1), 10)
    for spec in (None, C):
        lo, hi = crown_bounds(model, x, eps, spec)
        llo, lhi = bounds(model, x, eps, "CROWN", spec)
        torch.testing.assert_close(lo.float(), llo, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(hi.float(), lhi, atol=2e-5, rtol=1e-5)


def test_margin_lower_bounds_layout(mlp, data):
    x = data[0][:5]
    pred = mlp(x).argmax(1)
    full = margin_lower_bounds(mlp, x, 0.03, pred)
    assert full.shape == (5, 10)
    assert torch.isinf(full[torch.arange(5), pred]).all()
    other = (pred + 1) % 10
    single = margin_lower_bounds(mlp, x, 0.03, pred, other)
    torch.testing.assert_close(single, full[torch.arange(5), other])


def test_certified_radius_is_proved_unattackable_and_below_attack_radius(mlp, data):
    x = data[0][:12]
    r = certified_radius(mlp, x, method="CROWN")
    assert r.shape == (12,) and (r >= 0).all() and (r > 0).any()
    pred = mlp(x).argmax(1)
    pos = r > 0
    lb = margin_lower_bounds(mlp, x[pos], r[pos], pred[pos]).min(1).values
    assert (lb > 0).all()
    assert not _pgd_success(mlp, x[pos], r[pos]).any()
    # The smallest radius where PGD succeeds (bisection) is never below the certified
    # one.
    lo, hi = torch.zeros(12, dtype=torch.float64), torch.ones(12, dtype=torch.float64)
    ok_hi = _pgd_success(mlp, x, hi)
    for _ in range(10):
        mid = (lo + hi) / 2
        won = _pgd_success(mlp, x, mid)
        hi, lo = torch.where(won, mid, hi), torch.where(won, lo, mid)
    assert (r[ok_hi] <= hi[ok_hi] + 1e-9).all()


def test_bounded_module_is_cached_and_follows_in_place_training(data):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
    x = data[0][:3]
    first = bounded_module(model, (1, 8, 8))
    assert bounded_module(model, (1, 8, 8)) is first
    before = bounds(model, x, 0.05, "CROWN")[0]
    with torch.no_grad():
        model[1].weight.mul_(2.0)
    after = bounds(model, x, 0.05, "CROWN")[0]
    assert bounded_module(model, (1, 8, 8)) is first
    expected = crown_bounds(model, x, 0.05)[0].float()
    torch.testing.assert_close(after, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(before, after)
    model[1].weight = nn.Parameter(
        model[1].weight.detach().clone()
    )  # new storage: rebuilt
    assert bounded_module(model, (1, 8, 8)) is not first


def test_input_box_rounding():
    x = torch.rand(4, 30, dtype=torch.float32)
    eps = torch.tensor([1e-3, 0.013, 0.1, 0.7])
    lo64, hi64 = input_box(x, eps, rounding="exact")
    lo_in, hi_in = input_box(x, eps, rounding="inward")
    lo_out, hi_out = input_box(x, eps, rounding="outward")
    assert (lo_in.double() >= lo64).all() and (hi_in.double() <= hi64).all()
    assert (lo_out.double() <= lo64).all() and (hi_out.double() >= hi64).all()
    assert (lo64 >= 0).all() and (hi64 <= 1).all()


def test_bounds_is_a_function_of_the_package():
    import dalv.verify

    assert callable(dalv.verify.bounds) and dalv.verify.bounds is bounds
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("dalv.verify.bounds")


def test_bad_arguments(mlp, data):
    x = data[0][:2]
    with pytest.raises(ValueError, match="eps"):
        bounds(mlp, x, 0.0)
    with pytest.raises(ValueError, match="eps"):
        bounds(mlp, x, torch.tensor([0.1, -0.1]))
    with pytest.raises(ValueError, match="method"):
        bounds(mlp, x, 0.1, method="DeepPoly")
    with pytest.raises(ValueError, match="Tanh"):
        tanh = nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.Tanh(), nn.Linear(4, 2))
        bounds(tanh, x, 0.1)
    with pytest.raises(ValueError, match="Conv2d"):
        conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 2))
        crown_bounds(conv, x, 0.1)
    with pytest.raises(ValueError, match="C must"):
        bounds(mlp, x, 0.1, "CROWN", torch.zeros(3, 1, 10))
