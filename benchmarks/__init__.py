"""Benchmarks: scripts that print figures (`python -m benchmarks.NAME --help`)."""
from __future__ import annotations

import json
from pathlib import Path


def write_report(out, stem: str, md: str, report: dict | None = None) -> None:
    """Write `stem`.md (and `stem`.json of `report`) under the folder `out`, made if missing, and print the table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(md + "\n")
    if report is not None:
        (out / f"{stem}.json").write_text(json.dumps(report, indent=1))
    print(md)
