"""How a removal looks against the lung around it, per corpus, source and kind of patch.

    python -m benchmarks.removal_haze data/ctgan data [data_haze ...]

For every patch with enough lung (HU < -500 after a 1 px Gaussian blur) both inside 9 px of its centre and in the
ring 20-30 px away: *haze* = median smoothed HU inside minus that of the ring; *fine texture ratio* = median
absolute fine band (HU minus its 1 px blur) inside over the ring's; *structure ratio* = spread of the smoothed HU
inside over the ring's; *fine level inside / ring* = those two medians in HU. Prints median [quartiles] per (source,
kind), and the rank correlation (Spearman) of the fine texture ratio with the ring's fine level: near -1 where the
inside keeps a level of its own whatever the slice's noise (smoother than a noisy slice, rougher than a quiet one),
near 0 where the inside follows its slice. CT-GAN's removals (FB) of the development set against the corpus's
emulated ones is the comparison it was written for.
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import spearmanr

from utils.dicom import unwindow
from utils.patches import read_manifest

INNER_PX, RING_PX = 9, (20, 30)


def haze_stats(image: np.ndarray) -> tuple[float, float, float, float, float] | None:
    """(haze HU, fine texture ratio, structure ratio, fine level inside HU, fine level of the ring HU) of a
    lung-window patch (uint8), or None without lung."""
    hu = unwindow(image.astype(np.float32))
    h, w = hu.shape
    yy, xx = np.mgrid[:h, :w]
    dist = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    smooth = cv2.GaussianBlur(hu, (0, 0), 1.0)
    fine = hu - smooth
    inner = (dist < INNER_PX) & (smooth < -500)
    ring = (dist > RING_PX[0]) & (dist < RING_PX[1]) & (smooth < -500)
    if inner.sum() < 20 or ring.sum() < 20:
        return None
    haze = float(np.median(smooth[inner]) - np.median(smooth[ring]))
    level_in, level_ring = float(np.median(np.abs(fine[inner]))), float(np.median(np.abs(fine[ring])))
    structure = float(np.std(smooth[inner]) / max(np.std(smooth[ring]), 1e-3))
    return haze, level_in / max(level_ring, 1e-3), structure, level_in, level_ring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="+", help="corpus folders holding manifest.csv")
    args = parser.parse_args()
    lines = ["| corpus | source | kind | patches | haze (HU) | fine texture ratio | structure ratio | fine level inside / "
             "ring (HU) | rank correlation: ratio with the ring's level |", "|---|---|---|---|---|---|---|---|---|"]
    for corpus in map(Path, args.corpora):
        groups = defaultdict(list)
        for row in read_manifest(corpus / "manifest.csv"):
            image = cv2.imread(str(corpus / row["path"]), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise ValueError(f"{corpus / row['path']}: unreadable image file")
            stats = haze_stats(image)
            if stats is not None:
                groups[(row.get("source", ""), row["kind"])].append(stats)
        for (source, kind), values in sorted(groups.items()):
            values = np.asarray(values)
            q = np.percentile(values, [25, 50, 75], axis=0)
            cells = [f"{q[1, i]:.{d}f} [{q[0, i]:.{d}f}, {q[2, i]:.{d}f}]" for i, d in ((0, 0), (1, 2), (2, 2))]
            cells.append(f"{q[1, 3]:.1f} / {q[1, 4]:.1f}")
            rho = spearmanr(values[:, 1], values[:, 4])[0] if len(values) > 2 else float("nan")
            cells.append(f"{rho:+.2f}")
            lines.append(f"| {corpus} | {source} | {kind} | {len(values)} | " + " | ".join(cells) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
