"""The real CT-GAN data set ("Deepfakes: Medical Image Tamper Detection", UCI 2020) on disk -> Scans.

Finds scan folders and label files under either published layout:
Kaggle `CT_Scans/EXP1_blind/<uuid>/*.dcm` + `labels_exp1.csv`, and UCI
`Tampered Scans/Experiment 1 - Blind/<uuid>/*.dcm`. Scans are keyed by (experiment, uuid).
"""
from __future__ import annotations

import csv
import re
import warnings
from collections import defaultdict
from pathlib import Path

import pydicom

from .dicom import DicomError, list_dicom_files
from .scans import CODES, TAMPERED, LabelRow, Scan

_EXPERIMENT_DIR = re.compile(r"^exp(?:eriment)?[\s_-]*(\d)(?!\d)", re.IGNORECASE)
_LABEL_FILE = re.compile(r"^labels_exp(\d)\.csv$", re.IGNORECASE)
TM_PATCH_PX = 64  # side of the data set's tm_patches crops


def _experiment_of(name: str) -> str | None:
    m = _EXPERIMENT_DIR.match(name.strip())
    return f"EXP{m.group(1)}" if m else None


def find_layout(root: str | Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Experiment -> scans folder and experiment -> label file found under root (either layout)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected the CT-GAN data set's root)")
    folders, labels = {}, {}
    for path in sorted(root.rglob("*")):
        if path.is_dir() and (exp := _experiment_of(path.name)) and exp not in folders:
            folders[exp] = path
        elif path.is_file() and (m := _LABEL_FILE.match(path.name)):
            labels.setdefault(f"EXP{m.group(1)}", path)
    if not labels:
        raise FileNotFoundError(f"{root}: no labels_exp1.csv / labels_exp2.csv found")
    return folders, labels


def read_labels(path: str | Path, experiment: str) -> list[LabelRow]:
    """Rows of a labels_exp*.csv (header type,uuid,slice,x,y); a malformed row raises naming file and line."""
    rows = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"type", "uuid", "slice", "x", "y"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: header lacks {sorted(missing)} (expected type,uuid,slice,x,y)")
        for line, rec in enumerate(reader, start=2):
            code = rec["type"].strip().upper()
            if code not in CODES:
                raise ValueError(f"{path}:{line}: unknown label type {rec['type']!r} (expected one of {CODES})")
            try:
                rows.append(LabelRow(code, rec["uuid"].strip(), int(float(rec["slice"])), int(float(rec["x"])),
                                     int(float(rec["y"])), experiment))
            except ValueError as err:
                raise ValueError(f"{path}:{line}: {err}") from err
    return rows


def index_series(folder: Path) -> dict[int, Path]:
    """InstanceNumber -> file for one scan folder (headers only)."""
    out = {}
    for path in list_dicom_files(folder):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["InstanceNumber"])
            out[int(ds.InstanceNumber)] = path
        except Exception as err:  # noqa: BLE001 - any parse failure means the same thing here
            raise DicomError(f"{path}: unreadable DICOM header ({type(err).__name__}: {err})") from err
    return out


def load_dataset(root: str | Path, experiments=("EXP1", "EXP2"), skip_corrupt: bool = False) -> list[Scan]:
    """Scans (slices read lazily) with their label rows, for the experiments present under root.

    Label rows whose scan folder is missing produce one warning with their count. A scan folder whose
    headers cannot be read raises `DicomError` naming the file, or with `skip_corrupt` is skipped with a warning.
    """
    folders, label_files = find_layout(root)
    scans, missing = [], 0
    for exp in experiments:
        if exp not in label_files:
            continue
        by_uuid = defaultdict(list)
        for row in read_labels(label_files[exp], exp):
            by_uuid[row.uuid].append(row)
        base = folders.get(exp)
        for uuid, rows in sorted(by_uuid.items()):
            folder = base / uuid if base is not None else None
            if folder is None or not folder.is_dir():
                missing += len(rows)
                continue
            try:
                slices = index_series(folder)
            except DicomError as err:
                if not skip_corrupt:
                    raise
                warnings.warn(f"skipping scan {exp}/{uuid}: {err}", stacklevel=2)
                continue
            kinds = {r.type for r in rows}
            kind = next((k for k in ("FM", "FB", "TM", "TB") if k in kinds), "TB")
            present = [r for r in rows if r.type == "TB" or r.slice in slices]
            missing += len(rows) - len(present)
            scans.append(Scan(exp, uuid, "ctgan", kind, dict(slices), present, resampled=kind in TAMPERED))
    if missing:
        warnings.warn(f"{missing} label row(s) under {root} point to scans or slices that are not there; "
                      "they were left out", stacklevel=2)
    if not scans:
        raise FileNotFoundError(f"{root}: label files found, but none of their scans")
    return scans


