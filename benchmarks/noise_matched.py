"""How much of the slice-level separation is scanner noise? Authentic slices brought to the tampered slices' level.

    python -m benchmarks.noise_matched [--model models/deepfake_detection_model.keras] [--data data] [--draws 3]

The development set's tampered slices come from CT-GAN's scans, whose fine texture band is louder than that of
the authentic slices of other scanners they are compared with
(`benchmarks.texture_levels`). A detector that reads noise as tampering (`benchmarks.false_alarm_map`) then
separates the two sets partly by scanner. Here every authentic slice of another scanner
(`slice_evaluation.authentic_slices`, the training backgrounds' patients left out) is given the fine-band level of
a tampered slice drawn at random (`texture.band_levels`: robust spread of HU minus a 1 px blur over lung
parenchyma) by adding scanner-like correlated noise (`anatomy.correlated_noise`) where it is quieter, and every
slice is scanned as `scan` scans it (best window's score).

Two slice scores are compared, each with thresholds for 5% and 1% false alarms on the model's calibration slices
(`calibration.calibration_slices`: authentic synthetic slices no model saw, where the stored slice thresholds come
from): *top-1*, the best window's score (what `scan` uses), and *noise-conditional*, its logit minus the slope of
logit on log fine-band level fitted on the calibration slices (a slice is judged against authentic slices as noisy
as itself); and for a model with stored slice thresholds (`calibrate`), *top-1 at the stored thresholds*, the same
score judged at those, as `scan` judges it. Printed: slice ROC-AUC of the real tampered slices against the authentic
ones, the slices flagged at the thresholds, and the tampered slices found where 2, 4 or 6 of the authentic slices are
flagged (thresholds set on those slices: separation at equal false alarms, not an operating point), as stored and
noise-matched (mean and range over `--draws` draws of levels and noise).
Writes reports/noise_matched.md and .json.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks import write_report
from utils.lungmask import cached_lung_mask

# --stride of the benchmarks that judge slices by a model's stored thresholds (`scan.scan_slice` resolves None)
STRIDE_HELP = "grid step, px (default: the one the model's stored slice thresholds were chosen at, else 16)"

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NOISE_CUTOFF = 0.6  # noise spectrum roll-off (fraction of Nyquist): between the soft and sharp kernels of the map
RATES = (0.05, 0.01)
STORED = "top-1 at the stored thresholds"


def fine_gain(cutoff: float = NOISE_CUTOFF, size: int = 256, seed: int = 0) -> float:
    """Fine-band level (HU) of unit correlated noise of that spectrum: what one HU of added noise adds."""
    from utils.anatomy import correlated_noise
    from utils.texture import bands, robust_sigma

    noise = correlated_noise(np.random.default_rng(seed), (size, size), 1.0, cutoff)
    return robust_sigma(bands(noise)[1][0])


def fine_level(sl) -> float:
    """A slice's fine-band level (HU, `texture.band_levels`), nan when it has too little parenchyma."""
    from utils.texture import band_levels

    levels = band_levels(sl.hu, sl.spacing[1], cached_lung_mask(sl))
    return levels[0] if levels else np.nan


def matched(hu: np.ndarray, level: float, target: float, rng: np.random.Generator, gain: float) -> np.ndarray:
    """The slice (fine-band level `level`) with noise added so that its level reaches `target` HU (unchanged where
    it is already as loud, or its level is nan: too little parenchyma to measure); padding outside the field of
    view stays."""
    from utils.anatomy import correlated_noise

    if not level < target:
        return hu
    sigma = np.sqrt(target**2 - level**2) / gain
    noisy = np.rint(np.clip(hu + correlated_noise(rng, hu.shape, sigma, NOISE_CUTOFF), -1024, 3071))
    return np.where(hu <= -1500, hu, noisy).astype(np.float32)


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def noise_slope(scores, levels) -> float:
    """Least-squares slope of the best window's logit on the log fine-band level (calibration slices)."""
    return float(np.polyfit(np.log(levels), logit(scores), 1)[0])


