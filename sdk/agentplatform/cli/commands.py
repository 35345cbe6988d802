"""The tool's commands: each takes the parsed arguments and a Client, prints, and
returns the process's exit code."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agentplatform import Client
from agentplatform.cli.output import ProgressBar, human_bytes, paint, status_text, table
from agentplatform.models import Environment, Task

LANGUAGES = {
    ".py": "python",
    ".sh": "bash",
    ".bash": "bash",
    ".js": "javascript",
    ".mjs": "javascript",
}
# A task that did not complete has no exit code of its own: these stand in for it
# (timeout(1)'s 124 for a timeout, a signal's 128 + SIGINT for a cancel).
EXIT_TIMED_OUT = 124
EXIT_FAILED = 125
EXIT_CANCELLED = 130


def exit_code(task: Task) -> int:
    if task.status == "completed":
        return task.exit_code if task.exit_code is not None else 0
    return {"timed_out": EXIT_TIMED_OUT, "cancelled": EXIT_CANCELLED}.get(task.status, EXIT_FAILED)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _follow(client: Client, task: Task) -> Task:
    """Print the task's output as it comes; returns the finished task."""
    for event in client.stream(task):
        if event.type in ("stdout", "stderr") and isinstance(event.data, str):
            stream = sys.stdout if event.type == "stdout" else sys.stderr
            stream.write(event.data)
            stream.flush()
        elif event.type in ("assistant", "assistant_delta"):
            sys.stdout.write(event.text)
            sys.stdout.flush()
    finished = client.wait(task)
    if finished.status != "completed":
        reason = f": {finished.error.code}: {finished.error.message}" if finished.error else ""
        print(f"task {finished.id} {status_text(finished.status, None, sys.stderr)}{reason}",
              file=sys.stderr)  # fmt: skip
    return finished


def run(args: argparse.Namespace, client: Client) -> int:
    if (args.file is None) == (args.code is None):
        print("error: give a FILE or -c CODE", file=sys.stderr)
        return 2
    code = args.code if args.code is not None else Path(args.file).read_text()
    language = args.language or (LANGUAGES.get(Path(args.file).suffix) if args.file else None)
    files: dict[str, Any] = {}
    for item in args.files:
        name, _, local = item.partition("=")
        local_path = Path(local or name)
        if local_path.stat().st_size > 256 * 1024:
            files[name] = client.files.upload(local_path, progress=ProgressBar(f"uploading {name}"))
        else:
            files[name] = local_path.read_bytes()
    stdin = sys.stdin.read() if args.stdin == "-" else args.stdin
    task = client.submit(
        code,
        language=language or "python",
        files=files,
        stdin=stdin,
        timeout_seconds=args.timeout,
        memory_mb=args.memory,
        network=True if args.network else None,
        environment=args.environment,
    )
    if args.detach:
        print(task.id)
        return 0
    finished = _follow(client, task)
    if args.json:
        _print_json(finished.raw)
    return exit_code(finished)


def _task_row(task: Task) -> list[str]:
    what = task.input.get("code") or task.input.get("prompt") or ""
    what = " ".join(str(what).split())
    duration = task.duration_seconds
    return [
        task.id,
        task.kind,
        status_text(task.status, task.exit_code),
        f"{duration:.1f}s" if duration is not None else "",
        task.created_at.strftime("%Y-%m-%d %H:%M:%S") if task.created_at else "",
        what[:48] + ("…" if len(what) > 48 else ""),
    ]


def tasks_list(args: argparse.Namespace, client: Client) -> int:
    tasks = list(client.list(status=args.status, limit=args.limit))
    if args.json:
        _print_json([t.raw for t in tasks])
    elif not tasks:
        print("No tasks yet: try `agentplatform run -c 'print(1)'`.")
    else:
        headers = ["ID", "KIND", "STATUS", "TOOK", "CREATED", "WHAT"]
        print(table([_task_row(t) for t in tasks], headers))
    return 0


