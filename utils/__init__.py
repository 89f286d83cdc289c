"""Detection of CT-GAN-style tampering in lung CT.

Importing the package registers the model's custom Keras layers (so saved models load with safe_mode on).
Heavy modules (Keras, TensorFlow) load only when a model-related name is first used.
"""
from __future__ import annotations

import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of notebooks

_LAZY = {
    "build_cnn": "architectures", "build_hybrid_vit": "architectures",
    "TrainConfig": "training", "run_training": "training",
    "evaluate_on_testset": "evaluate",
    "load_split": "data", "read_image": "data",
    "CorpusConfig": "synthetic", "build_synthetic_corpus": "synthetic",
    "load_dataset": "ctgan", "prepare_ctgan": "ctgan",
    "read_slice": "dicom", "read_series": "dicom", "window": "dicom",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")


def _register_layers() -> None:
    """Register the custom layers if Keras is importable (it is for every model task)."""
    try:
        importlib.import_module(".layers", __name__)
    except ImportError:  # data-only use without Keras installed
        pass


_register_layers()
