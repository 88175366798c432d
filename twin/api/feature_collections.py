"""The OGC API Features collections of a branch at a version: one per CIM entity type, the building parts, and one
per H3 layer (``layer-<name>``), each as its :class:`~twin.api.items.Source`."""

from __future__ import annotations

from twin.api import items, layer_collections, ogc, parts
from twin.store import Store


def source_of(store: Store, branch: str, version: int, c: ogc.Collection) -> items.Source:
    if c.kind == "parts":
        return items.RowsSource(store, branch, version, c, parts.compute)
    return items.EntitySource(store, branch, version, c)


def sources(store: Store, branch: str, version: int) -> list[items.Source]:
    """Every collection: the entity types (in their fixed order), then the layers by name."""
    out: list[items.Source] = [source_of(store, branch, version, c) for c in ogc.COLLECTIONS.values()]
    return out + list(layer_collections.sources(store, branch, version))


def source(store: Store, branch: str, version: int, collection_id: str) -> items.Source:
    """The collection of that id, or a 404 listing the known ones."""
    c = ogc.COLLECTIONS.get(collection_id)
    if c is not None:
        return source_of(store, branch, version, c)
    if collection_id.startswith(layer_collections.PREFIX):
        for s in layer_collections.sources(store, branch, version):
            if s.id == collection_id:
                return s
    known = [s.id for s in sources(store, branch, version)]
    raise ogc.OGCError(f"no collection {collection_id!r} on branch {branch!r} at version {version}; collections: "
                       f"{', '.join(known)}", 404)
