"""``dsrconform doctor``: can this machine run the labs, and if not, what exactly to fix.

Each check is a plain function returning a :class:`CheckResult` (name, ok, detail, fix,
required); :data:`CHECKS` lists them in the order they are shown. Checks never raise: the
:func:`check` decorator turns any exception into a failed row whose detail is the error, so one
broken probe cannot hide the others. A *required* failure means the network-namespace lab cannot
run (no privileges, no XDP, no compiler, no libbpf) and makes ``doctor`` exit non-zero with the
exit code of the error class behind it (:class:`~dsrconform.errors.PrivilegeError`,
:class:`~dsrconform.errors.ToolMissingError`, else 1). A failed optional check is a warning: the
Docker engine, bpffs and a few tools are needed only by some backends or suites.

Every kernel feature the suites, traffic and benches use gets a row of its own from
:mod:`dsrconform.features`: a real attempt each (native XDP and XDP_TX over a veth, live frames,
tc, ``bpf_skb_adjust_room``, AF_PACKET, trafgen, nftables netdev, BTF, cgroup CPU limits), in
throwaway ``dsrc-feat-*`` namespaces removed in ``finally``; a missing feature's row says what
its absence costs (the engine that replaces it, or the requirements that become UNKNOWN).
Nothing touches the host's interfaces and nothing is mounted.

Usage::

    results = run_checks()            # list[CheckResult]
    code = exit_code(results)         # 0 when the netns lab can run
    print_table(results)              # or print_json(results)
    main(as_json=False)               # all three: what `dsrconform doctor` runs
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec

from dsrconform.caps import CAP_BPF, CAP_NAMES, CAP_NET_ADMIN, CAP_SYS_ADMIN, effective_caps
from dsrconform.errors import DsrConformError, PrivilegeError, ToolMissingError

if TYPE_CHECKING:
    from rich.console import Console

BPFFS = "/sys/fs/bpf"
LIVE_FRAMES_KERNEL = (5, 18)
ROOT_FIX = "run as root, e.g. `.venv/bin/dsrconform doctor` in a root shell"

# Capability bits (linux/capability.h) the lab needs in the effective set.
REQUIRED_CAPS = {b: CAP_NAMES[b] for b in (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF)}


@dataclass(frozen=True)
class CheckResult:
    """One row of the doctor's table.

    ``fix`` says what to do when ``ok`` is false. ``required`` rows gate the exit code; others are
    warnings. ``exit_code`` is the code ``doctor`` exits with when this required row fails.
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True
    exit_code: int = 1
    feature: str | None = None  # the dsrconform.features key of a feature probe's row

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "FAIL" if self.required else "warn"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "ok": self.ok,
            "required": self.required,
            "detail": self.detail,
            "fix": "" if self.ok else self.fix,
            **({"feature": self.feature} if self.feature else {}),
        }


Check = Callable[[], CheckResult]
P = ParamSpec("P")


def check(
    name: str, *, required: bool = True, fix: str = ""
) -> Callable[[Callable[P, CheckResult]], Callable[P, CheckResult]]:
    """Decorate a check: exceptions become a failed row named ``name`` with ``fix``.

    A :class:`PrivilegeError` gets the "run as root" fix; a :class:`DsrConformError` lends its
    exit code. The check's body only builds the row for the cases it understands.
    """

    def wrap(fn: Callable[P, CheckResult]) -> Callable[P, CheckResult]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> CheckResult:
            try:
                return fn(*args, **kwargs)
            except PrivilegeError as e:
                return CheckResult(name, False, str(e), ROOT_FIX, required, e.exit_code)
            except DsrConformError as e:
                return CheckResult(name, False, str(e), fix or str(e), required, e.exit_code)
            except Exception as e:  # a probe that crashes is a failed row, never a crash
                return CheckResult(name, False, f"{type(e).__name__}: {e}", fix, required)

        run.check_name = name  # type: ignore[attr-defined]
        return run

    return wrap


# --- privileges and kernel --------------------------------------------------------------------


