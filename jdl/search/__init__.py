"""jdl.search: many training runs as one compiled program, across devices.

Grids of hyper-parameters crossed with seeds (`population`, `Search`), the population axis
over devices (`member_mesh`, `initialize_distributed`), reports (`jdl.search.report`:
tables, CSV/JSON, figures), random search over a declared space (`Sampler`, `random_search`),
and the schedulers on the run driver (`jdl.run.drive`): successive halving (`Halving`),
asynchronous successive halving with refills (`ASHA`) and population-based training (`PBT`) in
fixed-shape populations, and the adaptive learning-rate re-estimation (`make_adaptive`,
`run_adaptive`); the learning-rate range test over seeds (`lr_range_test`); k-fold
cross-validation as one more axis of a population (`kfold`, `fold_summary`).
"""

from jdl.search.adaptive import (
    AdaptiveHistory,
    AdaptiveResult,
    AdaptiveState,
    make_adaptive,
    run_adaptive,
)
from jdl.search.asha import ASHA, ASHAResult, asha
from jdl.search.distributed import initialize_distributed
from jdl.search.folds import Folds, fold_summary, kfold
from jdl.search.grid import HParams, Population, log_grid, population, product, zipped
from jdl.search.halving import Halving, HalvingResult, rank_scores, successive_halving
from jdl.search.lr_range import RangeTestResult, exponential_rate, lr_range_test, suggest
from jdl.search.pbt import PBT, PBTResult, population_based_training
from jdl.search.results import BudgetCurve, Member, SearchResult, budget_curve
from jdl.search.samplers import (
    Distribution,
    Sampler,
    categorical,
    integer,
    log_uniform,
    random_search,
    uniform,
)
from jdl.search.search import Search, SearchState
from jdl.search.sharding import member_mesh, use_cpu_cores

__all__ = [
    "ASHA",
    "PBT",
    "ASHAResult",
    "AdaptiveHistory",
    "AdaptiveResult",
    "AdaptiveState",
    "BudgetCurve",
    "Distribution",
    "Folds",
    "HParams",
    "Halving",
    "HalvingResult",
    "Member",
    "PBTResult",
    "Population",
    "RangeTestResult",
    "Sampler",
    "Search",
    "SearchResult",
    "SearchState",
    "asha",
    "budget_curve",
    "categorical",
    "exponential_rate",
    "fold_summary",
    "initialize_distributed",
    "integer",
    "kfold",
    "log_grid",
    "log_uniform",
    "lr_range_test",
    "make_adaptive",
    "member_mesh",
    "population",
    "population_based_training",
    "product",
    "random_search",
    "rank_scores",
    "run_adaptive",
    "successive_halving",
    "suggest",
    "uniform",
    "use_cpu_cores",
    "zipped",
]
