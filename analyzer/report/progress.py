"""The progress bar on standard error, naming its stage: reading (bytes of the captures), then
tokens (decoding, verifying, findings), then report (writing the output).

Shown only on a terminal, for captures of at least ``MIN_BYTES``, and never with
``--no-progress``; otherwise every method does nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MIN_BYTES = 32 << 20  # smaller captures are read before a bar would be noticed


def reading_label(path: str) -> str:
    """The bar's words for reading ``path``, as rich markup: the file's name (its first 30
    characters) with control characters escaped and rich's own markup taken literally, so a
    name can neither move the cursor nor restyle the line."""
    from rich.markup import escape

    from analyzer.report.safe_text import printable

    return "reading " + escape(printable(os.path.basename(path)[:30]))


class Stages:
    """One bar for a run: ``reading`` as bytes arrive, then ``stage(name)`` for the rest."""

    def __init__(self, paths: list[str], show: bool) -> None:
        self.total = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
        self._bar: Any = None
        self._task: Any = None
        self._done: dict[str, int] = {}
        if show and sys.stderr.isatty() and self.total >= MIN_BYTES:
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                TextColumn("[progress.percentage]{task.percentage:>3.0f}%"),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("reading", total=self.total)

    def reading(self, path: str, nbytes: int) -> None:
        """The engine's progress callback: ``nbytes`` of ``path`` read so far."""
        if self._bar is None:
            return
        self._done[path] = nbytes
        done = sum(self._done.values())
        self._bar.update(self._task, completed=done, description=reading_label(path))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """A stage without a byte count (tokens, report): the bar names it while it runs."""
        if self._bar is not None:
            self._bar.update(self._task, description=name, completed=0, total=None)
        yield

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    @property
    def shown(self) -> bool:
        return self._bar is not None
