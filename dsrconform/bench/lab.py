"""``dsrconform bench lab``: how fast a lab comes up and goes down.

Two parts:

``topology``
    The plumbing alone, ours against Mininet's, in the same run. Ours: :class:`NetnsBackend`
    builds :func:`bench_topology` (a router node hosting one bridge segment with 8 members:
    9 namespaces, 8 veth pairs, 1 bridge, addresses, default routes, sysctls, transmit checksum
    offload off) and tears it down; no target, no BGP. Mininet: one LinuxBridge switch with 8
    hosts, no controller (8 host namespaces, each with a shell, 8 veth pairs, 1 bridge in the
    host's namespace, addresses), built, started and stopped by ``_mininet_side.py`` under the
    system python (Debian's ``mininet`` package is for ``/usr/bin/python3`` only), with its
    addresses in 198.18.64.0/24. Rounds alternate ours-Mininet, Mininet-ours (ABBA), after one
    untimed warm-up round each, and a short untimed pause (``settle``) follows every teardown:
    the kernel dismantles a deleted namespace asynchronously, and that work must not be
    charged to whichever round comes next. The headline is Mininet/ours for up and for down;
    the goal is ours >= 2x faster both ways.

``stack``
    The full stack on ``labs/basic.yaml``: :meth:`Lab.start` (namespaces, the target deployed,
    BGP converged, applications ready) plus an HTTP GET to the VIP from the client, then
    :meth:`Lab.down`. Per backend (``netns``, ``docker``); a backend the lab engine refuses is
    reported as unavailable, not as a failure.

Nothing is left behind: our namespaces (``dsrc-bench.*``, ``dsrc-benchstack.*``) are removed in
``finally``; the Mininet side checks after ``net.stop()`` that no ``s1``/``s1-eth*``/``h*-eth*``
interface and no host shell of its own remains, and the bench checks again at the end
(:func:`leftovers`). ``mn -c`` is never run: it kills processes and deletes interfaces
machine-wide, and Mininet's ``init()`` (host-wide sysctls and rlimits) is skipped.

Measured here (2 vCPU, kernel 6.18, medians of 5 rounds): ours 34.8 ms up / 15.8 ms down,
Mininet 143 ms / 248 ms (4.1x and 15.7x). Ours creates namespaces in-process (unshare and a bind
mount, no fork each) and turns checksum offload off by ioctl; what is left is netlink round trips
(batching them per namespace would reach ~12 ms). Full stack, labs/basic.yaml: netns ~2.25 s up
(~1.8 s of it the BGP/application readiness wait) / ~0.07 s down; docker ~2.8 s / ~0.24 s
(docs/lab.md keeps the table).

Use :func:`run_bench` from code, :func:`main` from the CLI, :func:`add_parser` to register
``bench lab``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from dsrconform.bench import progress_bars
from dsrconform.errors import ConfigError, DsrConformError, LabError, PrivilegeError
from dsrconform.lab import registry
from dsrconform.topology import Topology

if TYPE_CHECKING:
    from dsrconform.lab.protocol import RunningLab

TOPO_LAB = "bench"  # namespaces dsrc-bench.<node>
STACK_LAB = "benchstack"  # namespaces dsrc-benchstack.<node>
HOSTS = 8
SEGMENT_NET = "198.18.65"  # ours; Mininet's side uses 198.18.64.0/24
STACK_FILE = Path(__file__).resolve().parents[2] / "labs" / "basic.yaml"
VIP_URL = "http://198.19.0.10/id"
VIP_DEADLINE = 15.0  # seconds after Lab.start for the VIP to answer
SYSTEM_PYTHON = "/usr/bin/python3"
MININET_SIDE = Path(__file__).resolve().parent / "_mininet_side.py"
MININET_TIMEOUT = 120.0
MININET_NAME_RE = re.compile(r"^(s1|s1-eth\d+|h\d+-eth\d+)$")
BACKENDS = ("netns", "docker")
PARTS = ("topology", "stack")
ROUNDS = 5
STACK_ROUNDS = 3
MAX_ROUNDS = 50
SETTLE = 0.5
TARGET_RATIO = 2.0

ProgressFn = Callable[[str, float], None]


# --- the topology ------------------------------------------------------------------------------


def bench_topology(hosts: int = HOSTS) -> Topology:
    """Mininet's single-switch topology in our schema: the schema has no plain switch, so the
    router hosts the bridge and the 8 hosts are its members (1 client, 1 MUX, the rest servers),
    with no services. That is one namespace more than Mininet's 8 (its bridge lives in the host's
    namespace), the same 8 veth pairs and 1 bridge."""
    if not 3 <= hosts <= 200:
        raise ConfigError(f"hosts {hosts}: expected 3..200")
    roles = ["client", "mux"] + ["server"] * (hosts - 2)
    names = ["client", "mux"] + [f"server{i}" for i in range(1, hosts - 1)]
    nodes: dict[str, Any] = {"router": {"role": "router", "asn": 65000}}
    for name, role in zip(names, roles, strict=True):
        nodes[name] = {"role": role, "asn": 65001} if role == "mux" else {"role": role}
    members = {name: f"{SEGMENT_NET}.{i}/24" for i, name in enumerate(names, start=1)}
    topo = Topology.model_validate(
        {
            "name": TOPO_LAB,
            "nodes": nodes,
            "segments": [
                {"name": "lan", "host": "router", "address": f"{SEGMENT_NET}.254/24",
                 "members": members}
            ],
        }
    )  # fmt: skip
    problems = topo.problems()
    if problems:
        raise ConfigError(f"bench topology: {problems[0][1]}")
    return topo


# --- checks ------------------------------------------------------------------------------------


def mininet_unavailable() -> str | None:
    """Why the Mininet side cannot run here, or None if it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing (Debian's mininet package targets it)"
    for tool in ("mnexec", "brctl"):
        if shutil.which(tool) is None:
            return (
                f"{tool} not found; fix: apt-get install -y --no-install-recommends "
                "mininet bridge-utils"
            )
    try:
        res = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import mininet.net, mininet.nodelib"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{SYSTEM_PYTHON} -c 'import mininet.net': {e}"
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return (
            f"{SYSTEM_PYTHON} cannot import mininet ({last}); fix: apt-get install -y "
            "--no-install-recommends mininet bridge-utils"
        )
    clash = mininet_links()
    if clash:
        return f"interfaces with Mininet's names already exist in the host: {', '.join(clash)}"
    return None


def mininet_links() -> list[str]:
    """Interfaces in this thread's namespace (the host's) named like Mininet's."""
    return sorted(name for _, name in socket.if_nameindex() if MININET_NAME_RE.match(name))


def leftovers() -> list[str]:
    """What of this bench is still on the machine (should be nothing)."""
    out = [f"namespace {n}" for n in registry.lab_namespaces(TOPO_LAB)]
    out += [f"namespace {n}" for n in registry.lab_namespaces(STACK_LAB)]
    out += [f"link {n} (Mininet)" for n in mininet_links()]
    return out


# --- rounds ------------------------------------------------------------------------------------


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def ours_round(topo: Topology) -> dict[str, float]:
    """Build ``topo`` with the netns backend and tear it down: up and down in ms."""
    from dsrconform.lab.netns_backend import NetnsBackend

    backend = NetnsBackend(topo.name or TOPO_LAB)
    t0 = time.perf_counter()
    try:
        backend.create(topo)
        t1 = time.perf_counter()
    finally:
        t2 = time.perf_counter()
        backend.destroy()
        t3 = time.perf_counter()
    return {"up_ms": _ms(t1 - t0), "down_ms": _ms(t3 - t2)}


def mininet_round() -> dict[str, Any]:
    """One Mininet round in a subprocess of the system python; its own timings, in ms.

    The child runs in its own session, so a Ctrl-C at the terminal reaches only the bench, which
    then waits for the child to finish its round (``net.stop()`` included, well under a second)
    instead of killing it halfway and leaving a bridge and veths in the host's namespace. Only a
    child past :data:`MININET_TIMEOUT` is interrupted (SIGINT: its ``finally`` stops the net).
    """
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, str(MININET_SIDE)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=MININET_TIMEOUT)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)  # its finally runs net.stop()
        proc.communicate(timeout=30)
        raise LabError(f"Mininet side took over {MININET_TIMEOUT:g} s; stopped it") from None
    except KeyboardInterrupt:
        proc.communicate(timeout=30)  # let it finish and clean up; a 2nd Ctrl-C leaves it be
        raise
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise LabError(f"Mininet side exited {proc.returncode} without a result: {err.strip()}")
    result: dict[str, Any] = json.loads(lines[-1])
    result.update({k: round(v, 3) for k, v in result.items() if k.endswith("_ms")})
    if "error" in result:
        raise LabError(f"Mininet side: {result['error']}")
    if result.get("leftovers"):
        raise LabError(f"Mininet left {', '.join(result['leftovers'])} behind")
    return result


