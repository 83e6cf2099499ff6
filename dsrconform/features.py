"""What this kernel can do, found by trying: one real attempt per feature the suites, traffic and
benches use, and the engine each consumer picks from the results.

Kernels differ between machines of one kind: on some, root lacks CAP_SYS_RESOURCE and the kernel
refuses ``BPF_PROG_TEST_RUN`` with ``BPF_F_TEST_XDP_LIVE_FRAMES`` (EPERM) while plain test runs,
native XDP and tc all work. Nothing may assume one kernel, so:

- :data:`FEATURES` lists each feature: what uses it and what its absence costs.
- :func:`probe` tries it for real (a throwaway ``dsrc-feat-*`` namespace where an interface is
  involved, removed in ``finally``; nothing on the host's interfaces) and returns a
  :class:`ProbeResult`. Results are cached per process: a feature does not come and go while a
  run goes on. A probe never raises: its error is the result's ``detail``.
- :func:`choose_engine` (pure) picks the best engine a consumer can use from those results, or
  raises :class:`~dsrconform.errors.FeatureUnavailableError` naming what is missing.

``DSRCONFORM_DISABLE_FEATURES=live-frames[,...]`` makes the named probes fail ("disabled by
..."), so a machine whose kernel has a feature can run the fallback paths exactly as a kernel
without it does (the tests force them this way).

``dsrconform doctor`` shows every probe (:func:`probe_all`) with its cost when missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scapy.utils import checksum  # the Internet checksum (RFC 1071)

from dsrconform.bpf import PASS_PROGRAM
from dsrconform.errors import DsrConformError, FeatureUnavailableError

DISABLE_ENV = "DSRCONFORM_DISABLE_FEATURES"
PROGS_DIR = Path(__file__).resolve().parent / "bpf" / "progs"
PROBE_VETH = ("dsrc-fa", "dsrc-fb")
PROBE_FRAMES = 8
BTF_VMLINUX = Path("/sys/kernel/btf/vmlinux")
BTF_MAGIC = 0xEB9F
# A minimal Ethernet + IPv4 + UDP frame to a benchmarking address (never routed anywhere: the
# probes send it only between the two ends of a throwaway veth pair).
_FRAME = bytes.fromhex(
    "02000000000202000000000108004500002e000040004011"  # eth, IPv4 up to the checksum
    "0000c6120001c6120002"  # checksum 0 (filled below), 198.18.0.1 -> 198.18.0.2
    "d431005a001a0000"  # UDP 54321 -> 90, length 26, no checksum
) + bytes(18)


PROBE_FRAME = _FRAME[:24] + struct.pack("!H", checksum(_FRAME[14:34])) + _FRAME[26:]


@dataclass(frozen=True)
class Feature:
    """A kernel feature or tool some part of dsrconform uses.

    ``used_by``: who needs it. ``when_missing``: what happens without it (the fallback, or
    which requirements cannot be decided). ``required``: the netns lab cannot run without it.
    """

    key: str
    title: str
    used_by: str
    when_missing: str
    required: bool = False


@dataclass(frozen=True)
class ProbeResult:
    """One feature's probe: did the real attempt work, and what it did or why not."""

    feature: Feature
    ok: bool
    detail: str
    seconds: float = 0.0

    @property
    def key(self) -> str:
        return self.feature.key

    @property
    def reason(self) -> str:
        """Why the feature is unavailable, in one line that names it."""
        return f"{self.feature.title} unavailable: {self.detail}"

    def as_dict(self) -> dict[str, object]:
        return {
            "feature": self.key,
            "title": self.feature.title,
            "ok": self.ok,
            "required": self.feature.required,
            "detail": self.detail,
            "used_by": self.feature.used_by,
            "when_missing": "" if self.ok else self.feature.when_missing,
            "seconds": round(self.seconds, 3),
        }


