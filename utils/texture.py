"""Per-slice texture normalisation: a region is judged against its own slice, not against other scanners.

A scanner's kernel and dose set the noise and fine texture of every region of a slice alike; CT-GAN's
in-painting and touch-up noise change them in one region only. So before any patch is cut, the slice's
fine-detail bands are rescaled to a common level measured on the slice's own lung parenchyma:

    G_s = Gaussian blur of s px;  fine = hu - G_1,  mid = G_1 - G_2,  base = G_2
    normalised = base + fine * clip(REF_fine / sigma_fine) + mid * clip(REF_mid / sigma_mid)

sigma_band is a robust (MAD) spread of the band over parenchyma (eroded lung mask, smooth HU in
[-950, -650], so vessels and nodules hardly count). A noisier or sharper scanner is brought down, a smooth or
resampled one up; a tampered region stays as different from the rest of its slice as it was. Not in the patch
path: applied before every crop (one seed, benchmarks/README.md "How far scanners differ in texture") it lowered the
development-set ROC-AUC, so `band_levels` serves as a measurement (`benchmarks.texture_levels`) only.

Two more measurements of where a slice was resampled (`benchmarks.resampling_traces`): `box_edge_ratio`, the fine
band just inside a touch-up box against just outside it, and `high_band_share`, how much power a slice's lung keeps
near the Nyquist frequency, which CT-GAN's 1 mm round trip removes.
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


def box_edge_ratio(hu: np.ndarray, x: int, y: int, half: int, spacing: float = 0.7,
                   lungs: np.ndarray | None = None, ring: int = 12) -> float | None:
    """The fine band's level (robust spread over parenchyma) in a ring just inside the square of half side `half`
    around (x, y), divided by its level in a ring just outside: about 1 where the box and its surroundings share a
    resampling history, above 1 where the box holds unresampled texture in a resampled slice. None when either
    ring holds too little parenchyma."""
    hu = np.asarray(hu, np.float32)
    lungs = lung_mask(hu, spacing) if lungs is None else lungs
    base, (fine, _) = bands(hu)
    where = parenchyma(base, lungs, spacing)
    yy, xx = np.ogrid[: hu.shape[0], : hu.shape[1]]
    cheb = np.maximum(np.abs(xx - x), np.abs(yy - y))
    inside = where & (cheb >= half - 2 - ring) & (cheb <= half - 2)
    outside = where & (cheb >= half + 2) & (cheb <= half + 2 + ring)
    if inside.sum() < 50 or outside.sum() < 50:
        return None
    return robust_sigma(fine[inside]) / max(robust_sigma(fine[outside]), 1e-3)


def high_band_share(hu: np.ndarray, spacing: float = 0.7, lungs: np.ndarray | None = None, avoid=(),
                    clear: int = 48, size: int = 32, band=(0.4, 0.5), reference=(0.1, 0.2)) -> float | None:
    """Mean power in `band` (cycles/px) relative to `reference`, over Hann-windowed `size` px squares of lung
    parenchyma (every 16 px, more than `clear` px, Chebyshev, from every point of `avoid`). A 1 mm spline round trip
    of a slice finer than 1 mm removes most power above 0.5 * spacing cycles/px. None with fewer than 4 squares."""
    hu = np.asarray(hu, np.float32)
    lungs = lung_mask(hu, spacing) if lungs is None else lungs
    core = erode(lungs, size / 2 + 4)
    window = np.outer(np.hanning(size), np.hanning(size))
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    power, n = np.zeros((size, size)), 0
    for y, x in np.argwhere(core[::16, ::16]) * 16:
        if any(max(abs(x - ax), abs(y - ay)) <= clear for ax, ay in avoid):
            continue
        square = hu[y - size // 2 : y + size // 2, x - size // 2 : x + size // 2]
        if square.shape != (size, size) or square.max() > -500:  # parenchyma only, no vessel or wall
            continue
        power += np.abs(np.fft.fft2((square - square.mean()) * window)) ** 2
        n += 1
    if n < 4:
        return None
    mean = lambda lo, hi: float(power[(freq >= lo) & (freq < hi)].mean())  # noqa: E731
    return mean(*band) / max(mean(*reference), 1e-9)
