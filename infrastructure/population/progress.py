"""A one-line progress bar for long imports: rows, rows/s and, for a file, bytes-based ETA."""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 24


class ProgressBar:
    """Redraws at most every `interval` seconds; `finish` draws the last state and a newline."""

    def __init__(self, out: TextIO, total_bytes: int | None, interval: float = 0.5) -> None:
        self.out = out
        self.total_bytes = total_bytes or None
        self.interval = interval
        self.started = time.monotonic()
        self._drawn = 0.0
        self._state = (0, 0)

    def update(self, rows: int, bytes_read: int, *, force: bool = False) -> None:
        self._state = (rows, bytes_read)
        now = time.monotonic()
        if not force and now - self._drawn < self.interval:
            return
        self._drawn = now
        self.out.write("\r" + self.line(rows, bytes_read, now - self.started))
        self.out.flush()

    def finish(self) -> None:
        """Draw the last state given to `update` and end the line."""
        self.update(*self._state, force=True)
        self.out.write("\n")
        self.out.flush()

    def line(self, rows: int, bytes_read: int, elapsed: float) -> str:
        rate = rows / elapsed if elapsed > 0 else 0.0
        text = f"{rows:>12,} rows  {rate:>9,.0f} rows/s  {_duration(elapsed)}"
        if self.total_bytes is None:
            return text
        done = min(bytes_read / self.total_bytes, 1.0)
        filled = round(done * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        eta = elapsed * (1 - done) / done if done > 0 else None
        remaining = _duration(eta) if eta is not None else "--:--"
        return f"[{bar}] {done:6.1%} {text}  ETA {remaining}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
