"""The ``lirpa`` backend: batched branch and bound over input boxes.

Owns: nothing of its own (the package's modules own the parts); may import:
``dalv.verify.bab.*``.

Modules, in reading order:

* ``backend``   - ``LirpaVerifier``: the knobs and the entry point.
* ``driver``    - ``BranchAndBound``: rounds, budgets, radius growth, results.
* ``state``     - per-input facts the parts share: boxes, exclusions, progress, clock.
* ``pool``      - subdomain storage and the choice of the next batch.
* ``bounding``  - CROWN lower bounds, beta multipliers, auto_LiRPA for Conv2d.
* ``branching`` - exclusion tightening, ReLU splits, input splits, ball faces.
* ``falsify``   - candidate witnesses: the bound's corner and PGD.
* ``accept``    - projection, repair, exact re-check, witness bookkeeping.
"""

from dalv.verify.bab.backend import LirpaVerifier
from dalv.verify.bab.driver import BranchAndBound

__all__ = ["LirpaVerifier", "BranchAndBound"]
