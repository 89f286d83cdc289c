"""The embedded corpus: CT-GAN-style tampering emulated on synthetic anatomy or on real authentic slices.

Both produce `Scan`s with label rows in the CT-GAN convention; `patches.extract_patches` turns them into
patches like the real data set's scans.
"""
from __future__ import annotations

import itertools
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .anatomy import (ScannerProfile, add_ground_glass, chest_slice, correlated_noise, draw_nodule, edge_gain,
                      enhance_edges, random_nodule)
from .authentic import tumour_boxes
from .dicom import CTSlice
from .lungmask import cached_lung_mask, lung_mask
from .patches import extract_patches
from .scans import LabelRow, Scan
from .tamper import NOISE_MODE_P, REMOVAL_HAZE, pick_targets, resample_roundtrip, tamper_slice

KIND_CYCLE = ("FM", "FB", "FM", "FB", "TM", "FM", "FB", "TB")  # as the blind trial: 3 FM : 3 FB : 1 TM : 1 TB
SHIPPED_BACKGROUNDS = Path(__file__).resolve().parents[1] / "data" / "backgrounds"  # CC BY 4.0, see its README
MIN_LUNG_MM2 = 4000.0  # slices with less lung than this are not tampered
REMOVED_CANCER_MM = 16.0  # largest authentic cancer a removal takes away: what CT-GAN's 20 mm hole can cover
BACKGROUND_NOISE_CUTOFF = (0.3, 0.95)  # kernels of a background copy's noise, x Nyquist (`scanner_variation`)


# what a corpus written before a setting existed was generated with (its corpus.json lacks the key)
BEFORE_SETTING = {"fine_vessels": False, "matched_nodules": False, "lookalikes": False,
                  "heterogeneous_nodules": False, "removal_haze": (10.0, 70.0, 0.0, 25.0), "edge_enhancement": 0.0,
                  "rib_cage": False, "background_noise": 0.0, "background_ground_glass": 0.0,
                  "removal_texture": (), "removal_nodules": 0.0, "removal_share": 0.5}


