"""Where tampered points sit in the lungs, as the scanner sees them: the development set's against the corpus's.

    python -m benchmarks.target_depth [--copies 8] [--close-mm 5 10]

For every tampered point, on its own tampered slice (the slice `scan` judges): whether the point lies inside the
slice's lung mask, its depth inside that mask (mm), and how far the nearest window centre of `scan`'s grid lies
(px). A dense nodule on the pleura is a bay in the lungs' air; a closing narrower than the bay leaves it out of the
mask, and no window is then centred on it. The development set's injections (FM) and removals (FB) stand against the
corpus's emulation of both on the shipped real backgrounds (the default corpus's own first `--copies` tampered copies
of each kind), once per lung-mask closing given.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def target_sites(hu: np.ndarray, spacing: float, points, close_mm: float, stride: int = 16) -> list[tuple]:
    """(inside the lung mask, depth in mm, nearest window centre in px) of each (x, y) point of one slice."""
    from utils.lungmask import lung_mask, patch_centres
    from utils.scan import grid_points

    lungs = lung_mask(hu, spacing, close_mm=close_mm)
    depth = ndimage.distance_transform_edt(lungs) * spacing
    grid = grid_points(patch_centres(lungs, spacing), stride)
    out = []
    for x, y in points:
        nearest = float(np.min(np.hypot(grid[:, 1] - x, grid[:, 0] - y))) if len(grid) else float("inf")
        out.append((bool(lungs[y, x]), float(depth[y, x]), nearest))
    return out


def development_points() -> dict[str, list]:
    """kind -> [(hu, spacing, [(x, y)])] of the development set's tampered slices."""
    from utils.slice_evaluation import ctgan_tampered_slices

    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED}: not found (this benchmark needs the development set)")
    out = {"FM": [], "FB": []}
    for t in ctgan_tampered_slices(SHARED / "ctgan-sample"):
        out[t.kind.split("+")[0]].append((t.slice.hu, t.slice.spacing[1], t.targets))
    return out


def corpus_points(copies: int) -> dict[str, list]:
    """The same for the corpus's emulated tampering of the shipped real backgrounds: the default corpus's own first
    `copies` tampered copies of each kind (`synthetic.background_copy`)."""
    from utils.synthetic import (SHIPPED_BACKGROUNDS, CorpusConfig, authentic_copies, background_copy,
                                 background_sources)

    cfg = CorpusConfig()
    first = authentic_copies(cfg.background_variants)  # the authentic copies come first
    out = {"FM": [], "FB": []}
    for source, slices in background_sources(SHIPPED_BACKGROUNDS):
        for v in range(first, first + 2 * min(copies, cfg.background_variants // 2)):
            kind, scan, _ = background_copy(source, slices, cfg, v, cfg.background_variants)
            for inst in sorted({r.slice for r in scan.labels if r.type == kind}):
                sl = scan.slices[inst]
                out[kind].append((sl.hu, sl.spacing[1], [(r.x, r.y) for r in scan.labels
                                                         if r.type == kind and r.slice == inst]))
    return out


def summary(items, close_mm: float, stride: int) -> str:
    rows = [s for hu, spacing, points in items for s in target_sites(hu, spacing, points, close_mm, stride)]
    inside = np.array([r[0] for r in rows])
    depth = np.array([r[1] for r in rows])
    nearest = np.array([r[2] for r in rows])
    q = np.percentile(depth, [25, 50, 75])
    return (f"{len(rows)} | {1 - inside.mean():.1%} | {q[1]:.1f} [{q[0]:.1f}, {q[2]:.1f}] | {np.median(nearest):.1f} | "
            f"{np.mean(nearest > 12):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8, help="tampered copies of the shipped backgrounds per kind")
    parser.add_argument("--close-mm", type=float, nargs="+", default=None,
                        help="lung-mask closings to compare (mm; default: lung_mask's own)")
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--out", default="reports/target_depth.md")
    args = parser.parse_args()
    from utils.lungmask import CLOSE_MM

    closings = args.close_mm or [CLOSE_MM]
    sets = {"development set (CT-GAN)": development_points(),
            "corpus on the shipped backgrounds": corpus_points(args.copies)}
    lines = ["| points | kind | lung-mask closing (mm) | n | outside their slice's mask | depth in the mask, mm: median "
             "[quartiles] | nearest window centre, px (median) | nearest window > 12 px |",
             "|---|---|---|---|---|---|---|---|"]
    for name, by_kind in sets.items():
        for kind, items in by_kind.items():
            for close in closings:
                lines.append(f"| {name} | {kind} | {close:g} | {summary(items, close, args.stride)} |")
    table = "\n".join(lines)
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
