"""Runs inside the sandbox, as its pid 1: the engine's one way out, then the engine.

    python3 loopback_forwarder.py SOCKET -- ENGINE ARGS...

The sandbox has no network, only its own loopback. This listens on a free port of
that loopback, pipes every connection, byte for byte, to the Unix socket the runner
bound into the sandbox (the runner's LLM relay, outside), and starts the engine with
ANTHROPIC_BASE_URL pointing at the port. It holds no secret: the relay outside adds
the task token. As pid 1 it also reaps orphans, and exits with the engine's status.

Standard library only, and nothing from job_runner: the sandbox sees this one file.
"""

import contextlib
import os
import socket
import sys
import threading

CHUNK = 65536


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


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: loopback_forwarder.py SOCKET -- ENGINE ARGS...\n")
        return 2
    path, command = argv[0], argv[2:]
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    threading.Thread(target=_serve, args=(listener, path), daemon=True).start()
    env = dict(os.environ, ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}")
    engine = os.posix_spawn(command[0], command, env)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == engine:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
