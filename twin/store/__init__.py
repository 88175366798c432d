"""Versioned city store: commits, branches, as-of reads and spatial queries over DuckDB + Parquet."""

from twin.store.files import StoreBusy
from twin.store.records import ASSETS, CITY, LAYERS, PRINCIPALS, RUNS, SCENARIOS
from twin.store.store import MAIN, AlreadyInStore, Extent, NotAStore, NotInStore, Page, Query, Store, StoreError

__all__ = ["ASSETS", "CITY", "LAYERS", "MAIN", "PRINCIPALS", "RUNS", "SCENARIOS", "AlreadyInStore",
           "Extent", "NotAStore", "NotInStore", "Page", "Query",
           "Store", "StoreBusy", "StoreError"]
