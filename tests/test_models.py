import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
from tests.conftest import REPO, TINY_MODEL
from utils.architectures import build_cnn, build_hybrid_vit, encoder_blocks
from utils.layers import ClassToken, PositionEmbedding, TakeToken, TransformerEncoderBlock


def _tiny_models():
    keras.utils.set_random_seed(0)
    cnn = build_cnn((64, 64, 1), TINY_MODEL["filters"])
    hybrid = build_hybrid_vit(cnn, TINY_MODEL["dim"], TINY_MODEL["depth"], TINY_MODEL["heads"],
                              TINY_MODEL["mlp_dim"])
    return cnn, hybrid


@pytest.mark.parametrize("layer", [ClassToken(), PositionEmbedding(stddev=0.05), TakeToken(2),
                                   TransformerEncoderBlock(num_heads=3, key_dim=5, mlp_dim=7, dropout=0.2,
                                                           attention_dropout=0.1, epsilon=1e-5)])
def test_layer_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert keras.saving.get_registered_object(
        keras.saving.get_registered_name(type(layer))) is type(layer)


def test_hybrid_tokens_and_shapes():
    cnn, hybrid = _tiny_models()
    blocks = encoder_blocks(hybrid)
    assert len(blocks) == TINY_MODEL["depth"]
    assert tuple(blocks[0].output[1].shape[1:]) == (TINY_MODEL["heads"], 17, 17)  # CLS + a 4x4 grid
    assert not any(type(layer).__name__ == "Lambda" for layer in hybrid.layers)
    assert hybrid.get_layer("cnn_features") is cnn.get_layer("cnn_features")  # shared, not copied


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_save_load_identical_predictions(tmp_path, suffix):
    cnn, hybrid = _tiny_models()
    x = np.random.default_rng(0).uniform(size=(4, 64, 64, 1)).astype("float32")
    for model in (cnn, hybrid):
        path = tmp_path / f"{model.name}{suffix}"
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


JAX_SCRIPT = r"""
import json, sys
import numpy as np
import keras
import utils
from utils.architectures import build_cnn, build_hybrid_vit
from utils.training import compile_model
assert keras.backend.backend() == "jax"
tiny, out, tf_file = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
x = np.random.default_rng(0).uniform(size=(8, 64, 64, 1)).astype("float32")
cnn = build_cnn((64, 64, 1), tuple(tiny["filters"]))
hybrid = build_hybrid_vit(cnn, tiny["dim"], tiny["depth"], tiny["heads"], tiny["mlp_dim"])
compile_model(hybrid, 1e-3, 1e-4)
hybrid.fit(x, np.array([0, 1] * 4, "float32"), epochs=1, verbose=0)
for suffix in (".keras", ".h5"):
    hybrid.save(out + suffix)
    again = keras.models.load_model(out + suffix, safe_mode=True)
    assert np.allclose(again.predict(x, verbose=0), hybrid.predict(x, verbose=0), atol=1e-6), suffix
from_tf = keras.models.load_model(tf_file, safe_mode=True)
print(json.dumps(np.asarray(from_tf.predict(x, verbose=0)).ravel().tolist()))
"""


def test_jax_backend_builds_trains_saves_and_loads_tf_files(tmp_path):
    pytest.importorskip("jax", reason="JAX is not installed (pip install 'jax[cpu]' to test the GPU backend)")
    _, hybrid = _tiny_models()
    tf_file = tmp_path / "from_tf.keras"
    hybrid.save(tf_file)
    x = np.random.default_rng(0).uniform(size=(8, 64, 64, 1)).astype("float32")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", JAX_SCRIPT, json.dumps(TINY_MODEL), str(tmp_path / "jax_model"),
                          str(tf_file)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    jax_scores = np.array(json.loads(run.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(jax_scores, hybrid.predict(x, verbose=0).ravel(), atol=1e-4)
