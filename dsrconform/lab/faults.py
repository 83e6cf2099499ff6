"""Link impairment and CPU limits for labs, without netem (this kernel has none).

- :func:`impair_link` drops a share of packets (``loss``), all of them (``drop``: a partition) or
  what exceeds a rate (``rate_kbit``) on a link, in one or both directions, with an nftables
  ``netdev`` table in the namespace of the node that applies it.
- :func:`limit_cpu` caps a node's processes at a number of CPUs (cgroup v2 ``cpu.max``, or the
  v1 ``cpu`` controller's CFS quota).

Each returns a handle whose ``undo()`` restores the previous state; the lab records both.

Where a direction is impaired: packets from X to Y are filtered at Y's *ingress*, unless Y's
interface runs an XDP program other than the lab's pass-through (a MUX): XDP sees packets before
any ingress hook, so the filter then goes to X's *egress* instead. (The opposite case, X sending
with XDP_TX, bypasses egress hooks; the receiving router runs the pass-through, so its ingress
hook sees those frames.)
"""

from __future__ import annotations

import itertools
import json
import subprocess
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dsrconform.bpf import PASS_PROGRAM
from dsrconform.errors import ConfigError, LabError
from dsrconform.lab import registry
from dsrconform.topology import IF_PREFIX, Topology

if TYPE_CHECKING:
    from dsrconform.lab.protocol import LabNodes

_SEQ = itertools.count(1)  # one nft table per impairment, so undoing one leaves the others


def link_interfaces(topo: Topology, a: str, b: str) -> tuple[str, str]:
    """(a's interface toward b, b's interface toward a), for a link or a segment host-member."""
    for link in topo.links:
        if set(link.ends) == {a, b}:
            return IF_PREFIX + b, IF_PREFIX + a
    for seg in topo.segments:
        if seg.host == a and b in seg.members:
            return "dsrc" + b, IF_PREFIX + seg.name
        if seg.host == b and a in seg.members:
            return IF_PREFIX + seg.name, "dsrc" + a
    raise ConfigError(
        f"no link between {a!r} and {b!r}; fix: name two nodes joined by a link, or a segment's "
        "host and one of its members"
    )


NFT_TIMEOUT = 10.0
"""Seconds an nft command may take."""


def nft(ns: str, script: str) -> None:
    """Run the nftables ``script`` in namespace ``ns``; LabError with nft's message if it fails."""
    res = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"],
        input=script,
        text=True,
        capture_output=True,
        timeout=NFT_TIMEOUT,
    )
    if res.returncode != 0:
        raise LabError(f"nft in {ns}: {res.stderr.strip()}")


def _xdp_program(ns: str, ifname: str) -> str | None:
    res = subprocess.run(["ip", "-j", "-n", ns, "link", "show", "dev", ifname],
                         capture_output=True, text=True)  # fmt: skip
    try:
        info = json.loads(res.stdout)[0]
    except (ValueError, IndexError):
        return None
    prog = info.get("xdp", {}).get("prog", {})
    return prog.get("name") if prog else None


@dataclass
class Impairment:
    """Filters installed on a link; ``undo()`` removes them."""

    description: str
    tables: list[tuple[str, str]]  # (namespace, table name)

    def undo(self) -> None:
        for ns, table in self.tables:
            if (registry.NETNS_DIR / ns).exists():
                nft(ns, f"delete table netdev {table}\n")
        self.tables = []


