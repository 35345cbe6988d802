"""Custom environments end to end (issue 23): the real API server, runners, bubblewrap
and the runner's egress proxy; a loopback package index stands in for PyPI as
`pypi.test` (PACKAGE_INDEX_URL, through EGRESS_DEV_HOSTS), and an HTTP stand-in as
`api.test`, a host tasks may reach but a build may not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import firestore as gfirestore
from google.cloud import storage

from api.adapters.firestore_paths import environment_build_path, user_environments_path
from api.config import ENVIRONMENT_ARCHIVE_DAYS
from api.services.environments import manifest_hash
from devtools.api_stand_in import ApiStandIn
from devtools.package_index import PackageIndex
from devtools.scripted_anthropic import reply, tool_use
from tests.conftest import BUCKET, PROJECT, ApiServer, Caller, wait_for

BUILD_SECONDS = 60  # the most GET ?wait= holds


@pytest.fixture(scope="module")
def index():
    with PackageIndex() as served:
        served.add_wheel("tinypkg", "1.0")
        served.add_probing_sdist("probed", "1.0", "http://api.test/")
        served.add_npm_package("tinynpm", "1.0.0", "http://npm.test/npm/")
        yield served


@pytest.fixture(scope="module")
def stand_in():
    with ApiStandIn() as server:
        yield server


@pytest.fixture(scope="module")
def env_server(emulator, tmp_path_factory, index, stand_in, anthropic_api):
    server = ApiServer(
        emulator,
        tmp_path_factory.mktemp("environments") / "api.log",
        PACKAGE_INDEX_URL="http://pypi.test/simple/",
        PACKAGE_INDEX_DOMAINS="pypi.test",
        NPM_REGISTRY_URL="http://npm.test/npm/",
        NPM_REGISTRY_DOMAINS="npm.test",
        EGRESS_ALLOWED_DOMAINS="api.test",
        EGRESS_DEV_HOSTS=",".join(
            [
                f"pypi.test=127.0.0.1:{index.port}",
                f"npm.test=127.0.0.1:{index.port}",
                f"api.test=127.0.0.1:{stand_in.port}",
            ]
        ),
        MAX_ENVIRONMENTS_PER_USER="3",
        ANTHROPIC_API_KEY="sk-ant-environments-test",
        ANTHROPIC_BASE_URL=anthropic_api.url,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def alice(env_server, firestore, index):
    index.requests.clear()
    caller = Caller(env_server.url, "alice")
    yield caller
    caller.http.close()


@pytest.fixture
def bob(env_server, firestore):
    caller = Caller(env_server.url, "bob")
    yield caller
    caller.http.close()


def create(caller: Caller, name: str, python: list[str], status: int = 202) -> dict:
    answer = caller.http.post("/api/environments", json={"name": name, "python": python})
    assert answer.status_code == status, answer.text
    assert answer.headers["Location"] == f"/api/environments/{answer.json()['id']}"
    return answer.json()


def settled(caller: Caller, environment: dict) -> dict:
    """The environment once its build has ended (its build task waited on)."""
    if environment["buildTaskId"]:
        caller.wait(environment["buildTaskId"], BUILD_SECONDS)

    def read():
        seen = caller.http.get(f"/api/environments/{environment['id']}").json()
        return seen if seen["status"] != "building" else None

    return wait_for(read, 30, message="the environment to settle")


def events(caller: Caller, task_id: str) -> list[dict]:
    return caller.http.get(f"/api/tasks/{task_id}/events").json()["events"]


def test_an_environment_builds_once_and_tasks_use_it_read_only(alice, index):
    building = create(alice, "tiny", ["tinypkg==1.0"])
    assert building["status"] == "building" and building["buildTaskId"]
    ready = settled(alice, building)
    assert ready["status"] == "ready" and ready["sizeBytes"] > 0, ready
    assert ready["python"] == ["tinypkg==1.0"] and ready["error"] is None
    assert any(path.startswith("/simple/tinypkg") for path in index.requests)
    build = alice.wait(building["buildTaskId"])
    assert build["kind"] == "environment" and build["status"] == "completed"

    task = alice.run(
        code="import tinypkg, numpy, subprocess\n"
        "print(tinypkg.VALUE)\n"
        "print(subprocess.run(['tinypkg'], capture_output=True, text=True).stdout, end='')\n"
        "open('/env/x', 'w')\n",
        environment="tiny",
    )
    assert task["result"]["stdout"] == "42\ntinypkg ran\n", task
    assert "Read-only file system" in task["result"]["stderr"]
    restored = [
        e["data"]
        for e in events(alice, task["id"])
        if e["type"] == "status" and e["data"].get("state") == "environment_restored"
    ]
    assert restored and restored[0]["environment"] == "tiny"
    assert restored[0]["sizeBytes"] == ready["sizeBytes"] and restored[0]["seconds"] >= 0

    # The same packages again, under another name, by its id: no second build.
    index.requests.clear()
    again = create(alice, "tiny-again", ["tinypkg==1.0"], status=201)
    assert again["status"] == "ready" and again["buildTaskId"] is None
    assert again["hash"] == ready["hash"] and index.requests == []
    bash = alice.run(language="bash", code="tinypkg", environment=again["id"])
    assert bash["result"]["stdout"] == "tinypkg ran\n"

    item = {"kind": "code", "language": "python", "code": "import tinypkg; print(tinypkg.VALUE)"}
    batch = alice.http.post(
        "/api/tasks/batch", json={"tasks": [{**item, "environment": "tiny"}, item]}
    )
    assert batch.status_code == 202, batch.text
    with_it, without = (alice.wait(t["id"]) for t in batch.json()["tasks"])
    assert with_it["result"]["stdout"] == "42\n"
    assert "ModuleNotFoundError" in without["result"]["stderr"]

    listed = alice.http.get("/api/environments").json()["environments"]
    assert [e["name"] for e in listed] == ["tiny", "tiny-again"]


def test_a_build_of_a_missing_package_fails_with_pips_message_and_nothing_is_kept(alice):
    failing = create(alice, "broken", ["nosuchpkg==1.0"])
    failed = settled(alice, failing)
    assert failed["status"] == "failed" and failed["sizeBytes"] is None
    assert failed["error"]["code"] == "build_failed"
    assert "No matching distribution found for nosuchpkg==1.0" in failed["error"]["message"]
    output = "".join(
        e["data"] for e in events(alice, failing["buildTaskId"]) if e["type"] == "stderr"
    )
    assert "No matching distribution found for nosuchpkg==1.0" in output
    client = gfirestore.Client(project=PROJECT)
    assert not client.document(f"environmentBuilds/{failed['hash']}").get().exists

    task = {"kind": "code", "language": "python", "code": "print(1)", "environment": "broken"}
    refused = alice.http.post("/api/tasks", json=task)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "environment_not_ready"
    # Nothing cached: the same manifest builds again.
    retry = create(alice, "broken-again", ["nosuchpkg==1.0"])
    assert retry["status"] == "building" and retry["buildTaskId"] != failing["buildTaskId"]
    settled(alice, retry)


def test_an_environment_built_on_an_older_default_environment_is_rebuilt_on_this_one(alice, index):
    ready = settled(alice, create(alice, "rebased", ["tinypkg==1.0"]))
    # As an API of an older default environment left it: its entry keyed by another
    # base (its build ready), and no build of the manifest on this one yet.
    client = gfirestore.Client(project=PROJECT)
    listing = client.document(user_environments_path("alice"))
    older = manifest_hash(["tinypkg==1.0"], [], "an-older-default")
    build = client.document(environment_build_path(ready["hash"])).get().to_dict()
    assert build is not None
    client.document(environment_build_path(older)).set({**build, "hash": older})
    client.document(environment_build_path(ready["hash"])).delete()
    listing.update({f"environments.{ready['id']}.hash": older})
    rebuilt_at_its_next_use(alice, index, ready)


def rebuilt_at_its_next_use(alice: Caller, index: PackageIndex, ready: dict) -> None:
    """The next task naming `ready` is refused while it is built again (a new build
    task, from the index), then one runs with it."""
    index.requests.clear()
    task = {"kind": "code", "language": "python", "code": "print(1)", "environment": ready["id"]}
    refused = alice.http.post("/api/tasks", json=task)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "environment_not_ready"
    rebuilding = alice.http.get(f"/api/environments/{ready['id']}").json()
    assert rebuilding["status"] == "building" and rebuilding["hash"] == ready["hash"]
    assert rebuilding["buildTaskId"] not in (None, ready["buildTaskId"])
    rebuilt = settled(alice, rebuilding)
    assert rebuilt["status"] == "ready" and rebuilt["hash"] == ready["hash"], rebuilt
    assert any(path.startswith("/simple/tinypkg") for path in index.requests)
    used = alice.run(code="import tinypkg; print(tinypkg.VALUE)", environment=ready["name"])
    assert used["result"]["stdout"] == "42\n", used
    restored = [
        e["data"]
        for e in events(alice, used["id"])
        if e["type"] == "status" and e["data"].get("state") == "environment_restored"
    ]
    assert [r["sizeBytes"] for r in restored] == [rebuilt["sizeBytes"]]


def test_an_archive_is_kept_while_used_and_built_again_once_the_bucket_deleted_it(alice, index):
    ready = settled(alice, create(alice, "kept", ["tinypkg==1.0"]))
    build_ref = gfirestore.Client(project=PROJECT).document(environment_build_path(ready["hash"]))
    bucket = storage.Client(project=PROJECT).bucket(BUCKET)
    name = f"environments/{ready['hash']}.tar"

    def custom_time() -> datetime:
        archive = bucket.get_blob(name)
        assert archive is not None and archive.custom_time is not None, name
        return archive.custom_time

    # The lifecycle rule counts from the archive's Custom-Time, set when it was made.
    made = custom_time()

    # Last used two days ago: a use moves the Custom-Time (and usedAt) on.
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    build_ref.update({"usedAt": two_days_ago})
    used = alice.run(code="import tinypkg; print(tinypkg.VALUE)", environment="kept")
    assert used["result"]["stdout"] == "42\n", used
    assert custom_time() > made
    kept = build_ref.get().to_dict()
    assert kept is not None and kept["usedAt"] > two_days_ago + timedelta(days=1)

    # Unused for ENVIRONMENT_ARCHIVE_DAYS: the bucket's rule deleted it. The next use
    # builds it again; the environment is `building`, then `ready`, and works.
    build_ref.update({"usedAt": datetime.now(UTC) - timedelta(days=ENVIRONMENT_ARCHIVE_DAYS + 1)})
    bucket.blob(name).delete()
    rebuilt_at_its_next_use(alice, index, ready)


def test_a_build_reaches_the_package_index_and_nothing_else(alice, stand_in):
    stand_in.requests.clear()
    probed = settled(alice, create(alice, "probed", ["probed==1.0"]))
    assert probed["status"] == "ready", probed
    task = alice.run(code="import probed; print(probed.SEEN)", environment="probed")
    seen = json.loads(task["result"]["stdout"])
    # The build's own code ran (an sdist's backend): its proxy refused api.test, which
    # tasks may be allowed, and it had no network of its own.
    assert seen["proxied"].startswith("refused") and seen["direct"].startswith("refused")
    assert stand_in.requests == []
    connections = [e["data"] for e in events(alice, probed["buildTaskId"]) if e["type"] == "egress"]
    assert {c["host"] for c in connections if c["allowed"]} == {"pypi.test"}
    assert [c["host"] for c in connections if not c["allowed"]] == ["api.test"]


def test_npm_packages_come_from_the_registry_beside_python_ones(alice, index):
    python_only = settled(alice, create(alice, "python-only", ["tinypkg==1.0"]))
    index.requests.clear()
    body = {"name": "node", "python": ["tinypkg==1.0"], "npm": ["tinynpm@1.0.0"]}
    node = alice.http.post("/api/environments", json=body)
    assert node.status_code == 202, node.text
    ready = settled(alice, node.json())
    assert ready["status"] == "ready" and ready["npm"] == ["tinynpm@1.0.0"], ready
    assert ready["hash"] != python_only["hash"]
    assert any(path.startswith("/npm/tinynpm") for path in index.requests)
    script = alice.run(
        language="javascript",
        code="console.log(require('tinynpm').VALUE)",
        environment="node",
    )
    assert script["result"]["stdout"] == "42\n", script
    shell = alice.run(language="bash", code="tinynpm && tinypkg", environment="node")
    assert shell["result"]["stdout"] == "tinynpm ran\ntinypkg ran\n", shell
    connections = [e["data"] for e in events(alice, ready["buildTaskId"]) if e["type"] == "egress"]
    assert {c["host"] for c in connections} == {"pypi.test", "npm.test"}
    assert all(c["allowed"] for c in connections)


def test_environments_are_their_owners(alice, bob):
    mine = settled(alice, create(alice, "mine", ["tinypkg==1.0"]))
    assert bob.http.get(f"/api/environments/{mine['id']}").status_code == 404
    assert bob.http.get("/api/environments/mine").status_code == 404
    assert bob.http.delete(f"/api/environments/{mine['id']}").status_code == 404
    for body in (
        {"kind": "code", "language": "python", "code": "print(1)", "environment": mine["id"]},
        {"kind": "code", "language": "python", "code": "print(1)", "environment": "mine"},
    ):
        answer = bob.http.post("/api/tasks", json=body)
        assert answer.status_code == 404, answer.text
    agent = bob.http.post("/api/agents", json={"name": "a", "environment": "mine"})
    assert agent.status_code == 422 and agent.json()["error"]["code"] == "unknown_environment"

    # Deleting one stops new tasks from naming it.
    assert alice.http.delete("/api/environments/mine").status_code == 204
    task = {"kind": "code", "language": "python", "code": "print(1)", "environment": "mine"}
    gone = alice.http.post("/api/tasks", json=task)
    assert gone.status_code == 404


def test_bad_manifests_and_limits_are_clear_errors(alice):
    for body, status in [
        ({"name": "x", "python": []}, 400),
        ({"name": "x", "python": ["pkg @ https://example.com/pkg.whl"]}, 400),
        ({"name": "x", "python": ["--index-url=https://evil.test/"]}, 400),
        ({"name": "has space", "python": ["tinypkg"]}, 400),
        ({"name": "x", "npm": ["git+https://github.com/acme/pkg.git"]}, 400),
        ({"name": "x", "npm": ["../pkg"]}, 400),
        ({"name": "x", "npm": ["pkg@https://example.com/pkg.tgz"]}, 400),
    ]:
        answer = alice.http.post("/api/environments", json=body)
        assert answer.status_code == status, (body, answer.text)
    first = create(alice, "one", ["tinypkg==1.0"])
    taken = alice.http.post("/api/environments", json={"name": "one", "python": ["tinypkg"]})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "environment_exists"
    settled(alice, first)
    create(alice, "two", ["tinypkg==1.0"], status=201)
    create(alice, "three", ["tinypkg==1.0"], status=201)
    full = alice.http.post("/api/environments", json={"name": "four", "python": ["tinypkg"]})
    assert full.status_code == 409 and full.json()["error"]["code"] == "too_many_environments"


USE_IT = "tinypkg; python3 -c 'import tinypkg; print(tinypkg.VALUE)'"


@pytest.mark.parametrize(("engine", "bash"), [("messages", "bash"), ("claude-code", "Bash")])
def test_an_agent_with_an_environment_finds_its_packages(alice, anthropic_api, engine, bash):
    settled(alice, create(alice, "agent-env", ["tinypkg==1.0"]))
    body = {"name": "uses tinypkg", "engine": engine, "environment": "agent-env"}
    agent = alice.http.post("/api/agents", json=body)
    assert agent.status_code == 201, agent.text
    assert agent.json()["environment"] == "agent-env"
    seen = len(anthropic_api.requests)
    anthropic_api.add(reply(tool_use(bash, command=USE_IT)), reply("Done."))
    task = alice.run(kind="agent", prompt="Use tinypkg.", agentId=agent.json()["id"])
    assert task["status"] == "completed", task
    outputs = [r for request in anthropic_api.requests[seen:] for r in request.tool_results()]
    (output,) = outputs
    text = output["content"]
    if isinstance(text, list):  # Claude Code sends the tool's output as text blocks
        text = "".join(block["text"] for block in text)
    assert text.startswith("tinypkg ran\n42"), output
