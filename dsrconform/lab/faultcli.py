"""``dsrconform lab fault`` and ``lab backends``: faults and backend changes on a lab that
``dsrconform lab up`` brought up, from any shell, through the lab's controller
(:mod:`dsrconform.lab.controller`); and the client side of ``lab up`` / ``lab down`` that starts
and stops the controller.

The pure parts (:func:`fault_request`, :func:`backends_request`, :func:`names`) turn arguments
into protocol requests (:mod:`dsrconform.lab.ctlproto`) and are unit-tested without root.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from dsrconform.errors import ConfigError, DsrConformError, LabError
from dsrconform.lab import ctlproto as proto
from dsrconform.lab import registry

ACTIONS = proto.NODE_OPS
_VALUE = {"loss": "PCT", "cpu": "N", "undo": "ID|all"}
_PEER = ("link-down", "link-up", "loss", "partition")
_DIRECTION = ("loss", "partition")
READY_MARGIN = 600.0
"""Seconds ``lab up`` waits for the controller beyond the readiness deadline (namespaces, BPF
loads; a docker node image build)."""
EXIT_WAIT = 30.0

FAULT_HELP = """\
actions:
  kill               SIGKILL the node's processes, its links down (a dead box)
  pause | resume     SIGSTOP / SIGCONT its processes (a hang: BGP notices by hold timer)
  restart            bring a killed node back (a running one is killed first): its links up,
                     the target re-deploys what runs there (a MUX with the current backends)
  link-down|link-up  the node's links (--peer NODE: only the one toward NODE)
  loss PCT           drop PCT % of packets on the node's links (--peer, --direction)
  partition          drop everything on the node's links (--peer, --direction)
  cpu N              cap the node's processes at N CPUs (e.g. 0.2)
  undo ID|all        lift impairment/CPU limit ID of the node (`lab status` lists them), or all

example: dsrconform lab fault basic mux2 kill; dsrconform lab fault basic mux2 restart
"""


def add_parsers(lab_sub: Any) -> None:
    p = lab_sub.add_parser(
        "fault",
        help="kill, pause, restart, cut or impair a node of a lab brought up by `lab up`",
        description="Apply a fault to node NODE of lab LAB (brought up with `dsrconform lab up`,"
        " from any shell); each is recorded in the lab's events.jsonl.",
        epilog=FAULT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("lab", metavar="LAB", help="lab name (`dsrconform lab status` lists them)")
    p.add_argument("node", metavar="NODE", help="node of the lab, e.g. mux2")
    p.add_argument("action", metavar="ACTION", choices=ACTIONS, help=" | ".join(ACTIONS))
    p.add_argument(
        "value",
        metavar="VALUE",
        nargs="?",
        default=None,
        help="loss: PCT (0-100]; cpu: N CPUs; undo: ID or all",
    )
    p.add_argument(
        "--peer",
        metavar="NODE",
        default=None,
        help="the link toward NODE only (default: every link of the node)",
    )
    p.add_argument(
        "--direction",
        choices=proto.DIRECTIONS,
        default=None,
        help="loss/partition: out (node to peer), in (peer to node), both (default)",
    )
    p.add_argument("--json", action="store_true", help="print the controller's answer as JSON")
    p.set_defaults(handler=_fault)

    p = lab_sub.add_parser(
        "backends",
        help="show or change a service's active and draining servers in a lab",
        description="Without --active/--drain: show SERVICE's sets. With them: change them on "
        "every MUX of the service (a MUX restarted later keeps them) and print before/after. "
        "--active defaults to the current active servers minus those drained; --drain to none.",
        epilog="example: dsrconform lab backends basic web --drain server2   (then: "
        "--active server1,server2,server3 brings it back)",
    )
    p.add_argument("lab", metavar="LAB", help="lab name")
    p.add_argument("service", metavar="SERVICE", help="service name, e.g. web")
    p.add_argument("--active", metavar="S1,S2", default=None, help="the active servers")
    p.add_argument("--drain", metavar="S3", default=None, help="the draining servers")
    p.add_argument("--json", action="store_true", help="print before/after as JSON")
    p.set_defaults(handler=_backends)


# --- pure: arguments to requests ----------------------------------------------------------------


def names(text: str | None) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]`` (None stays None; ``""`` is the empty list)."""
    if text is None:
        return None
    out = [n.strip() for n in text.split(",") if n.strip()]
    if len(out) != len(set(out)):
        raise ConfigError(f"{text!r} lists a server twice; fix: name each once")
    return out


