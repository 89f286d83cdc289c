"""Explanations to browse: every map of a patch from one read of the model, cached across settings.

The explorer widget (`explainability.explorer`) and the HTML page (`explainability.page`) only call this module.
`Explainer(model)` builds its read-outs once; `Explainer.patch(image)` reads the attention of a patch once, and
`PatchView.mask(method, discard_ratio)` then costs no model call for any head fusion or discard ratio (gradient
rollout and Grad-CAM are read once per patch, the first time they are asked for).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from itertools import zip_longest
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .faithfulness import energy_ratio, pointing_hit, region_mask
from .maps import AttentionRollout, GradCAM, _as_batch

ROLLOUTS = ("rollout mean", "rollout max", "rollout min")
GRADIENT_METHODS = ("gradient rollout", "Grad-CAM")  # need TensorFlow's GradientTape


def available_methods() -> tuple[str, ...]:
    """The map methods this Keras backend can compute."""
    import keras

    return ROLLOUTS + (GRADIENT_METHODS if keras.backend.backend() == "tensorflow" else ())


def uses_discard_ratio(method: str) -> bool:
    return method in ROLLOUTS


@dataclass
class Figures:
    """Faithfulness of one map on one patch whose tampered region is known (None where it is not)."""

    pointing: bool | None = None
    energy_ratio: float | None = None


@dataclass
class PatchView:
    """One patch in the model's input form, its fake score and its maps, each computed at most once.

    Args:
        image: (H, W, C) in [0, 1], the model's input size.
        score: the model's fake score.
        attentions: per encoder block (1, heads, T, T), read once (an ensemble's: one such list per member).
        region: (cx, cy, r) of the tampered region in this image's pixels, or None.
    """

    explainer: "Explainer"
    image: np.ndarray
    score: float
    attentions: list
    region: tuple | None = None
    _masks: dict = field(default_factory=dict, repr=False)

    def mask(self, method: str = "rollout mean", discard_ratio: float = 0.9) -> np.ndarray:
        """(H, W) map in [0, 1] at the image's size."""
        key = (method, round(float(discard_ratio), 4) if uses_discard_ratio(method) else None)
        if key not in self._masks:
            self._masks[key] = self.explainer._mask(self, method, float(discard_ratio))
        return self._masks[key]

    def figures(self, mask: np.ndarray) -> Figures:
        if self.region is None:
            return Figures()
        region = region_mask(mask.shape, *self.region)
        return Figures(pointing_hit(mask, region), energy_ratio(mask, region))


class Explainer:
    """The map read-outs of one hybrid model, built once, and a cache of the patches seen (newest `cache` kept).

    Args:
        model: a hybrid CNN -> ViT (`build_hybrid_vit`).
        cache: how many patches keep their attention and maps.
    """

    def __init__(self, model, cache: int = 64):
        self.model = model
        self.rollout = AttentionRollout(model)
        self.size, self.channels = self.rollout.size, self.rollout.channels
        self.methods = available_methods()
        self._gradcam = None
        self._cache: OrderedDict = OrderedDict()
        self.cache_size = cache
        self.model_calls = 0  # forward passes made; a change of settings must not add any

    def patch(self, image, region=None) -> PatchView:
        """The view of one image ((H, W) or (H, W, C), in [0, 1]); region (cx, cy, r) in the image's pixels."""
        batch, original, _ = _as_batch(image, self.size, self.channels)
        if tuple(original) != tuple(self.size) and region is not None:
            sy, sx = self.size[0] / original[0], self.size[1] / original[1]
            region = (region[0] * sx, region[1] * sy, region[2] * (sx + sy) / 2)
        key = hashlib.sha1(batch.tobytes()).hexdigest()
        view = self._cache.get(key)
        if view is None:
            atts, scores = self.rollout.attentions(batch)
            self.model_calls += 1
            view = PatchView(self, batch[0], float(scores[0]), atts)
            self._cache[key] = view
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        view.region = None if region is None else tuple(float(v) for v in region)
        return view

    def _mask(self, view: PatchView, method: str, discard_ratio: float) -> np.ndarray:
        if method not in self.methods:
            raise ValueError(f"method must be one of {self.methods}, got {method!r}")
        if method in ROLLOUTS:
            grid = self.rollout.cls_maps(view.attentions, method.split()[1], discard_ratio)
            return self.rollout.to_masks(grid[None] if grid.ndim == 1 else grid, self.size)[0]
        if method == "gradient rollout":
            grid, _ = self.rollout.gradient_maps(view.image[None])
            self.model_calls += 1
            return self.rollout.to_masks(grid, self.size)[0]
        if self._gradcam is None:
            self._gradcam = GradCAM(self.model)
        self.model_calls += 1
        return self._gradcam.explain(view.image)[0]


@dataclass
class PatchEntry:
    """A patch to pick: its file, a label for lists, the class (1 fake, 0 real) and the tampered region."""

    path: Path
    title: str
    label: int | None = None
    region: tuple | None = None  # (cx, cy, r) in the stored patch's pixels


def manifest_entries(folder, split: str | None = None, limit: int | None = None) -> list[PatchEntry]:
    """The patches of a corpus folder (its `manifest.csv`), fakes with a known region first."""
    from utils.patches import read_manifest

    folder = Path(folder)
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: not found (a corpus folder written by `synth` or `prepare-ctgan`)")
    rows = [r for r in read_manifest(manifest) if split is None or r["split"] == split]
    rows.sort(key=lambda r: (r["label"] != "1", not r["tamper_r"], r["kind"], r["path"]))
    out = []
    for r in rows[:limit]:
        region = (float(r["tamper_x"]), float(r["tamper_y"]), float(r["tamper_r"])) if r["tamper_r"] else None
        out.append(PatchEntry(folder / r["path"], f"{r['kind']} {r['scan']} slice {r['slice']} ({r['x']}, {r['y']})",
                              int(r["label"]), region))
    return out


@dataclass
class SliceView:
    """A scanned HU slice: its `scan_slice` result and the patch at any point, cut as in training."""

    hu: np.ndarray
    result: object  # utils.scan.SliceResult
    size: int
    name: str = "slice"
    labels: tuple = ()  # known tampered points (x, y, r) in slice pixels, drawn and used as regions
    model: object = None  # the model scanned with: a comparing model's patches come with a reference window

    @cached_property
    def base(self) -> np.ndarray:
        """The slice in the lung window, in [0, 1]."""
        from utils.dicom import window

        return window(self.hu).astype(np.float32) / 255.0

    def patch_at(self, x: int, y: int) -> tuple[np.ndarray, tuple | None]:
        """The model's patch centred on (x, y) (the crop and window of training; for a comparing model with its
        reference window, `scan.window_input`) and the tampered region inside it, when a known tampered point lies
        within it."""
        from utils.patches import patch_input
        from utils.scan import window_input

        image = (patch_input(self.hu, x, y, self.size) if self.model is None
                 else window_input(self.model, self.hu, x, y, self.result.spacing))
        half = self.size / 2
        for tx, ty, r in self.labels:
            if abs(tx - x) < half and abs(ty - y) < half:
                return image, (tx - x + half, ty - y + half, r)
        return image, None


def scan_one_slice(model, source, labels=(), stride: int | None = None, top_k: int = 5) -> SliceView:
    """Scan one DICOM file (or a `CTSlice`) with `utils.scan.scan_slice` (at the model's stored stride unless
    `stride` is given) for the explorer. labels: known tampered points (x, y, r) in slice pixels; r None = CT-GAN's
    20 mm in-painted region at the slice's spacing."""
    from utils.dicom import CTSlice, read_slice
    from utils.patches import HOLE_MM
    from utils.scan import model_patch_size, scan_slice

    sl = source if isinstance(source, CTSlice) else read_slice(source)
    result = scan_slice(model, sl, stride=stride, top_k=top_k)
    labels = tuple((x, y, HOLE_MM / 2 / sl.spacing[1] if r is None else r) for x, y, r in labels)
    return SliceView(sl.hu, result, model_patch_size(model), str(sl.path or "slice"), labels, model)


def tampered_slices(root, limit: int | None = None) -> dict:
    """name -> (DICOM file, its tampered label points) for the tampered slices of a CT-GAN data set folder,
    injections and removals in turn."""
    import warnings

    from utils.ctgan import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # label rows of scans a sample does not hold: nothing to pick there
        scans = load_dataset(root)
    by_kind: dict = {}
    for scan in scans:
        by_slice: dict = {}
        for r in scan.labels:
            if r.tampered and isinstance(scan.slices.get(r.slice), (str, Path)):
                by_slice.setdefault(r.slice, []).append(r)
        for inst, rows in sorted(by_slice.items()):
            kinds = "/".join(sorted({r.type for r in rows}))
            by_kind.setdefault(kinds, []).append((f"{scan.key} slice {inst} ({kinds})", (
                Path(scan.slices[inst]), [(r.x, r.y, None) for r in rows])))
    turns = [item for group in zip_longest(*by_kind.values()) for item in group if item is not None]
    return dict(turns[:limit])
