"""Slice-level evaluation: `scan`'s verdict on whole slices of real CT-GAN tampering and of authentic CT.

A forensic analyst asks of a slice (or series) whether, and where, it was tampered, not of a patch centred on the
answer. Each slice is scanned as `scan` scans it; its score is its best window's. Reported: the slice-level
ROC-AUC of tampered against authentic slices, the share of tampered slices whose best window lies within
`HIT_PX` of a tampered point, and the slices flagged at the model's stored slice thresholds (1% and 5% false
alarms on the authentic slices they were chosen on: `calibration`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dicom import CTSlice

HIT_PX = 24  # a location within this many pixels of a tampered point finds it (CT-GAN's region is ~32 mm)


@dataclass
class TamperedSlice:
    """A tampered slice and where: points (x, y) of its tampered regions, their kinds (FM, FB) joined by '+'."""

    slice: CTSlice
    targets: list
    kind: str
    name: str = ""


@dataclass
class AuthenticSlice:
    """An authentic slice, its series (folder) and PatientID."""

    slice: CTSlice
    series: str
    patient: str = ""


def within(x, y, targets, radius: float = HIT_PX) -> bool:
    """True when the point (x, y) lies within `radius` px of one of the targets (x, y)."""
    return any((x - tx) ** 2 + (y - ty) ** 2 <= radius**2 for tx, ty in targets)


def ctgan_tampered_slices(root) -> list[TamperedSlice]:
    """Every tampered slice (FM/FB label rows) of a CT-GAN data set folder, with its tampered points."""
    from .ctgan import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # label rows of scans a sample does not hold
        scans = load_dataset(root)
    out = []
    for scan in scans:
        for inst in sorted({r.slice for r in scan.labels if r.tampered}):
            rows = [r for r in scan.labels if r.tampered and r.slice == inst]
            out.append(TamperedSlice(scan.slice(inst), [(r.x, r.y) for r in rows],
                                     "+".join(sorted({r.type for r in rows})), f"{scan.key} slice {inst}"))
    return out


def authentic_slices(root, exclude_patients=()) -> list[AuthenticSlice]:
    """Every slice of every DICOM folder under root (a series; a lone file is a series of one), named by its
    folder (a lone file by its path) relative to root, except patients in `exclude_patients` (e.g. training
    backgrounds)."""
    from .dicom import read_dicom_tree

    root, excluded = Path(root), set(exclude_patients)
    out = []
    for path, slices in read_dicom_tree(root):
        patient = slices[0].meta["patient_id"]
        if patient not in excluded:
            name = path.relative_to(root).as_posix() if path != root else path.name
            out += [AuthenticSlice(sl, name, patient) for sl in slices]
    return out


def evaluate_slices(model, tampered: list[TamperedSlice], authentic: list[AuthenticSlice], stride: int | None = None,
                    progress: bool = True) -> dict:
    """Scan every slice once (`scan.scan_slice`, at the model's stored stride unless `stride` is given; slices
    without lungs are left out and counted) and score
    `scan`'s verdict: slice ROC-AUC (best window's score), top-1 within HIT_PX of a tampered point, and the slices
    flagged at the model's stored slice thresholds (`model.operating_point['slice']`, when it carries one)."""
    from sklearn.metrics import roc_auc_score

    from .scan import scan_each

    def best(items, desc):
        item_of = {id(item.slice): item for item in items}
        return [(item_of[id(sl)], results[0].locations[0]) for sl, results
                in scan_each([model], (item.slice for item in items), stride, progress, desc, len(items))]

    fakes, reals = best(tampered, "tampered slices"), best(authentic, "authentic slices")
    if not fakes or not reals:
        raise ValueError(f"slice evaluation needs both classes with lungs: {len(fakes)} tampered, {len(reals)} "
                         "authentic slices")
    t_scores = np.array([loc.score for _, loc in fakes])
    a_scores = np.array([loc.score for _, loc in reals])
    hits = np.array([within(loc.x, loc.y, item.targets) for item, loc in fakes])
    kinds = np.array([item.kind for item, _ in fakes])
    out = {"tampered": len(fakes), "authentic": len(reals), "left_out": len(tampered) + len(authentic) - len(fakes)
           - len(reals),
           "slice_auc": float(roc_auc_score(np.r_[np.ones(len(t_scores)), np.zeros(len(a_scores))],
                                            np.r_[t_scores, a_scores])),
           "top1_within_24px": float(hits.mean()),
           "by_kind": {k: {"slices": int((kinds == k).sum()), "top1_within_24px": float(hits[kinds == k].mean())}
                       for k in sorted(set(kinds))},
           "scores": {"tampered": t_scores.tolist(), "authentic": a_scores.tolist()}}
    point = (getattr(model, "operating_point", None) or {}).get("slice")
    if point:
        out["chosen_on"] = point["chosen_on"]
        out["at_rates"] = {rate: {"threshold": t, "authentic_flagged": float(np.mean(a_scores >= t)),
                                  "tampered_flagged": float(np.mean(t_scores >= t)),
                                  **{f"{k}_flagged": float(np.mean(t_scores[kinds == k] >= t)) for k in out["by_kind"]}}
                           for rate, t in point["thresholds"].items()}
    return out


def summary_rows(name: str, metrics: dict) -> list[dict]:
    """Table rows (one per stored false-alarm rate, or one without a stored slice point) for `markdown_table`."""
    base = {"model": name, "tampered / authentic slices": f"{metrics['tampered']} / {metrics['authentic']}",
            "slice ROC-AUC": f"{metrics['slice_auc']:.3f}", "top-1 within 24 px": f"{metrics['top1_within_24px']:.3f}"}
    rates = sorted(metrics.get("at_rates", {}).items(), key=lambda kv: float(kv[0]))
    if not rates:
        return [{**base, "slice threshold": "none stored"}]
    return [{**base, "slice threshold": f"{at['threshold']:.4f} ({float(rate):.0%} of the calibration slices)",
             "authentic flagged": f"{at['authentic_flagged']:.3f}", "tampered flagged": f"{at['tampered_flagged']:.3f}",
             **{f"{k} flagged": f"{at[f'{k}_flagged']:.3f}" for k in metrics["by_kind"]}}
            for rate, at in rates]
