import cv2
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from utils.evaluate import (bootstrap_ci, equal_error_rate, evaluate_on_testset, expected_max, metrics_from_scores,
                            paired_bootstrap_auc_diff, report_from_scores, scan_scores)


def test_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.clip(y * 0.3 + rng.uniform(size=200) * 0.7, 0, 1)
    m = metrics_from_scores(y, s, 0.5)
    pred = (s >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["average_precision"] == pytest.approx(average_precision_score(y, s))
    tn, fp, fn, tp = np.ravel(m["confusion_matrix"])
    assert (tn, fp, fn, tp) == (np.sum((y == 0) & (pred == 0)), np.sum((y == 0) & (pred == 1)),
                                np.sum((y == 1) & (pred == 0)), np.sum((y == 1) & (pred == 1)))


def test_eer_of_separable_and_random_scores():
    y = np.array([0] * 50 + [1] * 50)
    assert equal_error_rate(y, y.astype(float)) == pytest.approx(0.0)
    assert 0.3 < equal_error_rate(y, np.random.default_rng(1).uniform(size=100)) < 0.7


def test_one_class_is_a_clear_error():
    with pytest.raises(ValueError, match="only one class"):
        metrics_from_scores([1, 1, 1], [0.2, 0.9, 0.4])


def test_bootstrap_by_group_contains_point_estimate():
    rng = np.random.default_rng(2)
    y = np.tile([0, 1], 100)
    s = y * 0.4 + rng.uniform(size=200) * 0.6
    ci = bootstrap_ci(y, s, groups=np.repeat(np.arange(20), 10), n=300)
    lo, hi = ci["roc_auc_ci"]
    assert lo <= roc_auc_score(y, s) <= hi


class _Constant:
    """A stand-in model of another input size: scores by mean brightness."""

    def __init__(self, size=32):
        import keras

        self.inputs = [keras.KerasTensor((None, size, size, 3))]

    def predict(self, x, **kwargs):
        return x.mean(axis=(1, 2, 3))[:, None]


def test_other_model_size_is_converted_with_a_warning(tmp_path):
    for cls, value in (("real", 40), ("fake", 220)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / cls / f"{i}.png"), np.full((64, 64), value + i, np.uint8))
    with pytest.warns(UserWarning, match="converting"):
        m = evaluate_on_testset(_Constant(), tmp_path, bootstrap=20)
    assert m["roc_auc"] == 1.0 and m["counts"] == {"real": 3, "fake": 3}
    (tmp_path / "fake" / "bad.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.png"):
        evaluate_on_testset(_Constant(), tmp_path)


def _eer_brute_force(y, s, steps=4001):
    """The crossing of FPR and FNR on the ROC joined by straight lines, found by a dense sweep."""
    y, s = np.asarray(y), np.asarray(s, float)
    ts = np.concatenate([[np.inf], np.sort(np.unique(s))[::-1]])
    fpr = np.array([np.mean(s[y == 0] >= t) for t in ts])
    fnr = np.array([np.mean(s[y == 1] < t) for t in ts])
    best, value = np.inf, None
    for i in range(len(ts) - 1):
        lam = np.linspace(0, 1, steps)
        f, n = fpr[i] + lam * (fpr[i + 1] - fpr[i]), fnr[i] + lam * (fnr[i + 1] - fnr[i])
        j = np.argmin(np.abs(f - n))
        if abs(f[j] - n[j]) < best:
            best, value = abs(f[j] - n[j]), (f[j] + n[j]) / 2
    return value


def test_eer_matches_a_brute_force_sweep_with_ties_and_steps():
    # FPR = FNR = 0.25 at threshold 0.6 (the old code said 0.0 here)
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    assert equal_error_rate(y, [0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.8, 0.9]) == pytest.approx(0.25)
    rng = np.random.default_rng(5)
    for trial in range(200):
        n = int(rng.integers(4, 30))
        yy = rng.integers(0, 2, n)
        yy[:2] = [0, 1]
        ss = np.round(rng.uniform(size=n) + 0.3 * yy, int(rng.integers(1, 3)))  # ties and steps
        assert equal_error_rate(yy, ss) == pytest.approx(_eer_brute_force(yy, ss), abs=1e-3), (yy, ss)


def test_scan_score_does_not_grow_with_the_number_of_patches():
    """An authentic scan with 4x as many (equally distributed) patches does not outrank one with fewer."""
    rng = np.random.default_rng(0)
    few, many, old_few, old_many = [], [], [], []
    for _ in range(400):
        a, b = rng.uniform(size=30), rng.uniform(size=120)
        groups = ["a"] * 30 + ["b"] * 120
        score, _, m = scan_scores(groups, np.concatenate([a, b]), np.zeros(150))
        assert m == 30
        few.append(score["a"]), many.append(score["b"])
        old_few.append(a.max()), old_many.append(b.max())
    assert np.mean(many) == pytest.approx(np.mean(few), abs=0.005)
    assert np.mean(old_many) - np.mean(old_few) > 0.015  # the old max over all patches favours the larger scan
    assert expected_max([0.1, 0.2, 0.3], 2) == pytest.approx((0.2 + 0.3 + 0.3) / 3)


