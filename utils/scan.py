"""Whole-slice and whole-series scanning: where in this CT was it tampered?

The patch model slides over the lung region of each 512x512 HU slice on a grid (stride px), in batches, with
the same crop and lung window as training (`patches.crop_hu`, `dicom.window`), each window scored once or averaged
over its flips and quarter turns (`DIHEDRAL`, as the model's slice thresholds were chosen). Scores become a heatmap at
slice resolution and the top suspicious points after non-maximum suppression; a series is reduced to its top
3-D locations (points of neighbouring slices merged) and a scan-level score (the maximum), as video-level
scores aggregate frames in deepfake benchmarks.
"""
from __future__ import annotations

import warnings
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import layers  # noqa: F401  (registers the custom layers: models load with safe_mode)
from .dicom import CTSlice, read_series, read_slices, window
from .ensemble import members
from .lungmask import CENTRE_DEPTH_MM, lung_mask, patch_centres
from .operating_point import SYMMETRY_GROUPS, model_stride, model_symmetries
from .patches import AIR_HU, clear_references, patch_input, reference_candidates
from .quiet import quiet_logs
from .texture import band_levels


@dataclass
class Location:
    """A suspicious point: slice (InstanceNumber), x = column, y = row (slice pixels), fake score."""

    slice: int
    x: int
    y: int
    score: float


@dataclass
class SliceResult:
    """Heatmap (H, W) of fake probability inside the lungs (0 elsewhere) and the top points, best first."""

    heatmap: np.ndarray
    locations: list
    n_patches: int
    hu_source: np.ndarray | None = None
    baseline: float = 0.0  # median score of the slice's lung patches
    points: np.ndarray | None = None  # (N, 2) window centres (y, x) on the scan grid
    scores: np.ndarray | None = None  # (N,) their fake scores
    stride: int = 16
    spacing: float | None = None  # pixel spacing of the slice, mm
    fine_band: float | None = None  # fine-texture level over its lung parenchyma, HU (`texture.band_levels`)

    def contrast(self) -> float:
        """Top score minus the slice's median: tampering is local, a scanner's texture lifts every patch."""
        return self.locations[0].score - self.baseline if self.locations else 0.0

    def consensus(self) -> float:
        """The best neighbourhood mean: for every window, the mean score of it and its 8 grid neighbours (one
        stride away; one outside the lungs counts as the slice's median), maximised over windows. CT-GAN's region
        (a 32 mm cube) reaches several overlapping windows, while one window's chance false alarm has no reason to
        be echoed by its neighbours; hundreds of windows per slice make that chance alarm near certain somewhere."""
        return consensus_score(self.points, self.scores, self.stride)


@dataclass
class SeriesResult:
    verdict: str
    score: float
    locations: list
    slices: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    threshold: float | None = None  # the score at or above which the verdict is "tampered"
    notes: list = field(default_factory=list)  # what the reader should know of the verdict (e.g. lossy slices)

    def as_json(self) -> dict:
        return {"verdict": self.verdict, "score": self.score, "threshold": self.threshold,
                "locations": [asdict(loc) for loc in self.locations], "notes": self.notes}


def model_patch_size(model) -> int:
    shape = model.inputs[0].shape
    if shape[1] != shape[2]:
        raise ValueError(f"the scanner needs a square patch model, got input {tuple(shape[1:])}")
    return int(shape[1])


# The flips and quarter turns of the square as (quarter turns, mirrored first); the first 1, 2, 4 and 8 are each a
# group (identity; a mirror; both mirrors and the half turn; all eight), so any prefix averages symmetrically.
DIHEDRAL = ((0, False), (0, True), (2, True), (2, False), (1, False), (3, False), (1, True), (3, True))


def dihedral(a: np.ndarray, k: int, axes=(0, 1)) -> np.ndarray:
    """The k-th of the square's 8 symmetries (`DIHEDRAL`) applied to the plane `axes` of `a`."""
    turns, mirrored = DIHEDRAL[k]
    if mirrored:
        a = np.flip(a, axis=axes[1])
    return np.rot90(a, turns, axes)