@dataclass
class CorpusConfig:
    """Settings of a generated corpus (saved beside it as corpus.json).

    Args:
        n_scans: synthetic scans (each one kind, cycling FM, FB, FM, FB, TM, FM, FB, TB).
        slices_per_scan: slices drawn per synthetic scan (or tampered per background series).
        tampers_per_slice: tampered locations per slice of an FB/FM scan.
        random_per_slice: untouched random lung patches per slice of a TB/TM scan.
        difficulty: 0..1, how well noise and blend match the surroundings (0.5 = CT-GAN's settings).
        seed: everything derives from it; the same seed gives byte-identical PNGs.
        jitter: largest random shift of a patch centre in px, on each axis, in both classes. `scan` sees a tampered
            point from windows up to 8 px off on each axis (a nodule on the pleura more); 12 ranked real tampered
            slices best of 4, 8, 12 and 16 (benchmarks/README.md, *Training views off-centre, as the scanner sees
            them*; 4 before).
        patch_size: patch side in px.
        fractions: train/val/test shares of scans.
        workers: processes (results do not depend on it).
        resample_authentic: share of authentic (TB/TM) scans that go through the same whole-scan 1 mm round trip
            as tampered ones, so that resampling (which hospitals do too) is no label.
        resample_tampered: share of tampered (FB/FM) scans resampled as a whole, as CT-GAN's reference code does;
            the others resample only the in-painted cubes, the faster variant its code mentions, so that an
            unresampled scan is no proof of authenticity either.
        twins: for every tampered patch, an authentic patch at the same point of the slice as the attack found it
            (kind 'twin'): the same anatomy and texture history on both sides, so that only the tampering itself
            separates them.
        resample_history: share of scans of every kind (backgrounds' copies too) resampled as a whole *before*
            any tampering: a history the scan had (a reformat, a hospital's resampling) that the attack then finds
            and blends its touch-ups into. Both classes carry it alike, so resampling is no label in either
            direction.
        shipped_backgrounds: also tamper the real authentic slices shipped in `data/backgrounds` (real anatomy,
            texture and scanner noise in both classes); their patches join the train split.
        backgrounds: further folders of authentic DICOM (or a CT-GAN data set's untouched parts) treated alike.
        background_variants: tampered copies of every background slice (injections and removals in turn, see
            `removal_share`), each with its own scanner variation and targets; half as many untouched copies join
            them (64: benchmarks/README.md, *More tampered copies of the real backgrounds*; 32 before, 16 and 8
            earlier).
        background_noise: largest scanner noise (HU) added to a copy of a background series before tampering
            (`scanner_variation`; 0 = the slices as stored). 45 reaches the noise of CT-GAN's source scans and
            of low-dose lung CT, so that a slice's noise level is no label (benchmarks/README.md, *Scanner noise in
            the slice figures*; 30 before).
        edge_enhancement: largest edge-enhancement gain of a kernel (`anatomy.enhance_edges`): the sharper half of
            the synthetic scanners' kernels, and of the kernels a background copy is given (`scanner_variation`),
            overshoot at edges, as sharp lung and bone kernels do; in both classes alike. 0 = no such kernel.
        background_ground_glass: share of the slices of a background copy given authentic ground-glass opacity
            (`anatomy.add_ground_glass`, the haze of infection or oedema, the commonest authentic window flagged on
            other scanners) before tampering, in both classes alike, so that haze on real anatomy is no label.
        fine_vessels: draw the synthetic lung's fine detail as partial volume (`anatomy.chest_slice`); False gives
            the sparse rasterised vessel dots of corpora written before this setting existed.
        matched_nodules: authentic nodules drawn where tampering puts its targets, a quarter of them round
            (`anatomy.chest_slice`): their position, attachment and roundness are no label.
        heterogeneous_nodules: authentic nodules (of the synthetic scans, and the cancers a removal on a real
            background takes away) drawn with a real cancer's irregular fine margin and inner variation
            (`anatomy.draw_nodule`), unlike CT-GAN's uniform, sharply edged injections.
        lookalikes: authentic structures that look like a tamper in the synthetic lung: bronchovascular bundles
            cut across and ground-glass opacity (`anatomy.chest_slice`).
        rib_cage: ribs against the pleura, as in a real thorax, in both classes (`anatomy.chest_slice`); False
            gives the corpus before this setting (short straight ribs in the middle of the chest wall).
        noise_mode_p: probabilities of the touch-up noise modes 'copy' (CT-GAN's default), 'gauss' and 'none'
            (`tamper.NOISE_MODES`), drawn per tampered location.
        removal_haze: (level_lo, level_hi, haze_lo, haze_hi) HU: how far a removal's in-painted lung may lie above
            the lung around it (`tamper.REMOVAL_HAZE`).
        removal_texture: (lo, hi) HU: a removal's in-painted lung gets a fine-band level of its own, drawn from
            U(lo, hi) whatever the slice's noise, as CT-GAN's remover leaves it (`tamper.REMOVAL_TEXTURE_HU`); ()
            keeps the texture that follows the slice (the default).
        removal_nodules: share of the removal targets on real backgrounds where an authentic nodule (up to
            `REMOVED_CANCER_MM`) is drawn into the copy before the attack, so that the removal takes a cancer away
            as CT-GAN's does (and as the synthetic scans' removals do) and leaves what the blends let through of
            it; 0 removes from lung with nothing there (the corpus before this setting). 1 ranked real tampered
            slices better on two seed triples (benchmarks/README.md, *A removal takes a cancer away*).
        removal_share: share of the tampered copies of a background slice that remove (the others inject), spread
            evenly over the copies (`copy_kind`); 0.5 alternates, as corpora before this setting did.
    """

    n_scans: int = 80
    slices_per_scan: int = 14
    tampers_per_slice: int = 3
    random_per_slice: int = 3
    difficulty: float = 0.5
    seed: int = 0
    jitter: int = 12
    patch_size: int = 64
    fractions: tuple = (0.7, 0.15, 0.15)
    workers: int = 2
    resample_authentic: float = 0.5
    resample_tampered: float = 1.0
    resample_history: float = 0.0
    twins: bool = False
    shipped_backgrounds: bool = True
    backgrounds: tuple = ()
    background_variants: int = 64
    background_noise: float = 45.0
    background_ground_glass: float = 0.0
    edge_enhancement: float = 0.75
    noise_mode_p: tuple = NOISE_MODE_P
    removal_haze: tuple = REMOVAL_HAZE
    removal_texture: tuple = ()
    removal_nodules: float = 1.0
    removal_share: float = 0.5
    fine_vessels: bool = True
    matched_nodules: bool = False
    heterogeneous_nodules: bool = False
    lookalikes: bool = False
    rib_cage: bool = False

    def background_roots(self) -> list[Path]:
        roots = [SHIPPED_BACKGROUNDS] if self.shipped_backgrounds else []
        return roots + [Path(p) for p in self.backgrounds]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dir(cls, corpus_dir: str | Path) -> "CorpusConfig":
        """The settings a corpus was generated with (its corpus.json)."""
        import json

        saved = json.loads((Path(corpus_dir) / "corpus.json").read_text())
        saved = {**BEFORE_SETTING, **saved}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()
                      if k in cls.__dataclass_fields__})

    def background_patients(self) -> set[str]:
        """PatientIDs of the real backgrounds: a false-alarm test must leave these patients out."""
        from .dicom import patient_ids

        return patient_ids(self.background_roots())


