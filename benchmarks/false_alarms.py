"""False alarms of saved models on one set of authentic patches, per series.

    python -m benchmarks.false_alarms MODEL [MODEL ...] [--authentic data/authentic] [--out FILE]

Scores every model on the same authentic patches (a corpus written by `utils.authentic.write_authentic`, e.g. the
`authentic/` folder `benchmarks.compare` writes beside a corpus, which leaves out that corpus's background
patients) and prints the share flagged at 0.5 and at each model's stored operating point, overall and per
series. Two training set-ups whose `benchmarks.compare` runs left out different patients are compared here on
the patients both left out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def false_alarms(model_path, authentic_dir) -> dict:
    """{'n', 'at_0.5', 'at_operating_point', 'threshold', 'per_series': {series: (n, at 0.5, at op)}}."""
    from utils.evaluate import authentic_scores, flag_rates
    from utils.operating_point import load_model, stored_threshold

    threshold, _ = stored_threshold(model_path)
    rows, scores = authentic_scores(load_model(model_path), authentic_dir)  # scored once, judged at both thresholds
    half, op = flag_rates(rows, scores, 0.5), flag_rates(rows, scores, threshold)
    return {"n": half["n"], "at_0.5": half["flag_rate"], "at_operating_point": op["flag_rate"], "threshold": threshold,
            "per_series": {s: (v["n"], v["flag_rate"], op["per_series"][s]["flag_rate"])
                           for s, v in half["per_series"].items()}}


def markdown(results: dict) -> str:
    series = sorted({s for r in results.values() for s in r["per_series"]})
    short = [s.split("_", 1)[-1] for s in series]
    lines = ["| model | patches | flagged at 0.5 | at operating point | " + " | ".join(short) + " |",
             "|---|---|---|---|" + "---|" * len(series)]
    for name, r in results.items():
        cells = [f"{r['per_series'][s][1]:.3f}" if s in r["per_series"] else "" for s in series]
        lines.append(f"| {name} | {r['n']} | {r['at_0.5']:.3f} | {r['at_operating_point']:.3f} | "
                     + " | ".join(cells) + " |")
    if len(results) > 1:
        lines.append(f"| mean ± sd | | {_mean_sd([r['at_0.5'] for r in results.values()])} | "
                     f"{_mean_sd([r['at_operating_point'] for r in results.values()])} |" + " |" * len(series))
    return "\n".join(lines) + "\n\nPer-series columns: flagged at 0.5.\n"


def _mean_sd(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help=".keras models (their operating-point files beside them)")
    parser.add_argument("--authentic", default="data/authentic", help="authentic corpus (manifest.csv)")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args()
    if not (Path(args.authentic) / "manifest.csv").is_file():
        raise SystemExit(f"{args.authentic}: no manifest.csv (write one with benchmarks.compare or "
                         "utils.authentic.write_authentic)")
    results = {str(m): false_alarms(m, args.authentic) for m in args.models}
    md = markdown(results)
    print(md)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(md)


if __name__ == "__main__":
    main()