def stack_round(backend: str, path: Path = STACK_FILE) -> dict[str, float]:
    """``Lab.start`` on ``path`` until the VIP answers a GET from the client, then ``Lab.down``.

    Seconds: ``up_s`` (start + VIP check), ``start_s`` (Lab.start alone), ``ready_s`` (the
    target's readiness wait, inside start), ``vip_s`` (from start's return to the first answer),
    ``down_s``.
    """
    from dsrconform.lab.lab import Lab

    t0 = time.perf_counter()
    lab = Lab.start(path, backend=backend, name=STACK_LAB)
    try:
        t1 = time.perf_counter()
        _wait_vip(lab)
        t2 = time.perf_counter()
    finally:
        t3 = time.perf_counter()
        lab.down()
        down = time.perf_counter() - t3
    return {
        "up_s": round(t2 - t0, 4),
        "start_s": round(t1 - t0, 4),
        "ready_s": round(getattr(lab, "ready_seconds", None) or 0.0, 4),
        "vip_s": round(t2 - t1, 4),
        "down_s": round(down, 4),
    }


def _wait_vip(lab: RunningLab) -> None:
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", VIP_URL]
    deadline = time.monotonic() + VIP_DEADLINE
    last = ""
    while True:
        res = lab.run("client", argv, timeout=10, check=False)
        if res.returncode == 0 and res.stdout.strip() == "200":
            return
        last = f"curl exited {res.returncode}, HTTP {res.stdout.strip() or '-'}"
        if time.monotonic() >= deadline:
            raise LabError(f"the VIP did not answer within {VIP_DEADLINE:g} s ({last})")
        time.sleep(0.05)  # polling the VIP, bounded by the deadline above


