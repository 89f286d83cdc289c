import numpy as np
import pydicom
import pytest

from tests.conftest import write_dicom, write_enhanced_ct
from utils.dicom import DicomError, read_dicom_tree, read_series, read_slice, unwindow, window


@pytest.mark.parametrize("intercept", [0.0, -1024.0])
def test_hu_from_slope_and_intercept(tmp_path, intercept):
    hu = np.full((32, 32), -850.0)
    hu[10:20, 10:20] = 40.0
    sl = read_slice(write_dicom(tmp_path / "a.dcm", hu, intercept=intercept))
    np.testing.assert_allclose(sl.hu, hu)
    assert sl.spacing == (0.7, 0.7)


def test_slope_is_applied(tmp_path):
    hu = np.linspace(-1000, 1000, 64).reshape(8, 8)
    sl = read_slice(write_dicom(tmp_path / "a.dcm", hu, intercept=-1024.0, slope=2.0))
    np.testing.assert_allclose(sl.hu, np.rint((hu + 1024) / 2) * 2 - 1024)


def test_missing_rescale_tags_name_the_file(tmp_path):
    path = write_dicom(tmp_path / "norescale.dcm", np.zeros((8, 8)), rescale=False)
    with pytest.raises(DicomError, match="norescale.dcm.*RescaleSlope"):
        read_slice(path)


def test_non_dicom_file_names_the_file(tmp_path):
    bad = tmp_path / "notes.dcm"
    bad.write_text("not a dicom file")
    with pytest.raises(DicomError, match="notes.dcm"):
        read_slice(bad)


def test_series_sorted_by_position_and_mixed_sizes_rejected(tmp_path):
    for i, z in enumerate([30.0, 10.0, 20.0]):
        write_dicom(tmp_path / "s" / f"{i}.dcm", np.full((8, 8), float(z)), instance=i + 1, z=z)
    series = read_series(tmp_path / "s")
    assert [s.z for s in series] == [10.0, 20.0, 30.0]
    write_dicom(tmp_path / "s" / "big.dcm", np.zeros((16, 16)), instance=9, z=40.0)
    with pytest.raises(DicomError, match="mixes slice sizes"):
        read_series(tmp_path / "s")


def test_dicom_tree_reads_series_folders_and_lone_files(tmp_path):
    for i, z in enumerate([20.0, 10.0]):
        write_dicom(tmp_path / "a" / "s" / f"{i}.dcm", np.full((8, 8), z), instance=i + 1, z=z)
    write_dicom(tmp_path / "a" / "lone.dcm", np.zeros((8, 8)))
    tree = read_dicom_tree(tmp_path)
    assert [(p.relative_to(tmp_path).as_posix(), [s.z for s in slices]) for p, slices in tree] == [
        ("a/lone.dcm", [0.0]), ("a/s", [10.0, 20.0])]
    assert [p for p, _ in read_dicom_tree(tmp_path / "a" / "lone.dcm")] == [tmp_path / "a" / "lone.dcm"]


def test_corrupt_slice_skipped_only_when_asked(tmp_path):
    for i in range(3):
        write_dicom(tmp_path / "s" / f"{i}.dcm", np.zeros((8, 8)), instance=i + 1, z=float(i))
    (tmp_path / "s" / "3.dcm").write_bytes(b"garbage")
    with pytest.raises(DicomError, match="3.dcm"):
        read_series(tmp_path / "s")
    with pytest.warns(UserWarning, match="skipped 1"):
        assert len(read_series(tmp_path / "s", skip_corrupt=True)) == 3


def test_window_maps_lung_window_to_bytes():
    hu = np.array([-2048, -1000, -300, 400, 3000], np.float32)
    assert window(hu).tolist() == [0, 0, 128, 255, 255]
    assert abs(unwindow(window(np.float32(-300))) + 300) < 3


def test_missing_instance_numbers_fall_back_to_position_order(tmp_path):
    for i, z in enumerate([30.0, 10.0, 20.0]):
        path = write_dicom(tmp_path / "s" / f"{i}.dcm", np.full((8, 8), z), instance=1, z=z)
        import pydicom

        ds = pydicom.dcmread(path)
        del ds.InstanceNumber
        ds.save_as(path)
    with pytest.warns(UserWarning, match="InstanceNumber is missing or repeated"):
        series = read_series(tmp_path / "s")
    assert [(s.instance, s.z) for s in series] == [(1, 10.0), (2, 20.0), (3, 30.0)]


