"""The ``lirpa`` backend: its knobs and its entry point.

Owns: ``LirpaVerifier``; may import: the standard library, ``dalv.verify.{query,
results, verifier}``, ``dalv.verify.bab.driver``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dalv.verify.bab.driver import BranchAndBound
from dalv.verify.query import Query
from dalv.verify.results import SearchResult
from dalv.verify.verifier import Verifier, WitnessSource

__all__ = ["LirpaVerifier"]


@dataclass(frozen=True)
class LirpaVerifier(Verifier):
    """Batched branch and bound over input boxes (incomplete on deep networks).

    CROWN bounds prune, a PGD falsifier finds witnesses, all inputs' subdomains share
    each batched call, on the model's device (a GPU when the model is on one). Budget
    work is counted in subdomains bounded per input, over all its radii, exactly (an
    input never bounds more than ``Budget.work``; ``Budget(work=None)``: no limit, only
    the memory cap). Each input's search is independent of its batch-mates (its own
    quota per round, random starts and budget), so ``find`` on one input returns its
    row of ``find_batch``. The fields are the search's knobs; the defaults suit MNIST
    MLPs on a CPU.

    Args:
        relu_split: split first-layer ReLUs before input coordinates (``None``: when
            the input has more coordinates than the first hidden layer has neurons).
        beta_steps: Adam steps on the Lagrange multipliers of ReLU phase splits.
        restarts: random PGD starts per input at the root (``None``: ``max(8, 2 k)``,
            with the input's own ``k``).
        pgd_steps: PGD steps at the root.
        domain_pgd_steps: PGD steps inside each subdomain after the root.
        repair_steps: PGD steps that repair a candidate after projection.
        batch_domains: subdomains bounded per round, per input.
        max_live_floats: cap on stored subdomain corners, in floats, over the whole
            batch (a memory budget, the one limit shared by the inputs). When
            exceeded, the input with the most subdomains stops ("unknown").
    """

    name: ClassVar[str] = "lirpa"
    complete: ClassVar[bool] = False
    witness_source: ClassVar[WitnessSource] = "pgd"  # its witnesses come from PGD
    supports_conv: ClassVar[bool] = True
    relu_split: bool | None = None
    beta_steps: int = 20
    restarts: int | None = None
    pgd_steps: int = 20
    domain_pgd_steps: int = 5
    repair_steps: int = 3
    batch_domains: int = 1024
    max_live_floats: int = 2**25

    def _search(self, query: Query) -> list[SearchResult]:
        return BranchAndBound(self, query).run()
