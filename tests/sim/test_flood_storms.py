"""Design storms: the storm-intensity formula against the formula written out here, the Chicago hyetograph against
the IDF depths it must hold and against numeric integration of the Keifer-Chu intensity."""

import math

import pytest
from scipy.integrate import quad

from data_models.scenarios import RainfallEvent
from twin.sim.flood import storms
from twin.sim.flood.storms import BEIJING, PRESETS, IntensityFormula, chicago, design_storm, formula

MM_MIN_PER_L_S_HA = 6.0 / 1000.0  # 1 L/(s·ha) = 1e-3 m³/s over 1e4 m² = 6e-3 mm/min


def beijing_q(t: float, p: float) -> float:
    """The Beijing formula as published, L/(s·ha)."""
    return 2001.0 * (1.0 + 0.811 * math.log10(p)) / (t + 8.0) ** 0.711


def idf_depth(f: IntensityFormula, t: float, p: float) -> float:
    """F(t) = A1 (1 + C lg P) t / (t + b)^n, mm, written out independently of the module."""
    return f.a1 * (1.0 + f.c * math.log10(p)) * t / (t + f.b) ** f.n


def step_depths(hyetograph: list[float], step: float) -> list[float]:
    return [h * step / 60.0 for h in hyetograph]


CUSTOM = IntensityFormula(name="custom", a1=9.5, c=0.9, b=12.0, n=0.78, source="test")
NO_B = IntensityFormula(name="no-b", a1=6.0, c=1.1, b=0.0, n=0.6, source="test")


def test_beijing_formula_matches_published_form():
    assert BEIJING.a1 == pytest.approx(12.006, rel=1e-12)
    assert (BEIJING.c, BEIJING.b, BEIJING.n) == (0.811, 8.0, 0.711)
    assert "2001" in BEIJING.source and "DB11/685-2013" in BEIJING.source
    for t, p in [(60, 100), (5, 1), (120, 50), (1440, 3), (30, 0.5)]:
        expected = beijing_q(t, p) * MM_MIN_PER_L_S_HA * 60.0
        assert BEIJING.intensity_mm_h(t, p) == pytest.approx(expected, rel=1e-12)
        assert BEIJING.depth_mm(t, p) == pytest.approx(expected * t / 60.0, rel=1e-12)
    assert 93.5 < BEIJING.intensity_mm_h(60, 100) < 94.5
    assert BEIJING.depth_mm(60, 100) == pytest.approx(BEIJING.intensity_mm_h(60, 100), rel=1e-12)  # 1 h


def test_intensity_falls_with_duration_and_rises_with_return_period():
    assert BEIJING.intensity_mm_h(10, 5) > BEIJING.intensity_mm_h(60, 5) > BEIJING.intensity_mm_h(180, 5)
    assert BEIJING.intensity_mm_h(60, 2) < BEIJING.intensity_mm_h(60, 10) < BEIJING.intensity_mm_h(60, 100)
    assert BEIJING.depth_mm(60, 10) < BEIJING.depth_mm(180, 10)


def test_formula_from_name_and_dict():
    assert PRESETS == {"beijing": BEIJING}
    assert formula("beijing") is BEIJING and formula(" Beijing ") is BEIJING and formula(BEIJING) is BEIJING
    by_a1 = formula({"a1": 12.006, "c": 0.811, "b": 8, "n": 0.711})
    by_a = formula({"a": 2001, "c": 0.811, "b": 8, "n": 0.711, "name": "bj", "source": "x"})
    assert by_a1.name == "custom" and (by_a.name, by_a.source) == ("bj", "x")
    assert by_a.a1 == pytest.approx(by_a1.a1, rel=1e-12)
    assert by_a.intensity_mm_h(60, 100) == pytest.approx(BEIJING.intensity_mm_h(60, 100), rel=1e-12)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("tokyo", "tokyo"),
        ({"a1": 10, "c": 0.8, "b": 8, "n": 0.7, "m": 1}, "'m'"),
        ({"c": 0.8, "b": 8, "n": 0.7}, "'a1'"),
        ({"a1": 10, "c": 0.8, "n": 0.7}, "'b'"),
        ({"a1": 10, "a": 1600, "c": 0.8, "b": 8, "n": 0.7}, "not both"),
        ({"a1": 10, "c": 0.8, "b": 8, "n": 1.2}, "n must"),
        ({"a1": -1, "c": 0.8, "b": 8, "n": 0.7}, "a1 must"),
        ({"a1": 10, "c": "0.8", "b": 8, "n": 0.7}, "c must"),
        ({"a": None, "c": 0.8, "b": 8, "n": 0.7}, "a must"),
        ({"a1": 10, "c": 0.8, "b": -3, "n": 0.7}, "b must"),
        (42, "int"),
    ],
)
def test_formula_errors_name_the_bad_key(spec, match):
    with pytest.raises(ValueError, match=match):
        formula(spec)


