"""The notebook runs top to bottom in its quick mode (tiny corpus, one epoch per phase)."""
import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO


@pytest.mark.slow
def test_notebook_quick_mode(tmp_path, monkeypatch, chest_slices):
    from tests.conftest import write_dicom

    slices, profile = chest_slices  # one authentic slice of "your own scanner", a training background
    write_dicom(tmp_path / "site" / "0.dcm", slices[0], spacing=profile.spacing)
    monkeypatch.setenv("DEEPFAKE_BACKGROUNDS", str(tmp_path / "site"))
    monkeypatch.setenv("DEEPFAKE_QUICK", "1")
    monkeypatch.setenv("DEEPFAKE_CORPUS", '{"background_noise": 20}')
    for name in ("DATA", "MODELS", "REPORTS"):
        monkeypatch.setenv(f"DEEPFAKE_{name}", str(tmp_path / name.lower()))
    nb = nbformat.read(REPO / "deepfake-detection.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    reports = tmp_path / "reports"
    for name in ("contact_sheet.png", "training_curves.png", "results.md", "confusion_matrix.png", "roc_pr.png",
                 "explanations.png", "timings.md"):
        assert (reports / name).is_file(), name
    assert (tmp_path / "models" / "deepfake_detection_model.h5").is_file()
    assert "hybrid CNN-ViT" in (reports / "results.md").read_text()
    import json

    corpus = json.loads((tmp_path / "data" / "corpus.json").read_text())
    assert corpus["backgrounds"] == [str(tmp_path / "site")] and corpus["background_noise"] == 20
    explorer = [c for c in nb.cells if c.cell_type == "code" and "Explorer(" in c.source]
    assert explorer and any("application/vnd.jupyter.widget-view+json" in out.get("data", {})
                            for out in explorer[0].outputs), "the explorer cell shows no widget"
