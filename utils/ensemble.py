"""Seed ensembles: several detectors of one design, trained with different seeds, whose fake probabilities are
averaged. One saved Keras model (the members nested inside, an `Average` on top) that `load_model` reads with
`safe_mode` like any other; the scanner and the explanations look inside it (`members`)."""
from __future__ import annotations

import keras

MEMBER_PREFIX = "member_"


def build_ensemble(models, name: str = "ensemble"):
    """One Keras model whose output is the mean of `models`' outputs (same input shape, one sigmoid score each).

    Args:
        models: two or more trained patch models of one design (e.g. hybrids of seeds 0, 1, 2).
        name: the ensemble's name.
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"an ensemble needs two or more models, got {len(models)}")
    shapes = {tuple(m.inputs[0].shape[1:]) for m in models}
    if len(shapes) != 1:
        raise ValueError(f"ensemble members read different inputs: {sorted(shapes)}")
    inputs = keras.Input(shapes.pop(), name="image")
    outputs = [keras.Model(m.inputs[0], m.outputs[0], name=f"{MEMBER_PREFIX}{i}")(inputs)
               for i, m in enumerate(models)]
    return keras.Model(inputs, keras.layers.Average(name="mean_score")(outputs), name=name)


def members(model) -> list:
    """The models whose mean is `model`'s score: its members for an ensemble (`build_ensemble`), else [model]."""
    nested = [layer for layer in getattr(model, "layers", ()) if isinstance(layer, keras.Model)
              and layer.name.startswith(MEMBER_PREFIX)]
    return nested or [model]
