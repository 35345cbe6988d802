"""The synchronous client's resources: files, agents, conversations, batches, custom
environments and API keys (`client.files`, `client.agents`, ...)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from agentplatform import _base as b
from agentplatform._decode import decode
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
    from agentplatform._sync import Client

# progress(done_bytes, total_bytes or None): called as bytes go up or come down.
Progress = Callable[[int, int | None], None]
Source = str | os.PathLike[str] | bytes | IO[bytes]
Destination = str | os.PathLike[str] | IO[bytes]
CHUNK = 1024 * 1024


class Files:
    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(self, source: Source, *, progress: Progress | None = None) -> Upload:
        """Upload a file (a path, bytes or a binary file object) for a task's `files`
        as `{"upload": id}` (or pass the Upload itself). Above 32 MiB it goes in parts,
        each retried on its own."""
        data, size = _open_source(source)
        try:
            if size <= b.PART_BYTES:
                body = data.read()
                response = self._client.request(
                    "POST", "/api/uploads", content=body, headers=_OCTETS, idempotent=False
                )
                if progress:
                    progress(size, size)
                return b.model(Upload, response)
            parts = math.ceil(size / b.PART_BYTES)
            pending = b.model(
                Upload, self._client.request("POST", "/api/uploads", params={"parts": parts})
            )
            upload, done = pending, 0
            for index in range(parts):
                piece = data.read(b.PART_BYTES)
                response = self._client.request(
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

    def list(self, owner: Task | Conversation | str) -> FileListing:
        """A task's output files (or a Conversation's workspace files)."""
        return b.model(FileListing, self._client.request("GET", b.files_path(owner)))

    def iter_bytes(self, owner: Task | Conversation | str, path: str) -> Iterator[bytes]:
        """One file's bytes, as they come."""
        with self._client.stream_request("GET", b.file_path(owner, path)) as response:
            yield from response.iter_bytes(CHUNK)

    def read(self, owner: Task | Conversation | str, path: str) -> bytes:
        return b"".join(self.iter_bytes(owner, path))

    def download(
        self,
        owner: Task | Conversation | str,
        path: str,
        dest: Destination,
        *,
        progress: Progress | None = None,
    ) -> int:
        """Write one file to `dest` (a path or a binary file); returns its size."""
        return self._save(b.file_path(owner, path), dest, progress)

    def archive(
        self,
        owner: Task | Conversation | str,
        dest: Destination,
        *,
        format: str = "zip",
        progress: Progress | None = None,
    ) -> int:
        """Every stored file in one archive (`zip` or `tar.gz`) written to `dest`."""
        return self._save(f"{b.files_path(owner)}?archive={format}", dest, progress)

    def _save(self, path: str, dest: Destination, progress: Progress | None) -> int:
        with self._client.stream_request("GET", path) as response:
            total = response.headers.get("Content-Length")
            size = int(total) if total and total.isdecimal() else None
            out, done = _open_destination(dest), 0
            try:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, size)
            finally:
                if out is not dest:
                    out.close()
        return done


class Agents:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        name: str,
        description: str = "",
        *,
        environment: Environment | str | None = None,
        **options: Any,
    ) -> Agent:
        """Options: system_prompt, model, tools, engine, max_turns, max_tokens, ...;
        `environment`: the custom environment its tasks run with."""
        options["environment"] = b.environment_ref(environment)
        body = {"name": name, "description": description} | b.camel(options)
        return b.model(Agent, self._client.request("POST", "/api/agents", json=body))

    def list(self, *, limit: int = 100) -> list[Agent]:
        response = self._client.request("GET", "/api/agents", params={"limit": limit})
        return b.models(Agent, response, "agents")

    def get(self, agent: Agent | str) -> Agent:
        return b.model(Agent, self._client.request("GET", f"/api/agents/{_id(agent)}"))

    def update(
        self,
        agent: Agent | str,
        *,
        environment: Environment | str | None | b.Unchanged = b.UNCHANGED,
        **changes: Any,
    ) -> Agent:
        """Change the fields given; `environment=None` puts the agent back on the
        default environment."""
        body = b.agent_changes(changes, environment)
        response = self._client.request("PATCH", f"/api/agents/{_id(agent)}", json=body)
        return b.model(Agent, response)

    def delete(self, agent: Agent | str) -> None:
        self._client.request("DELETE", f"/api/agents/{_id(agent)}")


class Turn:
    """One turn of a conversation: the stored message and the task answering it.
    Iterate for the reply's text as it streams; `task` is the finished turn after."""

    def __init__(self, client: Client, message: Message, task: Task) -> None:
        self._client = client
        self.message = message
        self.task = task
        self._deltas = b.Deltas()

    def events(self) -> Iterator[TaskEvent]:
        yield from self._client.stream(self.task)
        self.task = self._client.wait(self.task)

    def __iter__(self) -> Iterator[str]:
        for event in self.events():
            text = self._deltas.feed(event.type, event.data)
            if text:
                yield text

    def wait(self) -> Task:
        self.task = self._client.wait(self.task)
        return self.task

    @property
    def text(self) -> str:
        """The whole reply: the finished task's answer, or what has streamed so far."""
        if self.task.is_terminal and self.task.text is not None:
            return self.task.text
        return "".join(self._deltas.parts)


