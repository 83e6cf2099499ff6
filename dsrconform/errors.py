"""The one exception hierarchy of dsrconform.

Every error the framework raises on purpose derives from :class:`DsrConformError`. Messages say
what went wrong, where (file, field, interface, namespace) and what to do about it. The CLI maps
each class to its own exit code (``exit_code``), so scripts can tell a bad input from a missing
privilege from a kernel refusal.
"""

from __future__ import annotations


class DsrConformError(Exception):
    """Root of every error raised on purpose by dsrconform."""

    exit_code = 1


class ConfigError(DsrConformError):
    """A user-supplied file or value is invalid.

    Causes: a field of the wrong type, an address outside 198.18.0.0/15, an unknown name.
    Fix: the message names the file, the field and the expected form.
    """

    exit_code = 2


class PrivilegeError(DsrConformError):
    """The operation needs privileges this process does not have (root, CAP_NET_ADMIN, CAP_BPF).

    Fix: run as root, or run ``dsrconform doctor`` to see what is missing.
    """

    exit_code = 3


class ToolMissingError(DsrConformError):
    """A required program or library is not installed (clang, bpftool, libbpf).

    Fix: the message names the Debian package to install.
    """

    exit_code = 4


class BpfError(DsrConformError):
    """libbpf or the kernel refused a BPF operation.

    ``verifier_log`` holds the verifier's output when a program was rejected at load time.
    """

    exit_code = 5

    def __init__(self, message: str, *, errno: int = 0, verifier_log: str = "") -> None:
        self.errno = errno
        self.verifier_log = verifier_log
        if verifier_log:
            message = f"{message}\n--- verifier log ---\n{verifier_log.rstrip()}\n--- end ---"
        super().__init__(message)


class FeatureUnavailableError(BpfError):
    """The kernel refuses a feature although this process holds the privileges it needs.

    Example: ``BPF_PROG_TEST_RUN`` with ``BPF_F_TEST_XDP_LIVE_FRAMES`` fails with EPERM for root
    on some kernels (root there lacks CAP_SYS_RESOURCE), while plain test runs work. That is not
    "run as root": ``feature`` names what is missing (a key of
    :data:`dsrconform.features.FEATURES`), so a caller can fall back to a slower way or answer
    UNKNOWN naming it.
    Fix: ``dsrconform doctor`` shows every feature's probe and what its absence costs.
    """

    def __init__(self, message: str, *, feature: str, errno: int = 0) -> None:
        self.feature = feature
        super().__init__(message, errno=errno)


class BuildError(DsrConformError):
    """Compiling a BPF program failed; the message carries the compiler's output."""

    exit_code = 6


class LabError(DsrConformError):
    """Creating, changing or tearing down lab objects (namespaces, links) failed."""

    exit_code = 7
