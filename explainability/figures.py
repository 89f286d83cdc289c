"""Maps for patches of a corpus folder: the explanation grid figure and the faithfulness table."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.architectures import FEATURES
from utils.data import read_image
from utils.patches import read_manifest

from .faithfulness import centre_prior, gaussian_map, region_mask, score_maps
from .maps import AttentionRollout, GradCAM, _as_batch
from .rollout import HEAD_FUSIONS
from .overlay import explanation_grid


def compute_maps(model, images, tokens: bool = False) -> tuple[dict, np.ndarray]:
    """Masks (N, H, W) in [0, 1] per method, and the model's scores, for a batch of images. `tokens`: also Grad-CAM
    on the 4x4 token map (`FEATURES`), as coarse as rollout, for the faithfulness tables."""
    reader = AttentionRollout(model, discard_ratio=0.9)
    batch, size, _ = _as_batch(images, reader.size, reader.channels)
    atts, scores = reader.attentions(batch)  # one forward pass serves every head fusion
    maps = {f"rollout {fusion}": reader.to_masks(reader.cls_maps(atts, fusion, 0.9), size) for fusion in HEAD_FUSIONS}
    maps["gradient rollout"], _ = reader.explain(images, method="gradient")
    maps["Grad-CAM"], _ = GradCAM(model).explain(images)
    if tokens:
        maps["Grad-CAM on the tokens"], _ = GradCAM(model, FEATURES).explain(images)
    return maps, scores


def random_cell_maps(model, n: int, size, rng) -> np.ndarray:
    """Uniform random token maps drawn onto pixels as rollout draws its maps: what the drawing alone (each cell
    spread over what it sees, the border seen by fewer cells) scores, the baseline beside the centre prior."""
    reader = AttentionRollout(model)
    return reader.to_masks(rng.uniform(size=(n, reader.cells * reader.members)), size)


def _pick(rows, label, n, rng, require_region=False):
    rows = [r for r in rows if r["label"] == str(label) and (r["tamper_r"] or not require_region)]
    idx = rng.choice(len(rows), size=min(n, len(rows)), replace=False) if rows else []
    return [rows[i] for i in idx]


def explain_examples(model, data_dir, out, split: str = "test", n_fake: int = 4, n_real: int = 2,
                     seed: int = 0) -> Path:
    """Grid of fake and real patches of a split with their rollout, gradient-rollout and Grad-CAM overlays."""
    data_dir = Path(data_dir)
    rows = [r for r in read_manifest(data_dir / "manifest.csv") if r["split"] == split]
    rng = np.random.default_rng(seed)
    chosen = _pick(rows, 1, n_fake, rng) + _pick(rows, 0, n_real, rng)
    size, channels = tuple(int(v) for v in model.inputs[0].shape[1:3]), int(model.inputs[0].shape[-1])
    images = np.stack([read_image(data_dir / r["path"], size, channels) for r in chosen])
    maps, scores = compute_maps(model, images)
    shown = {k: maps[k] for k in ("rollout mean", "rollout max", "gradient rollout", "Grad-CAM")}
    regions = [(float(r["tamper_x"]), float(r["tamper_y"]), float(r["tamper_r"])) if r["tamper_r"] else None
               for r in chosen]
    titles = [f"{r['kind']} ({'fake' if r['label'] == '1' else 'real'})" for r in chosen]
    return explanation_grid(images, shown, scores, titles, out, regions)


def faithfulness(model, data_dir, split: str = "test", n: int = 200, seed: int = 0, steps: int = 16) -> dict:
    """Score every map type and two baselines (uniform random map, centre prior) on tampered patches whose
    region the manifest knows: pointing game, energy ratio, deletion and insertion AUC."""
    data_dir = Path(data_dir)
    rows = [r for r in read_manifest(data_dir / "manifest.csv") if r["split"] == split]
    chosen = _pick(rows, 1, n, np.random.default_rng(seed), require_region=True)
    if not chosen:
        raise ValueError(f"{data_dir}: no tampered patches with a known region in split {split!r}")
    size, channels = tuple(int(v) for v in model.inputs[0].shape[1:3]), int(model.inputs[0].shape[-1])
    images = np.stack([read_image(data_dir / r["path"], size, channels) for r in chosen])
    regions = [(float(r["tamper_x"]), float(r["tamper_y"]), float(r["tamper_r"])) for r in chosen]
    stored = read_image(data_dir / chosen[0]["path"]).shape[0]  # the manifest's regions are in stored pixels
    return score_views(model, images, regions, stored, seed, steps)


def score_views(model, images, regions, region_scale: int = 64, seed: int = 0, steps: int = 16) -> dict:
    """`score_maps` of every map type, three baselines (random pixels, random cells, the centre prior) and a
    reference that knows the answer (a Gaussian of the region's radius on the tampered point: what pointing perfectly
    scores on insertion and deletion); regions (cx, cy, r) in pixels of a `region_scale` px patch."""
    size = tuple(int(v) for v in model.inputs[0].shape[1:3])
    maps, _ = compute_maps(model, images, tokens=True)
    rng = np.random.default_rng(seed + 1)
    maps["baseline: random"] = rng.uniform(size=(len(images), *size))
    maps["baseline: random cells"] = random_cell_maps(model, len(images), size, rng)
    maps["baseline: centre prior"] = np.repeat(centre_prior(size)[None], len(images), axis=0)
    scale = size[0] / region_scale
    masks = np.stack([region_mask(size, cx * scale, cy * scale, r * scale) for cx, cy, r in regions])
    maps["reference: the tampered point first"] = np.stack(  # what a map that knows the answer scores
        [gaussian_map(size, cx * scale, cy * scale, r * scale) for cx, cy, r in regions])
    return score_maps(maps, masks, model, images, steps)


def uncentred_views(scans, offset: int, size: int = 64, seed: int = 0, n: int | None = None):
    """Patches of every tampered point of these scans, each cut with its centre moved by a random (dx, dy) of
    up to `offset` px per axis (crop and window as in training), and the tampered region in each patch's
    pixels: the region is no longer at the centre, so the centre prior stops being perfect."""
    from utils.patches import HOLE_MM, patch_input

    rng = np.random.default_rng(seed)
    images, regions = [], []
    for scan in scans:
        for r in scan.labels:
            if not r.tampered or r.slice not in scan.slices:
                continue
            sl = scan.slice(r.slice)
            dx, dy = (int(v) for v in rng.integers(-offset, offset + 1, 2))
            radius = scan.radii.get((r.slice, r.x, r.y), HOLE_MM / 2 / sl.spacing[1])
            images.append(patch_input(sl.hu, r.x + dx, r.y + dy, size))
            regions.append((size / 2 - dx, size / 2 - dy, float(radius)))
    if n is not None and len(images) > n:
        keep = np.sort(rng.choice(len(images), n, replace=False))
        images, regions = [images[i] for i in keep], [regions[i] for i in keep]
    return np.stack(images), regions
