"""The comparing design: reference windows in the corpus, the two-token-set model, training, evaluation, scan."""
import numpy as np
import pytest

import keras
from tests.conftest import TINY_MODEL
from utils.architectures import build_cnn, build_comparing_vit, cnn_layer_names, compares, encoder_blocks
from utils.layers import BatchToTokens, PairToBatch, ReferenceNorm


def _tiny_comparing(normalise=None):
    keras.utils.set_random_seed(0)
    cnn = build_cnn((64, 64, 1), TINY_MODEL["filters"])
    model = build_comparing_vit(cnn, TINY_MODEL["dim"], TINY_MODEL["depth"], TINY_MODEL["heads"],
                                TINY_MODEL["mlp_dim"], normalise=normalise)
    return cnn, model


@pytest.mark.parametrize("layer", [PairToBatch(), BatchToTokens(members=3), ReferenceNorm(epsilon=0.5),
                                   ReferenceNorm(scale=False)])
def test_pair_layers_config_round_trip(layer):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


def test_pair_layers_order_patch_then_reference():
    x = np.arange(2 * 4 * 4 * 2, dtype="float32").reshape(2, 4, 4, 2)
    batch = keras.ops.convert_to_numpy(PairToBatch()(x))
    assert batch.shape == (4, 4, 4, 1)
    np.testing.assert_array_equal(batch[0, ..., 0], x[0, ..., 0])  # sample 0's patch
    np.testing.assert_array_equal(batch[1, ..., 0], x[0, ..., 1])  # sample 0's reference
    tokens = keras.ops.convert_to_numpy(BatchToTokens()(batch.reshape(4, 16, 1)))
    assert tokens.shape == (2, 32, 1)
    np.testing.assert_array_equal(tokens[1, :16, 0], x[1, ..., 0].ravel())
    np.testing.assert_array_equal(tokens[1, 16:, 0], x[1, ..., 1].ravel())


def test_reference_norm_cancels_what_lifts_the_whole_slice():
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(2, 8, 3)).astype("float32")  # 4 patch tokens, then 4 reference tokens
    norm = ReferenceNorm(epsilon=1e-6)
    out = keras.ops.convert_to_numpy(norm(tokens))
    lifted = keras.ops.convert_to_numpy(norm(tokens * 3.0 + 5.0))  # the same shift and gain on both sets
    np.testing.assert_allclose(out, lifted, atol=1e-4)
    np.testing.assert_allclose(out[:, 4:].mean(axis=1), 0.0, atol=1e-5)
    local = tokens.copy()
    local[:, :4] += 2.0  # only the patch differs from its slice: that survives
    assert np.abs(keras.ops.convert_to_numpy(norm(local))[:, :4] - out[:, :4]).min() > 0.1
    centre = ReferenceNorm(scale=False)
    shifted = keras.ops.convert_to_numpy(centre(tokens + 5.0))  # centring cancels a shift, keeps the gain
    np.testing.assert_allclose(shifted, keras.ops.convert_to_numpy(centre(tokens)), atol=1e-4)


def test_unknown_normalisation_is_refused():
    with pytest.raises(ValueError, match="normalise must be"):
        _tiny_comparing("whiten")


@pytest.mark.parametrize("normalise", [None, "scale", "centre"])
def test_comparing_model_copies_the_cnn_and_attends_across_both(tmp_path, normalise):
    cnn, model = _tiny_comparing(normalise)
    assert compares(model) and not compares(cnn)
    assert tuple(encoder_blocks(model)[0].output[1].shape[1:]) == (TINY_MODEL["heads"], 33, 33)  # CLS + two 4x4 grids
    for name in cnn_layer_names(cnn)[1:]:  # every layer but the input
        assert model.get_layer(name) is not cnn.get_layer(name)  # its own stem, starting from phase 1's weights
        for a, b in zip(model.get_layer(name).get_weights(), cnn.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 64, 64, 2)).astype("float32")
    # the stem reads patch and reference as separate images: its features equal the CNN's on each alone
    stem = keras.Model(model.inputs, model.get_layer("cnn_features").output)
    ref = keras.Model(cnn.inputs, cnn.get_layer("cnn_features").output)
    feats = keras.ops.convert_to_numpy(stem(x))
    np.testing.assert_allclose(feats[0::2], keras.ops.convert_to_numpy(ref(x[..., :1])), atol=1e-5)
    np.testing.assert_allclose(feats[1::2], keras.ops.convert_to_numpy(ref(x[..., 1:])), atol=1e-5)
    path = tmp_path / "comparing.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert compares(loaded)


def test_corpus_patches_carry_reference_windows_of_their_own_slice(tmp_path):
    from utils.data import load_split, read_pair
    from utils.patches import read_manifest, reference_path
    from utils.synthetic import CorpusConfig, build_synthetic_corpus

    build_synthetic_corpus(tmp_path, CorpusConfig(n_scans=6, slices_per_scan=1, tampers_per_slice=2, workers=1,
                                                  shipped_backgrounds=False), progress=False)
    rows = read_manifest(tmp_path / "manifest.csv")
    assert rows and all(r["ref_x"] != "" for r in rows)
    for r in rows:
        assert (tmp_path / reference_path(r["path"])).is_file()
        assert max(abs(int(r["ref_x"]) - int(r["x"])), abs(int(r["ref_y"]) - int(r["y"]))) >= 64  # no overlap
    x1, y1, files1 = load_split(tmp_path / "train")
    x2, y2, files2 = load_split(tmp_path / "train", reference=True)
    assert x2.shape == (*x1.shape[:3], 2) and files1 == files2
    np.testing.assert_array_equal(x2[..., :1], x1)
    assert read_pair(files1[0]).shape == (64, 64, 2)


