"""What `POST /api/tasks` and the task reads refuse, and how: every refusal is
`{"error": {"code", "message"}}` with the status DESIGN section 6 names, and nothing a
client sends gives a 5xx. Against the real Firestore emulator; the app has no
background dispatcher, so accepted tasks stay `queued`."""

from __future__ import annotations

import json

import pytest

VALID = {"kind": "code", "language": "python", "code": "print(input())", "stdin": "hi"}
KIB = 1024


def post(client, body, *, user: str | None = "alice", headers: dict | None = None):
    """POST `body` (a dict, or raw text/bytes sent as-is) to /api/tasks as JSON."""
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if user is not None:
        all_headers["X-User-Id"] = user
    return client.post("/api/tasks", data=data, headers=all_headers)


def task(**changes) -> dict:
    """The valid example body with `changes` applied (a value of ... removes the field)."""
    body = dict(VALID, **changes)
    return {key: value for key, value in body.items() if value is not ...}


def assert_error(reply, status: int, code: str) -> None:
    assert reply.status_code == status, reply.get_data(as_text=True)
    body = reply.get_json()
    assert body is not None, reply.get_data(as_text=True)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


# -- service endpoints ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/health"])
def test_health_answers_exactly_ok_api_server_without_credentials(client, path):
    reply = client.get(path)
    assert reply.status_code == 200
    assert reply.get_json() == {"status": "ok", "service": "api-server"}


def test_health_on_cloud_run_names_the_revision_that_answered(client, monkeypatch):
    # Deploy smoke tests prove with it that the new revision serves the URL.
    monkeypatch.setenv("K_REVISION", "agent-api-00007-xyz")
    reply = client.get("/health")
    assert reply.get_json() == {
        "status": "ok",
        "service": "api-server",
        "revision": "agent-api-00007-xyz",
    }


def test_unknown_route_is_404_in_the_error_shape(client):
    assert_error(client.get("/api/nothing-here", headers={"X-User-Id": "alice"}), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/api/tasks"), ("PUT", "/health"), ("GET", "/api/tasks/abc/cancel")],
)
def test_wrong_method_is_405_in_the_error_shape(client, method, path):
    reply = client.open(path, method=method, headers={"X-User-Id": "alice"})
    assert_error(reply, 405, "method_not_allowed")


# -- accepted tasks -----------------------------------------------------------------


def test_valid_task_is_accepted_202_queued_with_location(client):
    reply = post(client, VALID)
    assert reply.status_code == 202, reply.get_data(as_text=True)
    body = reply.get_json()
    assert body["status"] == "queued"
    assert body["kind"] == "code"
    assert reply.headers["Location"] == f"/api/tasks/{body['id']}"


def test_accepted_task_has_the_documented_defaults(client):
    body = post(client, {"kind": "code", "language": "bash", "code": "true"}).get_json()
    assert body["input"] == {
        "kind": "code",
        "language": "bash",
        "code": "true",
        "stdin": "",
        "files": {},
        "timeoutSeconds": 60,
        "memoryMb": 512,
        "network": False,
        "secrets": [],
    }
    assert body["result"] is None and body["error"] is None and body["execution"] is None


def test_owner_reads_the_task_at_its_location(client):
    reply = post(client, VALID)
    read = client.get(reply.headers["Location"], headers={"X-User-Id": "alice"})
    assert read.status_code == 200
    # The same task; only a read says where it is in the queue (it costs a query).
    assert reply.get_json()["queuePosition"] is None
    assert read.get_json() == dict(reply.get_json(), queuePosition=0)


def test_another_user_gets_404_for_the_task(client):
    location = post(client, VALID).headers["Location"]
    assert_error(client.get(location, headers={"X-User-Id": "bob"}), 404, "not_found")


@pytest.mark.parametrize(
    ("field", "value"),
    [("timeoutSeconds", 1), ("timeoutSeconds", 3600), ("memoryMb", 64), ("memoryMb", 4096)],
)
def test_bounds_themselves_are_accepted(client, field, value):
    reply = post(client, task(**{field: value}))
    assert reply.status_code == 202, reply.get_data(as_text=True)
    assert reply.get_json()["input"][field] == value


def test_code_of_exactly_100_kib_is_accepted(client):
    assert post(client, task(code="#" * (100 * KIB))).status_code == 202


# -- identity -------------------------------------------------------------------------


def test_submit_without_x_user_id_is_401(client):
    assert_error(post(client, VALID, user=None), 401, "unauthenticated")


@pytest.mark.parametrize("user", ["has space", "a/b", "x" * 129, "semi;colon"])
def test_submit_with_malformed_x_user_id_is_401(client, user):
    assert_error(post(client, VALID, user=user), 401, "unauthenticated")


# -- the body as a whole --------------------------------------------------------------


