"""Volumes and system df/prune through hyprd: the messages round-trip, and the CLI
prints the same whether it embeds the engine or talks to the daemon."""

from __future__ import annotations

import json

import pytest

from hypr_engine._volumes_transport import volume_from_pb, volume_to_pb
from hypr_engine.api._pb.hypr import v1 as pb
from hypr_engine.models import VolumeInfo
from tests.daemon.test_convert import _sample


@pytest.mark.parametrize("salt", [1, 2])
def test_volume_survives_the_round_trip(salt):
    volume = _sample(VolumeInfo, salt)
    assert volume_from_pb(pb.Volume.parse(bytes(volume_to_pb(volume)))) == volume


def test_vm_spec_mounts_cross_the_wire():
    from hypr_engine.api import convert
    from hypr_engine.models import VmSpec

    mounts = [{"type": "bind", "source": "/s", "target": "/t", "readonly": True},
              {"type": "tmpfs", "source": "", "target": "/x", "readonly": False, "options": {"size": 5}}]
    spec = VmSpec(image="i", mounts=mounts)
    assert convert.spec_from_pb(pb.VmSpec.parse(bytes(convert.spec_to_pb(spec)))).mounts == mounts


@pytest.mark.vm
def test_volume_commands_identical_embedded_and_through_hyprd(hypr_home, busybox, hyprd_factory):
    def session(tag: str) -> list:
        out = []
        for args in (("volume", "create", "--label", "k=v", "--opt", "size=32m", f"vol-{tag}"),
                     ("run", "--name", f"user-{tag}", "-v", f"vol-{tag}:/data", busybox, "sh", "-c",
                      "echo x > /data/f; cat /data/f"),
                     ("volume", "rm", f"vol-{tag}"),
                     ("volume", "inspect", f"vol-{tag}", "nosuch"),
                     ("volume", "ls", "--filter", "label=k=v"),
                     ("rm", f"user-{tag}"),
                     ("volume", "prune", "-a", "-f"),
                     ("volume", "ls", "-q")):
            proc = hypr_home.run(*args)
            text = (proc.stdout + proc.stderr).decode().replace(tag, "<tag>")
            if args[:2] == ("volume", "inspect"):
                text = (json.dumps([{k: v for k, v in d.items() if k not in ("CreatedAt", "Mountpoint")}
                                    for d in json.loads(proc.stdout)]) + proc.stderr.decode()).replace(tag, "<tag>")
            out.append((proc.returncode, text))
        return out

    embedded = session("emb1")
    hyprd_factory.start()
    daemon = session("dmn1")
    df = json.loads(hypr_home.out("system", "df", "--format", "json"))
    hyprd_factory.stop()
    assert embedded == daemon
    assert embedded[1] == (0, "x\n")
    assert embedded[2][0] == 125 and "in use by VM user-<tag>" in embedded[2][1]
    assert embedded[6][0] == 0 and "vol-<tag>" in embedded[6][1]
    assert embedded[7] == (0, "")
    assert set(df) >= {"images", "vms", "volumes", "cache", "logs"} and df["volumes"]["count"] == 0
