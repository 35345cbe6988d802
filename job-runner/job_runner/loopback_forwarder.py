"""Runs inside the sandbox, as its pid 1: the program's ways out, then the program.

    python3 loopback_forwarder.py [--llm SOCKET] [--proxy SOCKET] [--env-on-stdin]
        -- PROGRAM ARGS...

(`loopback_forwarder.py SOCKET -- PROGRAM` is `--llm SOCKET`.) The sandbox has no
network, only its own loopback. For each channel this listens on a free port of that
loopback and pipes every connection, byte for byte, to the Unix socket the runner
bound into the sandbox, then starts the program with the channel's variables set:

- `--llm`: the runner's LLM relay, as ANTHROPIC_BASE_URL;
- `--proxy`: the runner's egress proxy, as HTTP_PROXY and HTTPS_PROXY (and their
  lower-case forms, and NODE_USE_ENV_PROXY for Node's own fetch); NO_PROXY keeps the
  sandbox's own loopback (the LLM channel) direct.

With `--env-on-stdin`, stdin starts with a decimal length, a newline and that many
bytes of a JSON object: more variables for the program (its owner's secrets). They
are read exactly, so the program's stdin continues right after them, and they never
appear on a command line. This holds no credential of the platform: the relay
outside adds the task token. As pid 1 it also reaps orphans, and exits with the
program's status.

Standard library only, and nothing from job_runner: the sandbox sees this one file.
"""

import contextlib
import json
import os
import socket
import sys
import threading

CHUNK = 65536
MAX_ENV_BYTES = 4 * 1024 * 1024
LOOPBACK_NAMES = "localhost,127.0.0.1,::1"


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            target.sendall(data)
    except OSError:
        pass
    finally:
        # One side is done: end both directions (HTTP never half-closes here).
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def _serve(listener: socket.socket, path: str) -> None:
    while True:
        client, _ = listener.accept()
        relay = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            relay.connect(path)
        except OSError:
            client.close()
            relay.close()
            continue
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_pipe, args=(client, relay), daemon=True).start()
        threading.Thread(target=_pipe, args=(relay, client), daemon=True).start()


def _channel(path: str) -> str:
    """Listen for one channel; its loopback URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_serve, args=(listener, path), daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


def _read_exactly(size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = os.read(0, size - len(data))
        if not more:
            raise ValueError("stdin ended inside the environment block")
        data += more
    return data


def _env_from_stdin() -> dict:
    length = b""
    while not length.endswith(b"\n"):  # a byte at a time: not one byte past the line
        more = os.read(0, 1)
        if not more or len(length) > 12:
            raise ValueError("stdin does not start with the environment block's length")
        length += more
    size = int(length)
    if size > MAX_ENV_BYTES:
        raise ValueError("the environment block is too large")
    env = json.loads(_read_exactly(size))
    return {str(name): str(value) for name, value in env.items()}


def _parse(argv: list[str]) -> tuple[dict, list[str]]:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        raise ValueError("no program after --")
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    parsed: dict = {"env_on_stdin": False}
    while options:
        option = options.pop(0)
        if option == "--env-on-stdin":
            parsed["env_on_stdin"] = True
        elif option in ("--llm", "--proxy") and options:
            parsed[option[2:]] = options.pop(0)
        elif not option.startswith("-") and "llm" not in parsed:
            parsed["llm"] = option
        else:
            raise ValueError(f"unknown option {option!r}")
    return parsed, command


def main(argv: list[str]) -> int:
    try:
        options, command = _parse(argv)
        extra = _env_from_stdin() if options["env_on_stdin"] else {}
    except ValueError as problem:
        sys.stderr.write(
            f"loopback_forwarder.py: {problem}\nusage: loopback_forwarder.py [--llm SOCKET] "
            "[--proxy SOCKET] [--env-on-stdin] -- PROGRAM ARGS...\n"
        )
        return 2
    env = {**os.environ, **extra}
    if "llm" in options:
        env["ANTHROPIC_BASE_URL"] = _channel(options["llm"])
    if "proxy" in options:
        url = _channel(options["proxy"])
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env[name] = url
        env["NO_PROXY"] = env["no_proxy"] = LOOPBACK_NAMES
        env["NODE_USE_ENV_PROXY"] = "1"
    try:
        program = os.posix_spawnp(command[0], command, env)
    except OSError as problem:
        sys.stderr.write(f"{command[0]}: {problem.strerror}\n")
        return 127
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == program:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
