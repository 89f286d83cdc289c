"""Attention rollout (Abnar & Zuidema, 2020) as pure array maths, and a class that reads a model's attention.

`rollout` works on NumPy arrays only. `AttentionRollout` builds a second Keras model that shares the user's
layers and returns the attention scores of every encoder block; the user's model is not changed.
"""
from __future__ import annotations

import numpy as np

HEAD_FUSIONS = ("mean", "max", "min")
# a cell's effective receptive field as a Gaussian: sigma = RF / 5 (a trained stem's measured sigma over its
# theoretical receptive field: `python -m benchmarks.receptive_field`)
ERF_SIGMA_PER_RF = 0.2


def fuse_heads(attention: np.ndarray, head_fusion: str = "mean") -> np.ndarray:
    """(B, heads, T, T) -> (B, T, T) by the mean, max or min over heads."""
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    return getattr(np, head_fusion)(np.asarray(attention, np.float64), axis=1)


def discard_lowest(attention: np.ndarray, ratio: float) -> np.ndarray:
    """Zero the lowest `ratio` share of each row's attention over the patch tokens, for every image.

    The class-token column (index 0) is never discarded, so every row keeps its attention to CLS.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"discard_ratio must lie in [0, 1), got {ratio}")
    att = np.array(attention, np.float64, copy=True)
    patches = att[..., 1:]
    k = int(np.floor(patches.shape[-1] * ratio))
    if k > 0:
        lowest = np.argsort(patches, axis=-1, kind="stable")[..., :k]
        np.put_along_axis(patches, lowest, 0.0, axis=-1)
    return att


def rollout(attentions, head_fusion: str = "mean", discard_ratio: float = 0.0) -> np.ndarray:
    """Roll attention out through the layers.

    Args:
        attentions: per layer, an array (B, heads, T, T) (or (heads, T, T) for one image); token 0 is CLS.
        head_fusion: 'mean', 'max' or 'min' over heads.
        discard_ratio: share of each row's lowest patch attention set to zero before the residual is added.

    Returns:
        (B, T - 1): the rolled-out attention of the CLS token over the patch tokens (rows of the joint
        attention sum to one, so this is a distribution's share, not rescaled).
    """
    attentions = [np.asarray(a, np.float64) for a in attentions]
    if not attentions:
        raise ValueError("rollout needs the attention of at least one layer")
    single = attentions[0].ndim == 3
    attentions = [a[None] if single else a for a in attentions]
    batch, _, tokens, _ = attentions[0].shape
    eye = np.eye(tokens)[None]
    joint = np.repeat(eye, batch, axis=0)
    for att in attentions:
        a = discard_lowest(fuse_heads(att, head_fusion), discard_ratio)
        a = a + eye
        a = a / a.sum(axis=-1, keepdims=True)
        joint = a @ joint
    cls_map = joint[:, 0, 1:]
    return cls_map[0] if single else cls_map


def gradient_rollout(attentions, gradients) -> np.ndarray:
    """Class-specific rollout: per layer the heads' mean of attention x gradient of the fake logit, negatives
    clipped (Chefer et al., 2021), then the residual rule and the product through the layers as in `rollout`.
    Returns (B, T - 1)."""
    weighted = [np.clip(np.asarray(a, np.float64) * np.asarray(g, np.float64), 0, None)
                for a, g in zip(attentions, gradients)]
    batch, _, tokens, _ = weighted[0].shape
    eye = np.eye(tokens)[None]
    joint = np.repeat(eye, batch, axis=0)
    for w in weighted:
        a = w.mean(axis=1) + eye
        a = a / a.sum(axis=-1, keepdims=True)
        joint = a @ joint
    return joint[:, 0, 1:]


FLAT_RTOL = 1e-4  # a map whose range is below this share of its magnitude is flat (float noise, not signal)


def flat_maps(maps: np.ndarray, rtol: float = FLAT_RTOL) -> np.ndarray:
    """(B,) True where a map of the batch (B, ...) is constant up to a relative tolerance: its max - min is at
    most `rtol` x its largest magnitude. Rescaling such a map would blow rounding error up into a heatmap."""
    flat = np.asarray(maps, np.float64).reshape(len(maps), -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    return (hi - lo) <= rtol * np.maximum(np.maximum(np.abs(hi), np.abs(lo)), 1e-300)


def to_unit_range(maps: np.ndarray, rtol: float = FLAT_RTOL) -> np.ndarray:
    """Rescale each map of a batch (B, ...) to [0, 1]; a flat map (`flat_maps`) becomes all ones (uniform)."""
    maps = np.asarray(maps, np.float64)
    flat = maps.reshape(len(maps), -1)
    lo, hi = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    keep = ~flat_maps(maps, rtol)[:, None]
    out = np.where(keep, (flat - lo) / np.where(keep, hi - lo, 1.0), 1.0)
    return out.reshape(maps.shape)


def grid_to_pixels(grid_maps: np.ndarray, size: tuple[int, int], geometry: tuple[float, float] | None = None,
                   input_size: tuple[int, int] | None = None, spread: float | None = None) -> np.ndarray:
    """(B, gh, gw) cell maps -> (B, H, W). `geometry` (stride, offset) places cell i at input pixel
    offset + stride * i of a model input of `input_size` (default: `size`; `architectures.feature_geometry`).

    With `spread` (input px), every cell's value is spread over the pixels it sees, a Gaussian of that sigma around
    its centre (its effective receptive field; `ERF_SIGMA_PER_RF` of `architectures.receptive_field`), and the
    contributions summed: a pixel that few cells see, as at the border of a padding-free stem, gets little, and a
    high cell draws a blob where it looks, not a band out to the border. Without it, bilinear between cell centres
    with the edges held; without `geometry` either, each cell sits at the centre of its equal share of the image
    (a 'same'-padded stem: 8x8 px cells of a 64 px input)."""
    maps = np.asarray(grid_maps, np.float64)
    (h, w), (gh, gw) = size, maps.shape[1:]
    if geometry is None:  # cell i at the centre of the i-th equal share of the image
        (stride, offset), (ih, iw) = (1.0, 0.0), (gh, gw)
    else:
        (stride, offset), (ih, iw) = geometry, input_size or size

    def weights(n_out, n_tokens, n_in):
        centres = offset + stride * np.arange(n_tokens)  # input pixel coordinates
        if spread is not None:
            pixels = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
            return np.exp(-((pixels[:, None] - centres[None]) ** 2) / (2 * spread**2))
        at = (centres + 0.5) * n_out / n_in - 0.5
        return np.stack([np.interp(np.arange(n_out), at, e) for e in np.eye(n_tokens)], axis=1)

    return np.einsum("yi,bij,xj->byx", weights(h, gh, ih), maps, weights(w, gw, iw)).astype(np.float32)
