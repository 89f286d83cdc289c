"""Whole archives: every CT series under a folder tree (e.g. a PACS export), scanned in parallel on Dask.

    python -m utils.cli scan-archive ROOT --out report.jsonl [--workers 2 | --scheduler tcp://HOST:8786]

Dask rather than Ray: a scan is a bag of independent tasks over files, which is what `dask.distributed` does
with the least machinery. It starts a local cluster with no set-up, the same `Client` code talks to a real
cluster, it installs from PyPI without a runtime daemon, and a task whose worker dies is re-run elsewhere.

One JSON line per series is appended to the report the moment its scan finishes (a crash loses no finished
result); series already in the report are skipped on the next run, so an interrupted run resumes where it
stopped. Files that are not DICOM, not CT or unreadable are listed with their reason ("kind": "skipped").
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SeriesJob:
    """One CT series to scan: its SeriesInstanceUID, its files and where it was found."""

    uid: str
    files: list = field(default_factory=list)
    folder: str = ""
    description: str = ""


def find_series(root) -> tuple[list[SeriesJob], list[dict]]:
    """Every CT series under root (files grouped by SeriesInstanceUID, any file name), and the files skipped,
    each with its reason (not DICOM, another modality, no image, a localizer or a non-axial reformat)."""
    from pydicom.errors import InvalidDicomError

    from .dicom import dcmread, not_axial_reason

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    series: dict[str, SeriesJob] = {}
    skipped = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            with warnings.catch_warnings():  # archives hold non-conformant headers (e.g. UUIDs as UIDs): read anyway
                warnings.simplefilter("ignore")
                ds = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError) as err:
            skipped.append({"path": str(path), "reason": f"not a readable DICOM file ({type(err).__name__})"})
            continue
        modality = str(ds.get("Modality", "") or "")
        if modality != "CT":
            skipped.append({"path": str(path), "reason": f"modality {modality or 'missing'}, not CT"})
            continue
        if "Rows" not in ds:
            skipped.append({"path": str(path), "reason": "no image (no Rows)"})
            continue
        if reason := not_axial_reason(ds):
            skipped.append({"path": str(path), "reason": reason})
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or f"folder:{path.parent}")
        job = series.setdefault(uid, SeriesJob(uid, [], str(path.parent), str(ds.get("SeriesDescription", ""))))
        job.files.append(str(path))
    return sorted(series.values(), key=lambda j: (j.folder, j.uid)), skipped


_MODELS: dict = {}


def scan_job(job: SeriesJob, model_path: str, options: dict) -> dict:
    """Scan one series (in a worker): the report line. The model is loaded once per worker process."""
    from .dicom import DicomError
    from .operating_point import load_model
    from .scan import scan_series

    start = time.perf_counter()
    line = {"kind": "series", "series_uid": job.uid, "folder": job.folder, "description": job.description,
            "files": len(job.files)}
    try:
        if model_path not in _MODELS:
            _MODELS[model_path] = load_model(model_path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = scan_series(_MODELS[model_path], job.files, progress=False, **options)
        line.update(result.as_json(), slices=len(result.slices), skipped_slices=result.skipped,
                    warnings=[str(w.message) for w in caught], error=None)
    except (DicomError, ValueError, OSError) as err:
        line.update(verdict=None, score=None, locations=[], error=str(err))
    line["seconds"] = round(time.perf_counter() - start, 3)
    return line


def read_report(path) -> tuple[set, set]:
    """Series UIDs and skipped paths already in a report (a truncated last line, from a crash, is ignored)."""
    done, skipped = set(), set()
    path = Path(path)
    if path.is_file():
        for raw in path.read_text().splitlines():
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if line.get("kind") == "series":
                done.add(line["series_uid"])
            elif line.get("kind") == "skipped":
                skipped.add(line["path"])
    return done, skipped


def _repair_tail(path: Path) -> None:
    """Cut a partial last line left by a crash, so that appended lines start on a line of their own."""
    if path.is_file() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])


def scan_archive(root, model_path, out, scheduler: str | None = None, workers: int = 2, progress: bool = True,
                 **options) -> dict:
    """Scan every CT series under root that the report `out` does not hold yet; append a line per series.

    Args:
        root: folder tree to search (any depth, any file names).
        model_path: a saved patch model (`.keras`); each worker loads it once.
        out: the JSON-lines report (created, or resumed).
        scheduler: address of a running Dask scheduler; None starts a local cluster of `workers` processes
            (one thread each).
        options: passed to `scan.scan_series` (stride, threshold, top_k, relative, operating_point).

    Returns a summary: series found, already done, scanned now, errors, files skipped, seconds.
    """
    from dask.distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    start = time.perf_counter()
    out = Path(out)
    jobs, skipped = find_series(root)
    _repair_tail(out)
    done, listed = read_report(out)
    pending = [j for j in jobs if j.uid not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    errors = 0
    with open(out, "a") as report:
        for item in skipped:
            if item["path"] not in listed:
                report.write(json.dumps({"kind": "skipped", **item}) + "\n")
        report.flush()
        if pending:
            cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                         dashboard_address=None)
            with Client(scheduler or cluster) as client:
                futures = [client.submit(scan_job, job, str(model_path), options, pure=False, retries=1)
                           for job in pending]
                for future in tqdm(as_completed(futures), total=len(futures), desc="series", unit="series",
                                   disable=not progress):
                    line = future.result()
                    errors += line["error"] is not None
                    report.write(json.dumps(line) + "\n")
                    report.flush()
            if cluster is not None:
                cluster.close()
    return {"series": len(jobs), "already_done": len(jobs) - len(pending), "scanned": len(pending),
            "errors": errors, "skipped_files": len(skipped), "seconds": round(time.perf_counter() - start, 1)}