def test_truncated_pixel_payload_names_the_file_and_is_skipped_when_asked(tmp_path):
    import pydicom

    for i in range(3):
        write_dicom(tmp_path / "s" / f"{i}.dcm", np.zeros((8, 8)), instance=i + 1, z=float(i))
    ds = pydicom.dcmread(tmp_path / "s" / "2.dcm")
    ds.PixelData = ds.PixelData[:20]
    ds.save_as(tmp_path / "s" / "2.dcm")
    with pytest.raises(DicomError, match="2.dcm: unreadable pixel data"):
        read_series(tmp_path / "s")
    with pytest.warns(UserWarning, match="skipped 1"):
        assert len(read_series(tmp_path / "s", skip_corrupt=True)) == 2


def test_jpeg_lossless_series_decodes(shared_data):
    series = read_series(shared_data / "authentic-ct" / "covid-ct-md" / "normal001")
    assert len(series) == 20 and series[0].meta["kernel"] in ("D40s", "B41s")
    lungs = series[10].hu[series[10].hu < -700]
    assert lungs.size > 10000 and -950 < np.median(lungs) < -750


def test_shipped_rle_backgrounds_decode_and_their_patient_leaves_the_false_alarm_test(shared_data, tmp_path):
    from utils.authentic import authentic_patches
    from utils.synthetic import SHIPPED_BACKGROUNDS

    shipped = read_slice(SHIPPED_BACKGROUNDS / "lung-pet-ct-dx-A0002" / "1-10.dcm")  # RLE Lossless: no plugin
    original = read_slice(shared_data / "authentic-ct" / "Lung_Dx-A0002" / "B40f" / "1-10.dcm")
    np.testing.assert_array_equal(shipped.hu, original.hu)
    root = shared_data / "authentic-ct" / "Lung_Dx-A0002"
    assert authentic_patches(root, per_slice=1)
    assert {p.image.shape for p in authentic_patches(root / "B40f", per_slice=1, size=96)} == {(96, 96)}
    with pytest.raises(FileNotFoundError):
        authentic_patches(root, per_slice=1, exclude_patients={shipped.meta["patient_id"]})


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80"],
                         ids=["rle", "jpeg2000", "jpeg-ls"])
def test_compressed_slices_decode_to_the_same_hu(tmp_path, syntax):
    """Clinical archives store CT compressed: RLE, JPEG 2000 and JPEG-LS (lossless) read back bit for bit."""
    hu = np.random.default_rng(0).integers(-1024, 600, (48, 40)).astype(np.float32)
    plain = read_slice(write_dicom(tmp_path / "plain.dcm", hu))
    packed = read_slice(write_dicom(tmp_path / "packed.dcm", hu, syntax=syntax))
    np.testing.assert_array_equal(packed.hu, plain.hu)
    np.testing.assert_array_equal(packed.hu, hu)


def test_lossy_compression_is_read_from_the_header_then_the_transfer_syntax(tmp_path):
    """Lossy slices read (with their loss) and say so: LossyImageCompression decides, else the transfer syntax."""
    hu = np.random.default_rng(0).normal(-850, 40, (64, 64))
    assert read_slice(write_dicom(tmp_path / "plain.dcm", hu)).meta["lossy"] is None
    assert read_slice(write_dicom(tmp_path / "j2k.dcm", hu, syntax=pydicom.uid.JPEG2000Lossless)).meta["lossy"] is None
    lossy = read_slice(write_dicom(tmp_path / "j2k_10.dcm", hu, syntax=pydicom.uid.JPEG2000, j2k_cr=[10]))
    assert lossy.meta["lossy"] == "stored as JPEG 2000 Image Compression"
    assert 5 < np.abs(lossy.hu - np.rint(hu)).mean() < 40  # the loss is real, and the slice is still read
    near = read_slice(write_dicom(tmp_path / "jls.dcm", hu, syntax=pydicom.uid.JPEGLSNearLossless, jls_error=2))
    assert near.meta["lossy"].startswith("stored as JPEG-LS") and np.abs(near.hu - np.rint(hu)).max() <= 2
    ds = pydicom.dcmread(tmp_path / "plain.dcm")  # decompressed after a lossy stage: the header still tells
    ds.LossyImageCompression, ds.LossyImageCompressionMethod, ds.LossyImageCompressionRatio = "01", "ISO_10918_1", 12
    ds.save_as(tmp_path / "history.dcm")
    assert read_slice(tmp_path / "history.dcm").meta["lossy"] == "lossy compression (ISO_10918_1, 12:1)"
    ds = pydicom.dcmread(tmp_path / "j2k_10.dcm")  # the header's "00" outranks a syntax that may be lossy
    ds.LossyImageCompression = "00"
    ds.save_as(tmp_path / "declared.dcm")
    assert read_slice(tmp_path / "declared.dcm").meta["lossy"] is None


