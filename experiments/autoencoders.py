"""Autoencoders on digits: undercomplete, deep, sparse, denoising and contractive, vs PCA.

    python -m experiments.autoencoders [--seeds 3] [--steps 8000] [--batch-size 64]
        [--learning-rate 0.01] [--patience 2000] [--eval-every 100]
        [--variants ae,deep,...] [--out runs/autoencoders]

Trains each variant with `jdl.run.fit` (Adam, early stopping on the validation
reconstruction error) for several seeds and writes into ``--out``:

- ``results.json``: per variant, the test reconstruction MSE per pixel on clean input and on
  corrupted input (Gaussian sigma = 0.2 and 25% masking, one fixed corrupted test set each),
  for the denoisers next to the plain autoencoder of the same shape on the same corrupted
  input; the mean code activation and the fraction of near-zero code values; the linear-probe
  test accuracy on the codes (a softmax regression trained on the training codes); the step of
  the best validation error; all as mean and standard deviation over seeds. The PCA baseline
  with the same code size (16) is in the table, and each 16-unit code says whether it beats it.
- ``reconstructions.png``: test digits, their corrupted versions and each variant's
  reconstruction.
- ``codes.png``: the test codes of each variant projected on their first two principal
  components, coloured by digit.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments import cli, estimates
from experiments.cli import Parser

# The names of VARIANTS (below, after JAX), here so that --help needs no JAX; a test keeps them
# equal. A denoiser is compared with PLAIN, its plain counterpart of the same shape.
VARIANT_NAMES = (
    "ae",
    "ae_tied",
    "deep",
    "overcomplete",
    "sparse_l1",
    "sparse_kl",
    "denoising_gaussian",
    "denoising_masking",
    "contractive",
)
DENOISERS = ("denoising_gaussian", "denoising_masking")
PLAIN = "overcomplete"  # the denoisers' plain counterpart: same shape, trained on clean input


@dataclasses.dataclass(frozen=True)
class Config:
    """Training of every variant: seeds, steps, optimizer, early stopping, output."""

    seeds: int = 3
    steps: int = 8000
    batch_size: int = 64
    learning_rate: float = 1e-2
    patience: int = 2000  # in optimizer steps
    eval_every: int = 100
    variants: tuple[str, ...] = VARIANT_NAMES
    checkpoint_dir: str | None = None  # None: no checkpoints
    out: str = "runs/autoencoders"
    overwrite: bool = False
    format: str = "png"  # of the figures


def parse_args(argv: list[str] | None = None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    d = Config()
    p = Parser(prog="python -m experiments.autoencoders", doc=__doc__)
    p.add_argument("--seeds", type=int, default=d.seeds, help="seeds per variant")
    p.add_argument("--steps", type=int, default=d.steps, help="most optimizer steps per run")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="Adam's")
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping, in steps")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between evaluations")
    p.add_argument(
        "--variants", default=",".join(d.variants), help=f"subset of {', '.join(VARIANT_NAMES)}"
    )
    p.add_checkpoint_argument()
    p.add_allow_long_argument()
    p.add_output_arguments(d.out)
    a = p.parse_args(argv)
    p.require_positive_ints(a, "seeds", "steps", "batch_size", "patience", "eval_every")
    p.require_positive_numbers(a, "learning_rate")
    p.require_batch_size(a.batch_size, cli.DIGITS_TRAIN_EXAMPLES)
    variants = tuple(v for v in a.variants.split(",") if v)
    unknown = [v for v in variants if v not in VARIANT_NAMES]
    if unknown or not variants:
        p.error(f"unknown variants {unknown}; choose among {','.join(VARIANT_NAMES)}")
    if any(v in DENOISERS for v in variants) and PLAIN not in variants:
        variants = (*variants, PLAIN)  # a denoiser is compared with its plain counterpart
    a.variants = variants
    smallest = estimates.dense((64, 16, 64))  # the smallest shape among the variants (ae)
    run = estimates.training(1, a.steps, smallest, a.batch_size, eval_every=a.eval_every)
    cost = run.repeated(len(variants) * a.seeds)  # one fit per variant and seed, in turn
    p.require_feasible(a, cost, "variants", "seeds", "steps", "batch_size", "eval_every")
    p.require_output(a)
    return Config(**{f.name: getattr(a, f.name) for f in dataclasses.fields(Config)})


if __name__ == "__main__":
    cli.parsed(parse_args)  # --help and bad flags answer before JAX is imported below

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments import autoencoder_baselines as baselines
from experiments import autoencoder_figures as figures
from experiments import output
from jdl import augment
from jdl.data import digits
from jdl.models import Autoencoder, functional
from jdl.models.autoencoder_losses import (
    autoencoder_loss,
    contractive_loss,
    denoising_loss,
    reconstruction_metrics,
    sparse_loss,
)
from jdl.optim import adam
from jdl.run import fit
from jdl.train import early_stopping

NUM_CLASSES = 10
CODE_SIZE = 16  # the PCA baseline's number of components, the undercomplete codes' size
NEAR_ZERO = 0.05  # a code value |h_j| below this counts as inactive
NOISES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "gaussian": functools.partial(augment.gaussian_noise, sigma=0.2),
    "masking": functools.partial(augment.masking_noise, p=0.25),
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One autoencoder of the comparison: its shape, its objective and its target."""

    description: str
    features: tuple[int, ...]
    model_kwargs: dict[str, Any]
    loss: Callable[[Autoencoder], Any]
    noise: str | None = None  # the corruption a denoiser is trained (and early-stopped) on
    target_mse: float | None = None  # test MSE per pixel on clean input (REFERENCES.md)


