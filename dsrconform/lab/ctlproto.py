"""The lab controller's wire protocol: JSON lines over a unix socket in the lab's run directory.

One request per connection: the client sends one JSON object on one line, the controller answers
with one line and closes. A request names an ``op`` (:data:`OPS`) and its fields::

    {"op": "kill", "node": "mux2"}
    {"op": "loss", "node": "mux1", "peer": "router", "pct": 100, "direction": "both"}
    {"op": "backends", "service": "web", "active": ["server1"], "draining": ["server2"]}

and gets ``{"ok": true, "result": {...}, "events": [...]}`` (``events``: what the operation
recorded, each as written to ``events.jsonl``) or ``{"ok": false, "error": "...", "kind":
"ConfigError"}``. :func:`raise_for` turns an error answer back into the exception the controller
raised, so a client exits as the operation would have in-process (ConfigError: 2, else 1).

Everything here but :func:`call` is pure (no sockets, no root): unit tests cover it.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, TypedDict

from dsrconform import errors
from dsrconform.errors import ConfigError, DsrConformError, LabError
from dsrconform.lab import registry

SOCKET_NAME = "control.sock"
EVENTS_NAME = "events.jsonl"
LOG_NAME = "controller.log"
MAX_LINE = 1 << 20
"""The longest request or answer line accepted (bytes, newline included)."""
CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 60.0
"""Seconds a client waits for an answer (a MUX restart loads its BPF objects: ~1 s)."""
DOWN_TIMEOUT = 120.0

NODE_OPS = (
    "kill",
    "pause",
    "resume",
    "restart",
    "link-down",
    "link-up",
    "loss",
    "partition",
    "cpu",
    "undo",
)
DIRECTIONS = ("both", "out", "in")
"""``out``: packets from the node to its peer; ``in``: from the peer to the node."""

# op -> {field: (types accepted, required)}. "node" ops all take a node.
_STR, _NUM, _LIST = (str,), (int, float), (list,)
_OPT_STR = (str, type(None))
_OPT_LIST = (list, type(None))
OPS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "ping": {},
    "status": {},
    "down": {},
    "kill": {"node": (_STR, True)},
    "pause": {"node": (_STR, True)},
    "resume": {"node": (_STR, True)},
    "restart": {"node": (_STR, True)},
    "link-down": {"node": (_STR, True), "peer": (_OPT_STR, False)},
    "link-up": {"node": (_STR, True), "peer": (_OPT_STR, False)},
    "loss": {
        "node": (_STR, True),
        "peer": (_OPT_STR, False),
        "pct": (_NUM, True),
        "direction": (_STR, False),
    },
    "partition": {"node": (_STR, True), "peer": (_OPT_STR, False), "direction": (_STR, False)},
    "cpu": {"node": (_STR, True), "cpus": (_NUM, True)},
    "undo": {"node": (_STR, True), "id": ((int, str), True)},
    "backends": {
        "service": (_STR, True),
        "active": (_OPT_LIST, False),
        "draining": (_OPT_LIST, False),
    },
}


class Unreachable(LabError):
    """The controller could not be reached, or did not answer (whole) within the deadline."""


class Response(TypedDict, total=False):
    ok: bool
    result: dict[str, Any]
    events: list[dict[str, Any]]
    error: str
    kind: str


def socket_path(lab: str) -> Path:
    return registry.lab_dir(lab) / SOCKET_NAME


def events_path(lab: str) -> Path:
    return registry.lab_dir(lab) / EVENTS_NAME


def check_request(req: object) -> dict[str, Any]:
    """``req`` as the controller executes it, or a ConfigError naming what is wrong: an object
    with a known ``op``, its required fields, no unknown ones, each of the right type, and the
    values each op takes (a percentage, a positive CPU count, a known direction...)."""
    if not isinstance(req, dict):
        raise ConfigError(f"a request is a JSON object, got {type(req).__name__}")
    op = req.get("op")
    if op not in OPS:
        raise ConfigError(f"unknown op {op!r}; ops: {', '.join(OPS)}")
    spec = OPS[op]
    extra = sorted(set(req) - set(spec) - {"op"})
    if extra:
        raise ConfigError(
            f"op {op}: unknown field(s) {', '.join(extra)}; fields: {', '.join(spec) or 'none'}"
        )
    for name, (types, required) in spec.items():
        if name not in req:
            if required:
                raise ConfigError(f"op {op}: missing field {name!r}")
            continue
        value = req[name]
        if not isinstance(value, types) or isinstance(value, bool):
            raise ConfigError(
                f"op {op}: field {name!r} has the wrong type ({type(value).__name__})"
            )
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise ConfigError(f"op {op}: field {name!r} is a list of names")
    out = dict(req)
    if op == "loss" and not 0 < float(out["pct"]) <= 100:
        raise ConfigError(f"loss {out['pct']}: fix: a percentage above 0, at most 100")
    if op == "cpu" and not float(out["cpus"]) > 0:
        raise ConfigError(f"cpu {out['cpus']}: fix: a positive number of CPUs, e.g. 0.2")
    if op in ("loss", "partition"):
        out.setdefault("direction", "both")
        if out["direction"] not in DIRECTIONS:
            raise ConfigError(
                f"direction {out['direction']!r}: fix: one of {', '.join(DIRECTIONS)}"
            )
    if op == "undo":
        out["id"] = parse_undo_id(out["id"])
    return out


def parse_undo_id(value: int | str) -> int | str:
    """An impairment or CPU limit id (a positive integer) or ``"all"``."""
    if value == "all":
        return "all"
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise ConfigError(f"undo {value!r}: fix: an id `dsrconform lab status` lists, or all")
    return n


def json_line(obj: object) -> str:
    """``obj`` as one line of JSON, newline included (the wire's and ``events.jsonl``'s form)."""
    return json.dumps(obj, sort_keys=True) + "\n"


def encode(obj: object) -> bytes:
    """One line of JSON (what goes on the wire)."""
    data = json_line(obj).encode()
    if len(data) > MAX_LINE:
        raise LabError(f"message of {len(data)} bytes exceeds the protocol's {MAX_LINE}")
    return data


def decode(line: bytes) -> object:
    """The JSON value of one line; a ConfigError for anything else."""
    try:
        return json.loads(line.decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"not a JSON line: {e}") from None


def ok(
    result: dict[str, Any] | None = None, events: list[dict[str, Any]] | None = None
) -> Response:
    return {"ok": True, "result": result or {}, "events": events or []}


def error_response(exc: BaseException) -> Response:
    """The answer for an operation that raised ``exc`` (its class's name is the ``kind``)."""
    return {"ok": False, "error": str(exc) or type(exc).__name__, "kind": type(exc).__name__}


def _error_classes() -> dict[str, type[DsrConformError]]:
    out: dict[str, type[DsrConformError]] = {}
    for name in dir(errors):
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, DsrConformError):
            out[name] = cls
    return out


