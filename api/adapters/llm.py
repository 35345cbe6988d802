"""The LLM upstream: the Anthropic Messages API through the official SDK's client.

The key comes from Secret Manager (ANTHROPIC_API_KEY_SECRET) or, locally, from
ANTHROPIC_API_KEY; ANTHROPIC_BASE_URL points the SDK elsewhere (tests run a scripted
Messages API on loopback). Requests are passed through as raw JSON (the SDK's
`post` with `cast_to=httpx2.Response`), so body fields the SDK's typed methods do
not know yet (Claude Code sends some) reach the API unchanged, and a streamed answer
is relayed as its bytes arrive.

No retries here: the caller (Claude Code's own bounded retries, or the runner's
Messages loop) is the one retry layer, and it sees the upstream's `retry-after`
(issue 9: a 429 once cost 16 upstream calls, 4 here times 4 in the runner).
https://docs.anthropic.com/en/api/errors
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from api import config

if TYPE_CHECKING:
    import anthropic

log = logging.getLogger(__name__)

# Words in an error message that mean the account itself is out of money or over its
# spend limit, as opposed to a momentary rate limit: never worth retrying.
SPEND_LIMIT_MARKERS = ("spend limit", "credit balance", "billing", "usage limit")
# Upstream response headers a caller may see (rate-limit advice, request ids).
PASSED_HEADERS = ("retry-after", "retry-after-ms", "request-id", "x-should-retry")


class UpstreamError(Exception):
    """An answer to pass back to the runner as is: HTTP status, JSON body, headers."""

    def __init__(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class UpstreamReply:
    """A successful answer: JSON (`body`) or a stream of SSE bytes (`chunks`)."""

    status: int
    headers: dict[str, str]
    body: dict | None = None
    chunks: Iterator[bytes] | None = None


def error_body(kind: str, message: str) -> dict:
    """The Messages API's error shape, which the runner's SDK turns into exceptions."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def is_spend_limit(body: dict) -> bool:
    message = str((body.get("error") or {}).get("message", "")).lower()
    return any(marker in message for marker in SPEND_LIMIT_MARKERS)


class AnthropicUpstream:
    def __init__(self, *, api_key: str | None, api_key_secret: str | None, base_url: str | None):
        self._api_key = api_key
        self._api_key_secret = api_key_secret
        self._base_url = base_url
        self._client: anthropic.Anthropic | None = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self._api_key or self._api_key_secret)

    def warm_up(self) -> None:
        """Build the client ahead of the first call: importing the SDK takes seconds
        on a busy instance, and the first agent task would wait for it."""
        if self.configured:
            try:
                self._get_client()
            except Exception:  # the first real call reports it properly
                log.warning("could not prepare the LLM client", exc_info=True)

    def _get_client(self):
        with self._lock:
            if self._client is None:
                import anthropic

                key = self._api_key
                if key is None:
                    from api.adapters.secrets import read_secret

                    key = read_secret(self._api_key_secret)
                self._client = anthropic.Anthropic(
                    api_key=key,
                    base_url=self._base_url,
                    max_retries=0,
                    timeout=config.LLM_UPSTREAM_TIMEOUT_SECONDS,
                )
            return self._client

    def forward(
        self, path: str, body: dict, *, headers: dict[str, str], query: dict[str, str]
    ) -> UpstreamReply:
        """POST `body` to `path` (e.g. "/v1/messages"); stream when body["stream"].

        :raises UpstreamError: the upstream refused, or could not be reached.
        """
        import anthropic
        import httpx2

        client = self._get_client()
        stream = body.get("stream") is True
        try:
            response = client.post(
                path,
                body=body,
                cast_to=httpx2.Response,
                options={"headers": headers, "params": query},
                stream=stream,
            )
        except anthropic.APIStatusError as error:
            payload = _json_or_message(error)
            passed = _passed_headers(error.response.headers)
            if is_spend_limit(payload):
                passed["x-should-retry"] = "false"
            raise UpstreamError(error.status_code, payload, passed) from None
        except anthropic.APIConnectionError as error:
            message = f"The LLM upstream is unreachable: {error}"
            raise UpstreamError(502, error_body("api_error", message)) from None
        passed = _passed_headers(response.headers)
        if not stream:
            try:
                return UpstreamReply(response.status_code, passed, body=response.json())
            finally:
                response.close()
        return UpstreamReply(response.status_code, passed, chunks=_chunks(response))


def _chunks(response) -> Iterator[bytes]:
    """The stream's bytes as they arrive; closing the generator closes the upstream
    connection (a runner that hangs up stops the generation it no longer reads)."""
    import httpx2

    try:
        yield from response.iter_bytes()  # as received: a chunk size would buffer
    except httpx2.HTTPError as error:
        log.warning("the LLM upstream's stream broke: %s", error)
        # The client sees a stream without message_stop, and falls back or retries.
    finally:
        response.close()


def _passed_headers(headers) -> dict[str, str]:
    return {name: headers[name] for name in PASSED_HEADERS if name in headers}


def _json_or_message(error) -> dict:
    try:
        payload = error.response.json()
        if isinstance(payload, dict):
            return payload
    except ValueError:
        pass
    return error_body("api_error", str(error))
