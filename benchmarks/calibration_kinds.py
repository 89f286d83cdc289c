"""Which synthetic calibration slices set a slice threshold: untouched scans without nodules (TB) or with
authentic cancers (TM).

    python -m benchmarks.calibration_kinds --model models/deepfake_detection_model.keras [MORE ...] [--names A ...]
        [--data data] [--rate 0.05] [--out FILE]

Scans the authentic synthetic slices that training chooses the slice thresholds on (`calibration.calibration_slices`
of the corpus in `--data`: its validation split topped up with held-out scans, the same slices for every model of
that corpus) and prints per model the threshold for `rate` false alarms on all of them (as training chooses it) and,
per kind, the median best-window score, the threshold that kind alone would give, and its share of the slices the
threshold flags. A corpus
change that makes authentic cancers look tampered shows here as TM slices rising to the top and lifting the
threshold.
"""
from __future__ import annotations

import argparse

import numpy as np

from utils.operating_point import threshold_at_false_alarm_rate
from utils.synthetic import scan_kind


def series_kind(series: str) -> str:
    """The kind (TB or TM) of a synthetic calibration slice's series ('SYN-0042' -> `synthetic.scan_kind(42)`)."""
    return scan_kind(int(series.rsplit("-", 1)[1]))


def by_kind(top: np.ndarray, kinds: np.ndarray, rate: float = 0.05) -> dict:
    """{'threshold', 'kinds': {kind: {'n', 'median', 'threshold', 'share_flagged'}}}: the threshold flagging at most
    `rate` of all slices (`operating_point.threshold_at_false_alarm_rate`, as training chooses it) and, per kind, its
    slices' median best-window score, the threshold its slices alone would give, and its share of the slices flagged
    (score at or above the threshold)."""
    top, kinds = np.asarray(top, np.float32), np.asarray(kinds)
    threshold = threshold_at_false_alarm_rate(top, rate)
    flagged = top >= threshold
    return {"threshold": threshold,
            "kinds": {k: {"n": int((kinds == k).sum()), "median": float(np.median(top[kinds == k])),
                          "threshold": threshold_at_false_alarm_rate(top[kinds == k], rate),
                          "share_flagged": float((kinds[flagged] == k).mean()) if flagged.any() else 0.0}
                      for k in sorted(set(kinds.tolist()))}}


def table(results: dict, rate: float) -> str:
    lines = [f"| model | threshold for {rate:.0%} | kind | slices | median best window | the kind's own threshold | "
             "share of the flagged slices |", "|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        for kind, k in res["kinds"].items():
            lines.append(f"| {name} | {res['threshold']:.4f} | {kind} | {k['n']} | {k['median']:.3f} | "
                         f"{k['threshold']:.4f} | {k['share_flagged']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", required=True, help="saved models (.keras or .h5)")
    parser.add_argument("--names", nargs="+", help="a name per model (default: the paths)")
    parser.add_argument("--data", default="data", help="the corpus the models were trained on (holding corpus.json)")
    parser.add_argument("--rate", type=float, default=0.05, help="false-alarm rate of the threshold (default 0.05)")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args()
    names = args.names or args.model
    if len(names) != len(args.model):
        parser.error("give one name per model")

    from utils.calibration import calibration_slices, slice_scores
    from utils.operating_point import load_model

    models = [load_model(path) for path in args.model]
    slices, n, what = calibration_slices(args.data)
    scores = slice_scores(models, slices, progress=True, total=n)
    results = {name: by_kind(top, np.array([series_kind(s) for s in series]), args.rate)
               for name, (top, _, series) in zip(names, scores)}
    text = f"Best-window scores of {what}, by kind:\n\n" + table(results, args.rate)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
