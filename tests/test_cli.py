import subprocess
import sys

from tests.conftest import REPO
from utils.cli import main
from utils.patches import read_manifest


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "utils.cli", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("synth", "prepare-ctgan", "contact-sheet", "train", "evaluate", "explain", "scan"):
        assert cmd in out.stdout


def test_synth_writes_layout(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--scans", "8", "--slices", "1", "--workers", "1"]) == 0
    assert "train:" in capsys.readouterr().out
    rows = read_manifest(tmp_path / "manifest.csv")
    assert rows and all((tmp_path / r["path"]).is_file() for r in rows)
    assert (tmp_path / "corpus.json").is_file()


def test_missing_root_is_a_clear_error(tmp_path, capsys):
    assert main(["prepare-ctgan", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err


def test_backgrounds_from_real_ct(shared_data, tmp_path):
    assert main(["synth", "--backgrounds", str(shared_data / "authentic-ct"), "--out", str(tmp_path),
                 "--variants", "2"]) == 0
    rows = read_manifest(tmp_path / "manifest.csv")
    assert sum(r["label"] == "1" for r in rows) >= 36 and sum(r["label"] == "0" for r in rows) >= 36