VARIANTS: dict[str, Variant] = {
    "ae": Variant(
        "undercomplete 64-16-64, sigmoid code and output",
        (64, CODE_SIZE),
        {},
        autoencoder_loss,
        target_mse=0.010,
    ),
    "ae_tied": Variant(
        "undercomplete 64-16-64 with tied weights (decoder W^T)",
        (64, CODE_SIZE),
        {"tied": True},
        autoencoder_loss,
    ),
    "deep": Variant(
        "deep 64-32-16-32-64, linear code",
        (64, 32, CODE_SIZE),
        {"code_activation": None},
        autoencoder_loss,
        target_mse=0.008,
    ),
    "overcomplete": Variant(
        "overcomplete 64-128-64, no constraint (the plain autoencoder of the denoisers)",
        (64, 128),
        {},
        autoencoder_loss,
    ),
    "sparse_l1": Variant(
        "overcomplete 64-128-64 + L1 on the code (3e-4)",
        (64, 128),
        {},
        functools.partial(sparse_loss, l1_code=3e-4),
    ),
    "sparse_kl": Variant(
        "overcomplete 64-128-64 + KL sparsity (rho=0.05, beta=1e-2)",
        (64, 128),
        {},
        functools.partial(sparse_loss, kl_code=1e-2, kl_target=0.05),
    ),
    "denoising_gaussian": Variant(
        "denoising 64-128-64, Gaussian sigma=0.2, weight decay 1e-6 on W1, W2",
        (64, 128),
        {},
        lambda m: denoising_loss(m, NOISES["gaussian"], weight_decay=1e-6),
        noise="gaussian",
    ),
    "denoising_masking": Variant(
        "denoising 64-128-64, 25% masking, weight decay 1e-6 on W1, W2",
        (64, 128),
        {},
        lambda m: denoising_loss(m, NOISES["masking"], weight_decay=1e-6),
        noise="masking",
    ),
    "contractive": Variant(
        "contractive 64-16-64, lambda=1e-3 (closed form of the sigmoid code)",
        (64, CODE_SIZE),
        {},
        functools.partial(contractive_loss, contraction=1e-3, method="sigmoid"),
    ),
}


def _stats(values: list[float]) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": values}


