"""The egress proxy's cost: HTTPS requests from a task through the proxy against the
same requests from the host, in one run.

A loopback HTTPS server (devtools/api_stand_in.py) stands in for an external API,
reached by the task as `api.test` through the development host map. The task is a
real code task (job_runner.code_task with its TaskAccess: bubblewrap, the loopback
forwarder inside, the Unix socket, the proxy outside); its program makes N requests,
each on a new connection (CONNECT, TLS handshake, GET, close), as a client without a
connection pool does, and times each. The host makes the same N requests straight to
the server, before the task and again after it (a shared machine's load drifts).
Printed: the p50 (and p90) of each and what the proxy adds at p50 (goal: under
2 ms), and the runner process's resident memory after the first tenth of the
requests and after the last (goal: flat; the proxy runs in this process, as in the
runner). The API is not involved: its part is the same with or without egress.

    .venv/bin/python bench/egress_proxy.py            # 100 requests (make bench)
    .venv/bin/python bench/egress_proxy.py --quick    # 20, for the test that runs it
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "job-runner"))

from job_runner.code_task import run_code_task  # noqa: E402
from job_runner.sandbox import make_sandbox  # noqa: E402
from job_runner.spec import TaskSpec  # noqa: E402
from job_runner.task_access import TaskAccess  # noqa: E402

from devtools.api_stand_in import ApiStandIn  # noqa: E402
from devtools.local_stack import add_quick_flag  # noqa: E402

# The client, run in the sandbox (through HTTPS_PROXY) and on the host (straight).
CLIENT = """
import http.client, json, os, ssl, sys, time
CA, PORT, COUNT = {ca!r}, {port}, {count}
context = ssl.create_default_context(cadata=CA)
proxy = os.environ.get("HTTPS_PROXY", "")
took = []
for number in range(1, COUNT + 1):
    started = time.perf_counter()
    if proxy:
        host, port = proxy.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPSConnection(host, int(port), context=context)
        conn.set_tunnel("api.test", 443)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", PORT, context=context)
    conn.request("GET", "/bench")
    reply = conn.getresponse()
    assert reply.status == 200 and reply.read()
    conn.close()
    took.append((time.perf_counter() - started) * 1000)
    if number % max(COUNT // 10, 1) == 0:
        print("progress", number, flush=True)
print(json.dumps(took), flush=True)
"""


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def from_task(client: str, port: int, count: int) -> tuple[list[float], dict[int, int]]:
    """Per-request milliseconds from a sandboxed code task, and this process's RSS
    (KiB) after each tenth of the requests."""
    spec: TaskSpec = {
        "id": "bench-egress",
        "kind": "code",
        "input": {"language": "python", "code": client, "timeoutSeconds": 120, "memoryMb": 512},
        "limits": {
            "maxOutputBytes": 1024 * 1024,
            "diskMb": 256,
            "network": False,
            "heartbeatSeconds": 5,
            "outputs": {
                "maxFiles": 10,
                "maxFileBytes": 1024,
                "maxTotalBytes": 1024,
                "maxPathChars": 100,
            },
            "egress": {
                "allow": ["api.test"],
                "maxConnections": count + 1,
                "maxBytes": 64 * 1024 * 1024,
                "devHosts": {"api.test": f"127.0.0.1:{port}"},
            },
        },
        "inputFiles": [],
    }
    memory: dict[int, int] = {}
    events: list[dict] = []

    def on_output(stream: str, chunk: bytes) -> None:
        for line in chunk.decode().splitlines():
            if line.startswith("progress "):
                memory[int(line.split()[1])] = rss_kib()

    access = TaskAccess.from_spec(spec, {}, events.append)
    status, result, error = run_code_task(
        spec, make_sandbox("bwrap"), on_output, threading.Event(), None, access
    )
    if status != "completed" or result is None or result["exitCode"] != 0:
        raise SystemExit(f"the task failed: {status} {error} {result and result['stderr']}")
    allowed = [event for event in events if event["allowed"]]
    if len(allowed) != count:
        raise SystemExit(f"expected {count} egress events, got {events[:3]}...")
    return json.loads(result["stdout"].splitlines()[-1]), memory


def from_host(client: str) -> list[float]:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-I", "-c", client], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    add_quick_flag(parser)  # 20 requests
    args = parser.parse_args()
    count = 20 if args.quick else args.requests
    with ApiStandIn(tls_names=["api.test", "127.0.0.1"]) as server:
        assert server.ca_file is not None
        ca = Path(server.ca_file).read_text()
        client = textwrap.dedent(CLIENT).format(ca=ca, port=server.port, count=count)
        # The host's requests before and after the task's: the machine's load drifts.
        host = from_host(client)
        task, memory = from_task(client, server.port, count)
        host += from_host(client)
    first, last = min(memory), max(memory)
    added = statistics.median(task) - statistics.median(host)
    print(f"egress proxy, {count} HTTPS requests (a new connection each):")
    for name, took in (("from the host      ", host), ("from a task (proxy)", task)):
        p50, p90 = statistics.median(took), percentile(took, 0.9)
        print(f"  {name} p50 {p50:6.2f} ms  p90 {p90:6.2f} ms")
    print(f"  added at p50        {added:6.2f} ms (goal: under 2 ms)")
    growth = (memory[last] - memory[first]) / 1024
    print(
        f"  runner memory       {memory[first] / 1024:6.1f} MiB after {first} requests, "
        f"{memory[last] / 1024:6.1f} MiB after {last} ({growth:+.1f} MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
