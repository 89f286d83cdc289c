"""Lung mask of an HU slice: low-density regions inside the body, never the air around the patient."""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

OUTSIDE_FOV_HU = -1500.0  # scanners pad the region outside the reconstruction circle with -2000 / -2048
CENTRE_DEPTH_MM = 2.0  # a patch centre lies at least this deep inside the lungs, in training and in scanning
CLOSE_MM = 5.0  # the lung mask's closing (10 mm takes in pleural nodules but ranked real slices worse: README)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a binary mask: everything not reachable from the border through background."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = padded.copy()
    ff = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff, (0, 0), 1)
    return (padded | (1 - flood)).astype(bool)[1:-1, 1:-1]


def body_mask(hu: np.ndarray) -> np.ndarray:
    """The patient's body with its cavities filled: the largest connected region above -500 HU.

    The scanner table is a separate thin component and the air gap above it is not enclosed by the body,
    so neither ends up inside the mask.
    """
    dense = hu > -500
    labels, n = ndimage.label(dense)
    if n == 0:
        return np.zeros(hu.shape, bool)
    sizes = ndimage.sum_labels(dense, labels, index=np.arange(1, n + 1))
    body = labels == (1 + int(np.argmax(sizes)))
    return fill_holes(body)


def lung_mask(hu: np.ndarray, spacing: float = 0.7, close_mm: float = CLOSE_MM) -> np.ndarray:
    """Boolean lung mask (vessels and nodules inside the lungs included).

    Air components (< -400 HU) inside the filled body that are large (at least 1,500 mm² and a tenth of the
    largest) count as lung; the trachea, bowel gas and air outside the patient do not. A closing of `close_mm`
    takes in juxtapleural nodules and vessels at the lung border.
    """
    hu = np.asarray(hu, dtype=np.float32)
    body = body_mask(hu)
    air = (hu < -400) & (hu > OUTSIDE_FOV_HU) & body
    labels, n = ndimage.label(air)
    if n == 0:
        return np.zeros(hu.shape, bool)
    sizes = ndimage.sum_labels(air, labels, index=np.arange(1, n + 1)) * spacing**2
    keep = np.flatnonzero((sizes >= 1500.0) & (sizes >= 0.1 * sizes.max())) + 1
    lungs = np.isin(labels, keep)
    if not lungs.any():
        return lungs
    radius = max(1, int(round(close_mm / spacing)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    padded = np.pad(lungs.astype(np.uint8), radius)
    lungs = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, disk)[radius:-radius, radius:-radius].astype(bool)
    return fill_holes(lungs) & body


def erode(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Binary erosion by a disk of the given radius (OpenCV)."""
    r = max(1, int(round(radius_px)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.erode(mask.astype(np.uint8), disk).astype(bool)


def patch_centres(lungs: np.ndarray, spacing: float) -> np.ndarray:
    """Where a patch may be centred: the lungs eroded by `CENTRE_DEPTH_MM`. Training draws its authentic and
    tampered points here and the scanner visits the same region, so that no window the scanner judges comes from
    a population the model never saw (a window centred on the lung border is mostly chest wall or mediastinum)."""
    return erode(lungs, CENTRE_DEPTH_MM / spacing)


def cached_lung_mask(sl, key: str = "lungs") -> np.ndarray:
    """The lung mask of a CTSlice, computed once and kept in its meta under `key` (tampering keeps the lungs in
    place)."""
    if key not in sl.meta:
        sl.meta[key] = lung_mask(sl.hu, sl.spacing[1])
    return sl.meta[key]


def sample_lung_points(hu: np.ndarray, lungs: np.ndarray, spacing: float, rng: np.random.Generator, n: int,
                       avoid=(), min_dist_px: float = 48.0, margin: int = 40,
                       clear_boxes=()) -> list[tuple[int, int]]:
    """Up to n lung points (x, y), `min_dist_px` apart and from every point in `avoid`.

    `clear_boxes` holds squares (x, y, half): no point lies less than `half` px from a box centre along both
    axes (Chebyshev distance), e.g. so that a patch centred on the point cannot reach a tampered region.

    Points are drawn where cancers sit as often as in open lung: weights favour pixels within 12 mm of the
    lung border and pixels near dense structures (vessels, nodules), so that authentic points do not differ
    from tampered ones by how much soft tissue surrounds them.
    """
    ppm = 1.0 / spacing
    core = patch_centres(lungs, spacing)
    core[:margin] = False
    core[-margin:] = False
    core[:, :margin] = False
    core[:, -margin:] = False
    cand = np.argwhere(core)
    for cx, cy, half in clear_boxes:
        cand = cand[np.maximum(np.abs(cand[:, 1] - cx), np.abs(cand[:, 0] - cy)) >= half]
    if len(cand) == 0 or n <= 0:
        return []
    edge_mm = cv2.distanceTransform(lungs.astype(np.uint8), cv2.DIST_L2, 5)[cand[:, 0], cand[:, 1]] / ppm
    dense = cv2.blur((hu > -500).astype(np.float32), (int(6 * ppm),) * 2)[cand[:, 0], cand[:, 1]]
    weight = 1.0 + 3.0 * (edge_mm < 12) + 6.0 * dense
    weight /= weight.sum()
    chosen = [tuple(p) for p in avoid]
    out: list[tuple[int, int]] = []
    for idx in rng.choice(len(cand), size=min(len(cand), 40 * n), replace=True, p=weight):
        y, x = cand[idx]
        if all((x - cx) ** 2 + (y - cy) ** 2 >= min_dist_px**2 for cx, cy in chosen):
            chosen.append((int(x), int(y)))
            out.append((int(x), int(y)))
            if len(out) == n:
                break
    return out