def _train_variant(
    name: str, seed: int, cfg: Config, splits, corrupted: dict[str, jax.Array]
) -> dict[str, Any]:
    """Trains one variant with one seed; returns its test numbers, codes and outputs."""
    variant = VARIANTS[name]
    key = jax.random.key(seed)
    model = Autoencoder(
        variant.features, rngs=nnx.Rngs(jax.random.fold_in(key, 0)), **variant.model_kwargs
    )
    _, params = functional(model)
    noise = NOISES[variant.noise] if variant.noise else None
    eval_fn = reconstruction_metrics(model, corruption=noise, key=jax.random.fold_in(key, 2))
    start = time.perf_counter()
    result = fit(
        variant.loss(model),
        params,
        adam(cfg.learning_rate),
        splits.train,
        splits.val,
        eval_fn=eval_fn,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        eval_every=cfg.eval_every,
        early_stopping=early_stopping(cfg.patience),
        key=jax.random.fold_in(key, 1),
        progress=False,
        checkpoint_dir=cli.checkpoint_folder(cfg.checkpoint_dir, f"{name}-seed{seed}"),
    )
    seconds = time.perf_counter() - start
    test = splits.test
    outputs, train_codes, test_codes = _evaluator(name)(
        result.best_params, splits.train.x, test.x, corrupted
    )
    return {
        "mse": {k: float(jnp.mean(jnp.square(v - test.x))) for k, v in outputs.items()},
        "probe": float(baselines.probe(train_codes, splits.train.y, test_codes, test.y)),
        "code_mean": float(jnp.mean(test_codes)),
        "near_zero": float(jnp.mean(jnp.abs(test_codes) < NEAR_ZERO)),
        "best_step": int(result.state.stop.best_step),
        "steps": int(result.state.step),
        "seconds": seconds,
        "codes": np.asarray(test_codes),
        "reconstructions": {k: np.asarray(v) for k, v in outputs.items()},
    }


@functools.cache
def _evaluator(name: str) -> Callable[..., Any]:
    """One compiled evaluation per variant (shared by its seeds): reconstructions and codes."""
    variant = VARIANTS[name]
    model = Autoencoder(variant.features, rngs=nnx.Rngs(0), **variant.model_kwargs)
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def evaluate(params: Any, train_x: jax.Array, test_x: jax.Array, corrupted: dict) -> tuple:
        trained = nnx.merge(graphdef, params, rest)
        outputs = {"clean": trained(test_x), **{k: trained(v) for k, v in corrupted.items()}}
        return outputs, trained.encode(train_x), trained.encode(test_x)

    return evaluate


