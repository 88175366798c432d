"""Point-cloud input of the tiler: LAS/LAZ headers, chunked reads placed in a local east-north-up frame, spills.

Headers and CRSs go through :mod:`twin.sources.pointcloud` (same checks and messages as ingest). Each point becomes a
record: a 63-bit Morton code of its position in the root cube (21 bits per axis), its ENU coordinates (float64,
metres, exact from pyproj's transform to EPSG:4978), sRGB colour, classification and intensity. Records are routed
to partitions (the octree's cells at ``lp`` levels down) and buffered; when the buffers pass a byte budget they are
appended to one file per partition, so memory stays bounded by a chunk plus the budget whatever the input size.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import laspy
import numpy as np
import pyproj

from twin.sources import SourceError
from twin.sources.pointcloud import (
    _check_scales,
    _header_crs,
    _header_facts,
    _horizontal,
    _label,
    check_extent,
    resolve_crs,
    units_of,
)
from twin.tiles.ecef import enu_axes
from twin.tiles.pointcloud_colour import ImageSampler, palette

BITS = 21  # Morton bits per axis (63 in all)
REC = np.dtype([("m", "<u8"), ("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("rgb", "u1", (3,)), ("cls", "u1"),
                ("inten", "<u2")])
_DS = laspy.DecompressionSelection
_SELECTION = _DS.XY_RETURNS_CHANNEL | _DS.Z | _DS.CLASSIFICATION | _DS.RGB | _DS.INTENSITY
RGB_PEEK = 100_000  # points read up front to tell 8-bit from 16-bit RGB (and all-zero RGB)


@dataclass
class Source:
    """One input file as the tiler sees it (picklable: it travels to worker processes)."""

    path: str
    crs_wkt: str
    count: int
    bbox: list[float]  # native CRS units
    z_range_m: tuple[float, float]
    z_m: float
    rgb_shift: int | None  # None: no usable RGB in the file; else the right shift to bytes (0 or 8)


def open_las(path: Path, parallel: bool = True) -> laspy.LasReader:
    """Open a LAS/LAZ file for reading (the layers the tiler needs; LAZ decoded on every core unless ``parallel``
    is False, for worker processes that already share the cores); errors name the file."""
    if not path.exists():
        raise SourceError(path, "no such file")
    if path.stat().st_size == 0:
        raise SourceError(path, "the file is empty")
    try:
        backend = None if parallel else laspy.LazBackend.Lazrs
        return laspy.open(path, decompression_selection=_SELECTION, laz_backend=backend)
    except (laspy.errors.LaspyException, OSError, ValueError, EOFError) as exc:
        raise SourceError(path, f"not a readable LAS/LAZ file ({exc})") from exc


@lru_cache(maxsize=32)
def ecef_transformer(crs_wkt: str) -> pyproj.Transformer:
    """The file CRS (horizontal, with z as ellipsoidal height in metres) → EPSG:4978."""
    return pyproj.Transformer.from_crs(_horizontal(pyproj.CRS.from_wkt(crs_wkt)).to_3d(), "EPSG:4978",
                                       always_xy=True)


def inspect(path: Path, declared_crs: str | None) -> Source:
    """Header facts, the checked CRS and how to read RGB; refuses files that cannot be tiled, naming them."""
    path = Path(path)
    with open_las(path) as f:
        h = f.header
        _check_scales(path, h)
        facts = _header_facts(path, h)
        crs = resolve_crs(path, _header_crs(h, path), declared_crs, facts["bbox"])
        if facts["point_count"] == 0:
            raise SourceError(path, "the file holds no points")
        horiz = _horizontal(crs)
        if horiz.geodetic_crs is None or not (horiz.is_projected or horiz.is_geographic):
            raise SourceError(path, f"the CRS {_label(crs)} is not tied to the Earth (an engineering or local CRS); "
                                    "it cannot be placed on the globe")
        check_extent(path, crs, facts["bbox"], "header bounds")
        z_m = float(units_of(crs, h)["z_m"])
        shift = None
        if facts["rgb"]:
            try:
                peek = f.read_points(min(RGB_PEEK, facts["point_count"]))
            except Exception as exc:  # lazrs / laspy raise several types for damaged point data
                raise SourceError(path, f"corrupt or truncated point data ({exc})") from exc
            top = max(int(np.max(peek[b])) if len(peek) else 0 for b in ("red", "green", "blue"))
            shift = None if top == 0 else (8 if top > 255 else 0)
    z0, z1 = facts["z_range"]
    if not (math.isfinite(z0) and math.isfinite(z1)) or max(abs(z0), abs(z1)) * z_m > 1e5:
        raise SourceError(path, f"the header's z range {facts['z_range']} is absurd (beyond 100 km)")
    return Source(str(path), crs.to_wkt(), facts["point_count"], facts["bbox"], (z0 * z_m, z1 * z_m), z_m, shift)


@dataclass
class Frame:
    """The tileset's local frame: ENU axes at ``origin`` (ECEF) and the root cube of the octree in that frame."""

    origin: np.ndarray  # (3,) ECEF
    rot: np.ndarray  # (3, 3) columns: east, north, up in ECEF
    cube_min: np.ndarray  # (3,) ENU
    size: float  # cube side, metres
    z_range: tuple[float, float]  # ellipsoidal heights of the data (metres), for the height palette

    def to_enu(self, ecef: np.ndarray) -> np.ndarray:
        """ECEF (N, 3) → ENU (N, 3)."""
        return (ecef - self.origin) @ self.rot

    def matrix(self) -> list[float]:
        """The root tile ``transform`` (column-major 4×4, ENU → ECEF)."""
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = self.rot, self.origin
        return [float(v) for v in m.T.ravel()]


