"""Evaluation of a patch detector on a test split: metrics, per-kind and scan-level figures, bootstrap CIs."""
from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import (average_precision_score, confusion_matrix, f1_score, precision_score, recall_score,
                             roc_auc_score, roc_curve)

from .data import list_split, read_image
from .patches import read_manifest


PAIRS = (("FM", "TM"), ("FB", "control"), ("FM", "control"), ("FB", "TB"))  # tampered kind vs authentic kind


def equal_error_rate(y, scores) -> float:
    """The error rate where false-positive and false-negative rates are equal (interpolated on the ROC)."""
    fpr, tpr, _ = roc_curve(y, scores)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    if i == 0:
        return float((fpr[0] + fnr[0]) / 2)
    d0, d1 = fpr[i - 1] - fnr[i - 1], fpr[i] - fnr[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def metrics_from_scores(y, scores, threshold: float = 0.5) -> dict:
    """Accuracy, precision, recall, F1, ROC-AUC, average precision, EER and the confusion matrix
    ([[tn, fp], [fn, tp]], rows = true real/fake) of fake-probability scores at `threshold`."""
    y = np.asarray(y, int)
    scores = np.asarray(scores, float)
    if y.size == 0:
        raise ValueError("no test images: cannot compute metrics")
    if len(np.unique(y)) < 2:
        raise ValueError(f"the test set holds only one class ({['real', 'fake'][int(y[0])]}): "
                         "ROC-AUC and the other two-class metrics are undefined")
    pred = (scores >= threshold).astype(int)
    return {
        "accuracy": float(np.mean(pred == y)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
        "eer": equal_error_rate(y, scores),
        "confusion_matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        "threshold": float(threshold),
    }


def bootstrap_ci(y, scores, groups=None, threshold=0.5, n=1000, seed=0) -> dict:
    """95% percentile intervals of ROC-AUC and accuracy, resampling whole groups (scans) when given."""
    y, scores = np.asarray(y, int), np.asarray(scores, float)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    rng = np.random.default_rng(seed)
    aucs, accs = [], []
    for _ in range(n):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])
        yy = y[idx]
        if len(np.unique(yy)) < 2:
            continue
        aucs.append(roc_auc_score(yy, scores[idx]))
        accs.append(np.mean((scores[idx] >= threshold) == yy))
    ci = lambda v: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v else [float("nan")] * 2  # noqa: E731
    return {"roc_auc_ci": ci(aucs), "accuracy_ci": ci(accs), "bootstrap_resamples": len(aucs)}


def model_input_spec(model) -> tuple[int, int, int]:
    shape = model.inputs[0].shape
    return int(shape[1]), int(shape[2]), int(shape[3])


def predict_files(model, files, batch_size: int = 256) -> np.ndarray:
    """Fake probability per image file; images are converted to the model's size and channels."""
    h, w, c = model_input_spec(model)
    first = read_image(files[0])
    if first.shape[:2] != (h, w) or c != 1:
        warnings.warn(f"images are {first.shape[0]}x{first.shape[1]}x1, the model takes {h}x{w}x{c}: "
                      "converting (resizing changes forensic traces; prefer a model of the data's size)",
                      stacklevel=3)
    scores, chunk = [], 16 * batch_size  # bounded memory; one predict call per chunk (no retracing)
    for i in range(0, len(files), chunk):
        x = np.stack([read_image(p, (h, w), c) for p in files[i : i + chunk]])
        scores.append(np.asarray(model.predict(x, batch_size=batch_size, verbose=0)).reshape(-1))
    return np.concatenate(scores)


def _find_manifest(test_dir: Path) -> Path | None:
    for cand in (test_dir / "manifest.csv", test_dir.parent / "manifest.csv"):
        if cand.is_file():
            return cand
    return None


def evaluate_on_testset(model, test_dir, threshold: float = 0.5, batch_size: int = 256, manifest=None,
                        bootstrap: int = 1000, seed: int = 0, return_scores: bool = False) -> dict:
    """Evaluate a patch model on a split folder (`test_dir/real`, `test_dir/fake`).

    Returns a plain dict: accuracy, precision, recall, f1, roc_auc, average_precision, eer, confusion_matrix,
    counts per class, 95% bootstrap intervals of ROC-AUC and accuracy (resampling scans when the manifest
    names them). When `manifest.csv` is found (in or beside test_dir), also per-kind figures (FM = injected,
    FB = removed; accuracy per kind, AUC against the authentic patches), AUCs of tampered vs authentic kind
    pairs (FM vs TM, FB vs control, ...) and scan-level ROC-AUC (max score per scan).
    """
    test_dir = Path(test_dir)
    files, y = list_split(test_dir)
    scores = predict_files(model, files, batch_size)
    manifest = Path(manifest) if manifest else _find_manifest(test_dir)
    info = {}
    if manifest is not None:
        for row in read_manifest(manifest):
            info[(manifest.parent / row["path"]).resolve()] = row
    rows = [info.get(Path(f).resolve()) for f in files]
    out = report_from_scores(y, scores, rows if all(rows) else None, threshold, bootstrap, seed)
    if return_scores:
        out.update(scores=scores.tolist(), labels=y.tolist(), files=[str(f) for f in files])
    return out


