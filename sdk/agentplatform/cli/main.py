"""`agentplatform`: the command-line tool, on the SDK.

    agentplatform login --url http://127.0.0.1:8080 --user alice
    agentplatform run script.py          # live output; exits with the program's code
    agentplatform run -c 'print(6 * 7)'
    agentplatform tasks list|get|cancel|follow
    agentplatform files list|get|archive|upload
    agentplatform agents list|create|delete
    agentplatform environments list|create|get|delete
    agentplatform chat <agent-id>
    agentplatform usage
    agentplatform keys create|list|revoke

Credentials come from the options, else AGENTPLATFORM_URL / AGENTPLATFORM_API_KEY /
AGENTPLATFORM_USER, else what `login` stored.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agentplatform import Client
from agentplatform.cli import commands, config
from agentplatform.errors import AgentPlatformError, APIError

# Exit codes of the tool itself, apart from a program's own (docker run's convention).
EXIT_API_ERROR = 125


def build_parser() -> argparse.ArgumentParser:
    # The global options go before or after the command (`login --url ...`): each
    # command's copy leaves a value given before the command alone unless given again.
    parser = argparse.ArgumentParser(
        prog="agentplatform", description="Run code and Claude agents on the Agent Platform."
    )
    _global_options(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, argparse.SUPPRESS)
    sub = _Commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), common)

    login = sub.add_parser("login", help="store the API's URL and your key")
    login.set_defaults(handler=None)

    run = sub.add_parser("run", help="run a file or -c code; exits with its exit code")
    run.add_argument("file", nargs="?", help="the program (language from its extension)")
    run.add_argument("-c", dest="code", help="the program's text")
    run.add_argument("-l", "--language", help="python, bash, javascript, ...")
    run.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="put a local file in the task's workspace",
    )
    run.add_argument("--stdin", help="the program's standard input ('-' reads yours)")
    run.add_argument("--timeout", type=int, help="timeoutSeconds")
    run.add_argument("--memory", type=int, help="memoryMb")
    run.add_argument("--network", action="store_true", help="allow network access")
    run.add_argument("--environment", help="one of your custom environments (name or id)")
    run.add_argument("--detach", action="store_true", help="print the task id and return")
    run.set_defaults(handler=commands.run)

    _, tasks = sub.nested("tasks", help="your tasks")
    listing = tasks.add_parser("list")
    listing.add_argument("--status")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(handler=commands.tasks_list)
    for name, handler in (("get", commands.tasks_get), ("cancel", commands.tasks_cancel),
                          ("follow", commands.tasks_follow)):  # fmt: skip
        action = tasks.add_parser(name)
        action.add_argument("task")
        action.set_defaults(handler=handler)

    _, files = sub.nested("files", help="a task's files, and uploads")
    flist = files.add_parser("list", help="a task's output files")
    flist.add_argument("task")
    flist.set_defaults(handler=commands.files_list)
    fget = files.add_parser("get", help="download one output file")
    fget.add_argument("task")
    fget.add_argument("path")
    fget.add_argument("-o", "--output", help="where to write it ('-': stdout)")
    fget.set_defaults(handler=commands.files_get)
    farchive = files.add_parser("archive", help="download every output file in one archive")
    farchive.add_argument("task")
    farchive.add_argument("--format", choices=("zip", "tar.gz"), default="zip")
    farchive.add_argument("-o", "--output")
    farchive.set_defaults(handler=commands.files_archive)
    fup = files.add_parser("upload", help="upload a file; prints its upload id")
    fup.add_argument("path")
    fup.set_defaults(handler=commands.files_upload)

    agents, agents_sub = sub.nested("agents", required=False, help="your agents")
    agents.set_defaults(handler=commands.agents_list)
    agents_sub.add_parser("list").set_defaults(handler=commands.agents_list)
    create = agents_sub.add_parser("create")
    create.add_argument("name")
    create.add_argument("--description", default="")
    create.add_argument("--system-prompt")
    create.add_argument("--model")
    create.add_argument("--engine")
    create.add_argument("--tool", dest="tools", action="append")
    create.add_argument("--environment", help="a custom environment for its tasks")
    create.set_defaults(handler=commands.agents_create)
    delete = agents_sub.add_parser("delete")
    delete.add_argument("agent")
    delete.set_defaults(handler=commands.agents_delete)

    environments, envs = sub.nested(
        "environments", required=False, help="your custom environments (Python and npm packages)"
    )
    environments.set_defaults(handler=commands.environments_list)
    envs.add_parser("list").set_defaults(handler=commands.environments_list)
    ecreate = envs.add_parser("create", help="build one; waits until it is ready or failed")
    ecreate.add_argument("name")
    ecreate.add_argument("python", nargs="*", metavar="REQUIREMENT", help="e.g. pandas==2.2.3")
    ecreate.add_argument(
        "--npm", action="append", default=[], metavar="PACKAGE", help="e.g. lodash@4.17.21"
    )
    ecreate.add_argument("--detach", action="store_true", help="print its id and return")
    ecreate.set_defaults(handler=commands.environments_create)
    for name, handler in (("get", commands.environments_get),
                          ("delete", commands.environments_delete)):  # fmt: skip
        action = envs.add_parser(name)
        action.add_argument("environment", help="a name or an id")
        action.set_defaults(handler=handler)

    chat = sub.add_parser("chat", help="talk with an agent; the reply streams")
    chat.add_argument("agent", help="an agent id")
    chat.add_argument("--conversation", help="continue this conversation")
    chat.add_argument(
        "-m",
        "--message",
        action="append",
        help="send this (repeatable) instead of reading your input",
    )
    chat.set_defaults(handler=commands.chat)

    sub.add_parser("usage", help="your usage against your limits").set_defaults(
        handler=commands.usage
    )

    _, keys = sub.nested("keys", help="your API keys")
    kcreate = keys.add_parser("create")
    kcreate.add_argument("name")
    kcreate.set_defaults(handler=commands.keys_create)
    keys.add_parser("list").set_defaults(handler=commands.keys_list)
    krevoke = keys.add_parser("revoke")
    krevoke.add_argument("key")
    krevoke.set_defaults(handler=commands.keys_revoke)
    return parser


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--url", default=default, help="the API's URL")
    parser.add_argument("--api-key", default=default, help="an API key (ak_...) or ID token")
    parser.add_argument("--user", default=default, help="your name on a dev-mode server")
    parser.add_argument(
        "--json", action="store_true", default=default or False, help="print the API's JSON"
    )


class _Commands:
    """Adds commands (and their sub-commands) that all take the global options."""

    def __init__(self, action: Any, common: argparse.ArgumentParser) -> None:
        self.action = action
        self.common = common

    def add_parser(self, name: str, **options: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self.action.add_parser(
            name, parents=[self.common], **options
        )
        return parser

    def nested(
        self, name: str, *, required: bool = True, **options: Any
    ) -> tuple[argparse.ArgumentParser, _Commands]:
        parser = self.add_parser(name, **options)
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=required)
        return parser, _Commands(actions, self.common)


def client_for(args: argparse.Namespace) -> Client:
    stored = config.load()
    return Client(
        args.url or stored.url,
        api_key=args.api_key or stored.api_key,
        user=args.user or stored.user,
    )


def _login(args: argparse.Namespace) -> int:
    """Store the URL and credentials, after checking them with one call."""
    import getpass

    stored = config.load()
    url = args.url or stored.url or input("API URL [http://127.0.0.1:8080]: ").strip()
    key, user = args.api_key, args.user
    if not key and not user and sys.stdin.isatty():
        key = getpass.getpass("API key (ak_..., empty for dev mode): ").strip() or None
        if not key:
            user = input("User id (dev mode): ").strip() or None
    profile = config.Profile(url=url or "http://127.0.0.1:8080", api_key=key, user=user)
    with Client(profile.url, api_key=profile.api_key, user=profile.user) as client:
        client.usage()  # 401 here rather than on the first real command
    path = config.save(profile)
    print(f"Signed in to {profile.url}; saved in {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "login":
            return _login(args)
        with client_for(args) as client:
            code: int = args.handler(args, client)
            return code
    except APIError as error:
        print(f"error: {error.code or error.status}: {error.message}", file=sys.stderr)
        return EXIT_API_ERROR
    except AgentPlatformError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_API_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
