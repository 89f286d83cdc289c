"""Scans and label rows in the CT-GAN data set's convention, shared by every data source."""
from __future__ import annotations

from dataclasses import dataclass, field

from .dicom import CTSlice, read_slice

TAMPERED = ("FB", "FM")  # FB: real cancer removed, FM: fake cancer injected
AUTHENTIC = ("TB", "TM")  # TB: untouched location without cancer, TM: untouched real cancer
CODES = TAMPERED + AUTHENTIC


@dataclass(frozen=True)
class LabelRow:
    """One row of labels_exp*.csv: `type,uuid,slice,x,y` (x column, y row, slice = InstanceNumber)."""

    type: str
    uuid: str
    slice: int
    x: int
    y: int
    experiment: str = "EXP1"

    @property
    def tampered(self) -> bool:
        return self.type in TAMPERED


@dataclass
class Scan:
    """One CT scan: its slices (in memory, or file paths read on first use) and its label rows.

    Args:
        experiment: 'EXP1' / 'EXP2' for the data set's trials, 'SYN' or 'BG' for generated ones. The same
            uuid can name different scans in different experiments, so scans are keyed by both.
        uuid: the scan's id.
        source: 'synthetic', 'background' (emulated tampering on real anatomy) or 'ctgan' (the data set).
        kind: scan-level code (FB, FM, TB or TM).
        slices: InstanceNumber -> CTSlice or path.
        labels: label rows of this scan.
        radii: (slice, x, y) -> radius in pixels of each tampered region, where known.
        resampled: whether the whole scan went through CT-GAN's 1 mm round trip (every slice of a tampered scan
            does; authentic scans may too, as hospitals resample and reformat); None when unknown.
        originals: InstanceNumber -> the slice as the attack found it, for tampered slices of an emulated scan
            whose corpus cuts pre-attack twins (`CorpusConfig.twins`); empty otherwise.
    """

    experiment: str
    uuid: str
    source: str
    kind: str
    slices: dict = field(default_factory=dict)
    labels: list = field(default_factory=list)
    radii: dict = field(default_factory=dict)
    resampled: bool | None = None
    originals: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.experiment}-{self.uuid}"

    def slice(self, instance: int) -> CTSlice:
        item = self.slices[instance]
        if not isinstance(item, CTSlice):
            item = read_slice(item)
            self.slices[instance] = item
        return item

    def release(self) -> None:
        """Forget slices read from disk (keeps memory flat while a large data set is processed)."""
        for k, item in list(self.slices.items()):
            if isinstance(item, CTSlice) and item.path:
                self.slices[k] = item.path

