"""``dsrconform lab up | status | exec | down`` as a user runs them (root)."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsrconform.lab import registry
from tests.markers import requires_root

pytestmark = requires_root
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dsrconform.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)  # fmt: skip


def test_a_bad_file_fails_with_its_line_and_creates_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (REPO / "labs" / "basic.yaml").read_text().replace("198.18.10.5/30", "10.1.2.3/30")
    bad.write_text(text.replace("name: basic", "name: tbad"))
    res = cli("lab", "up", str(bad))
    assert res.returncode == 2, res.stderr
    assert f"{bad}:" in res.stderr and "outside the lab range" in res.stderr and "fix" in res.stderr
    assert not registry.lab_namespaces("tbad")
    assert not registry.LabRecord.load("tbad")


def test_up_status_exec_down() -> None:
    res = cli("lab", "up", "labs/basic.yaml", "--name", "tcli", "--mode", "server-nat")
    try:
        assert res.returncode == 0, res.stderr
        assert "lab tcli is up" in res.stdout
        st = cli("lab", "status", "tcli", "--json")
        assert st.returncode == 0, st.stderr
        (status,) = json.loads(st.stdout)
        assert status["record"]["mode"] == "server-nat"
        assert set(status["nodes"]) == {"client", "flood", "router", "mux1", "mux2", "server1",
                                        "server2", "server3", "gw"}  # fmt: skip
        assert status["nodes"]["mux1"]["xdp"], "no XDP program on mux1"
        assert set(status["bgp"]) == {"router", "mux1", "mux2"}, status["bgp"]
        sessions = {node: out.count("Established") for node, out in status["bgp"].items()}
        assert sessions == {"router": 2, "mux1": 1, "mux2": 1}, status["bgp"]
        ex = cli("lab", "exec", "client", "--", "curl", "-s", "-i", "--max-time", "5",
                 "http://198.19.0.10/id")  # fmt: skip
        assert ex.returncode == 0 and "X-Server-Id: server" in ex.stdout, ex.stdout + ex.stderr
        nope = cli("lab", "exec", "nosuchnode", "--", "true")
        assert nope.returncode == 2 and "no node 'nosuchnode'" in nope.stderr
    finally:
        down = cli("lab", "down", "tcli")
    assert down.returncode == 0, down.stderr
    assert not registry.lab_namespaces("tcli")
    gone = cli("lab", "exec", "client", "--name", "tcli", "--", "true")
    assert gone.returncode == 2 and "no lab 'tcli' is up" in gone.stderr


# --- owners, reaping, BPF release ------------------------------------------------------------

BASIC = REPO / "labs" / "basic.yaml"


def bpf_listed() -> tuple[set[int], set[int]]:
    """Ids of every BPF program and map the kernel lists (what `bpftool prog`/`map` show),
    walked in-process with BPF_{PROG,MAP}_GET_NEXT_ID: a `bpftool` run takes long enough for
    the kernel to catch up, hiding what a caller sees the moment `lab down` returns."""
    lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
    out = []
    for fn in (lib.bpf_prog_get_next_id, lib.bpf_map_get_next_id):
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]
        ids: set[int] = set()
        nxt = ctypes.c_uint32(0)
        while fn(nxt.value, ctypes.byref(nxt)) == 0:
            ids.add(nxt.value)
        assert ctypes.get_errno() == errno.ENOENT, os.strerror(ctypes.get_errno())
        out.append(ids)
    return out[0], out[1]


def lab_bpf_ids(lab: str) -> tuple[set[int], set[int]]:
    """The programs attached in the lab's namespaces (XDP, tc), read with `bpftool net` inside
    each, and the maps they use."""
    progs: set[int] = set()
    for ns in registry.lab_namespaces(lab):
        res = subprocess.run(
            ["ip", "netns", "exec", ns, "bpftool", "-j", "net", "show"],
            capture_output=True,
            text=True,
            check=True,
        )
        for hooks in json.loads(res.stdout):
            for kind in ("xdp", "tc"):
                progs |= {a["id"] for a in hooks.get(kind, [])}
    listing = subprocess.run(
        ["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True
    ).stdout
    maps = {m for p in json.loads(listing) if p["id"] in progs for m in p.get("map_ids", [])}
    return progs, maps


def start_holder(tmp_path: Path, name: str, *, with_up: bool) -> subprocess.Popen[bytes]:
    """A process that owns lab ``name`` (``with Lab.up``: tears it down on SIGTERM; else
    ``Lab.start``, never torn down by itself), returned once the lab is up."""
    ready = tmp_path / f"{name}.ready"
    script = tmp_path / f"{name}.py"
    body = (
        f"with Lab.up({str(BASIC)!r}, name={name!r}):\n"
        f"    open({str(ready)!r}, 'w').write('up')\n    time.sleep(600)\n"
        if with_up
        else f"lab = Lab.start({str(BASIC)!r}, name={name!r})\n"
        f"open({str(ready)!r}, 'w').write('up')\ntime.sleep(600)\n"
    )
    script.write_text("import time\nfrom dsrconform.lab import Lab\n" + body)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO)
    deadline = time.monotonic() + 90
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            cli("lab", "down", name)
            pytest.fail(f"the holder of lab {name} did not bring it up (exit {proc.returncode})")
        time.sleep(0.1)  # waiting for the holder's ready file, bounded by the deadline
    return proc


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    """Poll until none of ``pids`` runs or ``seconds`` pass; returns those still running."""
    deadline = time.monotonic() + seconds
    while (left := [p for p in pids if registry.pid_running(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)  # polling process exits, bounded by the deadline
    return left


def test_lab_down_returns_once_the_kernel_has_freed_the_labs_bpf() -> None:
    """`lab up`, then what `lab down NAME` runs, in this process, so that the kernel's lists
    are read the moment it returns (after a `lab down` process, its exit gives the kernel time
    to catch up, which hid the bug in one run of five)."""
    res = cli("lab", "up", "labs/basic.yaml", "--name", "hcbpf")
    try:
        assert res.returncode == 0, res.stderr
        progs, maps = lab_bpf_ids("hcbpf")
        assert len(progs) >= 6 and len(maps) >= 20, (progs, maps)
    finally:
        registry.reap("hcbpf")
    live_progs, live_maps = bpf_listed()
    assert not progs & live_progs, f"programs still loaded: {sorted(progs & live_progs)}"
    assert not maps & live_maps, f"maps still loaded: {sorted(maps & live_maps)}"


def test_down_all_skips_a_lab_whose_owner_runs(tmp_path: Path) -> None:
    holder = start_holder(tmp_path, "hclive", with_up=True)
    try:
        records = {lab: registry.LabRecord.load(lab) for lab in registry.labs_up()}
        plan = registry.plan_down_all(list(records), records)
        theirs = [
            lab
            for lab, state in plan.remove.items()
            if state != registry.DEAD and not lab.startswith("hc")
        ]
        if theirs:  # a lab someone brought up with `lab up`: down --all would remove it
            pytest.skip(f"lab down --all would remove labs left up on purpose: {theirs}")
        daemons = list(registry.pids_in_namespaces(registry.lab_namespaces("hclive")))
        res = cli("lab", "down", "--all")
        assert res.returncode == 0, res.stderr
        assert f"skipped lab hclive: owner pid {holder.pid}" in res.stdout, res.stdout
        assert len(registry.lab_namespaces("hclive")) == 9
        assert holder.poll() is None and all(registry.pid_running(p) for p in daemons)
    finally:
        holder.terminate()  # Lab.up tears its lab down on SIGTERM
        try:
            holder.wait(timeout=60)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
                cli("lab", "down", "hclive")
    assert not registry.lab_namespaces("hclive")


def test_an_owner_killed_with_sigkill_takes_its_daemons_and_the_next_lab_up_reaps_the_rest(
    tmp_path: Path,
) -> None:
    holder = start_holder(tmp_path, "hcowner", with_up=False)
    daemons = list(registry.pids_in_namespaces(registry.lab_namespaces("hcowner")))
    progs, maps = lab_bpf_ids("hcowner")
    holder.kill()
    holder.wait()
    try:
        assert len(daemons) >= 6, daemons  # 3 apps, 3 BIRDs
        left = wait_gone(daemons, 5)
        assert not left, f"daemons of the SIGKILLed owner still run: {left}"
        assert len(registry.lab_namespaces("hcowner")) == 9, "the kernel keeps the namespaces"
        up = cli("lab", "up", "labs/basic.yaml", "--name", "hcnext")
        assert up.returncode == 0, up.stderr
        notice = [ln for ln in up.stderr.splitlines() if "reaped" in ln]
        assert len(notice) == 1, up.stderr
        assert f"lab hcowner (owner pid {holder.pid} is gone: 9 namespaces" in notice[0], notice
        assert not registry.lab_namespaces("hcowner")
        assert registry.LabRecord.load("hcowner") is None
        live_progs, live_maps = bpf_listed()
        assert not progs & live_progs and not maps & live_maps, "its BPF is still loaded"
    finally:
        cli("lab", "down", "hcnext")
        if registry.lab_namespaces("hcowner"):
            cli("lab", "down", "hcowner")
