"""Reading explanations out of a trained hybrid model: attention rollout, gradient rollout and Grad-CAM."""
from __future__ import annotations

import warnings

import numpy as np

from utils.architectures import FEATURES, encoder_blocks, feature_geometry, last_conv_activation, receptive_field
from utils.data import to_model_input
from utils.ensemble import members

from .rollout import ERF_SIGMA_PER_RF, HEAD_FUSIONS, flat_maps, gradient_rollout, grid_to_pixels, rollout, to_unit_range


def to_numpy(tensor) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(tensor))


def predict(model, batch) -> np.ndarray:
    """Fake scores (B,) of a small batch: a direct call (no per-shape retracing as `model.predict` does)."""
    x = np.asarray(batch, np.float32)
    return to_numpy(model([x] if isinstance(model.input, list) else x, training=False)).reshape(-1)


def _as_batch(image, size, channels):
    """Any single image (H, W), (H, W, C) or batch (B, H, W, C) -> model batch, original (H, W), batched?"""
    arr = np.asarray(image, np.float32)
    if arr.ndim not in (2, 3, 4):
        raise ValueError(f"expected an image (H, W), (H, W, C) or a batch (B, H, W, C), got shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"an array of shape {arr.shape} is not an image (H, W, C) with 1, 3 or 4 channels (2: a "
                         "patch and its reference window); a batch of gray images goes in as (B, H, W, 1): use "
                         "image[..., None]")
    if arr.size and arr.max() > 1.0 + 1e-6:
        raise ValueError(f"image values reach {arr.max():.4g}, but the model reads [0, 1]: divide 8-bit images "
                         "by 255 (16-bit by 65535)")
    batched = arr.ndim == 4
    images = arr if batched else arr[None]
    original = images.shape[1:3]
    batch = np.stack([to_model_input(im, size, channels) for im in images])
    return batch, original, batched


class AttentionRollout:
    """Attention rollout of a hybrid CNN -> ViT model.

    `mask = AttentionRollout(model)(image)` returns a float mask in [0, 1] with the input image's height and
    width: (H, W) for one image given as (H, W), (H, W, C) or (1, H, W, C)... see `__call__`. Images in [0, 1],
    gray or RGB, any size: they are converted to the model's channels and input size.

    A comparing model (`build_comparing_vit`) takes (H, W, 2) images (the patch, then its reference window); the
    mask is the rollout over the patch's tokens, and `reference_share` tells how much of the class token's
    rolled-out attention went to the reference's tokens.

    Args:
        model: a model with `TransformerEncoderBlock` layers (built by `build_hybrid_vit` or
            `build_comparing_vit`).
        head_fusion: 'mean', 'max' or 'min' over attention heads.
        discard_ratio: share of the lowest attention per row dropped in every layer (never the CLS column).
    """

    def __init__(self, model, head_fusion: str = "mean", discard_ratio: float = 0.9):
        import keras

        if head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
        if not 0.0 <= discard_ratio < 1.0:
            raise ValueError(f"discard_ratio must lie in [0, 1), got {discard_ratio}")
        self.model, self.head_fusion, self.discard_ratio = model, head_fusion, discard_ratio
        parts = members(model)
        self.parts = [AttentionRollout(m, head_fusion, discard_ratio) for m in parts] if len(parts) > 1 else []
        if self.parts:  # an ensemble: its members' maps, averaged (a patch member's on the patch's tokens only)
            first = max(self.parts, key=lambda part: part.members)
            self.blocks, self.size, self.channels, self.grid = first.blocks, first.size, first.channels, first.grid
            self.geometry, self.cells, self.members, self.reader = first.geometry, first.cells, first.members, None
            self.spread = first.spread
            return
        self.blocks = encoder_blocks(model)
        if not self.blocks:
            raise ValueError(f"model {model.name!r} has no TransformerEncoderBlock: attention rollout needs "
                             "the hybrid ViT (models/deepfake_detection_model.*), not the CNN")
        shape = model.inputs[0].shape
        self.size, self.channels = (int(shape[1]), int(shape[2])), int(shape[3])
        tokens = int(self.blocks[0].output[1].shape[-1]) - 1
        feat = model.get_layer(FEATURES).output.shape if FEATURES in [lyr.name for lyr in model.layers] else None
        self.grid = (int(feat[1]), int(feat[2])) if feat is not None else (int(np.sqrt(tokens)),) * 2
        self.geometry = feature_geometry(model) if feat is not None else None
        self.spread = ERF_SIGMA_PER_RF * receptive_field(model) if feat is not None else None
        self.cells = self.grid[0] * self.grid[1]
        if tokens % self.cells:
            raise ValueError(f"{tokens} patch tokens do not form the {self.grid} feature grid")
        self.members = tokens // self.cells  # 2 for a comparing model: the patch's tokens, then the reference's
        hidden, self.to_logit, self.to_score = logit_head(model)
        self.reader = keras.Model(model.inputs, [b.output[1] for b in self.blocks] + [hidden],
                                  name=f"{model.name}_attention_reader")

    def attentions(self, batch) -> tuple[list, np.ndarray]:
        """Attention scores per block, each (B, heads, T, T), and the model's scores (B,). An ensemble's are one
        such list per member, and the mean score."""
        if self.parts:
            outs = [part.attentions(np.asarray(batch)[..., : part.channels]) for part in self.parts]
            return [atts for atts, _ in outs], np.mean([scores for _, scores in outs], axis=0)
        *atts, hidden = self.reader([np.asarray(batch, np.float32)], training=False)
        return [to_numpy(a) for a in atts], to_numpy(self.to_score(self.to_logit(hidden))).reshape(-1)

    def cls_maps(self, attentions, head_fusion: str | None = None, discard_ratio: float | None = None) -> np.ndarray:
        """The rolled-out class-token maps (B, T - 1) of `attentions()`'s first output (this reader's head fusion
        and discard ratio unless given); an ensemble's are the mean of its members' maps."""
        fusion = head_fusion or self.head_fusion
        ratio = self.discard_ratio if discard_ratio is None else discard_ratio
        if self.parts:
            return np.mean([self._as_tokens(part.cls_maps(atts, fusion, ratio))
                            for part, atts in zip(self.parts, attentions)], axis=0)
        return rollout(attentions, fusion, ratio)

    def gradient_maps(self, batch) -> tuple[np.ndarray, np.ndarray]:
        """Gradient rollout (B, T - 1) and the scores (B,) of a batch (TensorFlow); an ensemble's are means."""
        if self.parts:
            outs = [part.gradient_maps(np.asarray(batch)[..., : part.channels]) for part in self.parts]
            return (np.mean([self._as_tokens(maps) for maps, _ in outs], axis=0),
                    np.mean([scores for _, scores in outs], axis=0))
        atts, grads, scores = attention_gradients(self.reader, batch, self.to_logit, self.to_score)
        return gradient_rollout(atts, grads), scores

    def _as_tokens(self, maps: np.ndarray) -> np.ndarray:
        """A member's (B, tokens) maps on this reader's tokens: a patch member of an ensemble that compares gives
        the reference's tokens nothing."""
        maps = np.asarray(maps)
        return np.pad(maps, ((0, 0), (0, self.cells * self.members - maps.shape[1])))

    def token_map(self, image) -> np.ndarray:
        """The raw rolled-out CLS attention on the token grid, (gh, gw) or (B, gh, gw); not rescaled."""
        batch, _, batched = _as_batch(image, self.size, self.channels)
        maps = self.patch_tokens(self.cls_maps(self.attentions(batch)[0])).reshape(len(batch), *self.grid)
        return maps if batched else maps[0]

    def patch_tokens(self, cls_maps: np.ndarray) -> np.ndarray:
        """(B, T - 1) rolled-out maps -> (B, cells): the patch's own tokens (a comparing model's come first)."""
        return np.asarray(cls_maps).reshape(len(cls_maps), -1)[:, : self.cells]

    def reference_share(self, image) -> np.ndarray | float:
        """Share of the rolled-out class-token attention on the reference window's tokens (0 for a model without
        one): how much the verdict leaned on the slice's own texture."""
        batch, _, batched = _as_batch(image, self.size, self.channels)
        maps = self.cls_maps(self.attentions(batch)[0]).reshape(len(batch), -1)
        share = maps[:, self.cells :].sum(axis=1) / np.maximum(maps.sum(axis=1), 1e-12)
        return share if batched else float(share[0])

    def explain(self, image, method: str = "rollout"):
        """(masks in [0, 1] at the image's size, model scores); method 'rollout' or 'gradient'."""
        batch, original, batched = _as_batch(image, self.size, self.channels)
        if method == "rollout":
            atts, scores = self.attentions(batch)
            grid = self.cls_maps(atts)
        elif method == "gradient":
            grid, scores = self.gradient_maps(batch)
        else:
            raise ValueError(f"method must be 'rollout' or 'gradient', got {method!r}")
        masks = self.to_masks(grid, original)
        return (masks if batched else masks[0]), (scores if batched else scores[0])

    def to_masks(self, cls_maps: np.ndarray, size) -> np.ndarray:
        """(B, T - 1) rolled-out maps -> (B, H, W) masks in [0, 1] at the image size (flat maps: all ones)."""
        grid = self.patch_tokens(cls_maps).reshape(len(cls_maps), *self.grid)
        return unit_masks(grid, size, "attention", self.geometry, self.size, self.spread)

    def __call__(self, image) -> np.ndarray:
        """Mask in [0, 1]: (H, W) for an image given as (H, W) or (H, W, C); (B, H, W) for a batch (B, H, W, C)."""
        return self.explain(image)[0]


def unit_masks(grid: np.ndarray, size, what: str, geometry=None, input_size=None, spread=None) -> np.ndarray:
    """(B, gh, gw) maps -> (B, H, W) in [0, 1], cells placed by `geometry` and spread over what they see
    (`rollout.grid_to_pixels`); a flat map is returned as all ones, with a warning, instead of rounding error (or
    the cells' footprint) rescaled into a confident-looking heatmap."""
    flat = flat_maps(grid)
    if flat.any():
        warnings.warn(f"{int(flat.sum())} of {len(grid)} {what} maps are flat (no variation beyond rounding): "
                      "shown as uniform; the model's map does not single out any region", stacklevel=3)
    masks = to_unit_range(grid_to_pixels(to_unit_range(grid), tuple(size), geometry, input_size, spread))
    masks[flat] = 1.0
    return masks


def _require_tensorflow(what: str):
    import keras

    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError(f"{what} uses TensorFlow's GradientTape; run it with KERAS_BACKEND=tensorflow "
                                  f"(current backend: {keras.backend.backend()})")
    import tensorflow as tf

    return tf


def attention_gradients(reader, batch, to_logit=lambda t: t, to_score=lambda t: t):
    """Attention scores, their gradients w.r.t. the fake logit, and the scores (TensorFlow backend). `reader`'s last
    output goes through `to_logit` to the class logit and `to_score` on to the score (`logit_head`): the gradient
    is taken before the sigmoid, as Chefer et al. take it before the softmax, so a confident verdict keeps its map."""
    tf = _require_tensorflow("gradient rollout")
    x = tf.convert_to_tensor(batch, tf.float32)
    with tf.GradientTape() as tape:
        *atts, hidden = reader([x], training=False)
        logit = to_logit(hidden)
        target = tf.reduce_sum(logit)
    grads = tape.gradient(target, atts)
    grads = [np.zeros_like(a.numpy()) if g is None else g.numpy() for a, g in zip(atts, grads)]
    return [a.numpy() for a in atts], grads, to_numpy(to_score(logit)).reshape(-1)


def logit_head(model):
    """(tensor, to_logit, to_score): the input of the model's sigmoid head 'score', the head's logit from it, and the
    score from the logit. Grad-CAM weights a map by the gradient of the class score before squashing: a sigmoid
    saturated at 1 (a confident verdict) has no gradient left, and its map would come out flat. A model without
    such a head gives its output, with the identity for both."""
    import keras

    head = next((layer for layer in model.layers if layer.name == "score"), None)
    if head is None or getattr(head, "activation", None) is not keras.activations.sigmoid:
        return model.outputs[0], (lambda t: t), (lambda t: t)
    return (head.input, lambda h: keras.ops.matmul(h, head.kernel) + head.bias, keras.ops.sigmoid)


class GradCAM:
    """Grad-CAM (Selvaraju et al., 2017) on a map of the CNN stem, for comparison with rollout. Works on the CNN
    alone, the hybrid, comparing models and ensembles (the members' masks averaged). Call returns masks in [0, 1]
    at the image's size.

    Args:
        model: a Keras model with the CNN stem (`architectures.cnn_stem`).
        layer: the map to weight by its gradients. None (default): the last convolution's activation before the
            final pooling (`architectures.last_conv_activation`; 9x9 cells for a 64 px patch, 4 px apart), as Grad-CAM
            is defined; `FEATURES` for the pooled 4x4 map the transformer reads as tokens, as coarse as rollout.
    """

    def __init__(self, model, layer: str | None = None):
        import keras

        self.model = model
        shape = model.inputs[0].shape
        self.size, self.channels = (int(shape[1]), int(shape[2])), int(shape[3])
        parts = members(model)
        self.parts = [GradCAM(m, layer) for m in parts] if len(parts) > 1 else []  # an ensemble: masks averaged
        if self.parts:
            return
        layer = layer or last_conv_activation(model)
        hidden, self.to_logit, self.to_score = logit_head(model)
        self.reader = keras.Model(model.inputs, [model.get_layer(layer).output, hidden])
        self.geometry = feature_geometry(model, layer)
        self.spread = ERF_SIGMA_PER_RF * receptive_field(model, layer)

    def explain(self, image):
        if self.parts:
            outs = [part.explain(image) for part in self.parts]
            return np.mean([masks for masks, _ in outs], axis=0), np.mean([scores for _, scores in outs], axis=0)
        tf = _require_tensorflow("Grad-CAM")
        batch, original, batched = _as_batch(image, self.size, self.channels)
        x = tf.convert_to_tensor(batch, tf.float32)
        with tf.GradientTape() as tape:
            features, hidden = self.reader([x], training=False)
            logit = self.to_logit(hidden)
            target = tf.reduce_sum(logit)
        grads, features = tape.gradient(target, features).numpy(), features.numpy()
        score = self.to_score(logit)
        step = len(features) // len(batch)  # a comparing model's stem holds patch, reference, patch, ...
        grads, features = grads[::step], features[::step]
        weights = grads.mean(axis=(1, 2), keepdims=True)
        cam = np.maximum((weights * features).sum(axis=-1), 0)
        masks = unit_masks(cam, original, "Grad-CAM", self.geometry, self.size, self.spread)
        scores = score.numpy().reshape(-1)
        return (masks if batched else masks[0]), (scores if batched else scores[0])

    def __call__(self, image):
        return self.explain(image)[0]
