"""Terminal output: colours only when the stream is a terminal (and NO_COLOR is
unset), and a progress bar on stderr for uploads and downloads."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

COLOURS = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "dim": "2", "bold": "1"}
STATUS_COLOURS = {
    "completed": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "yellow",
    "queued": "dim",
    "dispatched": "blue",
    "running": "blue",
    # an environment's
    "ready": "green",
    "building": "blue",
}


def is_tty(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def paint(text: str, colour: str, stream: TextIO = sys.stdout) -> str:
    if not is_tty(stream):
        return text
    return f"\033[{COLOURS[colour]}m{text}\033[0m"


def status_text(status: str, exit_code: int | None = None, stream: TextIO = sys.stdout) -> str:
    """A task's status as the console shows it: `exit N` in red for a program that
    completed with a non-zero exit code."""
    if status == "completed" and exit_code not in (None, 0):
        return paint(f"exit {exit_code}", "red", stream)
    return paint(status, STATUS_COLOURS.get(status, "bold"), stream)


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


class ProgressBar:
    """`progress(done, total)` for the SDK's uploads and downloads; draws on stderr
    only when stderr is a terminal, at most ten times a second."""

    WIDTH = 30

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.enabled = stream.isatty()
        self._drawn = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._drawn < 0.1 and done != total:
            return
        self._drawn = now
        if total:
            filled = int(self.WIDTH * done / total)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            line = f"{self.label} [{bar}] {human_bytes(done)} / {human_bytes(total)}"
        else:
            line = f"{self.label} {human_bytes(done)}"
        self.stream.write("\r" + line)
        if total and done >= total:
            self.stream.write("\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def table(rows: list[list[str]], headers: list[str]) -> str:
    def visible(text: str) -> int:
        import re

        return len(re.sub(r"\033\[[0-9;]*m", "", text))

    widths = [max([visible(h)] + [visible(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = []
    for row in [headers, *rows]:
        cells = [cell + " " * (w - visible(cell)) for cell, w in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
