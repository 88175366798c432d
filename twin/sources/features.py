"""What the vector readers (OGR vectors, OpenStreetMap, CityJSON) share: attribute values coerced from text,
land-cover and BGT road classes, and the extent check that catches a wrong CRS or a wrong store."""

from __future__ import annotations

import math
import re
from typing import Any

import shapely

from data_models import LandCoverClass
from twin.geo.crs import outside_area_of_use, same_horizontal
from twin.sources.base import ReadContext

# BGT wegdeel 'function' -> OSM-style road class
BGT_ROAD_CLASS = {
    "rijbaan autosnelweg": "motorway", "rijbaan autoweg": "trunk", "rijbaan regionale weg": "secondary",
    "rijbaan lokale weg": "residential", "voetpad": "footway", "voetpad op trap": "steps",
    "voetgangersgebied": "pedestrian", "fietspad": "cycleway", "ruiterpad": "bridleway", "woonerf": "living_street",
    "parkeervlak": "parking", "inrit": "service", "baan voor vliegverkeer": "aeroway", "ov-baan": "busway",
    "overweg": "level_crossing", "transitie": "transition",
}
_TREE_WORDS = ("bos", "heester", "struik", "houtwal", "houtige", "boom", "forest", "wood", "tree", "shrub", "scrub")
_GRASS_WORDS = ("gras", "grass", "meadow", "lawn", "kruid", "weide", "grasland")
_BARE_WORDS = ("onverhard", "zand", "bare", "sand", "soil", "grond", "dirt")
_IMPERVIOUS_WORDS = ("verhard", "erf", "paved", "asphalt", "concrete", "impervious", "tegel", "klinker")




def to_float(v: Any) -> float | None:
    """A finite float from a number or numeric text ('12', '12.5 m'), else None."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        f = float(v)
    else:
        m = re.match(r"^\s*(-?\d+(?:[.,]\d+)?)", str(v))
        if not m:
            return None
        f = float(m.group(1).replace(",", "."))
    return f if math.isfinite(f) else None


def to_int(v: Any) -> int | None:
    """A non-negative integer from a number or numeric text ('3', '2.5' -> 2), else None."""
    f = to_float(v)
    return None if f is None or f < 0 else int(f)


def to_bool(v: Any) -> bool | None:
    """True/False from booleans, 1/0 and yes/no/true/false text (OSM '-1' = reversed one-way = True)."""
    if isinstance(v, bool):
        return v
    if v is None:
        return None
    s = str(v).strip().lower()
    if s in ("yes", "true", "1", "-1", "y", "t"):
        return True
    if s in ("no", "false", "0", "n", "f"):
        return False
    return None


def length_m(v: Any) -> float | None:
    """A length in metres from '12', '12 m', '12.5m', "40'" or '40 ft' (feet converted), else None."""
    if v is None:
        return None
    s = str(v).strip().lower()
    f = to_float(s)
    if f is None or f < 0:
        return None
    if s.endswith(("'", "ft", "feet")):
        f *= 0.3048
    return f


def speed_kmh(v: Any) -> float | None:
    """A speed in km/h from '50', '50 km/h', '30 mph' (converted), else None ('none', 'walk', 'FI:urban')."""
    f = to_float(v)
    if f is None or f <= 0:
        return None
    return f * 1.609344 if "mph" in str(v).lower() else f


def landcover_class(props: dict[str, Any], theme: str | None = None, explicit: str | None = None
                    ) -> LandCoverClass | None:
    """The land-cover class of a feature: explicit > a class-valued property > keywords in its values > theme."""
    if explicit:
        return LandCoverClass(explicit)
    for key in ("cover_class", "landcover", "land_cover", "class"):
        v = props.get(key)
        if isinstance(v, str) and v.strip().lower() in LandCoverClass.__members__:
            return LandCoverClass(v.strip().lower())
    text = " ".join(str(props.get(k, "")) for k in (
        "plus_fysiekvoorkomen", "bgt_fysiekvoorkomen", "fysiekvoorkomen", "class", "landuse", "landcover", "natural",
        "function", "surface")).lower()
    if theme == "onbegroeidterreindeel":  # bare land: unpaved -> bare, any paving (or a yard) -> impervious
        return LandCoverClass.bare if any(w in text for w in _BARE_WORDS) else LandCoverClass.impervious
    if any(w in text for w in _TREE_WORDS):
        return LandCoverClass.tree
    if any(w in text for w in _GRASS_WORDS) or theme == "begroeidterreindeel":
        return LandCoverClass.grass
    if "water" in text:
        return LandCoverClass.water
    if any(w in text for w in _BARE_WORDS):
        return LandCoverClass.bare
    if any(w in text for w in _IMPERVIOUS_WORDS):
        return LandCoverClass.impervious
    return None


def extent(geoms) -> list[float]:
    """[xmin, ymin, xmax, ymax] of geometries."""
    return [float(v) for v in shapely.total_bounds(geoms)]


def check_extent(ctx: ReadContext, bbox: list[float], crs: str) -> None:
    """Refuse data whose bbox misses the area of use of its CRS (wrong CRS) or of the store CRS (wrong store)."""
    why = outside_area_of_use(bbox, crs)
    if why:
        raise ctx.fail(why)
    if ctx.store_crs and not same_horizontal(crs, ctx.store_crs):
        why = outside_area_of_use(bbox, crs, against=ctx.store_crs)
        if why:
            raise ctx.fail(why.replace("area of use of", "area of use of the store CRS")
                           .replace("wrong CRS?", "this source does not belong in this store"))