def slice_scores(model, slices, stride: int | None) -> np.ndarray:
    """(best window's score, fine-band level or nan: `SliceResult.fine_band`) per slice with lungs; slices without
    are left out."""
    from utils.scan import scan_slice

    out = []
    for sl in slices:
        try:
            res = scan_slice(model, sl, stride=stride, top_k=1, lungs=cached_lung_mask(sl))
        except ValueError:  # no lungs
            continue
        out.append((res.locations[0].score, np.nan if res.fine_band is None else res.fine_band))
    return np.asarray(out, np.float64).reshape(-1, 2)


def judged(rows: np.ndarray, slope: float, fallback_level: float) -> dict:
    """Both slice scores of (score, level) rows; a slice whose level cannot be measured gets `fallback_level`."""
    levels = np.where(np.isnan(rows[:, 1]), fallback_level, rows[:, 1])
    return {"top-1": logit(rows[:, 0]), "noise-conditional": logit(rows[:, 0]) - slope * np.log(levels)}


def separation(tampered: np.ndarray, authentic: np.ndarray, thresholds: dict) -> dict:
    """Slice AUC; slices flagged at the calibration thresholds; tampered slices found at thresholds set on these
    authentic slices themselves (`paired_scans.found_at_equal_false_alarms`: separation at the top of the authentic
    scores, whatever the calibration)."""
    from sklearn.metrics import roc_auc_score

    from benchmarks.paired_scans import EQUAL_RATE_COUNTS, found_at_equal_false_alarms

    out = {"slice_auc": float(roc_auc_score(np.r_[np.ones(len(tampered)), np.zeros(len(authentic))],
                                            np.r_[tampered, authentic]))}
    for rate, t in thresholds.items():
        out[f"authentic_flagged_{rate}"] = float(np.mean(authentic >= t))
        out[f"tampered_flagged_{rate}"] = float(np.mean(tampered >= t))
    for k in EQUAL_RATE_COUNTS:  # one count at a time: a count the slices cannot reach is left out, not misnamed
        for found in found_at_equal_false_alarms(tampered, authentic, (k,)).values():
            out[f"found_at_{k}"] = found
    return out


