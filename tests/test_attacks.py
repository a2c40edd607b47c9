"""dalv.attacks: FGSM, PGD, DeepFool and the minimal-FGSM-ε search, on a tiny digits
MLP."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dalv
from dalv import attacks

torch.set_num_threads(2)

HALF_WIDTH = 2.0**-12  # half the final interval of the 11-step search (tol = 5e-4)


@pytest.fixture(scope="module")
def digits_data(digits):
    return digits


@pytest.fixture(scope="module")
def net(trained_mlp):
    """conftest's MLP-32 trained on 300 digits."""
    return trained_mlp


@pytest.fixture(scope="module")
def x_real(digits_data):
    return digits_data.x_train[300:500]


@pytest.fixture(scope="module")
def x_rand():
    return torch.rand((200, 1, 8, 8), generator=torch.Generator().manual_seed(1))


def _pred(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def constant_net(cls: int = 3) -> nn.Sequential:
    """A model whose output ignores its input: no FGSM step can change its class."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].bias[cls] = 1.0
    return model


# ------------------------------------------------------------------ FGSM


def test_fgsm_matches_the_formula_and_stays_in_the_box(net, x_real):
    x = x_real[:50].clone().requires_grad_(True)
    y = _pred(net, x_real[:50])
    (grad,) = torch.autograd.grad(F.cross_entropy(net(x), y, reduction="sum"), x)
    want = (x_real[:50] + 0.1 * grad.sign()).clamp(0, 1)
    got = attacks.fgsm(net, x_real[:50], 0.1)
    assert torch.equal(got, want)
    assert (got - x_real[:50]).abs().max() <= 0.1 + 1e-7
    assert got.min() >= 0 and got.max() <= 1


def test_fgsm_per_input_eps_and_explicit_labels(net, x_real):
    x = x_real[:10]
    eps = torch.linspace(0, 0.3, 10)
    got = attacks.fgsm(net, x, eps)
    for i in range(10):
        assert torch.equal(
            got[i : i + 1], attacks.fgsm(net, x[i : i + 1], float(eps[i]))
        )
    assert torch.equal(attacks.fgsm(net, x, 0.0), x)
    y = torch.randint(0, 10, (10,), generator=torch.Generator().manual_seed(0))
    assert attacks.fgsm(net, x, 0.2, y=y).shape == x.shape


def test_fgsm_sweep_equals_fgsm_at_every_eps(net, x_real):
    x = x_real[:6]
    eps = torch.rand((6, 5), generator=torch.Generator().manual_seed(0)) * 0.3
    cand, flipped = attacks.fgsm_sweep(net, x, eps)
    assert cand.shape == (6, 5, 1, 8, 8) and flipped.shape == (6, 5)
    for j in range(5):
        ref = attacks.fgsm(net, x, eps[:, j])
        assert torch.equal(cand[:, j], ref)
        assert torch.equal(flipped[:, j], _pred(net, ref) != _pred(net, x))


# ------------------------------------------------------------------ minimal FGSM ε


@pytest.mark.parametrize("inputs", ["x_real", "x_rand"])
def test_min_fgsm_eps_brackets_the_boundary(net, inputs, request):
    x = request.getfixturevalue(inputs)
    eps, x_adv, flipped = attacks.min_fgsm_eps(net, x)
    pred = _pred(net, x)
    assert flipped.any()
    f = flipped
    lo, hi = eps[f] - HALF_WIDTH, eps[f] + HALF_WIDTH
    # The final interval [lo, hi]: FGSM at lo keeps the class, at hi changes it.
    assert (_pred(net, attacks.fgsm(net, x[f], lo)) == pred[f]).all()
    assert (_pred(net, attacks.fgsm(net, x[f], hi)) != pred[f]).all()
    # x_adv is the FGSM input at the smallest successful ε tested (= hi).
    assert torch.equal(x_adv[f], attacks.fgsm(net, x[f], hi))
    # Midpoints of the final intervals are odd multiples of 2^-12.
    k = eps[f].double() * 2**12
    assert torch.equal(k, k.round()) and (k.round().long() % 2 == 1).all()
    assert (eps[~f] == 1.0).all() and torch.equal(x_adv[~f], x[~f])


def _min_eps_reference(model, x1):
    """The reference code's search for one input, written out plainly."""
    pred = _pred(model, x1)
    x = x1.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), pred), x)
    left, right, eps, adv = 0.0, 1.0, 0.5, None
    while right - left > 5e-4:
        cand = (x1 + eps * g.sign()).clamp(0, 1)
        if _pred(model, cand) != pred:
            right, adv = eps, cand
        else:
            left = eps
        eps = left + (right - left) / 2
    return (1.0 if adv is None else eps), adv


