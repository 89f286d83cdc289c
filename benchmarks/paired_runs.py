"""Two training set-ups side by side: paired ROC-AUC differences on the same patches.

    python -m benchmarks.paired_runs reports/benchmark_a.json reports/benchmark_b.json [--names A B] [--out FILE]

Reads two `benchmarks.compare` results (e.g. the embedded corpus without and with the shipped real
backgrounds), pairs every model and seed present in both, and prints B minus A on the real development set
(overall, injected vs same-slice control, removed vs same-slice control), and on the synthetic test split when
both ran on the same corpus, with a 95% paired bootstrap interval over scans, beside the false alarms on
authentic CT of other scanners. `--model NAME` keeps one model's rows; `--pair-models NAME_A NAME_B` pairs
model NAME_A of A with model NAME_B of B (e.g. two hybrid designs).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SUBSETS = {"overall": None, "FM vs control": ("FM", "control"), "FB vs control": ("FB", "control")}


def _rows(path):
    data = json.loads(Path(path).read_text())
    return {(r["model"], r["seed"]): r for r in data["rows"]}


def subset_mask(kinds, n: int, pair) -> np.ndarray:
    """Which of n patches belong to a subset of `SUBSETS` (pair None: all; no kinds given: none of a pair)."""
    kinds = np.asarray(kinds if kinds else [""] * n)
    return np.ones(n, bool) if pair is None else np.isin(kinds, pair)


def paired_subsets(labels, scores_a, scores_b, kinds, scans, n: int = 1000, seed: int = 0) -> dict:
    """{subset name: A minus B (`paired_bootstrap_auc_diff`, paired over scans)} for each of `SUBSETS` present."""
    from utils.evaluate import paired_bootstrap_auc_diff

    out = {}
    for name, pair in SUBSETS.items():
        sel = subset_mask(kinds, len(labels), pair)
        if pair is not None and not sel.any():
            continue
        take = lambda v: [x for x, s in zip(v, sel) if s]  # noqa: E731
        out[name] = paired_bootstrap_auc_diff(take(labels), take(scores_a), take(scores_b),
                                              take(scans) if scans else None, n=n, seed=seed)
    return out


def paired_rows(a: dict, b: dict, source: str = "real", n: int = 1000) -> list[dict]:
    """B minus A per (model, seed) and subset of kinds."""
    out = []
    for key in sorted(set(a) & set(b)):
        ra, rb = a[key][source], b[key][source]
        if "scores" not in ra or "scores" not in rb or ra["labels"] != rb["labels"]:
            continue
        diffs = paired_subsets(ra["labels"], rb["scores"], ra["scores"], ra.get("kinds") or rb.get("kinds"),
                               ra.get("scans"), n, key[1])
        out += [{"model": key[0], "seed": key[1], "subset": name, **d} for name, d in diffs.items()]
    return out


def main() -> None:
    from utils.evaluate import format_paired

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--names", nargs=2, default=["A", "B"])
    parser.add_argument("--out", help="also write the table to this markdown file")
    parser.add_argument("--model", help="only this model's rows (e.g. 'hybrid CNN-ViT')")
    parser.add_argument("--pair-models", nargs=2, metavar=("NAME_A", "NAME_B"),
                        help="pair model NAME_A of A with model NAME_B of B (same seed)")
    args = parser.parse_args()
    a, b = _rows(args.a), _rows(args.b)
    if args.model:
        a, b = ({k: v for k, v in rows.items() if k[0] == args.model} for rows in (a, b))
    if args.pair_models:
        label = " → ".join(args.pair_models)
        a, b = ({(label, k[1]): v for k, v in rows.items() if k[0] == name}
                for rows, name in zip((a, b), args.pair_models))
    lines = [f"| model | seed | data | {args.names[1]} − {args.names[0]} ROC-AUC [95% paired interval over scans] "
             "| share of resamples where B is not better |", "|---|---|---|---|---|"]
    for source, label in (("real", "development set"), ("synthetic", "synthetic test")):
        for d in paired_rows(a, b, source):  # synthetic pairs only where both ran on the same corpus
            lines.append(f"| {d['model']} | {d['seed']} | {label}, {d['subset']} | {format_paired(d)} |")
    lines += ["", "| model | seed | flagged authentic CT at 0.5: A | B | at operating point: A | B |", "|---|---|---|---|---|---|"]
    for key in sorted(set(a) & set(b)):
        cells = [a[key].get("authentic_flag_rate"), b[key].get("authentic_flag_rate"),
                 a[key].get("authentic_flag_rate_op"), b[key].get("authentic_flag_rate_op")]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join("" if c is None else f"{c:.3f}" for c in cells) + " |")
    md = "\n".join(lines)
    if args.out:
        Path(args.out).write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