def test_reference_windows_stay_clear_of_tampered_regions(chest_slices):
    from utils.patches import clear_boxes, extract_patches
    from utils.scans import Scan
    from utils.synthetic import CorpusConfig, synthetic_scan

    scan = next(s for i in range(12) if (s := synthetic_scan(i, CorpusConfig(n_scans=12, slices_per_scan=1))).kind
                in ("FM", "FB"))
    boxes = {inst: clear_boxes(scan, inst) for inst in scan.slices}
    patches = extract_patches(scan, np.random.default_rng(0), random_per_slice=2)
    assert any(p.label == 1 for p in patches)
    for p in patches:
        assert p.reference is not None and p.reference.shape == (64, 64)
        for cx, cy, half in boxes[p.slice]:
            assert max(abs(p.ref_x - cx), abs(p.ref_y - cy)) >= half
    assert isinstance(scan, Scan)


@pytest.fixture(scope="module")
def trained_comparing(tiny_corpus, tmp_path_factory):
    from utils.training import TrainConfig, run_training

    models = tmp_path_factory.mktemp("comparing_models")
    cfg = TrainConfig(data_dir=str(tiny_corpus), models_dir=str(models), cnn_epochs=1, vit_epochs=1,
                      finetune_epochs=1, batch_size=32, design="compare", slice_calibration=0, **TINY_MODEL)
    return run_training(cfg, verbose=0), models


def test_training_the_comparing_design(trained_comparing, tiny_corpus):
    from utils.evaluate import evaluate_authentic, evaluate_on_testset
    from utils.operating_point import load_model

    run, models = trained_comparing
    assert run["cnn"].inputs[0].shape[-1] == 1 and compares(run["hybrid"])
    loaded = load_model(models / "deepfake_detection_model.keras")
    assert compares(loaded) and loaded.operating_point["patch"]["threshold"] is not None
    out = evaluate_on_testset(loaded, tiny_corpus / "test", bootstrap=20, return_scores=True)
    assert out["without_reference"] == 0 and len(out["scores"]) == sum(out["counts"].values())
    # a patch model scored on the same patches (reference_only) sees the same files
    same = evaluate_on_testset(run["cnn"], tiny_corpus / "test", bootstrap=20, return_scores=True,
                               reference_only=True)
    assert same["files"] == out["files"]
    fa = evaluate_authentic(loaded, tiny_corpus)
    assert 0 < fa["n"] and 0.0 <= fa["flag_rate"] <= 1.0


def test_rollout_gradcam_and_scan_read_the_comparing_model(trained_comparing, chest_slices):
    from explainability.maps import AttentionRollout, GradCAM
    from utils.scan import attention_peak, scan_slice

    model = trained_comparing[0]["hybrid"]
    x = np.random.default_rng(1).uniform(size=(2, 64, 64, 2)).astype("float32")
    reader = AttentionRollout(model)
    assert reader.members == 2
    masks = reader(x)
    assert masks.shape == (2, 64, 64) and 0 <= masks.min() and masks.max() <= 1
    share = reader.reference_share(x[0])
    assert 0.0 < share < 1.0
    assert GradCAM(model)(x).shape == (2, 64, 64)
    with pytest.raises(ValueError, match="reference window"):
        reader(x[0, ..., :1])
    slices, _ = chest_slices
    res = scan_slice(model, slices[0], stride=32, references=2)
    assert res.n_patches > 0 and res.locations and np.isfinite(res.heatmap).all()
    top = res.locations[0]  # the attention peak reads the window beside a reference of its slice
    x, y = attention_peak(model, res.hu_source, top.x, top.y, res.spacing)
    assert abs(x - top.x) <= 32 and abs(y - top.y) <= 32
    with pytest.raises(ValueError, match="spacing"):
        attention_peak(model, res.hu_source, top.x, top.y)


def test_the_explorers_slice_view_cuts_pairs_for_a_comparing_model(trained_comparing, chest_slices):
    """`explain --slice` and the explorer explain a scanned slice's top windows with their reference windows."""
    from explainability.page import slice_items
    from explainability.views import Explainer, scan_one_slice
    from utils.dicom import CTSlice

    model = trained_comparing[0]["hybrid"]
    slices, profile = chest_slices
    view = scan_one_slice(model, CTSlice(slices[0], (profile.spacing, profile.spacing), 3), stride=32, top_k=2)
    items = slice_items(view)
    assert [item.image.shape for item in items] == [(64, 64, 2)] * 2
    patch = Explainer(model).patch(items[0].image)
    assert patch.score == pytest.approx(float(model.predict(items[0].image[None], verbose=0)[0, 0]), abs=1e-5)
