"""The Python SDK (sdk/, `agentplatform`) end to end: a real API server process, real
runner processes in real bubblewrap, the Firestore and Cloud Storage emulators."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import io
import os
import time
import zipfile

import httpx
import pytest
from agentplatform import (
    AsyncClient,
    Client,
    NotFound,
    RateLimited,
    TaskFailed,
    Unauthenticated,
    ValidationError,
)

from tests.conftest import ApiServer
from tests.e2e.cutting_proxy import CuttingProxy

COUNT_SLOWLY = """
import time
for i in range(6):
    print("line", i, flush=True)
    time.sleep(0.4)
"""


@pytest.fixture
def sdk(api_server, firestore):
    with Client(api_server.url, user="alice") as client:
        yield client


def test_run_returns_the_finished_task_with_its_output(sdk):
    task = sdk.run("print(input() * 2)", stdin="ab")
    assert task.status == "completed"
    assert task.exit_code == 0 and task.succeeded
    assert task.stdout == "abab\n"
    assert task.execution is not None and task.execution.backend == "local"
    assert task.finished_at is not None and task.duration_seconds is not None


def test_run_with_check_raises_for_a_non_zero_exit(sdk):
    with pytest.raises(TaskFailed) as failed:
        sdk.run("import sys; sys.exit(3)", check=True)
    assert failed.value.task.exit_code == 3  # type: ignore[attr-defined]


def test_files_given_as_text_and_bytes_reach_the_program(sdk):
    task = sdk.run(
        "print(open('a.txt').read(), open('b.bin', 'rb').read().hex())",
        files={"a.txt": "hello", "b.bin": b"\x00\xff"},
    )
    assert task.stdout == "hello 00ff\n"


def test_submit_get_list_and_cancel(sdk):
    task = sdk.submit("import time; time.sleep(30)", timeout_seconds=60)
    assert task.status == "queued"
    assert sdk.get(task.id).id == task.id
    assert task.id in [t.id for t in sdk.list(limit=10)]
    cancelled = sdk.cancel(task)
    assert cancelled.status == "cancelled"
    assert sdk.wait(task).status == "cancelled"


def test_the_same_idempotency_key_returns_the_same_task(sdk):
    first = sdk.submit("print(1)", idempotency_key="sdk-key-1")
    second = sdk.submit("print(1)", idempotency_key="sdk-key-1")
    assert first.id == second.id


def test_stream_yields_output_as_it_comes_and_ends_with_the_task(sdk):
    task = sdk.submit(COUNT_SLOWLY)
    events = list(sdk.stream(task))
    stdout = "".join(e.data for e in events if e.type == "stdout" and isinstance(e.data, str))
    assert stdout == "".join(f"line {i}\n" for i in range(6))
    assert [e.seq for e in events] == sorted({e.seq for e in events})
    assert events[-1].type == "status" and events[-1].data["status"] == "completed"


def test_stream_resumes_after_a_dropped_connection_without_loss_or_repeat(sdk, api_server):
    proxy = CuttingProxy(api_server.port)
    try:
        with Client(proxy.url, user="alice") as client:
            task = client.submit(COUNT_SLOWLY)
            seen, cut = [], 0
            for event in client.stream(task):
                seen.append(event)
                if event.type == "stdout" and not cut:
                    cut = proxy.cut()  # mid-stream, as a dropped network would
        assert cut >= 1
        seqs = [e.seq for e in seen]
        assert seqs == sorted(set(seqs)), "an event was repeated or came out of order"
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "an event was lost"
        stdout = "".join(e.data for e in seen if e.type == "stdout" and isinstance(e.data, str))
        assert stdout == "".join(f"line {i}\n" for i in range(6))
        resumed = [r for r in proxy.requests if b"/events" in r and b"Last-Event-ID: 0" not in r]
        assert resumed, "the stream was not resumed with Last-Event-ID"
    finally:
        proxy.close()


def test_a_large_upload_goes_in_parts_and_reaches_the_task(sdk, api_server, tmp_path):
    big = tmp_path / "big.bin"
    data = os.urandom(1024 * 1024) * 33  # 33 MiB: over one part's 32 MiB
    big.write_bytes(data)
    progress: list[tuple[int, int | None]] = []
    upload = sdk.files.upload(big, progress=lambda done, total: progress.append((done, total)))
    assert upload.status == "complete" and upload.size == len(data)
    assert upload.sha256 == hashlib.sha256(data).hexdigest()
    assert len(progress) == 2 and progress[-1] == (len(data), len(data))  # two parts
    task = sdk.run(
        "import hashlib; d = open('big.bin','rb').read(); "
        "open('digest.txt','w').write(hashlib.sha256(d).hexdigest())",
        files={"big.bin": upload},
        memory_mb=1024,
    )
    assert task.status == "completed", task.raw
    assert sdk.files.read(task, "digest.txt").decode() == upload.sha256


def test_downloads_to_a_path_a_stream_and_an_archive(sdk, tmp_path):
    task = sdk.run("open('out.txt','w').write('x' * 5000); open('b.txt','w').write('b')")
    listing = sdk.files.list(task)
    assert sorted(f.path for f in listing.files) == ["b.txt", "out.txt"]
    size = sdk.files.download(task, "out.txt", tmp_path / "out.txt")
    assert size == 5000 and (tmp_path / "out.txt").read_text() == "x" * 5000
    sink = io.BytesIO()
    sdk.files.download(task, "b.txt", sink)
    assert sink.getvalue() == b"b"
    sdk.files.archive(task, tmp_path / "all.zip")
    with zipfile.ZipFile(tmp_path / "all.zip") as archive:
        assert sorted(archive.namelist()) == ["b.txt", "out.txt"]


def test_errors_map_to_their_types(sdk):
    with pytest.raises(NotFound) as missing:
        sdk.get("no-such-task")
    assert missing.value.status == 404 and missing.value.code == "not_found"
    with pytest.raises(ValidationError) as invalid:
        sdk.submit("print(1)", timeout_seconds=0)
    assert invalid.value.fields == ["timeoutSeconds"]


def test_another_users_task_is_not_found(sdk, api_server):
    task = sdk.submit("print(1)")
    with Client(api_server.url, user="bob") as bob, pytest.raises(NotFound):
        bob.get(task)


def test_agents_and_conversations_are_created_listed_and_deleted(sdk):
    agent = sdk.agents.create("helper", "helps", engine="messages", max_turns=3)
    assert agent.max_turns == 3 and agent.engine == "messages"
    assert [a.id for a in sdk.agents.list()] == [agent.id]
    assert sdk.agents.update(agent, description="helps more").description == "helps more"
    conversation = sdk.conversations.create(agent, title="first")
    assert sdk.conversations.get(conversation.id).title == "first"
    sdk.conversations.delete(conversation)
    sdk.agents.delete(agent)
    with pytest.raises(NotFound):
        sdk.agents.get(agent.id)


def test_batches_and_usage(sdk):
    items = [{"kind": "code", "language": "python", "code": f"print({i})"} for i in range(3)]
    tasks = sdk.batches.run(items)
    assert [t.stdout for t in tasks] == ["0\n", "1\n", "2\n"]
    usage = sdk.usage()
    assert usage.tasks_today.used >= 3
    assert "tasksToday" in usage.counters()
    assert usage.cost_usd_today is not None and usage.cost_usd_today.used >= 0
    assert usage.cost_usd_month >= usage.cost_usd_today.used


def test_the_async_client_runs_and_streams(api_server, firestore):
    async def scenario() -> tuple[str, str]:
        async with AsyncClient(api_server.url, user="alice") as client:
            task = await client.run("print('async')")
            streamed = await client.submit(COUNT_SLOWLY)
            out = [e.data async for e in client.stream(streamed) if e.type == "stdout"]
            return task.stdout, "".join(str(o) for o in out)

    # In a thread of its own: the session's browser tests (Playwright's sync API) may
    # keep an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        stdout, streamed = thread.submit(asyncio.run, scenario()).result(timeout=120)
    assert stdout == "async\n"
    assert streamed == "".join(f"line {i}\n" for i in range(6))


@pytest.fixture(scope="module")
def slow_server(emulator, tmp_path_factory):
    """A server allowing one request per second per user, in bursts of one."""
    server = ApiServer(
        emulator,
        tmp_path_factory.mktemp("rate") / "api.log",
        USER_REQUESTS_PER_SECOND="1",
        USER_REQUEST_BURST="1",
    ).start()
    yield server
    server.stop()


def test_a_429_is_retried_after_its_retry_after(slow_server, firestore):
    statuses: list[int] = []
    hooks = {"response": [lambda response: statuses.append(response.status_code)]}
    with httpx.Client(timeout=30, event_hooks=hooks) as http:
        client = Client(slow_server.url, user="carol", http_client=http)
        started = time.monotonic()
        for _ in range(3):
            client.usage()
        elapsed = time.monotonic() - started
    assert 429 in statuses, statuses
    assert statuses.count(200) == 3
    assert elapsed >= 1.0  # it waited as Retry-After asked, not at once


def test_without_retries_a_429_is_rate_limited_with_its_retry_after(slow_server, firestore):
    with Client(slow_server.url, user="dave", max_retries=0) as client:
        client.usage()
        with pytest.raises(RateLimited) as limited:
            client.usage()
    assert limited.value.code == "rate_limited"
    assert limited.value.retry_after is not None and limited.value.retry_after >= 1


def test_api_keys_are_made_used_listed_and_revoked(sdk, api_server):
    made = sdk.keys.create("script")
    assert made.key is not None and made.key.startswith("ak_")
    assert made.prefix == made.key[:12]
    with Client(api_server.url, api_key=made.key) as by_key:
        assert by_key.usage().tasks_today.limit > 0
        (listed,) = by_key.keys.list()
    assert listed.id == made.id and listed.key is None and listed.last_used_at is not None
    sdk.keys.revoke(made)
    with Client(api_server.url, api_key=made.key) as by_key, pytest.raises(Unauthenticated):
        by_key.usage()


def test_cancelling_a_finished_task_says_it_had_already_ended(sdk):
    task = sdk.run("print(1)")
    again = sdk.cancel(task)
    assert again.status == "completed" and again.already_ended
    running = sdk.submit("import time; time.sleep(30)")
    assert not sdk.cancel(running).already_ended