def topology_schedule(rounds: int, mininet: bool) -> list[str]:
    """Ours and Mininet alternating, who goes first alternating too (ABBA), so the machine's
    drift hits both sides of the ratio alike."""
    if not mininet:
        return ["ours"] * rounds
    order: list[str] = []
    for r in range(rounds):
        order.extend(("ours", "mininet") if r % 2 == 0 else ("mininet", "ours"))
    return order


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "rounds": values,
    }


# --- the bench -----------------------------------------------------------------------------------


def run_bench(
    rounds: int = ROUNDS,
    *,
    parts: tuple[str, ...] = PARTS,
    mininet: bool = True,
    backends: tuple[str, ...] = ("netns",),
    stack_rounds: int = STACK_ROUNDS,
    warmup: int = 1,
    settle: float = SETTLE,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Run the parts asked for and return the results as a JSON-ready dict.

    ``rounds``: topology rounds per side; ``stack_rounds``: full-stack rounds per backend;
    ``mininet=False`` (or Mininet not installed) measures ours only; ``warmup`` untimed rounds
    per side come first; ``settle`` seconds of untimed pause follow every teardown.
    ``progress(task, fraction)`` is called after every round, tasks being ``topology:ours``,
    ``topology:mininet`` and ``stack:<backend>``.
    """
    for n, what in ((rounds, "rounds"), (stack_rounds, "stack rounds")):
        if not 1 <= n <= MAX_ROUNDS:
            raise ConfigError(f"{what} {n}: expected 1..{MAX_ROUNDS}")
    if not 0 <= warmup <= 5:
        raise ConfigError(f"warm-up rounds {warmup}: expected 0..5")
    if not 0 <= settle <= 10:
        raise ConfigError(f"settle {settle}: expected 0..10 seconds")
    for part in parts:
        if part not in PARTS:
            raise ConfigError(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
    for backend in backends:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if os.geteuid() != 0:
        raise PrivilegeError("bench lab creates network namespaces: run as root")
    if "stack" in parts and not STACK_FILE.is_file():
        raise ConfigError(f"{STACK_FILE} not found: the stack part runs from a source checkout")
    for lab in (TOPO_LAB, STACK_LAB):
        if registry.lab_namespaces(lab):
            raise LabError(
                f"lab {lab!r} is up (or was left behind by a crash); "
                f"fix: `dsrconform lab down {lab}`"
            )

    def tick(task: str, fraction: float) -> None:
        if progress is not None:
            progress(task, fraction)

    summary: dict[str, Any] = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "stack_rounds": stack_rounds,
        "warmup": warmup,
        "settle_s": settle,
        "target_ratio": TARGET_RATIO,
    }
    with _sigterm_as_interrupt():
        if "topology" in parts:
            summary["topology"] = _run_topology(rounds, mininet, warmup, settle, tick)
        if "stack" in parts:
            summary["stack"] = {
                b: _run_stack(b, stack_rounds, settle, tick) for b in backends
            }  # fmt: skip
    summary["leftovers"] = leftovers()
    return summary


def _run_topology(
    rounds: int, mininet: bool, warmup: int, settle: float, tick: ProgressFn
) -> dict[str, Any]:
    topo = bench_topology()
    reason = mininet_unavailable() if mininet else "not asked for (--no-mininet)"
    with_mininet = reason is None
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "ours": lambda: ours_round(topo),
        "mininet": mininet_round,
    }
    for _ in range(warmup):
        for side in ("ours", "mininet") if with_mininet else ("ours",):
            runners[side]()
            time.sleep(settle)  # let the kernel finish dismantling namespaces (untimed)
    results: dict[str, list[dict[str, Any]]] = {"ours": [], "mininet": []}
    for side in topology_schedule(rounds, with_mininet):
        results[side].append(runners[side]())
        tick(f"topology:{side}", len(results[side]) / rounds)
        time.sleep(settle)  # untimed, as above
    segment = topo.segments[0]
    out: dict[str, Any] = {
        "ours": {
            "what": f"{len(topo.nodes)} namespaces, {len(segment.members)} veth pairs, 1 bridge, "
            "addresses, default routes, sysctls, tx checksum offload off (NetnsBackend)",
            "namespaces": len(topo.nodes),
            "up_ms": _stats([r["up_ms"] for r in results["ours"]]),
            "down_ms": _stats([r["down_ms"] for r in results["ours"]]),
        }
    }
    if with_mininet:
        mn = results["mininet"]
        out["mininet"] = {
            "available": True,
            "what": f"LinuxBridge switch + {HOSTS} hosts, no controller "
            "(host shells in namespaces, veth pairs, addresses, bridge in the host namespace)",
            "up_ms": _stats([r["up_ms"] for r in mn]),
            "build_ms": _stats([r["build_ms"] for r in mn]),
            "start_ms": _stats([r["start_ms"] for r in mn]),
            "down_ms": _stats([r["down_ms"] for r in mn]),
        }
        ratios = {
            k: round(out["mininet"][f"{k}_ms"]["median"] / out["ours"][f"{k}_ms"]["median"], 3)
            for k in ("up", "down")
        }
        out["ratios"] = ratios  # Mininet / ours: above 1, ours is faster
        out["meets_target"] = all(v >= TARGET_RATIO for v in ratios.values())
    else:
        out["mininet"] = {"available": False, "reason": reason}
        out["ratios"] = None
        out["meets_target"] = None
    return out


def _run_stack(backend: str, rounds: int, settle: float, tick: ProgressFn) -> dict[str, Any]:
    """``rounds`` full-stack rounds on ``backend``. A round that fails is recorded in ``errors``
    and the next one runs (the lab is down either way: Lab.start tears down what it made). A
    backend the lab engine refuses (ConfigError: e.g. not implemented) is not retried, and one
    that never came up is reported as unavailable, except netns, whose failure is an error."""
    results: list[dict[str, float]] = []
    errors: list[str] = []
    for i in range(rounds):
        try:
            results.append(stack_round(backend))
        except DsrConformError as e:
            errors.append(f"round {i + 1}: {e}")
            if isinstance(e, ConfigError):
                break
        tick(f"stack:{backend}", (i + 1) / rounds)
        time.sleep(settle)
    tick(f"stack:{backend}", 1.0)
    if not results and backend != "netns":
        return {"available": False, "reason": errors[0].split(": ", 1)[1], "errors": errors}
    out: dict[str, Any] = {"available": True, "file": str(STACK_FILE), "errors": errors}
    out["completed"] = len(results)
    if results:
        out.update({key: _stats([r[key] for r in results]) for key in results[0]})
    return out


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM becomes KeyboardInterrupt for the body, so every ``finally`` tears down."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: the caller's handlers stay
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- CLI ---------------------------------------------------------------------------------------


def add_parser(bench_subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench lab`` under ``dsrconform bench``; its handler is :func:`main`."""
    p: argparse.ArgumentParser = bench_subparsers.add_parser(
        "lab", help="lab up/down times: ours vs Mininet, and the full stack (needs root)"
    )
    p.add_argument("--rounds", type=int, default=ROUNDS, metavar="N",
                   help=f"topology rounds per side (default: {ROUNDS})")  # fmt: skip
    p.add_argument("--stack-rounds", type=int, default=STACK_ROUNDS, metavar="N",
                   help=f"full-stack rounds per backend (default: {STACK_ROUNDS})")  # fmt: skip
    p.add_argument("--backend", choices=BACKENDS, action="append", default=None,
                   help="full-stack backend; repeat for both (default: netns)")  # fmt: skip
    p.add_argument("--part", choices=PARTS, action="append", default=None,
                   help="run only this part; repeatable (default: both)")  # fmt: skip
    p.add_argument("--no-mininet", action="store_true",
                   help="topology part: measure ours only")  # fmt: skip
    p.add_argument("--settle", type=float, default=SETTLE, metavar="S",
                   help=f"untimed pause after each teardown (default: {SETTLE})")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=main)
    return p


