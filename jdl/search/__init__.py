"""jdl.search: many training runs as one compiled program, across devices.

Grids of hyper-parameters crossed with seeds (`population`, `Search`), the population axis
over devices (`member_mesh`, `initialize_distributed`), reports (tables, CSV/JSON, figures),
adaptive learning-rate re-estimation, successive halving and population-based training.
"""

from jdl.search.grid import (
    HParams,
    Population,
    Search,
    SearchResult,
    SearchState,
    log_grid,
    population,
    product,
    zipped,
)
from jdl.search.sharding import initialize_distributed, member_mesh

__all__ = [
    "HParams",
    "Population",
    "Search",
    "SearchResult",
    "SearchState",
    "initialize_distributed",
    "log_grid",
    "member_mesh",
    "population",
    "product",
    "zipped",
]
