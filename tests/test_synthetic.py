import hashlib
import json

import cv2
import numpy as np
import pytest

from utils.lungmask import erode, lung_mask
from utils.patches import read_manifest
from utils.synthetic import CorpusConfig, build_synthetic_corpus, scan_kind, synthetic_scan
from utils.tamper import resample_roundtrip, tamper_slice

TINY = dict(n_scans=16, slices_per_scan=1, tampers_per_slice=2, workers=1, background_variants=2)


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.png")):
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    build_synthetic_corpus(out, CorpusConfig(**TINY), progress=False)
    return out


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_corpus, tmp_path):
    build_synthetic_corpus(tmp_path / "again", CorpusConfig(**TINY, ), progress=False)
    assert _digest(tmp_path / "again") == _digest(tiny_corpus)
    build_synthetic_corpus(tmp_path / "other", CorpusConfig(**TINY, seed=1), progress=False)
    assert _digest(tmp_path / "other") != _digest(tiny_corpus)


def test_workers_do_not_change_the_corpus(tiny_corpus, tmp_path):
    build_synthetic_corpus(tmp_path / "two", CorpusConfig(**dict(TINY, workers=2)), progress=False)
    assert _digest(tmp_path / "two") == _digest(tiny_corpus)


def test_splits_are_scan_disjoint_and_classes_balanced(tiny_corpus):
    rows = read_manifest(tiny_corpus / "manifest.csv")
    split_of_scan = {}
    for r in rows:
        assert split_of_scan.setdefault(r["scan"], r["split"]) == r["split"]
        assert r["path"].startswith(f"{r['split']}/{('real', 'fake')[int(r['label'])]}/")
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    fake_share = np.mean([int(r["label"]) for r in rows if r["scan"].startswith("SYN-")])
    assert 0.35 <= fake_share <= 0.6
    kinds = {r["kind"] for r in rows}
    assert {"FM", "FB", "TM", "control"} <= kinds  # fakes without nodules, reals with nodules
    fakes = [r for r in rows if r["label"] == "1"]
    jitter = CorpusConfig.jitter  # the tamper lies within the jitter of the patch centre
    assert all(r["tamper_r"] and abs(float(r["tamper_x"]) - 32) <= jitter + 0.5 for r in fakes)
    assert max(abs(float(r["tamper_x"]) - 32) for r in fakes) > 4  # off-centre views, as `scan` sees tampers
    assert all(not r["tamper_r"] for r in rows if r["label"] == "0")


def test_anatomy_in_hounsfield_units(chest_slices):
    slices, profile = chest_slices
    hu = slices[0]
    lungs = lung_mask(hu, profile.spacing)
    assert 0.08 < lungs.mean() < 0.45
    assert -920 < np.median(hu[lungs]) < -760
    assert hu.max() > 500  # bone
    assert np.median(hu[(hu > -300) & (hu < 200)]) > -150  # soft tissue


def test_tampering_is_local_and_recorded(chest_slices):
    slices, profile = chest_slices
    hu = slices[1]
    lungs = lung_mask(hu, profile.spacing)
    ys, xs = np.nonzero(lungs)
    i = len(xs) // 2
    out, recs = tamper_slice(hu, profile.spacing, [(int(xs[i]), int(ys[i]), "inject")],
                             np.random.default_rng(0), lungs=lungs)
    (rec,) = recs
    assert rec.action == "inject" and rec.radius > 5
    diff = np.abs(out - np.rint(resample_roundtrip(hu, profile.spacing)))
    yy, xx = np.mgrid[: hu.shape[0], : hu.shape[1]]
    near = (yy >= rec.y - 32) & (yy < rec.y + 32) & (xx >= rec.x - 32) & (xx < rec.x + 32)
    assert diff[near].max() > 100 and diff[~near & (hu > -900)].max() <= 1  # only the touch-up box changes
    with pytest.raises(ValueError, match="unknown tamper action"):
        tamper_slice(hu, profile.spacing, [(100, 100, "paint")], np.random.default_rng(0), lungs=lungs)


