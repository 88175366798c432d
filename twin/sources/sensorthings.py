"""OGC SensorThings API (v1.0/1.1) JSON: Things with Locations, Datastreams and Observations.

Accepted layouts (plain or .json.gz): an expanded response (``{"value": [Thing…]}`` from
``Things?$expand=Locations,Datastreams/ObservedProperty,Datastreams/Observations``, or a bare list / single Thing),
a response listing Datastreams with their ``Thing`` expanded, and an export holding top-level ``Things``,
``Locations``, ``Datastreams``, ``Observations`` (, ``ObservedProperties``) arrays linked by ``@iot.id``
references (``"Thing": {"@iot.id": 1}`` or ``"Thing@iot.id": 1``). MultiDatastreams are split into one variable per
component.

Each Thing with a Location becomes a :class:`Sensor` (``sensor-<slugged @iot.id>``; ``--option sensor_key=name``
uses the Thing's name); each Datastream a variable (its ObservedProperty name, else its own name, normalised as
CSV headers are) with the unit symbol of its ``unitOfMeasurement``; Observations go to the same ``observations`` /
``observations_text`` tables as CSV series (time = start of ``phenomenonTime``, else ``resultTime``).
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from data_models import OBSERVATIONS, OBSERVATIONS_TEXT, Sensor
from twin.sources.base import ReadContext, SourceError, SourceRead
from twin.sources.tabular import (
    check_area,
    normalise_unit,
    option_map,
    parse_times,
    project,
    slug,
    try_float,
    variable_name,
)

_LOCATION_TYPES = ("application/geo+json", "application/vnd.geo+json", "application/json", "")


def _ref(obj: dict[str, Any], name: str) -> Any:
    """The @iot.id of a linked entity: ``obj[name]["@iot.id"]`` or ``obj[name + "@iot.id"]``."""
    v = obj.get(name)
    if isinstance(v, dict) and "@iot.id" in v:
        return v["@iot.id"]
    return obj.get(f"{name}@iot.id")


def _kind_of(obj: dict[str, Any]) -> str:
    if "unitOfMeasurement" in obj or "unitOfMeasurements" in obj:
        return "Datastream"
    if "location" in obj and ("encodingType" in obj or isinstance(obj.get("location"), dict)):
        return "Location"
    if "result" in obj and ("phenomenonTime" in obj or "resultTime" in obj):
        return "Observation"
    return "Thing"


class _Graph:
    """Things, Locations, Datastreams and Observations gathered from any of the accepted layouts."""

    def __init__(self, path: Any) -> None:
        self.path = path
        self.things: dict[Any, dict[str, Any]] = {}
        self.locations: dict[Any, dict[str, Any]] = {}
        self.thing_locations: dict[Any, list[Any]] = {}
        self.datastreams: dict[Any, dict[str, Any]] = {}
        self.ds_thing: dict[Any, Any] = {}
        self.observations: dict[Any, list[dict[str, Any]]] = {}
        self.properties: dict[Any, dict[str, Any]] = {}
        self._auto = 0

    def _id(self, obj: dict[str, Any], prefix: str) -> Any:
        if "@iot.id" in obj:
            return obj["@iot.id"]
        self._auto += 1
        return f"{prefix}{self._auto}"

    def thing(self, obj: dict[str, Any]) -> Any:
        tid = self._id(obj, "thing")
        self.things.setdefault(tid, {}).update({k: v for k, v in obj.items() if k not in ("Locations", "Datastreams",
                                                                                             "MultiDatastreams")})
        for loc in obj.get("Locations") or []:
            self.location(loc, tid)
        for ds in (obj.get("Datastreams") or []) + (obj.get("MultiDatastreams") or []):
            self.datastream(ds, tid)
        return tid

    def location(self, obj: dict[str, Any], thing: Any = None) -> None:
        lid = self._id(obj, "location")
        if "location" in obj:
            self.locations[lid] = obj
        things = [thing] if thing is not None else []
        things += [t.get("@iot.id") for t in obj.get("Things") or [] if isinstance(t, dict)]
        for t in things:
            if t is not None and lid not in self.thing_locations.setdefault(t, []):
                self.thing_locations[t].append(lid)

    def datastream(self, obj: dict[str, Any], thing: Any = None) -> None:
        did = self._id(obj, "datastream")
        self.datastreams[did] = obj
        t = obj.get("Thing")
        if isinstance(t, dict) and len(t) > 1:  # expanded Thing, not just a reference
            thing = self.thing(t)
        thing = thing if thing is not None else _ref(obj, "Thing")
        if thing is not None:
            self.ds_thing[did] = thing
        if obj.get("Observations"):
            self.observations.setdefault(did, []).extend(obj["Observations"])

    def observation(self, obj: dict[str, Any]) -> None:
        did = _ref(obj, "Datastream")
        if did is None:
            did = _ref(obj, "MultiDatastream")
        if did is None:
            raise SourceError(self.path, f"Observation {obj.get('@iot.id')!r} has no Datastream link")
        self.observations.setdefault(did, []).append(obj)

    def add(self, obj: Any) -> None:
        if isinstance(obj, list):
            for o in obj:
                self.add(o)
            return
        if not isinstance(obj, dict):
            return
        export = [k for k in ("Things", "Locations", "Datastreams", "MultiDatastreams", "Observations",
                              "ObservedProperties") if isinstance(obj.get(k), list)]
        if export and "@iot.id" not in obj:
            for p in obj.get("ObservedProperties") or []:
                self.properties[p.get("@iot.id")] = p
            for t in obj.get("Things") or []:
                self.thing(t)
            for loc in obj.get("Locations") or []:
                self.location(loc)
            for ds in (obj.get("Datastreams") or []) + (obj.get("MultiDatastreams") or []):
                self.datastream(ds)
            for o in obj.get("Observations") or []:
                self.observation(o)
            return
        if isinstance(obj.get("value"), list) and "@iot.id" not in obj:
            self.add(obj["value"])
            return
        kind = _kind_of(obj)
        {"Thing": self.thing, "Location": self.location, "Datastream": self.datastream,
         "Observation": self.observation}[kind](obj)


def _load(path: Any) -> Any:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise SourceError(path, f"not valid JSON ({exc})") from None


def _point(path: Any, loc: dict[str, Any]) -> tuple[float, float] | None:
    enc = str(loc.get("encodingType") or "").lower()
    if enc not in _LOCATION_TYPES:
        raise SourceError(path, f"Location {loc.get('@iot.id')!r} has encodingType {enc!r}; only GeoJSON is read")
    g = loc.get("location")
    if isinstance(g, dict) and g.get("type") == "Feature":
        g = g.get("geometry")
    if not isinstance(g, dict) or "type" not in g:
        return None
    try:
        geom = shapely.geometry.shape(g)
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise SourceError(path, f"Location {loc.get('@iot.id')!r} has an invalid GeoJSON location ({exc})") from None
    if geom.is_empty:
        return None
    p = geom if geom.geom_type == "Point" else geom.representative_point()
    return float(p.x), float(p.y)


def _results(values: list[Any]) -> tuple[pa.Array | None, pa.Array]:
    """(float64 results, NaN as null — or None when some result is not a number; the results as text)."""
    plain = not any(isinstance(v, bool | str | dict | list) for v in values)
    if plain:
        try:
            f = pa.array(values, pa.float64(), from_pandas=True)
            return pc.if_else(pc.is_nan(f), pa.scalar(None, pa.float64()), f), pc.cast(f, pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            pass
    text = pa.array([None if v is None else json.dumps(v) if isinstance(v, dict | list) else str(v) for v in values],
                    pa.string())
    num = None if any(isinstance(v, bool | dict | list) for v in values) else try_float(text)
    return num, text


def _sensor_key(ctx: ReadContext, tid: Any, thing: dict[str, Any]) -> str:
    key = str(ctx.options.get("sensor_key") or "id")
    if key == "name" and thing.get("name"):
        raw = str(thing["name"])
    elif key.startswith("properties.") and (thing.get("properties") or {}).get(key[11:]) not in (None, ""):
        raw = str(thing["properties"][key[11:]])
    else:
        raw = str(tid)
    s = slug(raw)
    if not s:
        raise SourceError(ctx.path, f"Thing {tid!r}: id {raw!r} has no letters or digits")
    return f"sensor-{s}"


def _components(ds: dict[str, Any], props: dict[Any, dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(variable source name, unit) per result component: one for a Datastream, several for a MultiDatastream."""
    if "unitOfMeasurements" in ds:
        ops = ds.get("ObservedProperties") or []
        units = ds.get("unitOfMeasurements") or []
        out = []
        for i, u in enumerate(units):
            op = ops[i] if i < len(ops) and isinstance(ops[i], dict) else {}
            name = op.get("name") or f"{ds.get('name') or 'component'}_{i + 1}"
            out.append((name, (u or {}).get("symbol") or (u or {}).get("name")))
        return out
    op = ds.get("ObservedProperty")
    if isinstance(op, dict) and "name" not in op:
        op = props.get(op.get("@iot.id"), op)
    if not isinstance(op, dict) or not op:
        op = props.get(ds.get("ObservedProperty@iot.id"), {})
    name = op.get("name") or ds.get("name") or f"datastream_{ds.get('@iot.id')}"
    u = ds.get("unitOfMeasurement") or {}
    return [(name, u.get("symbol") or u.get("name"))]


