"""Batches the runner's events to the API and doubles as its heartbeat.

Output arrives in small chunks from the sandbox; posting each would cost a Firestore
transaction apiece, so chunks are buffered and flushed every FLUSH_SECONDS (or when
the batch is full). When nothing happens, an empty batch still goes out every
`heartbeat_seconds`, so the API knows the runner is alive. A 409 from the API means
this execution no longer holds the task (cancelled, or taken over): `lost` is set
and the runner stops its sandbox.

Every event passes the task's `SecretMask` on its way in (secret_mask.py): output and
an agent's text deltas as streams (a value split between two chunks is still masked),
other events whole.
"""

from __future__ import annotations

import codecs
import threading
import time

from job_runner.api_client import ApiRefused, ApiUnreachable, TaskApi
from job_runner.logs import log
from job_runner.secret_mask import SecretMask

FLUSH_SECONDS = 0.25
MAX_BATCH = 100
# Merge consecutive output chunks of one stream up to this size into one event.
MAX_CHUNK_CHARS = 8192
# Events whose text arrives in pieces of one stream: masked as a stream.
DELTA_EVENTS = ("assistant_delta",)


class EventSender:
    def __init__(
        self,
        api: TaskApi,
        heartbeat_seconds: float,
        on_lost=lambda: None,
        mask: SecretMask | None = None,
    ) -> None:
        self.api = api
        self.on_lost = on_lost
        self.heartbeat_seconds = heartbeat_seconds
        self.mask = mask or SecretMask()
        self.lost = threading.Event()
        self._pending: list[dict] = []
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")
        }
        self._streams = {name: self.mask.stream() for name in ("stdout", "stderr", *DELTA_EVENTS)}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._force = False
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def output(self, stream: str, chunk: bytes) -> None:
        with self._lock:
            text = self._streams[stream].feed(self._decoders[stream].decode(chunk))
            self._append_output(stream, text)

    def _append_output(self, stream: str, text: str) -> None:
        if not text:
            return
        last = self._pending[-1] if self._pending else None
        if last and last["type"] == stream and len(last["data"]) + len(text) <= MAX_CHUNK_CHARS:
            last["data"] += text
        else:
            self._pending.append({"type": stream, "data": text})
        if len(self._pending) >= MAX_BATCH:
            self._wake.set()

    def event(self, type: str, data: dict | str) -> None:
        """Queue one structured event (an agent's `assistant`, `tool_call`,
        `tool_result`, `usage`, the proxy's `egress`); it goes out with the next batch."""
        with self._lock:
            if type in DELTA_EVENTS and isinstance(data, dict):
                text = self._streams[type].feed(str(data.get("text") or ""))
                if not text:
                    return
                data = {**data, "text": text}
            else:
                self._flush_deltas()  # a delta's held tail goes before what follows it
                data = self.mask.data(data)
            self._pending.append({"type": type, "data": data})
            if len(self._pending) >= MAX_BATCH:
                self._wake.set()

    def _flush_deltas(self) -> None:
        for type in DELTA_EVENTS:
            held = self._streams[type].flush()
            if held:
                self._pending.append({"type": type, "data": {"text": held}})

    def heartbeat_now(self) -> None:
        """Send a heartbeat at once (after a pause, e.g. a maintenance migration)."""
        self._force = True
        self._wake.set()

    def finish(self) -> list[dict]:
        """Stop the background flushing and return the events not yet sent, at most
        one batch: they travel with the result, in the same transaction that settles
        the task (one round trip less, and no output can arrive after the end)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)
        with self._lock:
            self._flush_deltas()
            for stream, decoder in self._decoders.items():
                tail = self._streams[stream].feed(decoder.decode(b"", final=True))
                self._append_output(stream, tail + self._streams[stream].flush())
        while len(self._pending) > MAX_BATCH:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            self._post(batch)
        rest, self._pending = self._pending, []
        return rest

    def _run(self) -> None:
        last_post = time.monotonic()
        while True:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            due = time.monotonic() - last_post >= self.heartbeat_seconds
            if batch or due or self._force:
                self._force = False
                self._post(batch)
                last_post = time.monotonic()

    def _post(self, batch: list[dict]) -> None:
        if self.lost.is_set():
            return
        try:
            self.api.post_events(batch)
        except ApiRefused as refused:
            log.warning("the API refused our events (%s): stopping", refused)
            self.lost.set()
            self.on_lost()
        except ApiUnreachable as error:
            # Keep running: the result post retries too, and the API's reconciler
            # decides if we are gone for good.
            log.warning("could not post events: %s", error)
