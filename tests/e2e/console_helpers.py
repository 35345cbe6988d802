"""What the console's browser tests share: how Chromium is started, signing in, and
running code from the console's form."""

from __future__ import annotations

from typing import Literal

from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize, expect

from tests.conftest import PROJECT, ApiServer

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium calls Google hosts, which fail here.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECONDS = 1000  # Playwright's timeouts are in milliseconds
FIREBASE_WEB_CONFIG = {
    "apiKey": "AIzaSy-test-web-key",
    "authDomain": f"{PROJECT}.firebaseapp.com",
    "projectId": PROJECT,
    "appId": "1:1234:web:abcd",
}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


class WatchedPage:
    """A page in a fresh context that records every uncaught error and every console
    error; `problems()` lists them (a CSP violation or a script error shows up here;
    4xx answers a test caused are logged as "Failed to load resource" and expected)."""

    def __init__(
        self,
        browser: Browser,
        viewport: ViewportSize,
        color_scheme: Literal["light", "dark"] = "light",
    ) -> None:
        self.context = browser.new_context(
            viewport=viewport, accept_downloads=True, color_scheme=color_scheme
        )
        self.context.set_default_timeout(30 * SECONDS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def problems(self) -> list[str]:
        return [e for e in self.errors if "Failed to load resource" not in e]

    def close(self) -> None:
        self.context.close()


def sign_in_dev(page: Page, server: ApiServer, user: str) -> None:
    page.goto(f"{server.url}/console")
    page.fill("#dev-user", user)
    page.click("#dev-sign-in button[type=submit]")
    expect(page.locator("#who-name")).to_have_text(f"{user} (dev)")


def run_code(page: Page, code: str, **fields: str) -> None:
    if not page.url.endswith("#/run"):
        page.goto(page.url.split("#")[0] + "#/run")
    page.fill("#code", code)
    for field, value in fields.items():
        page.fill(f"#{field}", value)
    page.click("#run")


def watch_error_boxes(page: Page) -> None:
    """Record every error box the page shows from now on, even one shown and then
    cleared (window.__errorBoxes): `error_boxes` reads them."""
    page.evaluate(
        """() => {
          window.__errorBoxes = [];
          const seen = (node) => node.nodeType === 1 && (node.matches('.error')
            ? [node] : [...node.querySelectorAll('.error')]);
          new MutationObserver((changes) => {
            for (const change of changes) for (const node of change.addedNodes)
              for (const box of seen(node) || []) window.__errorBoxes.push(box.textContent);
          }).observe(document.body, { childList: true, subtree: true });
        }"""
    )


def error_boxes(page: Page) -> list[str]:
    shown: list[str] = page.evaluate("window.__errorBoxes")
    return shown + page.locator(".error").all_text_contents()
