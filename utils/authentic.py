"""Patches of authentic CT from other scanners (no tampering anywhere): the false-alarm test.

Random lung points of every slice with lungs, plus the centres of annotated tumours where Pascal VOC boxes
(one XML per slice, named by SOPInstanceUID, as TCIA's Lung-PET-CT-Dx ships them) are found.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .dicom import read_slices, window
from .lungmask import cached_lung_mask, sample_lung_points
from .patches import PATCH_SIZE, Patch, attach_reference, crop_hu, reference_candidates, write_dataset

MIN_LUNG_PX = 3000


def tumour_boxes(root: str | Path) -> dict[str, list[tuple[int, int]]]:
    """SOPInstanceUID -> box centres (x, y) from every VOC XML under root."""
    out = {}
    for xml in Path(root).rglob("*.xml"):
        tree = ET.parse(xml)
        centres = []
        for obj in tree.getroot().iter("object"):
            box = obj.find("bndbox")
            if box is None:
                continue
            x0, y0, x1, y1 = (float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
            centres.append((int(round((x0 + x1) / 2)), int(round((y0 + y1) / 2))))
        out[xml.stem] = centres
    return out


def authentic_patches(root: str | Path, per_slice: int = 4, seed: int = 0, exclude_patients=(),
                      size: int = PATCH_SIZE) -> list[Patch]:
    """TB patches (`size` px) at random lung points and TM patches at annotated tumours of all DICOM under root,
    except slices of `exclude_patients` (PatientIDs, e.g. those whose other slices are training backgrounds);
    each with a reference window of its slice (`patches.reference_candidates`)."""
    root = Path(root)
    boxes = tumour_boxes(root)
    rng = np.random.default_rng(seed)
    patches = []
    for path, sl in ((path, sl) for path in sorted(root.rglob("*.dcm")) for sl in read_slices(path)):
        if sl.meta["patient_id"] in exclude_patients:
            continue
        series = path.parent.relative_to(root).as_posix().replace("/", "_") or path.stem
        key = f"AUTH-{series}"
        lungs = cached_lung_mask(sl)
        tumours = boxes.get(sl.meta["sop_instance_uid"], [])
        references = reference_candidates(sl.hu, lungs, sl.spacing[1], key, sl.instance, avoid=tumours, size=size)
        points = [("TM", x, y) for x, y in tumours]
        if lungs.sum() >= MIN_LUNG_PX:
            points += [("TB", x, y) for x, y in sample_lung_points(sl.hu, lungs, sl.spacing[1], rng, per_slice,
                                                                    avoid=tumours, margin=size // 2)]
        for kind, x, y in points:
            patch = Patch(window(crop_hu(sl.hu, x, y, size)), 0, kind, key, "authentic", sl.instance, x, y)
            patches.append(attach_reference(patch, sl.hu, references, size))
    if not patches:
        raise FileNotFoundError(f"{root}: no authentic lung patches (no DICOM with lungs found)")
    return patches


def write_authentic(root: str | Path, out_dir: str | Path, per_slice: int = 4, seed: int = 0,
                    exclude_patients=(), size: int = PATCH_SIZE) -> Path:
    """Authentic patches into out_dir/test/real (+ manifest); out_dir/test/fake stays empty."""
    patches = authentic_patches(root, per_slice, seed, exclude_patients, size)
    return write_dataset(patches, {p.scan: "test" for p in patches}, out_dir)
