"""A classic forensic baseline: hand-made noise-residual and texture features + a scikit-learn classifier,
like the SVM / random-forest baselines of published CT-GAN detection studies."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

CENTRE = 24  # side of the central square compared with its surround (local noise inconsistency)


def _lbp_hist(img: np.ndarray) -> np.ndarray:
    """Histogram of 8-neighbour local binary patterns (radius 1), 'uniform' codes pooled: 10 bins."""
    c = img[1:-1, 1:-1]
    offsets = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]
    bits = np.stack([(img[1 + dy : img.shape[0] - 1 + dy, 1 + dx : img.shape[1] - 1 + dx] >= c) for dy, dx in
                     offsets]).astype(np.uint8)
    transitions = np.sum(bits != np.roll(bits, 1, axis=0), axis=0)
    ones = bits.sum(axis=0)
    code = np.where(transitions <= 2, ones, 9)
    return np.bincount(code.ravel(), minlength=10)[:10] / code.size


def _glcm(img: np.ndarray, levels: int = 16) -> list[float]:
    q = np.clip((img * levels).astype(int), 0, levels - 1)
    feats = []
    for a, b in ((q[:, :-1], q[:, 1:]), (q[:-1, :], q[1:, :])):
        m = np.zeros((levels, levels))
        np.add.at(m, (a.ravel(), b.ravel()), 1)
        m /= m.sum()
        i, j = np.indices(m.shape)
        feats += [float((m * (i - j) ** 2).sum()), float((m / (1 + np.abs(i - j))).sum()), float((m**2).sum())]
    return feats


def patch_features(img: np.ndarray) -> np.ndarray:
    """Features of one patch in [0, 1] (H, W) or (H, W, 1)."""
    img = np.asarray(img, np.float64).squeeze()
    residual = img - ndimage.uniform_filter(img, 3)
    lap = ndimage.laplace(img)
    h, w = img.shape
    y0, x0 = (h - CENTRE) // 2, (w - CENTRE) // 2
    centre = np.zeros_like(img, bool)
    centre[y0 : y0 + CENTRE, x0 : x0 + CENTRE] = True
    spec = np.abs(np.fft.rfft2(residual)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.rfftfreq(w), indexing="ij")
    high = np.hypot(fy, fx) > 0.35
    feats = [img.mean(), img.std(), residual.std(), lap.std(), ndimage.standard_deviation(residual, centre),
             residual[~centre].std(), residual[centre].std() / (residual[~centre].std() + 1e-6),
             float(((residual[centre] - residual[centre].mean()) ** 4).mean() / (residual[centre].var() ** 2 + 1e-12)),
             spec[high].sum() / (spec.sum() + 1e-12), img[centre].mean() - img[~centre].mean(),
             np.mean(img > 0.35)]
    return np.concatenate([feats, _lbp_hist(img), _glcm(img)]).astype(np.float32)


def features(x: np.ndarray) -> np.ndarray:
    return np.stack([patch_features(im) for im in x])


def build_forensic_classifier(seed: int = 0):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=300, learning_rate=0.08, random_state=seed)
