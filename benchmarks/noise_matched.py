"""How much of the slice-level separation is scanner noise? Authentic slices brought to the tampered slices' level.

    python -m benchmarks.noise_matched [--model models/deepfake_detection_model.keras] [--data data] [--draws 3]

The development set's tampered slices come from CT-GAN's scans (LIDC-IDRI, many of them low-dose), whose fine
texture band is louder than that of the authentic slices of other scanners they are compared with
(`benchmarks.texture_levels`: fine band 19.8 HU median against 13.5-16.9 for COVID-CT-MD). A detector that reads
noise as tampering (`benchmarks.false_alarm_map`) then separates the two sets partly by scanner. Here every
authentic slice of another scanner (`slice_evaluation.authentic_slices`, training backgrounds' patients left out)
is given the fine-band level of a tampered slice drawn at random (`texture.band_levels`, robust spread of HU minus
a 1 px blur over lung parenchyma), by adding scanner-like correlated noise (`anatomy.correlated_noise`) where it is
quieter, and both sets are scanned as `scan` scans them (`slice_evaluation.evaluate_slices`). Printed: slice
ROC-AUC, top-1 within 24 px and the slices flagged at the model's stored slice thresholds, as stored and
noise-matched (mean and range over `--draws` draws of levels and noise).
Writes reports/noise_matched.md and .json.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NOISE_CUTOFF = 0.6  # noise spectrum roll-off (fraction of Nyquist): between the soft and sharp kernels of the map


def fine_gain(cutoff: float = NOISE_CUTOFF, size: int = 256, seed: int = 0) -> float:
    """Fine-band level (HU) of unit correlated noise of that spectrum: what one HU of added noise adds."""
    from utils.anatomy import correlated_noise
    from utils.texture import bands, robust_sigma

    noise = correlated_noise(np.random.default_rng(seed), (size, size), 1.0, cutoff)
    return robust_sigma(bands(noise)[1][0])


def matched(hu: np.ndarray, spacing: float, target: float, rng: np.random.Generator, gain: float) -> np.ndarray:
    """The slice with noise added so that its fine-band level reaches `target` HU (unchanged where it is already
    as loud, or has too little parenchyma to measure); padding outside the field of view stays."""
    from utils.anatomy import correlated_noise
    from utils.texture import band_levels

    levels = band_levels(hu, spacing)
    if not levels or levels[0] >= target:
        return hu
    sigma = np.sqrt(target**2 - levels[0] ** 2) / gain
    noisy = np.rint(np.clip(hu + correlated_noise(rng, hu.shape, sigma, NOISE_CUTOFF), -1024, 3071))
    return np.where(hu <= -1500, hu, noisy).astype(np.float32)


def _summary(metrics: dict) -> dict:
    out = {"slice_auc": metrics["slice_auc"], "top1_within_24px": metrics["top1_within_24px"]}
    for rate, at in metrics.get("at_rates", {}).items():
        out[f"authentic_flagged_{rate}"] = at["authentic_flagged"]
        out[f"tampered_flagged_{rate}"] = at["tampered_flagged"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/deepfake_detection_model.keras")
    parser.add_argument("--data", default="data", help="the model's training corpus: its background patients are "
                        "left out of the authentic slices")
    parser.add_argument("--draws", type=int, default=3, help="draws of target levels and noise")
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--out", default="reports")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED}: not found (this benchmark needs the development set and authentic CT)")
    from utils.operating_point import load_model
    from utils.slice_evaluation import authentic_slices, ctgan_tampered_slices, evaluate_slices
    from utils.synthetic import corpus_background_patients
    from utils.texture import band_levels

    model = load_model(args.model)
    tampered = ctgan_tampered_slices(SHARED / "ctgan-sample")
    authentic = authentic_slices(SHARED / "authentic-ct", corpus_background_patients(args.data))
    levels = {name: [lv[0] for lv in (band_levels(s.hu, s.spacing[1]) for s in slices) if lv]
              for name, slices in (("tampered", [t.slice for t in tampered]),
                                   ("authentic", [a.slice for a in authentic]))}
    report = {"model": args.model, "levels": {k: [float(np.median(v)), float(min(v)), float(max(v))]
                                              for k, v in levels.items()}}
    stored = evaluate_slices(model, tampered, authentic, args.stride, progress=False)
    report["as stored"], report["slices"] = _summary(stored), {k: stored[k] for k in ("tampered", "authentic")}
    print("as stored", report["as stored"], flush=True)
    gain, draws, matched_levels = fine_gain(), [], []
    for draw in range(args.draws):
        rng = np.random.default_rng([draw, 7])
        noisy = []
        for a in authentic:
            target = float(rng.choice(levels["tampered"]))
            hu = matched(a.slice.hu, a.slice.spacing[1], target, rng, gain)
            noisy.append(replace(a, slice=replace(a.slice, hu=hu, meta={k: v for k, v in a.slice.meta.items()
                                                                      if k != "lungs"})))
        matched_levels += [lv[0] for lv in (band_levels(a.slice.hu, a.slice.spacing[1]) for a in noisy) if lv]
        draws.append(_summary(evaluate_slices(model, tampered, noisy, args.stride, progress=False)))
        print(f"draw {draw}", draws[-1], flush=True)
    report["noise-matched"] = {k: [float(np.mean([d[k] for d in draws])), float(min(d[k] for d in draws)),
                                   float(max(d[k] for d in draws))] for k in draws[0]}
    report["levels"]["authentic, noise-matched"] = [float(np.median(matched_levels)), float(min(matched_levels)),
                                                    float(max(matched_levels))]
    rows = ["| authentic slices of other scanners | fine band (HU), median [min, max] | slice ROC-AUC | "
            "top-1 within 24 px | " + " | ".join(f"at the {float(r):.0%} slice threshold: authentic / tampered "
                                                  "flagged" for r in sorted({k.rsplit('_', 1)[1] for k in draws[0]
                                                                             if k.startswith("authentic_flagged")}))
            + " |", "|---|---|---|---|" + "---|" * sum(k.startswith("authentic_flagged") for k in draws[0])]

    def cell(values, key):
        v = values[key]
        return f"{v:.3f}" if not isinstance(v, list) else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"

    rates = sorted({k.rsplit("_", 1)[1] for k in draws[0] if k.startswith("authentic_flagged")})
    for name, values, lv in (("as stored", report["as stored"], report["levels"]["authentic"]),
                             (f"noise-matched ({args.draws} draws)", report["noise-matched"],
                              report["levels"]["authentic, noise-matched"])):
        rows.append(f"| {name} | {lv[0]:.1f} [{lv[1]:.1f}, {lv[2]:.1f}] | {cell(values, 'slice_auc')} | "
                    f"{cell(values, 'top1_within_24px')} | " + " | ".join(
                        f"{cell(values, f'authentic_flagged_{r}')} / {cell(values, f'tampered_flagged_{r}')}"
                        for r in rates) + " |")
    t, n = report["levels"]["tampered"], report["slices"]
    md = (f"Model {args.model}; {n['tampered']} real tampered slices (fine band {t[0]:.1f} [{t[1]:.1f}, {t[2]:.1f}] "
          f"HU) against {n['authentic']} authentic slices of other scanners with lungs.\n\n" + "\n".join(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "noise_matched.md").write_text(md + "\n")
    (out / "noise_matched.json").write_text(json.dumps(report, indent=1))
    print(md)


if __name__ == "__main__":
    main()