def test_localizers_and_reformats_are_refused_by_name(tmp_path):
    hu = np.full((32, 32), -850.0)
    scout = write_dicom(tmp_path / "scout.dcm", hu, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    with pytest.raises(DicomError, match="scout.dcm: a localizer"):
        read_slice(scout)
    for name, orientation, plane in [("cor.dcm", (1, 0, 0, 0, 0, -1), "coronal"),
                                     ("sag.dcm", (0, 1, 0, 0, 0, -1), "sagittal")]:
        with pytest.raises(DicomError, match=f"{name}: a {plane} image"):
            read_slice(write_dicom(tmp_path / name, hu, orientation=orientation))
    axial = read_slice(write_dicom(tmp_path / "ax.dcm", hu, z=-120.0, orientation=(1, 0, 0, 0, 1, 0)))
    assert axial.z == -120.0


def test_tilted_gantry_orders_slices_along_the_normal(tmp_path):
    """A tilted gantry moves each slice's origin in y as well as z; positions are read along the slice normal."""
    tilt = np.deg2rad(20)
    orientation = (1, 0, 0, 0, np.cos(tilt), -np.sin(tilt))  # rows tilted about x
    normal = np.cross(orientation[:3], orientation[3:])
    for i, step in enumerate((0.0, 5.0, 10.0)):
        path = write_dicom(tmp_path / "s" / f"{i}.dcm", np.full((16, 16), -850.0), instance=3 - i,
                           orientation=orientation)
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = list(np.array([-175.0, -175.0, 0.0]) + step * normal)
        ds.save_as(path)
    series = read_series(tmp_path / "s")
    assert [s.instance for s in series] == [3, 2, 1]
    np.testing.assert_allclose(np.diff([s.z for s in series]), [5.0, 5.0])


def test_bare_data_set_without_preamble_reads(tmp_path):
    """Older archives write the data set alone (no preamble, no file meta): read as implicit VR little endian."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from utils.archive import find_series

    hu = np.random.default_rng(1).integers(-1000, 200, (24, 24)).astype(np.float32)
    ds = pydicom.dcmread(write_dicom(tmp_path / "with_meta.dcm", hu))
    ds.Modality, ds.SeriesInstanceUID = "CT", "1.2.3.4"
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, pydicom.Dataset(ds))
    (tmp_path / "bare" / "IM0").parent.mkdir()
    (tmp_path / "bare" / "IM0").write_bytes(buf.getvalue())
    np.testing.assert_array_equal(read_slice(tmp_path / "bare" / "IM0").hu, hu)
    jobs, skipped = find_series(tmp_path / "bare")
    assert [j.uid for j in jobs] == ["1.2.3.4"] and not skipped
    (tmp_path / "bare" / "notes").write_text("not DICOM at all")
    with pytest.raises(DicomError, match="notes: not a readable DICOM"):
        read_slice(tmp_path / "bare" / "notes")


def test_enhanced_multi_frame_ct_reads_as_slices_in_patient_order(tmp_path):
    """Enhanced CT keeps rescale, spacing and positions in functional groups: each frame becomes a slice."""
    from utils.dicom import read_slices

    volume = np.random.default_rng(2).integers(-1000, 300, (3, 20, 24)).astype(np.float32)
    path = write_enhanced_ct(tmp_path / "vol" / "enhanced.dcm", volume, zs=[-100.0, -110.0, -105.0])
    slices = read_slices(path)
    assert [s.z for s in slices] == [-110.0, -105.0, -100.0] and [s.instance for s in slices] == [1, 2, 3]
    for sl, f in zip(slices, (1, 2, 0)):
        np.testing.assert_array_equal(sl.hu, volume[f])
        assert sl.spacing == (0.6, 0.6) and sl.meta["frame"] == f and sl.meta["thickness"] == 1.0
    assert [len(s) for _, s in read_dicom_tree(tmp_path)] == [3]
    with pytest.raises(DicomError, match="enhanced.dcm: an enhanced CT image of 3 frames"):
        read_slice(path)
    coronal = write_enhanced_ct(tmp_path / "cor.dcm", volume, zs=[0, 1, 2], orientation=(1, 0, 0, 0, 0, -1))
    with pytest.raises(DicomError, match="cor.dcm: a coronal image"):
        read_slices(coronal)


def test_a_folder_of_two_series_is_refused(tmp_path):
    for i, uid in enumerate(("1.2.3.1", "1.2.3.2")):
        write_dicom(tmp_path / "mixed" / f"{i}.dcm", np.full((16, 16), -850.0), instance=1, series_uid=uid)
    with pytest.raises(DicomError, match="mixed: the folder holds 2 series"):
        read_series(tmp_path / "mixed")
