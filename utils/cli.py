"""Command line: `python -m utils.cli {synth,prepare-ctgan,train,evaluate,explain,scan} --help`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _synth(args) -> int:
    from .patches import read_manifest, summarize
    from .synthetic import CorpusConfig, background_patches, synthetic_patches, write_corpus

    cfg = CorpusConfig(n_scans=args.scans, slices_per_scan=args.slices, difficulty=args.difficulty,
                       seed=args.seed, workers=args.workers)
    if args.backgrounds:
        groups = (g for root in args.backgrounds for g in background_patches(root, cfg, variants=args.variants))
    else:
        groups = synthetic_patches(cfg)
    manifest = write_corpus(groups, args.out, cfg)
    print(f"wrote {manifest}")
    print(summarize(read_manifest(manifest)))
    return 0


def _prepare(args) -> int:
    from .ctgan import prepare_ctgan
    from .patches import read_manifest, summarize

    manifest = prepare_ctgan(args.root, args.out, seed=args.seed, protocol=args.protocol,
                             neighbours=args.neighbours, skip_corrupt=args.skip_corrupt)
    print(f"wrote {manifest}")
    print(summarize(read_manifest(manifest)))
    return 0


def _contact(args) -> int:
    from .plots import contact_sheet, manifest_groups

    rows = {}
    for label, folder in zip(args.labels or [Path(d).name for d in args.corpora], args.corpora):
        rows.update(manifest_groups(folder, prefix=f"{label} ", n=args.n))
    print(f"wrote {contact_sheet(rows, args.out, per_row=args.n)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m utils.cli",
        description="Detect CT-GAN-style tampering in lung CT: build patch corpora, train, evaluate, explain, scan.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate the embedded corpus (synthetic anatomy, or real backgrounds)",
                       description="Generate patches of CT-GAN-style tampering (inject / remove) and authentic "
                       "patches, split by scan, as OUT/{train,val,test}/{real,fake}/*.png + OUT/manifest.csv.")
    p.add_argument("--out", default="data", help="output folder (default: data)")
    p.add_argument("--backgrounds", nargs="+", metavar="DIR",
                   help="tamper these authentic DICOM slices/series (or a CT-GAN data set's untouched parts) "
                   "instead of synthetic anatomy")
    p.add_argument("--scans", type=int, default=80, help="synthetic scans (default 80)")
    p.add_argument("--slices", type=int, default=10, help="slices per synthetic scan (default 10)")
    p.add_argument("--variants", type=int, default=4, help="tampered copies per background slice (default 4)")
    p.add_argument("--difficulty", type=float, default=0.5, help="0..1; 0.5 = CT-GAN's touch-up settings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes for synthetic scans (default 2)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("prepare-ctgan", help="cut patches from the real CT-GAN data set",
                       description="Read the CT-GAN data set (Kaggle or UCI layout) and write its patches "
                       "(tampered, authentic cancer, matched controls, random lung) split by scan.")
    p.add_argument("root", help="data set root (holding labels_exp*.csv and the scan folders)")
    p.add_argument("--out", default="data/ctgan")
    p.add_argument("--protocol", choices=("random", "exp1-exp2", "test"), default="random",
                   help="split by scan at random, blind trial -> open trial, or everything as test")
    p.add_argument("--neighbours", action="store_true", help="also cut neighbouring slices inside the cube")
    p.add_argument("--skip-corrupt", action="store_true", help="skip unreadable scans with a warning")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_prepare)

    p = sub.add_parser("contact-sheet", help="patches of several corpora side by side (PNG)",
                       description="One row per corpus and kind (FM, FB, TM, control) of random patches.")
    p.add_argument("corpora", nargs="+", help="corpus folders holding manifest.csv")
    p.add_argument("--labels", nargs="+", help="row labels, one per corpus")
    p.add_argument("--n", type=int, default=8, help="patches per row")
    p.add_argument("--out", default="reports/contact_sheet.png")
    p.set_defaults(func=_contact)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
