"""The asynchronous client: the same calls as `Client`, awaited. Tasks here, the
other resources in `_async_resources`."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import httpx_sse

from agentplatform import _base as b
from agentplatform._async_resources import Agents, Batches, Conversations, Environments, Files, Keys
from agentplatform._decode import decode
from agentplatform._sync import _outcome
from agentplatform.errors import TaskFailed, TransportError
from agentplatform.models import Environment, Task, TaskEvent, Usage


class AsyncClient:
    """An asyncio client of the Agent Platform API; see `Client` for the arguments."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        user: str | None = None,
        timeout: float = b.DEFAULT_TIMEOUT,
        max_retries: int = b.DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = b.settings(base_url, api_key, user, timeout, max_retries)
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self.files = Files(self)
        self.agents = Agents(self)
        self.conversations = Conversations(self)
        self.batches = Batches(self)
        self.environments = Environments(self)
        self.keys = Keys(self)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(
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
        """One API call, with `Client.request`'s retries and typed errors."""
        headers = {**self.settings.headers, **(headers or {})}
        if idempotent is None:
            idempotent = method != "POST" or "Idempotency-Key" in headers
        attempt = 0
        while True:
            try:
                response = await self._http.request(
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
                await asyncio.sleep(b.retry_delay(attempt, None))
                continue
            if b.should_retry(response) and attempt < self.settings.max_retries:
                attempt += 1
                await asyncio.sleep(b.retry_delay(attempt, response))
                continue
            return b.check(response)

    @contextlib.asynccontextmanager
    async def stream_request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        attempt = 0
        while True:
            request = self._http.build_request(
                method,
                self.settings.url(path),
                headers={**self.settings.headers, **(headers or {})},
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as error:
                attempt += 1
                if attempt > self.settings.max_retries:
                    raise TransportError(f"{method} {path}: {error}") from error
                await asyncio.sleep(b.retry_delay(attempt, None))
                continue
            try:
                if b.should_retry(response) and attempt < self.settings.max_retries:
                    attempt += 1
                    await asyncio.sleep(b.retry_delay(attempt, response))
                    continue
                if not response.is_success:
                    await response.aread()
                b.check(response)
                yield response
                return
            finally:
                await response.aclose()

    async def submit(
        self,
        code: str,
        *,
        language: str = "python",
        files: Mapping[str, Any] | None = None,
        environment: Environment | str | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Task:
        options["environment"] = b.environment_ref(environment)
        return await self.submit_raw(b.code_task(code, language, files, options), idempotency_key)

    async def submit_agent(
        self,
        prompt: str,
        *,
        environment: Environment | str | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Task:
        options["environment"] = b.environment_ref(environment)
        return await self.submit_raw(b.agent_task(prompt, options), idempotency_key)

    async def submit_raw(self, body: Mapping[str, Any], idempotency_key: str | None = None) -> Task:
        key = idempotency_key or b.new_idempotency_key()
        response = await self.request(
            "POST", "/api/tasks", json=dict(body), headers={"Idempotency-Key": key}
        )
        return b.model(Task, response)

    async def run(
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
        task = await self.submit(code, language=language, files=files, **options)
        if not wait:
            return task
        task = await self.wait(task, timeout=timeout)
        if check and not task.succeeded:
            raise TaskFailed(f"task {task.id} {_outcome(task)}", task)
        return task

    async def run_agent(self, prompt: str, *, timeout: float | None = None, **options: Any) -> Task:
        return await self.wait(await self.submit_agent(prompt, **options), timeout=timeout)

    async def get(self, task: Task | str) -> Task:
        return b.model(Task, await self.request("GET", f"/api/tasks/{b.task_id(task)}"))

    async def wait(self, task: Task | str, *, timeout: float | None = None) -> Task:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            hold = b.MAX_WAIT_SECONDS
            if deadline is not None:
                hold = max(0, min(hold, int(deadline - time.monotonic())))
            response = await self.request(
                "GET", f"/api/tasks/{b.task_id(task)}", params={"wait": hold} if hold else None
            )
            current = b.model(Task, response)
            if current.is_terminal or (deadline is not None and time.monotonic() >= deadline):
                return current

    async def cancel(self, task: Task | str) -> Task:
        response = await self.request("POST", f"/api/tasks/{b.task_id(task)}/cancel")
        return b.model(Task, response)

    async def list(
        self, *, status: str | None = None, limit: int | None = None
    ) -> AsyncIterator[Task]:
        token, seen = None, 0
        while True:
            params = {"status": status, "pageToken": token, "limit": min(limit or 100, 100)}
            response = await self.request(
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

    async def events(self, task: Task | str, *, after: int = 0) -> builtins.list[TaskEvent]:
        response = await self.request(
            "GET", f"/api/tasks/{b.task_id(task)}/events", params={"after": after}
        )
        return b.models(TaskEvent, response, "events")

    async def stream(self, task: Task | str, *, after: int = 0) -> AsyncIterator[TaskEvent]:
        """The task's events as they happen, resumed after a dropped connection."""
        path = f"/api/tasks/{b.task_id(task)}/events"
        last, drops, attempt = after, 0, 0
        while True:
            headers = {
                **self.settings.headers,
                "Accept": "text/event-stream",
                "Last-Event-ID": str(last),
            }
            try:
                async with httpx_sse.aconnect_sse(
                    self._http,
                    "GET",
                    self.settings.url(path),
                    headers=headers,
                    timeout=httpx.Timeout(self.settings.timeout, read=b.STREAM_READ_TIMEOUT),
                ) as source:
                    response = source.response
                    if not response.is_success:
                        await response.aread()
                        if b.should_retry(response) and attempt < self.settings.max_retries:
                            attempt += 1
                            await asyncio.sleep(b.retry_delay(attempt, response))
                            continue
                        b.check(response)
                    async for sse in source.aiter_sse():
                        event = decode(TaskEvent, b.sse_event_json(sse.data))
                        last, drops = event.seq, 0
                        yield event
            except httpx.TransportError as error:
                drops += 1
                if drops > b.STREAM_RECONNECTS:
                    raise TransportError(f"event stream of {path}: {error}") from error
                await asyncio.sleep(b.retry_delay(drops, None))
                continue
            if (await self.get(task)).is_terminal:
                for event in await self.events(task, after=last):
                    yield event
                return

    async def usage(self) -> Usage:
        return b.model(Usage, await self.request("GET", "/api/usage"))

    async def config(self) -> dict[str, Any]:
        result: dict[str, Any] = (await self.request("GET", "/api/config")).json()
        return result
