import json
import subprocess
import sys

import numpy as np
import pydicom
import pytest

import keras
from tests.conftest import REPO, TINY_MODEL, write_dicom, write_enhanced_ct
from utils.architectures import build_cnn, build_hybrid_vit
from utils.dicom import DicomError
from utils.scan import (DIHEDRAL, Location, consensus_peak, consensus_score, dihedral, dihedral_corners,
                        merge_locations, predict_windows, scan_series, scan_slice, shared_stem)


class CentreBrightness:
    """Stand-in patch model: the score is the mean brightness of the patch's central 8x8 pixels."""

    inputs = [keras.KerasTensor((None, 64, 64, 1))]

    def predict(self, x, **kwargs):
        return x[:, 28:36, 28:36, 0].mean(axis=(1, 2))[:, None]


def test_top_point_lands_on_the_marked_spot(chest_slices):
    slices, profile = chest_slices
    hu = slices[1].copy()
    from utils.lungmask import erode, lung_mask

    ys, xs = np.nonzero(erode(lung_mask(hu, profile.spacing), 12))  # a spot well inside the lungs
    i = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean() - 40) ** 2)
    y0, x0 = int(ys[i]), int(xs[i])
    hu[y0 - 8 : y0 + 8, x0 - 8 : x0 + 8] = 1000.0  # a bright spot only the stand-in model cares about
    res = scan_slice(CentreBrightness(), hu, profile.spacing, stride=8, top_k=3)
    top = res.locations[0]
    assert abs(top.x - x0) <= 8 and abs(top.y - y0) <= 8
    assert res.heatmap.shape == hu.shape and res.heatmap.max() <= 1.0
    assert res.heatmap[top.y, top.x] >= 0.8 * res.heatmap.max()  # heatmap and points share one geometry
    assert len(res.locations) == 3


def test_padded_window_batches_give_the_same_scores():
    """predict_windows pads a stack to a multiple of 32 rows (a few compiled shapes on JAX); scores are unchanged."""
    keras.utils.set_random_seed(0)
    model = build_hybrid_vit(build_cnn((64, 64, 1), (4, 8, 8)), dim=16, depth=1, heads=2, mlp_dim=16)
    x = np.random.default_rng(0).random((37, 64, 64, 1), dtype=np.float32)
    scores = predict_windows(model, x, batch_size=16)
    assert scores.shape == (37,)
    np.testing.assert_allclose(scores, model.predict(x, verbose=0).ravel(), atol=1e-6)


def test_shared_stem_gives_the_window_by_window_scores(tmp_path, chest_slices):
    """A stem without padding runs once over the slice; every window's score matches the window run on its own
    (tolerance 1e-5: the same arithmetic, convolutions over a larger image may sum in another order). Checked on
    a model saved and loaded back (safe_mode), for the hybrid and the CNN, and on the slice's border."""
    slices, profile = chest_slices
    keras.utils.set_random_seed(0)
    cnn = build_cnn((64, 64, 1), TINY_MODEL["filters"], padding="valid")
    assert cnn.get_layer("cnn_features").output.shape[1:3] == (4, 4)
    build_hybrid_vit(cnn, TINY_MODEL["dim"], 1, 2, 32).save(tmp_path / "m.keras")
    hybrid = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    hu = slices[0].copy()
    lungs = np.zeros(hu.shape, bool)
    lungs[120:400, 60:460] = True
    lungs[:40, :40] = True  # windows that reach past the slice's corner read air
    for model in (hybrid, cnn):
        assert shared_stem(model) is not None
        one_by_one = scan_slice(model, hu, profile.spacing, lungs=lungs, share_stem=False)
        shared = scan_slice(model, hu, profile.spacing, lungs=lungs)
        np.testing.assert_allclose(shared.heatmap, one_by_one.heatmap, atol=1e-5)
        assert [(l.x, l.y) for l in shared.locations] == [(l.x, l.y) for l in one_by_one.locations]
    off_grid = scan_slice(hybrid, hu, profile.spacing, lungs=lungs, stride=12)  # falls back to window by window
    np.testing.assert_allclose(off_grid.heatmap, scan_slice(hybrid, hu, profile.spacing, lungs=lungs, stride=12,
                                                            share_stem=False).heatmap, atol=1e-6)
    assert shared_stem(build_cnn((64, 64, 1), TINY_MODEL["filters"], padding="same")) is None  # zero padding


def test_dihedral_corners_follow_the_squares():
    image = np.random.default_rng(0).random((128, 192))
    corners = np.array([[0, 0], [8, 24], [64, 128], [40, 16]])
    for k in range(len(DIHEDRAL)):
        moved = dihedral(image, k)
        for (r, c), (nr, nc) in zip(corners, dihedral_corners(corners, image.shape, 64, k)):
            np.testing.assert_array_equal(moved[nr : nr + 64, nc : nc + 64], dihedral(image[r : r + 64, c : c + 64], k))
    assert len({dihedral(image[:64, :64], k).tobytes() for k in range(8)}) == 8  # eight different symmetries


