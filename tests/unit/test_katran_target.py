"""The Katran target adapter without a kernel: its ring against Katran's own C++ ring code and
Katran's own test fixtures, its map layouts, its options and source lookup, its topology and
backend-set checks."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from dsrconform.errors import ConfigError
from dsrconform.target import Target, check_backend_sets
from dsrconform.topofile import load_topology
from katran_target import maglev, sources
from katran_target.balancer import (
    ipip_outer_source,
    pack_ctl_mac,
    pack_real_definition,
    pack_vip_definition,
    pack_vip_meta,
    sum_lb_stats,
)
from katran_target.deploy import check_topology
from katran_target.target import KatranTarget
from tests.unit.labfiles import BASIC

KATRAN = sources.default_source_dir()
NO_SOURCES = f"Katran's sources are not at {KATRAN} (set by the shared third_party folder)"

# --- the ring ----------------------------------------------------------------------------------

# Vectors printed by Katran's own CHHelpers/MaglevHash/MaglevHashV2 (compiled with g++ from the
# pinned sources, as test_ring_matches_katrans_cpp does), so this runs without the sources.
EPS = [
    maglev.Endpoint(1, 1, 123),
    maglev.Endpoint(2, 1, 456789),
    maglev.Endpoint(3, 2, 99999999999),
]
KATRAN_RING_13 = {
    "maglev": [3, 3, 3, 1, 1, 3, 3, 2, 1, 2, 1, 2, 2],
    "maglev_v2": [3, 3, 3, 1, 1, 3, 3, 2, 1, 2, 3, 2, 3],
}


@pytest.mark.parametrize("func", ["maglev", "maglev_v2"])
def test_ring_hard_coded_vectors(func: maglev.HashFunction) -> None:
    assert maglev.generate_ring(EPS, 13, func) == KATRAN_RING_13[func]


def test_ring_edge_cases_follow_katran() -> None:
    assert maglev.generate_ring([], 7) == [-1] * 7  # no endpoint: nothing placed
    assert maglev.generate_ring([maglev.Endpoint(5, 3, 1)], 7) == [5] * 7  # one fills it
    with pytest.raises(ValueError):
        maglev.generate_ring(EPS, 1)


def test_endpoints_drop_zero_weights_and_sort_by_address_hash() -> None:
    eps = maglev.endpoints([(1, "10.0.0.1", 1), (2, "10.0.0.2", 0), (3, "10.0.0.3", 2)])
    assert {e.num for e in eps} == {1, 3}
    assert eps[0].hash <= eps[1].hash
    assert maglev.real_hash("10.0.0.1") != maglev.real_hash("10.0.0.2")


def test_katrans_own_fixtures_pick_the_same_real() -> None:
    """Katran's KatranBaseTestFixtures: VIP 10.200.1.1:80 and the any-port VIP 10.200.1.2 with
    reals 10.0.0.1-3 (numbers 1-3, weight 1, ring 65537), a packet from 192.168.1.1:31337 goes to
    10.0.0.3, and to 10.0.0.2 for the any-port VIP. This ties the folly address hash, the ring
    and the data plane's jhash together."""
    eps = maglev.endpoints([(1, "10.0.0.1", 1), (2, "10.0.0.2", 1), (3, "10.0.0.3", 1)])
    ring = maglev.generate_ring(eps)
    names = {1: "10.0.0.1", 2: "10.0.0.2", 3: "10.0.0.3"}
    assert names[ring[maglev.flow_slot("192.168.1.1", 31337, 80, port_zeroed=False)]] == "10.0.0.3"
    assert names[ring[maglev.flow_slot("192.168.1.1", 31337, 42, port_zeroed=True)]] == "10.0.0.2"
    # The outer source of the same fixture (Katran's default IPIP_V4_PREFIX, 172.16).
    assert ipip_outer_source("192.168.1.1", 31337, 4268) == "172.16.104.123"


def test_katrans_own_ipv6_fixtures_pick_the_same_real() -> None:
    """Katran's fixtures 5 and 6 (KatranBaseTestFixtures.h, reals from
    KatranTestProvision.cpp): the IPv4 VIP 10.200.1.3:80 and the IPv6 VIP fc00:1::1:80, both
    with reals fc00::1-3; 192.168.1.1:31337 goes to fc00::1 and fc00:2::1:31337 to fc00::3.
    This ties folly's IPv6 address hash (SpookyHash V2), the ring and Katran's 16-byte flow
    hash together."""
    eps = maglev.endpoints([(4, "fc00::1", 1), (5, "fc00::2", 1), (6, "fc00::3", 1)])
    ring = maglev.generate_ring(eps)
    names = {4: "fc00::1", 5: "fc00::2", 6: "fc00::3"}
    assert names[ring[maglev.flow_slot("192.168.1.1", 31337, 80, port_zeroed=False)]] == "fc00::1"
    assert names[ring[maglev.flow_slot("fc00:2::1", 31337, 80, port_zeroed=False)]] == "fc00::3"