def test_touchup_noise_modes_follow_the_configured_probabilities(chest_slices, tmp_path):
    slices, profile = chest_slices
    hu = slices[1]
    lungs = lung_mask(hu, profile.spacing)
    ys, xs = np.nonzero(lungs)
    modes = set()
    for seed in range(12):
        i = np.random.default_rng(seed).integers(len(xs))
        _, (rec,) = tamper_slice(hu, profile.spacing, [(int(xs[i]), int(ys[i]), "remove")],
                                 np.random.default_rng(seed), lungs=lungs)
        modes.add(rec.noise)
    assert modes == {"copy", "gauss"}  # CT-GAN's two modes; 'none' has probability 0 by default
    _, (rec,) = tamper_slice(hu, profile.spacing, [(int(xs[0]), int(ys[0]), "remove")], np.random.default_rng(0),
                             lungs=lungs, noise_mode_p=(0, 0, 1))
    assert rec.noise == "none"
    cfg = CorpusConfig(noise_mode_p=(0.7, 0.3, 0.0))
    (tmp_path / "corpus.json").write_text(json.dumps(cfg.to_dict()))
    assert CorpusConfig.from_dir(tmp_path).noise_mode_p == (0.7, 0.3, 0.0)


def test_scan_kinds_follow_ctgan_convention():
    cfg = CorpusConfig(**TINY)
    fb, fm, tb = synthetic_scan(1, cfg), synthetic_scan(0, cfg), synthetic_scan(7, cfg)
    assert fb.kind == "FB" and {r.type for r in fb.labels} == {"FB"}
    assert fm.kind == "FM" and {r.type for r in fm.labels} <= {"FM", "TM"}
    assert tb.labels[0].type == "TB" and tb.labels[0].slice == 0
    assert fm.radii and all(v > 0 for v in fm.radii.values())
    assert [scan_kind(i) for i in (1, 0, 7, 1_000_004)] == ["FB", "FM", "TB", "TM"]


def test_no_authentic_patch_reaches_a_tampered_footprint(tiny_corpus):
    """Controls, random and TM patches of tampered slices lie wholly outside every touch-up box (jitter included)."""
    from utils.tamper import footprint_half_px

    rows = read_manifest(tiny_corpus / "manifest.csv")
    half_fp = footprint_half_px(0.6)  # the corpus's finest spacing gives the widest footprint in pixels
    tampered = {}
    rows = [r for r in rows if r["scan"].startswith("SYN-")]  # each background copy is tampered on its own
    for r in rows:
        if r["label"] == "1":
            tx = int(r["x"]) + float(r["tamper_x"]) - 32
            ty = int(r["y"]) + float(r["tamper_y"]) - 32
            tampered.setdefault((r["scan"], r["slice"]), []).append((tx, ty))
    checked = 0
    for r in rows:
        if r["label"] == "0" and (r["scan"], r["slice"]) in tampered:
            for tx, ty in tampered[(r["scan"], r["slice"])]:
                # patch box [x-32, x+32) and footprint box [t-half, t+half) must not intersect
                assert max(abs(int(r["x"]) - tx), abs(int(r["y"]) - ty)) >= 32 + half_fp - 0.5, r["path"]
            checked += 1
    assert checked >= 10
    fakes = sum(r["label"] == "1" for r in rows)
    assert sum(r["kind"] == "control" for r in rows) >= 0.9 * fakes  # the rule still leaves room for controls


def test_shipped_real_backgrounds_join_the_train_split_in_both_classes(tiny_corpus):
    rows = [r for r in read_manifest(tiny_corpus / "manifest.csv") if r["scan"].startswith("BG-")]
    assert rows and {r["split"] for r in rows} == {"train"}
    assert {"FM", "FB", "control", "TB", "TM"} <= {r["kind"] for r in rows}  # annotated tumours stay authentic
    assert CorpusConfig(**TINY).background_patients() == {"Lung_Dx-A0002"}
    assert not CorpusConfig(**dict(TINY, shipped_backgrounds=False)).background_roots()


