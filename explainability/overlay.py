"""Drawing only: heatmap overlays and the explanation grid figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def overlay(image, mask, cmap: str = "viridis", alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] mask, coloured by `cmap`, over a gray or RGB image in [0, 1]. Returns RGB float (H, W, 3)."""
    img = np.asarray(image, np.float32)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    mask = np.asarray(mask, np.float32)
    if mask.shape != img.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {img.shape[:2]} differ in size")
    heat = plt.get_cmap(cmap)(np.clip(mask, 0, 1))[..., :3]
    return np.clip((1 - alpha) * img[..., :3] + alpha * heat, 0, 1)


def explanation_grid(images, masks: dict, scores, titles, path, regions=None, cmap="viridis", alpha=0.45) -> Path:
    """One row per image: the image, then one overlay per method in `masks` (name -> list of masks).

    regions: per image (cx, cy, r) of the tampered region in pixels, or None; drawn as a circle.
    """
    n, cols = len(images), 1 + len(masks)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 1.9 * n), squeeze=False)
    for i in range(n):
        img = np.asarray(images[i], np.float32).squeeze()
        axes[i, 0].imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[i, 0].set_ylabel(f"{titles[i]}\nscore {scores[i]:.2f}", fontsize=7)
        for j, (name, ms) in enumerate(masks.items(), start=1):
            axes[i, j].imshow(overlay(img, ms[i], cmap, alpha), interpolation="nearest")
            if i == 0:
                axes[i, j].set_title(name, fontsize=8)
        if i == 0:
            axes[i, 0].set_title("patch", fontsize=8)
        if regions is not None and regions[i] is not None:
            cx, cy, r = regions[i]
            for ax in axes[i]:
                ax.add_patch(plt.Circle((cx, cy), r, fill=False, color="red", lw=0.8))
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
