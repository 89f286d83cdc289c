import json
import subprocess
import sys

import numpy as np
import pytest

import keras
from explainability import AttentionRollout
from explainability.maps import GradCAM
from tests.conftest import REPO, TINY_MODEL
from utils.architectures import build_cnn, build_hybrid_vit
from utils.ensemble import build_ensemble, members
from utils.scan import scan_slice


def _hybrids(n=3):
    out = []
    for seed in range(n):
        keras.utils.set_random_seed(seed)
        cnn = build_cnn((64, 64, 1), TINY_MODEL["filters"])
        out.append(build_hybrid_vit(cnn, TINY_MODEL["dim"], 1, 2, 32))
    return out


@pytest.fixture(scope="module")
def hybrids():
    return _hybrids()


@pytest.fixture(scope="module")
def saved_ensemble(hybrids, tmp_path_factory):
    path = tmp_path_factory.mktemp("ensemble") / "ensemble.keras"
    build_ensemble(hybrids).save(path)
    return keras.saving.load_model(path, safe_mode=True)


def test_ensemble_takes_its_input_as_the_single_models_do(hybrids, saved_ensemble):
    """The explanations call a model with its inputs' structure: no Keras input-structure warning for a hybrid (a
    list of one input), an ensemble or a CNN (a single input)."""
    import warnings

    from explainability.maps import predict

    x = np.random.default_rng(1).random((2, 64, 64, 1), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for model in (hybrids[0], saved_ensemble, build_cnn((64, 64, 1), TINY_MODEL["filters"])):
            assert predict(model, x).shape == (2,)


def test_ensemble_is_the_mean_of_its_members_and_survives_save_and_load(hybrids, saved_ensemble, tmp_path):
    x = np.random.default_rng(0).random((5, 64, 64, 1), dtype=np.float32)
    expected = np.mean([m.predict(x, verbose=0) for m in hybrids], axis=0)
    ensemble = build_ensemble(hybrids)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-6)
    np.testing.assert_allclose(saved_ensemble.predict(x, verbose=0), expected, atol=1e-6)
    ensemble.save(tmp_path / "ensemble.h5")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "ensemble.h5").predict(x, verbose=0), expected,
                               atol=1e-6)
    assert len(members(saved_ensemble)) == 3
    assert members(hybrids[0]) == [hybrids[0]]


def test_ensemble_needs_two_members_of_one_input(hybrids):
    with pytest.raises(ValueError, match="two or more"):
        build_ensemble(hybrids[:1])
    with pytest.raises(ValueError, match="different inputs"):
        build_ensemble([hybrids[0], build_cnn((48, 48, 1), TINY_MODEL["filters"])])


def test_scanning_an_ensemble_averages_its_members_window_scores(hybrids, saved_ensemble, chest_slices):
    slices, profile = chest_slices
    hu = slices[0]
    lungs = np.zeros(hu.shape, bool)
    lungs[150:350, 100:420] = True
    result = scan_slice(saved_ensemble, hu, profile.spacing, lungs=lungs)
    alone = [scan_slice(m, hu, profile.spacing, lungs=lungs).scores for m in hybrids]
    np.testing.assert_allclose(result.scores, np.mean(alone, axis=0), atol=1e-5)
    windowed = scan_slice(saved_ensemble, hu, profile.spacing, lungs=lungs, share_stem=False)
    np.testing.assert_allclose(result.scores, windowed.scores, atol=1e-5)


def test_an_ensembles_maps_are_its_members_maps_averaged(hybrids, saved_ensemble):
    x = np.random.default_rng(1).random((2, 64, 64, 1), dtype=np.float32)
    reader = AttentionRollout(saved_ensemble)
    parts = [AttentionRollout(m) for m in hybrids]
    atts, scores = reader.attentions(x)
    np.testing.assert_allclose(scores, np.mean([p.attentions(x)[1] for p in parts], axis=0), atol=1e-6)
    expected = np.mean([p.cls_maps(p.attentions(x)[0]) for p in parts], axis=0)
    np.testing.assert_allclose(reader.cls_maps(atts), expected, atol=1e-6)
    masks, _ = reader.explain(x)
    assert masks.shape == (2, 64, 64) and 0.0 <= masks.min() and masks.max() <= 1.0
    grads, _ = reader.gradient_maps(x)
    np.testing.assert_allclose(grads, np.mean([p.gradient_maps(x)[0] for p in parts], axis=0), atol=1e-6)
    cams, cam_scores = GradCAM(saved_ensemble).explain(x)
    assert cams.shape == (2, 64, 64)
    np.testing.assert_allclose(cam_scores, scores, atol=1e-5)


