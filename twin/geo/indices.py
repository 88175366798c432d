"""Spectral indices from named reflectance bands (masked arrays from :func:`twin.sources.imagery.read_bands`).

* NDVI = (NIR − red) / (NIR + red) — vegetation (Rouse et al. 1974).
* NDWI = (green − NIR) / (green + NIR) — open water (McFeeters 1996).
* NDBI = (SWIR1 − NIR) / (SWIR1 + NIR) — built-up (Zha et al. 2003); needs a short-wave infrared band, so it is
  None for RGB+NIR imagery (aerial, most very-high-resolution satellites), with a note saying why.

Division is safe: where the denominator is 0 (or not finite) the result is masked, never inf/NaN, and every
no-data pixel of an input stays masked. Results are float32 and clipped to [-1, 1] (negative reflectances from
noise or over-corrected offsets would otherwise push a normalised difference outside its range).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

Bands = Mapping[str, np.ndarray]


def _masked(a: np.ndarray) -> np.ma.MaskedArray:
    m = np.ma.asarray(a, dtype=np.float32)
    return np.ma.masked_invalid(m)


def safe_divide(num: np.ndarray, den: np.ndarray) -> np.ma.MaskedArray:
    """num / den as float32, masked where den is 0 or either side is masked or not finite."""
    n, d = _masked(num), _masked(den)
    bad = np.ma.getmaskarray(n) | np.ma.getmaskarray(d) | (np.ma.getdata(d) == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.ma.getdata(n) / np.where(bad, np.float32(1), np.ma.getdata(d))
    return np.ma.MaskedArray(q.astype(np.float32), mask=bad | ~np.isfinite(q))


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ma.MaskedArray:
    """(a − b) / (a + b), masked where undefined, clipped to [-1, 1]."""
    a, b = _masked(a), _masked(b)
    return np.ma.clip(safe_divide(a - b, a + b), -1.0, 1.0)


def _need(bands: Bands, *names: str) -> list[np.ndarray]:
    missing = [n for n in names if n not in bands]
    if missing:
        raise KeyError(f"the index needs band(s) {', '.join(missing)}; have {', '.join(bands) or 'none'}")
    return [bands[n] for n in names]


def ndvi(bands: Bands) -> np.ma.MaskedArray:
    """Normalised difference vegetation index from 'nir' and 'red'."""
    nir, red = _need(bands, "nir", "red")
    return normalized_difference(nir, red)


def ndwi(bands: Bands) -> np.ma.MaskedArray:
    """McFeeters' normalised difference water index from 'green' and 'nir'."""
    green, nir = _need(bands, "green", "nir")
    return normalized_difference(green, nir)


def ndbi(bands: Bands) -> np.ma.MaskedArray | None:
    """Normalised difference built-up index from 'swir1' (or 'swir') and 'nir'; None when there is no SWIR."""
    swir = bands.get("swir1", bands.get("swir"))
    if swir is None or "nir" not in bands:
        return None
    return normalized_difference(swir, bands["nir"])


def brightness(bands: Bands) -> np.ma.MaskedArray:
    """Mean visible reflectance (red, green, blue where present) — albedo proxy for roofs, soil, asphalt."""
    vis = [_masked(bands[n]) for n in ("red", "green", "blue") if n in bands]
    if not vis:
        raise KeyError(f"brightness needs red/green/blue bands; have {', '.join(bands) or 'none'}")
    return (sum(vis[1:], vis[0]) / np.float32(len(vis))).astype(np.float32)


def redness(bands: Bands) -> np.ma.MaskedArray:
    """(red − blue) / (red + blue): high for soil, clay and red tiles, near 0 for grey asphalt and concrete."""
    red, blue = _need(bands, "red", "blue")
    return normalized_difference(red, blue)


@dataclass
class SpectralIndices:
    """The indices one set of bands supports; an index that cannot be computed is None and says why in notes."""

    ndvi: np.ma.MaskedArray | None
    ndwi: np.ma.MaskedArray | None
    ndbi: np.ma.MaskedArray | None
    brightness: np.ma.MaskedArray | None
    redness: np.ma.MaskedArray | None
    notes: list[str] = field(default_factory=list)


def spectral_indices(bands: Bands) -> SpectralIndices:
    """All indices the given bands allow (NDVI, NDWI, NDBI, brightness, redness), None + a note for the rest."""
    notes: list[str] = []

    def attempt(name: str, fn):
        try:
            return fn(bands)
        except KeyError as exc:
            notes.append(f"{name}: {exc.args[0]}")
            return None

    out = SpectralIndices(
        ndvi=attempt("ndvi", ndvi), ndwi=attempt("ndwi", ndwi), ndbi=None,
        brightness=attempt("brightness", brightness), redness=attempt("redness", redness), notes=notes,
    )
    out.ndbi = ndbi(bands)
    if out.ndbi is None:
        notes.append("ndbi: no SWIR band (swir1) in the imagery, NDBI is not available")
    return out
