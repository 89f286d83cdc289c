"""Data-parallel training through keras.distribution gives the loss curve of one device (JAX, 2 virtual CPUs)."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = """
import json, sys
import numpy as np
import keras
from utils.training import TrainConfig, run_training
rng = np.random.default_rng(0)
x = rng.uniform(size=(256, 64, 64, 1)).astype("float32")
y = (rng.uniform(size=256) < 0.5).astype("int32")
x[y == 1, 24:40, 24:40] += 0.3
data = {"train": (x[:192], y[:192]), "val": (x[192:], y[192:])}
cfg = TrainConfig(models_dir=sys.argv[1], cnn_epochs=3, batch_size=32, augment=False, filters=(4, 8, 8),
                  data_parallel=sys.argv[2] == "1", slice_calibration=0)
run = run_training(cfg, phases=("cnn",), verbose=0, data=data)
print(json.dumps({"devices": len(keras.distribution.list_devices()), "loss": run["histories"]["cnn"]["loss"]}))
"""


@pytest.mark.slow
def test_data_parallel_matches_one_device(tmp_path):
    # On a 2-core machine XLA's shared Eigen pool can hold one device's all-reduce while the other device waits
    # for a thread (CI once aborted on the 40 s rendezvous limit): run Eigen in each device's own thread, and
    # give a slow machine time before the rendezvous gives up.
    flags = ("--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false "
             "--xla_cpu_collective_call_terminate_timeout_seconds=300")
    env = dict(os.environ, KERAS_BACKEND="jax", XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    out = {}
    for flag in ("0", "1"):
        run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / flag), flag], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        out[flag] = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["1"]["devices"] == 2
    # same batches, same initial weights; only the order of the cross-device sums differs
    for a, b in zip(out["0"]["loss"], out["1"]["loss"]):
        assert abs(a - b) <= 1e-3 * max(1.0, abs(a)), (out["0"]["loss"], out["1"]["loss"])
