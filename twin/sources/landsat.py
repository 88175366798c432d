"""Landsat level-1 calibration: MTL metadata, radiance, top-of-atmosphere reflectance, brightness temperature.

Digital numbers become at-sensor radiance ``L = RADIANCE_MULT_BAND_n * DN + RADIANCE_ADD_BAND_n`` (older MTLs:
from ``LMAX/LMIN/QCALMAX/QCALMIN``), then TOA reflectance ``ρ = π L d² / (ESUN cos θs)`` with the sensor's mean
exoatmospheric irradiance (Chander, Markham & Helder 2009, *Remote Sens. Environ.* 113:893), the solar zenith
``θs = 90° − SUN_ELEVATION`` from the MTL and the Earth–Sun distance ``d`` (AU) of the acquisition time. When the
MTL has ``REFLECTANCE_MULT/ADD_BAND_n`` (Collection 1/2, OLI) those are used instead: ``ρ = (M DN + A) / sin(elev)``.
Thermal bands give brightness temperature ``T = K2 / ln(K1 / L + 1)`` in kelvin. The solar position and the
Earth–Sun distance follow the NOAA solar calculator (Meeus, *Astronomical Algorithms*); with it a scene's MTL sun
angles can be checked, or filled in when an MTL lacks them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np

from twin.sources.base import SourceError

# mean exoatmospheric solar irradiance ESUN, W/(m² µm), per band (Chander et al. 2009)
ESUN = {
    ("LANDSAT_4", "TM"): {"1": 1983.0, "2": 1795.0, "3": 1539.0, "4": 1028.0, "5": 219.8, "7": 83.49},
    ("LANDSAT_5", "TM"): {"1": 1983.0, "2": 1796.0, "3": 1536.0, "4": 1031.0, "5": 220.0, "7": 83.44},
    ("LANDSAT_7", "ETM"): {"1": 1997.0, "2": 1812.0, "3": 1533.0, "4": 1039.0, "5": 230.8, "7": 84.90,
                           "8": 1362.0},
}
# thermal calibration constants K1 (W/(m² sr µm)), K2 (K) where older MTLs do not carry them (Chander et al. 2009)
THERMAL_K = {("LANDSAT_4", "TM"): (671.62, 1284.30), ("LANDSAT_5", "TM"): (607.76, 1260.56),
             ("LANDSAT_7", "ETM"): (666.09, 1282.71)}
_TM_NAMES = {"1": "blue", "2": "green", "3": "red", "4": "nir", "5": "swir1", "6": "tir", "7": "swir2"}
BAND_NAMES = {
    "TM": _TM_NAMES,
    "ETM": {**_TM_NAMES, "6_VCID_1": "tir", "6_VCID_2": "tir_high_gain", "8": "pan"},
    "OLI_TIRS": {"1": "coastal", "2": "blue", "3": "green", "4": "red", "5": "nir", "6": "swir1", "7": "swir2",
                 "8": "pan", "9": "cirrus", "10": "tir1", "11": "tir2"},
}
BAND_NAMES["OLI"] = BAND_NAMES["OLI_TIRS"]
_BAND_FILE = re.compile(r"^(?P<scene>.+)_B(?P<band>\d+(?:_VCID_\d)?)\.TIF{1,2}$", re.IGNORECASE)


@dataclass
class Scene:
    """A parsed MTL: flat key → value (quotes stripped), plus the facts every band needs."""

    path: Path
    values: dict[str, str] = field(default_factory=dict)

    def get(self, *keys: str) -> str | None:
        """The first of ``keys`` present in the MTL."""
        for k in keys:
            if k in self.values:
                return self.values[k]
        return None

    def number(self, *keys: str) -> float | None:
        """The first of ``keys`` present, as a float; an unparseable value is a SourceError."""
        for k in keys:
            if k in self.values:
                try:
                    return float(self.values[k])
                except ValueError:
                    raise SourceError(self.path, f"{k} = {self.values[k]!r} is not a number") from None
        return None

    @property
    def scene_id(self) -> str:
        return self.get("LANDSAT_SCENE_ID", "LANDSAT_PRODUCT_ID") or self.path.name.rsplit("_MTL", 1)[0]

    @property
    def spacecraft(self) -> str:
        raw = (self.get("SPACECRAFT_ID") or "").upper().replace(" ", "")
        m = re.search(r"(\d+)", raw)
        return f"LANDSAT_{m.group(1)}" if m else raw

    @property
    def sensor(self) -> str:
        s = (self.get("SENSOR_ID") or "").upper()
        return "ETM" if s.startswith("ETM") else s

    @property
    def acquired(self) -> datetime | None:
        d = self.get("DATE_ACQUIRED", "ACQUISITION_DATE")
        if not d:
            return None
        t = (self.get("SCENE_CENTER_TIME", "SCENE_CENTER_SCAN_TIME") or "00:00:00").rstrip("Z")
        hms, _, frac = t.partition(".")
        try:
            base = datetime.fromisoformat(f"{d}T{hms}").replace(tzinfo=UTC)
        except ValueError:
            raise SourceError(self.path, f"acquisition date/time {d} {t} is not readable") from None
        return base.replace(microsecond=int((frac + "000000")[:6])) if frac.isdigit() else base

    def centre_lat_lon(self) -> tuple[float, float] | None:
        """Scene centre as the mean of the four corner coordinates (latitude, longitude in degrees)."""
        lats = [self.number(f"CORNER_{c}_LAT_PRODUCT", f"PRODUCT_{c}_CORNER_LAT") for c in ("UL", "UR", "LL", "LR")]
        lons = [self.number(f"CORNER_{c}_LON_PRODUCT", f"PRODUCT_{c}_CORNER_LON") for c in ("UL", "UR", "LL", "LR")]
        if any(v is None for v in lats + lons):
            return None
        return sum(lats) / 4, sum(lons) / 4  # type: ignore[arg-type]


def is_mtl(path: Path | str) -> bool:
    """True for a Landsat metadata file name (``*_MTL.txt``)."""
    return Path(path).name.upper().endswith("_MTL.TXT")


def mtl_for(path: Path | str) -> Path | None:
    """The MTL of a Landsat band file (``<scene>_B<n>.TIF`` next to ``<scene>_MTL.txt``), the path itself for an
    MTL, else None."""
    path = Path(path)
    if is_mtl(path):
        return path
    m = _BAND_FILE.match(path.name)
    if not m:
        return None
    for suffix in ("_MTL.txt", "_MTL.TXT"):
        cand = path.with_name(m.group("scene") + suffix)
        if cand.exists():
            return cand
    return None


@lru_cache(maxsize=32)
def _parse(path: Path, mtime: float) -> Scene:
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise SourceError(path, f"cannot read the MTL ({exc})") from exc
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line == "END":
            break
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip().strip('"')
        if not sep or key in ("GROUP", "END_GROUP"):
            continue
        values.setdefault(key, value)
    if not values:
        raise SourceError(path, "not a Landsat MTL file (no KEY = VALUE lines)")
    return Scene(path=path, values=values)


def parse_mtl(path: Path | str) -> Scene:
    """Parse a Landsat MTL (latin-1: some carry non-UTF-8 bytes); cached per file and modification time."""
    path = Path(path)
    if not path.exists():
        raise SourceError(path, "no such MTL file")
    return _parse(path.resolve(), path.stat().st_mtime)


def band_files(scene: Scene) -> dict[str, Path]:
    """Band key ('3', '6_VCID_1', …) → band file path next to the MTL, in band order."""
    out: dict[str, Path] = {}
    for k, v in scene.values.items():
        m = re.fullmatch(r"FILE_NAME_BAND_(\d+(?:_VCID_\d)?)", k) or re.fullmatch(r"BAND(\d+)_FILE_NAME", k)
        if m:
            out[m.group(1)] = scene.path.with_name(v)
    return dict(sorted(out.items(), key=lambda kv: (int(kv[0].split("_")[0]), kv[0])))


def scene_files(mtl: Path | str) -> list[Path]:
    """The band files an MTL names (read with the scene, so a folder walk does not ingest them again)."""
    return list(band_files(parse_mtl(mtl)).values())


def band_of_file(scene: Scene, path: Path) -> str | None:
    """The band key of ``path`` in ``scene`` (matched by file name), or None."""
    name = Path(path).name.lower()
    return next((k for k, f in band_files(scene).items() if f.name.lower() == name), None)


def band_key(name: str) -> str | None:
    """'B3' / 'band3' / '3' → '3'; other names → None."""
    m = re.fullmatch(r"(?:b|band)?(\d+(?:_vcid_\d)?)", name.strip().lower())
    return m.group(1).upper() if m else None


def band_name(scene: Scene, key: str) -> str:
    """Spectral name of a band of the scene's sensor (red, nir, swir1 …); 'b<key>' when unknown."""
    return BAND_NAMES.get(scene.sensor, {}).get(key, f"b{key.lower()}")