def impair_link(lab: LabNodes, a: str, b: str, *, loss: float = 0.0, drop: bool = False,
                rate_kbit: int | None = None, direction: str = "both") -> Impairment:  # fmt: skip
    """Impair the link between nodes ``a`` and ``b``: ``direction`` is ``both``, ``a->b`` or
    ``b->a``; ``loss`` a percentage (0-100), ``drop`` everything, ``rate_kbit`` a rate limit."""
    if not 0.0 <= loss <= 100.0:
        raise ConfigError(f"loss {loss}: fix: a percentage between 0 and 100")
    if rate_kbit is not None and rate_kbit <= 0:
        raise ConfigError(f"rate_kbit {rate_kbit}: fix: a positive rate in kbit/s")
    if not (drop or loss or rate_kbit):
        raise ConfigError("nothing to impair: give loss, drop or rate_kbit")
    if direction not in ("both", "a->b", "b->a"):
        raise ConfigError(f"direction {direction!r}: fix: both, a->b or b->a")
    a_if, b_if = link_interfaces(lab.topology, a, b)
    if drop or loss >= 100.0:  # numgen's range is 0..9999: 100 % is everything
        verdict = "drop"
    elif loss:
        # numgen draws 0..9999 per packet: loss in hundredths of a percent.
        verdict = f"numgen random mod 10000 < {round(loss * 100)} drop"
    else:
        verdict = ""
    if rate_kbit:
        rate = f"limit rate over {max(1, rate_kbit // 8)} kbytes/second drop"
        verdict = f"{verdict}\n    {rate}" if verdict else rate
    dirs = {"both": [(a, a_if, b, b_if), (b, b_if, a, a_if)],
            "a->b": [(a, a_if, b, b_if)], "b->a": [(b, b_if, a, a_if)]}[direction]  # fmt: skip
    tables: list[tuple[str, str]] = []
    imp = Impairment(f"{a}<->{b} {direction} loss={loss} drop={drop} rate_kbit={rate_kbit}", tables)
    try:
        for src, src_if, dst, dst_if in dirs:
            prog = _xdp_program(lab.netns(dst), dst_if)
            node, ifname, hook = (
                (src, src_if, "egress")
                if prog and prog != PASS_PROGRAM
                else (dst, dst_if, "ingress")
            )
            table = f"dsrc_imp_{ifname.replace('-', '_')}_{hook}_{next(_SEQ)}"
            nft(lab.netns(node), (
                f"table netdev {table} {{\n  chain c {{\n"
                f"    type filter hook {hook} device \"{ifname}\" priority 0; policy accept;\n"
                f"    {verdict}\n  }}\n}}\n"
            ))  # fmt: skip
            tables.append((lab.netns(node), table))
    except BaseException:
        imp.undo()
        raise
    return imp


# --- CPU ------------------------------------------------------------------------------------------

CGROUP_V2 = Path("/sys/fs/cgroup")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000


@dataclass
class CpuLimit:
    group: Path
    moved: dict[int, Path]  # pid -> the cgroup.procs it came from

    def undo(self) -> None:
        for pid, procs in self.moved.items():
            with suppress(OSError):  # the process is gone
                procs.write_text(str(pid))
        try:
            self.group.rmdir()
        except OSError as e:
            raise LabError(f"cannot remove cgroup {self.group}: {e.strerror}") from None


def _cgroup_of(pid: int, v2: bool) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hid, ctrl, path = line.split(":", 2)
        if v2 and hid == "0":
            return CGROUP_V2 / path.lstrip("/")
        if not v2 and "cpu" in ctrl.split(","):
            return CGROUP_V1_CPU / path.lstrip("/")
    raise LabError(f"no cpu cgroup for pid {pid}")


def limit_cpu(lab: LabNodes, node: str, cpus: float) -> CpuLimit:
    """Cap every process of ``node`` at ``cpus`` CPUs (e.g. 0.1) in a cgroup named after it."""
    if cpus <= 0:
        raise ConfigError(f"cpus {cpus}: fix: a positive number of CPUs, e.g. 0.2")
    v2 = (CGROUP_V2 / "cgroup.controllers").exists()
    if not v2 and not CGROUP_V1_CPU.is_dir():
        raise LabError("no cgroup cpu controller found (neither cgroup v2 nor v1 cpu)")
    pids = lab.processes(node)  # the node's own (a docker node's, not its namespace holder's)
    if not pids:
        raise LabError(f"{node} has no process to limit")
    base = CGROUP_V2 if v2 else CGROUP_V1_CPU
    group = base / f"dsrc-{lab.name}.{node}"
    group.mkdir(exist_ok=True)
    quota = max(1000, int(cpus * PERIOD_US))
    if v2:
        (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
    else:
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
    moved: dict[int, Path] = {}
    for pid in pids:
        try:
            origin = _cgroup_of(pid, v2) / "cgroup.procs"
            (group / "cgroup.procs").write_text(str(pid))
            moved[pid] = origin
        except (OSError, LabError):
            continue  # exited meanwhile
    return CpuLimit(group, moved)


def cpu_groups() -> list[Path]:
    """Lab cgroups left on the machine (the reaper removes them)."""
    out = []
    for base in (CGROUP_V2, CGROUP_V1_CPU):
        if base.is_dir():
            out += [p for p in base.glob("dsrc-*") if p.is_dir()]
    return out
