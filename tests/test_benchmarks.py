"""The benchmark scripts run end to end in their quick modes and write reports of the expected structure."""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_compare_quick_writes_report(tmp_path):
    run = subprocess.run([sys.executable, "-m", "benchmarks.compare", "--quick", "--data", str(tmp_path / "data"),
                          "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    md = (tmp_path / "out" / "benchmark.md").read_text()
    for name in ("CNN", "hybrid CNN-ViT", "plain ViT (pixels)", "forensic features + gradient boosting"):
        assert f"| {name} |" in md
    assert "| hybrid CNN-ViT − CNN | synthetic | 0 |" in md
    report = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    rows, paired = report["rows"], report["paired"]
    assert {"diff", "ci", "p_not_better"} <= set(paired[0])
    assert {"model", "seed", "params", "train_seconds", "infer_images_per_s", "synthetic"} <= set(rows[0])
    assert {"accuracy", "f1", "roc_auc", "roc_auc_ci"} <= set(rows[0]["synthetic"])


def test_help_of_every_benchmark():
    for name in ("compare", "transfer", "faithfulness", "scan_localisation", "corpus_speed", "startup",
                 "false_alarm_map", "texture_levels", "explorer_speed", "scan_speed"):
        run = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0 and "usage" in run.stdout, name