def test_spooky_v2_short_matches_jenkins_test_vectors() -> None:
    """SpookyV2's TestResults: Hash32 (the low half of hash1, seeds 0) of bytes i + 128 for the
    first n of them."""
    expected = [0x6BF50919, 0x70DE1D26, 0xA2B37298, 0x35BC5FBF, 0x8223B279, 0x5BCB315E]
    expected += [0x53FE88A1, 0xF9F1A233, 0xEE193982, 0x54F86F29, 0xC8772D36, 0x9ED60886]
    expected += [0x5F23D1DA, 0x1ED9F474, 0xF2EF0C89, 0x83EC01F9, 0xF274736C, 0x7E9AC0DF]
    expected += [0xC7AED250, 0xB1015811, 0xE23470F5, 0x48AC20C4, 0xE2AB3CD5, 0x608F8363]
    expected += [0xD0639E68, 0xC4E8E7AB, 0x863C7C5B, 0x4EA63579, 0x99AE8622, 0x170C658B]
    expected += [0x149BA493, 0x027BCA7C, 0xE5CFC8B6, 0xCE01D9D7, 0x11103330, 0x5D1F5ED4]
    data = bytes((i + 128) & 0xFF for i in range(len(expected)))
    for n, want in enumerate(expected):
        assert maglev.spooky_v2_short(data[:n])[0] & 0xFFFFFFFF == want, n
    assert maglev.real_hash("::ffff:10.0.0.1") == maglev.real_hash("10.0.0.1")


def test_ring_delta_lists_changed_slots_only() -> None:
    assert maglev.ring_delta([1, 2, 3], [1, 4, 3]) == [(1, 4)]
    assert maglev.ring_delta([-1, -1], [2, 2]) == [(0, 2), (1, 2)]
    with pytest.raises(ValueError):
        maglev.ring_delta([1], [1, 2])


def test_removing_a_real_moves_only_its_slots() -> None:
    """Maglev's promise, kept by Katran's ring: slots of remaining reals mostly stay."""
    addrs = [f"198.18.20.{i}" for i in range(1, 5)]
    before = maglev.generate_ring(maglev.endpoints([(i + 1, a, 1) for i, a in enumerate(addrs)]))
    after = maglev.generate_ring(maglev.endpoints([(i + 1, a, 1) for i, a in enumerate(addrs[:3])]))
    moved = {pos for pos, _ in maglev.ring_delta(before, after)}
    assert 4 not in after
    assert {p for p, r in enumerate(before) if r == 4} <= moved
    others = [p for p in moved if before[p] != 4]
    assert len(others) < len(before) // 20  # Maglev's small disruption, not a reshuffle


