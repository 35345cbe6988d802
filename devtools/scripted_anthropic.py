"""A scripted stand-in for the Anthropic Messages API, on loopback.

It answers `POST .../v1/messages` in the real wire format, so the real `anthropic`
SDK and the real Claude Code CLI can talk to it: point `base_url` (or
ANTHROPIC_BASE_URL) at `url`. A request with `"stream": true` gets server-sent
events (`message_start`, `content_block_start/delta/stop`, `message_delta`,
`message_stop`), written one at a time as the real API does; `?beta=true` is
accepted, and `POST .../v1/messages/count_tokens` is answered too. Any path
ending in `/v1/messages` is served, so it can also stand where the API's LLM proxy
would be (`{API_URL}/internal/v1/llm/v1/messages`). Bodies are built from the SDK's
own types (`anthropic.types.Message`, `ErrorResponse`), so their shape cannot drift
from what the SDK parses.

A script is a list of steps, consumed one per request: a `Reply`, a `Failure`, or a
callable that gets the request's JSON body and returns one of those (for answers
that depend on what was sent). When the script runs out, `fallback` (a callable)
answers, or the request is refused with a 400 that names the problem. Like the real
API, it refuses (400/401, without consuming a step) a request with no credentials,
without model/max_tokens/messages, or whose tool_use blocks are not answered by
tool_result blocks in the next user turn. `requests` records everything received.

    python -m devtools.scripted_anthropic --port 8091   # echoes the last user message
    ANTHROPIC_BASE_URL=http://127.0.0.1:8091 ...
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from anthropic import types

# Error types the SDK models; others (our proxy's `budget_exceeded`,
# `llm_not_configured`) are sent in the same shape as plain JSON.
_ERROR_OBJECTS = {
    "invalid_request_error": types.InvalidRequestErrorObject,
    "authentication_error": types.AuthenticationErrorObject,
    "permission_error": types.PermissionErrorObject,
    "not_found_error": types.NotFoundErrorObject,
    "rate_limit_error": types.RateLimitErrorObject,
    "api_error": types.APIErrorObject,
    "overloaded_error": types.OverloadedErrorObject,
}
_REASONS = {429: "Too Many Requests", 529: "Overloaded"}


@dataclass
class Reply:
    """A message: `content` holds text and tool_use blocks (see `reply`)."""

    content: list[dict]
    stop_reason: str | None = None  # default: tool_use if any tool_use block, else end_turn
    input_tokens: int = 10
    output_tokens: int = 5
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    # Streaming only: after the first content delta, wait until this is set (or
    # `hold_seconds` pass), e.g. to cancel a task mid-stream.
    hold: threading.Event | None = None
    hold_seconds: float = 30.0


@dataclass
class Failure:
    """An error answer, e.g. Failure(429, "rate_limit_error", retry_after=1)."""

    status: int
    type: str
    message: str = "scripted error"
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)  # e.g. {"x-should-retry": "false"}


Step = Reply | Failure | Callable[[dict], Reply | Failure]


def reply(*blocks: str | dict, stop_reason: str | None = None, usage: tuple = (10, 5)) -> Reply:
    """reply("text", tool_use("bash", command="ls")): strings become text blocks."""
    content = [{"type": "text", "text": b} if isinstance(b, str) else b for b in blocks]
    return Reply(content, stop_reason, *usage)


def tool_use(name: str, id: str | None = None, **tool_input) -> dict:
    block_id = id or f"toolu_{uuid.uuid4().hex[:20]}"
    return {"type": "tool_use", "id": block_id, "name": name, "input": tool_input}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: dict | None
    at: float = field(default_factory=time.monotonic)

    def last_user_content(self) -> list[dict]:
        """The last user turn's content, as blocks ("text" for a plain string)."""
        assert self.body is not None, "not a Messages API call"
        content = [m for m in self.body["messages"] if m["role"] == "user"][-1]["content"]
        return [{"type": "text", "text": content}] if isinstance(content, str) else content

    def tool_results(self) -> list[dict]:
        return [b for b in self.last_user_content() if b["type"] == "tool_result"]


def echo(body: dict) -> Reply:
    """The standalone default: repeat the last user message (its last text block that
    is not one of Claude Code's `<system-reminder>` notes)."""
    request = RecordedRequest("POST", "/v1/messages", {}, body)
    texts = [
        b["text"]
        for b in request.last_user_content()
        if b["type"] == "text" and not b["text"].lstrip().startswith("<system-reminder>")
    ]
    return reply(f"You said: {texts[-1] if texts else '(tool results)'}")


