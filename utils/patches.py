"""Scans + label rows -> labelled 64 px patches, matched controls, scan-level splits, PNG folders + manifest.

The one path from any source (synthetic, emulated on real backgrounds, or the CT-GAN data set) to the
`DATA/{train,val,test}/{real,fake}/*.png` layout and `DATA/manifest.csv`. Every patch cut from a slice also
gets a *reference*: the window at an untouched lung point of the same slice, at least a patch side away
(`DATA/{split}/reference/{real,fake}/<same name>.png`; manifest columns ref_x, ref_y), so that a comparing
model can judge a region against its own slice's texture.
"""
from __future__ import annotations

import csv
import shutil
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from .dicom import window
from .lungmask import cached_lung_mask, sample_lung_points
from .scans import Scan
from .tamper import footprint_half_px

PATCH_SIZE = 64
SPLITS = ("train", "val", "test")
CLASSES = ("real", "fake")  # label 0, label 1
AUTHENTIC_SPACING_PX = 48  # authentic points keep this far from each other and from labelled points
HOLE_MM = 20.0
CUBE_Z_MM = 16.0  # slices this close (in z) to a tampered point lie inside its 32 mm cube
REFERENCE = "reference"  # DATA/{split}/reference/{real,fake}/: each patch's reference window, same file name
REFERENCE_CANDIDATES = 8
AIR_HU = -1000.0  # what a crop reads outside the slice
MANIFEST_FIELDS = ("path", "split", "label", "kind", "scan", "source", "slice", "x", "y",
                   "tamper_x", "tamper_y", "tamper_r", "resampled", "ref_x", "ref_y")


@dataclass
class Patch:
    """A windowed patch and where it came from. tamper_* are in patch pixels (None for authentic patches);
    resampled: 1 if its scan went through a 1 mm resampling round trip, 0 if not, None if unknown;
    reference: the windowed reference patch of the same slice at (ref_x, ref_y), None if none was found."""

    image: np.ndarray
    label: int
    kind: str
    scan: str
    source: str
    slice: int
    x: int
    y: int
    tamper_x: float | None = None
    tamper_y: float | None = None
    tamper_r: float | None = None
    resampled: int | None = None
    reference: np.ndarray | None = None
    ref_x: int | None = None
    ref_y: int | None = None


def crop_hu(hu: np.ndarray, x: int, y: int, size: int = PATCH_SIZE) -> np.ndarray:
    """size x size HU crop centred on (x, y) (column, row), rows y - size/2 .. y + size/2 - 1; outside the slice
    counts as air. A view of the slice when the crop lies inside it; only a crop at the border is copied."""
    half = size // 2
    y0, x0 = int(y) - half, int(x) - half
    h, w = hu.shape
    if 0 <= y0 and y0 + size <= h and 0 <= x0 and x0 + size <= w:
        return hu[y0 : y0 + size, x0 : x0 + size]
    out = np.full((size, size), AIR_HU, dtype=hu.dtype)
    ys, xs = slice(max(y0, 0), min(y0 + size, h)), slice(max(x0, 0), min(x0 + size, w))
    if ys.start < ys.stop and xs.start < xs.stop:
        out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = hu[ys, xs]
    return out


def patch_input(hu: np.ndarray, x: int, y: int, size: int = PATCH_SIZE) -> np.ndarray:
    """The patch centred on (x, y) as a model reads it: `crop_hu`, the lung window, float32 (size, size, 1) in
    [0, 1] (the same values as the training PNG read back)."""
    return window(crop_hu(hu, x, y, size)).astype(np.float32)[..., None] / 255.0


def reference_candidates(hu: np.ndarray, lungs: np.ndarray, spacing: float, key: str, instance: int,
                         avoid=(), clear=(), size: int = PATCH_SIZE, n: int = REFERENCE_CANDIDATES) -> list:
    """Untouched lung points (x, y) of one slice where reference windows may sit: outside the `clear` boxes
    (`clear_boxes`: no window reaches a tampered region), a patch side from each other and from `avoid`.
    Drawn from their own generator, seeded by scan key and slice, so the same slice always gives the same
    points and no other random draw of the corpus moves."""
    rng = np.random.default_rng([zlib.crc32(key.encode()), int(instance)])
    return sample_lung_points(hu, lungs, spacing, rng, n, avoid=avoid, min_dist_px=size, margin=size // 2,
                              clear_boxes=clear)


