"""Readers, one per kind of source file; each describes its file (CRS, extent, time) and streams its content."""

from __future__ import annotations

from pathlib import Path

from data_models import SourceKind


class SourceError(ValueError):
    """A source file cannot be read; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


_EXTENSIONS: dict[str, SourceKind] = {
    ".las": SourceKind.pointcloud,
    ".laz": SourceKind.pointcloud,
    ".tif": SourceKind.imagery,
    ".tiff": SourceKind.imagery,
    ".geojson": SourceKind.vector,
    ".gpkg": SourceKind.vector,
    ".shp": SourceKind.vector,
    ".csv": SourceKind.sensors,
}


def kind_of(path: Path, declared: str | None = None) -> SourceKind:
    """The kind of a source file: as declared, else from its extension; unknown extensions are an error."""
    if declared:
        try:
            return SourceKind(declared)
        except ValueError:
            known = ", ".join(k.value for k in SourceKind)
            raise SourceError(path, f"unknown kind {declared!r}; known kinds: {known}") from None
    kind = _EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise SourceError(path, f"cannot tell the kind of a '{path.suffix}' file; pass --kind")
    return kind
