"""The HTML report's attachments: each embedded, linked, copied beside the page, or missing.

An :class:`~dsrconform.report.model.Attachment` (a pcap window, ...) names a file by its path
relative to its run's results directory. :class:`Placer` decides where each one goes; the page
shows the :class:`Link` it returns.

The contract:

- **Small enough to mail.** An attachment whose file is at most ``embed_limit`` bytes is
  embedded as a ``data:`` URI with ``download="<its file name>"`` (saved, a pcap opens in
  Wireshark) while the embedded files' sizes sum to at most ``total_embed_limit`` (sizes are
  the files', before base64's 4/3).
- **Who gets the budget.** :meth:`Placer.place_all` places the attachments added with
  :meth:`Placer.add` FAIL requirements' first, then UNKNOWN, then PASS, then those of no
  decided requirement, smallest first within each; each list of links then gets its own in the
  order they were added.
- **The rest is linked.** An attachment that does not fit is linked relatively: where it is when
  the file is under the HTML's directory (a report written into its results directory, e.g.
  ``results/latest/report.html``), else copied to ``<out stem>_files/run<N>/<path>`` beside the
  HTML (move the two together). A file is copied once however often it is attached. A copy that
  fails is a ConfigError naming the destination.
- **Never a file from elsewhere.** An attachment whose file is missing or unreadable, or whose
  path is absolute or leaves its results directory (``..``, a symlink out), is listed as
  missing, with why (:attr:`Placer.missing`): never a crash, never a file from outside a
  results directory (:func:`inside`).
- Every href is a ``data:`` URI or a relative, percent-encoded path; names and notes shown pass
  through :func:`~dsrconform.report.text.printable`.
"""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import quote

from dsrconform.errors import ConfigError
from dsrconform.report.model import STATUS_RANK, Attachment
from dsrconform.report.text import human_size, printable

__all__ = ["EMBED_LIMIT", "MIME", "TOTAL_EMBED_LIMIT", "Link", "Placer", "file_size", "inside"]

EMBED_LIMIT = 256 * 1024
"""Bytes: an attachment's file at most this big is embedded (``--embed-limit``)."""
TOTAL_EMBED_LIMIT = 2 * 1024 * 1024
"""Bytes: the embedded attachments' files sum to at most this (``--total-embed-limit``)."""

MIME: dict[str, str] = {
    "pcap": "application/vnd.tcpdump.pcap",
    "svg": "image/svg+xml",
    "json": "application/json",
    "text": "text/plain;charset=utf-8",
}


@dataclass
class Link:
    """An attachment as the page shows it."""

    name: str
    note: str
    kind: str
    state: Literal["embedded", "copied", "linked", "missing"]
    href: str = ""
    download: str = ""
    size: int = 0
    why: str = ""

    @property
    def size_text(self) -> str:
        return human_size(self.size)


def inside(root: Path, rel: str) -> tuple[Path | None, str]:
    """The file ``rel`` names under ``root`` (resolved), or None and why not."""
    try:
        p = PurePosixPath(rel)
        if p.is_absolute() or not rel:
            return None, "not a path relative to the results directory"
        full = (root / p).resolve()
        if not full.is_relative_to(root):
            return None, "outside the results directory: not included"
        if not full.is_file():
            return None, "missing from the results directory"
        return full, ""
    except (OSError, ValueError, RuntimeError) as e:  # NUL, unencodable, a symlink loop
        return None, f"unreadable path ({type(e).__name__})"


def file_size(root: Path, rel: str) -> int:
    """The size of the file ``rel`` names under ``root``; 0 when there is none."""
    full, _ = inside(root, rel)
    try:
        return full.stat().st_size if full else 0
    except OSError:
        return 0


def _priority(status: str | None) -> int:
    """FAIL first, then UNKNOWN, then PASS, then no decided requirement."""
    return -STATUS_RANK.get(status or "", -1)