def test_symmetric_scores_average_the_flipped_windows(chest_slices):
    """`symmetries` averages each window's score over the square's flips and turns: the shared stem reads them from
    the flipped slice's feature map, and gets what the flipped windows run one by one get."""
    from utils.patches import patch_input

    slices, profile = chest_slices
    keras.utils.set_random_seed(1)
    hybrid = build_hybrid_vit(build_cnn((64, 64, 1), TINY_MODEL["filters"], padding="valid"), TINY_MODEL["dim"], 1,
                              2, 32)
    hu = slices[0]
    lungs = np.zeros(hu.shape, bool)
    lungs[150:360, 100:420] = True
    plain = scan_slice(hybrid, hu, profile.spacing, lungs=lungs)
    for n in (2, 8):
        shared = scan_slice(hybrid, hu, profile.spacing, lungs=lungs, symmetries=n)
        one_by_one = scan_slice(hybrid, hu, profile.spacing, lungs=lungs, symmetries=n, share_stem=False)
        np.testing.assert_allclose(shared.scores, one_by_one.scores, atol=1e-5)
        np.testing.assert_array_equal(shared.points, plain.points)
    (y, x), score = shared.points[5], shared.scores[5]
    win = patch_input(hu, int(x), int(y), 64)
    flipped = np.stack([dihedral(win, k) for k in range(8)])
    assert score == pytest.approx(float(hybrid.predict(flipped, verbose=0).mean()), abs=1e-5)
    assert not np.allclose(shared.scores, plain.scores, atol=1e-4)  # an untrained model is no symmetric one


def test_no_lungs_is_a_clear_error():
    hu = np.full((128, 128), -1000.0)
    hu[20:108, 20:108] = 40.0
    with pytest.raises(ValueError, match="no lungs"):
        scan_slice(CentreBrightness(), hu)


def test_series_bad_inputs(tmp_path, chest_slices):
    slices, profile = chest_slices
    series = tmp_path / "series"
    for i, hu in enumerate(slices):
        write_dicom(series / f"{i}.dcm", hu, instance=i + 1, z=2.5 * i, spacing=profile.spacing)
    (series / "9.dcm").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="9.dcm"):
        result = scan_series(CentreBrightness(), series, stride=32, progress=False)
    assert len(result.slices) == 3 and result.verdict in ("tampered", "authentic")
    assert set(result.as_json()) == {"verdict", "score", "threshold", "locations", "notes"} and result.threshold == 0.5
    assert result.notes == []  # lossless slices
    # a slice operating point: the threshold of a series of the 3 slices scanned, not of one slice
    point = {"threshold": 0.2, "false_alarm_rate": 0.5, "authentic_scores": [0.1, 0.2, 0.3, 0.4]}
    with pytest.warns(UserWarning, match="9.dcm"):
        result = scan_series(CentreBrightness(), series, stride=32, progress=False, operating_point=point)
    assert result.threshold == pytest.approx(0.4) and result.verdict == ("tampered" if result.score >= 0.4
                                                                          else "authentic")
    assert len(result.notes) == 1 and "needs 6 calibration slices; this one rests on 4" in result.notes[0]
    assert all(res.fine_band > 0 for res in result.slices.values())
    quiet = {**point, "fine_band": [0.1, 0.2, 0.3]}  # calibration slices far quieter than these
    with pytest.warns(UserWarning, match="9.dcm"):
        result = scan_series(CentreBrightness(), series, stride=32, progress=False, operating_point=quiet)
    assert len(result.notes) == 2 and "louder than 95% of the slices its thresholds were chosen on" in result.notes[1]
    mixed = tmp_path / "mixed"
    write_dicom(mixed / "a.dcm", slices[0], instance=1)
    write_dicom(mixed / "b.dcm", slices[0][:256, :256], instance=2, z=2.5)
    with pytest.raises(DicomError, match="mixes slice sizes"):
        scan_series(CentreBrightness(), mixed, progress=False)
    bare = write_dicom(tmp_path / "bare.dcm", slices[0], rescale=False)
    with pytest.raises(DicomError, match="RescaleSlope"):
        scan_series(CentreBrightness(), bare, progress=False)
    text = tmp_path / "notes.dcm"
    text.write_text("hello")
    with pytest.raises(DicomError, match="notes.dcm"):
        scan_series(CentreBrightness(), text, progress=False)


def test_enhanced_ct_file_scans_as_its_series(tmp_path, chest_slices):
    slices, profile = chest_slices
    for i, hu in enumerate(slices[:2]):
        write_dicom(tmp_path / "classic" / f"{i}.dcm", hu, instance=i + 1, z=2.5 * i, spacing=profile.spacing)
    enhanced = write_enhanced_ct(tmp_path / "enhanced.dcm", np.stack(slices[:2]), zs=[0.0, 2.5],
                                 spacing=profile.spacing)
    classic = scan_series(CentreBrightness(), tmp_path / "classic", stride=32, progress=False)
    frames = scan_series(CentreBrightness(), enhanced, stride=32, progress=False)
    assert frames.score == pytest.approx(classic.score) and len(frames.slices) == 2
    assert [(p.slice, p.x, p.y) for p in frames.locations] == [(p.slice, p.x, p.y) for p in classic.locations]


