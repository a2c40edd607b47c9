"""Regression tests of the audit's verification edges (issue 16, Build item 4).

Each block rebuilds one edge the held-out audit found; each test failed on the code
before its fix (the docstrings say how) and passes after it:

* (a) ``any_coord`` exclusion with an exactly representable ball face: the lirpa
  backend answered "unsat" where counterexamples lie strictly between the face and the
  next float32;
* (b) bfloat16 models: milp and marabou raised torch's ``TypeError``, lirpa searched;
* (c) layers of mixed dtypes: torch's ``mat1 and mat2 must have the same dtype``;
* (d) ``nn.Flatten(start_dim=2)``: an ``IndexError`` deep inside every backend;
* (e) forward hooks (and pre-hooks) that change the logits: milp and marabou returned
  "sat" points at which the hooked model still prefers its own class.

Plus ``VERIFIERS`` (the backends by name) in ``dalv.verify``.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from dalv.verify import (
    Budget,
    LirpaVerifier,
    MarabouVerifier,
    MilpVerifier,
    Property,
    Query,
    bounds,
    recheck,
    winner_runner_up,
)
from dalv.verify.box import input_box
from dalv.verify.network import check_model, forward64
from dalv.verify.property import satisfies, spec_margin

HAS_MARABOU = importlib.util.find_spec("maraboupy") is not None
needs_marabou = pytest.mark.skipif(not HAS_MARABOU, reason="needs maraboupy")

pytestmark = pytest.mark.usefixtures("one_thread")

BACKENDS = [LirpaVerifier, MilpVerifier, MarabouVerifier]


def _valid(model, x, eps, res, exclude, prop):
    """Every returned counterexample passes the exact float64 re-check."""
    dtype = next(model.parameters()).dtype
    logits = model(x[None].to(dtype))
    c1, c2 = winner_runner_up(logits)
    C = prop.spec(c1, c2, logits.shape[-1])[0]
    return bool(recheck(model, x, eps, C, res.counterexamples, exclude, prop).all())


# ------------------------------------------- (a) exact ball faces with any_coord

BALL = torch.tensor([[0.5, 0.5]])  # the excluded point
DELTA = 2.0**-7  # a power of two: the ball's faces 0.5 -/+ 2^-7 are float32 values
FACE = 0.5 - DELTA  # its lower face in x0 (in [0.25, 0.5): float32 ulp 2^-25)
ULP = 2.0**-25
ANY = Property(separation="any_coord", delta=DELTA)
X = torch.tensor([0.5, 0.5])
EPS = 2.0**-6  # the box [0.484375, 0.515625]^2 holds the ball and more


def gap_net() -> nn.Sequential:
    """float32; ``f_1 - f_0 > 0`` only for ``x0`` strictly in ``(FACE, FACE + ULP)``.

    ``h = relu(x0 - FACE)``, then the hat ``g(h) = relu(s h) - 2 relu(s h - 1) +
    relu(s h - 2)`` with ``s = 2^26`` (peak 1 at ``h = 2^-26``, 0 for ``h <= 0`` and
    for ``h >= 2^-25``): ``f_0 = 0.5``, ``f_1 = g``. Every constant is a float32 value,
    so the float32 model and the float64 re-check compute one function. The points with
    ``f_1 > f_0`` lie inside the ball in ``x0``; they are counterexamples where ``x1``
    is outside it, and none of them is a float32 point.
    """
    net = nn.Sequential(
        nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 3), nn.ReLU(), nn.Linear(3, 2)
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        net[0].bias.fill_(-FACE)
        net[2].weight.fill_(2.0**26)
        net[2].bias.copy_(torch.tensor([0.0, -1.0, -2.0]))
        net[4].weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 1.0]]))
        net[4].bias.copy_(torch.tensor([0.5, 0.0]))
    return net.eval()


def hat_net(center: float, ulp: float) -> nn.Sequential:
    """float32; ``f_1 - f_0 > 0`` only within one ulp of ``center`` in ``x0``.

    ``t = (x0 - center) / ulp`` (two Linear layers, exact), ``f_1 = relu(t + 1) -
    2 relu(t) + relu(t - 1)`` (peak 1 at ``x0 = center``), ``f_0 = 0.5``.
    """
    net = nn.Sequential(nn.Linear(2, 1), nn.Linear(1, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        net[0].bias.fill_(-center)
        net[1].weight.fill_(1 / ulp)
        net[1].bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
        net[3].weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 1.0]]))
        net[3].bias.copy_(torch.tensor([0.5, 0.0]))
    assert float(net[0].bias.detach()) == -center  # center is a float32 value
    return net.eval()


def test_planted_gap_network_has_counterexamples_and_no_float32_one():
    """The construction itself: a float64 point in the gap is a counterexample (box,
    margin, separation, by the package's exact test), and float32 points are not."""
    net = gap_net()
    lo, hi = input_box(X[None], EPS, rounding="exact")
    c1, c2 = winner_runner_up(net(X[None]))
    assert (int(c1), int(c2)) == (0, 1)
    C = ANY.spec(c1, c2, 2, torch.float64)
    inside = torch.tensor([[FACE + 2.0**-26, 0.49]], dtype=torch.float64)
    g = spec_margin(C, forward64(net, inside))
    assert bool(satisfies(inside, g, lo, hi, BALL.double(), ANY)[0])
    # the float32 neighbours of the gap, on either side, are not counterexamples
    f32 = torch.tensor([[FACE, 0.49], [FACE + ULP, 0.49]], dtype=torch.float64)
    assert bool((spec_margin(C, forward64(net, f32)) > 0).all())


def test_lirpa_does_not_answer_unsat_when_counterexamples_lie_in_the_face_gap():
    """Before: "unsat" (exhausted) after 5 subdomains. The cut at the representable face
    started the inner child one float32 step inside, so the open gap between the face
    and the next float32, where every counterexample lies, was never bounded. Now the
    inner child keeps the face's corner as an open face: no witness of the model dtype
    exists, so the sound answer is "unknown"."""
    res = LirpaVerifier().find(gap_net(), X, EPS, 1, BALL, ANY, Budget(work=200))
    assert res.status == "unknown" and not res.exhausted
    assert res.counterexamples.shape[0] == 0


@pytest.mark.parametrize(
    "backend", [MilpVerifier, pytest.param(MarabouVerifier, marks=needs_marabou)]
)
def test_exact_solvers_do_not_answer_unsat_in_the_face_gap(backend):
    """The exact solvers find the gap's points and cannot round them to the model
    dtype: "unknown", never "unsat" (held before the fix; guards the family)."""
    res = backend().find(gap_net(), X, EPS, 1, BALL, ANY, Budget(work=200, seconds=30))
    assert res.status == "unknown" and not res.exhausted


@pytest.mark.parametrize(
    ("center", "ulp"),
    [
        (FACE, 2.0**-25),  # on the lower face (feasible: |x0 - a0| = delta)
        (FACE + 2.0**-25, 2.0**-25),  # the first float32 inside the lower face
        (0.5 + DELTA, 2.0**-24),  # on the upper face
        (0.5 + DELTA - 2.0**-24, 2.0**-24),  # the last float32 inside the upper face
    ],
    ids=["lower-face", "inside-lower", "upper-face", "inside-upper"],
)
@pytest.mark.parametrize("backend", [LirpaVerifier, MilpVerifier])
def test_complete_at_exact_faces(backend, center, ulp):
    """Counterexamples only within one float32 step of an exact face (on it, or just
    inside the ball with ``x1`` outside): every backend finds one, valid."""
    net = hat_net(center, ulp)
    res = backend().find(net, X, EPS, 1, BALL, ANY, Budget(work=2000, seconds=60))
    assert res.status == "sat"
    assert float(res.counterexamples[0, 0]) == center  # the one float32 there
    assert _valid(net, X, EPS, res, BALL, ANY)


def test_face_cut_keeps_the_face_in_the_outer_child_and_opens_the_inner_one():
    """The cut at an exact face: outer child ``[l, face]`` closed, inner child
    ``[face, h]`` open at ``face``; the inner child, once inside the ball, is dropped,
    and the same box closed (its face holds feasible points) is not."""
    from dalv.verify.bab import BranchAndBound
    from dalv.verify.bab.pool import OPEN_HI, OPEN_LO

    query = Query(gap_net(), X[None].double(), EPS, 1, [BALL], ANY)
    search = BranchAndBound(LirpaVerifier(relu_split=False), query)
    br = search.brancher
    lo = torch.tensor([[0.484375, 0.49609375]])  # x1 inside the ball: cut x0
    hi = torch.tensor([[0.5, 0.50390625]])
    own, closed = torch.tensor([0]), torch.zeros(1, 2, dtype=torch.int8)
    score = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    n_lo, n_hi, n_open, parent, stuck = br._split_input(lo, hi, own, score, closed)
    assert not bool(stuck.any()) and parent.tolist() == [0, 0]
    assert n_hi[0, 0] == FACE and n_open[0].tolist() == [0, 0]  # outer, closed
    assert n_lo[1, 0] == FACE and n_open[1].tolist() == [OPEN_LO, 0]  # inner, open
    _, _, empty = br.tighten(n_lo, n_hi, own.repeat(2), n_open)
    assert empty.tolist() == [False, True]
    _, _, empty = br.tighten(n_lo[1:], n_hi[1:], own, closed)
    assert empty.tolist() == [False]
    # the upper face: the inner child is the left one, open at its upper corner
    lo, hi = torch.tensor([[0.5, 0.49609375]]), torch.tensor([[0.515625, 0.50390625]])
    n_lo, n_hi, n_open, _, _ = br._split_input(lo, hi, own, score, closed)
    assert n_hi[0, 0] == 0.5 + DELTA and n_open[0].tolist() == [OPEN_HI, 0]
    assert n_lo[1, 0] == 0.5 + DELTA and n_open[1].tolist() == [0, 0]
    # a child keeps its parent's open faces away from the cut
    open_ = torch.tensor([[0, OPEN_LO | OPEN_HI]], dtype=torch.int8)
    score = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    lo, hi = torch.tensor([[0.2, 0.49609375]]), torch.tensor([[0.3, 0.50390625]])
    n_lo, n_hi, n_open, _, _ = br._split_input(lo, hi, own, score, open_)
    assert n_open.tolist() == [[0, OPEN_LO | OPEN_HI], [0, OPEN_LO | OPEN_HI]]


# ------------------------------------------------- (b) bfloat16 and float16 models


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)).eval()