def dihedral_corners(corners, shape, size: int, k: int) -> np.ndarray:
    """Top-left corners (N, 2) (row, col), in `dihedral(image, k)`, of the `size` px squares whose top-left corners
    in an image of `shape` are `corners`: a square stays a square, its new corner is the least of its four."""
    turns, mirrored = DIHEDRAL[k]
    h, w = shape
    first = np.asarray(corners)
    opposite = np.stack([first, first + size - 1])  # two opposite corners of each square, (row, col)
    rows, cols = opposite[..., 0], opposite[..., 1]
    if mirrored:
        cols = w - 1 - cols
    for _ in range(turns):  # np.rot90 moves pixel (r, c) of an h x w image to (w - 1 - c, r) of a w x h one
        rows, cols, h, w = w - 1 - cols, rows, w, h
    return np.stack([rows.min(axis=0), cols.min(axis=0)], axis=1)


def grid_points(lungs: np.ndarray, stride: int, margin: int = 0) -> np.ndarray:
    """(N, 2) grid points (y, x) every `stride` px that lie inside the lung mask."""
    h, w = lungs.shape
    ys = np.arange(margin + stride // 2, h - margin, stride)
    xs = np.arange(margin + stride // 2, w - margin, stride)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    keep = lungs[yy, xx]
    return np.stack([yy[keep], xx[keep]], axis=1)


def nms(points, scores, radius: float, top_k: int) -> list[int]:
    """Indices of the best points, each at least `radius` px from every better one kept."""
    kept = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        if all((points[i][0] - points[j][0]) ** 2 + (points[i][1] - points[j][1]) ** 2 >= radius**2 for j in kept):
            kept.append(int(i))
            if len(kept) == top_k:
                break
    return kept


class SharedStem:
    """A patch model split at its CNN feature map, so that a slice's stem runs once and every window reads its
    features from the shared map instead of convolving its own pixels again.

    Exact only for a stem without padding (`architectures.build_cnn(padding='valid')`): then a window's feature
    cells see nothing but the window's pixels, and the window's features are a `cells` x `cells` block of the
    slice's feature map whenever the window's corner lies on the stem's `step` grid (its total pooling stride).

    Args:
        model: a patch model (not a comparing one) whose stem has no padding.
    """

    def __init__(self, model):
        import keras

        from .architectures import FEATURES, cnn_layer_names, feature_geometry

        if not shares_stem(model):
            raise ValueError(f"{model.name}: a shared stem needs a patch model whose CNN stem has no padding")
        names = cnn_layer_names(model)
        inputs = keras.Input((None, None, int(model.inputs[0].shape[-1])), name="slice")
        x = inputs
        for name in names[1:]:
            x = model.get_layer(name)(x)
        self.stem = keras.Model(inputs, x, name=f"{model.name}_stem")
        features = model.get_layer(FEATURES).output
        self.head = keras.Model(features, model.output, name=f"{model.name}_head")
        self.cells = int(features.shape[1])
        self.size = model_patch_size(model)
        self.step = int(feature_geometry(model)[0])

    def aligned(self, points) -> bool:
        """True when every window corner lies on the stem's grid relative to the first one."""
        return len(points) > 0 and not ((np.asarray(points) - np.asarray(points)[0]) % self.step).any()

    def scores(self, hu: np.ndarray, points, batch_size: int = 256, quantum: int = 64,
               symmetries: int = 1) -> np.ndarray:
        """Scores of the windows centred on `points` (N, 2) (y, x) of a HU slice: the stem once over the
        windows' bounding box (padded with air like `patches.crop_hu`, its sides rounded up to `quantum` px so
        that a compiling backend sees few shapes), then the head on each window's block of features. With
        `symmetries` > 1, the mean over the first that many of the square's symmetries (`DIHEDRAL`) of each
        window: the stem runs once over each flipped or turned box."""
        points = np.asarray(points)
        if not self.aligned(points):
            raise ValueError(f"window centres must lie on a {self.step} px grid to share the stem")
        half = self.size // 2
        top = points.min(axis=0) - half
        extent = points.max(axis=0) - points.min(axis=0) + self.size
        extent = -(-extent // quantum) * quantum
        region = np.full(tuple(extent), AIR_HU, np.float32)
        h, w = hu.shape
        y0, x0 = max(top[0], 0), max(top[1], 0)
        y1, x1 = min(top[0] + extent[0], h), min(top[1] + extent[1], w)
        region[y0 - top[0] : y1 - top[0], x0 - top[1] : x1 - top[1]] = hu[y0:y1, x0:x1]
        image = window(region).astype(np.float32) / 255.0
        corners = points - points.min(axis=0)
        offsets = np.arange(self.cells)
        out = []
        for k in range(symmetries):
            # scanning feeds a few input shapes by design (regions rounded to 64 px, batches to 32 rows)
            view = np.ascontiguousarray(dihedral(image, k)[None, ..., None])
            with quiet_logs("tensorflow"):
                fmap = np.asarray(self.stem.predict_on_batch(view))[0]
            cells = dihedral_corners(corners, image.shape, self.size, k) // self.step
            rows = cells[:, 0, None, None] + offsets[None, :, None]
            cols = cells[:, 1, None, None] + offsets[None, None, :]
            out.append(predict_windows(self.head, fmap[rows, cols], batch_size))
        return np.mean(out, axis=0)


_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def shared_stem(model) -> SharedStem | None:
    """The model's `SharedStem` (built once per model), or None when its stem cannot be shared."""
    if not shares_stem(model):
        return None
    if model not in _SHARED:
        _SHARED[model] = SharedStem(model)
    return _SHARED[model]


def shares_stem(model) -> bool:
    """True for a patch model whose stem can run once per slice (`SharedStem`): no padding, not comparing."""
    from .architectures import FEATURES, compares, stem_padding

    layers_ = getattr(model, "layers", ())
    return (bool(layers_) and any(layer.name == FEATURES for layer in layers_) and not compares(model)
            and stem_padding(model) == "valid")


def _reference_points(hu, lungs, spacing: float, name: str, instance: int, size: int) -> list:
    """Where a comparing model's reference windows may sit in this slice (`patches.reference_candidates`)."""
    candidates = reference_candidates(hu, lungs, spacing, name, instance, size=size)
    if not candidates:
        raise ValueError(f"{name}: no room in the lungs for a reference window (a comparing model needs one)")
    return candidates


def _references_of(candidates, x, y, size: int, n: int) -> list:
    """The first `n` candidates whose windows do not overlap the window at (x, y)
    (`patches.clear_references`), else the first candidate."""
    return clear_references(candidates, int(x), int(y), size, n) or candidates[:1]


def window_scores(model, hu, points, lungs, spacing: float, instance: int, name: str, batch_size: int = 256,
                  references: int = 2, shared: SharedStem | None = None, symmetries: int = 1) -> np.ndarray:
    """Fake score of the window at every (y, x) point. With `shared` (the model's `SharedStem`) and points on
    its grid, the stem runs once over the slice. A comparing model (`architectures.compares`) judges each
    window against `references` reference windows of the same slice (`patches.reference_candidates`, the first
    ones that do not overlap it) and keeps the lowest score: a region consistent with some untouched part of
    its slice is authentic, so one reference that happens to sit on a tampered region raises no alarm. With
    `symmetries` > 1 a window's score is the mean over the first that many of the square's symmetries
    (`DIHEDRAL`, the flips and quarter turns training augments with) of the window, its references alike."""
    if shared is not None and shared.aligned(points):
        return shared.scores(hu, points, batch_size, symmetries=symmetries)
    size = model_patch_size(model)
    pair = int(model.inputs[0].shape[-1]) == 2
    candidates = _reference_points(hu, lungs, spacing, name, instance, size) if pair else []
    items = []  # (point index, model input)
    for i, (py, px) in enumerate(points):
        win = patch_input(hu, int(px), int(py), size)
        if not pair:
            items.append((i, win))
            continue
        items += [(i, np.concatenate([win, patch_input(hu, cx, cy, size)], axis=-1))
                  for cx, cy in _references_of(candidates, px, py, size, references)]
    scores = np.full(len(points), np.inf, np.float32)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        stack = np.stack([x for _, x in chunk])
        out = np.mean([predict_windows(model, np.ascontiguousarray(dihedral(stack, k, (1, 2))), batch_size)
                       for k in range(symmetries)], axis=0)
        for (i, _), score in zip(chunk, out):
            scores[i] = min(scores[i], score)
    return scores


def predict_windows(model, x: np.ndarray, batch_size: int = 256, quantum: int = 32) -> np.ndarray:
    """Scores of a stack of windows in batches of `batch_size`, the last one padded to a multiple of `quantum`
    rows: a compiling backend (JAX) then sees a few batch shapes in all instead of a new one, and a new
    compilation, for nearly every slice. `predict_on_batch` per batch: `predict` costs ~50 ms per call on top."""
    predict = getattr(model, "predict_on_batch", None) or model.predict
    out = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        extra = (-len(chunk)) % quantum
        if extra:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], extra, axis=0)])
        with quiet_logs("tensorflow"):
            out.append(np.asarray(predict(chunk)).ravel()[: len(chunk) - extra])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def scan_slice(model, hu, spacing: float = 0.7, stride: int | None = None, batch_size: int = 256, top_k: int = 5,
               nms_px: float = 32.0, instance: int = 0, name: str = "slice", lungs=None,
               references: int = 2, share_stem: bool = True, symmetries: int | None = None) -> SliceResult:
    """Slide the patch model over the lungs of one HU slice (a 2-D array or a `CTSlice`); `lungs`, when given,
    is the slice's lung mask (`lungmask.lung_mask`), else it is computed here. Windows are centred on the grid
    points of `lungmask.patch_centres`, the region training draws its patch centres from. A model whose stem has
    no padding runs its stem once over the slice (`SharedStem`, the same scores as window by window) unless
    `share_stem` is False. A comparing model scores each window against `references` reference windows of the slice
    (`window_scores`). An ensemble (`ensemble.build_ensemble`) scores every window with each member, its stem shared
    the same way, and takes the mean, as its own output does. `symmetries` > 1 averages each window's score over
    that many of the square's flips and quarter turns (`window_scores`); None takes the number the model's stored
    slice operating point was chosen with (`operating_point.model_symmetries`; 1 without one), and a `stride` of None
    the grid step it was chosen at (`operating_point.model_stride`; 16 px without one)."""
    if isinstance(hu, CTSlice):
        spacing, instance, name = hu.spacing[1], hu.instance, hu.path or name
        hu = hu.hu
    hu = np.asarray(hu, np.float32)
    if hu.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D HU slice, got shape {hu.shape}")
    lungs = lung_mask(hu, spacing) if lungs is None else np.asarray(lungs, bool)
    symmetries = model_symmetries(model) if symmetries is None else int(symmetries)
    stride = model_stride(model) if stride is None else int(stride)
    if symmetries not in SYMMETRY_GROUPS:
        raise ValueError(f"symmetries must be one of {SYMMETRY_GROUPS} (a group of the square's symmetries), got "
                         f"{symmetries}")
    if not lungs.any():
        raise ValueError(f"{name}: no lungs found in this slice (nothing to scan)")
    points = grid_points(patch_centres(lungs, spacing), stride)
    if not len(points):
        raise ValueError(f"{name}: the lungs are too small to scan (no window centre lies {CENTRE_DEPTH_MM:g} mm "
                         "inside them)")
    scores = np.mean([window_scores(part, hu, points, lungs, spacing, instance, str(name), batch_size, references,
                                    shared_stem(part) if share_stem else None, symmetries)
                      for part in members(model)], axis=0)
    grid = np.zeros((hu.shape[0] // stride + 1, hu.shape[1] // stride + 1), np.float32)
    grid[points[:, 0] // stride, points[:, 1] // stride] = scores
    heat = cv2.resize(grid, (grid.shape[1] * stride, grid.shape[0] * stride), interpolation=cv2.INTER_LINEAR)
    heatmap = heat[: hu.shape[0], : hu.shape[1]] * lungs
    best = nms(points, scores, nms_px, top_k)
    locations = [Location(instance, int(points[i][1]), int(points[i][0]), float(scores[i])) for i in best]
    levels = band_levels(hu, spacing, lungs)
    return SliceResult(heatmap, locations, len(points), hu, float(np.median(scores)), points, scores, stride, spacing,
                       float(levels[0]) if levels else None)


_READERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def window_input(model, hu: np.ndarray, x: int, y: int, spacing: float | None = None) -> np.ndarray:
    """The model's input for the window centred on (x, y) (column, row) of a HU slice, cut as in training: the
    window, or for a comparing model (`architectures.compares`) the window beside the first reference window of
    its slice that does not overlap it, for which it needs the slice's pixel `spacing` (mm)."""
    from .architectures import compares

    size = model_patch_size(model)
    image = patch_input(hu, int(x), int(y), size)
    if not compares(model):
        return image
    if spacing is None:
        raise ValueError("a comparing model's window needs the slice's pixel spacing (to find its reference window)")
    # keyed "attention" as `attention_peak` always was, so that its reference (and its figures) stay the same
    candidates = _reference_points(hu, lung_mask(hu, spacing), spacing, "attention", 0, size)
    rx, ry = _references_of(candidates, int(x), int(y), size, 1)[0]
    return np.concatenate([image, patch_input(hu, rx, ry, size)], axis=-1)


def attention_peak(model, hu: np.ndarray, x: int, y: int, spacing: float | None = None) -> tuple[int, int]:
    """Where inside the window centred on (x, y) (column, row) of a HU slice the model's attention rollout
    peaks, in slice pixels (x, y): a location finer than the window grid, for a model that calls a window fake
    wherever inside it the tampered region lies (a wide view). Needs a hybrid (transformer) model; a comparing
    model reads the window with its reference (`window_input`), for which it needs the slice's pixel `spacing`."""
    from explainability import AttentionRollout

    if model not in _READERS:
        _READERS[model] = AttentionRollout(model)
    size = model_patch_size(model)
    mask = _READERS[model](window_input(model, hu, x, y, spacing))
    py, px = np.unravel_index(int(np.argmax(mask)), mask.shape)
    return int(x) - size // 2 + int(px), int(y) - size // 2 + int(py)


def consensus_score(points, scores, stride: int) -> float:
    """max over grid points of the mean score over the point and its 8 neighbours one `stride` away, a neighbour
    outside the scanned lung counting as the slice's median score; `SliceResult.consensus`."""
    return consensus_peak(points, scores, stride)[0]


def consensus_peak(points, scores, stride: int) -> tuple[float, tuple[int, int] | None]:
    """(`consensus_score`, the grid point (y, x) where it is reached): the centre of the best-supported
    neighbourhood, a location estimate that does not depend on which of several overlapping windows that all
    hold a tampered region happens to score highest. (0.0, None) without points."""
    points, scores = np.asarray(points), np.asarray(scores, np.float64)
    if not len(points):
        return 0.0, None
    cells = points // stride
    cells = cells - cells.min(axis=0)
    total = np.zeros(tuple(cells.max(axis=0) + 3))
    count = np.zeros_like(total)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            np.add.at(total, (cells[:, 0] + dy, cells[:, 1] + dx), scores)
            np.add.at(count, (cells[:, 0] + dy, cells[:, 1] + dx), 1)
    at = (cells[:, 0] + 1, cells[:, 1] + 1)
    means = (total[at] + (9 - count[at]) * np.median(scores)) / 9  # an unscanned neighbour counts as typical
    best = int(np.argmax(means))
    return float(means[best]), (int(points[best][0]), int(points[best][1]))


def merge_locations(locations: list[Location], radius: float = 24.0, slice_gap: int = 2,
                    top_k: int = 5) -> list[Location]:
    """Merge points of neighbouring slices (<= slice_gap apart, <= radius px in-plane) into 3-D locations,
    each represented by its best point; best first."""
    merged: list[Location] = []
    for loc in sorted(locations, key=lambda l: -l.score):
        if not any(abs(loc.slice - m.slice) <= slice_gap and (loc.x - m.x) ** 2 + (loc.y - m.y) ** 2 <= radius**2
                   for m in merged):
            merged.append(loc)
    return merged[:top_k]


def scan_series(model, path, stride: int | None = None, threshold: float = 0.5, top_k: int = 5, progress: bool = True,
                relative: bool = False, operating_point: dict | None = None, **kwargs) -> SeriesResult:
    """Scan a DICOM series (a folder, a list of its files, or one .dcm file): per-slice heatmaps, top 3-D
    locations, verdict.

    The scan score is the best location's score, or with `relative` its slice's contrast (top score minus
    the slice's median patch score). The verdict compares it with `threshold`, or, given a slice operating point
    (`operating_point`, as stored by training or `calibrate`), with its threshold for a series of as many slices
    as were scanned (`operating_point.series_threshold`). Corrupt slices are reported and skipped; slices without
    lungs are skipped (listed in `skipped`).
    """
    from tqdm.auto import tqdm

    from .operating_point import series_note, series_threshold, texture_note

    if isinstance(path, (list, tuple)):  # the files of one series
        path, files = Path(path[0]).parent, list(path)
    else:
        path, files = Path(path), None
    if path.is_file():  # one slice, or the frames of an enhanced CT image
        slices = read_slices(path)
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            slices = read_series(files or path, skip_corrupt=True)
        for w in caught:
            warnings.warn(str(w.message), stacklevel=2)
    results, skipped, points = {}, [], []
    for sl in tqdm(slices, desc="slices", unit="slice", disable=not progress or len(slices) < 2):
        try:
            res = scan_slice(model, sl, stride=stride, top_k=top_k, **kwargs)
        except ValueError as err:
            skipped.append(str(err))
            continue
        results[sl.instance] = res
        points += res.locations
    if not results:
        raise ValueError(f"{path}: no slice with lungs to scan" + (f" ({skipped[0]})" if skipped else ""))
    locations = merge_locations(points, top_k=top_k)
    score = results[locations[0].slice].contrast() if relative else locations[0].score
    notes = lossy_note(slices)
    if operating_point:
        threshold = series_threshold(operating_point, len(results))
        levels = [res.fine_band for res in results.values() if res.fine_band is not None]
        for note in (series_note(operating_point, len(results)),
                     texture_note(operating_point, float(np.median(levels)) if levels else None)):
            if note:
                notes.append(note)
    return SeriesResult("tampered" if score >= threshold else "authentic", score, locations, results, skipped,
                        float(threshold), notes)


def lossy_note(slices) -> list[str]:
    """A note for a verdict on slices that lost information to lossy compression (`dicom.lossy_compression`)."""
    lossy = [sl.meta["lossy"] for sl in slices if sl.meta.get("lossy")]
    if not lossy:
        return []
    return [f"{len(lossy)} of {len(slices)} slices lost information to lossy compression ({lossy[0]}): the "
            "detector reads fine texture, which such compression smooths; on JPEG 2000 at 8:1 to 15:1 it found "
            "fewer removals and located worse, so 'authentic' is weaker evidence here (benchmarks/README.md, *Lossy "
            "compression*)"]


def scan_each(models, slices, stride: int | None = None, progress: bool = True, desc: str = "slices",
              total: int | None = None, symmetries: int | None = None):
    """Yield (slice, [`scan_slice` result of each model]) for every slice that has lungs (the others are left
    out), each slice scanned by every model in turn, so that the slices may be generated one at a time."""
    from tqdm.auto import tqdm

    for sl in tqdm(slices, desc=desc, unit="slice", total=total, disable=not progress):
        try:
            results = [scan_slice(model, sl, stride=stride, symmetries=symmetries) for model in models]
        except ValueError:  # no lungs: left out for every model alike
            continue
        yield sl, results


def scan_slices(model, slices, stride: int | None = None, progress: bool = True, desc: str = "slices",
                symmetries: int | None = None) -> list[SliceResult]:
    """`scan_slice` of every slice that has lungs (the others are left out)."""
    return [results[0] for _, results in scan_each([model], slices, stride, progress, desc, symmetries=symmetries)]


def draw(hu: np.ndarray, result: SliceResult, path, alpha: float = 0.45) -> Path:
    """PNG of the slice (lung window) with the heatmap over the lungs and the top points circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from explainability.overlay import render_slice

    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(render_slice(window(hu).astype(np.float32) / 255.0, result.heatmap, alpha), interpolation="nearest")
    for rank, loc in enumerate(result.locations, start=1):
        ax.add_patch(plt.Circle((loc.x, loc.y), 20, fill=False, color="cyan" if rank > 1 else "lime", lw=1.2))
        ax.text(loc.x + 22, loc.y, f"{rank}: {loc.score:.2f}", color="white", fontsize=7)
    ax.set_axis_off()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
