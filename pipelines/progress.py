"""Progress lines for long-running commands (rich)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

_console = Console(stderr=True)


@contextmanager
def stage(name: str, show: bool = True) -> Iterator[None]:
    """Show a spinner while ``name`` runs and a tick with its duration when done (wall
    time, and the CPU time of this process)."""
    if not show:
        yield
        return
    start, cpu = time.perf_counter(), time.process_time()
    with _console.status(f"[bold]{name}…"):
        yield
    _console.print(f"[green]✓[/green] {name} [dim]({time.perf_counter() - start:.1f} s, "
                   f"{time.process_time() - cpu:.1f} s CPU)[/dim]")
