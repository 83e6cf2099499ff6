"""The lab controller: the process ``dsrconform lab up`` leaves running, which owns the lab.

Why a process that holds the lab, rather than re-opening the lab's BPF objects by id from each
``lab fault`` / ``lab backends`` command: a fault needs the whole :class:`~dsrconform.lab.Lab`,
not only its maps. ``restart`` re-deploys a node through the target's
:class:`~dsrconform.target.Deployment` (a new MUX programmed with the *current* backend sets,
BIRD and applications respawned, counters carried over), ``resume`` needs the pids ``pause``
stopped, ``undo`` the handles that lift an impairment or a CPU limit. Re-opening by id would need
every target to serialise its deployment and rebuild it from what the kernel lists (a protocol
change for each target, and the reference stack's wrappers hold more than ids), and two
processes could then change one lab at once. The controller keeps the one ``Lab`` and its
``Deployment``, serialises the operations, and any target works unchanged.

Life: ``lab up`` spawns ``python -m dsrconform.lab.controller`` in its own session (setsid) with
a pipe; the controller brings the lab up (the lab's record names it as owner; the lab's daemons
die with it, ``PR_SET_PDEATHSIG``), listens on ``<run dir>/control.sock``, moves its stdout and
stderr to ``<run dir>/controller.log`` and only then writes one JSON line (ready, or the
bring-up's error) to the pipe, so ``lab up`` exits without the controller holding its output.
It serves :mod:`dsrconform.lab.ctlproto` requests one at a time, appends every event the lab
records to ``<run dir>/events.jsonl``, and tears the lab down on ``{"op": "down"}``, SIGTERM,
SIGINT or SIGHUP. Killed with SIGKILL, it takes the lab's daemons and BPF objects along; the
namespaces it leaves belong to a dead owner, which the next ``lab up`` / ``Lab.start`` and
``lab down --all`` reap (:mod:`dsrconform.lab.registry`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from types import FrameType

from dsrconform.errors import DsrConformError
from dsrconform.lab import ctlproto as proto
from dsrconform.lab import registry
from dsrconform.lab.ctlops import Controller
from dsrconform.lab.lab import Event, Lab

# --- the process ---------------------------------------------------------------------------------


def _terminate(owner: int) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:  # a forked helper (pyroute2's) must not unwind our stack
            os._exit(128 + signum)
        raise KeyboardInterrupt(f"signal {signum}")

    return handler


def _report(fd: int, resp: proto.Response) -> bool:
    """Write the readiness line to ``lab up``; False if it is gone (nobody knows of the lab)."""
    try:
        os.write(fd, proto.encode(resp))
        return True
    except OSError:
        return False
    finally:
        with suppress(OSError):
            os.close(fd)


def _to_log(path: str) -> None:
    """Point stdout and stderr at the log (``lab up``'s terminal or pipes are let go)."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dsrconform.lab.controller")
    p.add_argument("file")
    p.add_argument("--ready-fd", type=int, required=True)
    p.add_argument("--backend", default="netns")
    p.add_argument("--mode", default=None)
    p.add_argument("--name", default=None)
    p.add_argument("--target", default="reference")
    p.add_argument("--mutant", default=None)
    p.add_argument("--target-opt", action="append", default=[])
    p.add_argument("--server-command", default=None)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    handler = _terminate(os.getpid())
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, handler)
    start = time.monotonic()
    try:
        from dsrconform.target import parse_target_options

        lab = Lab.start(
            args.file,
            backend=args.backend,
            mode=args.mode,
            name=args.name,
            target=args.target,
            mutant=args.mutant,
            timeout=args.timeout,
            target_options=parse_target_options(args.target_opt),
            server_command=args.server_command,
        )
    except BaseException as e:
        _report(args.ready_fd, proto.error_response(e))
        return e.exit_code if isinstance(e, DsrConformError) else 1
    ctl: Controller | None = None
    reported = False
    try:
        ctl = Controller(lab)
        ctl.sync_record()
        log = registry.lab_dir(lab.name) / proto.LOG_NAME
        _to_log(str(log))
        ready = {
            "name": lab.name,
            "pid": os.getpid(),
            "took": time.monotonic() - start,
            "ready_seconds": lab.ready_seconds,
            "target": lab.target.name,
            "mutant": lab.target.mutant,
            "mode": lab.topology.mode,
            "socket": str(proto.socket_path(lab.name)),
            "log": str(log),
        }
        ctl.on_event(Event(time.monotonic(), "up", lab.name, f"controller pid {os.getpid()}"))
        reported = True
        if not _report(args.ready_fd, proto.ok(ready)):
            print("lab up went away before the lab was ready: tearing it down", file=sys.stderr)
            return 1
        print(f"lab {lab.name} up; controller pid {os.getpid()} serving {ready['socket']}")
        sys.stdout.flush()
        ctl.serve()
        return 0
    except KeyboardInterrupt as e:
        print(f"controller: {e}: tearing the lab down", file=sys.stderr)
        return 0
    except BaseException as e:
        if not reported:  # the socket, the record or the log failed: tell lab up
            _report(args.ready_fd, proto.error_response(e))
        raise
    finally:
        if ctl is not None:
            ctl.close()
        else:
            lab.down()


if __name__ == "__main__":
    sys.exit(main())
