"""A task's files as one zip or tar.gz, streamed: the standard library's zipfile and
tarfile write into a bounded queue from a thread, and the response reads from it, so
the API holds a few pieces at a time whatever the files add up to."""

from __future__ import annotations

import io
import queue
import re
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator

QUEUE_PIECES = 4
_DONE = object()

# read(object name) -> its bytes, piece by piece
Reader = Callable[[str], Iterator[bytes]]


class _Closed(Exception):
    """The client went away: stop writing."""


class _QueueWriter:
    """A write-only, unseekable file: zipfile then writes data descriptors."""

    def __init__(self, pieces: queue.Queue, closed: threading.Event) -> None:
        self.pieces, self.closed = pieces, closed

    def write(self, data: bytes) -> int:
        while True:
            if self.closed.is_set():
                raise _Closed()
            try:
                self.pieces.put(bytes(data), timeout=0.5)
                return len(data)
            except queue.Full:
                continue

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """The queue's end is told apart (_DONE), not by closing the file."""

    # The rest of a file object's methods, which an unseekable, write-only stream
    # refuses: zipfile then writes data descriptors, and tarfile's "w|gz" only writes.
    def read(self, size: int = -1, /) -> bytes:
        raise io.UnsupportedOperation("write-only")

    def tell(self) -> int:
        raise io.UnsupportedOperation("unseekable")

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("unseekable")


class _ObjectFile:
    """An object as a readable file for tarfile.addfile."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces = pieces
        self.piece, self.offset = b"", 0

    def read(self, n: int = -1) -> bytes:
        """Exactly n bytes unless the object ends (tarfile refuses short reads)."""
        parts, wanted = [], n
        while wanted != 0:
            if self.offset >= len(self.piece):
                self.piece, self.offset = next(self.pieces, b""), 0
                if not self.piece:
                    break
            end = len(self.piece) if wanted < 0 else self.offset + wanted
            data = self.piece[self.offset : end]
            self.offset += len(data)
            parts.append(data)
            if wanted > 0:
                wanted -= len(data)
        return b"".join(parts)


# A backslash is a separator to Windows extractors (`..\\..\\evil.txt` climbs out of the
# target folder), and control characters make names that terminals and shells misread.
_UNSAFE_IN_ARCHIVES = re.compile(r"[\\\x00-\x1f\x7f]")


def archive_names(paths: Iterable[str]) -> Iterator[str]:
    """Each output path as an archive entry: unsafe characters become `_`, and a name
    that then clashes with an earlier one gets `~N` (the listing keeps the real path)."""
    used: set[str] = set()
    for path in paths:
        name = candidate = _UNSAFE_IN_ARCHIVES.sub("_", path)
        number = 1
        while candidate in used:
            number += 1
            candidate = f"{name}~{number}"
        used.add(candidate)
        yield candidate


def _write_zip(out: _QueueWriter, entries: Iterable[tuple[dict, str]], read: Reader) -> None:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for (_entry, name), safe in _with_names(entries):
            info = zipfile.ZipInfo(safe)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as member:
                for piece in read(name):
                    member.write(piece)


def _write_tar(out: _QueueWriter, entries: Iterable[tuple[dict, str]], read: Reader) -> None:
    with tarfile.open(fileobj=out, mode="w|gz", format=tarfile.PAX_FORMAT) as archive:
        for (entry, name), safe in _with_names(entries):
            info = tarfile.TarInfo(safe)
            info.size = entry["size"]
            info.mode = 0o644
            archive.addfile(info, _ObjectFile(read(name)))


def _with_names(
    entries: Iterable[tuple[dict, str]],
) -> Iterator[tuple[tuple[dict, str], str]]:
    listed = list(entries)
    return zip(listed, archive_names(entry["path"] for entry, _ in listed), strict=True)


WRITERS = {"zip": _write_zip, "tar.gz": _write_tar}
MEDIA_TYPES = {"zip": "application/zip", "tar.gz": "application/gzip"}


def stream_archive(kind: str, entries: list[tuple[dict, str]], read: Reader) -> Iterator[bytes]:
    """The archive's bytes as they are made. Closing the iterator (the client hung
    up) stops the writer thread."""
    pieces: queue.Queue = queue.Queue(maxsize=QUEUE_PIECES)
    closed = threading.Event()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            WRITERS[kind](_QueueWriter(pieces, closed), entries, read)
        except _Closed:
            return
        except Exception as error:  # reported to the reader, which ends the response
            failure.append(error)
        while not closed.is_set():
            try:
                pieces.put(_DONE, timeout=0.5)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=produce, name="archive-writer", daemon=True)
    thread.start()
    try:
        while (piece := pieces.get()) is not _DONE:
            yield piece
        if failure:
            raise failure[0]
    finally:
        closed.set()