def development_slices(data) -> tuple[list, list]:
    """The development set's real tampered slices and the authentic slices of other scanners (`slice_evaluation`
    items), the patients of the corpus `data`'s training backgrounds left out; exits when ../shared is absent."""
    from utils.slice_evaluation import authentic_slices, ctgan_tampered_slices
    from utils.synthetic import corpus_background_patients

    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED}: not found (this benchmark needs the development set and authentic CT)")
    return (ctgan_tampered_slices(SHARED / "ctgan-sample"),
            authentic_slices(SHARED / "authentic-ct", corpus_background_patients(data)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/deepfake_detection_model.keras")
    parser.add_argument("--data", default="data", help="the model's training corpus: its calibration slices, and its "
                        "background patients are left out of the authentic slices")
    parser.add_argument("--draws", type=int, default=3, help="draws of target levels and noise")
    parser.add_argument("--stride", type=int, help=STRIDE_HELP)
    parser.add_argument("--out", default="reports")
    args = parser.parse_args()
    from utils.calibration import calibration_slices
    from utils.operating_point import load_model

    items = development_slices(args.data)
    model = load_model(args.model)
    calibration = slice_scores(model, calibration_slices(args.data)[0], args.stride)
    known = ~np.isnan(calibration[:, 1])
    slope, fallback = noise_slope(*calibration[known].T), float(np.median(calibration[known, 1]))
    cal = judged(calibration, slope, fallback)
    thresholds = {name: {rate: float(np.quantile(v, 1 - rate)) for rate in RATES} for name, v in cal.items()}
    point = (getattr(model, "operating_point", None) or {}).get("slice")
    if point:  # what `scan` judges by: the model's stored slice thresholds, wherever they were chosen
        thresholds[STORED] = {rate: float(logit(point["thresholds"][f"{rate:g}"])) for rate in RATES}

    tampered, authentic = ([item.slice for item in group] for group in items)
    rows = {"tampered": slice_scores(model, tampered, args.stride),
            "as stored": slice_scores(model, authentic, args.stride)}
    targets = rows["tampered"][~np.isnan(rows["tampered"][:, 1]), 1]
    own, gain = [fine_level(s) for s in authentic], fine_gain()
    for draw in range(args.draws):
        rng = np.random.default_rng([draw, 7])
        noisy = [replace(s, hu=matched(s.hu, level, float(rng.choice(targets)), rng, gain),
                         meta={k: v for k, v in s.meta.items() if k != "lungs"}) for s, level in zip(authentic, own)]
        rows[f"noise-matched {draw}"] = slice_scores(model, noisy, args.stride)
        print(f"draw {draw} scanned", flush=True)
    scored = {k: judged(v, slope, fallback) for k, v in rows.items()}
    for v in scored.values():
        v[STORED] = v["top-1"]
    report = {"model": args.model, "slope": slope, "calibration_slices": len(calibration),
              "slices": {k: len(v) for k, v in rows.items()},
              "fine_band": {k: [float(np.nanmedian(v[:, 1])), float(np.nanmin(v[:, 1])), float(np.nanmax(v[:, 1]))]
                            for k, v in {"calibration": calibration, **rows}.items()},
              "scores": {}}
    for name in thresholds:
        stored = separation(scored["tampered"][name], scored["as stored"][name], thresholds[name])
        draws = [separation(scored["tampered"][name], scored[f"noise-matched {d}"][name], thresholds[name])
                 for d in range(args.draws)]
        report["scores"][name] = {"as stored": stored, "noise-matched": {
            k: [float(np.mean([d[k] for d in draws])), float(min(d[k] for d in draws)), float(max(d[k] for d in draws))]
            for k in draws[0]}}
    md = markdown(report, args.draws)
    write_report(args.out, "noise_matched", md, report)


def markdown(report: dict, draws: int) -> str:
    def cell(v):
        return f"{v:.3f}" if not isinstance(v, list) else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"

    def level(key):
        m, lo, hi = report["fine_band"][key]
        return f"{m:.1f} [{lo:.1f}, {hi:.1f}]"

    matched_levels = np.array([report["fine_band"][k] for k in report["fine_band"] if k.startswith("noise-matched")])
    n = report["slices"]
    head = (f"Model {report['model']}; {n['tampered']} real tampered slices, {n['as stored']} authentic slices of "
            f"other scanners (with lungs). Fine band, median [min, max] HU: tampered {level('tampered')}, "
            f"authentic as stored {level('as stored')}, noise-matched {np.median(matched_levels[:, 0]):.1f} "
            f"(draw medians), calibration slices {level('calibration')}; noise-conditional slope "
            f"{report['slope']:.2f} logit per log HU ({report['calibration_slices']} calibration slices).\n\n")
    equal = [k for k in report["scores"]["top-1"]["as stored"] if k.startswith("found_at_")]
    lines = ["| slice score | authentic slices | slice ROC-AUC | at 5%: authentic / tampered flagged | "
             f"at 1%: the same | tampered found where {' / '.join(k.removeprefix('found_at_') for k in equal)} of the "
             f"{report['slices']['as stored']} authentic slices are flagged |", "|---|---|---|---|---|---|"]
    for name, by in report["scores"].items():
        for which, v in (("as stored", by["as stored"]), (f"noise-matched ({draws} draws)", by["noise-matched"])):
            lines.append(f"| {name} | {which} | {cell(v['slice_auc'])} | "
                         + " | ".join(f"{cell(v[f'authentic_flagged_{r}'])} / {cell(v[f'tampered_flagged_{r}'])}"
                                      for r in RATES) + " | "
                         + " / ".join(cell(v[k]) for k in equal) + " |")
    return head + "\n".join(lines)


if __name__ == "__main__":
    main()
