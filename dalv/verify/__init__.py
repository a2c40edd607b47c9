"""Formal verification for dalv: bounds, certified radii and counterexample search.

Owns: the verification layer (see the submodules); may import: torch, numpy,
``dalv.verify.*``; auto_LiRPA and maraboupy only inside the functions that need them.

Submodules, in reading order:

* ``compat``   - shims that let auto_LiRPA 0.3 run on torch 2.x / numpy 2.x.
* ``network``  - which layers are supported; float64 forward pass; input shapes.
* ``bounds``   - IBP / CROWN / alpha-CROWN bounds, margins, ``certified_radius``.
* ``property`` - the paper's counterexample property, its exact re-check and projection.
* ``results``  - ``SearchResult`` and ``SearchStats``.
* ``search``   - ``find_counterexamples`` and friends: both backends' entry points.
* ``bab``      - the "lirpa" backend: batched branch and bound over input boxes.
* ``marabou``  - the "marabou" backend: the input query and the process-pool driver.

Example:
    >>> from dalv.verify import find_counterexamples
    >>> res = find_counterexamples(model, x, 0.1, 9, exclude=[x_fgsm])  # doctest: +SKIP
    >>> res.status, res.counterexamples.shape                          # doctest: +SKIP
"""

# The function ``bounds`` is not re-exported here: it would hide the submodule of the
# same name. Use ``from dalv.verify.bounds import bounds``.
from dalv.verify.bounds import (
    certified_radius,
    crown_bounds,
    input_box,
    interval_bounds,
    margin_lower_bounds,
    spec_matrix,
)
from dalv.verify.compat import import_auto_lirpa
from dalv.verify.property import recheck, separated, winner_runner_up
from dalv.verify.results import SearchResult, SearchStats
from dalv.verify.search import (
    LirpaConfig,
    find_counterexamples,
    find_counterexamples_batch,
    fv_adv_counterexamples,
)

__all__ = [
    "certified_radius",
    "crown_bounds",
    "input_box",
    "interval_bounds",
    "margin_lower_bounds",
    "spec_matrix",
    "import_auto_lirpa",
    "recheck",
    "separated",
    "winner_runner_up",
    "LirpaConfig",
    "SearchResult",
    "SearchStats",
    "find_counterexamples",
    "find_counterexamples_batch",
    "fv_adv_counterexamples",
]