def clear_references(candidates, x: int, y: int, size: int = PATCH_SIZE, n: int | None = None) -> list:
    """The first `n` (None: all) candidates whose windows do not overlap the window at (x, y) (Chebyshev distance
    >= size), in order."""
    clear = ((int(cx), int(cy)) for cx, cy in candidates if max(abs(cx - x), abs(cy - y)) >= size)
    return list(islice(clear, n))


def pick_reference(candidates, x: int, y: int, size: int = PATCH_SIZE):
    """The first candidate whose window does not overlap the window at (x, y), else None."""
    found = clear_references(candidates, x, y, size, 1)
    return found[0] if found else None


def attach_reference(patch: Patch, hu: np.ndarray, candidates, size: int = PATCH_SIZE) -> Patch:
    """Give `patch` the window of its slice at the first candidate that does not overlap it (if any)."""
    point = pick_reference(candidates, patch.x, patch.y, size)
    if point is not None:
        patch.ref_x, patch.ref_y = point
        patch.reference = window(crop_hu(hu, *point, size))
    return patch


def soft_tissue_share(hu_patch: np.ndarray) -> float:
    return float((hu_patch > -500).mean())


def _make(sl, x, y, size, label, kind, scan, tamper=None, references=None) -> tuple[Patch, float]:
    hu = crop_hu(sl.hu, x, y, size)
    patch = Patch(window(hu), label, kind, scan.key, scan.source, sl.instance, int(x), int(y),
                  resampled=None if scan.resampled is None else int(scan.resampled))
    if tamper is not None:
        tx, ty, r = tamper
        patch.tamper_x, patch.tamper_y, patch.tamper_r = tx - x + size // 2, ty - y + size // 2, r
    if references is not None:
        attach_reference(patch, sl.hu, references(sl), size)
    return patch, soft_tissue_share(hu)


