"""The runner's only channel to the platform: the API's internal endpoints, with
the task token. Standard library only, so the runner starts fast."""

from __future__ import annotations

from job_runner import http_json
from job_runner.retry import with_retries

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


def _unreachable(error: Exception) -> bool:
    return isinstance(error, ApiUnreachable)


class TaskApi:
    """The internal endpoints of one task, as one execution attempt."""

    def __init__(
        self, base_url: str, task_id: str, token: str, execution: str, attempt: int
    ) -> None:
        self.base_url = base_url
        self.task_id = task_id
        self.token = token
        self.execution = execution
        self.attempt = attempt

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        url = f"{self.base_url.rstrip('/')}/internal/v1/tasks/{self.task_id}/{path}"
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

        def once() -> dict:
            try:
                status, payload = http_json.request(
                    method, url, body, headers, REQUEST_TIMEOUT_SECONDS
                )
            except (OSError, ValueError) as error:
                raise ApiUnreachable(f"{method} {path}: {error}") from None
            if status < 300:
                return payload
            if status < 500 and status != 429:
                raise ApiRefused(status, payload)
            raise ApiUnreachable(f"{method} {path}: {status} {payload}")

        return with_retries(once, retry_if=_unreachable, tries=RETRIES, first_delay=0.2)

    def _who(self) -> dict:
        return {"execution": self.execution, "attempt": self.attempt}

    def claim(self) -> dict:
        return self._call("POST", "claim", self._who())

    def secrets(self) -> dict[str, str]:
        """The values of the secrets the task names (its owner's only): {name: value}.
        The API answers this task's token, and only while this execution holds the
        claim: a POST, never cached. Nothing here logs them."""
        return dict(self._call("POST", "secrets", self._who()).get("secrets") or {})

    def post_events(self, events: list[dict]) -> dict:
        return self._call("POST", "events", {**self._who(), "events": events})

    def post_result(
        self,
        status: str,
        result: dict | None,
        error: dict | None,
        events: list[dict],
        sandbox: dict | None = None,
    ) -> dict:
        """sandbox: how the task was isolated and bounded ({"sandbox": "gvisor",
        "memoryBound": "cgroup", "diskBound": "tmpfs"}), for the task's `execution`."""
        body = {**self._who(), "status": status, "result": result, "error": error, "events": events}
        if sandbox:
            body["sandbox"] = sandbox
        return self._call("POST", "result", body)
