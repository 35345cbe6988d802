"""Code tasks end to end: a real API server, real runner processes, real bubblewrap."""

from __future__ import annotations

import json
import os
import signal

import httpx

from tests.conftest import processes_mentioning, wait_for


def test_print_input_completes_with_stdout(alice):
    task = alice.run(code="print(input())", stdin="hi")
    assert task["status"] == "completed"
    assert task["result"]["exitCode"] == 0
    assert task["result"]["stdout"] == "hi\n"
    assert task["result"]["stdoutTruncated"] is False
    assert task["execution"]["backend"] == "local"
    assert task["startedAt"] and task["finishedAt"]


def test_submit_answers_202_with_location(alice):
    reply = alice.http.post(
        "/api/tasks", json={"kind": "code", "language": "bash", "code": "echo ok"}
    )
    assert reply.status_code == 202
    assert reply.headers["Location"] == f"/api/tasks/{reply.json()['id']}"
    assert reply.json()["status"] == "queued"


def test_bash_task_reads_input_files(alice):
    task = alice.run(
        language="bash", code="cat data.txt; wc -c < data.txt", files={"data.txt": "hello"}
    )
    assert task["result"]["stdout"] == "hello5\n"


def test_program_exiting_3_is_completed_with_exit_code_3(alice):
    task = alice.run(code="import sys; print('bye'); sys.exit(3)")
    assert task["status"] == "completed"
    assert task["result"]["exitCode"] == 3


def test_infinite_loop_times_out_with_partial_output_kept(alice):
    task = alice.run(code="print('started', flush=True)\nwhile True: pass", timeoutSeconds=2)
    assert task["status"] == "timed_out"
    assert task["result"]["stdout"] == "started\n"
    assert task["error"]["code"] == "timeout"


def test_ten_megabytes_of_stdout_are_capped_and_flagged(alice):
    task = alice.run(code="import sys\nfor _ in range(10): sys.stdout.write('x' * 1048576)")
    assert task["status"] == "completed"
    assert task["result"]["stdoutTruncated"] is True
    assert 0 < len(task["result"]["stdout"]) <= 128 * 1024


def test_fork_bomb_is_contained_and_api_stays_healthy(alice, api_server):
    task = alice.run(language="bash", code=":(){ :|:& };:", timeoutSeconds=5)
    assert task["status"] in ("completed", "timed_out"), task
    assert httpx.get(f"{api_server.url}/health", timeout=5).json()["status"] == "ok"
    assert alice.run(code="print(1)")["result"]["stdout"] == "1\n"


def test_memory_bomb_is_contained(alice, api_server):
    task = alice.run(code="x = bytearray(2 * 1024**3)\nprint('allocated')", memoryMb=256)
    # The task's memory cgroup stops it (README, "Limits"): a clear code, its output kept.
    assert (task["status"], task["error"]["code"]) == ("failed", "memory_exceeded"), task
    assert task["result"]["exitCode"] == 137
    assert "allocated" not in task["result"]["stdout"]
    assert httpx.get(f"{api_server.url}/health", timeout=5).status_code == 200


def test_network_is_unreachable_from_the_sandbox(alice, api_server):
    code = f"""
import socket
for host, port in [("1.1.1.1", 53), ("127.0.0.1", {api_server.port})]:
    try:
        socket.create_connection((host, port), timeout=2)
        print("connected", host)
    except OSError as error:
        print("refused", host)
"""
    task = alice.run(code=code)
    assert task["result"]["stdout"] == "refused 1.1.1.1\nrefused 127.0.0.1\n"


def test_sandbox_environment_holds_no_token_url_or_key(alice, api_server):
    code = """
import glob, os
print(sorted(os.environ))
for path in glob.glob('/proc/*/environ'):
    try:
        print(path, open(path, 'rb').read())
    except OSError as error:
        print(path, 'unreadable')
"""
    task = alice.run(code=code)
    out = task["result"]["stdout"]
    for secret in ("TASK_TOKEN", "tt1.", "API_URL", "127.0.0.1", "ANTHROPIC", "FIRESTORE"):
        assert secret not in out, out
    env_task = alice.run(language="bash", code="env")
    assert "TOKEN" not in env_task["result"]["stdout"]
    assert "API_URL" not in env_task["result"]["stdout"]


def test_output_symlink_to_etc_passwd_is_not_followed(alice):
    code = "import os\nos.symlink('/etc/passwd', 'leak.txt')\nopen('ok.txt','w').write('fine')"
    task = alice.run(code=code)
    files = {f["path"]: f for f in task["result"]["files"]}
    assert files["ok.txt"]["content"] == "fine"
    assert files["leak.txt"]["content"] is None
    assert "root:" not in json.dumps(task)


def test_cancel_stops_a_running_task(alice, api_server):
    task = alice.submit(
        code="import time\nprint('up', flush=True)\ntime.sleep(60)", timeoutSeconds=120
    )
    wait_for(
        lambda: alice.http.get(f"/api/tasks/{task['id']}").json()["status"] == "running",
        30,
        message="the task to run",
    )
    reply = alice.http.post(f"/api/tasks/{task['id']}/cancel")
    assert reply.status_code == 200
    assert reply.json()["status"] == "cancelled"
    final = alice.wait(task["id"], 5)
    assert final["status"] == "cancelled"
    # Nothing of the task survives: no runner process, no sandbox, still cancelled.
    wait_for(
        lambda: not processes_mentioning(task["id"]),
        15,
        message="the runner process tree to be gone",
    )
    assert alice.wait(task["id"], 1)["status"] == "cancelled"