XS = torch.tensor([0.3, 0.6])


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_models_are_refused_with_one_clear_line(backend):
    """Before: milp and marabou raised ``TypeError: Got unsupported ScalarType
    BFloat16``, lirpa searched in bfloat16. Now every backend refuses, saying how to
    convert (exactly)."""
    net = small_net().to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"bfloat16.*model\.float\(\)") as err:
        backend().find(net, XS, 0.1, 1, budget=Budget(work=50))
    assert "\n" not in str(err.value)


def test_float16_models_are_verified_by_every_backend():
    """float16 weights are exact in float64: every backend answers, and agrees."""
    net = small_net().to(torch.float16)
    found = {}
    for backend in [LirpaVerifier, MilpVerifier] + [MarabouVerifier] * HAS_MARABOU:
        res = backend().find(net, XS, 0.5, 1, budget=Budget(work=500, seconds=60))
        assert res.counterexamples.dtype == torch.float16
        assert _valid(net, XS, 0.5, res, torch.empty(0, 2), Property())
        found[backend.name] = res.status
    assert set(found.values()) <= {"sat", "unsat"}
    assert len(set(found.values())) == 1, found


# ---------------------------------------------------------- (c) mixed dtypes


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_dtypes_are_refused_by_layer(backend):
    """Before: torch's ``mat1 and mat2 must have the same dtype``. Now a dalv error
    naming both layers, before any work."""
    net = small_net()
    net[2].double()
    with pytest.raises(ValueError, match=r"layer 0 .*float32.*layer 2 .*float64"):
        backend().find(net, XS, 0.1, 1, budget=Budget(work=50))


