"""Counterexample search (lirpa): re-check, exclusion rules, planted pocket, ReLU
splits, budgets, the FV-Adv schedule, argument errors."""

import importlib.util

import pytest
import torch
from torch import nn

from dalv.verify import (
    Budget,
    LirpaVerifier,
    MarabouVerifier,
    Property,
    Query,
    Schedule,
    recheck,
    winner_runner_up,
)
from dalv.verify.compat import import_auto_lirpa

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
    """Class 0 wins everywhere but in a tiny L1 ball around ``p``, where class 1 wins.

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
    """Every returned counterexample passes the exact re-check (pairwise too)."""
    prop = Property(target=target, separation=separation)
    c1, c2 = winner_runner_up(model(x[None]))
    C = prop.spec(c1, c2, model(x[None]).shape[-1])[0]
    ok = recheck(model, x, eps, C, res.counterexamples, exclude, prop)
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
    # The nearest box point to P is at L1 distance 2 * max(0, 0.3 - eps);
    # counterexamples exist iff that is below ~0.00999.
    pocket_reachable = 2 * max(0.0, 0.3 - eps) < 0.0099
    res = LirpaVerifier().find(model, X0, eps, 1, budget=Budget(work=2000))
    if pocket_reachable:
        assert res.status == "sat", "given time, the branch and bound finds the pocket"
        assert res.stats.subdomains > 1  # found by splitting, not at the root
        _check_result(model, X0, eps, res, X0[:0].reshape(0, 3))
        assert (res.counterexamples - P).abs().sum() < 0.01
    else:
        assert res.status == "unsat" and res.exhausted


@pytest.mark.parametrize("separation", ["every_coord", "any_coord"])
def test_excluding_the_pocket_centre_is_proved_exactly(separation):
    # A pocket of L1 radius ~0.0005: excluding its centre (delta = 1e-3) leaves no
    # feasible counterexample under either rule, but only exact handling of the
    # excluded region (cutting slabs / ball faces) lets the branch and bound prove it.
    model = pocket_net(P, radius=0.0015, gain=1000.0)
    prop, budget = Property(separation=separation), Budget(work=2000)
    free = LirpaVerifier().find(model, X0, 0.35, 1, prop=prop, budget=budget)
    assert free.status == "sat"
    res = LirpaVerifier().find(model, X0, 0.35, 1, [P], prop, budget)
    assert res.status == "unsat" and res.exhausted
    if importlib.util.find_spec("maraboupy") is not None:
        marabou = MarabouVerifier(workers=1)
        for ex, want in (((), "sat"), ([P], "unsat")):
            res = marabou.find(model, X0, 0.35, 1, ex, prop, Budget(work=10))
            assert res.status == want


def test_pocket_search_cut_short_by_its_budget_is_unknown_never_unsat():
    # The pocket is in the box, but 3 subdomains are too few to reach it: the answer
    # must be "unknown" (budget spent), never "unsat", and not blamed on the clock.
    lirpa = LirpaVerifier(restarts=2, pgd_steps=2)
    res = lirpa.find(pocket_net(P), X0, 0.45, 1, budget=Budget(work=3))
    assert res.status == "unknown" and not res.exhausted
    assert not res.stats.timed_out and len(res.counterexamples) == 0
    assert res.stats.subdomains == 3  # exactly the budget, never more
    # Given the work, the same search finds it.
    assert lirpa.find(pocket_net(P), X0, 0.45, 1).status == "sat"


# ---------------------------------------------------------------- ReLU splitting


def test_beta_bound_with_relu_phases_is_sound():
    # Lower bounds on subdomains "box and fixed first-layer ReLU phases" never exceed
    # the margin at sampled points of the box where those phases hold.
    from dalv.verify.bab import BranchAndBound

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)
    )
    x = torch.rand(1, 6)
    eps = torch.tensor([0.3], dtype=torch.float64)
    config = LirpaVerifier(relu_split=True, beta_steps=50)
    query = Query(net, x, eps, 1, [x[:0]], Property(target="any"))
    bab = BranchAndBound(config, query)
    boxes = bab.state.boxes
    gen = torch.Generator().manual_seed(1)
    width = boxes.hi_in - boxes.lo_in
    pts = boxes.lo_in + width * torch.rand(20000, 6, generator=gen)
    z1 = pts @ net[0].weight.T + net[0].bias
    margins = (bab.state.C[0] @ net(pts).T).min(0).values
    lo, hi = boxes.lo64.repeat(16, 1), boxes.hi64.repeat(16, 1)
    phase = torch.randint(-1, 2, (16, 8), generator=gen, dtype=torch.int8)
    bnd = bab.bound(lo, hi, torch.zeros(16, dtype=torch.long), phase)
    for i in range(16):
        holds = ((phase[i] == 0) | (phase[i] * z1.sign() >= 0)).all(1)
        if holds.any():
            assert bnd.lower[i].min() <= margins[holds].min() + 1e-6
    assert bab.brancher.relu_split


# ---------------------------------------------------------------- digits MLP


def test_counterexamples_pass_recheck_and_respect_every_coord_exclusion(mlp, digits):
    x = digits[0][3]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    seed_point = (x + 0.05 * noise).clamp(0, 1)
    res = LirpaVerifier().find(mlp, x, 0.3, 6, exclude=[seed_point])
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
    prop = Property(separation="any_coord", target="any")
    res = LirpaVerifier().find(mlp, x, 0.3, 5, prop=prop)
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
    res = LirpaVerifier().find(mlp, x, 0.3, 3, prop=Property(delta=0.7))
    assert res.status == "sat" and len(res.counterexamples) == 1 and res.exhausted


def test_batch_matches_single_calls_and_shapes(mlp, digits):
    xs = digits[0][:6]
    eps = torch.tensor([0.01, 0.02, 0.1, 0.2, 0.3, 0.4])
    excludes = [xs[i : i + 1] for i in range(6)]
    lirpa, budget = LirpaVerifier(), Budget(work=5000)
    batch = lirpa.find_batch(mlp, xs, eps, 2, excludes, budget=budget)
    statuses = []
    for i, r in enumerate(batch):
        # The status says what the counterexamples show: "sat" exactly when some are
        # returned, "unsat" exactly when none are and the rest is proved absent.
        n = len(r.counterexamples)
        assert (r.status == "sat") == (n > 0) and 0 <= n <= 2
        assert (r.status == "unsat") == (n == 0 and r.exhausted)
        assert r.counterexamples.shape[1:] == (1, 8, 8)
        _check_result(mlp, xs[i], float(eps[i]), r, xs[i : i + 1])
        single = lirpa.find(
            mlp, xs[i : i + 1], float(eps[i]), 2, excludes[i], budget=budget
        )
        if "unknown" not in (single.status, r.status):
            assert single.status == r.status
        statuses.append(r.status)
    # Given the work, every query is decided: the two smallest boxes are proved
    # robust, the larger ones hold counterexamples.
    assert statuses == ["unsat", "unsat", "sat", "sat", "sat", "sat"]


def test_seconds_safety_net_returns_what_it_has_without_raising(mlp, digits):
    # The one test of Budget.seconds. k = 400 cannot be reached (nor the box proved
    # free of more) in 0.5 s on any machine, so the clock ends the search; how much is
    # found by then depends on the machine, so only machine-independent facts are
    # asserted.
    x = digits[0][11]
    res = LirpaVerifier().find(mlp, x, 0.4, 400, budget=Budget(seconds=0.5))
    assert res.stats.timed_out and not res.exhausted
    assert res.status != "unsat" and len(res.counterexamples) < 400
    assert (res.status == "sat") == (len(res.counterexamples) > 0)
    _check_result(mlp, x, 0.4, res, x[:0].reshape(0, 1, 8, 8))


def test_fv_adv_schedule_counts_seeds_and_grows_the_radius():
    # Pocket at L-inf distance 0.3: radii 0.051 ... 0.251 are proved empty, 0.301
    # holds it. FV-Adv (dalv.augment) starts at eps0 + step and asks the verifier for
    # k minus its seeds.
    model = pocket_net(P)
    seed = torch.zeros(1, 3)  # a far "slot-0" example: excluded and counted in k
    eps = torch.tensor([0.001], dtype=torch.float64) + Schedule().step
    res = LirpaVerifier().find_batch(
        model,
        X0[None],
        eps,
        3 - 1,
        [seed],
        budget=Budget(work=2000),
        schedule=Schedule(),
    )[0]
    assert res.status == "sat" and len(res.counterexamples) == 2
    assert res.eps == pytest.approx(0.301)
    dist = (res.counterexamples - X0).abs().max(-1).values
    assert (dist > 0.251).all() and (dist <= 0.301 + 1e-6).all()
    # One proof per smaller radius, then the search at 0.301.
    assert res.stats.calls >= 6


def test_conv_network_is_searched_by_lirpa(digits):
    torch.manual_seed(4)
    cnn = nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(48, 10),
    )
    x = digits[0][2]
    res = LirpaVerifier().find(cnn, x, 0.2, 2, budget=Budget(work=500))
    assert res.status == "sat" and len(res.counterexamples) == 2
    _check_result(cnn, x, 0.2, res, x[:0].reshape(0, 1, 8, 8))
    # A radius the auto_LiRPA bound certifies is proved empty at the root.
    from dalv.verify import certified_radius

    r = float(certified_radius(cnn, x[None])[0])
    assert r > 0
    res = LirpaVerifier().find(cnn, x, r, 1, budget=Budget(work=500))
    assert res.status == "unsat" and res.exhausted and res.stats.subdomains == 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_models_device(mlp, digits):  # pragma: no cover - GPU only
    import copy

    gpu = copy.deepcopy(mlp).cuda()
    res = LirpaVerifier().find(gpu, digits[0][3].cuda(), 0.3, 3)
    assert res.counterexamples.device.type == "cuda" and res.status == "sat"


# ---------------------------------------------------------------- argument checks


def test_bad_arguments_raise_clear_errors(mlp, digits):
    x, lirpa = digits[0][0], LirpaVerifier()
    with pytest.raises(ValueError, match="eps"):
        lirpa.find(mlp, x, 0.0, 1)
    with pytest.raises(ValueError, match="k must"):
        lirpa.find(mlp, x, 0.1, 0)
    with pytest.raises(ValueError, match="Tanh"):
        tanh = nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.Tanh(), nn.Linear(4, 2))
        lirpa.find(tanh, x, 0.1, 1)
    with pytest.raises(ValueError, match="Conv2d"):
        conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 2))
        MarabouVerifier(workers=1).find(conv, x, 0.1, 1)
    with pytest.raises(ValueError, match="elements"):
        lirpa.find(mlp, torch.rand(1, 50), 0.1, 1)
    with pytest.raises(ValueError, match="excludes"):
        lirpa.find_batch(mlp, digits[0][:2], 0.1, 1, excludes=[x[None]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lirpa.find(mlp, x + 2, 0.1, 1)
    with pytest.raises(ValueError, match="separation"):
        lirpa.find(mlp, x, 0.1, 1, prop=Property(separation="l2"))
    with pytest.raises(ValueError, match="seconds"):
        lirpa.find(mlp, x, 0.1, 1, budget=Budget(seconds=0))
    with pytest.raises(ValueError, match="work"):
        lirpa.find(mlp, x, 0.1, 1, budget=Budget(work=0))
