"""Where CT-GAN's output carries resampling, where the emulation does, and what a model makes of it.

    python -m benchmarks.resampling_traces [--model models/deepfake_detection_model.keras] [--data data]

- Box edge (`texture.box_edge_ratio`): the fine band just inside the 64 px touch-up box around each tampered point
  against just outside it. CT-GAN blends the box back into the *original* slice, so a slice resampled as a whole
  around an unresampled box shows a ratio above 1; a slice resampled nowhere but in the in-painted cube shows 1.
  Real tampered slices of the development set against emulated tampering of the shipped backgrounds and of
  synthetic scans, with the whole slice resampled (`resample_tampered` 1) and with only the in-painted cubes (0).
- Power near Nyquist (`texture.high_band_share`, away from every tampered point): real tampered slices as stored and
  after one more 1 mm round trip, beside authentic CT of other scanners as stored and after one.
- With `--model`: the real tampered slices and the authentic slices of other scanners (training backgrounds'
  patients left out) scanned as stored and after CT-GAN's round trip, each judged by its best window. A detector
  of tampering should not care whether an authentic slice went through a resampling.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from utils.lungmask import lung_mask
from utils.slice_evaluation import authentic_slices, ctgan_tampered_slices
from utils.synthetic import SHIPPED_BACKGROUNDS, CorpusConfig, background_sources, resampled_hu, synthetic_scan
from utils.tamper import TOUCHUP_PX, pick_targets, tamper_slice
from utils.texture import box_edge_ratio, high_band_share

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _measured(values) -> np.ndarray:
    return np.asarray([x for x in values if x is not None], float)


def _quartiles(v: np.ndarray) -> str:
    if not len(v):
        return ""
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{med:.3f} [{q1:.3f}, {q3:.3f}]"


def _stats(values) -> str:
    v = _measured(values)
    return f"| {len(v)} | {_quartiles(v)} | {np.mean(v > 1) if len(v) else float('nan'):.2f} |"


def _ratios(hu, spacing, points) -> list:
    hu = np.asarray(hu, np.float32)
    lungs = lung_mask(hu, spacing)
    return [box_edge_ratio(hu, int(x), int(y), TOUCHUP_PX // 2, spacing, lungs) for x, y in points]


def emulated(resample_whole: bool, n_synthetic: int):
    """{kind: [box edge ratios]} of emulated tampering: the shipped backgrounds (each slice injected and removed
    once) and `n_synthetic` tampered synthetic scans."""
    out = {"background FM": [], "background FB": [], "synthetic FM": [], "synthetic FB": []}
    rng = np.random.default_rng(0)
    for _, slices in background_sources(SHIPPED_BACKGROUNDS):
        for sl in slices:
            hu, spacing = np.asarray(sl.hu, np.float32), sl.spacing[1]
            lungs = lung_mask(hu, spacing)
            for action, kind in (("inject", "FM"), ("remove", "FB")):
                points = pick_targets(hu, lungs, spacing, rng, 1)
                tampered, _ = tamper_slice(hu, spacing, [(x, y, action) for x, y in points], rng, lungs=lungs,
                                           resample_whole=resample_whole)
                out[f"background {kind}"] += _ratios(tampered, spacing, points)
    cfg = CorpusConfig(slices_per_scan=2, tampers_per_slice=1, seed=7, resample_tampered=float(resample_whole))
    index, done = 0, 0
    while done < n_synthetic:
        scan = synthetic_scan(index, cfg)
        index += 1
        if scan.kind not in ("FM", "FB"):
            continue
        done += 1
        for inst, sl in scan.slices.items():
            points = [(r.x, r.y) for r in scan.labels if r.tampered and r.slice == inst]
            out[f"synthetic {scan.kind}"] += _ratios(sl.hu, sl.spacing[1], points)
    return out


def model_rows(model_path: str, data: str, tampered, stride: int) -> list[str]:
    from sklearn.metrics import roc_auc_score

    from utils.operating_point import load_model
    from utils.scan import scan_slice
    from utils.synthetic import corpus_background_patients

    model = load_model(model_path)

    def top(hu, spacing):
        try:
            return float(scan_slice(model, hu, spacing, stride=stride, top_k=1).locations[0].score)
        except ValueError:  # no lungs
            return None

    real = np.array([top(t.slice.hu, t.slice.spacing[1]) for t in tampered], float)
    real_again = np.array([top(resampled_hu(t.slice.hu, t.slice.spacing[1]), t.slice.spacing[1]) for t in tampered],
                          float)
    plain, resampled = [], []
    for a in authentic_slices(SHARED / "authentic-ct", corpus_background_patients(data)):
        hu, spacing = np.asarray(a.slice.hu, np.float32), a.slice.spacing[1]
        p = top(hu, spacing)
        if p is not None:
            plain.append(p)
            resampled.append(top(resampled_hu(hu, spacing), spacing))
    plain, resampled = np.array(plain), np.array(resampled, float)
    auc = lambda t, a: roc_auc_score(np.r_[np.ones(len(t)), np.zeros(len(a))], np.r_[t, a])  # noqa: E731
    return [f"Model {model_path}: the best window's score of {len(real)} real tampered slices and {len(plain)} "
            "authentic slices of other scanners, as stored and after CT-GAN's 1 mm round trip:", "",
            "| real tampered | authentic | median best window: real tampered / authentic | slice ROC-AUC |",
            "|---|---|---|---|",
            f"| as stored | as stored | {np.median(real):.3f} / {np.median(plain):.3f} | {auc(real, plain):.3f} |",
            f"| as stored | after a round trip | {np.median(real):.3f} / {np.median(resampled):.3f} | "
            f"{auc(real, resampled):.3f} |",
            f"| after a round trip | after a round trip | {np.median(real_again):.3f} / {np.median(resampled):.3f} | "
            f"{auc(real_again, resampled):.3f} |", "",
            f"Authentic slices scoring lower after the round trip: {np.mean(resampled < plain):.2f}; mean change "
            f"{np.mean(resampled - plain):+.3f}. Real tampered slices: {np.mean(real_again < real):.2f}, "
            f"{np.mean(real_again - real):+.3f}."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="also scan authentic slices as stored and resampled with this model")
    parser.add_argument("--data", default="data", help="the model's corpus: its background patients are left out")
    parser.add_argument("--synthetic", type=int, default=24, help="tampered synthetic scans per setting")
    parser.add_argument("--stride", type=int, default=16)
    args = parser.parse_args()
    if not (SHARED / "ctgan-sample").is_dir():
        raise SystemExit(f"{SHARED / 'ctgan-sample'} is absent: this benchmark compares against real CT-GAN output")
    tampered = ctgan_tampered_slices(SHARED / "ctgan-sample")
    lines = ["Fine band just inside the touch-up box / just outside it (1 = one resampling history):", "",
             "| tampered slices | points | median [quartiles] | share above 1 |", "|---|---|---|---|"]
    for kind in ("FM", "FB"):
        ratios = [r for t in tampered if t.kind == kind for r in _ratios(t.slice.hu, t.slice.spacing[1], t.targets)]
        lines.append(f"| development set (real CT-GAN) {kind} " + _stats(ratios))
    for whole, name in ((True, "whole slice resampled"), (False, "in-painted cubes only")):
        for kind, ratios in emulated(whole, args.synthetic).items():
            lines.append(f"| emulated, {name}: {kind} " + _stats(ratios))
    lines += ["", "Power at 0.40-0.50 cycles/px relative to 0.10-0.20, lung parenchyma away from tampered points:", "",
              "| slices | measured | as stored, median [quartiles] | after one more 1 mm round trip |",
              "|---|---|---|---|"]
    sources = [("development set (real CT-GAN tampered)", [(t.slice, t.targets) for t in tampered])]
    if (SHARED / "authentic-ct").is_dir():
        sources.append(("authentic CT of other scanners (every third slice)",
                        [(a.slice, ()) for a in authentic_slices(SHARED / "authentic-ct")][::3]))
    for name, items in sources:
        stored = _measured(high_band_share(s.hu, s.spacing[1], avoid=pts) for s, pts in items)
        again = _measured(high_band_share(resampled_hu(s.hu, s.spacing[1]), s.spacing[1], avoid=pts)
                          for s, pts in items)
        lines.append(f"| {name} | {len(stored)} | {_quartiles(stored)} | {_quartiles(again)} |")
    if args.model:
        lines += [""] + model_rows(args.model, args.data, tampered, args.stride)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
