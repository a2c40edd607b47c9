"""Finding up to k separated counterexamples of the paper's property (spec section 6.4).

Owns: ``find_counterexamples``, ``find_counterexamples_batch``,
``fv_adv_counterexamples`` and their argument checks; may import: torch,
``dalv.verify.{network, property, results, bab}``, ``dalv.verify.marabou`` (only when
that backend is asked for).

Two backends answer the same question (see ``dalv.verify.property`` for the property):

* ``"lirpa"`` - batched branch and bound over input boxes, CROWN bounds to prune and a
  PGD falsifier to find witnesses, on the model's device (``dalv.verify.bab``);
* ``"marabou"`` - the paper's complete solver, one call per counterexample, each found
  point joining the exclusions (``dalv.verify.marabou``).

Statuses: "sat" when at least one counterexample is returned; "unsat" when none was
found and the search proved that none exists; "unknown" otherwise (timeout or budget).
``exhausted`` says that no further counterexample exists beyond those returned and
``stats.timed_out`` whether the clock ran out. A timeout never raises: what was found so
far is returned. Every returned point has passed an exact float64 re-check (box, margin,
separation from ``exclude`` and from each other); failures are dropped and counted in
``stats.rejected``.

Example:
    >>> res = find_counterexamples(model, x, 0.1, 9, exclude=[x_fgsm])  # doctest: +SKIP
    >>> res.status, res.counterexamples.shape                          # doctest: +SKIP
    ('sat', torch.Size([9, 1, 28, 28]))
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from dalv.verify.bab import BranchAndBound, LirpaConfig
from dalv.verify.network import (
    affine_relu_layers,
    check_batch,
    check_model,
    model_device,
    model_dtype,
    single_input,
)
from dalv.verify.property import SEPARATIONS, TARGETS, Separation, Target
from dalv.verify.results import SearchResult, SearchStats

__all__ = [
    "Backend",
    "LirpaConfig",
    "find_counterexamples",
    "find_counterexamples_batch",
    "fv_adv_counterexamples",
]

Backend = Literal["lirpa", "marabou"]


def find_counterexamples(
    model: nn.Module,
    x: Tensor,
    eps: float,
    k: int,
    *,
    exclude: Sequence[Tensor] | Tensor = (),
    backend: Backend = "lirpa",
    target: Target = "runner_up",
    separation: Separation = "every_coord",
    delta: float = 1e-3,
    margin: float = 1e-3,
    timeout: float | None = None,
    seed: int = 0,
    config: LirpaConfig | None = None,
) -> SearchResult:
    """Find up to ``k`` counterexamples of the paper's property around ONE input.

    Args:
        model: A Flatten/Linear/ReLU ``nn.Sequential`` (``Conv2d`` too for "lirpa").
        x: One input in [0, 1], shape ``input_shape`` or ``[1, *input_shape]``.
        eps: Box radius (> 0).
        k: Number of NEW counterexamples wanted (>= 1); ``exclude`` does not count.
        exclude: Earlier counterexamples ``E`` (a tensor ``[n, *input_shape]`` or a
            sequence of inputs); new points must be separated from them.
        backend: "lirpa" (branch and bound) or "marabou" (complete solver).
        target: "runner_up" (the paper) or "any" other class.
        separation: "every_coord" (the paper) or "any_coord".
        delta: Exclusion distance (the paper: 1e-3).
        margin: Required margin (the paper: 1e-3).
        timeout: Wall-clock seconds (``None``: only the budgets stop the search).
        seed: Seed of the random PGD starts (lirpa).
        config: ``LirpaConfig`` knobs (lirpa).

    Returns:
        A ``SearchResult`` whose counterexamples have shape ``[m, *input_shape]``.

    Raises:
        ValueError: Bad arguments, shapes or layers (the message names the problem).
    """
    x1 = single_input(model, x)
    excl = _stack_exclude(exclude, x1)
    return find_counterexamples_batch(
        model,
        x1[None],
        eps,
        k,
        excludes=[excl],
        backend=backend,
        target=target,
        separation=separation,
        delta=delta,
        margin=margin,
        timeout=timeout,
        seed=seed,
        config=config,
        workers=1,
    )[0]


def find_counterexamples_batch(
    model: nn.Module,
    xs: Tensor,
    eps: float | Tensor,
    k: int | Sequence[int],
    *,
    excludes: Sequence[Tensor] | None = None,
    backend: Backend = "lirpa",
    target: Target = "runner_up",
    separation: Separation = "every_coord",
    delta: float = 1e-3,
    margin: float = 1e-3,
    timeout: float | None = None,
    seed: int = 0,
    config: LirpaConfig | None = None,
    workers: int | None = None,
    grow_eps: float | None = None,
    max_eps: float = 1.0,
) -> list[SearchResult]:
    """Find up to ``k`` counterexamples around each of many inputs.

    "lirpa" searches all inputs together (the subdomains of every input share each
    batched bound and PGD call); ``timeout`` limits the whole call, during which all
    inputs progress. "marabou" runs the paper's loop per input in a pool of ``workers``
    processes; there ``timeout`` is per input.

    Args:
        model: The network (see ``find_counterexamples``).
        xs: Inputs in [0, 1].
        eps: Radius, a float or one value per input.
        k: New counterexamples wanted, for every input or one value per input.
        excludes: Per input, the earlier counterexamples, ``[n_b, *input_shape]``.
        backend: "lirpa" or "marabou".
        target: "runner_up" or "any".
        separation: "every_coord" or "any_coord".
        delta: Exclusion distance.
        margin: Required margin.
        timeout: Seconds (see above); ``None`` for no limit.
        seed: Seed of the random PGD starts (lirpa).
        config: ``LirpaConfig`` knobs (lirpa).
        workers: Marabou processes (``None``: ``min(B, cpu count)``; 1: in process).
        grow_eps: If set, an input whose box is proved to hold no (further)
            counterexample goes on with the radius grown by ``grow_eps``, as long as it
            stays ``<= max_eps`` (the paper's FV-Adv schedule, per input: an input never
            waits for the others). ``SearchResult.eps`` is the last radius searched.
        max_eps: See ``grow_eps``.

    Returns:
        One ``SearchResult`` per input.

    Raises:
        ValueError: Bad arguments, shapes or layers.

    Shapes:
        xs: ``[B, *input_shape]``; eps: scalar or ``[B]``;
        excludes[b]: ``[n_b, *input_shape]``.
    """
    eps_t, ks = _validate(
        model, xs, eps, k, excludes, backend, target, separation, delta, margin, timeout
    )
    if grow_eps is not None and not grow_eps > 0:
        raise ValueError(f"grow_eps must be > 0 or None, got {grow_eps}")
    device = model_device(model)
    xs = xs.to(device=device, dtype=model_dtype(model))
    if excludes is None:
        excl = [xs.new_empty(0, *xs.shape[1:]) for _ in range(xs.shape[0])]
    else:
        excl = [e.to(device).reshape(-1, *xs.shape[1:]) for e in excludes]
    if backend == "marabou":
        from dalv.verify.marabou import marabou_search_batch  # noqa: PLC0415 - optional

        return marabou_search_batch(
            model,
            xs,
            eps_t,
            ks,
            excl,
            target=target,
            separation=separation,
            delta=delta,
            margin=margin,
            timeout=timeout,
            workers=workers,
            grow_eps=grow_eps,
            max_eps=max_eps,
        )
    search = BranchAndBound(
        model,
        xs,
        eps_t,
        ks,
        excl,
        target=target,
        separation=separation,
        delta=delta,
        margin=margin,
        timeout=timeout,
        seed=seed,
        config=config or LirpaConfig(),
        grow_eps=grow_eps,
        max_eps=max_eps,
    )
    return search.run()


def fv_adv_counterexamples(
    model: nn.Module,
    xs: Tensor,
    eps0: float | Tensor,
    k: int,
    *,
    seeds: Sequence[Tensor] | None = None,
    step: float = 0.05,
    max_eps: float = 1.0,
    backend: Backend = "lirpa",
    timeout: float | None = None,
    **kwargs: object,
) -> list[SearchResult]:
    """The paper's FV-Adv search (spec 6.4) around many inputs at once.

    The radius starts at ``eps0 + step``. While an input has fewer than ``k`` examples
    (its seeds count) and its current box is proved to hold no more, the radius grows by
    ``step``, until it would exceed ``max_eps``. A search that stops without a proof
    (timeout or budget) ends that input, as a Marabou TIMEOUT does in the paper. Each
    input follows its own schedule (``grow_eps`` of ``find_counterexamples_batch``).

    Args:
        model: The network.
        xs: Queried inputs ``[B, *input_shape]``.
        eps0: Start radius per input (the paper: the FGSM score, or 0.01).
        k: Examples per input, seeds included (the paper's k).
        seeds: Per input, the seed set ``E`` (e.g. the slot-0 FGSM example): excluded
            and counted, not returned.
        step: Radius increment.
        max_eps: Largest radius searched.
        backend: "lirpa" or "marabou".
        timeout: Seconds for the whole search (lirpa), or per input (marabou).
        **kwargs: Passed on to ``find_counterexamples_batch`` (target, separation, ...).

    Returns:
        One ``SearchResult`` per input holding the NEW counterexamples (at most ``k``
        minus the number of seeds); ``eps`` is the last radius searched.
    """
    b = xs.shape[0]
    device = model_device(model)
    empty = xs.new_empty(0, *xs.shape[1:]).to(device)
    excl = [
        empty if s is None else s.to(device).reshape(-1, *xs.shape[1:])
        for s in (seeds or [None] * b)
    ]
    eps = torch.as_tensor(eps0, dtype=torch.float64, device=device).reshape(-1)
    eps = eps.expand(b).clone() + step
    need = [k - len(e) for e in excl]
    todo = [i for i in range(b) if need[i] > 0 and float(eps[i]) <= max_eps + 1e-12]
    out: list[SearchResult] = [
        SearchResult("unknown", empty, SearchStats(), False, -1, -1, float(eps[i]))
        for i in range(b)
    ]
    if todo:
        results = find_counterexamples_batch(
            model,
            xs[todo],
            eps[todo],
            [need[i] for i in todo],
            excludes=[excl[i] for i in todo],
            backend=backend,
            timeout=timeout,
            grow_eps=step,
            max_eps=max_eps,
            **kwargs,  # type: ignore[arg-type]
        )
        for i, res in zip(todo, results):
            out[i] = res
    return out


# ------------------------------------------------------------------------------------
# argument checks
# ------------------------------------------------------------------------------------


def _stack_exclude(exclude: Sequence[Tensor] | Tensor, x1: Tensor) -> Tensor:
    """Excluded points for one input as ``[n, *input_shape]``."""
    if isinstance(exclude, Tensor):
        if exclude.numel() % x1.numel():
            raise ValueError(
                f"exclude has {exclude.numel()} elements, not a multiple of the input "
                f"size {x1.numel()}"
            )
        return exclude.to(x1.device).reshape(-1, *x1.shape)
    items = list(exclude)
    for e in items:
        if e.numel() != x1.numel():
            raise ValueError(
                f"each excluded point must have the input's {x1.numel()} elements, "
                f"got shape {tuple(e.shape)}"
            )
    if not items:
        return x1.new_empty(0, *x1.shape)
    return torch.stack([e.to(x1.device).reshape(x1.shape) for e in items])


def _k_list(k: int | Sequence[int], n: int) -> list[int]:
    """``k`` as one int >= 1 per input."""
    bad = ValueError(f"k must be an int >= 1, or one per input ({n}), got {k!r}")
    try:
        ks = [k] * n if isinstance(k, numbers.Integral) else list(k)  # type: ignore
    except TypeError:
        raise bad from None
    if len(ks) != n or any(
        isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in ks
    ):
        raise bad
    return [int(v) for v in ks]


def _validate(
    model: nn.Module,
    xs: Tensor,
    eps: float | Tensor,
    k: int | Sequence[int],
    excludes: Sequence[Tensor] | None,
    backend: str,
    target: str,
    separation: str,
    delta: float,
    margin: float,
    timeout: float | None,
) -> tuple[Tensor, Tensor]:
    """Check every argument; return ``eps`` (float64, ``[B]``) and ``k`` per input."""
    if backend not in ("lirpa", "marabou"):
        raise ValueError(f"backend must be 'lirpa' or 'marabou', got {backend!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if separation not in SEPARATIONS:
        raise ValueError(f"separation must be one of {SEPARATIONS}, got {separation!r}")
    if not delta > 0 or not margin >= 0:
        raise ValueError(f"delta must be > 0 and margin >= 0, got {delta} and {margin}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 or None, got {timeout}")
    check_model(model, allow_conv=backend == "lirpa", who=f"the {backend} backend")
    if backend == "marabou":
        affine_relu_layers(model, who="the marabou backend")
    check_batch(model, xs)
    ks = _k_list(k, xs.shape[0])
    if not bool(torch.isfinite(xs).all()) or float(xs.min()) < 0 or float(xs.max()) > 1:
        raise ValueError("inputs must be finite and lie in [0, 1]")
    e = torch.as_tensor(eps, dtype=torch.float64).reshape(-1)
    if e.numel() == 1:
        e = e.expand(xs.shape[0])
    if e.numel() != xs.shape[0]:
        raise ValueError(
            f"eps must be a float or one value per input ({xs.shape[0]}), "
            f"got {e.numel()}"
        )
    if not bool(torch.isfinite(e).all()) or bool((e <= 0).any()):
        raise ValueError(f"eps must be finite and > 0, got {e.tolist()[:8]}")
    if excludes is not None:
        if len(excludes) != xs.shape[0]:
            raise ValueError(
                f"excludes must hold one tensor per input ({xs.shape[0]}), "
                f"got {len(excludes)}"
            )
        for i, ex in enumerate(excludes):
            if ex.numel() % xs[0].numel():
                raise ValueError(
                    f"excludes[{i}] has shape {tuple(ex.shape)}, "
                    f"not [n, *{tuple(xs.shape[1:])}]"
                )
    with torch.no_grad():
        n_classes = model(xs[:1].to(model_device(model), model_dtype(model))).shape[-1]
    if n_classes < 2:
        raise ValueError("the network must have at least 2 outputs")
    return e.to(model_device(model)), torch.tensor(ks)
