"""Data-only work stays light: importing the package or running the data commands never loads TensorFlow."""
import subprocess
import sys

from tests.conftest import REPO


def _modules_after(code: str) -> set[str]:
    run = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return set(run.stdout.split())


def test_data_modules_do_not_import_tensorflow():
    mods = _modules_after("import utils, utils.synthetic, utils.ctgan, utils.patches, utils.authentic, utils.plots, "
                          "utils.cli; utils.cli.build_parser()")
    assert "tensorflow" not in mods and "keras" not in mods and "jax" not in mods


def test_model_modules_register_the_layers():
    mods = _modules_after("import utils.evaluate, keras; "
                          "assert keras.saving.get_registered_object('deepfake_ct>TransformerEncoderBlock') is not None")
    assert "keras" in mods