def corpus_background_patients(corpus_dir) -> set[str]:
    """PatientIDs of the real backgrounds the corpus in `corpus_dir` was built with; empty when the folder holds
    no corpus.json. A false-alarm test of a model trained on that corpus must leave them out."""
    corpus_dir = Path(corpus_dir)
    if not (corpus_dir / "corpus.json").is_file():
        return set()
    return CorpusConfig.from_dir(corpus_dir).background_patients()


def scan_kind(index: int) -> str:
    """The kind of synthetic scan number `index`: the kinds of `KIND_CYCLE` in turn."""
    return KIND_CYCLE[index % len(KIND_CYCLE)]


def regenerated_scans(corpus_dir, split: str, purpose: str, kinds: tuple | None = None):
    """(config, scans) of a generated corpus: its settings and, lazily, the synthetic scans of `split`
    regenerated from corpus.json (a corpus is reproducible from its seed, so no slice needs to be stored), only
    those of `kinds` (e.g. ('TB', 'TM')) when given. `purpose` says in the error why the corpus was needed, when
    the folder holds no corpus.json."""
    from .patches import read_manifest

    corpus_dir = Path(corpus_dir)
    if not (corpus_dir / "corpus.json").is_file():
        raise FileNotFoundError(f"{corpus_dir / 'corpus.json'}: not found ({purpose})")
    cfg = CorpusConfig.from_dir(corpus_dir)
    indices = sorted({int(r["scan"].split("-")[1]) for r in read_manifest(corpus_dir / "manifest.csv")
                      if r["split"] == split and r["scan"].startswith("SYN-")})
    indices = [i for i in indices if kinds is None or scan_kind(i) in kinds]
    return cfg, ScanSequence(indices, cfg)


class ScanSequence:
    """Synthetic scans by number, generated one at a time while iterating (a scan's slices are large); `len`
    without generating any."""

    def __init__(self, indices, cfg: CorpusConfig):
        self.indices, self.cfg = list(indices), cfg

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return (synthetic_scan(i, self.cfg) for i in self.indices)


