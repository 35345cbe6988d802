"""Claude Code's `--output-format stream-json` lines, as the task's events.

One JSON object per line: `system` (init, api_retry...), `stream_event` (the API's
own stream events, with `--include-partial-messages`), `assistant` (one content
block each: text or tool_use), `user` (tool results) and, last, `result`.

- text deltas become `assistant_delta` events, batched: at most one per
  DELTA_INTERVAL_SECONDS, so a streaming turn writes a few Firestore documents a
  second, not one per token; the rest goes out before the block's `assistant`.
- `assistant` lines repeat their message's start-of-stream usage: they are not
  added up (usage is metered at the LLM proxy, and the relay reports it).
"""

from __future__ import annotations

import json
import time

from job_runner.tools import clip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Emit = Callable[[str, dict | str], None]

DELTA_INTERVAL_SECONDS = 0.5
MAX_EVENT_CHARS = 4096
MAX_TEXT_EVENT_CHARS = 32_768
MAX_LINE_BYTES = 64 * 1024 * 1024


class StreamMapper:
    """Feed it stdout chunks; it emits events and keeps the `result` line."""

    def __init__(self, emit: Emit, clock: Callable[[], float] = time.monotonic) -> None:
        self.emit = emit
        self.clock = clock
        self.result: dict | None = None
        self.session_id: str | None = None
        self.texts: list[str] = []
        self._buffer = b""
        self._delta = ""
        self._delta_sent_at = 0.0

    def feed(self, chunk: bytes) -> None:
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > MAX_LINE_BYTES:
            self._buffer = b""  # not a line we could use; the CLI does not write these
        for line in lines:
            if line.strip():
                self._line(line)

    def close(self) -> None:
        if self._buffer.strip():
            self._line(self._buffer)
        self._buffer = b""
        self._flush_delta()

    def _line(self, raw: bytes) -> None:
        try:
            line = json.loads(raw)
        except ValueError:
            return  # not ours to judge: stderr holds the CLI's complaints
        if not isinstance(line, dict):
            return
        kind = line.get("type")
        if kind == "stream_event":
            self._stream_event(line.get("event") or {})
        elif kind == "assistant":
            self._assistant(line)
        elif kind == "user":
            self._tool_results(line)
        elif kind == "system":
            self._system(line)
        elif kind == "result":
            self._flush_delta()
            self.result = line

    def _stream_event(self, event: dict) -> None:
        delta = event.get("delta") or {}
        if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
            self._delta += str(delta.get("text") or "")
            if self.clock() - self._delta_sent_at >= DELTA_INTERVAL_SECONDS:
                self._flush_delta()

    def _flush_delta(self) -> None:
        if self._delta:
            self.emit("assistant_delta", {"text": clip(self._delta, MAX_TEXT_EVENT_CHARS)})
            self._delta = ""
            self._delta_sent_at = self.clock()

    def _assistant(self, line: dict) -> None:
        self._flush_delta()
        parent = line.get("parent_tool_use_id")
        extra = {"parentToolUseId": parent} if parent else {}
        for block in (line.get("message") or {}).get("content") or []:
            if block.get("type") == "text" and block.get("text"):
                if not parent:
                    self.texts.append(block["text"])
                text = clip(block["text"], MAX_TEXT_EVENT_CHARS)
                self.emit("assistant", {"text": text, **extra})
            elif block.get("type") == "tool_use":
                tool_input = block.get("input") if isinstance(block.get("input"), dict) else {}
                shown = {
                    k: clip(v, MAX_EVENT_CHARS) if isinstance(v, str) else v
                    for k, v in tool_input.items()
                }
                call = {"id": block.get("id"), "name": block.get("name"), "input": shown}
                self.emit("tool_call", {**call, **extra})

    def _tool_results(self, line: dict) -> None:
        content = (line.get("message") or {}).get("content")
        if not isinstance(content, list):
            return
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            output = block.get("content")
            if isinstance(output, list):
                output = "\n".join(
                    str(part.get("text", "")) for part in output if isinstance(part, dict)
                )
            result = {
                "id": block.get("tool_use_id"),
                "output": clip(str(output or ""), MAX_EVENT_CHARS),
                "isError": bool(block.get("is_error")),
            }
            self.emit("tool_result", result)

    def _system(self, line: dict) -> None:
        subtype = line.get("subtype")
        if subtype == "init":
            self.session_id = line.get("session_id")
            status = {
                "state": "engine_started",
                "engine": "claude-code",
                "version": line.get("claude_code_version"),
                "model": line.get("model"),
            }
            self.emit("status", status)
        elif subtype == "api_retry":
            details = {
                k: line.get(k) for k in ("attempt", "max_retries", "retry_delay_ms", "error")
            }
            self.emit("status", {"state": "model_call_retrying", **details})
