"""A result always fits in its task's Firestore document: output that grows when
stored (invalid UTF-8 as U+FFFD, control characters, quotes) is cut and marked
truncated, never refused by Firestore with the task's result lost."""

from __future__ import annotations

import pytest

from tests.integration.conftest import ALICE, runner_headers

KIB = 1024
WHO = {"execution": "exec-1", "attempt": 0}


def big_running_task(client, services) -> str:
    """A task whose input is as large as the limits allow."""
    files = {f"f{i}.txt": '"' * (10 * KIB) for i in range(20)}
    body = {"kind": "code", "language": "python", "code": "#" * (100 * KIB), "files": files}
    reply = client.post("/api/tasks", json=body, headers=ALICE)
    assert reply.status_code == 202, reply.get_json()
    task_id = reply.get_json()["id"]
    services.machine.mark_dispatched(task_id, "local", "d1")
    claimed = client.post(
        f"/internal/v1/tasks/{task_id}/claim", json=WHO, headers=runner_headers(services, task_id)
    )
    assert claimed.status_code == 200
    return task_id


@pytest.mark.parametrize("char", ["\ufffd", "\x01", '"'])
def test_output_that_grows_when_stored_is_cut_not_lost(client, services, char):
    task_id = big_running_task(client, services)
    stream = char * (128 * KIB)  # what the runner keeps of each stream, at most
    reply = client.post(
        f"/internal/v1/tasks/{task_id}/result",
        json={
            **WHO,
            "status": "completed",
            "result": {"exitCode": 0, "stdout": stream, "stderr": stream, "durationMs": 1},
        },
        headers=runner_headers(services, task_id),
    )
    assert reply.status_code == 200, reply.get_json()
    task = client.get(f"/api/tasks/{task_id}", headers=ALICE).get_json()
    assert task["status"] == "completed"
    result = task["result"]
    assert result["exitCode"] == 0
    assert stream.startswith(result["stdout"]) and stream.startswith(result["stderr"])
    if char == "\ufffd":  # 3 bytes each: 768 KiB of output beside 300 KiB of input
        assert result["stdoutTruncated"] or result["stderrTruncated"]
        assert len(result["stdout"]) + len(result["stderr"]) > 128 * KIB
