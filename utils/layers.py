"""Serializable layers of the hybrid CNN -> ViT, written with keras.ops only (TensorFlow and JAX backends)."""
from __future__ import annotations

import keras
from keras import layers, ops

PACKAGE = "deepfake_ct"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClassToken(layers.Layer):
    """Prepends a learnable class token to a sequence of tokens: (B, T, D) -> (B, T + 1, D).

    Args:
        initializer: initializer of the token (zeros, as in ViT).
    """

    def __init__(self, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.token = self.add_weight(name="token", shape=(1, 1, input_shape[-1]), initializer=self.initializer)
        super().build(input_shape)

    def call(self, tokens):
        batch = ops.shape(tokens)[0]
        cls = ops.broadcast_to(ops.cast(self.token, tokens.dtype), (batch, 1, ops.shape(tokens)[-1]))
        return ops.concatenate([cls, tokens], axis=1)

    def compute_output_shape(self, input_shape):
        t = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], t, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "initializer": keras.initializers.serialize(self.initializer)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PositionEmbedding(layers.Layer):
    """Adds a learnable position embedding to a fixed-length token sequence (B, T, D).

    Args:
        stddev: standard deviation of the initial embedding.
    """

    def __init__(self, stddev=0.02, **kwargs):
        super().__init__(**kwargs)
        self.stddev = stddev

    def build(self, input_shape):
        self.embedding = self.add_weight(name="embedding", shape=(1, input_shape[1], input_shape[2]),
                                         initializer=keras.initializers.RandomNormal(stddev=self.stddev))
        super().build(input_shape)

    def call(self, tokens):
        return tokens + ops.cast(self.embedding, tokens.dtype)

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerEncoderBlock(layers.Layer):
    """Pre-norm ViT encoder block: x + MHA(LN(x)), then x + MLP(LN(x)) with GELU.

    Returns `(tokens, attention_scores)`; the scores, shape (B, heads, T, T), are what attention rollout reads.

    Args:
        num_heads: attention heads.
        key_dim: width of each head.
        mlp_dim: hidden width of the MLP.
        dropout: dropout after attention and in the MLP.
        attention_dropout: dropout on the attention weights.
        epsilon: LayerNormalization epsilon.
    """

    def __init__(self, num_heads=4, key_dim=16, mlp_dim=128, dropout=0.1, attention_dropout=0.0, epsilon=1e-6,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.key_dim, self.mlp_dim = num_heads, key_dim, mlp_dim
        self.dropout, self.attention_dropout, self.epsilon = dropout, attention_dropout, epsilon
        self.norm1 = layers.LayerNormalization(epsilon=epsilon, name="norm1")
        self.attention = layers.MultiHeadAttention(num_heads, key_dim, dropout=attention_dropout, name="attention")
        self.drop1 = layers.Dropout(dropout)
        self.norm2 = layers.LayerNormalization(epsilon=epsilon, name="norm2")
        self.mlp_in = layers.Dense(mlp_dim, activation="gelu", name="mlp_in")
        self.drop2 = layers.Dropout(dropout)
        self.mlp_out = None

    def build(self, input_shape):
        dim = input_shape[-1]
        self.mlp_out = layers.Dense(dim, name="mlp_out")
        self.norm1.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.norm2.build(input_shape)
        self.mlp_in.build(input_shape)
        self.mlp_out.build((*input_shape[:-1], self.mlp_dim))
        super().build(input_shape)

    def call(self, x, training=None):
        h = self.norm1(x)
        h, scores = self.attention(h, h, return_attention_scores=True, training=training)
        x = x + self.drop1(h, training=training)
        h = self.mlp_out(self.drop2(self.mlp_in(self.norm2(x)), training=training))
        return x + self.drop2(h, training=training), scores

    def compute_output_shape(self, input_shape):
        t = input_shape[1]
        return input_shape, (input_shape[0], self.num_heads, t, t)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "mlp_dim": self.mlp_dim, "dropout": self.dropout, "attention_dropout": self.attention_dropout,
                "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TakeToken(layers.Layer):
    """Selects one token of a sequence: (B, T, D) -> (B, D).

    Args:
        index: position of the token (0 = the class token).
    """

    def __init__(self, index=0, **kwargs):
        super().__init__(**kwargs)
        self.index = index

    def call(self, tokens):
        return tokens[:, self.index, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {**super().get_config(), "index": self.index}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Standardize(layers.Layer):
    """Maps inputs in [0, 1] to zero-centred values: (x - mean) / scale. Keeps preprocessing inside the model.

    Args:
        mean: value subtracted.
        scale: divisor.
    """

    def __init__(self, mean=0.5, scale=0.25, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.scale = mean, scale

    def call(self, x):
        return (x - self.mean) / self.scale

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "scale": self.scale}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskTokens(layers.Layer):
    """Masked-token modelling's input side: replaces a random share of the tokens by one learned mask token.
    (B, T, D) -> (tokens (B, T, D), mask (B, T): 1 where a token was replaced). Masks on every call, evaluation
    included: the layer only exists in the pre-training model (`utils.pretraining`), never in a detector.

    Args:
        ratio: expected share of tokens masked per image.
        seed: seed of the mask draws.
    """

    def __init__(self, ratio=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.ratio, self.seed = ratio, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.token = self.add_weight(name="token", shape=(1, 1, input_shape[-1]),
                                     initializer=keras.initializers.RandomNormal(stddev=0.02))
        super().build(input_shape)

    def call(self, tokens):
        shape = ops.shape(tokens)
        noise = keras.random.uniform((shape[0], shape[1]), seed=self.seed_generator)
        mask = ops.cast(noise < self.ratio, tokens.dtype)
        m = mask[..., None]
        return tokens * (1.0 - m) + ops.cast(self.token, tokens.dtype) * m, mask

    def compute_output_shape(self, input_shape):
        return input_shape, input_shape[:2]

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedTokenError(layers.Layer):
    """Masked-token modelling's loss: mean squared error between predicted and target features over the masked
    tokens, per image. Inputs [prediction (B, T + 1, C) with the class token first, target (B, T, C), mask (B, T)];
    the target is standardised per token (zero mean, unit variance over C) and not differentiated. -> (B,).

    Args:
        epsilon: added to the variance when standardising the target.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        prediction, target, mask = inputs
        target = ops.stop_gradient(target)
        mean = ops.mean(target, axis=-1, keepdims=True)
        var = ops.var(target, axis=-1, keepdims=True)
        target = (target - mean) / ops.sqrt(var + self.epsilon)
        err = ops.mean(ops.square(prediction[:, 1:, :] - target), axis=-1)
        return ops.sum(err * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0],)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PairToBatch(layers.Layer):
    """A patch and its reference window side by side in the channels become two images in the batch, so one
    CNN stem reads both: (B, H, W, 2) -> (2B, H, W, 1), ordered patch 0, reference 0, patch 1, ...

    Args:
        members: images per sample (2: patch, reference).
    """

    def __init__(self, members=2, **kwargs):
        super().__init__(**kwargs)
        self.members = members

    def call(self, x):
        h, w = ops.shape(x)[1], ops.shape(x)[2]
        return ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, h, w, 1))

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] * self.members
        return (batch, input_shape[1], input_shape[2], 1)

    def get_config(self):
        return {**super().get_config(), "members": self.members}


@keras.saving.register_keras_serializable(package=PACKAGE)
class LeadingChannels(layers.Layer):
    """The first `channels` channels of an image batch: (B, H, W, C) -> (B, H, W, channels). In an ensemble of a
    patch model and a comparing model, the patch model reads the patch of the (patch, reference) pair.

    Args:
        channels: channels kept.
    """

    def __init__(self, channels=1, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def call(self, x):
        return x[..., : self.channels]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchToTokens(layers.Layer):
    """Undoes `PairToBatch` on token sequences: (2B, T, D) -> (B, 2T, D), the patch's T tokens first, then the
    reference's, so that attention runs across both.

    Args:
        members: images per sample (2: patch, reference).
    """

    def __init__(self, members=2, **kwargs):
        super().__init__(**kwargs)
        self.members = members

    def call(self, x):
        return ops.reshape(x, (-1, self.members * ops.shape(x)[1], ops.shape(x)[2]))

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.members
        return (batch, self.members * input_shape[1], input_shape[2])

    def get_config(self):
        return {**super().get_config(), "members": self.members}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ReferenceNorm(layers.Layer):
    """Every token expressed against the reference's statistics: per channel, the mean and variance over the
    reference window's tokens (the last of `members` token sets) normalise all tokens, (x - mean) / sqrt(var +
    epsilon). A texture that lifts the whole slice (a scanner's noise or kernel) shifts patch and reference alike
    and cancels; what stands out from the slice remains. (B, members * T, D) -> same shape.

    Args:
        members: token sets per sample (2: patch, reference).
        epsilon: added to the variance.
        scale: divide by the reference's standard deviation; False only subtracts its mean (centring).
    """

    def __init__(self, members=2, epsilon=1e-2, scale=True, **kwargs):
        super().__init__(**kwargs)
        self.members, self.epsilon, self.scale = members, epsilon, scale

    def call(self, x):
        t = ops.shape(x)[1] // self.members
        ref = x[:, (self.members - 1) * t :, :]
        out = x - ops.mean(ref, axis=1, keepdims=True)
        return out / ops.sqrt(ops.var(ref, axis=1, keepdims=True) + self.epsilon) if self.scale else out

    def get_config(self):
        return {**super().get_config(), "members": self.members, "epsilon": self.epsilon, "scale": self.scale}
