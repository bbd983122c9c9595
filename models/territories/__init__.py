"""Territory design: balanced, contiguous, compact alignments.

The public API:

- :func:`build_problem` validates a design's arguments once into a :class:`Problem`;
- :func:`design_territories` designs (fresh, or a rebalance of a current alignment) and
  :class:`TerritoryDesigner` is the same as a scikit-learn-style estimator;
- :func:`evaluate_alignment` reports any alignment, with the rules it breaks as
  :class:`Violation` records, put into words with the caller's territory names;
- :func:`rebalance_lower_bound` bounds the disruption of any balanced rebalance.

The algorithm and its references are in :mod:`territory.models.territories.design`;
the modules beside it are the engine's phases (``start``, ``search``, ``chains``,
``flow``, ``lns``, ``shape``, ``bisect``) and the one objective they share
(``objective``).
"""

from territory.models.territories.bounds import rebalance_lower_bound
from territory.models.territories.design import DesignResult, design_territories, solve_problem
from territory.models.territories.estimator import TerritoryDesigner
from territory.models.territories.geometry import territory_elongation
from territory.models.territories.problem import (
    Problem,
    Settings,
    build_problem,
    default_territory_names,
)
from territory.models.territories.report import TerritoryReport, evaluate_alignment
from territory.models.territories.violations import Violation, pct_text

__all__ = [
    "DesignResult",
    "Problem",
    "Settings",
    "TerritoryDesigner",
    "TerritoryReport",
    "Violation",
    "build_problem",
    "default_territory_names",
    "design_territories",
    "evaluate_alignment",
    "pct_text",
    "rebalance_lower_bound",
    "solve_problem",
    "territory_elongation",
]
