"""Under- and overfitting: MLPs of increasing width on a small digits subset.

    python -m experiments.capacity [--train-size 200] [--steps 1500] [--batch-size 50]
        [--learning-rate 1e-2] [--eval-every 50] [--seeds 5] [--widths 1,2,4,8,12,16,32,128,512]
        [--label-noise 0.2] [--data-seed 0] [--folds K] [--out DIR]

MLPs 64-w-10 of increasing width w trained with Adam for ``--steps`` on a stratified subset of
``--train-size`` digits, ``--label-noise`` of whose labels are replaced by another class (the
validation and test labels stay clean), each width with ``--seeds`` seeds in one vmapped
`jdl.search.Search` (seed s gives every member the same data order). The noisy labels make the
overfitting visible: the validation loss falls, then rises while the widening network learns to
fit the noise (the course's U), and falls again once the network is wide enough to interpolate
the noise smoothly ("double descent": Belkin, Hsu, Ma, Mandal, PNAS 2019; Nakkiran et al., ICLR
2020). ``u_shape`` in the results names the U's bottom and top widths. The training loss (whole
subset) and validation loss of the final parameters against w give the course's underfitting /
good fit / overfitting picture (``capacity.png``, left), and the validation curves over training
show the overfitting in time (right).

With ``--folds K`` the widths are also chosen by stratified K-fold cross-validation on the
training subset, where the validation split is small: every width x seed x fold in one program
per width (`jdl.search.kfold`), each width's validation loss reported as its mean +- std over the
folds, and the width chosen on the fold mean (``cross_validation`` in the results, error bars
on the figure).

Writes into ``--out``: ``capacity.png`` and ``results.json`` with ``config``, ``capacity`` (per
width: parameters, final training / validation loss, best validation loss and step, validation
accuracy, mean validation curve; the steps of the curves; the width of lowest final validation
loss) and ``timing``. The training set-up (`Config`, `train`) is shared with
`experiments.regularization`, which runs this study as its first part.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from experiments import cli, estimates
from experiments.capacity_cli import NUM_CLASSES, Config, add_arguments, check_arguments, sweep
from experiments.cli import Parser

PROG = "python -m experiments.capacity"


def parse_args(argv: list[str] | None = None) -> Config:
    """The `Config` from command-line arguments; bad input exits with status 2 and one line."""
    p = Parser(prog=PROG, doc=__doc__)
    add_arguments(p, Config())
    p.add_argument("--folds", type=int, default=0, help="K-fold cross-validation (0: off)")
    args = p.parse_args(argv)
    check_arguments(p, args)
    if args.folds == 1 or not 0 <= args.folds <= args.train_size // 2:
        p.error(f"--folds must be 0 (off) or in [2, --train-size / 2], got {args.folds}")
    cost = sweep(args, args.seeds)
    for width in args.widths if args.folds else ():  # cross-validation: a search per width
        mlp = estimates.dense((cli.DIGITS_FEATURES, width, NUM_CLASSES))
        members = args.seeds * args.folds
        cost = cost.then(estimates.training(members, args.steps, mlp, args.batch_size))
    p.require_feasible(args, cost, "widths", "seeds", "folds", "steps", "batch_size")
    return Config(**vars(args))


if __name__ == "__main__":
    cli.parsed(parse_args)  # --help and bad flags answer before JAX is imported below

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from flax import nnx

import jdl.optim
from experiments import output
from jdl.data import Dataset, digits, stratified_subset
from jdl.models import MLP, ConvNet, functional, restrict_width
from jdl.search import Search, SearchResult, fold_summary, kfold, population, product
from jdl.train import classification, early_stopping

Splits = tuple[Dataset, Dataset, Dataset]  # the training subset, validation and test sets


def noisy_labels(train: Dataset, fraction: float, seed: int, classes: int = 10) -> Dataset:
    """``train`` with round(fraction n) labels, chosen at random, replaced by another class
    (uniform over the other classes): the validation and test labels stay clean."""
    rng = np.random.default_rng(seed)
    y = np.array(train.y)
    flip = rng.choice(y.size, size=round(fraction * y.size), replace=False)
    y[flip] = (y[flip] + rng.integers(1, classes, size=flip.size)) % classes
    return Dataset(train.x, jnp.asarray(y, train.y.dtype))


def load(cfg: Config, prog: str) -> Splits:
    """The stratified training subset of ``cfg.train_size`` digits (``cfg.label_noise`` of its
    labels replaced by another class), validation and test sets; a subset larger than the
    training split exits with status 2."""
    data = digits(seed=cfg.data_seed)
    try:
        train = stratified_subset(data.train, cfg.train_size, seed=cfg.data_seed)
    except ValueError as e:
        Parser(prog=prog).error(f"--train-size: {e}")
    if cfg.label_noise:
        train = noisy_labels(train, cfg.label_noise, cfg.data_seed)
    return train, data.val, data.test


Model = tuple[Callable, Callable, Callable]  # apply_fn, init_fn, evaluate (see `compiled`)


def compiled(build: Callable[[jax.Array], nnx.Module]) -> Model:
    """The model ``build(key)``'s ``apply_fn``, compiled ``init_fn(key) -> params`` and
    compiled ``evaluate(params, datasets)`` (``eval_fn`` of every member on each data set)."""
    apply_fn, _ = functional(build(jax.random.key(0)))
    eval_fn = classification(apply_fn)[1]
    members = jax.vmap(jax.vmap(eval_fn, in_axes=(0, None)), in_axes=(0, None))

    @jax.jit
    def evaluate(params: Any, datasets: tuple[Dataset, ...]) -> list[dict[str, jax.Array]]:
        return [members(params, data) for data in datasets]

    return apply_fn, jax.jit(lambda key: functional(build(key))[1]), evaluate


@functools.cache
def mlp(width: int) -> Model:
    """The 64-width-10 MLP (`compiled`; ``widths`` and ``dropout_rate`` may be given to its
    ``apply_fn`` at call time). Cached, so searches of one model share their compiled
    initialisation and evaluation."""
    return compiled(lambda key: MLP((64, width, 10), rngs=nnx.Rngs(params=key)))


@functools.cache
def convnet() -> Model:
    """The course's weight sharing on the 8x8 digits (`compiled`): two 3x3 convolutions of 8
    and 16 channels, each followed by 2x2 max pooling, and a dense head 64-32-10; 3,658
    parameters, about as many as the 64-48-10 MLP's 3,610."""
    return compiled(
        lambda key: ConvNet((8, 8, 1), (8, 16), 10, pool_size=2, hidden=(32,), rngs=nnx.Rngs(key))
    )