@check("privileges", fix=ROOT_FIX)
def check_privileges(status_text: str | None = None) -> CheckResult:
    """Root, or at least CAP_NET_ADMIN + CAP_SYS_ADMIN + CAP_BPF in the effective set."""
    if status_text is None:
        status_text = Path("/proc/self/status").read_text()
    caps = effective_caps(status_text)
    missing = [n for bit, n in REQUIRED_CAPS.items() if not caps >> bit & 1]
    who = f"euid {os.geteuid()}"
    if missing:
        return CheckResult(
            "privileges",
            False,
            f"{who}; CapEff 0x{caps:x} lacks {', '.join(missing)}",
            ROOT_FIX,
            exit_code=PrivilegeError.exit_code,
        )
    return CheckResult("privileges", True, f"{who}; CapEff has {', '.join(REQUIRED_CAPS.values())}")


def kernel_version(release: str) -> tuple[int, int]:
    """``(major, minor)`` of a release string such as ``6.18.44-fc-v509``."""
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        raise ValueError(f"cannot parse kernel release {release!r}")
    return int(m.group(1)), int(m.group(2))


@check("kernel", required=False)
def check_kernel(release: str | None = None) -> CheckResult:
    release = release or os.uname().release
    ok = kernel_version(release) >= LIVE_FRAMES_KERNEL
    need = ".".join(map(str, LIVE_FRAMES_KERNEL))
    return CheckResult(
        "kernel",
        ok,
        release if ok else f"{release}: older than {need}, no XDP live-frames generator for bench",
        f"boot a kernel >= {need} (Debian 12's 6.1 is fine) to run `dsrconform bench`",
        required=False,
    )


@check("bpffs", required=False)
def check_bpffs(mounts_text: str | None = None) -> CheckResult:
    """Is ``/sys/fs/bpf`` a bpf filesystem? Only pinning needs it; doctor never mounts it."""
    if mounts_text is None:
        mounts_text = Path("/proc/self/mounts").read_text()
    mounted = any(
        len(f) >= 3 and f[1] == BPFFS and f[2] == "bpf"
        for f in (line.split() for line in mounts_text.splitlines())
    )
    return CheckResult(
        "bpffs",
        mounted,
        f"{BPFFS} mounted" if mounted else f"{BPFFS} is not a bpf mount (needed to pin maps)",
        f"mount -t bpf bpf {BPFFS}",
        required=False,
    )


# --- compiler and libraries -------------------------------------------------------------------


@check("clang", fix="apt-get install clang llvm")
def check_clang() -> CheckResult:
    from dsrconform.bpf import build

    return CheckResult("clang", True, f"{build.clang_version()} ({build.clang_path()})")


LIBBPF_FIX = "apt-get install libbpf1 libbpf-dev"


@check("libbpf", fix=LIBBPF_FIX)
def check_libbpf(include_dir: str = "/usr/include/bpf") -> CheckResult:
    from dsrconform.bpf import libbpf

    version = libbpf.version()
    headers = os.path.join(include_dir, "bpf_helpers.h")
    if not os.path.exists(headers):
        return CheckResult(
            "libbpf",
            False,
            f"libbpf {version} loads, but {headers} is missing",
            LIBBPF_FIX,
            exit_code=ToolMissingError.exit_code,
        )
    return CheckResult("libbpf", True, f"libbpf.so {version}, headers in {include_dir}")


# --- kernel features: one real attempt each (dsrconform.features) ------------------------------


def feature_check(key: str) -> Check:
    """A row for kernel feature ``key``: its probe's result, and what its absence costs (the
    fix column). Required features gate the exit code; the others degrade what they serve."""
    from dsrconform.features import FEATURES

    feature = FEATURES[key]

    @check(feature.title, required=feature.required, fix=feature.when_missing)
    def run() -> CheckResult:
        from dsrconform.features import probe

        res = probe(key)
        return CheckResult(
            feature.title,
            res.ok,
            res.detail,
            f"without it: {feature.when_missing}",
            feature.required,
            feature=key,
        )

    return run


def _feature_checks() -> tuple[Check, ...]:
    from dsrconform.features import FEATURES

    return tuple(feature_check(k) for k in FEATURES)


# --- command-line tools -----------------------------------------------------------------------


