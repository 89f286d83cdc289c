"""Where did the detector look? Attention rollout, gradient rollout, Grad-CAM, overlays, faithfulness scores.

Importing the package registers the model's custom layers (`utils.layers`).
"""
import utils.layers  # noqa: F401  (registers the custom Keras layers)

from .maps import AttentionRollout, GradCAM
from .rollout import discard_lowest, fuse_heads, gradient_rollout, rollout

__all__ = ["AttentionRollout", "GradCAM", "rollout", "gradient_rollout", "fuse_heads", "discard_lowest"]
