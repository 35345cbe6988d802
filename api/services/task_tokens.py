"""HMAC task tokens: each names one task and expires.

A runner holds nothing else: no Google credentials, no Anthropic key. The token
authorizes only its own task's internal endpoints (and, later, its LLM proxy calls).
Format: ``tt1.<task id>.<expiry unix seconds>.<urlsafe b64 HMAC-SHA256>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

PREFIX = "tt1"


class InvalidTaskToken(Exception):
    pass


def _sign(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_task_token(key: bytes, task_id: str, expires_at: float) -> str:
    payload = f"{PREFIX}.{task_id}.{int(expires_at)}"
    return f"{payload}.{_sign(key, payload)}"


def verify_task_token(key: bytes, token: str, task_id: str, now: float | None = None) -> None:
    """Raise InvalidTaskToken unless `token` is ours, for `task_id`, and unexpired."""
    if not token.isascii():
        raise InvalidTaskToken("malformed task token")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != PREFIX:
        raise InvalidTaskToken("malformed task token")
    payload = ".".join(parts[:3])
    if not hmac.compare_digest(_sign(key, payload), parts[3]):
        raise InvalidTaskToken("bad task token signature")
    if parts[1] != task_id:  # task ids are not secret: a plain comparison is fine
        raise InvalidTaskToken("task token is for another task")
    try:
        expires_at = int(parts[2])
    except ValueError:
        raise InvalidTaskToken("malformed task token") from None
    if (now if now is not None else time.time()) >= expires_at:
        raise InvalidTaskToken("task token expired")
