"""How fast the notebook's explorer redraws: seconds per control change, measured through the widget itself.

    python -m benchmarks.explorer_speed [--model models/deepfake_detection_model.keras] [--data data] [--n 10]

For each of `--n` test patches: opening it (the one read of its attention), then every control a user moves
(discard ratio, head fusion, opacity: no model call; the first gradient rollout and Grad-CAM of a patch: one
each; going back to a map already seen: cached); then scanning a shipped DICOM slice and moving between its
top locations. Prints median and maximum seconds per action (the goal for a slider move is 0.3 s on 2 cores)
and writes reports/explorer_speed.md. Without a trained model it times an untrained model of the default size
and says so.
"""
from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

GOAL_S = 0.3
SCAN = "scan a 512x512 slice and show its best window"  # a scan, not a redraw: no 0.3 s goal


def _model(path: Path):
    if path.is_file():
        from utils.operating_point import load_model

        return load_model(path), str(path)
    import keras

    from utils.architectures import build_cnn, build_hybrid_vit

    keras.utils.set_random_seed(0)
    return build_hybrid_vit(build_cnn((64, 64, 1))), f"untrained default-size hybrid ({path} not found)"


def _entries(data: Path, n: int):
    from explainability.views import PatchEntry, manifest_entries

    if (data / "manifest.csv").is_file():
        entries = manifest_entries(data, "test")
        return entries[:: max(1, len(entries) // n)][:n], str(data)
    import cv2

    out, folder = [], Path(os.environ.get("TMPDIR", "/tmp")) / "explorer_speed"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        path = folder / f"noise_{i}.png"
        cv2.imwrite(str(path), (rng.uniform(size=(64, 64)) * 255).astype(np.uint8))
        out.append(PatchEntry(path, path.name, None, (32.0, 32.0, 10.0)))
    return out, f"{n} noise patches ({data / 'manifest.csv'} not found)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/deepfake_detection_model.keras"))
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--n", type=int, default=10, help="patches (default 10)")
    parser.add_argument("--out", type=Path, default=Path("reports/explorer_speed.md"))
    args = parser.parse_args()

    from explainability.explorer import SLICE, Explorer
    from utils.synthetic import SHIPPED_BACKGROUNDS

    model, model_name = _model(args.model)
    entries, data_name = _entries(args.data, args.n)
    slice_path = sorted(SHIPPED_BACKGROUNDS.rglob("*.dcm"))[4]
    start = time.perf_counter()
    ex = Explorer(model, {"test": entries}, slices={"slice": slice_path})
    built = time.perf_counter() - start
    times = defaultdict(list)

    def timed(action, change):
        t = time.perf_counter()
        change()
        times[action].append(time.perf_counter() - t)

    from utils.data import read_image

    ex.explainer._cache.clear()  # every patch below is opened for the first time
    for entry in entries:
        ex.method.value, ex.discard.value = "rollout mean", 0.9
        timed("open a patch (its attention read once)", lambda: ex.set_patch(read_image(entry.path), entry.region,
                                                                             entry))
        for ratio in (0.5, 0.8, 0.95, 0.9):
            timed("move the discard ratio", lambda: setattr(ex.discard, "value", ratio))
        for fusion in ("max", "min", "mean"):
            timed("change the head fusion", lambda: setattr(ex.method, "value", f"rollout {fusion}"))
        for alpha in (0.3, 0.7, 0.45):
            timed("move the opacity", lambda: setattr(ex.opacity, "value", alpha))
        for method in ex.explainer.methods[3:]:
            timed(f"first {method} of a patch", lambda: setattr(ex.method, "value", method))
        timed("back to a map already seen", lambda: setattr(ex.method, "value", "rollout mean"))
    timed(SCAN, lambda: setattr(ex.source, "value", SLICE))
    for k in range(1, len(ex.locations.options)):
        timed("move to another top location", lambda: setattr(ex.locations, "value", k))
    for ratio in (0.5, 0.8):
        timed("move the discard ratio on a slice window", lambda: setattr(ex.discard, "value", ratio))

    import keras

    lines = [f"Model: {model_name}; patches: {data_name}; backend {keras.backend.backend()}, "
             f"{os.cpu_count()} CPU cores; explorer built in {built:.2f} s.", "",
             "| action | n | median s | max s | within 0.3 s |", "|---|---|---|---|---|"]
    for action, ts in times.items():
        within = "(a scan)" if action == SCAN else ("yes" if max(ts) <= GOAL_S else "no")
        lines.append(f"| {action} | {len(ts)} | {np.median(ts):.3f} | {max(ts):.3f} | {within} |")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
