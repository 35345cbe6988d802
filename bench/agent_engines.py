"""The two agent engines side by side, on one scripted two-tool-call turn.

Starts its own emulators (devtools/local_stack.py: Firestore, and Cloud Storage for
the turn's output files), the scripted Messages API (streaming SSE, as Claude Code
needs) and an API server (gunicorn, local executor, real bubblewrap), then, for
`engine: "claude-code"` and `engine: "messages"` in the same run, prints
the p50 (and max) of:
  - submit -> the first assistant text event (`assistant_delta` for Claude Code,
    which streams; the messages engine does not stream, so its first `assistant`);
  - submit -> completed;
and, measured alone, Claude Code's own start-up: the sandbox started with the CLI
until its `system/init` line (no model call yet).
Run with `make bench` (or `.venv/bin/python bench/agent_engines.py --runs 5`; `--quick`
for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "job-runner"))

from job_runner.claude_code import cli_arguments, engine_env, find_cli  # noqa: E402
from job_runner.sandbox import BubblewrapSandbox, Limits  # noqa: E402
from job_runner.workspace import prepare_workspace  # noqa: E402

if TYPE_CHECKING:
    from job_runner.spec import TaskSpec

from devtools.local_stack import LocalStack, add_quick_flag  # noqa: E402
from devtools.scripted_anthropic import ScriptedAnthropic, reply, tool_use  # noqa: E402

TEXT_EVENTS = ("assistant_delta", "assistant")
BASH = {"claude-code": ("Bash", "command"), "messages": ("bash", "command")}


def two_tool_calls(engine: str) -> list:
    name, argument = BASH[engine]
    return [
        reply("First, one.", tool_use(name, **{argument: "echo 1 > one.txt"})),
        reply("Then, two.", tool_use(name, **{argument: "echo 2 > two.txt"})),
        reply("Both files are written."),
    ]


def one_turn(http: httpx.Client, engine: str) -> tuple[float, float]:
    """(submit -> first assistant text event, submit -> completed), in seconds."""
    started = time.perf_counter()
    body = {"kind": "agent", "engine": engine, "prompt": "Write one.txt and two.txt."}
    task = http.post("/api/tasks", json=body).json()
    first_text = None
    headers = {"Accept": "text/event-stream"}
    with http.stream("GET", f"/api/tasks/{task['id']}/events", headers=headers) as stream:
        for line in stream.iter_lines():
            if first_text is None and line.startswith("event: ") and line[7:] in TEXT_EVENTS:
                first_text = time.perf_counter() - started
            if line.startswith("data: ") and '"status"' in line:
                data = json.loads(line[6:])
                if data.get("status") in ("completed", "failed", "timed_out", "cancelled"):
                    break
    done = http.get(f"/api/tasks/{task['id']}").json()
    elapsed = time.perf_counter() - started
    assert done["status"] == "completed", done
    assert {f["path"] for f in done["result"]["files"]} >= {"one.txt", "two.txt"}, done
    return first_text or elapsed, elapsed


def cli_start_up(runs: int, warm_up: int) -> list[float]:
    """The sandbox with the CLI, until the CLI's init line: its start-up alone."""
    cli = find_cli()
    # Only what cli_arguments reads; maxTurns is the API's default (api/config.py).
    spec = cast(
        "TaskSpec",
        {"agent": {"model": "claude-sonnet-4-6", "tools": ["bash"]}, "input": {"maxTurns": 10}},
    )
    times = []
    with tempfile.TemporaryDirectory() as root:
        Path(root).chmod(0o755)
        for i in range(runs + warm_up):
            workspace, _ = prepare_workspace(Path(root) / str(i))
            home = Path(workspace) / ".engine" / "home"
            home.mkdir(parents=True)
            owner = os.stat(workspace).st_uid
            for path in (home.parent, home):
                os.chown(path, owner, owner)
            seen: dict = {}
            started = time.perf_counter()

            def on_output(stream: str, chunk: bytes, seen=seen, started=started) -> None:
                if stream == "stdout" and b'"init"' in chunk and "init" not in seen:
                    seen["init"] = time.perf_counter() - started

            env = {**engine_env({}), "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
            env["CLAUDE_CODE_MAX_RETRIES"] = "0"
            limits = Limits(
                wall_seconds=60,
                memory_mb=2048,
                max_processes=512,
                address_space_limit=False,
                report_all_output=True,
            )
            BubblewrapSandbox().run(
                [
                    "/engine/claude",
                    *cli_arguments(spec, f"00000000-0000-4000-8000-{i:012d}", False),
                ],
                limits,
                workspace=workspace,
                stdin=b"hi",
                readonly_binds={"/engine/claude": cli},
                on_output=on_output,
                env=env,
            )
            if i >= warm_up and "init" in seen:  # a first run warms the page cache
                times.append(seen["init"])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    add_quick_flag(parser)
    args = parser.parse_args()
    runs, warm_up = (1, 0) if args.quick else (args.runs, 1)

    start_up = cli_start_up(runs, warm_up)
    figures: dict[str, list[tuple[float, float]]] = {"claude-code": [], "messages": []}
    with LocalStack("demo-bench-agents") as stack, ScriptedAnthropic() as anthropic:
        server = stack.api_server(
            "api.log", ANTHROPIC_API_KEY="bench-key", ANTHROPIC_BASE_URL=anthropic.url
        )
        with httpx.Client(base_url=server.url, headers={"X-User-Id": "bench"}, timeout=120) as http:
            for i in range(runs + warm_up):
                for engine, measured in figures.items():
                    anthropic.add(*two_tool_calls(engine))
                    turn = one_turn(http, engine)
                    if i >= warm_up:  # warm-up: first imports, first connections
                        measured.append(turn)

    print(
        f"agent engines, a scripted two-tool-call turn: {runs} runs each (after {warm_up} warm-up)"
    )
    for engine, turns in figures.items():
        first = [turn[0] for turn in turns]
        total = [turn[1] for turn in turns]
        label = "assistant_delta" if engine == "claude-code" else "assistant"
        print(
            f"  {engine:<11} submit->first {label}: p50 {statistics.median(first) * 1000:.0f} ms"
            f" (max {max(first) * 1000:.0f});"
            f" submit->completed: p50 {statistics.median(total) * 1000:.0f} ms"
            f" (max {max(total) * 1000:.0f})"
        )
    if start_up:
        print(
            f"  Claude Code start-up alone (sandbox + CLI to its init line): "
            f"p50 {statistics.median(start_up) * 1000:.0f} ms (max {max(start_up) * 1000:.0f})"
        )


if __name__ == "__main__":
    main()
