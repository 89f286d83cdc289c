import subprocess
import sys

from tests.conftest import REPO
from utils.cli import main
from utils.patches import read_manifest


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "utils.cli", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("synth", "prepare-ctgan", "contact-sheet", "train", "evaluate", "explain", "scan", "calibrate"):
        assert cmd in out.stdout


def test_synth_writes_layout(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--scans", "8", "--slices", "1", "--workers", "1"]) == 0
    assert "train:" in capsys.readouterr().out
    rows = read_manifest(tmp_path / "manifest.csv")
    assert rows and all((tmp_path / r["path"]).is_file() for r in rows)
    assert (tmp_path / "corpus.json").is_file()


def test_synth_passes_the_corpus_options_on(tmp_path, monkeypatch):
    import utils.synthetic

    seen = {}
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,split,label,kind,scan\n")

    def build(out, cfg):
        seen["cfg"] = cfg
        return manifest

    monkeypatch.setattr(utils.synthetic, "build_synthetic_corpus", build)
    assert main(["synth", "--out", str(tmp_path), "--lookalikes", "--matched-nodules", "--heterogeneous-nodules"]) == 0
    assert seen["cfg"].lookalikes and seen["cfg"].matched_nodules and seen["cfg"].heterogeneous_nodules
    seen.clear()
    assert main(["synth", "--out", str(tmp_path)]) == 0
    defaults = utils.synthetic.CorpusConfig()
    assert (seen["cfg"].lookalikes, seen["cfg"].matched_nodules) == (defaults.lookalikes, defaults.matched_nodules)
    assert seen["cfg"].heterogeneous_nodules == defaults.heterogeneous_nodules is False
    assert (seen["cfg"].patch_size, seen["cfg"].jitter, seen["cfg"].tampers_per_slice) == (
        defaults.patch_size, defaults.jitter, defaults.tampers_per_slice)
    assert seen["cfg"].removal_haze == defaults.removal_haze
    assert seen["cfg"].edge_enhancement == defaults.edge_enhancement
    assert seen["cfg"].background_noise == defaults.background_noise == 45.0
    assert seen["cfg"].background_ground_glass == defaults.background_ground_glass == 0.0
    assert seen["cfg"].removal_texture == defaults.removal_texture == ()
    assert main(["synth", "--out", str(tmp_path), "--patch-size", "128", "--jitter", "32",
                 "--tampers-per-slice", "2", "--removal-haze", "0", "40", "0", "15", "--edge-enhancement", "0",
                 "--background-noise", "30", "--background-ground-glass", "0.33",
                 "--removal-texture", "12", "30"]) == 0
    assert seen["cfg"].edge_enhancement == 0.0 and seen["cfg"].background_noise == 30.0
    assert seen["cfg"].background_ground_glass == 0.33 and seen["cfg"].removal_texture == (12.0, 30.0)
    assert (seen["cfg"].patch_size, seen["cfg"].jitter, seen["cfg"].tampers_per_slice) == (128, 32, 2)
    assert seen["cfg"].removal_haze == (0.0, 40.0, 0.0, 15.0)


def test_missing_root_is_a_clear_error(tmp_path, capsys):
    assert main(["prepare-ctgan", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err


def test_backgrounds_from_real_ct(shared_data, tmp_path):
    assert main(["synth", "--backgrounds", str(shared_data / "authentic-ct"), "--out", str(tmp_path),
                 "--variants", "2"]) == 0
    rows = read_manifest(tmp_path / "manifest.csv")
    assert sum(r["label"] == "1" for r in rows) >= 36 and sum(r["label"] == "0" for r in rows) >= 36


def _cli(*args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "utils.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **(env or {})))


def _one_line_error(run, *names):
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [ln for ln in run.stderr.strip().splitlines() if ln.startswith("error:")]
    assert lines and "Traceback" not in run.stderr, run.stderr[-2000:]
    for name in names:
        assert name in lines[-1], lines[-1]


def test_corrupt_model_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"PK\x03\x04 truncated")
    png = tmp_path / "p.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(png), np.zeros((64, 64), np.uint8))
    _one_line_error(_cli("explain", str(png), "--model", str(bad)), "broken.keras")
    _one_line_error(_cli("evaluate", str(bad), str(tmp_path)), "broken.keras")


def test_unwritable_out_and_wrong_backend_are_one_line_errors(tmp_path):
    import cv2
    import numpy as np

    import keras
    from tests.conftest import TINY_MODEL
    from utils.architectures import build_cnn, build_hybrid_vit

    model = build_hybrid_vit(build_cnn((64, 64, 1), TINY_MODEL["filters"]), TINY_MODEL["dim"], 1, 2, 32)
    model.save(tmp_path / "m.keras")
    png = tmp_path / "p.png"
    cv2.imwrite(str(png), np.zeros((64, 64), np.uint8))
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    _one_line_error(_cli("explain", str(png), "--model", str(tmp_path / "m.keras"), "--out",
                         str(blocker / "e.png")), "file")
    if keras.backend.backend() == "tensorflow":
        _one_line_error(_cli("explain", str(png), "--model", str(tmp_path / "m.keras"), "--out",
                             str(tmp_path / "e.png"), env={"KERAS_BACKEND": "jax"}), "KERAS_BACKEND=tensorflow")


def test_relative_scan_needs_its_own_threshold(tmp_path):
    from tests.conftest import TINY_MODEL
    from utils.architectures import build_cnn

    build_cnn((64, 64, 1), TINY_MODEL["filters"]).save(tmp_path / "m.keras")
    _one_line_error(_cli("scan", str(tmp_path), "--relative", "--model", str(tmp_path / "m.keras")),
                    "no stored relative operating point", "calibrate")
