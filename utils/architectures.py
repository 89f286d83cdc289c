"""build_cnn (trained from scratch), build_hybrid_vit (a ViT whose tokens are the CNN's feature map) and
build_comparing_vit (the same, reading a patch and a reference window of its slice)."""
from __future__ import annotations

import keras
from keras import layers

from .layers import (BatchToTokens, ClassToken, PairToBatch, PositionEmbedding, ReferenceNorm, Standardize,
                     TakeToken, TransformerEncoderBlock)

FEATURES = "cnn_features"


def build_cnn(input_shape=(64, 64, 1), filters=(16, 32, 64), dropout=0.3, bn_momentum=0.9, padding="valid",
              name="cnn"):
    """CNN for 64 px patches: per stage two 3x3 conv + BatchNorm + ReLU, then 2x2 max-pooling; global average
    pooling, dropout, sigmoid. The last stage's pooled map is named 'cnn_features': 4x4 for 64 px with 'valid'
    padding (none: every feature cell sees image pixels only, never a zero border, so the stem run once over a
    whole slice gives every window's features exactly, `scan.SharedStem`), 8x8 with 'same' (zero padding).

    Inputs are images in [0, 1]; the model standardises them itself. BatchNorm momentum 0.9: with a few
    thousand patches, the default 0.99 leaves inference statistics behind after short training.
    """
    inputs = keras.Input(input_shape, name="image")
    x = cnn_stem(inputs, filters, bn_momentum, padding)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="score")(x)
    return keras.Model(inputs, outputs, name=name)


def cnn_stem(x, filters=(16, 32, 64), bn_momentum=0.9, padding="valid"):
    """Standardize, then per stage two 3x3 conv ('same' or 'valid' padding) + BatchNorm + ReLU and 2x2
    max-pooling; the last pooled map is 'cnn_features'. Layer names are what phase 2 copies weights by."""
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
    x = Standardize(name="standardize")(x)
    for stage, width in enumerate(filters):
        for j in range(2):
            x = layers.Conv2D(width, 3, padding=padding, use_bias=False, name=f"conv{stage + 1}_{j + 1}")(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"bn{stage + 1}_{j + 1}")(x)
            x = layers.ReLU(name=f"relu{stage + 1}_{j + 1}")(x)
        x = layers.MaxPooling2D(2, name=FEATURES if stage == len(filters) - 1 else f"pool{stage + 1}")(x)
    return x


def feature_tokens(features, dim):
    """The CNN's feature map as tokens: 1x1 patches projected to `dim`, (B, gh, gw, C) -> (B, gh * gw, dim)."""
    gh, gw = features.shape[1], features.shape[2]
    x = layers.Conv2D(dim, 1, name="patch_projection")(features)
    return layers.Reshape((gh * gw, dim), name="tokens")(x)


def encode_tokens(tokens, dim, depth, heads, mlp_dim, dropout):
    """Class token, position embeddings, `depth` encoder blocks, final norm: (B, T, dim) -> (B, T + 1, dim).
    The transformer that the detector and its self-supervised pre-training (`utils.pretraining`) share by name."""
    x = ClassToken(name="class_token")(tokens)
    x = PositionEmbedding(name="position_embedding")(x)
    for i in range(depth):
        x, _ = TransformerEncoderBlock(heads, dim // heads, mlp_dim, dropout, name=f"encoder_{i}")(x)
    return layers.LayerNormalization(epsilon=1e-6, name="encoder_norm")(x)


def _encoder_and_head(tokens, dim, depth, heads, mlp_dim, dropout):
    """`encode_tokens`, then a sigmoid head on the class token."""
    x = encode_tokens(tokens, dim, depth, heads, mlp_dim, dropout)
    x = TakeToken(0, name="cls")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(1, activation="sigmoid", name="score")(x)


def build_hybrid_vit(cnn, dim=64, depth=4, heads=4, mlp_dim=128, dropout=0.1, feature_layer=FEATURES,
                     name="hybrid_vit"):
    """Hybrid ViT (Dosovitskiy et al. 2021, section 3.1): the CNN's feature map, 1x1 patches projected to
    `dim`, becomes the token sequence; a class token and learned position embeddings are added; `depth` pre-norm
    encoder blocks; the head reads the class token. Shares (not copies) the CNN's layers up to `feature_layer`.
    """
    x = feature_tokens(cnn.get_layer(feature_layer).output, dim)
    outputs = _encoder_and_head(x, dim, depth, heads, mlp_dim, dropout)
    return keras.Model(cnn.inputs, outputs, name=name)


def build_comparing_vit(cnn, dim=64, depth=4, heads=4, mlp_dim=128, dropout=0.1, normalise: str | None = None,
                        name="comparing_vit"):
    """A hybrid ViT that judges a patch against untouched lung of its own slice. Input (H, W, 2): the patch and
    its reference window (`patches.reference_path`). One CNN stem (a copy of `cnn`'s weights) turns both into
    feature-map tokens; the patch's tokens come first, then the reference's, each position with its own learned
    embedding; the encoder attends across both sets and the head reads the class token. A scanner's texture
    lifts patch and reference alike; a tampered region differs from its slice. With `normalise` 'scale', every
    token is expressed against the reference's token mean and spread first (`ReferenceNorm`), so that a slice-wide
    texture cancels by construction instead of having to be learned; 'centre' subtracts the reference's mean only.
    """
    size = cnn.inputs[0].shape[1:3]
    filters = stem_filters(cnn)
    momentum = cnn.get_layer("bn1_1").momentum
    inputs = keras.Input((*size, 2), name="patch_and_reference")
    x = cnn_stem(PairToBatch(name="pair_to_batch")(inputs), filters, momentum, stem_padding(cnn))
    x = BatchToTokens(name="pair_tokens")(feature_tokens(x, dim))
    if normalise not in (None, "scale", "centre"):
        raise ValueError(f"normalise must be None, 'scale' or 'centre', got {normalise!r}")
    if normalise:
        x = ReferenceNorm(scale=normalise == "scale", name="reference_norm")(x)
    model = keras.Model(inputs, _encoder_and_head(x, dim, depth, heads, mlp_dim, dropout), name=name)
    for layer_name in cnn_layer_names(cnn):
        if cnn.get_layer(layer_name).weights:
            model.get_layer(layer_name).set_weights(cnn.get_layer(layer_name).get_weights())
    return model


def compares(model) -> bool:
    """True for a model that reads a patch and its reference window (input (H, W, 2)): a comparing model, or an
    ensemble with one among its members.

    Objects without Keras layers (any model with ``inputs`` and ``predict``) read patches alone.
    """
    return any(isinstance(layer, PairToBatch) or (isinstance(layer, keras.Model) and compares(layer))
               for layer in getattr(model, "layers", ()))


def stem_filters(model) -> tuple[int, ...]:
    """The CNN stem's widths per stage (`cnn_stem`'s `filters`), read from the first convolution of each stage."""
    return tuple(layer.filters for layer in model.layers if layer.name.startswith("conv") and layer.name.endswith("_1"))


def stem_padding(model) -> str:
    """'valid' when no convolution of the model's CNN stem pads its input, else 'same'."""
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D) and layer.name.startswith("conv")]
    return "valid" if convs and all(layer.padding == "valid" for layer in convs) else "same"


