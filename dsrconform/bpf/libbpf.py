"""A small, typed ctypes binding over the system libbpf (libbpf.so.1, 1.1 or newer).

Why ctypes: the PyPI package ``pylibbpf`` could not attach XDP or run tests here (no fds, no
test run), and the distribution's libbpf is the one the kernel is tested with. Only what
dsrconform needs is bound:

- :class:`BpfObject` opens and loads a compiled object (map sizes can be set before load), and
  gives :class:`Program` and :class:`Map` handles. A verifier rejection raises
  :class:`~dsrconform.errors.BpfError` carrying the verifier log.
- :class:`Map` reads and writes raw bytes (per-CPU maps return one value per possible CPU).
- :meth:`Program.test_run` wraps ``BPF_PROG_TEST_RUN``.
- :func:`xdp_attach`, :func:`xdp_detach`, :func:`tc_attach`, :func:`tc_detach` act on an ifindex
  in the calling thread's network namespace: wrap them in :func:`dsrconform.netns.enter_netns`.

libbpf 1.x conventions handled here: functions returning pointers return NULL and set errno;
functions returning int return ``-errno``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dsrconform.errors import BpfError, FeatureUnavailableError, PrivilegeError, ToolMissingError

# --- library loading -------------------------------------------------------------------------

_lib: ctypes.CDLL | None = None
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2

XDP_ACTIONS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}
TC_ACTIONS = {-1: "TC_ACT_UNSPEC", 0: "TC_ACT_OK", 2: "TC_ACT_SHOT", 7: "TC_ACT_REDIRECT"}


def tc_action_name(retval: int) -> str:
    """Name of a tc program's return code; the kernel hands back the signed int as a u32."""
    code = retval - (1 << 32) if retval >= 1 << 31 else retval
    return TC_ACTIONS.get(code, f"TC_ACT_{code}")


_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_log_local = threading.local()
_LOG_BUF_SIZE = 16 << 20


@_PRINT_FN
def _print_cb(level: int, fmt: bytes, ap: int) -> int:
    # libbpf prints through a varargs callback; vsnprintf formats the va_list for us.
    if level > 1:  # LIBBPF_DEBUG: too chatty; WARN (0) and INFO (1) carry the verifier log.
        return 0
    # One message can hold a whole verifier log (libbpf prints it with a single %s) whose last
    # lines say why the program was refused: a buffer as large as libbpf's own log buffer.
    buf = ctypes.create_string_buffer(_LOG_BUF_SIZE)
    _libc.vsnprintf(buf, len(buf), fmt, ap)
    sink = getattr(_log_local, "sink", None)
    if sink is not None:
        sink.append(buf.value.decode(errors="replace"))
    return 0


