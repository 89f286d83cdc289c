import json

import pytest
from pydicom.uid import generate_uid

from tests.conftest import write_dicom
from utils.archive import find_series, read_report, scan_archive
from utils.architectures import build_cnn
from utils.operating_point import load_model
from utils.scan import scan_series


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, chest_slices):
    """A small PACS export: three CT series in nested study folders (files without extension), a non-CT
    object, a text file, a broken DICOM, a localizer and a coronal reformat."""
    slices, profile = chest_slices
    root = tmp_path_factory.mktemp("pacs")
    for study in range(3):
        uid = generate_uid()
        for i, hu in enumerate(slices[:2]):
            write_dicom(root / f"study{study}" / "series1" / f"IM{i:04d}", hu, instance=i + 1, z=2.5 * i,
                        spacing=profile.spacing, series_uid=uid)
    write_dicom(root / "study0" / "report" / "sr.dcm", slices[0][:16, :16], modality="SR")
    (root / "study1" / "notes.txt").write_text("not an image")
    (root / "study2" / "series1" / "broken.dcm").write_bytes(b"\0" * 64)
    write_dicom(root / "study0" / "scout" / "topogram", slices[0], image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                series_uid=generate_uid())
    write_dicom(root / "study1" / "mpr" / "coronal", slices[0], orientation=(1, 0, 0, 0, 0, -1),
                series_uid=generate_uid())
    model = build_cnn((64, 64, 1), filters=(4, 8, 8))
    path = root.parent / "archive_model.keras"
    model.save(path)
    return root, path


def _lines(report):
    return [json.loads(raw) for raw in report.read_text().splitlines()]


def test_series_are_found_and_other_files_skipped_with_a_reason(pacs):
    jobs, skipped = find_series(pacs[0])
    assert len(jobs) == 3 and all(len(j.files) == 2 for j in jobs)
    reasons = {p.split("/")[-1]: r for p, r in ((s["path"], s["reason"]) for s in skipped)}
    assert set(reasons) == {"sr.dcm", "notes.txt", "broken.dcm", "topogram", "coronal"}
    assert "not CT" in reasons["sr.dcm"] and "not a readable DICOM" in reasons["notes.txt"]
    assert "localizer" in reasons["topogram"] and "coronal" in reasons["coronal"]


def test_archive_matches_serial_scan_and_a_killed_run_resumes(pacs, tmp_path):
    root, model_path = pacs
    report = tmp_path / "report.jsonl"
    summary = scan_archive(root, model_path, report, workers=1, progress=False, stride=32)
    assert summary["scanned"] == 3 and summary["errors"] == 0
    series = [line for line in _lines(report) if line["kind"] == "series"]
    assert len(series) == 3 and len([line for line in _lines(report) if line["kind"] == "skipped"]) == 5
    jobs, _ = find_series(root)
    serial = scan_series(load_model(model_path), jobs[0].files, stride=32, progress=False)
    line = next(s for s in series if s["series_uid"] == jobs[0].uid)
    assert line["score"] == pytest.approx(serial.score, abs=1e-5)
    assert [(loc["slice"], loc["x"], loc["y"]) for loc in line["locations"]] == \
        [(loc.slice, loc.x, loc.y) for loc in serial.locations]

    # killed after one series, half-way through writing the next line: the rerun completes the report
    raw = report.read_text().splitlines()
    first = next(r for r in raw if '"kind": "series"' in r)
    report.write_text("\n".join([r for r in raw if '"kind": "skipped"' in r] + [first]) + "\n" + raw[-1][:40])
    summary = scan_archive(root, model_path, report, workers=1, progress=False, stride=32)
    assert summary["already_done"] == 1 and summary["scanned"] == 2
    done, skipped = read_report(report)
    assert done == {j.uid for j in jobs} and len(skipped) == 5
    assert len(_lines(report)) == 8  # no duplicates