def test_authentic_scans_are_resampled_as_often_as_configured():
    """Resampling is no label: a share of authentic scans goes through CT-GAN's 1 mm round trip too."""
    cfg = CorpusConfig(**dict(TINY, n_scans=48, resample_authentic=0.5))
    authentic = [synthetic_scan(i, cfg) for i in range(48) if i % 8 in (4, 7)]
    flags = [s.resampled for s in authentic]
    assert True in flags and False in flags
    assert all(synthetic_scan(i, cfg).resampled for i in (0, 1))  # tampered scans: always
    never = CorpusConfig(**dict(TINY, resample_authentic=0.0))
    assert not synthetic_scan(7, never).resampled


def test_crop_matches_padding_the_whole_slice_inside_and_at_the_border():
    from utils.patches import crop_hu

    hu = np.random.default_rng(0).normal(size=(100, 120)).astype(np.float32)
    padded = np.pad(hu, 200, constant_values=-1000.0)  # the old way: pad the whole slice, then cut
    for x, y in ((60, 50), (0, 0), (119, 99), (10, 90), (-40, 50), (200, 150), (32, 32), (88, 68)):
        np.testing.assert_array_equal(crop_hu(hu, x, y), padded[y + 168 : y + 232, x + 168 : x + 232])
    assert np.shares_memory(crop_hu(hu, 60, 50), hu)  # no copy of the slice for an inner crop


def test_ctgan_output_is_not_resampled_twice(chest_slices):
    """A slice CT-GAN already wrote keeps its pixels away from the emulated tamper; a fresh slice is smoothed."""
    from utils.dicom import CTSlice
    from utils.synthetic import emulate_scan
    from utils.scans import Scan

    slices, profile = chest_slices
    cfg = CorpusConfig(**dict(TINY, tampers_per_slice=1))
    done = []
    for flag in (True, False):
        sl = CTSlice(slices[0].copy(), (profile.spacing,) * 2, 1, 0.0, None, {"ctgan_output": flag})
        scan = emulate_scan(Scan("BG", "x", "background", "FM"), [sl], np.random.default_rng(0), cfg)
        done.append(_change_far_from_the_tamper(scan, slices[0]))
    assert done[0] <= 1 and done[1] > 5


def _change_far_from_the_tamper(scan, original) -> float:
    """Largest HU change of slice 1 of a one-tamper scan more than 40 px from the tamper point, in tissue."""
    (row,) = [r for r in scan.labels if r.tampered]
    out = scan.slice(1).hu
    yy, xx = np.mgrid[: out.shape[0], : out.shape[1]]
    far = ((np.abs(yy - row.y) > 40) | (np.abs(xx - row.x) > 40)) & (original > -900)
    return float(np.abs(out - original)[far].max())


def test_cube_only_resampling_leaves_the_rest_of_a_tampered_scan_as_stored(chest_slices):
    """resample_tampered < 1: some tampered scans resample only their in-painted cubes (the faster variant of
    CT-GAN's reference code), so that 'not resampled' is no proof of authenticity."""
    from utils.dicom import CTSlice
    from utils.synthetic import emulate_scan
    from utils.scans import Scan

    slices, profile = chest_slices
    far_changes = []
    for share in (0.0, 1.0):
        cfg = CorpusConfig(**dict(TINY, tampers_per_slice=1, resample_tampered=share))
        sl = CTSlice(slices[0].copy(), (profile.spacing,) * 2, 1, 0.0, None, {})
        scan = emulate_scan(Scan("SYN", "x", "synthetic", "FM"), [sl], np.random.default_rng(0), cfg)
        assert scan.resampled == (share == 1.0)
        far_changes.append(_change_far_from_the_tamper(scan, slices[0]))
    assert far_changes[0] <= 1 and far_changes[1] > 5
    assert CorpusConfig().resample_tampered == 1.0  # the default: CT-GAN's reference code, the whole scan


def test_ctgan_header_is_recognised(shared_data):
    import pydicom

    from utils.dicom import written_by_ctgan

    fake = next((shared_data / "ctgan-sample" / "CT_Scans").rglob("*.dcm"))
    assert written_by_ctgan(pydicom.dcmread(fake, stop_before_pixels=True))
    for path in (shared_data / "authentic-ct").rglob("*.dcm"):  # the reference scan itself has intercept -1024
        assert not written_by_ctgan(pydicom.dcmread(path, stop_before_pixels=True)), path