def _sample_box(src: Source, n: int = 9) -> np.ndarray:
    """ECEF of an n×n×2 grid over a file's header box (for the frame and cube)."""
    x0, y0, x1, y1 = src.bbox
    gx, gy, gz = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n), np.array(src.z_range_m))
    X, Y, Z = ecef_transformer(src.crs_wkt).transform(gx.ravel(), gy.ravel(), gz.ravel())
    out = np.column_stack([X, Y, Z])
    if not np.all(np.isfinite(out)):
        raise SourceError(src.path, "the header bounds cannot be placed on the globe (the transformation to ECEF "
                                    "gives no finite result; is the CRS right?)")
    return out


def make_frame(sources: list[Source]) -> Frame:
    """ENU frame at the centre of all inputs and a root cube (padded) around their header boxes."""
    samples = np.concatenate([_sample_box(s) for s in sources])
    centre = (samples.min(axis=0) + samples.max(axis=0)) / 2
    to_geo = pyproj.Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)
    lon, lat, _ = to_geo.transform(*(float(v) for v in centre))
    frame = Frame(centre, enu_axes(float(lon), float(lat)), np.zeros(3), 1.0,
                  (min(s.z_range_m[0] for s in sources), max(s.z_range_m[1] for s in sources)))
    enu = frame.to_enu(samples)
    lo, hi = enu.min(axis=0), enu.max(axis=0)
    pad = 0.01 * (hi - lo).max() + 1.0  # the grid samples miss the curvature between them by far less
    lo, hi = lo - pad, hi + pad
    size = float((hi - lo).max())
    cube_min = (lo + hi) / 2 - size / 2
    cube_min[2] = lo[2]  # data at the bottom of the cube: flat cities stay in one layer of cells for many levels
    frame.cube_min, frame.size = cube_min, size
    return frame


def _spread(v: np.ndarray) -> np.ndarray:
    """Spread the low 21 bits of ``v`` to every third bit (Morton encoding)."""
    v = v & np.uint64(0x1FFFFF)
    v = (v | (v << np.uint64(32))) & np.uint64(0x1F00000000FFFF)
    v = (v | (v << np.uint64(16))) & np.uint64(0x1F0000FF0000FF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x100F00F00F00F00F)
    v = (v | (v << np.uint64(4))) & np.uint64(0x10C30C30C30C30C3)
    v = (v | (v << np.uint64(2))) & np.uint64(0x1249249249249249)
    return v


