"""Network namespaces: enter one from the current thread, and make throwaway ones for probes.

Python 3.11 has no ``os.setns``, so :func:`enter_netns` calls libc ``setns(2)``; it changes the
namespace of the calling *thread* only, and always restores it. libbpf's netlink calls
(XDP and tc attach) and ``BPF_PROG_TEST_RUN`` with live frames act in the namespace of the calling
thread, which is why they run inside ``with enter_netns(name):``.

Every namespace this module creates carries the lab prefix ``dsrc-`` so that a reaper can find
leftovers of a crashed run, and :func:`throwaway_netns` deletes what it created in ``finally``.

Usage::

    with throwaway_netns("doctor") as ns:          # creates dsrc-doctor-<pid>-<n>
        with veth_pair(ns, "dsrc-a", "dsrc-b") as (ia, ib):
            with enter_netns(ns):
                ...  # attach XDP to ifindex ia
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager

from dsrconform.errors import LabError, PrivilegeError

LAB_PREFIX = "dsrc-"
CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_counter = itertools.count()


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if err == 1:
            raise PrivilegeError("setns(CLONE_NEWNET) needs CAP_SYS_ADMIN: run as root")
        raise LabError(f"setns failed: {os.strerror(err)}")


@contextmanager
def enter_netns(name: str | None) -> Iterator[None]:
    """Run the body with the calling thread inside network namespace ``name``.

    ``None`` means "stay where you are", so callers can pass an optional namespace through.
    """
    if name is None:
        yield
        return
    path = os.path.join(NETNS_RUN_DIR, name)
    try:
        target = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise LabError(f"network namespace {name!r} does not exist ({path})") from None
    st = os.fstat(target)
    if name.startswith(LAB_PREFIX) and (st.st_dev, st.st_ino) in host_netns_ids():
        # A lab name bound to the host's namespace (e.g. a container's pid reused by a host
        # process between reading it and `ip netns attach`): never configure the host.
        os.close(target)
        raise LabError(f"namespace {name!r} is the host's own namespace; refusing to enter it")
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


MS_BIND, MS_REC, MS_SHARED = 0x1000, 0x4000, 0x100000
_NETNS_SHARED = False


def _share_netns_dir() -> None:
    """Make /run/netns a shared mount point, as ``ip netns add`` does, so a namespace bound there
    is seen by every mount namespace (``ip netns exec`` included)."""
    global _NETNS_SHARED
    if _NETNS_SHARED:
        return
    os.makedirs(NETNS_RUN_DIR, exist_ok=True)
    target = NETNS_RUN_DIR.encode()
    if _libc.mount(b"none", target, b"none", MS_SHARED | MS_REC, None) != 0:
        # Not a mount point yet: bind it onto itself, then share it.
        if _libc.mount(target, target, b"none", MS_BIND | MS_REC, None) != 0:
            _raise_errno(f"mount --bind {NETNS_RUN_DIR}")
        if _libc.mount(b"none", target, b"none", MS_SHARED | MS_REC, None) != 0:
            _raise_errno(f"mount --make-rshared {NETNS_RUN_DIR}")
    _NETNS_SHARED = True


def _raise_errno(what: str) -> None:
    err = ctypes.get_errno()
    if err == 1:  # EPERM
        raise PrivilegeError(f"{what}: needs root (CAP_SYS_ADMIN)")
    raise LabError(f"{what}: {os.strerror(err)}")


def create_netns(names: list[str]) -> None:
    """Create named namespaces in this process, without a fork each (``ip netns add`` forks, and
    so does pyroute2's ``netns.create``): the calling thread unshares a new network namespace,
    binds it to ``/run/netns/<name>``, and returns to its own. A name that exists raises
    FileExistsError before anything of it is made."""
    _share_netns_dir()
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        for name in names:
            path = os.path.join(NETNS_RUN_DIR, name)
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
            try:
                if _libc.unshare(CLONE_NEWNET) != 0:
                    _raise_errno("unshare(CLONE_NEWNET)")
                if _libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND,
                               None) != 0:  # fmt: skip
                    _raise_errno(f"bind the namespace to {path}")
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                raise
            finally:
                _setns(own)
    finally:
        os.close(own)


def host_netns_ids() -> set[tuple[int, int]]:
    """(st_dev, st_ino) of the host's network namespace (pid 1's) and this process's own."""
    ids = set()
    for path in ("/proc/1/ns/net", "/proc/self/ns/net"):
        with contextlib.suppress(OSError):
            st = os.stat(path)
            ids.add((st.st_dev, st.st_ino))
    return ids


def unique_name(purpose: str) -> str:
    """A lab-prefixed namespace name unique to this process: ``dsrc-<purpose>-<pid>-<n>``."""
    return f"{LAB_PREFIX}{purpose}-{os.getpid()}-{next(_counter)}"


@contextmanager
def throwaway_netns(purpose: str) -> Iterator[str]:
    """Create a uniquely named namespace with ``lo`` up; delete it on exit, whatever happens."""
    from pyroute2 import NetNS, netns

    name = unique_name(purpose)
    try:
        netns.create(name)
    except PermissionError:
        raise PrivilegeError("creating a network namespace needs root (CAP_SYS_ADMIN)") from None
    try:
        with NetNS(name) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        yield name
    finally:
        netns.remove(name)


@contextmanager
def veth_pair(
    ns: str, name_a: str, name_b: str, *, ns_b: str | None = None, mtu: int = 1500
) -> Iterator[tuple[int, int]]:
    """Create veth ``name_a``/``name_b`` (a in ``ns``, b in ``ns_b`` or ``ns``), both up.

    Yields the two ifindexes (each valid inside its own namespace). Transmit checksum offload is
    turned off on both ends: native XDP drops CHECKSUM_PARTIAL state (see docs/kernel.md).
    """
    from pyroute2 import NetNS

    ns_b = ns_b or ns
    with NetNS(ns) as ipr:
        ipr.link("add", ifname=name_a, kind="veth", peer={"ifname": name_b, "net_ns_fd": ns_b})
        ia = ipr.link_lookup(ifname=name_a)[0]
        ipr.link("set", index=ia, mtu=mtu, state="up")
    with NetNS(ns_b) as ipr:
        ib = ipr.link_lookup(ifname=name_b)[0]
        ipr.link("set", index=ib, mtu=mtu, state="up")
    for n, dev in ((ns, name_a), (ns_b, name_b)):
        _ethtool_tx_off(n, dev)
    try:
        yield ia, ib
    finally:
        with NetNS(ns) as ipr:
            idx = ipr.link_lookup(ifname=name_a)
            if idx:
                ipr.link("del", index=idx[0])


def _ethtool_tx_off(ns: str, dev: str) -> None:
    import subprocess

    subprocess.run(
        ["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"],
        check=False,
        capture_output=True,
    )


def link_mac(ns: str | None, ifname: str) -> str:
    """The MAC address of ``ifname`` in namespace ``ns`` (host namespace when ``None``).

    The netlink socket is opened from inside the namespace (:func:`enter_netns`), never through
    pyroute2's NetNS, which creates a namespace that does not exist instead of failing.
    """
    from pyroute2 import IPRoute

    with enter_netns(ns):
        ipr = IPRoute()
    with ipr:
        links = ipr.get_links(ifname=ifname)
        if not links:
            raise LabError(f"no interface {ifname!r} in namespace {ns or 'host'}")
        return str(links[0].get_attr("IFLA_ADDRESS"))