def test_fine_vessels_are_partial_volume_dots_not_rasterised_crosses():
    from utils.anatomy import ScannerProfile, _blob, chest_slice

    thin, thick = np.zeros((15, 15), np.float32), np.zeros((15, 15), np.float32)
    _blob(thin, 7.3, 7.6, 0.4, 1.0)  # a vessel much thinner than a pixel: a faint dot
    _blob(thick, 7.0, 7.0, 3.0, 1.0)  # wider than the blur: full blood at its centre
    assert 0.05 < thin.max() < 0.3 and thick.max() > 0.99
    assert abs(thin.sum() - np.pi * 0.4**2) < 0.05  # it holds the vessel's cross-section
    rng = np.random.default_rng(3)
    profile = ScannerProfile.sample(rng)
    a, _ = chest_slice(np.random.default_rng(5), profile, level=0.5, fine_vessels=True)
    b, _ = chest_slice(np.random.default_rng(5), profile, level=0.5, fine_vessels=True)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= -2048 and a.max() <= 3071


def test_a_corpus_written_before_fine_vessels_reads_back_as_the_coarse_lung(tmp_path):
    assert CorpusConfig().fine_vessels
    saved = {k: v for k, v in CorpusConfig().to_dict().items() if k != "fine_vessels"}
    (tmp_path / "corpus.json").write_text(json.dumps(saved))
    assert CorpusConfig.from_dir(tmp_path).fine_vessels is False


def test_matched_nodules_sit_where_tampering_puts_targets_and_include_round_ones():
    """With `matched_nodules`, position, attachment and roundness are no label: authentic nodules come from the
    sampler tampering uses, a quarter of them round; without it, the slice is drawn exactly as before."""
    from utils.anatomy import NODULE_DIAMETER_MM, NODULE_TYPE_P, NODULE_TYPES, UNMATCHED_P, ScannerProfile, chest_slice

    assert NODULE_TYPE_P[NODULE_TYPES.index("round")] > 0 and UNMATCHED_P[NODULE_TYPES.index("round")] == 0
    rng = np.random.default_rng(3)
    profile = ScannerProfile.sample(rng)
    hu, nodules = chest_slice(rng, profile, level=0.5, n_nodules=3, matched_nodules=True)
    lungs = lung_mask(hu, profile.spacing)
    near_lung = cv2.dilate(lungs.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=14)  # pleural ones
    assert len(nodules) == 3 and all(near_lung[n.y, n.x] for n in nodules)
    assert all(NODULE_DIAMETER_MM[0] <= 2 * n.radius * profile.spacing <= NODULE_DIAMETER_MM[1] for n in nodules)


def test_lookalikes_draw_arteries_the_size_of_a_nodule_beside_their_bronchus_and_ground_glass():
    from utils.anatomy import _bronchovascular, ground_glass

    lung = np.zeros((512, 512), bool)
    lung[100:400, 60:230] = True
    rng = np.random.default_rng(0)
    bundles = _bronchovascular(rng, lung, [(240, 250)], px_per_mm=1.4)
    assert 3 <= len(bundles) <= 7
    for x, y, r, _, _, bx, by, r_b, wall in bundles:
        assert 3 <= 2 * r / 1.4 <= 12 and abs(np.hypot(bx - x, by - y) - (r + r_b + wall)) < 1e-3
    haze = ground_glass(rng, lung, 1.4)
    assert haze[~lung].max() == 0 and 40 < haze.max() < 350


def test_a_corpus_written_before_matched_nodules_and_lookalikes_reads_them_back_off(tmp_path):
    cfg = CorpusConfig().to_dict()
    for key in ("matched_nodules", "lookalikes"):
        cfg.pop(key)
    (tmp_path / "corpus.json").write_text(json.dumps(cfg))
    back = CorpusConfig.from_dir(tmp_path)
    assert not back.matched_nodules and not back.lookalikes


