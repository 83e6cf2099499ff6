"""The calling process's effective capabilities, read from ``/proc/self/status``.

Used to tell a missing privilege ("run as root") from a kernel that refuses an operation to a
process that holds every capability the operation is documented to need (see
:func:`dsrconform.bpf.libbpf.classify_error`), and by ``dsrconform doctor``.
"""

from __future__ import annotations

import re
from pathlib import Path

# Bits of linux/capability.h that the lab and the BPF operations care about.
CAP_NET_RAW = 13
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24
CAP_PERFMON = 38
CAP_BPF = 39

CAP_NAMES = {
    CAP_NET_ADMIN: "CAP_NET_ADMIN",
    CAP_NET_RAW: "CAP_NET_RAW",
    CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
    CAP_SYS_RESOURCE: "CAP_SYS_RESOURCE",
    CAP_PERFMON: "CAP_PERFMON",
    CAP_BPF: "CAP_BPF",
}


def effective_caps(status_text: str | None = None) -> int:
    """The CapEff bitmask from the text of ``/proc/<pid>/status`` (default: this process's)."""
    if status_text is None:
        status_text = Path("/proc/self/status").read_text()
    m = re.search(r"^CapEff:\s*([0-9a-fA-F]+)\s*$", status_text, re.M)
    if not m:
        raise ValueError("no CapEff line in /proc/self/status")
    return int(m.group(1), 16)


def has(caps: int, bit: int) -> bool:
    return bool(caps >> bit & 1)


def bpf_privileged(caps: int) -> bool:
    """Does ``caps`` hold what loading, attaching and test-running XDP/tc programs needs?

    CAP_BPF (or, before 5.8, CAP_SYS_ADMIN, which still implies it) and CAP_NET_ADMIN."""
    return (has(caps, CAP_BPF) or has(caps, CAP_SYS_ADMIN)) and has(caps, CAP_NET_ADMIN)


def missing_names(caps: int, bits: tuple[int, ...]) -> list[str]:
    """Names of the capabilities of ``bits`` that ``caps`` lacks."""
    return [CAP_NAMES.get(b, f"cap {b}") for b in bits if not has(caps, b)]
