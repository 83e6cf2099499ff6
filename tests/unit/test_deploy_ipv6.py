"""The reference deployment feeds a service's MUX backends in its backend family (no privileges:
the lab and topology are stand-ins with the dual-stack Topology API's names)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from dsrconform.errors import LabError
from reference_impl.deploy import ReferenceDeployment, mux_counters

V4 = {"server1": "198.18.20.1", "server2": "198.18.20.2"}
V6 = {"server1": "2001:2:0:20::1", "server2": None}


def deployment() -> ReferenceDeployment:
    topo = SimpleNamespace(
        uplink=lambda n: SimpleNamespace(ip=V4[n]),
        address6_of=lambda n: V6[n],
    )
    lab: Any = SimpleNamespace(name="t", topology=topo)
    return ReferenceDeployment(lab, None)


def test_backends_follow_the_services_backend_family() -> None:
    dep = deployment()
    web: Any = SimpleNamespace(name="web", backend_family="ipv4")
    web6: Any = SimpleNamespace(name="web6", backend_family="ipv6")
    assert dep._addrs(["server1", "server2"], web) == ["198.18.20.1", "198.18.20.2"]
    assert dep._addrs(["server1"], web6) == ["2001:2:0:20::1"]
    with pytest.raises(LabError, match="server2 has no IPv6 address"):
        dep._addrs(["server2"], web6)


def test_ipv6_vip_counters_are_bracketed() -> None:
    stats = SimpleNamespace(
        globals={"tx": 1},
        vips={("2001:2:0:100::10", 80, 6): (1, 60), ("198.19.0.10", 80, 6): (2, 80)},
        backends={},
    )
    out = mux_counters(SimpleNamespace(stats=lambda: stats))
    assert out["vip_packets[[2001:2:0:100::10]:80/tcp]"] == 1
    assert out["vip_packets[198.19.0.10:80/tcp]"] == 2
