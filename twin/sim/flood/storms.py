"""Design storms for the pluvial flood simulator: rain hyetographs from Chinese storm-intensity formulas.

A city's storm-intensity formula (暴雨强度公式, the standard form of GB 50014-2021 室外排水设计标准 §4.1) gives the
mean intensity of the heaviest rain of a duration for a return period; the Chicago method (Keifer & Chu 1957) turns
it into a single-peaked hyetograph whose every window centred on the peak holds the formula's depth for that
duration, which is what a flood run needs as its rain input (:class:`data_models.RainfallEvent`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any

import numpy as np

L_S_HA_PER_MM_MIN = 1000.0 / 6.0
"""1 mm/min over one hectare is 10 m³/min = 166.67 L/s, exactly 1000/6; the standard rounds it to 167."""


@dataclass(frozen=True)
class IntensityFormula:
    """A storm-intensity formula of the Chinese standard form::

        q = 167 A1 (1 + C lg P) / (t + b)^n   L/(s·ha),    i = A1 (1 + C lg P) / (t + b)^n   mm/min

    t: duration (min), P: return period (years), ``a1`` = A1 in mm/min, ``c`` = C, ``b`` in min, ``n`` in (0, 1).
    """

    name: str
    a1: float
    c: float
    b: float
    n: float
    source: str = ""

    def __post_init__(self) -> None:
        for key in ("a1", "c", "b", "n"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise ValueError(f"storm-intensity formula {self.name!r}: {key} must be a finite number, got {value!r}")
            object.__setattr__(self, key, float(value))  # plain floats, whatever numeric type came in
        if self.a1 <= 0:
            raise ValueError(f"storm-intensity formula {self.name!r}: a1 must be > 0 mm/min, got {self.a1}")
        if self.c < 0:
            raise ValueError(f"storm-intensity formula {self.name!r}: c must be >= 0, got {self.c}")
        if self.b < 0:
            raise ValueError(f"storm-intensity formula {self.name!r}: b must be >= 0 min, got {self.b}")
        if not 0 < self.n < 1:
            raise ValueError(f"storm-intensity formula {self.name!r}: n must be in (0, 1), got {self.n}")

    def a(self, return_period_years: float) -> float:
        """A1 (1 + C lg P), mm/min·min^n: the formula's numerator for return period P."""
        p = return_period_years
        if not (isinstance(p, Real) and math.isfinite(p) and p > 0):
            raise ValueError(f"return_period_years must be a finite number > 0, got {p!r}")
        value = self.a1 * (1.0 + self.c * math.log10(p))
        if value <= 0:
            raise ValueError(f"return_period_years={p} gives 1 + C lg P <= 0 in formula {self.name!r}")
        return value

    def depth_mm(self, duration_min: float, return_period_years: float) -> float:
        """Rain depth (mm) of the heaviest ``duration_min`` for the return period: i·t."""
        return float(_depth(self.a(return_period_years), self.b, self.n, _duration(duration_min)))

    def intensity_mm_h(self, duration_min: float, return_period_years: float) -> float:
        """Mean intensity (mm/h) over the heaviest ``duration_min`` for the return period."""
        t = _duration(duration_min)
        return 60.0 * self.a(return_period_years) / (t + self.b) ** self.n


BEIJING = IntensityFormula(
    name="beijing",
    a1=2001.0 / L_S_HA_PER_MM_MIN,
    c=0.811,
    b=8.0,
    n=0.711,
    source="给水排水设计手册 (城镇排水): Beijing urban area, q = 2001(1 + 0.811 lg P)/(t + 8)^0.711 L/(s·ha), "
    "in use before the zoned formulas of DB11/685-2013",
)
"""Beijing (urban area): q = 2001 (1 + 0.811 lg P) / (t + 8)^0.711 L/(s·ha), from 给水排水设计手册 (城镇排水), the
formula in use before DB11/685-2013 zoned the city. A1 = 2001 / (1000/6) = 12.006 mm/min, by the exact conversion
(:data:`L_S_HA_PER_MM_MIN`) rather than the standard's rounded 167 (0.2 % apart). P = 100 y, t = 60 min: 94.0 mm/h."""

PRESETS: dict[str, IntensityFormula] = {"beijing": BEIJING}

_FORMULA_KEYS = {"name", "a1", "a", "c", "b", "n", "source"}


