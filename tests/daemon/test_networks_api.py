"""`hypr network` through hyprd (the Networks gRPC service) gives what the embedded engine
gives: the same output, the same errors and exit codes. No VM is booted (a created VM is
enough to connect). Root only: user networks are bridges."""

from __future__ import annotations

import json
import os

import pytest

from hypr_engine.net import bridge
from tests.daemon.conftest import assert_clean_error

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="user networks need root")


def _both(home, daemon, *args: str):
    """The same command with hyprd up, then embedded: (daemon's result, embedded result)."""
    via_daemon = home.run(*args)
    daemon.stop()
    embedded = home.run(*args)
    daemon.start()
    return via_daemon, embedded


def test_the_network_calls_through_hyprd(hypr_home, busybox, hyprd):
    net_id = hypr_home.out("network", "create", "--label", "k=v", "viad").strip()
    assert len(net_id) == 64
    hypr_home.run("create", "--name", "c1", busybox, "true", check=True)
    hypr_home.run("network", "connect", "--alias", "db", "viad", "c1", check=True)
    info = json.loads(hypr_home.out("network", "inspect", "viad"))[0]
    assert info["Labels"] == {"k": "v"} and [c["Aliases"] for c in info["Containers"].values()] == [["db"]]

    for args in (("network", "ls"), ("network", "inspect", "viad", "default"), ("network", "ls", "-q")):
        via_daemon, embedded = _both(hypr_home, hyprd, *args)
        assert via_daemon.returncode == embedded.returncode == 0
        assert via_daemon.stdout == embedded.stdout, args
    for args, needle in ((("network", "rm", "viad"), "in use by c1"),
                         (("network", "create", "viad"), "already exists"),
                         (("network", "create", "--subnet", "10.1.2.3/24", "x"), "host bits"),
                         (("network", "disconnect", "viad", "nosuch"), "no such VM")):
        via_daemon, embedded = _both(hypr_home, hyprd, *args)
        assert_clean_error(via_daemon, needle)
        assert via_daemon.stderr == embedded.stderr and via_daemon.returncode == embedded.returncode

    hypr_home.run("network", "disconnect", "viad", "c1", check=True)
    assert hypr_home.out("network", "prune").split() == ["Deleted", "Networks:", "viad"]
    assert not bridge.links_with_prefix(bridge.BRIDGE_PREFIX + bridge.dir_tag(hypr_home.data))
