"""A self-contained HTML page (no server, no network) with the explorer's views, for people who do not run
Jupyter: pick a patch (or a top location of a scanned slice), the map method, the discard ratio and the
opacity in the browser. Every map is computed here (`explainability.views`) and embedded as a small PNG; the
page's script only swaps images and text.
"""
from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .overlay import heat_layer, png_bytes, render_slice
from .views import Explainer, uses_discard_ratio

RATIOS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99)


@dataclass
class PageItem:
    """One patch on the page: a title, the image ((H, W) or (H, W, C) in [0, 1]), the tampered region
    (cx, cy, r) in its pixels or None, the class when known (1 fake, 0 real), and its centre on the slice."""

    title: str
    image: np.ndarray
    region: tuple | None = None
    label: int | None = None
    at: tuple | None = None


def _uri(rgb) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


def page_data(explainer: Explainer, items, ratios=RATIOS, threshold: float = 0.5) -> dict:
    """Everything the page shows, as JSON-ready data: per item the patch, its score and, per method and discard
    ratio, the map (a coloured PNG) and its faithfulness figures."""
    out = []
    for item in items:
        view = explainer.patch(item.image, item.region)
        gray = np.rint(np.asarray(view.image)[..., 0] * 255).astype(np.uint8)
        maps = {}
        for method in explainer.methods:
            for ratio in (ratios if uses_discard_ratio(method) else (None,)):
                mask = view.mask(method, 0.0 if ratio is None else ratio)
                fig = view.figures(mask)
                maps[f"{method}|{'' if ratio is None else f'{ratio:g}'}"] = {
                    "heat": _uri(heat_layer(mask)), "pointing": fig.pointing,
                    "energy": None if fig.energy_ratio is None else round(fig.energy_ratio, 3)}
        out.append({"title": item.title, "score": round(view.score, 4), "label": item.label,
                    "region": None if view.region is None else [round(v, 2) for v in view.region],
                    "size": list(view.image.shape[:2]), "at": None if item.at is None else list(item.at),
                    "patch": _uri(gray), "maps": maps})
    return {"items": out, "methods": list(explainer.methods), "ratios": [f"{r:g}" for r in ratios],
            "rollouts": [m for m in explainer.methods if uses_discard_ratio(m)], "threshold": threshold}


def slice_items(slice_view) -> list[PageItem]:
    """The patches at a scanned slice's top locations."""
    items = []
    for rank, loc in enumerate(slice_view.result.locations, start=1):
        image, region = slice_view.patch_at(loc.x, loc.y)
        items.append(PageItem(f"top {rank}: ({loc.x}, {loc.y})", image, region, at=(loc.x, loc.y)))
    return items


def write_page(explainer: Explainer, items, out, title: str = "Explanations", slice_view=None,
               threshold: float = 0.5, ratios=RATIOS) -> Path:
    """Write the page. With `slice_view` (a `views.SliceView`) the slice and its heatmap are shown, and its top
    locations are the items unless `items` are given."""
    items = list(items) if items else (slice_items(slice_view) if slice_view is not None else [])
    if not items:
        raise ValueError("nothing to explain: give patches or a scanned slice with lungs")
    data = page_data(explainer, items, ratios, threshold)
    if slice_view is not None:
        rgb = render_slice(slice_view.base, slice_view.result.heatmap, 0.45, slice_view.result.locations,
                           labels=slice_view.labels)
        data["slice"] = {"image": _uri(rgb), "size": list(rgb.shape[:2]), "box": slice_view.size,
                         "name": Path(slice_view.name).name}
    payload = json.dumps(data).replace("</", "<\\/")
    text = TEMPLATE.replace("{{title}}", html.escape(title)).replace("{{data}}", payload).replace("{{script}}", SCRIPT)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{title}}</title>
