"""Does the explanation point at the tampered region? Scored on the embedded test split and the real sample.

    python -m benchmarks.faithfulness [--model models/deepfake_detection_model.keras] [--n 200]

Needs the main job's model and corpora (data/test, and data/ctgan from the notebook or
`python -m utils.cli prepare-ctgan ../shared/data/ctgan-sample --out data/ctgan --protocol test`).
For every map type, three baselines (uniform random pixels; uniform random cells drawn as the maps are drawn;
the centre-prior Gaussian) and a reference that knows the answer (a Gaussian on the tampered point): pointing game
(share of maps whose peak lies in the tampered region), energy ratio (share of the map inside the region over the
region's area share) and deletion / insertion AUC of the fake score (16 steps, mean-value replacement).
Writes reports/faithfulness.md and .json.

    python -m benchmarks.faithfulness --uncentred 16

The same on *uncentred* views: every tampered point of the synthetic test scans (regenerated from
data/corpus.json) and of the real sample (../shared/data/ctgan-sample) cut with its centre moved by up to 16 px
per axis (one scan grid step each way), so the tampered region sits anywhere near the middle and the centre
prior is no longer right by construction. Writes reports/faithfulness_uncentred.md and .json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import keras

import utils.layers  # noqa: F401  (registers the custom layers)
from benchmarks import write_report
from explainability.figures import faithfulness, score_views, uncentred_views
from utils.evaluate import markdown_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _synthetic_test_scans(data: Path):
    from utils.patches import read_manifest
    from utils.synthetic import CorpusConfig, synthetic_scan

    cfg = CorpusConfig.from_dir(data)
    keys = sorted({r["scan"] for r in read_manifest(data / "manifest.csv")
                   if r["split"] == "test" and r["scan"].startswith("SYN-") and r["kind"] in ("FM", "FB")})
    return [synthetic_scan(int(k.split("-")[1]), cfg) for k in keys]


def _real_scans():
    import warnings

    from utils.ctgan import load_dataset

    root = SHARED / "ctgan-sample"
    if not root.is_dir():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # label rows of scans the sample does not hold
        return [s for s in load_dataset(root) if s.kind in ("FM", "FB")]


def _row(source, method, s):
    return {"data": source, "map": method, "n": s["n"], "pointing": f"{s['pointing']:.3f}",
            "energy ratio": f"{s['energy_ratio']:.2f}", "deletion AUC (lower better)": f"{s['deletion_auc']:.3f}",
            "insertion AUC (higher better)": f"{s['insertion_auc']:.3f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/deepfake_detection_model.keras")
    parser.add_argument("--data", nargs="+", default=["data", "data/ctgan"], help="corpus folders")
    parser.add_argument("--n", type=int, default=200, help="tampered patches per corpus (at most)")
    parser.add_argument("--out", default="reports")
    parser.add_argument("--uncentred", type=int, default=0, metavar="PX",
                        help="cut views off-centre by up to PX px per axis from the scans themselves (default 0: the "
                        "corpora's centred patches)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = keras.models.load_model(args.model)
    rows, report = [], {}
    if args.uncentred:
        sources = {f"synthetic test, off-centre <= {args.uncentred} px": _synthetic_test_scans(Path(args.data[0]))}
        real = _real_scans()
        if real is None:
            print(f"skipping the real sample: {SHARED / 'ctgan-sample'} not found")
        else:
            sources[f"real sample, off-centre <= {args.uncentred} px"] = real
        size = int(model.inputs[0].shape[1])
        for source, scans in sources.items():
            images, regions = uncentred_views(scans, args.uncentred, size, seed=args.seed, n=args.n)
            report[source] = score_views(model, images, regions, size, seed=args.seed)
    else:
        for folder in args.data:
            if not (Path(folder) / "manifest.csv").is_file():
                print(f"skipping {folder}: no manifest.csv")
                continue
            report[folder] = faithfulness(model, folder, n=args.n)
    for source, scores in report.items():
        rows += [_row(source, method, s) for method, s in scores.items()]
    name = "faithfulness_uncentred" if args.uncentred else "faithfulness"
    write_report(args.out, name, markdown_table(rows), report)


if __name__ == "__main__":
    main()
