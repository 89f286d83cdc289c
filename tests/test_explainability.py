import numpy as np
import pytest

import keras
from explainability import AttentionRollout, GradCAM
from explainability.faithfulness import (centre_prior, deletion_insertion, deletion_insertion_curves, energy_ratio,
                                         pointing_hit, region_mask, score_maps)
from explainability.overlay import explanation_grid, overlay
from tests.conftest import TINY_MODEL
from utils.architectures import build_cnn, build_hybrid_vit, encoder_blocks


@pytest.fixture(scope="module", params=["same", "valid"])
def hybrid(request):
    keras.utils.set_random_seed(1)
    cnn = build_cnn((64, 64, 1), TINY_MODEL["filters"], padding=request.param)
    return build_hybrid_vit(cnn, TINY_MODEL["dim"], TINY_MODEL["depth"], TINY_MODEL["heads"], TINY_MODEL["mlp_dim"])


@pytest.mark.parametrize("shape,expected", [((64, 64), (64, 64)), ((64, 64, 1), (64, 64)), ((224, 224, 3), (224, 224)),
                                            ((100, 80, 4), (100, 80)), ((1, 64, 64, 1), (1, 64, 64)),
                                            ((3, 32, 32, 3), (3, 32, 32))])
def test_every_input_form(hybrid, shape, expected):
    img = np.random.default_rng(0).uniform(size=shape).astype(np.float32)
    mask = AttentionRollout(hybrid)(img)
    assert mask.shape == expected and mask.min() >= 0 and mask.max() <= 1
    assert GradCAM(hybrid)(img).shape == expected


def test_token_map_and_user_model_untouched(hybrid):
    n_layers, outputs = len(hybrid.layers), len(hybrid.outputs)
    rollout = AttentionRollout(hybrid, head_fusion="max", discard_ratio=0.5)
    grid = rollout.token_map(np.zeros((64, 64)))
    assert grid.shape == tuple(hybrid.get_layer("cnn_features").output.shape[1:3]) in {(8, 8), (4, 4)}
    assert np.all(grid >= 0) and grid.sum() < 1
    assert len(hybrid.layers) == n_layers and len(hybrid.outputs) == outputs


def test_grad_cam_reads_the_last_convolution_at_twice_the_token_resolution(hybrid):
    from utils.architectures import FEATURES, feature_geometry, last_conv_activation

    assert last_conv_activation(hybrid) == "relu3_2"
    fine, tokens = GradCAM(hybrid), GradCAM(hybrid, FEATURES)
    grid, token_grid = fine.reader.outputs[0].shape[1:3], tokens.reader.outputs[0].shape[1:3]
    assert (grid, token_grid) in {((16, 16), (8, 8)), ((9, 9), (4, 4))}  # 'same' / 'valid' padding
    stride, offset = feature_geometry(hybrid, "relu3_2")
    assert stride == 4 and 0 <= offset and offset + stride * (grid[0] - 1) <= 63  # cells centred inside the patch
    img = np.random.default_rng(2).uniform(size=(2, 64, 64, 1)).astype(np.float32)
    masks, scores = fine.explain(img)
    assert masks.shape == (2, 64, 64) and np.allclose(scores, hybrid.predict(img, verbose=0).ravel(), atol=1e-5)
    from explainability.figures import compute_maps

    maps, _ = compute_maps(hybrid, img, tokens=True)
    assert {"Grad-CAM", "Grad-CAM on the tokens"} <= set(maps) and np.allclose(maps["Grad-CAM"], masks)


def test_bad_arguments(hybrid):
    with pytest.raises(ValueError, match="head_fusion"):
        AttentionRollout(hybrid, head_fusion="median")
    with pytest.raises(ValueError, match="TransformerEncoderBlock"):
        AttentionRollout(build_cnn((64, 64, 1), TINY_MODEL["filters"]))
    with pytest.raises(ValueError, match="method"):
        AttentionRollout(hybrid).explain(np.zeros((64, 64)), method="lime")
    with pytest.raises(ValueError, match=r"\(B, H, W, 1\)"):  # a gray batch (B, H, W) is not one W-channel image
        AttentionRollout(hybrid)(np.zeros((5, 64, 64)))
    with pytest.raises(ValueError, match="divide 8-bit images by 255"):
        AttentionRollout(hybrid)(np.full((64, 64), 200.0))


