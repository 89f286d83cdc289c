"""Fake scores of many windows of one slice: patch by patch, or from one pass of the convolutional stem.

A window at (y, x) is the `size` px square crop that training used (`patches.crop_hu`, lung window). Patch by
patch, every window goes through the whole model, so each pixel is convolved once per window that holds it
(~16 times at stride 16). The shared-feature scorer runs the model's CNN stem once over the whole (padded)
slice and applies the rest of the model (the transformer, or the CNN's pooling head) to each window's block of
the shared feature map. The stem is fully convolutional with max-pooling aligned to the windows, so the two agree
except near window borders, where a patch's convolutions see zero padding and the shared map sees the real
neighbours (`tests/test_scan.py` states the tolerance).
"""
from __future__ import annotations

import numpy as np

from .architectures import FEATURES
from .dicom import window
from .patches import crop_hu

PAD_HU = -1000.0  # outside the slice counts as air, as in crop_hu


def patch_scores(model, hu: np.ndarray, points: np.ndarray, size: int, batch_size: int = 256) -> np.ndarray:
    """Score every window centred on `points` (N, 2) = (y, x) with the whole model, one crop per window."""
    scores = np.empty(len(points), np.float32)
    for i in range(0, len(points), batch_size):
        chunk = points[i : i + batch_size]
        x = np.stack([window(crop_hu(hu, int(px), int(py), size)) for py, px in chunk]).astype(np.float32) / 255.0
        scores[i : i + len(chunk)] = np.asarray(model.predict(x[..., None], batch_size=batch_size, verbose=0)).ravel()
    return scores


class SharedFeatureScorer:
    """Scores windows of a slice from one stem pass: `stem` (input to `feature_layer`, any image size) and
    `head` (the layers after it, on one window's feature block).

    Args:
        model: a patch model built by `utils.architectures` (`build_cnn` or `build_hybrid_vit`): a chain of
            layers with a convolutional stem ending in `feature_layer`.
        feature_layer: name of the stem's last layer.
        batch_size: windows per head batch.

    Raises ValueError for a model without that layer (e.g. the plain ViT): use `patch_scores` there.
    """

    def __init__(self, model, feature_layer: str = FEATURES, batch_size: int = 256):
        import keras

        names = [layer.name for layer in model.layers]
        if feature_layer not in names:
            raise ValueError(f"model {model.name!r} has no layer {feature_layer!r}: it cannot share a feature map")
        cut = names.index(feature_layer)
        self.size = int(model.inputs[0].shape[1])
        features = model.get_layer(feature_layer).output
        self.cells = int(features.shape[1])
        self.step = self.size // self.cells  # pixels per feature cell
        image = keras.Input((None, None, model.inputs[0].shape[-1]))
        x = image
        for layer in model.layers[1 : cut + 1]:
            x = layer(x)
        self.stem = keras.Model(image, x, name=f"{model.name}_stem")
        block = keras.Input(tuple(features.shape[1:]))
        x = block
        for layer in model.layers[cut + 1 :]:
            x = layer(x)
            if isinstance(x, (tuple, list)):  # an encoder block also returns its attention
                x = x[0]
        self.head = keras.Model(block, x, name=f"{model.name}_head")
        self.batch_size = batch_size

    def aligned(self, points: np.ndarray) -> bool:
        """Whether every window starts on the same offset of the feature grid (true on a regular scan grid
        whose stride is a multiple of the cell size)."""
        return len(points) == 0 or len({int(v) % self.step for v in np.asarray(points).ravel()}) == 1

    def __call__(self, hu: np.ndarray, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, int).reshape(-1, 2)
        if not self.aligned(points):
            raise ValueError(f"window centres must share one offset modulo {self.step} px (a grid whose stride is "
                             f"a multiple of {self.step})")
        if len(points) == 0:
            return np.empty(0, np.float32)
        half, step = self.size // 2, self.step
        offset = int(points[0, 0]) % step
        pad = half + (step - offset) % step  # window corners land on cell borders of the padded slice
        pad_end = half + step
        image = np.pad(np.asarray(hu, np.float32), ((pad, pad_end), (pad, pad_end)), constant_values=PAD_HU)
        image = window(image).astype(np.float32)[None, ..., None] / 255.0
        fmap = np.asarray(self.stem.predict(image, verbose=0))[0]
        corners = (points - half + pad) // step  # (N, 2) cell index of each window's corner
        n = self.cells
        rows = corners[:, 0, None] + np.arange(n)[None, :]
        cols = corners[:, 1, None] + np.arange(n)[None, :]
        blocks = fmap[rows[:, :, None], cols[:, None, :]]  # (N, n, n, C)
        return np.asarray(self.head.predict(blocks, batch_size=self.batch_size, verbose=0)).ravel()
