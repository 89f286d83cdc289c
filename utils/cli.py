"""Command line: `python -m utils.cli {synth,prepare-ctgan,contact-sheet,train,evaluate,explain,scan,scan-archive,calibrate} --help`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _synth(args) -> int:
    from .patches import read_manifest, summarize
    from .synthetic import CorpusConfig, background_patches, build_synthetic_corpus, write_corpus

    cfg = CorpusConfig(n_scans=args.scans, slices_per_scan=args.slices, difficulty=args.difficulty,
                       seed=args.seed, workers=args.workers, shipped_backgrounds=not args.no_shipped_backgrounds,
                       backgrounds=tuple(args.add_backgrounds or ()),
                       background_variants=CorpusConfig.background_variants if args.variants is None else args.variants,
                       noise_mode_p=tuple(args.noise_mode_p or CorpusConfig.noise_mode_p),
                       removal_haze=tuple(args.removal_haze or CorpusConfig.removal_haze),
                       removal_texture=tuple(args.removal_texture or CorpusConfig.removal_texture),
                       resample_tampered=args.resample_tampered, resample_authentic=args.resample_authentic,
                       resample_history=args.resample_history, twins=args.twins,
                       fine_vessels=not args.coarse_vessels,
                       patch_size=args.patch_size, tampers_per_slice=args.tampers_per_slice,
                       **{k: getattr(args, k)
                          for k in ("matched_nodules", "lookalikes", "heterogeneous_nodules", "edge_enhancement",
                                    "rib_cage", "background_noise", "background_ground_glass", "jitter",
                                    "removal_nodules", "removal_share")
                          if getattr(args, k) is not None})
    if args.backgrounds:
        groups = (g for root in args.backgrounds
                  for g in background_patches(root, cfg, variants=cfg.background_variants))
        manifest = write_corpus(groups, args.out, cfg)
    else:
        manifest = build_synthetic_corpus(args.out, cfg)
    print(f"wrote {manifest}")
    print(summarize(read_manifest(manifest)))
    return 0


def _prepare(args) -> int:
    from .ctgan import prepare_ctgan
    from .patches import read_manifest, summarize

    manifest = prepare_ctgan(args.root, args.out, seed=args.seed, protocol=args.protocol,
                             neighbours=args.neighbours, skip_corrupt=args.skip_corrupt, size=args.patch_size,
                             jitter=args.jitter)
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


def _train(args) -> int:
    from .training import TrainConfig, run_training

    cfg = TrainConfig(data_dir=args.data, models_dir=args.models, seed=args.seed, batch_size=args.batch_size,
                      data_parallel=args.data_parallel)
    for name in ("cnn_epochs", "vit_epochs", "finetune_epochs", "max_train", "pretrain_epochs", "vit_init", "design",
                 "stem_padding", "hard_negative_epochs", "weight_average", "slice_calibration", "members"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    cfg.pretrain_dicom = tuple(args.pretrain_dicom or ())
    cfg.hard_negative_dicom = tuple(args.hard_negative_dicom or ())
    result = run_training(cfg, phases=tuple(args.phases), verbose=1 if args.verbose else 2)
    for phase, hist in result["histories"].items():
        best = (f"val AUC {max(hist['val_auc']):.3f}" if "val_auc" in hist
                else f"val masked-token error {min(hist['val_loss']):.3f}")
        print(f"{phase}: best epoch {hist['best_epoch']}, {best}, {hist['seconds']} s")
    for name, paths in result["paths"].items():
        print(f"saved {name}: " + " and ".join(paths.values()))
    return 0


def _load_model(path):
    """A saved Keras model with its operating points (`operating_point.load_model`), or a one-line error naming
    the file."""
    from .operating_point import load_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file (train one with `python -m utils.cli train`)")
    try:
        return load_model(path)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for a corrupt or foreign file
        raise ValueError(f"{path}: not a loadable Keras model ({type(err).__name__}: {str(err)[:200]})") from err


def _evaluate(args) -> int:
    from .evaluate import evaluate_on_testset

    model = _load_model(args.model)  # carries its stored operating point, used unless --threshold is given
    metrics = evaluate_on_testset(model, args.test_dir, threshold=args.threshold, bootstrap=args.bootstrap,
                                  reference_only=args.reference_only or None)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key}: {value}")
    return 0


def _explain(args) -> int:
    import numpy as np

    from .data import read_image

    if not args.images and not args.slice:
        raise ValueError("explain: give patch images, or a DICOM slice with --slice")
    model = _load_model(args.model)
    size = tuple(int(v) for v in model.inputs[0].shape[1:3])
    from explainability.page import PageItem, slice_items

    channels = int(model.inputs[0].shape[-1])  # 2: a comparing model reads each patch with its reference window
    items = [PageItem(Path(p).name[:24], read_image(p, size[0], channels)) for p in args.images]
    slice_view = None
    if args.slice:
        from explainability.views import scan_one_slice

        slice_view = scan_one_slice(model, args.slice, top_k=args.top_k)
        items = items or slice_items(slice_view)
    if Path(args.out).suffix.lower() in (".html", ".htm"):
        from explainability.page import write_page
        from explainability.views import Explainer

        from .operating_point import model_threshold

        explainer = Explainer(model)
        threshold = model_threshold(model)
        path = write_page(explainer, items, args.out, title=f"Explanations: {Path(args.model).name}",
                          slice_view=slice_view, threshold=threshold)
        scores = [explainer.patch(item.image).score for item in items]
    else:
        from explainability.figures import compute_maps
        from explainability.overlay import explanation_grid

        batch = np.stack([item.image for item in items])
        maps, scores = compute_maps(model, batch)
        shown = {k: maps[k] for k in ("rollout mean", "rollout max", "gradient rollout", "Grad-CAM")}
        path = explanation_grid(batch, shown, scores, [item.title for item in items], args.out)
    for item, sc in zip(items, scores):
        print(f"{item.title}: fake score {sc:.3f}")
    print(f"wrote {path}")
    return 0


def _threshold(args) -> tuple[float, str, dict | None]:
    """(threshold, where it came from, the stored slice operating point when the verdict follows it): a slice
    point sets the threshold per series length (`operating_point.series_threshold`); the threshold returned is
    then the one-slice one."""
    from .operating_point import load_operating_point, stored_threshold

    if args.threshold is not None:
        return args.threshold, "--threshold", None
    if args.relative:  # a contrast is not a probability: it needs its own threshold
        return (*stored_threshold(args.model, "relative", default=None), None)
    point = load_operating_point(args.model).get("slice")
    if point:  # chosen on whole slices' best windows, as `scan` scores them
        return (*stored_threshold(args.model, "slice"), point)
    return (*stored_threshold(args.model, "patch"), None)


def _scan_options(p) -> None:
    """The model and scanning options that `scan` and `scan-archive` share (read by `_threshold`)."""
    from .operating_point import SYMMETRY_GROUPS

    p.add_argument("--model", default="models/deepfake_detection_model.keras")
    p.add_argument("--stride", type=int,
                   help="grid step in pixels (default: the one the model's stored slice operating point was chosen "
                   "at, else 16; a finer grid offers a slice more windows, so the threshold no longer holds its rate)")
    p.add_argument("--threshold", type=float,
                   help="score at or above which the verdict is 'tampered' (default: the model's stored slice "
                   "operating point, raised for a series of several slices so that the series' false-alarm rate "
                   "stays near the slice's; with --relative its stored relative threshold; see `calibrate`)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--relative", action="store_true",
                   help="verdict from the best slice's contrast (top score minus the slice's median score)")
    p.add_argument("--symmetries", type=int, choices=SYMMETRY_GROUPS,
                   help="average each window's score over this many of its flips and quarter turns (default: as "
                   "many as the model's stored slice operating point was chosen with, else 1; see `calibrate "
                   "--symmetries`); costs that many times the model's time")


def _slice_calibration_options(p) -> None:
    from .calibration import HELD_OUT_SLICES, SLICES

    p.add_argument("--slices", type=int, default=SLICES,
                   help=f"authentic synthetic slices to choose the slice thresholds on (default {SLICES})")
    p.add_argument("--per-scan", type=int, default=HELD_OUT_SLICES, metavar="N",
                   help=f"slices of each held-out synthetic scan among them (default {HELD_OUT_SLICES}: slices of one "
                   "scan score alike, so many scans pin a threshold down better than many slices)")
    _symmetry_option(p)


def _symmetry_option(p) -> None:
    from .operating_point import SYMMETRY_GROUPS

    p.add_argument("--symmetries", type=int, choices=SYMMETRY_GROUPS, default=1,
                   help="score each calibration slice's windows averaged over this many of their flips and quarter "
                   "turns (default 1); stored with the slice thresholds, and `scan` then scans so")


def _scan(args) -> int:
    from .operating_point import model_stride, model_symmetries
    from .scan import draw, scan_series

    threshold, source, point = _threshold(args)
    model = _load_model(args.model)
    result = scan_series(model, args.path, stride=args.stride, threshold=threshold, top_k=args.top_k,
                         progress=not args.json, relative=args.relative, operating_point=point,
                         symmetries=args.symmetries)
    if point and len(result.slices) > 1:
        source += f"; for a series of {len(result.slices)} slices"
    chosen_with, chosen_at = model_symmetries(model), model_stride(model)
    if point and args.symmetries not in (None, chosen_with):
        source += f"; chosen on windows averaged over {chosen_with} symmetries, scanned with {args.symmetries}"
    if point and args.stride not in (None, chosen_at):
        source += f"; chosen on windows {chosen_at} px apart, scanned {args.stride} px apart"
    if args.locate == "attention":
        from dataclasses import replace

        from .scan import attention_peak

        peak = lambda loc, sl: attention_peak(model, sl.hu_source, loc.x, loc.y, sl.spacing)  # noqa: E731
        result.locations = [replace(loc, **dict(zip("xy", peak(loc, result.slices[loc.slice]))))
                            for loc in result.locations]
    out = Path(args.out)
    best = sorted({loc.slice for loc in result.locations}, key=lambda s: -result.slices[s].locations[0].score)
    written = [draw(result.slices[s].hu_source, result.slices[s], out / f"scan_slice{s}.png")
               for s in best[: args.figures]] if args.figures else []
    if args.json:
        print(json.dumps(result.as_json()))
        return 0
    print(f"verdict: {result.verdict} (score {result.score:.4f}, threshold {result.threshold:.4f}: {source})")
    for rank, loc in enumerate(result.locations, start=1):
        print(f"  {rank}. slice {loc.slice}  x {loc.x}  y {loc.y}  score {loc.score:.3f}")
    for msg in result.skipped:
        print(f"  skipped: {msg}")
    for msg in result.notes:
        print(f"  note: {msg}")
    for path in written:
        print(f"wrote {path}")
    return 0


def _scan_archive(args) -> int:
    from .archive import scan_archive

    if not Path(args.model).is_file():
        raise FileNotFoundError(f"{args.model}: no such model file")
    threshold, source, point = _threshold(args)
    summary = scan_archive(args.root, args.model, args.out, scheduler=args.scheduler, workers=args.workers,
                           stride=args.stride, threshold=threshold, top_k=args.top_k, relative=args.relative,
                           operating_point=point, symmetries=args.symmetries)
    per_series = " for one slice, higher for longer series (each line's threshold)" if point else ""
    print(f"{summary['scanned']} series scanned, {summary['already_done']} already in {args.out}, "
          f"{summary['errors']} with errors, {summary['skipped_files']} files skipped (not CT DICOM); "
          f"threshold {threshold:.3f}{per_series} ({source}); {summary['seconds']} s")
    return 0


def _calibrate(args, model=None) -> int:
    from .architectures import compares
    from .calibration import background_slices, calibration_slices, operating_points, site_slices, slice_scores
    from .data import load_split
    from .operating_point import save_operating_point, sidecar_path, spread_line
    from .training import store_patch_operating_point

    if args.authentic:  # checked before any slow work: a leaked patient would make the slice threshold too lenient
        from .dicom import patient_ids
        from .synthetic import corpus_background_patients

        leaked = patient_ids(args.authentic) & corpus_background_patients(args.data)
        if leaked:
            raise ValueError(f"{', '.join(args.authentic)}: patients {sorted(leaked)} are training backgrounds of "
                             f"{args.data}; calibrate on authentic series the model never saw")
    model = _load_model(args.model) if model is None else model
    x, y, _ = load_split(Path(args.data) / "val", int(model.inputs[0].shape[1]), reference=compares(model))
    patch = store_patch_operating_point(model, (x, y), args.model, args.rate, f" of {args.data}")
    print(f"patch threshold {patch['threshold']:.4f} ({args.rate:.0%} of {patch['n_authentic']} validation "
          f"authentic patches flagged); wrote {sidecar_path(args.model)}")
    if args.authentic:
        slices = site_slices(args.authentic)
        total, chosen_on = len(slices), f"authentic slices of {', '.join(args.authentic)}"
    elif args.backgrounds:
        slices, total, chosen_on = background_slices(args.data, args.backgrounds)
    else:
        slices, total, chosen_on = calibration_slices(args.data, args.slices, args.per_scan)
    (top, contrast, series, levels), = slice_scores([model], slices, args.stride, progress=True, total=total,
                                                    symmetries=args.symmetries)
    points = operating_points(top, contrast, chosen_on, args.rate, args.symmetries, series, args.stride, levels)
    for kind, point in points.items():
        save_operating_point(args.model, kind, point)
    print(f"slice threshold {points['slice']['threshold']:.4f} and relative threshold "
          f"{points['relative']['threshold']:.4f} ({args.rate:.0%} of {points['slice']['n_authentic']} "
          f"{chosen_on} flagged); wrote {sidecar_path(args.model)}; `scan` uses the slice threshold")
    print(spread_line(points["slice"]))
    return 0


def _ensemble(args) -> int:
    from .ensemble import build_ensemble
    from .operating_point import STRIDE

    models = [_load_model(path) for path in args.models]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ensemble = build_ensemble(models, name=out.stem)
    ensemble.save(out)
    print(f"saved the mean of {len(models)} models as {out}")
    return _calibrate(argparse.Namespace(model=str(out), data=args.data, rate=args.rate, stride=STRIDE,
                                         slices=args.slices, per_scan=args.per_scan, authentic=None, backgrounds=None,
                                         symmetries=args.symmetries), ensemble)


def build_parser() -> argparse.ArgumentParser:
    from .calibration import SLICES
    from .data import DESIGNS
    from .operating_point import STRIDE

    parser = argparse.ArgumentParser(
        prog="python -m utils.cli",
        description="Detect CT-GAN-style tampering in lung CT: build patch corpora, train, evaluate, explain, scan.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate the embedded corpus (synthetic anatomy, or real backgrounds)",
                       description="Generate patches of CT-GAN-style tampering (inject / remove) and authentic "
                       "patches, split by scan, as OUT/{train,val,test}/{real,fake}/*.png + OUT/manifest.csv.")
    p.add_argument("--out", default="data", help="output folder (default: data)")
    p.add_argument("--backgrounds", nargs="+", metavar="DIR",
                   help="tamper only these authentic DICOM slices/series (or a CT-GAN data set's untouched parts), "
                   "split by series, instead of synthetic anatomy")
    p.add_argument("--add-backgrounds", nargs="+", metavar="DIR",
                   help="tamper these authentic DICOM series too, beside the synthetic scans (train split)")
    p.add_argument("--no-shipped-backgrounds", action="store_true",
                   help="leave out the real slices shipped in data/backgrounds (synthetic anatomy only)")
    p.add_argument("--scans", type=int, default=80, help="synthetic scans (default 80)")
    p.add_argument("--slices", type=int, default=14, help="slices per synthetic scan (default 14)")
    p.add_argument("--variants", type=int,
                   help="tampered copies per real background slice (default: CorpusConfig.background_variants)")
    p.add_argument("--background-noise", type=float, metavar="HU",
                   help="largest scanner noise added to each copy of a real background slice, in both classes "
                   "(default: CorpusConfig.background_noise; 30 gives the previous corpus)")
    p.add_argument("--background-ground-glass", type=float, metavar="SHARE",
                   help="share of the slices of each copy of a real background given authentic ground-glass "
                   "opacity, in both classes (default: CorpusConfig.background_ground_glass)")
    p.add_argument("--difficulty", type=float, default=0.5, help="0..1; 0.5 = CT-GAN's touch-up settings")
    p.add_argument("--patch-size", type=int, default=64,
                   help="patch side in px (default 64); a model trains on the size its corpus holds")
    p.add_argument("--jitter", type=int,
                   help="largest random shift of a patch centre from its point, px (default: CorpusConfig.jitter); "
                   "a wide view with a large jitter holds its tampered region anywhere, not at its centre")
    p.add_argument("--tampers-per-slice", type=int, default=3,
                   help="tampered locations per slice of a tampered synthetic scan (default 3; wide views leave "
                   "room for same-slice controls only with fewer)")
    p.add_argument("--noise-mode-p", type=float, nargs=3, metavar=("COPY", "GAUSS", "NONE"),
                   help="probabilities of the touch-up noise modes: copied lung noise (CT-GAN's default), "
                   "interpolated Gaussian noise, none (default: tamper.NOISE_MODE_P)")
    p.add_argument("--removal-haze", type=float, nargs=4, metavar=("LEVEL_LO", "LEVEL_HI", "HAZE_LO", "HAZE_HI"),
                   help="HU by which a removal's in-painted lung may lie above the lung around it: a cap drawn from "
                   "LEVEL_LO..LEVEL_HI plus a haze from HAZE_LO..HAZE_HI (default: tamper.REMOVAL_HAZE)")
    p.add_argument("--removal-texture", type=float, nargs=2, metavar=("LO", "HI"),
                   help="give a removal's in-painted lung a fine-band level (HU) of its own, drawn from LO..HI, as "
                   "CT-GAN's remover leaves it (e.g. 12 30, tamper.REMOVAL_TEXTURE_HU; default: off, the texture "
                   "follows the slice)")
    p.add_argument("--removal-nodules", type=float, metavar="SHARE",
                   help="share of the removal targets on real backgrounds where an authentic nodule is drawn before "
                   "the attack, so that the removal takes a cancer away as CT-GAN's does (default: "
                   "CorpusConfig.removal_nodules, 1; 0 for the corpus before)")
    p.add_argument("--removal-share", type=float, metavar="SHARE",
                   help="share of the tampered copies of a real background slice that remove a cancer, the others "
                   "inject one (default: CorpusConfig.removal_share, 0.5: in turn)")
    p.add_argument("--resample-tampered", type=float, default=1.0,
                   help="share of tampered scans resampled as a whole, as CT-GAN's reference code does; the others "
                   "resample only the in-painted cubes (default 1.0)")
    p.add_argument("--resample-authentic", type=float, default=0.5,
                   help="share of authentic scans put through CT-GAN's round trip as a whole (default %(default)s)")
    p.add_argument("--twins", action="store_true",
                   help="for every tampered patch, an authentic twin at the same point of the slice as the attack "
                   "found it, so that only the tampering separates the classes")
    p.add_argument("--resample-history", type=float, default=0.0,
                   help="share of scans of every kind resampled as a whole before any tampering, a history the "
                   "attack finds, so that resampling is no label in either class (default %(default)s)")
    p.add_argument("--coarse-vessels", action="store_true",
                   help="the previous synthetic lung: a few rasterised vessel dots instead of the default fine detail "
                   "drawn as partial volume (many faint vessel dots, thin branches; anatomy.chest_slice)")
    p.add_argument("--matched-nodules", action=argparse.BooleanOptionalAction,
                   help="authentic nodules where tampering puts its targets, a quarter of them round, so that "
                   "position, attachment and roundness are no label (default: CorpusConfig.matched_nodules)")
    p.add_argument("--heterogeneous-nodules", action=argparse.BooleanOptionalAction,
                   help="authentic nodules with a real cancer's irregular fine margin and inner variation, unlike "
                   "CT-GAN's uniform injections (measured, not the default: benchmarks/README.md; default: "
                   "CorpusConfig.heterogeneous_nodules)")
    p.add_argument("--lookalikes", action=argparse.BooleanOptionalAction,
                   help="authentic look-alikes of a tamper in the synthetic lung: bronchovascular bundles cut across, "
                   "ground-glass opacity (default: CorpusConfig.lookalikes)")
    p.add_argument("--edge-enhancement", type=float, metavar="GAIN",
                   help="largest edge-enhancement gain of a scanner kernel: the sharper half of the synthetic "
                   "scanners and of the background copies' kernels overshoot at edges, as sharp lung kernels do "
                   "(default: CorpusConfig.edge_enhancement; 0 = none)")
    p.add_argument("--rib-cage", action=argparse.BooleanOptionalAction,
                   help="ribs as a real thorax holds them: arcs along the chest wall against the pleura (default: "
                   "CorpusConfig.rib_cage; --no-rib-cage = short straight ribs in the middle of the chest wall)")
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
    p.add_argument("--patch-size", type=int, default=64,
                   help="patch side in px (default 64): the size of the corpus the model to test was trained on")
    p.add_argument("--jitter", type=int, help="largest random shift of a patch centre from its label point, px "
                   "(default: 0 with --protocol test, centred; otherwise the corpus's, CorpusConfig.jitter, as "
                   "off-centre as scan's windows see a tamper)")
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

    p = sub.add_parser("train", help="train the CNN (phase 1) and/or the hybrid CNN -> ViT (phases 2a, 2b)",
                       description="Phase 1: CNN from scratch. Phase 2a: transformer on the frozen CNN's feature "
                       "map. Phase 2b: end-to-end fine-tuning. Best epoch per phase by validation AUC.")
    p.add_argument("--data", default="data", help="corpus with train/ and val/ (default: data)")
    p.add_argument("--models", default="models", help="output folder (default: models)")
    p.add_argument("--phases", nargs="+", choices=("cnn", "vit"), default=["cnn", "vit"],
                   help="'cnn' = phase 1; 'vit' = phases 2a + 2b on models/cnn_model.keras")
    p.add_argument("--cnn-epochs", type=int)
    p.add_argument("--vit-epochs", type=int)
    p.add_argument("--finetune-epochs", type=int)
    p.add_argument("--pretrain-epochs", type=int,
                   help="self-supervised pre-training of the transformer (masked CNN tokens of authentic training "
                   "patches) before phase 2a, saved as MODELS/vit_pretrained.keras (default 0: none)")
    p.add_argument("--pretrain-dicom", nargs="+", metavar="DIR",
                   help="authentic DICOM (any scanner, no labels) whose lung patches join the pre-training patches")
    p.add_argument("--vit-init", metavar="KERAS", help="start phase 2a from this saved pre-training model")
    p.add_argument("--design", choices=DESIGNS,
                   help="phase 2's model: 'patch' (the hybrid on the patch alone), 'compare' (the patch and a "
                   "reference window of its slice, attended across; the corpus must hold reference windows) or "
                   "'compare-normalised' (the same, tokens normalised by the reference's statistics) or "
                   "'compare-centred' (the reference's mean subtracted only)")
    p.add_argument("--stem-padding", choices=("same", "valid"),
                   help="the CNN's convolutions: 'valid' (default: no padding, 4x4 tokens; `scan` runs the stem "
                   "once per slice) or 'same' (zero padding, 8x8 tokens; every window runs the whole model)")
    p.add_argument("--hard-negative-epochs", type=int,
                   help="phase 'hard' after 2b: the hybrid scans the corpus's training and validation slices and "
                   "trains on with the authentic windows it scores highest (needs a generated corpus; 0 = none)")
    p.add_argument("--hard-negative-dicom", nargs="+", metavar="DIR",
                   help="authentic DICOM of your own scanners (no labels) whose slices phase 'hard' mines too")
    p.add_argument("--weight-average", type=float, metavar="MOMENTUM",
                   help="validate and keep an exponential moving average of the weights over steps (e.g. 0.98; "
                   "default 0: the raw weights of the best epoch)")
    p.add_argument("--slice-calibration", type=int, metavar="N",
                   help=f"authentic synthetic slices on which each model's slice thresholds for `scan` are chosen "
                   f"(default {SLICES}; 0 = none; see `calibrate`)")
    p.add_argument("--members", type=int, metavar="N",
                   help="train N models per detector with seeds SEED, SEED + 1, ... (MODELS/members/K/) and save "
                   "their seed ensemble (the mean of their fake probabilities) as the model (default 1: one model)")
    p.add_argument("--max-train", type=int, help="cap on training patches (quick runs)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="a progress bar per step (default: a line per epoch)")
    p.add_argument("--data-parallel", action="store_true",
                   help="split batches over all local devices (KERAS_BACKEND=jax, e.g. several GPUs)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="metrics of a saved model on a test split",
                       description="Accuracy, precision, recall, F1, ROC-AUC, AP, EER, confusion matrix, "
                       "bootstrap intervals; per kind and per scan when a manifest is found.")
    p.add_argument("model", help="a .keras or .h5 model")
    p.add_argument("test_dir", help="split folder holding real/ and fake/")
    p.add_argument("--threshold", type=float,
                   help="decision threshold (default: the model's stored operating point, else 0.5)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.add_argument("--reference-only", action="store_true",
                   help="score only the patches that have a reference window, as a comparing model is scored, so "
                   "that a patch model and a comparing model are measured on the same patches")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("explain", help="attention rollout, gradient rollout and Grad-CAM overlays of patches",
                       description="Write a PNG grid (each image with its rollout (mean, max), gradient-rollout "
                       "and Grad-CAM overlays and the model's fake score) or, with --out PAGE.html, a self-contained "
                       "page to browse patches, methods, discard ratios and opacity.")
    p.add_argument("images", nargs="*", help="patch images (PNG/JPEG/NPY), converted to the model's input")
    p.add_argument("--slice", metavar="DCM",
                   help="scan this DICOM slice and explain its top locations (shown with its heatmap on a page)")
    p.add_argument("--top-k", type=int, default=5, help="top locations of --slice (default 5)")
    p.add_argument("--model", default="models/deepfake_detection_model.keras")
    p.add_argument("--out", default="reports/explain.png",
                   help="a .png grid, or an .html page (self-contained, no server) with method, discard ratio and "
                   "opacity controls")
    p.set_defaults(func=_explain)

    p = sub.add_parser("scan", help="scan a DICOM slice or series for tampered locations",
                       description="Slide the patch model over the lungs of every slice; print the verdict and "
                       "the top locations (slice, x column, y row, score) and write PNG overlays.")
    p.add_argument("path", help="a .dcm file or a folder holding one series")
    _scan_options(p)
    p.add_argument("--out", default="reports/scan", help="folder for the PNG overlays")
    p.add_argument("--figures", type=int, default=3, help="PNGs of the best slices to write (0: none)")
    p.add_argument("--json", action="store_true", help="one JSON object: verdict, score, locations")
    p.add_argument("--locate", choices=("window", "attention"), default="window",
                   help="each location: the suspicious window's centre (default), or where that window's attention "
                   "rollout peaks (a model trained on wide views that hold the tamper anywhere, benchmarks/README.md)")
    p.set_defaults(func=_scan)

    p = sub.add_parser("scan-archive", help="scan every CT series under a folder tree, in parallel (Dask)",
                       description="Find every CT series under ROOT (nested study/series folders, any file names; "
                       "non-DICOM, non-CT and broken files are listed with a reason), scan them in parallel on a "
                       "local Dask cluster (or --scheduler ADDRESS) and append one JSON line per series to OUT. "
                       "Series already in OUT are skipped: rerun the same command to resume.")
    p.add_argument("root", help="folder tree to search (e.g. a PACS export)")
    p.add_argument("--out", default="reports/archive.jsonl", help="JSON-lines report (default reports/archive.jsonl)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (its workers need this package and the "
                   "model path)")
    _scan_options(p)
    p.set_defaults(func=_scan_archive)

    p = sub.add_parser("calibrate", help="choose and store a model's operating points on validation data",
                       description="Choose the patch threshold on the validation split's authentic patches, and "
                       "the slice thresholds of `scan` (the best window's score) and `scan --relative` (its "
                       "contrast) on whole authentic slices: the validation split's, regenerated from corpus.json "
                       "and topped up with held-out scans of the same generator, or with --authentic those of your "
                       "own scanners; at a stated false-alarm rate; store them beside the model as "
                       "NAME.operating_point.json. Training already does this on the synthetic slices.")
    p.add_argument("--model", default="models/deepfake_detection_model.keras")
    p.add_argument("--data", default="data", help="the synthetic corpus the model was trained on (default: data)")
    p.add_argument("--rate", type=float, default=0.05, help="false-alarm rate on authentic data (default 0.05)")
    p.add_argument("--stride", type=int, default=STRIDE,
                   help=f"grid step of the calibration slices' windows, px (default {STRIDE}); stored with the slice "
                   "thresholds, and `scan` then scans so")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--authentic", nargs="+", metavar="DIR",
                       help="authentic DICOM series of your own scanners (not training backgrounds): choose the slice "
                       "thresholds on their slices instead, which `scan` then uses for its verdict")
    where.add_argument("--backgrounds", type=int, metavar="N",
                       help="choose the slice thresholds on N held-out authentic copies of each real background series "
                       "of the corpus instead (real anatomy the model trained on, under scanner variations it never "
                       "saw; benchmarks/README.md, *Where a slice threshold comes from*)")
    _slice_calibration_options(p)
    p.set_defaults(func=_calibrate)

    p = sub.add_parser("ensemble", help="one model that averages several saved models (e.g. seeds)",
                       description="Save the ensemble of saved patch models, comparing models among them or not (the "
                       "mean of their fake probabilities; one .keras file that `scan`, `evaluate` and `explain` read "
                       "like any model), then choose and store its operating points as `calibrate` does.")
    p.add_argument("models", nargs="+", help="two or more .keras models")
    p.add_argument("--out", required=True, help="the ensemble's .keras file")
    p.add_argument("--data", default="data", help="the synthetic corpus the models were trained on (default: data)")
    p.add_argument("--rate", type=float, default=0.05, help="false-alarm rate on authentic data (default 0.05)")
    _slice_calibration_options(p)
    p.set_defaults(func=_ensemble)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError, NotImplementedError) as err:  # DicomError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