def read(ctx: ReadContext) -> SourceRead:
    """Read a SensorThings JSON file into Sensors (Things with a Location) and the observations tables."""
    path = ctx.path
    g = _Graph(path)
    doc = _load(path)
    g.add(doc)
    if not g.things and not g.datastreams:
        raise SourceError(path, "no SensorThings Things or Datastreams in the file")
    units_opt = {k: normalise_unit(v) or "" for k, v in option_map(ctx.options, "units", path).items()}
    sensor_of: dict[Any, str] = {tid: _sensor_key(ctx, tid, t) for tid, t in g.things.items()}
    seen: dict[str, Any] = {}
    for tid, sid in sensor_of.items():
        if sid in seen:
            raise SourceError(path, f"Things {seen[sid]!r} and {tid!r} both become {sid!r}")
        seen[sid] = tid
    num_parts: list[pa.Table] = []
    text_parts: list[pa.Table] = []
    variables: dict[str, dict[str, str]] = {}  # sensor id -> variable -> unit
    ds_vars: dict[str, dict[str, Any]] = {}
    for did, ds in g.datastreams.items():
        tid = g.ds_thing.get(did)
        if tid is None:
            raise SourceError(path, f"Datastream {did!r} ({ds.get('name')!r}) is not linked to a Thing")
        if tid not in sensor_of:
            g.things[tid] = {"@iot.id": tid}
            sensor_of[tid] = _sensor_key(ctx, tid, g.things[tid])
        sid = sensor_of[tid]
        comps = _components(ds, g.properties)
        obs = g.observations.get(did, [])
        names = []
        for raw_name, unit in comps:
            name, parsed_unit = variable_name(str(raw_name))
            unit = units_opt.get(name) or units_opt.get(str(raw_name)) or normalise_unit(unit) or parsed_unit
            base, k = name, 2
            while name in variables.get(sid, {}):
                name, k = f"{base}_{k}", k + 1
            variables.setdefault(sid, {})[name] = unit or ""
            ds_vars.setdefault(sid, {})[name] = did
            names.append((name, unit))
        if not obs:
            continue
        times = pa.array([o.get("phenomenonTime") or o.get("resultTime") for o in obs], pa.string())
        times = pc.replace_substring_regex(times, r"/.*$", "")
        time = parse_times(path, times, ctx.options.get("tz"), None, what=f"Datastream {did!r} phenomenonTime")
        results = [o.get("result") for o in obs]
        multi = len(comps) > 1 or "unitOfMeasurements" in ds
        for i, (name, unit) in enumerate(names):
            vals = [r[i] if isinstance(r, list) and i < len(r) else None for r in results] if multi else results
            num, text = _results(vals)
            n = len(vals)
            common = {"asset_id": pa.repeat(pa.scalar(ctx.asset_id, pa.string()), n),
                      "sensor_id": pa.repeat(pa.scalar(sid, pa.string()), n), "time": time,
                      "variable": pa.repeat(pa.scalar(name, pa.string()), n)}
            if num is not None:
                flag = pc.if_else(pc.is_null(num), "missing", "good")
                num_parts.append(pa.table({**common, "value": num, "unit": pa.repeat(pa.scalar(unit, pa.string()), n),
                                           "quality_flag": flag}, schema=OBSERVATIONS))
            else:
                variables[sid][name] = ""
                flag = pc.if_else(pc.is_null(text), "missing", "good")
                text_parts.append(pa.table({**common, "value": text, "quality_flag": flag}, schema=OBSERVATIONS_TEXT))
    # Sensors: every Thing with a (GeoJSON) Location
    located: list[tuple[Any, float, float]] = []
    for tid in g.things:
        pts = [p for lid in g.thing_locations.get(tid, []) if lid in g.locations
               for p in [_point(path, g.locations[lid])] if p is not None]
        if pts:
            located.append((tid, *pts[0]))
    entities: list[Sensor] = []
    info: dict[str, Any] = {"crs": None, "bbox": None}
    if located:
        lon = np.array([p[1] for p in located])
        lat = np.array([p[2] for p in located])
        labels = [str(p[0]) for p in located]
        check_area(path, lon, lat, "EPSG:4326", labels)
        check_area(path, lon, lat, ctx.store_crs, labels)
        x, y = project(lon, lat, "EPSG:4326", ctx.store_crs)
        default_kind = str(ctx.options.get("station_kind") or "unknown")
        prov = [ctx.provenance("sensorthings")]
        for (tid, _, _), lo, la, xi, yi in zip(located, lon, lat, x, y, strict=True):
            thing = g.things[tid]
            sid = sensor_of[tid]
            props = thing.get("properties") or {}
            kind = next((str(props[k]) for k in ("station_kind", "kind", "type") if props.get(k)), default_kind)
            attrs = {"thing_id": tid, "lon_wgs84": round(float(lo), 7), "lat_wgs84": round(float(la), 7),
                     "datastreams": ds_vars.get(sid, {})}
            if thing.get("description"):
                attrs["description"] = thing["description"]
            attrs.update({k: v for k, v in props.items() if isinstance(v, str | int | float | bool)})
            units = variables.get(sid, {})
            entities.append(Sensor(id=sid, geometry={"type": "Point", "coordinates": [float(xi), float(yi)]},
                                   station_kind=kind, name=thing.get("name"), variables=list(units), units=units,
                                   attributes=attrs, provenance=prov, classification=ctx.classification))
        info.update(crs="EPSG:4326", bbox=[float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())])
    tables: dict[str, pa.Table] = {}
    if not entities and not num_parts and not text_parts:
        raise SourceError(path, "no SensorThings Things with a Location and no Observations in the file")
    if num_parts:
        tables["observations"] = pa.concat_tables(num_parts)
    if text_parts:
        tables["observations_text"] = pa.concat_tables(text_parts)
    all_times = [t.column("time") for t in tables.values()]
    info.update(format="sensorthings", things=len(g.things), things_without_location=len(g.things) - len(located),
                datastreams=len(g.datastreams), observations=sum(t.num_rows for t in tables.values()),
                variables=sorted({v for vs in variables.values() for v in vs}))
    if all_times:
        times = pa.chunked_array([c for col in all_times for c in col.chunks], pa.timestamp("us", tz="UTC"))
        lo_t, hi_t = pc.min_max(times).values()
        info.update(start=lo_t.as_py().isoformat(), end=hi_t.as_py().isoformat())
    if isinstance(doc, dict) and doc.get("@iot.nextLink"):
        info["next_link"] = doc["@iot.nextLink"]  # the file is one page of a longer response
    return SourceRead(info=info, entities=entities, tables=tables)