def tool_check(
    binary: str, version_args: Sequence[str], package: str, *, required: bool, why: str
) -> Check:
    """A check that ``binary`` is on PATH, showing the first line of its version output."""
    fix = f"apt-get install {package}"

    @check(binary, required=required, fix=fix)
    def run() -> CheckResult:
        path = shutil.which(binary)
        if path is None:
            return CheckResult(
                binary,
                False,
                f"not on PATH ({why})",
                fix,
                required,
                ToolMissingError.exit_code,
            )
        out = subprocess.run(
            [path, *version_args], capture_output=True, text=True, timeout=5, check=False
        )
        text = (out.stdout or out.stderr).strip()
        first = text.splitlines()[0] if text else f"{path} (no version output)"
        return CheckResult(binary, True, first, fix, required)

    return run


TOOL_CHECKS: tuple[Check, ...] = (
    tool_check("ip", ["-V"], "iproute2", required=True, why="lab namespaces and links"),
    tool_check("ethtool", ["--version"], "ethtool", required=True, why="tx offload off on veths"),
    tool_check("bpftool", ["version"], "bpftool", required=False, why="inspecting programs"),
    tool_check("nft", ["--version"], "nftables", required=False, why="loss and partition faults"),
    tool_check("tcpdump", ["--version"], "tcpdump", required=False, why="pcap evidence"),
)


# --- Docker -----------------------------------------------------------------------------------

DOCKER_FIX = (
    "only the docker backend needs it: `apt-get install docker.io`, then start the engine "
    "with `scripts/start-dockerd.sh` as root (or `systemctl start docker`)"
)


@check("docker engine", required=False, fix=DOCKER_FIX)
def check_docker() -> CheckResult:
    import docker
    from docker.errors import DockerException
    from requests import RequestException

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=3)
        try:
            client.ping()
            version = client.version().get("Version", "?")
        finally:
            client.close()
    except (DockerException, RequestException) as e:
        return CheckResult(
            "docker engine", False, f"not reachable at {where}: {e}", DOCKER_FIX, required=False
        )
    return CheckResult("docker engine", True, f"{where}: engine {version}", required=False)


# --- running and rendering --------------------------------------------------------------------

CHECKS: tuple[Check, ...] = (
    check_privileges,
    check_kernel,
    check_bpffs,
    check_clang,
    check_libbpf,
    *_feature_checks(),
    *TOOL_CHECKS,
    check_docker,
)


def run_checks(checks: Sequence[Check] | None = None) -> list[CheckResult]:
    """Run ``checks`` (default :data:`CHECKS`) in order."""
    return [c() for c in (CHECKS if checks is None else checks)]


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 when every required check passed, else the exit code of the first required failure."""
    for r in results:
        if r.required and not r.ok:
            return r.exit_code
    return 0


def print_json(results: Sequence[CheckResult]) -> None:
    print(json.dumps([r.as_dict() for r in results], indent=2))


def print_table(results: Sequence[CheckResult], console: Console | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    style = {"ok": "green", "FAIL": "bold red", "warn": "yellow"}
    table = Table(title="dsrconform doctor", show_lines=False)
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for r in results:
        table.add_row(r.name, f"[{style[r.status]}]{r.status}[/]", r.detail, "" if r.ok else r.fix)
    console = console or Console()
    console.print(table)
    failed = [r.name for r in results if r.required and not r.ok]
    if failed:
        console.print(f"[bold red]netns lab cannot run[/]: fix {', '.join(failed)} (see 'fix').")
        return
    degraded = [r.name for r in results if r.feature and not r.ok]
    if degraded:
        console.print(
            f"[yellow]netns lab can run, without[/] {', '.join(degraded)}: "
            "each row's 'fix' says what that costs."
        )
    else:
        console.print("[green]netns lab can run, with every feature.[/]")


def main(
    *,
    as_json: bool = False,
    checks: Sequence[Check] | None = None,
    console: Console | None = None,
) -> int:
    """Run every check, print them (a table, or JSON), and return the exit code."""
    results = run_checks(checks)
    if as_json:
        print_json(results)
    else:
        print_table(results, console)
    return exit_code(results)
