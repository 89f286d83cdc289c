"""An interactive explorer of the model's explanations in the notebook (ipywidgets): controls wired to
`explainability.views` and `explainability.overlay`, nothing computed here.

    explorer = Explorer(hybrid, {"synthetic test": manifest_entries(DATA, "test")}, slices={"A0002 1-10": path})
    display(explorer.widget)
"""
from __future__ import annotations

import html
import time
from pathlib import Path

from utils.data import read_image
from utils.operating_point import model_threshold

from .overlay import png_bytes, render_patch, render_slice
from .views import Explainer, PatchEntry, scan_one_slice, uses_discard_ratio

FILE, SLICE = "a file", "a DICOM slice"


class Explorer:
    """Pick a patch (from a list, a file, or a point of a scanned DICOM slice), a map method, discard ratio and
    opacity; the overlay, the fake score, the tampered region and the map's faithfulness update in place.

    Args:
        model: the hybrid CNN -> ViT. Its read-outs are built once; a patch's attention is read once.
        patches: source name -> list of `PatchEntry` (e.g. `views.manifest_entries(DATA, "test")`).
        slices: name -> a DICOM file, or (file, [(x, y, r), ...] known tampered points in slice pixels).
        threshold: score at or above which a patch is called fake (default: the model's stored operating point,
            else 0.5).
        scale: on-screen enlargement of the patch.
    """

    def __init__(self, model, patches: dict | None = None, slices: dict | None = None,
                 threshold: float | None = None, scale: int = 4):
        import ipywidgets as w

        self.explainer = Explainer(model)
        self.patches = {k: list(v) for k, v in (patches or {}).items()}
        self.slices = dict(slices or {})
        self.threshold = model_threshold(model) if threshold is None else threshold
        self.scale = scale
        self.view = self.slice = None
        self.entry: PatchEntry | None = None
        self.last_update_s = 0.0
        self._quiet = False

        self.source = w.Dropdown(options=[*self.patches, FILE, *([SLICE] if self.slices else [])],
                                 description="source")
        self.pick = w.Dropdown(description="patch", layout=w.Layout(width="420px"))
        self.path = w.Text(placeholder="patch file (PNG/JPEG/NPY) or DICOM slice (.dcm)", description="path",
                           layout=w.Layout(width="420px"))
        self.open = w.Button(description="open", tooltip="read the file in `path`")
        self.slice_pick = w.Dropdown(options=list(self.slices), description="slice")
        self.locations = w.ToggleButtons(options=[], description="top")
        self.x = w.IntSlider(0, 0, 511, description="x", continuous_update=False)
        self.y = w.IntSlider(0, 0, 511, description="y", continuous_update=False)
        self.method = w.Dropdown(options=list(self.explainer.methods), description="method")
        self.discard = w.FloatSlider(0.9, min=0.0, max=0.99, step=0.01, description="discard",
                                     continuous_update=False)
        self.opacity = w.FloatSlider(0.45, min=0.0, max=1.0, step=0.05, description="opacity",
                                     continuous_update=False)
        self.patch_image = w.Image(format="png")
        self.slice_image = w.Image(format="png", layout=w.Layout(width="384px"))
        self.info = w.HTML()
        self.slice_box = w.VBox([w.HBox([self.slice_pick, self.locations]), w.HBox([self.x, self.y])])
        self.widget = w.VBox([
            w.HBox([self.source, self.pick]), w.HBox([self.path, self.open]), self.slice_box,
            w.HBox([self.method, self.discard, self.opacity]),
            w.HBox([self.patch_image, self.info, self.slice_image]),
        ])

        self.source.observe(lambda _: self._source_changed(), names="value")
        self.pick.observe(lambda _: self._pick_changed(), names="value")
        self.open.on_click(lambda _: self.open_path(self.path.value))
        self.slice_pick.observe(lambda _: self._slice_changed(), names="value")
        self.locations.observe(lambda _: self._location_changed(), names="value")
        for slider in (self.x, self.y):
            slider.observe(lambda _: self._point_changed(), names="value")
        for control in (self.method, self.discard, self.opacity):
            control.observe(lambda _: self.update(), names="value")
        self._source_changed()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # --- choosing the patch -------------------------------------------------------------------------------
    def _source_changed(self):
        src = self.source.value
        self.slice_box.layout.display = None if src == SLICE else "none"
        self.pick.layout.display = "none" if src in (FILE, SLICE) else None
        if src == SLICE:
            self._slice_changed()
        elif src in self.patches:
            def refill():
                self.pick.options = [(e.title, i) for i, e in enumerate(self.patches[src])]
                self.pick.value = 0 if self.patches[src] else None
            self._quietly(refill)
            self._pick_changed()

    def _pick_changed(self):
        if self._quiet or self.source.value not in self.patches or self.pick.value is None:
            return
        entry = self.patches[self.source.value][self.pick.value]
        self.set_patch(read_image(entry.path), entry.region, entry=entry)

    def open_path(self, path):
        """Show a patch file, or scan a DICOM slice and show its best window."""
        path = Path(str(path).strip())
        if not path.is_file():
            self.info.value = f"<b>{html.escape(str(path))}</b>: no such file"
            return
        if path.suffix.lower() == ".dcm":
            self.slices[path.name] = path
            self.slice_pick.options = list(self.slices)
            if SLICE not in self.source.options:
                self.source.options = [*self.source.options, SLICE]
            self._quietly(lambda: setattr(self.slice_pick, "value", path.name))
            self._quietly(lambda: setattr(self.source, "value", SLICE))
            self._source_changed()
            return
        self._quietly(lambda: setattr(self.source, "value", FILE))
        self._source_changed()
        self.set_patch(read_image(path), None, entry=PatchEntry(path, path.name))

    def _slice_changed(self):
        name = self.slice_pick.value
        if name is None:
            return
        source = self.slices[name]
        path, labels = (source if isinstance(source, tuple) else (source, ()))
        self.slice = scan_one_slice(self.explainer.model, path, labels)
        h, w = self.slice.hu.shape
        locs = self.slice.result.locations

        def reset():
            self.x.max, self.y.max = w - 1, h - 1
            self.locations.options = [(f"{i}: {loc.score:.2f}", i - 1) for i, loc in enumerate(locs, start=1)]
            self.locations.value = 0 if locs else None
        self._quietly(reset)
        self._location_changed()

    def _location_changed(self):
        if self._quiet or self.slice is None or self.locations.value is None:
            return
        loc = self.slice.result.locations[self.locations.value]
        self.move_to(loc.x, loc.y)

    def move_to(self, x: int, y: int):
        """Show the window of the scanned slice centred on (x, y)."""
        def both():
            self.x.value, self.y.value = int(x), int(y)
        self._quietly(both)
        self._point_changed()

    def _point_changed(self):
        if self._quiet or self.slice is None:
            return
        image, region = self.slice.patch_at(self.x.value, self.y.value)
        name = f"{Path(self.slice.name).name} at ({self.x.value}, {self.y.value})"
        self.set_patch(image, region, entry=PatchEntry(Path(self.slice.name), name))

    def set_patch(self, image, region=None, entry: PatchEntry | None = None):
        """Show this image ((H, W) or (H, W, C) in [0, 1]); region (cx, cy, r) in its pixels."""
        self.view = self.explainer.patch(image, region)
        self.entry = entry
        self.update()

    def _quietly(self, change):
        self._quiet = True
        try:
            change()
        finally:
            self._quiet = False

    # --- drawing ----------------------------------------------------------------------------------------
    def update(self):
        """Redraw the overlay and the figures for the current patch and settings."""
        if self.view is None:
            return
        start = time.perf_counter()
        method = self.method.value
        self.discard.disabled = not uses_discard_ratio(method)
        mask = self.view.mask(method, self.discard.value)
        self.patch_image.value = png_bytes(render_patch(self.view.image, mask, self.opacity.value,
                                                        self.view.region, self.scale))
        if self.source.value == SLICE and self.slice is not None:
            rgb = render_slice(self.slice.base, self.slice.result.heatmap, self.opacity.value,
                               self.slice.result.locations, (self.x.value, self.y.value), self.slice.labels,
                               self.slice.size)
            self.slice_image.value = png_bytes(rgb)
        self.info.value = self._describe(self.view.figures(mask))
        self.last_update_s = time.perf_counter() - start

    def _describe(self, figures) -> str:
        v = self.view
        verdict = "fake" if v.score >= self.threshold else "real"
        rows = [("patch", html.escape(self.entry.title if self.entry else "")),
                ("fake score", f"{v.score:.3f} → <b>{verdict}</b> at threshold {self.threshold:.3f}")]
        if self.entry is not None and self.entry.label is not None:
            rows.append(("label", "fake" if self.entry.label == 1 else "real"))
        if v.region is None:
            rows.append(("tampered region", "not known for this patch"))
        else:
            cx, cy, r = v.region
            rows.append(("tampered region", f"red circle, centre ({cx:.0f}, {cy:.0f}), radius {r:.0f} px"))
            rows.append(("pointing game", "hit" if figures.pointing else "miss"))
            rows.append(("energy ratio", f"{figures.energy_ratio:.2f} (1 = no better than a flat map)"))
        body = "".join(f"<tr><td>{k}</td><td>{val}</td></tr>" for k, val in rows)
        return f"<table style='font-size:12px'>{body}</table>"
