"""Seed ensembles: several detectors trained with different seeds (or of different designs), whose fake
probabilities are averaged. One saved Keras model (the members nested inside, an `Average` on top) that
`load_model` reads with `safe_mode` like any other; the scanner and the explanations look inside it (`members`)."""
from __future__ import annotations

import keras

from .layers import LeadingChannels

MEMBER_PREFIX = "member_"


def build_ensemble(models, name: str = "ensemble"):
    """One Keras model whose output is the mean of `models`' outputs (one sigmoid score each).

    Members read one patch size. They may mix the patch design (input (H, W, 1)) with the comparing design
    (`architectures.build_comparing_vit`, (H, W, 2): the patch and a reference window of its slice): the ensemble
    then reads the pair, and its patch models read the pair's patch.

    Args:
        models: two or more trained patch models (e.g. hybrids of seeds 0, 1, 2).
        name: the ensemble's name.
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"an ensemble needs two or more models, got {len(models)}")
    shapes = sorted({tuple(m.inputs[0].shape[1:]) for m in models})
    mixed = len(shapes) == 2 and shapes[0][:2] == shapes[1][:2] and [s[2] for s in shapes] == [1, 2]
    if len(shapes) != 1 and not mixed:
        raise ValueError(f"ensemble members read different inputs: {shapes} (one patch size; patch models may join "
                         "comparing models, (H, W, 1) with (H, W, 2))")
    inputs = keras.Input(shapes[-1], name="patch_and_reference" if mixed else "image")
    outputs = []
    for i, m in enumerate(models):
        x = inputs
        if int(m.inputs[0].shape[-1]) < shapes[-1][-1]:
            x = LeadingChannels(int(m.inputs[0].shape[-1]), name=f"patch_of_{MEMBER_PREFIX}{i}")(inputs)
        outputs.append(keras.Model(m.inputs[0], m.outputs[0], name=f"{MEMBER_PREFIX}{i}")(x))
    return keras.Model(inputs, keras.layers.Average(name="mean_score")(outputs), name=name)


def members(model) -> list:
    """The models whose mean is `model`'s score: its members for an ensemble (`build_ensemble`), else [model]."""
    nested = [layer for layer in getattr(model, "layers", ()) if isinstance(layer, keras.Model)
              and layer.name.startswith(MEMBER_PREFIX)]
    return nested or [model]