def fault_request(
    node: str,
    action: str,
    value: str | None = None,
    *,
    peer: str | None = None,
    direction: str | None = None,
) -> dict[str, Any]:
    """The controller request for ``lab fault LAB NODE ACTION [VALUE]``; a ConfigError naming
    what is wrong and the fix otherwise."""
    if action not in ACTIONS:
        raise ConfigError(f"unknown action {action!r}; fix: one of {', '.join(ACTIONS)}")
    usage = f"`lab fault LAB NODE {action}{' ' + _VALUE[action] if action in _VALUE else ''}`"
    if action in _VALUE and value is None:
        raise ConfigError(f"{action} needs {_VALUE[action]}; fix: {usage}")
    if action not in _VALUE and value is not None:
        raise ConfigError(f"{action} takes no value (got {value!r}); fix: {usage}")
    if peer is not None and action not in _PEER:
        raise ConfigError(f"--peer goes with {', '.join(_PEER)}, not {action}")
    if direction is not None and action not in _DIRECTION:
        raise ConfigError(f"--direction goes with {', '.join(_DIRECTION)}, not {action}")
    req: dict[str, Any] = {"op": action, "node": node}
    if action in _PEER and peer is not None:
        req["peer"] = peer
    if action in _DIRECTION and direction is not None:
        req["direction"] = direction
    if action in ("loss", "cpu"):
        try:
            number = float(value or "")
        except ValueError:
            raise ConfigError(f"{action} {value!r}: fix: a number, e.g. {usage}") from None
        req["pct" if action == "loss" else "cpus"] = number
    if action == "undo":
        req["id"] = proto.parse_undo_id(value or "")
    return proto.check_request(req)


def backends_request(service: str, active: str | None, drain: str | None) -> dict[str, Any]:
    req: dict[str, Any] = {"op": "backends", "service": service}
    if active is not None or drain is not None:
        req["active"], req["draining"] = names(active), names(drain) or []
        if req["active"] == []:
            raise ConfigError("--active names no server; fix: keep at least one server active")
    return proto.check_request(req)


def event_text(ev: dict[str, Any]) -> str:
    wall = (
        time.strftime("%H:%M:%S", time.localtime(ev["wall"]))
        + f".{int(ev['wall'] * 1000) % 1000:03d}"
    )
    detail = f" ({ev['detail']})" if ev.get("detail") else ""
    return f"{ev['action']} {ev['subject']}{detail} at {wall} (monotonic {ev['t']:.3f})"


# --- talking to a controller --------------------------------------------------------------------


def controller_of(lab: str) -> int | None:
    """The pid of lab ``lab``'s live controller, or None (no record naming one, or it is gone)."""
    rec = registry.LabRecord.load(lab)
    if rec is None or "controller" not in rec.info or not registry.owner_alive(rec):
        return None
    return rec.owner_pid


def _controlled(lab: str) -> None:
    """A ConfigError unless lab ``lab`` is up with a live controller."""
    registry.check_name(lab)
    up = registry.labs_up()
    if lab not in up:
        raise ConfigError(
            f"no lab {lab!r} is up (up: {', '.join(up) or 'none'}); fix: "
            "`dsrconform lab status` lists them"
        )
    if controller_of(lab) is None:
        rec = registry.LabRecord.load(lab)
        owner = registry.owner_text(rec, registry.owner_state(rec))
        raise ConfigError(
            f"lab {lab} has no controller ({owner}): only a lab brought up by `dsrconform lab up` "
            "takes faults from other processes; fix: `dsrconform lab down "
            f"{lab}` then `dsrconform lab up FILE --name {lab}`, or apply the fault through the "
            "Lab object of the process that owns it"
        )


def _fault(args: argparse.Namespace) -> int:
    req = fault_request(
        args.node, args.action, args.value, peer=args.peer, direction=args.direction
    )
    _controlled(args.lab)
    resp = proto.call(args.lab, req)
    if args.json:
        print(proto.json_line(resp), end="")
        return 0
    result = resp.get("result", {})
    for ev in resp.get("events", []):
        print(f"{args.lab}: {event_text(ev)}")
    if args.action in ("loss", "partition", "cpu"):
        print(
            f"{args.lab}: {result['kind']} {result['id']}: {result['description']}; lift it: "
            f"dsrconform lab fault {args.lab} {args.node} undo {result['id']}"
        )
    if args.action == "undo":
        for f in result.get("undone", []):
            print(f"{args.lab}: lifted {f['kind']} {f['id']}: {f['description']}")
        if not result.get("undone"):
            print(f"{args.lab}: {args.node} has no impairment or CPU limit to lift")
    return 0


def _sets(sets: dict[str, list[str]]) -> str:
    return f"active {','.join(sets['active']) or '-'}; draining {','.join(sets['draining']) or '-'}"


