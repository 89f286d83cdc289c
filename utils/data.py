"""Patch folders -> arrays and batches: float32 images in [0, 1], shape (H, W, 1); labels real = 0, fake = 1."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .patches import CLASSES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")


def read_image(path: str | Path, image_size: int | None = None, channels: int = 1) -> np.ndarray:
    """One image as float32 in [0, 1], shape (H, W, channels).

    Reads 8/16-bit PNG or JPEG (grayscale, RGB or RGBA) and `.npy` (uint8, uint16 or floats in [0, 1]).
    Colour is converted to gray (or gray repeated to 3 channels); `image_size` resizes (area/linear).
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: unreadable .npy image ({err})") from err
    else:
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ValueError(f"{path}: unreadable image file")
        if arr.ndim == 3:
            arr = arr[..., 2::-1] if arr.shape[2] >= 3 else arr[..., :1]  # BGR(A) -> RGB
    if arr.dtype == np.uint8:
        img = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        img = arr.astype(np.float32) / 65535.0
    else:
        img = arr.astype(np.float32)
        if img.size and (img.min() < -1e-6 or img.max() > 1 + 1e-6):
            raise ValueError(f"{path}: float image values must lie in [0, 1] (found {img.min():.3g}..{img.max():.3g})")
    return to_model_input(img, image_size, channels)


def to_model_input(img: np.ndarray, image_size: int | tuple | None = None, channels: int = 1) -> np.ndarray:
    """Any of (H, W), (H, W, 1), (H, W, 3), (H, W, 4) in [0, 1] -> (size, size, channels) float32."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {img.shape}")
    if img.shape[-1] == 4:
        img = img[..., :3]
    if img.shape[-1] == 3 and channels == 1:
        img = (img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    elif img.shape[-1] == 1 and channels == 3:
        img = np.repeat(img, 3, axis=-1)
    if image_size is not None:
        h, w = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
        if img.shape[:2] != (h, w):
            interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
            img = cv2.resize(img, (w, h), interpolation=interp)
            img = img[..., None] if img.ndim == 2 else img
    return np.ascontiguousarray(img, dtype=np.float32)


def list_split(split_dir: str | Path) -> tuple[list[Path], np.ndarray]:
    """Files and labels of a split folder holding real/ and fake/ (in that class order: real 0, fake 1)."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: no such folder (expected {split_dir}/real and {split_dir}/fake)")
    files, labels = [], []
    for label, cls in enumerate(CLASSES):
        folder = split_dir / cls
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: missing class folder (a split needs real/ and fake/)")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this class folder")
        files += found
        labels += [label] * len(found)
    return files, np.asarray(labels, dtype=np.int32)


def load_split(split_dir: str | Path, image_size: int | None = 64, channels: int = 1):
    """All images of a split in memory: (x float32 (N, H, W, C) in [0, 1], y int32 (N,), paths)."""
    files, labels = list_split(split_dir)
    x = np.stack([read_image(p, image_size, channels) for p in files])
    return x, labels, files


def augment(x: np.ndarray, rng: np.random.Generator, max_shift: int = 3) -> np.ndarray:
    """Flips, 90-degree rotations and small integer shifts: moves that keep every pixel value (and so the
    noise and interpolation traces) intact. No blur, resampling, compression or noise."""
    out = np.empty_like(x)
    for i, img in enumerate(x):
        img = np.rot90(img, int(rng.integers(4)))
        if rng.integers(2):
            img = img[:, ::-1]
        if max_shift:
            dy, dx = rng.integers(-max_shift, max_shift + 1, 2)
            img = np.roll(img, (int(dy), int(dx)), axis=(0, 1))
        out[i] = img
    return out
