"""The node image of the docker backend, built locally (no registry needed).

The image is a Debian bookworm ``minbase`` root file system made with ``debootstrap`` from
deb.debian.org, plus the packages a lab node runs (:data:`PACKAGES`), imported with
``tar -C rootfs -c . | docker import``. Its tag is a hash of what goes into it (suite, variant,
packages, :data:`BUILDER_VERSION`), so a second build finds it and does nothing; changing the
package list or the builder gives a new tag, and a successful build removes the older ones.

Build it ahead (``dsrconform image build``; a few minutes, once) or let the first docker lab
build it. ``docker/Dockerfile`` makes an equivalent image where a registry is reachable
(``docker build -t dsrconform-node:dockerfile docker/`` then ``DSRCONFORM_IMAGE=...``).

The lab's processes are Python programs from the repository, which is bind-mounted read-only:
``python3 -m dsrconform.app`` and ``python3 -m dsrconform.traffic.probe`` need only the
standard library, so the image carries no Python packages of its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsrconform.errors import LabError, ToolMissingError

REPOSITORY = "dsrconform-node"
SUITE = "bookworm"
VARIANT = "minbase"
MIRROR = os.environ.get("DSRCONFORM_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("python3", "bird2", "iproute2", "nftables", "curl", "procps")
BUILDER_VERSION = 1  # bump when the build steps below change what ends up in the image
IMAGE_LABEL = "dsrconform.image"
HASH_LABEL = "dsrconform.image.hash"
LOCK = Path("/run/dsrconform/image-build.lock")
# Trimmed after debootstrap: caches and documentation nobody reads inside a lab node.
_TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
         "usr/share/info", "usr/share/locale")  # fmt: skip

Progress = Callable[[str], None]
# debootstrap's per-package lines, grouped so that progress shows a line per phase.
_PHASES = {"Retrieving": "fetch", "Validating": "fetch", "Extracting": "extract",
           "Unpacking": "install", "Configuring": "install"}  # fmt: skip


def content_hash() -> str:
    """12 hex digits naming what the image contains."""
    spec = {"suite": SUITE, "variant": VARIANT, "packages": sorted(PACKAGES),
            "builder": BUILDER_VERSION}  # fmt: skip
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def image_ref() -> str:
    """The image labs use: ``$DSRCONFORM_IMAGE`` if set, else ``dsrconform-node:<hash>``."""
    return os.environ.get("DSRCONFORM_IMAGE") or f"{REPOSITORY}:{content_hash()}"


def docker_client(timeout: int = 60) -> Any:
    """A client of the local engine, or a :class:`LabError` that says how to start one."""
    import docker
    from docker.errors import DockerException
    from requests import RequestException

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (DockerException, RequestException) as e:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise LabError(
            f"the Docker engine is not reachable at {where} ({e}); fix: run "
            "`scripts/start-dockerd.sh` as root (install it first: `apt-get install docker.io`)"
        ) from None
    return client


@dataclass(frozen=True)
class ImageStatus:
    ref: str
    present: bool
    id: str | None = None
    size_mb: float | None = None
    created: str | None = None
    stale: tuple[str, ...] = ()  # other dsrconform-node tags (older builds)

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "present": self.present, "id": self.id, "size_mb": self.size_mb,
                "created": self.created, "stale": list(self.stale)}  # fmt: skip


def status(client: Any | None = None) -> ImageStatus:
    from docker.errors import ImageNotFound

    client = client or docker_client()
    ref = image_ref()
    stale = tuple(
        t
        for img in client.images.list(name=REPOSITORY)
        for t in img.tags
        if t != ref and t.startswith(f"{REPOSITORY}:")
    )
    try:
        img = client.images.get(ref)
    except ImageNotFound:
        return ImageStatus(ref, False, stale=stale)
    return ImageStatus(
        ref, True, img.short_id, round(img.attrs.get("Size", 0) / 1e6, 1),
        img.attrs.get("Created"), stale,
    )  # fmt: skip


def _stderr_progress(line: str) -> None:
    print(f"image: {line}", file=sys.stderr, flush=True)


def ensure(progress: Progress = _stderr_progress, client: Any | None = None) -> str:
    """The image reference, built first if it is missing (one build at a time per machine)."""
    client = client or docker_client()
    if status(client).present:
        return image_ref()
    return build(progress=progress, client=client)


def build(*, force: bool = False, progress: Progress = _stderr_progress,
          client: Any | None = None) -> str:  # fmt: skip
    """Build (or, with ``force``, rebuild) the node image; returns its reference."""
    client = client or docker_client()
    ref = image_ref()
    if ref != f"{REPOSITORY}:{content_hash()}":
        raise LabError(
            f"DSRCONFORM_IMAGE={ref} names an image this command does not build; fix: unset it, "
            "or build that image yourself (e.g. `docker build -t NAME docker/`)"
        )
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same image
        before = status(client)
        if not force and before.present:
            progress(f"{ref} is present")
            return ref
        _build_locked(ref, progress)
    after = status(client)
    # Older builds (other tags, or this tag's previous image after --force): no lab uses them.
    old = [*after.stale, *([before.id] if before.id and before.id != after.id else [])]
    for what in old:
        res = subprocess.run(["docker", "rmi", what], capture_output=True, text=True, timeout=60)
        progress(f"removed the older image {what}" if res.returncode == 0 else
                 f"kept the older image {what}: {res.stderr.strip()}")  # fmt: skip
    return ref


def _build_locked(ref: str, progress: Progress) -> None:
    if shutil.which("debootstrap") is None:
        raise ToolMissingError(
            "building the node image needs debootstrap; fix: apt-get install debootstrap"
        )
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dsrconform-rootfs-", dir="/var/tmp"))
    rootfs = work / "rootfs"
    try:
        progress(f"debootstrap {SUITE} ({VARIANT}) + {', '.join(PACKAGES)} from {MIRROR}")
        _debootstrap(rootfs, progress, start)
        for rel in _TRIM:
            p = rootfs / rel
            if p.is_dir():
                shutil.rmtree(p)
                p.mkdir()
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
        progress(f"[{time.monotonic() - start:5.0f}s] importing as {ref}")
        changes = [
            f"LABEL {IMAGE_LABEL}=node",
            f"LABEL {HASH_LABEL}={content_hash()}",
            'CMD ["sleep", "infinity"]',
        ]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE)  # fmt: skip
        imp = subprocess.run(
            ["docker", "import", *[a for c in changes for a in ("--change", c)], "-", ref],
            stdin=tar.stdout, capture_output=True, text=True,
        )  # fmt: skip
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise LabError(f"docker import {ref} failed: {imp.stderr.strip()}")
        progress(f"[{time.monotonic() - start:5.0f}s] built {ref}")
    finally:
        _unmount_under(work)
        # --one-file-system: if anything is still mounted under work (a /dev bind, /proc), do
        # not delete through it into the host.
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], capture_output=True)


def _debootstrap(rootfs: Path, progress: Progress, start: float) -> None:
    argv = ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}",
            SUITE, str(rootfs), MIRROR]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    phase, last = "", 0.0
    for raw in proc.stdout:
        line = raw.rstrip()
        tail = [*tail[-19:], line]
        if not line.startswith("I: "):
            continue
        word = line[3:].split(" ", 1)[0]
        word = _PHASES.get(word, word)
        now = time.monotonic()
        if word != phase or now - last > 10:  # a line per phase, and one every 10 s within one
            progress(f"[{now - start:5.0f}s] {line[3:]}")
            phase, last = word, now
    if proc.wait() != 0:
        raise LabError(
            f"debootstrap failed (exit {proc.returncode}); its last lines:\n" + "\n".join(tail)
        )


def _unmount_under(path: Path) -> None:
    """Unmount whatever debootstrap left mounted under ``path`` (an interrupted run leaves /proc
    and /sys mounted in the root file system), deepest first, before it is deleted."""
    prefix = str(path.resolve()) + "/"
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for row in f:
            point = row.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