def _is_thermal(scene: Scene, key: str) -> bool:
    return band_name(scene, key).startswith("tir")


def calibration(scene: Scene, key: str) -> dict:
    """Calibration facts of one band: radiance gain/offset, ESUN or reflectance gain/offset, sun, distance.

    Raises SourceError naming the MTL when the band's coefficients are absent.
    """
    mult = scene.number(f"RADIANCE_MULT_BAND_{key}")
    add = scene.number(f"RADIANCE_ADD_BAND_{key}")
    if mult is None or add is None:
        lmax, lmin = scene.number(f"RADIANCE_MAXIMUM_BAND_{key}", f"LMAX_BAND{key}"), scene.number(
            f"RADIANCE_MINIMUM_BAND_{key}", f"LMIN_BAND{key}")
        qmax, qmin = scene.number(f"QUANTIZE_CAL_MAX_BAND_{key}", f"QCALMAX_BAND{key}"), scene.number(
            f"QUANTIZE_CAL_MIN_BAND_{key}", f"QCALMIN_BAND{key}")
        if None in (lmax, lmin, qmax, qmin) or qmax == qmin:
            raise SourceError(scene.path, f"no radiometric rescaling coefficients for band {key} "
                                          f"(RADIANCE_MULT_BAND_{key} / RADIANCE_ADD_BAND_{key} or LMAX/LMIN)")
        mult = (lmax - lmin) / (qmax - qmin)  # type: ignore[operator]
        add = lmin - mult * qmin  # type: ignore[operator]
    out: dict = {"band": key, "band_name": band_name(scene, key), "radiance_mult": mult, "radiance_add": add,
                 "spacecraft": scene.spacecraft, "sensor": scene.sensor, "scene_id": scene.scene_id}
    if _is_thermal(scene, key):
        k1 = scene.number(f"K1_CONSTANT_BAND_{key}")
        k2 = scene.number(f"K2_CONSTANT_BAND_{key}")
        if k1 is None or k2 is None:
            k = THERMAL_K.get((scene.spacecraft, scene.sensor))
            if k is None:
                raise SourceError(scene.path, f"no thermal constants K1/K2 for band {key}")
            k1, k2 = k
        out.update(k1=k1, k2=k2, quantity="brightness_temperature_K")
        return out
    elev = sun_elevation(scene)
    out.update(sun_elevation=elev, sun_azimuth=scene.number("SUN_AZIMUTH"), quantity="toa_reflectance")
    rmult = scene.number(f"REFLECTANCE_MULT_BAND_{key}")
    radd = scene.number(f"REFLECTANCE_ADD_BAND_{key}")
    if rmult is not None and radd is not None:
        out.update(reflectance_mult=rmult, reflectance_add=radd, method="mtl-reflectance-rescaling")
        return out
    esun = ESUN.get((scene.spacecraft, scene.sensor), {}).get(key)
    if esun is None:
        raise SourceError(scene.path, f"no REFLECTANCE_MULT/ADD_BAND_{key} and no known ESUN for "
                                      f"{scene.spacecraft} {scene.sensor} band {key}")
    d = scene.number("EARTH_SUN_DISTANCE")
    if d is None:
        if scene.acquired is None:
            raise SourceError(scene.path, "no DATE_ACQUIRED: the Earth-Sun distance cannot be computed")
        d = earth_sun_distance(scene.acquired)
    out.update(esun=esun, earth_sun_distance_au=round(d, 6), method="radiance-esun-chander2009")
    return out