class _BpfTestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class _BpfTcHook(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("ifindex", ctypes.c_int),
        ("attach_point", ctypes.c_int),
        ("parent", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class _BpfTcOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("prog_fd", ctypes.c_int),
        ("flags", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("handle", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


def lib() -> ctypes.CDLL:
    """The loaded libbpf, with signatures declared. Raises ToolMissingError when absent."""
    global _lib
    if _lib is not None:
        return _lib
    path = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        L = ctypes.CDLL(path, use_errno=True)
    except OSError:
        raise ToolMissingError(
            "libbpf.so.1 not found: install it with `apt-get install libbpf1 libbpf-dev`"
        ) from None
    vp, i, u32, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_char_p
    sigs: dict[str, tuple[object, list[object]]] = {
        "bpf_object__open_file": (vp, [cp, vp]),
        "bpf_object__load": (i, [vp]),
        "bpf_object__close": (None, [vp]),
        "bpf_object__find_program_by_name": (vp, [vp, cp]),
        "bpf_object__find_map_by_name": (vp, [vp, cp]),
        "bpf_program__fd": (i, [vp]),
        "bpf_map__fd": (i, [vp]),
        "bpf_map__set_max_entries": (i, [vp, u32]),
        "bpf_map__set_inner_map_fd": (i, [vp, i]),
        "bpf_map_create": (i, [i, cp, u32, u32, u32, vp]),
        "bpf_map__max_entries": (u32, [vp]),
        "bpf_map__key_size": (u32, [vp]),
        "bpf_map__value_size": (u32, [vp]),
        "bpf_map__type": (i, [vp]),
        "bpf_map_update_elem": (i, [i, vp, vp, ctypes.c_uint64]),
        "bpf_map_lookup_elem": (i, [i, vp, vp]),
        "bpf_map_delete_elem": (i, [i, vp]),
        "bpf_map_get_next_key": (i, [i, vp, vp]),
        "bpf_map_update_batch": (i, [i, vp, vp, ctypes.POINTER(u32), vp]),
        "bpf_prog_test_run_opts": (i, [i, ctypes.POINTER(_BpfTestRunOpts)]),
        "bpf_xdp_attach": (i, [i, i, u32, vp]),
        "bpf_xdp_detach": (i, [i, u32, vp]),
        "bpf_xdp_query_id": (i, [i, i, ctypes.POINTER(u32)]),
        "bpf_tc_hook_create": (i, [ctypes.POINTER(_BpfTcHook)]),
        "bpf_tc_hook_destroy": (i, [ctypes.POINTER(_BpfTcHook)]),
        "bpf_tc_attach": (i, [ctypes.POINTER(_BpfTcHook), ctypes.POINTER(_BpfTcOpts)]),
        "bpf_tc_detach": (i, [ctypes.POINTER(_BpfTcHook), ctypes.POINTER(_BpfTcOpts)]),
        "libbpf_num_possible_cpus": (i, []),
        "libbpf_major_version": (u32, []),
        "libbpf_minor_version": (u32, []),
        "libbpf_set_print": (vp, [_PRINT_FN]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(L, name)
        fn.restype = restype
        fn.argtypes = argtypes
    L.libbpf_set_print(_print_cb)
    _lib = L
    return L


def version() -> str:
    """libbpf's version as ``major.minor``."""
    L = lib()
    return f"{L.libbpf_major_version()}.{L.libbpf_minor_version()}"


def possible_cpus() -> int:
    n = lib().libbpf_num_possible_cpus()
    if n <= 0:
        raise BpfError("libbpf could not count possible CPUs", errno=-n)
    return int(n)


_EPERM, _EACCES, _EINVAL, _EOPNOTSUPP, _ENOTSUPP = 1, 13, 22, 95, 524

# What an operation refused by a privileged process means: the feature (a key of
# dsrconform.features.FEATURES) and how to say it.
_REFUSED_FEATURE = {
    "test-run-live": ("live-frames", "BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES"),
    "test-run": ("bpf-test-run", "BPF_PROG_TEST_RUN"),
    "xdp-attach": ("xdp-native-veth", "native XDP attach"),
    "tc-attach": ("tc-clsact", "tc clsact/cls_bpf attach"),
}


def classify_error(
    err: int, what: str, *, op: str = "", caps: int | None = None
) -> BpfError | PrivilegeError:
    """The error a failed libbpf call means, by errno, operation and this process's privileges.

    ``op``: ``test-run-live``, ``test-run``, ``xdp-attach``, ``tc-attach``, ``load`` or ``""``
    (map and other calls). EPERM/EACCES is a :class:`PrivilegeError` ("run as root") only when
    the process lacks CAP_BPF (or CAP_SYS_ADMIN) or CAP_NET_ADMIN. When it holds them, the
    kernel refuses the operation itself: some kernels refuse live frames to root without
    CAP_SYS_RESOURCE. That, and an operation the kernel does not support (EOPNOTSUPP,
    ENOTSUPP; EINVAL for the live-frames flag, which older kernels reject), is a
    :class:`FeatureUnavailableError` naming the feature, so callers can fall back. Anything
    else is a plain :class:`BpfError`.
    """
    from dsrconform import caps as capmod

    if caps is None:
        caps = capmod.effective_caps()
    reason = os.strerror(err)
    if err in (_EPERM, _EACCES) and not capmod.bpf_privileged(caps):
        lacks = capmod.missing_names(caps, (capmod.CAP_BPF, capmod.CAP_NET_ADMIN))
        return PrivilegeError(
            f"{what}: {reason}; this process lacks {', '.join(lacks)}: run as root "
            "(`dsrconform doctor` shows what is missing)"
        )
    feature = _REFUSED_FEATURE.get(op)
    unsupported = err in (_EOPNOTSUPP, _ENOTSUPP) or (err == _EINVAL and op == "test-run-live")
    if feature is not None and (err in (_EPERM, _EACCES) or unsupported):
        key, name = feature
        if unsupported:
            why = f"this kernel does not support {name} ({reason})"
        else:
            lacking = capmod.missing_names(caps, (capmod.CAP_SYS_RESOURCE, capmod.CAP_PERFMON))
            held = f"; it lacks {', '.join(lacking)}" if lacking else ""
            why = (
                f"the kernel refuses {name} ({reason}) although this process holds CAP_BPF and "
                f"CAP_NET_ADMIN (CapEff 0x{caps:x}{held}): a kernel policy, not a missing root"
            )
        return FeatureUnavailableError(f"{what}: {why}", feature=key, errno=err)
    if err in (_EPERM, _EACCES):
        return BpfError(
            f"{what}: {reason}, although this process holds CAP_BPF and CAP_NET_ADMIN "
            f"(CapEff 0x{caps:x}): the kernel's policy refuses it",
            errno=err,
        )
    return BpfError(f"{what}: {reason}", errno=err)


def _check(ret: int, what: str, *, op: str = "") -> int:
    if ret < 0:
        raise classify_error(-ret, what, op=op)
    return ret


# --- objects, programs, maps ------------------------------------------------------------------


@dataclass
class Program:
    """A loaded program: its name and fd (owned by the :class:`BpfObject`)."""

    name: str
    fd: int

    def test_run(
        self,
        data: bytes,
        *,
        ctx: bytes | None = None,
        repeat: int = 1,
        flags: int = 0,
        batch_size: int = 0,
        out_size: int | None = None,
    ) -> TestRunResult:
        """Run the program once (or ``repeat`` times) on ``data`` with BPF_PROG_TEST_RUN.

        The output buffer is sized for encapsulation growth; live-frames runs take no output.
        """
        L = lib()
        live = bool(flags & BPF_F_TEST_XDP_LIVE_FRAMES)
        din = ctypes.create_string_buffer(data, len(data))
        size_out = 0 if live else (out_size or len(data) + 256)
        dout = ctypes.create_string_buffer(size_out) if size_out else None
        opts = _BpfTestRunOpts(sz=ctypes.sizeof(_BpfTestRunOpts))
        opts.data_in = ctypes.cast(din, ctypes.c_void_p)
        opts.data_size_in = len(data)
        if dout is not None:
            opts.data_out = ctypes.cast(dout, ctypes.c_void_p)
            opts.data_size_out = size_out
        cbuf = None
        if ctx is not None:
            cbuf = ctypes.create_string_buffer(ctx, len(ctx))
            opts.ctx_in = ctypes.cast(cbuf, ctypes.c_void_p)
            opts.ctx_size_in = len(ctx)
        opts.repeat = repeat
        opts.flags = flags
        opts.batch_size = batch_size
        op = "test-run-live" if live else "test-run"
        what = f"{'live-frames ' if live else ''}test run of {self.name}"
        _check(L.bpf_prog_test_run_opts(self.fd, ctypes.byref(opts)), what, op=op)
        out = dout.raw[: opts.data_size_out] if dout is not None else b""
        return TestRunResult(retval=opts.retval, data=out, duration_ns=opts.duration)


@dataclass(frozen=True)
class TestRunResult:
    """What BPF_PROG_TEST_RUN returned: the program's return code and the output packet."""

    __test__ = False  # not a pytest test class

    retval: int
    data: bytes
    duration_ns: int


@dataclass
class Map:
    """A map of a loaded object. Keys and values are raw bytes of the C layout."""

    name: str
    fd: int
    key_size: int
    value_size: int
    map_type: int
    max_entries: int

    PERCPU_TYPES = frozenset({5, 6, 10})  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH

    @property
    def percpu(self) -> bool:
        return self.map_type in self.PERCPU_TYPES

    def _value_buf(self) -> ctypes.Array[ctypes.c_char]:
        if self.percpu:
            # The kernel copies one 8-byte-aligned slot per possible CPU.
            return ctypes.create_string_buffer(((self.value_size + 7) // 8 * 8) * possible_cpus())
        return ctypes.create_string_buffer(self.value_size)

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._sizes(key, value)
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(value, len(value))
        _check(lib().bpf_map_update_elem(self.fd, k, v, flags), f"update of map {self.name}")

    def update_batch(self, keys: bytes, values: bytes, count: int) -> None:
        """Write ``count`` entries in one syscall (keys and values: packed, back to back)."""
        if len(keys) != count * self.key_size or len(values) != count * self.value_size:
            raise BpfError(f"map {self.name}: batch of {count} has the wrong byte length")
        n = ctypes.c_uint32(count)
        k = ctypes.create_string_buffer(keys, len(keys))
        v = ctypes.create_string_buffer(values, len(values))
        ret = lib().bpf_map_update_batch(self.fd, k, v, ctypes.byref(n), None)
        _check(ret, f"batch update of map {self.name}")

    def lookup(self, key: bytes) -> bytes | None:
        """The value for ``key``, or None. Per-CPU maps: all CPUs' slots, concatenated."""
        self._sizes(key)
        k = ctypes.create_string_buffer(key, len(key))
        v = self._value_buf()
        ret = lib().bpf_map_lookup_elem(self.fd, k, v)
        if ret == -2:  # ENOENT
            return None
        _check(ret, f"lookup in map {self.name}")
        return v.raw

    def lookup_percpu(self, key: bytes) -> list[bytes]:
        """One value per possible CPU (empty when the key is absent)."""
        raw = self.lookup(key)
        if raw is None:
            return []
        step = (self.value_size + 7) // 8 * 8
        return [raw[i : i + self.value_size] for i in range(0, len(raw), step)]

    def delete(self, key: bytes) -> bool:
        k = ctypes.create_string_buffer(key, len(key))
        ret = lib().bpf_map_delete_elem(self.fd, k)
        if ret == -2:
            return False
        _check(ret, f"delete from map {self.name}")
        return True

    def keys(self) -> Iterator[bytes]:
        """Iterate over keys (hash maps; arrays yield every index)."""
        L = lib()
        cur = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            ret = L.bpf_map_get_next_key(self.fd, cur, nxt)
            if ret == -2:
                return
            _check(ret, f"iteration of map {self.name}")
            key = nxt.raw
            yield key
            cur = ctypes.create_string_buffer(key, len(key))

    def _sizes(self, key: bytes, value: bytes | None = None) -> None:
        if len(key) != self.key_size:
            raise BpfError(f"map {self.name}: key is {len(key)} bytes, expected {self.key_size}")
        if value is not None and len(value) != self.value_size and not self.percpu:
            raise BpfError(
                f"map {self.name}: value is {len(value)} bytes, expected {self.value_size}"
            )


class BpfObject:
    """A compiled BPF object file, opened and loaded into the kernel.

    ``max_entries`` overrides map sizes before load (e.g. a small connection table in tests).
    ``inner_maps`` gives map-in-map maps the fd of a map whose shape their inner maps take (its
    type, key and value sizes, max entries), instead of the one the object declares.
    Close it (or use it as a context manager) to release every program and map it holds;
    programs attached to interfaces stay attached until detached.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_entries: dict[str, int] | None = None,
        inner_maps: dict[str, int] | None = None,
    ) -> None:
        L = lib()
        self.path = str(path)
        ctypes.set_errno(0)
        self._obj = L.bpf_object__open_file(self.path.encode(), None)
        if not self._obj:
            err = ctypes.get_errno()
            raise BpfError(f"cannot open BPF object {self.path}: {os.strerror(err)}", errno=err)
        try:
            for name, size in (max_entries or {}).items():
                m = L.bpf_object__find_map_by_name(self._obj, name.encode())
                if not m:
                    raise BpfError(f"{self.path}: no map named {name!r} to resize")
                _check(L.bpf_map__set_max_entries(m, size), f"resizing map {name}")
            for name, fd in (inner_maps or {}).items():
                m = L.bpf_object__find_map_by_name(self._obj, name.encode())
                if not m:
                    raise BpfError(f"{self.path}: no map named {name!r} to give an inner map")
                _check(L.bpf_map__set_inner_map_fd(m, fd), f"inner map of {name}")
            self._load()
        except BaseException:
            L.bpf_object__close(self._obj)
            self._obj = None
            raise
        self._maps: dict[str, Map] = {}

    def _load(self) -> None:
        _log_local.sink = []
        try:
            ret = lib().bpf_object__load(self._obj)
        finally:
            log = "".join(_log_local.sink)
            _log_local.sink = None
        if ret < 0:
            err = -ret
            error = classify_error(err, f"loading {self.path}", op="load")
            if isinstance(error, PrivilegeError):
                raise error
            # A privileged process's EACCES/EINVAL at load time is the verifier's: keep its log.
            raise BpfError(
                f"the kernel refused to load {self.path}: {os.strerror(err)}",
                errno=err,
                verifier_log=log,
            )

    def program(self, name: str) -> Program:
        p = lib().bpf_object__find_program_by_name(self._live(), name.encode())
        if not p:
            raise BpfError(f"{self.path}: no program named {name!r}")
        return Program(name=name, fd=_check(lib().bpf_program__fd(p), f"fd of {name}"))

    def map(self, name: str) -> Map:
        if name in self._maps:
            return self._maps[name]
        L = lib()
        m = L.bpf_object__find_map_by_name(self._live(), name.encode())
        if not m:
            raise BpfError(f"{self.path}: no map named {name!r}")
        handle = Map(
            name=name,
            fd=_check(L.bpf_map__fd(m), f"fd of map {name}"),
            key_size=L.bpf_map__key_size(m),
            value_size=L.bpf_map__value_size(m),
            map_type=L.bpf_map__type(m),
            max_entries=L.bpf_map__max_entries(m),
        )
        self._maps[name] = handle
        return handle

    def _live(self) -> int:
        if not self._obj:
            raise BpfError(f"{self.path}: object already closed")
        return int(self._obj)

    def close(self) -> None:
        if self._obj:
            lib().bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_map(map_type: int, name: str, key_size: int, value_size: int, max_entries: int) -> Map:
    """A map of its own (not from an object), e.g. an inner map of a map-in-map. The caller owns
    its fd: ``os.close(m.fd)`` when done (a map-in-map holding it keeps the map alive)."""
    fd = lib().bpf_map_create(map_type, name.encode()[:15], key_size, value_size, max_entries, None)
    _check(fd, f"creating map {name}")
    return Map(name, fd, key_size, value_size, map_type, max_entries)


# --- attach / detach (in the calling thread's network namespace) ------------------------------


def xdp_attach(ifindex: int, prog_fd: int, *, mode: str = "native") -> None:
    """Attach an XDP program; ``mode`` is ``native`` (driver) or ``generic`` (skb)."""
    flags = XDP_FLAGS_DRV_MODE if mode == "native" else XDP_FLAGS_SKB_MODE
    what = f"{mode} XDP attach to ifindex {ifindex}"
    _check(lib().bpf_xdp_attach(ifindex, prog_fd, flags, None), what, op="xdp-attach")


def xdp_detach(ifindex: int, *, mode: str = "native") -> None:
    flags = XDP_FLAGS_DRV_MODE if mode == "native" else XDP_FLAGS_SKB_MODE
    _check(lib().bpf_xdp_detach(ifindex, flags, None), f"XDP detach from ifindex {ifindex}")


def xdp_query_id(ifindex: int, *, mode: str = "native") -> int:
    """The id of the XDP program attached to ``ifindex`` (0 when none)."""
    flags = XDP_FLAGS_DRV_MODE if mode == "native" else XDP_FLAGS_SKB_MODE
    pid = ctypes.c_uint32(0)
    _check(lib().bpf_xdp_query_id(ifindex, flags, ctypes.byref(pid)), "XDP query")
    return int(pid.value)


def _hook(ifindex: int, direction: str) -> _BpfTcHook:
    point = {"ingress": BPF_TC_INGRESS, "egress": BPF_TC_EGRESS}[direction]
    return _BpfTcHook(sz=ctypes.sizeof(_BpfTcHook), ifindex=ifindex, attach_point=point)


def tc_attach(ifindex: int, prog_fd: int, direction: str, *, priority: int = 1) -> int:
    """Attach a cls_bpf program (direct-action) to the clsact hook; returns its handle."""
    L = lib()
    hook = _hook(ifindex, direction)
    ret = L.bpf_tc_hook_create(ctypes.byref(hook))
    if ret < 0 and ret != -17:  # EEXIST: the clsact qdisc is already there
        _check(ret, f"creating clsact on ifindex {ifindex}", op="tc-attach")
    opts = _BpfTcOpts(sz=ctypes.sizeof(_BpfTcOpts), prog_fd=prog_fd, priority=priority, handle=1)
    ret = L.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
    _check(ret, f"tc {direction} attach", op="tc-attach")
    return int(opts.handle)


def tc_detach(ifindex: int, direction: str, *, priority: int = 1, handle: int = 1) -> None:
    L = lib()
    hook = _hook(ifindex, direction)
    opts = _BpfTcOpts(sz=ctypes.sizeof(_BpfTcOpts), priority=priority, handle=handle)
    _check(L.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts)), f"tc {direction} detach")


def tc_hook_destroy(ifindex: int) -> None:
    """Remove the clsact qdisc (and every filter on it) from ``ifindex``."""
    hook = _hook(ifindex, "ingress")
    hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS
    ret = lib().bpf_tc_hook_destroy(ctypes.byref(hook))
    if ret < 0 and ret not in (-2, -22):
        _check(ret, f"removing clsact from ifindex {ifindex}")