def extract_patches(scan: Scan, rng: np.random.Generator, size: int = PATCH_SIZE, jitter: int = 0,
                    random_per_slice: int = 0, controls: bool = True, neighbours: bool = False,
                    random_slices: int = 4) -> list[Patch]:
    """Cut the patches of one scan.

    - a fake patch at every FB/FM point (with `neighbours`, also on the scan's other slices within the
      in-painted region's z-extent, +-10 mm);
    - for a tampered slice the scan keeps as the attack found it (`Scan.originals`), an authentic "twin" at the
      same point of that slice;
    - an authentic patch at every TM point;
    - with `controls`, one matched control per fake: an untouched lung point of the same slice (else scan) whose
      share of pixels above -500 HU is closest to the fake's;
    - `random_per_slice` untouched lung points per slice (kind TB). A TB scan stored on disk contributes
      `random_slices` slices from the middle of the scan.
    Every patch gets a reference window of its own slice (`reference_candidates`, `attach_reference`).
    Centres move by up to `jitter` px so that position is no cue. No pixel of an authentic patch (control,
    random or TM), jitter included, falls inside the footprint of a tampered point of its slice or of a slice
    within the tampered cube's z-extent (`clear_boxes`).
    """
    by_slice = defaultdict(list)
    tampered = [r for r in scan.labels if r.tampered]
    for r in tampered:
        by_slice[r.slice].append(r)
    patches, fakes = [], []
    candidates = {}

    def references(sl):
        if sl.instance not in candidates:
            avoid = [(r.x, r.y) for r in scan.labels if r.slice == sl.instance and r.type in ("FB", "FM", "TM")]
            candidates[sl.instance] = reference_candidates(
                sl.hu, cached_lung_mask(sl), sl.spacing[1], scan.key, sl.instance,
                avoid + list(map(tuple, sl.meta.get("keep_clear", []))), clear_boxes(scan, sl.instance, size), size)
        return candidates[sl.instance]

    def jit():
        return rng.integers(-jitter, jitter + 1, 2) if jitter else (0, 0)

    for r in tampered:
        if r.slice not in scan.slices:
            continue
        sl = scan.slice(r.slice)
        radius = scan.radii.get((r.slice, r.x, r.y), HOLE_MM / 2 / sl.spacing[1])
        dx, dy = jit()
        patch, share = _make(sl, r.x + dx, r.y + dy, size, 1, r.type, scan, (r.x, r.y, radius), references)
        patches.append(patch)
        fakes.append((r.slice, share))
        if r.slice in scan.originals:  # the same point before the attack: authentic, same anatomy and history
            before = scan.originals[r.slice]
            twin = _make(before, r.x + dx, r.y + dy, size, 0, "twin", scan, references=references)[0]
            twin.resampled = int(bool(before.meta.get("resampled", False)))
            patches.append(twin)
        if neighbours and sl.z is not None:
            for inst in scan.slices:
                if inst == r.slice:
                    continue
                other = scan.slice(inst)
                if other.z is not None and 0 < abs(other.z - sl.z) <= HOLE_MM / 2:
                    patches.append(_make(other, r.x + dx, r.y + dy, size, 1, r.type, scan, (r.x, r.y, radius),
                                           references)[0])
    for r in scan.labels:
        if r.type == "TM" and r.slice in scan.slices:
            dx, dy = jit()
            x, y = r.x + dx, r.y + dy
            if any(max(abs(x - cx), abs(y - cy)) < half for cx, cy, half in clear_boxes(scan, r.slice, size, 0)):
                continue  # an authentic cancer inside a tampered region is no longer authentic
            patches.append(_make(scan.slice(r.slice), x, y, size, 0, "TM", scan, references=references)[0])

    instances = {r.slice for r in scan.labels if r.slice in scan.slices}
    instances |= {k for k, v in scan.slices.items() if not isinstance(v, (str, Path))}
    if not instances and scan.slices:  # a TB scan on disk: a few slices from the middle of the lungs
        order = sorted(scan.slices)
        middle = order[int(len(order) * 0.3) : max(int(len(order) * 0.7), int(len(order) * 0.3) + 1)]
        pick = rng.choice(len(middle), size=min(random_slices, len(middle)), replace=False)
        instances = {middle[i] for i in pick}
    instances = sorted(instances)

    need = Counter(s for s, _ in fakes) if controls else Counter()
    pool = []  # (slice, patch, share)
    for inst in instances:
        sl = scan.slice(inst)
        lungs = cached_lung_mask(sl)
        avoid = [(r.x, r.y) for r in scan.labels if r.slice == inst and r.type in ("FB", "FM", "TM")]
        avoid += sl.meta.get("keep_clear", [])
        n = random_per_slice + (need[inst] + 3 if controls else 0)
        for x, y in sample_lung_points(sl.hu, lungs, sl.spacing[1], rng, n, avoid=avoid,
                                       min_dist_px=AUTHENTIC_SPACING_PX, margin=size // 2,
                                       clear_boxes=clear_boxes(scan, inst, size, jitter)):
            dx, dy = jit()
            patch, share = _make(sl, x + dx, y + dy, size, 0, "TB", scan, references=references)
            pool.append((inst, patch, share))
    if controls:
        for inst, share in fakes:
            if not pool:
                break
            same = [i for i, p in enumerate(pool) if p[0] == inst] or list(range(len(pool)))
            best = min(same, key=lambda i: abs(pool[i][2] - share))
            _, patch, _ = pool.pop(best)
            patch.kind = "control"
            patches.append(patch)
    by_inst = defaultdict(list)
    for inst, patch, _ in pool:
        by_inst[inst].append(patch)
    for inst in instances:
        patches.extend(by_inst[inst][:random_per_slice])
    scan.release()
    return patches


def clear_boxes(scan: Scan, instance: int, size: int = PATCH_SIZE, jitter: int = 0) -> list[tuple[int, int, int]]:
    """Squares (x, y, half) that an authentic patch centre of this slice must stay out of (Chebyshev distance):
    the footprint of every tampered point of the slice, or of a slice within the cube's z-extent, grown by half
    a patch and the jitter. Points of a real tampered scan given as `keep_clear` count as tampered."""
    sl = scan.slice(instance)
    half = int(np.ceil(footprint_half_px(sl.spacing[1]) + size / 2 + jitter))
    points = set(map(tuple, sl.meta.get("keep_clear", [])))
    for r in scan.labels:
        if not r.tampered or r.slice not in scan.slices:
            continue
        if r.slice == instance:
            points.add((r.x, r.y))
        elif sl.z is not None:
            other = scan.slices[r.slice]
            z = other.z if not isinstance(other, (str, Path)) else None
            if z is not None and abs(z - sl.z) < CUBE_Z_MM:
                points.add((r.x, r.y))
    return [(int(x), int(y), half) for x, y in sorted(points)]


