"""Hard-negative mining measured: the headline hybrids before and after phase "hard", paired.

    python -m benchmarks.hard_negatives [--work data/benchmark_models] [--seeds 0 1 2] [--epochs 3]
                                        [--dicom DIR ...] [--out reports/hard_negatives]

After `benchmarks.compare --detectors cnn+hybrid` (its WORK folder). For each seed the headline hybrid
(WORK/cnn+hybrid_SEED) trains on with its hard negatives (`training.hard_negative_phase`: it scans the corpus's
training and validation slices, its highest-scoring authentic windows join both splits) and is saved under
OUT/models/SEED. `--dicom`: folders of authentic CT (no labels) mined too, as a site would mine its own
scanners' archive (`train --hard-negative-dicom`); their patients are left out of every false-alarm figure
below, for both models. Both models are then scored
- per patch: the real development set (ROC-AUC overall, injected / removed vs same-slice control) and the
  authentic CT of other scanners (share flagged at 0.5);
- per slice: `benchmarks.scan_localisation` (top-1 within 24 px of the label; slice ROC-AUC of the top-1 and
  consensus scores, real tampered vs other scanners' authentic slices; slices flagged at the top-1 threshold
  chosen on validation slices).
Paired differences (after minus before) with 95% bootstrap intervals: patches resampled by scan, slices by slice.
Writes OUT/hard_negatives.md and OUT/hard_negatives.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

PATCH_SUBSETS = {"dev overall": None, "FM vs control": ("FM", "control"), "FB vs control": ("FB", "control")}
SLICE_SCORES = ("top-1", "consensus")


def train_after(base: Path, out_dir: Path, data: str, seed: int, epochs: int, dicom=()) -> Path:
    """The base hybrid trained on with its hard negatives (skipped when already saved)."""
    import keras

    from utils.operating_point import load_model
    from utils.training import (TrainConfig, hard_negative_phase, load_training_data, save_model,
                                store_patch_operating_point)

    path = out_dir / "deepfake_detection_model.keras"
    if path.is_file():
        return path
    cfg = TrainConfig(data_dir=data, models_dir=str(out_dir), seed=seed, hard_negative_epochs=epochs,
                      hard_negative_dicom=tuple(dicom))
    keras.utils.set_random_seed(seed)
    model = load_model(base)
    train = load_training_data(cfg)
    history = hard_negative_phase(model, train, cfg, verbose=0)
    save_model(model, out_dir, "deepfake_detection_model")
    store_patch_operating_point(model, train["val"], path)
    (out_dir / "history_hard.json").write_text(json.dumps(history, indent=1) + "\n")
    return path


def score(path: Path, data: Path, out: Path, exclude=()) -> dict:
    """Patch scores on the development set, authentic flag rate (series of the `exclude` folders left out), and
    the slice report of scan_localisation."""
    from utils.evaluate import evaluate_authentic, evaluate_on_testset
    from utils.operating_point import load_model

    model = load_model(path)
    real = evaluate_on_testset(model, data / "ctgan" / "test", threshold=0.5, bootstrap=100, return_scores=True)
    series = evaluate_authentic(model, data / "authentic")["per_series"]
    names = {Path(d).name for d in exclude}
    kept = {k: v for k, v in series.items() if k.rsplit("_", 1)[-1] not in names}
    flagged = sum(v["n"] * v["flag_rate"] for v in kept.values()) / sum(v["n"] for v in kept.values())
    command = [sys.executable, "-m", "benchmarks.scan_localisation", "--model", str(path), "--data", str(data),
               "--out", str(out)]
    subprocess.run(command + (["--exclude", *map(str, exclude)] if exclude else []), check=True,
                   capture_output=True)
    slices = json.loads((out / "scan.json").read_text())
    return {"real": {k: real[k] for k in ("scores", "labels", "kinds", "scans", "roc_auc")},
            "pairs": {k: v["auc"] for k, v in real["pairs"].items()}, "authentic_flagged": flagged,
            "slices": slices}


def paired(before: dict, after: dict) -> dict:
    """After minus before: patch subsets (resampling scans) and slice scores (resampling slices)."""
    from utils.evaluate import paired_bootstrap_auc_diff

    out = {}
    y = np.asarray(before["real"]["labels"])
    kinds, scans = np.asarray(before["real"]["kinds"]), np.asarray(before["real"]["scans"])
    for name, pair in PATCH_SUBSETS.items():
        sel = np.ones(len(y), bool) if pair is None else np.isin(kinds, pair)
        out[name] = paired_bootstrap_auc_diff(y[sel], np.asarray(after["real"]["scores"])[sel],
                                              np.asarray(before["real"]["scores"])[sel], scans[sel])
    for name in SLICE_SCORES:
        b, a = before["slices"]["slice_scores"][name], after["slices"]["slice_scores"][name]
        ys = np.r_[np.ones(len(b["real_tampered"])), np.zeros(len(b["authentic"]))]
        out[f"slice AUC, {name}"] = paired_bootstrap_auc_diff(
            ys, np.r_[a["real_tampered"], a["authentic"]], np.r_[b["real_tampered"], b["authentic"]])
    return out


def rows_of(result: dict) -> dict:
    s = result["slices"]
    top = s["aggregators"]["top-1"]
    return {
        "dev overall": result["real"]["roc_auc"], "FM vs control": result["pairs"]["FM_vs_control"],
        "FB vs control": result["pairs"]["FB_vs_control"], "authentic patches flagged at 0.5": result["authentic_flagged"],
        "top-1 within 24 px, real": s["real"]["top1_within_24px"],
        "top-1 within 24 px, synthetic": s["synthetic"]["top1_within_24px"],
        "slice AUC, top-1": top["development_auc"], "slice AUC, consensus": s["aggregators"]["consensus"]["development_auc"],
        "validation slice AUC, top-1": top["validation_auc"],
        "authentic slices flagged at 0.5": s["false_alarms"]["authentic_flagged_at_0.5"],
        "authentic / tampered slices flagged at the 5% validation threshold (top-1)":
            (top["at_rates"]["0.05"]["authentic_flagged"], top["at_rates"]["0.05"]["real_tampered_flagged"]),
    }


def _fmt(values) -> str:
    if isinstance(values[0], tuple):
        return " / ".join(_fmt([v[i] for v in values]) for i in range(len(values[0])))
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="data/benchmark_models", help="benchmarks.compare's work folder")
    parser.add_argument("--data", default="data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of phase 'hard'")
    parser.add_argument("--dicom", nargs="+", default=[], metavar="DIR",
                        help="authentic DICOM folders mined too (their patients leave the false-alarm figures)")
    parser.add_argument("--out", default="reports/hard_negatives")
    args = parser.parse_args()
    out, data = Path(args.out), Path(args.data)
    results = {}
    for seed in args.seeds:
        base = Path(args.work) / f"cnn+hybrid_{seed}" / "deepfake_detection_model.keras"
        if not base.is_file():
            raise SystemExit(f"{base}: not found (run benchmarks.compare --detectors cnn+hybrid first)")
        after = train_after(base, out / "models" / str(seed), args.data, seed, args.epochs, args.dicom)
        runs = {tag: score(path, data, out / f"slices_{tag}_{seed}", args.dicom)
                for tag, path in (("before", base), ("after", after))}
        results[seed] = {"before": rows_of(runs["before"]), "after": rows_of(runs["after"]),
                         "paired": paired(runs["before"], runs["after"]),
                         "history": json.loads((out / "models" / str(seed) / "history_hard.json").read_text())}
        print(f"seed {seed} done", flush=True)
    seeds = list(results)
    mined_from = f"; also mined: {', '.join(Path(d).name for d in args.dicom)} (left out of the false alarms)" if args.dicom else ""
    lines = [f"Seeds {', '.join(map(str, seeds))}; phase 'hard' {args.epochs} epochs{mined_from}; mean ± sd over seeds.", "",
             "| measure | before | after (hard negatives) | paired difference per seed [95% interval] |",
             "|---|---|---|---|"]
    for name in results[seeds[0]]["before"]:
        diff = ""
        if name in results[seeds[0]]["paired"]:
            diff = " / ".join(f"{results[s]['paired'][name]['diff']:+.3f} [{results[s]['paired'][name]['ci'][0]:+.3f}, "
                              f"{results[s]['paired'][name]['ci'][1]:+.3f}]" for s in seeds)
        lines.append(f"| {name} | {_fmt([results[s]['before'][name] for s in seeds])} | "
                     f"{_fmt([results[s]['after'][name] for s in seeds])} | {diff} |")
    mined = [results[s]["history"]["mined"] for s in seeds]
    lines += ["", "Hard negatives mined per seed (training / validation windows): "
              + ", ".join(f"{m['train']} / {m['val']}" for m in mined)
              + f"; mining {np.mean([results[s]['history']['mining_seconds'] for s in seeds]):.0f} s, training "
              f"{np.mean([results[s]['history']['seconds'] for s in seeds]):.0f} s per seed (2 CPU cores)."]
    out.mkdir(parents=True, exist_ok=True)
    (out / "hard_negatives.md").write_text("\n".join(lines) + "\n")
    (out / "hard_negatives.json").write_text(json.dumps(results, indent=1, default=float))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