def _ratio_cell(value: float) -> str:
    return f"[{'green' if value >= TARGET_RATIO else 'red'}]{value:.2f}x[/]"


def _render(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    topo = summary.get("topology")
    if topo is not None:
        table = Table(
            title=f"Lab topology up/down: ours (NetnsBackend) vs Mininet, {HOSTS} hosts on one "
            "bridge",
            caption=f"median (min-max) of {summary['rounds']} alternating rounds, ms; "
            "ratio: Mininet / ours",
        )
        for col in ("side", "up ms", "down ms", "up + down ms"):
            table.add_column(col, justify="left" if col == "side" else "right")

        def cell(s: dict[str, Any]) -> str:
            return f"{s['median']:.1f} ({s['min']:.0f}-{s['max']:.0f})"

        sides = [("ours", topo["ours"])]
        if topo["mininet"].get("available"):
            sides.append(("mininet", topo["mininet"]))
        for name, s in sides:
            total = s["up_ms"]["median"] + s["down_ms"]["median"]
            table.add_row(name, cell(s["up_ms"]), cell(s["down_ms"]), f"{total:.1f}")
        if topo["ratios"]:
            r = topo["ratios"]
            ours, mn = topo["ours"], topo["mininet"]
            both = (mn["up_ms"]["median"] + mn["down_ms"]["median"]) / (
                ours["up_ms"]["median"] + ours["down_ms"]["median"]
            )
            table.add_row("mininet/ours", _ratio_cell(r["up"]), _ratio_cell(r["down"]),
                          f"{both:.2f}x")  # fmt: skip
        console.print(table)
        if not topo["mininet"].get("available"):
            console.print(f"[yellow]Mininet not measured:[/] {topo['mininet']['reason']}")
        else:
            verdict = "meets" if topo["meets_target"] else "misses"
            console.print(
                f"goal: ours >= {TARGET_RATIO:g}x faster than Mininet up and down: {verdict} it"
            )
    stack = summary.get("stack")
    if stack:
        table = Table(
            title="Full stack, labs/basic.yaml: up until BGP converged and the VIP answers, down",
            caption="median (min-max) of the completed rounds, seconds; ready wait: the "
            "target's wait for BGP routes and applications, part of up",
        )
        for col in ("backend", "rounds", "up", "of which ready wait", "VIP check", "down"):
            table.add_column(col, justify="left" if col == "backend" else "right")
        for backend, s in stack.items():
            if not s.get("available"):
                table.add_row(backend, "-", "unavailable", "", "", "")
                continue
            done = f"{s['completed']}/{summary['stack_rounds']}"
            if not s["completed"]:
                table.add_row(backend, done, "[red]failed[/]", "", "", "")
                continue
            table.add_row(
                backend, done,
                *(f"{s[k]['median']:.2f} ({s[k]['min']:.2f}-{s[k]['max']:.2f})"
                  for k in ("up_s", "ready_s", "vip_s", "down_s")),
            )  # fmt: skip
        console.print(table)
        for backend, s in stack.items():
            if not s.get("available"):
                console.print(f"[yellow]{backend} unavailable:[/] {s['reason']}")
            else:
                for err in s["errors"]:
                    console.print(f"[red]{backend} {err}[/]")
    if summary["leftovers"]:
        console.print(f"[red]left behind:[/] {', '.join(summary['leftovers'])}")


def main(args: argparse.Namespace) -> int:
    """``dsrconform bench lab``: run the bench, print tables (or JSON with ``--json``).

    Progress goes to stderr, so ``--json`` output stays parseable. Exit status 1 if anything
    was left behind or a full-stack round failed (:func:`problems`).
    """
    parts = tuple(getattr(args, "part", None) or PARTS)
    backends = tuple(dict.fromkeys(getattr(args, "backend", None) or ("netns",)))
    mininet = not getattr(args, "no_mininet", False)
    tasks_wanted = []
    if "topology" in parts:
        tasks_wanted.append("topology:ours")
        if mininet:
            tasks_wanted.append("topology:mininet")
    if "stack" in parts:
        tasks_wanted += [f"stack:{b}" for b in backends]
    with progress_bars(tasks_wanted, transient=bool(getattr(args, "json", False))) as progress:
        summary = run_bench(
            int(getattr(args, "rounds", ROUNDS)),
            parts=parts,
            mininet=mininet,
            backends=backends,
            stack_rounds=int(getattr(args, "stack_rounds", STACK_ROUNDS)),
            settle=float(getattr(args, "settle", SETTLE)),
            progress=progress,
        )
    if getattr(args, "json", False):
        print(json.dumps(summary, indent=2))
    else:
        _render(summary)
    found = problems(summary)
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if found else 0


def problems(summary: dict[str, Any]) -> list[str]:
    """What went wrong in a run (an unavailable backend is not a problem): leftovers, failed
    full-stack rounds."""
    out = [f"left behind: {x}" for x in summary.get("leftovers", [])]
    for backend, s in (summary.get("stack") or {}).items():
        if s.get("available"):
            out += [f"stack {backend} {e}" for e in s["errors"]]
    return out
