"""Why is authentic CT flagged? Flag rates of a trained model as scanner properties of authentic slices change.

    python -m benchmarks.false_alarm_map [--model models/deepfake_detection_model.keras] [--per-slice 4]

Authentic slices of scanners never used in training (`../shared/data/authentic-ct`: COVID-CT-MD, the TCIA
Lung-PET-CT-Dx B40f series, the LIDC slice; patients whose slices are training backgrounds are left out) are
changed one property at a time on the whole HU slice, as a scanner or a hospital's processing would change them,
and the same random lung points are cut after each change (`patches.crop_hu`, the training window; a comparing
model's reference windows are cut from the same changed slice, as a scanner changes every region alike). Printed
per setting: the share of patches flagged at the model's stored operating point and at 0.5, and the mean score.
A property whose range lifts the flag rate is a cue the model reads that is not tampering: the training data must
cover that range in both classes.

Properties: reconstruction kernel (softer: Gaussian blur; sharper: unsharp mask), added scanner noise (ramp-
spectrum correlated noise, `anatomy.correlated_noise`), CT-GAN's 1 mm resampling round trip, an HU offset, and
the reconstruction's field of view: the slice resampled to another pixel size (the points moved with it), beside
a control that resamples there and back, so that the pixel size's effect is told from the resampling's.
Slice thickness is not swept: the authentic series here are not contiguous slices.
Writes reports/false_alarm_map.md and .json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks import write_report

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def settings() -> dict:
    """name -> function (hu, spacing, rng) -> hu of the same shape."""
    from utils.anatomy import blur, correlated_noise
    from utils.tamper import resample_roundtrip

    def keep_padding(fn):
        def apply(hu, spacing, rng):
            out = fn(hu, spacing, rng)
            return np.where(hu <= -1500, hu, np.rint(np.clip(out, -1024, 3071))).astype(np.float32)
        return apply

    out = {"as stored": lambda hu, spacing, rng: hu}
    for sigma in (0.5, 1.0, 1.5):
        out[f"softer kernel: blur {sigma} px"] = keep_padding(lambda hu, sp, rng, s=sigma: blur(hu, s))
    for amount in (0.5, 1.0, 2.0):
        out[f"sharper kernel: unsharp x{amount}"] = keep_padding(
            lambda hu, sp, rng, a=amount: hu + a * (hu - blur(hu, 1.0)))
    for sigma in (10, 20, 40):
        out[f"added noise {sigma} HU (sharp spectrum)"] = keep_padding(
            lambda hu, sp, rng, s=sigma: hu + correlated_noise(rng, hu.shape, s, 0.9))
        out[f"added noise {sigma} HU (soft spectrum)"] = keep_padding(
            lambda hu, sp, rng, s=sigma: hu + correlated_noise(rng, hu.shape, s, 0.3))
    out["CT-GAN resampling round trip (1 mm)"] = keep_padding(lambda hu, sp, rng: resample_roundtrip(hu, sp))
    for offset in (-50, 50):
        out[f"HU offset {offset:+d}"] = keep_padding(lambda hu, sp, rng, o=offset: hu + o)
    return out


PIXEL_SIZES_MM = (0.5, 0.95)  # a smaller and a larger reconstruction field than these scanners' (0.59-0.86 mm)


def field_of_view_settings() -> dict:
    """name -> (pixel size in mm, round trip): the slice shown at another pixel size, or resampled there and
    back to its own (the control)."""
    out = {}
    for mm in PIXEL_SIZES_MM:
        out[f"field of view: {mm:.2f} mm pixels"] = (mm, False)
        out[f"control: resampled via {mm:.2f} mm and back"] = (mm, True)
    return out


def at_pixel_size(hu: np.ndarray, spacing: float, mm: float, round_trip: bool = False) -> tuple[np.ndarray, float]:
    """The slice resampled to `mm` pixels (area averaging to coarser pixels, cubic to finer ones; padding outside
    the field of view set to air first), or there and back; and the factor that maps pixel coordinates."""
    import cv2

    def resize(img, shape):
        finer = shape[0] > img.shape[0]
        return cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC if finer else cv2.INTER_AREA)

    hu = np.where(hu <= -1500, -1024.0, hu).astype(np.float32)
    factor = spacing / mm
    out = resize(hu, (round(hu.shape[0] * factor), round(hu.shape[1] * factor)))
    if round_trip:
        out, factor = resize(out, hu.shape), 1.0
    return np.clip(np.rint(out), -1024, 3071).astype(np.float32), factor


def grouped_slices(root: Path, exclude_patients=()):
    """(group, slice) of every authentic slice under root, in file order; groups: COVID-CT-MD, TCIA B40f, LIDC."""
    from utils.slice_evaluation import authentic_slices

    for item in sorted(authentic_slices(root, exclude_patients), key=lambda a: Path(a.slice.path)):
        series = item.series
        yield ("COVID-CT-MD" if series.startswith("covid") else "TCIA B40f" if "B40f" in series else "LIDC"), item.slice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/deepfake_detection_model.keras")
    parser.add_argument("--per-slice", type=int, default=4, help="random lung points per slice")
    parser.add_argument("--authentic", default=str(SHARED / "authentic-ct"))
    parser.add_argument("--data", default="data", help="the model's training corpus: its background patients are "
                        "left out")
    parser.add_argument("--out", default="reports")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--references", type=int, default=1,
                        help="a comparing model's reference windows per patch, cut from the same changed slice "
                             "(`scan.window_scores`; the lowest score counts)")
    args = parser.parse_args()
    root = Path(args.authentic)
    if not root.is_dir():
        raise SystemExit(f"{root}: authentic CT not found (this benchmark needs ../shared/data/authentic-ct)")
    import keras

    import utils.layers  # noqa: F401  (registers the custom layers)
    from utils.lungmask import cached_lung_mask, lung_mask, sample_lung_points
    from utils.operating_point import stored_threshold
    from utils.patches import PATCH_SIZE
    from utils.scan import window_scores
    from utils.synthetic import corpus_background_patients

    model = keras.models.load_model(args.model, compile=False)
    threshold, source = stored_threshold(args.model, "patch")
    rng = np.random.default_rng(args.seed)
    slices, points, groups, lungs_of = [], [], [], []
    for group, sl in grouped_slices(root, corpus_background_patients(args.data)):
        lungs = cached_lung_mask(sl)
        if lungs.sum() < 3000:
            continue
        pts = sample_lung_points(sl.hu, lungs, sl.spacing[1], rng, args.per_slice, margin=PATCH_SIZE // 2)
        if pts:
            slices.append(sl)
            points.append(pts)
            groups.append(group)
            lungs_of.append(lungs)
    rows, report = [], {"model": args.model, "threshold": threshold, "threshold_source": source, "settings": {}}
    changes = {name: (change, None) for name, change in settings().items()}
    changes.update({name: (None, fov) for name, fov in field_of_view_settings().items()})
    for name, (change, fov) in changes.items():
        scores, by_group = [], []
        for i, (sl, pts, group) in enumerate(zip(slices, points, groups)):
            spacing, lungs, yx = sl.spacing[1], lungs_of[i], np.array([(y, x) for x, y in pts])
            if fov is None:
                hu = change(sl.hu, spacing, np.random.default_rng([args.seed, i]))
            else:
                hu, factor = at_pixel_size(sl.hu, spacing, *fov)
                if factor != 1.0:
                    spacing, lungs = fov[0], lung_mask(hu, fov[0])
                    yx = np.rint((yx + 0.5) * factor - 0.5).astype(int)
            scores += list(window_scores(model, hu, yx, lungs, spacing, sl.instance, str(sl.path),
                                         references=args.references))
            by_group += [group] * len(pts)
        scores, by_group = np.asarray(scores), np.asarray(by_group)
        entry = {"n": int(len(scores)), "flagged_op": float(np.mean(scores >= threshold)),
                 "flagged_0.5": float(np.mean(scores >= 0.5)), "mean_score": float(scores.mean()),
                 "flagged_op_by_source": {g: float(np.mean(scores[by_group == g] >= threshold))
                                          for g in sorted(set(by_group))}}
        report["settings"][name] = entry
        rows.append(f"| {name} | {entry['flagged_op']:.3f} | "
                    + " | ".join(f"{v:.3f}" for v in entry["flagged_op_by_source"].values())
                    + f" | {entry['flagged_0.5']:.3f} | {entry['mean_score']:.3f} |")
        print(rows[-1], flush=True)
    sources = sorted(set(groups))
    head = (f"Model {Path(args.model).name}, threshold {threshold:.3f} ({source}); "
            f"{sum(map(len, points))} authentic lung patches "
            f"of {len(slices)} slices.\n\n"
            "| setting | flagged at operating point | " + " | ".join(f"… {g}" for g in sources)
            + " | flagged at 0.5 | mean score |\n|" + "---|" * (4 + len(sources)))
    md = head + "\n" + "\n".join(rows)
    write_report(args.out, "false_alarm_map", md, report)


if __name__ == "__main__":
    main()
