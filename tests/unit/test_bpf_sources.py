"""The BPF sources include no glibc header: under ``-target bpf`` glibc's headers want the 32-bit
variants (gnu/stubs-32.h), which a plain Debian install does not have, so such an include builds
on some machines and fails on others."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dsrconform.bpf.build import clang_command
from dsrconform.observe.taps import GUE_PORT

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p for d in ("dsrconform/bpf/progs", "reference_impl/bpf") for p in (ROOT / d).glob("*.bpf.c")
)


def test_the_sources_are_found() -> None:
    names = {p.name for p in SOURCES}
    assert {"tap.bpf.c", "mux.bpf.c", "agent.bpf.c", "gateway.bpf.c"} <= names


@pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang (make bootstrap)")
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_a_bpf_source_includes_no_glibc_header(src: Path) -> None:
    # -M lists every header the preprocessor opened; glibc's all include features.h.
    # The tap's GUE port is a define its loader always passes (its one place: taps.GUE_PORT).
    defines = {"TAP_GUE_PORT": GUE_PORT} if src.name == "tap.bpf.c" else None
    res = subprocess.run(
        [*clang_command(src, defines), "-M", str(src)], capture_output=True, text=True, check=False
    )
    assert "stubs-32.h" not in res.stderr, f"{src.name} pulls in a glibc header:\n{res.stderr}"
    assert res.returncode == 0, res.stderr
    deps = res.stdout.replace("\\\n", " ").split()
    glibc = [d for d in deps if d.endswith("/features.h")]
    assert not glibc, f"{src.name} includes glibc headers: {glibc}"
