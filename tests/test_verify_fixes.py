"""Regression tests of the verification layer's soundness fixes, one block per defect.

Each test failed before its fix (the docstrings say how) and passes after it.
"""

from __future__ import annotations

import copy
import importlib.util
import time

import numpy as np
import pytest
import torch
from torch import nn

from dalv.verify import (
    Budget,
    LirpaVerifier,
    MarabouVerifier,
    Property,
    Query,
    bounds,
    certified_radius,
    crown_bounds,
    interval_bounds,
    margin_lower_bounds,
    recheck,
    winner_runner_up,
)
from dalv.verify.compat import import_auto_lirpa

try:
    import_auto_lirpa()
except ImportError as err:  # pragma: no cover - environment without auto_LiRPA
    pytest.skip(str(err), allow_module_level=True)

HAS_MARABOU = importlib.util.find_spec("maraboupy") is not None
needs_marabou = pytest.mark.skipif(not HAS_MARABOU, reason="needs maraboupy")

pytestmark = pytest.mark.usefixtures("one_thread")


def _sequential(sd: dict, *layers: nn.Module, dtype=torch.float64) -> nn.Sequential:
    net = nn.Sequential(*layers).to(dtype)
    net.load_state_dict({k: torch.tensor(v, dtype=dtype) for k, v in sd.items()})
    return net.eval()


def _valid(model, x, eps, res, exclude, prop=Property()):  # noqa: B008
    c1, c2 = winner_runner_up(model(x[None].to(next(model.parameters()).dtype)))
    C = prop.spec(c1, c2, model(x[None].to(c1.device)).shape[-1])[0]
    return bool(recheck(model, x, eps, C, res.counterexamples, exclude, prop).all())


# ------------------------------------------------------- 1. consecutive Linear layers


def linear_linear() -> nn.Sequential:
    """f_1(x') = -(x' - 1) > f_0 = 0.5 for x' < 0.5: no ReLU between the Linears."""
    net = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 2))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(-1.0)
        net[1].weight.copy_(torch.tensor([[0.0], [-1.0]]))
        net[1].bias.copy_(torch.tensor([0.5, 0.0]))
    return net


def test_crown_respects_a_linear_layer_without_relu_after_it():
    """Before: a ReLU relaxation after every layer, so the upper bound of f_1 on
    [0.1, 1] was 0 (its true maximum is 0.9) and lirpa answered "unsat"."""
    net, x = linear_linear(), torch.tensor([0.8])
    lo, hi = crown_bounds(net, x[None], 0.7)
    assert hi[0, 1] >= 0.9 - 1e-6 and lo[0, 1] <= 0.0 + 1e-6
    res = LirpaVerifier().find(net, x, 0.7, 1)
    assert res.status == "sat" and _valid(net, x, 0.7, res, x[:0].view(0, 1))
    assert float(res.counterexamples.flatten()[0]) <= 0.5 - 1e-3


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_crown_and_relu_splits_are_sound_on_linear_chains(where):
    """Random nets with two Linears in a row: pure-torch CROWN and the branch and
    bound's beta bounds with first-layer ReLU phases (the leading Linears folded)
    stay below the margins at sampled points."""
    from dalv.verify.bab import BranchAndBound

    torch.manual_seed({"first": 0, "middle": 1, "last": 2}[where])
    mid = {
        "first": [nn.Linear(6, 5), nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)],
        "middle": [nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4), nn.Linear(4, 3)],
        "last": [nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3), nn.Linear(3, 3)],
    }[where]
    net = nn.Sequential(*mid)
    x = torch.rand(1, 6)
    gen = torch.Generator().manual_seed(3)
    lo, hi = (x - 0.3).clamp(min=0), (x + 0.3).clamp(max=1)
    pts = lo + (hi - lo) * torch.rand(20000, 6, generator=gen)
    with torch.no_grad():
        out = net(pts).double()
    clo, chi = crown_bounds(net, x, 0.3)
    assert (out >= clo - 1e-6).all() and (out <= chi + 1e-6).all()
    eps = torch.tensor([0.3], dtype=torch.float64)
    config = LirpaVerifier(relu_split=True, beta_steps=50)
    bab = BranchAndBound(
        config, Query(net, x.double(), eps, 1, [x[:0]], Property(target="any"))
    )
    h = bab.pool.phase.shape[1]
    margins = (bab.state.C[0].double() @ out.T).min(0).values
    boxes = bab.state.boxes
    phase = torch.randint(-1, 2, (16, h), generator=gen, dtype=torch.int8)
    own = torch.zeros(16, dtype=torch.long)
    bnd = bab.bound(boxes.lo64.repeat(16, 1), boxes.hi64.repeat(16, 1), own, phase)
    first = bab.bound.layers[0]  # the folded first ReLU layer
    z1 = pts.double() @ first.weight.T + first.bias
    for i in range(16):
        holds = ((phase[i] == 0) | (phase[i] * z1.sign() >= 0)).all(1)
        if holds.any():
            assert bnd.lower[i].min() <= margins[holds].min() + 1e-6