def train(
    cfg: Config,
    model: Model,
    hparams: dict[str, list[float]],
    splits: Splits,
    *,
    make_loss_fn: Callable | None = None,
    init_member: Callable | None = None,
) -> tuple[SearchResult, Callable[[Any], dict[str, dict[str, np.ndarray]]]]:
    """One vmapped search of ``model`` (`mlp`, `convnet`) over ``hparams`` x seeds with Adam.

    ``make_loss_fn(hparams) -> loss_fn`` defaults to the cross-entropy of
    `jdl.train.classification` whatever the hyper-parameters; ``init_member`` is
    `jdl.search.Search`'s. Returns the search's result and ``evaluate``, which maps parameters
    with leaves (S, H, ...) to ``eval_fn`` on the "train", "val" and "test" sets (one compiled
    program for the three), each metric of shape (S, H).
    """
    apply_fn, init_fn, evaluate_all = model
    loss_fn, eval_fn = classification(apply_fn)
    search = Search(
        init_fn,
        lambda hp: jdl.optim.adam(cfg.learning_rate),
        make_loss_fn=make_loss_fn or (lambda hp: loss_fn),
        eval_fn=eval_fn,
        batch_size=cfg.batch_size,
        eval_every=cfg.eval_every,
        # patience longer than the run: never stops, keeps the best parameters
        early_stopping=early_stopping(cfg.steps + cfg.eval_every),
        init_member=init_member,
    )
    train_set, val, _ = splits
    result = search.run(population(hparams, seeds=cfg.seeds), train_set, val, steps=cfg.steps)

    def evaluate(params: Any) -> dict[str, dict[str, np.ndarray]]:
        metrics = jax.tree.map(np.asarray, evaluate_all(params, splits))
        return dict(zip(("train", "val", "test"), metrics, strict=True))

    return result, evaluate


