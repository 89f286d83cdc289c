import numpy as np

from utils.tamper import TOUCHUP_PX, resample_roundtrip
from utils.texture import REFERENCE, band_levels, bands, box_edge_ratio, high_band_share, normalise


def _phantom(noise_hu: float, seed: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[0:256, 0:256]
    hu = np.full((256, 256), -1000.0, np.float32)
    hu[((yy - 128) / 110.0) ** 2 + ((xx - 128) / 120.0) ** 2 < 1] = 40.0
    for cx in (75, 181):
        hu[((yy - 128) / 80.0) ** 2 + ((xx - cx) / 40.0) ** 2 < 1] = -860.0
    rng = np.random.default_rng(seed)
    return hu + noise_hu * rng.standard_normal(hu.shape).astype(np.float32)


def test_bands_add_up_to_the_slice():
    hu = _phantom(20.0)
    base, detail = bands(hu)
    assert np.allclose(base + sum(detail), hu, atol=1e-3)


def test_noisier_and_quieter_scanners_are_brought_to_one_level():
    before, after = [], []
    for sigma in (8.0, 20.0, 45.0):
        hu = _phantom(sigma)
        before.append(band_levels(hu, spacing=0.7)[0])
        after.append(band_levels(normalise(hu, spacing=0.7), spacing=0.7)[0])
    assert max(before) / min(before) > 5
    assert max(after) / min(after) < 1.3, after  # one pass: the bands mix a little when re-measured
    assert np.allclose(after, REFERENCE[0], rtol=0.35), after


def test_a_noisier_region_stays_noisier_than_its_slice():
    hu = _phantom(20.0)
    rng = np.random.default_rng(1)
    hu[110:146, 60:90] += 30.0 * rng.standard_normal((36, 30)).astype(np.float32)  # a touched-up region
    out = normalise(hu, spacing=0.7)
    region, rest = out[110:146, 60:90], out[60:100, 60:90]
    assert np.std(region - region.mean()) > 1.5 * np.std(rest - rest.mean())


def test_slice_without_parenchyma_is_unchanged():
    hu = np.full((128, 128), 40.0, np.float32)
    assert band_levels(hu) is None
    assert np.array_equal(normalise(hu), hu)


def _lung_field(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 256 px square of parenchyma (-850 HU and white noise) and its all-lung mask."""
    rng = np.random.default_rng(seed)
    return (-850.0 + 20.0 * rng.standard_normal((256, 256))).astype(np.float32), np.ones((256, 256), bool)


def test_an_unresampled_box_in_a_resampled_slice_shows_at_its_edge():
    hu, lungs = _lung_field()
    resampled = resample_roundtrip(hu, 0.65)
    half = TOUCHUP_PX // 2
    boxed = resampled.copy()
    boxed[128 - half : 128 + half, 128 - half : 128 + half] = hu[128 - half : 128 + half, 128 - half : 128 + half]
    assert box_edge_ratio(boxed, 128, 128, half, 0.65, lungs) > 1.2
    for one_history in (hu, resampled):
        assert abs(box_edge_ratio(one_history, 128, 128, half, 0.65, lungs) - 1) < 0.1
    assert box_edge_ratio(hu, 128, 128, half, 0.65, np.zeros_like(lungs)) is None  # no parenchyma to measure


def test_a_round_trip_to_1_mm_removes_the_power_near_nyquist():
    hu, lungs = _lung_field()
    stored = high_band_share(hu, 0.65, lungs)
    again = high_band_share(resample_roundtrip(hu, 0.65), 0.65, lungs)
    assert stored > 0.5  # white noise: about as much power near Nyquist as at mid frequencies
    assert again < 0.25 * stored
    everywhere = [(x, y) for x in range(0, 256, 32) for y in range(0, 256, 32)]
    assert high_band_share(hu, 0.65, lungs, avoid=everywhere) is None  # no square clear of the avoided points