# ------------------------------------------------------- 2. Marabou's wrong UNSAT


def marabou_trap() -> tuple[nn.Sequential, torch.Tensor]:
    """A 2-4-2 net on which Marabou 2.0 answers UNSAT (strict and loose query alike)
    although the box corner (0.376, 0.376) has margin -1.01e-3."""
    sd = {
        "0.weight": [[0.0, 0.0], [1.0, 0.5], [-0.5, 0.0], [-1.0, -1.0]],
        "0.bias": [0.5, 1.0, -0.5, 1.0],
        "2.weight": [[0.5, -1.0, 1.0, 0.5], [-0.5, -0.5, 0.5, -0.5]],
        "2.bias": [0.5, 0.46701],
    }
    net = _sequential(sd, nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    return net, torch.tensor([0.375, 0.375], dtype=torch.float64)


@needs_marabou
def test_marabou_unsat_is_confirmed_before_it_is_reported():
    """Before: Marabou's own UNSAT (confirmed only by a looser Marabou query) was
    reported: "unsat" with a counterexample in the box."""
    net, x = marabou_trap()
    corner = torch.tensor([[0.376, 0.376]], dtype=torch.float64)
    with torch.no_grad():
        z = net(corner)[0]
    assert float(z[0] - z[1]) < -1e-3 - 9e-6  # a counterexample, just past the margin
    res = MarabouVerifier(workers=1).find(net, x, 1e-3, 1, budget=Budget(work=10))
    assert res.status == "sat" and _valid(net, x, 1e-3, res, x[:0].view(0, 2))


@needs_marabou
def test_an_unconfirmed_marabou_unsat_is_unknown(monkeypatch):
    """A claim the independent check can neither prove nor refute is "unknown"."""
    from dalv.verify import marabou as mb
    from dalv.verify.results import SearchResult

    class Undecided:
        def search(self, query):
            empty = query.xs.new_zeros(0, *query.input_shape)
            return [SearchResult("unknown", empty) for _ in range(len(query))]

    monkeypatch.setattr(mb, "LirpaVerifier", Undecided)
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 3))
    x = torch.rand(5, generator=torch.Generator().manual_seed(5))
    res = MarabouVerifier(workers=1).find(net, x, 1e-4, 2)
    assert res.status == "unknown" and not res.exhausted


@needs_marabou
def test_a_hung_marabou_call_is_stopped_at_the_deadline(monkeypatch):
    """Before: Budget.seconds could not stop a Marabou call that ignores its own
    timeout (it happens on queries at the margin boundary): the call hung."""
    from dalv.verify import marabou as mb

    monkeypatch.setattr(mb, "solve_task", lambda task: time.sleep(1e6))
    net, x = marabou_trap()
    t0 = time.monotonic()
    res = MarabouVerifier(workers=1).find(net, x, 1e-3, 1, budget=Budget(seconds=0.2))
    assert time.monotonic() - t0 < 0.2 + mb._GRACE + 5
    assert res.status == "unknown" and res.stats.timed_out and not res.exhausted


def test_lirpa_finds_a_counterexample_just_past_the_margin():
    """Before: float32-style slack (1e-5) filtered every candidate, so a box whose
    counterexamples beat the margin by less than 1e-5 was split without end."""
    net, x = marabou_trap()
    res = LirpaVerifier().find(net, x, 1e-3, 1, budget=Budget(work=50))
    assert res.status == "sat" and _valid(net, x, 1e-3, res, x[:0].view(0, 2))


# ------------------------------------------------------- 3. Conv2d: slack and options


def big_conv() -> tuple[nn.Sequential, torch.Tensor]:
    """Activations near 3e5: float32 CROWN's rounding exceeds 1e-4 (1 + |bound|)."""
    sd = {
        "0.weight": [[[[-185216.375]]], [[[-300790.71875]]]],
        "0.bias": [86361.40625, 139242.0625],
        "3.weight": [
            [-1.917464017868042, -0.5968275666236877],
            [-0.6704385876655579, -0.6909441351890564],
        ],
        "3.bias": [0.0, -1401.9136962890625],
    }
    layers = nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)
    net = _sequential(sd, *layers, dtype=torch.float32)
    return net, torch.tensor([0.46982387427320615]).view(1, 1, 1)