def test_removal_haze_is_a_setting_and_bounds_the_in_painted_lung(chest_slices, tmp_path):
    """A corpus written before the setting reads back with the values it was made with; a removal's in-painted
    centre lies no more above the lung around it than the setting allows (plus the copied texture)."""
    from utils.tamper import tamper_slice

    cfg = CorpusConfig().to_dict()
    cfg.pop("removal_haze")
    (tmp_path / "corpus.json").write_text(json.dumps(cfg))
    assert CorpusConfig.from_dir(tmp_path).removal_haze == (10.0, 70.0, 0.0, 25.0)
    slices, profile = chest_slices
    hu = slices[0]
    lungs = lung_mask(hu, profile.spacing)
    y, x = np.argwhere(erode(lungs, 40))[0]
    levels = {}
    for name, haze in (("none", (0.0, 0.0, 0.0, 0.0)), ("strong", (200.0, 200.0, 100.0, 100.0))):
        out, _ = tamper_slice(hu, profile.spacing, [(int(x), int(y), "remove")], np.random.default_rng(1),
                              lungs=lungs, noise_mode="none", removal_haze=haze)
        levels[name] = float(np.median(out[y - 4 : y + 5, x - 4 : x + 5]))
    assert levels["strong"] > levels["none"] + 100


def test_removal_texture_gives_the_in_painted_lung_a_level_of_its_own_whatever_the_slice(chest_slices, tmp_path):
    """With `removal_texture` the fine band inside a removal has the drawn level on a quiet and on a noisy copy of
    one slice alike; without it the inside follows the slice's noise. A corpus.json without the key reads it off."""
    from utils.tamper import tamper_slice
    from utils.texture import bands, robust_sigma

    cfg = {k: v for k, v in CorpusConfig().to_dict().items() if k != "removal_texture"}
    (tmp_path / "corpus.json").write_text(json.dumps(cfg))
    assert CorpusConfig.from_dir(tmp_path).removal_texture == ()
    slices, profile = chest_slices
    quiet = slices[0]
    lungs = lung_mask(quiet, profile.spacing)
    noisy = quiet + np.random.default_rng(3).normal(0, 60, quiet.shape).astype(np.float32) * lungs
    y, x = np.argwhere(erode(lungs, 40))[0]
    inside = {}
    for name, hu in (("quiet", quiet), ("noisy", noisy)):
        for texture in ((), (18.0, 18.0)):
            out, _ = tamper_slice(hu, profile.spacing, [(int(x), int(y), "remove")], np.random.default_rng(1),
                                  lungs=lungs, noise_mode="none", removal_texture=texture)
            _, (fine, _) = bands(out)
            airy = (lungs & (out < -500))[y - 8 : y + 9, x - 8 : x + 9]
            inside[name, texture] = robust_sigma(fine[y - 8 : y + 9, x - 8 : x + 9][airy])
    assert inside["noisy", ()] > 1.5 * inside["quiet", ()]
    assert abs(inside["quiet", (18.0, 18.0)] - 18) < 4 and abs(inside["noisy", (18.0, 18.0)] - 18) < 4


def test_edge_enhancing_kernels_overshoot_at_edges_and_change_nothing_else():
    """`edge_enhancement` gives the sharper half of kernels an unsharp overshoot at edges; it is derived from the
    kernel's own draw, so every other scanner property, and every slice with it off, stays as before."""
    from dataclasses import replace

    from utils.anatomy import ScannerProfile, edge_gain, enhance_edges
    from utils.synthetic import scanner_variation

    assert edge_gain(0.5, 1.5) == 0 and edge_gain(1.0, 1.5) == 1.5 and 0 < edge_gain(0.75, 1.5) < 1.5
    plain, sharp = (ScannerProfile.sample(np.random.default_rng(4), g) for g in (0.0, 1.5))
    assert replace(sharp, edge_gain=0.0) == plain and plain.edge_gain == 0
    step = np.full((32, 32), -850.0, np.float32)
    step[:, 16:] = 40.0
    out = enhance_edges(step, 1.0)
    assert out[:, 15].mean() < -850 - 50 and out[:, 16].mean() > 40 + 50  # undershoot and overshoot
    np.testing.assert_allclose(out[:, :8], step[:, :8], atol=1e-3)  # flat lung far from the edge untouched
    assert enhance_edges(step, 0.0) is step

    hu = np.where(np.arange(64)[None, :] < 4, -2048.0, step.repeat(2, 0).repeat(2, 1)).astype(np.float32)
    noisy, edged = (scanner_variation(np.random.default_rng(1), 20.0, g)(hu) for g in (0.0, 1.5))
    assert np.array_equal(noisy[:, :4], hu[:, :4]) and np.array_equal(edged[:, :4], hu[:, :4])  # padding kept
    assert np.abs(edged - noisy).max() > 50  # this draw's kernel is a sharp one (cutoff above 0.625)


