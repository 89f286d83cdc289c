import cv2
import numpy as np
import pytest

from utils.data import augment, load_split, read_image


def _split(tmp_path, n=3):
    for cls, value in (("real", 50), ("fake", 200)):
        (tmp_path / cls).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(tmp_path / cls / f"{i}.png"), np.full((64, 64), value, np.uint8))
    return tmp_path


def test_class_order_is_real0_fake1(tmp_path):
    x, y, files = load_split(_split(tmp_path))
    assert x.shape == (6, 64, 64, 1) and x.dtype == np.float32
    assert y.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.allclose(x[y == 0], 50 / 255) and np.allclose(x[y == 1], 200 / 255)


@pytest.mark.parametrize("kind", ["rgb", "rgba", "u16", "npy"])
def test_other_image_formats(tmp_path, kind):
    gray = np.full((32, 32), 128, np.uint8)
    if kind == "rgb":
        path = tmp_path / "a.png"
        cv2.imwrite(str(path), np.dstack([gray] * 3))
    elif kind == "rgba":
        path = tmp_path / "a.png"
        cv2.imwrite(str(path), np.dstack([gray] * 3 + [np.full_like(gray, 255)]))
    elif kind == "u16":
        path = tmp_path / "a.png"
        cv2.imwrite(str(path), gray.astype(np.uint16) * 257)
    else:
        path = tmp_path / "a.npy"
        np.save(path, gray)
    img = read_image(path, image_size=64)
    assert img.shape == (64, 64, 1)
    assert np.allclose(img, 128 / 255, atol=2e-3)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_split(tmp_path / "nowhere")
    (tmp_path / "s" / "real").mkdir(parents=True)
    (tmp_path / "s" / "fake").mkdir()
    with pytest.raises(ValueError, match="real: no images"):
        load_split(tmp_path / "s")
    _split(tmp_path / "t")
    (tmp_path / "t" / "fake" / "broken.png").write_bytes(b"xx")
    with pytest.raises(ValueError, match="broken.png"):
        load_split(tmp_path / "t")


def test_augment_keeps_pixel_values():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(4, 16, 16, 1)).astype(np.float32)
    out = augment(x, rng)
    assert out.shape == x.shape
    for a, b in zip(x, out):
        assert np.array_equal(np.sort(a.ravel()), np.sort(b.ravel()))
