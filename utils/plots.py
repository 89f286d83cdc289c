"""Figures written as PNG: contact sheets of patches, training curves, confusion matrix, ROC and PR curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def contact_sheet(rows: dict[str, list[np.ndarray]], path, per_row: int = 8, title: str | None = None) -> Path:
    """One row of patches per named group (e.g. 'synthetic FM', 'real FM'), grayscale, no interpolation."""
    fig, axes = plt.subplots(len(rows), per_row, figsize=(per_row * 1.2, len(rows) * 1.3), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.04, hspace=0.06)
    return _save(fig, path)


def manifest_groups(data_dir, kinds=("FM", "FB", "TM", "control"), n: int = 8, prefix: str = "",
                    seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Up to n patch images per kind from a corpus folder's manifest (any split), for `contact_sheet`."""
    import cv2

    from .patches import read_manifest

    data_dir = Path(data_dir)
    rows = read_manifest(data_dir / "manifest.csv")
    rng = np.random.default_rng(seed)
    out = {}
    for kind in kinds:
        sub = [r for r in rows if r["kind"] == kind]
        pick = rng.choice(len(sub), size=min(n, len(sub)), replace=False) if sub else []
        out[f"{prefix}{kind}"] = [cv2.imread(str(data_dir / sub[i]["path"]), cv2.IMREAD_GRAYSCALE) for i in pick]
    return out
