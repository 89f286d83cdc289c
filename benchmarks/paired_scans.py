"""Two detectors' whole-slice scans side by side: paired slice-level ROC-AUC differences on the same slices.

    python -m benchmarks.paired_scans --a reports/scan_seeds/headline_{0,1,2} --b reports/scan_seeds/wide_{0,1,2}
        [--names patch wide] [--out FILE]

Reads `benchmarks.scan_localisation` reports (`scan.json`), pairs the i-th folder of --a with the i-th of --b
(e.g. the same seed), checks that both scanned the same slices, and prints per pair and slice score (top-1,
relative, consensus) B minus A of the slice-level ROC-AUC, real tampered vs authentic slices of other scanners,
with a 95% paired bootstrap interval over slices; beside them each side's localisation within 24 px (top-1
window, consensus peak, attention peak), authentic slices with a window above 0.5, and seconds per slice. Last, per
side, the real tampered slices found at the stored slice thresholds (chosen on synthetic slices) and at equal
false-alarm rates on the authentic slices themselves (thresholds set on them: a comparison of separation at the top
of the authentic scores, not an operating point anyone could choose without those slices).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SCORES = ("top-1", "relative", "consensus")


def _load(folder) -> dict:
    path = Path(folder) / "scan.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no scan report (run benchmarks.scan_localisation --out {folder})")
    return json.loads(path.read_text())


def paired_slices(a: dict, b: dict, n: int = 1000) -> dict:
    """B minus A per slice score: diff, ci, p_not_better (`evaluate.paired_bootstrap_auc_diff`, slices resampled)."""
    from utils.evaluate import paired_bootstrap_auc_diff

    out = {}
    for name in SCORES:
        sa, sb = a["slice_scores"][name], b["slice_scores"][name]
        if (len(sa["real_tampered"]), len(sa["authentic"])) != (len(sb["real_tampered"]), len(sb["authentic"])):
            raise ValueError("the two reports scanned different slices (other excluded patients or data): "
                             f"{len(sa['real_tampered'])}/{len(sa['authentic'])} vs "
                             f"{len(sb['real_tampered'])}/{len(sb['authentic'])} tampered/authentic")
        y = np.r_[np.ones(len(sa["real_tampered"])), np.zeros(len(sa["authentic"]))]
        out[name] = paired_bootstrap_auc_diff(y, np.r_[sb["real_tampered"], sb["authentic"]],
                                              np.r_[sa["real_tampered"], sa["authentic"]], n=n)
    return out


EQUAL_RATE_COUNTS = (2, 4, 6)  # authentic slices flagged, of 112 in the development comparison: 1.8%, 3.6%, 5.4%


def found_at_equal_false_alarms(tampered, authentic, counts=EQUAL_RATE_COUNTS) -> dict:
    """{false-alarm rate: share of tampered slices found} for thresholds that flag at most k of the authentic
    slices (k in `counts`; `operating_point.threshold_at_false_alarm_rate`, so ties at the (k+1)-th highest
    authentic score are not flagged)."""
    from utils.operating_point import threshold_at_false_alarm_rate

    tampered, n = np.asarray(tampered, float), len(authentic)
    # (k + 0.5) / n: a rate whose floor(rate * n) is k whatever the rounding of k / n
    return {round(k / n, 4): float(np.mean(tampered >= threshold_at_false_alarm_rate(authentic, (k + 0.5) / n)))
            for k in counts if k < n}


def _operating(report: dict) -> str:
    stored = report.get("slice_operating_point", {}).get("at_rates", {})
    cells = [f"{stored[r]['authentic_flagged']:.3f} / {stored[r]['real_tampered_flagged']:.3f}" if r in stored else "–"
             for r in ("0.01", "0.05")]
    top = report["slice_scores"]["top-1"]
    equal = found_at_equal_false_alarms(top["real_tampered"], top["authentic"])
    return " | ".join(cells + [" / ".join(f"{v:.3f}" for v in equal.values())])


def _side(report: dict) -> str:
    r, s, f = report["real"], report["synthetic"], report["false_alarms"]
    def hits(part: dict) -> str:
        return " / ".join(f"{part[k]:.3f}" if k in part else "–" for k in
                          ("top1_within_24px", "consensus_peak_within_24px", "attention_peak_within_24px"))

    return (f"{f['slice_auc_tampered_vs_authentic']:.3f} | {hits(r)} | {hits(s)} | "
            f"{f['authentic_flagged_at_0.5']:.3f} | {r['seconds_per_slice']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", nargs="+", required=True, metavar="DIR", help="scan_localisation --out folders, A")
    parser.add_argument("--b", nargs="+", required=True, metavar="DIR", help="the same for B, paired by position")
    parser.add_argument("--names", nargs=2, default=("A", "B"))
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args()
    if len(args.a) != len(args.b):
        parser.error(f"--a has {len(args.a)} folders, --b {len(args.b)}: they are paired by position")
    na, nb = args.names
    lines = [f"| pair | detector | slice AUC (top-1) | real: top-1 / consensus peak / attention peak within 24 px | "
             f"synthetic: the same | authentic slices with a window >= 0.5 | s per slice |", "|---|---|---|---|---|---|---|"]
    reports = [(_load(fa), _load(fb)) for fa, fb in zip(args.a, args.b)]
    diffs = []
    for i, (a, b) in enumerate(reports):
        lines += [f"| {i} | {na} | {_side(a)} |", f"| {i} | {nb} | {_side(b)} |"]
        diffs.append(paired_slices(a, b))
    lines += ["", f"Slice-level ROC-AUC, {nb} minus {na} [95% paired interval over slices], per pair:", "",
              "| slice score | " + " | ".join(f"pair {i}" for i in range(len(diffs))) + " |",
              "|---|" + "---|" * len(diffs)]
    for name in SCORES:
        lines.append(f"| {name} | " + " | ".join(f"{d[name]['diff']:+.3f} [{d[name]['ci'][0]:+.3f}, "
                                                 f"{d[name]['ci'][1]:+.3f}]" for d in diffs) + " |")
    lines += ["", "Real tampered slices found (top-1 score): at the stored slice thresholds (authentic / real tampered "
              "flagged), and at thresholds set on the authentic slices themselves so that both sides flag the same "
              f"{' / '.join(str(k) for k in EQUAL_RATE_COUNTS)} of them (equal false-alarm rates):", "",
              "| pair | detector | stored 1% threshold | stored 5% threshold | found at equal false-alarm rates |",
              "|---|---|---|---|---|"]
    for i, (a, b) in enumerate(reports):
        lines += [f"| {i} | {na} | {_operating(a)} |", f"| {i} | {nb} | {_operating(b)} |"]
    text = "\n".join(lines)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
