"""The LLM upstream: the Anthropic Messages API through the official SDK.

The key comes from Secret Manager (ANTHROPIC_API_KEY_SECRET) or, locally, from
ANTHROPIC_API_KEY; ANTHROPIC_BASE_URL points the SDK elsewhere (tests run a scripted
Messages API on loopback). The SDK's own retries are off: we retry 429 and 529
ourselves so that `retry-after` is honoured within a bounded wait and a spend-limit
error is never retried (retrying cannot help, and each attempt may be billed).
https://docs.anthropic.com/en/api/errors
"""

from __future__ import annotations

import logging
import threading
import time

from api import config

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = {429, 529}
# Words in an error message that mean the account itself is out of money or over its
# spend limit, as opposed to a momentary rate limit.
SPEND_LIMIT_MARKERS = ("spend limit", "credit balance", "billing", "usage limit")


class UpstreamError(Exception):
    """An answer to pass back to the runner as is: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict, retry_after: str | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.retry_after = retry_after


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
        self._client = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self._api_key or self._api_key_secret)

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

    def create_message(self, body: dict) -> dict:
        """Forward one Messages API request; return the upstream's JSON answer.

        :raises UpstreamError: the upstream refused, or could not be reached.
        """
        import anthropic

        client = self._get_client()
        for attempt in range(config.LLM_UPSTREAM_RETRIES + 1):
            try:
                raw = client.messages.with_raw_response.create(**body)
                return raw.http_response.json()
            except TypeError as error:  # a parameter the Messages API does not have
                raise UpstreamError(400, error_body("invalid_request_error", str(error))) from None
            except anthropic.APIStatusError as error:
                payload = _json_or_message(error)
                retry_after = error.response.headers.get("retry-after")
                retryable = error.status_code in RETRYABLE_STATUSES and not is_spend_limit(payload)
                if not retryable or attempt == config.LLM_UPSTREAM_RETRIES:
                    raise UpstreamError(error.status_code, payload, retry_after) from None
                delay = _delay(retry_after, attempt)
                log.warning(
                    "LLM upstream answered %d; retrying in %.1f s", error.status_code, delay
                )
                time.sleep(delay)
            except anthropic.APIConnectionError as error:
                raise UpstreamError(
                    502, error_body("api_error", f"The LLM upstream is unreachable: {error}")
                ) from None
        raise AssertionError("unreachable")


def _delay(retry_after: str | None, attempt: int) -> float:
    try:
        seconds = float(retry_after) if retry_after is not None else 2.0**attempt
    except ValueError:
        seconds = 2.0**attempt
    return max(0.0, min(seconds, config.LLM_MAX_RETRY_AFTER_SECONDS))


def _json_or_message(error) -> dict:
    try:
        payload = error.response.json()
        if isinstance(payload, dict):
            return payload
    except ValueError:
        pass
    return error_body("api_error", str(error))