def emulate_scan(scan: Scan, slices: list[CTSlice], rng: np.random.Generator, cfg: CorpusConfig,
                 removal_targets: dict | None = None, avoid: dict | None = None) -> Scan:
    """Tamper authentic slices as CT-GAN would for the scan's kind and fill in its slices and label rows.

    FM: inject at `tampers_per_slice` cancer-like locations. FB: remove at `removal_targets[instance]` (real
    nodules) or, when none are given, at cancer-like locations. TB/TM: untouched, but with probability
    `cfg.resample_authentic` resampled like a tampered scan. Every slice of an FB/FM scan is resampled, as
    CT-GAN resamples the whole scan, unless the scan is one of the 1 - `cfg.resample_tampered` whose in-painted
    cubes alone are resampled. `avoid[instance]` lists points that must stay untouched (known nodules,
    tampered points of a real scan).
    """
    removal_targets = removal_targets or {}
    avoid = avoid or {}
    tampering = scan.kind in ("FB", "FM")
    if tampering:  # (no draw at the default 1.0: the default corpus keeps its random stream)
        round_trip = cfg.resample_tampered >= 1 or bool(rng.random() < cfg.resample_tampered)
    else:
        round_trip = bool(rng.random() < cfg.resample_authentic)
    history = cfg.resample_history > 0 and bool(rng.random() < cfg.resample_history)  # (no draw at the default 0)
    if history:
        slices = [_resampled(sl) for sl in slices]
    scan.resampled = round_trip or history

    def whole(sl):  # a slice left untampered, resampled with its scan or not
        return _resampled(sl) if round_trip else sl

    for sl in slices:
        spacing = sl.spacing[1]
        scan.slices[sl.instance] = sl
        if not tampering:
            scan.slices[sl.instance] = whole(sl)
            continue
        lungs = cached_lung_mask(sl)
        if lungs.sum() * spacing**2 < MIN_LUNG_MM2:
            scan.slices[sl.instance] = whole(sl)
            continue
        keep_clear = list(avoid.get(sl.instance, []))
        if scan.kind == "FB" and removal_targets.get(sl.instance):
            points = list(removal_targets[sl.instance])[: cfg.tampers_per_slice]
        else:
            points = _targets(sl.hu, lungs, spacing, rng, cfg, keep_clear)
        if not points:
            scan.slices[sl.instance] = whole(sl)
            continue
        action = "inject" if scan.kind == "FM" else "remove"
        hu, records = tamper_slice(sl.hu, spacing, [(x, y, action) for x, y in points], rng,
                                   difficulty=cfg.difficulty, lungs=lungs,
                                   resample_whole=round_trip and not sl.meta.get("ctgan_output", False),
                                   noise_mode_p=cfg.noise_mode_p, removal_haze=cfg.removal_haze,
                                   removal_texture=cfg.removal_texture)
        scan.slices[sl.instance] = CTSlice(hu, sl.spacing, sl.instance, sl.z, None, dict(sl.meta, tampered=True))
        if cfg.twins:
            scan.originals[sl.instance] = CTSlice(sl.hu, sl.spacing, sl.instance, sl.z, None,
                                                  dict(sl.meta, resampled=history))
        for rec in records:
            scan.labels.append(LabelRow(scan.kind, scan.uuid, sl.instance, rec.x, rec.y, scan.experiment))
            scan.radii[(sl.instance, rec.x, rec.y)] = rec.radius
    if scan.kind == "TB" and not scan.labels:
        scan.labels.append(LabelRow("TB", scan.uuid, 0, 0, 0, scan.experiment))
    return scan


def _targets(hu: np.ndarray, lungs: np.ndarray, spacing: float, rng: np.random.Generator, cfg: CorpusConfig,
             avoid) -> list:
    """`tamper.pick_targets` as the corpus places its tampering: `cfg.tampers_per_slice` points, each a patch and its
    jitter clear of every point in `avoid`."""
    return pick_targets(hu, lungs, spacing, rng, cfg.tampers_per_slice, avoid=avoid,
                        clear_px=cfg.patch_size / 2 + cfg.jitter)


def resampled_hu(hu: np.ndarray, spacing: float) -> np.ndarray:
    """A HU slice after CT-GAN's whole-scan 1 mm round trip, stored as DICOM stores it (whole HU, -1000..3071),
    the padding outside the field of view kept."""
    hu = np.asarray(hu, np.float32)
    out = resample_roundtrip(hu, spacing)
    return np.where(hu <= -1500, hu, np.rint(np.clip(out, -1000, 3071))).astype(np.float32)


def _resampled(sl: CTSlice) -> CTSlice:
    """The slice after CT-GAN's whole-scan 1 mm round trip (`resampled_hu`); a slice that CT-GAN itself wrote has
    had it already and is returned as it is."""
    if sl.meta.get("ctgan_output"):
        return sl
    return CTSlice(resampled_hu(sl.hu, sl.spacing[1]), sl.spacing, sl.instance, sl.z, None,
                   dict(sl.meta))  # the lung mask stays valid