_Pending = tuple[tuple[int, ...], list[Link], int, Path, Attachment]


class Placer:
    """Decides, for each attachment, embedded, linked, copied or missing (see the module
    contract) for the HTML file ``out``."""

    def __init__(self, out: Path, embed_limit: int, total_limit: int) -> None:
        self.out_dir = out.parent.resolve()
        self.files_dir = out.parent / f"{out.stem}_files"
        self.rel_files = f"{out.stem}_files"
        self.embed_limit = embed_limit
        self.total_left = total_limit
        self.embedded: list[str] = []
        """``run<N>/<path>`` of each attachment embedded."""
        self.copied: dict[tuple[int, Path], Path] = {}
        """(run, source) -> its copy."""
        self.linked: dict[Path, None] = {}
        """Files linked where they are (an ordered set)."""
        self.missing: list[str] = []
        """Attachments not included, each with why."""
        self._pending: list[_Pending] = []

    def add(
        self,
        into: list[Link],
        run: int,
        root: Path,
        att: Attachment,
        status: str | None,
        order: tuple[int, ...],
    ) -> None:
        """Queue ``att`` of run ``run`` (results directory ``root``) for :meth:`place_all`:
        its link goes into ``into``, ordered there by ``order``; ``status`` is its
        requirement's (None: no requirement the run decided)."""
        key = (_priority(status), file_size(root, att.path), run, *order)
        self._pending.append((key, into, run, root, att))

    def place_all(self) -> None:
        """Place every queued attachment (the budget's order: FAIL requirements' first, then
        UNKNOWN, then the rest, smallest first within each), then append each link to its list
        in run and ``order`` order."""
        placed = []
        for key, into, run, root, att in sorted(self._pending, key=lambda x: x[0]):
            placed.append((key[2:], into, self.place(run, root, att)))
        for _, into, link in sorted(placed, key=lambda x: x[0]):
            into.append(link)
        self._pending.clear()

    def place(self, run: int, root: Path, att: Attachment) -> Link:
        """Place one attachment now (with what is left of the budget)."""
        name, note, kind = printable(att.name), printable(att.note), att.kind
        full, why = inside(root, att.path)
        label = f"run{run}/{printable(att.path)}"
        if full is None:
            self.missing.append(f"{label}: {why}")
            return Link(name, note, kind, "missing", why=why)
        try:
            size = full.stat().st_size
        except OSError as e:
            self.missing.append(f"{label}: unreadable ({e.strerror})")
            return Link(name, note, kind, "missing", why=f"unreadable ({e.strerror})")
        download = printable(full.name)
        if size <= self.embed_limit and size <= self.total_left:
            try:
                data = full.read_bytes()
            except OSError as e:
                self.missing.append(f"{label}: unreadable ({e.strerror})")
                return Link(name, note, kind, "missing", why=f"unreadable ({e.strerror})")
            self.total_left -= len(data)
            self.embedded.append(label)
            b64 = base64.b64encode(data).decode("ascii")
            href = f"data:{MIME.get(kind, 'application/octet-stream')};base64,{b64}"
            return Link(name, note, kind, "embedded", href, download, len(data))
        if full.is_relative_to(self.out_dir):
            self.linked[full] = None
            href = quote(os.fsencode(full.relative_to(self.out_dir).as_posix()), safe="/")
            return Link(name, note, kind, "linked", href, download, size)
        rel = full.relative_to(root)
        dest = self.files_dir / f"run{run}" / rel
        if (run, full) not in self.copied:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(full, dest)
            except OSError as e:
                raise ConfigError(
                    f"{dest}: cannot copy the attachment there ({e.strerror}); fix: give -o "
                    "a writable place"
                ) from None
            self.copied[run, full] = dest
        href = quote(os.fsencode(f"{self.rel_files}/run{run}/{rel.as_posix()}"), safe="/")
        return Link(name, note, kind, "copied", href, download, size)