def test_bootstrap_counts_dropped_resamples_and_groups_widen_the_interval():
    rng = np.random.default_rng(3)
    # 20 scans, each of one class, 10 patches per scan sharing a strong scan effect
    scan_label = np.tile([0, 1], 10)
    effect = rng.normal(0, 1.0, 20)
    y = np.repeat(scan_label, 10)
    s = np.repeat(effect + 0.5 * scan_label, 10) + rng.normal(0, 0.1, 200)
    groups = np.repeat(np.arange(20), 10)
    by_patch = bootstrap_ci(y, s, None, n=400)
    by_scan = bootstrap_ci(y, s, groups, n=400)
    width = lambda ci: ci["roc_auc_ci"][1] - ci["roc_auc_ci"][0]  # noqa: E731
    assert width(by_scan) > 2 * width(by_patch)
    few = bootstrap_ci([0, 1, 1], [0.1, 0.8, 0.9], [0, 1, 2], n=200)
    assert few["bootstrap_dropped"] > 0 and few["bootstrap_dropped"] + few["bootstrap_resamples"] == 200


def test_paired_difference_is_tighter_than_separate_intervals():
    rng = np.random.default_rng(4)
    y = np.tile([0, 1], 150)
    groups = np.repeat(np.arange(30), 10)
    base = y * 0.8 + rng.normal(0, 1, 300) + np.repeat(rng.normal(0, 0.7, 30), 10)
    better = base + y * 0.3
    diff = paired_bootstrap_auc_diff(y, better, base, groups, n=400)
    assert diff["diff"] > 0 and diff["ci"][0] > 0  # the same scans for both: the shared noise cancels
    same = paired_bootstrap_auc_diff(y, base, base, groups, n=100)
    assert same["diff"] == 0 and same["ci"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="same patches"):
        paired_bootstrap_auc_diff(y, base[:10], base, groups)


def test_pair_aucs_carry_intervals_and_mark_small_samples():
    rng = np.random.default_rng(6)
    kinds = ["FM"] * 30 + ["FB"] * 8 + ["control"] * 38 + ["TB"] * 30  # TB: random lung, resampled or not
    y = np.array([1] * 38 + [0] * 68)
    s = rng.uniform(size=106) + 0.5 * y
    rows = [{"scan": f"s{i // 4}", "kind": k, "resampled": str(i % 2)} for i, k in enumerate(kinds)]
    out = report_from_scores(y, s, rows, bootstrap=100)
    fm, fb = out["pairs"]["FM_vs_control"], out["pairs"]["FB_vs_control"]
    assert fm["ci"][0] <= fm["auc"] <= fm["ci"][1] and not fm["small"]
    assert fb["small"] and fb["n_fake"] == 8
    assert "resampled_vs_untouched_authentic" in out
    assert out["scans"]["patches_per_scan"] >= 1


def _folder(tmp_path, sizes=(64, 64)):
    for cls, value in (("real", 40), ("fake", 220)):
        (tmp_path / cls).mkdir(parents=True, exist_ok=True)
        for i, size in enumerate(sizes):
            cv2.imwrite(str(tmp_path / cls / f"{i}.png"), np.full((size, size), value + i, np.uint8))
    return tmp_path


def test_mixed_patch_sizes_name_the_first_odd_file(tmp_path):
    _folder(tmp_path, sizes=(64, 64, 48))
    with pytest.raises(ValueError, match=r"2\.png: image is 48x48"):
        evaluate_on_testset(_Constant(64), tmp_path, bootstrap=10)


def test_partial_manifest_says_what_it_left_out(tmp_path):
    _folder(tmp_path)
    (tmp_path / "manifest.csv").write_text("path,split,label,kind,scan\nreal/0.png,test,0,TB,a\n")
    with pytest.warns(UserWarning, match="covers 1 of 4 images"):
        m = evaluate_on_testset(_Constant(64), tmp_path, bootstrap=10)
    assert "pairs" in m["left_out"] and "pairs" not in m


def test_detection_at_stored_thresholds():
    from utils.evaluate import detection_at_thresholds

    y = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.9, 0.95, 0.8, 0.4, 0.99]
    kinds = ["control", "TB", "TB", "control", "FM", "FB", "FB", "FM"]
    out = detection_at_thresholds(y, scores, {"0.05": 0.85, "0.01": 0.97}, kinds)
    assert list(out) == ["0.01", "0.05"]
    assert out["0.05"] == {"threshold": 0.85, "detected": 0.5, "false_alarms": 0.25, "detected_FM": 1.0,
                           "detected_FB": 0.0}
    assert out["0.01"]["detected"] == 0.25 and out["0.01"]["false_alarms"] == 0.0


def test_rank_auc_is_roc_auc_score_with_ties_and_any_labels():
    from utils.evaluate import rank_auc

    rng = np.random.default_rng(3)
    for n in (2, 7, 300):
        y = rng.integers(0, 2, n)
        y[:2] = (0, 1)
        s = np.round(rng.random(n), 1)  # many ties
        assert rank_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert rank_auc(y.astype(float), s.astype(np.float32)) == pytest.approx(roc_auc_score(y, s), abs=1e-6)