def sun_elevation(scene: Scene) -> float:
    """SUN_ELEVATION of the MTL, else the computed solar elevation at the scene centre and time."""
    elev = scene.number("SUN_ELEVATION")
    if elev is not None:
        return elev
    centre, t = scene.centre_lat_lon(), scene.acquired
    if centre is None or t is None:
        raise SourceError(scene.path, "no SUN_ELEVATION and no scene centre/time to compute it")
    return solar_position(t, *centre)[1]


def radiance(dn: np.ndarray, cal: dict) -> np.ndarray:
    """At-sensor spectral radiance (W/(m² sr µm)) from digital numbers."""
    return (np.asarray(dn, np.float32) * np.float32(cal["radiance_mult"]) + np.float32(cal["radiance_add"]))


def toa_reflectance(dn: np.ndarray, cal: dict) -> np.ndarray:
    """Top-of-atmosphere reflectance (unitless) from digital numbers, sun-angle corrected."""
    sin_e = math.sin(math.radians(cal["sun_elevation"]))
    if "reflectance_mult" in cal:
        rho = np.asarray(dn, np.float32) * np.float32(cal["reflectance_mult"]) + np.float32(cal["reflectance_add"])
        return (rho / np.float32(sin_e)).astype(np.float32)
    k = math.pi * cal["earth_sun_distance_au"] ** 2 / (cal["esun"] * sin_e)  # cos(zenith) = sin(elevation)
    return (radiance(dn, cal) * np.float32(k)).astype(np.float32)