def tm_patches(root: str | Path, scans=()) -> list:
    """The development sample's `tm_patches/<uuid>_<slice>_<x>_<y>.png` (64 px lung-window crops around
    authentic cancers) as TM patches, for scans whose slices are not in the sample itself."""
    import cv2

    from .patches import Patch

    have = {(s.uuid, r.slice) for s in scans for r in s.labels if r.type == "TM"}
    _, label_files = find_layout(root)
    experiment_of = {}
    for exp, path in sorted(label_files.items()):
        for row in read_labels(path, exp):
            experiment_of.setdefault((row.uuid, row.slice, row.x, row.y), exp)
    out = []
    for path in sorted(Path(root).rglob("tm_patches/*.png")):
        parts = path.stem.split("_")
        if len(parts) != 4:
            raise ValueError(f"{path}: expected a name <uuid>_<slice>_<x>_<y>.png")
        uuid, sl, x, y = parts[0], int(parts[1]), int(parts[2]), int(parts[3])
        if (uuid, sl) in have:
            continue
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError(f"{path}: unreadable image file")
        exp = experiment_of.get((uuid, sl, x, y), "EXP1")
        out.append(Patch(image, 0, "TM", f"{exp}-{uuid}", "ctgan", sl, x, y))
    return out


def prepare_ctgan(root: str | Path, out_dir: str | Path, seed: int = 0, protocol: str = "random",
                  fractions=(0.7, 0.15, 0.15), neighbours: bool = False, random_per_slice: int = 1,
                  skip_corrupt: bool = False, progress: bool = True, size: int = 64,
                  jitter: int | None = None) -> Path:
    """The real data set -> patch folders + manifest, split by scan.

    protocol: 'random' (stratified by scan kind), 'exp1-exp2' (train/val from the blind trial, test = the open
    trial), or 'test' (every scan in the test split: for evaluating a model trained elsewhere).
    size, jitter: patch side in px and the largest random shift of a patch centre from its label point. Jitter
    None: 0 for 'test' (patches centred on their points, as the figures on the data set are cut), otherwise the
    corpus's (`CorpusConfig.jitter`), so that a model trained on real data sees its tampered regions as off-centre
    as `scan`'s windows do (benchmarks/README.md, *Training views off-centre*). The data set's tm_patches are 64 px
    crops without their slice: they join only 64 px patches (a warning says so otherwise).
    """
    import numpy as np
    from tqdm.auto import tqdm

    from .patches import extract_patches, split_scans, write_dataset

    if jitter is None:
        from .synthetic import CorpusConfig

        jitter = 0 if protocol == "test" else CorpusConfig.jitter
    scans = load_dataset(root, skip_corrupt=skip_corrupt)
    patches = []
    for i, scan in enumerate(tqdm(scans, desc="CT-GAN scans", unit="scan", disable=not progress)):
        rng = np.random.default_rng([seed, i])
        patches += extract_patches(scan, rng, size=size, jitter=jitter, random_per_slice=random_per_slice,
                                   neighbours=neighbours)
    kinds = {s.key: s.kind for s in scans}
    extra = tm_patches(root, scans)
    if extra and size != TM_PATCH_PX:
        warnings.warn(f"{root}: its {len(extra)} tm_patches are {TM_PATCH_PX} px crops without their slice; "
                      f"left out of {size} px patches", stacklevel=2)
        extra = []
    for patch in extra:
        patches.append(patch)
        kinds.setdefault(patch.scan, "TM")
    if protocol == "random":
        split_of = split_scans(kinds, fractions, seed)
    elif protocol == "exp1-exp2":
        exp1 = {k: v for k, v in kinds.items() if k.startswith("EXP1")}
        tv = fractions[0] / (fractions[0] + fractions[1])
        split_of = split_scans(exp1, (tv, 1 - tv, 0.0), seed)
        split_of.update({k: "test" for k in kinds if not k.startswith("EXP1")})
    elif protocol == "test":
        split_of = {k: "test" for k in kinds}
    else:
        raise ValueError(f"unknown protocol {protocol!r}: use 'random', 'exp1-exp2' or 'test'")
    return write_dataset(patches, split_of, out_dir)