def test_body_that_is_not_json_content_type_is_415(client):
    reply = client.post(
        "/api/tasks",
        data=json.dumps(VALID),
        headers={"X-User-Id": "alice", "Content-Type": "text/plain"},
    )
    assert_error(reply, 415, "unsupported_media_type")


def test_invalid_json_is_400(client):
    assert_error(post(client, '{"kind": "code",'), 400, "invalid_json")


def test_json_array_body_is_400(client):
    assert_error(post(client, [VALID]), 400, "invalid_request")


def test_body_over_1_mib_is_413_in_the_error_shape(client):
    assert_error(post(client, task(code="#" * (1024 * KIB + 1))), 413, "too_large")


def test_unknown_extra_field_is_400(client):
    assert_error(post(client, task(priority="high")), 400, "invalid_request")


# -- fields -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["agent", "Code", "", None])
def test_unknown_kind_is_400(client, kind):
    assert_error(post(client, task(kind=kind)), 400, "invalid_request")


@pytest.mark.parametrize("language", ["ruby", "Python", "", None])
def test_unknown_language_is_400(client, language):
    assert_error(post(client, task(language=language)), 400, "invalid_request")


def test_missing_code_is_400(client):
    assert_error(post(client, task(code=...)), 400, "invalid_request")


def test_empty_code_is_400(client):
    assert_error(post(client, task(code="")), 400, "invalid_request")


@pytest.mark.parametrize("value", [0, 3601, "10", 10.5, True])
def test_timeout_seconds_outside_1_to_3600_or_not_an_integer_is_400(client, value):
    assert_error(post(client, task(timeoutSeconds=value)), 400, "invalid_request")


@pytest.mark.parametrize("value", [63, 4097, "512"])
def test_memory_mb_outside_64_to_4096_or_not_an_integer_is_400(client, value):
    assert_error(post(client, task(memoryMb=value)), 400, "invalid_request")


def test_code_over_100_kib_is_413(client):
    assert_error(post(client, task(code="#" * (100 * KIB + 1))), 413, "too_large")


def test_code_limit_counts_utf8_bytes_not_characters(client):
    # 60 Ki characters of "é" are 120 KiB of UTF-8.
    assert_error(post(client, task(code="#" + "é" * (60 * KIB))), 413, "too_large")


def test_stdin_over_100_kib_is_413(client):
    assert_error(post(client, task(stdin="x" * (100 * KIB + 1))), 413, "too_large")


def test_twenty_one_files_is_413(client):
    files = {f"f{i}.txt": "" for i in range(21)}
    assert_error(post(client, task(files=files)), 413, "too_large")


def test_files_adding_up_to_over_200_kib_is_413(client):
    files = {"a.txt": "x" * (100 * KIB), "b.txt": "x" * (100 * KIB + 1)}
    assert_error(post(client, task(files=files)), 413, "too_large")


def test_twenty_files_of_200_kib_in_all_are_accepted(client):
    files = {f"d/f{i}.txt": "x" * (10 * KIB) for i in range(20)}
    reply = post(client, task(files=files))
    assert reply.status_code == 202, reply.get_data(as_text=True)
    assert reply.get_json()["input"]["files"] == files


@pytest.mark.parametrize(
    "path", ["../x", "/etc/x", "a//b", "a/./b", "", "a/../../b", ".", "a/", "a\\b", "x" * 201]
)
def test_file_path_that_is_not_plainly_relative_is_400(client, path):
    assert_error(post(client, task(files={path: "data"})), 400, "invalid_request")


def test_network_true_is_422_network_not_allowed(client):
    assert_error(post(client, task(network=True)), 422, "network_not_allowed")


def test_network_as_a_string_is_400(client):
    assert_error(post(client, task(network="false")), 400, "invalid_request")


def test_idempotency_key_over_200_characters_is_400(client):
    reply = post(client, VALID, headers={"Idempotency-Key": "k" * 201})
    assert_error(reply, 400, "invalid_idempotency_key")


# -- reading tasks ----------------------------------------------------------------------


def get(client, path: str, user: str = "alice", **headers):
    return client.get(path, headers={"X-User-Id": user, **headers})


def test_get_of_a_nonexistent_task_is_404(client):
    assert_error(get(client, "/api/tasks/0123456789abcdef01234567"), 404, "not_found")


def test_get_without_x_user_id_is_401(client):
    assert_error(client.get("/api/tasks/0123456789abcdef01234567"), 401, "unauthenticated")


@pytest.mark.parametrize("task_id", ["..%2f..", "x" * 300, "%00", "a.b", "%C3%A9t%C3%A9", "__x__"])
def test_get_of_an_odd_task_id_is_404_never_500(client, task_id):
    assert_error(get(client, f"/api/tasks/{task_id}"), 404, "not_found")