def test_a_corpus_written_before_edge_enhancement_reads_back_without_it(tmp_path):
    assert CorpusConfig().edge_enhancement > 0  # the default: sharp kernels overshoot
    saved = {k: v for k, v in CorpusConfig().to_dict().items() if k != "edge_enhancement"}
    (tmp_path / "corpus.json").write_text(json.dumps(saved))
    assert CorpusConfig.from_dir(tmp_path).edge_enhancement == 0.0


def test_rib_cage_puts_ribs_against_the_pleura_and_changes_nothing_inside_the_lung():
    """With `rib_cage` the ribs hug the lung, as an axial slice of a real thorax shows them; the anatomy's draws are
    the same either way, so only the chest wall differs."""
    from utils.anatomy import ScannerProfile, chest_slice

    profile = ScannerProfile.sample(np.random.default_rng(3))
    (wall, nod_wall), (cage, nod_cage) = (chest_slice(np.random.default_rng(5), profile, level=0.5, n_nodules=2,
                                                       fine_vessels=True, rib_cage=on) for on in (False, True))
    assert nod_wall == nod_cage
    lungs = lung_mask(wall, profile.spacing)
    changed = wall != cage
    assert changed.any() and not (changed & erode(lungs, 4 / profile.spacing)).any()  # beyond the kernel's blur
    mm_from_lung = cv2.distanceTransform((~lungs).astype(np.uint8), cv2.DIST_L2, 5) * profile.spacing
    wall_bone, cage_bone = (np.median(mm_from_lung[(hu > 200) & (mm_from_lung < 15)]) for hu in (wall, cage))
    assert cage_bone < wall_bone - 1  # bone (ribs, spine) of the chest wall lies closer to the lung


def test_a_corpus_written_before_the_rib_cage_reads_back_without_it(tmp_path):
    saved = {k: v for k, v in CorpusConfig().to_dict().items() if k != "rib_cage"}
    (tmp_path / "corpus.json").write_text(json.dumps(saved))
    assert CorpusConfig.from_dir(tmp_path).rib_cage is False


def test_a_resampling_history_comes_before_the_attack_in_both_classes(chest_slices):
    """resample_history: the scan was resampled before CT-GAN saw it, so its tampered box blends into resampled
    lung, and authentic scans carry the same history as often."""
    from utils.dicom import CTSlice
    from utils.scans import Scan
    from utils.synthetic import _resampled, emulate_scan

    slices, profile = chest_slices
    cfg = CorpusConfig(**dict(TINY, tampers_per_slice=1, resample_tampered=0.0, resample_authentic=0.0,
                              resample_history=1.0))
    fresh = lambda: CTSlice(slices[0].copy(), (profile.spacing,) * 2, 1, 0.0, None, {})  # noqa: E731
    history = _resampled(fresh()).hu
    tampered = emulate_scan(Scan("SYN", "x", "synthetic", "FM"), [fresh()], np.random.default_rng(0), cfg)
    authentic = emulate_scan(Scan("SYN", "y", "synthetic", "TB"), [fresh()], np.random.default_rng(0), cfg)
    assert tampered.resampled and authentic.resampled
    np.testing.assert_array_equal(authentic.slice(1).hu, history)  # resampled once, not twice
    assert _change_far_from_the_tamper(tampered, history) <= 1  # the attack itself resamples only its cube
    none = CorpusConfig(**dict(TINY, tampers_per_slice=1, resample_tampered=0.0, resample_authentic=0.0))
    assert not emulate_scan(Scan("SYN", "y", "synthetic", "TB"), [fresh()], np.random.default_rng(0), none).resampled
    assert CorpusConfig().resample_history == 0.0


