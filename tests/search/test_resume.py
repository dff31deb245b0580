"""A search, successive halving, PBT and ASHA killed with SIGKILL mid-run and resumed from their
checkpoints end with the uninterrupted run's results, bit for bit (CPU); a checkpoint of
another configuration is refused.

The killed runs are subprocesses (this file run as a script) that send themselves SIGKILL when
a chosen chunk starts: the checkpoints of the chunks before it are on disk, nothing else is
cleaned up.
"""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

if __package__:
    from .conftest import CHUNK, data_sets, make_search
else:  # run as the killed subprocess
    from conftest import CHUNK, data_sets, make_search

from jdl.search import (
    Sampler,
    asha,
    log_uniform,
    population,
    population_based_training,
    successive_halving,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KINDS = {"asha": 4, "grid": 3, "halving": 2, "pbt": 3}  # the chunk whose start kills the subprocess


def run(kind, search, checkpoint_dir=None):
    """The run of ``kind``: 4 learning rates (one diverges) x 2 seeds, 4 or 5 chunks."""
    train, val, test = data_sets()
    pop = population({"learning_rate": [0.02, 0.1, 0.4, 50.0]}, seeds=[0, 1])
    common = {"test": test, "progress": False, "checkpoint_dir": checkpoint_dir}
    if kind == "grid":
        return search.run(pop, train, val, steps=5 * CHUNK, **common)
    if kind == "halving":
        return successive_halving(search, pop, train, val, rung_steps=2 * CHUNK, **common)
    if kind == "asha":  # 4 slots x 2 seeds for 6 chunks: refills before and after the kill
        sampler = Sampler({"learning_rate": log_uniform(0.01, 50.0)}, seed=2)
        budget, slots = 2 * 4 * 6 * CHUNK, 4
        return asha(
            search,
            sampler,
            train,
            val,
            num_slots=slots,
            budget=budget,
            min_steps=CHUNK,
            eta=2,
            seeds=[0, 1],
            **common,
        )
    return population_based_training(
        search,
        pop,
        train,
        val,
        steps=5 * CHUNK,
        ready_steps=CHUNK,
        key=jax.random.key(4),
        fraction=0.25,
        **common,
    )


def leaves(out):
    """Every array of a result (a `SearchResult`, or a scheduler's result around one)."""
    result = getattr(out, "result", out)
    arrays = [
        result.steps,
        result.best_step,
        result.best_val_loss,
        result.diverged,
        result.final,
        result.best,
        result.history,
        result.params,
        result.best_params,
    ]
    for name in ("lineage", "hparams", "ranking", "slot_trials", "member_steps"):
        if hasattr(out, name):
            arrays.append(getattr(out, name))
    return jax.tree.leaves(arrays)


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """The checkpoint folders of the three killed runs, run side by side."""
    root = tmp_path_factory.mktemp("killed")
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
    procs = {
        kind: subprocess.Popen(
            [sys.executable, __file__, kind, str(root / kind)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for kind in KINDS
    }
    try:
        for proc in procs.values():
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == -signal.SIGKILL, err[-2000:]
    finally:
        for proc in procs.values():
            proc.kill()
    return root


@pytest.fixture(scope="module")
def search():
    """One search for the three kinds: the same programs (they differ by the scheduler)."""
    return make_search()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_killed_run_resumes_to_the_uninterrupted_result(kind, killed, search):
    folder = killed / kind
    reference = run(kind, search)
    resumed = run(kind, search, checkpoint_dir=folder)
    assert not resumed.interrupted if kind == "grid" else not resumed.result.interrupted
    for a, b in zip(leaves(resumed), leaves(reference), strict=True):
        np.testing.assert_array_equal(a, b)
    if kind == "asha":  # the same trials, refilled after the kill as before
        assert resumed.trials == reference.trials and len(reference.trials) > 4
        assert resumed.rung_scores == reference.rung_scores
    if kind == "pbt":  # the exploit events after the kill happened too
        assert resumed.event_steps == reference.event_steps == [CHUNK * e for e in (1, 2, 3, 4)]
    # Another configuration of the same run is refused, before any training.
    train, val, _ = data_sets()
    other = population({"learning_rate": [0.02, 0.1, 0.4, 0.5]}, seeds=[0, 1])
    steps = 4 * CHUNK if kind == "halving" else 5 * CHUNK
    if kind == "grid":
        with pytest.raises(ValueError, match=r"another configuration \(differs in: hparams\)"):
            search.run(other, train, val, steps=steps, progress=False, checkpoint_dir=folder)


if __name__ == "__main__":
    kind, folder = sys.argv[1], sys.argv[2]
    search = make_search()
    original, calls = search.advance, []

    def advance(*args, **kwargs):
        calls.append(1)
        if len(calls) == KINDS[kind]:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    search.advance = advance
    run(kind, search, checkpoint_dir=folder)