@pytest.mark.parametrize("method", ["Grad-CAM", "gradient rollout"])
def test_gradient_maps_of_a_confident_verdict_are_not_flat(hybrid, method):
    """A sigmoid saturated at 1 has no gradient: Grad-CAM and gradient rollout follow the head's logit, as they are
    defined (the class score before squashing)."""
    import warnings

    model = keras.models.clone_model(hybrid)
    model.set_weights(hybrid.get_weights())
    head = model.get_layer("score")
    kernel, bias = head.get_weights()
    head.set_weights([kernel, bias + 60.0])  # float32 sigmoid rounds to exactly 1
    img = np.random.default_rng(4).uniform(size=(64, 64)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        if method == "Grad-CAM":
            mask, score = GradCAM(model).explain(img)
        else:
            mask, score = AttentionRollout(model).explain(img, method="gradient")
    assert score == pytest.approx(1.0) and mask.std() > 0.01


def test_gradient_rollout_differs_when_attention_ignores_the_input(hybrid):
    model = keras.models.clone_model(hybrid)
    model.set_weights(hybrid.get_weights())
    for block in encoder_blocks(model):
        for dense in (block.attention._query_dense, block.attention._key_dense):
            dense.set_weights([np.zeros_like(w) for w in dense.get_weights()])  # uniform attention
    img = np.random.default_rng(3).uniform(size=(64, 64)).astype(np.float32)
    rollout = AttentionRollout(model, discard_ratio=0.0)
    with pytest.warns(UserWarning, match="flat"):
        plain, _ = rollout.explain(img)
    assert np.all(plain == 1.0)  # input-independent attention: uniform, not rounding error rescaled
    grad, _ = rollout.explain(img, method="gradient")
    assert grad.std() > 0.05


def test_overlay_and_grid(tmp_path):
    img = np.random.default_rng(0).uniform(size=(64, 64))
    mask = centre_prior((64, 64))
    out = overlay(img, mask, alpha=0.5)
    assert out.shape == (64, 64, 3) and 0 <= out.min() and out.max() <= 1
    with pytest.raises(ValueError, match="differ in size"):
        overlay(img, mask[:32])
    path = explanation_grid([img, img], {"a": [mask, mask]}, [0.9, 0.1], ["fake", "real"], tmp_path / "g.png",
                            regions=[(32, 32, 10), None])
    assert path.is_file()


def test_faithfulness_scores():
    region = region_mask((64, 64), 40, 20, 8)
    peaked = np.zeros((64, 64))
    peaked[20, 40] = 1.0
    assert pointing_hit(peaked, region) and not pointing_hit(centre_prior((64, 64)), region)
    assert energy_ratio(peaked, region) > 10 and energy_ratio(np.ones((64, 64)), region) == pytest.approx(1.0)
    scores = score_maps({"peak": peaked[None], "flat": np.ones((1, 64, 64))}, region[None])
    assert scores["peak"]["pointing"] == 1.0 and scores["flat"]["energy_ratio"] == pytest.approx(1.0)


class _MeanScore:
    """A stand-in model whose fake score is the mean of its input: its curves are known exactly."""

    input = None

    def __call__(self, x, training=False):
        return np.asarray(x).mean(axis=(1, 2, 3))


def test_deletion_and_insertion_follow_the_map():
    images = np.ones((3, 8, 8, 1), np.float32)
    saliency = np.random.default_rng(0).uniform(size=(3, 8, 8))
    deletion, insertion = deletion_insertion_curves(_MeanScore(), images, saliency, steps=4, neutral=0.0)
    # the score is the share of pixels kept (deletion) or put back (insertion): linear, area 0.5
    np.testing.assert_allclose(deletion, 0.5, atol=1e-6)
    np.testing.assert_allclose(insertion, 0.5, atol=1e-6)
    images[0, :4] = 0.0  # the map ranks the lit half first: deletion falls fast, insertion rises fast
    ranked = np.zeros((8, 8))
    ranked[4:] = 1.0
    d, i = deletion_insertion(_MeanScore(), images[0], ranked, steps=4, neutral=0.0)
    assert d < 0.2 < 0.3 < i


def test_curves_of_many_images_equal_those_of_one_at_a_time(hybrid):
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(5, 64, 64, 1)).astype(np.float32)
    maps = rng.uniform(size=(5, 64, 64))
    deletion, insertion = deletion_insertion_curves(hybrid, images, maps, steps=4, batch_size=20)  # 2 per call
    one_by_one = np.array([deletion_insertion(hybrid, img, m, steps=4) for img, m in zip(images, maps)])
    np.testing.assert_allclose(deletion, one_by_one[:, 0], atol=1e-5)
    np.testing.assert_allclose(insertion, one_by_one[:, 1], atol=1e-5)