FEATURES: dict[str, Feature] = {
    f.key: f
    for f in (
        Feature(
            "bpf-test-run",
            "BPF_PROG_TEST_RUN",
            "packet-level checks of every mutant, mux-run/agent-run, tuple analysis",
            "the packet-level checks cannot run: required",
            required=True,
        ),
        Feature(
            "live-frames",
            "XDP live frames (BPF_F_TEST_XDP_LIVE_FRAMES)",
            "SYN flood and tuple probes (fastest engine), bench mux and bench traffic generator",
            "floods and tuple probes send with AF_PACKET sendmmsg (~0.4 M frames/s instead of "
            "~5 M; the lab's router, ~0.15 M/s, stays the limit), bench mux uses that generator "
            "(its ratios are then generator-bound)",
        ),
        Feature(
            "xdp-native-veth",
            "native XDP on veth",
            "the reference MUX, link taps, bench mux",
            "the reference MUX and the taps cannot attach: required",
            required=True,
        ),
        Feature(
            "xdp-tx-veth",
            "native XDP_TX delivered over a veth",
            "the reference MUX sends encapsulated frames back with XDP_TX",
            "a MUX that answers with XDP_TX loses every frame: every requirement UNKNOWN or FAIL",
            required=True,
        ),
        Feature(
            "tc-clsact",
            "tc clsact + cls_bpf",
            "the reference server agents and egress gateway",
            "the reference agents cannot attach: the reference stack cannot run",
        ),
        Feature(
            "skb-adjust-room",
            "bpf_skb_adjust_room",
            "the reference agents' decapsulation",
            "the reference agents cannot decapsulate: the reference stack cannot run",
        ),
        Feature(
            "af-packet",
            "AF_PACKET sendmmsg",
            "SYN flood and tuple probes when live frames are unavailable, bench mux fallback",
            "without live frames too, floods and tuple probes cannot run: SF-1, SF-2, SF-4, "
            "SC-2, SC-4 UNKNOWN naming it",
        ),
        Feature(
            "trafgen",
            "trafgen (netsniff-ng)",
            "third flood engine; bench traffic's baseline",
            "no third engine and no baseline in bench traffic (`apt-get install netsniff-ng`)",
        ),
        Feature(
            "nftables-netdev",
            "nftables netdev family (ingress hook, numgen)",
            "link loss and partition faults",
            "loss and partition faults cannot run (`apt-get install nftables`)",
        ),
        Feature(
            "btf",
            "kernel BTF (/sys/kernel/btf/vmlinux)",
            "bpftool's dumps of maps and programs; CO-RE programs of third-party targets",
            "bpftool shows raw bytes; a target built with CO-RE cannot load",
        ),
        Feature(
            "cgroup-cpu",
            "cgroup CPU limits (cpu.max or cpu.cfs_quota_us)",
            "the CPU starvation fault (lab.faults.limit_cpu)",
            "CPU starvation faults cannot run",
        ),
    )
}

_cache: dict[str, ProbeResult] = {}


def disabled() -> set[str]:
    """Features switched off by :data:`DISABLE_ENV` (unknown names are an error)."""
    raw = os.environ.get(DISABLE_ENV, "")
    names = {n.strip() for n in raw.split(",") if n.strip()}
    unknown = sorted(names - FEATURES.keys())
    if unknown:
        from dsrconform.errors import ConfigError

        raise ConfigError(
            f"{DISABLE_ENV}={raw!r}: unknown feature(s) {', '.join(unknown)}; "
            f"known: {', '.join(FEATURES)}"
        )
    return names


def probe(key: str, *, fresh: bool = False) -> ProbeResult:
    """The probe of feature ``key`` (cached per process unless ``fresh``); never raises."""
    feature = FEATURES[key]
    if key in disabled():
        return ProbeResult(feature, False, f"disabled by {DISABLE_ENV}")
    if not fresh and key in _cache:
        return _cache[key]
    start = time.monotonic()
    try:
        detail = _PROBES[key]()
        ok = True
    except FeatureUnavailableError as e:
        ok, detail = False, str(e)
    except DsrConformError as e:
        ok, detail = False, f"{type(e).__name__}: {e}"
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        ok, detail = False, f"{type(e).__name__}: {e}"
    result = ProbeResult(feature, ok, detail, time.monotonic() - start)
    _cache[key] = result
    return result


