"""Does the explanation point at the tampered region? Scored on the embedded test split and the real sample.

    python -m benchmarks.faithfulness [--model models/deepfake_detection_model.keras] [--n 200]

Needs the main job's model and corpora (data/test, and data/ctgan from the notebook or
`python -m utils.cli prepare-ctgan ../shared/data/ctgan-sample --out data/ctgan --protocol test`).
For every map type and two baselines (uniform random map, centre-prior Gaussian): pointing game (share of
maps whose peak lies in the tampered region), energy ratio (share of the map inside the region over the
region's area share) and deletion / insertion AUC of the fake score (16 steps, mean-value replacement).
Writes reports/faithfulness.md and .json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras

import utils.layers  # noqa: F401  (registers the custom layers)
from explainability.figures import faithfulness
from utils.evaluate import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/deepfake_detection_model.keras")
    parser.add_argument("--data", nargs="+", default=["data", "data/ctgan"], help="corpus folders")
    parser.add_argument("--n", type=int, default=200, help="tampered patches per corpus (at most)")
    parser.add_argument("--out", default="reports")
    args = parser.parse_args()
    model = keras.models.load_model(args.model)
    rows, report = [], {}
    for folder in args.data:
        if not (Path(folder) / "manifest.csv").is_file():
            print(f"skipping {folder}: no manifest.csv")
            continue
        scores = faithfulness(model, folder, n=args.n)
        report[folder] = scores
        for method, s in scores.items():
            rows.append({"data": folder, "map": method, "n": s["n"], "pointing": f"{s['pointing']:.3f}",
                         "energy ratio": f"{s['energy_ratio']:.2f}", "deletion AUC (lower better)":
                         f"{s['deletion_auc']:.3f}", "insertion AUC (higher better)": f"{s['insertion_auc']:.3f}"})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown_table(rows)
    (out / "faithfulness.md").write_text(md + "\n")
    (out / "faithfulness.json").write_text(json.dumps(report, indent=1))
    print(md)


if __name__ == "__main__":
    main()
