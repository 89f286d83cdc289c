"""Slice operating points: thresholds for `scan`'s slice scores, chosen on whole authentic slices.

A patch threshold flags a stated share of authentic *patches*. `scan` judges a slice by the best of its hundreds
of windows, and that maximum crosses a patch threshold on most authentic slices. So a slice score gets thresholds
of its own, chosen on authentic slices scanned exactly as `scan` scans them (`utils.operating_point` stores them):

- `slice`: the best window's score, which `scan` and `scan-archive` use;
- `relative`: the best window's score minus the slice's median, for `scan --relative`.

Training chooses both on authentic synthetic slices no model was trained on or selected with: the validation
split's authentic scans, topped up with authentic scans of the same generator and settings that the corpus never
drew (`held_out_scans`), generated one at a time. `calibrate --authentic DIR ...` chooses them on a site's own
authentic series instead, which then replace the synthetic choice.
"""
from __future__ import annotations

import logging
from itertools import chain
from pathlib import Path

import numpy as np

from .operating_point import STRIDE

SLICES = 200  # authentic slices a threshold is chosen on: 1% of them is two slices
HELD_OUT_SLICES = 1  # slices per held-out scan: many scanners and patients rather than many slices of few
HELD_OUT_FIRST = 1_000_000  # number of the first held-out synthetic scan: far beyond any corpus's own scans
AUTHENTIC_KINDS = ("TB", "TM")

log = logging.getLogger(__name__)


def _tagged(sl, series: str):
    """The slice with the series it belongs to in its meta (`operating_point.series_spread`)."""
    sl.meta["series"] = series
    return sl


def _slices(scans):
    for scan in scans:
        for i in sorted(scan.slices):
            yield _tagged(scan.slice(i), scan.key)


def validation_scans(corpus_dir):
    """The validation split's authentic (TB/TM) synthetic scans, regenerated from corpus.json one at a time while
    iterating (a corpus is reproducible from its seed, so no slice needs to be stored)."""
    from .synthetic import regenerated_scans

    return regenerated_scans(corpus_dir, "val", "slice calibration regenerates the validation scans of a synthetic "
                             "corpus; for other data pass authentic series (`calibrate --authentic`)",
                             kinds=AUTHENTIC_KINDS)[1]


