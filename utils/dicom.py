"""DICOM in, Hounsfield units out, and the one lung window every module shares."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

LUNG_WINDOW = (-1000.0, 400.0)


class DicomError(ValueError):
    """A DICOM file or series that cannot be turned into axial slices in Hounsfield units (unreadable, missing
    tags, a localizer or a reformat in another plane); the message names the file."""


def window(hu: np.ndarray, lo: float = LUNG_WINDOW[0], hi: float = LUNG_WINDOW[1]) -> np.ndarray:
    """Map HU linearly from [lo, hi] to 0..255 (uint8), clipping outside the window."""
    scaled = (np.asarray(hu, dtype=np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def unwindow(pixels: np.ndarray, lo: float = LUNG_WINDOW[0], hi: float = LUNG_WINDOW[1]) -> np.ndarray:
    """Inverse of `window` (up to its rounding and clipping): 0..255 back to HU."""
    return np.asarray(pixels, dtype=np.float32) * ((hi - lo) / 255.0) + lo


@dataclass
class CTSlice:
    """One slice in HU.

    Args:
        hu: (rows, cols) float32 Hounsfield units.
        spacing: pixel spacing in mm, (row, col).
        instance: DICOM InstanceNumber (the slice number of the CT-GAN label files); the frame number 1..n for a
            frame of an enhanced multi-frame image, in patient order.
        z: position in mm along the slice normal, pointing to the head (ImagePositionPatient[2] without gantry
            tilt), or None.
        path: file it came from, or None for generated slices.
        meta: what the header says of it (`read_slices`: kernel, thickness, manufacturer, UIDs, patient_id,
            ctgan_output, lossy: how it lost information to lossy compression or None) and what the pipeline
            adds (e.g. its lung mask).
    """

    hu: np.ndarray
    spacing: tuple[float, float]
    instance: int
    z: float | None = None
    path: str | None = None
    meta: dict = field(default_factory=dict)


def dcmread(path, **kwargs):
    """`pydicom.dcmread`, also for a bare data set without the 128-byte preamble and file meta (as older archives
    write them), provided it holds an image; anything else raises pydicom's `InvalidDicomError`."""
    try:
        return pydicom.dcmread(path, **kwargs)
    except InvalidDicomError as err:
        try:
            ds = pydicom.dcmread(path, force=True, **kwargs)
        except Exception:  # noqa: BLE001 - other bytes fail a forced read in many ways: report the first error
            raise err from None
        if "Rows" not in ds:
            raise
        implicit, little = ds.original_encoding
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else \
            ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        return ds


AXIAL_MIN_COSINE = 0.8  # a slice normal this close to the patient's z axis is axial (gantry tilt up to ~37 deg)


# Where an enhanced (multi-frame) CT image keeps what a classic one holds at the top level: the functional group
# sequence of each attribute, looked up per frame, then shared, then at the top level.
FUNCTIONAL_GROUP = {
    "RescaleSlope": "PixelValueTransformationSequence", "RescaleIntercept": "PixelValueTransformationSequence",
    "PixelSpacing": "PixelMeasuresSequence", "SliceThickness": "PixelMeasuresSequence",
    "ImagePositionPatient": "PlanePositionSequence", "ImageOrientationPatient": "PlaneOrientationSequence",
    "ConvolutionKernel": "CTReconstructionSequence",
}


def frame_value(ds, keyword: str, frame: int = 0, default=None):
    """An attribute of one frame: from its per-frame functional group, the shared one, or the top level."""
    group = FUNCTIONAL_GROUP.get(keyword)
    if group:
        per_frame = ds.get("PerFrameFunctionalGroupsSequence", None)
        candidates = ([per_frame[frame]] if per_frame is not None and frame < len(per_frame) else []) + \
            list(ds.get("SharedFunctionalGroupsSequence", None) or [])[:1]
        for item in candidates:
            inner = item.get(group, None)
            if inner and keyword in inner[0]:
                return inner[0][keyword].value
    return ds[keyword].value if keyword in ds else default


def slice_normal(ds, frame: int = 0) -> np.ndarray | None:
    """The unit normal of a slice's plane from ImageOrientationPatient (row x column direction), or None."""
    orientation = frame_value(ds, "ImageOrientationPatient", frame)
    if orientation is None or len(orientation) != 6:
        return None
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 0 else None


def not_axial_reason(ds) -> str | None:
    """Why a CT image is not an axial slice the detector can read (a localizer, a coronal / sagittal / oblique
    reformat), or None. Headers only: archives are sorted with it before any pixel is decoded."""
    if "LOCALIZER" in [str(v).upper() for v in (ds.get("ImageType", None) or [])]:
        return "a localizer (scout) image, not an axial slice"
    normal = slice_normal(ds)
    if normal is not None and abs(normal[2]) < AXIAL_MIN_COSINE:
        plane = "sagittal" if abs(normal[0]) >= AXIAL_MIN_COSINE else \
            "coronal" if abs(normal[1]) >= AXIAL_MIN_COSINE else "oblique"
        return f"a {plane} image (slice normal {np.round(normal, 2).tolist()}), not an axial slice"
    return None


