"""Does lossy compression, as clinical archives apply it, hide tampering or make authentic CT look tampered?

    python -m benchmarks.lossy_compression [--model models/deepfake_detection_model.keras] [--data data]

CT-GAN's traces are fine texture (in-painted lung, touch-up noise, blend seams); lossy codecs remove or reshape
exactly that band. Every slice of the development set's real tampered slices and of the authentic slices of other
scanners (`slice_evaluation`; the training backgrounds' patients left out) goes through the same DICOM round trip
(HU stored as a 12-bit scanner stores them, padding at -1024, encoded with pydicom's encoders, decoded again):
lossless JPEG 2000 (the reference: only the padding changes), JPEG-LS near-lossless (each pixel within 2 HU), and
irreversible JPEG 2000 at 8:1 and 15:1, the ratios radiology guidelines accept for CT. Each condition is scanned as
`scan` scans (`slice_evaluation.evaluate_slices`: best window's score; stored slice thresholds for 5% and 1% false
alarms). Printed: the mean absolute change in HU inside the lungs, slice ROC-AUC, slices flagged at the stored
thresholds, top-1 within 24 px. Writes reports/lossy_compression.md and .json.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from benchmarks import write_report
from benchmarks.noise_matched import STRIDE_HELP

# (name, transfer syntax keyword of pydicom.uid, encoder options)
CONDITIONS = (
    ("lossless JPEG 2000 (reference)", "JPEG2000Lossless", {}),
    ("JPEG-LS near-lossless, within 2 HU", "JPEGLSNearLossless", {"jls_error": 2}),
    ("JPEG 2000, 8:1", "JPEG2000", {"j2k_cr": [8]}),
    ("JPEG 2000, 15:1", "JPEG2000", {"j2k_cr": [15]}),
)


def round_trip(hu: np.ndarray, syntax: str, **options) -> np.ndarray:
    """`hu` stored as a 12-bit CT image (intercept -1024, values clipped to [-1024, 3071]), encoded with the
    transfer syntax and options (pydicom's encoders), and decoded back to HU."""
    from pydicom import uid
    from pydicom.dataset import Dataset, FileMetaDataset

    stored = (np.clip(np.rint(hu), -1024, 3071) + 1024).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = stored.tobytes()
    ds.compress(getattr(uid, syntax), **options)
    return ds.pixel_array.astype(np.float32) - 1024


def lung_change(before, after) -> float:
    """Mean absolute HU change inside the lungs over slices."""
    from utils.lungmask import cached_lung_mask

    return float(np.mean([np.abs(b.hu - a.hu)[cached_lung_mask(b)].mean() for b, a in zip(before, after)
                          if cached_lung_mask(b).any()]))


def compressed(items, syntax: str, options: dict):
    """Copies of tampered or authentic slice items whose slices went through `round_trip` (lung mask dropped)."""
    return [replace(item, slice=replace(item.slice, hu=round_trip(item.slice.hu, syntax, **options),
                                        meta={k: v for k, v in item.slice.meta.items() if k != "lungs"}))
            for item in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/deepfake_detection_model.keras")
    parser.add_argument("--data", default="data", help="the model's training corpus: its background patients are "
                        "left out of the authentic slices")
    parser.add_argument("--stride", type=int, help=STRIDE_HELP)
    parser.add_argument("--out", default="reports")
    args = parser.parse_args()
    from benchmarks.noise_matched import development_slices
    from utils.operating_point import load_model
    from utils.slice_evaluation import evaluate_slices

    tampered, authentic = development_slices(args.data)
    model = load_model(args.model)
    rows = []
    for name, syntax, options in CONDITIONS:
        t, a = compressed(tampered, syntax, options), compressed(authentic, syntax, options)
        change = lung_change([i.slice for i in tampered + authentic], [i.slice for i in t + a])
        metrics = evaluate_slices(model, t, a, args.stride, progress=False)
        metrics.pop("scores")
        rows.append({"condition": name, "lung_change_hu": change, **metrics})
        print(f"{name}: scanned", flush=True)
    report = {"model": args.model, "conditions": rows}
    md = markdown(report)
    write_report(args.out, "lossy_compression", md, report)


def markdown(report: dict) -> str:
    first = report["conditions"][0]
    rates = sorted(first.get("at_rates", {}), key=float, reverse=True)
    head = (f"Model {report['model']}; {first['tampered']} real tampered slices, {first['authentic']} authentic "
            "slices of other scanners (with lungs), each through the same round trip.\n\n")
    lines = ["| round trip | mean change in the lungs (HU) | slice ROC-AUC | top-1 within 24 px | "
             + " | ".join(f"at the stored {float(r):.0%} threshold: authentic / tampered flagged (FB, FM)"
                          for r in rates) + " |", "|---|---|---|---|" + "---|" * len(rates)]
    for row in report["conditions"]:
        cells = [f"{row['at_rates'][r]['authentic_flagged']:.3f} / {row['at_rates'][r]['tampered_flagged']:.3f} ("
                 + ", ".join(f"{row['at_rates'][r].get(f'{k}_flagged', float('nan')):.2f}" for k in ("FB", "FM"))
                 + ")" for r in rates]
        lines.append(f"| {row['condition']} | {row['lung_change_hu']:.1f} | {row['slice_auc']:.3f} | "
                     f"{row['top1_within_24px']:.3f} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


if __name__ == "__main__":
    main()