def _show_task(task: Task, as_json: bool) -> None:
    if as_json:
        _print_json(task.raw)
        return
    print(f"{task.id}  {task.kind}  {status_text(task.status, task.exit_code)}")
    if task.error:
        print(paint(f"error: {task.error.code}: {task.error.message}", "red"))
    if task.execution and task.execution.log_uri:
        print(f"logs: {task.execution.log_uri}")
    if task.result:
        if task.result.stdout:
            print(task.result.stdout, end="" if task.result.stdout.endswith("\n") else "\n")
        if task.result.text:
            print(task.result.text)
        for f in task.result.files:
            print(paint(f"file: {f.path} ({f.size} bytes)", "dim"))


def tasks_get(args: argparse.Namespace, client: Client) -> int:
    _show_task(client.get(args.task), args.json)
    return 0


def tasks_cancel(args: argparse.Namespace, client: Client) -> int:
    _show_task(client.cancel(args.task), args.json)
    return 0


def tasks_follow(args: argparse.Namespace, client: Client) -> int:
    return exit_code(_follow(client, client.get(args.task)))


def files_list(args: argparse.Namespace, client: Client) -> int:
    listing = client.files.list(args.task)
    if args.json:
        _print_json(listing.raw)
        return 0
    rows = [[f.path, str(f.size), f.content_type or ""] for f in listing.files]
    print(table(rows, ["PATH", "BYTES", "TYPE"]) if rows else "No files.")
    for skipped in listing.skipped:
        print(paint(f"skipped {skipped.path}: {skipped.reason}", "yellow"))
    return 0


def files_get(args: argparse.Namespace, client: Client) -> int:
    if args.output == "-":
        for chunk in client.files.iter_bytes(args.task, args.path):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return 0
    dest = Path(args.output or Path(args.path).name)
    size = client.files.download(args.task, args.path, dest, progress=ProgressBar(str(dest)))
    print(f"{dest} ({size} bytes)", file=sys.stderr)
    return 0


def files_archive(args: argparse.Namespace, client: Client) -> int:
    dest = Path(args.output or f"task-{args.task}.{args.format}")
    size = client.files.archive(
        args.task, dest, format=args.format, progress=ProgressBar(str(dest))
    )
    print(f"{dest} ({size} bytes)", file=sys.stderr)
    return 0


def files_upload(args: argparse.Namespace, client: Client) -> int:
    upload = client.files.upload(Path(args.path), progress=ProgressBar(f"uploading {args.path}"))
    if args.json:
        _print_json(upload.raw)
    else:
        print(upload.id)
    return 0


def agents_list(args: argparse.Namespace, client: Client) -> int:
    agents = client.agents.list()
    if args.json:
        _print_json([a.raw for a in agents])
    elif not agents:
        print("No agents yet: `agentplatform agents create NAME`.")
    else:
        rows = [[a.id, a.name, a.engine, a.model, a.description[:40]] for a in agents]
        print(table(rows, ["ID", "NAME", "ENGINE", "MODEL", "DESCRIPTION"]))
    return 0


def agents_create(args: argparse.Namespace, client: Client) -> int:
    agent = client.agents.create(
        args.name,
        args.description,
        system_prompt=args.system_prompt,
        model=args.model,
        engine=args.engine,
        tools=args.tools,
        environment=args.environment,
    )
    _print_json(agent.raw) if args.json else print(agent.id)
    return 0


def agents_delete(args: argparse.Namespace, client: Client) -> int:
    client.agents.delete(args.agent)
    return 0


def _environment_row(environment: Environment) -> list[str]:
    size = environment.size_bytes
    return [
        environment.id,
        environment.name,
        status_text(environment.status),
        human_bytes(size) if size is not None else "",
        " ".join(environment.python),
    ]


_ENVIRONMENT_HEADERS = ["ID", "NAME", "STATUS", "SIZE", "PACKAGES"]


def environments_list(args: argparse.Namespace, client: Client) -> int:
    environments = client.environments.list()
    if args.json:
        _print_json([e.raw for e in environments])
    elif not environments:
        print("No environments yet: `agentplatform environments create NAME PACKAGE...`.")
    else:
        print(table([_environment_row(e) for e in environments], _ENVIRONMENT_HEADERS))
    return 0


