"""The TNTP reader on the research networks in ../shared/data/traffic: Sioux Falls' links, trips (360,600), nodes
and best-known flows (their BPR costs are the file's costs), the Braess example, and bad files."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_data
from twin.errors import BadInput
from twin.sim.traffic import tntp


def test_sioux_falls() -> None:
    folder = shared_data("traffic/SiouxFalls")
    net = tntp.read_net(folder / "SiouxFalls_net.tntp")
    assert len(net) == 76 and net.zones == 24 and net.nodes == 24 and net.first_thru_node == 1
    assert net.init[0] == 1 and net.term[0] == 2 and net.links["capacity"][0] == pytest.approx(25900.20064)
    od = tntp.read_trips(folder / "SiouxFalls_trips.tntp")
    assert od.shape == (24, 24) and od.sum() == 360_600 and od[0, 1] == 100 and od[0, 9] == 1300
    flow = tntp.read_flow(folder / "SiouxFalls_flow.tntp")
    assert (flow["init"] == net.init).all() and (flow["term"] == net.term).all()
    # the best-known UE volumes through BPR give the file's costs; Beckmann objective and TSTT as SOURCE.md
    assert np.allclose(net.bpr(flow["volume"]), flow["cost"], rtol=1e-9)
    L = net.links
    beckmann = (L["free_flow_time"] * (flow["volume"] + L["b"] * flow["volume"] ** (L["power"] + 1)
                                        / ((L["power"] + 1) * L["capacity"] ** L["power"]))).sum()
    assert beckmann == pytest.approx(4_231_335.29, rel=1e-8)
    assert (flow["volume"] * flow["cost"]).sum() == pytest.approx(7_480_225.34, rel=1e-8)
    assert net.toll_factor == 0 and np.array_equal(net.cost(flow["volume"]), net.bpr(flow["volume"]))
    nodes = tntp.read_nodes(folder / "SiouxFalls_node.tntp")
    assert len(nodes["node"]) == 24 and nodes["x"][0] == pytest.approx(-96.77041974)


def test_braess() -> None:
    folder = shared_data("traffic/Braess-Example")
    net = tntp.read_net(folder / "Braess_net.tntp")
    assert len(net) == 5 and net.zones == 2 and list(net.term) == [3, 4, 2, 4, 2]
    assert tntp.read_trips(folder / "Braess_trips.tntp")[0, 1] == 6.0


def test_generalised_cost_and_bad_files(tmp_path) -> None:
    net = tmp_path / "x_net.tntp"
    net.write_text("<NUMBER OF ZONES> 1\n<NUMBER OF LINKS> 1\n<TOLL FACTOR> 0.5\n<DISTANCE FACTOR> 0.1\n"
                   "<END OF METADATA>\n~ init term cap len fft b power speed toll type ;\n"
                   "1 2 100 10 2 0.15 4 0 3 1 ;\n")
    n = tntp.read_net(net)
    assert n.cost(np.array([100.0]))[0] == pytest.approx(2 * 1.15 + 0.5 * 3 + 0.1 * 10)
    bad = tmp_path / "bad_net.tntp"
    bad.write_text("<NUMBER OF LINKS> 2\n<END OF METADATA>\n1 2 100 10 2 0.15 4 0 0 1 ;\n")
    with pytest.raises(BadInput, match="bad_net.tntp: <NUMBER OF LINKS> says 2, the file has 1"):
        tntp.read_net(bad)
    bad.write_text("1 2 100 10 2 0.15 4 0 0 1 ;\n")
    with pytest.raises(BadInput, match="line 1: expected <KEY> value metadata"):
        tntp.read_net(bad)
    trips = tmp_path / "x_trips.tntp"
    trips.write_text("<NUMBER OF ZONES> 2\n<TOTAL OD FLOW> 7\n<END OF METADATA>\nOrigin 1\n 1 : 0; 2 : 6;\n")
    with pytest.raises(BadInput, match="add up to 6.0, <TOTAL OD FLOW> says 7.0"):
        tntp.read_trips(trips)
    trips.write_text("<NUMBER OF ZONES> 2\n<END OF METADATA>\nOrigin 3\n 1 : 0;\n")
    with pytest.raises(BadInput, match="origin 3 outside zones 1..2"):
        tntp.read_trips(trips)