def test_training_members_saves_a_seed_ensemble_with_its_own_operating_points(tiny_corpus, tmp_path):
    """Phases called one after the other (as the notebook does): each member keeps its CNN between the calls."""
    from utils.data import load_split
    from utils.operating_point import load_model, load_operating_point
    from utils.training import TrainConfig, run_training

    cfg = TrainConfig(data_dir=str(tiny_corpus), models_dir=str(tmp_path), cnn_epochs=1, vit_epochs=1,
                      finetune_epochs=1, batch_size=32, slice_calibration=4, members=2, **TINY_MODEL)
    first = run_training(cfg, phases=("cnn",), verbose=0)
    run = run_training(cfg, phases=("vit",), verbose=0)
    assert set(first["paths"]) == {"cnn"} and set(run["paths"]) == {"hybrid"}
    assert run["cnn"].operating_point == first["cnn"].operating_point  # the notebook evaluates both
    assert sorted(run["histories"]) == ["finetune, seed 0", "finetune, seed 1", "vit, seed 0", "vit, seed 1"]
    for k in range(2):
        member = tmp_path / "members" / str(k)
        assert (member / "cnn_model.keras").is_file() and (member / "deepfake_detection_model.keras").is_file()
        assert json.loads((member / "train_config.json").read_text())["seed"] == k
    x, _, _ = load_split(tiny_corpus / "test")
    for stem in ("cnn_model", "deepfake_detection_model"):
        saved = load_model(tmp_path / f"{stem}.keras")
        parts = [keras.saving.load_model(tmp_path / "members" / str(k) / f"{stem}.keras", safe_mode=True)
                 for k in range(2)]
        np.testing.assert_allclose(saved.predict(x, verbose=0),
                                   np.mean([p.predict(x, verbose=0) for p in parts], axis=0), atol=1e-5)
        point = load_operating_point(tmp_path / f"{stem}.keras")
        assert {"patch", "slice", "relative"} <= set(point)