def brightness_temperature(dn: np.ndarray, cal: dict) -> np.ndarray:
    """At-sensor brightness temperature (K) of a thermal band."""
    rad = np.maximum(radiance(dn, cal), np.float32(1e-6))
    return (np.float32(cal["k2"]) / np.log(np.float32(cal["k1"]) / rad + 1)).astype(np.float32)


def to_physical(scene: Scene, key: str, dn: np.ndarray) -> np.ndarray:
    """TOA reflectance for reflective bands, brightness temperature (K) for thermal ones."""
    cal = calibration(scene, key)
    if cal["quantity"] == "brightness_temperature_K":
        return brightness_temperature(dn, cal)
    return toa_reflectance(dn, cal)


# ------------------------------------------------------------------------------------------ sun and Earth orbit


def _julian_century(t: datetime) -> float:
    if t.tzinfo is None:
        raise ValueError("solar computations need a timezone-aware time")
    jd = (t - datetime(2000, 1, 1, 12, tzinfo=UTC)).total_seconds() / 86400.0 + 2451545.0
    return (jd - 2451545.0) / 36525.0


def _sun(jc: float) -> tuple[float, float, float, float, float]:
    """(geometric mean longitude °, mean anomaly °, eccentricity, true anomaly °, apparent longitude °)."""
    l0 = (280.46646 + jc * (36000.76983 + jc * 0.0003032)) % 360.0
    m = 357.52911 + jc * (35999.05029 - 0.0001537 * jc)
    e = 0.016708634 - jc * (0.000042037 + 0.0000001267 * jc)
    mr = math.radians(m)
    c = (math.sin(mr) * (1.914602 - jc * (0.004817 + 0.000014 * jc)) + math.sin(2 * mr) * (0.019993 - 0.000101 * jc)
         + math.sin(3 * mr) * 0.000289)
    omega = math.radians(125.04 - 1934.136 * jc)
    app_long = l0 + c - 0.00569 - 0.00478 * math.sin(omega)
    return l0, m, e, m + c, app_long


def earth_sun_distance(t: datetime) -> float:
    """Earth–Sun distance in astronomical units at time ``t`` (timezone-aware)."""
    _, _, e, v, _ = _sun(_julian_century(t))
    return 1.000001018 * (1 - e * e) / (1 + e * math.cos(math.radians(v)))


def solar_position(t: datetime, lat: float, lon: float) -> tuple[float, float]:
    """(azimuth clockwise from north, elevation) of the sun in degrees, without refraction (NOAA algorithm)."""
    jc = _julian_century(t)
    l0, m, e, _, app_long = _sun(jc)
    obliq = 23 + (26 + (21.448 - jc * (46.815 + jc * (0.00059 - jc * 0.001813))) / 60) / 60
    obliq += 0.00256 * math.cos(math.radians(125.04 - 1934.136 * jc))
    decl = math.asin(math.sin(math.radians(obliq)) * math.sin(math.radians(app_long)))
    y = math.tan(math.radians(obliq) / 2) ** 2
    l0r, mr = math.radians(l0), math.radians(m)
    eot = 4 * math.degrees(y * math.sin(2 * l0r) - 2 * e * math.sin(mr) + 4 * e * y * math.sin(mr) * math.cos(2 * l0r)
                           - 0.5 * y * y * math.sin(4 * l0r) - 1.25 * e * e * math.sin(2 * mr))
    tu = t.astimezone(UTC)
    minutes = tu.hour * 60 + tu.minute + (tu.second + tu.microsecond / 1e6) / 60
    tst = (minutes + eot + 4 * lon) % 1440
    ha = tst / 4 - 180 if tst / 4 >= 0 else tst / 4 + 180
    latr, har = math.radians(lat), math.radians(ha)
    cos_z = math.sin(latr) * math.sin(decl) + math.cos(latr) * math.cos(decl) * math.cos(har)
    zen = math.acos(max(-1.0, min(1.0, cos_z)))
    denom = math.cos(latr) * math.sin(zen)
    if abs(denom) < 1e-12:
        az = 180.0
    else:
        a = math.degrees(math.acos(max(-1.0, min(1.0, (math.sin(latr) * math.cos(zen) - math.sin(decl)) / denom))))
        az = (a + 180) % 360 if ha > 0 else (540 - a) % 360
    return az, 90.0 - math.degrees(zen)
