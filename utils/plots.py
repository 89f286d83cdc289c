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


def contact_sheet(rows: dict[str, list[np.ndarray]], path, per_row: int = 8, title: str | None = None,
                  captions: dict[str, list[str]] | None = None) -> Path:
    """One row of patches per named group (e.g. 'synthetic FM', 'real FM'), grayscale, no interpolation;
    `captions`: a line of text above each patch, per group."""
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
            if captions and c < len(captions.get(name, ())):
                ax.set_title(captions[name][c], fontsize=6)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.04, hspace=0.5 if captions else 0.06)
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


def training_curves(histories: dict, path) -> Path:
    """Loss and accuracy, train and validation, every phase one after the other (phase boundaries marked). Histories
    keyed 'PHASE, seed S' (a seed ensemble's members, `training.train_ensemble`) get one row per seed."""
    rows: dict = {}
    for key, hist in histories.items():
        phase, _, member = key.partition(", seed ")
        rows.setdefault(f"member, seed {member}" if member else "", {})[phase] = hist
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.8 * len(rows)), squeeze=False, constrained_layout=True)
    for (title, phases), row in zip(rows.items(), axes):
        offset = 0
        for phase, hist in phases.items():
            epochs = np.arange(1, len(hist.get("loss", [])) + 1) + offset
            for ax, key in zip(row, ("loss", "accuracy")):
                if key in hist:
                    ax.plot(epochs, hist[key], "-o", ms=3, label=f"{phase} train")
                if f"val_{key}" in hist:
                    ax.plot(epochs, hist[f"val_{key}"], "--s", ms=3, label=f"{phase} val")
            offset += len(epochs)
            for ax in row:
                ax.axvline(offset + 0.5, color="0.8", lw=0.8)
        for ax, key in zip(row, ("loss", "accuracy")):
            ax.set_xlabel("epoch (all phases)")
            ax.set_ylabel(key)
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion_matrix_plot(cm, path, labels=("real", "fake"), title="Confusion matrix") -> Path:
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(cm, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks([0, 1], [f"pred {lbl}" for lbl in labels])
    ax.set_yticks([0, 1], [f"true {lbl}" for lbl in labels])
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def roc_pr_curves(curves: dict, path) -> Path:
    """ROC and precision-recall curves; `curves` maps a name to (labels, scores)."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.8))
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        a1.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        prec, rec, _ = precision_recall_curve(y, s)
        a2.plot(rec, prec, label=name)
    a1.plot([0, 1], [0, 1], ":", color="0.6")
    a1.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    a2.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    for ax in (a1, a2):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, path)