def test_twins_are_the_tampered_points_as_the_attack_found_them(chest_slices):
    from utils.dicom import CTSlice
    from utils.patches import extract_patches
    from utils.scans import Scan
    from utils.synthetic import emulate_scan

    slices, profile = chest_slices
    cfg = CorpusConfig(**dict(TINY, tampers_per_slice=2, twins=True))
    sl = CTSlice(slices[0].copy(), (profile.spacing,) * 2, 1, 0.0, None, {})
    scan = emulate_scan(Scan("SYN", "x", "synthetic", "FB"), [sl], np.random.default_rng(0), cfg)
    patches = extract_patches(scan, np.random.default_rng(1), jitter=4)
    fakes = [p for p in patches if p.label == 1]
    twins = [p for p in patches if p.kind == "twin"]
    assert fakes and [(p.x, p.y) for p in twins] == [(p.x, p.y) for p in fakes]
    assert all(t.label == 0 and t.resampled == 0 for t in twins)  # the slice before the attack's round trip
    from utils.dicom import window
    from utils.patches import crop_hu
    np.testing.assert_array_equal(twins[0].image, window(crop_hu(slices[0], twins[0].x, twins[0].y, 64)))
    assert not any(p.kind == "twin" for p in extract_patches(
        emulate_scan(Scan("SYN", "x", "synthetic", "FB"), [CTSlice(slices[0].copy(), (profile.spacing,) * 2, 1, 0.0,
                                                                    None, {})], np.random.default_rng(0),
                     CorpusConfig(**dict(TINY, tampers_per_slice=2))), np.random.default_rng(1)))


def test_a_corpus_keeps_the_background_noise_it_was_written_with(tmp_path):
    saved = {**CorpusConfig().to_dict(), "background_noise": 30.0}
    (tmp_path / "corpus.json").write_text(json.dumps(saved))
    assert CorpusConfig.from_dir(tmp_path).background_noise == 30.0
    (tmp_path / "corpus.json").write_text(json.dumps({k: v for k, v in saved.items() if k != "background_noise"}))
    assert CorpusConfig.from_dir(tmp_path).background_noise == 0.0  # written before background copies had noise


def test_ground_glass_on_a_background_copy_raises_its_lung_and_nothing_else(chest_slices):
    from utils.synthetic import with_ground_glass

    slices, profile = chest_slices
    hu = slices[0]
    lungs = lung_mask(hu, profile.spacing)
    assert with_ground_glass(np.random.default_rng(0), hu, profile.spacing, 0.0) is hu
    hazy = with_ground_glass(np.random.default_rng(0), hu, profile.spacing, 1.0)
    added = hazy - hu
    assert added.min() >= 0 and added[~lungs].max() == 0 and added[lungs].max() > 20
    assert added[hu >= -500].max() == 0  # vessels and walls keep their values: only the airy lung is hazed
    never = [with_ground_glass(np.random.default_rng(i), hu, profile.spacing, 0.3) is hu for i in range(40)]
    assert 0.5 < np.mean(never) < 0.9


def test_a_corpus_written_before_background_ground_glass_reads_it_back_off(tmp_path):
    saved = {k: v for k, v in CorpusConfig().to_dict().items() if k != "background_ground_glass"}
    (tmp_path / "corpus.json").write_text(json.dumps(saved))
    assert CorpusConfig.from_dir(tmp_path).background_ground_glass == 0.0
    (tmp_path / "corpus.json").write_text(json.dumps({**saved, "background_ground_glass": 0.33}))
    assert CorpusConfig.from_dir(tmp_path).background_ground_glass == 0.33


def test_background_copies_are_authentic_first_then_inject_and_remove_and_reproducible():
    from utils.synthetic import SHIPPED_BACKGROUNDS, background_copy, background_sources

    source, slices = background_sources(SHIPPED_BACKGROUNDS)[0]
    slices = slices[:2]
    cfg = CorpusConfig()
    kinds = [background_copy(source, slices, cfg, v, 4)[0] for v in range(6)]
    assert kinds == ["TB", "TB", "FM", "FB", "FM", "FB"]
    _, first, _ = background_copy(source, slices, cfg, 2, 4)
    _, again, _ = background_copy(source, slices, cfg, 2, 4)
    assert first.labels == again.labels and any(r.type == "FM" for r in first.labels)
    for inst, sl in first.slices.items():
        np.testing.assert_array_equal(sl.hu, again.slices[inst].hu)
    _, authentic, _ = background_copy(source, slices, cfg, 0, 4)
    assert not any(r.tampered for r in authentic.labels)


