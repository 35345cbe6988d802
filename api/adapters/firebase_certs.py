"""The certificates that sign Firebase ID tokens, fetched over HTTPS when first needed
and cached for as long as the response's `Cache-Control: max-age` says (bounded).

Google publishes them as `{"<key id>": "<x509 PEM>"}` and rotates them every few
hours, announcing each new key before it signs anything, so the cached set always
holds the key of a current token:
https://firebase.google.com/docs/auth/admin/verify-id-tokens#verify_id_tokens_using_a_third-party_jwt_library
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 5.0
# Without a max-age we keep the certificates this long; with one we honour it, but
# never less than the floor (a max-age=0 must not mean a fetch per request) nor more
# than the ceiling (a rotated-out key must stop being trusted).
DEFAULT_MAX_AGE_SECONDS = 300
MIN_MAX_AGE_SECONDS = 60
MAX_MAX_AGE_SECONDS = 6 * 3600
# After a failed fetch, requests are refused at once for this long instead of each
# holding a server thread for the fetch timeout; clients get it as Retry-After.
RETRY_AFTER_SECONDS = 5

_MAX_AGE = re.compile(r"max-age=(\d+)")


class CertsUnavailable(Exception):
    """The certificates could not be fetched; nothing can be verified until they are."""

    def __init__(self, message: str, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FirebaseCerts:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._certs: dict[str, str] | None = None
        self._expires_at = 0.0
        self._retry_at = 0.0

    def get(self) -> dict[str, str]:
        """The current certificates by key id; raises CertsUnavailable."""
        # One fetch at a time: threads that arrive meanwhile wait for its result.
        with self._lock:
            now = self._clock()
            if self._certs is not None and now < self._expires_at:
                return self._certs
            if now < self._retry_at:
                raise CertsUnavailable(
                    "The token certificates could not be fetched; retry shortly.",
                    retry_after=max(1, round(self._retry_at - now)),
                )
            try:
                certs, max_age = self._fetch()
            except CertsUnavailable:
                self._retry_at = self._clock() + RETRY_AFTER_SECONDS
                raise
            self._certs, self._expires_at = certs, self._clock() + max_age
            return certs

    def _fetch(self) -> tuple[dict[str, str], int]:
        import httpx

        try:
            reply = httpx.get(self.url, timeout=self.timeout)
        except httpx.HTTPError as error:
            log.warning("fetching Firebase certificates from %s failed: %r", self.url, error)
            raise CertsUnavailable("The token certificates could not be fetched.") from None
        if reply.status_code != 200:
            log.warning("Firebase certificates at %s answered %s", self.url, reply.status_code)
            raise CertsUnavailable("The token certificates could not be fetched.")
        try:
            certs = reply.json()
        except ValueError:
            certs = None
        if (
            not isinstance(certs, dict)
            or not certs
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in certs.items())
        ):
            log.error("Firebase certificates at %s are not a {key id: PEM} object", self.url)
            raise CertsUnavailable("The token certificates could not be read.")
        return certs, _max_age(reply.headers.get("Cache-Control", ""))


def _max_age(cache_control: str) -> int:
    match = _MAX_AGE.search(cache_control)
    seconds = int(match.group(1)) if match else DEFAULT_MAX_AGE_SECONDS
    return min(max(seconds, MIN_MAX_AGE_SECONDS), MAX_MAX_AGE_SECONDS)