def read_slices(path: str | Path) -> list[CTSlice]:
    """Every axial slice one DICOM file holds, in HU (RescaleSlope / RescaleIntercept): one for a classic CT
    image, one per frame for an enhanced multi-frame CT image (in patient order, numbered 1..n). Compressed pixel
    data (JPEG, JPEG-LS, JPEG 2000, RLE) decodes through pydicom's plugins; a localizer or a reformat in another
    plane raises `DicomError`, since the detector reads axial slices only."""
    path = Path(path)
    try:
        ds = dcmread(path)
    except (InvalidDicomError, AttributeError, OSError, ValueError, TypeError, KeyError) as err:
        raise DicomError(f"{path}: not a readable DICOM file ({type(err).__name__}: {err})") from err
    reason = not_axial_reason(ds)
    if reason:
        raise DicomError(f"{path}: {reason}; the detector reads axial slices only")
    try:
        pixels = ds.pixel_array
    except Exception as err:  # noqa: BLE001 - pydicom raises many types for a bad or undecodable payload
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None and syntax.is_compressed and "missing dependencies" in str(err):
            raise DicomError(f"{path}: pixel data is compressed ({syntax.name}) and no decoder plugin is "
                             "installed: pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or "
                             "python-gdcm)") from err
        raise DicomError(f"{path}: unreadable pixel data ({type(err).__name__}: {err})") from err
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if pixels.ndim != 2 + (frames > 1) or (frames > 1 and len(pixels) != frames):
        raise DicomError(f"{path}: expected {frames} 2-D frame(s) of one channel, got pixel data of shape "
                         f"{pixels.shape}")
    slices = [_frame_slice(ds, path, f, pixels[f] if frames > 1 else pixels, frames) for f in range(frames)]
    if frames > 1:
        if all(s.z is not None for s in slices):
            slices.sort(key=lambda s: s.z)
        for number, sl in enumerate(slices, start=1):
            sl.instance = number
    return slices


def _frame_slice(ds, path: Path, frame: int, pixels: np.ndarray, frames: int) -> CTSlice:
    def required(keyword):
        value = frame_value(ds, keyword, frame)
        if value is None:
            raise DicomError(f"{path}: DICOM tag {keyword} is missing" + (f" for frame {frame + 1}" if frames > 1
                             else "") + "; cannot read the slice in Hounsfield units")
        return value

    hu = pixels.astype(np.float32) * float(required("RescaleSlope")) + float(required("RescaleIntercept"))
    spacing = required("PixelSpacing")
    position, normal, z = frame_value(ds, "ImagePositionPatient", frame), slice_normal(ds, frame), None
    if position is not None:  # along the slice normal: a tilted gantry's positions move in y as well as z
        z = float(position[2]) if normal is None else float(np.dot(position, normal * np.sign(normal[2])))
    return CTSlice(
        hu=hu,
        spacing=(float(spacing[0]), float(spacing[1])),
        instance=int(ds.get("InstanceNumber", 0) or 0),
        z=z,
        path=str(path),
        meta={
            "thickness": float(frame_value(ds, "SliceThickness", frame, 0) or 0),
            "kernel": str(frame_value(ds, "ConvolutionKernel", frame, "")),
            "manufacturer": str(ds.get("Manufacturer", "")),
            "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
            "series_uid": str(ds.get("SeriesInstanceUID", "")),
            "frame": frame if frames > 1 else None,
            "patient_id": str(ds.get("PatientID", "")),
            "ctgan_output": written_by_ctgan(ds),
            "lossy": lossy_compression(ds),
        },
    )


# Transfer syntaxes whose pixel data may have lost information (JPEG baseline and extended, JPEG-LS near-lossless,
# JPEG 2000 and HTJ2K without "lossless only"); their lossless siblings are not listed.
LOSSY_SYNTAXES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
                  "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203"}


def lossy_compression(ds) -> str | None:
    """How the image lost information to lossy compression, or None. LossyImageCompression (0028,2110) decides
    when present ("01": lossy at some stage of its history, even if stored uncompressed now); without it, the
    transfer syntax does. CT-GAN's traces are fine texture, which lossy compression alters (benchmarks/README.md, *Lossy
    compression*)."""
    flag = str(ds.get("LossyImageCompression", "")).strip()
    if flag == "00":
        return None
    if flag == "01":
        method = "/".join(map(str, _as_list(ds.get("LossyImageCompressionMethod")))) or "method not stated"
        ratio = "/".join(f"{float(r):g}:1" for r in _as_list(ds.get("LossyImageCompressionRatio")))
        return f"lossy compression ({method}{', ' + ratio if ratio else ''})"
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and str(syntax) in LOSSY_SYNTAXES:
        return f"stored as {syntax.name}"
    return None


def _as_list(value) -> list:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]


