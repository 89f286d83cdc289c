import numpy as np

from utils.lungmask import body_mask, lung_mask


def test_air_outside_patient_and_table_gap_are_not_lung():
    yy, xx = np.mgrid[0:256, 0:256]
    hu = np.full((256, 256), -1000.0)
    body = ((yy - 120) / 90.0) ** 2 + ((xx - 128) / 110.0) ** 2 < 1
    hu[body] = 40.0
    lung = ((yy - 115) / 55.0) ** 2 + ((xx - 85) / 30.0) ** 2 < 1
    hu[lung] = -850.0
    hu[225:229, 20:236] = 200.0  # scanner table with an air gap above it
    hu[(yy - 128) ** 2 + (xx - 128) ** 2 > 127**2] = -2048.0  # outside the reconstruction circle
    mask = lung_mask(hu, spacing=0.7)
    assert mask[115, 85] and not mask[215, 128] and not mask[5, 5] and not mask[250, 250]
    assert abs(mask.sum() - lung.sum()) < 0.1 * lung.sum()
    assert body_mask(hu)[115, 85]


def test_slice_without_lungs_gives_empty_mask():
    hu = np.full((128, 128), -1000.0)
    hu[20:108, 20:108] = 40.0
    assert not lung_mask(hu).any()
