"""Progress of long commands on stderr: a bar with rate and ETA on a terminal (with rich installed, the
``turnstate[cli]`` extra), otherwise a plain line every ``every`` documents and one at the end."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, Self, TextIO

DEFAULT_EVERY = 1000


def _rich_bar(stream: TextIO) -> Any:
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
    except ImportError:
        return None
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=False,
    )


class Progress:
    """Counts documents done out of ``total`` (None: unknown) and shows it as it goes."""

    def __init__(
        self,
        verb: str,
        total: int | None,
        *,
        stream: TextIO | None = None,
        every: int = DEFAULT_EVERY,
        quiet: bool = False,
    ) -> None:
        self.verb = verb
        self.total = total
        self.done = 0
        self.last: str | None = None
        self._stream = sys.stderr if stream is None else stream
        self._every = max(1, every)
        self._started = time.monotonic()
        self._shown = 0
        self._quiet = quiet
        self._bar: Any = None
        self._task: Any = None
        if not quiet and self._stream.isatty():
            self._bar = _rich_bar(self._stream)
            if self._bar is not None:
                self._bar.start()
                self._task = self._bar.add_task(verb, total=total, rate="")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def rate(self) -> float:
        """Documents per second so far."""
        elapsed = time.monotonic() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def advance(self, count: int = 1, last: str | None = None) -> None:
        self.done += count
        if last is not None:
            self.last = last
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=f"{self.rate():.0f}/s")
        elif not self._quiet and self.done // self._every > self._shown // self._every:
            self._line()

    def _line(self) -> None:
        self._shown = self.done
        rate = self.rate()
        if self.total is not None:
            percent = 100 * self.done // max(self.total, 1)
            left = self.total - self.done
            eta = f", ETA {left / rate:.0f}s" if rate > 0 and left > 0 else ""
            text = f"{self.verb} {self.done}/{self.total} ({percent}%), {rate:.0f}/s{eta}"
        else:
            text = f"{self.verb} {self.done}, {rate:.0f}/s"
        if self.last is not None:
            text += f", last: {self.last}"
        self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Stop the bar, or print the final count if the last line did not show it."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif not self._quiet and self.done != self._shown:
            self._line()
