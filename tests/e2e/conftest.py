"""Fixtures of the agent tests: the scripted Messages API on loopback as Anthropic, and
a real API server whose LLM proxy forwards to it. A module names the key the server
holds with `REAL_KEY` (its tests look for it where it must and must not be). And the
console's: one Chromium, its server, and pages that fail a test on any page error."""

from __future__ import annotations

import os

import pytest

from devtools.scripted_anthropic import ScriptedAnthropic
from tests.conftest import ROOT, ApiServer

DEFAULT_KEY = "sk-ant-e2e-test-key"


@pytest.fixture(scope="session", autouse=True)
def runners_use_the_task_root(task_root):
    """Every runner these tests start gives its tasks the default environment's root."""
    return task_root


@pytest.fixture(scope="module")
def anthropic_api():
    with ScriptedAnthropic() as server:
        yield server


@pytest.fixture(scope="module")
def agent_server(request, emulator, tmp_path_factory, anthropic_api):
    server = ApiServer(
        emulator,
        tmp_path_factory.mktemp("agents") / "api.log",
        ANTHROPIC_API_KEY=getattr(request.module, "REAL_KEY", DEFAULT_KEY),
        ANTHROPIC_BASE_URL=anthropic_api.url,
    ).start()
    yield server
    server.stop()


# -- the console's browser tests (test_console*.py) ---------------------------------


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Where the console's screenshots go: a temporary directory, or docs/console/ (the
    README shows them) with UPDATE_SCREENSHOTS=1."""
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        return ROOT / "docs" / "console"
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    from tests.e2e.console_helpers import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def dev_server(emulator, tmp_path_factory, anthropic_api):
    """The console's server: dev sign-in, the scripted Messages API, and at most two
    unsettled tasks per user (so a test can reach that limit)."""
    server = ApiServer(
        emulator,
        tmp_path_factory.mktemp("console") / "api.log",
        ANTHROPIC_API_KEY="sk-ant-console-test",
        ANTHROPIC_BASE_URL=anthropic_api.url,
        MAX_UNSETTLED_TASKS_PER_USER="2",
    ).start()
    yield server
    server.stop()


def _watched(browser, viewport, color_scheme="light"):
    from tests.e2e.console_helpers import WatchedPage

    watched = WatchedPage(browser, viewport, color_scheme)
    yield watched.page
    problems = watched.problems()
    watched.close()
    assert problems == []


@pytest.fixture
def page(browser, firestore):
    """A desktop-sized page; the test fails on any uncaught error or console error."""
    yield from _watched(browser, {"width": 1200, "height": 860})  # the screenshots' size


@pytest.fixture
def phone(browser, firestore):
    """A phone-sized page (390 x 844), failing the same way."""
    from tests.e2e.console_helpers import PHONE

    yield from _watched(browser, PHONE)


@pytest.fixture
def dark_page(browser, firestore):
    """A desktop page whose system prefers a dark colour scheme."""
    from tests.e2e.console_helpers import DESKTOP

    yield from _watched(browser, DESKTOP, "dark")