def synthetic_scan(index: int, cfg: CorpusConfig) -> Scan:
    """Synthetic scan number `index` of the corpus: same (seed, index) -> same scan, in any process."""
    rng = np.random.default_rng([cfg.seed, index])
    kind = scan_kind(index)
    scan = Scan("SYN", f"{index:04d}", "synthetic", kind)
    profile = ScannerProfile.sample(rng, cfg.edge_enhancement)
    slices, removal, avoid = [], {}, {}
    for i in range(cfg.slices_per_scan):
        instance = 10 + 6 * i
        level = (i + rng.uniform(0, 1)) / cfg.slices_per_scan
        if kind == "FB":
            n_nod, max_d = cfg.tampers_per_slice, REMOVED_CANCER_MM
        elif kind == "TM":
            n_nod, max_d = int(rng.integers(1, 4)), 25.0
        elif kind == "FM":
            n_nod, max_d = int(rng.integers(0, 2)), 25.0
        else:
            n_nod, max_d = 0, 25.0
        hu, nodules = chest_slice(rng, profile, level=level, n_nodules=n_nod, max_diameter=max_d,
                                  fine_vessels=cfg.fine_vessels, matched_nodules=cfg.matched_nodules,
                                  lookalikes=cfg.lookalikes, rib_cage=cfg.rib_cage,
                                  heterogeneous_nodules=cfg.heterogeneous_nodules)
        sl = CTSlice(hu, (profile.spacing, profile.spacing), instance, z=2.5 * instance,
                     meta={"kernel_sigma": profile.kernel_sigma, "noise_sigma": profile.noise_sigma})
        slices.append(sl)
        points = [(n.x, n.y) for n in nodules]
        if kind == "FB":
            removal[instance] = points
        else:
            avoid[instance] = points
            scan.labels.extend(LabelRow("TM", scan.uuid, instance, x, y, "SYN") for x, y in points)
    return emulate_scan(scan, slices, rng, cfg, removal_targets=removal, avoid=avoid)


def _scan_patches(args):
    index, cfg = args
    scan = synthetic_scan(index, cfg)
    rng = np.random.default_rng([cfg.seed, index, 1])
    random_n = cfg.random_per_slice if scan.kind in ("TB", "TM") else 0
    patches = extract_patches(scan, rng, size=cfg.patch_size, jitter=cfg.jitter, random_per_slice=random_n)
    return scan.key, scan.kind, patches


def synthetic_patches(cfg: CorpusConfig, progress: bool = True):
    """Generate every synthetic scan and its patches (in `cfg.workers` processes). Yields (key, kind, patches)."""
    from tqdm.auto import tqdm

    jobs = [(i, cfg) for i in range(cfg.n_scans)]
    bar = tqdm(total=len(jobs), desc="synthetic scans", unit="scan", disable=not progress)
    workers = max(1, min(cfg.workers, os.cpu_count() or 1))
    try:
        if workers == 1:
            for job in jobs:
                yield _scan_patches(job)
                bar.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                for result in pool.map(_scan_patches, jobs, chunksize=2):
                    yield result
                    bar.update()
    finally:
        bar.close()


