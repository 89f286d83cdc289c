"""Transfer to real CT-GAN tampering when training on emulated tampering of real authentic backgrounds.

    python -m benchmarks.transfer [--folds 3] [--variants 6] [--seed 0] [--work data/transfer] [--out reports]

Regime (b) of the measurement log (benchmarks/README.md): k-fold by scan on the development sample
(`../shared/data/ctgan-sample`). For each fold, the untouched parts of the *other* folds' slices are tampered by the
emulator (no real CT-GAN fake is trained on), a CNN and a hybrid are trained and selected on a validation split of
those emulated patches, and the fold's real patches (FM, FB, TM, matched controls, random lung) are scored. Scores
of all folds are pooled; intervals are bootstrap over scans. `--seed S` draws other folds, emulations and initial
weights (S = 0 is the original run; repeat with 1 and 2 for three seeds). False alarms: authentic CT of another scanner
(`../shared/data/authentic-ct`, never a training background here), averaged over the fold models.
Writes OUT/transfer.md and OUT/transfer.json (with --with-synthetic: OUT/transfer_with_synthetic.*).
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks import write_report
from utils.authentic import write_authentic
from utils.ctgan import prepare_ctgan
from utils.evaluate import evaluate_authentic, markdown_table, predict_files, report_from_scores, summary_row
from utils.patches import read_manifest
from utils.synthetic import CorpusConfig, background_patches, corpus_background_patients, write_corpus
from utils.training import TrainConfig, load_training_data, run_training

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def scan_folds(rows, folds: int, seed: int = 0) -> dict[str, int]:
    """Fold of every scan, stratified by the scan's kind (FM, FB, else authentic)."""
    kind = {}
    for r in rows:
        k = r["kind"] if r["kind"] in ("FM", "FB") else "authentic"
        if kind.get(r["scan"]) not in ("FM", "FB"):
            kind[r["scan"]] = k
    rng = np.random.default_rng(seed)
    out, offset = {}, 0
    for k in sorted(set(kind.values())):
        scans = sorted(s for s in kind if kind[s] == k)
        for i, j in enumerate(rng.permutation(len(scans))):
            out[scans[j]] = (i + offset) % folds
        offset += len(scans)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ctgan", default=str(SHARED / "ctgan-sample"))
    parser.add_argument("--authentic", default=str(SHARED / "authentic-ct"))
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--variants", type=int, default=6, help="tampered copies per background slice")
    parser.add_argument("--work", default="data/transfer")
    parser.add_argument("--out", default="reports")
    parser.add_argument("--quick", action="store_true", help="one epoch per phase, two variants (smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="folds, emulation and training seed (default 0)")
    parser.add_argument("--with-synthetic", metavar="CORPUS",
                        help="also train on this embedded corpus's train/val splits (regime a + b)")
    args = parser.parse_args()
    root, work, out = Path(args.ctgan), Path(args.work), Path(args.out)
    if not root.is_dir():
        raise SystemExit(f"the CT-GAN development sample is not at {root}: pass --ctgan")

    real = read_manifest(prepare_ctgan(root, work / "real", protocol="test", progress=False))
    fold_of = scan_folds(real, args.folds, seed=args.seed)
    auth = Path(args.authentic).is_dir()
    if auth:  # patients whose slices are training backgrounds (of the added corpus) are no false-alarm test
        exclude = corpus_background_patients(args.with_synthetic) if args.with_synthetic else set()
        write_authentic(args.authentic, work / "authentic", exclude_patients=exclude)
    pooled = defaultdict(lambda: {"y": [], "s": [], "rows": []})
    alarms = defaultdict(list)
    variants = 2 if args.quick else args.variants
    for k in range(args.folds):
        train_scans = {s for s, f in fold_of.items() if f != k}
        cfg = CorpusConfig(seed=k + 100 * args.seed, fractions=(0.8, 0.2, 0.0))
        corpus = work / f"fold{k}"
        write_corpus(background_patches(root, cfg, variants, progress=False, include=train_scans), corpus, cfg)
        tcfg = TrainConfig(data_dir=str(corpus), models_dir=str(corpus / "models"), seed=k + 100 * args.seed)
        if args.quick:
            tcfg.cnn_epochs = tcfg.vit_epochs = tcfg.finetune_epochs = 1
        data = load_training_data(tcfg)
        if args.with_synthetic:
            extra = load_training_data(TrainConfig(data_dir=args.with_synthetic))
            data = {split: tuple(np.concatenate([a, b]) for a, b in zip(data[split], extra[split]))
                    for split in data}
        result = run_training(tcfg, verbose=0, data=data)
        test_rows = [r for r in real if fold_of[r["scan"]] == k]
        files = [work / "real" / r["path"] for r in test_rows]
        for name, model in (("CNN", result["cnn"]), ("hybrid CNN-ViT", result["hybrid"])):
            pooled[name]["s"] += predict_files(model, files).tolist()
            pooled[name]["y"] += [int(r["label"]) for r in test_rows]
            pooled[name]["rows"] += test_rows
            if auth:
                alarms[name].append(evaluate_authentic(model, work / "authentic"))
        print(f"fold {k}: trained on {len(train_scans)} scans' backgrounds, tested on {len(test_rows)} real patches",
              flush=True)

    table, report = [], {}
    for name, p in pooled.items():
        metrics = report_from_scores(p["y"], p["s"], p["rows"])
        report[name] = metrics
        row = {"data": "CT-GAN development set (k-fold by scan)", **summary_row(name, metrics)}
        if alarms[name]:
            rate = float(np.mean([a["flag_rate"] for a in alarms[name]]))
            report[name]["authentic_flag_rate"] = rate
            row["flagged authentic CT"] = f"{rate:.3f}"
        table.append(row)
    stem = "transfer_with_synthetic" if args.with_synthetic else "transfer"
    write_report(out, stem, markdown_table(table), {"folds": args.folds, "variants": variants, "seed": args.seed,
                                                    **report})


if __name__ == "__main__":
    main()
