"""Can a nodule's size and shape alone tell injected from authentic? The corpus shortcut check for nodules.

    python -m benchmarks.nodule_shortcut [--data data] [--real data/ctgan] [--out reports]

For every patch centred on a nodule (FM: injected, TM: authentic cancer) it measures the dense blob at the
centre (above -400 HU, the component nearest the centre): equivalent diameter (mm, at the data set's median
spacing of 0.7 mm), circularity, solidity, mean and spread of its HU, and whether it runs out of the patch
(attached to a wall or vessel). Prints medians per source and kind and the ROC-AUC of a shape-only probe
(logistic regression on those features, cross-validated with scans kept together) for FM vs TM: near 0.5
means size and shape are no label in the corpus; near 1 means a detector can learn "round = fake".
The real development set's FM and TM patches are measured alike, as the reference for what CT-GAN injects
(too few scans for a probe of their own).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from benchmarks import write_report
from utils.data import read_image
from utils.dicom import unwindow
from utils.patches import read_manifest

DENSE_HU = -400.0
SPACING_MM = 0.7  # patches carry no spacing; the data set's median
SEARCH_PX = 6  # patch centres are jittered by up to 4 px from the nodule's centre
FEATURES = ("diameter_mm", "circularity", "solidity", "mean_hu", "std_hu", "attached")


def blob_features(hu: np.ndarray, spacing: float = SPACING_MM) -> dict | None:
    """Shape of the dense blob at the centre of an HU patch, or None when nothing dense is near the centre."""
    labels, n = ndimage.label(hu > DENSE_HU)
    if not n:
        return None
    c = np.array(hu.shape) // 2
    window = labels[c[0] - SEARCH_PX : c[0] + SEARCH_PX + 1, c[1] - SEARCH_PX : c[1] + SEARCH_PX + 1]
    ids = np.unique(window[window > 0])
    if not len(ids):
        return None
    blob = labels == ids[np.argmax([(window == i).sum() for i in ids])]
    contour = max(cv2.findContours(blob.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0],
                  key=cv2.contourArea)
    area = float(blob.sum())
    perimeter = cv2.arcLength(contour, True)
    hull = cv2.contourArea(cv2.convexHull(contour))
    edge = np.concatenate([blob[0], blob[-1], blob[:, 0], blob[:, -1]])
    return {"diameter_mm": 2 * np.sqrt(area / np.pi) * spacing,
            "circularity": float(min(4 * np.pi * area / max(perimeter, 1.0) ** 2, 1.0)),
            "solidity": float(min(area / max(hull, 1.0), 1.0)),
            "mean_hu": float(hu[blob].mean()), "std_hu": float(hu[blob].std()),
            "attached": float(edge.any())}


def measure_corpus(corpus_dir: str | Path, source: str, splits=("train", "val", "test")) -> list[dict]:
    """Blob features of every FM and TM patch of a corpus (split, kind, scan and features per patch)."""
    corpus_dir = Path(corpus_dir)
    out = []
    for row in read_manifest(corpus_dir / "manifest.csv"):
        if row["kind"] not in ("FM", "TM") or row["split"] not in splits:
            continue
        features = blob_features(unwindow(read_image(corpus_dir / row["path"])[..., 0] * 255.0))
        out.append({"source": source, "split": row["split"], "kind": row["kind"], "scan": row["scan"],
                    **(features or {})})
    return out


def probe_auc(rows: list[dict], folds: int = 5, seed: int = 0) -> float | None:
    """Cross-validated ROC-AUC of a logistic regression on the blob features, FM (1) vs TM (0), scans kept
    together; a patch without a blob counts as all-zero features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([[r.get(f, 0.0) for f in FEATURES] for r in rows], dtype=float)
    y = np.array([r["kind"] == "FM" for r in rows], dtype=int)
    groups = np.array([r["scan"] for r in rows])
    n_groups = len(set(groups))
    if len(set(y)) < 2 or n_groups < 2:
        return None
    scores = np.zeros(len(y))
    for train, test in GroupKFold(min(folds, n_groups)).split(x, y, groups):
        if len(set(y[train])) < 2:
            scores[test] = y[train].mean()
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, class_weight="balanced"))
        scores[test] = model.fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, scores))


def feature_aucs(rows: list[dict]) -> dict:
    """ROC-AUC of each blob feature alone, FM (1) vs TM (0): 0.5 = no label, far from 0.5 either way = a label."""
    from sklearn.metrics import roc_auc_score

    y = [r["kind"] == "FM" for r in rows]
    if len(set(y)) < 2:
        return {}
    return {f: float(roc_auc_score(y, [r.get(f, 0.0) for r in rows])) for f in FEATURES}


def summary(rows: list[dict]) -> list[dict]:
    out = []
    for source in dict.fromkeys(r["source"] for r in rows):
        for kind in ("FM", "TM"):
            sel = [r for r in rows if r["source"] == source and r["kind"] == kind]
            found = [r for r in sel if "diameter_mm" in r]
            if not sel:
                continue
            entry = {"source": source, "kind": kind, "n": len(sel), "with_blob": len(found)}
            for f in FEATURES:
                values = np.array([r[f] for r in found])
                if not len(values):
                    entry[f] = None
                elif f == "attached":
                    entry[f] = float(values.mean())
                else:
                    entry[f] = [float(np.median(values)), *map(float, np.percentile(values, [10, 90]))]
            out.append(entry)
    return out


def markdown(entries: list[dict], probes: dict, single: dict) -> str:
    lines = ["| source | kind | patches | blob found | diameter mm | circularity | solidity | mean HU | HU sd "
             "| attached |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        cells = []
        for f in FEATURES:
            v = e[f]
            if v is None:
                cells.append("")
            elif f == "attached":
                cells.append(f"{v:.0%}")
            else:
                cells.append(f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]" if f in ("circularity", "solidity")
                             else f"{v[0]:.0f} [{v[1]:.0f}, {v[2]:.0f}]")
        lines.append(f"| {e['source']} | {e['kind']} | {e['n']} | {e['with_blob']} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, aucs in single.items():
        lines.append(f"Each feature alone, FM vs TM ROC-AUC, {name}: "
                     + ", ".join(f"{f} {v:.2f}" for f, v in aucs.items()))
    lines += [f"Shape-only probe, FM vs TM ROC-AUC, {name}: " + ("n/a" if auc is None else f"{auc:.3f}")
              for name, auc in probes.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="corpus folder (manifest.csv)")
    parser.add_argument("--real", default="data/ctgan",
                        help="the development set's patches (prepared by the main job or benchmarks.compare)")
    parser.add_argument("--out", default="reports", help="writes OUT/nodule_shortcut.{md,json}")
    args = parser.parse_args()
    rows = measure_corpus(args.data, "synthetic corpus")
    probes = {"synthetic corpus": probe_auc(rows)}
    single = {"synthetic corpus": feature_aucs(rows)}
    if (Path(args.real) / "manifest.csv").is_file():
        real = measure_corpus(Path(args.real), "CT-GAN development set")
        rows += real
    else:
        print(f"(no {args.real}/manifest.csv: the development set is left out)")
    entries = summary(rows)
    write_report(args.out, "nodule_shortcut", markdown(entries, probes, single),
                 {"summary": entries, "probe_auc": probes, "feature_auc": single})


if __name__ == "__main__":
    main()