def _backends(args: argparse.Namespace) -> int:
    req = backends_request(args.service, args.active, args.drain)
    _controlled(args.lab)
    resp = proto.call(args.lab, req)
    result = resp.get("result", {})
    if args.json:
        print(proto.json_line(result), end="")
    elif "active" not in req:
        print(f"{args.lab} {args.service}: {_sets(result['after'])}")
    else:
        print(f"{args.lab} {args.service}: before: {_sets(result['before'])}")
        print(f"{args.lab} {args.service}: after:  {_sets(result['after'])}")
    return 0


def status_of(lab: str) -> dict[str, Any] | None:
    """The controller's view for ``lab status`` (its pid, faults in force, killed and paused
    nodes), or None without a live controller; {"error": ...} when it does not answer."""
    if controller_of(lab) is None:
        return None
    try:
        return proto.call(lab, {"op": "status"}, timeout=5).get("result", {})
    except LabError as e:
        return {"error": str(e)}


# --- lab up / lab down ----------------------------------------------------------------------------


def _read_ready(fd: int, deadline: float) -> bytes:
    import select

    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
    return buf


def launch(
    file: str,
    *,
    name: str,
    backend: str,
    mode: str | None,
    target: str,
    mutant: str | None,
    timeout: float,
    target_opts: Sequence[str] = (),
    server_command: str | None = None,
) -> dict[str, Any]:
    """Start lab ``name``'s controller (its own session; it inherits our stderr until the lab is
    ready, so reaping notices and errors show here) and return its readiness report; raise the
    bring-up's error (the controller has torn down what it made and exited)."""
    r, w = os.pipe()
    argv = [
        sys.executable,
        "-m",
        "dsrconform.lab.controller",
        file,
        "--ready-fd",
        str(w),
        "--name",
        name,
        "--backend",
        backend,
        "--target",
        target,
        "--timeout",
        str(timeout),
    ]
    argv += ["--mode", mode] if mode else []
    argv += ["--mutant", mutant] if mutant else []
    for item in target_opts:
        argv += ["--target-opt", item]
    argv += ["--server-command", server_command] if server_command else []
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, pass_fds=(w,), start_new_session=True)
    os.close(w)
    try:
        try:
            line = _read_ready(r, time.monotonic() + timeout + READY_MARGIN)
        except (TimeoutError, KeyboardInterrupt) as e:
            _stop(proc, name)
            if isinstance(e, KeyboardInterrupt):
                raise
            raise LabError(
                f"lab {name}: the controller (pid {proc.pid}) did not report within "
                f"{timeout + READY_MARGIN:.0f} s; stopped it and removed the lab"
            ) from None
    finally:
        os.close(r)
    if not line:
        code = _stop(proc, name)
        raise LabError(
            f"lab {name}: the controller (pid {proc.pid}) exited ({code}) without "
            "reporting; its error is above; the lab was removed"
        )
    try:
        return proto.raise_for(proto.decode(line)).get("result", {})
    except BaseException:  # it tore down what it made: wait for it to exit (bounded)
        try:
            proc.wait(timeout=EXIT_WAIT)
        except subprocess.TimeoutExpired:
            _stop(proc, name)
        raise


def _stop(proc: subprocess.Popen[bytes], name: str) -> int | None:
    """SIGTERM the controller (it tears the lab down), SIGKILL it after :data:`EXIT_WAIT`, and
    reap what is left."""
    proc.terminate()
    try:
        return proc.wait(timeout=EXIT_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        registry.reap(name)
        return proc.returncode


def down(lab: str) -> dict[str, list[str]] | None:
    """Tear ``lab`` down through its controller and return what was removed, once the
    controller has exited and the kernel has freed what it held; None when there is no live
    controller or it does not answer (the caller reaps instead)."""
    pid = controller_of(lab)
    if pid is None:
        return None
    try:
        result = proto.call(lab, {"op": "down"}, timeout=proto.DOWN_TIMEOUT).get("result", {})
    except proto.Unreachable as e:
        print(f"dsrconform: {e}; removing the lab without it", file=sys.stderr)
        return None
    except DsrConformError as e:  # its teardown failed: what is left is reaped without it
        print(
            f"dsrconform: lab {lab}'s controller could not tear it down ({e}); removing what "
            "is left without it",
            file=sys.stderr,
        )
        return None
    deadline = time.monotonic() + EXIT_WAIT
    while registry.pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the controller's exit, bounded by the deadline
    if registry.pid_running(pid):
        registry.kill_pids([pid])
    held = result.get("held", {})
    registry.wait_bpf_released(held.get("progs", []), held.get("maps", []), what=f"lab {lab}")
    removed: dict[str, list[str]] = result.get("removed", {})
    removed.setdefault("processes", []).append(str(pid))
    return removed
