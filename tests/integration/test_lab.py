"""The lab engine end to end (root): the reference stack in labs/basic.yaml, real TCP and UDP
through the VIPs, BGP withdrawal on MUX death, and a clean machine afterwards, on the netns
backend and, where a Docker engine runs (always under CI), on the docker backend."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dsrconform.errors import LabError
from dsrconform.lab import Lab, registry
from dsrconform.topology import Topology
from tests.markers import requires_docker, requires_root

pytestmark = requires_root
LABS = Path(__file__).resolve().parents[2] / "labs"
BASIC = LABS / "basic.yaml"
BASIC_SERVERS = ("server1", "server2", "server3")
BACKENDS = ["netns", pytest.param("docker", marks=requires_docker)]


def lab_name(base: str, backend: str) -> str:
    """One lab name per backend (``tkill``, ``tkilld``): a docker run never meets a netns one's
    leftovers."""
    return base + ("d" if backend == "docker" else "")


def probe(lab: Lab, kind: str, *args: str) -> list[dict]:
    client = lab.topology.of_role("client")[0]
    res = lab.run(client, [lab.python, "-m", "dsrconform.traffic.probe", kind, *args],
                  timeout=180)  # fmt: skip
    return json.loads(res.stdout)


def container_state(lab: Lab, node: str) -> str:
    res = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", lab.netns(node)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return res.stdout.strip()


def client_sources(topo: Topology) -> str:
    client = topo.of_role("client")[0]
    return ",".join([topo.uplink(client).ip, *topo.nodes[client].addresses])


def add_reply_counters(lab: Lab) -> None:
    """nftables counters on the router: packets *from* servers or VIPs leaving toward a MUX (a
    reply crossing a MUX), and packets toward the clients arriving from a MUX."""
    rules = """
