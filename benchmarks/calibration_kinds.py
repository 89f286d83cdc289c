"""Which synthetic calibration slices set a slice threshold: untouched scans without nodules (TB) or with
authentic cancers (TM), and how loud they are.

    python -m benchmarks.calibration_kinds --model models/deepfake_detection_model.keras [MORE ...] [--names A ...]
        [--data data] [--rate 0.05] [--backgrounds N] [--out FILE]

Scans the authentic synthetic slices that training chooses the slice thresholds on (`calibration.calibration_slices`
of the corpus in `--data`: its validation split topped up with held-out scans, the same slices for every model of
that corpus) and prints per model the threshold for `rate` false alarms on all of them (as training chooses it) and,
per kind, the slices' median fine-band level (`scan.SliceResult.fine_band`), their median best-window score,
the threshold that kind alone would give, the share of its slices the threshold flags and its share of the slices
flagged. A corpus change that makes authentic cancers look tampered shows here as TM slices rising to the top and
lifting the threshold. `--backgrounds N` adds kind BG, judged at that threshold without choosing it: N held-out
authentic copies of each real background series (`calibration.background_slices`: real anatomy under scanner
variations no model saw), which tells whether the threshold is set by the synthetic anatomy or by the scanner
variation both share.
"""
from __future__ import annotations

import argparse

import numpy as np

from utils.operating_point import threshold_at_false_alarm_rate
from utils.synthetic import scan_kind


def series_kind(series: str) -> str:
    """The kind (TB or TM) of a synthetic calibration slice's series ('SYN-0042' -> `synthetic.scan_kind(42)`)."""
    return scan_kind(int(series.rsplit("-", 1)[1]))


def by_kind(top: np.ndarray, kinds: np.ndarray, rate: float = 0.05, levels=None, held_out: dict | None = None) -> dict:
    """{'threshold', 'kinds': {kind: {'n', 'median', 'threshold', 'flagged', 'share_flagged'[, 'level']}}}: the
    threshold flagging at most `rate` of all slices (`operating_point.threshold_at_false_alarm_rate`, as training
    chooses it) and, per kind, its slices' median best-window score, the threshold its slices alone would give, the
    share of its slices at or above the threshold and its share of all slices flagged; with `levels` (fine-band
    level per slice, HU) also their median level. `held_out` ({kind: (top, levels)}) adds kinds judged at that
    threshold without choosing it ('share_flagged' None)."""
    top, kinds = np.asarray(top, np.float32), np.asarray(kinds)
    threshold = threshold_at_false_alarm_rate(top, rate)
    flagged = top >= threshold
    out = {}
    for k in sorted(set(kinds.tolist())):
        mine = kinds == k
        out[k] = {"n": int(mine.sum()), "median": float(np.median(top[mine])),
                  "threshold": threshold_at_false_alarm_rate(top[mine], rate),
                  "flagged": float(flagged[mine].mean()),
                  "share_flagged": float(mine[flagged].mean()) if flagged.any() else 0.0}
        if levels is not None:
            out[k]["level"] = float(np.nanmedian(np.asarray(levels, np.float64)[mine]))
    for k, (scores, lv) in (held_out or {}).items():
        scores = np.asarray(scores, np.float32)
        out[k] = {"n": int(scores.size), "median": float(np.median(scores)),
                  "threshold": threshold_at_false_alarm_rate(scores, rate),
                  "flagged": float(np.mean(scores >= threshold)), "share_flagged": None,
                  "level": float(np.nanmedian(lv))}
    return {"threshold": threshold, "kinds": out}


def table(results: dict, rate: float) -> str:
    lines = [f"| model | threshold for {rate:.0%} | kind | slices | median fine band (HU) | median best window | the "
             "kind's own threshold | its slices flagged at the threshold | share of the flagged slices |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        for kind, k in res["kinds"].items():
            level = f"{k['level']:.1f}" if "level" in k else "—"
            share = "not chosen on them" if k["share_flagged"] is None else f"{k['share_flagged']:.2f}"
            lines.append(f"| {name} | {res['threshold']:.4f} | {kind} | {k['n']} | {level} | {k['median']:.3f} | "
                         f"{k['threshold']:.4f} | {k['flagged']:.3f} | {share} |")
    return "\n".join(lines)


def scanned(models, slices, total: int | None = None):
    """(best-window scores per model, series, fine-band levels) of the slices with lungs, as calibration scans them
    (`calibration.slice_scores`, each model at its own stored stride)."""
    from utils.calibration import slice_scores

    scores = slice_scores(models, slices, stride=None, progress=True, total=total)
    return [top for top, _, _, _ in scores], scores[0][2], scores[0][3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", required=True, help="saved models (.keras or .h5)")
    parser.add_argument("--names", nargs="+", help="a name per model (default: the paths)")
    parser.add_argument("--data", default="data", help="the corpus the models were trained on (holding corpus.json)")
    parser.add_argument("--rate", type=float, default=0.05, help="false-alarm rate of the threshold (default 0.05)")
    parser.add_argument("--backgrounds", type=int, default=0, metavar="N",
                        help="also scan N held-out authentic copies of each real background series of the corpus (kind "
                        "BG: its anatomy under scanner variations no model saw) and say how many the threshold flags")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args()
    names = args.names or args.model
    if len(names) != len(args.model):
        parser.error("give one name per model")

    from utils.calibration import background_slices, calibration_slices
    from utils.operating_point import load_model

    models = [load_model(path) for path in args.model]
    slices, n, what = calibration_slices(args.data)
    top, series, levels = scanned(models, slices, n)
    kinds = np.array([series_kind(s) for s in series])
    held = scanned(models, *background_slices(args.data, args.backgrounds)[:2]) if args.backgrounds else None
    results = {name: by_kind(top[k], kinds, args.rate, levels,
                             {"BG": (held[0][k], held[2])} if held else None) for k, name in enumerate(names)}
    text = f"Best-window scores of {what}, by kind:\n\n" + table(results, args.rate)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
