"""Who may call POST /internal/v1/reconcile: Cloud Scheduler with an OIDC token for
the RECONCILE_INVOKER service account, or anyone holding RECONCILE_SECRET.
https://cloud.google.com/scheduler/docs/http-target-auth#using-oidc

Google's signing certificates are fetched once and cached (adapters/firebase_certs.py
honours their max-age), so a caller with a bad token costs no network call; when they
cannot be fetched, the answer is 503 with Retry-After."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping

from api.adapters.firebase_certs import CertsUnavailable, FirebaseCerts
from api.errors import BackendUnavailable

log = logging.getLogger(__name__)

RECONCILE_PATH = "/internal/v1/reconcile"
# The issuers of Google-signed OIDC tokens.
# https://developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")


class ReconcileAuth:
    def __init__(self, settings, certs: FirebaseCerts | None = None) -> None:
        self.settings = settings
        self.certs = certs or FirebaseCerts(settings.google_oidc_certs_url)

    def authorized(self, headers: Mapping[str, str]) -> bool:
        """Whether the caller may reconcile; BackendUnavailable when Google's
        certificates cannot be fetched to tell."""
        secret = headers.get("X-Reconcile-Secret")
        if secret and self.settings.reconcile_secret:
            return hmac.compare_digest(secret.encode(), self.settings.reconcile_secret.encode())
        bearer = headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and self.settings.reconcile_invoker:
            return self._verified_invoker(bearer.removeprefix("Bearer ").strip())
        return False

    def _verified_invoker(self, token: str) -> bool:
        from google.auth import jwt

        try:
            kid = jwt.decode_header(token).get("kid")
        except Exception:
            return False  # not a JWT: refused without asking anyone
        try:
            certs = self.certs.get()
        except CertsUnavailable as error:
            raise BackendUnavailable(
                "The scheduler's token cannot be verified right now; retry shortly.",
                retry_after=error.retry_after,
            ) from None
        if kid not in certs:
            return False
        audience = f"{(self.settings.public_url or '').rstrip('/')}{RECONCILE_PATH}"
        try:
            claims = jwt.decode(token, certs=certs, audience=audience)
        except Exception as error:  # google-auth raises ValueError and its own errors
            log.warning("reconcile token refused: %s", type(error).__name__)
            return False
        return (
            claims.get("iss") in GOOGLE_ISSUERS
            and claims.get("email") == self.settings.reconcile_invoker
            and bool(claims.get("email_verified"))
        )