def test_a_removal_on_a_real_background_takes_away_a_cancer_drawn_there_first():
    from utils.synthetic import (SHIPPED_BACKGROUNDS, _cancers_to_remove, background_copy, background_sources,
                                 known_points)

    source, slices = background_sources(SHIPPED_BACKGROUNDS)[0]
    slices = slices[4:6]
    cfg = CorpusConfig(removal_nodules=1.0)
    drawn, targets = _cancers_to_remove(np.random.default_rng(0), slices, cfg, known_points(slices))
    assert sum(map(len, targets.values())) >= 2
    for before, after in zip(slices, drawn):
        lungs = after.meta["lungs"]
        assert not (after.hu != before.hu)[~lungs].any()  # the remover in-paints lung only: nothing outside it
        for x, y in targets[before.instance]:
            assert after.hu[y, x] > -300 and after.hu[y, x] > before.hu[y, x]
    kind, scan, _ = background_copy(source, slices, cfg, 3, 4)
    assert kind == "FB"
    assert any(r.type == "FB" for r in scan.labels)
    for r in scan.labels:  # where a cancer was drawn, the attack leaves lung
        assert scan.slices[r.slice].hu[r.y - 2 : r.y + 3, r.x - 2 : r.x + 3].mean() < -500


def test_a_corpus_written_before_removal_nodules_reads_them_back_off(tmp_path):
    saved = {k: v for k, v in CorpusConfig().to_dict().items() if k != "removal_nodules"}
    (tmp_path / "corpus.json").write_text(json.dumps(saved))
    assert CorpusConfig.from_dir(tmp_path).removal_nodules == 0.0


def test_removal_share_spreads_removals_evenly_over_the_tampered_copies_and_half_alternates(tmp_path):
    from utils.synthetic import copy_kind

    assert [copy_kind(k) for k in range(6)] == ["FM", "FB"] * 3  # the corpus before the setting
    kinds = [copy_kind(k, 2 / 3) for k in range(64)]
    assert kinds.count("FB") == 42 and "BBB" not in "".join(k[1] for k in kinds)  # evenly: never three in a row
    assert set(copy_kind(k, 0.0) for k in range(8)) == {"FM"} and set(copy_kind(k, 1.0) for k in range(8)) == {"FB"}
    with pytest.raises(ValueError, match="removal_share"):
        copy_kind(0, 1.5)
    saved = {k: v for k, v in CorpusConfig().to_dict().items() if k != "removal_share"}
    (tmp_path / "corpus.json").write_text(json.dumps(saved))
    assert CorpusConfig.from_dir(tmp_path).removal_share == 0.5


def test_heterogeneous_nodules_vary_inside_and_blur_their_margin_and_leave_round_ones_as_they_were():
    from utils.anatomy import Nodule, draw_nodule

    def drawn(kind, heterogeneous, seed=0):
        hu = np.full((96, 96), -860.0, np.float32)
        draw_nodule(hu, Nodule(48, 48, 12.0, kind), np.random.default_rng(seed), heterogeneous)
        return hu

    inside = np.hypot(*np.mgrid[-48:48, -48:48]) < 9  # the nodule's body, its 12 px margin left out
    for seed in range(4):
        plain, real = drawn("solid", False, seed), drawn("solid", True, seed)
        assert real[inside].std() > 2.5 * plain[inside].std()  # inner variation against the plain one's fine grain
    margin = lambda hu: np.mean((hu > -700) & (hu < -100))  # pixels partway between lung and nodule
    assert np.mean([margin(drawn("solid", True, s)) for s in range(8)]) > \
        np.mean([margin(drawn("solid", False, s)) for s in range(8)])
    assert np.array_equal(drawn("round", True), drawn("round", False))


def test_a_corpus_written_before_heterogeneous_nodules_reads_them_back_off(tmp_path):
    cfg = CorpusConfig().to_dict()
    cfg.pop("heterogeneous_nodules")
    (tmp_path / "corpus.json").write_text(json.dumps(cfg))
    assert not CorpusConfig.from_dir(tmp_path).heterogeneous_nodules
