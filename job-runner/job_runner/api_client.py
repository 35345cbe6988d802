"""The runner's only channel to the platform: the API's internal endpoints, with
the task token. Standard library only, so the runner starts fast."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

REQUEST_TIMEOUT_SECONDS = 30
RETRIES = 5


class ApiRefused(Exception):
    """The API answered 4xx: retrying will not help."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class ApiUnreachable(Exception):
    pass


@dataclass
class TaskApi:
    base_url: str
    task_id: str
    token: str
    execution: str
    attempt: int

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        url = f"{self.base_url.rstrip('/')}/internal/v1/tasks/{self.task_id}/{path}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        delay = 0.2
        for attempt in range(RETRIES):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as reply:
                    return json.loads(reply.read() or b"{}")
            except urllib.error.HTTPError as error:
                payload = _json_or_text(error.read())
                if error.code < 500 and error.code != 429:
                    raise ApiRefused(error.code, payload) from None
                problem: Exception = ApiUnreachable(f"{method} {path}: {error.code} {payload}")
            except (urllib.error.URLError, OSError, TimeoutError) as error:
                problem = ApiUnreachable(f"{method} {path}: {error}")
            if attempt < RETRIES - 1:
                time.sleep(delay)
                delay = min(delay * 3, 10)
        raise problem

    def _who(self) -> dict:
        return {"execution": self.execution, "attempt": self.attempt}

    def spec(self) -> dict:
        return self._call("GET", "spec")

    def claim(self) -> dict:
        return self._call("POST", "claim", self._who())

    def post_events(self, events: list[dict]) -> dict:
        return self._call("POST", "events", {**self._who(), "events": events})

    def post_result(
        self, status: str, result: dict | None, error: dict | None, events: list[dict]
    ) -> dict:
        body = {**self._who(), "status": status, "result": result, "error": error, "events": events}
        return self._call("POST", "result", body)


def _json_or_text(raw: bytes) -> dict:
    try:
        value = json.loads(raw)
        return value if isinstance(value, dict) else {"body": value}
    except ValueError:
        return {"body": raw[:500].decode("utf-8", "replace")}
