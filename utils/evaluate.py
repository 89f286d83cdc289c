"""Evaluation of a patch detector on a test split: metrics, per-kind and scan-level figures, bootstrap CIs."""
from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.special import gammaln
from scipy.stats import rankdata
from sklearn.metrics import (average_precision_score, confusion_matrix, f1_score, precision_score, recall_score,
                             roc_auc_score, roc_curve)

from . import layers  # noqa: F401  (registers the custom layers: models load with safe_mode)
from .architectures import compares
from .data import list_split, read_image, read_pair, to_model_input
from .patches import read_manifest, reference_path


# tampered kind vs authentic kind; the first two are the headline pairs (same slice, same resampling history)
PAIRS = (("FM", "control"), ("FB", "control"), ("FM", "TM"), ("FB", "TB"))
MIN_SIDE = 20  # a figure from fewer patches than this on either side is marked "small"


def equal_error_rate(y, scores) -> float:
    """The rate where false-positive and false-negative rates are equal.

    The ROC is taken with every threshold (ties give one point) and joined by straight lines (a randomised
    threshold between two points); FPR - FNR rises along it from -1 to 1 and the EER is where it crosses 0.
    """
    fpr, tpr, _ = roc_curve(y, scores, drop_intermediate=False)
    d = fpr - (1 - tpr)
    i = int(np.argmax(d >= 0))
    if d[i] == 0 or i == 0:
        return float(fpr[i])
    t = -d[i - 1] / (d[i] - d[i - 1])
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


def _group_members(groups, n: int) -> list[np.ndarray]:
    groups = np.arange(n) if groups is None else np.asarray(groups)
    _, inverse = np.unique(groups, return_inverse=True)
    return [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)] if n else []