def _windows(model, feature_layer=FEATURES) -> list:
    """(layer, window side, step) of every convolution and pooling from the input up to the feature map, in order."""
    out = []
    for name in cnn_layer_names(model, feature_layer):
        layer = model.get_layer(name)
        if isinstance(layer, (layers.Conv2D, layers.MaxPooling2D)):
            side = (layer.kernel_size if isinstance(layer, layers.Conv2D) else layer.pool_size)[0]
            out.append((layer, side, layer.strides[0]))
    return out


def feature_geometry(model, feature_layer=FEATURES) -> tuple[float, float]:
    """(stride, offset) of the feature map in input pixels: feature cell i is centred on input pixel
    offset + stride * i (pixel centres at integer coordinates). 'same' padding, three 2x2 poolings: (8, 3.5);
    'valid': (8, 17.5), every cell's view shifted by the borders the unpadded convolutions leave out."""
    stride, offset = 1.0, 0.0
    for layer, side, step in reversed(_windows(model, feature_layer)):
        shift = (side - 1) / 2 if layer.padding == "valid" else 0.0
        if layer.padding != "valid" and step != 1:
            raise ValueError(f"{layer.name}: a strided layer with 'same' padding has no fixed centre here")
        stride, offset = stride * step, offset * step + shift
    return stride, offset


def receptive_field(model, feature_layer=FEATURES) -> int:
    """Side in input pixels of the square a cell of the feature map sees (its theoretical receptive field): 36 px
    for the 4x4 tokens of a 64 px patch without padding, 32 px for the 9x9 map before the last pooling."""
    size, jump = 1, 1
    for _, side, step in _windows(model, feature_layer):
        size, jump = size + (side - 1) * jump, jump * step
    return size


def last_conv_activation(model, feature_layer=FEATURES) -> str:
    """Name of the layer the CNN's final pooling reads: the activation of its last convolution, the map Grad-CAM
    is defined on, at twice the feature map's resolution (9x9 for a 64 px patch without padding, 16x16 with)."""
    return cnn_layer_names(model, feature_layer)[-2]  # the stem is a chain: the layer before the pooling feeds it


def encoder_blocks(model) -> list:
    """The TransformerEncoderBlock layers of a model, in order."""
    return [layer for layer in model.layers if isinstance(layer, TransformerEncoderBlock)]


def cnn_layer_names(model, feature_layer=FEATURES) -> list[str]:
    """Names of the layers from the input up to and including the CNN's feature map."""
    names = []
    for layer in model.layers:
        names.append(layer.name)
        if layer.name == feature_layer:
            return names
    raise ValueError(f"model {model.name!r} has no layer {feature_layer!r}")


def build_plain_vit(input_shape=(64, 64, 1), patch=8, dim=64, depth=4, heads=4, mlp_dim=128, dropout=0.1,
                    name="plain_vit"):
    """A ViT on raw pixels (no CNN): non-overlapping `patch` x `patch` pixel patches linearly projected to
    `dim`, class token, position embeddings, pre-norm encoder blocks, head on the class token. The baseline
    that shows what the CNN stem adds."""
    inputs = keras.Input(input_shape, name="image")
    x = Standardize(name="standardize")(inputs)
    x = layers.Conv2D(dim, patch, strides=patch, name="patch_projection")(x)
    x = layers.Reshape(((input_shape[0] // patch) * (input_shape[1] // patch), dim), name="tokens")(x)
    outputs = _encoder_and_head(x, dim, depth, heads, mlp_dim, dropout)
    return keras.Model(inputs, outputs, name=name)
