"""Shared fixtures: tiny DICOM series written with pydicom, the shared real data (skipped when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def write_dicom(path: Path, hu: np.ndarray, instance: int = 1, z: float = 0.0, intercept: float = -1024.0,
                slope: float = 1.0, spacing: float = 0.7, rescale: bool = True, modality: str = "CT",
                series_uid: str | None = None, patient: str | None = None, orientation=None, image_type=None,
                syntax=None, **encoding) -> Path:
    """A minimal CT slice storing (hu - intercept) / slope as int16; `syntax`: a compressed transfer syntax
    to store the pixels with (e.g. pydicom.uid.JPEG2000Lossless), `encoding` its options (e.g. j2k_cr=[10])."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    if patient:
        ds.PatientID = patient
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [-175.0, -175.0, float(z)]
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    if image_type is not None:
        ds.ImageType = list(image_type)
    ds.PixelSpacing = [spacing, spacing]
    ds.SliceThickness = 2.5
    stored = np.rint((np.asarray(hu, np.float64) - intercept) / slope).astype(np.int16)
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    if rescale:
        ds.RescaleIntercept = intercept
        ds.RescaleSlope = slope
    ds.PixelData = stored.tobytes()
    if syntax is not None:
        ds.compress(syntax, **encoding)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_enhanced_ct(path, volume, zs, intercept=-1024.0, spacing=0.6, orientation=(1, 0, 0, 0, 1, 0)):
    """An enhanced (multi-frame) CT image: rescale, spacing and orientation shared, one position per frame."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = EnhancedCTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = EnhancedCTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames, (ds.Rows, ds.Columns) = len(volume), volume.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    measures, transform, plane = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [spacing, spacing], 1.0
    transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = intercept, 1.0, "HU"
    plane.ImageOrientationPatient = list(orientation)
    shared = Dataset()
    shared.PixelMeasuresSequence, shared.PixelValueTransformationSequence = [measures], [transform]
    shared.PlaneOrientationSequence = [plane]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for z in zs:
        position, frame = Dataset(), Dataset()
        position.ImagePositionPatient = [-150.0, -150.0, float(z)]
        frame.PlanePositionSequence = [position]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = np.rint(np.asarray(volume) - intercept).astype(np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.fixture(scope="session")
def chest_slices():
    """Three synthetic authentic chest slices (HU) of one scanner profile, and the profile."""
    from utils.anatomy import ScannerProfile, chest_slice

    rng = np.random.default_rng(7)
    profile = ScannerProfile.sample(rng)
    return [chest_slice(rng, profile, level=lv, n_nodules=1)[0] for lv in (0.3, 0.5, 0.7)], profile


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real development data not found at {SHARED} (it ships beside the repository only on "
                    "development machines)")
    return SHARED


TINY_CORPUS = dict(n_scans=16, slices_per_scan=1, tampers_per_slice=3, workers=1)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A 16-scan embedded corpus (one slice per scan), built once per test session."""
    from utils.synthetic import CorpusConfig, build_synthetic_corpus

    out = tmp_path_factory.mktemp("tiny_corpus")
    build_synthetic_corpus(out, CorpusConfig(**TINY_CORPUS), progress=False)
    return out


TINY_MODEL = dict(filters=(4, 8, 8), dim=16, depth=2, heads=2, mlp_dim=32)