def test_min_fgsm_eps_equals_the_one_at_a_time_search(net, x_real, x_rand):
    x = torch.cat([x_real[:15], x_rand[:15]])
    eps, x_adv, flipped = attacks.min_fgsm_eps(net, x)
    for i in range(len(x)):
        e_ref, adv_ref = _min_eps_reference(net, x[i : i + 1])
        assert float(eps[i]) == e_ref
        assert bool(flipped[i]) == (adv_ref is not None)
        if adv_ref is not None:
            assert torch.equal(x_adv[i : i + 1], adv_ref)


def test_min_fgsm_eps_takes_one_gradient_and_eleven_forward_passes(net, x_real):
    calls = []
    handle = net.register_forward_hook(lambda *a: calls.append(1))
    try:
        attacks.min_fgsm_eps(net, x_real)
    finally:
        handle.remove()
    assert len(calls) == 12


def test_min_fgsm_eps_never_flipped_gets_one():
    model = constant_net()
    x = torch.rand((7, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    eps, x_adv, flipped = attacks.min_fgsm_eps(model, x)
    assert (eps == 1.0).all() and not flipped.any() and torch.equal(x_adv, x)


# ------------------------------------------------------------------ DeepFool


def test_deepfool_changes_the_class(net, x_real):
    x_raw, r = attacks.deepfool(net, x_real, clip=False)
    changed = (_pred(net, x_raw) != _pred(net, x_real)).float().mean()
    assert changed >= 0.95
    x_adv, r2 = attacks.deepfool(net, x_real)
    assert torch.equal(x_adv, x_raw.clamp(0, 1)) and torch.equal(r, r2)
    assert torch.allclose(r, (x_raw - x_real).flatten(1).norm(dim=1), atol=1e-5)


def _deepfool_reference(model, x1, max_iter=20, overshoot=0.02):
    """Spec §5.5 for one input, one class at a time (no batching, no Jacobian
    tricks)."""
    k = int(_pred(model, x1))
    r = torch.zeros_like(x1)
    for _ in range(max_iter):
        xi = (x1 + r).requires_grad_(True)
        logits = model(xi)[0]
        if int(logits.argmax()) != k:
            break
        grads = [
            torch.autograd.grad(logits[c], xi, retain_graph=True)[0] for c in range(10)
        ]
        best, best_dist = None, float("inf")
        for j in range(10):
            if j == k:
                continue
            w, f = grads[j] - grads[k], float(logits[j].detach() - logits[k].detach())
            dist = abs(f) / (float(w.norm()) + 1e-12)
            if dist < best_dist:
                best, best_dist = (w, f), dist
        w, f = best
        r_i = abs(f) / (float(w.pow(2).sum()) + 1e-12) * w
        r = r + (1 + overshoot) * r_i
        if float(r_i.norm()) < 1e-6:
            break
    return r.detach()


def test_deepfool_equals_the_one_at_a_time_algorithm(net, x_real):
    x = x_real[:12]
    x_raw, r_norm = attacks.deepfool(net, x, clip=False)
    for i in range(len(x)):
        r_ref = _deepfool_reference(net, x[i : i + 1])
        assert torch.allclose(x_raw[i : i + 1] - x[i : i + 1], r_ref, atol=1e-5)
        assert abs(float(r_norm[i]) - float(r_ref.norm())) < 1e-4


def test_deepfool_zero_iterations_is_the_identity(net, x_real):
    x_adv, r = attacks.deepfool(net, x_real[:5], max_iter=0)
    assert torch.equal(x_adv, x_real[:5]) and (r == 0).all()


# ------------------------------------------------------------------ PGD


def test_pgd_stays_in_the_box_and_beats_fgsm(net, x_real):
    x, eps = x_real, 0.08
    x_adv = attacks.pgd(net, x, eps, steps=10)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    pred = _pred(net, x)
    pgd_rate = (_pred(net, x_adv) != pred).float().mean()
    fgsm_rate = (_pred(net, attacks.fgsm(net, x, eps)) != pred).float().mean()
    assert pgd_rate >= fgsm_rate


def test_pgd_restarts_are_seeded_and_never_worse(net, x_real):
    x, pred = x_real[:100], _pred(net, x_real[:100])
    one = attacks.pgd(net, x, 0.05, steps=5)
    a = attacks.pgd(
        net, x, 0.05, steps=5, restarts=2, generator=torch.Generator().manual_seed(3)
    )
    b = attacks.pgd(
        net, x, 0.05, steps=5, restarts=2, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b)
    fooled_one, fooled_a = _pred(net, one) != pred, _pred(net, a) != pred
    assert (fooled_a | ~fooled_one).all()  # an input fooled by run 0 stays fooled


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("eps", [-0.1, 1.5, float("nan"), torch.full((3,), 0.1)])
def test_bad_eps_is_a_value_error(net, x_real, eps):
    with pytest.raises(ValueError, match="eps"):
        attacks.fgsm(net, x_real[:5], eps)
    with pytest.raises(ValueError, match="eps"):
        attacks.pgd(net, x_real[:5], eps)


@pytest.mark.parametrize(
    "fn",
    [
        lambda m, x: attacks.fgsm(m, x, 0.1),
        lambda m, x: attacks.pgd(m, x, 0.1, steps=1),
        lambda m, x: attacks.deepfool(m, x),
        lambda m, x: attacks.min_fgsm_eps(m, x),
    ],
)
def test_bad_inputs_are_value_errors(net, x_real, fn):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fn(net, x_real[:4] * 2.0)
    with pytest.raises(ValueError, match="features per input"):
        fn(net, torch.rand(4, 1, 7, 7))
    with pytest.raises(ValueError, match="batch"):
        fn(net, x_real[0, 0, 0])
    with pytest.raises(ValueError, match="floats"):
        fn(net, (x_real[:4] * 16).long())


def test_bad_tol_and_empty_batches(net, x_real):
    with pytest.raises(ValueError, match="tol"):
        attacks.min_fgsm_eps(net, x_real[:3], tol=0.0)
    empty = x_real[:0]
    eps, x_adv, flipped = attacks.min_fgsm_eps(net, empty)
    assert eps.shape == (0,) and x_adv.shape == (0, 1, 8, 8) and flipped.shape == (0,)
    assert attacks.deepfool(net, empty)[0].shape == (0, 1, 8, 8)
    assert attacks.fgsm(net, empty, 0.1).shape == (0, 1, 8, 8)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_attacks_run_on_the_models_device(net, x_real):
    cuda = dalv.models.build(dalv.ModelConfig(hidden=32), (1, 8, 8), 10, seed=0)
    cuda.load_state_dict(net.state_dict())
    cuda = cuda.cuda()
    eps, x_adv, flipped = attacks.min_fgsm_eps(cuda, x_real)  # x on the CPU
    assert x_adv.is_cuda and eps.is_cuda
    eps_cpu = attacks.min_fgsm_eps(net, x_real)[0]
    assert np.mean(eps.cpu().numpy() == eps_cpu.numpy()) > 0.95
    assert attacks.deepfool(cuda, x_real)[0].is_cuda
    assert attacks.pgd(cuda, x_real, 0.1, restarts=1).is_cuda
