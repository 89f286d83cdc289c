"""What a detector makes of each kind of patch: its scores per corpus, source and kind.

    python -m benchmarks.kind_scores [--model models/deepfake_detection_model.keras]
                                     [--data data data/ctgan data/authentic] [--split test] [--out reports]

Scores one split of every corpus folder (a manifest.csv beside its patches: the embedded corpus, a prepared CT-GAN
data set, the authentic CT of other scanners) and prints, per (corpus, source, kind), the patches, the median score
[quartiles] and the share at or above the model's stored patch threshold. The rows to read side by side are those of
one kind from two sources: authentic cancers (TM) of the synthetic corpus against the development set's, injections
(FM) and removals (FB) likewise. A kind the detector scores far higher in the corpus than in real CT is one the
generator draws unlike real CT: a fidelity gap, which also lifts the slice threshold chosen on synthetic slices.
Writes OUT/kind_scores.md and OUT/kind_scores.json.
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks import write_report


def kind_scores(model, corpus_dir, split: str = "test", batch_size: int = 256) -> dict:
    """{(source, kind): scores} of the `split` patches of a corpus folder."""
    from utils.evaluate import predict_files
    from utils.patches import read_manifest

    corpus_dir = Path(corpus_dir)
    rows = [r for r in read_manifest(corpus_dir / "manifest.csv") if r["split"] == split]
    if not rows:
        raise ValueError(f"{corpus_dir / 'manifest.csv'}: no patches in split {split!r}")
    scores = predict_files(model, [corpus_dir / r["path"] for r in rows], batch_size)
    groups = defaultdict(list)
    for row, score in zip(rows, scores):
        groups[(row["source"], row["kind"])].append(float(score))
    return {key: np.asarray(values) for key, values in sorted(groups.items())}


def markdown(results: dict, threshold: float) -> str:
    """One row per (corpus, source, kind) of {corpus: {(source, kind): scores}}."""
    lines = [f"| corpus | source | kind | patches | median score [quartiles] | at or above the patch threshold "
             f"({threshold:.3f}) |", "|---|---|---|---|---|---|"]
    for corpus, groups in results.items():
        for (source, kind), s in groups.items():
            q1, med, q3 = np.quantile(s, [0.25, 0.5, 0.75])
            lines.append(f"| {corpus} | {source} | {kind} | {len(s)} | {med:.3f} [{q1:.3f}, {q3:.3f}] | "
                         f"{np.mean(s >= threshold):.3f} |")
    return "\n".join(lines)


def main() -> None:
    from utils.operating_point import load_model, stored_threshold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/deepfake_detection_model.keras")
    parser.add_argument("--data", nargs="+", default=["data", "data/ctgan", "data/authentic"],
                        help="corpus folders holding manifest.csv (missing ones are left out, saying so)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default="reports")
    args = parser.parse_args()
    model = load_model(args.model)
    threshold, _ = stored_threshold(args.model)
    results = {}
    for corpus in args.data:
        if not (Path(corpus) / "manifest.csv").is_file():
            print(f"({corpus}: no manifest.csv, left out)")
            continue
        results[corpus] = kind_scores(model, corpus, args.split)
    report = {corpus: {f"{source}/{kind}": s.tolist() for (source, kind), s in groups.items()}
              for corpus, groups in results.items()}
    write_report(args.out, "kind_scores", markdown(results, threshold), {"threshold": threshold, "scores": report})


if __name__ == "__main__":
    main()
