"""Readers, one per kind of source file, and the one registry that picks a reader for a file.

:mod:`twin.sources.base` holds what every reader shares (``ReadContext``, ``SourceRead``, ``SourceError``, the
``Reader`` protocol); :mod:`twin.sources.registry` the table of readers and ``reader_for`` / ``kind_of`` / ``read``.
Readers never write to the store and never hand a file to each other.
"""

from twin.sources.base import ReadContext, Reader, SourceError, SourceRead
from twin.sources.registry import companions, kind_of, read, reader_for, readers, register, unregister

__all__ = ["Reader", "ReadContext", "SourceError", "SourceRead", "companions", "kind_of", "read", "reader_for",
           "readers", "register", "unregister"]
