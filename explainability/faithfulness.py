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


def _perturbed(image, saliency, steps: int, delete: bool, neutral: float | None) -> np.ndarray:
    """The steps + 1 images (steps + 1, H, W, C) of one curve: 0, 1/steps, ... of the pixels, most relevant first,
    replaced by a neutral value (deletion) or put back into a neutral image (insertion)."""
    img, saliency = np.asarray(image, np.float32), np.asarray(saliency)
    # a pair (patch, reference window) perturbs the patch only: the map explains the patch
    channels = slice(0, 1) if img.shape[-1] == 2 else slice(None)
    neutral = float(img[..., channels].mean()) if neutral is None else neutral
    order = np.argsort(-saliency.ravel(), kind="stable")
    out = np.repeat(img[None], steps + 1, axis=0)
    if not delete:
        out[..., channels] = neutral
    for j, k in enumerate(np.linspace(0, order.size, steps + 1).astype(int)):
        ys, xs = np.unravel_index(order[:k], saliency.shape)
        out[j, ys, xs, channels] = neutral if delete else img[ys, xs, channels]
    return out


def deletion_insertion_curves(model, images, saliencies, steps: int = 16, neutral: float | None = None,
                              batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion AUC (N,) of the fake score for N images (H, W, C) in the model's input size and their
    maps (H, W): the area under the score when the most relevant pixels are replaced by a neutral value (deletion,
    lower is better) and when they are put back into a neutral image (insertion, higher is better). The curves of
    many images go through the model together, `batch_size` images per call."""
    from .maps import predict

    per_batch = max(1, batch_size // (2 * (steps + 1)))
    x = np.linspace(0, 1, steps + 1)
    deletion, insertion = [], []
    for start in range(0, len(images), per_batch):
        pairs = list(zip(images[start : start + per_batch], saliencies[start : start + per_batch]))
        batch = np.concatenate([_perturbed(img, m, steps, delete, neutral)
                                for img, m in pairs for delete in (True, False)])
        curves = predict(model, batch).reshape(len(pairs), 2, steps + 1)
        deletion.append(np.trapezoid(curves[:, 0], x, axis=1))
        insertion.append(np.trapezoid(curves[:, 1], x, axis=1))
    return np.concatenate(deletion), np.concatenate(insertion)


def deletion_insertion(model, image, saliency, steps: int = 16, neutral: float | None = None):
    """`deletion_insertion_curves` of one image (H, W, C) and its map (H, W): (deletion AUC, insertion AUC)."""
    d, i = deletion_insertion_curves(model, [image], [saliency], steps, neutral)
    return float(d[0]), float(i[0])


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
            deletion, insertion = deletion_insertion_curves(model, images, ms, steps)
            row["deletion_auc"] = float(np.mean(deletion))
            row["insertion_auc"] = float(np.mean(insertion))
        out[method] = row
    return out