def test_conv_proofs_clear_the_rounding_of_large_activations():
    """Before: "unsat" (a float32 bound and a slack relative to the bound itself),
    though x' = 0.45982 has margin -1.96e-3 in exact arithmetic."""
    net, x = big_conv()
    # The margin is piecewise linear in the one input: its minimum over the box is at
    # an end or at a kink (a pre-activation's zero).
    twin = copy.deepcopy(net).double()
    w, b = twin[0].weight.flatten(), twin[0].bias
    x0 = float(x.flatten()[0])
    ends = torch.tensor([x0 - 0.01, x0 + 0.01], dtype=torch.float64)
    pts = torch.cat([-b / w, ends])
    pts = pts[(pts >= x0 - 0.01) & (pts <= x0 + 0.01)]
    z = twin(pts.view(-1, 1, 1, 1))
    c1 = int(net(x[None]).argmax())
    assert float((z[:, c1] - z[:, 1 - c1]).min()) < -1e-3  # counterexamples exist
    res = LirpaVerifier().find(net, x, 0.01, 1, budget=Budget(work=100))
    assert res.status != "unsat" and not res.exhausted


@pytest.mark.parametrize(
    "conv",
    [
        dict(dilation=2),
        dict(groups=2),
        dict(padding=1, padding_mode="reflect"),
        dict(padding=1, padding_mode="circular"),
        dict(padding=1, padding_mode="replicate"),
        dict(padding="same"),
    ],
    ids=["dilation", "groups", "reflect", "circular", "replicate", "same"],
)
def test_unsupported_conv_options_are_rejected_by_name(conv):
    """Before: accepted, then bounded unsoundly (dilation, groups) or crashing inside
    auto_LiRPA (padding modes, 'same')."""
    c = nn.Conv2d(2, 2, 3, **conv)
    n = c(torch.zeros(1, 2, 5, 5)).numel()
    net = nn.Sequential(c, nn.ReLU(), nn.Flatten(), nn.Linear(n, 3))
    x = torch.rand(2, 2, 5, 5)
    name = next(iter(conv)) if "padding_mode" not in conv else "padding_mode"
    calls = [
        lambda: bounds(net, x, 0.1),
        lambda: bounds(net, x, 0.1, "IBP"),
        lambda: interval_bounds(net, x, 0.1),
        lambda: certified_radius(net, x),
        lambda: LirpaVerifier().find(net, x[0], 0.1, 1),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=name):
            call()


# ------------------------------------------------------- 4. alpha-CROWN on float64