def read_slice(path: str | Path) -> CTSlice:
    """Read one axial DICOM slice in HU (`read_slices` of a single-frame file); a multi-frame file raises
    `DicomError` naming it (read it with `read_slices`, or scan it as a series)."""
    slices = read_slices(path)
    if len(slices) != 1:
        raise DicomError(f"{path}: an enhanced CT image of {len(slices)} frames, not a single slice; read it with "
                         "read_slices or scan it as a series")
    return slices[0]


# CT-GAN's reference code saves every tampered scan with one fixed header copied from a reference scan (LIDC-IDRI-
# 0002) and stores HU directly (RescaleIntercept 0): these values are the same in every file of the data set.
CTGAN_TEMPLATE = {
    "FrameOfReferenceUID": "1.3.6.1.4.1.14519.5.2.1.6279.6001.317612173882565644891105935364",
    "StorageMediaFileSetUID": "1.3.6.1.4.1.14519.5.2.1.6279.6001.141585249950369106214894210758",
    "AccessionNumber": "2819497684894126",
}


def written_by_ctgan(ds) -> bool:
    """True for a slice saved by CT-GAN's pipeline: its fixed reference header *and* HU stored with intercept 0.
    Neither alone will do: scanners such as Toshiba store intercept 0 too, and the reference scan itself carries
    the header with intercept -1024. Such pixels have already been through CT-GAN's whole-scan resampling."""
    header = sum(str(ds.get(k, "")) == v for k, v in CTGAN_TEMPLATE.items()) >= 2
    return header and float(ds.get("RescaleIntercept", -1)) == 0.0


def patient_ids(roots) -> set[str]:
    """PatientIDs of every .dcm file under the given folders (headers only)."""
    return {str(dcmread(p, stop_before_pixels=True).get("PatientID", ""))
            for root in roots for p in Path(root).rglob("*.dcm")} - {""}


def list_dicom_files(folder: str | Path) -> list[Path]:
    """The DICOM files of a series folder: `*.dcm`, or every regular file when none is so named."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".dcm")
    if not files:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return files


def read_dicom_tree(root) -> list[tuple[Path, list[CTSlice]]]:
    """Every series under `root`, read: (folder, its slices in patient order) for a folder of several DICOM files,
    (file, its slices) for a lone file (alone in its folder, or `root` itself: one slice, or an enhanced CT's
    frames)."""
    root = Path(root)
    if root.is_file():
        return [(root, read_slices(root))]
    out = []
    for folder in sorted({p.parent for p in root.rglob("*.dcm")}):
        files = list_dicom_files(folder)
        if len(files) > 1:
            out.append((folder, read_series(folder)))
        else:
            out += [(f, read_slices(f)) for f in files]
    return out


def read_series(folder, skip_corrupt: bool = False) -> list[CTSlice]:
    """Read every slice of a series, in patient order: a folder of DICOM slices, or a list of their paths
    (e.g. the files of one SeriesInstanceUID in a folder that holds several).

    Slices are ordered by their position along the slice normal, falling back to InstanceNumber. All slices must
    have the same size and belong to one SeriesInstanceUID. With `skip_corrupt`, unreadable files are reported
    with a warning and skipped; otherwise the first one raises `DicomError` naming it.
    """
    if isinstance(folder, (list, tuple)):
        files = sorted(Path(p) for p in folder)
        folder = files[0].parent if files else Path(".")
    else:
        folder = Path(folder)
        if not folder.is_dir():
            raise DicomError(f"{folder}: not a folder of DICOM slices")
        files = list_dicom_files(folder)
    slices, bad = [], []
    for path in files:
        try:
            slices += read_slices(path)
        except DicomError as err:
            if not skip_corrupt:
                raise
            bad.append(str(err))
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable slice(s) in {folder}: " + "; ".join(bad), stacklevel=2)
    if not slices:
        raise DicomError(f"{folder}: no readable DICOM slices")
    series = {s.meta["series_uid"] for s in slices} - {""}
    if len(series) > 1:  # e.g. a lung and a soft-tissue reconstruction exported into one folder
        raise DicomError(f"{folder}: the folder holds {len(series)} series (SeriesInstanceUID); scan one at a time, "
                         "e.g. with scan-archive, which groups files by series")
    shapes = {s.hu.shape for s in slices}
    if len(shapes) > 1:
        raise DicomError(f"{folder}: the series mixes slice sizes {sorted(shapes)}; scan one size at a time")
    if all(s.z is not None for s in slices):
        slices.sort(key=lambda s: (s.z, s.instance))
    else:
        slices.sort(key=lambda s: s.instance)
    numbers = [s.instance for s in slices]
    if len(set(numbers)) < len(numbers) or 0 in numbers:
        how = "ImagePositionPatient" if all(s.z is not None for s in slices) else "file name"
        warnings.warn(f"{folder}: InstanceNumber is missing or repeated; slices are numbered 1..{len(slices)} "
                      f"in {how} order instead", stacklevel=2)
        if how == "file name":
            slices.sort(key=lambda s: s.path)
        for i, s in enumerate(slices, start=1):
            s.instance = i
    return slices