@pytest.mark.parametrize(
    "f, p, total, step, r",
    [(BEIJING, 100, 60, 5, 0.4), (BEIJING, 2, 120, 10, 0.35), (CUSTOM, 50, 180, 5, 0.6), (NO_B, 10, 90, 3, 0.2)],
)
def test_total_depth_is_the_idf_depth(f, p, total, step, r):
    h = chicago(f, p, total, step_min=step, peak=r)
    assert len(h) == round(total / step) and all(x > 0 for x in h)
    assert math.fsum(step_depths(h, step)) == pytest.approx(idf_depth(f, total, p), rel=1e-9)


@pytest.mark.parametrize(
    "f, p, total, step, r, every",
    [
        (BEIJING, 100, 60, 5, 0.5, 2),  # peak at 30 min: windows of 10, 20, ..., 60 min split 1:1 on step edges
        (BEIJING, 20, 100, 5, 0.4, 5),  # peak at 40 min: windows of 25, 50, 75, 100 min split 2:3
        (CUSTOM, 5, 80, 5, 0.25, 4),  # peak at 20 min: windows of 20, ..., 80 min split 1:3
    ],
)
def test_windows_split_about_the_peak_hold_the_idf_depth(f, p, total, step, r, every):
    depths = step_depths(chicago(f, p, total, step_min=step, peak=r), step)
    k_peak = round(r * total / step)
    assert k_peak * step == pytest.approx(r * total)  # the peak lies on a step edge
    checked = 0
    for m in range(1, len(depths) + 1):
        windows = [math.fsum(depths[i : i + m]) for i in range(len(depths) - m + 1)]
        assert max(windows) <= idf_depth(f, m * step, p) * (1 + 1e-12)  # no window beats the formula
        if m % every == 0:
            start = k_peak - round(r * m)  # split r : (1 - r) about the peak
            assert windows[start] == pytest.approx(idf_depth(f, m * step, p), rel=1e-9)
            assert windows[start] == pytest.approx(max(windows), rel=1e-12)
            checked += 1
    assert checked == len(depths) // every


@pytest.mark.parametrize(
    "f, total, step, r, k_peak",
    [
        (BEIJING, 60, 5, 0.4, 4),  # peak at 24 min, inside step 4 (20-25)
        (BEIJING, 120, 5, 0.33, 8),  # 39.6 min, 0.4 min before step 7 ends: step 8 gets more of the slow fall
        (CUSTOM, 180, 10, 0.7, 12),  # 126 min
        (BEIJING, 80, 5, 0.25, 4),  # 20 min, on an edge: r < 0.5 the later step
        (BEIJING, 80, 5, 0.75, 11),  # 60 min, on an edge: r > 0.5 the earlier step
    ],
)
def test_peak_step_and_single_peak(f, total, step, r, k_peak):
    h = chicago(f, 10, total, step_min=step, peak=r)
    assert h.index(max(h)) == k_peak
    assert abs(k_peak - math.floor(r * total / step)) <= 1
    assert all(a < b for a, b in zip(h[:k_peak], h[1 : k_peak + 1], strict=True))
    assert all(a > b for a, b in zip(h[k_peak:-1], h[k_peak + 1 :], strict=True))


