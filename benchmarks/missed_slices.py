"""Which real tampered slices escape: every detector's misses at its stored slice threshold, slice by slice.

    python -m benchmarks.missed_slices reports/scan_seeds/j12_ens reports/scan_seeds/j12s3_ens [--names A B]
        [--rate 0.05] [--out FILE]

Reads `benchmarks.scan_localisation` reports (`scan.json`) of the same development set and lists each real tampered
slice that at least one detector misses at its stored slice threshold for `rate` false alarms: its kind (FM
injected, FB removed), its scan and slice, and per detector the best window's score and whether that window lies
within 24 px of the tampered point. A slice missed by every detector although their top windows sit on the tamper
is located but outranked: other scanners' authentic slices hold a window that scores higher. Reports written before
`scan_localisation` recorded its slices' names take them from the development set itself.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.paired_scans import _load

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def slice_names(report: dict) -> list[dict]:
    """[{'name', 'kind'}] of the report's real tampered slices, in the order of its scores."""
    if "real_slices" in report:
        return report["real_slices"]
    from utils.slice_evaluation import ctgan_tampered_slices

    root = SHARED / "ctgan-sample"
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: the report does not name its slices, and the development set that would "
                                "is not here (re-run benchmarks.scan_localisation)")
    return [{"name": t.name, "kind": t.kind} for t in ctgan_tampered_slices(root)]


def misses(reports: list[dict], rate: float = 0.05) -> dict:
    """Per report: found (bool per real tampered slice) at its stored slice threshold for `rate`, the best window's
    scores and whether that window hit the tamper; and the slices' names and kinds (from the first report)."""
    key = f"{rate:g}"
    n = {len(r["slice_scores"]["top-1"]["real_tampered"]) for r in reports}
    if len(n) != 1:
        raise ValueError(f"the reports scanned different numbers of real tampered slices: {sorted(n)}")
    out = []
    for r in reports:
        rates = r["slice_operating_point"]["at_rates"]
        if key not in rates:
            raise ValueError(f"no stored slice threshold for {rate:.0%} false alarms (stored: {sorted(rates)})")
        scores = np.asarray(r["slice_scores"]["top-1"]["real_tampered"], float)
        out.append({"found": scores >= rates[key]["threshold"], "scores": scores,
                    "hits": np.asarray(r["real_hits"], bool), "threshold": rates[key]["threshold"]})
    return {"detectors": out, "slices": slice_names(reports[0])}


def table(result: dict, names: list[str], rate: float) -> str:
    dets, slices = result["detectors"], result["slices"]
    found = np.array([d["found"] for d in dets])
    lines = [f"Real tampered slices missed at the stored slice threshold for {rate:.0%} false alarms by at least one "
             "detector (best window's score; 'on it': that window lies within 24 px of the tampered point; "
             "missed in bold):", "",
             "| slice | kind | " + " | ".join(f"{n} (threshold {d['threshold']:.3f})" for n, d in zip(names, dets))
             + " |", "|---|---|" + "---|" * len(dets)]
    for i in np.where(~found.all(axis=0))[0]:
        cells = []
        for d in dets:
            cell = f"{d['scores'][i]:.3f}" + (" on it" if d["hits"][i] else " elsewhere")
            cells.append(cell if d["found"][i] else f"**{cell}**")
        lines.append(f"| {slices[i]['name']} | {slices[i]['kind']} | " + " | ".join(cells) + " |")
    everyone = ~found.any(axis=0)
    located = everyone & np.array([d["hits"] for d in dets]).all(axis=0)
    kinds = [slices[i]["kind"] for i in np.where(everyone)[0]]
    lines += ["", f"Missed by every detector: {int(everyone.sum())} of {found.shape[1]} "
              f"({', '.join(f'{kinds.count(k)} {k}' for k in sorted(set(kinds))) or 'none'}), "
              f"{int(located.sum())} of them with every detector's top window on the tamper."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="folders holding scan_localisation's scan.json")
    parser.add_argument("--names", nargs="+", help="one name per report (default: the folders' names)")
    parser.add_argument("--rate", type=float, default=0.05, help="the stored slice threshold's false-alarm rate")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    names = args.names or [Path(r).name for r in args.reports]
    if len(names) != len(args.reports):
        parser.error(f"{len(names)} names for {len(args.reports)} reports")
    text = table(misses([_load(r) for r in args.reports], args.rate), names, args.rate)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
