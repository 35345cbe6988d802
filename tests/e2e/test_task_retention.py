"""Stored data does not grow forever (issue 21): a finished task can be deleted with its
events and files, and every task and event carries the `expireAt` that Firestore's TTL
deletes it by (TASK_RETENTION_DAYS; the deploy declares the TTL and the bucket rule)."""

from __future__ import annotations

from datetime import timedelta

from google.cloud import firestore, storage

from api.config import TASK_RETENTION_DAYS
from tests.conftest import BUCKET, PROJECT


def objects(prefix: str) -> list[str]:
    client = storage.Client(project=PROJECT)
    return sorted(blob.name for blob in client.list_blobs(BUCKET, prefix=prefix))


def stored(task_id: str) -> tuple[dict | None, list[dict]]:
    ref = firestore.Client(project=PROJECT).collection("tasks").document(task_id)
    snapshot = ref.get()
    events = [event.to_dict() for event in ref.collection("events").stream()]
    return (snapshot.to_dict() if snapshot.exists else None), events


def test_a_task_and_its_events_expire_after_the_retention_period(alice):
    task = alice.run(code="print('kept a while')")
    document, events = stored(task["id"])
    assert document is not None and events
    expected = document["createdAt"] + timedelta(days=TASK_RETENTION_DAYS)
    assert document["expireAt"] == expected
    assert {event["expireAt"] for event in events} == {expected}


def test_deleting_a_finished_task_removes_its_document_events_and_files(alice, bob):
    task = alice.run(kind="code", language="bash", code="echo out > result.txt")
    assert task["status"] == "completed", task
    assert objects(f"tasks/{task['id']}/")
    assert bob.http.delete(f"/api/tasks/{task['id']}").status_code == 404
    assert alice.http.delete(f"/api/tasks/{task['id']}").status_code == 204
    assert alice.http.get(f"/api/tasks/{task['id']}").status_code == 404
    assert stored(task["id"]) == (None, [])
    assert objects(f"tasks/{task['id']}/") == []
    assert alice.http.delete(f"/api/tasks/{task['id']}").status_code == 404


def test_a_running_task_cannot_be_deleted(alice):
    task = alice.submit(code="import time; time.sleep(30)", timeoutSeconds=60)
    reply = alice.http.delete(f"/api/tasks/{task['id']}")
    assert reply.status_code == 409
    assert reply.json()["error"]["code"] == "task_not_finished"
    alice.http.post(f"/api/tasks/{task['id']}/cancel")