def raise_for(resp: object) -> Response:
    """``resp`` if it is a success; else raise the error it carries (a dsrconform error class
    by its name, so it exits with its class's code; anything else as a DsrConformError naming the
    kind: exit 1)."""
    if not isinstance(resp, dict) or not isinstance(resp.get("ok"), bool):
        raise LabError(f"the lab controller answered something else than a response: {resp!r}")
    if resp["ok"]:
        return Response(**resp)  # type: ignore[typeddict-item]
    kind, msg = str(resp.get("kind", "LabError")), str(resp.get("error", "failed"))
    cls = _error_classes().get(kind)
    if cls is None:  # not one of ours (OSError...): the operation failed unexpectedly, exit 1
        raise DsrConformError(f"{kind}: {msg}")
    raise cls(msg)


def event_record(t: float, wall: float, action: str, subject: str, detail: str) -> dict[str, Any]:
    """One line of ``events.jsonl``: ``t`` is ``time.monotonic()`` (CLOCK_MONOTONIC, the same
    in every process of the machine: a run's timeline can place it), ``wall`` ``time.time()``."""
    return {
        "t": round(t, 6),
        "wall": round(wall, 6),
        "action": action,
        "subject": subject,
        "detail": detail,
    }


# --- the client ---------------------------------------------------------------------------------


def read_line(sock: socket.socket, deadline: float, what: str) -> bytes:
    """One line from ``sock`` (newline included) before ``deadline`` (monotonic), else LabError."""
    buf = bytearray()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Unreachable(f"{what}: no answer within the deadline")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise Unreachable(f"{what}: no answer within the deadline") from None
        if not chunk:
            raise Unreachable(f"{what}: the connection closed before a whole line came")
        buf += chunk
        if len(buf) > MAX_LINE:
            raise LabError(f"{what}: a line longer than {MAX_LINE} bytes")
    return bytes(buf)


def call(lab: str, request: dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT) -> Response:
    """Send ``request`` to lab ``lab``'s controller and return its answer; raises the error an
    operation failed with (:func:`raise_for`), or LabError when the controller cannot be reached
    or does not answer within ``timeout`` seconds."""
    path = socket_path(lab)
    what = f"lab {lab}'s controller ({path})"
    data = encode(check_request(request))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(str(path))
        except OSError as e:
            raise Unreachable(f"{what}: cannot connect: {e.strerror or e}") from None
        deadline = time.monotonic() + timeout
        try:
            sock.sendall(data)
        except OSError as e:
            raise Unreachable(f"{what}: sending the request: {e.strerror or e}") from None
        return raise_for(decode(read_line(sock, deadline, what)))
    finally:
        sock.close()