_DRIVER = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "katran/lib/CHHelpers.h"
int main(int argc, char** argv) {
  unsigned ring = std::strtoul(argv[1], nullptr, 10);
  auto func = std::atoi(argv[2]) ? katran::HashFunction::MaglevV2 : katran::HashFunction::Maglev;
  std::vector<katran::Endpoint> eps;
  unsigned long long n, w, h;
  while (std::scanf("%llu %llu %llu", &n, &w, &h) == 3) {
    katran::Endpoint e;
    e.num = n; e.weight = w; e.hash = h;
    eps.push_back(e);
  }
  for (int v : katran::CHFactory::make(func)->generateHashRing(eps, ring)) std::printf("%d\n", v);
}
"""


@pytest.mark.skipif(not (KATRAN / "katran/lib/MaglevHashV2.cpp").is_file(), reason=NO_SOURCES)
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed")
def test_ring_matches_katrans_cpp(tmp_path: Path) -> None:
    """Katran's ring code (CHHelpers, MaglevHash, MaglevHashV2, MaglevBase, MurmurHash3), built
    from its sources with a driver of ours, gives the same rings on several real sets, weights
    and ring sizes, for both hash functions."""
    (tmp_path / "driver.cpp").write_text(_DRIVER)
    lib = KATRAN / "katran" / "lib"
    units = ["CHHelpers", "MaglevHash", "MaglevHashV2", "MaglevBase", "MurmurHash3"]
    exe = tmp_path / "ring"
    subprocess.run(
        [
            "g++",
            "-O1",
            "-std=c++17",
            f"-I{KATRAN}",
            str(tmp_path / "driver.cpp"),
            *[str(lib / f"{u}.cpp") for u in units],
            "-o",
            str(exe),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    rng = random.Random(17)
    cases = 0
    for ring_size in (7, 13, 101, 1009):
        for n_reals in (2, 3, 5, 8):
            reals = [
                (
                    num,
                    f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                    rng.choice((1, 1, 2, 5)),
                )
                for num in rng.sample(range(1, 4096), n_reals)
            ]
            eps = maglev.endpoints(reals)
            stdin = "".join(f"{e.num} {e.weight} {e.hash}\n" for e in eps)
            funcs: tuple[tuple[maglev.HashFunction, str], ...] = (
                ("maglev", "0"),
                ("maglev_v2", "1"),
            )
            for func, flag in funcs:
                out = subprocess.run(
                    [str(exe), str(ring_size), flag],
                    input=stdin,
                    text=True,
                    capture_output=True,
                    check=True,
                    timeout=30,
                )
                want = [int(x) for x in out.stdout.split()]
                assert maglev.generate_ring(eps, ring_size, func) == want, (ring_size, reals, func)
                cases += 1
    assert cases == 32


# --- map layouts -----------------------------------------------------------------------------


def test_map_packing() -> None:
    vip = pack_vip_definition("198.19.0.10", 80, 6)
    assert vip == bytes([198, 19, 0, 10]) + bytes(12) + b"\x00\x50" + b"\x06\x00"
    assert pack_vip_meta(0, 3) == b"\x00\x00\x00\x00\x03\x00\x00\x00"
    assert pack_real_definition("198.18.20.1") == bytes([198, 18, 20, 1]) + bytes(16)
    assert pack_ctl_mac("02:00:00:00:00:aa") == b"\x02\x00\x00\x00\x00\xaa\x00\x00"
    with pytest.raises(ConfigError):
        pack_ctl_mac("02:00")
    real6 = pack_real_definition("fc00::1")
    assert real6 == bytes.fromhex("fc00" + "00" * 13 + "01") + b"\x01" + bytes(3)  # F_IPV6
    assert pack_vip_definition("fc00:1::1", 80, 17)[:16] == bytes.fromhex(
        "fc000001" + "00" * 11 + "01"
    )
    slots = [(1).to_bytes(8, "little") + (10).to_bytes(8, "little")] * 3
    assert sum_lb_stats(slots) == (3, 30)


# --- options and sources -----------------------------------------------------------------------


def test_target_construction() -> None:
    t = KatranTarget()
    assert isinstance(t, Target)
    assert t.name == "katran" and t.modes == ("encap",) and t.families == ("ipv4", "ipv6")
    assert t.mutant is None and t.vip_flags == 0
    assert {m.name for m in t.mutants()} == {"lru-bypass", "hash-no-src-port"}
    assert all(m.requirements and m.system_level for m in t.mutants())
    assert KatranTarget(mutant="lru-bypass").vip_flags == 2
    assert t.encap == "gue" and t.hash_function == "maglev"
    assert KatranTarget(options={"encap": "ipip", "hash": "maglev_v2"}).encap == "ipip"


def test_bad_options_and_mutants_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown option 'foo'"):
        KatranTarget(options={"foo": "1"})
    with pytest.raises(ConfigError, match="encap='vxlan'"):
        KatranTarget(options={"encap": "vxlan"})
    with pytest.raises(ConfigError, match="katran_src=/nonexistent is not a Katran checkout"):
        KatranTarget(options={"katran_src": "/nonexistent"})
    with pytest.raises(ConfigError, match="its mutants: lru-bypass, hash-no-src-port"):
        KatranTarget(mutant="some-bug")


def test_missing_sources_name_option_env_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(sources.ENV_VAR, raising=False)
    with pytest.raises(ConfigError) as err:
        sources.find_sources({"katran_src": str(tmp_path)})
    assert "katran_src" in str(err.value) and sources.ENV_VAR in str(err.value)
    assert "fix:" in str(err.value)
    monkeypatch.setenv(sources.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=sources.ENV_VAR):
        sources.find_sources()
    monkeypatch.delenv(sources.ENV_VAR)
    monkeypatch.setattr(sources, "default_source_dir", lambda: tmp_path / "absent")
    with pytest.raises(ConfigError, match="neither target option katran_src"):
        sources.find_sources()


def test_sources_found_by_option_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "katran"
    (fake / sources.BALANCER).parent.mkdir(parents=True)
    (fake / sources.BALANCER).write_text("/* not really */\n")
    other = tmp_path / "other"
    monkeypatch.setenv(sources.ENV_VAR, str(other))
    assert sources.find_sources({"katran_src": str(fake)}) == fake.resolve()
    monkeypatch.setenv(sources.ENV_VAR, str(fake))
    assert sources.find_sources() == fake.resolve()


# --- topology and backend sets ------------------------------------------------------------------


def test_topology_checks() -> None:
    assert check_topology(load_topology(BASIC)) == []
    problems = check_topology(load_topology(BASIC, mode="server-nat"))
    assert len(problems) == 1 and "only encapsulates" in problems[0]


def test_backend_set_checks() -> None:
    topo = load_topology(BASIC)
    web = next(s for s in topo.services if s.name == "web")
    active, drain = check_backend_sets(topo, "t", web, ["server1", "server1"], ["server2"])
    assert (active, drain) == (["server1"], ["server2"])
    for servers, draining, match in (
        ([], [], "empty active set"),
        (["server9"], [], "no server 'server9'"),
        (["server1"], ["server1"], "both active and draining"),
        ("server1", [], "not the string"),
    ):
        with pytest.raises(ConfigError, match=match):
            check_backend_sets(topo, "t", web, servers, draining)
