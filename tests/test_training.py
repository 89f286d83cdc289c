import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
from tests.conftest import REPO, TINY_MODEL
from utils.training import TrainConfig, run_training


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    cfg = TrainConfig(data_dir=str(tiny_corpus), models_dir=str(models), cnn_epochs=4, vit_epochs=2,
                      finetune_epochs=1, batch_size=32, patience=10, slice_calibration=6, **TINY_MODEL)
    return run_training(cfg, verbose=0), models


def test_training_lowers_loss_and_saves_expected_files(trained):
    result, models = trained
    cnn_loss = result["histories"]["cnn"]["loss"]
    assert cnn_loss[-1] < cnn_loss[0]
    for name in ("cnn_model.keras", "cnn_model.h5", "deepfake_detection_model.keras",
                 "deepfake_detection_model.h5", "train_config.json", "history_cnn.json", "history_vit.json",
                 "history_finetune.json"):
        assert (models / name).is_file(), name
    assert json.loads((models / "train_config.json").read_text())["dim"] == TINY_MODEL["dim"]
    best = result["histories"]["cnn"]["best_epoch"]
    assert 1 <= best <= 4


def test_saved_models_load_in_safe_mode_with_same_scores(trained, tiny_corpus):
    result, models = trained
    from utils.data import load_split

    x, _, _ = load_split(tiny_corpus / "test")
    for stem, model in (("cnn_model", result["cnn"]), ("deepfake_detection_model", result["hybrid"])):
        for suffix in (".keras", ".h5"):
            loaded = keras.models.load_model(models / f"{stem}{suffix}", safe_mode=True)
            np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_readme_lines_run_verbatim(trained, tiny_corpus, tmp_path):
    _, models = trained
    (tmp_path / "models").symlink_to(models, target_is_directory=True)
    code = (
        "from tensorflow.keras.models import load_model\n"
        "from utils.evaluate import evaluate_on_testset\n"
        'model = load_model("models/deepfake_detection_model.h5")\n'
        f"test_dir = {str(tiny_corpus / 'test')!r}\n"
        "metrics = evaluate_on_testset(model, test_dir)\n"
        "print(metrics)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "roc_auc" in run.stdout


def test_cli_evaluate_json(trained, tiny_corpus):
    _, models = trained
    run = subprocess.run([sys.executable, "-m", "utils.cli", "evaluate", str(models / "cnn_model.keras"),
                          str(tiny_corpus / "test"), "--json", "--bootstrap", "50"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads(run.stdout.strip().splitlines()[-1])
    assert {"accuracy", "roc_auc", "f1", "confusion_matrix", "roc_auc_ci"} <= set(metrics)


def test_operating_point_is_chosen_on_validation_authentic_patches(trained, tiny_corpus):
    from utils.data import load_split
    from utils.operating_point import load_operating_point, stored_threshold, threshold_at_false_alarm_rate

    result, models = trained
    point = load_operating_point(models / "deepfake_detection_model.keras")["patch"]
    assert point == load_operating_point(models / "deepfake_detection_model.h5")["patch"]  # one sidecar, both files
    x, y, _ = load_split(tiny_corpus / "val")
    scores = result["hybrid"].predict(x[y == 0], verbose=0).ravel()
    assert np.mean(scores >= point["threshold"]) <= 0.05
    assert point["thresholds"]["0.01"] >= point["thresholds"]["0.05"]
    assert stored_threshold(models / "deepfake_detection_model.keras")[0] == point["threshold"]
    s = np.array([0.1, 0.2, 0.3, 0.9, 0.9])
    assert np.mean(s >= threshold_at_false_alarm_rate(s, 0.2)) <= 0.2  # ties at the top are not split
    assert np.mean(s >= threshold_at_false_alarm_rate(s, 0.4)) == 0.4


def test_training_stores_slice_thresholds_chosen_on_unseen_authentic_slices(trained, tiny_corpus):
    """Each saved model gets the slice thresholds `scan` uses, chosen on authentic synthetic slices: the validation
    split's, topped up with held-out scans of the same generator that the corpus never drew."""
    from utils.calibration import (HELD_OUT_FIRST, HELD_OUT_SLICES, calibration_slices, held_out_scans,
                                   validation_scans)
    from utils.operating_point import load_operating_point
    from utils.patches import read_manifest

    result, models = trained
    for name in ("cnn_model", "deepfake_detection_model"):
        stored = load_operating_point(models / f"{name}.keras")
        assert {"patch", "slice", "relative"} <= set(stored)
        assert stored["slice"]["n_authentic"] >= 6 and "held-out scans" in stored["slice"]["chosen_on"]
        assert stored["slice"]["thresholds"]["0.01"] >= stored["slice"]["thresholds"]["0.05"]
        assert len(stored["slice"]["authentic_scores"]) == stored["slice"]["n_authentic"]
        lo, mid, hi = stored["slice"]["fine_band"]  # how loud the calibration slices were (`texture_note`)
        assert 0 < lo <= mid <= hi
    assert result["hybrid"].operating_point["slice"] == load_operating_point(
        models / "deepfake_detection_model.keras")["slice"]
    used = {int(r["scan"].split("-")[1]) for r in read_manifest(tiny_corpus / "manifest.csv")
            if r["scan"].startswith("SYN-")}
    assert max(used) < HELD_OUT_FIRST
    scans = held_out_scans(tiny_corpus, 3)
    assert len(scans) == 3 and all(scan.kind in ("TB", "TM") and int(scan.uuid) >= HELD_OUT_FIRST for scan in scans)
    slices, total, chosen_on = calibration_slices(tiny_corpus, 5)  # the tiny corpus has one slice per scan
    slices = list(slices)
    assert len(slices) == total >= 5 and all(sl.hu.shape == (512, 512) for sl in slices)
    assert "held-out scans" in chosen_on
    n_val = len(validation_scans(tiny_corpus))  # one slice each; held-out scans give HELD_OUT_SLICES each
    assert len({sl.meta["series"] for sl in slices}) == n_val + (len(slices) - n_val) // HELD_OUT_SLICES
    assert [len(scan.slices) for scan in held_out_scans(tiny_corpus, 2, 3)] == [3, 3]
    with pytest.raises(ValueError, match="at least 1"):
        calibration_slices(tiny_corpus, 5, per_scan=0)


def test_a_threshold_says_how_far_it_rests_on_a_few_series():
    from utils.operating_point import series_spread, spread_line, threshold_at_false_alarm_rate

    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 0.9, 200)
    series = np.repeat(np.arange(50), 4)
    even = series_spread(scores, series, 0.05)
    scores[:10] = np.linspace(0.95, 0.99, 10)  # three series hold every flagged slice
    lumped = series_spread(scores, series, 0.05)
    assert even["series"] == lumped["series"] == 50 and lumped["flagged_series"] == 3 < even["flagged_series"]
    lo, hi = lumped["threshold_interval"]
    assert lo < threshold_at_false_alarm_rate(scores, 0.05) <= hi
    assert hi - lo > np.subtract(*even["threshold_interval"][::-1])
    assert series_spread(scores, series, 0.05) == lumped  # seeded
    assert "come from 3 of 50 series" in spread_line({"threshold": 0.99, **lumped}) and spread_line({}) == ""


def test_a_series_threshold_keeps_the_series_false_alarm_rate_near_the_slice_rate():
    from utils.operating_point import operating_point, series_threshold

    scores = np.linspace(0.0, 0.999, 200)
    point = operating_point(scores, "200 test slices", 0.05)
    point["authentic_scores"] = scores.tolist()
    assert series_threshold(point, 1) == point["threshold"]
    # 5% over 4 slices: 1.25% of the calibration slices (2 of 200) may pass, as the union bound allows
    assert np.sum(scores >= series_threshold(point, 4)) == 2
    assert series_threshold(point, 4) > point["threshold"]
    # past one calibration slice in N the threshold is just above the highest one and stays there
    assert series_threshold(point, 300) == series_threshold(point, 20) > scores.max()
    del point["authentic_scores"]  # a point chosen before scores were stored: the slice threshold
    assert series_threshold(point, 20) == point["threshold"]


def test_a_series_longer_than_its_calibration_supports_says_so():
    from utils.operating_point import operating_point, series_note

    point = {**operating_point(np.linspace(0.0, 0.999, 200), "200 test slices", 0.05),
             "authentic_scores": np.linspace(0.0, 0.999, 200).tolist()}
    assert series_note(point, 1) is None and series_note(point, 10) is None  # 5% / 10 of 200 is one slice
    note = series_note(point, 300)
    assert "needs 6000 calibration slices" in note and "rests on 200" in note and "up to 60%" in note
    assert "--slices 6000" in note
    assert series_note({k: v for k, v in point.items() if k != "authentic_scores"}, 300) is None


def test_a_series_louder_than_its_calibration_slices_says_so():
    from utils.operating_point import texture_note

    point = {"threshold": 0.9, "fine_band": [11.3, 23.7, 37.6]}
    assert texture_note(point, 30.0) is None and texture_note(point, None) is None
    assert texture_note({"threshold": 0.9}, 80.0) is None  # chosen before levels were stored
    note = texture_note(point, 61.0)
    assert "(61 HU, median over its slices)" in note
    assert "louder than 95% of the slices its thresholds were chosen on (38 HU)" in note


def test_a_ctgan_data_set_lends_only_its_untouched_scans_as_authentic_slices(shared_data):
    from utils.calibration import site_slices

    with pytest.raises(ValueError, match="without untouched scans"):  # the sample holds tampered slices only
        site_slices([shared_data / "ctgan-sample"])
    assert len(site_slices([shared_data / "authentic-ct" / "LIDC-IDRI-0002_slice.dcm"])) == 1


def test_slice_thresholds_need_a_generated_corpus(tmp_path, caplog):
    from utils.calibration import store_slice_operating_points

    with caplog.at_level("WARNING"):
        assert store_slice_operating_points({tmp_path / "m.keras": object()}, tmp_path) == {}
    assert "calibrate --authentic" in caplog.text and not (tmp_path / "m.operating_point.json").exists()


def _calibrated_copy(trained, tmp_path, *args):
    """(path, finished run): a copy of the trained CNN, calibrated by `utils.cli calibrate --model PATH *args`."""
    import shutil

    model = tmp_path / "cnn_model.keras"
    shutil.copy(trained[1] / "cnn_model.keras", model)
    run = subprocess.run([sys.executable, "-m", "utils.cli", "calibrate", "--model", str(model), *map(str, args)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    return model, run


def test_cli_calibrate_stores_slice_thresholds(trained, tiny_corpus, tmp_path):
    from utils.operating_point import load_operating_point

    model, run = _calibrated_copy(trained, tmp_path, "--data", tiny_corpus, "--stride", 32, "--slices", 5)
    assert run.returncode == 0, run.stderr[-3000:]
    point = load_operating_point(model)
    assert {"patch", "slice", "relative"} <= set(point) and point["slice"]["n_authentic"] >= 5
    assert 0 <= point["slice"]["flagged_series"] <= point["slice"]["series"] <= point["slice"]["n_authentic"]
    assert "`scan` uses the slice threshold" in run.stdout and "series; drawn again by series" in run.stdout


def test_cli_calibrate_on_held_out_copies_of_the_real_backgrounds(trained, tiny_corpus, tmp_path):
    from utils.calibration import background_slices
    from utils.operating_point import load_operating_point

    slices, n, what = background_slices(tiny_corpus, 2)
    first = [next(slices) for _ in range(2)]
    again = next(background_slices(tiny_corpus, 2)[0])
    np.testing.assert_array_equal(first[0].hu, again.hu)  # the same held-out copy every time
    assert first[0].meta["series"] == first[1].meta["series"] and "copy-1000000" in first[0].meta["series"]
    assert "2 held-out copies of each real background series" in what and n % 2 == 0
    model, run = _calibrated_copy(trained, tmp_path, "--data", tiny_corpus, "--stride", 32, "--backgrounds", 2)
    assert run.returncode == 0, run.stderr[-3000:]
    point = load_operating_point(model)["slice"]
    assert "held-out copies" in point["chosen_on"] and point["series"] >= 2 and point["series"] % 2 == 0
    both = subprocess.run([sys.executable, "-m", "utils.cli", "calibrate", "--model", str(model), "--backgrounds",
                           "1", "--authentic", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_load_model_carries_the_operating_point_into_evaluation(trained, tiny_corpus):
    from utils.evaluate import evaluate_on_testset
    from utils.operating_point import load_model, load_operating_point

    result, models = trained
    model = load_model(models / "deepfake_detection_model.h5")
    stored = load_operating_point(models / "deepfake_detection_model.keras")["patch"]["threshold"]
    metrics = evaluate_on_testset(model, tiny_corpus / "test", bootstrap=20)
    assert metrics["threshold"] == pytest.approx(stored) and metrics["threshold_source"] == "operating point"
    fresh = evaluate_on_testset(result["hybrid"], tiny_corpus / "test", bootstrap=20)  # straight from training
    assert fresh["threshold"] == pytest.approx(stored)
    plain = keras.models.load_model(models / "deepfake_detection_model.h5")
    assert evaluate_on_testset(plain, tiny_corpus / "test", bootstrap=20)["threshold_source"] == "default 0.5"


def test_averaged_weights_are_validated_and_kept():
    from utils.training import AveragedWeights, BestWeights

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=256) > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc")])
    averaged, keeper = AveragedWeights((x[:64], y[:64]), momentum=0.9), BestWeights("val_auc", "max", patience=10)
    hist = model.fit(x, y, batch_size=32, epochs=3, validation_data=(x[:64], y[:64]), callbacks=[averaged, keeper],
                     verbose=0)
    assert len(hist.history["val_auc_raw"]) == 3 and len(hist.history["val_auc"]) == 3
    # the model ends on the averaged weights of the best epoch, not the last raw step
    best = keeper.best_epoch
    assert hist.history["val_auc"][best] == max(hist.history["val_auc"])
    for w, kept in zip(model.get_weights(), keeper.weights):
        np.testing.assert_array_equal(w, kept)
    assert any(not np.allclose(w, raw) for w, raw in zip(model.get_weights(), averaged.raw))
    with pytest.raises(ValueError, match="momentum"):
        AveragedWeights((x, y), momentum=1.0)


def test_calibrate_on_own_authentic_series_stores_the_slice_threshold_scan_uses(trained, tiny_corpus, tmp_path,
                                                                               chest_slices):
    from tests.conftest import write_dicom
    from utils.operating_point import load_model, load_operating_point, model_stride, model_symmetries
    from utils.scan import scan_slice

    slices, profile = chest_slices
    for i, hu in enumerate(slices[:2]):
        write_dicom(tmp_path / "site" / "series" / f"{i}.dcm", hu, instance=i + 1, z=2.5 * i, spacing=profile.spacing)
    model, run = _calibrated_copy(trained, tmp_path, "--data", tiny_corpus, "--stride", 32, "--authentic",
                                  tmp_path / "site", "--symmetries", 2)
    assert run.returncode == 0, run.stderr[-3000:]
    point = load_operating_point(model)
    assert point["slice"]["n_authentic"] == 2 and "authentic slices of" in point["slice"]["chosen_on"]
    assert point["slice"]["symmetries"] == point["relative"]["symmetries"] == 2  # scanned with a mirror
    assert point["slice"]["stride"] == point["relative"]["stride"] == 32  # the grid the threshold was chosen on
    loaded = load_model(model)
    assert model_symmetries(loaded) == 2 and "symmetries" not in point["patch"] and model_stride(loaded) == 32
    assert scan_slice(loaded, slices[0], profile.spacing).stride == 32  # scanned as it was calibrated
    run = subprocess.run([sys.executable, "-m", "utils.cli", "scan", str(tmp_path / "site" / "series"), "--model",
                          str(model), "--stride", "24", "--out", str(tmp_path / "out"), "--symmetries", "1"], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "slice operating point" in run.stdout and "for a series of 2 slices" in run.stdout
    assert "averaged over 2 symmetries, scanned with 1" in run.stdout
    assert "chosen on windows 32 px apart, scanned 24 px apart" in run.stdout
    leak = subprocess.run([sys.executable, "-m", "utils.cli", "calibrate", "--model", str(model), "--data",
                           str(tiny_corpus), "--stride", "32", "--authentic", str(REPO / "data" / "backgrounds")],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert leak.returncode != 0 and "training backgrounds" in leak.stderr


def test_phase_two_reads_wide_views_through_a_phase_one_cnn_of_another_size(tmp_path):
    """A CNN trained on 64 px patches becomes the stem of a transformer over 96 px views: the same weights, more
    feature cells (tokens), and the phase-1 model itself is left as saved."""
    from utils.architectures import build_cnn
    from utils.training import cnn_for_size, save_model

    cnn = build_cnn((64, 64, 1), TINY_MODEL["filters"])
    save_model(cnn, tmp_path, "cnn_model")
    wide = cnn_for_size(cnn, (96, 96, 1))
    assert wide.input_shape == (None, 96, 96, 1) and wide.get_layer("cnn_features").output.shape[1:3] == (8, 8)
    assert all(np.array_equal(a, b) for a, b in zip(wide.get_weights(), cnn.get_weights()))
    rng = np.random.default_rng(0)
    data = {s: (rng.uniform(size=(16, 96, 96, 1)).astype("float32"), np.arange(16) % 2) for s in ("train", "val")}
    cfg = TrainConfig(data_dir=str(tmp_path), models_dir=str(tmp_path), vit_epochs=1, finetune_epochs=1,
                      batch_size=8, **TINY_MODEL)
    run = run_training(cfg, phases=("vit",), verbose=0, data=data)
    assert run["hybrid"].input_shape == (None, 96, 96, 1) and run["cnn"].input_shape == (None, 96, 96, 1)
    assert keras.models.load_model(tmp_path / "cnn_model.keras").input_shape == (None, 64, 64, 1)


def test_saving_and_scoring_keep_expected_library_warnings_quiet_and_loggers_as_they_were(tmp_path, caplog):
    """`.h5` is written on purpose and each split's last batch is a shape of its own: neither absl's legacy-format
    warning nor TensorFlow's retracing warning reaches the notebook, and the loggers' levels are restored."""
    import logging

    from utils.architectures import build_cnn
    from utils.quiet import quiet_logs
    from utils.training import predict_scores, save_model

    levels = {name: logging.getLogger(name).level for name in ("absl", "tensorflow")}
    cnn = build_cnn((64, 64, 1), TINY_MODEL["filters"])
    cnn.compile(loss="binary_crossentropy")
    with caplog.at_level(logging.WARNING):
        save_model(cnn, tmp_path, "cnn_model")
        for n in range(1, 9):
            predict_scores(cnn, np.zeros((3 * n + 1, 64, 64, 1), np.float32))
    assert not [r for r in caplog.records if r.name in levels], [r.getMessage()[:80] for r in caplog.records]
    assert {name: logging.getLogger(name).level for name in levels} == levels
    with caplog.at_level(logging.WARNING), quiet_logs("absl"):
        logging.getLogger("absl").warning("hidden")
    logging.getLogger("absl").warning("shown")
    assert [r.getMessage() for r in caplog.records if r.name == "absl"] == ["shown"]