def test_alpha_crown_on_a_float64_model_and_the_cache_after_it():
    """Before: alpha-CROWN on float64 models crashed ("Index put requires the source
    and destination dtypes match") or returned float32; the crash left the cached
    module with stale slopes, so a later CROWN call returned other bounds."""
    for seed in (3, 4, 8, 9):  # the seeds that crashed
        torch.manual_seed(seed)
        m = nn.Sequential(
            nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)
        ).double()
        x = torch.rand(2, 3, dtype=torch.float64)
        ref = crown_bounds(m, x, 0.3)
        lo, hi = bounds(m, x, 0.3, method="alpha-CROWN")
        assert lo.dtype == torch.float64
        assert (lo >= ref[0] - 1e-9).all() and (hi <= ref[1] + 1e-9).all()
        clo, chi = bounds(m, x, 0.3, method="CROWN")
        torch.testing.assert_close(clo, ref[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(chi, ref[1], atol=1e-12, rtol=0)


def test_a_failed_bound_call_drops_its_cached_module(monkeypatch):
    from dalv.verify import lirpa

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.rand(2, 3)
    bounds(m, x, 0.2, method="alpha-CROWN")
    broken = lirpa.bounded_module(m, (3,), optimized=True)
    assert broken is not lirpa.bounded_module(m, (3,))  # alpha keeps its own module

    def boom(*args, **kwargs):
        raise RuntimeError("half-way through")

    monkeypatch.setattr(broken, "compute_bounds", boom)
    with pytest.raises(RuntimeError, match="half-way"):
        bounds(m, x, 0.2, method="alpha-CROWN")
    assert lirpa.bounded_module(m, (3,), optimized=True) is not broken
    lo, _ = bounds(m, x, 0.2, method="CROWN")
    torch.testing.assert_close(
        lo.double(), crown_bounds(m, x, 0.2)[0], atol=1e-5, rtol=0
    )


# ------------------------------------------------------- 5. exact faces, exact input


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_any_coord_ball_with_exact_faces_is_proved_empty(dtype):
    """Before: "unknown" after the whole budget. A ball whose faces are representable
    (always in float64; dyadic values in float32) left a child box touching the face,
    which the strict "inside the open ball" test never dropped."""
    from test_verify_search import X0, pocket_net

    p = torch.tensor([0.75, 0.25, 0.75])
    model = pocket_net(p, radius=0.0015, gain=1000.0).to(dtype)
    prop = Property(separation="any_coord", delta=2.0**-10)
    lirpa = LirpaVerifier()
    free = lirpa.find(model, X0.to(dtype), 0.35, 1, prop=prop, budget=Budget(work=3000))
    assert free.status == "sat"
    res = lirpa.find(
        model, X0.to(dtype), 0.35, 1, [p.to(dtype)], prop, Budget(work=3000)
    )
    assert res.status == "unsat" and res.exhausted


def test_the_box_is_built_around_the_exact_input():
    """Before: a float64 x was rounded to the float32 model's dtype first, and the box
    (and every re-check) was centred on the rounded point."""
    from dalv.verify.bab import BranchAndBound

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.tensor([0.1 + 1e-9, 0.3], dtype=torch.float64)  # not a float32
    seen = {}
    real = BranchAndBound.__init__

    def spy(self, config, query):
        seen["xs"] = query.xs
        real(self, config, query)
        seen["lo"] = self.state.boxes.lo64

    BranchAndBound.__init__ = spy
    try:
        LirpaVerifier().find(net, x, 0.05, 1, budget=Budget(work=10))
    finally:
        BranchAndBound.__init__ = real
    assert torch.equal(seen["xs"][0], x)
    assert torch.equal(seen["lo"][0], (x - 0.05).clamp(min=0))
    lo, _ = bounds(net, x[None], 1e-12, "IBP")  # outward box around the exact x
    assert torch.isfinite(lo).all()


# ------------------------------------------------------- 6. clear errors for bad inputs


def small_net() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 3)).eval()


def verifiers():
    out = [LirpaVerifier()]
    if HAS_MARABOU:
        out.append(MarabouVerifier(workers=1))
    return out


@pytest.mark.parametrize("verifier", verifiers(), ids=lambda v: v.name)
def test_bad_inputs_get_a_clear_value_error(verifier):
    """Before: AttributeError / IndexError / RuntimeError from deep inside."""
    net, x = small_net(), torch.rand(3)
    with pytest.raises(ValueError, match="torch.Tensor"):
        verifier.find(net, x.numpy(), 0.1, 1)
    with pytest.raises(ValueError, match="torch.Tensor"):
        verifier.find(net, x, 0.1, 1, exclude=np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="torch.Tensor"):
        verifier.find(net, x, 0.1, 1, exclude=[np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match="torch.Tensor"):
        verifier.find_batch(net, x[None], 0.1, 1, [np.zeros((1, 3))])
    with pytest.raises(ValueError, match="not finite"):
        verifier.find(net, x, 0.1, 1, exclude=torch.full((1, 3), float("nan")))
    with pytest.raises(ValueError, match="not finite"):
        verifier.find_batch(net, x[None], 0.1, 1, [torch.full((1, 3), float("nan"))])


@pytest.mark.parametrize("verifier", verifiers(), ids=lambda v: v.name)
def test_requires_grad_and_empty_batches(verifier):
    """An input with requires_grad is searched as a plain tensor (before: Marabou
    raised "Can't call numpy() on Tensor that requires grad"); an empty batch returns
    an empty list (before: IndexError)."""
    net, x = small_net(), torch.rand(3, generator=torch.Generator().manual_seed(0))
    plain = verifier.find(net, x, 0.3, 1, budget=Budget(work=200))
    graded = verifier.find(
        net, x.clone().requires_grad_(), 0.3, 1, budget=Budget(work=200)
    )
    assert graded.status == plain.status
    torch.testing.assert_close(graded.counterexamples, plain.counterexamples)
    assert verifier.find_batch(net, torch.empty(0, 3), 0.1, 1) == []
    assert verifier.find_batch(net, torch.empty(0, 3), 0.1, 1, []) == []


def test_a_single_unbatched_input_is_rejected_by_the_bound_functions():
    """Before: a 1-D x was read as a batch of scalars (shape errors inside)."""
    net, x = small_net(), torch.rand(3)
    for call in (
        lambda: bounds(net, x, 0.1),
        lambda: certified_radius(net, x),
        lambda: interval_bounds(net, x, 0.1),
        lambda: crown_bounds(net, x, 0.1),
        lambda: margin_lower_bounds(net, x, 0.1, 0),
    ):
        with pytest.raises(ValueError, match=r"x\[None\]"):
            call()
    with pytest.raises(ValueError, match="torch.Tensor"):
        bounds(net, x[None].numpy(), 0.1)


def test_a_final_relu_is_rejected_everywhere_with_one_message():
    """Before: lirpa (through auto_LiRPA) and bounds accepted it; Marabou did not."""
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU())
    x = torch.rand(3)
    calls = [
        lambda: bounds(net, x[None], 0.1),
        lambda: interval_bounds(net, x[None], 0.1),
        lambda: crown_bounds(net, x[None], 0.1),
        lambda: certified_radius(net, x[None]),
        *[lambda v=v: v.find(net, x, 0.1, 1) for v in verifiers()],
    ]
    for call in calls:
        with pytest.raises(ValueError, match="final ReLU is not supported"):
            call()


