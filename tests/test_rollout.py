import numpy as np
import pytest

from explainability.rollout import discard_lowest, fuse_heads, grid_to_pixels, rollout, to_unit_range


def _reference(attentions, fusion, ratio):
    """A plain loop over images, layers and rows: what rollout must equal."""
    out = []
    for b in range(attentions[0].shape[0]):
        t = attentions[0].shape[-1]
        joint = np.eye(t)
        for att in attentions:
            a = {"mean": np.mean, "max": np.max, "min": np.min}[fusion](att[b], axis=0).copy()
            k = int(np.floor((t - 1) * ratio))
            for row in range(t):
                order = np.argsort(a[row, 1:], kind="stable")[:k]
                a[row, 1 + order] = 0.0
            a = a + np.eye(t)
            a = a / a.sum(axis=1)[:, None]
            joint = a @ joint
        out.append(joint[0, 1:])
    return np.array(out)


def _random_attention(rng, b=3, h=2, t=10, layers=3):
    atts = []
    for _ in range(layers):
        a = rng.uniform(size=(b, h, t, t))
        atts.append(a / a.sum(-1, keepdims=True))
    return atts


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.9])
def test_matches_numpy_reference(fusion, ratio):
    atts = _random_attention(np.random.default_rng(0))
    np.testing.assert_allclose(rollout(atts, fusion, ratio), _reference(atts, fusion, ratio), atol=1e-12)


def test_identity_attention_gives_uniform_map():
    t = 17
    eye = np.broadcast_to(np.eye(t), (2, 4, t, t))
    maps = rollout([eye, eye], "mean", 0.5)
    assert np.allclose(maps, maps[:, :1])
    assert np.all(to_unit_range(maps) == 1.0)
    uniform = np.full((2, 4, t, t), 1.0 / t)
    m = rollout([uniform] * 3, "mean", 0.0)
    assert np.allclose(m, m[:, :1])


def test_one_hot_attention_peaks_at_its_token():
    t, target = 10, 6
    att = np.zeros((1, 2, t, t))
    att[..., target] = 1.0
    maps = rollout([att, att], "mean", 0.0)
    assert int(np.argmax(maps[0])) == target - 1


def test_rows_sum_to_one_after_each_step():
    atts = _random_attention(np.random.default_rng(1), layers=4)
    for n in range(1, 5):
        joint_row = rollout(atts[:n], "max", 0.9)
        cls_to_cls = 1.0 - joint_row.sum(axis=1)
        assert np.all(cls_to_cls > 0) and np.all(cls_to_cls < 1)
    a = discard_lowest(fuse_heads(atts[0], "mean"), 0.9) + np.eye(10)
    assert np.allclose((a / a.sum(-1, keepdims=True)).sum(-1), 1.0)


def test_discard_keeps_cls_and_applies_to_every_image():
    rng = np.random.default_rng(2)
    a = rng.uniform(size=(3, 8, 8))
    a[:, :, 0] = 1e-9  # the smallest entries sit in the CLS column: they must survive
    out = discard_lowest(a, 0.5)
    assert np.all(out[:, :, 0] == a[:, :, 0])
    assert np.all((out[:, :, 1:] == 0).sum(axis=-1) == 3)  # floor(7 * 0.5) per row, in every image


def test_invalid_fusion_and_ratio_raise():
    atts = _random_attention(np.random.default_rng(3))
    with pytest.raises(ValueError, match="head_fusion"):
        rollout(atts, "median")
    with pytest.raises(ValueError, match="discard_ratio"):
        rollout(atts, "mean", 1.0)


def test_grid_to_pixels_keeps_cell_centres():
    grid = np.zeros((1, 8, 8))
    grid[0, 2, 5] = 1.0
    px = grid_to_pixels(grid, (64, 64))[0]
    y, x = np.unravel_index(np.argmax(px), px.shape)
    assert abs(y - (2 * 8 + 3.5)) <= 0.5 and abs(x - (5 * 8 + 3.5)) <= 0.5


def test_tokens_sit_where_the_stem_looks():
    """A padding-free stem's 4x4 tokens are centred on pixels 17.5 + 8 i (`feature_geometry`), not on the
    centres of four equal cells; the maps follow the model's geometry, also when drawn at another size."""
    from utils.architectures import build_cnn, feature_geometry

    assert feature_geometry(build_cnn((64, 64, 1), (4, 4, 4), padding="same")) == (8.0, 3.5)
    geometry = feature_geometry(build_cnn((64, 64, 1), (4, 4, 4), padding="valid"))
    assert geometry == (8.0, 17.5)
    grid = np.zeros((1, 4, 4))
    grid[0, 1, 3] = 1.0
    px = grid_to_pixels(grid, (64, 64), geometry)[0]
    assert np.unravel_index(np.argmax(px), px.shape) in {(25, 41), (25, 42), (26, 41), (26, 42)}
    big = grid_to_pixels(grid, (128, 128), geometry, input_size=(64, 64))[0]
    y, x = np.unravel_index(np.argmax(big), big.shape)
    assert abs(y - 51.5) <= 0.5 and abs(x - 83.5) <= 0.5


def test_cells_spread_over_what_they_see():
    """With `spread`, a high cell on the edge of a padding-free stem's 4x4 grid draws a blob centred where it looks,
    fading towards the border, not a band held out to it; sigma comes from the cell's receptive field."""
    from explainability.rollout import ERF_SIGMA_PER_RF
    from utils.architectures import build_cnn, feature_geometry, receptive_field

    cnn = build_cnn((64, 64, 1), (4, 4, 4), padding="valid")
    stride, offset = feature_geometry(cnn)
    assert receptive_field(cnn) == 36 and offset == (36 - 1) / 2  # the first cell sees pixels 0..35
    grid = np.zeros((1, 4, 4))
    grid[0, 1, 3] = 1.0
    held = grid_to_pixels(grid, (64, 64), (stride, offset))[0]
    spread = grid_to_pixels(grid, (64, 64), (stride, offset), spread=ERF_SIGMA_PER_RF * 36)[0]
    assert np.ptp(held[25, 42:]) == 0 and held[25, 63] > 0.8 * held.max()  # held: a band out to the border
    assert np.unravel_index(np.argmax(spread), spread.shape) in {(25, 41), (25, 42), (26, 41), (26, 42)}
    assert spread[25, 63] < 0.2 * spread.max() and spread[63, 41] < 0.01 * spread.max()
    big = grid_to_pixels(grid, (128, 128), (stride, offset), (64, 64), spread=7.2)[0]
    y, x = np.unravel_index(np.argmax(big), big.shape)
    assert abs(y - 51.5) <= 0.5 and abs(x - 83.5) <= 0.5


def test_rounding_noise_is_flat_not_a_heatmap():
    from explainability.rollout import flat_maps

    rng = np.random.default_rng(0)
    noisy = 1.0 / 64 + rng.normal(0, 1e-9, (3, 8, 8))  # uniform attention up to float noise
    assert flat_maps(noisy).all() and np.all(to_unit_range(noisy) == 1.0)
    real = noisy.copy()
    real[:, 3, 4] += 0.01
    assert not flat_maps(real).any() and to_unit_range(real)[0, 3, 4] == 1.0