def probe_all(keys: Sequence[str] | None = None) -> list[ProbeResult]:
    return [probe(k) for k in (keys or FEATURES)]


def probed() -> dict[str, dict[str, object]]:
    """The probes this process ran so far (what a run's results record: which features the
    traffic found, so a reader knows why an engine was used), by feature key."""
    return {k: {"ok": r.ok, "detail": r.detail} for k, r in sorted(_cache.items())}


def clear_cache() -> None:
    _cache.clear()


# --- engine choice (pure) ------------------------------------------------------------------------

FLOOD_ENGINES: tuple[str, ...] = ("live-frames", "af-packet", "trafgen")
"""Engines of the SYN flood and the tuple probes, best first; each is also its feature's key."""


@dataclass(frozen=True)
class EngineChoice:
    """The engine picked, and why each better one was passed over (``(engine, reason)``)."""

    engine: str
    passed_over: tuple[tuple[str, str], ...] = ()

    @property
    def why(self) -> str | None:
        """One line on the better engines passed over, or None when the best was taken."""
        if not self.passed_over:
            return None
        return "; ".join(f"{e}: {r}" for e, r in self.passed_over)


def choose_engine(
    requested: str,
    results: Mapping[str, ProbeResult],
    order: Sequence[str] = FLOOD_ENGINES,
    *,
    what: str = "flood",
) -> EngineChoice:
    """The engine to use: ``requested`` if its probe passed, or with ``auto`` the first of
    ``order`` whose probe passed. Raises FeatureUnavailableError naming every engine tried and
    why, when none can be used (so a requirement that needs it is UNKNOWN naming the feature).
    """
    if requested != "auto":
        if requested not in order:
            from dsrconform.errors import ConfigError

            raise ConfigError(f"{what} engine {requested!r}: choose auto or {', '.join(order)}")
        res = results.get(requested)
        if res is None or not res.ok:
            why = res.detail if res is not None else "not probed"
            raise FeatureUnavailableError(
                f"{what} engine {requested} forced, but {why}", feature=requested
            )
        return EngineChoice(requested)
    passed: list[tuple[str, str]] = []
    for engine in order:
        res = results.get(engine)
        if res is not None and res.ok:
            return EngineChoice(engine, tuple(passed))
        passed.append((engine, res.detail if res is not None else "not probed"))
    raise FeatureUnavailableError(
        f"no {what} engine works on this machine: " + "; ".join(f"{e}: {r}" for e, r in passed),
        feature=order[0],
    )


def pick_engine(
    requested: str, order: Sequence[str] = FLOOD_ENGINES, *, what: str = "flood"
) -> EngineChoice:
    """:func:`choose_engine` over this machine's probes (probed as needed, best first: a probe
    of a worse engine runs only when the better ones failed)."""
    results: dict[str, ProbeResult] = {}
    for engine in order if requested == "auto" else (requested,):
        if engine in FEATURES:
            results[engine] = probe(engine)
            if results[engine].ok and requested == "auto":
                break
    return choose_engine(requested, results, order, what=what)


# --- the probes ----------------------------------------------------------------------------------


def _obj(name: str):  # type: ignore[no-untyped-def]
    from dsrconform.bpf.build import compile_bpf
    from dsrconform.bpf.libbpf import BpfObject

    return BpfObject(compile_bpf(PROGS_DIR / f"{name}.bpf.c"))


@contextmanager
def _pair() -> Iterator[tuple[str, int, int]]:
    """A throwaway namespace with a veth pair; yields (namespace, ifindex a, ifindex b)."""
    from dsrconform.netns import throwaway_netns, veth_pair

    with throwaway_netns("feat") as ns, veth_pair(ns, *PROBE_VETH) as (ia, ib):
        yield ns, ia, ib


