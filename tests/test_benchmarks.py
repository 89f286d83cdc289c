"""The benchmark scripts run end to end in their quick modes and write reports of the expected structure."""
import json
import subprocess
import sys

import numpy as np

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_compare_quick_writes_report(tmp_path):
    run = subprocess.run([sys.executable, "-m", "benchmarks.compare", "--quick", "--data", str(tmp_path / "data"),
                          "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    md = (tmp_path / "out" / "benchmark.md").read_text()
    for name in ("CNN", "hybrid CNN-ViT", "plain ViT (pixels)", "forensic features + gradient boosting"):
        assert f"| {name} |" in md
    assert "| hybrid CNN-ViT − CNN | synthetic | 0 |" in md
    report = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    rows, paired = report["rows"], report["paired"]
    assert {"diff", "ci", "p_not_better"} <= set(paired[0])
    assert {"model", "seed", "params", "train_seconds", "infer_images_per_s", "synthetic"} <= set(rows[0])
    assert {"accuracy", "f1", "roc_auc", "roc_auc_ci"} <= set(rows[0]["synthetic"])


def test_help_of_every_benchmark():
    for name in ("compare", "transfer", "faithfulness", "scan_localisation", "corpus_speed", "startup",
                 "false_alarm_map", "texture_levels", "explorer_speed", "scan_speed", "device_speed",
                 "nodule_shortcut", "false_alarms", "paired_runs", "hard_negatives", "paired_scans", "removal_haze",
                 "ensembles", "receptive_field", "noise_matched", "lossy_compression", "target_depth",
                 "missed_slices", "calibration_kinds", "noise_sweep", "kind_scores"):
        run = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0 and "usage" in run.stdout, name


def test_device_speed_says_when_there_is_no_gpu_and_measures_the_cpu_on_request(tmp_path):
    out = tmp_path / "speed.md"
    bench = [sys.executable, "-m", "benchmarks.device_speed", "--out", str(out)]
    run = subprocess.run(bench, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    if "No GPU" in run.stdout:  # (CI has none)
        assert "KERAS_BACKEND=jax python -m benchmarks.device_speed" in run.stdout and not out.exists()
    run = subprocess.run(bench + ["--allow-cpu", "--data", str(tmp_path / "no_corpus"), "--images", "64", "--epochs",
                                  "2", "--batch-sizes", "32", "--slices", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    md = out.read_text()
    assert "| CNN | 72529 |" in md and "| hybrid CNN-ViT | 211857 |" in md and "Scanning (hybrid" in md  # default sizes
    speed = json.loads(out.with_suffix(".json").read_text())
    hybrid = speed["models"]["hybrid CNN-ViT"]
    assert hybrid["pipeline"]["images_per_s"] > 0 and hybrid["arrays"]["32"]["images_per_s"] > 0
    assert speed["scan"]["seconds_per_slice"] > 0 and speed["scan"]["windows_per_slice"] > 0


def test_scan_speed_times_both_methods_on_one_series(tmp_path, chest_slices):
    """A padding-free model is timed window by window and with the shared stem, in one run, scores compared."""
    import keras

    from tests.conftest import TINY_MODEL, write_dicom
    from utils.architectures import build_cnn, build_hybrid_vit

    slices, profile = chest_slices
    for i, hu in enumerate(slices[:2]):
        write_dicom(tmp_path / "root" / "series" / f"{i}.dcm", hu, instance=i + 1, z=2.5 * i, spacing=profile.spacing)
    keras.utils.set_random_seed(0)
    model = build_hybrid_vit(build_cnn((64, 64, 1), TINY_MODEL["filters"]), TINY_MODEL["dim"], 1, 2, 32)
    model.save(tmp_path / "m.keras")
    run = subprocess.run([sys.executable, "-m", "benchmarks.scan_speed", "--root", str(tmp_path / "root"), "--model",
                          str(tmp_path / "m.keras"), "--out", str(tmp_path / "speed.md")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "model s/slice, shared stem" in run.stdout and "largest score difference" in run.stdout
    diff = float(run.stdout.split("largest score difference ")[1].split()[0].rstrip("."))
    assert diff < 1e-5


def test_blob_features_measure_a_disk_and_the_probe_reads_a_corpus(tiny_corpus):
    from benchmarks.nodule_shortcut import blob_features, feature_aucs, measure_corpus, probe_auc

    yy, xx = np.mgrid[:64, :64]
    hu = np.where((yy - 32) ** 2 + (xx - 32) ** 2 <= 10**2, 30.0, -850.0)
    f = blob_features(hu, spacing=0.7)
    assert abs(f["diameter_mm"] - 14) < 0.5 and f["circularity"] > 0.85 and f["attached"] == 0
    assert blob_features(np.full((64, 64), -850.0)) is None
    rows = measure_corpus(tiny_corpus, "tiny")
    assert {r["kind"] for r in rows} == {"FM", "TM"}
    aucs = feature_aucs(rows)
    assert set(aucs) == {"diameter_mm", "circularity", "solidity", "mean_hu", "std_hu", "attached"}
    auc = probe_auc(rows, folds=2)
    assert auc is None or 0 <= auc <= 1


def test_false_alarm_sheet_draws_the_top_windows(tmp_path):
    from benchmarks.scan_localisation import _false_alarm_sheet

    windows = [(float(s), f"covid-ct-md/P00{i % 3}", i, np.full((64, 64), -800.0 + 10 * i)) for i, s in
               enumerate(np.linspace(0.1, 0.99, 30))]
    _false_alarm_sheet(windows, tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").stat().st_size > 1000


def test_false_alarms_scores_models_on_one_authentic_set_per_series(tmp_path, chest_slices):
    import keras

    from benchmarks.false_alarms import false_alarms, markdown
    from tests.conftest import TINY_MODEL, write_dicom
    from utils.architectures import build_cnn
    from utils.authentic import write_authentic
    from utils.operating_point import operating_point, save_operating_point

    slices, profile = chest_slices
    for series in ("a", "b"):
        write_dicom(tmp_path / "root" / series / "0.dcm", slices[0], spacing=profile.spacing)
    write_authentic(tmp_path / "root", tmp_path / "authentic", per_slice=3)
    keras.utils.set_random_seed(0)
    model = build_cnn((64, 64, 1), TINY_MODEL["filters"])
    model.save(tmp_path / "m.keras")
    save_operating_point(tmp_path / "m.keras", "patch", operating_point([0.0, 1.0], "a test"))
    result = false_alarms(tmp_path / "m.keras", tmp_path / "authentic")
    assert result["n"] == 6 and result["threshold"] > 0.5 and result["at_operating_point"] <= result["at_0.5"]
    assert set(result["per_series"]) == {"AUTH-a", "AUTH-b"}
    md = markdown({"m": result, "m again": result})
    assert "| m | 6 |" in md and "| mean ± sd |" in md


def test_leave_one_patient_out_thresholds_come_from_the_other_patients():
    from benchmarks.scan_localisation import leave_one_patient_out

    out = leave_one_patient_out([0.1, 0.2, 0.3, 0.4, 0.5, 0.9], ["A", "A", "B", "B", "C", "C"], [0.95, 0.5], 0.0)
    assert out["patients"] == 3
    assert out["authentic_flagged"] == pytest.approx(2 / 6)  # only C's slices pass a threshold set on A and B
    assert out["real_tampered_flagged"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert leave_one_patient_out([0.1, 0.2], ["A", "A"], [0.9], 0.05) is None


def test_paired_scans_pair_the_same_slices_and_refuse_others():
    from benchmarks.paired_scans import SCORES, paired_slices

    rng = np.random.default_rng(0)
    tampered, authentic = rng.uniform(0.5, 1, 30), rng.uniform(0, 0.8, 60)
    a = {"slice_scores": {n: {"real_tampered": tampered.tolist(), "authentic": authentic.tolist()} for n in SCORES}}
    b = {"slice_scores": {n: {"real_tampered": (tampered * 0 + 1).tolist(), "authentic": authentic.tolist()}
                          for n in SCORES}}  # B ranks every tampered slice first
    diff = paired_slices(a, b, n=200)["top-1"]
    assert diff["diff"] > 0 and diff["ci"][0] > 0
    b["slice_scores"]["top-1"]["authentic"] = authentic[:-1].tolist()
    with pytest.raises(ValueError, match="different slices"):
        paired_slices(a, b)


def test_removal_haze_reads_a_brighter_centre_in_hounsfield_units():
    from benchmarks.removal_haze import haze_stats
    from utils.dicom import window

    rng = np.random.default_rng(0)
    hu = -850 + rng.normal(0, 20, (64, 64))
    yy, xx = np.mgrid[:64, :64]
    hu[np.hypot(yy - 31.5, xx - 31.5) < 12] += 40  # a 40 HU haze over the centre
    haze, texture, structure, inside, ring = haze_stats(window(hu))
    assert 30 < haze < 50 and 0.7 < texture < 1.3 and texture == pytest.approx(inside / ring)
    assert 10 < ring < 20  # median absolute fine band of 20 HU noise (minus its 1 px blur)
    assert haze_stats(window(np.full((64, 64), 40.0))) is None  # no lung: no figure


def test_seed_ensembles_average_fixed_groups_of_seeds_and_pair_them_with_their_members(tmp_path):
    from benchmarks.ensembles import ensemble_rows, groups_of, load_rows, paired_against_members, table

    rng = np.random.default_rng(0)
    labels = [1] * 12 + [0] * 12
    kinds = ["FM"] * 6 + ["FB"] * 6 + ["control"] * 12
    scans = [f"s{i % 8}" for i in range(24)]

    def row(seed):
        scores = (np.asarray(labels) * 0.3 + rng.random(24) * 0.7).tolist()
        return {"model": "hybrid CNN-ViT", "seed": seed,
                "real": {"labels": labels, "scores": scores, "kinds": kinds, "scans": scans}}

    rows = [row(s) for s in range(7)]
    (tmp_path / "a.json").write_text(json.dumps({"rows": rows[:3]}))
    (tmp_path / "rows.json").write_text(json.dumps(rows[3:]))  # a run's own rows.json
    loaded = load_rows([tmp_path / "a.json", tmp_path / "rows.json"], "hybrid CNN-ViT")
    assert list(loaded) == list(range(7))
    assert groups_of(loaded, 3) == [[0, 1, 2], [3, 4, 5]]  # seed 6 is left over, never regrouped
    ensembles = ensemble_rows(loaded, 3)
    from sklearn.metrics import roc_auc_score

    mean = np.mean([rows[s]["real"]["scores"] for s in (3, 4, 5)], axis=0)
    assert ensembles[1]["real"]["overall"] == pytest.approx(roc_auc_score(labels, mean))
    fb = np.isin(kinds, ("FB", "control"))
    assert ensembles[1]["real"]["FB vs control"] == pytest.approx(roc_auc_score(np.asarray(labels)[fb], mean[fb]))
    diffs = paired_against_members(loaded, 3, n=50)
    assert len(diffs) == 2 * 3 * 3 and {d["member"] for d in diffs} == set(range(6))
    assert "ensembles of 3 (over groups) | 2 |" in table(loaded, ensembles, 3)
    with pytest.raises(ValueError, match="no rows of model"):
        load_rows([tmp_path / "a.json"], "CNN")


def test_found_at_equal_false_alarms_flags_exactly_k_authentic_slices():
    from benchmarks.paired_scans import found_at_equal_false_alarms

    authentic = np.linspace(0, 0.99, 100)  # highest 0.99, 0.98, ...
    found = found_at_equal_false_alarms([0.995, 0.985, 0.975, 0.5], authentic, counts=(0, 2, 200))
    assert found == {0.0: 0.25, 0.02: 0.75}  # above 0.99 one of four; above 0.97 (the 3rd highest) three


def test_effective_receptive_field_is_narrower_than_the_theoretical_one():
    from benchmarks.receptive_field import footprint_sigma
    from utils.architectures import FEATURES, build_cnn, receptive_field

    cnn = build_cnn((64, 64, 1), (4, 4, 4), padding="valid")
    images = np.random.default_rng(0).uniform(size=(4, 64, 64, 1)).astype(np.float32)
    sigma = footprint_sigma(cnn, FEATURES, images, draws=2)
    assert receptive_field(cnn) == 36 and 2.0 < sigma < 36 / 2


def test_field_of_view_resamples_the_slice_and_moves_its_points():
    from benchmarks.false_alarm_map import at_pixel_size

    hu = np.full((100, 120), -850.0, np.float32)
    hu[:5] = -3024.0  # padding outside the field of view reads as air
    hu[40:44, 60:64] = 50.0  # a 4 px dot centred on (x, y) = (61.5, 41.5)
    finer, factor = at_pixel_size(hu, 0.7, 0.5)
    assert finer.shape == (140, 168) and factor == pytest.approx(1.4) and finer.min() >= -1024
    y, x = np.argwhere(finer > -400).mean(axis=0)  # the dot's centre
    assert abs(x - ((61.5 + 0.5) * factor - 0.5)) <= 1 and abs(y - ((41.5 + 0.5) * factor - 0.5)) <= 1
    coarser, factor = at_pixel_size(hu, 0.7, 0.95)
    assert coarser.shape == (74, 88) and factor == pytest.approx(0.7 / 0.95)
    back, factor = at_pixel_size(hu, 0.7, 0.5, round_trip=True)
    assert back.shape == hu.shape and factor == 1.0 and abs(back[42, 62] - 50) < 60


def test_noise_matching_brings_a_slice_to_the_target_level(chest_slices):
    from benchmarks.noise_matched import fine_gain, matched
    from utils.texture import band_levels

    slices, profile = chest_slices
    hu = slices[0]
    own = band_levels(hu, profile.spacing)[0]
    louder = matched(hu, own, own * 2, np.random.default_rng(0), fine_gain())
    assert band_levels(louder, profile.spacing)[0] == pytest.approx(own * 2, rel=0.15)
    assert matched(hu, own, own / 2, np.random.default_rng(0), fine_gain()) is hu


def test_noise_matched_separation_reports_finds_at_equal_false_alarms():
    from benchmarks.noise_matched import separation

    authentic = np.linspace(0, 1, 112)
    tampered = np.array([0.999, 0.995, 0.5, 0.1])
    out = separation(tampered, authentic, {0.05: 0.95})
    assert out["authentic_flagged_0.05"] == pytest.approx(np.mean(authentic >= 0.95))
    assert out["tampered_flagged_0.05"] == 0.5
    # the 2 highest authentic slices flagged: only the two tampered slices above them are found
    assert out["found_at_2"] == 0.5 and out["found_at_6"] == 0.5
    few = separation(tampered, np.linspace(0, 1, 5), {0.05: 0.95})  # 6 of 5 authentic slices cannot be flagged
    assert "found_at_4" in few and "found_at_6" not in few


def test_missed_slices_lists_each_detectors_misses_at_its_stored_threshold(tmp_path):
    from benchmarks.missed_slices import misses, table

    def report(scores, hits, threshold):
        return {"slice_scores": {"top-1": {"real_tampered": scores, "authentic": [0.1]}}, "real_hits": hits,
                "slice_operating_point": {"at_rates": {"0.05": {"threshold": threshold}}},
                "real_slices": [{"name": f"scan {i}", "kind": k} for i, k in enumerate(["FB", "FM", "FB"])]}

    a = report([0.99, 0.5, 0.2], [1, 1, 1], 0.9)
    b = report([0.95, 0.97, 0.3], [1, 0, 0], 0.96)
    result = misses([a, b])
    assert [d["found"].tolist() for d in result["detectors"]] == [[True, False, False], [False, True, False]]
    text = table(result, ["A", "B"], 0.05)
    assert "| scan 0 | FB | 0.990 on it | **0.950 on it** |" in text  # found by A, missed by B
    assert "| scan 1 | FM | **0.500 on it** | 0.970 elsewhere |" in text
    assert "Missed by every detector: 1 of 3 (1 FB), 0 of them with every detector's top window on the tamper" in text
    with pytest.raises(ValueError, match="different numbers"):
        misses([a, report([0.9], [1], 0.5)])


def test_lossy_round_trip_keeps_lossless_slices_and_bounds_near_lossless_ones():
    from benchmarks.lossy_compression import CONDITIONS, round_trip

    hu = np.random.default_rng(0).normal(-800, 30, (64, 64))
    hu[:4] = -2000  # padding outside the field of view is stored at -1024, as 12-bit scanners store it
    (_, lossless, _), (_, near, options), (_, j2k, ratio) = CONDITIONS[:3]
    np.testing.assert_array_equal(round_trip(hu, lossless), np.maximum(np.rint(hu), -1024))
    assert np.abs(round_trip(hu, near, **options)[4:] - np.rint(hu[4:])).max() <= options["jls_error"]
    assert np.abs(round_trip(hu, j2k, **ratio)[4:] - np.rint(hu[4:])).mean() > options["jls_error"]


def test_a_pleural_nodule_is_outside_a_narrow_closing_and_inside_a_wide_one():
    """target_depth's sites: a 14 mm nodule on the chest wall is a bay that a 5 mm closing leaves out of the lungs."""
    from benchmarks.target_depth import target_sites

    yy, xx = np.mgrid[0:256, 0:256]
    hu = np.full((256, 256), -1000.0)
    hu[((yy - 128) / 110.0) ** 2 + ((xx - 128) / 120.0) ** 2 < 1] = 40.0
    hu[((yy - 128) / 70.0) ** 2 + ((xx - 128) / 80.0) ** 2 < 1] = -850.0
    hu[(yy - 128) ** 2 + (xx - 50) ** 2 < 10**2] = 30.0  # 10 px at 0.7 mm, centred on the lateral wall (x = 48)
    (narrow,), (wide,) = (target_sites(hu, 0.7, [(55, 128)], close) for close in (5.0, 10.0))
    assert not narrow[0] and narrow[1] == 0.0 and narrow[2] > wide[2]
    assert wide[0] and wide[1] > 0.0
    (deep,) = target_sites(hu, 0.7, [(128, 128)], 5.0)
    assert deep[0] and deep[1] > 40 and deep[2] < 12


def test_calibration_kinds_splits_the_threshold_by_kind():
    from benchmarks.calibration_kinds import by_kind, series_kind, table

    assert series_kind("SYN-0004") == "TM" and series_kind("SYN-0015") == "TB"
    top = np.array([0.1, 0.2, 0.3, 0.4] * 5 + [0.99], np.float32)  # 21 slices: 5% flags one, the TM slice at 0.99
    kinds = np.array(["TB", "TM"] * 10 + ["TM"])
    res = by_kind(top, kinds, 0.05)
    assert 0.4 < res["threshold"] <= 0.99 and res["kinds"]["TM"]["share_flagged"] == 1.0
    assert res["kinds"]["TB"]["share_flagged"] == 0.0 and res["kinds"]["TB"]["n"] == 10
    assert res["kinds"]["TM"]["median"] == pytest.approx(0.4) and "| TM | 11 | — |" in table({"m": res}, 0.05)
    assert res["kinds"]["TM"]["flagged"] == pytest.approx(1 / 11) and res["kinds"]["TB"]["flagged"] == 0.0
    levels = np.array([10.0, 30.0] * 10 + [50.0])
    held = {"BG": (np.array([0.1, 0.995, 0.2, 0.3]), np.array([20.0, 40.0, np.nan, 20.0]))}
    res = by_kind(top, kinds, 0.05, levels, held)
    assert res["kinds"]["TM"]["level"] == 30.0 and res["kinds"]["TB"]["level"] == 10.0
    bg = res["kinds"]["BG"]
    assert bg["n"] == 4 and bg["flagged"] == 0.25 and bg["share_flagged"] is None and bg["level"] == 20.0
    assert "| BG | 4 | 20.0 | 0.250 |" in table({"m": res}, 0.05) and "not chosen on them" in table({"m": res}, 0.05)


def test_noise_sweep_reports_each_level_at_the_stored_thresholds():
    from benchmarks.noise_sweep import band_text, markdown, spread

    assert spread([10.0, np.nan, 20.0, 30.0]) == "20.0 [11.0, 29.0]"  # a slice too small to measure is left out
    assert band_text([11.33, 23.67, 37.62]) == "23.7 [11.3, 37.6]"  # a calibration point's stored fine_band
    rows = [{"level": None, "slices": 3, "measured": "15.0 [12.0, 20.0]", "flagged_0.05": 0.0, "flagged_0.01": 0.0,
             "flagged_0.05_range": [0.0, 0.0], "flagged_0.01_range": [0.0, 0.0]},
            {"level": 40.0, "slices": 3, "measured": "41.0 [40.0, 42.0]", "flagged_0.05": 0.5, "flagged_0.01": 0.0,
             "flagged_0.05_range": [1 / 3, 2 / 3], "flagged_0.01_range": [0.0, 0.0]}]
    md = markdown({"model": "m.keras", "thresholds": {"0.05": 0.98, "0.01": 0.995}, "draws": 2,
                   "calibration_fine_band": "23.7 [11.3, 37.6]", "tampered_fine_band": "19.8 [13.1, 60.3]",
                   "rows": rows})
    assert "| as stored | 3 | 15.0 [12.0, 20.0] | 0.000 | 0.000 |" in md
    assert "| 40 | 3 | 41.0 [40.0, 42.0] | 0.500 [0.333, 0.667] | 0.000 |" in md
    assert "calibration slices 23.7 [11.3, 37.6]" in md and "0.9800 (5%)" in md


def test_kind_scores_groups_a_split_by_source_and_kind(tiny_corpus):
    import keras

    from benchmarks.kind_scores import kind_scores, markdown
    from tests.conftest import TINY_MODEL
    from utils.architectures import build_cnn
    from utils.patches import read_manifest

    keras.utils.set_random_seed(0)
    model = build_cnn((64, 64, 1), TINY_MODEL["filters"])
    groups = kind_scores(model, tiny_corpus, "test")
    rows = [r for r in read_manifest(tiny_corpus / "manifest.csv") if r["split"] == "test"]
    assert set(groups) == {(r["source"], r["kind"]) for r in rows}
    assert sum(len(s) for s in groups.values()) == len(rows)
    assert all(((s >= 0) & (s <= 1)).all() for s in groups.values())
    md = markdown({"tiny": groups}, 0.5)
    assert md.count("\n| tiny |") == len(groups) and "patch threshold (0.500)" in md
    with pytest.raises(ValueError, match="no patches in split 'nope'"):
        kind_scores(model, tiny_corpus, "nope")
