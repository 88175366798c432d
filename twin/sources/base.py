"""What every reader shares: the context it is given, what it returns, and its one error type.

Every reader has the same shape, ``read(ctx: ReadContext) -> SourceRead``: it describes its file (CRS, extent,
acquisition time, kind-specific facts), returns the city objects it holds already in the store CRS and with
provenance, and any bulk rows (sensor observations, GPS fixes) as Arrow tables. Readers never write to the store:
the ingest commits everything of a batch at once, so a bad file leaves the store untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from data_models import Provenance, SourceKind
from twin.errors import BadInput


class SourceError(BadInput):
    """A source file cannot be read; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass
class ReadContext:
    """What a reader is told about the file it reads."""

    path: Path
    store_crs: str
    asset_id: str
    crs: str | None = None  # CRS declared by the user (--crs): required when the file has none, checked otherwise
    acquired: datetime | None = None  # acquisition time declared by the user
    classification: str = "public"
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific: bands, column mapping, coords (gcj02)…

    def provenance(self, method: str, *, confidence: float = 1.0, attribute: str | None = None,
                   acquired: datetime | None = None) -> Provenance:
        """Provenance pointing at this file's asset."""
        return Provenance(source_asset_id=self.asset_id, acquired=acquired or self.acquired, method=method,
                          confidence=confidence, attribute=attribute)

    def fail(self, problem: str) -> SourceError:
        return SourceError(self.path, problem)


@dataclass
class SourceRead:
    """What a reader found: facts for the catalog, city objects, and bulk tables.

    ``info`` must hold ``crs`` (normalised, or None for files without coordinates) and ``bbox`` (in that CRS, or
    None); ``acquired`` (datetime) when the file carries its time; anything else becomes asset properties.
    ``tables`` maps a bulk-table name (``data_models.tables``: "observations", "trajectories") to rows stored with
    the commit; each row set replaces the rows an older version of the same asset stored in that table.
    """

    info: dict[str, Any]
    entities: list[Any] = field(default_factory=list)
    tables: dict[str, pa.Table] = field(default_factory=dict)


@runtime_checkable
class Reader(Protocol):
    """A reader of one kind of source file, as the registry (:mod:`twin.sources.registry`) asks it.

    ``name`` is unique and accepted by ``--kind``; ``kind`` is what its assets are catalogued as; ``suffixes`` are
    the lower-case file-name endings it reads; ``can_open`` decides from the name and the file's first bytes
    (``head``, gzip decompressed) without importing heavy libraries; ``read`` does the work.
    """

    name: str
    kind: SourceKind
    suffixes: tuple[str, ...]

    def can_open(self, path: Path, head: str) -> bool: ...

    def read(self, ctx: ReadContext) -> SourceRead: ...