<style>
body { font: 13px sans-serif; margin: 16px; color: #222; }
#controls label { margin-right: 14px; }
#items button { margin: 2px; }
#items button.on { background: #335; color: #fff; }
.view { position: relative; width: 256px; height: 256px; display: inline-block; vertical-align: top; }
.view img, .view svg { position: absolute; left: 0; top: 0; width: 256px; height: 256px; }
#patch { image-rendering: pixelated; }
#slicebox { position: relative; display: inline-block; vertical-align: top; margin-left: 16px; }
#slicebox img { width: 384px; }
#window { position: absolute; border: 1px solid #fff; pointer-events: none; }
table { border-collapse: collapse; display: inline-block; vertical-align: top; margin-left: 16px; }
td { padding: 2px 8px; border-bottom: 1px solid #ddd; }
</style></head>
<body data-rendered="0">
<h2>{{title}}</h2>
<div id="items"></div>
<div id="controls">
<label>method <select id="method"></select></label>
<label>discard ratio <input id="discard" type="range" min="0" step="1"> <span id="discardv"></span></label>
<label>opacity <input id="opacity" type="range" min="0" max="100" value="45"> <span id="opacityv"></span></label>
</div>
<p></p>
<div class="view"><img id="patch" alt="patch"><img id="heat" alt="map"><svg id="marks" viewBox="0 0 64 64"></svg></div>
<table id="info"></table>
<div id="slicebox"><img id="slice" alt="slice"><div id="window"></div></div>
<script id="data" type="application/json">{{data}}</script>
<script>{{script}}</script>
</body></html>
"""

SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const $ = (id) => document.getElementById(id);
  let current = 0;
  const method = $("method"), discard = $("discard"), opacity = $("opacity");
  data.methods.forEach((m) => { const o = document.createElement("option"); o.textContent = m; method.appendChild(o); });
  discard.max = data.ratios.length - 1;
  discard.value = Math.max(0, data.ratios.indexOf("0.9"));
  data.items.forEach((item, i) => {
    const b = document.createElement("button");
    b.textContent = item.title;
    b.onclick = () => { current = i; render(); };
    $("items").appendChild(b);
  });
  if (data.slice) { $("slice").src = data.slice.image; } else { $("slicebox").style.display = "none"; }
  function esc(s) { return String(s).replace(/[&<>]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;"}[c])); }
  function render() {
    const item = data.items[current];
    const rollout = data.rollouts.includes(method.value);
    discard.disabled = !rollout;
    const ratio = data.ratios[discard.value];
    const map = item.maps[method.value + "|" + (rollout ? ratio : "")];
    $("patch").src = item.patch;
    $("heat").src = map.heat;
    $("heat").style.opacity = opacity.value / 100;
    $("discardv").textContent = rollout ? ratio : "n/a";
    $("opacityv").textContent = (opacity.value / 100).toFixed(2);
    const [h, w] = item.size;
    const marks = $("marks");
    marks.setAttribute("viewBox", "0 0 " + w + " " + h);
    marks.innerHTML = item.region ? '<circle cx="' + (item.region[0] + 0.5) + '" cy="' + (item.region[1] + 0.5) +
      '" r="' + item.region[2] + '" fill="none" stroke="red" stroke-width="0.4"/>' : "";
    const rows = [["patch", esc(item.title)],
                  ["fake score", item.score.toFixed(3) + " → <b>" + (item.score >= data.threshold ? "fake" : "real") +
                   "</b> at threshold " + data.threshold.toFixed(3)]];
    if (item.label !== null) rows.push(["label", item.label === 1 ? "fake" : "real"]);
    if (item.region) {
      rows.push(["tampered region", "red circle, radius " + item.region[2].toFixed(0) + " px"]);
      rows.push(["pointing game", map.pointing ? "hit" : "miss"]);
      rows.push(["energy ratio", map.energy.toFixed(2) + " (1 = no better than a flat map)"]);
    } else {
      rows.push(["tampered region", "not known for this patch"]);
    }
    $("info").innerHTML = rows.map((r) => "<tr><td>" + r[0] + "</td><td>" + r[1] + "</td></tr>").join("");
    document.querySelectorAll("#items button").forEach((b, i) => b.classList.toggle("on", i === current));
    const win = $("window");
    if (data.slice && item.at) {
      const k = 384 / data.slice.size[1], half = data.slice.box / 2;
      win.style.display = "block";
      win.style.left = ((item.at[0] - half) * k) + "px"; win.style.top = ((item.at[1] - half) * k) + "px";
      win.style.width = (data.slice.box * k) + "px"; win.style.height = (data.slice.box * k) + "px";
    } else { win.style.display = "none"; }
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered) + 1);
    document.body.dataset.view = item.title + "|" + method.value + "|" + (rollout ? ratio : "");
  }
  [method, discard, opacity].forEach((c) => c.addEventListener("input", render));
  render();
})();
"""
