"""What the sync and the async client share: settings, request bodies, the retry
policy, and how an answer becomes a model or an error. No I/O here."""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from agentplatform import __version__
from agentplatform._decode import decode
from agentplatform.errors import error_from_response, retry_after_seconds
from agentplatform.models import Conversation, Environment, Task

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 90.0  # above the API's longest held request (?wait=60)
DEFAULT_MAX_RETRIES = 4
MAX_RETRY_WAIT = 60.0  # never sleep longer than this on one Retry-After
# Cloud Run caps an HTTP/1 request at 32 MiB (https://cloud.google.com/run/quotas),
# and the API takes an upload's parts up to that size: a larger file goes in parts.
PART_BYTES = 32 * 1024 * 1024
# `GET /api/tasks/{id}?wait=N` holds at most this long (DESIGN section 6.2).
MAX_WAIT_SECONDS = 60
RETRY_STATUSES = frozenset({429, 503})
STREAM_RECONNECTS = 8  # dropped connections in a row before stream() gives up
# The API sends an event stream a keep-alive comment every 15 s: a stream silent for
# longer than this is a dead connection, resumed rather than waited on.
STREAM_READ_TIMEOUT = 45.0
# How often environments.wait() reads an environment it cannot hold a request on: one
# whose build is another user's (the same packages), or in the moment between its build
# task's end and the environment's own status.
ENVIRONMENT_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Settings:
    base_url: str
    headers: dict[str, str]
    timeout: float
    max_retries: int

    def url(self, path: str) -> str:
        return self.base_url + path


def settings(
    base_url: str | None,
    api_key: str | None,
    user: str | None,
    timeout: float,
    max_retries: int,
) -> Settings:
    """From arguments, else AGENTPLATFORM_URL / AGENTPLATFORM_API_KEY /
    AGENTPLATFORM_USER. `api_key` is a Bearer token (an `ak_` key or a Firebase ID
    token); `user` names the caller on a server in dev mode (X-User-Id)."""
    base_url = base_url or os.environ.get("AGENTPLATFORM_URL") or DEFAULT_BASE_URL
    api_key = api_key or os.environ.get("AGENTPLATFORM_API_KEY")
    user = user or os.environ.get("AGENTPLATFORM_USER")
    headers = {"User-Agent": f"agent-platform-sdk/{__version__}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if user:
        headers["X-User-Id"] = user
    return Settings(base_url.rstrip("/"), headers, timeout, max_retries)


def retry_delay(attempt: int, response: httpx.Response | None) -> float:
    """How long to wait before retry number `attempt` (1-based): the API's
    Retry-After when it gave one, else exponential backoff with jitter."""
    if response is not None:
        after = retry_after_seconds(response)
        if after is not None:
            return min(after, MAX_RETRY_WAIT)
    return min(MAX_RETRY_WAIT, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


def should_retry(response: httpx.Response) -> bool:
    return response.status_code in RETRY_STATUSES


def check(response: httpx.Response) -> httpx.Response:
    """The response if it is a success, else its typed error."""
    if response.is_success:
        return response
    raise error_from_response(response)


def model(cls: type[T], response: httpx.Response) -> T:
    return decode(cls, response.json())


def models(cls: type[T], response: httpx.Response, key: str) -> list[T]:
    return [decode(cls, item) for item in response.json()[key]]


def new_idempotency_key() -> str:
    """A key per submit call, reused by its retries: a retried submit cannot queue a
    second task (DESIGN section 6.2)."""
    return str(uuid.uuid4())


def task_id(task: Task | str) -> str:
    return task if isinstance(task, str) else task.id


def environment_ref(environment: Environment | str | None) -> str | None:
    """How a task or an agent names an environment: the name or id given, or an
    Environment's id (that one, even if another later takes its name)."""
    return environment.id if isinstance(environment, Environment) else environment


def environment_path(environment: Environment | str) -> str:
    from urllib.parse import quote

    return f"/api/environments/{quote(environment_ref(environment) or '', safe='')}"


def remaining(deadline: float | None) -> float | None:
    """Seconds left before `deadline` (a time.monotonic() value), never negative;
    None for no deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def poll_pause(left: float | None) -> float:
    """How long to sleep before reading an environment again, `left` seconds before a
    deadline (None: no deadline)."""
    return ENVIRONMENT_POLL_SECONDS if left is None else min(ENVIRONMENT_POLL_SECONDS, left)


def conversation_id(conversation: Conversation | str) -> str:
    return conversation if isinstance(conversation, str) else conversation.id


def files_path(owner: Task | Conversation | str) -> str:
    """Where a task's (or a conversation's workspace's) files are listed."""
    if isinstance(owner, Conversation):
        return f"/api/conversations/{owner.id}/files"
    return f"/api/tasks/{task_id(owner)}/files"


def file_path(owner: Task | Conversation | str, path: str) -> str:
    from urllib.parse import quote

    return f"{files_path(owner)}/{quote(path.lstrip('/'))}"


def file_value(value: Any) -> Any:
    """A task's `files` value: text, bytes (sent as base64), or an Upload."""
    import base64

    from agentplatform.models import Upload

    if isinstance(value, Upload):
        return value.ref()
    if isinstance(value, bytes | bytearray):
        return {"base64": base64.b64encode(value).decode()}
    return value


def code_task(
    code: str,
    language: str,
    files: Mapping[str, Any] | None,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "code", "language": language, "code": code}
    if files:
        body["files"] = {name: file_value(v) for name, v in files.items()}
    return body | camel(options)


def agent_task(prompt: str, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "agent", "prompt": prompt} | camel(options)


class Unchanged:
    """The default of a field that may be set to None (null) in an update: not given,
    so left as it is."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Unchanged = Unchanged()


def agent_changes(
    changes: Mapping[str, Any], environment: Environment | str | None | Unchanged
) -> dict[str, Any]:
    """A PATCH /api/agents body: the changes given, and `environment` even when None
    (null: the default environment)."""
    body = camel(changes)
    if not isinstance(environment, Unchanged):
        body["environment"] = environment_ref(environment)
    return body


def camel(options: Mapping[str, Any]) -> dict[str, Any]:
    """Python keyword names (timeout_seconds) to the API's (timeoutSeconds); None
    means "not given"."""
    out = {}
    for name, value in options.items():
        if value is None:
            continue
        head, *rest = name.split("_")
        out[head + "".join(word.title() for word in rest)] = value
    return out


def sse_event_json(data: str) -> dict[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("an event's data is a JSON object")
    return value


class Deltas:
    """Turns a conversation turn's events into reply text: `assistant_delta` events as
    they come; an `assistant` event (a whole model message) only when no delta has
    already carried it, as the messages engine sends no deltas."""

    def __init__(self) -> None:
        self.streamed = False
        self.parts: list[str] = []

    def feed(self, type_: str, data: Any) -> str:
        text = data.get("text") if isinstance(data, dict) else data
        if not isinstance(text, str) or not text:
            return ""
        if type_ == "assistant_delta":
            self.streamed = True
        elif type_ == "assistant":
            if self.streamed:
                self.streamed = False
                return ""
            text = text + "\n" if not text.endswith("\n") else text
        else:
            return ""
        self.parts.append(text)
        return text