def _resamples(members, n: int, seed: int):
    """Bootstrap resamples of whole groups: index arrays."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])


def _interval(values) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if len(values) else [float("nan")] * 2


def rank_auc(y, scores) -> float:
    """ROC-AUC as the Mann-Whitney statistic on mid-ranks (ties count half): the value `roc_auc_score` gives,
    without its input checks, which dominate the thousands of small calls of a bootstrap. Needs both classes."""
    y = np.asarray(y) == 1
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((rankdata(scores)[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_ci(y, scores, groups=None, threshold=0.5, n=1000, seed=0) -> dict:
    """95% percentile intervals of ROC-AUC and accuracy, resampling whole groups (scans) when given.

    A resample holding one class has no AUC: it is left out and counted in `bootstrap_dropped`.
    """
    y, scores = np.asarray(y, int), np.asarray(scores, float)
    members = _group_members(groups, len(y))
    aucs, accs, dropped = [], [], 0
    for idx in _resamples(members, n, seed):
        yy = y[idx]
        if len(np.unique(yy)) < 2:
            dropped += 1
            continue
        aucs.append(rank_auc(yy, scores[idx]))
        accs.append(np.mean((scores[idx] >= threshold) == yy))
    return {"roc_auc_ci": _interval(aucs), "accuracy_ci": _interval(accs), "bootstrap_resamples": len(aucs),
            "bootstrap_dropped": dropped}


def paired_bootstrap_auc_diff(y, scores_a, scores_b, groups=None, n=1000, seed=0) -> dict:
    """ROC-AUC of model a minus model b on the same patches, with a 95% interval from a **paired** bootstrap:
    each resample draws whole groups (scans) once and scores both models on them.

    Returns diff, ci, the share of resamples where a does not beat b (`p_not_better`), resamples, dropped.
    """
    y = np.asarray(y, int)
    a, b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    if not (len(y) == len(a) == len(b)):
        raise ValueError(f"paired comparison needs scores of the same patches: {len(y)}, {len(a)}, {len(b)}")
    diffs, dropped = [], 0
    for idx in _resamples(_group_members(groups, len(y)), n, seed):
        if len(np.unique(y[idx])) < 2:
            dropped += 1
            continue
        diffs.append(rank_auc(y[idx], a[idx]) - rank_auc(y[idx], b[idx]))
    diffs = np.asarray(diffs)
    return {"diff": float(roc_auc_score(y, a) - roc_auc_score(y, b)), "ci": _interval(diffs),
            "p_not_better": float(np.mean(diffs <= 0)) if len(diffs) else float("nan"),
            "resamples": int(len(diffs)), "dropped": dropped}


def format_paired(d: dict) -> str:
    """A `paired_bootstrap_auc_diff` result as two table cells: 'diff [low, high] | share not better'."""
    return f"{d['diff']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] | {d['p_not_better']:.3f}"


def auc_with_ci(y, scores, groups=None, n=1000, seed=0) -> dict:
    """ROC-AUC, its scan-level bootstrap interval, the patch counts per side and `small` (fewer than
    MIN_SIDE on either side: read with care)."""
    y, scores = np.asarray(y, int), np.asarray(scores, float)
    ci = bootstrap_ci(y, scores, groups, n=n, seed=seed)
    n_fake, n_real = int(np.sum(y == 1)), int(np.sum(y == 0))
    return {"auc": float(roc_auc_score(y, scores)), "ci": ci["roc_auc_ci"], "n_fake": n_fake, "n_real": n_real,
            "small": min(n_fake, n_real) < MIN_SIDE, "dropped": ci["bootstrap_dropped"]}


def expected_max(scores, m: int) -> float:
    """Expected maximum of m scores drawn without replacement from `scores`.

    A scan's score that does not grow with its number of patches: every scan is judged as if it had m patches.
    """
    s = np.sort(np.asarray(scores, float))
    n = len(s)
    m = int(min(max(m, 1), n))
    i = np.arange(m, n + 1)  # 1-based rank of the maximum
    logp = gammaln(i) - gammaln(m) - gammaln(i - m + 1) - (gammaln(n + 1) - gammaln(m + 1) - gammaln(n - m + 1))
    return float(np.sum(np.exp(logp) * s[m - 1 :]))


def scan_scores(groups, scores, labels, m: int | None = None) -> tuple[dict, dict, int]:
    """Per scan: expected maximum of m patch scores (m = the smallest patch count of any scan when None) and
    whether any patch is tampered. Returns (score by scan, label by scan, m)."""
    by_scan = defaultdict(list)
    for g, sc, label in zip(groups, scores, labels):
        by_scan[g].append((float(sc), int(label)))
    m = m or min(len(v) for v in by_scan.values())
    score = {g: expected_max([sc for sc, _ in v], m) for g, v in by_scan.items()}
    label = {g: max(lbl for _, lbl in v) for g, v in by_scan.items()}
    return score, label, m


def model_input_spec(model) -> tuple[int, int, int]:
    shape = model.inputs[0].shape
    return int(shape[1]), int(shape[2]), int(shape[3])


def predict_files(model, files, batch_size: int = 256) -> np.ndarray:
    """Fake probability per image file; images are converted to the model's size and channels. A comparing
    model (input (H, W, 2)) reads every file with its reference window (`data.read_pair`).

    All files must have one size: the first file of another size is an error naming it.
    """
    h, w, c = model_input_spec(model)
    read = read_pair if c == 2 else read_image  # a comparing model reads each patch with its reference window
    first = read(files[0])
    if first.shape[:2] != (h, w) or c != first.shape[-1]:
        warnings.warn(f"images are {first.shape[0]}x{first.shape[1]}x1, the model takes {h}x{w}x{c}: "
                      "converting (resizing changes forensic traces; prefer a model of the data's size)",
                      stacklevel=3)
    scores, chunk = [], 16 * batch_size  # bounded memory; one predict call per chunk (no retracing)
    for i in range(0, len(files), chunk):
        batch = []
        for p in files[i : i + chunk]:
            img = read(p)
            if img.shape[:2] != first.shape[:2]:
                raise ValueError(f"{p}: image is {img.shape[0]}x{img.shape[1]}, but {files[0]} is "
                                 f"{first.shape[0]}x{first.shape[1]}: one folder must hold one patch size")
            batch.append(to_model_input(img, (h, w), c))
        scores.append(np.asarray(model.predict(np.stack(batch), batch_size=batch_size, verbose=0)).reshape(-1))
    return np.concatenate(scores)


def _find_manifest(test_dir: Path) -> Path | None:
    for cand in (test_dir / "manifest.csv", test_dir.parent / "manifest.csv"):
        if cand.is_file():
            return cand
    return None


def evaluate_on_testset(model, test_dir, threshold: float | None = None, batch_size: int = 256, manifest=None,
                        bootstrap: int = 1000, seed: int = 0, return_scores: bool = False,
                        reference_only: bool | None = None) -> dict:
    """Evaluate a patch model on a split folder (`test_dir/real`, `test_dir/fake`).

    `threshold` None: the model's operating point when it carries one (`utils.operating_point.load_model`, or a
    model fresh from training), else 0.5; the dict says which (`threshold`, `threshold_source`).

    Returns a plain dict: accuracy, precision, recall, f1, roc_auc, average_precision, eer, confusion_matrix,
    counts per class, 95% bootstrap intervals of ROC-AUC and accuracy (resampling scans when the manifest
    names them). When `manifest.csv` is found (in or beside test_dir), also per-kind figures (FM = injected,
    FB = removed; accuracy per kind, AUC against the authentic patches), AUCs of tampered vs authentic kind
    pairs with intervals (FM vs control and FB vs control first: same slice, same history), AUC of resampled vs
    untouched authentic patches (near 0.5 is right) and scan-level ROC-AUC (`scan_scores`). A manifest that
    covers only some files leaves those figures out (listed in `left_out`, with a warning).

    `reference_only` (default: when the model compares, `architectures.compares`) scores only the patches that
    have a reference window (`patches.reference_path`); the count left out is `without_reference`. Pass True
    for every model of a side-by-side comparison so that all are scored on the same patches.
    """
    from .operating_point import model_threshold

    source = "given"
    if threshold is None:
        threshold = model_threshold(model)
        source = "operating point" if getattr(model, "operating_point", None) else "default 0.5"
    test_dir = Path(test_dir)
    files, y = list_split(test_dir)
    if reference_only if reference_only is not None else compares(model):
        keep = [i for i, f in enumerate(files) if reference_path(f).is_file()]
        without = len(files) - len(keep)
        files, y = [files[i] for i in keep], y[keep]
    else:
        without = None
    scores = predict_files(model, files, batch_size)
    manifest = manifest or _find_manifest(test_dir)
    rows = manifest_rows(files, manifest)
    out = report_from_scores(y, scores, rows, threshold, bootstrap, seed)
    out["threshold_source"] = source
    if without is not None:
        out["without_reference"] = without
    stored = ((getattr(model, "operating_point", None) or {}).get("patch") or {}).get("thresholds")
    if stored:
        out["at_stored_rates"] = detection_at_thresholds(y, scores, stored, [r["kind"] for r in rows] if rows else None)
    if rows is None and manifest:
        out["left_out"] = PER_MANIFEST_FIGURES
    if return_scores:
        out.update(scores=scores.tolist(), labels=y.tolist(), files=[str(f) for f in files],
                   scans=[r["scan"] for r in rows] if rows else None,
                   kinds=[r["kind"] for r in rows] if rows else None)
    return out


PER_MANIFEST_FIGURES = ["per_kind", "pairs", "scan_roc_auc", "resampled_vs_untouched_authentic",
                        "bootstrap by scan (patches resampled instead)"]


def manifest_rows(files, manifest) -> list[dict] | None:
    """The manifest row of every file, or None (with a warning naming the figures left out) when the manifest
    is absent or does not cover every file."""
    if manifest is None:
        return None
    manifest = Path(manifest)
    info = {(manifest.parent / row["path"]).resolve(): row for row in read_manifest(manifest)}
    rows = [info.get(Path(f).resolve()) for f in files]
    missing = [f for f, r in zip(files, rows) if r is None]
    if missing:
        warnings.warn(f"{manifest} covers {len(files) - len(missing)} of {len(files)} images (first missing: "
                      f"{missing[0]}): left out {', '.join(PER_MANIFEST_FIGURES)}", stacklevel=3)
        return None
    return rows


def report_from_scores(y, scores, rows=None, threshold: float = 0.5, bootstrap: int = 1000, seed: int = 0) -> dict:
    """Everything `evaluate_on_testset` reports, from labels, scores and (optionally) manifest rows."""
    y, scores = np.asarray(y, int), np.asarray(scores, float)
    out = metrics_from_scores(y, scores, threshold)
    out["counts"] = {"real": int(np.sum(y == 0)), "fake": int(np.sum(y == 1))}
    groups = np.array([r["scan"] for r in rows], dtype=object) if rows else None
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
            entry["roc_auc_vs_authentic"] = auc_with_ci(y[both], scores[both], groups[both], bootstrap, seed)
        out["per_kind"][str(kind)] = entry
    out["pairs"] = {}
    for fake, real in PAIRS:
        sel = (kinds == fake) | (kinds == real)
        if (kinds == fake).any() and (kinds == real).any():
            out["pairs"][f"{fake}_vs_{real}"] = auc_with_ci(y[sel], scores[sel], groups[sel], bootstrap, seed)
    resampled = np.array([str(r.get("resampled", "")) for r in rows], dtype=object)
    auth = (kinds == "TB") & np.isin(resampled, ["0", "1"])  # random lung points of authentic scans, both kinds
    if len(set(resampled[auth])) == 2:  # a detector of tampering should not tell these apart (AUC near 0.5)
        out["resampled_vs_untouched_authentic"] = auc_with_ci(
            (resampled[auth] == "1").astype(int), scores[auth], groups[auth], bootstrap, seed)
    scan_s, scan_y, m = scan_scores(groups, scores, y)
    keys = sorted(scan_s)
    sy, ss = np.array([scan_y[k] for k in keys]), np.array([scan_s[k] for k in keys])
    out["scans"] = {"n": len(keys), "tampered": int(sy.sum()), "patches_per_scan": m,
                    "score": f"expected maximum of {m} patch scores"}
    if len(np.unique(sy)) == 2:
        out["scan_roc_auc"] = float(roc_auc_score(sy, ss))
    return out


def authentic_scores(model, corpus_dir, batch_size: int = 256) -> tuple[list[dict], np.ndarray]:
    """(manifest rows, fake scores) of a corpus of authentic patches only (e.g. CT of other scanners,
    `utils.authentic`); scored once, then judged at any threshold with `flag_rates`."""
    corpus_dir = Path(corpus_dir)
    rows = [r for r in read_manifest(corpus_dir / "manifest.csv") if r["label"] == "0"]
    if compares(model):  # patches whose slice had no room for a reference window cannot be scored
        rows = [r for r in rows if reference_path(corpus_dir / r["path"]).is_file()]
    if not rows:
        raise ValueError(f"{corpus_dir}: the manifest lists no authentic patches"
                         + (" with a reference window" if compares(model) else ""))
    return rows, predict_files(model, [corpus_dir / r["path"] for r in rows], batch_size)


def flag_rates(rows, scores, threshold: float = 0.5) -> dict:
    """Share of authentic patches flagged as fake at `threshold`, overall, per kind (TB random lung, TM tumour)
    and per series."""
    scores = np.asarray(scores)
    kinds = np.array([r["kind"] for r in rows], dtype=object)
    out = {"n": len(rows), "flag_rate": float(np.mean(scores >= threshold)), "mean_score": float(scores.mean()),
           "threshold": float(threshold), "per_kind": {}}
    for kind in sorted(set(kinds)):
        sel = kinds == kind
        out["per_kind"][str(kind)] = {"n": int(sel.sum()), "flag_rate": float(np.mean(scores[sel] >= threshold))}
    series = np.array([r["scan"] for r in rows], dtype=object)
    out["per_series"] = {str(k): {"n": int((series == k).sum()), "flag_rate": float(np.mean(scores[series == k] >= threshold))}
                         for k in sorted(set(series))}
    return out


def evaluate_authentic(model, corpus_dir, threshold: float = 0.5, batch_size: int = 256) -> dict:
    """False alarms on a corpus of authentic patches only (e.g. CT of other scanners, `utils.authentic`):
    share flagged as fake at `threshold`, overall, per kind (TB random lung, TM tumour) and per series."""
    return flag_rates(*authentic_scores(model, corpus_dir, batch_size), threshold)


def detection_at_thresholds(y, scores, thresholds: dict, kinds=None) -> dict:
    """Per stored false-alarm rate ('0.01' -> threshold chosen on validation authentic patches): the share of
    fakes detected (and of FM / FB, when kinds are known) and the false-alarm rate met on these authentic ones."""
    y, scores = np.asarray(y, int), np.asarray(scores, float)
    kinds = None if kinds is None else np.asarray(kinds)
    out = {}
    for rate, thr in sorted(thresholds.items(), key=lambda kv: float(kv[0])):
        flagged = scores >= float(thr)
        entry = {"threshold": float(thr), "detected": float(flagged[y == 1].mean()) if (y == 1).any() else None,
                 "false_alarms": float(flagged[y == 0].mean()) if (y == 0).any() else None}
        if kinds is not None:
            for kind in ("FM", "FB"):
                sel = (kinds == kind) & (y == 1)
                if sel.any():
                    entry[f"detected_{kind}"] = float(flagged[sel].mean())
        out[rate] = entry
    return out


def summary_row(name: str, metrics: dict) -> dict:
    """The figures a results table shows, rounded, from an `evaluate_on_testset` dict."""
    lo, hi = metrics.get("roc_auc_ci", [np.nan, np.nan])
    alo, ahi = metrics.get("accuracy_ci", [np.nan, np.nan])
    row = {"model": name, "n": sum(metrics["counts"].values()),
           "accuracy": f"{metrics['accuracy']:.3f} [{alo:.3f}, {ahi:.3f}]", "f1": f"{metrics['f1']:.3f}",
           "roc_auc": f"{metrics['roc_auc']:.3f} [{lo:.3f}, {hi:.3f}]"}
    pairs = metrics.get("pairs", {})
    for pair, label in (("FM_vs_control", "AUC FM vs control"), ("FB_vs_control", "AUC FB vs control"),
                        ("FM_vs_TM", "AUC FM vs TM")):
        if pair in pairs:
            row[label] = format_auc(pairs[pair])
    if "resampled_vs_untouched_authentic" in metrics:
        row["AUC resampled vs untouched authentic"] = format_auc(metrics["resampled_vs_untouched_authentic"])
    for rate, entry in metrics.get("at_stored_rates", {}).items():
        if entry["detected"] is not None and entry["false_alarms"] is not None:
            row[f"detected / false alarms at {float(rate):.0%} val FA"] = \
                f"{entry['detected']:.3f} / {entry['false_alarms']:.3f}"
    return row


def format_auc(entry: dict) -> str:
    """'0.912 [0.85, 0.96]', with the patch counts when a side holds fewer than MIN_SIDE patches."""
    text = f"{entry['auc']:.3f} [{entry['ci'][0]:.2f}, {entry['ci'][1]:.2f}]"
    if entry.get("small"):
        text += f" (small: {entry['n_fake']} vs {entry['n_real']})"
    return text


def markdown_table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