def test_largest_step_holds_the_peak_or_borders_it():
    for r in [i / 100 for i in range(5, 96)]:
        h = chicago(BEIJING, 10, 60, step_min=5, peak=r)
        k = h.index(max(h))
        holding = min(math.floor(r * 60 / 5), 11)
        assert k in (holding - 1, holding, holding + 1)
        assert k == holding or abs(r * 60 - 5 * (holding + (k > holding))) < 2.5  # a neighbour only near an edge


def test_even_split_on_an_edge_gives_two_equal_peak_steps():
    h = chicago(BEIJING, 10, 60, step_min=5, peak=0.5)
    assert h[5] == pytest.approx(h[6], rel=1e-12) and max(h) == pytest.approx(h[5], rel=1e-12)
    assert h[:6] == pytest.approx(h[6:][::-1], rel=1e-9)  # r = 0.5: symmetric about the peak


@pytest.mark.parametrize("f, p, total, step, r", [(BEIJING, 100, 60, 5, 0.4), (CUSTOM, 3, 90, 2, 0.65)])
def test_step_depths_match_integrated_keifer_chu_intensity(f, p, total, step, r):
    a, b, n = f.a1 * (1 + f.c * math.log10(p)), f.b, f.n
    tp = r * total

    def rate(t: float) -> float:  # mm/min at time t from the start
        x = (tp - t) / r if t < tp else (t - tp) / (1 - r)
        return a * ((1 - n) * x + b) / (x + b) ** (1 + n)

    h = chicago(f, p, total, step_min=step, peak=r)
    for k, depth in enumerate(step_depths(h, step)):
        t0, t1 = k * step, (k + 1) * step
        reference, _ = quad(rate, t0, t1, points=[tp] if t0 < tp < t1 else None, epsabs=0, epsrel=1e-12)
        assert depth == pytest.approx(reference, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"peak": 0}, "peak"),
        ({"peak": 1}, "peak"),
        ({"peak": -0.2}, "peak"),
        ({"step_min": 0}, "step_min"),
        ({"step_min": -5}, "step_min"),
        ({"step_min": 7}, "step_min"),  # 60 min is not a multiple of 7
        ({"step_min": 90}, "step_min"),
        ({"duration_min": 0}, "duration_min"),
        ({"duration_min": 62.5}, "step_min"),
        ({"return_period_years": 0}, "return_period_years"),
        ({"return_period_years": -10}, "return_period_years"),
        ({"return_period_years": 0.01}, "return_period_years"),  # 1 + C lg P <= 0
    ],
)
def test_chicago_refuses_bad_arguments(kwargs, match):
    args = {"return_period_years": 10, "duration_min": 60, "step_min": 5, "peak": 0.4} | kwargs
    with pytest.raises(ValueError, match=match):
        chicago(BEIJING, **args)


def test_design_storm_builds_a_rainfall_event():
    storm = design_storm("beijing", 100, 60, step_min=5, peak=0.4)
    assert storm["hyetograph"] == chicago(BEIJING, 100, 60, step_min=5, peak=0.4)
    assert (storm["step_min"], storm["duration_min"]) == (5.0, 60.0)
    assert storm["intensity_mm_h"] == max(storm["hyetograph"])
    assert storm["depth_mm"] == pytest.approx(idf_depth(BEIJING, 60, 100), rel=1e-9)
    assert storm["formula"] == {
        "name": "beijing",
        "a1": BEIJING.a1,
        "c": 0.811,
        "b": 8.0,
        "n": 0.711,
        "source": BEIJING.source,
    }
    event = RainfallEvent(
        intensity_mm_h=storm["intensity_mm_h"], duration_min=storm["duration_min"], hyetograph=storm["hyetograph"]
    )
    assert event.step_min == pytest.approx(5.0)
    assert event.total_depth_mm() == pytest.approx(storm["depth_mm"], rel=1e-12)
    custom = design_storm({"a": 1600, "c": 0.8, "b": 10, "n": 0.75}, 5, 120, step_min=10, peak=0.5)
    assert len(custom["hyetograph"]) == 12 and custom["formula"]["a1"] == pytest.approx(1600 * MM_MIN_PER_L_S_HA)
    assert storms.L_S_HA_PER_MM_MIN == pytest.approx(1000 / 6)
