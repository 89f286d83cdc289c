"""Whole-slice scanning: localisation on real and synthetic tampered slices, false alarms, speed.

    python -m benchmarks.scan_localisation [--model models/deepfake_detection_model.keras] [--stride 16]

- Localisation: share of tampered slices whose top-1 point lies within 24 px of the label point, on the real
  development sample's tampered slices and on held-out synthetic slices (one tamper each, scans the corpus
  never drew); chance = the 24 px disc's share of the slice's lung area; on real slices also by kind (FM, FB).
- False alarms: top-1 score on authentic CT of other scanners (COVID-CT-MD, TCIA, LIDC; patients whose slices
  are training backgrounds, or lie under an `--exclude` folder, left out) vs the tampered slices; slice-level
  ROC-AUC; slices flagged at the model's stored slice and relative operating points (chosen by training or
  `calibrate`) and at each slice score's thresholds for 1% and 5% false alarms on validation slices.
- Speed: seconds per 512x512 slice at the stride, and per authentic series (median).
Writes reports/scan.md and .json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks import write_report
from benchmarks.noise_matched import STRIDE_HELP
from utils.architectures import encoder_blocks
from utils.calibration import calibration_slices
from utils.dicom import patient_ids, read_slices
from utils.ensemble import members
from utils.lungmask import lung_mask
from utils.operating_point import (SYMMETRY_GROUPS, load_model, model_stride, model_symmetries, series_threshold,
                                   threshold_at_false_alarm_rate)
from utils.patches import crop_hu
from utils.scan import attention_peak, consensus_peak, model_patch_size, scan_series, scan_slice, scan_slices
from utils.slice_evaluation import HIT_PX, ctgan_tampered_slices, within
from utils.synthetic import CorpusConfig, corpus_background_patients, synthetic_scan

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
AGGREGATORS = {  # a slice's score from its window scores (`scan.SliceResult`)
    "top-1": lambda res: res.locations[0].score,
    "relative": lambda res: res.contrast(),
    "consensus": lambda res: res.consensus(),
}


def localise(model, items, stride, symmetries: int = 1):
    """items: (hu, spacing, [(x, y), ...] tampered points). Returns hits (top-1 window centre within HIT_PX of a
    target), hits of the consensus peak (`scan.consensus_peak`) and of the top window's attention peak
    (`scan.attention_peak`; empty for a model without a transformer), chance, slice scores by aggregator
    (`AGGREGATORS`), seconds."""
    hits, peak_hits, attention_hits, chance, seconds = [], [], [], [], []
    scores = {name: [] for name in AGGREGATORS}
    attends = bool(encoder_blocks(members(model)[0]))
    for hu, spacing, targets in items:
        start = time.perf_counter()
        res = scan_slice(model, hu, spacing, stride=stride, top_k=1, symmetries=symmetries)
        seconds.append(time.perf_counter() - start)
        top = res.locations[0]
        hits.append(within(top.x, top.y, targets))
        py, px = consensus_peak(res.points, res.scores, res.stride)[1]
        peak_hits.append(within(px, py, targets))
        if attends:
            attention_hits.append(within(*attention_peak(model, hu, top.x, top.y, spacing), targets))
        lung_px = lung_mask(hu, spacing).sum()
        chance.append(min(1.0, len(targets) * np.pi * HIT_PX**2 / max(lung_px, 1)))
        for name, get in AGGREGATORS.items():
            scores[name].append(get(res))
    return (np.array(hits), np.array(peak_hits), np.array(attention_hits), np.array(chance),
            {k: np.array(v) for k, v in scores.items()}, np.array(seconds))


SHEET = 24
RATES = (0.01, 0.05)


def leave_one_patient_out(auth_scores, patients, tampered_scores, rate: float) -> dict | None:
    """A site calibrating on some of its own patients: for each patient in turn, the threshold that flags `rate` of
    the other patients' authentic slices (`threshold_at_false_alarm_rate`); the held-out patient's slices flagged at
    it (pooled over patients) and the tampered slices flagged (mean over the thresholds). None with < 2 patients."""
    auth_scores, patients = np.asarray(auth_scores), np.asarray(patients, dtype=object)
    tampered_scores = np.asarray(tampered_scores)
    names = sorted(set(patients))
    if len(names) < 2:
        return None
    flagged, caught = [], []
    for name in names:
        held = patients == name
        t = threshold_at_false_alarm_rate(auth_scores[~held], rate)
        flagged += list(auth_scores[held] >= t)
        caught.append(float(np.mean(tampered_scores >= t)))
    return {"patients": len(names), "authentic_flagged": float(np.mean(flagged)),
            "real_tampered_flagged": float(np.mean(caught))}


def _false_alarm_sheet(windows, path: Path, per_row: int = 8) -> None:
    """The top-1 windows (score, series, slice, HU crop) of the highest-scoring authentic slices, lung window,
    each captioned by series, slice and score."""
    from utils.dicom import window
    from utils.plots import contact_sheet

    best = sorted(windows, key=lambda w: -w[0])[:SHEET]
    groups = [best[i : i + per_row] for i in range(0, len(best), per_row)]
    names = [f"{i * per_row + 1}-{i * per_row + len(g)}" for i, g in enumerate(groups)]
    contact_sheet({n: [window(crop) for *_, crop in g] for n, g in zip(names, groups)}, path, per_row=per_row,
                  captions={n: [f"{name.split('/')[-1]} s{inst}\n{score:.3f}" for score, name, inst, _ in g]
                            for n, g in zip(names, groups)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/deepfake_detection_model.keras")
    parser.add_argument("--stride", type=int, help=STRIDE_HELP)
    parser.add_argument("--synthetic", type=int, default=40, help="held-out synthetic tampered slices")
    parser.add_argument("--data", default="data", help="the model's training corpus: its background patients are "
                        "left out of the false-alarm slices")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="DIR",
                        help="DICOM folders whose patients are left out of the false-alarm slices too (e.g. those a "
                        "model mined hard negatives from)")
    parser.add_argument("--symmetries", type=int, choices=SYMMETRY_GROUPS,
                        help="average each window's score over this many of its flips and quarter turns "
                        "(`scan.DIHEDRAL`; default: as the model's stored slice thresholds were chosen, else 1); the "
                        "validation thresholds are chosen on slices scanned the same way")
    parser.add_argument("--out", default="reports")
    args = parser.parse_args()
    model = load_model(args.model)
    if args.symmetries is None:
        args.symmetries = model_symmetries(model)
    if args.stride is None:
        args.stride = model_stride(model)
    size = model_patch_size(model)
    report, lines = {}, []

    tampered = ctgan_tampered_slices(SHARED / "ctgan-sample")
    real = [(t.slice.hu, t.slice.spacing[1], t.targets) for t in tampered]
    real_kinds = [t.kind for t in tampered]
    hits, peak_hits, att_hits, chance, real_scores, secs = localise(model, real, args.stride, args.symmetries)
    real_top, real_con = real_scores["top-1"], real_scores["relative"]
    report["real"] = {"slices": len(real), "top1_within_24px": float(hits.mean()),
                      "consensus_peak_within_24px": float(peak_hits.mean()), "chance": float(chance.mean()),
                      "seconds_per_slice": float(secs.mean())}
    if len(att_hits):
        report["real"]["attention_peak_within_24px"] = float(att_hits.mean())

    cfg = CorpusConfig(slices_per_scan=1, tampers_per_slice=1, seed=12345)
    synth = []
    index = 10_000
    while len(synth) < args.synthetic:
        scan = synthetic_scan(index, cfg)
        index += 1
        for inst, sl in scan.slices.items():
            pts = [(r.x, r.y) for r in scan.labels if r.tampered and r.slice == inst]
            if pts:
                synth.append((sl.hu, sl.spacing[1], pts))
    s_hits, s_peak_hits, s_att_hits, s_chance, synth_scores, _ = localise(model, synth, args.stride, args.symmetries)
    report["synthetic"] = {"slices": len(synth), "top1_within_24px": float(s_hits.mean()),
                           "consensus_peak_within_24px": float(s_peak_hits.mean()), "chance": float(s_chance.mean())}
    if len(s_att_hits):
        report["synthetic"]["attention_peak_within_24px"] = float(s_att_hits.mean())

    auth_scores, series_seconds, series_slices = {name: [] for name in AGGREGATORS}, [], []
    series_scores = {}  # series: (`scan_series` score, slices scanned)
    auth_windows = []  # (top-1 score, series, slice, HU crop of the top window) per authentic slice
    auth_patients = []  # PatientID per authentic slice
    excluded = corpus_background_patients(args.data) | patient_ids(args.exclude)
    folders = sorted({p.parent for p in (SHARED / "authentic-ct").rglob("*.dcm")})
    for folder in folders:  # other scanners (COVID-CT-MD with disease, TCIA, LIDC), minus training backgrounds
        first = read_slices(next(folder.glob("*.dcm")))[0]
        if first.meta["patient_id"] in excluded:
            continue
        start = time.perf_counter()
        try:
            res = scan_series(model, folder, stride=args.stride, top_k=1, progress=False,
                              symmetries=args.symmetries)
        except ValueError as err:
            report.setdefault("not_scanned", []).append(str(err))
            continue
        if folder != SHARED / "authentic-ct":
            series_seconds.append(time.perf_counter() - start)
            series_slices.append(len(res.slices))
        for name, get in AGGREGATORS.items():
            auth_scores[name] += [get(r) for r in res.slices.values()]
        name = folder.relative_to(SHARED / "authentic-ct").as_posix()
        series_scores[name] = (res.score, len(res.slices))
        auth_patients += [first.meta["patient_id"]] * len(res.slices)
        for inst, r in res.slices.items():
            top = r.locations[0]  # a copy of the crop: a view would keep the whole slice alive
            auth_windows.append((top.score, name, inst, crop_hu(r.hu_source, top.x, top.y, size).copy()))
    report["excluded_patients"] = sorted(excluded)
    auth_scores = {k: np.array(v) for k, v in auth_scores.items()}
    auth_top, auth_con = auth_scores["top-1"], auth_scores["relative"]
    # slice decisions chosen on validation only: held-out synthetic tampered slices against authentic synthetic
    # slices no model saw (`calibration.calibration_slices`, as training chooses the stored slice thresholds);
    # then applied unchanged to the development set against other scanners
    val_slices, _, val_source = calibration_slices(args.data)
    val_results = scan_slices(model, val_slices, args.stride, progress=False, symmetries=args.symmetries)
    val_scores = {name: [get(res) for res in val_results] for name, get in AGGREGATORS.items()}
    y_val = np.r_[np.ones(len(synth)), np.zeros(len(val_scores["top-1"]))]
    y_dev = np.r_[np.ones(len(real)), np.zeros(len(auth_top))]
    report["aggregators"] = {}
    report["validation_slices"] = f"{len(val_results)} {val_source}"
    for name in AGGREGATORS:
        val_auth = np.array(val_scores[name])
        report["aggregators"][name] = {
            "validation_auc": float(roc_auc_score(y_val, np.r_[synth_scores[name], val_auth])),
            "development_auc": float(roc_auc_score(y_dev, np.r_[real_scores[name], auth_scores[name]])),
            "at_rates": {f"{rate:g}": {"threshold": t, "authentic_flagged": float(np.mean(auth_scores[name] >= t)),
                                       "real_tampered_flagged": float(np.mean(real_scores[name] >= t))}
                         for rate in RATES for t in [threshold_at_false_alarm_rate(val_auth, rate)]}}
    report["slice_scores"] = {name: {"real_tampered": real_scores[name].tolist(),
                                     "authentic": auth_scores[name].tolist()} for name in AGGREGATORS}
    report["real_hits"] = hits.astype(int).tolist()
    report["real_slices"] = [{"name": t.name, "kind": t.kind} for t in tampered]  # in the order of the scores
    y = np.r_[np.ones(len(real_top)), np.zeros(len(auth_top))]
    report["false_alarms"] = {
        "authentic_slices": len(auth_top), "authentic_top1_median": float(np.median(auth_top)),
        "authentic_flagged_at_0.5": float(np.mean(auth_top >= 0.5)),
        "tampered_top1_median": float(np.median(real_top)),
        "slice_auc_tampered_vs_authentic": float(roc_auc_score(y, np.r_[real_top, auth_top])),
        "slice_auc_relative": float(roc_auc_score(y, np.r_[real_con, auth_con])),
        "authentic_contrast_median": float(np.median(auth_con)), "tampered_contrast_median": float(np.median(real_con)),
        "series_slices_scanned": int(np.median(series_slices)), "series_seconds": float(np.median(series_seconds))}
    report["stride"] = args.stride
    report["symmetries"] = args.symmetries
    stored = model.operating_point  # read from the sidecar by `load_model`
    patch = stored.get("patch")
    if patch:  # a patch threshold applied to a slice's best window: what `scan` used before slice thresholds
        report["false_alarms"]["at_patch_threshold"] = {
            "threshold": patch["threshold"], "authentic_flagged": float(np.mean(auth_top >= patch["threshold"])),
            "real_tampered_flagged": float(np.mean(real_top >= patch["threshold"]))}
    point = stored.get("relative")
    if point:
        t = point["threshold"]
        report["relative_operating_point"] = {
            "threshold": t, "chosen_on": point["chosen_on"], "false_alarm_rate": point["false_alarm_rate"],
            "authentic_flagged": float(np.mean(auth_con >= t)), "real_tampered_flagged": float(np.mean(real_con >= t)),
            "at_rates": {rate: {"threshold": thr, "authentic_flagged": float(np.mean(auth_con >= thr)),
                                "real_tampered_flagged": float(np.mean(real_con >= thr))}
                         for rate, thr in point.get("thresholds", {}).items()}}

    point = stored.get("slice")
    if point:  # chosen by training (synthetic slices) or `calibrate` (`--authentic`: the user's own series)
        report["slice_operating_point"] = {
            "chosen_on": point["chosen_on"],
            "at_rates": {rate: {"threshold": thr, "authentic_flagged": float(np.mean(auth_top >= thr)),
                                "real_tampered_flagged": float(np.mean(real_top >= thr))}
                         for rate, thr in point["thresholds"].items()}}
        if "threshold_interval" in point:  # how far the threshold rests on a few calibration series
            ends = point["threshold_interval"]
            report["slice_operating_point"]["spread"] = {
                **{k: point[k] for k in ("series", "flagged_series", "threshold_interval", "interval_level")},
                "rate": point["false_alarm_rate"],
                "at_ends": [{"authentic_flagged": float(np.mean(auth_top >= t)),
                             "real_tampered_flagged": float(np.mean(real_top >= t))} for t in ends]}
    report["leave_one_patient_out"] = {f"{rate:g}": leave_one_patient_out(auth_top, auth_patients, real_top, rate)
                                       for rate in RATES}

    r, s, f = report["real"], report["synthetic"], report["false_alarms"]
    lines += [
        "| measure | value |", "|---|---|",
        f"| real tampered slices: top-1 within 24 px | {r['top1_within_24px']:.3f} ({r['slices']} slices; chance "
        f"{r['chance']:.3f}) |",
        f"| held-out synthetic tampered slices: top-1 within 24 px | {s['top1_within_24px']:.3f} ({s['slices']} "
        f"slices; chance {s['chance']:.3f}) |",
        f"| real / synthetic tampered slices: consensus peak (centre of the best 3x3 window neighbourhood) within "
        f"24 px | {r['consensus_peak_within_24px']:.3f} / {s['consensus_peak_within_24px']:.3f} |",
    ]
    if len(att_hits):
        lines.append(f"| real / synthetic tampered slices: attention peak (where the top window's rollout peaks) "
                     f"within 24 px | {r['attention_peak_within_24px']:.3f} / {s['attention_peak_within_24px']:.3f} |")
    lines += [
        f"| top-1 score, median: real tampered / authentic other scanner | {f['tampered_top1_median']:.3f} / "
        f"{f['authentic_top1_median']:.3f} |",
        f"| authentic slices flagged (top-1 >= 0.5) | {f['authentic_flagged_at_0.5']:.3f} of {f['authentic_slices']} |",
        *([f"| at the stored patch threshold ({f['at_patch_threshold']['threshold']:.3f}; a patch's operating point, "
           f"not a slice's): authentic / real tampered slices flagged | "
           f"{f['at_patch_threshold']['authentic_flagged']:.3f} / "
           f"{f['at_patch_threshold']['real_tampered_flagged']:.3f} |"]
          if "at_patch_threshold" in f else []),
        f"| slice-level ROC-AUC, real tampered vs authentic (top-1 score) | "
        f"{f['slice_auc_tampered_vs_authentic']:.3f} |",
        f"| slice-level ROC-AUC, relative score (top-1 minus the slice's median) | {f['slice_auc_relative']:.3f} |",
    ]
    if "relative_operating_point" in report:
        op = report["relative_operating_point"]
        lines.append(f"| at the stored relative operating point ({op['false_alarm_rate']:.0%} of {op['chosen_on']}): "
                     f"authentic / real tampered slices flagged | {op['authentic_flagged']:.3f} / "
                     f"{op['real_tampered_flagged']:.3f} |")
        for rate, at in sorted(op["at_rates"].items(), key=lambda kv: float(kv[0])):
            lines.append(f"| at the stored relative threshold for {float(rate):.0%} false alarms on validation slices: "
                         f"authentic / real tampered slices flagged | {at['authentic_flagged']:.3f} / "
                         f"{at['real_tampered_flagged']:.3f} |")
    for rate, at in sorted(report.get("slice_operating_point", {}).get("at_rates", {}).items(),
                           key=lambda kv: float(kv[0])):
        lines.append(f"| at the stored slice threshold for {float(rate):.0%} false alarms "
                     f"({report['slice_operating_point']['chosen_on']}): authentic / real tampered slices flagged | "
                     f"{at['authentic_flagged']:.3f} / {at['real_tampered_flagged']:.3f} |")
    spread = report.get("slice_operating_point", {}).get("spread")
    if spread:
        (lo, hi), (a, b) = spread["threshold_interval"], spread["at_ends"]
        lines.append(f"| the stored {spread['rate']:.0%} slice threshold: calibration series holding its flagged "
                     f"slices; its {spread['interval_level']:.0%} interval with the series drawn again, and authentic "
                     f"/ real tampered slices flagged at its ends | {spread['flagged_series']} of {spread['series']}; "
                     f"[{lo:.4f}, {hi:.4f}]: {a['authentic_flagged']:.3f} / {a['real_tampered_flagged']:.3f} and "
                     f"{b['authentic_flagged']:.3f} / {b['real_tampered_flagged']:.3f} |")
    if point:  # a series is judged by its best slice against the threshold for its length (`series_threshold`)
        multi = {k: v for k, v in series_scores.items() if v[1] > 1}
        typical = int(np.median([v[1] for v in multi.values()]))
        report["slice_operating_point"]["series"] = {}
        for rate, thr in point["thresholds"].items():
            at = {**point, "threshold": thr, "false_alarm_rate": float(rate)}
            report["slice_operating_point"]["series"][rate] = {
                "series": len(multi), "slices_each": sorted({v[1] for v in multi.values()}),
                "flagged": float(np.mean([v[0] >= series_threshold(at, v[1]) for v in multi.values()])),
                "flagged_at_slice_threshold": float(np.mean([v[0] >= thr for v in multi.values()])),
                "typical_slices": typical,
                "real_tampered_above": float(np.mean(real_top >= series_threshold(at, typical)))}
        for rate, at in sorted(report["slice_operating_point"]["series"].items(), key=lambda kv: float(kv[0])):
            lines.append(f"| authentic series ({at['series']}, {'/'.join(map(str, at['slices_each']))} slices "
                         f"each) flagged at the stored series threshold for {float(rate):.0%} (at the one-slice "
                         f"threshold); real tampered slices above the threshold of a {at['typical_slices']}-slice "
                         f"series | {at['flagged']:.3f} ({at['flagged_at_slice_threshold']:.3f}); "
                         f"{at['real_tampered_above']:.3f} |")
    for rate, lopo in report["leave_one_patient_out"].items():
        if lopo:
            lines.append(f"| top-1 threshold for {float(rate):.0%} false alarms on the other patients' authentic "
                         f"slices, each patient held out in turn: authentic / real tampered slices flagged | "
                         f"{lopo['authentic_flagged']:.3f} / {lopo['real_tampered_flagged']:.3f} |")
    lines += [
        f"| seconds per 512x512 slice (stride {args.stride}, {args.symmetries} symmetr"
        f"{'y' if args.symmetries == 1 else 'ies'} per window, 2 CPU cores) | {r['seconds_per_slice']:.2f} |",
        f"| seconds per authentic series, median ({f['series_slices_scanned']} slices scanned, + reading) | "
        f"{f['series_seconds']:.1f} |",
    ]
    lines += ["", f"Slice decisions, thresholds chosen on validation only ({report['validation_slices']}; held-out "
              "synthetic tampered slices for the validation AUC):", "",
              "| slice score | validation AUC | development AUC (real tampered vs other scanners) | at 1% validation "
              "false alarms: authentic / real tampered slices flagged | at 5%: the same |", "|---|---|---|---|---|"]
    for name, agg in report["aggregators"].items():
        at = agg["at_rates"]
        lines.append(f"| {name} | {agg['validation_auc']:.3f} | {agg['development_auc']:.3f} | "
                     f"{at['0.01']['authentic_flagged']:.3f} / {at['0.01']['real_tampered_flagged']:.3f} | "
                     f"{at['0.05']['authentic_flagged']:.3f} / {at['0.05']['real_tampered_flagged']:.3f} |")
    t = report["aggregators"]["top-1"]["at_rates"]["0.05"]["threshold"]
    kinds = np.array(real_kinds)
    report["real_by_kind"] = {k: {"slices": int((kinds == k).sum()), "top1_within_24px": float(hits[kinds == k].mean()),
                                  "consensus_peak_within_24px": float(peak_hits[kinds == k].mean()),
                                  "flagged_top1_validation_threshold": float(np.mean(real_top[kinds == k] >= t))}
                              for k in sorted(set(real_kinds))}
    lines += ["", "Real tampered slices by kind (FM injected, FB removed; top-1 score at its 5% validation "
              "threshold):", "",
              "| kind | slices | top-1 within 24 px | consensus peak within 24 px | flagged |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['slices']} | {v['top1_within_24px']:.3f} | {v['consensus_peak_within_24px']:.3f} | "
              f"{v['flagged_top1_validation_threshold']:.3f} |"
              for k, v in report["real_by_kind"].items()]
    series = np.array([name for _, name, _, _ in auth_windows])
    report["authentic_by_series"] = {
        k: {"slices": int((series == k).sum()), "top1_median": float(np.median(auth_top[series == k])),
            "flagged_at_0.5": float(np.mean(auth_top[series == k] >= 0.5)),
            "flagged_top1_validation_threshold": float(np.mean(auth_top[series == k] >= t))}
        for k in sorted(set(series))}
    lines += ["", "Authentic slices of other scanners by series (top-1 score):", "",
              "| series | slices | top-1 median | flagged at 0.5 | flagged at the 5% validation threshold |",
              "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['slices']} | {v['top1_median']:.3f} | {v['flagged_at_0.5']:.3f} | "
              f"{v['flagged_top1_validation_threshold']:.3f} |" for k, v in report["authentic_by_series"].items()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _false_alarm_sheet(auth_windows, out / "scan_false_alarms.png")
    lines += ["", f"The top window of the {min(SHEET, len(auth_windows))} highest-scoring authentic slices: "
              f"{out / 'scan_false_alarms.png'}"]
    write_report(out, "scan", "\n".join(lines), report)


if __name__ == "__main__":
    main()