def test_score_views_reports_baselines_and_a_reference_that_knows_the_answer(hybrid):
    from explainability.figures import score_views

    img = np.random.default_rng(4).uniform(size=(2, 64, 64, 1)).astype(np.float32)
    scores = score_views(hybrid, img, [(20.0, 40.0, 8.0), (44.0, 30.0, 8.0)], steps=4)
    assert {"baseline: random", "baseline: random cells", "baseline: centre prior", "rollout mean",
            "Grad-CAM"} <= set(scores)
    reference = scores["reference: the tampered point first"]
    assert reference["pointing"] == 1.0 and reference["energy_ratio"] > 3 and 0 <= reference["insertion_auc"] <= 1


def test_cli_explain(hybrid, tmp_path):
    import subprocess
    import sys

    import cv2

    from tests.conftest import REPO

    hybrid.save(tmp_path / "m.keras")
    img = tmp_path / "p.png"
    cv2.imwrite(str(img), (np.random.default_rng(0).uniform(size=(64, 64)) * 255).astype(np.uint8))
    run = subprocess.run([sys.executable, "-m", "utils.cli", "explain", str(img), "--model", str(tmp_path / "m.keras"),
                          "--out", str(tmp_path / "e.png")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "e.png").is_file() and "fake score" in run.stdout


def test_uncentred_views_put_the_region_where_the_point_lies():
    from explainability.figures import uncentred_views
    from utils.dicom import CTSlice
    from utils.scans import LabelRow, Scan

    hu = np.full((256, 256), -850.0, np.float32)
    hu[118:123, 98:103] = 100.0  # a bright 5 px square at the label point (100, 120)
    scan = Scan("SYN", "0001", "synthetic", "FM", {5: CTSlice(hu, (0.7, 0.7), 5)},
                [LabelRow("FM", "0001", 5, 100, 120, "SYN")], radii={(5, 100, 120): 9.0})
    images, regions = uncentred_views([scan], offset=16, seed=3)
    (cx, cy, r), img = regions[0], images[0, ..., 0]
    assert r == 9.0 and (cx, cy) != (32, 32) and abs(cx - 32) <= 16 and abs(cy - 32) <= 16
    assert img[int(cy), int(cx)] > 0.75 and img.mean() < 0.2  # the square (100 HU) sits at the region's centre


def test_manifest_regions_are_scaled_from_the_stored_patch_size(tmp_path, monkeypatch):
    """A 96 px corpus read by a 96 px model: its manifest's region coordinates are used as they are."""
    import cv2

    import explainability.figures as figures

    (tmp_path / "test" / "fake").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "test" / "fake" / "a.png"), np.zeros((96, 96), np.uint8))
    (tmp_path / "manifest.csv").write_text("path,split,label,kind,scan,tamper_x,tamper_y,tamper_r\n"
                                           "test/fake/a.png,test,1,FM,SYN-0001,20,70,14\n")
    seen = {}
    monkeypatch.setattr(figures, "score_views", lambda model, images, regions, scale, *a: seen.update(
        shape=images.shape, regions=regions, scale=scale))
    model = keras.Sequential([keras.Input((96, 96, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    figures.faithfulness(model, tmp_path, n=1)
    assert seen == {"shape": (1, 96, 96, 1), "regions": [(20.0, 70.0, 14.0)], "scale": 96}
