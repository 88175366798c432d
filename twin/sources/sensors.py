"""Ground sensors: station lists and time series in CSV (plain or .gz); SensorThings JSON is ``sensorthings``.

A CSV with a station id and coordinates but no time column is a *station list*: one :class:`Sensor` per station,
a Point in the store CRS. A CSV with a time (one column, or year/month/day[/hour…] columns) is a *time series*:
long (time, station, variable, value[, unit]) or wide (one column per variable); it becomes the ``observations``
table (numeric readings, ``value`` null when missing — never dropped or zero-filled) and the ``observations_text``
table (non-numeric readings such as a 16-point wind direction). A series that carries station coordinates itself
also yields Sensors. Everything is read as Arrow strings and converted column by column (no per-row Python).

Options (``ctx.options``, ``--option key=value``; see docs/sensors.md): ``columns`` (role=column mapping),
``tz`` (zone of times that carry none — never guessed), ``units``, ``variables``, ``ignore``, ``stations``
(station list giving the series' locations), ``station`` (one id for a file without a station column),
``station_kind``, ``time_format``, ``na`` (extra missing-value markers), ``delimiter``, ``coords`` (gcj02).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_models import OBSERVATIONS, OBSERVATIONS_TEXT, UTC_TS, Observation, ObservationFlag, Sensor
from twin.sources.base import ReadContext, SourceError, SourceRead
from twin.sources.tabular import (
    ALIASES,
    NUMBER_RE,
    Located,
    column_text,
    locate,
    norm,
    normalise_unit,
    option_list,
    option_map,
    parse_times,
    read_csv_strings,
    resolve_columns,
    slug,
    times_from_parts,
    try_float,
    variable_name,
)

ROLES_SENSORS = ("station", "time", "year", "month", "day", "hour", "minute", "second", "lon", "lat", "x", "y",
                 "kind", "name", "variable", "value", "unit")

_IGNORED = {"no", "index", "row", "row_id", "rownum", "unnamed_0", "fid", "objectid"}
# known file formats with documented units (units are taken from the dataset documentation, never guessed)
_PROFILES: list[tuple[str, frozenset[str], dict[str, str]]] = [
    (
        "UCI Beijing Multi-Site Air-Quality (PRSA)",
        frozenset({"no", "year", "month", "day", "hour", "pm2_5", "pm10", "so2", "no2", "co", "o3", "temp", "pres",
                   "dewp", "rain", "wd", "wspm", "station"}),
        {"pm25": "ug/m3", "pm10": "ug/m3", "so2": "ug/m3", "no2": "ug/m3", "co": "ug/m3", "o3": "ug/m3",
         "temp": "degC", "pres": "hPa", "dewp": "degC", "rain": "mm", "wspm": "m/s"},
    ),
]


# ------------------------------------------------------------------------------------------------------------------
# Stations
# ------------------------------------------------------------------------------------------------------------------


def sensor_ids(path: Path, col: pa.ChunkedArray | pa.Array, what: str = "station") -> tuple[pa.Array, list[str],
                                                                                             pa.Array]:
    """(sensor id per row 'sensor-<slug>', the distinct raw ids, each row's index into them); slugging is done on
    the distinct ids only. Empty ids and ids that collide once slugged are errors."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    arr = pc.utf8_trim_whitespace(arr)
    if arr.null_count:
        first = pc.index(pc.is_null(arr), True).as_py()
        raise SourceError(path, f"{arr.null_count} row(s) have no {what} id (first at data row {first + 1})")
    enc = pc.dictionary_encode(arr)
    raw = [str(v) for v in enc.dictionary.to_pylist()]
    slugs = [slug(v) for v in raw]
    if any(not s for s in slugs):
        raise SourceError(path, f"{what} id {raw[slugs.index('')]!r} has no letters or digits")
    seen: dict[str, str] = {}
    for r, s in zip(raw, slugs, strict=True):
        if s in seen and seen[s] != r:
            raise SourceError(path, f"{what} ids {seen[s]!r} and {r!r} both become 'sensor-{s}'; rename one")
        seen[s] = r
    ids = pa.array([f"sensor-{s}" for s in slugs], pa.string())
    return pc.take(ids, enc.indices), raw, enc.indices


@dataclass
class Stations:
    """A station list: raw ids, sensor ids, positions, names, kinds and extra attributes (one entry per station)."""

    path: Path
    raw: list[str]
    ids: list[str]
    where: Located
    names: list[str | None]
    kinds: list[str | None]
    attributes: list[dict[str, Any]]

    def index(self) -> dict[str, int]:
        """Sensor id -> position in the lists."""
        return {sid: i for i, sid in enumerate(self.ids)}


def _attribute_columns(t: pa.Table, skip: set[str]) -> dict[str, list[Any]]:
    """Other columns of a station list as attribute values: integers, then numbers, else text (per column)."""
    out: dict[str, list[Any]] = {}
    for name in t.column_names:
        if name in skip or norm(name) in _IGNORED:
            continue
        col = pc.utf8_trim_whitespace(t.column(name))
        if pc.all(pc.fill_null(pc.match_substring_regex(col, r"^-?(?:0|[1-9]\d{0,17})$"), True)).as_py() \
                and col.null_count < len(col):
            out[name] = pc.cast(col, pa.int64()).to_pylist()
            continue
        num = try_float(col)
        out[name] = (num if num is not None else col).to_pylist()
    return out


def read_station_list(ctx: ReadContext, path: Path | None = None, table: pa.Table | None = None) -> Stations:
    """A station list CSV (station id + coordinates, no time) as :class:`Stations` in the store CRS."""
    path = path or ctx.path
    t = table if table is not None else read_csv_strings(path, ctx.options)
    # the mapping of a batch may be meant for its series: roles whose column is absent here are auto-detected
    cols = resolve_columns(path, t.column_names, ctx.options, ROLES_SENSORS, skip_missing=ROLES_SENSORS)
    if "station" not in cols:
        raise SourceError(path, f"no station id column (looked for {', '.join(ALIASES['station'][:6])}, …); map one "
                                "with --option columns=station=<column>")
    row_ids, raw, idx = sensor_ids(path, t.column(cols["station"]))
    if len(raw) != t.num_rows:
        counts = np.bincount(idx.to_numpy(), minlength=len(raw))
        dup = raw[int(np.argmax(counts))]
        raise SourceError(path, f"station {dup!r} is listed {int(counts.max())} times")
    labels = t.column(cols["station"]).to_pylist()
    where = locate(ctx, t, cols, labels, path=path)
    if where is None:
        raise SourceError(path, "a station list needs coordinates: lon/lat columns (WGS84) or x/y with a CRS")
    missing = ~(np.isfinite(where.x) & np.isfinite(where.y))
    if missing.any():
        raise SourceError(path, f"station {labels[int(np.argmax(missing))]!r} has no usable coordinates")
    names = t.column(cols["name"]).to_pylist() if "name" in cols else [None] * t.num_rows
    kinds = t.column(cols["kind"]).to_pylist() if "kind" in cols else [None] * t.num_rows
    skip = {cols[r] for r in ("station", "name", "kind") if r in cols} | set(where.columns)
    attrs = _attribute_columns(t, skip)
    rows = [{k: v[i] for k, v in attrs.items() if v[i] is not None} for i in range(t.num_rows)]
    return Stations(path, [str(v).strip() for v in labels], row_ids.to_pylist(), where, names, kinds, rows)


def sensor_entities(ctx: ReadContext, st: Stations, rows: Iterable[int] | None = None,
                    variables: Mapping[str, str | None] | None = None, method: str = "sensors-station-list"
                    ) -> list[Sensor]:
    """Sensor city objects for stations (all, or the given row indices), with provenance to this file's asset."""
    default_kind = str(ctx.options.get("station_kind") or "unknown")
    prov = [ctx.provenance(method)]
    units = {k: (v or "") for k, v in (variables or {}).items()}
    out = []
    for i in range(len(st.ids)) if rows is None else rows:
        attrs = {"station_id": st.raw[i], "lon_wgs84": round(float(st.where.lon[i]), 7),
                 "lat_wgs84": round(float(st.where.lat[i]), 7), **st.attributes[i]}
        kind = st.kinds[i].strip() if st.kinds[i] and st.kinds[i].strip() else default_kind
        out.append(Sensor(
            id=st.ids[i],
            geometry={"type": "Point", "coordinates": [float(st.where.x[i]), float(st.where.y[i])]},
            station_kind=kind, name=st.names[i], variables=list(units), units=units, attributes=attrs,
            provenance=prov, classification=ctx.classification,
        ))
    return out


def _bbox(x: np.ndarray, y: np.ndarray) -> list[float] | None:
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return None
    return [float(x[ok].min()), float(y[ok].min()), float(x[ok].max()), float(y[ok].max())]


def resolve_path(ctx: ReadContext, value: str) -> Path:
    """A path option: absolute, relative to the current folder, or relative to the file's folder."""
    p = Path(value).expanduser()
    for cand in ([p] if p.is_absolute() else [Path.cwd() / p, ctx.path.parent / p]):
        if cand.is_file():
            return cand
    raise SourceError(ctx.path, f"option stations: no file {value!r} (looked relative to the current folder and "
                                f"to {ctx.path.parent})")


# ------------------------------------------------------------------------------------------------------------------
# Series
# ------------------------------------------------------------------------------------------------------------------


def _repeat_str(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), n)


