"""``Query``: the question every backend reads, built and checked once."""

from __future__ import annotations

import inspect
import re

import pytest
import torch
from torch import nn

from dalv.verify import (
    VERIFIERS,
    Budget,
    LirpaVerifier,
    MilpVerifier,
    Property,
    Query,
    Schedule,
)


def net_and_inputs(seed: int = 0, n: int = 4):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    xs = torch.rand(n, 6, generator=torch.Generator().manual_seed(seed))
    return net, xs


def test_loose_arguments_are_normalised_once():
    net, xs = net_and_inputs()
    q = Query(net, xs, 0.1, 2)
    assert q.xs.dtype == torch.float64 and torch.equal(q.xs, xs.double())
    assert q.eps.tolist() == [0.1] * 4 and q.eps.dtype == torch.float64
    assert q.k == (2, 2, 2, 2)
    assert [tuple(e.shape) for e in q.excludes] == [(0, 6)] * 4
    assert len(q) == 4 and q.input_shape == (6,)
    with torch.no_grad():
        top2 = net(xs).topk(2, dim=1).indices
    assert q.c1.tolist() == top2[:, 0].tolist()
    assert q.c2.tolist() == top2[:, 1].tolist()
    assert q.n_classes == 3
    C = q.spec()
    assert C.shape == (4, 1, 3) and C.dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be an int >= 1"),
        ({"k": [1, 2]}, "one per input"),
        ({"eps": -0.1}, "eps must be finite and > 0"),
        ({"eps": torch.tensor([0.1, 0.2])}, "one value per input"),
        ({"excludes": [torch.zeros(0, 6)]}, "one tensor per input"),
        ({"excludes": [torch.zeros(1, 5)] * 4}, "not [n, *(6,)]"),
        ({"excludes": [torch.full((1, 6), float("nan"))] * 4}, "not finite"),
        ({"prop": "paper"}, "prop must be a Property"),
        ({"budget": 100}, "budget must be a Budget"),
        ({"schedule": 0.05}, "schedule must be a Schedule"),
        ({"seed": 1.5}, "seed must be an int"),
        ({"xs": torch.full((4, 6), 1.5)}, "lie in [0, 1]"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    net, xs = net_and_inputs()
    args = {"xs": xs, "eps": 0.1, "k": 1} | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        Query(net, **args)


@pytest.mark.parametrize("backend", [MilpVerifier, LirpaVerifier])
def test_search_answers_what_find_batch_answers(backend):
    net, xs = net_and_inputs(1)
    prop, budget = Property(target="any"), Budget(work=400)
    q = Query(net, xs, 0.2, 2, None, prop, budget, Schedule(0.05, 0.3), seed=3)
    a = backend().search(q)
    b = backend().find_batch(
        net, xs, 0.2, 2, None, prop, budget, schedule=Schedule(0.05, 0.3), seed=3
    )
    assert [r.status for r in a] == [r.status for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert torch.equal(ra.counterexamples, rb.counterexamples)
        assert ra.eps == rb.eps


@pytest.mark.parametrize("backend", [MilpVerifier, LirpaVerifier])
def test_each_input_of_a_query_is_its_own_question(backend):
    """``select`` keeps an input's question whole: its answer alone is its row."""
    net, xs = net_and_inputs(2, n=5)
    q = Query(net, xs, 0.15, 3, None, budget=Budget(work=300), schedule=Schedule())
    together = backend().search(q)
    for b in range(len(q)):
        (alone,) = backend().search(q.select([b]))
        assert alone.status == together[b].status
        assert torch.equal(alone.counterexamples, together[b].counterexamples)


def test_every_backend_reads_only_the_query():
    """One home: each backend's search takes the query and nothing else."""
    for cls in VERIFIERS.values():
        params = list(inspect.signature(cls._search).parameters)
        assert params == ["self", "query"], (cls.__name__, params)


def test_search_refuses_what_the_backend_cannot_run():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    q = Query(conv, torch.rand(1, 1, 4, 4), 0.1, 1)
    with pytest.raises(ValueError, match="milp"):
        MilpVerifier().search(q)
    with pytest.raises(ValueError, match="takes a Query"):
        MilpVerifier().search((conv, q.xs))