def test_consensus_prefers_a_region_to_a_lone_window():
    """A 3x3 block of high windows outscores one higher window alone; neighbours outside the lungs count as the
    slice's median."""
    grid = np.array([(8 + 16 * i, 8 + 16 * j) for i in range(10) for j in range(10)])
    scores = np.full(len(grid), 0.1)
    scores[0] = 0.99  # a lone window at the corner of the scanned area
    region = [i for i, (y, x) in enumerate(grid) if 72 <= y <= 104 and 72 <= x <= 104]
    assert consensus_score(grid, scores, 16) == pytest.approx((0.99 + 8 * 0.1) / 9)
    scores[region] = 0.7
    assert consensus_score(grid, scores, 16) == pytest.approx(0.7)
    scores[[i for i, (y, x) in enumerate(grid) if (y, x) == (88, 104)]] = 0.95  # the region's best window: its edge
    assert consensus_peak(grid, scores, 16)[1] == (88, 88)  # the peak is the region's centre


def test_merge_keeps_best_of_neighbouring_slices():
    locs = [Location(10, 100, 100, 0.9), Location(11, 105, 98, 0.95), Location(30, 100, 100, 0.5),
            Location(10, 300, 300, 0.7)]
    merged = merge_locations(locs)
    assert [(m.slice, m.score) for m in merged] == [(11, 0.95), (10, 0.7), (30, 0.5)]


def test_a_verdict_on_lossy_slices_carries_a_note(tmp_path, chest_slices):
    slices, profile = chest_slices
    for i, hu in enumerate(slices):
        lossy = {"syntax": pydicom.uid.JPEG2000, "j2k_cr": [10]} if i == 1 else {}
        write_dicom(tmp_path / "s" / f"{i}.dcm", hu, instance=i + 1, z=2.5 * i, spacing=profile.spacing, **lossy)
    result = scan_series(CentreBrightness(), tmp_path / "s", stride=32, progress=False)
    assert len(result.notes) == 1 and result.notes[0].startswith("1 of 3 slices lost information to lossy")
    assert "JPEG 2000" in result.as_json()["notes"][0]


def test_cli_scan_json(tmp_path, chest_slices, capsys):
    slices, profile = chest_slices
    keras.utils.set_random_seed(0)
    model = build_hybrid_vit(build_cnn((64, 64, 1), TINY_MODEL["filters"]), TINY_MODEL["dim"], 1, 2, 32)
    model.save(tmp_path / "m.keras")
    dcm = write_dicom(tmp_path / "one.dcm", slices[0], spacing=profile.spacing)
    run = subprocess.run([sys.executable, "-m", "utils.cli", "scan", str(dcm), "--model", str(tmp_path / "m.keras"),
                          "--json", "--out", str(tmp_path / "out"), "--stride", "32"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(result) == {"verdict", "score", "threshold", "locations", "notes"} and result["locations"]
    assert set(result["locations"][0]) == {"slice", "x", "y", "score"}
    assert list((tmp_path / "out").glob("*.png"))
    from utils.cli import main

    assert main(["scan", str(dcm), "--model", str(tmp_path / "m.keras"), "--json", "--figures", "0", "--stride", "32",
                 "--locate", "attention"]) == 0
    moved = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["locations"]
    assert [(m["slice"], m["score"]) for m in moved] == [(r["slice"], r["score"]) for r in result["locations"]]
    assert all(abs(m["x"] - r["x"]) <= 32 and abs(m["y"] - r["y"]) <= 32 for m, r in zip(moved, result["locations"]))


def test_real_slice_and_tcia_series(shared_data):
    sample = sorted((shared_data / "ctgan-sample" / "CT_Scans" / "EXP1_blind").glob("*/*.dcm"))[0]
    one = scan_series(CentreBrightness(), sample, stride=32, progress=False)
    assert len(one.slices) == 1 and one.locations
    series = scan_series(CentreBrightness(), shared_data / "authentic-ct" / "Lung_Dx-A0002" / "B40f", stride=32,
                         progress=False)
    assert len(series.slices) >= 10 and series.skipped  # slices below the lungs are skipped, with a reason


def test_attention_peak_is_the_rollout_maximum_in_slice_pixels(monkeypatch):
    import utils.scan as scan

    model = build_hybrid_vit(build_cnn((96, 96, 1), (4, 8, 8)), dim=16, depth=1, heads=2, mlp_dim=16)
    hu = np.full((256, 256), -850.0, np.float32)

    def fake_rollout(image):  # a mask peaking 10 px right of and 20 px above the window's centre
        assert image.shape == (96, 96, 1)
        mask = np.zeros((96, 96))
        mask[48 - 20, 48 + 10] = 1.0
        return mask

    monkeypatch.setitem(scan._READERS, model, fake_rollout)
    assert scan.attention_peak(model, hu, 120, 130) == (130, 110)
    del scan._READERS[model]
    x, y = scan.attention_peak(model, hu, 120, 130)  # the real rollout: a point inside the window
    assert 72 <= x < 168 and 82 <= y < 178
