"""The web console (`GET /console`) in a real headless Chromium (Debian's, driven by
Playwright), against real API servers with the emulator, real runners and real
bubblewrap, and the scripted Messages API as Anthropic.

One browser for the whole session; each test has its own page (a fresh context), and
fails on any uncaught page error (tests/e2e/conftest.py). Screenshots of the main pages
go to a temporary directory, or to docs/console/ (the README shows them) with
UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from devtools.scripted_anthropic import reply, tool_use
from tests.conftest import PROJECT, ApiServer, must_match
from tests.e2e.console_helpers import FIREBASE_WEB_CONFIG, SECONDS, run_code, sign_in_dev
from tests.integration.test_identity import CertsServer, SigningKey


@pytest.fixture(scope="module")
def signing_key():
    return SigningKey("console-test-key")


@pytest.fixture(scope="module")
def signed_in_server(emulator, tmp_path_factory, signing_key):
    """AUTH_MODE=firebase,apikey, with the web app's config for Google sign-in."""
    certs = CertsServer({signing_key.kid: signing_key.cert_pem})
    server = ApiServer(
        emulator,
        tmp_path_factory.mktemp("console-keys") / "api.log",
        AUTH_MODE="firebase,apikey",
        FIREBASE_CERTS_URL=certs.url,
        FIREBASE_WEB_CONFIG=json.dumps(FIREBASE_WEB_CONFIG),
    ).start()
    yield server
    server.stop()
    certs.server.shutdown()
    certs.server.server_close()


def test_the_page_is_served_with_a_strict_policy_and_cacheable_assets(dev_server):
    page = httpx.get(f"{dev_server.url}/console")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-cache"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy
    script = must_match(r'src="(/console/assets/[0-9a-f]+/js/main.js)"', page.text).group(1)
    asset = httpx.get(dev_server.url + script)
    assert asset.status_code == 200 and asset.headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in asset.headers["Cache-Control"]
    stale = httpx.get(dev_server.url + re.sub(r"assets/\w+/", "assets/0000/", script))
    assert stale.status_code == 404


def test_sign_in_run_print_6_times_7_and_see_42(page, dev_server, shots):
    page.goto(f"{dev_server.url}/console")
    page.screenshot(path=shots / "sign-in.png")
    sign_in_dev(page, dev_server, "alice")
    run_code(page, "print(6 * 7)")
    expect(page.locator("#task-status")).to_have_text("completed", timeout=60 * SECONDS)
    expect(page.locator("#stdout")).to_have_text("42\n")
    expect(page.locator("#exit-code")).to_contain_text("Exit code 0")
    page.screenshot(path=shots / "task.png", full_page=True)
    page.goto(f"{dev_server.url}/console#/tasks")
    expect(page.locator("#tasks tbody tr")).to_have_count(1)
    expect(page.locator("#usage [data-counter=tasksToday]")).to_contain_text("1 / 2,000")
    page.screenshot(path=shots / "tasks.png")


def test_the_task_list_filters_by_status_and_pages(page, dev_server):
    ivan = httpx.Client(base_url=dev_server.url, headers={"X-User-Id": "ivan"}, timeout=90)
    done = []
    for _ in range(3):
        task = ivan.post("/api/tasks", json={"kind": "code", "language": "bash", "code": "true"})
        done.append(ivan.get(f"/api/tasks/{task.json()['id']}", params={"wait": 60}).json())
    body = {"kind": "code", "language": "bash", "code": "sleep 60"}
    cancelled = ivan.post("/api/tasks", json=body).json()
    ivan.post(f"/api/tasks/{cancelled['id']}/cancel")
    ivan.close()
    assert {t["status"] for t in done} == {"completed"}
    sign_in_dev(page, dev_server, "ivan")
    page.goto(f"{dev_server.url}/console#/tasks?limit=2")
    expect(page.locator("#tasks tbody tr")).to_have_count(2)
    page.select_option("#status-filter", "completed")
    rows = page.locator("#tasks tbody tr")
    expect(rows).to_have_count(2)
    newest = [done[2]["id"], done[1]["id"]]
    expect(rows.locator("td:first-child")).to_have_text(newest)
    page.click("#next-page")
    expect(rows.locator("td:first-child")).to_have_text([done[0]["id"]])
    expect(page.locator("#next-page")).to_have_count(0)
    page.select_option("#status-filter", "cancelled")
    expect(rows.locator("td:first-child")).to_have_text([cancelled["id"]])