def test_cli_ensemble_saves_and_calibrates(hybrids, tiny_corpus, tmp_path):
    from utils.operating_point import load_operating_point

    for k, model in enumerate(hybrids[:2]):
        model.save(tmp_path / f"m{k}.keras")
    out = tmp_path / "both" / "ensemble.keras"
    proc = subprocess.run([sys.executable, "-m", "utils.cli", "ensemble", str(tmp_path / "m0.keras"),
                           str(tmp_path / "m1.keras"), "--out", str(out), "--data", str(tiny_corpus), "--slices", "6",
                           "--per-scan", "2"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "saved the mean of 2 models" in proc.stdout
    point = load_operating_point(out)
    assert {"patch", "slice", "relative"} <= set(point)
    assert point["slice"]["series"] < point["slice"]["n_authentic"]  # two slices of each held-out scan
    missing = subprocess.run([sys.executable, "-m", "utils.cli", "ensemble", str(tmp_path / "m0.keras"),
                              str(tmp_path / "nope.keras"), "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert missing.returncode != 0 and "nope.keras: no such model file" in missing.stderr


def test_training_curves_of_an_ensemble_get_a_row_per_member(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from utils import plots

    hist = {"loss": [0.6, 0.4], "val_loss": [0.7, 0.5], "accuracy": [0.7, 0.8], "val_accuracy": [0.6, 0.7]}
    shapes = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: shapes.append(fig.axes) or path)
    plots.training_curves({f"{phase}, seed {k}": hist for phase in ("cnn", "vit") for k in (0, 1)}, tmp_path / "a.png")
    plots.training_curves({"cnn": hist, "vit": hist}, tmp_path / "b.png")
    assert [len(axes) for axes in shapes] == [4, 2]
    assert [ax.get_title() for ax in shapes[0][::2]] == ["member, seed 0", "member, seed 1"]
    labels = [line.get_label() for line in shapes[0][0].lines if not line.get_label().startswith("_")]
    assert labels == ["cnn train", "cnn val", "vit train", "vit val"]
    plt.close("all")


@pytest.fixture(scope="module")
def comparing():
    from tests.test_comparing import _tiny_comparing

    return _tiny_comparing(normalise="centre")[1]


@pytest.mark.filterwarnings("ignore:.*maps are flat")
def test_an_ensemble_of_patch_and_comparing_models_reads_the_pair(hybrids, comparing, chest_slices, tmp_path):
    """Its patch members read the pair's patch; save -> load (safe_mode) keeps the scores; the scanner, rollout and
    Grad-CAM take each member's own input."""
    from utils.architectures import compares
    from utils.scan import attention_peak

    mixed = build_ensemble([hybrids[0], comparing])
    assert compares(mixed) and mixed.inputs[0].shape[1:] == (64, 64, 2)
    mixed.save(tmp_path / "mixed.keras")
    loaded = keras.saving.load_model(tmp_path / "mixed.keras", safe_mode=True)
    x = np.random.default_rng(2).random((3, 64, 64, 2), dtype=np.float32)
    expected = (hybrids[0].predict(x[..., :1], verbose=0) + comparing.predict(x, verbose=0)) / 2
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)
    assert compares(build_ensemble([comparing, comparing])) and not compares(build_ensemble(hybrids))

    slices, profile = chest_slices
    lungs = np.zeros(slices[0].shape, bool)
    lungs[150:350, 100:420] = True
    res = scan_slice(loaded, slices[0], profile.spacing, lungs=lungs, stride=32)
    alone = [scan_slice(m, slices[0], profile.spacing, lungs=lungs, stride=32).scores for m in (hybrids[0], comparing)]
    np.testing.assert_allclose(res.scores, np.mean(alone, axis=0), atol=1e-5)
    top = res.locations[0]
    px, py = attention_peak(loaded, res.hu_source, top.x, top.y, res.spacing)
    assert abs(px - top.x) <= 32 and abs(py - top.y) <= 32

    reader = AttentionRollout(loaded)
    atts, scores = reader.attentions(x)
    np.testing.assert_allclose(scores, expected.ravel(), atol=1e-5)
    patch_part, pair_part = AttentionRollout(hybrids[0]), AttentionRollout(comparing)
    patch_map = patch_part.cls_maps(patch_part.attentions(x[..., :1])[0])
    pair_map = pair_part.cls_maps(pair_part.attentions(x)[0])
    np.testing.assert_allclose(reader.cls_maps(atts)[:, :16], (patch_map + pair_map[:, :16]) / 2, atol=1e-6)
    assert reader(x).shape == (3, 64, 64) and 0.0 < reader.reference_share(x[0]) < 1.0
    cams, cam_scores = GradCAM(loaded).explain(x)
    assert cams.shape == (3, 64, 64)
    np.testing.assert_allclose(cam_scores, expected.ravel(), atol=1e-5)
    with pytest.raises(ValueError, match="different inputs"):
        build_ensemble([comparing, build_cnn((48, 48, 1), TINY_MODEL["filters"])])


def test_cli_ensemble_calibrates_a_mixed_ensemble_on_pairs(hybrids, comparing, tiny_corpus, tmp_path):
    """`calibrate` reads the validation patches with their reference windows when the model compares."""
    from utils.operating_point import load_operating_point

    hybrids[0].save(tmp_path / "patch.keras")
    comparing.save(tmp_path / "pair.keras")
    out = tmp_path / "mixed.keras"
    proc = subprocess.run([sys.executable, "-m", "utils.cli", "ensemble", str(tmp_path / "patch.keras"),
                           str(tmp_path / "pair.keras"), "--out", str(out), "--data", str(tiny_corpus), "--slices", "3"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"patch", "slice", "relative"} <= set(load_operating_point(out))
    scored = [json.loads(subprocess.run([sys.executable, "-m", "utils.cli", "evaluate", str(model),
                                         str(tiny_corpus / "test"), "--json", "--bootstrap", "10", *extra],
                                        capture_output=True, text=True, cwd=REPO, check=True).stdout)
              for model, extra in ((out, ()), (tmp_path / "patch.keras", ("--reference-only",)))]
    assert scored[0]["without_reference"] == scored[1]["without_reference"]
    assert scored[0]["counts"] == scored[1]["counts"]
