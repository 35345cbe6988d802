"""Cloud Storage: the only module that talks to the files bucket (DESIGN section 11).

Locally and in tests the official client talks to fake-gcs-server, which it finds
through STORAGE_EMULATOR_HOST (the client's own variable: it then uses anonymous
credentials and that base URL). Bytes always move in bounded pieces, so the API's
memory does not grow with an object's size: uploads go out as a resumable upload in
UPLOAD_CHUNK_BYTES pieces, downloads come in as ranged reads of READ_CHUNK_BYTES.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Protocol

# A resumable upload buffers one chunk (and copies it once as it sends it); it must be
# a multiple of 256 KiB
# (https://cloud.google.com/storage/docs/performing-resumable-uploads#chunked-upload).
# 4 MiB keeps a transfer's memory near 12 MiB (tests/e2e/test_files.py measures it);
# 8 MiB doubled that, for a throughput difference within run-to-run noise against the
# emulator here (`make bench`).
UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024
# GCS composes at most 32 source objects per call.
MAX_COMPOSE_SOURCES = 32
# How long one storage call may keep retrying transient errors before we give up
# and answer 503: the client's default (120 s) would hold a request thread far too long.
RETRY_DEADLINE_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0


class StorageUnavailable(Exception):
    """Cloud Storage could not be reached or answered 5xx; retry later."""


class SourceMissing(Exception):
    """A compose named a source object that does not exist."""


class TooLarge(Exception):
    """A stream was longer than the limit it was written under."""


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int
    content_type: str | None


class FileStore(Protocol):
    def write(
        self,
        name: str,
        stream: BinaryIO,
        *,
        limit: int,
        content_type: str,
        temporary: bool = False,
        size: int | None = None,
    ) -> StoredObject: ...

    def read(self, name: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]: ...

    def stat(self, name: str) -> ObjectInfo | None: ...

    def compose(self, name: str, parts: list[str], content_type: str) -> ObjectInfo: ...

    def retire(self, name: str, now: datetime) -> None: ...

    def touch(self, name: str, now: datetime) -> bool: ...

    def delete_prefix(self, prefix: str) -> int: ...


class _HashingReader:
    """Reads `stream`, hashing and counting; TooLarge past `limit` bytes."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.limit = stream, limit
        self.size = 0
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n if n is not None and n >= 0 else UPLOAD_CHUNK_BYTES)
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge(f"more than {self.limit} bytes")
        self.digest.update(data)
        return data