@pytest.mark.parametrize("wait", ["61", "abc", "-1", "1.5"])
def test_get_with_wait_outside_0_to_60_or_not_an_integer_is_400(client, wait):
    location = post(client, VALID).headers["Location"]
    assert_error(get(client, f"{location}?wait={wait}"), 400, "invalid_request")


@pytest.mark.parametrize("limit", ["0", "101", "abc"])
def test_list_with_limit_outside_1_to_100_is_400(client, limit):
    assert_error(get(client, f"/api/tasks?limit={limit}"), 400, "invalid_request")


@pytest.mark.parametrize("token", ["not base64!", "Li4vLi4v", "x" * 201])
def test_list_with_a_page_token_this_api_did_not_return_is_400(client, token):
    reply = client.get(
        "/api/tasks", query_string={"pageToken": token}, headers={"X-User-Id": "alice"}
    )
    assert reply.status_code == 400, reply.get_data(as_text=True)
    assert reply.get_json()["error"]["code"] in ("invalid_page_token", "invalid_request")


@pytest.mark.parametrize("status", ["done", "COMPLETED", ""])
def test_list_with_an_unknown_status_is_400(client, status):
    assert_error(get(client, f"/api/tasks?status={status}"), 400, "invalid_request")


def test_list_returns_only_the_callers_tasks(client):
    mine = post(client, VALID).get_json()["id"]
    post(client, VALID, user="bob")
    body = get(client, "/api/tasks").get_json()
    assert [t["id"] for t in body["tasks"]] == [mine]
    assert body["nextPageToken"] is None


def test_events_with_after_not_an_integer_is_400(client):
    location = post(client, VALID).headers["Location"]
    assert_error(get(client, f"{location}/events?after=abc"), 400, "invalid_request")


def test_sse_with_last_event_id_not_an_integer_is_400(client):
    location = post(client, VALID).headers["Location"]
    reply = get(client, f"{location}/events", Accept="text/event-stream", **{"Last-Event-ID": "x"})
    assert_error(reply, 400, "invalid_request")


def test_events_of_a_queued_task_hold_its_queued_status_event(client):
    location = post(client, VALID).headers["Location"]
    body = get(client, f"{location}/events").get_json()
    assert [(e["seq"], e["type"], e["data"]) for e in body["events"]] == [
        (1, "status", {"status": "queued"})
    ]
    assert body["next"] == 1


def test_cancel_of_another_users_task_is_404_and_leaves_it_queued(client):
    location = post(client, VALID).headers["Location"]
    reply = client.post(f"{location}/cancel", headers={"X-User-Id": "bob"})
    assert_error(reply, 404, "not_found")
    assert get(client, location).get_json()["status"] == "queued"


# -- nothing a client sends is a 5xx -------------------------------------------------------

ALL_FIELDS = ("kind", "language", "code", "stdin", "files", "timeoutSeconds", "memoryMb", "network")


def raw(*members: str) -> str:
    """A body written as JSON text: a valid task plus `members` (a repeated key wins)."""
    return (
        '{"kind": "code", "language": "python", "code": "x"'
        + "".join(", " + member for member in members)
        + "}"
    )