def report_from_scores(y, scores, rows=None, threshold: float = 0.5, bootstrap: int = 1000, seed: int = 0) -> dict:
    """Everything `evaluate_on_testset` reports, from labels, scores and (optionally) manifest rows."""
    y, scores = np.asarray(y, int), np.asarray(scores, float)
    out = metrics_from_scores(y, scores, threshold)
    out["counts"] = {"real": int(np.sum(y == 0)), "fake": int(np.sum(y == 1))}
    groups = [r["scan"] for r in rows] if rows else None
    out.update(bootstrap_ci(y, scores, groups, threshold, bootstrap, seed))
    out["bootstrap_unit"] = "scan" if rows else "patch"
    if not rows:
        return out
    kinds = np.array([str(r["kind"]) for r in rows], dtype=object)
    out["per_kind"] = {}
    for kind in sorted(set(kinds)):
        sel = kinds == kind
        entry = {"n": int(sel.sum()), "mean_score": float(scores[sel].mean()),
                 "accuracy": float(np.mean((scores[sel] >= threshold) == y[sel]))}
        if kind in ("FM", "FB") and (y == 0).any():
            both = sel | (y == 0)
            entry["roc_auc_vs_authentic"] = float(roc_auc_score(y[both], scores[both]))
        out["per_kind"][str(kind)] = entry
    out["pairs"] = {}
    for fake, real in PAIRS:
        a, b = kinds == fake, kinds == real
        if a.any() and b.any():
            out["pairs"][f"{fake}_vs_{real}"] = float(roc_auc_score(y[a | b], scores[a | b]))
    by_scan = defaultdict(list)
    for g, sc, label in zip(groups, scores, y):
        by_scan[g].append((sc, label))
    scan_y = np.array([max(lbl for _, lbl in v) for v in by_scan.values()])
    scan_s = np.array([max(sc for sc, _ in v) for v in by_scan.values()])
    out["scans"] = {"n": len(by_scan), "tampered": int(scan_y.sum())}
    if len(np.unique(scan_y)) == 2:
        out["scan_roc_auc"] = float(roc_auc_score(scan_y, scan_s))
    return out


def evaluate_authentic(model, corpus_dir, threshold: float = 0.5, batch_size: int = 256) -> dict:
    """False alarms on a corpus of authentic patches only (e.g. CT of other scanners, `utils.authentic`):
    share flagged as fake at `threshold`, overall and per kind (TB random lung, TM tumour)."""
    corpus_dir = Path(corpus_dir)
    rows = [r for r in read_manifest(corpus_dir / "manifest.csv") if r["label"] == "0"]
    if not rows:
        raise ValueError(f"{corpus_dir}: the manifest lists no authentic patches")
    scores = predict_files(model, [corpus_dir / r["path"] for r in rows], batch_size)
    kinds = np.array([r["kind"] for r in rows], dtype=object)
    out = {"n": len(rows), "flag_rate": float(np.mean(scores >= threshold)), "mean_score": float(scores.mean()),
           "threshold": float(threshold), "per_kind": {}}
    for kind in sorted(set(kinds)):
        sel = kinds == kind
        out["per_kind"][str(kind)] = {"n": int(sel.sum()), "flag_rate": float(np.mean(scores[sel] >= threshold))}
    return out


def summary_row(name: str, metrics: dict) -> dict:
    """The figures a results table shows, rounded, from an `evaluate_on_testset` dict."""
    lo, hi = metrics.get("roc_auc_ci", [np.nan, np.nan])
    alo, ahi = metrics.get("accuracy_ci", [np.nan, np.nan])
    row = {"model": name, "n": sum(metrics["counts"].values()),
           "accuracy": f"{metrics['accuracy']:.3f} [{alo:.3f}, {ahi:.3f}]", "f1": f"{metrics['f1']:.3f}",
           "roc_auc": f"{metrics['roc_auc']:.3f} [{lo:.3f}, {hi:.3f}]"}
    pairs = metrics.get("pairs", {})
    for pair, label in (("FM_vs_TM", "AUC FM vs TM"), ("FB_vs_control", "AUC FB vs control")):
        if pair in pairs:
            row[label] = f"{pairs[pair]:.3f}"
    return row


def markdown_table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
