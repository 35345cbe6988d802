"""Slow clients against another user's requests: the API's serving model under stall.

Starts its own emulators and an API server (devtools/local_stack.py), then measures one
user's `GET /api/tasks/{id}` latency alone, and again while `--per-kind` connections
of each kind below are open at once (ADR 0015):
  - half-sent headers (a request line, then a byte now and then, never the blank line);
  - a trickled body (an upload's headers, then a few bytes now and then);
  - an endless chunked body (a chunked JSON body whose chunks keep coming slowly);
  - a non-reading download (a task's 8 MiB output file, its bytes never read).
It prints both p99s and their ratio; the design asks for less than 2x. `--worker
gthread` measures gunicorn's threaded worker instead, for comparison.
Run with `make bench` (or `.venv/bin/python bench/slow_clients.py`; `--quick` for a
smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.local_stack import LocalStack, add_quick_flag  # noqa: E402

PROJECT = "demo-bench"
DOWNLOAD_MIB = 8
TRICKLE_EVERY_SECONDS = 1.0
VICTIM_REQUESTS_PER_SECOND = 10
KINDS = ("headers", "body", "chunked", "download")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def warm_up(url: str) -> None:
    """A fresh emulator's first answers take seconds (the API answers 503 past its
    Firestore deadline): ask until one is quick, for a minute at most."""
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=url, headers={"X-User-Id": "warm"}, timeout=30) as http:
        while http.get("/api/tasks").status_code != 200:
            assert time.monotonic() < deadline, "the API did not warm up"


def make_task_with_output(url: str) -> str:
    warm_up(url)
    with httpx.Client(base_url=url, headers={"X-User-Id": "slow"}, timeout=120) as http:
        task = http.post(
            "/api/tasks",
            json={
                "kind": "code",
                "language": "bash",
                "code": f"head -c {DOWNLOAD_MIB * 1024 * 1024} /dev/zero > big.bin",
                "timeoutSeconds": 60,
            },
        ).json()
        done = http.get(f"/api/tasks/{task['id']}", params={"wait": 60}).json()
        assert done["status"] == "completed", done
        return task["id"]


def other_user_latencies(url: str, task_id: str, seconds: float) -> list[float]:
    """GETs of another user's own task, `VICTIM_REQUESTS_PER_SECOND` for `seconds`
    (below the per-user rate limit): each latency in s. A request that fails or times
    out counts as its full timeout."""
    times = []
    timeout = 30.0
    started_at = time.monotonic()
    with httpx.Client(base_url=url, headers={"X-User-Id": "victim"}, timeout=timeout) as http:
        for i in range(int(seconds * VICTIM_REQUESTS_PER_SECOND)):
            # Paced, not back to back: wait for this request's slot in the schedule.
            pause = started_at + i / VICTIM_REQUESTS_PER_SECOND - time.monotonic()
            if time.monotonic() > started_at + seconds:
                break  # a stalled server: what was measured is the figure
            if pause > 0:
                time.sleep(pause)
            started = time.perf_counter()
            try:
                ok = http.get(f"/api/tasks/{task_id}").status_code == 200
            except httpx.HTTPError:
                ok = False
            times.append(time.perf_counter() - started if ok else timeout)
    return times


async def open_connection(port: str, small_window: bool = False):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small_window:  # a client that reads nothing advertises (almost) no window
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", int(port)))
    return await asyncio.open_connection(sock=sock)


async def half_headers(port: str, stop: asyncio.Event) -> None:
    _, writer = await open_connection(port)
    writer.write(b"GET /api/tasks HTTP/1.1\r\nHost: bench\r\nX-User-Id: slow\r\n")
    await trickle(writer, stop, b"X")


async def trickled_body(port: str, stop: asyncio.Event) -> None:
    _, writer = await open_connection(port)
    writer.write(
        b"POST /api/uploads HTTP/1.1\r\nHost: bench\r\nX-User-Id: slow\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
    )
    await trickle(writer, stop, b"abc")


async def endless_chunked(port: str, stop: asyncio.Event) -> None:
    _, writer = await open_connection(port)
    writer.write(
        b"POST /api/tasks HTTP/1.1\r\nHost: bench\r\nX-User-Id: slow\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'1\r\n{\r\n5\r\n"a":[\r\n'
    )
    await trickle(writer, stop, b"2\r\n1,\r\n")


async def non_reading_download(
    port: str, stop: asyncio.Event, task_id: str, answered: list[int]
) -> None:
    reader, writer = await open_connection(port, small_window=True)
    writer.write(
        f"GET /api/tasks/{task_id}/files/big.bin HTTP/1.1\r\nHost: bench\r\n"
        "X-User-Id: slow\r\n\r\n".encode()
    )
    # The status line, then nothing more is read.
    status = await reader.readline()
    answered.append(int(status.split()[1]))
    await stop.wait()
    writer.transport.abort()


async def trickle(writer: asyncio.StreamWriter, stop: asyncio.Event, piece: bytes) -> None:
    try:
        while not stop.is_set():
            writer.write(piece)
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TRICKLE_EVERY_SECONDS)
    except OSError:
        pass  # the server closed it: that is the point of its deadlines
    finally:
        writer.transport.abort()


class SlowClients:
    """`per_kind` connections of each kind, held open on a thread's event loop."""

    def __init__(self, url: str, task_id: str, per_kind: int, kinds: list[str]) -> None:
        self.kinds = kinds
        self.downloads: list[int] = []
        self.port = url.rsplit(":", 1)[1]
        self.task_id = task_id
        self.per_kind = per_kind
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.run(),))

    async def run(self) -> None:
        makers = {
            "headers": lambda: half_headers(self.port, self.stop),
            "body": lambda: trickled_body(self.port, self.stop),
            "chunked": lambda: endless_chunked(self.port, self.stop),
            "download": lambda: non_reading_download(
                self.port, self.stop, self.task_id, self.downloads
            ),
        }
        chosen = [make for kind, make in makers.items() if kind in self.kinds]
        tasks = [asyncio.create_task(make()) for _ in range(self.per_kind) for make in chosen]
        # Measure once every slow request is in its slow state: the downloads answered
        # (opening 200 downloads at once is work, as any 200 requests are; the bench
        # measures what they hold once they stall), the others sent what they send.
        deadline = time.monotonic() + 120
        expected = self.per_kind if "download" in self.kinds else 0
        while len(self.downloads) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # polling interval of a deadline-bounded wait
        await asyncio.sleep(1)  # the trickles' first pieces
        self.opened.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> SlowClients:
        self.thread.start()
        assert self.opened.wait(180), "the slow connections did not open"
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--per-kind", type=int, default=200, help="slow connections per kind")
    parser.add_argument("--seconds", type=float, default=20, help="measuring time, each phase")
    parser.add_argument("--kinds", default=",".join(KINDS), help="which slow clients")
    parser.add_argument("--verbose", action="store_true", help="print each latency")
    parser.add_argument("--worker", choices=["bounded", "gthread"], default="bounded")
    add_quick_flag(parser)
    args = parser.parse_args()
    if args.quick:
        args.per_kind, args.seconds = 20, 3
    env = {"GUNICORN_CMD_ARGS": "--worker-class gthread"} if args.worker == "gthread" else {}
    with LocalStack(PROJECT) as stack:
        server = stack.api_server("slow-clients-api.log", **env)
        slow_task = make_task_with_output(server.url)
        with httpx.Client(base_url=server.url, headers={"X-User-Id": "victim"}) as http:
            victim_task = http.post(
                "/api/tasks", json={"kind": "code", "language": "python", "code": "print(1)"}
            ).json()["id"]
        alone = other_user_latencies(server.url, victim_task, args.seconds)
        kinds = args.kinds.split(",")
        with SlowClients(server.url, slow_task, args.per_kind, kinds) as slow:
            stalled = other_user_latencies(server.url, victim_task, args.seconds)
        if "download" in kinds:
            statuses = sorted(set(slow.downloads))
            print(f"downloads answered: {len(slow.downloads)} (status {statuses})")
        base, loaded = percentile(alone, 0.99), percentile(stalled, 0.99)
        if args.verbose:
            print("latencies beside slow ones (ms):", [round(t * 1000) for t in stalled])
        print(f"worker: {args.worker}; {args.per_kind} slow connections of each of {kinds}")
        print(f"GET p99 alone:            {base * 1000:8.1f} ms ({len(alone)} requests)")
        print(f"GET p99 beside slow ones: {loaded * 1000:8.1f} ms ({len(stalled)} requests)")
        print(f"ratio:                    {loaded / base:8.2f} x")


if __name__ == "__main__":
    main()
