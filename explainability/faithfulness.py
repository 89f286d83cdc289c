"""How often does a map point at the tampered region? Pointing game, energy in region, deletion / insertion.

All functions take maps and regions as arrays; the model is only needed for deletion / insertion.
"""
from __future__ import annotations

import numpy as np


def region_mask(shape, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def pointing_hit(saliency: np.ndarray, region: np.ndarray) -> bool:
    """True when the map's maximum (the first in raster order, for ties) lies inside the region."""
    return bool(region.flat[int(np.argmax(saliency))])


def energy_ratio(saliency: np.ndarray, region: np.ndarray) -> float:
    """Share of the map's mass inside the region divided by the region's area share (1 = no better than flat)."""
    s = np.clip(np.asarray(saliency, np.float64), 0, None)
    total = s.sum()
    if total <= 0 or not region.any():
        return 1.0
    return float((s[region].sum() / total) / region.mean())


def _perturbation_curve(model, image, saliency, steps, delete: bool, neutral: float | None):
    img = np.asarray(image, np.float32)
    # a pair (patch, reference window) perturbs the patch only: the map explains the patch
    channels = slice(0, 1) if img.shape[-1] == 2 else slice(None)
    neutral = float(img[..., channels].mean()) if neutral is None else neutral
    order = np.argsort(-saliency.ravel(), kind="stable")
    n = order.size
    batch = []
    for k in np.linspace(0, n, steps + 1).astype(int):
        x = img.copy()
        if not delete:
            x[..., channels] = neutral
        ys, xs = np.unravel_index(order[:k], saliency.shape)
        x[ys, xs, channels] = neutral if delete else img[ys, xs, channels]
        batch.append(x)
    from .maps import predict

    return predict(model, np.stack(batch))


def deletion_insertion(model, image, saliency, steps: int = 16, neutral: float | None = None):
    """Area under the fake-score curve when the most relevant pixels are replaced by a neutral value
    (deletion: lower is better) and when they are put back into a neutral image (insertion: higher is
    better). image (H, W, C) in the model's input size; saliency (H, W)."""
    d = _perturbation_curve(model, image, saliency, steps, True, neutral)
    i = _perturbation_curve(model, image, saliency, steps, False, neutral)
    x = np.linspace(0, 1, steps + 1)
    return float(np.trapezoid(d, x)), float(np.trapezoid(i, x))


def gaussian_map(shape, cx: float, cy: float, sigma: float) -> np.ndarray:
    """An unnormalised Gaussian of `sigma` px centred on pixel (cx, cy) (column, row) of an image of `shape`."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))


def centre_prior(shape, sigma_frac: float = 0.25) -> np.ndarray:
    """A Gaussian centred on the patch: the baseline any map must beat, since patches centre on the point."""
    h, w = shape
    return gaussian_map(shape, (w - 1) / 2, (h - 1) / 2, sigma_frac * min(h, w))


def score_maps(maps: dict, regions, model=None, images=None, steps: int = 16) -> dict:
    """Per method: pointing-game hit rate, mean energy ratio and (with a model) deletion / insertion AUC.

    maps: method -> array (N, H, W); regions: (N, H, W) boolean tampered regions.
    """
    out = {}
    for method, ms in maps.items():
        hits = [pointing_hit(m, r) for m, r in zip(ms, regions)]
        energy = [energy_ratio(m, r) for m, r in zip(ms, regions)]
        row = {"n": len(hits), "pointing": float(np.mean(hits)), "energy_ratio": float(np.mean(energy))}
        if model is not None:
            di = [deletion_insertion(model, img, m, steps) for img, m in zip(images, ms)]
            row["deletion_auc"] = float(np.mean([d for d, _ in di]))
            row["insertion_auc"] = float(np.mean([i for _, i in di]))
        out[method] = row
    return out
