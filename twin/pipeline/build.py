"""`twin build`: run the fusion steps over what the catalog and the store hold, and commit once.

Each step (``steps_buildings``, ``steps_imagery``, ``steps_layers``) reads the branch's current state through a
shared ``BuildContext`` and edits working copies of entities; the build commits every changed entity as one version,
so a failing step leaves the store as it was and a rebuild with nothing new is a no-op.

A build writes files into the store outside the writer lock (terrain rasters in ``tmp/``, then ``products/``), so it
holds a claim on ``tmp/`` while it runs (:func:`twin.store.files.claim`): a concurrent commit's recovery leaves its
work alone, and removes it if the build is killed. A disk that refuses a write is a ``StorageError``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from data_models import parse_city_object
from twin.errors import TwinError
from twin.pipeline.context import BuildContext, Progress
from twin.pipeline.steps_buildings import step_heights, step_outlines, step_reality3d
from twin.pipeline.steps_imagery import step_changes, step_greenness, step_landcover
from twin.pipeline.steps_layers import step_layers
from twin.store import ASSETS, CITY, MAIN, Query, Store
from twin.store.files import claim, disk_refuses, faulty, refused

STEPS: dict[str, Callable[[BuildContext], None]] = {
    "outlines": step_outlines,
    "heights": step_heights,
    "landcover": step_landcover,
    "greenness": step_greenness,
    "changes": step_changes,
    "reality3d": step_reality3d,
    "layers": step_layers,
}


def build(store: Store, branch: str = MAIN, author: str = "twin", progress: Progress | None = None,
          only: list[str] | None = None, report: dict[str, Any] | None = None, workers: int | None = None):
    """Run the build steps (all, or ``only`` those named) and commit; returns the Commit, or None if unchanged.

    ``report``, when given, is filled with what each step did (counts, images used, layers published);
    ``workers`` caps the processes of per-tile work (default: all cores).
    """
    progress = faulty(progress or (lambda stage, frac: None))
    names = list(STEPS) if not only else only
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ValueError(f"unknown build step(s) {', '.join(unknown)}; steps: {', '.join(STEPS)}")
    ctx = BuildContext(store=store, branch=branch, progress=progress, report=report if report is not None else {},
                       workers=workers)
    for a in store.features(branch, query=Query(collection=ASSETS)):
        ctx.assets.setdefault(a["kind"], []).append(a)
    for name in store.table_names():
        ctx.store_tables[name] = store.table_assets(name, branch)
    for e in store.features(branch, query=Query(collection=CITY)):
        e.pop("_store", None)
        ctx.entities[e["id"]] = e
    try:
        with claim(store.root / "tmp", "build"):
            return _run(ctx, names, author)
    except BaseException as exc:
        for folder in ctx.created:  # product files only this failed build referenced
            shutil.rmtree(folder, ignore_errors=True)
        err = refused(exc, "building")
        if err is None and isinstance(exc, Exception) and not isinstance(exc, TwinError):
            err = disk_refuses(store.root / "tmp", f"building; it failed with {type(exc).__name__}")
        if err is not None and err is not exc:
            raise err from exc
        raise


def _run(ctx: BuildContext, names: list[str], author: str):
    """Run the steps over the loaded context and commit what they changed."""
    store, branch, progress = ctx.store, ctx.branch, ctx.progress
    for name in names:
        progress(f"build: {name}", 0.0)
        STEPS[name](ctx)
        progress(f"build: {name}", 1.0)
    put: list[Any] = [parse_city_object(e) for e in ctx.entities.values() if e["id"] not in ctx.removed]
    put += ctx.products
    tables = {}
    if ctx.layers:
        from twin.layers.registry import TABLE, Layers

        reg = Layers(store)
        put += [spec for spec, _ in ctx.layers]
        tables[TABLE] = pa.concat_tables([reg.prepare(spec, values) for spec, values in ctx.layers])
    progress("build: committing", 0.0)
    commit = store.commit(put, remove=sorted(ctx.removed), message=f"build: {', '.join(names)}", author=author,
                          branch=branch, tables=tables)
    progress("build: committing", 1.0)
    return commit

