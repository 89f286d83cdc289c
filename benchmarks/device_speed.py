"""Training, inference and scanning speed on this machine's accelerator (a GPU), named in the report.

    KERAS_BACKEND=jax python -m benchmarks.device_speed [--data data] [--images 8192] [--epochs 3]
        [--batch-sizes 128 1024] [--slices 12] [--parts training inference scan] [--out reports/device_speed.md]
        [--allow-cpu]

For the CNN and the hybrid (the default sizes of `utils.training.TrainConfig`, freshly built; speed does not
depend on the weights): training images per second through the project's own batch pipeline
(`training.make_batches`, per-batch augmentation, the default batch size) and, beside it, from in-memory arrays
without augmentation at each batch size (what the model alone could take); the first epoch, which includes
compilation, is reported apart and left out of the rates. Inference images per second at each batch size.
Scanning: seconds per slice of `scan.scan_slice` (every lung window at stride 16, crops included) on the shipped
real slices (`data/backgrounds`), with the lung mask computed beforehand, and the model's share of it.

Training patches are the corpus's (`--data`, capped at `--images`) when it exists, else random patches of the
same shape. Without a GPU it says so, prints the command to run on a GPU machine and exits; `--allow-cpu`
measures the CPU the same way (the figures beside the GPU's in the README). Both models are timed in one
process, the CNN first; on the CPU several models per process were seen to give low figures, so for CPU
planning `benchmarks.compare` (one process per model) is the reference.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
COMMAND = "KERAS_BACKEND=jax python -m benchmarks.device_speed"
PARTS = ("training", "inference", "scan")


def accelerator(backend: str) -> str | None:
    """'N x NAME' of the GPUs Keras' backend computes on, or None when it runs on the CPU."""
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")]
        return f"{len(gpus)} x {gpus[0].device_kind}" if gpus else None
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
            return f"{len(gpus)} x {name}"
        return None
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{os.cpu_count()} cores, {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"


def training_patches(data: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Up to n training patches of the corpus at `data` (random ones of the same shape when it is missing)."""
    rng = np.random.default_rng(seed)
    if (data / "train").is_dir():
        from utils.data import load_split

        x, y, _ = load_split(data / "train")
        idx = np.sort(rng.choice(len(x), min(n, len(x)), replace=False))
        return x[idx], y[idx], f"{len(idx)} training patches of {data}"
    x = rng.random((n, 64, 64, 1), dtype=np.float32)
    return x, (rng.random(n) < 0.5).astype(np.int64), f"{n} random 64 px patches ({data} has no corpus)"


def time_fit(model, data, n: int, epochs: int, lr: float) -> dict:
    """First-epoch seconds and steady images per second of `model.fit` over `data` (a PyDataset or (x, y, bs))."""
    import keras

    from utils.training import compile_model

    compile_model(model, lr, 1e-4)
    seconds = []  # per epoch; no validation runs in these fits
    clock = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seconds.append(-time.perf_counter()),
        on_epoch_end=lambda epoch, logs: seconds.append(seconds.pop() + time.perf_counter()))
    if isinstance(data, tuple):
        x, y, batch = data
        model.fit(x, y.astype(np.float32), batch_size=batch, epochs=epochs, callbacks=[clock], verbose=0)
    else:
        model.fit(data, epochs=epochs, callbacks=[clock], verbose=0)
    steady = seconds[1:] or seconds
    return {"first_epoch_s": round(seconds[0], 2), "images_per_s": round(n * len(steady) / sum(steady), 1)}


def time_predict(model, x, batch: int, repeats: int = 3) -> float:
    model.predict(x, batch_size=batch, verbose=0)  # compiles every batch shape of the timed calls
    start = time.perf_counter()
    for _ in range(repeats):
        model.predict(x, batch_size=batch, verbose=0)
    return round(repeats * len(x) / (time.perf_counter() - start), 1)


def time_scan(model, slices: list, stride: int = 16) -> dict:
    """Seconds per slice of scan_slice (lung masks computed beforehand) and of the model alone on its windows."""
    from utils.lungmask import lung_mask
    from utils.patches import patch_input
    from utils.scan import grid_points, model_patch_size, predict_windows, scan_slice

    masks = [lung_mask(sl.hu, sl.spacing[1]) for sl in slices]
    passes = []  # the first pass compiles the predict step for each batch shape; the second is timed
    for _ in range(2):
        start = time.perf_counter()
        windows = sum(scan_slice(model, sl, stride=stride, lungs=m).n_patches for sl, m in zip(slices, masks))
        passes.append((time.perf_counter() - start) / len(slices))
    per_slice = passes[1]
    size = model_patch_size(model)
    stacks = [np.stack([patch_input(sl.hu, int(px), int(py), size) for py, px in grid_points(m, stride)])
              for sl, m in zip(slices, masks)]
    start = time.perf_counter()
    for x in stacks:
        predict_windows(model, x)
    model_only = (time.perf_counter() - start) / len(slices)
    return {"slices": len(slices), "windows_per_slice": round(windows / len(slices)), "stride": stride,
            "seconds_per_slice": round(per_slice, 4), "first_pass_seconds_per_slice": round(passes[0], 4),
            "model_seconds_per_slice": round(model_only, 4),
            "series_300_slices_s": round(300 * per_slice, 1)}


def shipped_slices(limit: int) -> list:
    from utils.dicom import read_slice

    files = sorted((REPO / "data" / "backgrounds").rglob("*.dcm"))[:limit]
    return [read_slice(f) for f in files]


def report(result: dict) -> str:
    sizes = [str(b) for b in result["batch_sizes"]]
    lines = [f"Device: {result['device']} (Keras {result['keras']}, backend {result['backend']}); host CPU "
             f"{result['cpu']}.", f"Training data: {result['data']}; {result['epochs']} epochs per figure, the "
             "first (compilation) left out of the rates.", "",
             "| model | params | training img/s, pipeline (batch 128, augmented) | first epoch s | "
             + " | ".join(f"training img/s, arrays, batch {b}" for b in sizes) + " | "
             + " | ".join(f"inference img/s, batch {b}" for b in sizes) + " |",
             "|---|---|---|---|" + "---|" * (2 * len(sizes))]
    for name, r in result["models"].items():
        pipe, arrays, infer = r.get("pipeline", {}), r.get("arrays", {}), r.get("inference", {})
        cells = [name, r["params"], pipe.get("images_per_s", ""), pipe.get("first_epoch_s", "")]
        cells += [arrays.get(b, {}).get("images_per_s", "") for b in sizes] + [infer.get(b, "") for b in sizes]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    s = result.get("scan")
    if s:
        lines += ["", f"Scanning (hybrid, `scan.scan_slice`, stride {s['stride']}, {s['slices']} shipped real slices, "
                  f"{s['windows_per_slice']} windows per slice): {s['seconds_per_slice']:.3f} s per slice, of which "
                  f"the model alone {s['model_seconds_per_slice']:.3f} s (first pass, compiling: "
                  f"{s['first_pass_seconds_per_slice']:.3f} s per slice); a 300-slice series "
                  f"{s['series_300_slices_s']:.0f} s (reading and lung masks not included)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="corpus folder (default: data)")
    parser.add_argument("--images", type=int, default=8192, help="training patches per epoch (default 8192)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per figure, the first left out (default 3)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--slices", type=int, default=12, help="shipped real slices to scan (default 12; 0: none)")
    parser.add_argument("--out", type=Path, default=Path("reports/device_speed.md"))
    parser.add_argument("--allow-cpu", action="store_true", help="measure on the CPU when no GPU is visible")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="what to measure (default: all)")
    args = parser.parse_args()
    import keras

    backend = keras.backend.backend()
    device = accelerator(backend)
    if device is None and not args.allow_cpu:
        print(f"No GPU is visible to Keras' {backend} backend on this machine, so there is no GPU figure to take.\n"
              f"On a GPU machine (JAX with CUDA), run:\n\n    {COMMAND}\n\n"
              "or measure this CPU the same way with --allow-cpu.")
        return
    from utils.architectures import build_cnn, build_hybrid_vit
    from utils.training import TrainConfig, make_batches

    keras.utils.set_random_seed(args.seed)
    cfg = TrainConfig()
    x, y, what = training_patches(args.data, args.images, args.seed)
    result = {"device": device or "CPU only", "backend": backend, "keras": keras.__version__,
              "cpu": cpu_name(), "data": what, "epochs": args.epochs, "batch_sizes": args.batch_sizes, "models": {}}
    builders = {"CNN": lambda: build_cnn(x.shape[1:], cfg.filters),
                "hybrid CNN-ViT": lambda: build_hybrid_vit(build_cnn(x.shape[1:], cfg.filters), cfg.dim, cfg.depth,
                                                           cfg.heads, cfg.mlp_dim, cfg.dropout)}
    for name, build in builders.items():
        model = build()
        row = {"params": model.count_params()}
        if "training" in args.parts:
            batches = make_batches(x, y, cfg.batch_size, True, True, args.seed)
            row["pipeline"] = time_fit(model, batches, len(x), args.epochs, cfg.cnn_lr)
            row["arrays"] = {str(b): time_fit(build(), (x, y, b), len(x), args.epochs, cfg.cnn_lr)
                             for b in args.batch_sizes}
        if "inference" in args.parts:
            row["inference"] = {str(b): time_predict(model, x, b) for b in args.batch_sizes}
        result["models"][name] = row
        print(f"{name}: {json.dumps(row)}", flush=True)
        if name.startswith("hybrid") and args.slices and "scan" in args.parts:
            result["scan"] = time_scan(model, shipped_slices(args.slices))
    text = report(result)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