class Reader:
    """Turns chunks of one file into records in the frame (colour from RGB, imagery or the palette)."""

    def __init__(self, src: Source, frame: Frame, sampler: ImageSampler | None, parallel: bool = True) -> None:
        self.src, self.frame, self.sampler, self.parallel = src, frame, sampler, parallel
        self.path = Path(src.path)
        self.scale = (1 << BITS) / frame.size

    def records(self, pts: laspy.ScaleAwarePointRecord) -> np.ndarray:
        """Records of a chunk of points (errors name the file)."""
        x = np.asarray(pts.x, dtype=np.float64)
        y = np.asarray(pts.y, dtype=np.float64)
        z = np.asarray(pts.z, dtype=np.float64) * self.src.z_m
        X, Y, Z = ecef_transformer(self.src.crs_wkt).transform(x.copy(), y.copy(), z.copy(), inplace=True)
        rec = np.empty(len(x), dtype=REC)
        f = self.frame
        X -= f.origin[0]
        Y -= f.origin[1]
        Z -= f.origin[2]
        m = np.zeros(len(x), dtype=np.uint64)
        for axis, name in enumerate(("x", "y", "z")):  # ENU = rotᵀ · (ECEF − origin), one axis at a time
            r = f.rot[:, axis]
            e = X * r[0]
            e += Y * r[1]
            e += Z * r[2]
            rec[name] = e
            e -= f.cube_min[axis]
            e *= self.scale
            lo, hi = float(e.min()), float(e.max())  # NaN propagates into both
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise SourceError(self.path, "some points cannot be placed on the globe (the transformation to "
                                             "ECEF gives no finite result)")
            if lo < 0 or hi >= (1 << BITS):
                raise SourceError(self.path, "points lie outside the header's bounds (corrupt point data or a "
                                             "wrong header)")
            m |= _spread(e.astype(np.uint64)) << np.uint64(axis)  # e >= 0: truncation is floor
        rec["m"] = m
        cls = np.asarray(pts.classification, dtype=np.uint8)
        rec["cls"] = cls
        rec["inten"] = np.asarray(pts.intensity, dtype=np.uint16)
        if self.src.rgb_shift is not None:
            for i, b in enumerate(("red", "green", "blue")):
                rec["rgb"][:, i] = np.minimum(np.asarray(pts[b]) >> self.src.rgb_shift, 255)
        else:
            rgb, have = (self.sampler.sample(x, y, self.src.crs_wkt) if self.sampler is not None
                         else (np.zeros((len(x), 3), np.uint8), np.zeros(len(x), bool)))
            if not have.all():
                rgb[~have] = palette(cls[~have], z[~have], self.frame.z_range)
            rec["rgb"] = rgb
        return rec

    def read(self, start: int, count: int, chunk: int) -> Any:
        """Yield records for points [start, start + count) of the file, ``chunk`` points at a time; the next chunk
        is decoded in a thread (LAZ decoding releases the GIL) while this one is transformed."""
        done = 0

        def fetch(n: int) -> laspy.ScaleAwarePointRecord:
            try:
                return pending_read(n)
            except Exception as exc:  # lazrs / laspy raise several types for damaged point data
                raise SourceError(self.path, f"corrupt or truncated point data after {start + done:,} of "
                                             f"{self.src.count:,} points ({exc})") from exc

        with open_las(self.path, self.parallel) as f, ThreadPoolExecutor(1) as ahead:
            pending_read = f.read_points
            if start:
                try:
                    f.seek(start)
                except Exception as exc:  # as above
                    raise SourceError(self.path, f"cannot seek to point {start:,} ({exc})") from exc
            pending = ahead.submit(fetch, min(chunk, count))
            while done < count:
                pts = pending.result()
                if len(pts) == 0:
                    raise SourceError(self.path, f"the header says {self.src.count:,} points but the file holds "
                                                 f"{start + done:,} (truncated?)")
                done += len(pts)
                if done < count:
                    pending = ahead.submit(fetch, min(chunk, count - done))
                yield self.records(pts)


class Spill:
    """Per-partition record buffers that go to files (one per partition and ``tag``) past a byte budget."""

    def __init__(self, folder: Path, tag: str, lp: int, budget: int) -> None:
        self.folder, self.tag, self.lp, self.budget = folder, tag, lp, budget
        self.shift = np.uint64(3 * (BITS - lp))
        self.hist = np.zeros(8 ** lp, dtype=np.int64)
        self.parts: dict[int, list[np.ndarray]] = {}
        self.files: dict[int, str] = {}
        self.nbytes = 0

    def add(self, rec: np.ndarray) -> None:
        """Route records to their partitions; spill everything when the buffers exceed the budget."""
        pk = (rec["m"] >> self.shift).astype(np.int64)
        counts = np.bincount(pk, minlength=len(self.hist))
        self.hist += counts
        order = np.argsort(pk.astype(np.uint16) if len(self.hist) <= 65536 else pk, kind="stable")
        rec = rec[order]
        ends = np.cumsum(counts)
        for k in np.flatnonzero(counts):
            self.parts.setdefault(int(k), []).append(rec[ends[k] - counts[k]:ends[k]])
        self.nbytes += rec.nbytes
        if self.nbytes > self.budget:
            self.flush()

    def flush(self) -> None:
        """Append every buffered partition to its file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for k, parts in self.parts.items():
            path = self.folder / f"p{k}_{self.tag}.bin"
            with open(path, "ab") as fh:
                for p in parts:
                    p.tofile(fh)
            self.files[k] = str(path)
        self.parts.clear()
        self.nbytes = 0


def load_partition(parts: list[np.ndarray], files: list[str]) -> np.ndarray:
    """All records of one partition as one array, in read order (spilled records came first)."""
    arrays = [np.fromfile(f, dtype=REC) for f in files] + list(parts)
    return np.concatenate(arrays) if len(arrays) != 1 else arrays[0]