def _flags(value: pa.ChunkedArray | pa.Array, bad: pa.ChunkedArray | pa.Array | None = None) -> pa.ChunkedArray:
    flag = pc.if_else(pc.is_null(value), ObservationFlag.missing.value, ObservationFlag.good.value)
    if bad is not None:
        flag = pc.if_else(bad, ObservationFlag.bad.value, flag)
    return flag


def _units_for(path: Path, options: Mapping[str, Any], names: list[str]) -> dict[str, str]:
    """Units declared by the ``units`` option (keys: variable or column names) or a known-format profile."""
    declared = option_map(options, "units", path)
    keys = {norm(c) for c in names}
    profile: dict[str, str] = {}
    for _, signature, units in _PROFILES:
        if signature <= keys:
            profile = dict(units)
    return {**profile, **{k: normalise_unit(v) or "" for k, v in declared.items()}}


@dataclass
class _Var:
    column: str
    name: str
    unit: str | None


def _wide_variables(path: Path, t: pa.Table, cols: Mapping[str, str], options: Mapping[str, Any]) -> list[_Var]:
    used = {c for v in cols.values() for c in v.split("+")}
    ignore = {norm(c) for c in option_list(options, "ignore")}
    units = _units_for(path, options, t.column_names)
    declared = option_list(options, "variables")
    chosen: list[tuple[str, str | None]] = []
    if declared:
        lookup = {norm(n): n for n in t.column_names}
        for item in declared:
            colname, _, rename = item.partition("=")
            c = lookup.get(norm(colname))
            if c is None:
                raise SourceError(path, f"option variables: no column {colname!r}; columns are "
                                        f"{', '.join(t.column_names)}")
            chosen.append((c, rename.strip() or None))
    else:
        chosen = [(c, None) for c in t.column_names if c not in used and norm(c) not in _IGNORED
                  and norm(c) not in ignore]
    out = []
    for c, rename in chosen:
        name, unit = variable_name(c)
        name = rename or name
        unit = units.get(c) or units.get(norm(c)) or units.get(name) or unit
        out.append(_Var(c, name, unit))
    names = [v.name for v in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SourceError(path, f"columns map to the same variable name(s) {dup}; rename with --option variables=")
    return out


def _concat(parts: list[pa.Array | pa.ChunkedArray], typ: pa.DataType) -> pa.ChunkedArray:
    chunks = []
    for p in parts:
        chunks += p.chunks if isinstance(p, pa.ChunkedArray) else [p]
    return pa.chunked_array(chunks, type=typ)


def _series_table(asset: str, sensor: pa.Array, time: pa.Array, names: list[str],
                  values: list[pa.ChunkedArray | pa.Array], units: list[str | None], text: bool = False,
                  bad: list[Any] | None = None) -> pa.Table:
    """Melt wide columns into long rows: sensor and time repeated once per variable, vectorised."""
    n, k = len(sensor), len(names)
    idx = pa.array(np.repeat(np.arange(k, dtype=np.int32), n))
    cols: dict[str, Any] = {
        "asset_id": _repeat_str(asset, n * k),
        "sensor_id": _concat([sensor] * k, pa.string()),
        "time": _concat([time] * k, UTC_TS),
        "variable": pc.take(pa.array(names, pa.string()), idx),
        "value": _concat(values, pa.string() if text else pa.float64()),
    }
    if not text:
        cols["unit"] = pc.take(pa.array(units, pa.string()), idx)
    cols["quality_flag"] = _concat([_flags(v, None if bad is None else bad[i]) for i, v in enumerate(values)],
                                   pa.string())
    return pa.table(cols, schema=OBSERVATIONS_TEXT if text else OBSERVATIONS)


def _numeric_or_text(col: pa.ChunkedArray) -> tuple[pa.ChunkedArray | None, pa.ChunkedArray | None]:
    """(float values, rows that held a non-finite number) when the column is numeric, else (None, None)."""
    try:
        f = pc.cast(pc.utf8_trim_whitespace(col), pa.float64())
    except pa.ArrowInvalid:
        return None, None
    finite = pc.is_finite(f)
    bad = pc.fill_null(pc.and_(pc.invert(finite), pc.invert(pc.is_nan(f))), False)  # inf: a bad reading
    return pc.if_else(finite, f, pa.scalar(None, pa.float64())), bad


def _constant_per_station(t: pa.Table, station_col: str, col: str) -> bool:
    g = pa.table({"s": t.column(station_col), "v": t.column(col)}).group_by("s").aggregate([("v", "count_distinct")])
    return pc.max(g.column("v_count_distinct")).as_py() <= 1


def _info_times(time: pa.Array) -> dict[str, Any]:
    if len(time) == 0:
        return {}
    lo, hi = pc.min_max(time).values()
    return {"start": lo.as_py().isoformat(), "end": hi.as_py().isoformat()}


def _series_sensors(ctx: ReadContext, t: pa.Table, cols: Mapping[str, str], row_sensor: pa.Array, raw: list[str],
                    idx: pa.Array, variables: dict[str, str | None]) -> tuple[list[Sensor], Located | None]:
    """Sensors of a series that carries station coordinates (first row of each station)."""
    first = np.unique(idx.to_numpy(zero_copy_only=False), return_index=True)[1]
    sub = t.take(pa.array(first))
    where = locate(ctx, sub, cols, [raw[i] for i in range(len(raw))])
    if where is None:
        return [], None
    st = Stations(ctx.path, raw, pc.take(row_sensor, pa.array(first)).to_pylist(), where,
                  sub.column(cols["name"]).to_pylist() if "name" in cols else [None] * len(raw),
                  sub.column(cols["kind"]).to_pylist() if "kind" in cols else [None] * len(raw),
                  [{} for _ in raw])
    return sensor_entities(ctx, st, variables=variables, method="sensors-series"), where


def read_series(ctx: ReadContext, t: pa.Table, cols: dict[str, str]) -> SourceRead:
    """A time-series CSV (long or wide) as the observations tables (+ Sensors when it carries coordinates)."""
    path = ctx.path
    if "station" in cols:
        station_col = t.column(cols["station"])
    elif ctx.options.get("station"):
        station_col = _repeat_str(str(ctx.options["station"]), t.num_rows)
    else:
        hint = " (lon/lat and a time per row: if these are GPS fixes, pass --kind trajectories)" \
            if ("lon" in cols or "x" in cols) else ""
        raise SourceError(path, f"no station column (looked for {', '.join(ALIASES['station'][:6])}, …); map one "
                                "with --option columns=station=<column>, or name the one station of this file "
                                f"with --option station=<id>{hint}")
    sensor, raw, idx = sensor_ids(path, station_col)
    tz = ctx.options.get("tz")
    if "time" in cols:
        time = parse_times(path, column_text(t, cols["time"]), tz, ctx.options.get("time_format"))
    else:
        time = times_from_parts(path, t, cols, tz)
    info: dict[str, Any] = {"crs": None, "bbox": None}
    tables: dict[str, pa.Table] = {}
    long = "variable" in cols or "value" in cols
    if long:
        if not ("variable" in cols and "value" in cols):
            have = "variable" if "variable" in cols else "value"
            raise SourceError(path, f"a long-format series needs both a variable and a value column; found only "
                                    f"{have} ({cols[have]!r})")
        obs, text, variables = _long_tables(ctx, t, cols, sensor, time)
        fmt = "csv-long"
    else:
        vars_ = _wide_variables(path, t, cols, ctx.options)
        numeric, texts, station_attrs = [], [], []
        for v in vars_:
            f, bad = _numeric_or_text(t.column(v.column))
            if f is not None:
                numeric.append((v, f, bad))
            elif "station" in cols and not option_list(ctx.options, "variables") and \
                    _constant_per_station(t, cols["station"], v.column):
                station_attrs.append(v.column)
            else:
                texts.append(v)
        if not numeric and not texts:
            raise SourceError(path, f"no variable columns: the columns {', '.join(t.column_names)} are all ids, "
                                    "times or coordinates")
        obs = _series_table(ctx.asset_id, sensor, time, [v.name for v, _, _ in numeric], [f for _, f, _ in numeric],
                            [v.unit for v, _, _ in numeric], bad=[b for _, _, b in numeric]) if numeric else None
        text = _series_table(ctx.asset_id, sensor, time, [v.name for v in texts],
                             [pc.utf8_trim_whitespace(t.column(v.column)) for v in texts], [],
                             text=True) if texts else None
        variables = {v.name: v.unit for v, _, _ in numeric}
        info["text_variables"] = [v.name for v in texts]
        info["station_attributes"] = station_attrs
        info["missing_values"] = {v.name: int(f.null_count) for v, f, _ in numeric}
        fmt = "csv-wide"
    if obs is not None and obs.num_rows:
        tables["observations"] = obs
    if text is not None and text.num_rows:
        tables["observations_text"] = text
    info.update(format=fmt, columns=dict(cols), rows=t.num_rows,
                observations=obs.num_rows if obs is not None else 0,
                text_observations=text.num_rows if text is not None else 0,
                stations=len(raw), variables={k: v or "" for k, v in variables.items()}, **_info_times(time))
    if len(raw) <= 50:
        info["sensor_ids"] = sorted(set(pc.unique(sensor).to_pylist()))
    entities: list[Sensor] = []
    all_vars = {**variables, **{n: None for n in info.get("text_variables", [])}}
    sensors, where = _series_sensors(ctx, t, cols, sensor, raw, idx, all_vars)
    if sensors:
        entities = sensors
        info["crs"], info["bbox"] = where.crs, _bbox(*where.file_xy)
    elif ctx.options.get("stations"):
        st_path = resolve_path(ctx, str(ctx.options["stations"]))
        st = read_station_list(ctx, st_path)
        known = st.index()
        firsts = np.unique(idx.to_numpy(zero_copy_only=False), return_index=True)[1]
        ours = pc.take(sensor, pa.array(firsts)).to_pylist()
        missing = [raw[i] for i, s in enumerate(ours) if s not in known]
        if missing:
            raise SourceError(path, f"station(s) {missing[:5]} have no location in {st_path.name} "
                                    f"({len(missing)} of {len(raw)} unknown); station ids there: {st.raw[:8]}")
        rows = [known[s] for s in ours]
        fx, fy = st.where.file_xy
        info["crs"], info["bbox"] = st.where.crs, _bbox(fx[rows], fy[rows])
        info["stations_file"] = str(st_path)
    return SourceRead(info=info, entities=entities, tables=tables)


def _long_tables(ctx: ReadContext, t: pa.Table, cols: Mapping[str, str], sensor: pa.Array, time: pa.Array
                 ) -> tuple[pa.Table | None, pa.Table | None, dict[str, str | None]]:
    """Long rows (time, station, variable, value[, unit]) split into numeric and text tables by variable."""
    path = ctx.path
    var_col = pc.utf8_trim_whitespace(t.column(cols["variable"])).combine_chunks()
    if var_col.null_count:
        raise SourceError(path, f"{var_col.null_count} row(s) have no variable name in column {cols['variable']!r}")
    enc = pc.dictionary_encode(var_col)
    raw_names = [str(v) for v in enc.dictionary.to_pylist()]
    parsed = [variable_name(n) for n in raw_names]
    units_opt = _units_for(path, ctx.options, [])
    names = pa.array([p[0] for p in parsed], pa.string())
    variable = pc.take(names, enc.indices)
    value_txt = pc.utf8_trim_whitespace(t.column(cols["value"])).combine_chunks()
    is_num = pc.fill_null(pc.match_substring_regex(value_txt, NUMBER_RE), True)
    # a variable is numeric when every one of its non-empty values is a number
    non_num = pa.table({"v": enc.indices, "bad": pc.cast(pc.invert(is_num), pa.int64())}).group_by("v").aggregate(
        [("bad", "sum")])
    text_codes = set(pc.filter(non_num.column("v"), pc.greater(non_num.column("bad_sum"), 0)).to_pylist())
    row_text = pc.is_in(enc.indices, pa.array(sorted(text_codes), enc.indices.type)) if text_codes else None
    if "unit" in cols:
        u_enc = pc.dictionary_encode(pc.utf8_trim_whitespace(t.column(cols["unit"])).combine_chunks())
        u_norm = pa.array([normalise_unit(u) for u in u_enc.dictionary.to_pylist()], pa.string())
        unit = pc.take(u_norm, u_enc.indices)
    else:
        unit = pa.nulls(len(variable), pa.string())
    # units declared by option / parsed from the variable name fill the rows that have none
    fallback = pa.array([units_opt.get(raw) or units_opt.get(p[0]) or p[1] for raw, p in zip(raw_names, parsed,
                                                                                             strict=True)], pa.string())
    unit = pc.coalesce(unit, pc.take(fallback, enc.indices))
    n = len(variable)
    num_mask = pc.invert(row_text) if row_text is not None else pa.repeat(pa.scalar(True), n)
    obs = text = None
    variables: dict[str, str | None] = {}
    if pc.any(num_mask).as_py():
        f = pc.cast(pc.if_else(pc.fill_null(is_num, False), value_txt, pa.scalar(None, pa.string())), pa.float64())
        finite = pc.is_finite(f)
        bad = pc.fill_null(pc.and_(pc.invert(finite), pc.invert(pc.is_nan(f))), False)
        f = pc.if_else(finite, f, pa.scalar(None, pa.float64()))
        obs = pa.table({"asset_id": _repeat_str(ctx.asset_id, n), "sensor_id": sensor, "time": time,
                        "variable": variable, "value": f, "unit": unit, "quality_flag": _flags(f, bad)},
                       schema=OBSERVATIONS).filter(num_mask)
        pairs = pa.table({"v": obs.column("variable"), "u": obs.column("unit")}).group_by(["v", "u"]).aggregate([])
        for v, u in zip(pairs.column("v").to_pylist(), pairs.column("u").to_pylist(), strict=True):
            if v in variables and variables[v] != u:
                raise SourceError(path, f"variable {v!r} comes with two units ({variables[v]!r}, {u!r})")
            variables[v] = u
    if row_text is not None:
        text = pa.table({"asset_id": _repeat_str(ctx.asset_id, n), "sensor_id": sensor, "time": time,
                         "variable": variable, "value": value_txt,
                         "quality_flag": _flags(value_txt)}, schema=OBSERVATIONS_TEXT).filter(row_text)
    return obs, text, variables


# ------------------------------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------------------------------


def read(ctx: ReadContext) -> SourceRead:
    """Read a ground-sensor CSV: a station list or a time series (SensorThings JSON has its own reader)."""
    path = ctx.path
    if not path.is_file() or path.stat().st_size == 0:
        raise SourceError(path, "the file is empty" if path.is_file() else "no such file")
    if path.name.lower().endswith((".json", ".json.gz")):  # SensorThings JSON has its own reader
        raise SourceError(path, "a .json sensors file must be OGC SensorThings JSON (Things / Datastreams / "
                                "Observations with @iot.id); this one is not")
    t = read_csv_strings(path, ctx.options)
    # leniently first: a batch's mapping may be meant for its series, and a station list lacks those columns
    cols = resolve_columns(path, t.column_names, ctx.options, ROLES_SENSORS, skip_missing=ROLES_SENSORS)
    is_series = "time" in cols or {"year", "month", "day"} <= set(cols)
    station_list = not is_series and "station" in cols and any(r in cols for r in ("lon", "lat", "x", "y"))
    if not station_list:  # then every mapped column must be there
        cols = resolve_columns(path, t.column_names, ctx.options, ROLES_SENSORS)
    if is_series:
        return read_series(ctx, t, cols)
    if "variable" in cols or "value" in cols or any(r in cols for r in ("year", "month", "day")):
        raise SourceError(path, f"no time column: found {', '.join(t.column_names)}; a series needs a time column "
                                "(or year/month/day columns) — map it with --option columns=time=<column>")
    if not any(r in cols for r in ("lon", "lat", "x", "y")):
        raise SourceError(path, f"neither a station list (no lon/lat or x/y columns) nor a time series (no time "
                                f"column); columns are {', '.join(t.column_names)}")
    st = read_station_list(ctx, table=t)
    entities = sensor_entities(ctx, st)
    fx, fy = st.where.file_xy
    info = {"crs": st.where.crs, "bbox": _bbox(fx, fy), "format": "csv-stations", "stations": len(st.ids),
            "columns": {k: v for k, v in cols.items() if k in ("station", "lon", "lat", "x", "y", "kind", "name")}}
    return SourceRead(info=info, entities=entities)


def to_observations(table: pa.Table) -> list[Observation]:
    """Rows of an observations table as validated :class:`Observation` models (for small selections, e.g. an API
    response); the table is the bulk form of the same record."""
    cols = ["sensor_id", "time", "variable", "value", "unit", "quality_flag"]
    rows = table.select([c for c in cols if c in table.column_names]).to_pylist()
    return [Observation(**{**r, "unit": r.get("unit") or ""}) for r in rows]
