"""Gradient attacks, batched over inputs: FGSM, PGD, DeepFool and the minimal-FGSM-ε
search.

Owns ``fgsm``, ``fgsm_sweep``, ``pgd``, ``deepfool`` and ``min_fgsm_eps``. May import
torch and ``dalv.models``.

Every function takes a batch ``x`` of shape ``[B, *input_shape]`` with values in [0, 1],
works on the model's device (``x`` is moved there; results stay there) and never loops
over examples in Python: loops run over ε values, steps or classes, each on the whole
batch (in memory-bounded chunks of rows). The model is called as it is, so put it in
``eval()`` mode first (``dalv.train.fit`` leaves it so); its parameters receive no
gradients.

Norms: every ε here is an **L∞ radius in pixel units** (inputs live in [0, 1]), except
DeepFool's result, which is the **L2** norm of its perturbation. "Success" always means
the arg-max class of the perturbed input differs from that of the clean input (or from
``y`` where a label is given).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dalv.models import model_device, model_dtype

__all__ = ["fgsm", "fgsm_sweep", "pgd", "deepfool", "min_fgsm_eps"]

# Rows per chunk are chosen so that one working tensor holds at most this many numbers
# (2**25 float32 = 128 MiB): 10,000 MNIST inputs fit in one chunk.
_CHUNK_NUMEL = 2**25


# ------------------------------------------------------------------ validation helpers


def _expected_numel(model: nn.Module) -> int | None:
    """Features per example the model expects, when its first layers make that plain."""
    leaves = [m for m in model.modules() if not list(m.children())]
    if (
        len(leaves) >= 2
        and isinstance(leaves[0], nn.Flatten)
        and isinstance(leaves[1], nn.Linear)
    ):
        return leaves[1].in_features
    return None


def _check_inputs(model: nn.Module, x: Tensor) -> Tensor:
    """``x`` validated and moved to the model's device and dtype.

    Raises:
        ValueError: not a floating tensor batch, wrong size for the model, or values
            outside [0, 1] (or not finite).
    """
    if not isinstance(x, Tensor):
        raise ValueError(
            f"x must be a torch.Tensor batch [B, *input_shape], got {type(x).__name__}"
        )
    if not x.is_floating_point():
        raise ValueError(f"x must hold floats in [0, 1], got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(
            f"x must be a batch [B, *input_shape], got shape {tuple(x.shape)}; "
            f"add a batch dimension with x[None]"
        )
    n_in = _expected_numel(model)
    if n_in is not None and math.prod(x.shape[1:]) != n_in:
        raise ValueError(
            f"the model expects {n_in} features per input but x has shape "
            f"{tuple(x.shape)} ({math.prod(x.shape[1:])} per input)"
        )
    device, dtype = model_device(model), model_dtype(model)
    x = x.detach().to(device=device, dtype=dtype)
    if x.numel():
        lo, hi = (float(v) for v in torch.aminmax(x))  # one pass; NaN propagates
        if not (lo >= 0.0 and hi <= 1.0):
            raise ValueError(
                f"inputs must lie in [0, 1] (pixels scaled by 1/255), got values "
                f"in [{lo:.4g}, {hi:.4g}]"
            )
    return x


def _check_eps(
    eps: float | Tensor, n: int, like: Tensor, name: str = "eps", upper: float = 1.0
) -> Tensor:
    """``eps`` as a [n] tensor on ``like``'s device and dtype; a number is broadcast."""
    e = (
        eps.detach()
        if isinstance(eps, Tensor)
        else torch.as_tensor(eps, dtype=torch.float64)
    )
    if e.dim() == 0:
        e = e.reshape(1).expand(n)
    elif tuple(e.shape) != (n,):
        raise ValueError(
            f"{name} must be a number or a tensor of shape [{n}] (one per input), "
            f"got shape {tuple(e.shape)}"
        )
    e = e.to(device=like.device, dtype=like.dtype)
    if e.numel() and not bool(torch.isfinite(e).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if e.numel() and (float(e.min()) < 0.0 or float(e.max()) > upper):
        raise ValueError(
            f"{name} is an L∞ length on [0, 1] inputs and must lie in "
            f"[0, {upper:g}], got values in [{float(e.min()):.4g}, "
            f"{float(e.max()):.4g}]"
        )
    return e


def _check_labels(y: Tensor, n: int, n_classes: int, device: torch.device) -> Tensor:
    y = torch.as_tensor(y).to(device)
    if tuple(y.shape) != (n,) or y.is_floating_point():
        raise ValueError(
            f"y must be an integer tensor of shape [{n}], got {tuple(y.shape)} "
            f"{y.dtype}"
        )
    if n and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(
            f"y must hold class indices in [0, {n_classes}), got "
            f"[{int(y.min())}, {int(y.max())}]"
        )
    return y.long()


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    try:
        out = model(x)
    except RuntimeError as e:
        raise ValueError(
            f"the model cannot take inputs of shape {tuple(x.shape[1:])}: "
            f"{str(e).splitlines()[0]}"
        ) from None
    if out.dim() != 2 or len(out) != len(x):
        raise ValueError(
            f"the model must return logits [B, n_classes], got {tuple(out.shape)}"
        )
    return out


def _chunks(n: int, per_row: int):
    """Row slices so that ``rows × per_row`` stays under ``_CHUNK_NUMEL``."""
    step = max(1, _CHUNK_NUMEL // max(1, per_row))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _rows(v: Tensor, x: Tensor) -> Tensor:
    """A per-input [B] tensor shaped to broadcast against x [B, *shape]."""
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def _ce_grad(model: nn.Module, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
    """∇_x CE(f(x), y) per input and the clean logits; ``y`` = own prediction when None.

    The loss is summed over the batch, so each row's gradient is that example's own.
    """
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = _logits(model, xg)
        target = logits.argmax(1) if y is None else y
        loss = F.cross_entropy(logits, target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
    return grad, logits.detach()


# ------------------------------------------------------------------ FGSM


def fgsm(
    model: nn.Module, x: Tensor, eps: float | Tensor, y: Tensor | None = None
) -> Tensor:
    """Fast Gradient Sign Method (Goodfellow et al., 2015): one signed-gradient step.

    ``x' = clip(x + ε · sign(∇_x CE(f(x), y)), 0, 1)``: untargeted, increasing the
    cross-entropy against ``y`` (the model's own predicted class when ``y`` is None, as
    the paper's FVAAL does, protocol §3.6). The gradient is taken at ``x``.

    Args:
        model: classifier returning logits.
        x: clean inputs in [0, 1].
        eps: L∞ step size in [0, 1]; a number, or a tensor with one value per input.
        y: labels to move away from; default: the model's prediction at ``x``.

    Returns:
        The adversarial inputs, on the model's device.

    Shapes:
        x: [B, *input_shape]; eps: [] or [B]; y: [B] int64 → [B, *input_shape].

    Raises:
        ValueError: ε outside [0, 1], inputs outside [0, 1], or inputs the model cannot
            take.
    """
    x = _check_inputs(model, x)
    e = _check_eps(eps, len(x), x)
    if len(x) == 0:
        return x.clone()
    if y is not None:
        with torch.no_grad():
            y = _check_labels(y, len(x), _logits(model, x[:1]).shape[1], x.device)
    out = torch.empty_like(x)
    for s in _chunks(len(x), x[0].numel()):
        grad, _ = _ce_grad(model, x[s], None if y is None else y[s])
        out[s] = (x[s] + _rows(e[s], x[s]) * grad.sign()).clamp(0.0, 1.0)
    return out


def fgsm_sweep(model: nn.Module, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """FGSM at several ε per input, with the gradient computed once per input.

    Every candidate lies on the clipped ray ``clip(x + ε · sign(∇_x CE(f(x), ŷ)), 0,
    1)``, ŷ the model's own prediction (the paper's FGSM-Adv sweep, protocol §4.3).
    Candidate ``[i, j]`` equals ``fgsm(model, x[i:i+1], eps[i, j])``.

    Args:
        model: classifier returning logits.
        x: clean inputs in [0, 1].
        eps: L∞ step sizes in [0, 1], one row per input (or one row shared by all).

    Returns:
        ``(x_adv, flipped)``: the candidates and whether each one's class differs from
        the clean prediction.

    Shapes:
        x: [B, *input_shape]; eps: [B, G] or [G] → x_adv [B, G, *input_shape],
        flipped [B, G] bool.

    Raises:
        ValueError: ε outside [0, 1] or of the wrong shape; bad inputs as in ``fgsm``.
    """
    x = _check_inputs(model, x)
    e = torch.as_tensor(eps).detach()
    if e.dim() == 1:
        e = e.unsqueeze(0).expand(len(x), -1)
    if e.dim() != 2 or len(e) != len(x):
        raise ValueError(
            f"eps must have shape [{len(x)}, G] or [G], got {tuple(e.shape)}"
        )
    n_grid = e.shape[1]
    e = _check_eps(e.reshape(-1), e.numel(), x).reshape(len(x), n_grid)
    out = x.new_empty((len(x), n_grid, *x.shape[1:]))
    flipped = torch.zeros((len(x), n_grid), dtype=torch.bool, device=x.device)
    if len(x) == 0 or n_grid == 0:
        return out, flipped
    for s in _chunks(len(x), n_grid * x[0].numel()):
        grad, logits = _ce_grad(model, x[s], None)
        pred, sign = logits.argmax(1), grad.sign().unsqueeze(1)  # [m, 1, *shape]
        e_s = e[s].reshape(len(grad), n_grid, *([1] * (x.dim() - 1)))  # [m, G, 1, ...]
        cand = (x[s].unsqueeze(1) + e_s * sign).clamp(0.0, 1.0)  # [m, G, *shape]
        with torch.no_grad():
            cls = (
                _logits(model, cand.flatten(0, 1)).argmax(1).reshape(len(grad), n_grid)
            )
        out[s], flipped[s] = cand, cls != pred.unsqueeze(1)
    return out, flipped


# ------------------------------------------------------------------ PGD


def pgd(
    model: nn.Module,
    x: Tensor,
    eps: float | Tensor,
    steps: int = 10,
    step_size: float | Tensor | None = None,
    restarts: int = 0,
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L∞ Projected Gradient Descent (Madry et al., 2018), untargeted.

    Each run repeats ``steps`` times ``x' ← Π(x' + α · sign(∇ CE(f(x'), y)))``, where Π
    projects onto the ε-box around ``x`` intersected with [0, 1]. The first run starts
    at ``x``; each of the ``restarts`` further runs starts at a uniform random point of
    the box. Per input, the result is the final point of the best run: one that
    misclassifies if any does, and among those alike the one with the highest
    cross-entropy.

    Args:
        model: classifier returning logits.
        x: clean inputs in [0, 1].
        eps: L∞ radius of the box, in [0, 1]; a number or one per input.
        steps: gradient steps per run (≥ 0).
        step_size: L∞ step α; default ``2.5 · eps / steps``.
        restarts: extra runs from random starts (≥ 0).
        y: labels to move away from; default: the model's prediction at ``x``.
        generator: source of the random starts; default: a CPU generator seeded with 0,
            so results are reproducible.

    Returns:
        The adversarial inputs, on the model's device.

    Shapes:
        x: [B, *input_shape]; eps, step_size: [] or [B]; y: [B] → [B, *input_shape].

    Raises:
        ValueError: ε outside [0, 1], inputs outside [0, 1], negative steps, restarts or
            step size.
    """
    if steps < 0 or restarts < 0:
        raise ValueError(f"steps and restarts must be >= 0, got {steps} and {restarts}")
    x = _check_inputs(model, x)
    e = _check_eps(eps, len(x), x)
    if step_size is None:
        alpha = 2.5 * e / max(steps, 1)
    else:
        alpha = _check_eps(step_size, len(x), x, "step_size", upper=math.inf)
    if len(x) == 0:
        return x.clone()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    with torch.no_grad():
        if y is None:
            y_all = torch.cat(
                [_logits(model, x[s]).argmax(1) for s in _chunks(len(x), x[0].numel())]
            )
        else:
            y_all = _check_labels(y, len(x), _logits(model, x[:1]).shape[1], x.device)
    best = x.clone()
    best_ok = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    best_loss = torch.full((len(x),), -math.inf, dtype=x.dtype, device=x.device)
    for run in range(1 + restarts):
        for s in _chunks(len(x), x[0].numel()):
            xc, ec, ac, yc = x[s], _rows(e[s], x[s]), _rows(alpha[s], x[s]), y_all[s]
            lo, hi = (xc - ec).clamp_min(0.0), (xc + ec).clamp_max(1.0)
            if run == 0:
                xa = xc.clone()
            else:
                u = torch.rand(
                    xc.shape, generator=gen, device=gen.device, dtype=xc.dtype
                )
                xa = torch.minimum(
                    torch.maximum(xc + (2 * u.to(xc.device) - 1) * ec, lo), hi
                )
            for _ in range(steps):
                grad, _ = _ce_grad(model, xa, yc)
                xa = torch.minimum(torch.maximum(xa + ac * grad.sign(), lo), hi)
            with torch.no_grad():
                logits = _logits(model, xa)
                loss = F.cross_entropy(logits, yc, reduction="none")
                ok = logits.argmax(1) != yc
            better = (ok & ~best_ok[s]) | ((ok == best_ok[s]) & (loss > best_loss[s]))
            best[s] = torch.where(_rows(better, xa), xa, best[s])
            best_ok[s] = best_ok[s] | ok
            best_loss[s] = torch.where(better, loss, best_loss[s])
    return best


# ------------------------------------------------------------------ DeepFool


def _jacobian(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Logits [m, C] and their Jacobian [m, C, *input_shape] w.r.t. each input row.

    One batched backward (``is_grads_batched``) over the C one-hot output directions;
    for layers without a batching rule, one backward pass per class instead.
    """
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = _logits(model, xg)
        n_classes = logits.shape[1]
        basis = torch.eye(n_classes, dtype=logits.dtype, device=logits.device)
        basis = basis[:, None, :].expand(n_classes, len(x), n_classes)  # [C, m, C]
        try:
            (jac,) = torch.autograd.grad(
                logits, xg, grad_outputs=basis, retain_graph=True, is_grads_batched=True
            )
        except RuntimeError:
            jac = torch.stack(
                [
                    torch.autograd.grad(
                        logits, xg, grad_outputs=basis[c], retain_graph=True
                    )[0]
                    for c in range(n_classes)
                ]
            )
    return logits.detach(), jac.transpose(0, 1)  # [m, C, *shape]


def deepfool(
    model: nn.Module,
    x: Tensor,
    max_iter: int = 20,
    overshoot: float = 0.02,
    *,
    clip: bool = True,
) -> tuple[Tensor, Tensor]:
    """DeepFool (Moosavi-Dezfooli et al., 2016), as the paper's DFAL scores (protocol
    §3.5).

    Per input, starting from ``r = 0`` and the clean class ``k``: while the class of
    ``x + r`` is still ``k`` and fewer than ``max_iter`` steps were taken, linearise
    every logit difference at ``x + r``, pick the class ``j ≠ k`` with the nearest
    linearised boundary ``|f_j − f_k| / ‖∇(f_j − f_k)‖₂`` (all classes considered), take
    the step ``r_i = |f_j − f_k| / ‖∇(f_j − f_k)‖₂² · ∇(f_j − f_k)`` and add
    ``(1 + overshoot) · r_i`` to ``r`` (the overshoot applies per step). A step with
    ``‖r_i‖₂ < 1e-6`` ends the search (after being added). The iterates ``x + r`` are
    **not** clipped to [0, 1]; only the returned example is (as the reference code
    does).

    All inputs advance together: each step computes the Jacobian of all C logits for the
    inputs still running (one batched backward pass), and finished inputs drop out.

    Clipping matters: DeepFool stops just past the boundary, so removing the part of
    ``r`` that leaves [0, 1] usually moves the input back. On digit images (mostly
    0-valued pixels) the clipped example keeps the clean class for most inputs, while
    ``x + r`` changes it for nearly all. The paper's DFAL still adds the clipped
    example.

    Args:
        model: classifier returning logits.
        x: clean inputs in [0, 1].
        max_iter: maximum number of steps per input.
        overshoot: per-step overshoot factor.
        clip: return ``clip(x + r, 0, 1)`` (the paper's example); ``False`` returns the
            raw iterate ``x + r``, which may leave [0, 1].

    Returns:
        ``(x_adv, r_norm_l2)``: ``x_adv = clip(x + r, 0, 1)`` (or ``x + r``) and the
        **L2** norm of ``r`` taken *before* clipping (DFAL's score; also given when the
        class never changed).

    Shapes:
        x: [B, *input_shape] → x_adv [B, *input_shape], r_norm_l2 [B].

    Raises:
        ValueError: inputs outside [0, 1] or that the model cannot take; max_iter < 0.
    """
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    x = _check_inputs(model, x)
    if len(x) == 0:
        return x.clone(), x.new_zeros(0)
    with torch.no_grad():
        n_classes = _logits(model, x[:1]).shape[1]
    r_tot = torch.zeros_like(x)
    for s in _chunks(len(x), n_classes * 2 * x[0].numel()):
        xc, rc = x[s], r_tot[s]  # rc is a view into r_tot
        with torch.no_grad():
            label = _logits(model, xc).argmax(1)
        active = torch.arange(len(xc), device=x.device)
        for _ in range(max_iter):
            if len(active) == 0:
                break
            logits, jac = _jacobian(model, xc[active] + rc[active])
            still = logits.argmax(1) == label[active]  # stop once the class changed
            active, logits, jac = active[still], logits[still], jac[still]
            if len(active) == 0:
                break
            k = label[active]
            rows = torch.arange(len(active), device=x.device)
            w = (jac - jac[rows, k].unsqueeze(1)).flatten(2)  # ∇(f_j − f_k)  [m, C, d]
            f = logits - logits[rows, k].unsqueeze(1)  # f_j − f_k     [m, C]
            dist = f.abs() / (w.norm(dim=2) + 1e-12)
            dist[rows, k] = math.inf
            j = dist.argmin(1)
            w_j, f_j = w[rows, j], f[rows, j].abs()  # [m, d], [m]
            r_i = (f_j / (w_j.pow(2).sum(1) + 1e-12)).unsqueeze(1) * w_j
            rc[active] += (1.0 + overshoot) * r_i.reshape(-1, *xc.shape[1:])
            active = active[r_i.norm(dim=1) >= 1e-6]  # tiny steps end the search
    x_adv = x + r_tot
    return (x_adv.clamp(0.0, 1.0) if clip else x_adv), r_tot.flatten(1).norm(dim=1)


# ------------------------------------------------------------------ minimal FGSM ε


def _n_bisections(tol: float) -> int:
    """Halvings of [0, 1] until its width is ≤ tol (11 for tol = 5e-4)."""
    n, width = 0, 1.0
    while width > tol:
        width /= 2.0
        n += 1
    return n


def min_fgsm_eps(
    model: nn.Module, x: Tensor, tol: float = 5e-4
) -> tuple[Tensor, Tensor, Tensor]:
    """The smallest L∞ FGSM step that changes each input's class, by binary search
    (FVAAL).

    Exactly the paper's search (protocol §3.6), for all inputs at once: the signed
    gradient ``sign(∇_x CE(f(x), ŷ))`` w.r.t. the model's own prediction ŷ is computed
    **once** at ``x``; then, on the interval [0, 1] with first test ε = 0.5, each step
    tests ``clip(x + ε · sign, 0, 1)``: on success the upper end becomes ε, otherwise
    the lower end does, and the next ε is the midpoint. The search stops when the width
    is ≤ ``tol`` (11 evaluations for 5e-4; every input takes the same number, so one
    forward pass of the batch per evaluation).

    The returned ε is the midpoint of the final interval ``[lo, hi]`` (width ``w =
    2⁻ⁿ``): FGSM at ``lo = ε − w/2`` kept the class (``lo`` was tested, or is 0), at
    ``hi = ε + w/2`` it changed it. FGSM success is not monotone in ε, so nothing is
    claimed between them. Inputs whose class no tested ε changed get **ε = 1.0** (the
    reference code returns the midpoint 0.999756 for them; 1.0 ranks them strictly
    last), ``x_adv = x`` and ``flipped = False``.

    Args:
        model: classifier returning logits.
        x: clean inputs in [0, 1].
        tol: stop when the interval width is ≤ tol; in (0, 1).

    Returns:
        ``(eps_linf, x_adv, flipped)``: the midpoint ε (L∞), the FGSM input at the
        smallest successful ε tested (``x`` itself when none), and whether one
        succeeded.

    Shapes:
        x: [B, *input_shape] → eps_linf [B], x_adv [B, *input_shape], flipped [B] bool.

    Raises:
        ValueError: tol outside (0, 1); inputs outside [0, 1] or that the model cannot
            take.
    """
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol must lie in (0, 1), got {tol}")
    x = _check_inputs(model, x)
    n = len(x)
    if n == 0:
        return (
            x.new_zeros(0),
            x.clone(),
            torch.zeros(0, dtype=torch.bool, device=x.device),
        )
    n_eval = _n_bisections(tol)
    eps_out = x.new_ones(n)
    x_adv = torch.empty_like(x)
    flipped = torch.zeros(n, dtype=torch.bool, device=x.device)
    for s in _chunks(n, x[0].numel()):
        xc = x[s]
        grad, logits = _ce_grad(model, xc, None)
        pred, sign = logits.argmax(1), grad.sign()
        lo, hi = xc.new_zeros(len(xc)), xc.new_ones(len(xc))
        ok_any = torch.zeros(len(xc), dtype=torch.bool, device=x.device)
        eps = xc.new_full((len(xc),), 0.5)
        x_eps = torch.empty_like(xc)  # reused: one allocation for all evaluations
        with torch.no_grad():
            for _ in range(n_eval):
                # x + ε·sign, exactly as fgsm() computes it (ε·sign is exact)
                torch.addcmul(xc, _rows(eps, xc), sign, out=x_eps).clamp_(0.0, 1.0)
                ok = model(x_eps).argmax(1) != pred
                hi, lo = torch.where(ok, eps, hi), torch.where(ok, lo, eps)
                ok_any |= ok
                eps = (lo + hi) / 2
        # hi is the smallest successful ε tested (each success lowers hi), or 1 if none.
        eps_out[s] = torch.where(ok_any, (lo + hi) / 2, 1.0)
        torch.addcmul(xc, _rows(hi, xc), sign, out=x_adv[s]).clamp_(0.0, 1.0)
        x_adv[s][~ok_any] = xc[~ok_any]
        flipped[s] = ok_any
    return eps_out, x_adv, flipped