def formula(name_or_dict: str | Mapping[str, Any] | IntensityFormula) -> IntensityFormula:
    """An :class:`IntensityFormula` from a preset name (:data:`PRESETS`), a formula, or a mapping of ``c``, ``b``,
    ``n`` and either ``a1`` (mm/min) or ``a`` = 167·A1 (L/(s·ha), converted by the exact 1000/6), optionally
    ``name`` and ``source``."""
    if isinstance(name_or_dict, IntensityFormula):
        return name_or_dict
    if isinstance(name_or_dict, str):
        key = name_or_dict.strip().lower()
        if key not in PRESETS:
            raise ValueError(f"unknown storm-intensity preset {name_or_dict!r}; presets: {', '.join(sorted(PRESETS))}")
        return PRESETS[key]
    if not isinstance(name_or_dict, Mapping):
        raise ValueError(f"a storm-intensity formula is a preset name or a dict, got {type(name_or_dict).__name__}")
    spec = dict(name_or_dict)
    unknown = sorted(str(k) for k in spec if k not in _FORMULA_KEYS)
    if unknown:
        raise ValueError(
            f"unknown storm-intensity formula key {unknown[0]!r}; keys: a1 (mm/min) or a (L/s/ha), c, b, n"
        )
    if "a1" in spec and "a" in spec:
        raise ValueError("storm-intensity formula: give a1 (mm/min) or a (L/s/ha), not both")
    if "a1" not in spec and "a" not in spec:
        raise ValueError("storm-intensity formula: missing key 'a1' (mm/min) or 'a' (L/s/ha)")
    for key in ("c", "b", "n"):
        if key not in spec:
            raise ValueError(f"storm-intensity formula: missing key {key!r}")
    if "a" in spec:
        a = spec.pop("a")
        if isinstance(a, bool) or not isinstance(a, Real):
            raise ValueError(f"storm-intensity formula: a must be a finite number, got {a!r}")
        spec["a1"] = a / L_S_HA_PER_MM_MIN
    return IntensityFormula(
        name=str(spec.get("name", "custom")),
        a1=spec["a1"],
        c=spec["c"],
        b=spec["b"],
        n=spec["n"],
        source=str(spec.get("source", "")),
    )


def chicago(
    formula: IntensityFormula, return_period_years: float, duration_min: float, step_min: float = 5.0, peak: float = 0.4
) -> list[float]:
    """Chicago design storm (Keifer & Chu 1957): mean intensities (mm/h) over equal steps of ``step_min`` spanning
    ``duration_min``, peaking at ``peak``·duration.

    With F(t) = a t / (t + b)^n the formula's depth (mm) for t minutes, the depth within tb before the peak is
    r F(tb/r) and within ta after it (1 − r) F(ta/(1 − r)), r = ``peak``; each step gets the exact depth between its
    edges (no numeric integration), so the storm holds F(duration) and every window split r : (1 − r) about the peak
    holds F(window). The hyetograph rises to its largest step and falls after it; that is the step holding the
    peak instant r·duration or one beside it: the side with the larger share (after the peak for r < 0.5) falls off
    more slowly, so when the peak lies on or near a step edge the step on that side can hold more (equal at r = 0.5
    with the peak on an edge).
    """
    if not (isinstance(peak, Real) and 0 < peak < 1):
        raise ValueError(f"peak must be in (0, 1), got {peak!r}")
    if not (isinstance(step_min, Real) and math.isfinite(step_min) and step_min > 0):
        raise ValueError(f"step_min must be a finite number > 0, got {step_min!r}")
    total = _duration(duration_min)
    steps = round(total / step_min)
    if steps < 1 or abs(steps * step_min - total) > 1e-9 * total:
        raise ValueError(
            f"duration_min ({duration_min}) must be a positive multiple of step_min ({step_min}): the steps are equal"
        )
    a = formula.a(return_period_years)
    r = float(peak)
    edges = np.linspace(0.0, total, steps + 1)
    tp = r * total
    before_far, before_near = np.clip(tp - edges[:-1], 0.0, None), np.clip(tp - edges[1:], 0.0, None)
    after_far, after_near = np.clip(edges[1:] - tp, 0.0, None), np.clip(edges[:-1] - tp, 0.0, None)
    b, n = formula.b, formula.n
    depth = r * (_depth(a, b, n, before_far / r) - _depth(a, b, n, before_near / r)) + (1.0 - r) * (
        _depth(a, b, n, after_far / (1.0 - r)) - _depth(a, b, n, after_near / (1.0 - r))
    )
    return [float(x) for x in depth * (60.0 / step_min)]


def design_storm(
    preset_or_formula: str | Mapping[str, Any] | IntensityFormula,
    return_period_years: float,
    duration_min: float,
    step_min: float = 5.0,
    peak: float = 0.4,
) -> dict[str, Any]:
    """A Chicago design storm as a dict: ``hyetograph`` (mm/h per step), ``step_min``, ``duration_min``,
    ``intensity_mm_h`` (the peak), ``depth_mm`` (total) and ``formula``; ``intensity_mm_h``, ``duration_min`` and
    ``hyetograph`` make a :class:`data_models.RainfallEvent` as they are."""
    f = formula(preset_or_formula)
    hyetograph = chicago(f, return_period_years, duration_min, step_min=step_min, peak=peak)
    return {
        "hyetograph": hyetograph,
        "step_min": float(step_min),
        "duration_min": float(duration_min),
        "intensity_mm_h": max(hyetograph),
        "depth_mm": sum(hyetograph) * (float(duration_min) / len(hyetograph)) / 60.0,
        "formula": asdict(f),
    }


def _duration(duration_min: float) -> float:
    if not (isinstance(duration_min, Real) and math.isfinite(duration_min) and duration_min > 0):
        raise ValueError(f"duration_min must be a finite number > 0, got {duration_min!r}")
    return float(duration_min)


def _depth(a: float, b: float, n: float, t: float | np.ndarray) -> Any:
    """F(t) = a t / (t + b)^n: the formula's depth (mm) for t minutes (0 at t = 0, also when b = 0)."""
    t = np.asarray(t, dtype=float)
    safe = np.where(t > 0, t, 1.0)
    return np.where(t > 0, a * safe / (safe + b) ** n, 0.0)
