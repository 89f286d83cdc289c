"""Time and memory of generating the default embedded corpus.

    python -m benchmarks.corpus_speed [--scans 80] [--workers 2]

Prints wall time (generation + PNG writing, imports excluded), patches per second and peak resident memory
of this process and of its worker processes.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time

from utils.patches import read_manifest, summarize
from utils.synthetic import CorpusConfig, build_synthetic_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=CorpusConfig.n_scans)
    parser.add_argument("--workers", type=int, default=CorpusConfig.workers)
    args = parser.parse_args()
    cfg = CorpusConfig(n_scans=args.scans, workers=args.workers)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        manifest = build_synthetic_corpus(out, cfg, progress=False)
        seconds = time.perf_counter() - start
        rows = read_manifest(manifest)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"scans {cfg.n_scans} x {cfg.slices_per_scan} slices, workers {cfg.workers}: {len(rows)} patches in "
          f"{seconds:.1f} s ({len(rows) / seconds:.0f} patches/s); peak RSS main {own:.0f} MB, "
          f"largest worker {kids:.0f} MB")
    print(summarize(rows))


if __name__ == "__main__":
    main()
