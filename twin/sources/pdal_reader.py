"""Optional PDAL reader: a PDAL pipeline (JSON) as a point-cloud source, used when PDAL's Python bindings import.

Two ways in: a ``*.pipeline.json`` file ingested with ``--kind pointcloud`` (its stages name their own inputs,
relative paths resolved against the pipeline's folder), or any file with ``options["pdal_pipeline"]`` (JSON text,
a path to a JSON file, or the parsed list/dict; the file being ingested becomes the input of a first reader stage
that has no ``filename``, or is put in front of the stages). Points stream through ``Pipeline.iterator`` (python-pdal
3.x) in chunks when every stage is streamable; other pipelines are executed whole (memory ∝ points).

Without PDAL (the default: libpdal is neither a Debian 12 package nor a PyPI wheel) every entry point raises a
``SourceError`` saying how to install it. The PDAL-present path follows python-pdal's documented API
(``Pipeline(json)``, ``.streamable``, ``.iterator(chunk_size=…)``, ``.srswkt2``, ``.execute()``, ``.arrays``) but
is untested on the project machines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyproj

from twin.geo.crs import normalise
from twin.sources.base import ReadContext, SourceError, SourceRead
from twin.sources.pointcloud import (
    CHUNK,
    Frame,
    Stats,
    check_extent,
    check_store_area,
    chunk_option,
    is_pipeline,
    resolve_crs,
    units_of,
)

INSTALL_HINT = ("PDAL is not installed (its Python bindings do not import); install the optional extra with "
                "`pip install twin[pdal]`, which also needs the PDAL C++ library libpdal >= 2.7 (e.g. "
                "`conda install -c conda-forge pdal python-pdal`; there is no Debian 12 package or PyPI wheel)")
# PDAL dimension -> iter_points key
_DIMS = {"Classification": "classification", "ReturnNumber": "return_number", "NumberOfReturns": "number_of_returns",
         "Red": "red", "Green": "green", "Blue": "blue"}


def available() -> bool:
    """True when PDAL's Python bindings (and libpdal behind them) import."""
    try:
        import pdal  # noqa: F401
    except (ImportError, OSError):  # OSError: the bindings are there but libpdal is not
        return False
    return True


def _pdal(path: Path) -> Any:
    try:
        import pdal
    except (ImportError, OSError) as exc:
        raise SourceError(path, f"{INSTALL_HINT} ({exc})") from exc
    return pdal


