import cv2
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from utils.evaluate import bootstrap_ci, equal_error_rate, evaluate_on_testset, metrics_from_scores


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