def split_scans(scan_kinds: dict[str, str], fractions=(0.7, 0.15, 0.15), seed: int = 0) -> dict[str, str]:
    """Assign every scan (key -> scan-level kind) to train/val/test; a scan is never split.

    Stratified by kind: scans are shuffled within their kind and interleaved, so every split gets each kind in
    proportion; val and test get at least one scan each when they have a share and there are 3+ scans.
    """
    rng = np.random.default_rng(seed)
    groups = defaultdict(list)
    for key in sorted(scan_kinds):
        groups[scan_kinds[key]].append(key)
    position = {}
    for kind in sorted(groups):
        keys = groups[kind]
        for rank, i in enumerate(rng.permutation(len(keys))):
            position[keys[i]] = (rank + 0.5) / len(keys) + rng.uniform(0, 1e-6)
    order = sorted(position, key=position.get)
    n = len(order)
    share = np.asarray(fractions, float) / np.sum(fractions)
    n_val, n_test = (max(1, round(f * n)) if f > 0 and n >= 3 else round(f * n) for f in share[1:])
    n_train = n - n_val - n_test
    return {key: SPLITS[0 if i < n_train else 1 if i < n_train + n_val else 2] for i, key in enumerate(order)}


def patch_filename(p: Patch) -> str:
    return f"{p.scan}_s{p.slice}_x{p.x}_y{p.y}_{p.kind}.png"


def write_dataset(patches: list[Patch], split_of: dict[str, str], out_dir: str | Path) -> Path:
    """Write patches as 8-bit PNGs into out_dir/{split}/{real,fake}/ and out_dir/manifest.csv.

    Earlier split folders and manifest in out_dir are replaced, so no stale patch survives a new run.
    """
    out_dir = Path(out_dir)
    for split in SPLITS:
        shutil.rmtree(out_dir / split, ignore_errors=True)
        for cls in CLASSES:
            (out_dir / split / cls).mkdir(parents=True, exist_ok=True)
    rows, seen = [], Counter()
    for p in patches:
        split = split_of[p.scan]
        name = patch_filename(p)
        seen[(split, name)] += 1
        if seen[(split, name)] > 1:
            name = name.replace(".png", f"_{seen[(split, name)]}.png")
        rel = f"{split}/{CLASSES[p.label]}/{name}"
        if not cv2.imwrite(str(out_dir / rel), p.image):
            raise OSError(f"could not write {out_dir / rel}")
        if p.reference is not None:
            ref = out_dir / reference_path(rel)
            ref.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(ref), p.reference):
                raise OSError(f"could not write {ref}")
        row = asdict(p)
        row.pop("image")
        row.pop("reference")
        row.update(path=rel, split=split)
        rows.append({k: ("" if row[k] is None else (round(row[k], 2) if isinstance(row[k], float) else row[k]))
                     for k in MANIFEST_FIELDS})
    with open(out_dir / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return out_dir / "manifest.csv"


def reference_path(path: str | Path) -> Path:
    """Where the reference window of the patch file SPLIT/CLASS/NAME lies: SPLIT/reference/CLASS/NAME."""
    path = Path(path)
    return path.parent.parent / REFERENCE / path.parent.name / path.name


def read_manifest(path: str | Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def summarize(rows: list[dict]) -> str:
    """One line of counts per split / class / kind, e.g. for the end of a CLI run."""
    parts = []
    for split in SPLITS:
        sub = [r for r in rows if r["split"] == split]
        if not sub:
            continue
        kinds = Counter(r["kind"] for r in sub)
        classes = Counter(CLASSES[int(r["label"])] for r in sub)
        scans = len({r["scan"] for r in sub})
        parts.append(f"{split}: {len(sub)} ({scans} scans; real {classes['real']}, fake {classes['fake']}; "
                     + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ")")
    return " | ".join(parts)
