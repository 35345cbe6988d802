"""The deploy's smoke-task credential against the real API: the apiKeys document that
deploy-gcp.sh writes through Firestore's REST API (into the emulator here) is a key the
API accepts, and once the script deletes it, the API refuses it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx

from tests.conftest import PROJECT, with_settings
from tests.deploy.harness import SCRIPT


def script_python(name: str) -> str:
    """One of the script's embedded Python programs (NAME='...')."""
    match = re.search(rf"^{name}='\n(.*?)^'$", SCRIPT.read_text(), re.M | re.S)
    assert match, name
    return match.group(1)


def test_the_smoke_key_the_deploy_writes_is_accepted_then_refused_once_deleted(
    firestore, settings, tmp_path
):
    from api import create_app

    document = tmp_path / "key.json"
    minted = subprocess.run(
        [sys.executable, "-c", script_python("SMOKE_KEY_PY"), "deploy-smoke", str(document)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    digest, key = minted
    base = f"http://{firestore.host}/v1/projects/{PROJECT}/databases/(default)/documents"
    # The emulator takes the REST calls the script makes with curl, as the owner.
    owner = {"Authorization": "Bearer owner"}
    created = httpx.post(
        f"{base}/apiKeys",
        params={"documentId": digest},
        content=document.read_bytes(),
        headers={**owner, "Content-Type": "application/json"},
    )
    assert created.status_code == 200, created.text
    assert key not in document.read_text() and key not in json.dumps(created.json())

    client = create_app(
        with_settings(settings, auth_mode="apikey"), start_background=False
    ).test_client()
    bearer = {"Authorization": f"Bearer {key}"}
    listed = client.get("/api/tasks", headers=bearer)
    assert listed.status_code == 200, listed.get_json()
    assert listed.get_json()["tasks"] == []

    assert httpx.delete(f"{base}/apiKeys/{digest}", headers=owner).status_code == 200
    refused = client.get("/api/tasks", headers=bearer)
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthenticated"
