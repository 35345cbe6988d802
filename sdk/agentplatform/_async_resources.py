"""The asynchronous client's resources: `AsyncClient.files`, `.agents`, ... (the
same calls as `_sync_resources`, awaited)."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agentplatform import _base as b
from agentplatform._decode import decode
from agentplatform._sync_resources import (
    _OCTETS,
    CHUNK,
    Destination,
    Progress,
    Source,
    _id,
    _open_destination,
    _open_source,
)
from agentplatform.models import (
    Agent,
    ApiKey,
    Conversation,
    Environment,
    FileListing,
    Message,
    Task,
    TaskEvent,
    Upload,
)

if TYPE_CHECKING:
    from agentplatform._async import AsyncClient


class Files:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def upload(self, source: Source, *, progress: Progress | None = None) -> Upload:
        data, size = _open_source(source)
        try:
            if size <= b.PART_BYTES:
                response = await self._client.request(
                    "POST", "/api/uploads", content=data.read(), headers=_OCTETS, idempotent=False
                )
                if progress:
                    progress(size, size)
                return b.model(Upload, response)
            parts = math.ceil(size / b.PART_BYTES)
            response = await self._client.request("POST", "/api/uploads", params={"parts": parts})
            pending = b.model(Upload, response)
            upload, done = pending, 0
            for index in range(parts):
                piece = data.read(b.PART_BYTES)
                response = await self._client.request(
                    "PUT",
                    f"/api/uploads/{pending.id}/parts/{index}",
                    content=piece,
                    headers=_OCTETS,
                )
                upload = b.model(Upload, response)
                done += len(piece)
                if progress:
                    progress(done, size)
            return upload
        finally:
            if isinstance(source, str | os.PathLike):
                data.close()

    async def list(self, owner: Task | Conversation | str) -> FileListing:
        return b.model(FileListing, await self._client.request("GET", b.files_path(owner)))

    async def iter_bytes(self, owner: Task | Conversation | str, path: str) -> AsyncIterator[bytes]:
        async with self._client.stream_request("GET", b.file_path(owner, path)) as response:
            async for chunk in response.aiter_bytes(CHUNK):
                yield chunk

    async def read(self, owner: Task | Conversation | str, path: str) -> bytes:
        return b"".join([chunk async for chunk in self.iter_bytes(owner, path)])

    async def download(
        self,
        owner: Task | Conversation | str,
        path: str,
        dest: Destination,
        *,
        progress: Progress | None = None,
    ) -> int:
        return await self._save(b.file_path(owner, path), dest, progress)

    async def archive(
        self,
        owner: Task | Conversation | str,
        dest: Destination,
        *,
        format: str = "zip",
        progress: Progress | None = None,
    ) -> int:
        return await self._save(f"{b.files_path(owner)}?archive={format}", dest, progress)

    async def _save(self, path: str, dest: Destination, progress: Progress | None) -> int:
        async with self._client.stream_request("GET", path) as response:
            total = response.headers.get("Content-Length")
            size = int(total) if total and total.isdecimal() else None
            out, done = _open_destination(dest), 0
            try:
                async for chunk in response.aiter_bytes(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, size)
            finally:
                if out is not dest:
                    out.close()
        return done


class Agents:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        description: str = "",
        *,
        environment: Environment | str | None = None,
        **options: Any,
    ) -> Agent:
        options["environment"] = b.environment_ref(environment)
        body = {"name": name, "description": description} | b.camel(options)
        return b.model(Agent, await self._client.request("POST", "/api/agents", json=body))

    async def list(self, *, limit: int = 100) -> list[Agent]:
        response = await self._client.request("GET", "/api/agents", params={"limit": limit})
        return b.models(Agent, response, "agents")

    async def get(self, agent: Agent | str) -> Agent:
        return b.model(Agent, await self._client.request("GET", f"/api/agents/{_id(agent)}"))

    async def update(
        self,
        agent: Agent | str,
        *,
        environment: Environment | str | None | b.Unchanged = b.UNCHANGED,
        **changes: Any,
    ) -> Agent:
        body = b.agent_changes(changes, environment)
        response = await self._client.request("PATCH", f"/api/agents/{_id(agent)}", json=body)
        return b.model(Agent, response)

    async def delete(self, agent: Agent | str) -> None:
        await self._client.request("DELETE", f"/api/agents/{_id(agent)}")


class Turn:
    """One turn of a conversation; `async for text in turn` streams the reply."""

    def __init__(self, client: AsyncClient, message: Message, task: Task) -> None:
        self._client = client
        self.message = message
        self.task = task
        self._deltas = b.Deltas()

    async def events(self) -> AsyncIterator[TaskEvent]:
        async for event in self._client.stream(self.task):
            yield event
        self.task = await self._client.wait(self.task)

    async def __aiter__(self) -> AsyncIterator[str]:
        async for event in self.events():
            text = self._deltas.feed(event.type, event.data)
            if text:
                yield text

    async def wait(self) -> Task:
        self.task = await self._client.wait(self.task)
        return self.task

    @property
    def text(self) -> str:
        if self.task.is_terminal and self.task.text is not None:
            return self.task.text
        return "".join(self._deltas.parts)


class Conversations:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self, agent: Agent | str | None = None, *, title: str | None = None
    ) -> Conversation:
        body = b.camel({"agent_id": _id(agent) if agent else None, "title": title})
        response = await self._client.request("POST", "/api/conversations", json=body)
        return b.model(Conversation, response)

    async def list(self, *, limit: int = 100) -> list[Conversation]:
        response = await self._client.request("GET", "/api/conversations", params={"limit": limit})
        return b.models(Conversation, response, "conversations")

    async def get(self, conversation: Conversation | str) -> Conversation:
        path = f"/api/conversations/{b.conversation_id(conversation)}"
        return b.model(Conversation, await self._client.request("GET", path))

    async def delete(self, conversation: Conversation | str) -> None:
        path = f"/api/conversations/{b.conversation_id(conversation)}"
        await self._client.request("DELETE", path)

    async def send(
        self, conversation: Conversation | str, message: str, *, idempotency_key: str | None = None
    ) -> Turn:
        key = idempotency_key or b.new_idempotency_key()
        response = await self._client.request(
            "POST",
            f"/api/conversations/{b.conversation_id(conversation)}/messages",
            json={"message": message},
            headers={"Idempotency-Key": key},
        )
        body = response.json()
        return Turn(self._client, decode(Message, body["message"]), decode(Task, body["task"]))


class Batches:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def submit(
        self,
        tasks: list[Mapping[str, Any]],
        *,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[Task]:
        body: dict[str, Any] = {"tasks": [dict(t) for t in tasks]}
        if webhook_url:
            body["webhookUrl"] = webhook_url
        key = idempotency_key or b.new_idempotency_key()
        response = await self._client.request(
            "POST", "/api/tasks/batch", json=body, headers={"Idempotency-Key": key}
        )
        return b.models(Task, response, "tasks")

    async def run(self, tasks: list[Mapping[str, Any]], **options: Any) -> list[Task]:
        return [await self._client.wait(task) for task in await self.submit(tasks, **options)]


class Environments:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        python: Iterable[str] = (),
        *,
        npm: Iterable[str] = (),
        wait: bool = False,
        timeout: float | None = None,
    ) -> Environment:
        body = {"name": name, "python": list(python), "npm": list(npm)}
        response = await self._client.request("POST", "/api/environments", json=body)
        environment = b.model(Environment, response)
        return await self.wait(environment, timeout=timeout) if wait else environment

    async def list(self) -> list[Environment]:
        response = await self._client.request("GET", "/api/environments")
        return b.models(Environment, response, "environments")

    async def get(self, environment: Environment | str) -> Environment:
        response = await self._client.request("GET", b.environment_path(environment))
        return b.model(Environment, response)

    async def delete(self, environment: Environment | str) -> None:
        await self._client.request("DELETE", b.environment_path(environment))

    async def wait(
        self, environment: Environment | str, *, timeout: float | None = None
    ) -> Environment:
        deadline = None if timeout is None else time.monotonic() + timeout
        current = await self.get(environment) if isinstance(environment, str) else environment
        build_ended = False
        while current.is_building:
            left = b.remaining(deadline)
            if left == 0:
                break
            if current.build_task_id and not build_ended:
                build = await self._client.wait(current.build_task_id, timeout=left)
                build_ended = build.is_terminal
            else:
                await asyncio.sleep(b.poll_pause(left))
            current = await self.get(current)
        return current


class Keys:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, name: str) -> ApiKey:
        response = await self._client.request("POST", "/api/keys", json={"name": name})
        return b.model(ApiKey, response)

    async def list(self) -> list[ApiKey]:
        return b.models(ApiKey, await self._client.request("GET", "/api/keys"), "keys")

    async def revoke(self, key: ApiKey | str) -> None:
        await self._client.request("DELETE", f"/api/keys/{_id(key)}")
