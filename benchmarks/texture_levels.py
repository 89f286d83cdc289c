"""Fine- and mid-band texture level (HU, robust spread over lung parenchyma; `utils.texture`) per source.

    python -m benchmarks.texture_levels [--synthetic 16]

The number a per-slice normalisation divides by: how far scanners, CT-GAN's output and the synthetic corpus
differ in noise and fine texture before any model sees them. Prints median [min, max] per source.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from utils.dicom import read_slice
from utils.synthetic import SHIPPED_BACKGROUNDS, CorpusConfig, synthetic_scan
from utils.texture import band_levels

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _row(name: str, slices) -> str:
    levels = np.asarray([lv for lv in (band_levels(s.hu, s.spacing[1]) for s in slices) if lv])
    if not len(levels):
        return f"| {name} | 0 | | |"
    cells = [f"{np.median(levels[:, i]):.1f} [{levels[:, i].min():.1f}, {levels[:, i].max():.1f}]" for i in (0, 1)]
    return f"| {name} | {len(levels)} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=16, help="synthetic scans (first slice of each)")
    args = parser.parse_args()
    rows = ["| source | slices | fine band (HU) | mid band (HU) |", "|---|---|---|---|"]
    rows.append(_row("shipped backgrounds (Lung-PET-CT-Dx B40f)",
                     [read_slice(p) for p in sorted(SHIPPED_BACKGROUNDS.rglob("*.dcm"))]))
    if SHARED.is_dir():
        rows.append(_row("CT-GAN development set", [read_slice(p) for p in
                                                    sorted((SHARED / "ctgan-sample").rglob("*.dcm"))]))
        for patient in sorted((SHARED / "authentic-ct" / "covid-ct-md").glob("*")):
            rows.append(_row(f"COVID-CT-MD {patient.name}", [read_slice(p) for p in sorted(patient.glob("*.dcm"))[::4]]))
    else:
        print(f"(no {SHARED}: real sources left out)")
    for name, cfg in (("synthetic corpus", CorpusConfig()),
                      ("synthetic corpus before edge-enhancing kernels (`CorpusConfig(edge_enhancement=0)`)",
                       CorpusConfig(edge_enhancement=0.0))):
        scans = [synthetic_scan(i, cfg) for i in range(args.synthetic)]
        rows.append(_row(name, [s.slice(sorted(s.slices)[0]) for s in scans]))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