def _rx_packets(ns: str, ifname: str) -> int:
    from pyroute2 import IPRoute

    from dsrconform.netns import enter_netns

    with enter_netns(ns):
        ipr = IPRoute()
    with ipr:
        stats = ipr.get_links(ifname=ifname)[0].get_attr("IFLA_STATS64")
    return int(stats["rx_packets"])


def _probe_test_run() -> str:
    from dsrconform.bpf.libbpf import XDP_ACTIONS

    with _obj("xdp_pass") as obj:
        res = obj.program(PASS_PROGRAM).test_run(PROBE_FRAME)
    if res.retval != 2:
        raise ValueError(f"{PASS_PROGRAM} returned {XDP_ACTIONS.get(res.retval, res.retval)}")
    return "an XDP program ran on a frame and returned XDP_PASS"


def _probe_live_frames() -> str:
    from dsrconform.bpf.libbpf import BPF_F_TEST_XDP_LIVE_FRAMES, possible_cpus
    from dsrconform.netns import enter_netns

    # livegen itself (what the flood runs), XDP_TX out of a veth whose peer runs native XDP
    # (count_drop): the frames must arrive, not only be accepted.
    with _obj("livegen") as gen, _obj("count_drop") as cd, _pair() as (ns, ia, ib):
        from dsrconform.bpf.libbpf import xdp_attach, xdp_detach

        template = PROBE_FRAME
        gen.map("dsrc_lg_tmpl").update(bytes(4), template + bytes(64 - len(template)))
        gen.map("dsrc_lg_cfg").update(bytes(4), struct.pack("=6I", 1, 1, 0, 0, 0, 0))
        gen.map("dsrc_lg_seq").update(bytes(4), bytes(8 * possible_cpus()))
        ctx = struct.pack("=6I", 0, 64, 0, ia, 0, 0)
        frame = template + bytes(64 - len(template))
        with enter_netns(ns):
            xdp_attach(ib, cd.program("dsrc_count_drop").fd, mode="native")
            try:
                gen.program("dsrc_livegen").test_run(
                    frame,
                    ctx=ctx,
                    repeat=PROBE_FRAMES * 8,
                    flags=BPF_F_TEST_XDP_LIVE_FRAMES,
                    batch_size=PROBE_FRAMES,
                )
            finally:
                xdp_detach(ib, mode="native")
        got = _count_drop_total(cd)
    if got == 0:
        raise ValueError(f"the kernel took {PROBE_FRAMES * 8} live frames, none reached the peer")
    return f"livegen sent {PROBE_FRAMES * 8} live frames over a veth, {got} arrived"


def _count_drop_total(cd) -> int:  # type: ignore[no-untyped-def]
    """IPv4 frames count_drop counted (slot 0; the links' own IPv6 neighbour discovery is in
    slot 1 and is not ours)."""
    raw = cd.map("dsrc_cd_stats").lookup_percpu(struct.pack("=I", 0))
    return sum(struct.unpack("=QQ", r)[0] for r in raw)


def _probe_xdp_native() -> str:
    from dsrconform.bpf.libbpf import xdp_attach, xdp_detach, xdp_query_id
    from dsrconform.netns import enter_netns

    with _obj("xdp_pass") as obj, _pair() as (ns, ia, _ib), enter_netns(ns):
        xdp_attach(ia, obj.program(PASS_PROGRAM).fd, mode="native")
        try:
            attached = xdp_query_id(ia)
        finally:
            xdp_detach(ia, mode="native")
        left = xdp_query_id(ia)
    if not attached or left:
        raise ValueError(f"attach reported success, query saw id {attached}, {left} after detach")
    return f"attached natively to a veth (prog id {attached}) and detached"


