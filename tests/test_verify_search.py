"""Counterexample search (lirpa): re-check, exclusion rules, planted pocket, ReLU splits,
timeouts, argument errors."""

import importlib.util

import pytest
import torch
from torch import nn

from dalv.verify.compat import import_auto_lirpa
from dalv.verify.property import property_spec, recheck, winner_runner_up
from dalv.verify.search import (
    LirpaConfig,
    find_counterexamples,
    find_counterexamples_batch,
    fv_adv_counterexamples,
)

try:
    import_auto_lirpa()
except ImportError as err:  # pragma: no cover - environment without auto_LiRPA
    pytest.skip(str(err), allow_module_level=True)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:600, None] / 16.0, dtype=torch.float32)
    return x, torch.tensor(d.target[:600])


@pytest.fixture(scope="module")
def mlp(digits):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10, bias=False)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = nn.functional.cross_entropy(model(digits[0]), digits[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def pocket_net(
    p: torch.Tensor, radius: float = 0.02, gain: float = 100.0
) -> nn.Sequential:
    """Class 0 wins everywhere except in a tiny L1 ball around ``p``, where class 1 wins.

    Hidden layer 1 computes ``|x_i - p_i|`` as two ReLUs; the second hidden unit is
    ``relu(radius - ||x - p||_1)``, zero (with zero gradient) outside the ball. Logits:
    ``f_0 = 1``, ``f_1 = gain * unit``, so ``f_0 - f_1 <= -1e-3`` only where
    ``||x - p||_1 < radius - 1.001 / gain`` (about 0.01 by default).
    """
    d = p.numel()
    l1, l2, l3 = nn.Linear(d, 2 * d), nn.Linear(2 * d, 1), nn.Linear(1, 2)
    with torch.no_grad():
        l1.weight.copy_(torch.cat([torch.eye(d), -torch.eye(d)]))
        l1.bias.copy_(torch.cat([-p, p]))
        l2.weight.fill_(-1.0)
        l2.bias.fill_(radius)
        l3.weight.copy_(torch.tensor([[0.0], [gain]]))
        l3.bias.copy_(torch.tensor([1.0, 0.0]))
    return nn.Sequential(l1, nn.ReLU(), l2, nn.ReLU(), l3)


def pgd_finds(model, x, eps, steps=50, restarts=200, seed=0) -> bool:
    """Runner-up PGD with random restarts (a gradient attack)."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    c1, c2 = winner_runner_up(model(x[None]))
    starts = lo + (hi - lo) * torch.rand(restarts, *x.shape, generator=gen)
    y = torch.cat([x[None], starts])
    for _ in range(steps):
        y.requires_grad_(True)
        z = model(y)
        (g,) = torch.autograd.grad((z[:, c1] - z[:, c2]).sum(), y)
        y = (y.detach() - 0.05 * (hi - lo) * g.sign()).clamp(lo, hi)
    z = model(y)
    return bool(((z[:, c1] - z[:, c2]) <= -1e-3).any())


def _check_result(
    model, x, eps, res, exclude, separation="every_coord", target="runner_up"
):
    """Every returned counterexample passes the exact re-check (pairwise separation too)."""
    c1, c2 = winner_runner_up(model(x[None]))
    C = property_spec(c1, c2, target, model(x[None]).shape[-1])[0]
    ok = recheck(
        model,
        x,
        eps,
        C,
        res.counterexamples,
        exclude,
        separation=separation,
        delta=1e-3,
        margin=1e-3,
    )
    assert ok.all()


# ---------------------------------------------------------------- planted pocket


P = torch.tensor([0.8, 0.2, 0.75])
X0 = torch.full((3,), 0.5)


def test_gradient_attack_misses_the_pocket():
    model = pocket_net(P)
    assert model(P[None]).argmax().item() == 1 and model(X0[None]).argmax().item() == 0
    assert not pgd_finds(model, X0, 0.4)


@pytest.mark.parametrize("eps", [0.2, 0.29, 0.298, 0.3, 0.35, 0.45])
def test_lirpa_never_says_unsat_while_the_pocket_is_in_the_box(eps):
    model = pocket_net(P)
    # The nearest box point to P is at L1 distance 2 * max(0, 0.3 - eps); counterexamples
    # exist iff that is below ~0.00999.
    pocket_reachable = 2 * max(0.0, 0.3 - eps) < 0.0099
    res = find_counterexamples(model, X0, eps, 1, timeout=30)
    if pocket_reachable:
        assert res.status == "sat", "given time, the branch and bound finds the pocket"
        assert res.stats.subdomains > 1  # found by splitting, not at the root
        _check_result(model, X0, eps, res, X0[:0].reshape(0, 3))
        assert (res.counterexamples - P).abs().sum() < 0.01
    else:
        assert res.status == "unsat" and res.exhausted


@pytest.mark.parametrize("separation", ["every_coord", "any_coord"])
def test_excluding_the_pocket_centre_is_proved_exactly(separation):
    # A pocket of L1 radius ~0.0005: excluding its centre (delta = 1e-3) leaves no feasible
    # counterexample under either rule, but only exact handling of the excluded region
    # (cutting slabs / ball faces) lets the branch and bound prove it.
    model = pocket_net(P, radius=0.0015, gain=1000.0)
    free = find_counterexamples(model, X0, 0.35, 1, separation=separation, timeout=30)
    assert free.status == "sat"
    res = find_counterexamples(
        model, X0, 0.35, 1, exclude=[P], separation=separation, timeout=30
    )
    assert res.status == "unsat" and res.exhausted
    if importlib.util.find_spec("maraboupy") is not None:
        for ex, want in (((), "sat"), ([P], "unsat")):
            kw = dict(exclude=ex, separation=separation, timeout=30, backend="marabou")
            assert find_counterexamples(model, X0, 0.35, 1, **kw).status == want


def test_pocket_search_under_a_short_timeout_is_unknown_never_unsat():
    config = LirpaConfig(restarts=2, pgd_steps=2)
    res = find_counterexamples(pocket_net(P), X0, 0.45, 1, timeout=0.02, config=config)
    assert res.status in ("unknown", "sat")
    assert res.status == "sat" or res.stats.timed_out


# ---------------------------------------------------------------- ReLU splitting


def test_beta_bound_with_relu_phases_is_sound():
    # Lower bounds on subdomains "box and fixed first-layer ReLU phases" never exceed the
    # margin at sampled points of the box where those phases hold.
    from dalv.verify.bab import BranchAndBound, LirpaConfig as Cfg

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)
    )
    x = torch.rand(1, 6)
    eps = torch.tensor([0.3], dtype=torch.float64)
    bab = BranchAndBound(
        net,
        x,
        eps,
        1,
        [x[:0]],
        target="any",
        separation="every_coord",
        delta=1e-3,
        margin=1e-3,
        timeout=None,
        seed=0,
        config=Cfg(relu_split=True, beta_steps=50),
    )
    gen = torch.Generator().manual_seed(1)
    pts = bab.lo_in + (bab.hi_in - bab.lo_in) * torch.rand(20000, 6, generator=gen)
    z1 = pts @ net[0].weight.T + net[0].bias
    margins = (bab.C[0] @ net(pts).T).min(0).values
    lo, hi = bab.lo64.repeat(16, 1), bab.hi64.repeat(16, 1)
    phase = torch.randint(-1, 2, (16, 8), generator=gen, dtype=torch.int8)
    bnd = bab._bound(lo, hi, torch.zeros(16, dtype=torch.long), phase)
    for i in range(16):
        holds = ((phase[i] == 0) | (phase[i] * z1.sign() >= 0)).all(1)
        if holds.any():
            assert bnd.lower[i].min() <= margins[holds].min() + 1e-6
    assert bab.relu_split


# ---------------------------------------------------------------- digits MLP


def test_counterexamples_pass_recheck_and_respect_every_coord_exclusion(mlp, digits):
    x = digits[0][3]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    seed_point = (x + 0.05 * noise).clamp(0, 1)
    res = find_counterexamples(mlp, x, 0.3, 6, exclude=[seed_point])
    assert res.status == "sat" and res.counterexamples.shape == (6, 1, 8, 8)
    _check_result(mlp, x, 0.3, res, seed_point[None])
    pts = torch.cat([seed_point[None], res.counterexamples]).flatten(1).double()
    gaps = (pts[:, None] - pts[None]).abs().min(-1).values + torch.eye(len(pts)) * 9
    assert (gaps >= 1e-3).all(), "every pair differs by >= delta in EVERY coordinate"
    lo, hi = (x.double() - 0.3).clamp(min=0), (x.double() + 0.3).clamp(max=1)
    cex = res.counterexamples.double()
    assert ((cex >= lo) & (cex <= hi)).all()


def test_any_coord_exclusion_and_any_target(mlp, digits):
    x = digits[0][5]
    res = find_counterexamples(mlp, x, 0.3, 5, separation="any_coord", target="any")
    assert res.status == "sat" and len(res.counterexamples) == 5
    none = x[:0].reshape(0, 1, 8, 8)
    _check_result(mlp, x, 0.3, res, none, separation="any_coord", target="any")
    pts = res.counterexamples.flatten(1).double()
    linf = (pts[:, None] - pts[None]).abs().max(-1).values + torch.eye(len(pts)) * 9
    assert (linf >= 1e-3).all(), (
        "pairwise L-inf distance >= delta (one coordinate or more)"
    )
    z = mlp(res.counterexamples)
    assert (z.argmax(1) != mlp(x[None]).argmax(1)).all()


def test_large_exclusion_gap_can_prove_exhaustion(mlp, digits):
    # With delta larger than the box, one counterexample rules out the whole box.
    x = digits[0][7]
    res = find_counterexamples(mlp, x, 0.3, 3, delta=0.7)
    assert res.status == "sat" and len(res.counterexamples) == 1 and res.exhausted


def test_batch_matches_single_calls_and_shapes(mlp, digits):
    xs = digits[0][:6]
    eps = torch.tensor([0.01, 0.02, 0.1, 0.2, 0.3, 0.4])
    excludes = [xs[i : i + 1] for i in range(6)]
    batch = find_counterexamples_batch(mlp, xs, eps, 2, excludes=excludes, timeout=30)
    for i, r in enumerate(batch):
        assert r.status in ("sat", "unsat", "unknown")
        assert r.counterexamples.shape[1:] == (1, 8, 8)
        _check_result(mlp, xs[i], float(eps[i]), r, xs[i : i + 1])
        single = find_counterexamples(
            mlp, xs[i : i + 1], float(eps[i]), 2, exclude=excludes[i], timeout=30
        )
        if "unknown" not in (single.status, r.status):
            assert single.status == r.status


def test_timeout_returns_partial_results_without_raising(mlp, digits):
    x = digits[0][11]
    res = find_counterexamples(mlp, x, 0.4, 400, timeout=0.5)
    assert res.stats.timed_out
    assert res.status == "sat" and 0 < len(res.counterexamples) < 400
    _check_result(mlp, x, 0.4, res, x[:0].reshape(0, 1, 8, 8))


def test_fv_adv_schedule_counts_seeds_and_grows_the_radius():
    # Pocket at L-inf distance 0.3: radii 0.051 ... 0.251 are proved empty, 0.301 holds it.
    model = pocket_net(P)
    seed = torch.zeros(1, 3)  # a far "slot-0" example: excluded and counted in k
    eps0 = torch.tensor([0.001])
    res = fv_adv_counterexamples(model, X0[None], eps0, 3, seeds=[seed], timeout=30)[0]
    assert (
        res.status == "sat" and len(res.counterexamples) == 2
    )  # k = 3 includes the seed
    dist = (res.counterexamples - X0).abs().max(-1).values
    assert (dist > 0.251).all() and (dist <= 0.301 + 1e-6).all()
    assert (
        res.stats.calls >= 6
    )  # one proof per smaller radius, then the search at 0.301


def test_conv_network_is_searched_by_lirpa(digits):
    torch.manual_seed(4)
    cnn = nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(48, 10),
    )
    x = digits[0][2]
    res = find_counterexamples(cnn, x, 0.2, 2, timeout=20)
    assert res.status in ("sat", "unsat", "unknown")
    _check_result(cnn, x, 0.2, res, x[:0].reshape(0, 1, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_models_device(mlp, digits):  # pragma: no cover - GPU only
    import copy

    gpu = copy.deepcopy(mlp).cuda()
    res = find_counterexamples(gpu, digits[0][3].cuda(), 0.3, 3)
    assert res.counterexamples.device.type == "cuda" and res.status == "sat"


# ---------------------------------------------------------------- argument checks


def test_bad_arguments_raise_clear_errors(mlp, digits):
    x = digits[0][0]
    with pytest.raises(ValueError, match="eps"):
        find_counterexamples(mlp, x, 0.0, 1)
    with pytest.raises(ValueError, match="k must"):
        find_counterexamples(mlp, x, 0.1, 0)
    with pytest.raises(ValueError, match="Tanh"):
        tanh = nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.Tanh(), nn.Linear(4, 2))
        find_counterexamples(tanh, x, 0.1, 1)
    with pytest.raises(ValueError, match="Conv2d"):
        conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 2))
        find_counterexamples(conv, x, 0.1, 1, backend="marabou")
    with pytest.raises(ValueError, match="elements"):
        find_counterexamples(mlp, torch.rand(1, 50), 0.1, 1)
    with pytest.raises(ValueError, match="excludes"):
        find_counterexamples_batch(mlp, digits[0][:2], 0.1, 1, excludes=[x[None]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        find_counterexamples(mlp, x + 2, 0.1, 1)
    with pytest.raises(ValueError, match="separation"):
        find_counterexamples(mlp, x, 0.1, 1, separation="l2")
    with pytest.raises(ValueError, match="timeout"):
        find_counterexamples(mlp, x, 0.1, 1, timeout=0)
