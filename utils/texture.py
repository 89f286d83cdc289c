"""Per-slice texture normalisation: a region is judged against its own slice, not against other scanners.

A scanner's kernel and dose set the noise and fine texture of every region of a slice alike; CT-GAN's
in-painting and touch-up noise change them in one region only. So before any patch is cut, the slice's
fine-detail bands are rescaled to a common level measured on the slice's own lung parenchyma:

    G_s = Gaussian blur of s px;  fine = hu - G_1,  mid = G_1 - G_2,  base = G_2
    normalised = base + fine * clip(REF_fine / sigma_fine) + mid * clip(REF_mid / sigma_mid)

sigma_band is a robust (MAD) spread of the band over parenchyma (eroded lung mask, smooth HU in
[-950, -650], so vessels and nodules hardly count). A noisier or sharper scanner is brought down, a smooth or
resampled one up; a tampered region stays as different from the rest of its slice as it was. Every path that
cuts patches (synthetic corpus, real backgrounds, CT-GAN data set, authentic CT, scanning) calls `normalise`
on the whole slice first, so training and use see the same input.
"""
from __future__ import annotations

import cv2
import numpy as np

from .lungmask import erode, lung_mask

VERSION = "slice-bands-v1"  # stored with a model: the input convention it was trained on
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


def parenchyma(hu: np.ndarray, base: np.ndarray, lungs: np.ndarray, spacing: float) -> np.ndarray:
    """Lung pixels away from the pleura whose smooth HU is that of parenchyma (not vessel, nodule or airway)."""
    core = erode(lungs, 3.0 / spacing)
    return core & (base > PARENCHYMA_HU[0]) & (base < PARENCHYMA_HU[1])


def robust_sigma(values: np.ndarray) -> float:
    values = np.asarray(values, np.float32)
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def band_levels(hu: np.ndarray, spacing: float = 0.7, lungs: np.ndarray | None = None) -> list[float] | None:
    """The slice's robust spread of each band over its parenchyma (HU), or None when it has too little lung."""
    hu = np.asarray(hu, np.float32)
    lungs = lung_mask(hu, spacing) if lungs is None else lungs
    base, detail = bands(hu)
    where = parenchyma(hu, base, lungs, spacing)
    if where.sum() < MIN_PARENCHYMA_PX:
        return None
    return [robust_sigma(b[where]) for b in detail]


def normalise(hu: np.ndarray, spacing: float = 0.7, lungs: np.ndarray | None = None) -> np.ndarray:
    """The slice with its fine and mid bands brought to the reference levels (float32 HU, same shape).

    A slice with too little parenchyma to measure (no lungs, a sliver at the apex) is returned unchanged.
    """
    hu = np.asarray(hu, np.float32)
    lungs = lung_mask(hu, spacing) if lungs is None else lungs
    base, detail = bands(hu)
    where = parenchyma(hu, base, lungs, spacing)
    if where.sum() < MIN_PARENCHYMA_PX:
        return hu
    out = base
    for band, ref in zip(detail, REFERENCE):
        level = max(robust_sigma(band[where]), 1e-3)
        out = out + band * float(np.clip(ref / level, *GAIN_RANGE))
    return out.astype(np.float32)


def normalised_slice(sl) -> np.ndarray:
    """`normalise` of a CTSlice (its own spacing and lung mask)."""
    from .lungmask import cached_lung_mask

    return normalise(sl.hu, sl.spacing[1], cached_lung_mask(sl))
