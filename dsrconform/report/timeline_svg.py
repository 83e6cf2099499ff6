"""A run's :class:`~dsrconform.report.timeline.Timeline` drawn as an inline SVG (matplotlib).

The contract:

- :func:`timeline_svg` gives an SVG element as text (``<svg`` first, no XML prolog: inline it in
  HTML), deterministically: the same timeline and title give the same string (element ids are
  hashes of their content, no date in the metadata).
- Text is data, not markup: titles, link names and fault labels are drawn literally (no
  mathtext, a leading ``_`` does not hide a legend entry), legend labels cut to fit.
- The drawing is bounded in size: a timeline longer than :data:`PLOT_POINTS` bins is drawn in
  merged bins (alive: the peak, counts: the sum, packet rates: the mean).
- Thread-safe: matplotlib reads the two SVG settings it needs from its global rcParams only; a
  lock serialises this module's drawings, each putting them back when done, so other threads
  see at most those two settings changed.

matplotlib is imported when a timeline is drawn, not when this module is.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from dsrconform.report.timeline import Timeline

__all__ = ["PLOT_POINTS", "timeline_svg"]

PLOT_POINTS = 1_000
"""Most bins the SVG draws; longer series are merged into coarser bins for drawing only."""

FloatArray = npt.NDArray[np.float64]

_RC_LOCK = threading.Lock()
_HASH_SALT = "dsrconform-timeline"
_FAULT_COLORS = {
    "syn-flood": "#d62728",
    "mux-fail": "#9467bd",
    "route-withdrawn": "#8c564b",
    "mux-rejoin": "#2ca02c",
    "mux-add": "#17becf",
    "backend-add": "#bcbd22",
    "backend-remove": "#ff7f0e",
    "backend-drain": "#e377c2",
    "config-change": "#7f7f7f",
    "crafted": "#1f77b4",
    "link-impair": "#aec7e8",
    "cpu-limit": "#c49c94",
    "agent-restart": "#dbdb8d",
}
_LABEL_CHARS = 26
"""Legend labels longer than this are cut (the legends share the figure's right margin)."""
_LEGEND: dict[str, Any] = {
    "loc": "upper left",
    "bbox_to_anchor": (1.01, 1.0),
    "fontsize": 7,
    "frameon": False,
}


@contextmanager
def _svg_settings() -> Iterator[None]:
    """Set the two rcParams the SVG backend reads at render time, and put them back.

    ``svg.fonttype`` "none" keeps text as text; ``svg.hashsalt`` fixed makes element ids hashes
    of their content (not of a random salt), so the output is deterministic. matplotlib reads
    them from the global rcParams only (no per-figure setting): a lock serialises this module's
    drawings, and only these two keys change, so other threads see at most an SVG setting.
    """
    import matplotlib as mpl

    rc = mpl.rcParams
    with _RC_LOCK:
        fonttype, salt = rc["svg.fonttype"], rc["svg.hashsalt"]
        try:
            rc["svg.fonttype"], rc["svg.hashsalt"] = "none", _HASH_SALT
            yield
        finally:
            rc["svg.fonttype"], rc["svg.hashsalt"] = fonttype, salt


def _text(s: str, limit: int = 0) -> str:
    """Data as literal text: no mathtext (``$``), not hidden from a legend (``_``), cut to
    ``limit`` characters if given."""
    if limit and len(s) > limit:
        s = s[: limit - 1] + "\u2026"
    s = s.replace("$", r"\$")
    return f" {s}" if s.startswith("_") else s


def _coarse(values: Sequence[float | None], k: int, how: str) -> FloatArray:
    """Every ``k`` bins merged into one (None is NaN): ``sum``, ``max`` or ``mean``."""
    a = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    pad = (-len(a)) % k
    if pad:
        a = np.concatenate([a, np.full(pad, math.nan)])
    groups = a.reshape(-1, k)
    if how == "sum":
        return np.asarray(np.nansum(groups, axis=1), dtype=np.float64)
    if how == "max":
        return np.asarray(np.nanmax(groups, axis=1), dtype=np.float64)
    return np.asarray(np.nanmean(groups, axis=1), dtype=np.float64)


def _ratio(ok: FloatArray, failed: FloatArray) -> FloatArray:
    total = ok + failed
    out = np.full(len(total), math.nan)
    np.divide(ok, total, out=out, where=total > 0)
    return out


def _svg(fig: Any) -> str:
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    FigureCanvasSVG(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def timeline_svg(tl: Timeline, *, title: str = "") -> str:
    """The timeline drawn as an SVG element (starts with ``<svg``: inline it in HTML).

    Three panels over a shared time axis: connections alive; new-connection success rate (0..1,
    with the attempts and failures per bin shaded on a second axis, and the UDP answer rate when
    there were datagrams); packets per second per link (log scale when the rates span more than
    two decades). Fault windows are shaded in every panel and named once in the top legend. A
    timeline longer than :data:`PLOT_POINTS` bins is drawn in merged bins (alive: the peak,
    counts: the sum, packet rates: the mean) to keep the SVG small. Deterministic: the same
    timeline and title give the same string. An empty timeline gives a small "no data" SVG.
    """
    from matplotlib.figure import Figure

    with _svg_settings():
        if tl.empty:
            fig = Figure(figsize=(4.0, 1.0))
            fig.text(0.5, 0.5, _text(f"{title}: no data" if title else "no data"), ha="center")
            return _svg(fig)
        k = max(1, math.ceil(len(tl.t) / PLOT_POINTS))
        width = tl.bin_seconds * k
        m = math.ceil(len(tl.t) / k)
        edges = np.arange(m + 1, dtype=np.float64) * width
        # Fixed margins, not a layout engine (constrained layout doubles the drawing time):
        # the legends go in the right margin, their labels cut to fit it.
        fig = Figure(figsize=(9.0, 6.0))
        fig.subplots_adjust(
            left=0.09, right=0.76, bottom=0.08, top=0.93 if title else 0.97, hspace=0.12
        )
        axes = fig.subplots(3, 1, sharex=True)
        ax_alive, ax_new, ax_pps = axes
        legend_extra: tuple[list[Any], list[str]] = ([], [])
        if title:
            fig.suptitle(_text(title), fontsize=10)

        # Connections alive.
        if tl.alive:
            ax_alive.stairs(_coarse(tl.alive, k, "max"), edges, color="#1f77b4", label="alive")
            ax_alive.set_ylim(bottom=0)
        else:
            _note(ax_alive, "no connection history")
        ax_alive.set_ylabel("connections\nalive", fontsize=8)

        # New-connection success rate, attempts on a twin axis.
        if tl.success_rate:
            ok = _coarse(tl.new_ok, k, "sum")
            failed = _coarse(tl.new_failed, k, "sum")
            twin = ax_new.twinx()
            twin.stairs(
                ok + failed, edges, fill=True, color="#1f77b4", alpha=0.15, label="attempts (right)"
            )
            twin.stairs(
                failed, edges, fill=True, color="#d62728", alpha=0.3, label="failed (right)"
            )
            legend_extra = twin.get_legend_handles_labels()
            twin.set_ylim(bottom=0)
            twin.set_ylabel("attempts", fontsize=8)
            twin.tick_params(labelsize=7)
            ax_new.set_zorder(twin.get_zorder() + 1)
            ax_new.patch.set_visible(False)
            ax_new.stairs(
                _ratio(ok, failed), edges, baseline=None, color="#2ca02c", label="TCP connect"
            )
            udp_ok = _coarse(tl.udp_answered, k, "sum")
            udp_lost = _coarse(tl.udp_unanswered, k, "sum")
            if np.nansum(udp_ok + udp_lost) > 0:
                ax_new.stairs(
                    _ratio(udp_ok, udp_lost),
                    edges,
                    baseline=None,
                    color="#ff7f0e",
                    label="UDP answered",
                )
            ax_new.set_ylim(-0.02, 1.02)
        else:
            _note(ax_new, "no connection history")
        ax_new.set_ylabel("success\nrate", fontsize=8)

        # Packets per second per link.
        if tl.link_pps:
            rates = {name: _coarse(v, k, "mean") for name, v in tl.link_pps.items()}
            for name, values in rates.items():
                label = _text(name, _LABEL_CHARS)
                ax_pps.stairs(values, edges, baseline=None, linewidth=1.0, label=label)
            positive = np.concatenate([v[v > 0] for v in rates.values()])
            if positive.size and positive.max() > 100 * positive.min():
                from matplotlib.ticker import NullLocator

                ax_pps.set_yscale("log")
                ax_pps.set_ylim(bottom=positive.min() / 2)
                # A log axis's minor ticks (and their text) were most of the drawing time.
                ax_pps.yaxis.set_minor_locator(NullLocator())
            else:
                ax_pps.set_ylim(bottom=0)
        else:
            _note(ax_pps, "no link taps")
        ax_pps.set_ylabel("packets/s\nper link", fontsize=8)
        ax_pps.set_xlabel("seconds since the run's start", fontsize=8)

        _shade_faults(tl, axes, float(edges[-1]))
        for ax in axes:
            ax.set_xlim(0.0, float(edges[-1]))
            ax.tick_params(labelsize=7)
            handles, labels = ax.get_legend_handles_labels()
            if ax is ax_new:
                handles += legend_extra[0]
                labels += legend_extra[1]
            if handles:
                shift = 0.09 if ax is ax_new and tl.success_rate else 0.0  # past the twin axis
                ax.legend(handles, labels, **{**_LEGEND, "bbox_to_anchor": (1.01 + shift, 1.0)})
        return _svg(fig)


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8)
    ax.set_yticks([])


def _shade_faults(tl: Timeline, axes: Sequence[Any], end: float) -> None:
    """Each fault window shaded in every panel, named once. A window without an end is an
    instant (``route-withdrawn``; :class:`FaultWindow` also leaves the end of a fault never
    lifted empty, which the fault timeline cannot tell apart): a dashed line at its start, as a
    window without width is."""
    named: set[str] = set()
    for start, stop, label in tl.faults:
        color = _FAULT_COLORS.get(label.split(" ", 1)[0], "#7f7f7f")
        until = start if stop is None else stop
        for i, ax in enumerate(axes):
            legend = _text(label, _LABEL_CHARS) if i == 0 and label not in named else "_nolegend_"
            if until > start:
                ax.axvspan(start, until, color=color, alpha=0.15, linewidth=0, label=legend)
                legend = "_nolegend_"
            if until <= start:
                ax.axvline(start, color=color, linewidth=1.0, linestyle="--", label=legend)
        named.add(label)
