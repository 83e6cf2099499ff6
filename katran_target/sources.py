"""Where Katran's sources are, and its XDP balancer compiled from them (cached).

Katran is GPL-2.0 and never part of this project: the adapter reads a Katran checkout (the
directory holding ``katran/lib``) chosen, first found wins, by

1. the target option ``katran_src`` (``--target-opt katran_src=DIR``),
2. the environment variable ``DSRCONFORM_KATRAN_SRC``,
3. ``<repository>/../shared/third_party/katran`` when it exists (the pinned copy beside the
   project's checkout; from a worktree, the nearest ancestor that holds one).

``balancer.bpf.c`` is compiled with clang as Katran's own Makefile-bpf does, plus what the lab
needs: ``IPIP_V4_PREFIX`` puts the outer IPv4 source in 198.18.0.0/16 (the lab's range; Katran's
default is 172.16.0.0/16), ``IPIP_V6_PREFIX1`` the IPv6 one in 2001:2::/96 (default 100::/96), and
an empty ``gnu/stubs-32.h`` stands in for the 32-bit glibc headers Debian does not ship (``-target
bpf`` wants them through ``<linux/types.h>``). Objects are cached under
:func:`dsrconform.bpf.build.cache_dir` by a hash of every file the build reads (the balancer's
``bpf/`` and ``linux_includes/`` folders), the defines and clang's version.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sysconfig
import tempfile
from collections.abc import Mapping
from pathlib import Path

from dsrconform.bpf.build import cache_dir, clang_path, clang_version
from dsrconform.errors import ConfigError, LabError

OPTION = "katran_src"
ENV_VAR = "DSRCONFORM_KATRAN_SRC"
BALANCER = Path("katran/lib/bpf/balancer.bpf.c")
LAB_IPIP_V4_PREFIX = 0x12C6
"""The outer source's first two octets as the little-endian CPU sees them: 198.18 (0xC6, 0x12)."""
LAB_IPIP_V6_PREFIX1 = 0x02000120
"""The IPv6 outer source's first 32 bits as the little-endian CPU sees them: 2001:0002 (Katran's
default 1 gives 100::/32); with PREFIX2 and PREFIX3 0, the IPIP build's IPv6 outer sources are
2001:2::/96, inside the lab range 2001:2::/48 and apart from every subnet the lab plans."""
BALANCER_DEFINES: dict[str, str | int] = {
    "__KERNEL__": 1,
    "IPIP_V4_PREFIX": LAB_IPIP_V4_PREFIX,
    "IPIP_V6_PREFIX1": LAB_IPIP_V6_PREFIX1,
}
STDERR_TAIL = 30  # lines of clang's stderr a build failure shows


def default_source_dir() -> Path:
    """``<repository>/../shared/third_party/katran``, the repository being this package's
    parent; from a git worktree elsewhere, the nearest ancestor holding
    ``shared/third_party/katran`` (the first candidate when none does)."""
    repo = Path(__file__).resolve().parent.parent
    for parent in repo.parents:
        candidate = parent / "shared" / "third_party" / "katran"
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "third_party" / "katran"


def _fix() -> str:
    return (
        f"fix: pass --target-opt {OPTION}=DIR (or set {ENV_VAR}=DIR), DIR being a Katran "
        "checkout (github.com/facebookincubator/katran, the folder holding katran/lib)"
    )


def find_sources(options: Mapping[str, str] | None = None) -> Path:
    """The Katran checkout to build from; ConfigError naming the option, the variable and the
    fix when none is given and the default is absent, or when the one given is not Katran's."""
    chosen = (options or {}).get(OPTION)
    if chosen:
        where = f"target option {OPTION}={chosen}"
    elif os.environ.get(ENV_VAR):
        chosen = os.environ[ENV_VAR]
        where = f"environment variable {ENV_VAR}={chosen}"
    else:
        default = default_source_dir()
        if not default.is_dir():
            raise ConfigError(
                f"katran target: no Katran sources: neither target option {OPTION} nor "
                f"environment variable {ENV_VAR} is set, and {default} does not exist; {_fix()}"
            )
        chosen, where = str(default), f"the default {default}"
    path = Path(chosen).expanduser().resolve()
    if not (path / BALANCER).is_file():
        raise ConfigError(
            f"katran target: {where} is not a Katran checkout (no {BALANCER} in it); {_fix()}"
        )
    return path


def _multiarch_include() -> list[str]:
    # asm/types.h lives under /usr/include/<triplet> on Debian; -target bpf does not look there.
    triplet = sysconfig.get_config_var("MULTIARCH") or ""
    inc = Path("/usr/include") / triplet
    return [f"-I{inc}"] if triplet and inc.is_dir() else []


def _build_inputs(src: Path) -> list[Path]:
    lib = src / "katran" / "lib"
    files = [*sorted((lib / "bpf").glob("*")), *sorted((lib / "linux_includes").rglob("*"))]
    return [f for f in files if f.is_file()]


def build_object(src: Path, source: Path, defines: Mapping[str, str | int]) -> Path:
    """Compile ``source`` (a file of the Katran checkout ``src``) for BPF, cached; LabError with
    the end of clang's stderr when it fails."""
    defs = sorted(defines.items())
    h = hashlib.sha256()
    h.update(clang_version().encode())
    h.update(repr(defs).encode())
    h.update(str(source.relative_to(src)).encode())
    for f in [source, *sorted(source.parent.glob("*")), *_build_inputs(src)]:
        if f.is_file():
            h.update(str(f.relative_to(src)).encode())
            h.update(f.read_bytes())
    out = cache_dir() / f"katran-{source.name.removesuffix('.bpf.c')}-{h.hexdigest()[:20]}.o"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="katran-build-") as tmpdir:
        stubs = Path(tmpdir) / "stubs"
        (stubs / "gnu").mkdir(parents=True)
        (stubs / "gnu" / "stubs-32.h").write_text("/* empty: no 32-bit glibc headers here */\n")
        cmd = [
            clang_path(),
            "-O2",
            "-g",
            "-target",
            "bpf",
            *[f"-D{k}={v}" for k, v in defs],
            f"-I{src}",
            f"-I{src / 'katran' / 'lib' / 'linux_includes'}",
            f"-I{stubs}",
            *_multiarch_include(),
            "-Wno-unused-value",
            "-Wno-pointer-sign",
            "-Wno-compare-distinct-pointer-types",
            "-c",
            str(source),
        ]
        tmp = Path(tmpdir) / "out.o"
        res = subprocess.run([*cmd, "-o", str(tmp)], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            tail = "\n".join(res.stderr.strip().splitlines()[-STDERR_TAIL:])
            raise LabError(
                f"katran target: clang could not build {source} (exit {res.returncode}); "
                f"command: {' '.join(cmd)}\n{tail}"
            )
        fd, part = tempfile.mkstemp(dir=out.parent, suffix=".o.tmp")
        os.close(fd)
        try:
            Path(part).write_bytes(tmp.read_bytes())
            os.replace(part, out)
        finally:
            if os.path.exists(part):
                os.unlink(part)
    return out


def build_balancer(src: Path, extra_defines: Mapping[str, str | int] | None = None) -> Path:
    """Katran's XDP balancer, compiled for the lab (cached)."""
    return build_object(src, src / BALANCER, {**BALANCER_DEFINES, **(extra_defines or {})})
