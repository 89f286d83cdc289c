"""Detectors side by side: CNN alone, hybrid CNN -> ViT, plain ViT on pixels, classic forensic features.

    python -m benchmarks.compare [--seeds 0 1 2] [--data data] [--out reports] [--resume] [--quick]

Same corpus, same scan-level split, several seeds (mean ± sd). Each detector and seed trains in its own
process (timings of several models in one process were wrong). Scored on the embedded test split and on the
real development sample (data/ctgan/test, prepared from ../shared/data/ctgan-sample when missing), with
false alarms on authentic CT of another scanner; also parameters, training time and images per second.
Writes OUT/benchmark.md and OUT/benchmark.json, with paired bootstrap differences of ROC-AUC
(hybrid minus each other detector, same seed, scans resampled together). --quick: a tiny corpus, one epoch, one seed (for the tests).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import write_report
from utils.data import DESIGNS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DETECTORS = ("cnn+hybrid", "plain_vit", "forensic")


def _sources(data: Path) -> dict:
    out = {"synthetic": data / "test"}
    if (data / "ctgan" / "test").is_dir():
        out["real"] = data / "ctgan" / "test"
    return out


def _throughput(predict, x, repeats: int = 2) -> float:
    predict(x)  # compiles every batch shape of the timed calls (a compiling backend, JAX, would time that too)
    start = time.perf_counter()
    for _ in range(repeats):
        predict(x)
    return repeats * len(x) / (time.perf_counter() - start)


def run_one(detector: str, seed: int, data: Path, work: Path, quick: bool, pretrain_epochs: int = 0,
            design: str = "patch", reference_only: bool = False, cnn_from: Path | None = None,
            stem_padding: str = "valid", weight_average: float = 0.0, cnn_epochs: int | None = None) -> list[dict]:
    """Train and score one detector with one seed (in this process). `cnn_from`: a --work folder of an earlier
    run whose phase-1 CNN of this seed is reused (only phase 2 trains), so two designs share one CNN."""
    import keras

    from utils.data import load_split
    from utils.evaluate import authentic_scores, evaluate_on_testset, flag_rates, manifest_rows, report_from_scores
    from utils.operating_point import threshold_at_false_alarm_rate
    from utils.training import TrainConfig, fit_phase, load_training_data, run_training

    cfg = TrainConfig(data_dir=str(data), models_dir=str(work / f"{detector}_{seed}"), seed=seed,
                      pretrain_epochs=pretrain_epochs, design=design, stem_padding=stem_padding,
                      weight_average=weight_average)
    if cnn_epochs is not None:
        cfg.cnn_epochs = cnn_epochs
    reference_only = reference_only or design != "patch"
    if quick:
        cfg.cnn_epochs = cfg.vit_epochs = cfg.finetune_epochs = 1
        cfg.slice_calibration = 20
    keras.utils.set_random_seed(seed)
    train = load_training_data(cfg)
    x_test, _, _ = load_split(data / "test", reference=design != "patch")
    results = []

    def score(name, model, params, seconds, train_ips, predict):
        row = {"model": name, "seed": seed, "params": params, "train_seconds": round(seconds, 1),
               "train_images_per_s": round(train_ips, 1), "infer_images_per_s": round(_throughput(predict, x_test), 1)}
        for source, folder in _sources(data).items():
            if model is not None:
                row[source] = evaluate_on_testset(model, folder, bootstrap=300, return_scores=True,
                                                  reference_only=reference_only)
            else:
                xs, ys, files = load_split(folder)
                rows, scores = manifest_rows(files, folder.parent / "manifest.csv"), predict(xs)
                row[source] = report_from_scores(ys, scores, rows, bootstrap=300)
                row[source].update(scores=scores.tolist(), labels=ys.tolist(),
                                   scans=[r["scan"] for r in rows] if rows else None)
        xv, yv = train["val"]
        row["operating_point"] = threshold_at_false_alarm_rate(predict(xv[yv == 0]), 0.05)
        auth = data / "authentic"
        if model is not None and (auth / "manifest.csv").is_file():
            rows_auth, scores_auth = authentic_scores(model, auth)  # scored once, judged at both thresholds
            row["authentic_flag_rate"] = flag_rates(rows_auth, scores_auth)["flag_rate"]
            row["authentic_flag_rate_op"] = flag_rates(rows_auth, scores_auth, row["operating_point"])["flag_rate"]
        results.append(row)

    if detector == "cnn+hybrid":
        if cnn_from is not None:
            import shutil

            source = Path(cnn_from) / f"{detector}_{seed}"
            Path(cfg.models_dir).mkdir(parents=True, exist_ok=True)
            for name in ("cnn_model.keras", "cnn_model.operating_point.json", "history_cnn.json"):
                shutil.copy(source / name, Path(cfg.models_dir) / name)
        run = run_training(cfg, phases=("vit",) if cnn_from else ("cnn", "vit"), verbose=0, data=train)
        h = run["histories"]
        if cnn_from is not None:
            h["cnn"] = json.loads((Path(cfg.models_dir) / "history_cnn.json").read_text())
        hybrid = {"patch": "hybrid CNN-ViT", "compare": "comparing CNN-ViT",
                  "compare-normalised": "comparing CNN-ViT, normalised", "compare-centred": "comparing CNN-ViT, centred"}[design]
        for name, model, phases in (("CNN", run["cnn"], ["cnn"]), (hybrid, run["hybrid"], list(h))):
            secs = sum(h[p]["seconds"] for p in phases)  # (a reused CNN: its own run's figures)
            ips = np.mean([h[p]["images_per_second"] for p in phases])
            score(name, model, model.count_params(), secs, ips,
                  lambda x, m=model: np.asarray(m.predict(x[..., : m.inputs[0].shape[-1]], batch_size=256,
                                                          verbose=0)).ravel())
    elif detector == "plain_vit":
        from utils.architectures import build_plain_vit

        model = build_plain_vit(train["train"][0].shape[1:], dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                                mlp_dim=cfg.mlp_dim, dropout=cfg.dropout)
        epochs = cfg.cnn_epochs + cfg.vit_epochs
        hist = fit_phase(model, train["train"], train["val"], epochs, cfg.vit_lr, cfg, "plain_vit", verbose=0)
        score("plain ViT (pixels)", model, model.count_params(), hist["seconds"], hist["images_per_second"],
              lambda x: np.asarray(model.predict(x, batch_size=256, verbose=0)).ravel())
    elif detector == "forensic":
        from utils.forensic import build_forensic_classifier, features

        x, y = train["train"]
        start = time.perf_counter()
        clf = build_forensic_classifier(seed).fit(features(x), y)
        secs = time.perf_counter() - start
        score("forensic features + gradient boosting", None, None, secs,
              len(x) / secs, lambda xx: clf.predict_proba(features(xx))[:, 1])
    else:
        raise ValueError(f"unknown detector {detector!r}")
    for row in results:
        for source in _sources(data):
            row[source].pop("files", None)
    return results


def _fmt(values, digits=3):
    values = [v for v in values if v is not None]
    if not values:
        return ""
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}" if len(values) > 1 else f"{values[0]:.{digits}f}"


def _pair(r, source, pair):
    return r[source].get("pairs", {}).get(pair, {}).get("auc")


def summarize(rows: list[dict]) -> str:
    """Mean ± sd over seeds: ROC-AUC overall and of the headline pairs (same slice, same history) per source,
    EER, false alarms on authentic CT of other scanners at 0.5 and at the operating point (5% of validation
    authentic patches), cost."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    sources = [s for s in ("synthetic", "real") if any(s in r for r in rows)]
    head = ["model", "seeds", "params"]
    for s in sources:
        head += [f"{s} ROC-AUC", f"{s} FM vs control", f"{s} FB vs control", f"{s} EER"]
    head += ["flagged authentic CT at 0.5", "at operating point", "train s", "train img/s", "infer img/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in models:
        rs = [r for r in rows if r["model"] == name]
        cells = [name, str(len(rs)), str(rs[0]["params"] or "")]
        for s in sources:
            cells += [_fmt([r[s]["roc_auc"] for r in rs]), _fmt([_pair(r, s, "FM_vs_control") for r in rs]),
                      _fmt([_pair(r, s, "FB_vs_control") for r in rs]), _fmt([r[s]["eer"] for r in rs])]
        cells += [_fmt([r.get("authentic_flag_rate") for r in rs]), _fmt([r.get("authentic_flag_rate_op") for r in rs]),
                  _fmt([r["train_seconds"] for r in rs], 0), _fmt([r["train_images_per_s"] for r in rs], 0),
                  _fmt([r["infer_images_per_s"] for r in rs], 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_differences(rows: list[dict], n: int = 1000) -> list[dict]:
    """ROC-AUC differences between detectors of the same seed on the same patches, with a paired bootstrap
    over scans (`utils.evaluate.paired_bootstrap_auc_diff`): the hybrid against each other detector."""
    from utils.evaluate import paired_bootstrap_auc_diff

    out = []
    models = list(dict.fromkeys(r["model"] for r in rows))
    sources = [s for s in ("synthetic", "real") if any(s in r for r in rows)]
    for a in (m for m in models if m.startswith(("hybrid", "comparing"))):
        for b in (m for m in models if m != a):
            for source in sources:
                for seed in sorted({r["seed"] for r in rows}):
                    ra = next((r for r in rows if r["model"] == a and r["seed"] == seed), None)
                    rb = next((r for r in rows if r["model"] == b and r["seed"] == seed), None)
                    if not ra or not rb or "scores" not in ra[source] or "scores" not in rb[source]:
                        continue
                    d = paired_bootstrap_auc_diff(ra[source]["labels"], ra[source]["scores"], rb[source]["scores"],
                                                  ra[source].get("scans"), n=n, seed=seed)
                    out.append({"a": a, "b": b, "source": source, "seed": seed, **d})
    return out


def paired_table(diffs: list[dict]) -> str:
    from utils.evaluate import format_paired

    lines = ["| comparison | data | seed | ROC-AUC difference [95% paired interval over scans] | share of resamples "
             "where the first is not better |", "|---|---|---|---|---|"]
    for d in diffs:
        lines.append(f"| {d['a']} − {d['b']} | {d['source']} | {d['seed']} | {format_paired(d)} |")
    return "\n".join(lines)


def _prepare(data: Path, quick: bool) -> None:
    """The corpora the comparison needs: the embedded corpus, the real sample and authentic CT, if missing."""
    from utils.patches import PATCH_SIZE
    from utils.synthetic import CorpusConfig, build_synthetic_corpus, corpus_background_patients

    if not (data / "manifest.csv").is_file():
        cfg = CorpusConfig(n_scans=16, slices_per_scan=1, tampers_per_slice=3, workers=1) if quick else CorpusConfig()
        build_synthetic_corpus(data, cfg, progress=False)
    size = CorpusConfig.from_dir(data).patch_size if (data / "corpus.json").is_file() else PATCH_SIZE
    if (SHARED / "ctgan-sample").is_dir() and not (data / "ctgan" / "manifest.csv").is_file():
        from utils.ctgan import prepare_ctgan

        prepare_ctgan(SHARED / "ctgan-sample", data / "ctgan", protocol="test", progress=False, size=size)
    if (SHARED / "authentic-ct").is_dir():
        from utils.authentic import write_authentic

        # the corpus's background patients are no false-alarm test; the shipped ones are left out for every
        # corpus, so that corpora with and without them are compared on the same patients
        exclude = corpus_background_patients(data) | CorpusConfig().background_patients()
        write_authentic(SHARED / "authentic-ct", data / "authentic", exclude_patients=exclude, size=size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", default="data")
    parser.add_argument("--work", default="data/benchmark_models")
    parser.add_argument("--out", default="reports")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows of detector/seed runs already saved under --work (WORK/DETECTOR_SEED/rows.json)")
    parser.add_argument("--pretrain-epochs", type=int, default=0,
                        help="self-supervised pre-training of the hybrid's transformer before phase 2a (default 0: none)")
    parser.add_argument("--design", choices=DESIGNS, default="patch",
                        help="the hybrid's design: 'patch' (the patch alone), 'compare' (the patch and a reference "
                             "window of its slice, `architectures.build_comparing_vit`) or 'compare-normalised' "
                             "(the same, tokens normalised by the reference's statistics) or 'compare-centred' (the "
                             "reference's mean subtracted only)")
    parser.add_argument("--reference-only", action="store_true",
                        help="score only patches that have a reference window (always so with --design compare), so "
                             "that runs of both designs are paired on the same patches")
    parser.add_argument("--cnn-from", metavar="WORK",
                        help="reuse the phase-1 CNN of each seed from this earlier --work folder and train phase 2 "
                             "only: designs compared on one CNN")
    parser.add_argument("--stem-padding", choices=("same", "valid"), default="valid",
                        help="the CNN's convolutions: 'valid' (no padding, 4x4 tokens, the stem shared over a slice "
                             "when scanning; default) or 'same' (zero padding, 8x8 tokens; the previous default)")
    parser.add_argument("--weight-average", type=float, default=0.0, metavar="MOMENTUM",
                        help="train with an exponential moving average of the weights (`TrainConfig.weight_average`; "
                             "default 0: off)")
    parser.add_argument("--cnn-epochs", type=int, metavar="N",
                        help="epochs of phase 1, the CNN (default: TrainConfig.cnn_epochs)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data, work, out = Path(args.data), Path(args.work), Path(args.out)
    if args.one:
        print(json.dumps(run_one(args.one, args.seeds[0], data, work, args.quick, args.pretrain_epochs, args.design,
                                 args.reference_only, args.cnn_from, args.stem_padding, args.weight_average,
                                 args.cnn_epochs)))
        return
    _prepare(data, args.quick)
    seeds = args.seeds[:1] if args.quick else args.seeds
    rows = []
    for detector in args.detectors:
        for seed in seeds:
            saved = work / f"{detector}_{seed}" / "rows.json"
            if args.resume and saved.is_file():
                rows += json.loads(saved.read_text())
                print(f"kept from an earlier run: {detector} seed {seed} ({saved})", flush=True)
                continue
            cmd = [sys.executable, "-m", "benchmarks.compare", "--one", detector, "--seeds", str(seed), "--data",
                   str(data), "--work", str(work), "--pretrain-epochs", str(args.pretrain_epochs), "--design",
                   args.design, "--stem-padding", args.stem_padding, "--weight-average", str(args.weight_average)] \
                + (["--reference-only"] if args.reference_only else []) \
                + (["--cnn-from", args.cnn_from] if args.cnn_from else []) \
                + (["--cnn-epochs", str(args.cnn_epochs)] if args.cnn_epochs is not None else []) \
                + (["--quick"] if args.quick else [])
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                raise SystemExit(f"{detector} seed {seed} failed:\n{run.stderr[-4000:]}")
            result = json.loads(run.stdout.strip().splitlines()[-1])
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(result))
            rows += result
            print(f"done: {detector} seed {seed}", flush=True)
    diffs = paired_differences(rows)
    md = summarize(rows) + "\n\nPaired differences (same seed, same patches, scans resampled together):\n\n" \
        + paired_table(diffs)
    write_report(out, "benchmark", md, {"rows": rows, "paired": diffs})


if __name__ == "__main__":
    main()
