"""The LLM proxy: the only way a runner (or Claude Code in its sandbox) reaches Claude.

The caller sends Messages API requests to `{API_URL}/internal/v1/llm/v1/messages`
with its task token as the API key. Here the token is checked (it names a running
agent task), then the body (known fields only, the model the agent's or one of its
helpers, nothing that changes who pays or where the request goes), then the call's
most is reserved against the task's and its owner's budgets (llm_budget.py), and
`max_tokens` clamped to what the reservation holds; only then is the request
forwarded with the real key. A streamed answer is relayed as it arrives and metered
from its own `message_start` and `message_delta` usage; a JSON answer from its
`usage`. Either way the real usage replaces the reservation, exactly once. The real
key never leaves this process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from api.adapters.firestore_spend import CallRecord, Spent
from api.adapters.firestore_store import FirestoreStore
from api.adapters.llm import AnthropicUpstream, UpstreamError, UpstreamReply, error_body
from api.errors import ApiError
from api.models.documents import TaskDoc
from api.services.llm_budget import BudgetBusy, BudgetExceeded, LlmBudget
from api.services.llm_pricing import ModelPrice, PriceTable, estimate_input_tokens
from api.services.request_rate import RequestRate
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
# count_tokens calls a task may make at once before its per-minute rate applies.
COUNT_TOKENS_BURST = 10
# Headers passed to Anthropic; the key is ours.
FORWARDED_HEADERS = ("anthropic-beta", "anthropic-version")


class ProxyRefusal(Exception):
    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        retry: bool = True,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(kind, message)
        # Claude Code and the SDKs retry a 429 unless told not to.
        self.headers = {} if retry else {"x-should-retry": "false"}
        if retry_after is not None:
            self.headers["retry-after"] = str(retry_after)


def _invalid(message: str) -> ProxyRefusal:
    return ProxyRefusal(400, "invalid_request_error", message, retry=False)


class LlmProxy:
    def __init__(
        self,
        store: FirestoreStore,
        upstream: AnthropicUpstream,
        budget: LlmBudget,
        prices: PriceTable,
        *,
        token_key: bytes,
        allowed_models: tuple[str, ...],
        helper_models: tuple[str, ...],
        count_tokens_per_minute: int,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.budget = budget
        self.prices = prices
        self.token_key = token_key
        self.allowed_models = allowed_models
        self.helper_models = helper_models
        self.count_tokens_rate = RequestRate(
            count_tokens_per_minute / 60, min(COUNT_TOKENS_BURST, count_tokens_per_minute)
        )

    def messages(
        self, token: str, body: object, headers: dict[str, str] | None = None
    ) -> UpstreamReply:
        """Forward one Messages API call for the task the token names, within what its
        budgets have left (llm_budget.py). A streamed reply's `chunks` settle its usage
        as they end; iterate (or close) them.

        :raises ProxyRefusal: refused here (token, body, model, budget, configuration).
        :raises UpstreamError: Anthropic's own answer, passed back as is.
        """
        task = self._task_for(token)
        body = self._checked(task, body, ALLOWED_PARAMS)
        requested = body.get("max_tokens")
        if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
            raise _invalid("max_tokens must be a positive integer.")
        price = self._price(body["model"])
        input_estimate, cached = estimate_input_tokens(body)
        try:
            record, max_tokens = self.budget.reserve(
                task, price, input_estimate, cached, requested, utcnow()
            )
        except BudgetExceeded as spent:
            raise ProxyRefusal(429, "budget_exceeded", str(spent), retry=False) from None
        except BudgetBusy as busy:
            raise ProxyRefusal(
                429, "rate_limit_error", str(busy), retry_after=busy.retry_after
            ) from None
        try:
            reply = self.upstream.forward(
                "/v1/messages",
                _clamped(body, max_tokens),
                headers=_forwarded_headers(headers),
                query={"beta": "true"},
            )
        except BaseException:
            self.budget.settle(record, Spent(), utcnow())  # refused upstream: nothing spent
            raise
        if reply.chunks is None:
            self._settle(record, price, (reply.body or {}).get("usage") or {})
        else:
            reply.chunks = self._metered(record, price, reply.chunks)
        return reply

    def count_tokens(self, token: str, body: object, headers: dict[str, str] | None = None):
        """`POST /v1/messages/count_tokens` for the task's caller: free upstream, but on
        the platform's key and its rate limits, so throttled per task and counted."""
        task = self._task_for(token)
        body = self._checked(task, body, COUNT_TOKENS_PARAMS)
        try:
            self.count_tokens_rate.take(task["id"])
        except ApiError as limited:
            raise ProxyRefusal(
                429, "rate_limit_error", limited.message, retry_after=limited.retry_after
            ) from None
        reply = self.upstream.forward(
            "/v1/messages/count_tokens",
            body,
            headers=_forwarded_headers(headers),
            query={"beta": "true"},
        )
        try:
            self.store.count_tokens_call(task["id"], task["owner"], utcnow())
        except Exception:  # a count is not worth failing an answered call for
            log.warning("count_tokens call of %s not counted", task["id"], exc_info=True)
        return reply

    def _checked(self, task: TaskDoc, body: object, allowed: set[str]) -> dict:
        if not self.upstream.configured:
            raise ProxyRefusal(503, "llm_not_configured", LLM_NOT_CONFIGURED["message"])
        if not isinstance(body, dict):
            raise _invalid("The body must be a JSON object.")
        unknown = set(body) - allowed
        if unknown:
            raise _invalid(f"Unsupported parameters: {sorted(unknown)}")
        self._check_model(task, body.get("model"))
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise _invalid("tools must be a list.")
        for tool in tools:
            kind = str(tool.get("type") or "") if isinstance(tool, dict) else ""
            if kind.startswith(REFUSED_TOOL_PREFIXES):
                raise _invalid(f"tools of type {kind!r} are not available to tasks.")
        return body

    def _check_model(self, task: TaskDoc, model: object) -> None:
        """The agent's model is the ceiling: it, or a helper model (HELPER_MODELS) that
        costs no more; never another, even one on the allow-list."""
        agent = task.get("agent")
        agent_model = agent["model"] if agent else None
        helpers = [
            h for h in self.helper_models if agent_model and self.prices.no_dearer(h, agent_model)
        ]
        if (model == agent_model and model in self.allowed_models) or model in helpers:
            return
        if model not in self.allowed_models and model not in self.helper_models:
            raise _invalid(
                f"model {model!r} is not allowed; allowed: {', '.join(self.allowed_models)}"
            )
        raise _invalid(
            f"model {model!r} is not this task's: its agent uses {agent_model!r}, and a task "
            f"may call only that model and its helper models ({', '.join(helpers) or 'none'})."
        )

    def _price(self, model: str) -> ModelPrice:
        price = self.prices.price(model)
        if price is None:
            raise ProxyRefusal(
                400,
                "invalid_request_error",
                f"model {model!r} has no price in the price table (MODEL_PRICES); the "
                "operator must add one before it can be used.",
                retry=False,
            )
        return price

    def _metered(self, record: CallRecord, price: ModelPrice, chunks: Iterator[bytes]):
        """Relay the stream; settle its usage once, when it ends however it ends (a
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
            self._settle(record, price, meter.usage)

    def _settle(self, record: CallRecord, price: ModelPrice, usage: dict) -> None:
        # Cached prompt tokens (read and written) are input too.
        input_tokens = sum(
            int(usage.get(name) or 0)
            for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        spent = Spent(
            input_tokens=input_tokens,
            output_tokens=int(usage.get("output_tokens") or 0),
            nanos=price.cost_nanos(usage),
            answered=True,
            usage={k: v for k, v in usage.items() if isinstance(v, int)},
        )
        self.budget.settle(record, spent, utcnow())

    def authenticate(self, token: str) -> str:
        """The task id a valid task token names (its signature only: no I/O), so a
        caller without one is refused before its body is read.

        :raises ProxyRefusal: 401 not a valid task token.
        """
        parts = token.split(".")
        task_id = parts[1] if len(parts) == 4 and token.isascii() else ""
        try:
            verify_task_token(self.token_key, token, task_id)
        except InvalidTaskToken as error:
            raise ProxyRefusal(
                401, "authentication_error", f"Invalid task token: {error}", retry=False
            ) from None
        return task_id

    def _task_for(self, token: str) -> TaskDoc:
        task_id = self.authenticate(token)
        task = self.store.get_task(task_id)
        if task is None or task["kind"] != "agent" or task["status"] != TaskStatus.RUNNING:
            raise ProxyRefusal(
                403,
                "permission_error",
                "The token's task is not a running agent task.",
                retry=False,
            )
        return task


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
