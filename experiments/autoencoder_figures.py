"""The autoencoder comparison's figures: reconstructions and codes."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
from sklearn.decomposition import PCA

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_reconstructions(
    path: Path,
    test_x: np.ndarray,
    corrupted: dict[str, np.ndarray],
    runs: dict,
    pca: np.ndarray,
    denoisers: dict[str, tuple[str, ...]],
    plain: str,
    n: int = 10,
) -> None:
    """Rows of n test digits: originals, PCA's and each variant's reconstructions, then per
    noise the corrupted input, its denoisers' and the ``plain`` autoencoder's outputs."""
    test_x = np.asarray(test_x[:n])
    corrupted = {k: np.asarray(v[:n]) for k, v in corrupted.items()}
    rows: list[tuple[str, np.ndarray]] = [("original", test_x), ("PCA 16", pca[:n])]
    for name, run in runs.items():
        rows.append((name, run["reconstructions"]["clean"][:n]))
    for noise, x_tilde in corrupted.items():
        if not denoisers.get(noise):
            continue
        rows.append((f"{noise} input", x_tilde))
        for name in (*denoisers[noise], plain):
            rows.append((f"{name} on {noise}", runs[name]["reconstructions"][noise][:n]))
    fig, axes = plt.subplots(len(rows), 1, figsize=(n * 0.8, len(rows) * 0.85), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows, strict=True):
        # One strip per row: the n 8x8 images side by side, one blank column between them.
        tiles = np.pad(np.clip(images.reshape(n, 8, 8), 0, 1), ((0, 0), (0, 0), (0, 1)))
        ax.imshow(np.hstack(list(tiles))[:, :-1], cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle("Test digits and reconstructions (seed 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_codes(path: Path, labels: np.ndarray, codes: dict[str, np.ndarray]) -> None:
    """Each variant's test codes on their first two principal components, coloured by digit."""
    cols = min(4, len(codes))
    rows = math.ceil(len(codes) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (name, h) in zip(axes.ravel(), codes.items(), strict=False):
        xy = PCA(2).fit_transform(h)
        scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
        ax.set_title(f"{name} ({h.shape[1]}-d)", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(codes) :]:
        ax.axis("off")
    fig.colorbar(scatter, ax=axes, ticks=range(10), label="digit", shrink=0.8)
    fig.suptitle("Test codes, first two principal components (seed 0)", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
