"""How noisy may an unseen scanner be? Authentic slices brought to fixed texture levels, judged as `scan` judges them.

    python -m benchmarks.noise_sweep [--model models/deepfake_detection_model.keras] [--data data]
                                     [--levels 20 30 40 60 80] [--draws 2]

A low-dose protocol or a sharp kernel makes every region of a slice louder, and a detector of touch-up noise
reads loudness (`benchmarks.false_alarm_map`, per patch). Here every authentic slice of another scanner
(`slice_evaluation.authentic_slices`, the training backgrounds' patients left out) is brought to each fine-band
level in turn (`noise_matched.matched`: scanner-like correlated noise added where the slice is quieter; HU minus a
1 px blur over lung parenchyma, `texture.band_levels`), scanned as `scan` scans it (best window's score), and
judged at the model's stored slice thresholds. Printed per level: the share of slices flagged at 5% and 1%, beside
the fine-band levels of the model's calibration slices (where its thresholds were chosen) and of the development
set's real tampered slices. Writes reports/noise_sweep.md and .json.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from benchmarks import write_report
from benchmarks.noise_matched import (STRIDE_HELP, development_slices, fine_gain, fine_level, matched,
                                      slice_scores)

LEVELS = (20.0, 30.0, 40.0, 60.0, 80.0)
RATES = ("0.05", "0.01")


def spread(levels) -> str:
    levels = np.asarray(levels, np.float64)
    levels = levels[~np.isnan(levels)]
    return band_text(np.quantile(levels, (0.05, 0.5, 0.95)))


def band_text(band) -> str:
    """Levels at (5%, 50%, 95%) as 'median [5%, 95%]'."""
    return f"{band[1]:.1f} [{band[0]:.1f}, {band[2]:.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/deepfake_detection_model.keras")
    parser.add_argument("--data", default="data", help="the model's training corpus: its calibration slices, and its "
                        "background patients are left out of the authentic slices")
    parser.add_argument("--levels", type=float, nargs="+", default=LEVELS, help="fine-band levels, HU")
    parser.add_argument("--draws", type=int, default=2, help="draws of noise per level")
    parser.add_argument("--stride", type=int, help=STRIDE_HELP)
    parser.add_argument("--out", default="reports")
    args = parser.parse_args()
    from utils.calibration import calibration_slices
    from utils.operating_point import load_model

    model = load_model(args.model)
    point = (getattr(model, "operating_point", None) or {}).get("slice")
    if not point:
        raise SystemExit(f"{args.model}: no stored slice thresholds (train or `calibrate` it first)")
    thresholds = {rate: point["thresholds"][rate] for rate in RATES}
    tampered, authentic = ([item.slice for item in group] for group in development_slices(args.data))
    own, gain = [fine_level(s) for s in authentic], fine_gain()
    # a model calibrated by this version stores its calibration slices' spread; older ones: regenerate and measure
    calibration_band = (band_text(point["fine_band"]) if point.get("fine_band")
                        else spread([fine_level(s) for s in calibration_slices(args.data)[0]]))
    rows = []
    for target in [None, *args.levels]:
        flagged = {rate: [] for rate in RATES}
        for draw in range(1 if target is None else args.draws):
            rng = np.random.default_rng([draw, int(target or 0), 11])
            slices = authentic if target is None else [
                replace(s, hu=matched(s.hu, level, target, rng, gain), meta={k: v for k, v in s.meta.items()
                                                                              if k != "lungs"})
                for s, level in zip(authentic, own)]
            scored = slice_scores(model, slices, args.stride)
            for rate, t in thresholds.items():
                flagged[rate].append(float(np.mean(scored[:, 0] >= t)))
        rows.append({"level": target, "slices": len(scored), "measured": spread(scored[:, 1]),
                     **{f"flagged_{rate}": float(np.mean(v)) for rate, v in flagged.items()},
                     **{f"flagged_{rate}_range": [min(v), max(v)] for rate, v in flagged.items()}})
        print(f"level {target}: {rows[-1]['flagged_0.05']:.3f} flagged at 5%", flush=True)
    report = {"model": args.model, "thresholds": thresholds, "draws": args.draws,
              "calibration_fine_band": calibration_band,
              "tampered_fine_band": spread([fine_level(s) for s in tampered]), "rows": rows}
    md = markdown(report)
    write_report(args.out, "noise_sweep", md, report)


def markdown(report: dict) -> str:
    t = report["thresholds"]
    lines = [f"Model {report['model']}; stored slice thresholds {t['0.05']:.4f} (5%) and {t['0.01']:.4f} (1%). "
             f"Fine band (HU, median [5%, 95%]): calibration slices {report['calibration_fine_band']}, real tampered "
             f"slices {report['tampered_fine_band']}.", "",
             "| authentic slices brought to (HU) | slices | their fine band (HU) | flagged at 5% | flagged at 1% |",
             "|---|---|---|---|---|"]
    for r in report["rows"]:
        name = "as stored" if r["level"] is None else f"{r['level']:g}"
        cells = []
        for rate in RATES:
            lo, hi = r[f"flagged_{rate}_range"]
            cells.append(f"{r[f'flagged_{rate}']:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if hi > lo else ""))
        lines.append(f"| {name} | {r['slices']} | {r['measured']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
