"""Where a whole-series scan spends its time: reading DICOM, the lung mask, and the model, per slice.

    python -m benchmarks.scan_speed [--root ../shared/data/authentic-ct/covid-ct-md] [--stride 16] [--series 3]

For each of the first `--series` series under ROOT (a folder of DICOM series; COVID-CT-MD's are JPEG-lossless
compressed, as clinical archives often are): reading the series (`dicom.read_series`, decoding included), the
lung mask per slice (`lungmask.lung_mask`) and the model per slice (`scan.scan_slice` with that mask: cropping
every window and the forward passes), with the windows per slice. Prints seconds per slice for each part and
what a 300-slice series would take at that rate; writes reports/scan_speed.md.

For a model whose stem has no padding, the model is timed both ways on every slice, in one run: window by
window (the whole patch model on every window, the only way for a padded stem) and with the stem run once per
slice (`scan.SharedStem`), with the ratio and the largest score difference between the two. The first slice is
scanned once beforehand (not counted): tracing or compiling is a one-off cost.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=SHARED / "authentic-ct" / "covid-ct-md")
    parser.add_argument("--model", type=Path, default=Path("models/deepfake_detection_model.keras"))
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--series", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("reports/scan_speed.md"))
    args = parser.parse_args()
    folders = sorted({p.parent for p in args.root.rglob("*.dcm")})[: args.series] if args.root.is_dir() else []
    if not folders:
        raise SystemExit(f"{args.root}: no DICOM series found (pass --root with a folder of series)")
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: not found (run the main job first, or pass --model)")
    import keras

    from utils.dicom import read_series
    from utils.ensemble import members
    from utils.lungmask import lung_mask
    from utils.operating_point import load_model
    from utils.scan import scan_slice, shares_stem

    model = load_model(args.model)
    shared = all(shares_stem(part) for part in members(model))  # an ensemble shares each member's stem
    methods = {"window by window": False, "shared stem": True} if shared else {"window by window": False}
    rows = ["| series | slices | read s/slice | lung mask s/slice | "
            + " | ".join(f"model s/slice, {m}" for m in methods) + " | windows/slice | total s/slice |", "|---|---|---|---|" + "---|" * len(methods) + "---|---|"]
    totals = np.zeros(2 + len(methods))
    n_all, largest_diff = 0, 0.0
    for folder in folders:
        t = time.perf_counter()
        slices = read_series(folder)
        read = time.perf_counter() - t
        mask_s, model_s, windows, scanned = 0.0, np.zeros(len(methods)), 0, 0
        for sl in slices:
            t = time.perf_counter()
            lungs = lung_mask(sl.hu, sl.spacing[1])
            mask_s += time.perf_counter() - t
            if not lungs.any():
                continue
            if n_all == 0 and scanned == 0:
                for share in methods.values():  # warm-up, not counted
                    scan_slice(model, sl, stride=args.stride, lungs=lungs, share_stem=share)
            heatmaps = []
            for i, share in enumerate(methods.values()):
                t = time.perf_counter()
                result = scan_slice(model, sl, stride=args.stride, lungs=lungs, share_stem=share)
                model_s[i] += time.perf_counter() - t
                heatmaps.append(result.heatmap)
            largest_diff = max(largest_diff, float(np.abs(heatmaps[-1] - heatmaps[0]).max()))
            windows += result.n_patches
            scanned += 1
        n = len(slices)
        part = np.array([read / n, mask_s / n, *(model_s / n)])
        totals += part * n
        n_all += n
        rows.append(f"| {folder.relative_to(args.root)} | {n} ({scanned} with lungs) | "
                    + " | ".join(f"{v:.3f}" for v in part) + f" | {windows / max(scanned, 1):.0f} | "
                    f"{part[:2].sum() + part[-1]:.3f} |")
    mean = totals / n_all
    rows.append("| all | " + str(n_all) + " | " + " | ".join(f"{v:.3f}" for v in mean)
                + f" | | {mean[:2].sum() + mean[-1]:.3f} |")
    per_slice = mean[:2].sum() + mean[-1]
    lines = [f"At this rate ({list(methods)[-1]}) a 300-slice series takes {300 * per_slice:.0f} s "
             f"(model {100 * mean[-1] / per_slice:.0f}% of it)."]
    if len(methods) == 2:
        lines.append(f"Shared stem against window by window: {mean[2] / mean[3]:.1f}x faster in the model; largest "
                     f"score difference {largest_diff:.1e}.")
    text = "\n".join([f"Model {args.model}, stride {args.stride}, backend {keras.backend.backend()}, "
                      f"{os.cpu_count()} CPU cores.", "", *rows, "", *lines])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
