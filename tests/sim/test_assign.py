"""User equilibrium by bi-conjugate Frank-Wolfe against the best-known Sioux Falls solution, and Braess's paradox."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_data
from twin.sim.traffic import tntp
from twin.sim.traffic.assign import all_or_nothing, user_equilibrium


def test_sioux_falls_to_a_relative_gap_of_1e_4() -> None:
    """SOURCE.md's check: at gap 1e-4 the link flows are within 1 % of the best-known ones (links over 100 trips)
    and the Beckmann objective within 0.1 %; the history falls to the gap."""
    folder = shared_data("traffic/SiouxFalls")
    net = tntp.read_net(folder / "SiouxFalls_net.tntp")
    od = tntp.read_trips(folder / "SiouxFalls_trips.tntp")
    ref = tntp.read_flow(folder / "SiouxFalls_flow.tntp")
    a = user_equilibrium(net, od, gap=1e-4)
    assert a.gap <= 1e-4 and a.iterations < 500
    busy = ref["volume"] > 100
    assert np.abs(a.volume[busy] / ref["volume"][busy] - 1).max() < 0.01
    assert a.objective == pytest.approx(4_231_335.29, rel=1e-3)
    assert a.history[0][1] > 1e-2 and a.history[-1][1] == a.gap
    # every trip leaves its origin: the volume out of each node minus into it is its net production
    out = np.bincount(net.init - 1, a.volume, 24) - np.bincount(net.term - 1, a.volume, 24)
    assert np.allclose(out, od.sum(axis=1) - od.sum(axis=0))


def test_braess_paradox() -> None:
    """The middle link of Braess's network raises everyone's equilibrium travel time (92 against 83 per trip)."""
    folder = shared_data("traffic/Braess-Example")
    net = tntp.read_net(folder / "Braess_net.tntp")
    od = tntp.read_trips(folder / "Braess_trips.tntp")
    middle = (net.init == 3) & (net.term == 4)
    without = tntp.Network(meta={**net.meta, "NUMBER OF LINKS": "4"},
                           links={k: v[~middle] for k, v in net.links.items()})

    def time_per_trip(n: tntp.Network) -> float:
        a = user_equilibrium(n, od, gap=1e-8)
        _, sp = all_or_nothing(n, od, a.cost)
        return sp / od.sum()

    with_link, without_link = time_per_trip(net), time_per_trip(without)
    assert with_link == pytest.approx(92.0, abs=0.01) and without_link == pytest.approx(83.0, abs=0.01)
    assert with_link > without_link


def test_sioux_falls_to_a_relative_gap_of_1e_10_by_paths() -> None:
    """The issue's marks: at gap ≤ 1e-10 every link over 100 trips within 0.01 % of the best-known UE flow and the
    Beckmann objective within 1e-6 of 4,231,335.29; the used paths of every OD pair cost the same within 1e-6
    (the UE conditions) and carry its demand."""
    from twin.sim.traffic.assign import user_equilibrium_paths

    folder = shared_data("traffic/SiouxFalls")
    net = tntp.read_net(folder / "SiouxFalls_net.tntp")
    od = tntp.read_trips(folder / "SiouxFalls_trips.tntp")
    ref = tntp.read_flow(folder / "SiouxFalls_flow.tntp")
    a = user_equilibrium_paths(net, od, gap=1e-10)
    assert a.gap <= 1e-10
    busy = ref["volume"] > 100
    assert np.abs(a.volume[busy] / ref["volume"][busy] - 1).max() < 1e-4
    assert a.objective == pytest.approx(4_231_335.29, rel=1e-6)
    gaps = [h[1] for h in a.history]
    assert gaps[0] > 1e-2 and min(gaps[-5:]) <= 1e-10
    assert len(a.paths) == int((od > 0).sum())
    worst = 0.0
    for (o, d), ps in a.paths.items():
        costs = [float(a.cost[links].sum()) for links, _ in ps]
        assert sum(f for _, f in ps) == pytest.approx(od[o, d], rel=1e-9)
        worst = max(worst, (max(costs) - min(costs)) / min(costs))
    assert worst < 1e-6, worst  # every used path within 1e-6 of the OD's cheapest


@pytest.mark.parametrize("first_thru, via", [(1, [0, 1]), (4, [2, 3])])
def test_zones_carry_no_through_traffic(tmp_path, first_thru, via) -> None:
    """Zone 2 sits on the short way from zone 1 to zone 3: with <FIRST THRU NODE> 4 the trips take the long way."""
    f = tmp_path / "t_net.tntp"
    f.write_text(f"<NUMBER OF ZONES> 3\n<NUMBER OF NODES> 4\n<FIRST THRU NODE> {first_thru}\n<NUMBER OF LINKS> 4\n"
                 "<END OF METADATA>\n1 2 100 1 1 0 1 0 0 1 ;\n2 3 100 1 1 0 1 0 0 1 ;\n1 4 100 5 5 0 1 0 0 1 ;\n"
                 "4 3 100 5 5 0 1 0 0 1 ;\n")
    net = tntp.read_net(f)
    od = np.zeros((3, 3))
    od[0, 2] = 10.0
    vol, sp = all_or_nothing(net, od, net.cost(np.zeros(4)))
    assert list(np.flatnonzero(vol)) == via and sp == (20.0 if first_thru == 1 else 100.0)


def test_system_optimum() -> None:
    """The system optimum: on Braess's network the classic result (3 trips per outer route, the middle link
    unused, 498 vehicle-minutes against the equilibrium's 552); on Sioux Falls a total travel time below the
    user equilibrium's, and the equilibrium of marginal costs (each used path's marginal cost within the gap)."""
    from twin.sim.traffic.assign import assign, total_travel_time

    folder = shared_data("traffic/Braess-Example")
    net = tntp.read_net(folder / "Braess_net.tntp")
    od = tntp.read_trips(folder / "Braess_trips.tntp")
    so = assign(net, od, method="so", gap=1e-10)
    ue = assign(net, od, method="ue", gap=1e-10)
    middle = (net.init == 3) & (net.term == 4)
    assert so.volume[middle].sum() == pytest.approx(0.0, abs=1e-6)
    assert total_travel_time(net, so.volume) == pytest.approx(498.0, rel=1e-6)
    assert total_travel_time(net, ue.volume) == pytest.approx(552.0, rel=1e-6)
    folder = shared_data("traffic/SiouxFalls")
    net = tntp.read_net(folder / "SiouxFalls_net.tntp")
    od = tntp.read_trips(folder / "SiouxFalls_trips.tntp")
    so = assign(net, od, method="so", gap=1e-8)
    ue = assign(net, od, method="ue", gap=1e-8)
    assert so.gap <= 1e-8 and total_travel_time(net, so.volume) < total_travel_time(net, ue.volume)