def held_out_scans(corpus_dir, n_scans: int, slices_per_scan: int | None = None):
    """`n_scans` authentic (TB/TM) synthetic scans drawn with the corpus's settings but never part of it (numbered
    from HELD_OUT_FIRST), generated one at a time while iterating: more authentic slices than a validation split
    holds, from the same generator, seen by no training or model selection; `slices_per_scan` of them each (the
    corpus's number when None)."""
    from dataclasses import replace

    from .synthetic import KIND_CYCLE, CorpusConfig, ScanSequence

    cycle = [i for i, kind in enumerate(KIND_CYCLE) if kind in AUTHENTIC_KINDS]
    indices = [HELD_OUT_FIRST + len(KIND_CYCLE) * (k // len(cycle)) + cycle[k % len(cycle)] for k in range(n_scans)]
    cfg = CorpusConfig.from_dir(corpus_dir)
    return ScanSequence(indices, cfg if slices_per_scan is None else replace(cfg, slices_per_scan=slices_per_scan))


def calibration_slices(corpus_dir, n_slices: int = SLICES, per_scan: int = HELD_OUT_SLICES):
    """(slices, how many, what they are): the validation split's authentic slices, topped up to at least
    `n_slices` with `per_scan` slices each of held-out scans (`held_out_scans`); the slices are generated while
    iterating. Slices of one scan share its scanner and anatomy and score alike, so a threshold rests on scans
    more than on slices (`operating_point.series_spread`): few slices of many scans pin it down best."""
    if per_scan < 1:
        raise ValueError(f"slices per held-out scan must be at least 1, got {per_scan}")
    val = validation_scans(corpus_dir)
    n_val = len(val) * val.cfg.slices_per_scan
    extra = held_out_scans(corpus_dir, max(0, -(-(n_slices - n_val) // per_scan)), per_scan)
    n_extra = len(extra) * per_scan
    return (chain(_slices(val), _slices(extra)), n_val + n_extra,
            f"authentic synthetic slices of {corpus_dir} ({n_val} slices of {len(val)} scans of its validation split, "
            f"{n_extra} slices of {len(extra)} held-out scans)")


def background_slices(corpus_dir, copies: int):
    """(slices, how many, what they are): the slices of `copies` authentic copies of each real background series of
    a corpus (`synthetic.background_copy`, numbered from HELD_OUT_FIRST, far beyond the corpus's own copies): real
    anatomy under scanner variations no model saw, though the anatomy itself is the one the models trained on. Each
    copy is a series of its own (`operating_point.series_spread`); the slices are generated while iterating."""
    from .synthetic import CorpusConfig, background_copy, background_sources

    if copies < 1:
        raise ValueError(f"copies of each background series must be at least 1, got {copies}")
    cfg = CorpusConfig.from_dir(corpus_dir)
    sources = [(source, slices) for root in cfg.background_roots() for source, slices in background_sources(root)]
    if not sources:
        raise ValueError(f"{corpus_dir}: the corpus has no real backgrounds to copy")

    def generate():
        for source, slices in sources:
            for k in range(copies):
                copy = HELD_OUT_FIRST + k  # below authentic_copies(2 * (copy + 1)): an authentic (TB) copy
                scan = background_copy(source, slices, cfg, copy, 2 * (copy + 1))[1]
                yield from (_tagged(scan.slice(i), f"{source}/copy-{copy}") for i in sorted(scan.slices))

    n = sum(len(slices) for _, slices in sources) * copies
    return generate(), n, (f"authentic slices of {copies} held-out copies of each real background series of "
                           f"{corpus_dir} ({len(sources)} series)")


def site_slices(roots) -> list:
    """The slices of authentic DICOM under each root (`calibrate --authentic`): series folders or single files,
    or of a CT-GAN data set only its untouched scans (no FM/FB label row), since its tampered scans are no
    authentic reference."""
    from .ctgan import find_layout, load_dataset
    from .synthetic import background_sources

    slices = []
    for root in roots:
        try:
            find_layout(root)
        except FileNotFoundError:
            slices += [_tagged(sl, f"{root}/{source}") for source, series in background_sources(root) for sl in series]
            continue
        untouched = [scan for scan in load_dataset(root) if scan.slices and not any(r.tampered for r in scan.labels)]
        if not untouched:
            raise ValueError(f"{root}: a CT-GAN data set without untouched scans (TB/TM only) holding slices: "
                             "nothing authentic to choose a slice threshold on")
        slices += [_tagged(scan.slice(i), f"{root}/{scan.key}") for scan in untouched for i in sorted(scan.slices)]
    return slices


def slice_scores(models: list, slices, stride: int | None = STRIDE, progress: bool = False, total: int | None = None,
                 symmetries: int = 1):
    """(best window's scores, slice contrasts, series, fine-band levels) of every model over these slices
    (`scan.scan_each`: each slice scanned by every model in turn, so that the slices can be generated one at a
    time; slices without lungs are left out), each window's score averaged over `symmetries` of the square's flips
    and turns, on a grid `stride` px apart (None: each model's stored stride); series: the series each slice
    belongs to (its meta's 'series', else its own path or position); levels: each slice's
    `scan.SliceResult.fine_band` (nan where too little parenchyma)."""
    from .scan import scan_each

    top, contrast, series, levels = [[] for _ in models], [[] for _ in models], [], []
    for sl, results in scan_each(models, slices, stride, progress, "calibration slices", total, symmetries):
        series.append(str(sl.meta.get("series") or sl.path or len(series)))
        levels.append(np.nan if results[0].fine_band is None else results[0].fine_band)
        for k, res in enumerate(results):
            top[k].append(res.locations[0].score)
            contrast[k].append(res.contrast())
    return [(np.array(t), np.array(c), np.array(series), np.array(levels)) for t, c in zip(top, contrast)]


def operating_points(top, contrast, chosen_on: str, rate: float = 0.05, symmetries: int = 1, series=None,
                     stride: int = STRIDE, levels=None) -> dict:
    """{'slice': ..., 'relative': ...} operating points (`operating_point.operating_point`) of the best window's
    scores and slice contrasts of authentic slices scanned at `stride`; the slice point keeps the scores for series
    thresholds. Both record the stride, and slices scanned with `symmetries` > 1 record that too; `scan` then scans
    so (`operating_point.model_stride`, `model_symmetries`). With
    the `series` of the slices, each point also says how far it rests on a few series
    (`operating_point.series_spread`)."""
    from .operating_point import operating_point, series_spread

    if not len(top):
        raise ValueError(f"none of the {chosen_on} has lungs to scan")
    where = f"{len(top)} {chosen_on}"
    slice_point = operating_point(top, where, rate)
    slice_point["authentic_scores"] = sorted(np.asarray(top).tolist())  # `operating_point.series_threshold`
    points = {"slice": slice_point, "relative": operating_point(contrast, where, rate)}
    if series is not None:
        for point, scores in ((points["slice"], top), (points["relative"], contrast)):
            point.update(series_spread(scores, series, rate))
    levels = np.asarray([] if levels is None else levels, np.float64)
    if np.isfinite(levels).any():  # `operating_point.texture_note`: how loud the slices it was chosen on were
        points["slice"]["fine_band"] = np.nanquantile(levels, (0.05, 0.5, 0.95)).round(2).tolist()
    for point in points.values():
        point["stride"] = int(stride)
        if symmetries > 1:
            point["symmetries"] = int(symmetries)
    return points


def store_slice_operating_points(models: dict, corpus_dir, n_slices: int = SLICES, stride: int = STRIDE,
                                 rate: float = 0.05, progress: bool = False, symmetries: int = 1) -> dict:
    """Choose the slice operating points of each saved model ({model path: model}) on the same
    `calibration_slices` of a synthetic corpus, generated once and one at a time, and store them beside the model
    file (and on `model.operating_point`). Returns {model path: points}; {} for a corpus without corpus.json (real
    data: there, `calibrate --authentic` chooses them on authentic series) or with `n_slices` 0."""
    from .operating_point import save_operating_point

    if n_slices <= 0 or not models:
        return {}
    if not (Path(corpus_dir) / "corpus.json").is_file():
        log.warning("%s holds no generated corpus: no slice operating point stored for %s (run `calibrate "
                    "--authentic`)", corpus_dir, ", ".join(map(str, models)))
        return {}
    slices, total, chosen_on = calibration_slices(corpus_dir, n_slices)
    scores = slice_scores(list(models.values()), slices, stride, progress, total, symmetries)
    out = {}
    for (path, model), (top, contrast, series, levels) in zip(models.items(), scores):
        out[path] = operating_points(top, contrast, chosen_on, rate, symmetries, series, stride, levels)
        for kind, point in out[path].items():
            save_operating_point(path, kind, point)
        model.operating_point = {**(getattr(model, "operating_point", None) or {}), **out[path]}
    return out
