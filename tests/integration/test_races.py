"""Races between a user's own requests end in 4xx, never 5xx (issue 21): a PATCH of an
agent racing its DELETE is 404, and a cancel that cannot get its transaction through
(another writer holds the task) is 409 `task_busy`, not 503."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.integration.conftest import ALICE


def test_an_agent_patch_racing_its_delete_is_200_or_404(app):
    for round_number in range(8):
        agent = (
            app.test_client()
            .post(
                "/api/agents", json={"name": f"a{round_number}", "description": "d"}, headers=ALICE
            )
            .get_json()
        )
        url = f"/api/agents/{agent['id']}"
        with ThreadPoolExecutor(max_workers=4) as pool:
            patches = [
                pool.submit(app.test_client().patch, url, json={"name": f"n{n}"}, headers=ALICE)
                for n in range(3)
            ]
            deleted = pool.submit(app.test_client().delete, url, headers=ALICE)
        assert deleted.result().status_code == 204
        assert {p.result().status_code for p in patches} <= {200, 404}
        assert app.test_client().get(url, headers=ALICE).status_code == 404


def test_a_cancel_while_another_writer_holds_the_task_is_409(app, services):
    from google.cloud import firestore

    task = (
        app.test_client()
        .post(
            "/api/tasks",
            json={"kind": "code", "language": "python", "code": "print(1)"},
            headers=ALICE,
        )
        .get_json()
    )
    store = services.store
    holder = store.client.transaction()
    ref = store.client.collection("tasks").document(task["id"])

    @firestore.transactional
    def hold(transaction):
        ref.get(transaction=transaction)  # the emulator locks the document for it
        reply = app.test_client().post(f"/api/tasks/{task['id']}/cancel", headers=ALICE)
        assert reply.status_code == 409, reply.get_json()
        assert reply.get_json()["error"]["code"] == "task_busy"

    hold(holder)
    after = app.test_client().post(f"/api/tasks/{task['id']}/cancel", headers=ALICE)
    assert after.status_code == 200
    assert after.get_json()["status"] == "cancelled"
