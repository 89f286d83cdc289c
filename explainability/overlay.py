"""Drawing only: heatmap overlays and the explanation grid figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def overlay(image, mask, cmap: str = "viridis", alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] mask, coloured by `cmap`, over a gray or RGB image in [0, 1]. Returns RGB float (H, W, 3)."""
    img = np.asarray(image, np.float32)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    mask = np.asarray(mask, np.float32)
    if mask.shape != img.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {img.shape[:2]} differ in size")
    heat = plt.get_cmap(cmap)(np.clip(mask, 0, 1))[..., :3]
    return np.clip((1 - alpha) * img[..., :3] + alpha * heat, 0, 1)


def explanation_grid(images, masks: dict, scores, titles, path, regions=None, cmap="viridis", alpha=0.45) -> Path:
    """One row per image: the image, then one overlay per method in `masks` (name -> list of masks).

    regions: per image (cx, cy, r) of the tampered region in pixels, or None; drawn as a circle.
    """
    n, cols = len(images), 1 + len(masks)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 1.9 * n), squeeze=False)
    for i in range(n):
        img = np.asarray(images[i], np.float32).squeeze()
        axes[i, 0].imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[i, 0].set_ylabel(f"{titles[i]}\nscore {scores[i]:.2f}", fontsize=7)
        for j, (name, ms) in enumerate(masks.items(), start=1):
            axes[i, j].imshow(overlay(img, ms[i], cmap, alpha), interpolation="nearest")
            if i == 0:
                axes[i, j].set_title(name, fontsize=8)
        if i == 0:
            axes[i, 0].set_title("patch", fontsize=8)
        if regions is not None and regions[i] is not None:
            cx, cy, r = regions[i]
            for ax in axes[i]:
                ax.add_patch(plt.Circle((cx, cy), r, fill=False, color="red", lw=0.8))
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def render_patch(image, mask, alpha: float = 0.45, region=None, scale: int = 4, cmap: str = "viridis") -> np.ndarray:
    """uint8 RGB (H*scale, W*scale, 3) of `overlay`, pixels enlarged without smoothing; the tampered region
    (cx, cy, r) in image pixels, when given, drawn as a red circle."""
    import cv2

    rgb = np.rint(overlay(image, mask, cmap, alpha) * 255).astype(np.uint8)
    rgb = np.ascontiguousarray(np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1))
    if region is not None:
        cx, cy, r = region
        cv2.circle(rgb, (int(round((cx + 0.5) * scale)), int(round((cy + 0.5) * scale))), int(round(r * scale)),
                   (255, 40, 40), 1, cv2.LINE_AA)
    return rgb


def heat_layer(mask, cmap: str = "viridis") -> np.ndarray:
    """uint8 RGB (H, W, 3) of a [0, 1] mask coloured by `cmap` (the layer a browser blends by opacity)."""
    return np.rint(plt.get_cmap(cmap)(np.clip(np.asarray(mask, np.float32), 0, 1))[..., :3] * 255).astype(np.uint8)


def render_slice(base, heatmap, alpha: float = 0.45, locations=(), selected=None, labels=(), box: int = 64,
                 cmap: str = "inferno") -> np.ndarray:
    """uint8 RGB of a lung-window slice (base in [0, 1]) with its scan heatmap blended where it is non-zero,
    the top locations numbered, the selected window boxed and known tampered points (x, y, r) circled red."""
    import cv2

    base = np.asarray(base, np.float32)
    heat = plt.get_cmap(cmap)(np.clip(heatmap, 0, 1))[..., :3]
    weight = alpha * (np.asarray(heatmap) > 0)[..., None]
    rgb = np.rint((np.repeat(base[..., None], 3, axis=-1) * (1 - weight) + heat * weight) * 255).astype(np.uint8)
    rgb = np.ascontiguousarray(rgb)
    for x, y, r in labels:
        cv2.circle(rgb, (int(x), int(y)), int(max(r, 6)), (255, 40, 40), 1, cv2.LINE_AA)
    for rank, loc in enumerate(locations, start=1):
        colour = (80, 255, 80) if rank == 1 else (80, 220, 255)
        cv2.circle(rgb, (int(loc.x), int(loc.y)), 3, colour, -1, cv2.LINE_AA)
        cv2.putText(rgb, str(rank), (int(loc.x) + 5, int(loc.y) - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1,
                    cv2.LINE_AA)
    if selected is not None:
        x, y = selected
        h = box // 2
        cv2.rectangle(rgb, (int(x) - h, int(y) - h), (int(x) + h - 1, int(y) + h - 1), (255, 255, 255), 1)
    return rgb


def png_bytes(rgb) -> bytes:
    """PNG file bytes of a uint8 RGB or gray array."""
    import cv2

    arr = np.asarray(rgb)
    ok, buf = cv2.imencode(".png", arr[..., ::-1] if arr.ndim == 3 else arr)
    if not ok:
        raise ValueError(f"could not encode an image of shape {arr.shape} as PNG")
    return buf.tobytes()