def write_corpus(patch_groups, out_dir: str | Path, cfg: CorpusConfig, split_of: dict | None = None) -> Path:
    """Collect (key, kind, patches) groups, split them by scan and write the PNG layout, manifest and config."""
    import json

    from .patches import split_scans, write_dataset

    patches, kinds = [], {}
    for key, kind, group in patch_groups:
        patches.extend(group)
        kinds.setdefault(key, kind)
    split_of = split_of or split_scans(kinds, cfg.fractions, cfg.seed)
    manifest = write_dataset(patches, split_of, out_dir)
    (Path(out_dir) / "corpus.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    return manifest


def build_synthetic_corpus(out_dir: str | Path, cfg: CorpusConfig | None = None, progress: bool = True) -> Path:
    """Generate the embedded corpus into out_dir: synthetic scans split by scan, plus emulated tampering on the
    configured real backgrounds (train split only: the synthetic validation and test splits stay comparable
    across settings). Returns the manifest path."""
    from .patches import split_scans

    cfg = cfg or CorpusConfig()
    kinds = {f"SYN-{i:04d}": scan_kind(i) for i in range(cfg.n_scans)}
    split_of = split_scans(kinds, cfg.fractions, cfg.seed)
    backgrounds = [g for root in cfg.background_roots()
                   for g in background_patches(root, cfg, cfg.background_variants, progress)]
    split_of.update({key: "train" for key, _, _ in backgrounds})
    return write_corpus(itertools.chain(synthetic_patches(cfg, progress), backgrounds), out_dir, cfg, split_of)


def scanner_variation(rng: np.random.Generator, max_sigma: float, max_edge_gain: float = 0.0):
    """A function that gives a real slice another scanner's noise: correlated CT noise of a random level
    (0..max_sigma HU) and kernel (cutoff 0.3-0.95 x Nyquist) added inside the field of view, one draw per copy of
    a series; with `max_edge_gain` > 0 the sharper half of those kernels also enhance the slice's edges
    (`anatomy.enhance_edges`). Applied before tampering, so fakes and their controls share it: the noise level
    and edge sharpness of real anatomy are then no label."""
    lo, hi = BACKGROUND_NOISE_CUTOFF
    sigma, cutoff = float(rng.uniform(0, max_sigma)), float(rng.uniform(lo, hi))
    gain = edge_gain((cutoff - lo) / (hi - lo), max_edge_gain)

    def apply(hu: np.ndarray) -> np.ndarray:
        if sigma <= 0 and gain <= 0:
            return hu
        inside = hu > -1500
        out = enhance_edges(np.where(inside, hu, -1024).astype(np.float32), gain)
        if sigma > 0:
            out = out + correlated_noise(rng, hu.shape, sigma, cutoff)
        return np.where(inside, np.rint(np.clip(out, -1024, 3071)), hu).astype(np.float32)

    return apply


def with_ground_glass(rng: np.random.Generator, hu: np.ndarray, spacing: float, share: float) -> np.ndarray:
    """The slice with authentic ground-glass opacity (`anatomy.add_ground_glass`) in its lungs, with probability
    `share`; the slice itself otherwise."""
    if share <= 0 or rng.uniform() >= share:
        return hu
    return np.rint(add_ground_glass(rng, hu, lung_mask(hu, spacing), 1.0 / spacing)).astype(np.float32)


def background_sources(root: str | Path, include=None) -> list[tuple[str, list[CTSlice]]]:
    """Authentic slices to tamper, grouped by source scan: (source id, slices).

    `root` may be a CT-GAN data set folder (its label files say where it was tampered: emulated targets stay
    at least a touch-up region away from those points), or any folder of DICOM series / single DICOM files.
    `include`: only these source ids (a CT-GAN scan's id is its key, e.g. 'EXP1-1009'), e.g. training folds.
    """
    from .ctgan import find_layout, load_dataset
    from .dicom import read_dicom_tree

    root = Path(root)
    try:
        find_layout(root)
        is_ctgan = True
    except FileNotFoundError:
        is_ctgan = False
    sources = []
    if is_ctgan:
        for scan in load_dataset(root):
            if include is not None and scan.key not in include:
                continue
            slices = []
            for inst in sorted(scan.slices):
                sl = scan.slice(inst)
                sl.meta["keep_clear"] = [(r.x, r.y) for r in scan.labels if r.slice == inst]
                slices.append(sl)
            sources.append((scan.key, slices))
        return sources
    for path, slices in read_dicom_tree(root):
        sources.append((path.stem if path.is_file() else path.relative_to(root).as_posix().replace("/", "_"), slices))
    if include is not None:
        sources = [(sid, sl) for sid, sl in sources if sid in include]
    boxes = tumour_boxes(root) if root.is_dir() else {}
    for _, slices in sources:
        for sl in slices:
            sl.meta["tumours"] = boxes.get(sl.meta.get("sop_instance_uid"), [])
    if not sources:
        raise FileNotFoundError(f"{root}: no DICOM slices found" + (" among the included sources" if include else ""))
    return sources


def authentic_copies(variants: int) -> int:
    """How many untouched copies of a background series come before its `variants` tampered ones."""
    return max(1, variants // 2)


def background_copy(source: str, slices: list[CTSlice], cfg: CorpusConfig, copy: int, variants: int):
    """Copy number `copy` of a background series as the corpus makes it: (kind, scan, rng). Copies below
    `variants // 2` (at least one) are authentic (TB, as stored), the next `variants` inject and remove in turn
    (`copy_kind`). Each copy gets its own scanner variation (`scanner_variation`) and ground-glass draw, then CT-GAN's
    emulated tampering clear of the source's known tumours and tampered points; `rng` goes on to draw its patches.
    Same (seed, source, copy) -> same copy, in any process."""
    n_authentic = authentic_copies(variants)
    rng = np.random.default_rng([cfg.seed, zlib.crc32(source.encode()), copy])
    kind = "TB" if copy < n_authentic else copy_kind(copy - n_authentic, cfg.removal_share)
    scanner = scanner_variation(rng, cfg.background_noise, cfg.edge_enhancement)
    avoid = known_points(slices)
    removal = {}
    if kind == "FB" and cfg.removal_nodules > 0:
        slices, removal = _cancers_to_remove(rng, slices, cfg, avoid)
    fresh = [CTSlice(with_ground_glass(rng, scanner(s.hu), s.spacing[1], cfg.background_ground_glass),
                     s.spacing, s.instance, s.z, s.path, dict(s.meta)) for s in slices]
    settings = replace(cfg, resample_authentic=0.0) if kind == "TB" else cfg  # authentic copies as stored
    scan = emulate_scan(Scan("BG", source, "background", kind), fresh, rng, settings, removal_targets=removal,
                        avoid=avoid)
    return kind, scan, rng


def copy_kind(k: int, removal_share: float = 0.5) -> str:
    """Kind of tampered copy number `k` of a background slice: "FB" (a removal) for a `removal_share` of the
    copies, spread evenly over them, else "FM"; 0.5 alternates FM, FB, FM, ..."""
    if not 0.0 <= removal_share <= 1.0:
        raise ValueError(f"removal_share must lie in [0, 1], got {removal_share}")
    return "FB" if np.floor((k + 1) * removal_share) > np.floor(k * removal_share) else "FM"


def known_points(slices: list[CTSlice]) -> dict:
    """{instance: points} that tampering of a background copy must keep clear of: a slice's annotated tumours and
    the points a CT-GAN data set's scan was tampered at (`keep_clear`)."""
    return {s.instance: s.meta.get("keep_clear", []) + s.meta.get("tumours", []) for s in slices}


def _cancers_to_remove(rng: np.random.Generator, slices: list[CTSlice], cfg: CorpusConfig, avoid: dict):
    """(slices, targets): copies of `slices` with an authentic nodule drawn at each of their removal targets (each
    with probability `cfg.removal_nodules`; clear of `avoid[instance]`), before scanner variation, so the nodule
    carries the copy's noise and kernel; and the targets per instance. A copy keeps the lung mask of the slice as
    stored, without the nodules (computed once per stored slice, under its own key: the other copies compute
    theirs from their own noise)."""
    out, targets = [], {}
    for s in slices:
        spacing = s.spacing[1]
        lungs = cached_lung_mask(s, "stored_lungs")
        points = _targets(s.hu, lungs, spacing, rng, cfg, avoid.get(s.instance, []))
        hu = s.hu.copy()
        for x, y in points:
            if rng.random() < cfg.removal_nodules:
                draw_nodule(hu, random_nodule(rng, x, y, 1.0 / spacing, REMOVED_CANCER_MM), rng,
                            cfg.heterogeneous_nodules)
        hu = np.where(lungs, hu, s.hu)  # the remover in-paints lung only: a cancer outside it would stay
        targets[s.instance] = points
        out.append(CTSlice(hu, s.spacing, s.instance, s.z, s.path, dict(s.meta, lungs=lungs)))
    return out, targets


def background_patches(root: str | Path, cfg: CorpusConfig, variants: int = 4, progress: bool = True,
                       include=None):
    """Emulated CT-GAN tampering on real authentic slices. Per source series, copies of every slice with enough
    lung, each copy with its own scanner noise (`background_copy`):

    - `variants` tampered copies, injecting and removing in turn (`copy_kind`), fresh targets each time, with same-slice
      controls. CT-GAN resamples the whole scan, so these controls are resampled too;
    - `variants // 2` (at least one) authentic copies as stored, not resampled, with random lung points (and the
      annotated tumours, once): as many authentic patches of untouched texture as there are controls, so that
      on real anatomy neither resampling nor its absence is what tells the classes apart.

    Yields (key, kind, patches) per source; all copies of one source share its scan key (a split never separates
    them).
    """
    from tqdm.auto import tqdm

    n_authentic = authentic_copies(variants)
    per_slice = max(1, round(variants * cfg.tampers_per_slice / n_authentic))
    for source, slices in tqdm(background_sources(root, include), desc="backgrounds", unit="series",
                               disable=not progress):
        group = []
        for v in range(n_authentic + variants):
            kind, scan, rng = background_copy(source, slices, cfg, v, variants)
            if v == 0:  # annotated tumours are authentic patches, as in the false-alarm test
                scan.labels += [LabelRow("TM", scan.uuid, s.instance, x, y, scan.experiment)
                                for s in scan.slices.values() for x, y in s.meta.get("tumours", [])]
            if kind != "TB":
                tampered = {r.slice for r in scan.labels if r.tampered}
                scan.slices = {k: sl for k, sl in scan.slices.items() if k in tampered}
            group += extract_patches(scan, rng, size=cfg.patch_size, jitter=cfg.jitter,
                                     random_per_slice=per_slice if kind == "TB" else 0)
        yield f"BG-{source}", "BG", group
