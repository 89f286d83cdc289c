"""The explainability explorer, driven headlessly: cached maps, controls wired to them, the HTML page."""
import shutil
import subprocess

import numpy as np
import pytest

import keras
from explainability.views import Explainer, manifest_entries, scan_one_slice
from tests.conftest import REPO, TINY_MODEL
from utils.architectures import build_cnn, build_hybrid_vit

SLICE = REPO / "data" / "backgrounds" / "lung-pet-ct-dx-A0002" / "1-10.dcm"  # shipped with the repository


@pytest.fixture(scope="module")
def hybrid():
    keras.utils.set_random_seed(2)
    cnn = build_cnn((64, 64, 1), TINY_MODEL["filters"])
    return build_hybrid_vit(cnn, TINY_MODEL["dim"], TINY_MODEL["depth"], TINY_MODEL["heads"], TINY_MODEL["mlp_dim"])


def _image(seed=0):
    return np.random.default_rng(seed).uniform(size=(64, 64)).astype(np.float32)


def test_settings_cost_no_model_call_and_match_the_direct_maps(hybrid):
    from explainability import AttentionRollout

    explainer = Explainer(hybrid)
    view = explainer.patch(_image(), region=(32, 32, 10))
    assert explainer.model_calls == 1
    for fusion in ("mean", "max", "min"):
        for ratio in (0.0, 0.5, 0.9):
            got = view.mask(f"rollout {fusion}", ratio)
            want = AttentionRollout(hybrid, head_fusion=fusion, discard_ratio=ratio)(_image())
            np.testing.assert_allclose(got, want, atol=1e-6)
    assert explainer.model_calls == 1  # every fusion and ratio from the one read of the attention
    view.mask("gradient rollout")
    view.mask("gradient rollout", 0.3)  # the ratio does not apply: cached
    assert explainer.model_calls == 2
    assert explainer.patch(_image(), region=(32, 32, 10)) is view and explainer.model_calls == 2
    figures = view.figures(view.mask("rollout mean", 0.9))
    assert isinstance(figures.pointing, bool) and figures.energy_ratio > 0
    assert explainer.patch(_image(1)).figures(view.mask("rollout mean")).pointing is None


def test_manifest_entries_put_known_regions_first(tiny_corpus):
    entries = manifest_entries(tiny_corpus, "test")
    assert entries and entries[0].label == 1 and entries[0].region is not None
    assert all(e.path.is_file() for e in entries)
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        manifest_entries(tiny_corpus / "nowhere")


def test_slice_patch_is_cut_as_in_training(hybrid):
    from utils.dicom import read_slice, window
    from utils.patches import crop_hu

    view = scan_one_slice(hybrid, SLICE, labels=[(200, 300, 12)])
    loc = view.result.locations[0]
    image, _ = view.patch_at(loc.x, loc.y)
    hu = read_slice(SLICE).hu
    np.testing.assert_array_equal(image[..., 0], window(crop_hu(hu, loc.x, loc.y, 64)).astype(np.float32) / 255.0)
    assert view.patch_at(210, 290)[1] == (22.0, 42.0, 12)  # the label point, in the patch's pixels
    assert view.patch_at(400, 100)[1] is None


def test_widget_updates_in_place_without_rebuilding(hybrid, tiny_corpus, tmp_path):
    pytest.importorskip("ipywidgets")
    from explainability.explorer import FILE, SLICE as SLICE_SOURCE, Explorer

    entries = manifest_entries(tiny_corpus, "test", limit=4)
    ex = Explorer(hybrid, {"test split": entries}, slices={"background": SLICE})
    reader, calls = ex.explainer.rollout.reader, ex.explainer.model_calls
    first = ex.patch_image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and "fake score" in ex.info.value and "pointing game" in ex.info.value

    seen = {first}
    for control, value in ((ex.discard, 0.5), (ex.method, "rollout max"), (ex.opacity, 0.9), (ex.discard, 0.95)):
        control.value = value
        assert ex.patch_image.value not in seen, f"{control.description} did not change the image"
        seen.add(ex.patch_image.value)
    assert ex.explainer.model_calls == calls  # settings never call the model again
    ex.method.value = "gradient rollout"  # read once for this patch
    assert ex.discard.disabled and ex.explainer.model_calls == calls + 1

    ex.pick.value = 1  # a new patch: its attention, and the gradient rollout shown
    assert ex.explainer.model_calls == calls + 3 and ex.entry is entries[1]

    ex.source.value = SLICE_SOURCE  # scan the slice, show its best window
    assert ex.slice_image.value[:4] == b"\x89PNG" and ex.locations.options
    top = ex.slice.result.locations[0]
    assert (ex.x.value, ex.y.value) == (top.x, top.y)
    ex.locations.value = 1
    second = ex.slice.result.locations[1]
    assert (ex.x.value, ex.y.value) == (second.x, second.y)
    ex.move_to(second.x + 8, second.y)
    assert ex.entry.title.endswith(f"({second.x + 8}, {second.y})")

    patch = tmp_path / "p.png"
    shutil.copy(entries[0].path, patch)
    ex.path.value = str(patch)
    ex.open.click()
    assert ex.source.value == FILE and ex.entry.path == patch
    ex.path.value = str(tmp_path / "missing.png")
    ex.open.click()
    assert "no such file" in ex.info.value
    assert ex.explainer.rollout.reader is reader  # one read-out model for the whole session
    assert ex.last_update_s > 0


def test_html_page_holds_every_view(hybrid, tmp_path):
    from explainability.page import RATIOS, page_data, slice_items, write_page

    explainer = Explainer(hybrid)
    view = scan_one_slice(hybrid, SLICE, top_k=2)
    items = slice_items(view)
    data = page_data(explainer, items)
    assert len(data["items"]) == 2
    maps = data["items"][0]["maps"]
    assert f"rollout max|{RATIOS[-1]:g}" in maps and "Grad-CAM|" in maps
    assert all(m["heat"].startswith("data:image/png;base64,") for m in maps.values())
    page = write_page(explainer, None, tmp_path / "explain.html", slice_view=view)
    text = page.read_text()
    assert "<script" in text and "http" not in text.replace("http-equiv", "")  # nothing fetched from elsewhere
    with pytest.raises(ValueError, match="nothing to explain"):
        write_page(explainer, [], tmp_path / "empty.html")


def test_html_page_renders_in_chromium(hybrid, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the page's script is not run")
    from explainability.page import PageItem, write_page

    region = (32.0, 32.0, 10.0)
    page = write_page(Explainer(hybrid), [PageItem("a", _image(), region, 1), PageItem("b", _image(1))],
                      tmp_path / "explain.html")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'data-rendered="1"' in dom, dom[:500]  # the script ran and drew the first view
    assert 'id="heat" alt="map" src="data:image/png;base64,' in dom
    assert "pointing game" in dom and "<circle" in dom


def test_cli_explain_writes_a_page_for_a_slice(hybrid, tmp_path):
    import sys

    hybrid.save(tmp_path / "m.keras")
    out = tmp_path / "page.html"
    run = subprocess.run([sys.executable, "-m", "utils.cli", "explain", "--slice", str(SLICE), "--top-k", "2",
                          "--model", str(tmp_path / "m.keras"), "--out", str(out)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert out.is_file() and run.stdout.count("fake score") == 2 and '"slice":' in out.read_text()
    run = subprocess.run([sys.executable, "-m", "utils.cli", "explain", "--model", str(tmp_path / "m.keras")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "--slice" in run.stderr