# ------------------------------------------------------- 7. budgets, routing, batches


def test_no_work_limit_means_no_limit():
    """Before: Budget(work=None) still stopped an input after 100,000 subdomains."""
    from dalv.verify.bab import BranchAndBound

    net, x = small_net(), torch.rand(1, 3)
    eps = torch.tensor([0.4], dtype=torch.float64)
    bab = BranchAndBound(LirpaVerifier(), Query(net, x, eps, 1, [x[:0]]))
    bab.state.progress.bounded[0] = 10**7
    bab._enforce_budgets()
    assert not bool(bab.state.progress.done[0])
    query = Query(net, x, eps, 1, [x[:0]], budget=Budget(5))
    bab = BranchAndBound(LirpaVerifier(), query)
    bab.state.progress.bounded[0] = 5
    bab._enforce_budgets()
    assert bool(bab.state.progress.done[0]) and bool(bab.state.progress.cut_short[0])


def test_the_work_budget_is_exact_for_every_input_of_a_batch():
    """Before: checked after each round, so work=3 bounded 5 subdomains or more."""
    from test_verify_search import X0, pocket_net

    lirpa = LirpaVerifier(restarts=2, pgd_steps=2, batch_domains=4)
    xs = torch.stack([X0, X0 * 0.9, X0 * 1.1])
    for work in (1, 3, 7):
        out = lirpa.find_batch(
            pocket_net(torch.tensor([0.8, 0.2, 0.75])),
            xs,
            0.45,
            1,
            budget=Budget(work=work),
        )
        assert all(r.stats.subdomains <= work for r in out)
        assert any(r.stats.subdomains == work for r in out)


def test_only_conv_networks_go_to_auto_lirpa(monkeypatch):
    """Before: any network that failed the affine/ReLU check (a ReLU first, a final
    ReLU) was searched with auto_LiRPA bounds instead of being rejected."""
    from dalv.verify.bab import bounding

    def no_lirpa(*args, **kwargs):
        raise AssertionError("an affine network must not be bounded by auto_LiRPA")

    monkeypatch.setattr(bounding, "bounded_module", no_lirpa)
    net, x = small_net(), torch.rand(3)
    LirpaVerifier().find(net, x, 0.3, 2, budget=Budget(work=50))
    relu_first = nn.Sequential(nn.ReLU(), nn.Linear(3, 3))
    with pytest.raises(ValueError, match="must follow a Linear"):
        LirpaVerifier().find(relu_first, x, 0.3, 1)


def test_an_input_is_searched_the_same_whatever_its_batch_mates():
    """Before: the random restarts were max(8, 2 max k) for every input, drawn from one
    generator, and the subdomains per round shared by all inputs: an input's
    candidates depended on the rest of its batch."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 4)
    )
    gen = torch.Generator().manual_seed(1)
    xs = torch.rand(4, 4, generator=gen)
    ks = [1, 2, 7, 3]
    eps = torch.tensor([0.3, 0.2, 0.4, 0.05])
    lirpa, budget = LirpaVerifier(batch_domains=16), Budget(work=400)
    batch = lirpa.find_batch(net, xs, eps, ks, budget=budget, seed=5)
    for i in range(4):
        one = lirpa.find(net, xs[i], float(eps[i]), ks[i], budget=budget, seed=5)
        assert one.status == batch[i].status
        assert one.stats.subdomains == batch[i].stats.subdomains
        torch.testing.assert_close(one.counterexamples, batch[i].counterexamples)
