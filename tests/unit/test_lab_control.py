"""The lab controller's protocol and the ``lab fault`` / ``lab backends`` arguments, without root:
requests checked and built from arguments, answers turned back into errors, a client talking to a
fake controller over a unix socket, and the controller's bookkeeping on a fake lab."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsrconform import cli
from dsrconform.errors import ConfigError, DsrConformError, LabError
from dsrconform.lab import ctlproto as proto
from dsrconform.lab import registry
from dsrconform.lab.ctlops import Controller, neighbours
from dsrconform.lab.faultcli import backends_request, fault_request, names
from dsrconform.lab.lab import Event
from dsrconform.topofile import load_topology
from dsrconform.topology import Topology

BASIC = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"


# --- requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "req",
    [
        {"op": "ping"},
        {"op": "kill", "node": "mux1"},
        {"op": "link-down", "node": "mux1", "peer": None},
        {"op": "loss", "node": "mux1", "pct": 5, "peer": "router", "direction": "in"},
        {"op": "cpu", "node": "server1", "cpus": 0.2},
        {"op": "undo", "node": "mux1", "id": "all"},
        {"op": "backends", "service": "web", "active": ["server1"], "draining": []},
    ],
)
def test_valid_requests_pass(req: dict[str, Any]) -> None:
    assert proto.check_request(req)["op"] == req["op"]


@pytest.mark.parametrize(
    ("req", "says"),
    [
        (["kill"], "a JSON object"),
        ({"op": "explode"}, "unknown op 'explode'"),
        ({"op": "kill"}, "missing field 'node'"),
        ({"op": "kill", "node": 3}, "wrong type"),
        ({"op": "cpu", "node": "a", "cpus": True}, "wrong type"),
        ({"op": "kill", "node": "a", "pct": 3}, "unknown field(s) pct"),
        ({"op": "loss", "node": "a", "pct": 0}, "above 0, at most 100"),
        ({"op": "loss", "node": "a", "pct": 101}, "above 0, at most 100"),
        ({"op": "loss", "node": "a", "pct": 5, "direction": "up"}, "direction 'up'"),
        ({"op": "cpu", "node": "a", "cpus": -1}, "positive number of CPUs"),
        ({"op": "undo", "node": "a", "id": "x"}, "an id"),
        ({"op": "undo", "node": "a", "id": 0}, "an id"),
        ({"op": "backends", "service": "web", "active": [1]}, "list of names"),
    ],
)
def test_bad_requests_name_what_is_wrong(req: object, says: str) -> None:
    with pytest.raises(ConfigError, match=None) as e:
        proto.check_request(req)
    assert says in str(e.value)


def test_defaults_are_filled_in() -> None:
    assert proto.check_request({"op": "partition", "node": "a"})["direction"] == "both"
    assert proto.check_request({"op": "undo", "node": "a", "id": "4"})["id"] == 4


# --- the wire -----------------------------------------------------------------------------------


def test_lines_round_trip_and_bad_lines_are_config_errors() -> None:
    msg = {"op": "kill", "node": "mux1"}
    line = proto.encode(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert proto.decode(line) == msg
    with pytest.raises(ConfigError, match="not a JSON line"):
        proto.decode(b"{nope\n")
    with pytest.raises(LabError, match="exceeds"):
        proto.encode({"x": "y" * proto.MAX_LINE})


def test_answers_become_the_errors_the_controller_raised() -> None:
    assert proto.raise_for(proto.ok({"a": 1}))["result"] == {"a": 1}
    with pytest.raises(ConfigError, match="no node"):
        proto.raise_for(proto.error_response(ConfigError("no node 'x'")))
    with pytest.raises(LabError, match="nft failed") as lab_err:
        proto.raise_for(proto.error_response(LabError("nft failed")))
    assert lab_err.value.exit_code == LabError.exit_code
    with pytest.raises(DsrConformError, match="OSError: boom") as other:
        proto.raise_for(proto.error_response(OSError("boom")))
    assert other.value.exit_code == 1, "an unexpected failure exits 1"
    with pytest.raises(LabError, match="something else"):
        proto.raise_for({"result": 1})


def test_event_records_carry_both_clocks() -> None:
    rec = proto.event_record(12.5, 1700000000.25, "kill", "mux1", "pids [1]")
    assert rec == {
        "t": 12.5,
        "wall": 1700000000.25,
        "action": "kill",
        "subject": "mux1",
        "detail": "pids [1]",
    }


# --- arguments ----------------------------------------------------------------------------------


def test_fault_arguments_become_requests() -> None:
    assert fault_request("mux1", "kill") == {"op": "kill", "node": "mux1"}
    assert fault_request("mux1", "loss", "100", peer="router", direction="out") == {
        "op": "loss",
        "node": "mux1",
        "pct": 100.0,
        "peer": "router",
        "direction": "out",
    }
    assert fault_request("mux1", "partition")["direction"] == "both"
    assert fault_request("mux1", "cpu", "0.5")["cpus"] == 0.5
    assert fault_request("mux1", "undo", "all")["id"] == "all"
    assert fault_request("mux1", "link-up", peer="router")["peer"] == "router"


@pytest.mark.parametrize(
    ("args", "kw", "says"),
    [
        (("mux1", "loss"), {}, "loss needs PCT"),
        (("mux1", "kill", "3"), {}, "kill takes no value"),
        (("mux1", "loss", "lots"), {}, "a number"),
        (("mux1", "cpu", "0"), {}, "positive number of CPUs"),
        (("mux1", "pause"), {"peer": "router"}, "--peer goes with"),
        (("mux1", "link-down"), {"direction": "in"}, "--direction goes with"),
        (("mux1", "undo", "first"), {}, "an id"),
        (("mux1", "reboot"), {}, "unknown action"),
    ],
)
def test_bad_fault_arguments(args: tuple[str, ...], kw: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as e:
        fault_request(*args, **kw)
    assert says in str(e.value)


def test_backend_arguments() -> None:
    assert backends_request("web", None, None) == {"op": "backends", "service": "web"}
    assert backends_request("web", None, "server2") == {
        "op": "backends",
        "service": "web",
        "active": None,
        "draining": ["server2"],
    }
    assert backends_request("web", "server1,server3", None)["draining"] == []
    assert names(" a, b ,") == ["a", "b"]
    with pytest.raises(ConfigError, match="twice"):
        names("a,a")
    with pytest.raises(ConfigError, match="at least one server"):
        backends_request("web", "", None)


def test_cli_exits_2_for_bad_actions_and_unknown_labs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lab", "fault", "zz9", "mux1", "explode"]) == 2
    assert "invalid choice: 'explode'" in capsys.readouterr().err
    assert cli.main(["lab", "fault", "zz9", "mux1", "loss"]) == 2
    assert "loss needs PCT" in capsys.readouterr().err
    assert cli.main(["lab", "fault", "zz9", "mux1", "kill"]) == 2
    assert "no lab 'zz9' is up" in capsys.readouterr().err
    assert cli.main(["lab", "backends", "zz9", "web", "--drain", "server1"]) == 2
    assert "no lab 'zz9' is up" in capsys.readouterr().err


# --- a client and a controller on a socket ------------------------------------------------------


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "r"  # short: a unix socket's path has at most 107 bytes
    d.mkdir()
    monkeypatch.setattr(registry, "RUN_DIR", d)
    return d


def _serve_once(sock: socket.socket, answer: bytes | None) -> threading.Thread:
    def run() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            if answer is not None:
                conn.sendall(answer)
            else:
                conn.recv(1)  # never answers: waits for the client to give up

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.fixture
def listening(run_dir: Path) -> Iterator[socket.socket]:
    (run_dir / "lab1").mkdir()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(proto.socket_path("lab1")))
    sock.listen(1)
    yield sock
    sock.close()


def test_call_returns_the_answer_and_raises_its_error(listening: socket.socket) -> None:
    t = _serve_once(listening, proto.encode(proto.ok({"pid": 7})))
    assert proto.call("lab1", {"op": "ping"})["result"] == {"pid": 7}
    t.join(5)
    t = _serve_once(listening, proto.encode(proto.error_response(ConfigError("no node 'x'"))))
    with pytest.raises(ConfigError, match="no node 'x'"):
        proto.call("lab1", {"op": "kill", "node": "x"})
    t.join(5)


def test_call_gives_up_at_its_deadline(listening: socket.socket) -> None:
    t = _serve_once(listening, None)
    with pytest.raises(proto.Unreachable, match="no answer"):
        proto.call("lab1", {"op": "ping"}, timeout=0.3)
    t.join(5)


def test_call_without_a_controller_is_unreachable(run_dir: Path) -> None:
    with pytest.raises(proto.Unreachable, match="cannot connect"):
        proto.call("nolab", {"op": "ping"})
    with pytest.raises(ConfigError, match="unknown op"):
        proto.call("nolab", {"op": "nope"})  # checked before connecting


class FakeLab:
    """What the controller uses of a Lab, recording the calls instead of making them."""

    def __init__(self, topo: Topology) -> None:
        self.name, self.topology = "lab1", topo
        self.listeners: list[Any] = []
        self.calls: list[tuple[str, ...]] = []
        self.deployment = None

    def netns(self, node: str) -> str:
        if node not in self.topology.nodes:
            raise ConfigError(f"no node {node!r} in lab {self.name}")
        return f"dsrc-lab1.{node}"

    def _call(self, *what: str) -> None:
        self.calls.append(what)
        for listener in self.listeners:
            listener(Event(1.0, what[0], what[1]))

    def kill_node(self, node: str) -> None:
        self._call("kill", node)

    def pause_node(self, node: str) -> None:
        self._call("pause", node)

    def resume_node(self, node: str) -> None:
        self._call("resume", node)

    def restart_node(self, node: str) -> None:
        self._call("restart", node)

    def link_set(self, node: str, ifname: str, up: bool) -> None:
        self._call("link-up" if up else "link-down", node, ifname)

    def impair_link(self, a: str, b: str, **kw: Any) -> Any:
        self._call("impair", f"{a}-{b}")
        lab = self

        class Handle:
            def undo(self) -> None:
                lab._call("unimpair", f"{a}-{b}")

        return Handle()

    def down(self) -> dict[str, list[str]]:
        self._call("down", self.name)
        return {}


@pytest.fixture
def controller(run_dir: Path) -> Iterator[tuple[Controller, FakeLab]]:
    (run_dir / "lab1").mkdir()
    lab = FakeLab(load_topology(BASIC))
    ctl = Controller(lab)  # type: ignore[arg-type]
    yield ctl, lab
    ctl.close()
    assert not proto.socket_path("lab1").exists(), "the socket outlives the controller"


def test_the_controller_keeps_track_of_what_it_did(controller: tuple[Controller, FakeLab]) -> None:
    ctl, lab = controller
    resp = ctl.handle({"op": "kill", "node": "mux2"})
    assert resp["ok"] and resp["events"][0]["action"] == "kill"
    ctl.handle({"op": "restart", "node": "mux2"})
    assert lab.calls[-1] == ("restart", "mux2") and ("kill", "mux2") in lab.calls
    ctl.handle({"op": "restart", "node": "mux1"})  # running: killed first (a reboot)
    assert lab.calls[-2:] == [("kill", "mux1"), ("restart", "mux1")]
    with pytest.raises(ConfigError, match="not paused"):
        ctl.handle({"op": "resume", "node": "mux1"})
    ctl.handle({"op": "pause", "node": "mux1"})
    with pytest.raises(ConfigError, match="already paused"):
        ctl.handle({"op": "pause", "node": "mux1"})
    imp = ctl.handle({"op": "loss", "node": "mux1", "pct": 100, "peer": "router"})["result"]
    assert imp["id"] == 1 and "100 % loss between mux1 and router" in imp["description"]
    st = ctl.handle({"op": "status"})["result"]
    assert st["paused"] == ["mux1"] and [f["id"] for f in st["faults"]] == [1]
    with pytest.raises(ConfigError, match="no impairment or CPU limit 1 on mux2"):
        ctl.handle({"op": "undo", "node": "mux2", "id": 1})
    ctl.handle({"op": "undo", "node": "mux1", "id": 1})
    assert lab.calls[-1] == ("unimpair", "mux1-router")
    assert ctl.handle({"op": "status"})["result"]["faults"] == []
    with pytest.raises(ConfigError, match="has no link to 'client'"):
        ctl.handle({"op": "partition", "node": "mux1", "peer": "client"})
    with pytest.raises(ConfigError, match="no node 'mux9'"):
        ctl.handle({"op": "kill", "node": "mux9"})
    lines = proto.events_path("lab1").read_text().splitlines()
    assert [proto.decode(ln.encode())["action"] for ln in lines][:2] == ["kill", "restart"]  # type: ignore[index]


def test_link_faults_cover_every_link_or_the_one_named(
    controller: tuple[Controller, FakeLab],
) -> None:
    ctl, lab = controller
    assert not lab.calls
    assert ctl.handle({"op": "link-down", "node": "gw"})["result"]["interfaces"] == [
        "dsrc-router",
        "dsrc-srv",
    ]
    assert ctl.handle({"op": "link-up", "node": "gw", "peer": "router"})["result"][
        "interfaces"
    ] == ["dsrc-router"]


def test_neighbours() -> None:
    topo = load_topology(BASIC)
    assert neighbours(topo, "mux1") == ["router"]
    assert neighbours(topo, "gw") == ["router"]
    assert neighbours(topo, "server1") == ["router"]
    assert "server3" in neighbours(topo, "router") and "client" in neighbours(topo, "router")
