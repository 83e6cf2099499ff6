"""Compile ``*.bpf.c`` sources with clang, cached by a hash of everything that shapes the output.

The key covers the source, every header beside it, the ``-D`` defines (mutants are defines) and
the compiler's version, so a changed header or a different mutant never reuses a stale object.
Objects land in ``$DSRCONFORM_CACHE`` (default ``~/.cache/dsrconform/bpf``), written atomically
(temp file + rename) so concurrent test workers never see half an object.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Mapping
from pathlib import Path

from dsrconform.errors import BuildError, ToolMissingError

CLANG_PACKAGE_HINT = "install it with `apt-get install clang llvm libbpf-dev`"


def cache_dir() -> Path:
    base = os.environ.get("DSRCONFORM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dsrconform"
    )
    return Path(base) / "bpf"


@functools.cache
def clang_path() -> str:
    path = os.environ.get("DSRCONFORM_CLANG") or shutil.which("clang")
    if not path:
        raise ToolMissingError(f"clang is needed to compile the BPF programs: {CLANG_PACKAGE_HINT}")
    return path


@functools.cache
def clang_version() -> str:
    out = subprocess.run([clang_path(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


@functools.cache
def _multiarch_include() -> list[str]:
    # asm/types.h lives under /usr/include/<triplet> on Debian; -target bpf does not look there.
    triplet = sysconfig.get_config_var("MULTIARCH") or ""
    inc = Path("/usr/include") / triplet
    return [f"-I{inc}"] if triplet and inc.is_dir() else []


def clang_command(src: Path, defines: Mapping[str, str | int] | None = None) -> list[str]:
    """clang and its flags for the BPF source ``src`` (without the input and output). Sources
    include kernel UAPI and libbpf headers only: a glibc header (one that pulls in
    ``features.h``) would want the 32-bit glibc headers under ``-target bpf``."""
    return [
        clang_path(),
        "-O2",
        "-g",
        "-target",
        "bpf",
        "-Wall",
        "-Werror",
        "-Wno-unused-function",
        *_multiarch_include(),
        f"-I{src.parent}",
        *[f"-D{k}={v}" for k, v in sorted((defines or {}).items())],
    ]


def compile_bpf(source: str | Path, defines: Mapping[str, str | int] | None = None) -> Path:
    """Compile ``source`` (a ``.bpf.c`` file) and return the path of the cached object."""
    src = Path(source).resolve()
    if not src.is_file():
        raise BuildError(f"BPF source {src} does not exist")
    defs = sorted((defines or {}).items())
    h = hashlib.sha256()
    h.update(clang_version().encode())
    h.update(repr(defs).encode())
    for f in [src, *sorted(src.parent.glob("*.h"))]:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    out = cache_dir() / f"{src.name.removesuffix('.bpf.c')}-{h.hexdigest()[:20]}.o"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*clang_command(src, dict(defs)), "-c", str(src)]
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".o.tmp")
    os.close(fd)
    try:
        res = subprocess.run([*cmd, "-o", tmp], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            if "bpf/bpf_helpers.h" in res.stderr and "not found" in res.stderr:
                raise ToolMissingError(f"libbpf headers missing: {CLANG_PACKAGE_HINT}")
            raise BuildError(f"clang failed on {src} ({' '.join(cmd)}):\n{res.stderr}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