ODD_BODIES = [
    pytest.param({}, id="empty-object"),
    pytest.param({"kind": None}, id="kind-null-only"),
    pytest.param(dict.fromkeys(ALL_FIELDS), id="every-field-null"),
    pytest.param(task(timeoutSeconds=None, memoryMb=None, network=None), id="limits-null"),
    pytest.param(task(code=None), id="code-null"),
    pytest.param(task(stdin=None), id="stdin-null"),
    pytest.param(task(files=None), id="files-null"),
    pytest.param({"kind": {"$ne": None}}, id="kind-object"),
    pytest.param({"kind": ["code"]}, id="kind-array"),
    pytest.param(task(code={"a": {"b": {"c": [1, {"d": None}]}}}), id="code-nested-object"),
    pytest.param(task(code=["print(1)"]), id="code-array"),
    pytest.param(task(code=12345), id="code-number"),
    pytest.param(task(code=True), id="code-boolean"),
    pytest.param(task(language=True), id="language-boolean"),
    pytest.param(task(language=["python"]), id="language-array"),
    pytest.param(task(timeoutSeconds=10**30), id="timeout-huge"),
    pytest.param(task(timeoutSeconds=-(10**30)), id="timeout-huge-negative"),
    pytest.param(task(timeoutSeconds=1e308), id="timeout-huge-float"),
    pytest.param(task(memoryMb=3.5), id="memory-float"),
    pytest.param(task(memoryMb=-0.0), id="memory-negative-zero"),
    pytest.param(task(network=1), id="network-number"),
    pytest.param(task(stdin=5), id="stdin-number"),
    pytest.param(task(stdin={"a": 1}), id="stdin-object"),
    pytest.param(task(files=[]), id="files-array"),
    pytest.param(task(files="data.txt"), id="files-string"),
    pytest.param(task(files={"a": 1}), id="file-content-number"),
    pytest.param(task(files={"a": None}), id="file-content-null"),
    pytest.param(task(files={"a": {"b": "c"}}), id="file-content-object"),
    pytest.param(task(files={"x" * 10_000: "y"}), id="file-path-10k-chars"),
    pytest.param(task(files={"a\x00b": "c"}), id="file-path-nul"),
    pytest.param(task(**{"": ""}), id="empty-key"),
    pytest.param(task(__proto__={"admin": True}), id="proto-key"),
    pytest.param(task(code="print('\x00')", stdin="\x00"), id="nul-in-code-and-stdin"),
    pytest.param(task(code="print('😀 ☃ ∑')", stdin="é" * 100), id="non-ascii-text"),
    pytest.param("null", id="null"),
    pytest.param("true", id="true"),
    pytest.param("42", id="number"),
    pytest.param('"code"', id="string"),
    pytest.param("", id="empty-body"),
    pytest.param(" ", id="blank-body"),
    pytest.param(raw('"timeoutSeconds": NaN'), id="timeout-nan"),
    pytest.param(raw('"memoryMb": -Infinity'), id="memory-minus-infinity"),
    pytest.param(raw('"timeoutSeconds": ' + "9" * 5000), id="timeout-5000-digits"),
    pytest.param(raw('"kind": "agent"'), id="duplicate-kind"),
    pytest.param(b"\xff\xfe\x00{", id="not-utf8"),
    pytest.param(b"\xef\xbb\xbf" + json.dumps(VALID).encode(), id="utf8-bom"),
    pytest.param(raw('"stdin": "@"').encode().replace(b"@", b"\xc3\x28"), id="bad-utf8-in-stdin"),
]

# JSON lets a string hold a lone UTF-16 surrogate ("\ud800"); UTF-8, and so
# Firestore, cannot store one.
SURROGATE_BODIES = [
    pytest.param(raw(r'"code": "print(1) # \ud800"'), id="in-code"),
    pytest.param(raw(r'"stdin": "\udfff"'), id="in-stdin"),
    pytest.param(raw(r'"files": {"\ud83d.txt": "a"}'), id="in-file-path"),
    pytest.param(raw(r'"files": {"a.txt": "\ud800\ud800"}'), id="in-file-content"),
    pytest.param(raw(r'"\ud800": 1'), id="in-a-key"),
]

DEEP_BODIES = [
    pytest.param("[" * 100_000 + "]" * 100_000, id="array"),
    pytest.param(raw('"stdin": ' + '{"a":' * 50_000 + "1" + "}" * 50_000), id="object"),
]


@pytest.mark.parametrize("body", ODD_BODIES)
def test_odd_json_body_is_never_a_5xx(client, body):
    reply = post(client, body)
    assert reply.status_code < 500, reply.get_data(as_text=True)
    if reply.status_code >= 400:
        assert set(reply.get_json()["error"]) == {"code", "message"}


@pytest.mark.parametrize("body", SURROGATE_BODIES)
def test_lone_unicode_surrogates_are_refused_with_400_not_500(client, body):
    reply = post(client, body)
    assert reply.status_code == 400, reply.get_data(as_text=True)
    assert set(reply.get_json()["error"]) == {"code", "message"}


@pytest.mark.parametrize("body", DEEP_BODIES)
def test_deeply_nested_json_is_refused_with_400_not_500(client, body):
    reply = post(client, body)
    assert reply.status_code == 400, reply.get_data(as_text=True)[:500]
    assert set(reply.get_json()["error"]) == {"code", "message"}


def test_runner_endpoint_refuses_a_non_ascii_bearer_token_with_401_not_500(client):
    task_id = post(client, VALID).get_json()["id"]
    reply = client.post(
        f"/internal/v1/tasks/{task_id}/claim",
        json={"execution": "local-x", "attempt": 0},
        headers={"Authorization": f"Bearer tt1.{task_id}.2000000000.\u00e9t\u00e9"},
    )
    assert_error(reply, 401, "invalid_task_token")


@pytest.mark.parametrize(
    "files",
    [
        {"é" * 128: "x"},  # 128 characters, 256 bytes: one name over NAME_MAX
        {f"dir/{'é' * 128}/f.txt": "x"},
        {"a": "file", "a/b": "file under a"},
        {"a/b": "file", "a/b/c/d": "deeper"},
    ],
)
def test_input_paths_the_runner_could_not_write_are_422(client, files):
    assert_error(post(client, task(files=files)), 422, "unwritable_path")


def test_a_255_byte_name_beside_its_directory_sibling_is_accepted(client):
    files = {"é" * 127 + "x": "ok", "a/b": "ok", "ab": "ok"}
    assert post(client, task(files=files)).status_code == 202
