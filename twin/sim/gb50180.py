"""GB 50180-2018 (城市居住区规划设计标准) Table 4.0.9: the sunlight standard of dwellings by climate zone and city size.

| climate zone | city ≥ 50万 residents | city < 50万 |
|---|---|---|
| I, II, III, VII | 大寒日 ≥ 2 h | 大寒日 ≥ 3 h |
| IV | 大寒日 ≥ 3 h | 冬至日 ≥ 1 h |
| V, VI | 冬至日 ≥ 1 h | 冬至日 ≥ 1 h |

The effective sunlight window (有效日照时间带) is 8:00-16:00 true solar time on 大寒日 and 9:00-15:00 on 冬至日; hours
are counted at the ground-floor windowsill (底层窗台面).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

ClimateZone = Literal["I", "II", "III", "IV", "V", "VI", "VII"]
StandardDay = Literal["dahan", "dongzhi"]

CLIMATE_ZONES: tuple[str, ...] = ("I", "II", "III", "IV", "V", "VI", "VII")
LARGE_CITY_10K = 50.0  # 50万 residents, in units of 10,000 (万)
#: the effective window (true solar time, hours) of each standard day
WINDOWS: dict[str, tuple[float, float]] = {"dahan": (8.0, 16.0), "dongzhi": (9.0, 15.0)}
DAY_NAMES = {"dahan": "大寒日", "dongzhi": "冬至日"}


class Requirement(NamedTuple):
    """What GB 50180 Table 4.0.9 asks: the standard day, the hours of sun, the window in true solar time."""

    day: StandardDay
    hours: float
    start_tst: float
    end_tst: float


def requirement(climate_zone: str, city_population_10k: float) -> Requirement:
    """The Table 4.0.9 requirement for a climate zone (I..VII) and a city of that many 万 (10,000) residents."""
    if climate_zone not in CLIMATE_ZONES:
        raise ValueError(f"climate_zone: must be one of {', '.join(CLIMATE_ZONES)}, got {climate_zone!r}")
    if city_population_10k < 0:
        raise ValueError(f"city_population_10k: must be >= 0, got {city_population_10k}")
    large = city_population_10k >= LARGE_CITY_10K
    if climate_zone in ("I", "II", "III", "VII"):
        day, hours = "dahan", (2.0 if large else 3.0)
    elif climate_zone == "IV":
        day, hours = ("dahan", 3.0) if large else ("dongzhi", 1.0)
    else:  # V, VI
        day, hours = "dongzhi", 1.0
    start, end = WINDOWS[day]
    return Requirement(day, hours, start, end)  # type: ignore[arg-type]
