"""The shared rules of dalv.verify: directed rounding, radius checks, the separation
and acceptance tests, identical on torch tensors and numpy arrays."""

import numpy as np
import pytest
import torch

from dalv.verify import Property
from dalv.verify.box import clip_box, eps_tensor, input_box, round_down, round_up
from dalv.verify.property import pairwise_separated, satisfies, separated

pytestmark = pytest.mark.usefixtures("one_thread")


def _values(n: int = 2000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    v = torch.rand(n, dtype=torch.float64, generator=gen)
    # exactly representable values must come back unchanged
    return torch.cat([v, v.float().double(), torch.tensor([0.0, 1.0, 0.5])])


def test_rounding_is_directed_and_tight():
    v = _values()
    up, down = round_up(v, torch.float32), round_down(v, torch.float32)
    assert up.dtype == down.dtype == torch.float32
    assert (up.double() >= v).all() and (down.double() <= v).all()
    exact = up.double() == v
    assert torch.equal(exact, down.double() == v)
    # inexact values land on adjacent float32 neighbours
    gap = torch.nextafter(down, torch.full_like(down, 2.0))
    assert torch.equal(up[~exact], gap[~exact])
    assert torch.equal(round_up(v, torch.float64), v)


def test_numpy_and_torch_rounding_agree_bit_for_bit():
    v = _values()
    for fn in (round_up, round_down):
        t = fn(v, torch.float32)
        a = fn(v.numpy(), "float32")
        assert a.dtype == np.float32
        assert np.array_equal(t.numpy(), a)


def test_input_box_is_clip_box_rounded():
    x = torch.rand(3, 40, generator=torch.Generator().manual_seed(1))
    eps = torch.tensor([1e-3, 0.07, 0.6], dtype=torch.float64)
    lo64, hi64 = clip_box(x.double(), eps[:, None])
    assert torch.equal(input_box(x, eps, rounding="exact")[0], lo64)
    lo, hi = input_box(x, eps, rounding="outward")
    assert torch.equal(lo, round_down(lo64, torch.float32))
    assert torch.equal(hi, round_up(hi64, torch.float32))
    lo, hi = input_box(x, eps, rounding="inward")
    assert torch.equal(lo, round_up(lo64, torch.float32))
    assert torch.equal(hi, round_down(hi64, torch.float32))
    lo_np, hi_np = clip_box(x[1].double().numpy(), 0.07)
    assert np.array_equal(lo_np, lo64[1].numpy())
    assert np.array_equal(hi_np, hi64[1].numpy())
    with pytest.raises(ValueError, match="rounding"):
        input_box(x, eps, rounding="nearest")


def test_eps_checks():
    assert torch.equal(eps_tensor(0.1, 3), torch.full((3,), 0.1, dtype=torch.float64))
    with pytest.raises(ValueError, match="one value per input"):
        eps_tensor(torch.tensor([0.1, 0.2]), 3)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite and > 0"):
            eps_tensor(bad, 2)


@pytest.mark.parametrize("separation", ["every_coord", "any_coord"])
def test_separation_and_acceptance_agree_on_torch_and_numpy(separation):
    prop = Property(separation=separation, delta=0.1)
    gen = torch.Generator().manual_seed(2)
    pts = torch.rand(50, 4, dtype=torch.float64, generator=gen)
    others = torch.rand(6, 4, dtype=torch.float64, generator=gen)
    pair = pairwise_separated(pts, others, prop)
    assert np.array_equal(
        pair.numpy(), pairwise_separated(pts.numpy(), others.numpy(), prop)
    )
    # by hand
    gaps = (pts[:, None] - others[None]).abs() >= 0.1
    want = gaps.all(-1) if separation == "every_coord" else gaps.any(-1)
    assert torch.equal(pair, want)
    assert torch.equal(separated(pts, others, prop), want.all(-1))
    assert separated(pts, others[:0], prop).all()
    margins = torch.linspace(-1, 1, 50, dtype=torch.float64)
    lo, hi = torch.full((1, 4), 0.1, dtype=torch.float64), torch.full((1, 4), 0.9)
    ok = satisfies(pts, margins, lo, hi.double(), others, prop)
    ok_np = satisfies(
        pts.numpy(),
        margins.numpy(),
        lo.numpy(),
        hi.double().numpy(),
        others.numpy(),
        prop,
    )
    assert np.array_equal(ok.numpy(), ok_np)
    in_box = ((pts >= 0.1) & (pts <= 0.9)).all(-1)
    assert torch.equal(ok, in_box & (margins <= -prop.margin) & want.all(-1))
    # padded per-point sets: masked-out rows never block a point
    per_point = others[None].expand(50, -1, -1)
    mask = torch.zeros(50, 6, dtype=torch.bool)
    free = satisfies(pts, margins, lo, hi.double(), per_point, prop, mask)
    assert torch.equal(free, in_box & (margins <= -prop.margin))