def _send_frames(ns: str, ifname: str, n: int) -> None:
    from dsrconform.netns import enter_netns

    with enter_netns(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    with sock:
        sock.bind((ifname, 0))
        for _ in range(n):
            sock.send(PROBE_FRAME)


def _probe_xdp_tx() -> str:
    from dsrconform.bpf.libbpf import xdp_attach, xdp_detach
    from dsrconform.netns import enter_netns

    # a [count_drop] <== veth ==> b [reflector: MAC swap, XDP_TX]; frames sent out of a come
    # back to a, where count_drop counts them.
    with _obj("reflector") as refl, _obj("count_drop") as cd, _pair() as (ns, ia, ib):
        with enter_netns(ns):
            xdp_attach(ia, cd.program("dsrc_count_drop").fd, mode="native")
            xdp_attach(ib, refl.program("dsrc_reflect").fd, mode="native")
        try:
            _send_frames(ns, PROBE_VETH[0], PROBE_FRAMES)
            got = _wait(lambda: _count_drop_total(cd) >= PROBE_FRAMES)
        finally:
            with enter_netns(ns):
                xdp_detach(ib, mode="native")
                xdp_detach(ia, mode="native")
        got_n = _count_drop_total(cd)
    if not got:
        raise ValueError(f"{got_n} of {PROBE_FRAMES} frames came back through XDP_TX")
    return f"{got_n} of {PROBE_FRAMES} frames reflected with XDP_TX came back over the veth"


def _wait(cond: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Poll ``cond`` (a real counter) until true or ``timeout``: the frames cross softirqs."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _probe_af_packet() -> str:
    from dsrconform.traffic.synflood import FRAME_LEN, PacketSocket

    with _pair() as (ns, _ia, _ib):
        before = _rx_packets(ns, PROBE_VETH[1])
        frame = PROBE_FRAME + bytes(FRAME_LEN - len(PROBE_FRAME))
        sock = PacketSocket(ns, PROBE_VETH[0], frame * PROBE_FRAMES)
        try:
            sent = sock.send(PROBE_FRAMES)
        finally:
            sock.close()
        ok = _wait(lambda: _rx_packets(ns, PROBE_VETH[1]) - before >= sent > 0)
        got = _rx_packets(ns, PROBE_VETH[1]) - before
    if not ok:
        raise ValueError(f"sendmmsg sent {sent} frames, the peer received {got}")
    return f"sendmmsg sent {sent} frames over a veth, the peer received {got}"


def _probe_tc() -> str:
    from dsrconform.bpf.libbpf import tc_attach, tc_detach, tc_hook_destroy
    from dsrconform.netns import enter_netns

    with _obj("xdp_pass") as obj, _pair() as (ns, ia, _ib), enter_netns(ns):
        try:
            handle = tc_attach(ia, obj.program("dsrc_tc_ok").fd, "ingress")
            tc_detach(ia, "ingress", handle=handle)
        finally:
            tc_hook_destroy(ia)
    return "cls_bpf attached to clsact ingress of a veth and removed"


def _probe_adjust_room() -> str:
    from dsrconform.bpf.libbpf import tc_action_name

    with _obj("xdp_pass") as obj:
        res = obj.program("dsrc_tc_adjust_room").test_run(PROBE_FRAME)
    if tc_action_name(res.retval) != "TC_ACT_OK" or len(res.data) != len(PROBE_FRAME) + 20:
        raise ValueError(
            f"growing a frame by 20 bytes returned {tc_action_name(res.retval)}, "
            f"{len(res.data)} bytes out of {len(PROBE_FRAME)}"
        )
    return "a tc program grew an IPv4 frame by 20 bytes after its MAC header"


def _ns_run(ns: str, argv: list[str], *, stdin: str | None = None, timeout: float = 10) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise ValueError(f"`{' '.join(argv)}` exited {out.returncode}: {out.stderr.strip()}")
    return out.stdout


def _probe_nft() -> str:
    if shutil.which("nft") is None:
        raise ValueError("nft not on PATH")
    rules = (
        "table netdev dsrc_probe {\n"
        f'  chain ingress {{ type filter hook ingress device "{PROBE_VETH[1]}" priority 0;\n'
        "    numgen random mod 100 >= 0 counter drop\n  }\n}\n"
    )
    with _pair() as (ns, _ia, _ib):
        _ns_run(ns, ["nft", "-f", "-"], stdin=rules)
        try:
            before = _rx_packets(ns, PROBE_VETH[1])
            _send_frames(ns, PROBE_VETH[0], PROBE_FRAMES)
            listed = _ns_run(ns, ["nft", "list", "table", "netdev", "dsrc_probe"])
        finally:
            _ns_run(ns, ["nft", "delete", "table", "netdev", "dsrc_probe"])
        del before
    if f"counter packets {PROBE_FRAMES} " not in listed:
        raise ValueError(f"the ingress rule did not count {PROBE_FRAMES} drops: {listed!r}")
    return f"a netdev ingress chain dropped {PROBE_FRAMES} of {PROBE_FRAMES} frames (numgen)"


def _probe_btf() -> str:
    with BTF_VMLINUX.open("rb") as f:
        head = f.read(2)
    if len(head) < 2 or struct.unpack("<H", head)[0] != BTF_MAGIC:
        raise ValueError(f"{BTF_VMLINUX} does not start with the BTF magic")
    return f"{BTF_VMLINUX} ({BTF_VMLINUX.stat().st_size // 1024} KiB)"


def _probe_cgroup_cpu() -> str:
    from dsrconform.lab.faults import CGROUP_V1_CPU, CGROUP_V2

    v2 = (CGROUP_V2 / "cgroup.controllers").exists()
    base = CGROUP_V2 if v2 else CGROUP_V1_CPU
    if not v2 and not base.is_dir():
        raise ValueError("neither cgroup v2 nor a v1 cpu hierarchy is mounted")
    group = base / f"dsrc-feat-{os.getpid()}"
    group.mkdir()
    try:
        if v2:
            (group / "cpu.max").write_text("10000 100000")
            got = (group / "cpu.max").read_text().split()[0]
        else:
            (group / "cpu.cfs_quota_us").write_text("10000")
            got = (group / "cpu.cfs_quota_us").read_text().strip()
    finally:
        group.rmdir()
    if got != "10000":
        raise ValueError(f"wrote a quota of 10000 us, read back {got}")
    return f"cgroup {'v2 cpu.max' if v2 else 'v1 cpu.cfs_quota_us'} set and removed"


def _probe_trafgen() -> str:
    path = shutil.which("trafgen")
    if path is None:
        raise ValueError("trafgen not on PATH (`apt-get install netsniff-ng`)")
    frame = PROBE_FRAME + bytes(64 - len(PROBE_FRAME))
    conf = "{ " + ", ".join(f"0x{b:02x}" for b in frame) + " }\n"
    with _pair() as (ns, _ia, _ib), tempfile.TemporaryDirectory(prefix="dsrc-feat-") as tmp:
        cfg = Path(tmp) / "probe.cfg"
        cfg.write_text(conf)
        before = _rx_packets(ns, PROBE_VETH[1])
        argv = [path, "--dev", PROBE_VETH[0], "--in", str(cfg), "--num", str(PROBE_FRAMES)]
        _ns_run(ns, [*argv, "--cpus", "1", "--no-sock-mem"])
        ok = _wait(lambda: _rx_packets(ns, PROBE_VETH[1]) - before >= PROBE_FRAMES)
        got = _rx_packets(ns, PROBE_VETH[1]) - before
    if not ok:
        raise ValueError(f"trafgen ran, the peer received {got} of {PROBE_FRAMES} frames")
    return f"trafgen sent {PROBE_FRAMES} frames over a veth, the peer received {got}"


_PROBES: dict[str, Callable[[], str]] = {
    "bpf-test-run": _probe_test_run,
    "live-frames": _probe_live_frames,
    "xdp-native-veth": _probe_xdp_native,
    "xdp-tx-veth": _probe_xdp_tx,
    "tc-clsact": _probe_tc,
    "skb-adjust-room": _probe_adjust_room,
    "af-packet": _probe_af_packet,
    "trafgen": _probe_trafgen,
    "nftables-netdev": _probe_nft,
    "btf": _probe_btf,
    "cgroup-cpu": _probe_cgroup_cpu,
}
assert _PROBES.keys() == FEATURES.keys()
