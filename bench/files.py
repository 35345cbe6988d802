"""Files through the API, against Cloud Storage (the emulator) read directly.

Starts its own Firestore and Cloud Storage emulators and an API server
(devtools/local_stack.py: gunicorn, local executor, real bubblewrap), then prints:
  - upload throughput: POST /api/uploads, against the storage client uploading the
    same bytes straight to fake-gcs-server;
  - download throughput: GET /api/tasks/{id}/files/{path} of a task's output file,
    against the storage client downloading that object directly;
  - the time a conversation turn spends restoring and saving a 10 MiB workspace: the
    runner's own code (job_runner/task_files.py) against the live API, for a turn
    stored as running with a task token.
Run with `make bench` (or `.venv/bin/python bench/files.py --mib 64`; `--quick` for a
smoke run).
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "job-runner"))

from job_runner.file_channel import FileChannel  # noqa: E402
from job_runner.task_files import restore_workspace, save_workspace  # noqa: E402
from job_runner.workspace import prepare_workspace  # noqa: E402

if TYPE_CHECKING:
    from job_runner.spec import TaskSpec

from devtools.local_stack import LocalStack, add_quick_flag  # noqa: E402

PROJECT = "demo-bench"
TOKEN_KEY = secrets.token_hex(32)


def mib_per_s(size: int, seconds: float) -> str:
    return f"{size / (1024 * 1024) / seconds:7.1f} MiB/s"


def through_api(url: str, data: bytes) -> tuple[float, float]:
    """(upload seconds, download seconds) of `data` through the public API."""
    with httpx.Client(base_url=url, headers={"X-User-Id": "bench"}, timeout=300) as http:
        started = time.perf_counter()
        upload = http.post(
            "/api/uploads", content=data, headers={"Content-Type": "application/octet-stream"}
        )
        upload_s = time.perf_counter() - started
        assert upload.status_code == 201, upload.text
        task = http.post(
            "/api/tasks",
            json={
                "kind": "code",
                "language": "bash",
                "code": "cp in.bin out.bin",
                "files": {"in.bin": {"upload": upload.json()["id"]}},
                "timeoutSeconds": 120,
            },
        ).json()
        done = http.get(f"/api/tasks/{task['id']}", params={"wait": 60}).json()
        assert done["status"] == "completed", done
        started = time.perf_counter()
        size = 0
        with http.stream("GET", f"/api/tasks/{task['id']}/files/out.bin") as reply:
            for piece in reply.iter_bytes():
                size += len(piece)
        download_s = time.perf_counter() - started
        assert size == len(data)
    return upload_s, download_s


def direct(data: bytes, bucket: str) -> tuple[float, float]:
    """(upload seconds, download seconds) of `data` with the storage client itself."""
    from google.cloud.storage import Client

    blob = Client(project=PROJECT).bucket(bucket).blob("bench/direct.bin")
    blob.chunk_size = 8 * 1024 * 1024
    started = time.perf_counter()
    blob.upload_from_file(io.BytesIO(data), size=len(data))
    upload_s = time.perf_counter() - started
    sink = io.BytesIO()
    started = time.perf_counter()
    blob.download_to_file(sink)
    download_s = time.perf_counter() - started
    assert sink.tell() == len(data)
    return upload_s, download_s


def workspace_turn(url: str, mib: int) -> tuple[float, float]:
    """(save seconds, restore seconds) of a `mib` MiB workspace, as a runner does it."""
    from api.adapters.firestore_store import FirestoreStore
    from api.services.conversation_turns import conversation_path, snapshot_object
    from api.services.task_tokens import issue_task_token

    store = FirestoreStore(PROJECT)
    conversation_id, task_id = secrets.token_hex(12), secrets.token_hex(12)
    store.create_doc(conversation_path(conversation_id), {"id": conversation_id})
    task = {"id": task_id, "status": "running", "conversationId": conversation_id, "input": {}}
    store.create_doc(f"tasks/{task_id}", task)
    token = issue_task_token(TOKEN_KEY.encode(), task_id, time.time() + 600)
    channel = FileChannel(url, task_id, token)
    # What save_workspace and restore_workspace read of a claimed spec: its workspace.
    spec = cast("TaskSpec", {"workspace": {"restore": None, "maxBytes": 1024 * 1024 * 1024}})
    with tempfile.TemporaryDirectory() as root:
        os.chmod(root, 0o711)
        workspace, _ = prepare_workspace(root)
        with open(os.path.join(workspace, "data.bin"), "wb") as out:
            out.write(os.urandom(mib * 1024 * 1024))  # incompressible: the worst case
        started = time.perf_counter()
        snapshot = save_workspace(cast("TaskSpec", spec), channel, root, workspace)
        save_s = time.perf_counter() - started
        assert snapshot is not None, "the runner saved no workspace snapshot"
        # What settling the turn does: the conversation now points to the snapshot.
        pointer = {"object": snapshot_object(conversation_id, task_id), **snapshot}
        store.update_doc(conversation_path(conversation_id), {"workspace": pointer})
        restored, uid = prepare_workspace(root)
        spec["workspace"]["restore"] = {"size": snapshot["size"]}
        started = time.perf_counter()
        restore_workspace(cast("TaskSpec", spec), channel, root, restored, uid)
        restore_s = time.perf_counter() - started
        assert os.path.getsize(os.path.join(restored, "data.bin")) == mib * 1024 * 1024
    return save_s, restore_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="size of the transfer test")
    parser.add_argument("--workspace-mib", type=int, default=10)
    add_quick_flag(parser)
    args = parser.parse_args()
    if args.quick:
        args.mib, args.workspace_mib = 8, 1
    data = os.urandom(args.mib * 1024 * 1024)
    with LocalStack(PROJECT) as stack:
        server = stack.api_server("api.log", TASK_TOKEN_KEY=TOKEN_KEY)
        api_up, api_down = through_api(server.url, data)
        direct_up, direct_down = direct(data, stack.bucket)
        save_s, restore_s = workspace_turn(server.url, args.workspace_mib)
    size = len(data)
    print(f"files: {args.mib} MiB, through the API vs the Cloud Storage emulator directly")
    print(f"  upload    API {mib_per_s(size, api_up)}   direct {mib_per_s(size, direct_up)}")
    print(f"  download  API {mib_per_s(size, api_down)}   direct {mib_per_s(size, direct_down)}")
    print(
        f"  a turn's {args.workspace_mib} MiB workspace: save {save_s * 1000:.0f} ms, "
        f"restore {restore_s * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
