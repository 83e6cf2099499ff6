"""Benchmarks: data-plane throughput measured inside throwaway namespaces.

- :mod:`dsrconform.bench.mux` -- ``dsrconform bench mux``: a target's MUX against an XDP
  MAC-swap reflector, both fed by an XDP live-frames generator over a veth pair.
- :mod:`dsrconform.bench.lab` -- ``dsrconform bench lab``: lab bring-up and teardown, ours
  against Mininet, and the full stack per backend.

:func:`progress_bars` is their shared progress display.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager


@contextmanager
def progress_bars(names: Sequence[str], *, transient: bool, width: int = 22
                  ) -> Iterator[Callable[[str, float], None]]:  # fmt: skip
    """One rich progress bar per name on stderr (so ``--json`` output on stdout stays clean);
    yields ``update(name, fraction)``. Every bar is shown complete on the way out."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    with Progress(
        TextColumn(f"{{task.description:<{width}}}"),
        BarColumn(),
        TaskProgressColumn(),
        console=Console(stderr=True),
        transient=transient,
    ) as bar:
        tasks = {name: bar.add_task(name, total=1.0) for name in names}

        def update(name: str, fraction: float) -> None:
            if name in tasks:
                bar.update(tasks[name], completed=fraction)

        yield update
        for task in tasks.values():
            bar.update(task, completed=1.0)
