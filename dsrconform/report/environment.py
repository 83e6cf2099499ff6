"""The machine and tool versions a run records (:class:`~dsrconform.report.model.Environment`).

Each tool's version is the first line it prints of it, or "not found"; each command is bounded
in time. Library versions come from the installed distributions' metadata."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from dsrconform.report.model import Environment

TOOLS: dict[str, list[str]] = {
    "clang": ["clang", "--version"],
    "bpftool": ["bpftool", "version"],
    "bird": ["bird", "--version"],
    "iproute2": ["ip", "-V"],
    "tcpdump": ["tcpdump", "--version"],
    "docker": ["docker", "--version"],
}
"""Commands whose versions a run records (name -> argv)."""
LIBRARIES = ("dsrconform", "pytest", "scapy", "pyroute2", "pydantic", "hypothesis", "docker")
TOOL_TIMEOUT = 5.0
"""Seconds a version command may take."""


def tool_version(argv: list[str]) -> str:
    """The first non-empty line ``argv`` prints (stdout, else stderr: bird prints there), or
    "not found" / "unknown (...)"."""
    if shutil.which(argv[0]) is None:
        return "not found"
    try:
        res = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TOOL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({type(e).__name__})"
    for text in (res.stdout, res.stderr):
        line = next((x.strip() for x in text.splitlines() if x.strip()), "")
        if line:
            return line
    return f"unknown (exit {res.returncode}, no output)"


def library_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(features: dict[str, dict[str, object]] | None = None) -> Environment:
    """This machine's kernel, CPUs, Python, tool and library versions."""
    tools = {name: library_version(name) for name in LIBRARIES}
    tools.update({name: tool_version(argv) for name, argv in TOOLS.items()})
    uname = os.uname()
    return Environment(
        kernel=uname.release,
        machine=uname.machine,
        cpus=os.cpu_count(),
        python=platform.python_version(),
        tools=tools,
        features=dict(features or {}),
    )


def file_sha256(path: str | Path) -> str | None:
    """The SHA-256 of a file's bytes, None when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None
