"""How wide a cell of the CNN stem really looks: its effective receptive field, against its theoretical one.

    python -m benchmarks.receptive_field [--model models/deepfake_detection_model.keras] [--data data] [--n 64]

For the token map (`cnn_features`) and the last convolution's map (Grad-CAM's), the gradient of the middle cell
(channels mixed with random signs, 8 draws) with respect to the input, its magnitude averaged over `--n` test
patches: the sigma of that footprint around the cell's centre (root mean square distance per axis), the
theoretical receptive field (`architectures.receptive_field`) and their ratio, which sets how far the maps spread
every cell (`explainability.rollout.ERF_SIGMA_PER_RF`). An ensemble is measured member by member. TensorFlow
backend (gradients).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np

import utils.layers  # noqa: F401  (registers the custom layers)
from explainability.maps import _require_tensorflow
from utils.architectures import FEATURES, feature_geometry, last_conv_activation, receptive_field
from utils.data import read_image
from utils.ensemble import members
from utils.patches import read_manifest


def footprint_sigma(model, layer: str, images: np.ndarray, draws: int = 8, seed: int = 0) -> float:
    """Root mean square distance (px, per axis, mean of the two) of the middle cell's input-gradient magnitude."""
    tf = _require_tensorflow("the receptive-field measurement")
    reader = keras.Model(model.inputs, model.get_layer(layer).output)
    cells, channels = int(reader.output.shape[1]), int(reader.output.shape[-1])
    stride, offset = feature_geometry(model, layer)
    mid, rng = cells // 2, np.random.default_rng(seed)
    x = tf.convert_to_tensor(images[..., : int(model.inputs[0].shape[-1])], tf.float32)
    magnitude = np.zeros(images.shape[1:3])
    for _ in range(draws):
        signs = tf.convert_to_tensor(rng.standard_normal(channels), tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(x)
            target = tf.reduce_sum(reader(x, training=False)[:, mid, mid, :] * signs)
        magnitude += np.abs(tape.gradient(target, x).numpy()).sum(axis=(0, 3))
    weights = magnitude / magnitude.sum()
    yy, xx = np.mgrid[0 : weights.shape[0], 0 : weights.shape[1]]
    centre = offset + stride * mid
    return float((np.sqrt((weights * (xx - centre) ** 2).sum()) + np.sqrt((weights * (yy - centre) ** 2).sum())) / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/deepfake_detection_model.keras")
    parser.add_argument("--data", default="data", help="corpus folder (its test split's patches)")
    parser.add_argument("--n", type=int, default=64, help="test patches")
    args = parser.parse_args()
    model = keras.models.load_model(args.model)
    data = Path(args.data)
    rows = [r for r in read_manifest(data / "manifest.csv") if r["split"] == "test"]
    rows = [rows[i] for i in np.random.default_rng(0).choice(len(rows), min(args.n, len(rows)), replace=False)]
    print("| member | map | cells | theoretical receptive field (px) | effective sigma (px) | sigma / field |")
    print("|---|---|---|---|---|---|")
    for i, member in enumerate(members(model)):
        size, channels = int(member.inputs[0].shape[1]), int(member.inputs[0].shape[-1])
        images = np.stack([read_image(data / r["path"], size, channels) for r in rows])
        for layer in (FEATURES, last_conv_activation(member)):
            field = receptive_field(member, layer)
            sigma = footprint_sigma(member, layer, images)
            cells = int(member.get_layer(layer).output.shape[1])
            print(f"| {i} | {layer} | {cells}x{cells} | {field} | {sigma:.2f} | {sigma / field:.3f} |")


if __name__ == "__main__":
    main()
