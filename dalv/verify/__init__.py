"""Formal verification for dalv: bounds, certified radii and counterexample search.

Owns: the verification layer's public names (see the submodules); may import: torch,
numpy, the standard library, ``dalv.models``, ``dalv.verify.*``; auto_LiRPA and
maraboupy only inside the functions that need them.

Submodules, in reading order:

* ``compat``   - shims that let auto_LiRPA 0.3 run on torch 2.x / numpy 2.x.
* ``network``  - which layers are supported; float64 forward pass; input shapes.
* ``box``      - the clipped box, radius checks, directed rounding of its corners.
* ``property`` - ``Property``: the paper's counterexample property and its exact test.
* ``geometry`` - the box minus the exclusions: the rules that decide a box, the
  projections of points (numpy and torch forms, tested against each other).
* ``descent``  - ``margin_pgd``: the one projected descent on the property margin.
* ``crown``    - pure-torch interval and CROWN bounds.
* ``lirpa``    - auto_LiRPA bounds (IBP / CROWN / alpha-CROWN), ``certified_radius``.
* ``results``  - ``SearchResult`` and ``SearchStats``.
* ``budget``   - ``Budget`` (work; seconds as a safety net), ``Schedule`` (box growth).
* ``query``    - ``Query``: the question of one search, checked once, read by every
  backend.
* ``verifier`` - the ``Verifier`` interface (``find``, ``find_batch``, ``search``).
* ``bab``      - ``LirpaVerifier``: batched branch and bound over input boxes.
* ``task``     - ``SolverTask``: one input's question to an exact solver (numpy).
* ``milp_encode`` - the MILP backend's numpy encodings: the paper's query as a big-M
  MILP, one activation region's LP.
* ``milp_solve`` - the solvers behind them (HiGHS via highspy or SciPy; Gurobi when
  licensed) and their answers.
* ``milp_search`` - one input's loop: cheap proofs, region LPs, then the MILP.
* ``milp``     - ``MilpVerifier``: the paper's MILP mode, the default backend (tasks
  from the torch side, an optional process pool).
* ``cores``    - idle cores a grid lends to its running cells' MILP searches (speed
  only: no answer depends on them).
* ``marabou``  - ``MarabouVerifier``: the complete solver, in a process pool
  (``marabou_worker``: the loop a worker runs; ``marabou_query``: one call's query).

``VERIFIERS`` names the backends (``"milp"``, ``"lirpa"``, ``"marabou"``): the one
place a backend is chosen by name (the command line and the chapters use it).

Example:
    >>> from dalv.verify import LirpaVerifier, bounds
    >>> lo, hi = bounds(model, x, 0.05)                                # doctest: +SKIP
    >>> res = LirpaVerifier().find(model, x, 0.1, 9, exclude=x_fgsm)  # doctest: +SKIP
    >>> res.status, res.counterexamples.shape                         # doctest: +SKIP
"""

from dalv.verify.bab import LirpaVerifier
from dalv.verify.box import input_box
from dalv.verify.budget import Budget, Schedule
from dalv.verify.compat import import_auto_lirpa
from dalv.verify.crown import crown_bounds, interval_bounds
from dalv.verify.lirpa import bounds, certified_radius, margin_lower_bounds
from dalv.verify.marabou import MarabouVerifier
from dalv.verify.milp import MilpVerifier
from dalv.verify.property import (
    Property,
    recheck,
    separated,
    spec_matrix,
    winner_runner_up,
)
from dalv.verify.query import Query
from dalv.verify.results import SearchResult, SearchStats
from dalv.verify.verifier import Verifier

VERIFIERS: dict[str, type[Verifier]] = {
    "milp": MilpVerifier,
    "lirpa": LirpaVerifier,
    "marabou": MarabouVerifier,
}
"""The verifier backends by name (the command line's ``--verifier``)."""

__all__ = [
    "bounds",
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
    "SearchResult",
    "SearchStats",
    "Budget",
    "Query",
    "Property",
    "Schedule",
    "Verifier",
    "LirpaVerifier",
    "MarabouVerifier",
    "MilpVerifier",
    "VERIFIERS",
]
