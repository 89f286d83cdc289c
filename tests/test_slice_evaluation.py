import numpy as np
import pytest

from tests.conftest import write_dicom
from tests.test_scan import CentreBrightness
from utils.dicom import CTSlice
from utils.lungmask import erode, lung_mask
from utils.slice_evaluation import (AuthenticSlice, TamperedSlice, authentic_slices, ctgan_tampered_slices,
                                    evaluate_slices, summary_rows)


def _marked(hu, spacing):
    """The slice with a bright spot well inside the lungs (what the stand-in model scores), and the spot."""
    ys, xs = np.nonzero(erode(lung_mask(hu, spacing), 12))
    i = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean() - 40) ** 2)
    y0, x0 = int(ys[i]), int(xs[i])
    hu = hu.copy()
    hu[y0 - 8 : y0 + 8, x0 - 8 : x0 + 8] = 1000.0
    return hu, (x0, y0)


def test_slice_verdicts_are_scored_at_the_stored_slice_thresholds(chest_slices):
    slices, profile = chest_slices
    sp = (profile.spacing, profile.spacing)
    tampered = []
    for i, hu in enumerate(slices[:2]):
        marked, point = _marked(hu, profile.spacing)
        tampered.append(TamperedSlice(CTSlice(marked, sp, i), [point], "FM" if i else "FB"))
    authentic = [AuthenticSlice(CTSlice(hu, sp, i), "series") for i, hu in enumerate(slices)]
    authentic.append(AuthenticSlice(CTSlice(np.full((128, 128), -1000.0, np.float32), sp, 9), "air"))  # no lungs
    model = CentreBrightness()
    model.operating_point = {"slice": {"thresholds": {"0.01": 0.99, "0.05": 0.0}, "chosen_on": "test"}}
    out = evaluate_slices(model, tampered, authentic, stride=16, progress=False)
    assert out["tampered"] == 2 and out["authentic"] == 3 and out["left_out"] == 1
    assert out["slice_auc"] == 1.0 and out["top1_within_24px"] == 1.0
    assert out["by_kind"] == {"FB": {"slices": 1, "top1_within_24px": 1.0},
                              "FM": {"slices": 1, "top1_within_24px": 1.0}}
    assert out["at_rates"]["0.05"]["authentic_flagged"] == 1.0 and out["at_rates"]["0.01"]["authentic_flagged"] == 0.0
    assert out["at_rates"]["0.01"]["tampered_flagged"] == 1.0 and out["at_rates"]["0.01"]["FB_flagged"] == 1.0
    rows = summary_rows("stand-in", out)
    assert len(rows) == 2 and rows[0]["tampered flagged"] == "1.000"
    del model.operating_point
    assert summary_rows("stand-in", evaluate_slices(model, tampered, authentic, progress=False))[0][
        "slice threshold"] == "none stored"
    with pytest.raises(ValueError, match="both classes"):
        evaluate_slices(model, tampered, authentic[-1:], progress=False)


def test_authentic_slices_by_series_with_patients_left_out(tmp_path, chest_slices):
    slices, profile = chest_slices
    for i, hu in enumerate(slices[:2]):
        write_dicom(tmp_path / "site" / "a" / f"{i}.dcm", hu, instance=i + 1, z=2.5 * i, spacing=profile.spacing,
                    patient="A")
    write_dicom(tmp_path / "site" / "lone.dcm", slices[2], spacing=profile.spacing, patient="B")
    found = authentic_slices(tmp_path / "site")
    assert [(s.series, s.patient) for s in found] == [("lone.dcm", "B"), ("a", "A"), ("a", "A")]
    assert [s.series for s in authentic_slices(tmp_path / "site", exclude_patients={"B"})] == ["a", "a"]


def test_real_tampered_slices_of_the_development_sample(shared_data):
    found = ctgan_tampered_slices(shared_data / "ctgan-sample")
    assert len(found) == 36 and {s.kind for s in found} == {"FB", "FM"}
    assert all(s.targets and s.slice.hu.shape == (512, 512) for s in found)