table inet dsrc_check {
  chain watch {
    type filter hook forward priority 0; policy accept;
    oifname "dsrc-mux*" ip saddr { 198.19.0.0/24, 198.18.20.0/24 } counter comment "to_mux"
    iifname "dsrc-mux*" ip daddr 198.18.1.0/24 counter comment "from_mux"
  }
}
"""
    subprocess.run(["ip", "netns", "exec", lab.netns(lab.topology.router), "nft", "-f", "-"],
                   input=rules, text=True, check=True)  # fmt: skip


def reply_counters(lab: Lab) -> dict[str, int]:
    out = lab.run(lab.topology.router, ["nft", "-j", "list", "table", "inet", "dsrc_check"]).stdout
    counts = {}
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if rule:
            c = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
            counts[rule["comment"]] = c
    return counts


@pytest.fixture(scope="module", params=BACKENDS)
def basic(request: pytest.FixtureRequest) -> Iterator[Lab]:
    with Lab.up(BASIC, backend=request.param, name=lab_name("tbasic", request.param)) as lab:
        add_reply_counters(lab)
        yield lab


def test_http_through_the_vip_names_the_server(basic: Lab) -> None:
    client = basic.topology.of_role("client")[0]
    res = basic.run(client, ["curl", "-s", "-i", "--max-time", "5", "http://198.19.0.10/id"])
    assert "200" in res.stdout.splitlines()[0]
    server = next(ln.split(":", 1)[1].strip() for ln in res.stdout.splitlines()
                  if ln.lower().startswith("x-server-id"))  # fmt: skip
    assert server in basic.topology.of_role("server")


def test_500_tcp_connections_complete_with_integrity_and_every_server_gets_a_share(
    basic: Lab,
) -> None:
    before = reply_counters(basic)
    srcs = client_sources(basic.topology)
    recs = probe(basic, "http", "--vip", "198.19.0.10", "--port", "80", "--conns", "500",
                 "--bytes", "20000", "--parallel", "100", "--sources", srcs)  # fmt: skip
    bad = [r for r in recs if r["error"]]
    assert not bad, f"{len(bad)}/500 connections failed, e.g. {bad[:3]}"
    assert all(r["verified"] == 20000 for r in recs)
    share = Counter(r["server"] for r in recs)
    assert set(share) == set(basic.topology.of_role("server")), f"servers answering: {share}"
    after = reply_counters(basic)
    assert after["to_mux"] == before["to_mux"] == 0, f"replies crossed a MUX link: {after}"
    assert after["from_mux"] == before["from_mux"] == 0, f"client-bound packets from a MUX: {after}"


def test_udp_flows_get_replies_from_one_server_each(basic: Lab) -> None:
    recs = probe(basic, "udp", "--vip", "198.19.0.11", "--port", "7", "--flows", "60",
                 "--count", "5", "--sources", client_sources(basic.topology))  # fmt: skip
    lost = sum(r["lost"] for r in recs)
    assert lost == 0, f"{lost} UDP replies lost"
    split = [r for r in recs if len(set(r["servers"])) != 1]
    assert not split, f"UDP flows answered by several servers: {split[:3]}"
    assert len({r["servers"][0] for r in recs}) > 1, "every UDP flow went to one server"


def _wait_routes(lab: Lab, vip: str, want: list[str], seconds: float) -> float:
    t0 = time.monotonic()
    while (got := lab.environment.vip_routes()[vip]) != want:
        assert time.monotonic() - t0 < seconds, f"{vip} routes {got}, expected {want}"
        time.sleep(0.05)  # polling the router's table, bounded by the deadline
    return time.monotonic() - t0


def test_a_reused_five_tuple_always_reaches_the_same_mux(basic: Lab) -> None:
    """The router hashes the 5-tuple itself (not the sender socket's per-connection hash):
    20 connections in a row from one client port all go through one MUX."""
    code = (
        "import socket, struct\n"
        "for _ in range(20):\n"
        "    s = socket.socket()\n"
        "    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n"
        "    s.bind(('0.0.0.0', 41000)); s.settimeout(5)\n"
        "    s.connect(('198.19.0.10', 80)); s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
        "    assert s.recv(100); s.close()  # RST: no TIME_WAIT, the port is free at once\n"
    )
    key = "vip_packets[198.19.0.10:80/tcp]"
    before = basic.deployment.counters()
    basic.run(basic.topology.of_role("client")[0], [basic.python, "-c", code], timeout=60)
    after = basic.deployment.counters()
    moved = {m: after[m].get(key, 0) - before[m].get(key, 0) for m in ("mux1", "mux2")}
    assert sum(moved.values()) >= 20 * 3, moved  # each connection: SYN, ACK+request, RST
    assert sorted(moved.values())[0] == 0, f"one 5-tuple went through both MUXes: {moved}"


def test_a_paused_mux_is_withdrawn_on_hold_expiry_and_comes_back_on_resume(basic: Lab) -> None:
    both = ["198.18.10.1", "198.18.10.5"]
    _wait_routes(basic, "198.19.0.10", both, 10)
    basic.pause_node("mux2")
    try:
        if basic.backend.kind == "docker":
            assert container_state(basic, "mux2") == "paused", "pause_node is a `docker pause`"
        else:

            def states() -> set[str]:
                return {Path(f"/proc/{p}/stat").read_text().split(") ", 1)[1][0]
                        for p in basic.processes("mux2")}  # fmt: skip

            deadline = time.monotonic() + 5  # SIGSTOP is delivered asynchronously
            while states() != {"T"}:
                assert time.monotonic() < deadline, f"mux2's processes not stopped: {states()}"
                time.sleep(0.01)  # polling process states, bounded by the deadline
        _wait_routes(basic, "198.19.0.10", ["198.18.10.1"], 10)  # BGP hold time: 3 s
    finally:
        basic.resume_node("mux2")
    _wait_routes(basic, "198.19.0.10", both, 20)
    assert [e.action for e in basic.events[-2:]] == ["pause", "resume"]


def test_docker_nodes_are_containers_sharing_the_run_directory(basic: Lab) -> None:
    if basic.backend.kind != "docker":
        pytest.skip("docker backend only")
    assert basic.run("server1", ["hostname"]).stdout.strip() == "server1"
    procs = basic.run("server1", ["ps", "-eo", "args"]).stdout
    assert "python3 -m dsrconform.app" in procs, procs
    assert basic.run("router", ["ls", str(basic.dir)]).stdout.split().count("bird-router.conf")
    assert len(registry.lab_containers(basic.name)) == 2 * len(
        basic.topology.nodes
    )  # node + holder


@pytest.mark.parametrize("backend", BACKENDS)
def test_killing_a_mux_withdraws_its_routes_and_traffic_continues(backend: str) -> None:
    with Lab.up(BASIC, backend=backend, name=lab_name("tkill", backend)) as lab:
        assert lab.environment.vip_routes()["198.19.0.10"] == ["198.18.10.1", "198.18.10.5"]
        t0 = time.monotonic()
        lab.kill_node("mux1")
        deadline = t0 + 10
        while lab.environment.vip_routes()["198.19.0.10"] != ["198.18.10.5"]:
            assert time.monotonic() < deadline, (
                f"route not withdrawn: {lab.environment.vip_routes()}"
            )
            time.sleep(0.05)  # polling the router's table, bounded by the deadline
        withdrawn = time.monotonic() - t0
        assert withdrawn < 5, f"withdrawal took {withdrawn:.1f} s after the kill"
        recs = probe(lab, "http", "--vip", "198.19.0.10", "--port", "80", "--conns", "100",
                     "--bytes", "5000", "--sources", client_sources(lab.topology))  # fmt: skip
        assert not [r for r in recs if r["error"]], "new connections failed through mux2"
        assert lab.events[-1].action == "kill" and lab.events[-1].subject == "mux1"
        assert not lab.processes("mux1")
        if backend == "docker":
            assert container_state(lab, "mux1") == "exited", "kill_node is a `docker kill`"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["server-nat", "gateway-nat"])
def test_nat_modes_answer_from_the_vip(mode: str, backend: str) -> None:
    with Lab.up(BASIC, backend=backend, name=lab_name("tnat", backend), mode=mode) as lab:
        recs = probe(lab, "http", "--vip", "198.19.0.10", "--port", "80", "--conns", "60",
                     "--bytes", "5000", "--sources", client_sources(lab.topology))  # fmt: skip
        bad = [r for r in recs if r["error"]]
        assert not bad, f"{mode}: {len(bad)} failed, e.g. {bad[:3]}"
        udp = probe(lab, "udp", "--vip", "198.19.0.11", "--port", "7", "--flows", "10",
                    "--count", "3", "--sources", client_sources(lab.topology))  # fmt: skip
        assert sum(r["lost"] for r in udp) == 0, f"{mode}: UDP replies lost"


def _host_snapshot() -> dict[str, str]:
    cmds = {
        "links": ["ip", "-br", "link"], "addrs": ["ip", "-br", "addr"],
        "routes": ["ip", "route", "show", "table", "all"], "rules": ["ip", "rule"],
        "netns": ["ip", "netns", "list"],
    }  # fmt: skip
    snap = {k: subprocess.run(c, capture_output=True, text=True).stdout for k, c in cmds.items()}
    for key in ("ipv4/ip_forward", "ipv4/conf/all/rp_filter", "ipv6/conf/all/disable_ipv6",
                "ipv4/fib_multipath_hash_policy", "ipv4/fib_multipath_hash_fields"):  # fmt: skip
        snap[key] = Path(f"/proc/sys/net/{key}").read_text()
    return snap


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_host_is_identical_before_and_after_a_lab(backend: str) -> None:
    before = _host_snapshot()
    with Lab.up(BASIC, backend=backend, name=lab_name("thost", backend)) as lab:
        assert lab.processes("router"), "no BGP daemon in the router"
    after = _host_snapshot()
    assert after == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_daemon_that_dies_at_start_fails_lab_up_at_once_naming_it(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BGP daemon that exits on a bad configuration: lab up fails naming it and its log's
    last words, instead of waiting out the readiness deadline, and leaves nothing behind."""
    import dsrconform.lab.bird as deploy

    monkeypatch.setattr(deploy, "BIRD_COMMON", deploy.BIRD_COMMON + "not bird syntax;\n")
    before = _host_snapshot()
    with pytest.raises(LabError) as e:
        Lab.start(BASIC, backend=backend, name=lab_name("tdead", backend), timeout=120)
    msg = str(e.value)
    kept = Path(msg.rsplit("logs and configs kept in ", 1)[1].strip())
    shutil.rmtree(kept)
    # the BIRD the first announcement waited on (a MUX's) or the router's: one that exited
    assert "cannot get ready: " in msg and re.search(r"bird on (router|mux\d) exited", msg)
    assert "syntax error" in msg  # the end of its log says why
    assert _host_snapshot() == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_of_the_holder_then_down_all_leaves_nothing_and_up_works_again(
    tmp_path: Path, backend: str
) -> None:
    name = lab_name("tcrash", backend)
    script = tmp_path / "hold.py"
    ready = tmp_path / "ready"
    script.write_text(
        "import sys, time\nfrom dsrconform.lab import Lab\n"
        f"lab = Lab.start({str(BASIC)!r}, name={name!r}, backend={backend!r})\n"
        f"open({str(ready)!r}, 'w').write('up')\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert proc.poll() is None, "the holder died before the lab was up"
            assert time.monotonic() < deadline, "lab not up in 90 s"
            time.sleep(0.1)  # waiting for the holder's ready file, bounded by the deadline
        assert registry.lab_namespaces(name)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert registry.lab_namespaces(name), "the crash should have left the lab behind"
    if backend == "docker":
        assert len(registry.lab_containers(name)) == 2 * len(registry.lab_namespaces(name))
    res = subprocess.run([sys.executable, "-m", "dsrconform.cli", "lab", "down", "--all"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    # Only the crashed lab must be gone: a lab this test process owns (the module's `basic`
    # fixture) is alive, and `down --all` leaves it (listed as skipped).
    assert not registry.lab_namespaces(name), res.stdout
    if backend == "docker":
        assert not registry.lab_containers(name)
    assert not registry.pids_in_namespaces(registry.lab_namespaces(name))
    assert not [x for x in registry.iter_leftovers() if f"dsrc-{name}." in x or name in x]
    with Lab.up(BASIC, backend=backend, name=name) as lab:
        assert lab.environment.vip_routes()["198.19.0.10"]


def test_each_mux_fronts_its_own_vip_and_replies_carry_it() -> None:
    """labs/multi-mux-nat.yaml: the same servers behind two external VIPs, one per MUX; a reply
    carrying the wrong VIP would not complete the client's handshake."""
    with Lab.up(LABS / "multi-mux-nat.yaml", name="tmulti") as lab:
        routes = lab.environment.vip_routes()
        assert routes["198.19.0.10"] == ["198.18.10.1"] and routes["198.19.0.20"] == ["198.18.10.5"]
        for vip in ("198.19.0.10", "198.19.0.20"):
            recs = probe(lab, "http", "--vip", vip, "--port", "80", "--conns", "100",
                         "--bytes", "3000", "--sources", client_sources(lab.topology))  # fmt: skip
            bad = [r for r in recs if r["error"]]
            assert not bad, f"{vip}: {len(bad)} failed, e.g. {bad[:3]}"
            assert len({r["server"] for r in recs}) == 3
        flows = lab.deployment.agents["server1"].nat_flows()
        assert {f.vip for f in flows} == {"198.19.0.10", "198.19.0.20"}
        assert {f.mux_addr for f in flows} == {"198.18.10.1", "198.18.10.5"}


def test_scale_lab_comes_up_and_spreads_over_sixteen_servers() -> None:
    with Lab.up(LABS / "scale.yaml", name="tscale") as lab:
        assert len(lab.environment.vip_routes()["198.19.0.10"]) == 4
        recs = probe(lab, "http", "--vip", "198.19.0.10", "--port", "80", "--conns", "400",
                     "--bytes", "2000", "--sources", client_sources(lab.topology))  # fmt: skip
        assert not [r for r in recs if r["error"]]
        assert len({r["server"] for r in recs}) == 16


def test_long_lived_streams_record_a_history_the_checkers_can_load(tmp_path: Path) -> None:
    """dsrconform.traffic.streams from the client node: every stream verified, and its JSON-lines
    history loads with dsrconform.observe.history (the format the checkers read)."""
    from dsrconform.observe.history import load_history

    out = tmp_path / "history.jsonl"
    with Lab.up(BASIC, name="tstream") as lab:
        srcs = client_sources(lab.topology)
        res = lab.run("client", [lab.python, "-m", "dsrconform.traffic.streams", "--vip",
                                 "198.19.0.10", "--conns", "300", "--bytes", "50000", "--rate",
                                 "100000", "--open-rate", "1000", "--sources", srcs, "--out",
                                 str(out), "--deadline", "60"], timeout=120)  # fmt: skip
    counts = json.loads(res.stderr.strip().splitlines()[-1])
    assert counts["closed"] == 300 and counts["opened"] == 300, counts
    history = load_history(out)
    assert len(history.flows) == 300
    servers = Counter()
    for flow in history.flows.values():
        kinds = [e.kind for e in flow.events]
        assert kinds[:2] == ["connected", "first_byte"] and kinds[-1] == "closed", kinds
        closed = flow.events[-1]
        assert closed.received == closed.verified == 50000
        servers[flow.events[1].server] += 1
    assert set(servers) == set(BASIC_SERVERS), servers


def test_udp_flows_record_a_history_with_one_server_per_flow(tmp_path: Path) -> None:
    from dsrconform.observe.history import load_history

    out = tmp_path / "udp.jsonl"
    with Lab.up(BASIC, name="tudp") as lab:
        res = lab.run("client", [lab.python, "-m", "dsrconform.traffic.udpflows", "--vip",
                                 "198.19.0.11", "--flows", "60", "--count", "5", "--interval",
                                 "0.02", "--sources", client_sources(lab.topology), "--out",
                                 str(out)], timeout=60)  # fmt: skip
    counts = json.loads(res.stderr.strip().splitlines()[-1])
    assert counts["sent"] == 300 and counts["replies"] == 300, counts
    history = load_history(out)
    assert len(history.flows) == 60
    first_servers = set()
    for flow in history.flows.values():
        replies = [e for e in flow.events if e.kind == "reply"]
        assert [e.seq for e in replies] == list(range(5)), [e.seq for e in replies]
        servers = {e.server for e in replies}
        assert len(servers) == 1, f"flow {flow.id} answered by {servers}"
        first_servers |= servers
    assert first_servers == set(BASIC_SERVERS), first_servers
