"""The LLM proxy: the only way a runner reaches Claude.

The runner's SDK calls `{API_URL}/internal/v1/llm/v1/messages` with its task token as
the API key. Here the token is checked (it names a running agent task), then the model
against the allow-list, then the task's token budget and its owner's daily budget;
only then is the request forwarded with the real key, and the usage recorded, once,
in the transaction that also updates the task's running total. The real key never
leaves this process.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from api.adapters.firestore_store import USAGE, Change
from api.adapters.llm import AnthropicUpstream, UpstreamError, error_body
from api.services.state_machine import TaskStatus, utcnow
from api.services.task_tokens import InvalidTaskToken, verify_task_token
from api.services.tasks import LLM_NOT_CONFIGURED

log = logging.getLogger(__name__)

# Messages API parameters a runner may send; anything else is refused.
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
}


class ProxyRefusal(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(kind, message)


def _usage_doc_id(owner: str, now: datetime) -> str:
    return f"{owner}_{now.astimezone(UTC).strftime('%Y%m%d')}"


class LlmProxy:
    def __init__(
        self,
        store,
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

    def messages(self, token: str, body: object) -> dict:
        """Forward one Messages API call for the task the token names.

        :raises ProxyRefusal: refused here (token, model, budget, configuration).
        :raises UpstreamError: Anthropic's own answer, passed back as is.
        """
        task = self._task_for(token)
        if not self.upstream.configured:
            raise ProxyRefusal(503, "llm_not_configured", LLM_NOT_CONFIGURED["message"])
        if not isinstance(body, dict):
            raise ProxyRefusal(400, "invalid_request_error", "The body must be a JSON object.")
        unknown = set(body) - ALLOWED_PARAMS
        if unknown:
            raise ProxyRefusal(
                400, "invalid_request_error", f"Unsupported parameters: {sorted(unknown)}"
            )
        if body.get("model") not in self.allowed_models:
            raise ProxyRefusal(
                400,
                "invalid_request_error",
                f"model {body.get('model')!r} is not allowed; allowed: "
                f"{', '.join(self.allowed_models)}",
            )
        remaining = self._remaining_budget(task)
        requested = body.get("max_tokens")
        if not isinstance(requested, int) or requested < 1:
            raise ProxyRefusal(
                400, "invalid_request_error", "max_tokens must be a positive integer."
            )
        forwarded = dict(body, max_tokens=min(requested, remaining))
        reply = self.upstream.create_message(forwarded)
        self._record_usage(task, reply.get("usage") or {})
        return reply

    def _task_for(self, token: str) -> dict:
        parts = token.split(".")
        task_id = parts[1] if len(parts) == 4 and token.isascii() else ""
        try:
            verify_task_token(self.token_key, token, task_id)
        except InvalidTaskToken as error:
            raise ProxyRefusal(
                401, "authentication_error", f"Invalid task token: {error}"
            ) from None
        task = self.store.get_task(task_id)
        if task is None or task["kind"] != "agent" or task["status"] != TaskStatus.RUNNING:
            raise ProxyRefusal(
                403, "permission_error", "The token's task is not a running agent task."
            )
        return task

    def _remaining_budget(self, task: dict) -> int:
        usage = task.get("llmUsage") or {}
        used = usage.get("inputTokens", 0) + usage.get("outputTokens", 0)
        task_left = task["input"]["maxTokens"] - used
        if task_left <= 0:
            raise ProxyRefusal(
                429,
                "budget_exceeded",
                f"The task's token budget ({task['input']['maxTokens']}) is spent.",
            )
        daily = self.store.get_doc(f"{USAGE}/{_usage_doc_id(task['owner'], utcnow())}") or {}
        user_left = self.user_daily_token_budget - daily.get("llmTokens", 0)
        if user_left <= 0:
            raise ProxyRefusal(
                429,
                "budget_exceeded",
                f"The daily token budget ({self.user_daily_token_budget}) of this task's "
                "owner is spent; it resets at 00:00 UTC.",
            )
        return min(task_left, user_left)

    def _record_usage(self, task: dict, usage: dict) -> None:
        # Cached prompt tokens are input too (and the runner counts them so).
        input_tokens = sum(
            int(usage.get(name) or 0)
            for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        output_tokens = int(usage.get("output_tokens") or 0)
        now = utcnow()

        def mutate(current: dict | None, read) -> Change | None:
            if current is None:
                return None
            totals = dict(current.get("llmUsage") or {})
            totals["inputTokens"] = totals.get("inputTokens", 0) + input_tokens
            totals["outputTokens"] = totals.get("outputTokens", 0) + output_tokens
            totals["calls"] = totals.get("calls", 0) + 1
            return Change(
                updates={"llmUsage": totals},
                increments=[
                    (
                        USAGE,
                        _usage_doc_id(current["owner"], now),
                        {
                            "llmInputTokens": input_tokens,
                            "llmOutputTokens": output_tokens,
                            "llmTokens": input_tokens + output_tokens,
                            "llmCalls": 1,
                        },
                    )
                ],
            )

        self.store.update_task(task["id"], mutate, now)


__all__ = ["LlmProxy", "ProxyRefusal", "UpstreamError"]
