import warnings

import numpy as np
import pytest

from tests.conftest import write_dicom
from utils.ctgan import find_layout, load_dataset, prepare_ctgan, read_labels
from utils.dicom import DicomError
from utils.patches import read_manifest


def _phantom(rng):
    """A 128 px 'chest': body disk, two lung ellipses at -850 HU, noise."""
    yy, xx = np.mgrid[0:128, 0:128]
    hu = np.full((128, 128), -1000.0)
    hu[(yy - 64) ** 2 + (xx - 64) ** 2 < 60**2] = 40.0
    for cx in (38, 90):
        hu[((yy - 64) / 40.0) ** 2 + ((xx - cx) / 20.0) ** 2 < 1] = -850.0
    return hu + rng.normal(0, 10, hu.shape)


def _write_dataset(root, scans_dir, layout_names, labels):
    rng = np.random.default_rng(0)
    for exp, rows in labels.items():
        folder = root / scans_dir / layout_names[exp]
        for uuid in sorted({r[1] for r in rows}):
            for inst in (10, 11, 12):
                write_dicom(folder / uuid / f"{inst}.dcm", _phantom(rng), instance=inst, z=inst * 2.5,
                            intercept=0.0)
        (root / f"labels_{exp.lower()}.csv").write_text(
            "type,uuid,slice,x,y\n" + "".join(f"{t},{u},{s},{x},{y}\n" for t, u, s, x, y in rows))


LABELS = {"EXP1": [("FM", "111", 11, 40, 60), ("FB", "222", 10, 90, 64), ("TB", "333", 0, 0, 0)],
          "EXP2": [("FM", "111", 12, 88, 70)]}


@pytest.mark.parametrize("layout", ["kaggle", "uci"])
def test_both_layouts_and_experiment_keys(tmp_path, layout):
    if layout == "kaggle":
        _write_dataset(tmp_path, "CT_Scans", {"EXP1": "EXP1_blind", "EXP2": "EXP2_open"}, LABELS)
    else:
        _write_dataset(tmp_path, "Tampered Scans",
                       {"EXP1": "Experiment 1 - Blind", "EXP2": "Experiment 2 - Open"}, LABELS)
    folders, labels = find_layout(tmp_path)
    assert set(folders) == {"EXP1", "EXP2"} and set(labels) == {"EXP1", "EXP2"}
    scans = {s.key: s for s in load_dataset(tmp_path)}
    assert set(scans) == {"EXP1-111", "EXP1-222", "EXP1-333", "EXP2-111"}  # same uuid, two scans
    assert scans["EXP2-111"].labels[0].slice == 12
    assert scans["EXP1-111"].slice(11).instance == 11


def test_missing_scans_warn_with_count(tmp_path):
    _write_dataset(tmp_path, "CT_Scans", {"EXP1": "EXP1_blind", "EXP2": "EXP2_open"}, LABELS)
    with open(tmp_path / "labels_exp1.csv", "a") as fh:
        fh.write("FM,999,5,10,10\nFB,998,5,10,10\n")
    with pytest.warns(UserWarning, match="2 label row"):
        scans = load_dataset(tmp_path)
    assert len(scans) == 4


def test_bad_label_row_and_corrupt_header(tmp_path):
    _write_dataset(tmp_path, "CT_Scans", {"EXP1": "EXP1_blind", "EXP2": "EXP2_open"}, LABELS)
    bad = tmp_path / "bad.csv"
    bad.write_text("type,uuid,slice,x,y\nXX,1,2,3,4\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        read_labels(bad, "EXP1")
    broken = tmp_path / "CT_Scans" / "EXP1_blind" / "222" / "13.dcm"
    broken.write_bytes(b"junk")
    with pytest.raises(DicomError, match="13.dcm"):
        load_dataset(tmp_path)
    with pytest.warns(UserWarning, match="skipping scan EXP1/222"):
        assert len(load_dataset(tmp_path, skip_corrupt=True)) == 3


def test_real_sample_reader(shared_data, tmp_path):
    root = shared_data / "ctgan-sample"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scans = load_dataset(root)
        manifest = prepare_ctgan(root, tmp_path / "ctgan", protocol="test", progress=False)
    fakes = [r for s in scans for r in s.labels if r.tampered]
    assert len(fakes) == 36 and {r.type for r in fakes} == {"FB", "FM"}
    sl = scans[0].slice(scans[0].labels[0].slice)
    assert sl.hu.shape == (512, 512) and -1100 < np.median(sl.hu) < 200
    rows = read_manifest(manifest)
    kinds = {k: sum(r["kind"] == k for r in rows) for k in ("FB", "FM", "TM", "control")}
    assert kinds == {"FB": 20, "FM": 16, "TM": 8, "control": 36}
    assert all((tmp_path / "ctgan" / r["path"]).is_file() for r in rows)


def test_real_sample_in_wide_uncentred_views(shared_data, tmp_path):
    """Views of another size hold the label point off-centre by up to the jitter; the data set's 64 px
    tm_patches (no slice to cut a wider view from) are left out, saying so."""
    import cv2

    with pytest.warns(UserWarning, match="tm_patches"):
        manifest = prepare_ctgan(shared_data / "ctgan-sample", tmp_path / "wide", protocol="test", progress=False,
                                 size=96, jitter=16)
    rows = read_manifest(manifest)
    assert {r["kind"] for r in rows} >= {"FB", "FM", "control"} and "TM" not in {r["kind"] for r in rows}
    assert all(cv2.imread(str(tmp_path / "wide" / r["path"]), cv2.IMREAD_GRAYSCALE).shape == (96, 96) for r in rows)
    offsets = [(int(r["tamper_x"]) - 48, int(r["tamper_y"]) - 48) for r in rows if r["label"] == "1"]
    assert max(max(abs(dx), abs(dy)) for dx, dy in offsets) <= 16 and any(o != (0, 0) for o in offsets)


def test_training_protocols_cut_views_as_off_centre_as_the_corpus_and_test_centres_them(tmp_path):
    from utils.synthetic import CorpusConfig

    _write_dataset(tmp_path, "CT_Scans", {"EXP1": "EXP1_blind", "EXP2": "EXP2_open"}, LABELS)
    offsets = {}
    for protocol in ("test", "exp1-exp2"):
        rows = read_manifest(prepare_ctgan(tmp_path, tmp_path / protocol, protocol=protocol, progress=False))
        offsets[protocol] = [(int(r["tamper_x"]) - 32, int(r["tamper_y"]) - 32) for r in rows if r["label"] == "1"]
    assert len(offsets["test"]) == 3 and all(o == (0, 0) for o in offsets["test"])
    assert max(max(map(abs, o)) for o in offsets["exp1-exp2"]) <= CorpusConfig.jitter
    assert any(o != (0, 0) for o in offsets["exp1-exp2"])