class GcsFileStore:
    """FileStore on one Cloud Storage bucket, with the official client built lazily."""

    def __init__(
        self,
        bucket: str,
        project: str,
        client: Any = None,
        retry_seconds: float = RETRY_DEADLINE_SECONDS,
    ) -> None:
        self.bucket_name = bucket
        self.project = project
        self.retry_seconds = retry_seconds
        # (connect, read) of each attempt: a hung Cloud Storage held a request for the
        # client's 60 s read timeout whatever the retry deadline (issue 21).
        self.timeout = (min(CONNECT_TIMEOUT_SECONDS, retry_seconds), retry_seconds)
        self._client = client
        self._lock = threading.Lock()

    @property
    def bucket(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from google.auth.exceptions import DefaultCredentialsError
                    from google.cloud import storage

                    try:
                        self._client = storage.Client(project=self.project)
                    except DefaultCredentialsError as error:
                        # No credential (the start-up check stops a server before
                        # this): a 503, never a 500 and a lost file.
                        raise StorageUnavailable(f"no storage credentials: {error}") from error
        return self._client.bucket(self.bucket_name)

    def _retry(self):
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_deadline(self.retry_seconds)

    def _call(self, work):
        """Run one storage call; unreachable, 5xx or a credential that fails (no
        token, a refresh that fails) becomes StorageUnavailable."""
        import requests
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import GoogleAuthError

        try:
            return work()
        except (gexc.ServerError, gexc.TooManyRequests, gexc.RetryError) as error:
            raise StorageUnavailable(str(error)) from error
        except GoogleAuthError as error:
            raise StorageUnavailable(f"storage credentials: {error}") from error
        except (requests.ConnectionError, requests.Timeout, ConnectionError) as error:
            raise StorageUnavailable(str(error)) from error

    def write(
        self,
        name: str,
        stream: BinaryIO,
        *,
        limit: int,
        content_type: str,
        temporary: bool = False,
        size: int | None = None,
    ) -> StoredObject:
        """Store `stream` as object `name`, completely or not at all: GCS makes an
        object visible only when its upload is finalized. `size`, when the caller
        knows it (a request's Content-Length), saves buffering the first chunk.

        :raises TooLarge: the stream is longer than `limit` (nothing is stored).
        :raises StorageUnavailable: the bucket cannot be reached.
        """
        reader = _HashingReader(stream, limit)
        # Read in small pieces: a WSGI server's input stream copies what one read
        # asks for a few times over (gunicorn's Body buffers it in a BytesIO). When the
        # size is not known, read up to one chunk first to see if one request will do.
        head: list[bytes] = []
        if size is None or size < UPLOAD_CHUNK_BYTES:
            while sum(map(len, head)) < UPLOAD_CHUNK_BYTES and (
                piece := reader.read(READ_CHUNK_BYTES)
            ):
                head.append(piece)
        small = size is None and sum(map(len, head)) < UPLOAD_CHUNK_BYTES
        small = small or (size is not None and size < UPLOAD_CHUNK_BYTES)
        blob = self.bucket.blob(name)
        if temporary:
            # The lifecycle backstop deletes it a day after this if nobody does first.
            blob.custom_time = datetime.now(UTC)

        def upload() -> None:
            if small:  # one multipart request
                blob.upload_from_string(
                    b"".join(head),
                    content_type=content_type,
                    retry=self._retry(),
                    timeout=self.timeout,
                )
                return
            with blob.open(
                "wb", chunk_size=UPLOAD_CHUNK_BYTES, content_type=content_type, retry=self._retry()
            ) as out:
                while head:
                    out.write(head.pop(0))
                while piece := reader.read(READ_CHUNK_BYTES):
                    out.write(piece)

        from google.api_core import exceptions as gexc

        try:
            self._call(upload)
        except gexc.NotFound as error:  # the bucket itself: misnamed or deleted
            raise StorageUnavailable(f"bucket {self.bucket_name!r}: {error}") from error
        return StoredObject(name, reader.size, reader.digest.hexdigest())

    def read(self, name: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Bytes [start, stop) of the object, in ranged reads of READ_CHUNK_BYTES."""
        blob = self.bucket.blob(name)
        if stop is None:
            info = self.stat(name)
            stop = info.size if info else 0
        offset = start
        while offset < stop:
            end = min(offset + READ_CHUNK_BYTES, stop)
            data = self._call(
                lambda o=offset, e=end: blob.download_as_bytes(
                    start=o, end=e - 1, checksum=None, retry=self._retry(), timeout=self.timeout
                )
            )
            if not data:
                return
            yield data
            offset += len(data)

    def stat(self, name: str) -> ObjectInfo | None:
        blob = self._call(
            lambda: self.bucket.get_blob(name, retry=self._retry(), timeout=self.timeout)
        )
        return None if blob is None else ObjectInfo(name, int(blob.size or 0), blob.content_type)

    def compose(self, name: str, parts: list[str], content_type: str) -> ObjectInfo:
        """Join `parts` into `name` (in rounds of 32), then delete the parts.

        :raises SourceMissing: one of the parts does not exist (nothing is joined).
        """
        bucket = self.bucket
        sources, round_ = list(parts), 0
        made: list[str] = []
        while len(sources) > MAX_COMPOSE_SOURCES:
            joined = []
            for i in range(0, len(sources), MAX_COMPOSE_SOURCES):
                partial = f"{name}.compose{round_}-{i}"
                self._compose(bucket, partial, sources[i : i + MAX_COMPOSE_SOURCES], content_type)
                joined.append(partial)
                made.append(partial)
            sources, round_ = joined, round_ + 1
        self._compose(bucket, name, sources, content_type)
        for leftover in parts + made:
            self._delete(leftover)
        info = self.stat(name)
        assert info is not None
        return info

    def _compose(self, bucket, name: str, sources: list[str], content_type: str) -> None:
        from google.api_core import exceptions as gexc

        target = bucket.blob(name)
        target.content_type = content_type
        try:
            self._call(
                lambda: target.compose(
                    [bucket.blob(s) for s in sources], retry=self._retry(), timeout=self.timeout
                )
            )
        except gexc.NotFound as error:
            raise SourceMissing(str(error)) from error

    def _delete(self, name: str) -> None:
        from google.api_core import exceptions as gexc

        with contextlib.suppress(gexc.NotFound):
            self._call(
                lambda: self.bucket.blob(name).delete(retry=self._retry(), timeout=self.timeout)
            )

    def touch(self, name: str, now: datetime) -> bool:
        """Move an object's Custom-Time to `now` (a lifecycle rule counts from it);
        False when there is no such object."""
        from google.api_core import exceptions as gexc

        blob = self.bucket.blob(name)
        blob.custom_time = now
        try:
            self._call(lambda: blob.patch(retry=self._retry(), timeout=self.timeout))
        except gexc.NotFound:
            return False
        except gexc.BadRequest:
            # Cloud Storage never moves a Custom-Time back: a concurrent touch set a
            # later one first, which is as good.
            return self.stat(name) is not None
        return True

    def retire(self, name: str, now: datetime) -> None:
        """An object nothing points to any more: mark it (Custom-Time, which the bucket's
        lifecycle rule deletes a day after, should we fail below), then delete it."""
        if self.touch(name, now):
            self._delete(name)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; returns how many."""
        names = self._call(
            lambda: [
                blob.name
                for blob in self.bucket.client.list_blobs(
                    self.bucket_name, prefix=prefix, retry=self._retry(), timeout=self.timeout
                )
            ]
        )
        for name in names:
            self._delete(name)
        return len(names)
