"""Subnet parsing and choice of user networks (pure logic of hypr_engine/net/pool.py)."""

from __future__ import annotations

import ipaddress

import pytest

from hypr_engine.errors import Conflict, InvalidArgument
from hypr_engine.net import pool


@pytest.mark.parametrize("text, message", [
    ("10.1.2", "CIDR"),
    ("banana/24", "CIDR"),
    ("10.1.2.0", "prefix length"),
    ("10.1.2.3/24", "host bits are set (did you mean 10.1.2.0/24?)"),
    ("10.1.2.0/33", "CIDR"),
    ("10.1.2.0/30", "between /8 and /29"),
    ("fd00::/64", "only IPv4"),
    ("127.5.0.0/16", "not a usable"),
])
def test_malformed_subnets_are_refused_with_the_reason(text, message):
    with pytest.raises(InvalidArgument) as err:
        pool.parse_subnet(text)
    assert message in str(err.value)


def test_gateway_defaults_to_the_first_host_and_must_lie_inside():
    net = pool.parse_subnet("10.77.3.0/24")
    assert str(pool.parse_gateway(None, net)) == "10.77.3.1"
    assert str(pool.parse_gateway("10.77.3.254", net)) == "10.77.3.254"
    with pytest.raises(InvalidArgument, match="outside the subnet"):
        pool.parse_gateway("10.77.4.1", net)
    with pytest.raises(InvalidArgument, match="network or broadcast"):
        pool.parse_gateway("10.77.3.255", net)
    with pytest.raises(InvalidArgument, match="expected an IPv4 address"):
        pool.parse_gateway("10.77.3.x", net)


def test_pick_free_skips_networks_and_host_routes():
    taken = [("network 'a'", "10.89.0.0/24"), ("a host route", "10.89.1.0/25"), ("the LAN", "10.89.2.7/32")]
    assert pool.pick_free(taken) == ipaddress.IPv4Network("10.89.3.0/24")


def test_pick_free_reports_an_exhausted_pool():
    with pytest.raises(Conflict, match="no free /24"):
        pool.pick_free([("a VPN", "10.89.0.0/16")])


def test_an_overlapping_subnet_names_what_it_overlaps():
    with pytest.raises(Conflict, match="overlaps network 'web'"):
        pool.check_free(pool.parse_subnet("10.5.0.0/16"), [("network 'web'", "10.5.9.0/24")])
    pool.check_free(pool.parse_subnet("10.6.0.0/16"), [("network 'web'", "10.5.9.0/24")])