def test_runner_killed_mid_task_ends_failed_runner_lost(alice):
    task = alice.submit(
        code="import time\nprint('up', flush=True)\ntime.sleep(60)", timeoutSeconds=120
    )
    wait_for(
        lambda: alice.http.get(f"/api/tasks/{task['id']}").json()["status"] == "running",
        30,
        message="the task to run",
    )
    pids = processes_mentioning(task["id"])
    assert pids, "the runner process should be visible"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    final = alice.wait(task["id"], 30)
    assert final["status"] == "failed"
    assert final["error"]["code"] == "runner_lost"


def test_another_users_task_is_not_found(alice, bob):
    task = alice.submit(code="print(1)")
    for method, path in [
        ("GET", f"/api/tasks/{task['id']}"),
        ("GET", f"/api/tasks/{task['id']}/events"),
        ("POST", f"/api/tasks/{task['id']}/cancel"),
    ]:
        reply = bob.http.request(method, path)
        assert reply.status_code == 404, (method, path)
        assert reply.json()["error"]["code"] == "not_found"
    assert bob.http.get("/api/tasks").json()["tasks"] == []
    assert alice.wait(task["id"])["status"] == "completed"


def test_events_follow_the_task_as_json_and_sse(alice):
    task = alice.run(code="print('a', flush=True)\nprint('b')")
    reply = alice.http.get(f"/api/tasks/{task['id']}/events")
    events = reply.json()["events"]
    statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
    assert statuses == ["queued", "dispatched", "running", "completed"]
    assert "".join(e["data"] for e in events if e["type"] == "stdout") == "a\nb\n"
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert reply.json()["next"] == events[-1]["seq"]
    after = alice.http.get(f"/api/tasks/{task['id']}/events", params={"after": events[1]["seq"]})
    assert after.json()["events"] == events[2:]

    with alice.http.stream(
        "GET",
        f"/api/tasks/{task['id']}/events",
        headers={"Accept": "text/event-stream", "Last-Event-ID": str(events[0]["seq"])},
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        body = stream.read().decode()
    ids = [int(line[4:]) for line in body.splitlines() if line.startswith("id: ")]
    assert ids == [e["seq"] for e in events[1:]]


def test_list_is_newest_first_and_paginated(alice):
    ids = [alice.submit(code=f"print({i})")["id"] for i in range(3)]
    first = alice.http.get("/api/tasks", params={"limit": 2}).json()
    assert [t["id"] for t in first["tasks"]] == ids[::-1][:2]
    second = alice.http.get(
        "/api/tasks", params={"limit": 2, "pageToken": first["nextPageToken"]}
    ).json()
    assert [t["id"] for t in second["tasks"]] == ids[:1]
    assert second["nextPageToken"] is None
    for task_id in ids:
        alice.wait(task_id)
    done = alice.http.get("/api/tasks", params={"status": "completed"}).json()
    assert {t["id"] for t in done["tasks"]} == set(ids)


def _wait_running(caller, task_id: str) -> None:
    """Until the program has printed: by then the runner is the one process naming the
    task (while it starts the sandbox, its forked child does too, until it execs)."""
    wait_for(
        lambda: any(
            e["type"] == "stdout"
            for e in caller.http.get(f"/api/tasks/{task_id}/events").json()["events"]
        ),
        30,
        message="the program's first output",
    )


def test_a_maintenance_pause_sigtstp_then_sigcont_does_not_disturb_the_task(alice, api_server):
    task = alice.submit(code="import time\nprint('a', flush=True)\ntime.sleep(2)\nprint('b')")
    _wait_running(alice, task["id"])
    (runner,) = processes_mentioning(task["id"])
    os.kill(runner, signal.SIGTSTP)  # Cloud Run: "migrating in 10 s"
    os.kill(runner, signal.SIGCONT)  # Cloud Run: "migrated"
    done = alice.wait(task["id"])
    assert done["status"] == "completed"
    assert done["result"]["stdout"] == "a\nb\n"
    wait_for(lambda: "resumed after migration" in api_server.logs(), 10, message="the log")


def test_sigterm_stops_the_runner_which_still_reports(alice):
    task = alice.submit(code="import time\nprint('up', flush=True)\ntime.sleep(60)")
    _wait_running(alice, task["id"])
    (runner,) = processes_mentioning(task["id"])
    os.kill(runner, signal.SIGTERM)
    done = alice.wait(task["id"], 30)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "runner_terminated"  # reported by the runner itself
    assert done["result"]["stdout"] == "up\n"


def test_api_and_runner_log_json_lines_that_name_the_task(alice, api_server):
    task = alice.run(code="print(1)")
    entries = [json.loads(line) for line in api_server.logs().splitlines() if line.strip()]
    assert all("severity" in e and "message" in e for e in entries)
    labelled = [
        e for e in entries if e["logging.googleapis.com/labels"].get("taskId") == task["id"]
    ]
    services = {e["logging.googleapis.com/labels"]["service"] for e in labelled}
    assert services == {"api-server", "job-runner"}
