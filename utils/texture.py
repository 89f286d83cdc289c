"""Per-slice texture normalisation: a region is judged against its own slice, not against other scanners.

A scanner's kernel and dose set the noise and fine texture of every region of a slice alike; CT-GAN's
in-painting and touch-up noise change them in one region only. So before any patch is cut, the slice's
fine-detail bands are rescaled to a common level measured on the slice's own lung parenchyma:

    G_s = Gaussian blur of s px;  fine = hu - G_1,  mid = G_1 - G_2,  base = G_2
    normalised = base + fine * clip(REF_fine / sigma_fine) + mid * clip(REF_mid / sigma_mid)

sigma_band is a robust (MAD) spread of the band over parenchyma (eroded lung mask, smooth HU in
[-950, -650], so vessels and nodules hardly count). A noisier or sharper scanner is brought down, a smooth or
resampled one up; a tampered region stays as different from the rest of its slice as it was. Not in the patch
path: applied before every crop (one seed, README "How far scanners differ in texture") it lowered the
development-set ROC-AUC, so `band_levels` serves as a measurement (`benchmarks.texture_levels`) only.
"""
from __future__ import annotations

import cv2
import numpy as np

from .lungmask import erode, lung_mask

SCALES = (1.0, 2.0)  # Gaussian sigmas (px) that split the slice into fine, mid and base bands
REFERENCE = (12.0, 12.0)  # HU: the level each band is brought to (the shipped B40f backgrounds' medians, ~11.6 / 11.7)
GAIN_RANGE = (1 / 8, 3.0)  # a slice's band is scaled by no less / no more than this
PARENCHYMA_HU = (-950.0, -650.0)
MIN_PARENCHYMA_PX = 500


def _blur(hu: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(hu, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def bands(hu: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """(base, [fine, mid]) with base + fine + mid == hu (float32)."""
    hu = np.asarray(hu, np.float32)
    blurred = [hu] + [_blur(hu, s) for s in SCALES]
    return blurred[-1], [blurred[i] - blurred[i + 1] for i in range(len(SCALES))]


def parenchyma(base: np.ndarray, lungs: np.ndarray, spacing: float) -> np.ndarray:
    """Lung pixels away from the pleura whose smooth HU is that of parenchyma (not vessel, nodule or airway)."""
    core = erode(lungs, 3.0 / spacing)
    return core & (base > PARENCHYMA_HU[0]) & (base < PARENCHYMA_HU[1])


def robust_sigma(values: np.ndarray) -> float:
    values = np.asarray(values, np.float32)
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _measure(hu: np.ndarray, spacing: float, lungs: np.ndarray | None):
    """(base, detail bands, their levels over the parenchyma), levels None when there is too little lung."""
    lungs = lung_mask(hu, spacing) if lungs is None else lungs
    base, detail = bands(hu)
    where = parenchyma(base, lungs, spacing)
    if where.sum() < MIN_PARENCHYMA_PX:
        return base, detail, None
    return base, detail, [robust_sigma(b[where]) for b in detail]


def band_levels(hu: np.ndarray, spacing: float = 0.7, lungs: np.ndarray | None = None) -> list[float] | None:
    """The slice's robust spread of each band over its parenchyma (HU), or None when it has too little lung."""
    return _measure(np.asarray(hu, np.float32), spacing, lungs)[2]


def normalise(hu: np.ndarray, spacing: float = 0.7, lungs: np.ndarray | None = None) -> np.ndarray:
    """The slice with its fine and mid bands brought to the reference levels (float32 HU, same shape).

    A slice with too little parenchyma to measure (no lungs, a sliver at the apex) is returned unchanged.
    """
    hu = np.asarray(hu, np.float32)
    base, detail, levels = _measure(hu, spacing, lungs)
    if levels is None:
        return hu
    out = base
    for band, ref, level in zip(detail, REFERENCE, levels):
        out = out + band * float(np.clip(ref / max(level, 1e-3), *GAIN_RANGE))
    return out.astype(np.float32)
