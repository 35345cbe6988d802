"""The console as a person uses it, in headless Chromium at 1280 x 800 and 390 x 844
against a real API server, real runners and sandbox, and the scripted Messages API:
no error box or page error through a Claude Code turn, Markdown replies (sanitised),
the keyboard, a live task list, the exit code on the badge, marked fields, a phone
layout and dark mode. Screenshots of both sizes go to the `shots` directory."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page, expect

from devtools.scripted_anthropic import reply, tool_use
from tests.e2e.console_helpers import (
    DESKTOP,
    PHONE,
    SECONDS,
    error_boxes,
    run_code,
    sign_in_dev,
    watch_error_boxes,
)

MARKDOWN_REPLY = (
    "**Saved** `42` in answer.txt.\n\n- one\n- two\n\n"
    '<img src="x" onerror="window.__owned = 1"> <script>window.__owned = 2</script>'
)


def chat_turn_with_claude_code(page: Page, dev_server, anthropic_api, user: str) -> None:
    anthropic_api.add(
        reply("Writing it.", tool_use("Bash", command="echo 42 > answer.txt")),
        reply(MARKDOWN_REPLY),
    )
    sign_in_dev(page, dev_server, user)
    page.goto(f"{dev_server.url}/console#/agents/new")
    page.fill("#agent-name", "coder")
    page.select_option("#agent-engine", "claude-code")
    page.click("#save-agent")
    page.click("#chat-with-agent")
    expect(page.locator("#chat .empty")).to_be_visible()
    watch_error_boxes(page)
    page.fill("#message", "Put 42 in answer.txt.")
    page.press("#message", "Enter")  # Enter sends
    expect(page.locator("#send")).to_be_disabled()
    bubble = page.locator("#chat .message.assistant").last
    expect(bubble.locator("strong")).to_have_text("Saved", timeout=90 * SECONDS)
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#chat .turn-status .status")).to_have_text("completed")


def assert_rendered_and_sanitised(page: Page) -> None:
    bubble = page.locator("#chat .message.assistant").last
    expect(bubble.locator("code")).to_have_text("42")
    expect(bubble.locator("li")).to_have_count(2)
    assert page.locator("#chat img[onerror], #chat script").count() == 0
    assert page.evaluate("window.__owned") is None


def test_a_claude_code_turn_shows_no_error_box_on_a_desktop(page, dev_server, anthropic_api, shots):
    page.set_viewport_size(DESKTOP)
    chat_turn_with_claude_code(page, dev_server, anthropic_api, "nina")
    assert_rendered_and_sanitised(page)
    assert error_boxes(page) == []
    page.screenshot(path=shots / "chat-desktop.png", full_page=True)


def test_a_claude_code_turn_shows_no_error_box_on_a_phone(phone, dev_server, anthropic_api, shots):
    chat_turn_with_claude_code(phone, dev_server, anthropic_api, "omar")
    assert_rendered_and_sanitised(phone)
    assert error_boxes(phone) == []
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=shots / "chat-phone.png", full_page=True)


def test_shift_enter_is_a_new_line_in_a_message(page, dev_server):
    sign_in_dev(page, dev_server, "pia")
    created = httpx.post(
        f"{dev_server.url}/api/conversations", json={}, headers={"X-User-Id": "pia"}
    )
    page.goto(f"{dev_server.url}/console#/conversations/{created.json()['id']}")
    page.fill("#message", "first line")
    page.press("#message", "Shift+Enter")
    page.keyboard.type("second line")
    expect(page.locator("#message")).to_have_value("first line\nsecond line")
    expect(page.locator("#chat .message.user")).to_have_count(0)


def test_ctrl_enter_runs_the_code_and_a_non_zero_exit_is_a_red_badge(page, dev_server, shots):
    sign_in_dev(page, dev_server, "quinn")
    page.goto(page.url.split("#")[0] + "#/run")
    page.fill("#code", "import sys\nprint('bye')\nsys.exit(1)")
    page.press("#code", "Control+Enter")
    badge = page.locator("#task-status .status")
    expect(badge).to_have_text("exit 1", timeout=60 * SECONDS)
    expect(badge).to_have_class(re.compile("exit-nonzero"))
    assert badge.evaluate("b => getComputedStyle(b).color") == "rgb(180, 35, 24)"  # --bad
    expect(page.locator("#exit-code")).to_contain_text("Exit code 1")
    expect(page.locator("#execution")).to_contain_text("ran on local")
    page.locator("#events").locator("xpath=..").locator("summary").click()
    times = page.locator("#events li time").all_text_contents()
    assert times and all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", t) for t in times), times
    page.screenshot(path=shots / "task-exit-1.png", full_page=True)


def test_the_task_list_updates_itself_and_says_what_ran(page, dev_server, shots):
    rita = httpx.Client(base_url=dev_server.url, headers={"X-User-Id": "rita"}, timeout=90)
    sign_in_dev(page, dev_server, "rita")
    expect(page.locator("#tasks")).to_contain_text("No tasks yet")
    body = {"kind": "code", "language": "python", "code": "import time\ntime.sleep(2)\nprint(1)"}
    task = rita.post("/api/tasks", json=body).json()
    row = page.locator(f"#tasks tr[data-id='{task['id']}']")
    expect(row).to_be_visible(timeout=10 * SECONDS)  # without a reload
    expect(row.locator("td.what")).to_contain_text("python import time")
    expect(row.locator(".status")).to_have_text("completed", timeout=60 * SECONDS)
    expect(row.locator("td.took")).to_have_text(re.compile(r"^\d+(\.\d)? s$"))
    page.screenshot(path=shots / "tasks-desktop.png")
    rita.close()


def test_fields_a_validation_error_names_are_marked(page, dev_server):
    sign_in_dev(page, dev_server, "sam")
    run_code(page, "print(1)", timeout="0", memory="1")
    expect(page.locator("#timeout")).to_have_class(re.compile("invalid"))
    expect(page.locator("#memory")).to_have_class(re.compile("invalid"))
    expect(page.locator(".field-error[data-for=timeout]")).to_be_visible()
    expect(page.locator("#code")).not_to_have_class(re.compile("invalid"))
    page.fill("#timeout", "5")
    page.fill("#memory", "256")
    page.click("#run")
    expect(page.locator("#task-status")).to_be_visible()


def test_on_a_phone_nothing_overflows_and_the_header_is_one_line(phone, dev_server, shots):
    tara = {"X-User-Id": "tara"}
    httpx.post(f"{dev_server.url}/api/agents", json={"name": "a-long-agent-name"}, headers=tara)
    httpx.post(f"{dev_server.url}/api/tasks", headers=tara,
               json={"kind": "code", "language": "bash", "code": "echo hi"})  # fmt: skip
    sign_in_dev(phone, dev_server, "tara")
    expect(phone.locator("#tasks tbody tr[data-id]")).to_have_count(1)
    header = phone.locator("header").bounding_box()
    assert header is not None and header["height"] < 0.1 * PHONE["height"]
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=shots / "tasks-phone.png", full_page=True)
    phone.goto(f"{dev_server.url}/console#/agents")
    delete = phone.locator("#agents button.delete")
    expect(delete).to_be_visible()
    box = delete.bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"]
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=shots / "agents-phone.png", full_page=True)


def test_dark_mode_follows_the_system(dark_page, dev_server, shots):
    sign_in_dev(dark_page, dev_server, "uma")
    background = dark_page.evaluate("getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(x) for x in re.findall(r"\d+", background)[:3])
    assert max(red, green, blue) < 60, background
    dark_page.screenshot(path=shots / "tasks-dark.png")


def test_an_api_key_made_on_its_page_is_shown_once_works_and_is_revoked(page, dev_server, shots):
    sign_in_dev(page, dev_server, "vera")
    page.goto(f"{dev_server.url}/console#/keys")
    expect(page.locator("#keys")).to_contain_text("No keys yet")
    page.fill("#key-name", "laptop")
    page.click("#create-key")
    secret = page.locator("#new-key-secret")
    expect(secret).to_have_text(re.compile(r"^ak_"))
    key = secret.text_content() or ""
    row = page.locator("#keys tbody tr[data-id]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("laptop")
    expect(row).to_contain_text(key[:12])
    expect(row).to_contain_text("never")
    assert key not in (row.text_content() or "")
    by_key = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{dev_server.url}/api/usage", headers=by_key).status_code == 200
    page.screenshot(path=shots / "keys.png", full_page=True)
    page.reload()
    expect(page.locator("#new-key-secret")).to_have_count(0)  # shown once
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#keys button.revoke").click()
    expect(page.locator("#keys tbody tr[data-id]")).to_have_count(0)
    assert httpx.get(f"{dev_server.url}/api/usage", headers=by_key).status_code == 401
