"""The synchronous client: tasks here, the other resources in `_sync_resources`."""

from __future__ import annotations

import builtins
import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import httpx_sse

from agentplatform import _base as b
from agentplatform._decode import decode
from agentplatform._sync_resources import Agents, Batches, Conversations, Environments, Files, Keys
from agentplatform.errors import TaskFailed, TransportError
from agentplatform.models import Environment, Task, TaskEvent, Usage


class Client:
    """A client of the Agent Platform API.

    :param base_url: the API's URL (default `$AGENTPLATFORM_URL`, else
        http://127.0.0.1:8080).
    :param api_key: a Bearer token: an `ak_` API key or a Firebase ID token
        (default `$AGENTPLATFORM_API_KEY`).
    :param user: on a server in dev mode, the caller's name (`X-User-Id`).
    :param max_retries: retries of a request answered 429 or 503 (after the API's
        `Retry-After`) or, where repeating it is safe, of a dropped connection.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        user: str | None = None,
        timeout: float = b.DEFAULT_TIMEOUT,
        max_retries: int = b.DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.settings = b.settings(base_url, api_key, user, timeout, max_retries)
        self._http = http_client or httpx.Client(timeout=timeout)
        self.files = Files(self)
        self.agents = Agents(self)
        self.conversations = Conversations(self)
        self.batches = Batches(self)
        self.environments = Environments(self)
        self.keys = Keys(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """One API call, retried on 429/503 after `Retry-After`, and on a dropped
        connection when it is safe to repeat. Raises the typed error of any other
        error answer."""
        headers = {**self.settings.headers, **(headers or {})}
        if idempotent is None:
            idempotent = method != "POST" or "Idempotency-Key" in headers
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method,
                    self.settings.url(path),
                    params=params,
                    json=json,
                    content=content,
                    headers=headers,
                )
            except httpx.TransportError as error:
                attempt += 1
                if not idempotent or attempt > self.settings.max_retries:
                    raise TransportError(f"{method} {path}: {error}") from error
                time.sleep(b.retry_delay(attempt, None))
                continue
            if b.should_retry(response) and attempt < self.settings.max_retries:
                attempt += 1
                time.sleep(b.retry_delay(attempt, response))
                continue
            return b.check(response)

    @contextlib.contextmanager
    def stream_request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """A GET whose body is read as it comes (downloads), with request()'s retries
        before the body starts."""
        attempt = 0
        while True:
            request = self._http.build_request(
                method,
                self.settings.url(path),
                headers={**self.settings.headers, **(headers or {})},
            )
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as error:
                attempt += 1
                if attempt > self.settings.max_retries:
                    raise TransportError(f"{method} {path}: {error}") from error
                time.sleep(b.retry_delay(attempt, None))
                continue
            try:
                if b.should_retry(response) and attempt < self.settings.max_retries:
                    attempt += 1
                    time.sleep(b.retry_delay(attempt, response))
                    continue
                if not response.is_success:
                    response.read()
                b.check(response)
                yield response
                return
            finally:
                response.close()

    # -- tasks ----------------------------------------------------------------------

    def submit(
        self,
        code: str,
        *,
        language: str = "python",
        files: Mapping[str, Any] | None = None,
        environment: Environment | str | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Task:
        """Queue a code task; returns it queued. `files` values are text, bytes or an
        `Upload`; `environment` one of your custom environments (an Environment, a name
        or an id); options: stdin, timeout_seconds, memory_mb, network, webhook_url,
        and any field the API adds (snake_case)."""
        options["environment"] = b.environment_ref(environment)
        return self.submit_raw(b.code_task(code, language, files, options), idempotency_key)

    def submit_agent(
        self,
        prompt: str,
        *,
        environment: Environment | str | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Task:
        """Queue an agent task (options: agent_id, engine, max_turns, max_tokens, ...);
        `environment` overrides the agent's."""
        options["environment"] = b.environment_ref(environment)
        return self.submit_raw(b.agent_task(prompt, options), idempotency_key)

    def submit_raw(self, body: Mapping[str, Any], idempotency_key: str | None = None) -> Task:
        """Queue a task from the API's own JSON body."""
        key = idempotency_key or b.new_idempotency_key()
        response = self.request(
            "POST", "/api/tasks", json=dict(body), headers={"Idempotency-Key": key}
        )
        return b.model(Task, response)

    def run(
        self,
        code: str,
        *,
        language: str = "python",
        files: Mapping[str, Any] | None = None,
        wait: bool = True,
        timeout: float | None = None,
        check: bool = False,
        **options: Any,
    ) -> Task:
        """Submit a code task and (with `wait`) return it finished. With `check`, raise
        TaskFailed unless it completed with exit code 0."""
        task = self.submit(code, language=language, files=files, **options)
        if not wait:
            return task
        task = self.wait(task, timeout=timeout)
        if check and not task.succeeded:
            raise TaskFailed(f"task {task.id} {_outcome(task)}", task)
        return task

    def run_agent(self, prompt: str, *, timeout: float | None = None, **options: Any) -> Task:
        return self.wait(self.submit_agent(prompt, **options), timeout=timeout)

    def get(self, task: Task | str) -> Task:
        return b.model(Task, self.request("GET", f"/api/tasks/{b.task_id(task)}"))

    def wait(self, task: Task | str, *, timeout: float | None = None) -> Task:
        """The task once terminal (held polls of up to 60 s each); after `timeout`
        seconds, the task as it is then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            hold = b.MAX_WAIT_SECONDS
            if deadline is not None:
                hold = max(0, min(hold, int(deadline - time.monotonic())))
            response = self.request(
                "GET", f"/api/tasks/{b.task_id(task)}", params={"wait": hold} if hold else None
            )
            current = b.model(Task, response)
            if current.is_terminal or (deadline is not None and time.monotonic() >= deadline):
                return current

    def cancel(self, task: Task | str) -> Task:
        """Cancel the task. One that had already ended stays as it ended: the answer is
        that task with `already_ended` set."""
        return b.model(Task, self.request("POST", f"/api/tasks/{b.task_id(task)}/cancel"))

    def list(self, *, status: str | None = None, limit: int | None = None) -> Iterator[Task]:
        """Your tasks, newest first, page after page (at most `limit` in all)."""
        token, seen = None, 0
        while True:
            params = {"status": status, "pageToken": token, "limit": min(limit or 100, 100)}
            response = self.request(
                "GET", "/api/tasks", params={k: v for k, v in params.items() if v is not None}
            )
            page = response.json()
            for item in page["tasks"]:
                yield decode(Task, item)
                seen += 1
                if limit is not None and seen >= limit:
                    return
            token = page.get("nextPageToken")
            if not token:
                return

    def events(self, task: Task | str, *, after: int = 0) -> builtins.list[TaskEvent]:
        """One page of the task's events after seq `after` (no waiting)."""
        response = self.request(
            "GET", f"/api/tasks/{b.task_id(task)}/events", params={"after": after}
        )
        return b.models(TaskEvent, response, "events")

    def stream(self, task: Task | str, *, after: int = 0) -> Iterator[TaskEvent]:
        """The task's events as they happen, until it ends (Server-Sent Events). A
        dropped connection is resumed where it broke (`Last-Event-ID`): no event is
        lost or repeated."""
        path = f"/api/tasks/{b.task_id(task)}/events"
        last, drops, attempt = after, 0, 0
        while True:
            headers = {
                **self.settings.headers,
                "Accept": "text/event-stream",
                "Last-Event-ID": str(last),
            }
            try:
                with httpx_sse.connect_sse(
                    self._http,
                    "GET",
                    self.settings.url(path),
                    headers=headers,
                    timeout=httpx.Timeout(self.settings.timeout, read=b.STREAM_READ_TIMEOUT),
                ) as source:
                    response = source.response
                    if not response.is_success:
                        response.read()
                        if b.should_retry(response) and attempt < self.settings.max_retries:
                            attempt += 1
                            time.sleep(b.retry_delay(attempt, response))
                            continue
                        b.check(response)
                    for sse in source.iter_sse():
                        event = decode(TaskEvent, b.sse_event_json(sse.data))
                        last, drops = event.seq, 0
                        yield event
            except httpx.TransportError as error:
                drops += 1
                if drops > b.STREAM_RECONNECTS:
                    raise TransportError(f"event stream of {path}: {error}") from error
                time.sleep(b.retry_delay(drops, None))
                continue
            # The server ends a stream when the task has ended, and also after a few
            # minutes of an open one: only the task's status tells which.
            if self.get(task).is_terminal:
                for event in self.events(task, after=last):
                    yield event
                return

    # -- account --------------------------------------------------------------------

    def usage(self) -> Usage:
        return b.model(Usage, self.request("GET", "/api/usage"))

    def config(self) -> dict[str, Any]:
        """The deployment's public settings: sign-in modes, languages, models, ..."""
        result: dict[str, Any] = self.request("GET", "/api/config").json()
        return result


def _outcome(task: Task) -> str:
    if task.status == "completed":
        return f"exited with code {task.exit_code}"
    if task.error is not None:
        return f"{task.status}: {task.error.code}: {task.error.message}"
    return task.status
