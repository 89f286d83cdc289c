"""Self-supervised pre-training of the transformer on the frozen CNN's tokens (masked-token modelling).

No ViT weights can be downloaded here, so the transformer of the hybrid is pre-trained on unlabelled patches:
half of the CNN's feature tokens of a patch (at random) are replaced by a learned mask token, and the
transformer learns to predict the masked tokens' CNN features (standardised per token) from the rest, as
SimMIM / MAE do with pixels. Only authentic patches are used (the training split's, and any authentic CT the
user adds): what normal lung texture looks like, learned without a label. The pre-training model shares the
detector's layer names (`architectures.encode_tokens`), is saved as `models/vit_pretrained.keras`, and phase 2a
starts from its transformer weights (`load_transformer_weights`).
"""
from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
from keras import layers

from .architectures import FEATURES, encode_tokens, feature_tokens
from .layers import MaskedTokenError, MaskTokens

PRETRAINED = "vit_pretrained"


def shared_layer_names(depth: int) -> list[str]:
    """The transformer layers a detector takes over from the pre-training model."""
    return ["patch_projection", "class_token", "position_embedding", *(f"encoder_{i}" for i in range(depth)),
            "encoder_norm"]


def build_pretraining_model(cnn, dim=64, depth=4, heads=4, mlp_dim=128, dropout=0.1, mask_ratio=0.5, seed=None,
                            feature_layer=FEATURES, name=PRETRAINED):
    """Image -> masked-token error per image (B,), on the (shared, frozen by the caller) CNN's feature map."""
    features = cnn.get_layer(feature_layer).output
    gh, gw, channels = features.shape[1], features.shape[2], features.shape[3]
    tokens, mask = MaskTokens(mask_ratio, seed, name="mask_tokens")(feature_tokens(features, dim))
    encoded = encode_tokens(tokens, dim, depth, heads, mlp_dim, dropout)
    prediction = layers.Dense(channels, name="reconstruction")(encoded)
    target = layers.Reshape((gh * gw, channels), name="target_tokens")(features)
    error = MaskedTokenError(name="masked_token_error")([prediction, target, mask])
    return keras.Model(cnn.inputs, error, name=name)


def _the_error(y_true, y_pred):
    return y_pred + 0.0 * y_true  # the model's output already is the per-image loss


def pretrain(cnn, x_train, x_val, cfg, verbose=0) -> tuple[keras.Model, dict]:
    """Pre-train a transformer on the frozen `cnn` (its layers up to the feature map are set untrainable here
    and left so) with
    images `x_train` (no labels); the epoch with the lowest validation error on `x_val` is kept. Returns the
    pre-training model and its history (seconds, images per second)."""
    from .training import BestWeights, make_batches, set_cnn_trainable

    set_cnn_trainable(cnn, False)
    model = build_pretraining_model(cnn, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_dim, cfg.dropout, cfg.mask_ratio,
                                    cfg.seed)
    batches = make_batches(x_train, np.zeros(len(x_train), np.float32), cfg.batch_size, True, cfg.augment, cfg.seed)
    lr = keras.optimizers.schedules.CosineDecay(cfg.pretrain_lr, len(batches) * cfg.pretrain_epochs, alpha=0.05)
    model.compile(optimizer=keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay), loss=_the_error)
    keeper = BestWeights("val_loss", "min", cfg.patience)
    start = time.perf_counter()
    hist = model.fit(batches, epochs=cfg.pretrain_epochs, validation_data=(x_val, np.zeros(len(x_val), np.float32)),
                     validation_batch_size=cfg.batch_size, callbacks=[keeper], verbose=verbose)
    seconds = time.perf_counter() - start
    out = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    out.update(phase="pretrain", best_epoch=keeper.best_epoch + 1, seconds=round(seconds, 1), n_images=len(x_train),
               images_per_second=round(len(x_train) * len(out.get("loss", [])) / max(seconds, 1e-9), 1))
    return model, out


def load_transformer_weights(detector, source) -> list[str]:
    """Copy the transformer layers' weights (`shared_layer_names`) from a pre-training model (or the path of a
    saved one) into a detector built with the same sizes. Returns the layer names copied."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no pre-trained transformer (train with pretrain_epochs > 0 first)")
        source = keras.models.load_model(path, compile=False)
    names = [lyr.name for lyr in source.layers]
    depth = sum(n.startswith("encoder_") and n[8:].isdigit() for n in names)
    copied = []
    for name in shared_layer_names(depth):
        src, dst = source.get_layer(name), detector.get_layer(name)
        shapes = ([w.shape for w in src.get_weights()], [w.shape for w in dst.get_weights()])
        if shapes[0] != shapes[1]:
            raise ValueError(f"layer {name!r}: pre-trained weights {shapes[0]} do not fit the detector's {shapes[1]} "
                             "(build both with the same dim / depth / heads / mlp_dim)")
        dst.set_weights(src.get_weights())
        copied.append(name)
    return copied