def stats(values: np.ndarray) -> dict[str, float]:
    """Mean and sample standard deviation over seeds (axis 0)."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))}


def study(cfg: Config, splits: Splits) -> dict[str, Any]:
    """Per width of ``cfg.widths``: final and best losses over seeds, and the validation curve.

    Every width x seed trains in one program: the MLP is compiled at the largest width and
    each member masks the units beyond its own (`jdl.models.restrict_width`), so it trains as
    a separately built 64-w-10 network would."""
    apply_fn = mlp(max(cfg.widths))[0]
    result, evaluate = train(
        cfg,
        mlp(max(cfg.widths)),
        {"width": [float(w) for w in cfg.widths]},
        splits,
        make_loss_fn=lambda hp: classification(partial(apply_fn, widths=(hp["width"],)))[0],
        init_member=lambda params, hp: restrict_width(params, (hp["width"],)),
    )
    final = evaluate(result.params)
    train_eval, val_eval = final["train"], final["val"]
    rows = []
    for h, width in enumerate(cfg.widths):
        rows.append(
            {
                "width": width,
                "parameters": 64 * width + width + width * 10 + 10,
                "train_loss": stats(train_eval["loss"][:, h]),
                "val_loss": stats(val_eval["loss"][:, h]),
                "best_val_loss": stats(result.best_val_loss[:, h]),
                "best_step": stats(result.best_step[:, h].astype(float)),
                "val_accuracy": stats(val_eval["accuracy"][:, h]),
                "val_curve": np.nanmean(result.history["val_loss"][:, :, h], axis=1).tolist(),
            }
        )
    best = min(rows, key=lambda r: r["val_loss"]["mean"])
    return {
        "rows": rows,
        "steps": result.history["step"].tolist(),
        "best_width": best["width"],
        "u_shape": u_shape([r["width"] for r in rows], [r["val_loss"]["mean"] for r in rows]),
    }


def u_shape(widths: list[int], losses: list[float]) -> dict[str, Any] | None:
    """The first U of the validation loss against the width: its first local minimum (the
    best fit of the classical regime) and the highest loss at a larger width before the loss
    falls below that minimum again (the overfitting peak); None if the loss never rises."""
    bottom = next((i for i in range(len(losses) - 1) if losses[i + 1] > losses[i]), None)
    if bottom is None:
        return None
    end = next((j for j in range(bottom + 1, len(losses)) if losses[j] < losses[bottom]), None)
    top = max(range(bottom + 1, len(losses) if end is None else end), key=losses.__getitem__)
    return {
        "bottom_width": widths[bottom],
        "bottom_val_loss": losses[bottom],
        "top_width": widths[top],
        "top_val_loss": losses[top],
        "rise": losses[top] / losses[bottom] - 1,
    }


def cross_validation(cfg: Config, splits: Splits) -> dict[str, Any]:
    """Per width: the final validation loss of K-fold cross-validation on the training subset,
    mean and standard deviation over the folds (seeds averaged within a fold); every seed x
    fold of a width in one program; the width chosen on the fold mean. One program per width:
    all widths by masking, as in `study`, makes every member compute the widest network, which
    for 4 folds (180 members, 1500 steps) took 77 s on 2 cores against 58 s this way."""
    folds = kfold(splits[0], cfg.folds, seed=cfg.data_seed)
    rows = []
    for width in cfg.widths:
        apply_fn, init_fn, _ = mlp(width)
        loss_fn, eval_fn = classification(apply_fn)
        search = Search(
            init_fn,
            lambda hp: jdl.optim.adam(cfg.learning_rate),
            make_loss_fn=folds.loss(loss_fn),
            eval_fn=eval_fn,
            make_eval_fn=folds.evaluation(eval_fn),
            batch_size=min(cfg.batch_size, folds.train_index.shape[1]),
            eval_every=cfg.eval_every,
            early_stopping=early_stopping(cfg.steps + cfg.eval_every),
        )
        pop = population(product(width=[width], fold=range(cfg.folds)), seeds=cfg.seeds)
        result = search.run(pop, folds.train, folds.val, steps=cfg.steps, progress=False)
        (row,) = fold_summary(result, "final_val_loss", name="fold")
        rows.append({"width": width, **{k: row[k] for k in row if k != "width"}})
    best = min(rows, key=lambda r: r["final_val_loss_mean"])
    return {"folds": cfg.folds, "rows": rows, "best_width": best["width"]}


def plot(capacity: dict[str, Any], path: Path) -> None:
    """Final training and validation loss against the width, and the validation curves."""
    rows = capacity["rows"]
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    widths = [r["width"] for r in rows]
    # Training loss on a log axis (it falls by decades), validation loss on a linear one on
    # the right, so that its U is not flattened.
    ax_v = ax.twinx()
    for axis, key, label, color in (
        (ax, "train_loss", "training", "C0"),
        (ax_v, "val_loss", "validation", "C1"),
    ):
        mean = np.array([r[key]["mean"] for r in rows])
        std = np.array([r[key]["std"] for r in rows])
        side = ", right axis" if axis is ax_v else ""
        axis.plot(widths, mean, "o-", color=color, label=f"{label} loss (final{side})")
        axis.fill_between(widths, mean - std, mean + std, color=color, alpha=0.2)
    ax_v.set_ylabel("validation cross-entropy", color="C1")
    cv = capacity.get("cross_validation")
    if cv is not None:
        ax_v.errorbar(
            [r["width"] for r in cv["rows"]],
            [r["final_val_loss_mean"] for r in cv["rows"]],
            yerr=[r["final_val_loss_std"] for r in cv["rows"]],
            fmt="s--",
            color="C2",
            capsize=3,
            label=f"{cv['folds']}-fold cross-validation (mean +- std over folds, right axis)",
        )
    u = capacity["u_shape"]
    good, over = (u["bottom_width"], u["top_width"]) if u else (capacity["best_width"], None)
    ax.axvline(good, color="gray", ls="--", lw=1)
    ax.text(0.02, 0.5, "underfitting", transform=ax.transAxes, ha="left")
    ax.text(good, 0.95, "good fit", transform=ax.get_xaxis_transform(), ha="center")
    if over is not None:
        ax.axvline(over, color="gray", ls=":", lw=1)
        ax.text(over, 0.88, "overfitting", transform=ax.get_xaxis_transform(), ha="center")
    handles = ax.get_legend_handles_labels()[0] + ax_v.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower left")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("hidden width w (MLP 64-w-10)")
    ax.set_ylabel("training cross-entropy (log)", color="C0")
    noise = capacity.get("label_noise", 0.0)
    ax.set_title(f"capacity: final losses ({noise:.0%} of training labels wrong)")
    for r in rows:
        ax_t.plot(capacity["steps"], r["val_curve"], label=f"w = {r['width']}")
    ax_t.set_xlabel("step")
    ax_t.set_ylabel("validation loss")
    ax_t.set_yscale("log")
    ax_t.set_title("validation loss during training (mean over seeds)")
    ax_t.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the sweep and writes ``capacity.png`` and ``results.json`` into ``--out``; returns
    the results."""
    cfg = parse_args(argv)
    start = time.perf_counter()
    splits = load(cfg, PROG)
    capacity = study(cfg, splits)
    capacity["label_noise"] = cfg.label_noise
    if cfg.folds:
        capacity["cross_validation"] = cross_validation(cfg, splits)
    results = {
        "config": dataclasses.asdict(cfg),
        "train_examples": int(splits[0].x.shape[0]),
        "val_examples": int(splits[1].x.shape[0]),
        "capacity": capacity,
        "timing": {"total_s": time.perf_counter() - start},
    }
    with output.files(cfg.out, overwrite=cfg.overwrite) as folder:
        plot(capacity, folder / f"capacity.{cfg.format}")
        (folder / "results.json").write_text(json.dumps(results, indent=2))
    out = Path(cfg.out)
    print(f"{'width':>6}{'parameters':>12}{'train loss':>12}{'val loss':>10}{'val accuracy':>14}")
    for r in capacity["rows"]:
        print(
            f"{r['width']:>6}{r['parameters']:>12}{r['train_loss']['mean']:>12.4f}"
            f"{r['val_loss']['mean']:>10.4f}{r['val_accuracy']['mean']:>14.4f}"
        )
    print(f"best width (final validation loss): {capacity['best_width']}")
    if (u := capacity["u_shape"]) is not None:
        print(
            f"U: validation loss {u['bottom_val_loss']:.3f} at width {u['bottom_width']} rises "
            f"to {u['top_val_loss']:.3f} at width {u['top_width']} ({u['rise']:+.0%})"
        )
    cv = capacity.get("cross_validation")
    if cv is not None:
        print(f"{cfg.folds}-fold cross-validation, final validation loss (mean +- std over folds):")
        for r in cv["rows"]:
            mean, std = r["final_val_loss_mean"], r["final_val_loss_std"]
            print(f"{r['width']:>6}{mean:>10.4f} +- {std:.4f}")
        print(f"best width (cross-validation, fold mean): {cv['best_width']}")
    print(f"wrote {out}/capacity.{cfg.format}, results.json")
    return results


if __name__ == "__main__":
    cli.run(main)
