"""The LLM proxy: the only way a runner (or Claude Code in its sandbox) reaches Claude.

The caller sends Messages API requests to `{API_URL}/internal/v1/llm/v1/messages`
with its task token as the API key. Here the token is checked (it names a running
agent task), then the body (known fields only, the model against the allow-list,
nothing that changes who pays or where the request goes), then the task's token
budget and its owner's daily budget; only then is the request forwarded with the
real key. A streamed answer is relayed as it arrives and metered from its own
`message_start` and `message_delta` usage; a JSON answer from its `usage`. Either
way the usage is recorded once, in the transaction that also updates the task's
running total. The real key never leaves this process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from api import config
from api.adapters.firestore_store import FirestoreStore
from api.adapters.llm import AnthropicUpstream, UpstreamError, UpstreamReply, error_body
from api.models.documents import TaskDoc
from api.services.state_machine import TaskStatus, utcnow
from api.services.task_tokens import InvalidTaskToken, verify_task_token
from api.services.tasks import LLM_NOT_CONFIGURED

log = logging.getLogger(__name__)

# Messages API parameters a caller may send (what the SDK and Claude Code send);
# anything else is refused. Deliberately absent: `mcp_servers` and `container`
# (Anthropic would connect elsewhere, or run code on the account), `service_tier`
# (a different price).
ALLOWED_PARAMS = {
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "stream",
    "thinking",
    "output_config",
    "context_management",
    "cache_control",
}
COUNT_TOKENS_PARAMS = {"model", "messages", "system", "tools", "tool_choice", "thinking"}
# Beta features that reach the account's stored files, skills or MCP servers, or run
# code on it: never for a task. https://docs.anthropic.com/en/api/beta-headers
REFUSED_BETA_PREFIXES = ("files-api", "mcp-client", "code-execution", "skills")
# Server-side tools Anthropic runs (and bills) itself, or that fetch from elsewhere.
REFUSED_TOOL_PREFIXES = ("web_search", "web_fetch", "code_execution", "mcp", "bash_code")
# Headers passed to Anthropic; the key is ours.
FORWARDED_HEADERS = ("anthropic-beta", "anthropic-version")


class ProxyRefusal(Exception):
    def __init__(self, status: int, kind: str, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(kind, message)
        # Claude Code and the SDKs retry a 429 unless told not to.
        self.headers = {} if retry else {"x-should-retry": "false"}


def _invalid(message: str) -> ProxyRefusal:
    return ProxyRefusal(400, "invalid_request_error", message, retry=False)


class LlmProxy:
    def __init__(
        self,
        store: FirestoreStore,
        upstream: AnthropicUpstream,
        *,
        token_key: bytes,
        allowed_models: tuple[str, ...],
        user_daily_token_budget: int,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.token_key = token_key
        self.allowed_models = allowed_models
        self.user_daily_token_budget = user_daily_token_budget

    def messages(
        self, token: str, body: object, headers: dict[str, str] | None = None
    ) -> UpstreamReply:
        """Forward one Messages API call for the task the token names. A streamed
        reply's `chunks` meter its usage as they pass; iterate (or close) them.

        :raises ProxyRefusal: refused here (token, body, model, budget, configuration).
        :raises UpstreamError: Anthropic's own answer, passed back as is.
        """
        task = self._task_for(token)
        body = self._checked(body, ALLOWED_PARAMS)
        remaining = self._remaining_budget(task)
        requested = body.get("max_tokens")
        if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
            raise _invalid("max_tokens must be a positive integer.")
        forwarded = _clamped(body, min(requested, remaining, config.LLM_MAX_RESPONSE_TOKENS))
        reply = self.upstream.forward(
            "/v1/messages", forwarded, headers=_forwarded_headers(headers), query={"beta": "true"}
        )
        if reply.chunks is None:
            self._record_usage(task, (reply.body or {}).get("usage") or {})
        else:
            reply.chunks = self._metered(task, reply.chunks)
        return reply

    def count_tokens(self, token: str, body: object, headers: dict[str, str] | None = None):
        """`POST /v1/messages/count_tokens` (free, not metered), for the task's caller."""
        self._task_for(token)
        body = self._checked(body, COUNT_TOKENS_PARAMS)
        return self.upstream.forward(
            "/v1/messages/count_tokens",
            body,
            headers=_forwarded_headers(headers),
            query={"beta": "true"},
        )

    def _checked(self, body: object, allowed: set[str]) -> dict:
        if not self.upstream.configured:
            raise ProxyRefusal(503, "llm_not_configured", LLM_NOT_CONFIGURED["message"])
        if not isinstance(body, dict):
            raise _invalid("The body must be a JSON object.")
        unknown = set(body) - allowed
        if unknown:
            raise _invalid(f"Unsupported parameters: {sorted(unknown)}")
        if body.get("model") not in self.allowed_models:
            raise _invalid(
                f"model {body.get('model')!r} is not allowed; allowed: "
                f"{', '.join(self.allowed_models)}"
            )
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise _invalid("tools must be a list.")
        for tool in tools:
            kind = str(tool.get("type") or "") if isinstance(tool, dict) else ""
            if kind.startswith(REFUSED_TOOL_PREFIXES):
                raise _invalid(f"tools of type {kind!r} are not available to tasks.")
        return body

    def _metered(self, task: TaskDoc, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Relay the stream; record its usage once, when it ends however it ends (a
        caller that hangs up closes this generator, and what was used is still paid)."""
        meter = StreamUsage()
        try:
            for chunk in chunks:
                meter.feed(chunk)
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            self._record_usage(task, meter.usage)

    def _task_for(self, token: str) -> TaskDoc:
        parts = token.split(".")
        task_id = parts[1] if len(parts) == 4 and token.isascii() else ""
        try:
            verify_task_token(self.token_key, token, task_id)
        except InvalidTaskToken as error:
            raise ProxyRefusal(
                401, "authentication_error", f"Invalid task token: {error}", retry=False
            ) from None
        task = self.store.get_task(task_id)
        if task is None or task["kind"] != "agent" or task["status"] != TaskStatus.RUNNING:
            raise ProxyRefusal(
                403,
                "permission_error",
                "The token's task is not a running agent task.",
                retry=False,
            )
        return task

    def _remaining_budget(self, task: TaskDoc) -> int:
        usage = task.get("llmUsage")
        used = usage.get("inputTokens", 0) + usage.get("outputTokens", 0) if usage else 0
        task_left = task["input"]["maxTokens"] - used
        if task_left <= 0:
            raise ProxyRefusal(
                429,
                "budget_exceeded",
                f"The task's token budget ({task['input']['maxTokens']}) is spent.",
                retry=False,
            )
        daily = self.store.get_usage(task["owner"], utcnow())
        user_left = self.user_daily_token_budget - daily.get("llmTokens", 0)
        if user_left <= 0:
            raise ProxyRefusal(
                429,
                "budget_exceeded",
                f"The daily token budget ({self.user_daily_token_budget}) of this task's "
                "owner is spent; it resets at 00:00 UTC.",
                retry=False,
            )
        return min(task_left, user_left)

    def _record_usage(self, task: TaskDoc, usage: dict) -> None:
        # Cached prompt tokens (read and written) are input too.
        input_tokens = sum(
            int(usage.get(name) or 0)
            for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        output_tokens = int(usage.get("output_tokens") or 0)
        self.store.add_llm_usage(task["id"], input_tokens, output_tokens, utcnow())


class StreamUsage:
    """A stream's usage from its server-sent events: `message_start` carries the
    input side (cache reads and writes included), `message_delta` the running totals
    (its figures replace the start's). https://docs.anthropic.com/en/docs/build-with-claude/streaming
    """

    def __init__(self) -> None:
        self.usage: dict = {}
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.startswith(b"data:") or b'"usage"' not in line:
                continue
            try:
                event = json.loads(line[5:])
            except ValueError:
                continue
            if event.get("type") == "message_start":
                found = (event.get("message") or {}).get("usage")
            elif event.get("type") == "message_delta":
                found = event.get("usage")
            else:
                continue
            if isinstance(found, dict):
                self.usage.update({k: v for k, v in found.items() if isinstance(v, int)})


def _clamped(body: dict, max_tokens: int) -> dict:
    """The body with max_tokens lowered to what the budget allows; a thinking budget
    must stay below max_tokens (and at least 1024), or thinking is left out."""
    forwarded = dict(body, max_tokens=max_tokens)
    thinking = body.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if isinstance(thinking, dict) and isinstance(budget, int) and budget >= max_tokens:
        if max_tokens > 1024:
            forwarded["thinking"] = dict(thinking, budget_tokens=max_tokens - 1)
        else:
            forwarded.pop("thinking")
    return forwarded


def _forwarded_headers(headers: dict[str, str] | None) -> dict[str, str]:
    passed = {}
    for name in FORWARDED_HEADERS:
        value = (headers or {}).get(name)
        if not value:
            continue
        if name == "anthropic-beta":
            betas = [b.strip() for b in value.split(",") if b.strip()]
            value = ",".join(b for b in betas if not b.startswith(REFUSED_BETA_PREFIXES))
        if value:
            passed[name] = value
    return passed


__all__ = ["LlmProxy", "ProxyRefusal", "StreamUsage", "UpstreamError"]