def _show_environment(environment: Environment, as_json: bool) -> int:
    """Prints it; the exit code says whether tasks can use it (a failed build is
    EXIT_FAILED, with pip's message)."""
    if as_json:
        _print_json(environment.raw)
    else:
        print(table([_environment_row(environment)], _ENVIRONMENT_HEADERS))
    if environment.error:
        print(paint(f"error: {environment.error.code}: {environment.error.message}", "red",
                    sys.stderr), file=sys.stderr)  # fmt: skip
    return EXIT_FAILED if environment.status == "failed" else 0


def environments_create(args: argparse.Namespace, client: Client) -> int:
    environment = client.environments.create(args.name, args.python, npm=args.npm)
    if args.detach:
        _print_json(environment.raw) if args.json else print(environment.id)
        return 0
    if environment.is_building:
        print(paint(f"building {environment.name} (task {environment.build_task_id})…", "dim",
                    sys.stderr), file=sys.stderr)  # fmt: skip
    return _show_environment(client.environments.wait(environment), args.json)


def environments_get(args: argparse.Namespace, client: Client) -> int:
    return _show_environment(client.environments.get(args.environment), args.json)


def environments_delete(args: argparse.Namespace, client: Client) -> int:
    client.environments.delete(args.environment)
    return 0


def chat(args: argparse.Namespace, client: Client) -> int:
    """Send each line you type (or each -m) and stream the agent's reply."""
    conversation = args.conversation or client.conversations.create(args.agent).id
    print(paint(f"conversation {conversation} (Ctrl-D to end)", "dim", sys.stderr), file=sys.stderr)
    messages = iter(args.message) if args.message else None
    interactive = messages is None and sys.stdin.isatty()
    status = 0
    while True:
        if messages is not None:
            text = next(messages, None)
        else:
            try:
                text = input(paint("you> ", "bold") if interactive else "")
            except EOFError:
                text = None
        if text is None:
            return status
        if not text.strip():
            continue
        turn = client.conversations.send(conversation, text)
        last = "\n"
        for delta in turn:
            sys.stdout.write(delta)
            sys.stdout.flush()
            last = delta
        task = turn.wait()
        if not last.endswith("\n"):
            sys.stdout.write("\n")
        if task.status != "completed":
            reason = f": {task.error.message}" if task.error else ""
            print(paint(f"turn {task.status}{reason}", "red", sys.stderr), file=sys.stderr)
            status = exit_code(task)


def usage(args: argparse.Namespace, client: Client) -> int:
    current = client.usage()
    if args.json:
        _print_json(current.raw)
        return 0
    rows = []
    for name, counter in current.counters().items():
        share = counter.used / counter.limit if counter.limit else 0
        colour = "red" if share >= 1 else "yellow" if share >= 0.8 else "green"
        rows.append([name, paint(str(counter.used), colour), str(counter.limit)])
    print(f"{current.day} (resets {current.resets_at})")
    print(table(rows, ["COUNTER", "USED", "LIMIT"]))
    return 0


def keys_create(args: argparse.Namespace, client: Client) -> int:
    key = client.keys.create(args.name)
    if args.json:
        _print_json(key.raw)
    else:
        print(key.key)
        print(paint("Shown once: store it now.", "yellow", sys.stderr), file=sys.stderr)
    return 0


def keys_list(args: argparse.Namespace, client: Client) -> int:
    keys = client.keys.list()
    if args.json:
        _print_json([k.raw for k in keys])
        return 0
    rows = [[k.id, k.name, k.prefix + "…", str(k.created_at or ""), str(k.last_used_at or "never")]
            for k in keys]  # fmt: skip
    print(table(rows, ["ID", "NAME", "PREFIX", "CREATED", "LAST USED"]) if rows else "No keys.")
    return 0


def keys_revoke(args: argparse.Namespace, client: Client) -> int:
    client.keys.revoke(args.key)
    return 0
