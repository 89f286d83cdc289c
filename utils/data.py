"""Patch folders -> arrays and batches: float32 images in [0, 1], shape (H, W, 1); labels real = 0, fake = 1.

With `reference=True` every image is (H, W, 2): the patch, then its reference window of the same slice
(`patches.reference_path`), as a comparing model (`architectures.build_comparing_vit`) reads them.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

import warnings

from .patches import CLASSES, reference_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
# what phase 2 reads (`training.TrainConfig.design`): the patch alone, or the patch and its reference window
DESIGNS = ("patch", "compare", "compare-normalised", "compare-centred")


def read_image(path: str | Path, image_size: int | None = None, channels: int = 1) -> np.ndarray:
    """One image as float32 in [0, 1], shape (H, W, channels).

    Reads 8/16-bit PNG or JPEG (grayscale, RGB or RGBA) and `.npy` (uint8, uint16 or floats in [0, 1]).
    Colour is converted to gray (or gray repeated to 3 channels); `image_size` resizes (area/linear).
    channels=2 (a comparing model's input) reads the patch with its reference window (`read_pair`).
    """
    if channels == 2:
        return read_pair(path, image_size)
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
    """Any of (H, W), (H, W, 1), (H, W, 3), (H, W, 4) in [0, 1] -> (size, size, channels) float32; a pair
    (H, W, 2) stays a pair (channels=2)."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {img.shape}")
    if channels == 2 and img.shape[-1] != 2:
        raise ValueError(f"a comparing model reads a patch and its reference window as (H, W, 2), got {img.shape} "
                         "(`data.read_pair` reads both)")
    if img.shape[-1] == 2 and channels == 1:  # a patch model reads the patch of a (patch, reference) pair
        img = img[..., :1]
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


def load_split(split_dir: str | Path, image_size: int | None = None, channels: int = 1, reference: bool = False):
    """All images of a split in memory: (x float32 (N, H, W, C) in [0, 1], y int32 (N,), paths); `image_size`
    resizes them (None: as stored).

    reference: pair every patch with its reference window as a second channel, (N, H, W, 2); patches without
    one (e.g. the CT-GAN data set's tm_patches, which come without their slice) are left out with a warning."""
    files, labels = list_split(split_dir)
    if not reference:
        return np.stack([read_image(p, image_size, channels) for p in files]), labels, files
    keep = [i for i, p in enumerate(files) if reference_path(p).is_file()]
    if not keep:
        raise FileNotFoundError(f"{split_dir}: no patch has a reference window ({reference_path(files[0])} is "
                                "missing); regenerate the corpus with this version (synth / prepare-ctgan)")
    if len(keep) < len(files):
        missing = [files[i].name for i in sorted(set(range(len(files))) - set(keep))]
        warnings.warn(f"{split_dir}: {len(missing)} of {len(files)} patches have no reference window and are left "
                      f"out (e.g. {missing[0]})", stacklevel=2)
    files, labels = [files[i] for i in keep], labels[keep]
    x = np.stack([read_pair(p, image_size) for p in files])
    return x, labels, files


def read_pair(path: str | Path, image_size: int | None = None) -> np.ndarray:
    """A patch and its reference window (`patches.reference_path`) as one (H, W, 2) float32 array in [0, 1]."""
    ref = reference_path(path)
    if not ref.is_file():
        raise FileNotFoundError(f"{path}: its reference window {ref} is missing")
    return np.concatenate([read_image(path, image_size), read_image(ref, image_size)], axis=-1)


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
