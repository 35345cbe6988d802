"""`make dev`: the Firestore emulator on a free port, then the API on PORT (8080)
with the local executor, until Ctrl-C stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from devtools.api_server import LOCAL_ENV, gunicorn_command
from devtools.emulator import FirestoreEmulator
from devtools.storage_emulator import StorageEmulator
from devtools.task_root import ensure_task_root

ROOT = Path(__file__).resolve().parent.parent
FILES_BUCKET = "agent-files"  # api/config.py's local default


def agents_hint(env: dict) -> str:
    if env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_API_KEY_SECRET"):
        return "Agents are on (an Anthropic key is set): see README, 'Agents and conversations'."
    return (
        "Agents are off: start with ANTHROPIC_API_KEY=sk-ant-... make dev to enable agent\n"
        "tasks and conversations (see README, 'Agents and conversations')."
    )


def example_commands(port: str, executor: str = "local") -> str:
    """What `make dev` prints: commands that work exactly as printed (a test runs them)."""
    url = f"http://127.0.0.1:{port}"
    return f"""
API on {url} (EXECUTOR={executor}), the web console on {url}/console. Try it:

  TASK=$(curl -s -X POST {url}/api/tasks -H 'X-User-Id: alice' \\
    -H 'Content-Type: application/json' \\
    -d '{{"kind": "code", "language": "python", "code": "print(6 * 7)"}}' \\
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -s "{url}/api/tasks/$TASK?wait=30" -H 'X-User-Id: alice'

Ctrl-C stops the API (and the emulators, if this started them).
"""


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    (ROOT / ".dev").mkdir(exist_ok=True)
    env = dict(os.environ)
    # Honour what the caller set; fill in only what is unset (DESIGN section 5).
    env.setdefault("PORT", "8080")
    env.setdefault("HOST", "127.0.0.1")
    env.setdefault("EXECUTOR", "local")
    env.setdefault("AUTH_MODE", "dev")
    env.setdefault("GOOGLE_CLOUD_PROJECT", "demo-agent-platform")
    for name, value in LOCAL_ENV.items():  # no metadata-server probe from a laptop
        env.setdefault(name, value)
    # Tasks get the default environment's root, as on Cloud Run (built once, cached).
    if "TASK_ROOT" not in env:
        env["TASK_ROOT"] = str(ensure_task_root())
    emulator = None
    # An emulator unless the caller chose: FIRESTORE_EMULATOR_HOST=host:port for their
    # own emulator, or set but empty for the real Firestore of GOOGLE_CLOUD_PROJECT.
    if "FIRESTORE_EMULATOR_HOST" not in env:
        emulator = FirestoreEmulator(ROOT / ".dev" / "firestore-emulator.log").start()
        env["FIRESTORE_EMULATOR_HOST"] = emulator.host
        print(f"Firestore emulator on {emulator.host} (log: .dev/firestore-emulator.log)")
    storage = None
    # Likewise Cloud Storage: fake-gcs-server with the files bucket, unless the caller
    # named an emulator (STORAGE_EMULATOR_HOST) or the real bucket (FILES_BUCKET alone).
    if "STORAGE_EMULATOR_HOST" not in env and "FILES_BUCKET" not in env:
        storage = StorageEmulator(ROOT / ".dev" / "fake-gcs-server.log").start()
        env["STORAGE_EMULATOR_HOST"] = storage.url
        env["FILES_BUCKET"] = FILES_BUCKET
        storage.create_bucket(FILES_BUCKET)
        print(
            f"Cloud Storage emulator on {storage.url}, bucket {FILES_BUCKET} "
            "(log: .dev/fake-gcs-server.log)"
        )
    port = env["PORT"]
    print(example_commands(port, env["EXECUTOR"]), flush=True)
    print(agents_hint(env) + "\n", flush=True)
    # SIGTERM (a supervisor, `kill`) stops it as Ctrl-C does, emulators included.
    signal.signal(signal.SIGTERM, _stop)
    server = subprocess.Popen(
        gunicorn_command(),
        env=env,
        cwd=ROOT,
    )
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        return 0
    finally:
        if emulator is not None:
            emulator.stop()
            print("Stopped the Firestore emulator.")
        if storage is not None:
            storage.stop()
            print("Stopped the Cloud Storage emulator.")


if __name__ == "__main__":
    sys.exit(main())