def test_a_long_tasks_output_arrives_live_resumes_after_a_drop_and_cancels(page, dev_server, shots):
    sign_in_dev(page, dev_server, "bob")
    streams: list[dict] = []
    page.on(
        "request",
        lambda r: streams.extend([r.headers] if "/events" in r.url else []),
    )

    # The first stream is cut short after the events so far, as a dropped connection
    # would: the console must reconnect with Last-Event-ID and lose nothing.
    def first_stream_drops(route):
        if len(streams) > 1:
            return route.continue_()
        task_id = route.request.url.split("/api/tasks/")[1].split("/")[0]
        events = httpx.get(
            f"{dev_server.url}/api/tasks/{task_id}/events", headers={"X-User-Id": "bob"}
        ).json()["events"]
        body = "".join(f"id: {e['seq']}\ndata: {json.dumps(e)}\n\n" for e in events)
        route.fulfill(status=200, content_type="text/event-stream", body=body)
        served.append(events[-1]["seq"])

    served: list[int] = []
    page.route(re.compile(r"/api/tasks/\w+/events$"), first_stream_drops)
    run_code(
        page,
        "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.1)",
    )
    expect(page.locator("#stdout")).to_contain_text("tick 5", timeout=60 * SECONDS)
    expect(page.locator("#task-status")).to_have_text("running")
    assert streams[1]["last-event-id"] == str(served[0])
    text = page.locator("#stdout").text_content()
    ticks = [int(line.split()[1]) for line in text.splitlines()]
    assert ticks == list(range(len(ticks)))  # in order, none twice, none missing
    page.screenshot(path=shots / "live-task.png", full_page=True)
    page.click("#cancel")
    expect(page.locator("#task-status")).to_have_text("cancelled")
    expect(page.locator("#cancel")).to_be_hidden()


def test_a_bad_input_shows_the_apis_message(page, dev_server):
    sign_in_dev(page, dev_server, "carol")
    run_code(page, "print(1)", timeout="0")
    expect(page.locator("#run-form .error")).to_contain_text("timeoutSeconds")
    expect(page.locator("#run-form .error code")).to_have_text("(invalid_request)")


def test_over_a_limit_the_console_says_when_to_retry(page, dev_server):
    dave = httpx.Client(base_url=dev_server.url, headers={"X-User-Id": "dave"}, timeout=30)
    body = {"kind": "code", "language": "bash", "code": "sleep 60"}
    busy = [dave.post("/api/tasks", json=body).json()["id"] for _ in range(2)]
    try:
        sign_in_dev(page, dev_server, "dave")
        run_code(page, "print(1)")
        error = page.locator("#run-form .error")
        expect(error).to_contain_text("too_many_unsettled_tasks")
        expect(error.locator(".retry")).to_contain_text(re.compile(r"Retry in \d+ s \(at "))
    finally:
        for task_id in busy:
            dave.post(f"/api/tasks/{task_id}/cancel")
        dave.close()


def test_an_input_file_goes_in_and_an_output_file_downloads(page, dev_server, shots):
    sign_in_dev(page, dev_server, "erin")
    page.goto(page.url.split("#")[0] + "#/run")
    page.set_input_files(
        "#files", files=[{"name": "words.txt", "mimeType": "text/plain", "buffer": b"forty-two"}]
    )
    run_code(page, "open('report.txt', 'w').write(open('words.txt').read() + '\\n')")
    expect(page.locator("#task-status")).to_have_text("completed", timeout=60 * SECONDS)
    with page.expect_download() as download:
        page.click("#files button.download[data-path='report.txt']")
    assert download.value.suggested_filename == "report.txt"
    assert Path(download.value.path()).read_text() == "forty-two\n"


