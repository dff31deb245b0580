"""jdl.search: many training runs as one compiled program, across devices.

Grids of hyper-parameters crossed with seeds (`population`, `Search`), the population axis
over devices (`member_mesh`, `initialize_distributed`), reports (`jdl.search.report`:
tables, CSV/JSON, figures), adaptive learning-rate re-estimation (`make_adaptive`), successive
halving and population-based training in fixed-shape populations.
"""

from jdl.search.adaptive import AdaptiveHistory, make_adaptive
from jdl.search.grid import HParams, Population, log_grid, population, product, zipped
from jdl.search.halving import HalvingResult, rank_scores, successive_halving
from jdl.search.pbt import PBTResult, population_based_training
from jdl.search.results import SearchResult
from jdl.search.search import Search, SearchState
from jdl.search.sharding import initialize_distributed, member_mesh, use_cpu_cores

__all__ = [
    "AdaptiveHistory",
    "HParams",
    "HalvingResult",
    "PBTResult",
    "Population",
    "Search",
    "SearchResult",
    "SearchState",
    "initialize_distributed",
    "log_grid",
    "make_adaptive",
    "member_mesh",
    "population",
    "population_based_training",
    "product",
    "rank_scores",
    "successive_halving",
    "use_cpu_cores",
    "zipped",
]
