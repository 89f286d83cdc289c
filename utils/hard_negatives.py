"""Hard negatives: the authentic windows a trained patch model scores highest when it scans whole slices.

A scanner judges every window of a slice (`scan.scan_slice`, hundreds per slice) and raises an alarm on the
best one, so a per-window false-alarm rate of a few percent flags nearly every authentic slice. Training patches
are a few sampled points per slice and rarely include the windows a scan finds most suspicious (hilum, airway
walls, the mediastinal border). As sliding-window detectors have long done, the model scans the slices of its own
corpus, the authentic windows it scores highest are collected, and it trains again with them
(`training.run_training`, phase "hard"). Windows come from the corpus's own splits only: training slices for
training, validation slices for model selection; no window reaches a tampered region (`patches.clear_boxes`).
Authentic CT of the user's own scanners needs no label at all, so its windows can join the training ones
(`dicom`): label-free adaptation to a scanner, measured in `benchmarks.hard_negatives --dicom`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .patches import clear_boxes, patch_input


def corpus_slices(corpus_dir, split: str, dicom=()):
    """(slice, boxes) for every slice of the corpus's `split` that a scan may draw authentic windows from:
    the regenerated synthetic scans of that split (boxes: `patches.clear_boxes` around each tampered point) and,
    for the training split, the real background slices as stored and the slices of every folder in `dicom`
    (authentic CT of any scanner, no labels needed; no boxes)."""
    from .synthetic import background_sources, regenerated_scans

    cfg, scans = regenerated_scans(corpus_dir, split, "hard negatives are mined from the scans of a generated corpus")
    for scan in scans:
        for inst in sorted(scan.slices):
            yield scan.slice(inst), clear_boxes(scan, inst, cfg.patch_size)
        scan.release()
    if split == "train":
        for root in [*cfg.background_roots(), *map(Path, dicom)]:
            for _, slices in background_sources(root):
                for sl in slices:
                    yield sl, []


def top_windows(result, boxes, per_slice: int, min_score: float, nms_px: float) -> list[tuple[int, int, float]]:
    """Up to `per_slice` windows (x, y, score) of a scanned slice (`scan.SliceResult`), best first, each scoring at
    least `min_score`, `nms_px` apart, and outside every box (x, y, half) (Chebyshev distance)."""
    from .scan import nms

    points, scores = result.points, result.scores
    keep = scores >= min_score
    for cx, cy, half in boxes:
        keep &= np.maximum(np.abs(points[:, 1] - cx), np.abs(points[:, 0] - cy)) >= half
    idx = np.flatnonzero(keep)
    best = nms(points[idx], scores[idx], nms_px, per_slice) if len(idx) else []
    return [(int(points[idx[i], 1]), int(points[idx[i], 0]), float(scores[idx[i]])) for i in best]


def mine_hard_negatives(model, corpus_dir, split: str = "train", per_slice: int = 2, min_score: float = 0.5,
                        stride: int = 16, nms_px: float = 32.0, progress: bool = True, dicom=()) -> np.ndarray:
    """Scan every slice of the corpus's `split` (`corpus_slices`, with the authentic DICOM folders `dicom` for the
    training split) and return its hard negatives as model inputs
    (N, size, size, 1) in [0, 1], the values a training PNG reads back as (`patches.patch_input`)."""
    from tqdm.auto import tqdm

    from .scan import model_patch_size, scan_slice

    size = model_patch_size(model)
    out = []
    for sl, boxes in tqdm(corpus_slices(corpus_dir, split, dicom), desc=f"mining {split} slices", unit="slice",
                          disable=not progress):
        try:
            res = scan_slice(model, sl, stride=stride, top_k=1)
        except ValueError:  # no lungs deep enough to scan
            continue
        out += [patch_input(sl.hu, x, y, size) for x, y, _ in top_windows(res, boxes, per_slice, min_score, nms_px)]
    return np.stack(out) if out else np.zeros((0, size, size, 1), np.float32)