@jax.jit
def _corrupted_test_sets(x: jax.Array) -> dict[str, jax.Array]:
    """One fixed corrupted copy of the test set per noise (the same for every variant)."""
    key = jax.random.key(12345)
    return {
        name: noise(jax.random.fold_in(key, i), x) for i, (name, noise) in enumerate(NOISES.items())
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Trains every variant and writes results.json, reconstructions.png and codes.png."""
    cfg = parse_args(argv)
    start = time.perf_counter()
    splits = digits(seed=0)
    corrupted = _corrupted_test_sets(splits.test.x)
    pca = baselines.pca_baseline(splits, corrupted, CODE_SIZE)
    runs: dict[str, list[dict[str, Any]]] = {}
    for name in cfg.variants:
        runs[name] = [
            _train_variant(name, seed, cfg, splits, corrupted) for seed in range(cfg.seeds)
        ]
        clean = np.mean([r["mse"]["clean"] for r in runs[name]])
        print(f"{name:20s} test MSE {clean:.4f}", flush=True)
    variants: dict[str, Any] = {}
    for name, seed_runs in runs.items():
        variant = VARIANTS[name]
        clean = _stats([r["mse"]["clean"] for r in seed_runs])
        entry: dict[str, Any] = {
            "description": variant.description,
            "features": list(variant.features),
            "code_size": variant.features[-1],
            "test_mse": clean,
            **{
                f"test_mse_{noise}": _stats([r["mse"][noise] for r in seed_runs])
                for noise in NOISES
            },
            "code_mean_activation": _stats([r["code_mean"] for r in seed_runs]),
            "code_near_zero_fraction": _stats([r["near_zero"] for r in seed_runs]),
            "probe_accuracy": _stats([r["probe"] for r in seed_runs]),
            "best_step": _stats([float(r["best_step"]) for r in seed_runs]),
            "steps": _stats([float(r["steps"]) for r in seed_runs]),
            "train_s": _stats([r["seconds"] for r in seed_runs]),
        }
        if variant.features[-1] == CODE_SIZE:
            entry["beats_pca"] = bool(clean["mean"] < pca["mse"]["clean"])
        if variant.target_mse is not None:
            entry["target_mse"] = variant.target_mse
            entry["meets_target"] = bool(clean["mean"] <= variant.target_mse)
        if variant.noise is not None:
            entry["noise"] = variant.noise
            entry["denoiser_mse_on_corrupted"] = entry[f"test_mse_{variant.noise}"]["mean"]
            entry["plain_mse_on_corrupted"] = float(
                np.mean([r["mse"][variant.noise] for r in runs[PLAIN]])
            )
        variants[name] = entry
    noisy_input = {
        noise: float(jnp.mean(jnp.square(x_tilde - splits.test.x)))
        for noise, x_tilde in corrupted.items()
    }
    results = {
        "config": dataclasses.asdict(cfg),
        "pca": {
            "code_size": CODE_SIZE,
            "test_mse": pca["mse"]["clean"],
            **{f"test_mse_{noise}": pca["mse"][noise] for noise in NOISES},
            "probe_accuracy": pca["probe"],
        },
        "corrupted_input_mse": noisy_input,
        "variants": variants,
        "timing": {"total_s": time.perf_counter() - start},
    }
    codes = {"PCA 16": pca["codes"], **{name: r[0]["codes"] for name, r in runs.items()}}
    denoisers = {
        noise: tuple(name for name in runs if VARIANTS[name].noise == noise) for noise in NOISES
    }
    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        (folder / "results.json").write_text(json.dumps(results, indent=2))
        figures.plot_reconstructions(
            folder / f"reconstructions.{cfg.format}",
            np.asarray(splits.test.x),
            {k: np.asarray(v) for k, v in corrupted.items()},
            {name: seed_runs[0] for name, seed_runs in runs.items()},
            pca["reconstructions"]["clean"],
            denoisers,
            PLAIN,
        )
        figures.plot_codes(folder / f"codes.{cfg.format}", np.asarray(splits.test.y), codes)
    out = Path(cfg.out)
    print(_table(results))
    print(f"wrote {out}/results.json, reconstructions.{cfg.format}, codes.{cfg.format}")
    return results


def _table(results: dict[str, Any]) -> str:
    """The terminal summary: one line per variant and the PCA baseline."""
    head = f"{'variant':20s} {'test MSE':>15s} {'gauss':>7s} {'mask':>7s} {'probe':>6s}  note"
    pca = results["pca"]
    lines = [
        head,
        f"{'PCA 16':20s} {pca['test_mse']:15.4f} {pca['test_mse_gaussian']:7.4f} "
        f"{pca['test_mse_masking']:7.4f} {pca['probe_accuracy']:6.3f}",
    ]
    for name, v in results["variants"].items():
        notes = []
        if "beats_pca" in v:
            notes.append("beats PCA" if v["beats_pca"] else "does NOT beat PCA")
        if "meets_target" in v:
            notes.append(f"target {v['target_mse']}: {'met' if v['meets_target'] else 'MISSED'}")
        if "noise" in v:
            notes.append(f"plain AE on {v['noise']}: {v['plain_mse_on_corrupted']:.4f}")
        mse = v["test_mse"]
        lines.append(
            f"{name:20s} {mse['mean']:.4f} +- {mse['std']:.4f} "
            f"{v['test_mse_gaussian']['mean']:7.4f} {v['test_mse_masking']['mean']:7.4f} "
            f"{v['probe_accuracy']['mean']:6.3f}  {'; '.join(notes)}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(main)
