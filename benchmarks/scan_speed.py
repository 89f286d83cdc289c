"""Where a whole-series scan spends its time: reading DICOM, the lung mask, and the model, per slice.

    python -m benchmarks.scan_speed [--root ../shared/data/authentic-ct/covid-ct-md] [--stride 16] [--series 3]

For each of the first `--series` series under ROOT (a folder of DICOM series; COVID-CT-MD's are JPEG-lossless
compressed, as clinical archives often are): reading the series (`dicom.read_series`, decoding included), the
lung mask per slice (`lungmask.lung_mask`) and the model per slice (`scan.scan_slice` with that mask: cropping
every window and the forward passes), with the windows per slice. Prints seconds per slice for each part and
what a 300-slice series would take at that rate; writes reports/scan_speed.md. Today's method runs the whole
patch model on every window; the shared-feature scan of issue 12 is not written yet, so there is no second
method to put beside it.
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
    from utils.lungmask import lung_mask
    from utils.operating_point import load_model
    from utils.scan import scan_slice

    model = load_model(args.model)
    rows = ["| series | slices | read s/slice | lung mask s/slice | model s/slice | windows/slice | total s/slice |",
            "|---|---|---|---|---|---|---|"]
    totals = np.zeros(3)
    n_all = 0
    for folder in folders:
        t = time.perf_counter()
        slices = read_series(folder)
        read = time.perf_counter() - t
        mask_s, model_s, windows, scanned = 0.0, 0.0, 0, 0
        for sl in slices:
            t = time.perf_counter()
            lungs = lung_mask(sl.hu, sl.spacing[1])
            mask_s += time.perf_counter() - t
            if not lungs.any():
                continue
            t = time.perf_counter()
            windows += scan_slice(model, sl, stride=args.stride, lungs=lungs).n_patches
            model_s += time.perf_counter() - t
            scanned += 1
        n = len(slices)
        part = np.array([read / n, mask_s / n, model_s / n])
        totals += part * n
        n_all += n
        rows.append(f"| {folder.relative_to(args.root)} | {n} ({scanned} with lungs) | {part[0]:.3f} | {part[1]:.3f} "
                    f"| {part[2]:.3f} | {windows / max(scanned, 1):.0f} | {part.sum():.3f} |")
    mean = totals / n_all
    rows.append(f"| all | {n_all} | {mean[0]:.3f} | {mean[1]:.3f} | {mean[2]:.3f} | | {mean.sum():.3f} |")
    text = "\n".join([f"Model {args.model}, stride {args.stride}, backend {keras.backend.backend()}, "
                      f"{os.cpu_count()} CPU cores.", "", *rows, "",
                      f"At this rate a 300-slice series takes {300 * mean.sum():.0f} s "
                      f"(model {100 * mean[2] / mean.sum():.0f}% of it)."])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