class Conversations:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, agent: Agent | str | None = None, *, title: str | None = None) -> Conversation:
        body = b.camel({"agent_id": _id(agent) if agent else None, "title": title})
        return b.model(Conversation, self._client.request("POST", "/api/conversations", json=body))

    def list(self, *, limit: int = 100) -> list[Conversation]:
        response = self._client.request("GET", "/api/conversations", params={"limit": limit})
        return b.models(Conversation, response, "conversations")

    def get(self, conversation: Conversation | str) -> Conversation:
        """The conversation with its first page of messages, oldest first."""
        path = f"/api/conversations/{b.conversation_id(conversation)}"
        return b.model(Conversation, self._client.request("GET", path))

    def delete(self, conversation: Conversation | str) -> None:
        self._client.request("DELETE", f"/api/conversations/{b.conversation_id(conversation)}")

    def send(
        self, conversation: Conversation | str, message: str, *, idempotency_key: str | None = None
    ) -> Turn:
        """Send a message; iterate the returned Turn for the reply as it streams."""
        key = idempotency_key or b.new_idempotency_key()
        response = self._client.request(
            "POST",
            f"/api/conversations/{b.conversation_id(conversation)}/messages",
            json={"message": message},
            headers={"Idempotency-Key": key},
        )
        body = response.json()
        return Turn(self._client, decode(Message, body["message"]), decode(Task, body["task"]))


class Batches:
    def __init__(self, client: Client) -> None:
        self._client = client

    def submit(
        self,
        tasks: list[Mapping[str, Any]],
        *,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[Task]:
        """Queue up to 100 tasks (the API's JSON bodies), all or none."""
        body: dict[str, Any] = {"tasks": [dict(t) for t in tasks]}
        if webhook_url:
            body["webhookUrl"] = webhook_url
        key = idempotency_key or b.new_idempotency_key()
        response = self._client.request(
            "POST", "/api/tasks/batch", json=body, headers={"Idempotency-Key": key}
        )
        return b.models(Task, response, "tasks")

    def run(self, tasks: list[Mapping[str, Any]], **options: Any) -> list[Task]:
        """Submit the batch and wait for every task to end."""
        return [self._client.wait(task) for task in self.submit(tasks, **options)]


class Environments:
    """Your custom environments (`/api/environments`): Python packages on top of the
    default environment, for code tasks, batch items and agents."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        name: str,
        python: Iterable[str] = (),
        *,
        npm: Iterable[str] = (),
        wait: bool = False,
        timeout: float | None = None,
    ) -> Environment:
        """A new environment from pip requirements (`["pandas==2.2.3"]`) and npm
        packages (`npm=["lodash@4.17.21"]`): `building`, or `ready` when the same
        packages were built before. With `wait`, returned
        once its build has ended (see `wait`)."""
        body = {"name": name, "python": list(python), "npm": list(npm)}
        environment = b.model(
            Environment, self._client.request("POST", "/api/environments", json=body)
        )
        return self.wait(environment, timeout=timeout) if wait else environment

    def list(self) -> list[Environment]:
        """Your environments, oldest first."""
        response = self._client.request("GET", "/api/environments")
        return b.models(Environment, response, "environments")

    def get(self, environment: Environment | str) -> Environment:
        """An environment by name or id."""
        return b.model(Environment, self._client.request("GET", b.environment_path(environment)))

    def delete(self, environment: Environment | str) -> None:
        """Delete it: new tasks can no longer name it."""
        self._client.request("DELETE", b.environment_path(environment))

    def wait(self, environment: Environment | str, *, timeout: float | None = None) -> Environment:
        """The environment once it is no longer `building` (`ready` or `failed`):
        held polls on its build task, then short ones; after `timeout` seconds, the
        environment as it is then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        current = self.get(environment) if isinstance(environment, str) else environment
        build_ended = False
        while current.is_building:
            left = b.remaining(deadline)
            if left == 0:
                break
            if current.build_task_id and not build_ended:
                build_ended = self._client.wait(current.build_task_id, timeout=left).is_terminal
            else:
                time.sleep(b.poll_pause(left))
            current = self.get(current)
        return current


class Keys:
    """Your API keys (`/api/keys`)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, name: str) -> ApiKey:
        """A new key; its secret (`.key`) is in this answer only."""
        return b.model(ApiKey, self._client.request("POST", "/api/keys", json={"name": name}))

    def list(self) -> list[ApiKey]:
        return b.models(ApiKey, self._client.request("GET", "/api/keys"), "keys")

    def revoke(self, key: ApiKey | str) -> None:
        self._client.request("DELETE", f"/api/keys/{_id(key)}")


_OCTETS = {"Content-Type": "application/octet-stream"}


def _id(item: Any) -> str:
    return item if isinstance(item, str) else str(item.id)


def _open_source(source: Source) -> tuple[IO[bytes], int]:
    import io

    if isinstance(source, bytes):
        return io.BytesIO(source), len(source)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        return path.open("rb"), path.stat().st_size
    position = source.tell()
    size = source.seek(0, os.SEEK_END) - position
    source.seek(position)
    return source, size


def _open_destination(dest: Destination) -> IO[bytes]:
    if isinstance(dest, str | os.PathLike):
        return Path(dest).open("wb")
    return dest
