"""Synthetic chest-CT anatomy in Hounsfield units, with scanner-like blur and correlated noise.

A `ScannerProfile` holds what is fixed for one scan (pixel spacing, body size, noise level, reconstruction
kernel); `chest_slice` draws one axial slice of that scan. Everything is driven by a NumPy Generator, so a
seed reproduces a slice exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.fft
from scipy.special import expit

from .lungmask import lung_mask, sample_lung_points

SIZE = 512
AIR, FAT, MUSCLE, BLOOD, LUNG = -1000.0, -100.0, 40.0, 40.0, -860.0
NODULE_TYPES = ("solid", "round", "part-solid", "spiculated", "calcified")
# "round": smooth, uniform and sharply edged, as metastases and granulomas often are and as CT-GAN injects
# (drawn with `matched_nodules` only)
NODULE_TYPE_P = (0.3, 0.25, 0.15, 0.2, 0.1)
UNMATCHED_P = (0.45, 0.0, 0.2, 0.25, 0.1)  # before `matched_nodules`: no round ones
EDGE_SIGMA_PX = 1.5  # scale of an edge-enhancing kernel's overshoot (`enhance_edges`)
NODULE_DIAMETER_MM = (4.0, 25.0)


@dataclass(frozen=True)
class ScannerProfile:
    """What one scan keeps across its slices.

    Args:
        spacing: pixel spacing in mm (isotropic in-plane), 0.6-0.9.
        body_w, body_h: half axes of the body outline in mm.
        noise_sigma: standard deviation of the quantum noise in HU (8-45).
        kernel_sigma: blur of the reconstruction kernel in pixels (small = sharp kernel).
        noise_cutoff: fraction of Nyquist where the noise spectrum rolls off (high = sharp kernel).
        fov_pad: value outside the reconstruction circle (-2048 GE style, or -1000).
        edge_gain: edge enhancement of the kernel, the gain of an unsharp mask over `EDGE_SIGMA_PX` applied to
            the anatomy (0 = none; sharp lung and bone kernels overshoot at edges, soft ones do not).
    """

    spacing: float
    body_w: float
    body_h: float
    noise_sigma: float
    kernel_sigma: float
    noise_cutoff: float
    fov_pad: float
    edge_gain: float = 0.0

    @classmethod
    def sample(cls, rng: np.random.Generator, max_edge_gain: float = 0.0) -> "ScannerProfile":
        """A random scanner; `max_edge_gain` > 0 lets the sharper half of kernels enhance edges, up to that
        gain for the sharpest (derived from the same draw as the kernel, so every other property stays the
        same as without it)."""
        sharp = rng.uniform(0, 1)
        return cls(
            spacing=float(rng.uniform(0.6, 0.9)),
            body_w=float(rng.uniform(150, 180)),
            body_h=float(rng.uniform(100, 125)),
            noise_sigma=float(rng.uniform(8, 45)),
            kernel_sigma=float(0.4 + 1.2 * (1 - sharp)),  # sharp (lung) to soft (B40f-like, thick) kernels
            noise_cutoff=float(0.25 + 0.7 * sharp),
            fov_pad=float(rng.choice([-2048.0, -1000.0])),
            edge_gain=edge_gain(sharp, max_edge_gain),
        )


@dataclass
class Nodule:
    """An authentic nodule drawn into the anatomy: centre (x, y) in pixels, radius in pixels, type."""

    x: int
    y: int
    radius: float
    kind: str


def _outline(cx, cy, ax, ay, rng, harmonics=3, wobble=0.035, flat_back=0.9, n=180):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(t)
    for k in range(2, 2 + harmonics):
        r += rng.uniform(-wobble, wobble) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    x, y = cx + ax * r * np.cos(t), cy + ay * r * np.sin(t)
    y = np.minimum(y, cy + ay * flat_back)
    return np.stack([x, y], axis=1)


def _fill(poly, size=SIZE) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(bool)


def edge_gain(sharpness: float, max_gain: float) -> float:
    """Edge enhancement of a kernel of `sharpness` 0 (softest) .. 1 (sharpest): none for the softer half, rising
    linearly to `max_gain`."""
    return float(max_gain * max(0.0, (sharpness - 0.5) / 0.5))


def enhance_edges(img: np.ndarray, gain: float) -> np.ndarray:
    """An edge-enhancing kernel's overshoot: an unsharp mask over `EDGE_SIGMA_PX` with this gain."""
    if gain <= 0:
        return img
    return img + gain * (img - blur(img, EDGE_SIGMA_PX))


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (OpenCV: much faster than scipy on full slices; edges reflected)."""
    return cv2.GaussianBlur(np.ascontiguousarray(img, np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _disk(img, x, y, r, value, soft=False):
    """Fill a disk with `value`; `soft` blends an anti-aliased edge into what is there (local window only)."""
    if not soft:
        cv2.circle(img, (int(round(x)), int(round(y))), max(1, int(round(r))), float(value), -1)
        return
    h, w = img.shape
    x0, y0 = max(int(x - r) - 2, 0), max(int(y - r) - 2, 0)
    x1, y1 = min(int(x + r) + 3, w), min(int(y + r) + 3, h)
    if x1 <= x0 or y1 <= y0:
        return
    canvas = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.circle(canvas, (int(round((x - x0) * 16)), int(round((y - y0) * 16))), max(1, int(round(r * 16))), 1.0,
               -1, lineType=cv2.LINE_AA, shift=4)
    sub = img[y0:y1, x0:x1]
    sub += (value - sub) * canvas


def _ellipse(img, x, y, ax, ay, angle, value):
    cv2.ellipse(img, ((float(x), float(y)), (float(2 * ax), float(2 * ay)), float(angle)), float(value), -1,
                lineType=cv2.LINE_AA)


def _chest_wall_ring(inner: np.ndarray, centre, axes, depth: float):
    """The pixels of the chest wall within `depth` px outside the thorax's inner outline `inner`: their (row,
    column) indices, distance outside the outline in px and elliptic angle around `centre` (axes `axes`)."""
    outside = cv2.distanceTransform((~inner).astype(np.uint8), cv2.DIST_L2, 5)
    rows, cols = np.nonzero((outside > 0) & (outside <= depth))
    theta = np.arctan2((rows - centre[1]) / axes[1], (cols - centre[0]) / axes[0])
    return rows, cols, outside[rows, cols], theta


def _rib_on_pleura(hu, ring, axes, t, length, thick, marrow, ppm):
    """A rib cut obliquely by the slice, as real ribs lie: an arc `length` px long and `thick` px deep hugging the
    thorax's inner outline (`ring`, from `_chest_wall_ring`) around the elliptic angle `t`; cortical bone around
    marrow of `marrow` HU. Only the pleura and a thin stripe of soft tissue lie between it and the lung."""
    rows, cols, outside, theta = ring
    half = 0.5 * length / np.hypot(axes[0] * np.cos(t), axes[1] * np.sin(t))
    along = np.clip(1 - np.abs(np.angle(np.exp(1j * (theta - t)))) / half, 0, 1)  # 1 mid-rib, 0 at its ends
    depth = thick * np.sqrt(along)  # rounded ends
    cortex = 1.2 * ppm
    bone = depth >= outside
    hu[rows[bone], cols[bone]] = 800.0
    core = (outside > cortex) & (outside <= depth - cortex)
    hu[rows[core], cols[core]] = marrow


def _blob(img, x, y, r, value):
    """A vessel of radius r px crossing the slice as partial volume: a Gaussian blob holding its cross-section
    (peak below `value` when the vessel is thinner than a pixel), blended in by max."""
    sigma = max(0.55, r / np.sqrt(2))  # peak = min(1, r² / 2σ²): full blood once the vessel fills a pixel
    half = int(np.ceil(3 * sigma))
    h, w = img.shape
    x0, y0, x1, y1 = max(int(x) - half, 0), max(int(y) - half, 0), min(int(x) + half + 2, w), min(int(y) + half + 2, h)
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) * min(1.0, r**2 / (2 * sigma**2))
    img[y0:y1, x0:x1] = np.maximum(img[y0:y1, x0:x1], value * g)


def _vessel_tree(rng, lung: np.ndarray, hilum, px_per_mm: float, direction: float,
                 blobs: bool = False) -> np.ndarray:
    """Fraction of blood per pixel from a branching, tapering tree rooted at the hilum; with `blobs`, a branch
    crossing the slice thinner than 2.5 px is drawn as partial volume (`_blob`) instead of a rasterised disk."""
    canvas = np.zeros(lung.shape, np.float32)
    stack = [(hilum[0], hilum[1], direction, rng.uniform(1.2, 2.2), rng.uniform(20, 30), 0)]
    h, w = lung.shape
    while stack:
        x, y, ang, r_mm, length_mm, depth = stack.pop()
        if r_mm < 0.35 or depth > 7:
            continue
        x2 = x + np.cos(ang) * length_mm * px_per_mm
        y2 = y + np.sin(ang) * length_mm * px_per_mm
        r_px = r_mm * px_per_mm
        contrast = min(1.0, r_mm / 1.1)
        through_plane = depth > 0 and rng.uniform() < 0.6
        if through_plane and blobs and r_px < 2.5:
            _blob(canvas, (x + x2) / 2, (y + y2) / 2, r_px, 1.0)
        elif through_plane:
            _disk(canvas, (x + x2) / 2, (y + y2) / 2, max(0.6, r_px), contrast, soft=True)
        else:
            bend = rng.normal(0, 0.12) * length_mm * px_per_mm
            t = np.linspace(0, 1, 5)[:, None]
            path = (1 - t) * np.array([x, y]) + t * np.array([x2, y2])
            path += np.sin(np.pi * t) * bend * np.array([-np.sin(ang), np.cos(ang)])
            cv2.polylines(canvas, [np.round(path * 16).astype(np.int32)], False, contrast,
                          max(1, int(round(2 * r_px))), lineType=cv2.LINE_AA, shift=4)
        inside = 0 <= int(x2) < w and 0 <= int(y2) < h and lung[int(y2), int(x2)]
        if (not inside and depth > 1) or (through_plane and rng.uniform() < 0.5):
            continue
        for sign in (-1, 1):
            stack.append((x2, y2, ang + sign * rng.uniform(0.25, 0.7) + rng.normal(0, 0.1),
                          r_mm * rng.uniform(0.68, 0.82), length_mm * rng.uniform(0.75, 0.92), depth + 1))
    return canvas


def _through_plane_vessels(rng, lung, hila, px_per_mm) -> np.ndarray:
    """Small vessels crossing the slice: dots whose size shrinks with the distance from the hilum."""
    canvas = np.zeros(lung.shape, np.float32)
    ys, xs = np.nonzero(lung)
    if len(xs) == 0:
        return canvas
    n = int(len(xs) * (px_per_mm**-2) / 150)
    pick = rng.integers(0, len(xs), n)
    for x, y in zip(xs[pick], ys[pick]):
        dist = min(np.hypot(x - hx, y - hy) for hx, hy in hila) / px_per_mm
        r_mm = np.clip(rng.gamma(2.0, 0.22) * (1.5 - min(dist, 120) / 120), 0.25, 2.0)
        _disk(canvas, x + rng.uniform(-.5, .5), y + rng.uniform(-.5, .5), max(0.5, r_mm * px_per_mm),
              min(1.0, r_mm / 1.1), soft=True)
    return canvas


def _bronchovascular(rng, lung, hila, px_per_mm) -> list[tuple]:
    """Bronchovascular bundles cut across: a round artery (3-12 mm, larger near the hilum) with its bronchus
    touching it, 15-70 mm from a hilum. Authentic round, uniform, sharp-edged blobs the size of a nodule, the
    commonest window that a model trained without them flags on real CT. Returns (x, y, r_artery, stretch,
    angle, bx, by, r_bronchus, wall) in px."""
    ys, xs = np.nonzero(lung)
    out = []
    for hx, hy in hila:
        dist = np.hypot(xs - hx, ys - hy) / px_per_mm
        near = np.flatnonzero((dist > 15) & (dist < 70))
        if not len(near):
            continue
        for i in rng.choice(near, size=min(len(near), int(rng.integers(3, 8))), replace=False):
            d_art = float(np.clip(12.5 - 0.13 * dist[i] + rng.normal(0, 1.0), 3.0, 12.0))
            r = d_art / 2 * px_per_mm
            r_b = r * rng.uniform(0.6, 1.1)
            wall = (0.12 * 2 * r_b / px_per_mm + 0.4) * px_per_mm
            ang = rng.uniform(0, 2 * np.pi)
            gap = r + r_b + wall
            out.append((float(xs[i]), float(ys[i]), r, float(rng.uniform(1.0, 1.6)), float(rng.uniform(0, 180)),
                        float(xs[i] + gap * np.cos(ang)), float(ys[i] + gap * np.sin(ang)), r_b, wall))
    return out


def ground_glass(rng, lung, px_per_mm) -> np.ndarray:
    """Authentic ground-glass opacity (infection, oedema, early fibrosis): 1-3 smooth, irregular hazy patches
    10-50 mm across that raise the lung by 80-350 HU while vessels stay visible through them. The haze a removal
    leaves looks alike: a model must tell them apart by CT-GAN's traces, not by haze. Returns added HU."""
    out = np.zeros(lung.shape, np.float32)
    ys, xs = np.nonzero(lung)
    if not len(xs):
        return out
    for _ in range(int(rng.integers(1, 4))):
        i = rng.integers(len(xs))
        size = rng.uniform(10, 50) * px_per_mm
        yy, xx = np.mgrid[0 : lung.shape[0], 0 : lung.shape[1]].astype(np.float32)
        shape = np.exp(-(((xx - xs[i]) / size) ** 2 + ((yy - ys[i]) / (size * rng.uniform(0.5, 1.0))) ** 2))
        lumpy = cv2.resize(rng.uniform(0.3, 1.0, (SIZE // 16, SIZE // 16)).astype(np.float32), lung.shape[::-1],
                           interpolation=cv2.INTER_CUBIC)
        out = np.maximum(out, np.clip(shape * 1.6 - 0.4, 0, 1) * lumpy * rng.uniform(80, 350))
    return blur(out, 2.0 * px_per_mm) * lung


def add_ground_glass(rng, hu: np.ndarray, lung: np.ndarray, px_per_mm: float) -> np.ndarray:
    """`hu` with `ground_glass` over its airy lung (< -500 HU): vessels and walls keep their values."""
    return hu + ground_glass(rng, lung, px_per_mm) * (hu < -500)


def _splat(canvas: np.ndarray, x: np.ndarray, y: np.ndarray, mass: np.ndarray) -> None:
    """Add `mass` at sub-pixel points (x, y) of `canvas`, shared bilinearly among the 4 nearest pixels."""
    h, w = canvas.shape
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        np.add.at(canvas, (yy[ok], xx[ok]), (mass * wgt)[ok])


def _fine_vessels(rng, lung, hila, px_per_mm) -> np.ndarray:
    """The lung's fine detail that a few drawn trees lack: many small vessels crossing the slice as partial-volume
    dots (a Gaussian blob holding the vessel's cross-section, so that a vessel thinner than a pixel is a faint
    dot, not a bright '+'), and short 1-2 px branches running in-plane at low contrast. Sizes shrink away from
    the hilum. Returns a blood fraction per pixel (0..1)."""
    canvas = np.zeros(lung.shape, np.float32)
    ys, xs = np.nonzero(lung)
    if len(xs) == 0:
        return canvas
    area_mm2 = len(xs) / px_per_mm**2
    n = int(area_mm2 / 35)
    pick = rng.integers(0, len(xs), n)
    x, y = xs[pick] + rng.uniform(-0.5, 0.5, n), ys[pick] + rng.uniform(-0.5, 0.5, n)
    dist = np.min([np.hypot(x - hx, y - hy) for hx, hy in hila], axis=0) / px_per_mm
    r_px = np.clip(rng.gamma(2.0, 0.18, n) * (1.6 - np.minimum(dist, 120) / 120), 0.1, 2.0) * px_per_mm
    sigmas = np.array([0.55, 0.8, 1.15])
    cls = np.abs(r_px[:, None] / np.sqrt(2) - sigmas[None, :]).argmin(axis=1)
    for k, sigma in enumerate(sigmas):
        layer = np.zeros_like(canvas)
        sel = cls == k
        _splat(layer, x[sel], y[sel], (np.pi * r_px[sel] ** 2).astype(np.float32))
        canvas += blur(layer, sigma)
    branches = np.zeros_like(canvas)
    for i in rng.integers(0, len(xs), int(area_mm2 / 120)):
        bx, by = float(xs[i]), float(ys[i])
        hx, hy = min(hila, key=lambda h: np.hypot(bx - h[0], by - h[1]))
        ang = np.arctan2(by - hy, bx - hx) + rng.normal(0, 0.5)
        length = rng.uniform(4, 14) * px_per_mm
        t = np.linspace(0, 1, 4)[:, None]
        path = np.array([bx, by]) + t * length * np.array([np.cos(ang), np.sin(ang)])
        path += np.sin(np.pi * t) * rng.normal(0, 0.15) * length * np.array([-np.sin(ang), np.cos(ang)])
        cv2.polylines(branches, [np.round(path * 16).astype(np.int32)], False, float(rng.uniform(0.15, 0.45)), 1,
                      lineType=cv2.LINE_AA, shift=4)
    return np.clip(np.maximum(canvas, blur(branches, 0.5)), 0, 1)


def random_nodule(rng: np.random.Generator, x: int, y: int, px_per_mm: float, max_diameter: float = 25.0,
                  kinds_p: tuple = UNMATCHED_P) -> Nodule:
    """An authentic nodule at (x, y): diameter log-uniform from 4 mm to `max_diameter` mm, type drawn from
    `kinds_p` (over `NODULE_TYPES`)."""
    lo, hi = np.log(NODULE_DIAMETER_MM[0]), np.log(min(max_diameter, NODULE_DIAMETER_MM[1]))
    diameter = float(np.exp(rng.uniform(lo, hi)))
    return Nodule(int(x), int(y), diameter / 2 * px_per_mm, str(rng.choice(NODULE_TYPES, p=kinds_p)))


def draw_nodule(hu: np.ndarray, nodule: Nodule, rng: np.random.Generator, heterogeneous: bool = False) -> None:
    """Draw an authentic-looking nodule into `hu` in place (irregular, lobulated, spiculated or calcified).

    With `heterogeneous`, every kind but "round" gets what sets a real cancer apart from CT-GAN's injections (round,
    uniform, sharply edged): an irregular fine margin blurred over 0.7-1.6 px, density varying inside (a smooth
    field of 30-80 HU spread in features a third of the radius across), and in a third of them low-density foci
    (necrosis, air bronchograms). Without it the random draws are those of corpora written before the setting.
    """
    r = nodule.radius
    half = int(np.ceil(r * 2.2)) + 3
    y0, x0 = nodule.y - half, nodule.x - half
    yy, xx = np.mgrid[0 : 2 * half + 1, 0 : 2 * half + 1].astype(np.float32)
    dx, dy = xx - half, yy - half
    theta, dist = np.arctan2(dy, dx), np.hypot(dx, dy)
    edge = np.ones_like(theta)
    wobble = {"solid": 0.08, "round": 0.03}.get(nodule.kind, 0.12)
    for k in range(2, 7):
        edge += rng.uniform(0, wobble) * np.cos(k * theta + rng.uniform(0, 6.3))
    real = heterogeneous and nodule.kind != "round"
    if real:
        for k in range(7, 13):
            edge += rng.uniform(0, 0.04) * np.cos(k * theta + rng.uniform(0, 6.3))
    width = rng.uniform(0.4, 0.8) if nodule.kind == "round" else (rng.uniform(0.7, 1.6) if real else 0.7)
    core = expit(-((dist - r * edge) / width))
    density = rng.uniform(-10, 55) + rng.normal(0, 12, size=core.shape).astype(np.float32)
    density = blur(density, 0.8)
    if real:
        density = density + _heterogeneity(rng, dx, dy, r)
    value = np.zeros_like(core)
    if nodule.kind == "part-solid":
        halo = expit(-((dist - r * edge * 1.6) / 1.5))
        value = halo * (rng.uniform(-600, -400) - LUNG) * 0.9
        core = expit(-((dist - r * 0.55 * edge) / 0.7))
    frac = np.maximum(core, 0)
    if nodule.kind == "spiculated":
        spikes = np.zeros_like(core)
        for _ in range(rng.integers(5, 11)):
            a = rng.uniform(0, 2 * np.pi)
            length = r * rng.uniform(1.3, 2.1)
            cv2.line(spikes, (half, half), (int(half + np.cos(a) * length), int(half + np.sin(a) * length)),
                     rng.uniform(0.4, 0.8), 1, lineType=cv2.LINE_AA)
        frac = np.maximum(frac, spikes)
    if nodule.kind == "calcified":
        calc = expit(-((dist - r * rng.uniform(0.25, 0.6)) / 0.6))
        density = density + calc * rng.uniform(250, 700)
    region = (slice(max(y0, 0), y0 + 2 * half + 1), slice(max(x0, 0), x0 + 2 * half + 1))
    sub = hu[region]
    crop = (slice(region[0].start - y0, region[0].start - y0 + sub.shape[0]),
            slice(region[1].start - x0, region[1].start - x0 + sub.shape[1]))
    target = density[crop]
    mixed = sub + value[crop] * (sub < -500)
    hu[region] = np.maximum(sub, mixed * (1 - frac[crop]) + target * frac[crop])


def _heterogeneity(rng: np.random.Generator, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """HU to add inside a real cancer of radius `r` px (`draw_nodule`): smooth variation of 30-80 HU spread over
    features a third of its radius across (at least 1.5 px), and in a third of cancers 1-3 low-density foci."""
    field = blur(rng.standard_normal(dx.shape).astype(np.float32), max(1.5, r / 3))
    field = field * (rng.uniform(30, 80) / (field.std() + 1e-6))
    if rng.uniform() < 1 / 3:
        for _ in range(rng.integers(1, 4)):
            fx, fy = rng.uniform(-0.5, 0.5, 2) * r
            fr = max(rng.uniform(0.1, 0.25) * r, 0.8)
            field = field + rng.uniform(-450, -250) * expit(-((np.hypot(dx - fx, dy - fy) - fr) / 0.6))
    return field


def correlated_noise(rng, shape, sigma: float, cutoff: float) -> np.ndarray:
    """Filtered-back-projection-like noise: a ramp spectrum rolled off at `cutoff` x Nyquist, scaled to sigma."""
    white = rng.standard_normal(shape, dtype=np.float32)
    fy = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    f = np.hypot(fy, fx) / 0.5
    spectrum = f * np.exp(-0.5 * (f / cutoff) ** 4) + 0.05
    noise = scipy.fft.irfft2(scipy.fft.rfft2(white) * spectrum, s=shape).astype(np.float32)
    return noise * (sigma / (noise.std() + 1e-6))


def acquire(rng, hu: np.ndarray, profile: ScannerProfile, body: np.ndarray) -> np.ndarray:
    """Apply the reconstruction kernel's blur (and edge enhancement) and the scanner's correlated noise; quantise
    like DICOM."""
    out = enhance_edges(blur(hu, profile.kernel_sigma), profile.edge_gain)
    depth = blur(body.astype(np.float32), 25)
    noise = correlated_noise(rng, hu.shape, profile.noise_sigma, profile.noise_cutoff)
    out = out + noise * (0.35 + 0.85 * depth)
    yy, xx = np.mgrid[0 : hu.shape[0], 0 : hu.shape[1]]
    outside = (yy - hu.shape[0] / 2 + 0.5) ** 2 + (xx - hu.shape[1] / 2 + 0.5) ** 2 > (hu.shape[0] / 2) ** 2
    out[outside] = profile.fov_pad
    return np.rint(np.clip(out, -2048, 3071)).astype(np.float32)


def chest_slice(rng: np.random.Generator, profile: ScannerProfile, level: float | None = None,
                n_nodules: int = 0, max_diameter: float = 25.0,
                fine_vessels: bool = False, lookalikes: bool = False,
                matched_nodules: bool = False, rib_cage: bool = False,
                heterogeneous_nodules: bool = False) -> tuple[np.ndarray, list[Nodule]]:
    """Draw one axial chest slice in HU (512 x 512) and the authentic nodules drawn into it.

    Args:
        rng: random generator (the only source of randomness).
        profile: the scan's scanner and body parameters.
        level: 0 = lung apex side, 1 = lung base side; sets the heart and mediastinum size.
        n_nodules: number of authentic nodules to draw (diameter log-uniform from 4 mm to `max_diameter` mm).
        fine_vessels: the lung's fine detail drawn as partial volume (`_fine_vessels`: many vessel dots holding
            their cross-section, thin low-contrast branches; thin crossing branches of the trees as `_blob`)
            instead of the sparse rasterised dots of `_through_plane_vessels`.
        matched_nodules: authentic nodules drawn where tampering puts its targets (`lungmask.sample_lung_points`
            on the image's lung mask: near the pleura and vessels as often as tampering), a quarter of them round
            and uniform; False: anywhere 4 mm inside the lungs, never round (the corpus before the setting).
        lookalikes: authentic structures that look like a tamper: bronchovascular bundles cut across (round
            arteries the size of a nodule beside their bronchus, `_bronchovascular`) and, in a third of slices,
            ground-glass opacity (`add_ground_glass`, a haze like a removal's).
        rib_cage: ribs as a real thorax holds them: arcs along the chest wall against the pleura
            (`_rib_on_pleura`), as an axial slice cuts the obliquely running ribs; False: short straight ribs in
            the middle of the chest wall (the corpus before the setting). The random draws are the same either
            way, so only the ribs differ (a tamper sampler that reads the image may then pick other points).
        heterogeneous_nodules: authentic nodules with a real cancer's margin and inner variation (`draw_nodule`).
    """
    level = rng.uniform(0.2, 0.9) if level is None else level
    ppm = 1.0 / profile.spacing
    cx, cy = SIZE / 2 + rng.normal(0, 4), SIZE / 2 + rng.uniform(-6, 14)
    ax, ay = profile.body_w * ppm, profile.body_h * ppm
    hu = np.full((SIZE, SIZE), AIR, np.float32)

    # scanner table below the patient, with an air gap
    table_y = cy + ay * 0.9 + rng.uniform(4, 12) * ppm
    cv2.ellipse(hu, (int(cx), int(table_y - 400)), (int(ax * 1.4), 400), 0, 40, 140, -200.0,
                max(2, int(4 * ppm)))
    cv2.ellipse(hu, (int(cx), int(table_y - 400 + 18 * ppm)), (int(ax * 1.4), 400), 0, 45, 135, 150.0,
                max(1, int(1.5 * ppm)))

    body_poly = _outline(cx, cy, ax, ay, rng)
    body = _fill(body_poly)
    hu[body] = FAT + rng.normal(0, 10)
    fat = rng.uniform(6, 22) * ppm
    muscle_poly = _outline(cx, cy, ax - fat, ay - fat * 0.8, rng, wobble=0.02)
    hu[_fill(muscle_poly)] = MUSCLE + rng.normal(0, 6)
    wall = rng.uniform(8, 14) * ppm
    iax, iay = ax - fat - wall, ay - fat * 0.8 - wall
    inner_poly = _outline(cx, cy - 2 * ppm, iax, iay, rng, wobble=0.015, flat_back=0.97)
    inner = _fill(inner_poly)
    hu[inner] = 30.0

    # lungs: the inner thorax minus mediastinum, heart and spine
    med_w = (rng.uniform(16, 24) + 12 * level) * ppm
    lungs = inner.copy()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    med = (np.abs(xx - cx - 4 * ppm) < med_w * (1 - 0.25 * ((yy - cy) / iay))) & (yy < cy + iay)
    lungs &= ~med
    heart_r = (rng.uniform(26, 36) + 20 * level) * ppm
    heart = ((xx - cx - heart_r * 0.45) / (heart_r * 1.1)) ** 2 + ((yy - cy + iay * 0.3) / heart_r) ** 2 < 1
    if level > 0.45:
        lungs &= ~heart
    spine_x, spine_y, spine_r = cx, cy + iay - 14 * ppm, rng.uniform(14, 19) * ppm
    lungs &= ((xx - spine_x) ** 2 + (yy - spine_y) ** 2) > (spine_r * 1.9) ** 2
    lungs = cv2.morphologyEx(lungs.astype(np.uint8), cv2.MORPH_OPEN, np.ones((7, 7), np.uint8))
    lungs = cv2.erode(lungs, np.ones((3, 3), np.uint8), iterations=max(1, int(2 * ppm))).astype(bool)
    lung_f = blur(lungs.astype(np.float32), 0.8)

    gradient = (yy - (cy - iay)) / (2 * iay) * rng.uniform(20, 70)
    lowfreq = blur(rng.normal(0, 1, (SIZE // 8, SIZE // 8)), 2)
    lowfreq = cv2.resize(lowfreq, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) * 25
    parenchyma = LUNG + rng.normal(0, 25) + gradient + lowfreq
    hu = hu * (1 - lung_f) + parenchyma * lung_f

    # mediastinum: fat pockets, great vessels, trachea; spine, sternum and ribs
    for _ in range(rng.integers(3, 7)):
        _ellipse(hu, cx + rng.normal(0, med_w * 0.4), cy - iay * rng.uniform(0.1, 0.7), rng.uniform(4, 12) * ppm,
                 rng.uniform(3, 9) * ppm, rng.uniform(0, 180), FAT + rng.normal(0, 15))
    if level > 0.45:
        _ellipse(hu, cx + heart_r * 0.45, cy - iay * 0.3, heart_r * 1.05, heart_r * 0.95, rng.uniform(-20, 20),
                 BLOOD + rng.normal(0, 5))
    aorta_r = rng.uniform(10, 15) * ppm
    _disk(hu, spine_x + spine_r * 1.4 + aorta_r * 0.3, spine_y - spine_r * 1.5, aorta_r, BLOOD + rng.normal(0, 5), True)
    if level < 0.6:
        _disk(hu, cx - 3 * ppm, cy - iay * 0.55, aorta_r * 1.05, BLOOD + rng.normal(0, 5), True)
        tx, ty, tr = cx + rng.normal(0, 3) * ppm, spine_y - spine_r * 2.4, rng.uniform(7, 10) * ppm
        _disk(hu, tx, ty, tr + 1.5 * ppm, 20.0, True)
        _disk(hu, tx, ty, tr, -990.0, True)
    _disk(hu, spine_x, spine_y, spine_r, 650.0, True)
    _disk(hu, spine_x, spine_y, spine_r - 2 * ppm, 220 + rng.normal(0, 30), True)
    _disk(hu, spine_x, spine_y + spine_r + 8 * ppm, 7 * ppm, 30.0, True)
    _ellipse(hu, spine_x, spine_y + spine_r + 24 * ppm, 5 * ppm, 14 * ppm, 0, 600.0)
    for side in (-1, 1):
        _ellipse(hu, spine_x + side * 26 * ppm, spine_y + 4 * ppm, 6 * ppm, 16 * ppm, side * 60, 550.0)
    _ellipse(hu, cx, cy - iay - wall * 0.3, 13 * ppm, 5 * ppm, 0, 700.0)
    _ellipse(hu, cx, cy - iay - wall * 0.3, 11 * ppm, 3.5 * ppm, 0, 250.0)
    rib_t = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(8, 13)))
    ring = _chest_wall_ring(inner, (cx, cy - 2 * ppm), (iax, iay), 8.0 * ppm) if rib_cage else None
    for t in rib_t:
        if abs(np.sin(t) - 1) < 0.05 or abs(np.sin(t) + 1) < 0.08:
            continue
        length, thick = rng.uniform(6, 14) * ppm, rng.uniform(3.5, 5) * ppm
        marrow = 260.0 + rng.normal(0, 40)
        if rib_cage:
            _rib_on_pleura(hu, ring, (iax, iay), t, 2 * length, 1.6 * thick, marrow, ppm)
            continue
        rx, ry = cx + (iax + wall * 0.45) * np.cos(t), cy + (iay + wall * 0.45) * np.sin(t)
        angle = np.degrees(t) + 90
        _ellipse(hu, rx, ry, length, thick, angle, 800.0)
        _ellipse(hu, rx, ry, length - 1.5 * ppm, thick - 1.5 * ppm, angle, marrow)

    # vessels and airways inside the lungs
    vessels = np.zeros((SIZE, SIZE), np.float32)
    hila = []
    for side in (-1, 1):
        hx, hy = cx + side * (med_w + 6 * ppm), cy - iay * rng.uniform(0.05, 0.3)
        hila.append((hx, hy))
        for _ in range(rng.integers(4, 7)):
            direction = (0 if side > 0 else np.pi) + rng.uniform(-1.3, 1.3)
            vessels = np.maximum(vessels, _vessel_tree(rng, lungs, (hx, hy), ppm, direction, fine_vessels))
    vessels = np.maximum(vessels, (_fine_vessels if fine_vessels else _through_plane_vessels)(rng, lungs, hila, ppm))
    bundles = _bronchovascular(rng, lungs, hila, ppm) if lookalikes else []
    for x, y, r, stretch, angle, *_ in bundles:
        artery = np.zeros_like(vessels)
        _ellipse(artery, x, y, r * stretch, r, angle, 1.0)
        vessels = np.maximum(vessels, blur(artery, 0.6))
    vessels *= lung_f
    hu = hu * (1 - vessels) + (BLOOD + rng.normal(0, 10)) * vessels
    for *_, bx, by, r_b, wall in bundles:
        if 0 <= int(bx) < SIZE and 0 <= int(by) < SIZE and lungs[int(by), int(bx)]:
            _disk(hu, bx, by, r_b + wall, 0.0, True)
            _disk(hu, bx, by, r_b, -960.0, True)
    if lookalikes and rng.uniform() < 1 / 3:
        hu = add_ground_glass(rng, hu, lungs, ppm)
    for hx, hy in hila:
        for _ in range(rng.integers(2, 5)):
            bx, by = hx + rng.normal(0, 12) * ppm, hy + rng.normal(0, 12) * ppm
            if 0 <= int(bx) < SIZE and 0 <= int(by) < SIZE and lungs[int(by), int(bx)]:
                br = rng.uniform(2, 5) * ppm
                _disk(hu, bx, by, br + 1.0 * ppm, 0.0, True)
                _disk(hu, bx, by, br, -960.0, True)

    nodules: list[Nodule] = []
    kinds_p = NODULE_TYPE_P if matched_nodules else UNMATCHED_P

    def add_nodule(x, y):
        nodules.append(random_nodule(rng, x, y, ppm, max_diameter, kinds_p))
        draw_nodule(hu, nodules[-1], rng, heterogeneous_nodules)

    if matched_nodules:  # where tampering puts its targets (its sampler and lung mask), round ones among them
        points = sample_lung_points(hu, lung_mask(hu, profile.spacing), profile.spacing, rng, n_nodules,
                                    min_dist_px=50 * ppm) if n_nodules else []
        for x, y in points:
            add_nodule(x, y)
    else:  # anywhere 4 mm inside the lungs, 50 mm apart
        candidates = np.argwhere(cv2.erode(lungs.astype(np.uint8), np.ones((3, 3), np.uint8),
                                           iterations=int(4 * ppm)))
        for _ in range(n_nodules):
            if len(candidates) == 0:
                break
            y, x = candidates[rng.integers(len(candidates))]
            add_nodule(x, y)
            candidates = candidates[np.hypot(candidates[:, 0] - y, candidates[:, 1] - x) > 50 * ppm]

    return acquire(rng, hu, profile, body), nodules
