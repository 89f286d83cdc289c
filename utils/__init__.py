"""Detection of CT-GAN-style tampering in lung CT.

Importing the package is light: data-only work (corpus generation, DICOM, patches) never loads Keras or
TensorFlow. The model's custom Keras layers register when a model module is imported (`utils.layers`,
`utils.architectures`, `utils.evaluate`, `utils.training`, `utils.scan`, `explainability`), or at once if Keras is
already loaded when `utils` is imported, so saved models load with safe_mode on.
"""
from __future__ import annotations

import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of notebooks

_LAZY = {
    "build_cnn": "architectures", "build_hybrid_vit": "architectures", "build_ensemble": "ensemble",
    "TrainConfig": "training", "run_training": "training",
    "evaluate_on_testset": "evaluate",
    "load_split": "data", "read_image": "data",
    "CorpusConfig": "synthetic", "build_synthetic_corpus": "synthetic",
    "load_dataset": "ctgan", "prepare_ctgan": "ctgan",
    "read_slice": "dicom", "read_slices": "dicom", "read_series": "dicom", "window": "dicom",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")


if "keras" in sys.modules:  # Keras is loaded anyway: register the custom layers now (cheap)
    importlib.import_module(".layers", __name__)