def test_a_bias_of_another_dtype_is_refused():
    net = small_net()
    net[0].bias.data = net[0].bias.data.double()
    with pytest.raises(ValueError, match=r"Linear\.weight.*Linear\.bias"):
        check_model(net)


# ------------------------------------------------------ (d) Flatten start/end


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("flatten", "name"),
    [(nn.Flatten(start_dim=2), "start_dim=2"), (nn.Flatten(0, -1), "start_dim=0")],
)
def test_flatten_of_part_of_the_input_is_refused_by_name(backend, flatten, name):
    """Before: ``IndexError`` inside every backend. Now refused by name."""
    net = nn.Sequential(flatten, *small_net())
    with pytest.raises(ValueError, match=rf"layer 0, Flatten\({name}"):
        backend().find(net, XS.view(1, 1, 2), 0.1, 1, budget=Budget(work=50))


def test_flatten_with_an_end_dim_is_refused():
    net = nn.Sequential(nn.Flatten(1, 2), *small_net())
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=1, end_dim=2\)"):
        check_model(net)


# --------------------------------------------------------------- (e) hooks


class _Calls:
    """A hook that negates the logits (or inputs) and counts its calls."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, module, args, out=None):
        self.n += 1
        return -out if out is not None else tuple(-a for a in args)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where", ["model", "submodule", "pre-hook"])
def test_forward_hooks_are_refused_by_name_before_any_work(backend, where):
    """Before: milp and marabou returned "sat" points at which the hooked model still
    preferred its own class. Now refused, naming the module, and the hook never runs
    (nothing was computed)."""
    net, hook = small_net(), _Calls()
    if where == "model":
        handle = net.register_forward_hook(hook)
    elif where == "submodule":
        handle = net[2].register_forward_hook(hook)
    else:
        handle = net[0].register_forward_pre_hook(hook)
    kind = "pre-hooks" if where == "pre-hook" else "hooks"
    target = {"model": "the model itself", "submodule": "'2'", "pre-hook": "'0'"}
    with pytest.raises(ValueError, match=rf"forward {kind}; .*{target[where]}"):
        backend().find(net, XS, 0.1, 1, budget=Budget(work=50))
    assert hook.n == 0
    handle.remove()
    res = backend().find(net, XS, 0.1, 1, budget=Budget(work=50, seconds=30))
    assert res.status in ("sat", "unsat", "unknown")


def test_global_forward_hooks_are_refused():
    hook = _Calls()
    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        with pytest.raises(ValueError, match="global forward hooks"):
            MilpVerifier().find(small_net(), XS, 0.1, 1)
        with pytest.raises(ValueError, match="global forward hooks"):
            bounds(small_net(), XS[None], 0.1)
    finally:
        handle.remove()
    assert hook.n == 0


def test_layers_and_sequentials_that_override_forward_are_refused():
    """Found beside (e): a subclass (or an instance attribute) overriding ``forward``
    changes ``model(x)`` exactly as a hook does."""

    class Doubled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    class Shifted(nn.Sequential):
        def forward(self, x):
            return super().forward(x) + 1

    net = small_net()
    net[2] = Doubled(4, 2)
    with pytest.raises(ValueError, match=r"layer 2 \(Doubled\).*nn\.Linear"):
        LirpaVerifier().find(net, XS, 0.1, 1)
    with pytest.raises(ValueError, match="Shifted overrides forward"):
        MilpVerifier().find(Shifted(*small_net()), XS, 0.1, 1)
    net = small_net()
    net[0].forward = lambda x: x  # an instance attribute
    with pytest.raises(ValueError, match=r"layer 0 \(Linear\)"):
        check_model(net)


# --------------------------------------------------------------- VERIFIERS


def test_verifiers_are_named_in_dalv_verify():
    from dalv.verify import VERIFIERS

    assert sorted(VERIFIERS) == ["lirpa", "marabou", "milp"]
    assert all(cls.name == name for name, cls in VERIFIERS.items())
