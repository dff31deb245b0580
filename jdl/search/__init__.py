"""jdl.search: many training runs as one compiled program, across devices.

Grids of hyper-parameters crossed with seeds (`population`, `Search`), the population axis
over devices (`member_mesh`, `initialize_distributed`), reports (`jdl.search.report`:
tables, CSV/JSON, figures), and the schedulers on the run driver (`jdl.run.drive`): successive
halving (`Halving`) and population-based training (`PBT`) in fixed-shape populations, and the
adaptive learning-rate re-estimation (`make_adaptive`, `run_adaptive`).
"""

from jdl.search.adaptive import (
    AdaptiveHistory,
    AdaptiveResult,
    AdaptiveState,
    make_adaptive,
    run_adaptive,
)
from jdl.search.distributed import initialize_distributed
from jdl.search.grid import HParams, Population, log_grid, population, product, zipped
from jdl.search.halving import Halving, HalvingResult, rank_scores, successive_halving
from jdl.search.pbt import PBT, PBTResult, population_based_training
from jdl.search.results import Member, SearchResult
from jdl.search.search import Search, SearchState
from jdl.search.sharding import member_mesh, use_cpu_cores

__all__ = [
    "PBT",
    "AdaptiveHistory",
    "AdaptiveResult",
    "AdaptiveState",
    "HParams",
    "Halving",
    "HalvingResult",
    "Member",
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
    "run_adaptive",
    "successive_halving",
    "use_cpu_cores",
    "zipped",
]
