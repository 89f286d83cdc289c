from types import SimpleNamespace

import numpy as np

import keras
from tests.conftest import TINY_MODEL, write_dicom
from tests.test_scan import CentreBrightness
from utils.architectures import build_cnn, build_hybrid_vit
from utils.hard_negatives import corpus_slices, mine_hard_negatives, top_windows
from utils.patches import patch_input
from utils.scan import scan_slice
from utils.training import TrainConfig, hard_negative_phase, load_training_data


def test_top_windows_are_the_best_authentic_windows_apart_and_outside_tampered_regions():
    points = np.array([[100, 100], [100, 116], [200, 200], [300, 300], [300, 400]])  # (y, x)
    result = SimpleNamespace(points=points, scores=np.array([0.9, 0.95, 0.99, 0.7, 0.4]))
    boxes = [(200, 200, 40)]  # the 0.99 window reaches a tampered region
    got = top_windows(result, boxes, per_slice=5, min_score=0.5, nms_px=32)
    assert got == [(116, 100, 0.95), (300, 300, 0.7)]  # 0.9 is 16 px from 0.95; 0.4 is below the floor
    assert top_windows(result, boxes, per_slice=1, min_score=0.5, nms_px=32) == [(116, 100, 0.95)]


def test_mining_cuts_windows_of_the_corpus_split_as_training_reads_them(tiny_corpus):
    model = CentreBrightness()
    hard = mine_hard_negatives(model, tiny_corpus, "val", per_slice=2, min_score=0.0, progress=False)
    slices = list(corpus_slices(tiny_corpus, "val"))
    assert slices and all(sl.hu.shape == (512, 512) for sl, _ in slices)
    assert hard.shape[1:] == (64, 64, 1) and 0 < len(hard) <= 2 * len(slices)
    assert hard.dtype == np.float32 and 0.0 <= hard.min() and hard.max() <= 1.0
    sl, boxes = slices[0]
    x, y, _ = top_windows(scan_slice(model, sl, top_k=1), boxes, 1, 0.0, 32)[0]
    np.testing.assert_array_equal(hard[0], patch_input(sl.hu, x, y, 64))  # as a training PNG reads back
    train = list(corpus_slices(tiny_corpus, "train"))
    assert any(not b for _, b in train)  # the shipped real backgrounds join the training split's slices


def test_hard_negative_phase_adds_authentic_windows_to_both_splits(tiny_corpus, tmp_path):
    keras.utils.set_random_seed(0)
    cnn = build_cnn((64, 64, 1), TINY_MODEL["filters"], padding="valid")
    model = build_hybrid_vit(cnn, TINY_MODEL["dim"], 1, 2, 32)
    cfg = TrainConfig(data_dir=str(tiny_corpus), models_dir=str(tmp_path), batch_size=32, hard_negative_epochs=1,
                      **{k: v for k, v in TINY_MODEL.items() if k != "depth"}, depth=1)
    data = load_training_data(cfg)
    history = hard_negative_phase(model, data, cfg, verbose=0)
    assert history["phase"] == "hard" and len(history["loss"]) == 1
    assert set(history["mined"]) == {"train", "val"} and history["mining_seconds"] >= 0


def test_authentic_dicom_of_any_scanner_joins_the_training_slices_only(tiny_corpus, chest_slices, tmp_path):
    """Label-free: every slice of an authentic DICOM folder is a source of hard negatives for training."""
    slices, profile = chest_slices
    for i, hu in enumerate(slices[:2]):
        write_dicom(tmp_path / "site" / f"{i}.dcm", hu, instance=i + 1, z=2.5 * i, spacing=profile.spacing)
    plain = list(corpus_slices(tiny_corpus, "train"))
    more = list(corpus_slices(tiny_corpus, "train", dicom=[tmp_path / "site"]))
    assert len(more) == len(plain) + 2 and all(not boxes for _, boxes in more[len(plain):])
    assert len(list(corpus_slices(tiny_corpus, "val", dicom=[tmp_path / "site"]))) == len(
        list(corpus_slices(tiny_corpus, "val")))
    hard = mine_hard_negatives(CentreBrightness(), tiny_corpus, "train", 1, 0.0, progress=False,
                               dicom=[tmp_path / "site"])
    assert len(hard) > len(mine_hard_negatives(CentreBrightness(), tiny_corpus, "train", 1, 0.0, progress=False))