class ScriptedAnthropic:
    def __init__(self, steps: Iterable[Step] = (), *, fallback=None, port: int = 0) -> None:
        self.fallback: Callable[[dict], Reply | Failure] | None = fallback
        self._steps = list(steps)
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._server.scripted = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ScriptedAnthropic:
        # shutdown() waits up to one poll interval: keep it short, tests stop it often.
        serve = functools.partial(self._server.serve_forever, poll_interval=0.05)
        threading.Thread(target=serve, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedAnthropic:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def add(self, *steps: Step) -> None:
        with self._lock:
            self._steps.extend(steps)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def messages_requests(self) -> list[RecordedRequest]:
        """The requests that reached the script (well-formed Messages API calls)."""
        return [r for r in self.requests if r.path.endswith("/v1/messages")]

    def handle(self, request: RecordedRequest) -> tuple[int, dict[str, str], dict | Reply]:
        """(status, headers, JSON body) or, for a streamed reply, (200, {}, the Reply)."""
        with self._lock:
            self._requests.append(request)
        if request.method == "POST" and request.path.endswith("/v1/messages/count_tokens"):
            return 200, {}, {"input_tokens": len(json.dumps(request.body)) // 4}
        refusal = _refusal(request)
        if refusal:
            return _failure(refusal)
        body = request.body
        assert body is not None  # _refusal checked it is a JSON object
        with self._lock:
            step = self._steps.pop(0) if self._steps else self.fallback
        if step is None:
            return _failure(Failure(400, "invalid_request_error", "the script has no more steps"))
        if callable(step):
            step = step(body)
        if isinstance(step, Failure):
            return _failure(step)
        if body.get("stream"):
            return 200, {}, step
        return 200, {}, _message(step, body["model"])


def _refusal(request: RecordedRequest) -> Failure | None:
    """What the real API would refuse before answering."""
    if request.method != "POST" or not request.path.endswith("/v1/messages"):
        return Failure(404, "not_found_error", f"no route {request.method} {request.path}")
    if not (request.headers.get("x-api-key") or request.headers.get("authorization")):
        return Failure(401, "authentication_error", "x-api-key header is required")
    body = request.body
    if not isinstance(body, dict) or not body.get("messages") or not body.get("model"):
        return Failure(400, "invalid_request_error", "model and messages are required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return Failure(400, "invalid_request_error", "max_tokens: must be an integer >= 1")
    messages = body["messages"]
    for index, message in enumerate(messages):
        if message["role"] != "assistant" or isinstance(message["content"], str):
            continue
        asked = {b["id"] for b in message["content"] if b["type"] == "tool_use"}
        following = messages[index + 1]["content"] if index + 1 < len(messages) else []
        if isinstance(following, str):
            following = []
        answered = {b["tool_use_id"] for b in following if b["type"] == "tool_result"}
        if asked - answered:
            return Failure(
                400,
                "invalid_request_error",
                f"messages.{index}: tool_use ids {sorted(asked - answered)} were found without "
                "tool_result blocks immediately after",
            )
    return None


def _stop_reason(step: Reply) -> str:
    has_tools = any(block["type"] == "tool_use" for block in step.content)
    return step.stop_reason or ("tool_use" if has_tools else "end_turn")


def _usage(step: Reply) -> types.Usage:
    return types.Usage(
        input_tokens=step.input_tokens,
        output_tokens=step.output_tokens,
        cache_read_input_tokens=step.cache_read_input_tokens,
        cache_creation_input_tokens=step.cache_creation_input_tokens,
    )


def _dump(model) -> dict:
    # The real API leaves out optional fields it has nothing for.
    return model.model_dump(mode="json", exclude_none=True)


def _message(step: Reply, model: str) -> dict:
    # From plain data, as the SDK reads the API's answers (the blocks are dicts).
    message = types.Message.model_validate(
        {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": step.content,
            "stop_reason": _stop_reason(step),
            "stop_sequence": None,
            "usage": _usage(step),
        }
    )
    return {**_dump(message), "stop_sequence": None}  # always sent, even when null


def stream_events(step: Reply, model: str) -> Iterator[tuple[str, dict]]:
    """The reply as the streaming API sends it: (event name, data) pairs.
    https://docs.anthropic.com/en/docs/build-with-claude/streaming"""
    start = types.Message(
        id=f"msg_{uuid.uuid4().hex[:24]}",
        type="message",
        role="assistant",
        model=model,
        content=[],
        stop_reason=None,
        stop_sequence=None,
        # message_start carries the input side; output_tokens grows in message_delta.
        usage=_usage(step).model_copy(update={"output_tokens": 1}),
    )
    yield "message_start", _dump(types.RawMessageStartEvent(type="message_start", message=start))
    for index, block in enumerate(step.content):
        deltas: list[types.TextDelta | types.InputJSONDelta]
        if block["type"] == "text":
            opening: dict = {"type": "text", "text": ""}
            deltas = [*_text_deltas(block["text"])]
        else:
            opening = {**block, "input": {}}
            deltas = [
                types.InputJSONDelta(type="input_json_delta", partial_json=part)
                for part in _halves(json.dumps(block["input"]))
            ]
        start_event = types.RawContentBlockStartEvent.model_validate(
            {"type": "content_block_start", "index": index, "content_block": opening}
        )
        yield "content_block_start", _dump(start_event)
        for block_delta in deltas:
            delta_event = types.RawContentBlockDeltaEvent(
                type="content_block_delta", index=index, delta=block_delta
            )
            yield "content_block_delta", _dump(delta_event)
        stop = types.RawContentBlockStopEvent(type="content_block_stop", index=index)
        yield "content_block_stop", _dump(stop)
    usage = _usage(step)
    message_delta = types.RawMessageDeltaEvent.model_validate(
        {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(step), "stop_sequence": None},
            "usage": usage.model_dump(include=set(types.MessageDeltaUsage.model_fields)),
        }
    )
    yield "message_delta", _dump(message_delta)
    yield "message_stop", _dump(types.RawMessageStopEvent(type="message_stop"))


def _text_deltas(text: str) -> list[types.TextDelta]:
    words = text.split(" ")
    parts = [word + " " for word in words[:-1]] + [words[-1]]
    return [types.TextDelta(type="text_delta", text=part) for part in parts if part]


def _halves(text: str) -> list[str]:
    middle = len(text) // 2
    return [part for part in (text[:middle], text[middle:]) if part]


def _failure(failure: Failure) -> tuple[int, dict[str, str], dict]:
    request_id = f"req_{uuid.uuid4().hex[:24]}"
    error = {"type": failure.type, "message": failure.message}
    if failure.type in _ERROR_OBJECTS:
        error = _ERROR_OBJECTS[failure.type](**error)
        body = types.ErrorResponse(type="error", error=error, request_id=request_id)
        payload = body.model_dump(mode="json", exclude_none=True)
    else:
        payload = {"type": "error", "error": error, "request_id": request_id}
    headers = {"request-id": request_id, **failure.headers}
    if failure.retry_after is not None:
        headers["retry-after"] = f"{failure.retry_after:g}"
    return failure.status, headers, payload


class _Server(ThreadingHTTPServer):
    scripted: ScriptedAnthropic

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-call (a cancelled runner) is normal here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    # Headers and body go out in two writes; with Nagle on, the second waits for the
    # client's delayed ACK and every call costs ~40 ms on loopback.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = RecordedRequest(self.command, urlsplit(self.path).path, headers, body)
        try:
            status, extra, payload = self.server.scripted.handle(request)
        except Exception as error:  # a bug in a step must reach the client, not hang it
            status, extra, payload = _failure(Failure(500, "api_error", repr(error)))
        if isinstance(payload, Reply):
            assert body is not None  # a reply answers a well-formed request
            self._stream(payload, body["model"])
            return
        data = json.dumps(payload).encode()
        self.send_response(status, _REASONS.get(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve

    def _stream(self, step: Reply, model: str) -> None:
        """Server-sent events, each written (and flushed) on its own, chunked."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        held = False
        for name, data in stream_events(step, model):
            frame = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()
            if step.hold is not None and not held and name == "content_block_delta":
                held = True
                step.hold.wait(step.hold_seconds)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, format: str, *args) -> None:
        pass  # `requests` records every request


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    args = parser.parse_args(argv)
    server = ScriptedAnthropic(fallback=echo, port=args.port).start()
    print(f"Scripted Messages API at {server.url} (echoes the last user message)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