def _load_json(text: str, path: Path, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(path, f"{what} is not valid JSON ({exc})") from exc


def pipeline_stages(path: Path, spec: str | list | dict | None = None) -> list[Any]:
    """The pipeline's stages as a JSON-ready list: from ``path`` itself (a pipeline file) or from ``spec`` applied
    to ``path`` (the data file); writers are refused (ingest never writes files)."""
    path = Path(path)
    base = path.parent
    if spec is None:
        if not is_pipeline(path):
            raise SourceError(path, "no PDAL pipeline: pass a *.pipeline.json file or options['pdal_pipeline']")
        doc = _load_json(path.read_text(encoding="utf-8"), path, "the pipeline file")
        data_file = None
    else:
        data_file = path
        if isinstance(spec, str):
            text = spec.strip()
            if not text.startswith(("[", "{")):
                spec_path = Path(text)
                base = spec_path.parent
                try:
                    text = spec_path.read_text(encoding="utf-8")
                except OSError as exc:
                    raise SourceError(path, f"cannot read the PDAL pipeline {text!r} ({exc})") from exc
            doc = _load_json(text, path, "the PDAL pipeline")
        else:
            doc = spec
    stages = doc.get("pipeline") if isinstance(doc, dict) else doc
    if not isinstance(stages, list) or not stages:
        raise SourceError(path, "a PDAL pipeline must be a non-empty JSON array of stages (or {\"pipeline\": [...]})")
    out: list[Any] = []
    for i, st in enumerate(stages):
        st = {"filename": st} if isinstance(st, str) else dict(st) if isinstance(st, dict) else None
        if st is None:
            raise SourceError(path, f"PDAL pipeline stage {i} is neither a file name nor an object")
        kind = str(st.get("type", ""))
        if kind.startswith("writers.") or (not kind and i == len(stages) - 1 and len(stages) > 1):
            raise SourceError(path, f"PDAL pipeline stage {i} is a writer; an ingest pipeline must only read")
        if "filename" in st and not Path(st["filename"]).is_absolute() and "://" not in str(st["filename"]):
            st["filename"] = str((base / st["filename"]).resolve())
        out.append(st)
    if data_file is not None:
        first = out[0]
        is_reader = str(first.get("type", "")).startswith("readers.") or "filename" in first
        if is_reader and "filename" not in first:
            first["filename"] = str(data_file.resolve())
        elif not is_reader:
            out.insert(0, {"filename": str(data_file.resolve())})
    return out


def _chunks(path: Path, stages: list[Any], chunk: int) -> Iterator[tuple[np.ndarray, str]]:
    """(structured array, WKT2 of the output SRS or '') per chunk."""
    pdal = _pdal(path)
    try:
        pipeline = pdal.Pipeline(json.dumps(stages))
        if pipeline.streamable:
            it = pipeline.iterator(chunk_size=chunk)
            for arr in it:
                yield arr, it.srswkt2 or ""
        else:
            pipeline.execute()
            srs = pipeline.srswkt2 or ""
            for arr in pipeline.arrays:
                for i in range(0, len(arr), chunk):
                    yield arr[i:i + chunk], srs
    except SourceError:
        raise
    except Exception as exc:  # PDAL raises RuntimeError (pdal_error) and ValueError for bad pipelines/inputs
        raise SourceError(path, f"the PDAL pipeline failed ({exc})") from exc


def _crs(path: Path, wkt: str, declared: str | None, bbox: list[float] | None) -> pyproj.CRS:
    file_crs = pyproj.CRS.from_user_input(wkt) if wkt else None
    return resolve_crs(path, file_crs, declared, bbox, where="the PDAL pipeline's output")


def _arrays(arr: np.ndarray) -> dict[str, np.ndarray]:
    names = arr.dtype.names or ()
    if not all(d in names for d in ("X", "Y", "Z")):
        raise ValueError(f"the pipeline output has no X/Y/Z dimensions (it has {', '.join(names)})")
    out = {"x": np.asarray(arr["X"], dtype=np.float64), "y": np.asarray(arr["Y"], dtype=np.float64),
           "z": np.asarray(arr["Z"], dtype=np.float64)}
    n = len(arr)
    for dim, key in _DIMS.items():
        if dim in names:
            out[key] = np.asarray(arr[dim], dtype=np.uint16 if key in ("red", "green", "blue") else np.uint8)
        elif key in ("classification", "return_number", "number_of_returns"):
            out[key] = np.zeros(n, dtype=np.uint8) if key == "classification" else np.ones(n, dtype=np.uint8)
    return out


def crs_of(path: Path, crs: str | None = None, spec: str | list | dict | None = None) -> pyproj.CRS:
    """The CRS of a pipeline's output (runs it up to its first chunk)."""
    _pdal(path)
    stages = pipeline_stages(path, spec)
    for arr, wkt in _chunks(path, stages, 1):
        a = _arrays(arr)
        return _crs(path, wkt, crs, [float(a["x"][0]), float(a["y"][0])] * 2 if len(arr) else None)
    return _crs(path, "", crs, None)


def iter_points(path: Path, chunk: int = CHUNK, *, crs: str | None = None, to_crs: str | pyproj.CRS | None = None,
                spec: str | list | dict | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The pipeline's points as :func:`twin.sources.pointcloud.iter_points` chunks (x, y, z in metres, …)."""
    path = Path(path)
    _pdal(path)
    frame: Frame | None = None
    for arr, wkt in _chunks(path, pipeline_stages(path, spec), chunk):
        try:
            a = _arrays(arr)
        except ValueError as exc:
            raise SourceError(path, str(exc)) from exc
        if frame is None:
            box = [float(a["x"].min()), float(a["y"].min()), float(a["x"].max()), float(a["y"].max())]
            frame = Frame.of(path, _crs(path, wkt, crs, box), to_crs, None, box)
        a["x"], a["y"], a["z"] = frame.apply(a["x"], a["y"], a["z"])
        yield a


def read(ctx: ReadContext) -> SourceRead:
    """Catalog facts of a PDAL pipeline's output (one full streaming run), like the LAS reader's."""
    path = Path(ctx.path)
    _pdal(path)
    stages = pipeline_stages(path, ctx.options.get("pdal_pipeline"))
    t0 = time.perf_counter()
    stats, wkt, rgb = Stats(), "", False
    for arr, srs in _chunks(path, stages, chunk_option(ctx)):
        try:
            a = _arrays(arr)
        except ValueError as exc:
            raise SourceError(path, str(exc)) from exc
        wkt = wkt or srs
        rgb = rgb or "red" in a
        stats.update(a["x"], a["y"], a["z"], a["classification"], a["return_number"], a["number_of_returns"],
                     [a[b] for b in ("red", "green", "blue") if b in a])
    if stats.n == 0:
        raise SourceError(path, "the PDAL pipeline produced no points")
    lo, hi = stats.bounds()
    bbox = [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])]
    c = _crs(path, wkt, ctx.crs, bbox)
    check_extent(path, c, bbox, "point coordinates")
    check_store_area(ctx, normalise(c), bbox)
    units = units_of(c)
    info: dict[str, Any] = {
        "crs": normalise(c), "bbox": bbox, "z_range": [float(lo[2]), float(hi[2])], "point_count": stats.n,
        "units": units, "bbox_m": [v * units["xy_m"] for v in bbox] if units["xy_m"] is not None else None,
        "z_range_m": [float(lo[2]) * units["z_m"], float(hi[2]) * units["z_m"]], "rgb": bool(rgb and stats.rgb_max),
        "reader": "pdal", "pdal_pipeline": stages, "scan_seconds": round(time.perf_counter() - t0, 3),
        **stats.facts(),
    }
    return SourceRead(info=info)
