"""Slice operating points: thresholds for `scan`'s slice scores, chosen on whole authentic slices.

A patch threshold flags a stated share of authentic *patches*. `scan` judges a slice by the best of its hundreds
of windows, and that maximum crosses a patch threshold on most authentic slices. So a slice score gets thresholds
of its own, chosen on authentic slices scanned exactly as `scan` scans them (`utils.operating_point` stores them):

- `slice`: the best window's score, which `scan` and `scan-archive` use;
- `relative`: the best window's score minus the slice's median, for `scan --relative`.

Training chooses both on authentic synthetic slices no model was trained on or selected with: the validation
split's authentic scans, topped up with authentic scans of the same generator and settings that the corpus never
drew (`held_out_authentic_slices`). `calibrate --authentic DIR ...` chooses them on a site's own authentic series
instead, which then replace the synthetic choice.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .dicom import CTSlice

SLICES = 200  # authentic slices a threshold is chosen on: 1% of them is two slices
HELD_OUT_FIRST = 1_000_000  # number of the first held-out synthetic scan: far beyond any corpus's own scans
AUTHENTIC_KINDS = ("TB", "TM")

log = logging.getLogger(__name__)


def validation_authentic_slices(corpus_dir) -> list[CTSlice]:
    """The slices of the validation split's authentic (TB/TM) scans of a synthetic corpus, regenerated from its
    corpus.json (the corpus is reproducible from its seed, so no slice needs to be stored); [] when that split
    holds no authentic scan."""
    from .synthetic import regenerated_scans

    _, scans = regenerated_scans(corpus_dir, "val", "slice calibration regenerates the validation scans of a "
                                 "synthetic corpus; for other data pass authentic series (`calibrate --authentic`)",
                                 kinds=AUTHENTIC_KINDS)
    return [scan.slice(i) for scan in scans for i in sorted(scan.slices)]


def held_out_authentic_slices(corpus_dir, n_slices: int) -> list[CTSlice]:
    """At least `n_slices` slices of authentic (TB/TM) synthetic scans drawn with the corpus's settings but never
    part of it (scans numbered from HELD_OUT_FIRST): more authentic slices than a validation split holds, from
    the same generator, seen by no training or model selection."""
    from .synthetic import KIND_CYCLE, CorpusConfig, synthetic_scan

    cfg = CorpusConfig.from_dir(corpus_dir)
    slices, index = [], HELD_OUT_FIRST
    while len(slices) < n_slices:
        if KIND_CYCLE[index % len(KIND_CYCLE)] in AUTHENTIC_KINDS:
            scan = synthetic_scan(index, cfg)
            slices += [scan.slice(i) for i in sorted(scan.slices)]
        index += 1
    return slices


def calibration_slices(corpus_dir, n_slices: int = SLICES) -> tuple[list[CTSlice], str]:
    """(slices, what they are): the validation split's authentic slices, topped up to `n_slices` with held-out
    ones (`held_out_authentic_slices`)."""
    slices = validation_authentic_slices(corpus_dir)
    extra = held_out_authentic_slices(corpus_dir, n_slices - len(slices)) if len(slices) < n_slices else []
    return slices + extra, (f"authentic synthetic slices of {corpus_dir} ({len(slices)} of its validation split, "
                            f"{len(extra)} of held-out scans)")


def slice_operating_points(model, slices, chosen_on: str, stride: int = 16, rate: float = 0.05,
                           progress: bool = False) -> dict:
    """{'slice': ..., 'relative': ...} operating points (`operating_point.operating_point`) of the best window's
    score and of the slice contrast, over these authentic slices scanned once (slices without lungs are left
    out and not counted)."""
    import numpy as np

    from .operating_point import operating_point
    from .scan import scan_slices

    results = scan_slices(model, slices, stride, progress, "calibration slices")
    if not results:
        raise ValueError(f"none of the {len(slices)} slices of {chosen_on} has lungs to scan")
    where = f"{len(results)} {chosen_on}"
    top = np.array([r.locations[0].score for r in results])
    slice_point = operating_point(top, where, rate)
    slice_point["authentic_scores"] = sorted(top.tolist())  # a series of n slices: `operating_point.series_threshold`
    return {"slice": slice_point, "relative": operating_point(np.array([r.contrast() for r in results]), where, rate)}


def store_slice_operating_points(models: dict, corpus_dir, n_slices: int = SLICES, stride: int = 16,
                                 rate: float = 0.05, progress: bool = False) -> dict:
    """Choose the slice operating points of each saved model ({model path: model}) on the same
    `calibration_slices` of a synthetic corpus, generated once, and store them beside the model file (and on
    `model.operating_point`). Returns {model path: points}; {} for a corpus without corpus.json (real data: there,
    `calibrate --authentic` chooses them on authentic series) or with `n_slices` 0."""
    from .operating_point import save_operating_point

    if n_slices <= 0 or not models:
        return {}
    if not (Path(corpus_dir) / "corpus.json").is_file():
        log.warning("%s holds no generated corpus: no slice operating point stored for %s (run `calibrate "
                    "--authentic`)", corpus_dir, ", ".join(map(str, models)))
        return {}
    slices, chosen_on = calibration_slices(corpus_dir, n_slices)
    out = {}
    for path, model in models.items():
        out[path] = slice_operating_points(model, slices, chosen_on, stride, rate, progress)
        for kind, point in out[path].items():
            save_operating_point(path, kind, point)
        model.operating_point = {**(getattr(model, "operating_point", None) or {}), **out[path]}
    return out
