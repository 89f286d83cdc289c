"""Self-supervised pre-training of the transformer: the masked-token model, its save / load, the hand-over to
phase 2a."""
import numpy as np
import pytest

import keras
from tests.conftest import TINY_MODEL
from utils.architectures import build_cnn, build_hybrid_vit
from utils.layers import MaskedTokenError, MaskTokens
from utils.pretraining import build_pretraining_model, load_transformer_weights, shared_layer_names
from utils.training import TrainConfig, run_training

SIZES = {k: TINY_MODEL[k] for k in ("dim", "depth", "heads", "mlp_dim")}


def _cnn(seed=0):
    keras.utils.set_random_seed(seed)
    return build_cnn((64, 64, 1), TINY_MODEL["filters"])


def test_mask_tokens_masks_about_the_ratio_with_one_learned_token():
    tokens = np.random.default_rng(0).normal(size=(8, 64, 16)).astype(np.float32)
    layer = MaskTokens(0.5, seed=3)
    out, mask = (keras.ops.convert_to_numpy(t) for t in layer(tokens))
    assert 0.35 < mask.mean() < 0.65 and set(np.unique(mask)) <= {0.0, 1.0}
    token = keras.ops.convert_to_numpy(layer.token)[0, 0]
    np.testing.assert_allclose(out[mask == 1], np.broadcast_to(token, out[mask == 1].shape), rtol=1e-6)
    np.testing.assert_array_equal(out[mask == 0], tokens[mask == 0])


def test_masked_token_error_counts_masked_tokens_only():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(2, 4, 8)).astype(np.float32)
    norm = (target - target.mean(-1, keepdims=True)) / np.sqrt(target.var(-1, keepdims=True) + 1e-6)
    prediction = np.concatenate([np.zeros((2, 1, 8), np.float32), norm], axis=1)  # CLS first
    prediction[0, 2] += 1.0  # a wrong prediction on token 1 of image 0
    mask = np.array([[0, 1, 0, 0], [0, 0, 0, 0]], np.float32)
    err = keras.ops.convert_to_numpy(MaskedTokenError()([prediction, target, mask]))
    np.testing.assert_allclose(err, [1.0, 0.0], atol=1e-4)
    mask[0, 1] = 0
    assert keras.ops.convert_to_numpy(MaskedTokenError()([prediction, target, mask]))[0] == pytest.approx(0, abs=1e-4)


def test_pretraining_model_saves_and_hands_its_transformer_to_a_detector(tmp_path):
    model = build_pretraining_model(_cnn(), **SIZES, mask_ratio=0.5, seed=0)
    x = np.random.default_rng(2).uniform(size=(4, 64, 64, 1)).astype(np.float32)
    err = keras.ops.convert_to_numpy(model(x))
    assert err.shape == (4,) and np.all(np.isfinite(err)) and np.all(err > 0)
    path = tmp_path / "vit_pretrained.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    detector = build_hybrid_vit(_cnn(1), **SIZES)
    copied = load_transformer_weights(detector, path)
    assert copied == shared_layer_names(SIZES["depth"])
    for name in copied:
        for a, b in zip(model.get_layer(name).get_weights(), detector.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    wider = build_hybrid_vit(_cnn(1), **{**SIZES, "mlp_dim": 2 * SIZES["mlp_dim"]})
    with pytest.raises(ValueError, match="do not fit"):
        load_transformer_weights(wider, path)
    with pytest.raises(FileNotFoundError, match="no pre-trained transformer"):
        load_transformer_weights(detector, tmp_path / "missing.keras")


def test_phase_2a_starts_from_the_pretrained_transformer(tiny_corpus, tmp_path):
    cfg = TrainConfig(data_dir=str(tiny_corpus), models_dir=str(tmp_path), cnn_epochs=1, vit_epochs=1,
                      finetune_epochs=0, pretrain_epochs=2, batch_size=32, patience=10, slice_calibration=0,
                      **TINY_MODEL)
    run = run_training(cfg, verbose=0)
    hist = run["histories"]["pretrain"]
    assert len(hist["loss"]) == 2 and np.all(np.isfinite(hist["val_loss"])) and hist["n_images"] > 0
    assert (tmp_path / "vit_pretrained.keras").is_file()
    # the same start from the saved file (vit_init) gives the same first phase-2a weights as pre-training here
    cfg2 = TrainConfig(**{**cfg.__dict__, "models_dir": str(tmp_path / "b"), "pretrain_epochs": 0,
                          "vit_epochs": 0, "vit_init": str(tmp_path / "vit_pretrained.keras")})
    pretrained = keras.models.load_model(tmp_path / "vit_pretrained.keras", compile=False)
    run2 = run_training(cfg2, verbose=0)
    np.testing.assert_array_equal(run2["hybrid"].get_layer("position_embedding").get_weights()[0],
                                  pretrained.get_layer("position_embedding").get_weights()[0])


def test_pretraining_patches_take_in_authentic_dicom(tmp_path, chest_slices):
    from tests.conftest import write_dicom
    from utils.training import pretraining_patches

    slices, _ = chest_slices
    for i, hu in enumerate(slices):
        write_dicom(tmp_path / "series" / f"{i}.dcm", hu, instance=i + 1, z=2.5 * i)
    base = np.zeros((3, 64, 64, 1), np.float32)
    cfg = TrainConfig(pretrain_dicom=(str(tmp_path / "series"),))
    out = pretraining_patches(cfg, base)
    assert out.shape[1:] == (64, 64, 1) and len(out) > 3 and out[3:].max() > 0 and out.max() <= 1
    assert pretraining_patches(TrainConfig(), base) is base
