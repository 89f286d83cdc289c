"""CT-GAN-style tampering of any authentic HU slice: inject or remove a nodule.

Follows the steps of CT-GAN's attack pipeline (Mirsky et al. 2019) in the slice plane: the slice goes through
a round trip to a 1 mm grid (spline interpolation, which smooths it), the inner ~20 mm of a 32 mm cube around
each target is in-painted (a nodule drawn in, or the lung texture continued over a nodule), the in-painted cube
is resampled like the rest, then a noise touch-up (noise copied from a fixed lung location of the same slice,
or fresh interpolated Gaussian noise; 'none' only when asked for) and CT-GAN's blends (density-sigmoid x
Gaussian window for an injection, a wide bowl-shaped window for a removal) put it back into the original slice.

The generator here is not CT-GAN's GAN: it is an emulation of the traces the pipeline leaves.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from scipy import ndimage
from scipy.special import expit, ndtr

from .anatomy import blur
from .lungmask import erode, lung_mask, sample_lung_points
from .texture import robust_sigma

CUBE_MM = 32.0  # CT-GAN cuts a 32 mm cube around the target ...
HOLE_MM = 20.0  # ... and in-paints its inner 20 mm (voxels 6..26)
TOUCHUP_PX = 64  # noise and blend act on 2x the cube in voxels of the original grid
INJECT_RADIUS_MM = (4.5, HOLE_MM / 2)  # uniform: nodules of 9-20 mm, what an attacker's cancer and the hole hold


def footprint_half_px(spacing: float) -> float:
    """Half the side, in pixels, of the square that tampering at a point rewrites: the touch-up region
    (TOUCHUP_PX on the slice's own grid) or the pasted cube (CUBE_MM), whichever is larger at this spacing."""
    return max(TOUCHUP_PX / 2, CUBE_MM / 2 / spacing)


# A removal's in-painted lung: capped at U(lo, hi) HU above the surrounding lung level, plus a haze of U(lo, hi) HU
# (level_lo, level_hi, haze_lo, haze_hi). These leave the centre of a removal 49 HU [28, 77] (median [quartiles])
# above the lung around it, where CT-GAN's remover leaves 29 [14, 46] on the development sample; (0, 40, 0, 15)
# gives 32 [14, 56] but transferred worse (benchmarks/README.md, "A removal's haze"; benchmarks.removal_haze).
REMOVAL_HAZE = (10.0, 70.0, 0.0, 25.0)

# CT-GAN's remover synthesises the hole's lung texture itself, without knowing the scanner: on the development
# sample the fine band inside its removals keeps a level of its own (about 21 HU robust spread) whatever the
# surrounding lung's, smoother than a noisy slice, rougher than a quiet one (benchmarks/README.md, "A removal's own
# texture"; benchmarks.removal_haze). A corpus setting (`CorpusConfig.removal_texture`): off by default.
REMOVAL_TEXTURE_HU = (12.0, 30.0)

NOISE_MODES = ("copy", "gauss", "none")
# CT-GAN's touch-ups are copied noise (its default) or interpolated Gaussian noise. A 'none' share of 0.15 was
# measured (benchmarks/README.md, "The touch-up noise modes") and hurt transfer to real removals, so it is 0; the
# mode stays for measurements (`synth --noise-mode-p`).
NOISE_MODE_P = (0.6, 0.25, 0.0)


@dataclass
class TamperRecord:
    """One tampered location: centre (x = column, y = row) in slice pixels, radius of the in-painted region in
    pixels, action ('inject' or 'remove'), and the touch-up settings used."""

    x: int
    y: int
    radius: float
    action: str
    noise: str
    nodule_radius: float = 0.0



def resample_roundtrip(hu: np.ndarray, spacing: float) -> np.ndarray:
    """Resample to a 1 mm grid and back with cubic splines, as CT-GAN does with the whole scan."""
    small = ndimage.zoom(hu, spacing, order=3, mode="nearest")
    back = ndimage.zoom(small, (hu.shape[0] / small.shape[0], hu.shape[1] / small.shape[1]), order=3,
                        mode="nearest")
    return back[: hu.shape[0], : hu.shape[1]].astype(np.float32)


@lru_cache(maxsize=64)
def _window01(n: int, nsig: float) -> np.ndarray:
    """CT-GAN's blend window: a 2-D Gaussian over n x n pixels spanning +-nsig sigmas, rescaled to [0, 1]."""
    edges = np.linspace(-nsig - (2 * nsig + 1) / n / 2, nsig + (2 * nsig + 1) / n / 2, n + 1)
    g = np.diff(ndtr(edges))
    k = np.sqrt(np.outer(g, g))
    return ((k - k.min()) / (k.max() - k.min())).astype(np.float32)


def _box(x: int, y: int, half: int, shape) -> tuple[slice, slice]:
    return (slice(max(y - half, 0), min(y + half, shape[0])), slice(max(x - half, 0), min(x + half, shape[1])))


def _copied_noise(original: np.ndarray, lungs: np.ndarray) -> np.ndarray:
    """Noise cut from CT-GAN's fixed location (43% down, 27% across) or, if no lung is there, the nearest lung."""
    h, w = original.shape
    half = TOUCHUP_PX // 2
    y, x = int(h * 0.43), int(w * 0.27)
    if lungs[_box(x, y, half, original.shape)].mean() < 0.5:
        inner = np.argwhere(erode(lungs, 12))
        if len(inner):
            y, x = inner[np.argmin((inner[:, 0] - y) ** 2 + (inner[:, 1] - x) ** 2)]
    y, x = int(np.clip(y, half, h - half)), int(np.clip(x, half, w - half))
    cube = original[y - half : y + half, x - half : x + half].copy()
    low = cube < -800
    if low.sum() < 16:
        return np.zeros_like(cube)
    cube[~low] = cube[low].mean()
    return cube - cube.mean()


def _gauss_noise(rng, std_local: float, std: float) -> np.ndarray:
    corr = max(1.0, 1.3 * 60.0 / max(std_local, 1.0))
    n = int(np.ceil(TOUCHUP_PX / corr)) + 2
    coarse = rng.standard_normal((n, n)).astype(np.float32) * std
    fine = ndimage.zoom(coarse, corr, order=3, mode="nearest")
    return fine[:TOUCHUP_PX, :TOUCHUP_PX]


def _nodule(rng, half: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """A CT-GAN-like injected nodule: round, near-uniform, sharp edged, with fine bright grain."""
    yy, xx = np.mgrid[-half:half, -half:half].astype(np.float32) + rng.uniform(-0.5, 0.5, 2)[:, None, None]
    theta, dist = np.arctan2(yy, xx), np.hypot(yy, xx)
    edge = radius * (1 + sum(rng.uniform(0, 0.05) * np.cos(k * theta + rng.uniform(0, 6.3)) for k in (2, 3, 5)))
    frac = expit(-((dist - edge) / rng.uniform(0.4, 0.8)))
    grain = blur(rng.standard_normal(frac.shape).astype(np.float32), 0.7) * rng.uniform(40, 90)
    value = rng.uniform(-30, 60) + grain + 40 * (1 - dist / max(edge.max(), 1)) * rng.uniform(0, 1)
    return frac.astype(np.float32), value.astype(np.float32)


def _inpaint_remove(rng, region: np.ndarray, lungs: np.ndarray, hole: np.ndarray, texture: np.ndarray,
                    haze_hu: tuple = REMOVAL_HAZE):
    """Continue the lung over the hole: smooth in-paint of the surroundings, a faint haze (`REMOVAL_HAZE`), weak
    fine texture.

    Only lung pixels are in-painted, so the chest wall and mediastinum stay sharp.
    """
    target = (hole > 0.01) & lungs
    if not target.any():
        return region
    known = np.where(target, np.nan, region)
    fill_mask = target.astype(np.uint8)
    src = np.nan_to_num(known, nan=-850.0).astype(np.float32)
    src = np.clip(src, -1024, 400)
    smooth = cv2.inpaint(((src + 1024) * 40).astype(np.uint16), fill_mask, 6, cv2.INPAINT_TELEA)
    smooth = smooth.astype(np.float32) / 40 - 1024
    lung_level = float(np.median(region[lungs & ~target])) if (lungs & ~target).any() else -850.0
    smooth = np.minimum(blur(smooth, 2.0), lung_level + rng.uniform(haze_hu[0], haze_hu[1]))
    haze = rng.uniform(haze_hu[2], haze_hu[3]) * hole
    filled = smooth + haze + texture * rng.uniform(0.5, 1.0)
    weight = hole * lungs
    return region * (1 - weight) + filled * weight


def set_fine_level(hu: np.ndarray, x: int, y: int, half: int, lungs: np.ndarray, level: float) -> np.ndarray:
    """Rescale the fine band (HU minus its 1 px blur) of the airy lung (< -500 HU smoothed) in the square of half
    side `half` around (x, y) so that its robust spread is `level` HU, fading out over the square's edge like the
    in-painted hole; in place, and returned. Left as it is with too little airy lung there."""
    box = _box(x, y, half + int(np.ceil(half / 2)), hu.shape)
    yy, xx = np.mgrid[box[0], box[1]]
    inner = (np.abs(yy - y) <= half) & (np.abs(xx - x) <= half)
    weight = blur(inner.astype(np.float32), 0.25 * half)
    region = hu[box]
    airy = lungs[box] & (blur(region, 1.0) < -500)
    if (inner & airy).sum() < 30:
        return hu
    for _ in range(3):  # the blurred part keeps some of the old fine band: a few rescalings converge on the level
        base = blur(region, 1.0)
        fine = region - base
        gain = level / max(robust_sigma(fine[inner & airy]), 1e-3)
        region = base + fine * (1 + (gain - 1) * weight * airy)
    hu[box] = region
    return hu


def tamper_slice(hu: np.ndarray, spacing: float, targets: list[tuple[int, int, str]], rng: np.random.Generator,
                 difficulty: float = 0.5, lungs: np.ndarray | None = None,
                 noise_mode: str | None = None, resample_whole: bool = True,
                 noise_mode_p: tuple = NOISE_MODE_P,
                 removal_haze: tuple = REMOVAL_HAZE,
                 removal_texture: tuple = ()) -> tuple[np.ndarray, list[TamperRecord]]:
    """Tamper one authentic HU slice at each (x, y, action) target, action 'inject' or 'remove'.

    Args:
        hu: authentic slice in HU (any size; real or synthetic).
        spacing: pixel spacing in mm.
        targets: (x, y, action) per location; locations should be at least a cube apart.
        rng: random generator.
        difficulty: 0..1; 0.5 reproduces CT-GAN's touch-up settings, lower leaves cruder traces (stronger
            noise mismatch, sharper blend), higher subtler ones.
        lungs: lung mask of `hu` (computed when omitted).
        noise_mode: 'copy', 'gauss' or 'none'; drawn per location (CT-GAN's default 'copy' most often) when None.
        noise_mode_p: probabilities of 'copy', 'gauss' and 'none' for that draw.
        removal_haze: (level_lo, level_hi, haze_lo, haze_hi) HU of a removal's in-painted lung (`REMOVAL_HAZE`).
        removal_texture: (lo, hi) HU: after the touch-ups, the fine band of a removal's in-painted lung is set to a
            robust spread drawn from U(lo, hi), whatever the slice's own (`REMOVAL_TEXTURE_HU`); () leaves it as the
            in-painting and touch-ups made it.
        resample_whole: put the whole slice through the 1 mm round trip, as CT-GAN does with the whole scan. False
            for a slice that CT-GAN already resampled (its own output, `dicom.written_by_ctgan`): only the
            in-painted cubes are resampled, so nothing is smoothed twice.

    Returns:
        The tampered slice (float32 HU, whole slice resampled as CT-GAN does) and one record per location.
    """
    original = np.asarray(hu, dtype=np.float32)
    lungs = lung_mask(original, spacing) if lungs is None else lungs
    mal = resample_roundtrip(original, spacing) if resample_whole else original.copy()
    ppm = 1.0 / spacing
    hole_half = int(round(HOLE_MM / 2 * ppm))
    cube_half = int(round(CUBE_MM / 2 * ppm))
    half = TOUCHUP_PX // 2
    gain = 1.5 - float(np.clip(difficulty, 0, 1))
    texture_src = original - blur(original, 1.5)
    records = []

    # 1) in-paint every cube, then resample the in-painted content like the rest of the scan
    for x, y, action in targets:
        box = _box(x, y, cube_half, original.shape)
        region = mal[box].copy()
        yy, xx = np.mgrid[box[0], box[1]]
        square = (np.abs(yy - y) <= hole_half) & (np.abs(xx - x) <= hole_half)
        hole = blur(square.astype(np.float32), 0.25 * hole_half)  # the GAN fills in context: no seam
        if action == "inject":
            r = rng.uniform(*INJECT_RADIUS_MM) * ppm
            frac, value = _nodule(rng, cube_half, r)
            frac, value = frac[: region.shape[0], : region.shape[1]], value[: region.shape[0], : region.shape[1]]
            regen = region * 0.6 + blur(region, 1.0) * 0.4
            filled = np.maximum(regen, regen * (1 - frac) + value * frac)
            region = region * (1 - hole) + filled * hole
        elif action == "remove":
            shift = rng.integers(-40, 40, 2)
            texture = np.roll(texture_src, tuple(shift), axis=(0, 1))[box]
            region = _inpaint_remove(rng, region, lungs[box], hole, texture * (lungs[box]), removal_haze)
            r = 0.0
        else:
            raise ValueError(f"unknown tamper action {action!r}: use 'inject' or 'remove'")
        mal[box] = region
        records.append([x, y, action, r])
    if targets:
        for x, y, _ in targets:
            box = _box(x, y, cube_half + 4, original.shape)
            mal[box] = resample_roundtrip(mal[box], spacing)

    # 2) touch-ups: noise, then blend the 64 px region back into the original
    copy_noise = None
    out = mal
    results = []
    for x, y, action, r in records:
        box = _box(x, y, half, original.shape)
        ben, bad = original[box], out[box].copy()
        mode = noise_mode or str(rng.choice(NOISE_MODES, p=np.asarray(noise_mode_p, float) / sum(noise_mode_p)))
        local = original[_box(x, y, cube_half, original.shape)]
        local_lung = local[local < -600]
        std_local = float(local_lung.std()) if local_lung.size > 8 else 30.0
        if mode == "copy":
            if copy_noise is None:
                copy_noise = _copied_noise(original, lungs)
            noise = copy_noise
        elif mode == "gauss":
            noise = _gauss_noise(rng, std_local, 0.6 * std_local if action == "inject" else 30.0)
        else:
            noise = np.zeros((TOUCHUP_PX, TOUCHUP_PX), np.float32)
        bad = bad + gain * noise[: bad.shape[0], : bad.shape[1]]
        if action == "inject":
            window = _window01(TOUCHUP_PX, round(3.0 * (0.5 + difficulty), 3))[: bad.shape[0], : bad.shape[1]]
            factor = expit((bad + 700) / 70) * window
            final = np.maximum(bad * factor + ben * (1 - factor), ben)
        else:
            window = _window01(TOUCHUP_PX, round(0.1 + 0.4 * difficulty, 3))[: bad.shape[0], : bad.shape[1]]
            final = bad * window + ben * (1 - window)
        out[box] = final
        if action == "remove" and removal_texture:
            set_fine_level(out, x, y, hole_half, lungs, float(rng.uniform(*removal_texture)))
        results.append(TamperRecord(int(x), int(y), float(hole_half), action, mode, float(r)))
    out = np.rint(np.clip(out, -1000, 3071)) * (original > -1500) + original * (original <= -1500)
    return out.astype(np.float32), results


def pick_targets(hu: np.ndarray, lungs: np.ndarray, spacing: float, rng: np.random.Generator, n: int,
                 avoid=(), min_dist_mm: float = 40.0, clear_px: float = 0.0):
    """Lung locations where CT-GAN's users put cancers (near the pleura and vessels), a cube apart.

    With `clear_px`, every point's footprint stays at least that far (Chebyshev, in px) from each point of
    `avoid`, so that a patch around an avoided point (an authentic nodule) is not touched.
    """
    half = int(np.ceil(footprint_half_px(spacing) + clear_px))
    boxes = [(x, y, half) for x, y in avoid] if clear_px else ()
    return sample_lung_points(hu, lungs, spacing, rng, n, avoid=avoid, min_dist_px=min_dist_mm / spacing,
                              margin=TOUCHUP_PX // 2 + 8, clear_boxes=boxes)
