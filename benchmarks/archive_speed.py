"""Series per minute of `scan-archive` with 1 and 2 local Dask workers.

    python -m benchmarks.archive_speed [--root ../shared/data/authentic-ct] [--model models/deepfake_detection_model.keras]

Scans the same folder tree once per worker count, each time into a fresh report (cluster start-up and model
loading included: what a user waits for). Writes OUT/archive_speed.md.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks import write_report

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(SHARED / "authentic-ct"))
    parser.add_argument("--model", default="models/deepfake_detection_model.keras")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--out", default="reports")
    args = parser.parse_args()
    if not Path(args.root).is_dir():
        raise SystemExit(f"{args.root}: not found (pass --root with a folder of DICOM series)")
    from utils.archive import find_series, scan_archive

    jobs, _ = find_series(args.root)
    n_slices = sum(len(j.files) for j in jobs)
    rows = ["| workers | series | slices | seconds | series per minute | slices per second |", "|---|---|---|---|---|---|"]
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.jsonl"
            summary = scan_archive(args.root, args.model, report, workers=workers, progress=False,
                                   stride=args.stride, threshold=0.5)
            lines = [json.loads(raw) for raw in report.read_text().splitlines()]
        errors = [line["error"] for line in lines if line.get("error")]
        secs = summary["seconds"]
        rows.append(f"| {workers} | {summary['scanned']} | {n_slices} | {secs:.1f} | {60 * summary['scanned'] / secs:.1f} "
                    f"| {n_slices / secs:.2f} |" + (f" errors: {errors}" if errors else ""))
        print(rows[-1], flush=True)
    md = f"`scan-archive` on {args.root} ({len(jobs)} CT series, stride {args.stride}):\n\n" + "\n".join(rows)
    write_report(args.out, "archive_speed", md)


if __name__ == "__main__":
    main()
