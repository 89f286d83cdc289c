"""Seed ensembles from saved runs: does averaging k models of different seeds make the detector reliable?

    python -m benchmarks.ensembles reports/benchmark.json reports/seeds_3_8/benchmark.json --size 3 \
        [--model "hybrid CNN-ViT"] [--out reports/ensembles.md]

Reads `benchmarks.compare` results, splits the seeds of one model into disjoint groups of `--size` consecutive
seeds (0-2, 3-5, 6-8, ...), averages each group's fake probabilities on the same patches (what
`utils.ensemble.build_ensemble` computes) and prints, per group and over groups (mean ± sd), ROC-AUC on the
synthetic test split and the development set (overall, FM vs control, FB vs control), beside the single models'
mean ± sd over all seeds. The paired rows give the ensemble minus each of its members on the development set, with a
95% paired bootstrap interval over scans. The groups are fixed before any figure is seen: no choice of members.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.paired_runs import SUBSETS, paired_subsets, subset_mask


def load_rows(paths, model: str) -> dict[int, dict]:
    """Rows of one model by seed; a seed present in several files must agree on its patches."""
    rows = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        for r in data["rows"] if isinstance(data, dict) else data:  # benchmark.json or a run's rows.json
            if r["model"] == model:
                rows.setdefault(r["seed"], r)
    if not rows:
        raise ValueError(f"no rows of model {model!r} in {', '.join(map(str, paths))}")
    return dict(sorted(rows.items()))


def subset_aucs(labels, scores, kinds) -> dict[str, float]:
    y, s = np.asarray(labels, int), np.asarray(scores, float)
    out = {}
    for name, pair in SUBSETS.items():
        sel = subset_mask(kinds, len(y), pair)
        if len(np.unique(y[sel])) == 2:
            out[name] = float(roc_auc_score(y[sel], s[sel]))
    return out


def groups_of(seeds, size: int) -> list[list[int]]:
    seeds = sorted(seeds)
    return [seeds[i:i + size] for i in range(0, len(seeds) - size + 1, size)]


def mean_scores(rows: list[dict], source: str) -> np.ndarray:
    first = rows[0][source]
    for r in rows[1:]:
        if r[source]["labels"] != first["labels"]:
            raise ValueError(f"seeds {rows[0]['seed']} and {r['seed']} scored different {source} patches")
    return np.mean([r[source]["scores"] for r in rows], axis=0)


def ensemble_rows(rows: dict[int, dict], size: int) -> list[dict]:
    out = []
    for group in groups_of(rows, size):
        members = [rows[s] for s in group]
        entry = {"seeds": group}
        for source in ("synthetic", "real"):
            if all("scores" in m.get(source, {}) for m in members):
                src = members[0][source]
                entry[source] = subset_aucs(src["labels"], mean_scores(members, source), src.get("kinds"))
        out.append(entry)
    return out


def paired_against_members(rows: dict[int, dict], size: int, n: int = 1000) -> list[dict]:
    """Development set: each ensemble minus each of its members, paired over scans (`paired_runs.paired_subsets`)."""
    out = []
    for group in groups_of(rows, size):
        members = [rows[s] for s in group]
        real = members[0]["real"]
        ens = mean_scores(members, "real")
        diffs = {m["seed"]: paired_subsets(real["labels"], ens, m["real"]["scores"], real.get("kinds"),
                                           real.get("scans"), n, m["seed"]) for m in members}
        out += [{"seeds": group, "member": seed, "subset": name, **d[name]}
                for name in SUBSETS for seed, d in diffs.items() if name in d]
    return out


def _fmt(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return ""
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def table(rows: dict[int, dict], ensembles: list[dict], size: int) -> str:
    cols = [(source, name) for source in ("synthetic", "real") for name in SUBSETS]
    head = ["", "n"] + [f"{'development set' if s == 'real' else 'synthetic test'} {n}" for s, n in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    singles = [subset_aucs(r[s]["labels"], r[s]["scores"], r[s].get("kinds")) if "scores" in r.get(s, {}) else {}
               for r in rows.values() for s in ("synthetic", "real")]
    by_source = {s: singles[i::2] for i, s in enumerate(("synthetic", "real"))}
    lines.append("| single models (per seed) | " + str(len(rows)) + " | "
                 + " | ".join(_fmt([a.get(n) for a in by_source[s]]) for s, n in cols) + " |")
    for e in ensembles:
        lines.append(f"| ensemble of seeds {', '.join(map(str, e['seeds']))} | 1 | "
                     + " | ".join(_fmt([e.get(s, {}).get(n)]) for s, n in cols) + " |")
    lines.append(f"| ensembles of {size} (over groups) | {len(ensembles)} | "
                 + " | ".join(_fmt([e.get(s, {}).get(n) for e in ensembles]) for s, n in cols) + " |")
    return "\n".join(lines)


def paired_table(diffs: list[dict]) -> str:
    from utils.evaluate import format_paired

    lines = ["| ensemble | member | development set | ensemble − member [95% paired interval over scans] "
             "| share of resamples where the ensemble is not better |", "|---|---|---|---|---|"]
    for d in diffs:
        lines.append(f"| {', '.join(map(str, d['seeds']))} | {d['member']} | {d['subset']} | {format_paired(d)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+",
                        help="benchmarks.compare results: benchmark.json files or runs' WORK/DETECTOR_SEED/rows.json")
    parser.add_argument("--size", type=int, default=3, help="models per ensemble (default 3)")
    parser.add_argument("--model", default="hybrid CNN-ViT")
    parser.add_argument("--out", help="also write the tables to this markdown file")
    args = parser.parse_args()
    rows = load_rows(args.results, args.model)
    md = "\n\n".join([table(rows, ensemble_rows(rows, args.size), args.size),
                      paired_table(paired_against_members(rows, args.size))])
    if args.out:
        Path(args.out).write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
