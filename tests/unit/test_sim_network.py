"""The simulated network: max-min fair sharing and queueing delay, on known answers."""

from __future__ import annotations

import math

import pytest

from backend.sim.network import (
    PACKET_BYTES,
    STANDING_QUEUE_PACKETS,
    TCP_GOODPUT,
    Flow,
    Network,
    max_min_fair,
    path,
)

INF = math.inf


def test_two_bulk_flows_on_one_link_get_half_each() -> None:
    rates = max_min_fair({"l": 10.0}, [Flow("a", ("l",), INF), Flow("b", ("l",), INF)])
    assert rates == pytest.approx({"a": 5.0, "b": 5.0})


def test_a_small_flow_gets_its_demand_and_the_bulk_flow_the_rest() -> None:
    rates = max_min_fair({"l": 10.0}, [Flow("small", ("l",), 2.0), Flow("bulk", ("l",), INF)])
    assert rates == pytest.approx({"small": 2.0, "bulk": 8.0})


def test_textbook_three_flows_two_links() -> None:
    # Link x (cap 10) carries a and b; link y (cap 4) carries b and c. y is the first
    # bottleneck: b and c get 2 each; a then takes what b leaves on x: 8.
    capacity = {"x": 10.0, "y": 4.0}
    flows = [Flow("a", ("x",), INF), Flow("b", ("x", "y"), INF), Flow("c", ("y",), INF)]
    assert max_min_fair(capacity, flows) == pytest.approx({"a": 8.0, "b": 2.0, "c": 2.0})


def test_flows_in_opposite_directions_do_not_share() -> None:
    net = Network(["h1", "h2"], 100)
    alloc = net.allocate(
        [Flow("out", path("h1", "h2"), INF, True), Flow("back", path("h2", "h1"), INF, True)]
    )
    assert alloc.rate("out") == pytest.approx(net.goodput)
    assert alloc.rate("back") == pytest.approx(net.goodput)


def test_goodput_of_100_mbit_is_94_mbit_of_payload() -> None:
    net = Network(["a"], 100)
    assert net.goodput * 8 / 1e6 == pytest.approx(100 * TCP_GOODPUT)
    assert net.goodput * 8 / 1e6 == pytest.approx(94.0)


def test_a_saturated_link_keeps_a_standing_queue_for_small_packets() -> None:
    net = Network(["src", "dst", "pinger"], 100)
    idle = net.allocate([])
    busy = net.allocate([Flow("migration", path("src", "dst"), INF, True)])
    tx = "src:tx"
    assert idle.queue_ms(tx) == 0.0
    packet_ms = PACKET_BYTES / net.goodput * 1000
    assert busy.queue_ms(tx) == pytest.approx(STANDING_QUEUE_PACKETS * packet_ms)
    # The flow that fills the queue does not wait behind itself.
    assert busy.queue_ms(tx, exclude=["migration"]) == 0.0
    # The other direction of the same NIC is idle.
    assert busy.queue_ms("src:rx") == 0.0


def test_queueing_grows_with_utilisation_below_saturation() -> None:
    net = Network(["a", "b"], 100)
    light = net.allocate([Flow("f", path("a", "b"), net.goodput * 0.2)])
    heavy = net.allocate([Flow("f", path("a", "b"), net.goodput * 0.8)])
    assert 0 < light.queue_ms("a:tx") < heavy.queue_ms("a:tx")
    assert heavy.queue_ms("a:tx") < STANDING_QUEUE_PACKETS * net.packet_ms


def test_unknown_link_is_an_error() -> None:
    with pytest.raises(KeyError, match="nohost"):
        Network(["a"], 100).allocate([Flow("f", path("a", "nohost"), 1.0)])