def test_a_file_over_32_mib_goes_up_in_parts(page, dev_server, tmp_path):
    """Cloud Run takes at most 32 MiB per request: the console sends a bigger file in
    parts, and the task reads it whole."""
    data = os.urandom(1000) * (40 * 1024)  # 40,960,000 bytes: two parts
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    sign_in_dev(page, dev_server, "gina")
    page.goto(page.url.split("#")[0] + "#/run")
    parts = []
    page.on("request", lambda r: parts.extend([(r.method, r.url)] if "/parts/" in r.url else []))
    page.set_input_files("#files", files=[str(big)])
    run_code(
        page, "import hashlib; print(hashlib.sha256(open('big.bin', 'rb').read()).hexdigest())"
    )
    expect(page.locator("#task-status")).to_have_text("completed", timeout=90 * SECONDS)
    expect(page.locator("#stdout")).to_have_text(hashlib.sha256(data).hexdigest() + "\n")
    assert [(method, url.rsplit("/", 1)[1]) for method, url in parts] == [
        ("PUT", "0"),
        ("PUT", "1"),
    ]


CALCULATION = "print(6 * 7)\nopen('answer.txt', 'w').write('42')"


def test_create_an_agent_and_chat_one_turn_with_its_tool_call(
    page, dev_server, anthropic_api, shots
):
    anthropic_api.add(
        reply("Let me compute it.", tool_use("python", code=CALCULATION)),
        lambda body: reply(f"The answer is {body['messages'][-1]['content'][0]['content']}"),
    )
    sign_in_dev(page, dev_server, "frank")
    page.goto(f"{dev_server.url}/console#/agents/new")
    page.fill("#agent-name", "calculator")
    page.fill("#agent-description", "Does sums in Python")
    page.fill("#agent-system-prompt", "Use python for arithmetic.")
    page.select_option("#agent-model", "claude-haiku-4-5")
    page.uncheck("input[name=tools][value=bash]")
    # The built-in tool loop, which takes the scripted `python` tool call; Claude Code's
    # own tools are named otherwise (the next test).
    page.select_option("#agent-engine", "messages")
    page.screenshot(path=shots / "agent.png", full_page=True)
    page.click("#save-agent")
    expect(page.locator("#chat-with-agent")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("null")
    page.click("#chat-with-agent")
    page.fill("#message", "What is 6 * 7?")
    page.click("#send")
    expect(page.locator("#send")).to_be_disabled()
    expect(page.locator("#send-reason")).to_contain_text("The agent is answering")
    assistant = page.locator("#chat .message.assistant")
    expect(assistant.last).to_have_text(re.compile(r"The answer is 42"), timeout=60 * SECONDS)
    fold = page.locator("#chat details.tool[data-tool=python]")
    expect(fold).to_have_count(1)
    fold.locator("summary").click()
    expect(fold.locator(".tool-input")).to_contain_text("print(6 * 7)")
    expect(fold.locator(".tool-result")).to_contain_text("42")
    expect(page.locator("#send")).to_be_enabled()
    # Two model calls of 10 input and 5 output tokens each, metered by the LLM proxy.
    expect(page.locator("#usage [data-counter=llmTokensToday]")).to_contain_text("30 / 2,000,000")
    # Their cost at Haiku's $1 and $5 per million tokens ($0.00007), shown as an estimate.
    cost = page.locator("#usage [data-counter=costUsdToday]")
    expect(cost).to_contain_text("$0.0001")
    expect(cost).to_contain_text("(estimate)")
    with page.expect_download() as download:
        page.click("#workspace-files button.download[data-path='answer.txt']")
    assert Path(download.value.path()).read_text() == "42"
    page.screenshot(path=shots / "conversation.png", full_page=True)
    sent = anthropic_api.messages_requests[-1].body
    assert sent["model"] == "claude-haiku-4-5"
    assert [t["name"] for t in sent["tools"]].count("bash") == 0
    agents = httpx.get(f"{dev_server.url}/api/agents", headers={"X-User-Id": "frank"}).json()
    (agent,) = agents["agents"]
    assert agent["description"] == "Does sums in Python"
    page.goto(f"{dev_server.url}/console#/conversations")
    expect(page.locator("#conversations tbody tr")).to_contain_text(["calculator"])


def test_chat_with_claude_code_shows_its_bash_call_and_the_file_it_wrote(
    page, dev_server, anthropic_api, shots
):
    anthropic_api.add(
        reply("Writing it.", tool_use("Bash", command="echo 42 > answer.txt")),
        reply("Saved 42 in answer.txt."),
    )
    sign_in_dev(page, dev_server, "leo")
    page.goto(f"{dev_server.url}/console#/agents/new")
    page.fill("#agent-name", "coder")
    page.select_option("#agent-engine", "claude-code")
    page.click("#save-agent")
    page.click("#chat-with-agent")
    page.fill("#message", "Put 42 in answer.txt.")
    page.click("#send")
    assistant = page.locator("#chat .message.assistant")
    expect(assistant.last).to_have_text("Saved 42 in answer.txt.", timeout=90 * SECONDS)
    expect(page.locator("#chat details.tool[data-tool=Bash]")).to_have_count(1)
    with page.expect_download() as download:
        page.click("#workspace-files button.download[data-path='answer.txt']")
    assert Path(download.value.path()).read_text() == "42\n"
    page.screenshot(path=shots / "claude.png", full_page=True)
    # The reply the page showed was streamed to it as it was written.
    user = {"X-User-Id": "leo"}
    (task,) = httpx.get(f"{dev_server.url}/api/tasks", headers=user).json()["tasks"]
    events = httpx.get(f"{dev_server.url}/api/tasks/{task['id']}/events", headers=user).json()
    assert "assistant_delta" in {event["type"] for event in events["events"]}


def test_edit_and_delete_an_agent(page, dev_server):
    judy = {"X-User-Id": "judy"}
    agent = httpx.post(
        f"{dev_server.url}/api/agents", json={"name": "scribe", "maxTurns": 3}, headers=judy
    ).json()
    sign_in_dev(page, dev_server, "judy")
    page.goto(f"{dev_server.url}/console#/agents/{agent['id']}")
    expect(page.locator("#agent-max-turns")).to_have_value("3")
    page.fill("#agent-description", "Writes things down")
    page.fill("#agent-max-tokens", "5000")
    page.click("#save-agent")
    expect(page.locator("#saved")).to_have_text("Saved.")
    changed = httpx.get(f"{dev_server.url}/api/agents/{agent['id']}", headers=judy).json()
    assert (changed["description"], changed["maxTokens"]) == ("Writes things down", 5000)
    page.fill("#agent-max-turns", "0")
    page.click("#save-agent")
    expect(page.locator("#agent-form .error")).to_contain_text("maxTurns")
    page.goto(f"{dev_server.url}/console#/agents")
    row = page.locator(f"#agents tr[data-id='{agent['id']}']")
    expect(row).to_contain_text("Writes things down")
    page.on("dialog", lambda dialog: dialog.accept())
    row.locator("button.delete").click()
    expect(row).to_have_count(0)
    gone = httpx.get(f"{dev_server.url}/api/agents/{agent['id']}", headers=judy)
    assert gone.status_code == 404


def test_sign_in_with_an_api_key(page, signed_in_server):
    from api.adapters.firestore_store import FirestoreStore
    from api.services.auth import ApiKeyService

    keys = ApiKeyService(FirestoreStore(PROJECT))
    key, _ = keys.create("grace", "console test")
    page.goto(f"{signed_in_server.url}/console")
    page.fill("#api-key", "ak_" + "x" * 40)
    page.click("#api-key-sign-in button[type=submit]")
    expect(page.locator("#api-key-sign-in .error")).to_contain_text("unauthenticated")
    page.fill("#api-key", key)
    page.click("#api-key-sign-in button[type=submit]")
    expect(page.locator("#who-name")).to_have_text(f"API key {key[:12]}…")
    expect(page.locator("#tasks")).to_be_visible()
    stored = page.evaluate("JSON.parse(sessionStorage.getItem('console.credentials'))")
    assert stored == {"mode": "apikey", "key": key}
    assert page.evaluate("localStorage.length") == 0
    # A key revoked while in use: the next call is refused and the console asks again.
    keys.revoke("grace", key[:12])
    page.goto(f"{signed_in_server.url}/console#/agents")
    expect(page.locator(".signin .error")).to_contain_text("unauthenticated")
    expect(page.locator("#api-key-sign-in")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('console.credentials')") is None


def test_firebase_sign_in_is_offered_and_its_id_token_is_sent(
    page, signed_in_server, signing_key, shots
):
    """Google's sign-in cannot run offline: the user the Firebase SDK would have
    stored after it is put in the tab's session, and the console must send that
    user's ID token, which the API verifies."""
    page.goto(f"{signed_in_server.url}/console")
    expect(page.locator("#google-sign-in")).to_be_enabled()
    page.screenshot(path=shots / "sign-in-google-or-key.png")
    policy = page.evaluate("document.body.dataset.authModes")
    assert policy == "apikey,firebase"
    token = signing_key.token(uid="hedy", email="hedy@example.com")
    user = {
        "uid": "hedy",
        "email": "hedy@example.com",
        "emailVerified": True,
        "isAnonymous": False,
        "providerData": [],
        "stsTokenManager": {
            "refreshToken": "refresh-token",
            "accessToken": token,
            "expirationTime": 4102444800000,
        },
        "createdAt": "1700000000000",
        "lastLoginAt": "1700000000000",
        "apiKey": FIREBASE_WEB_CONFIG["apiKey"],
        "appName": "[DEFAULT]",
    }
    storage_key = f"firebase:authUser:{FIREBASE_WEB_CONFIG['apiKey']}:[DEFAULT]"
    page.evaluate("([k, v]) => sessionStorage.setItem(k, v)", [storage_key, json.dumps(user)])
    # The SDK checks the stored user with Google; offline, that check fails as a
    # network error, after which the SDK keeps the user.
    page.route("https://identitytoolkit.googleapis.com/**", lambda route: route.abort())
    sent: list[str] = []
    page.on(
        "request",
        lambda r: sent.extend([r.headers.get("authorization")] if "/api/" in r.url else []),
    )
    page.reload()
    expect(page.locator("#who-name")).to_have_text("hedy@example.com")
    expect(page.locator("#tasks")).to_be_visible()
    assert f"Bearer {token}" in sent


PNG_PROGRAM = """
import struct, zlib
def chunk(kind, data):
    crc = struct.pack('>I', zlib.crc32(kind + data))
    return struct.pack('>I', len(data)) + kind + data + crc
rows = (bytes(1) + bytes([200, 30, 30]) * 48) * 48
header = struct.pack('>IIBBBBB', 48, 48, 8, 2, 0, 0, 0)
png = bytes.fromhex('89504e470d0a1a0a') + chunk(b'IHDR', header)
png += chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b'')
open('red.png', 'wb').write(png)
open('notes.txt', 'w').write('a red square')
"""


def test_an_image_is_shown_inline_and_all_files_download_as_a_zip(page, dev_server, shots):
    sign_in_dev(page, dev_server, "kim")
    run_code(page, PNG_PROGRAM)
    expect(page.locator("#task-status")).to_have_text("completed", timeout=60 * SECONDS)
    image = page.locator("#files img[alt='red.png']")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.naturalWidth") == 48
    with page.expect_download() as download:
        page.click("#download-all")
    with zipfile.ZipFile(download.value.path()) as archive:
        assert sorted(archive.namelist()) == ["notes.txt", "red.png"]
        assert archive.read("notes.txt") == b"a red square"
    page.screenshot(path=shots / "task-files.png", full_page=True)


def test_add_a_secret_see_only_its_name_and_delete_it(page, dev_server):
    sign_in_dev(page, dev_server, "kim")
    page.goto(f"{dev_server.url}/console#/secrets")
    expect(page.locator("#secrets")).to_contain_text("No secrets yet.")
    page.fill("#secret-name", "OPENAI_API_KEY")
    page.fill("#secret-value", "sk-console-value-1234")
    page.click("#save-secret")
    row = page.locator("#secrets tr[data-name='OPENAI_API_KEY']")
    expect(row).to_contain_text("21 bytes")
    assert "sk-console-value-1234" not in page.content()
    listed = httpx.get(f"{dev_server.url}/api/secrets", headers={"X-User-Id": "kim"}).json()
    assert [s["name"] for s in listed["secrets"]] == ["OPENAI_API_KEY"]
    page.fill("#secret-name", "PATH")
    page.fill("#secret-value", "x")
    page.click("#save-secret")
    expect(page.locator("#secret-form ~ .error-slot .error")).to_contain_text("PATH")
    page.on("dialog", lambda dialog: dialog.accept())
    row.locator("button.delete").click()
    expect(row).to_have_count(0)
    listed = httpx.get(f"{dev_server.url}/api/secrets", headers={"X-User-Id": "kim"}).json()
    assert listed["secrets"] == []
