"""Webhooks: a finished task POSTed to the URL its owner gave, signed per the Standard
Webhooks specification (https://www.standardwebhooks.com/) with the owner's secret.

The delivery is a Firestore document (`webhookDeliveries/{taskId}`) written in the
transaction that settles the task, so it cannot be lost, and it survives any API
restart: every instance's delivery loop (and the scheduled reconcile call) looks
for due deliveries, leases one in a transaction, POSTs, and either marks it
delivered or schedules the next attempt with exponential backoff until
WEBHOOK_RETRY_HOURS after the task ended. Every attempt is an event `webhook` on
the task, with the receiver's status code.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from api.adapters import webhook_http
from api.adapters.firestore_store import FirestoreStore
from api.errors import ApiError
from api.models.documents import DeliveryDoc, TaskDoc, WebhookSecretsDoc

log = logging.getLogger(__name__)

# An attempt holds its delivery this long; a crashed attempt is retried after it.
LEASE_SECONDS = 60
MAX_BACKOFF_SECONDS = 3600
# After a rotation, deliveries are signed with the old secret too for this long, so
# receivers can switch over without dropping any (the spec allows several signatures).
ROTATION_GRACE = timedelta(hours=24)
# A pass sends at most this many deliveries, all at once, and ends when the slowest
# attempt does (WEBHOOK_TIMEOUT_SECONDS at most); each owner gets at most
# PER_OWNER_PER_PASS of them, taken from the oldest DUE_SCAN due ones. So one user's
# dead receivers delay another user's delivery by one pass, one attempt's timeout,
# however many deliveries they have due (issue 21).
DELIVERIES_PER_PASS = 20
PER_OWNER_PER_PASS = 2
DUE_SCAN = 200
SENDERS = DELIVERIES_PER_PASS


def utcnow() -> datetime:
    return datetime.now(UTC)


def delivery_record(task: TaskDoc, now: datetime) -> DeliveryDoc:
    """What the settling transaction writes for a task with a webhook."""
    return {
        "taskId": task["id"],
        "owner": task["owner"],
        "url": task["webhookUrl"],
        "status": "pending",
        "attempts": 0,
        "createdAt": now,
        "nextAttemptAt": now,
    }


def fair_share(due: list[DeliveryDoc]) -> list[DeliveryDoc]:
    """The deliveries of one pass: the oldest first, at most PER_OWNER_PER_PASS of each
    owner, at most DELIVERIES_PER_PASS in all."""
    taken: dict[str, int] = {}
    chosen: list[DeliveryDoc] = []
    for delivery in due:
        owner = delivery["owner"]
        if taken.get(owner, 0) < PER_OWNER_PER_PASS:
            taken[owner] = taken.get(owner, 0) + 1
            chosen.append(delivery)
            if len(chosen) == DELIVERIES_PER_PASS:
                break
    return chosen


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookService:
    def __init__(
        self,
        store: FirestoreStore,
        *,
        render_task,
        allow_loopback: bool,
        retry_hours: float,
        first_retry_seconds: float,
    ) -> None:
        self.store = store
        self.render_task = render_task
        self.allow_loopback = allow_loopback
        self.retry_for = timedelta(hours=retry_hours)
        self.first_retry = first_retry_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._senders = ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook")

    # -- URLs and secrets ----------------------------------------------------------

    def check_url(self, url: str) -> None:
        """At creation: 422 `webhook_url_refused` unless the URL may be called."""
        try:
            webhook_http.resolve(url, allow_loopback=self.allow_loopback)
        except webhook_http.WebhookRefused as error:
            raise ApiError(422, "webhook_url_refused", f"webhookUrl {error}.") from None

    def secret(self, owner: str) -> WebhookSecretsDoc:
        """The owner's signing secret, made on first use."""
        record = self.store.get_webhook_secrets(owner)
        if record is None:
            fresh: WebhookSecretsDoc = {"secret": new_secret(), "createdAt": utcnow()}
            self.store.create_webhook_secrets_if_absent(owner, fresh)
            record = self.store.get_webhook_secrets(owner)
        return cast(WebhookSecretsDoc, record)  # exists: created just above if not before

    def rotate(self, owner: str) -> WebhookSecretsDoc:
        """A new secret; the old one still signs for ROTATION_GRACE."""
        old = self.secret(owner)
        now = utcnow()

        def swap(
            current: WebhookSecretsDoc | None,
        ) -> tuple[dict[str, Any], WebhookSecretsDoc]:
            previous = current or old
            record: WebhookSecretsDoc = {
                "secret": new_secret(),
                "createdAt": now,
                "previous": previous["secret"],
                "previousUntil": now + ROTATION_GRACE,
            }
            return dict(record), record

        return self.store.change_webhook_secrets(owner, swap)

    # -- the delivery loop -----------------------------------------------------------

    def start(self, interval: float) -> None:
        def loop() -> None:
            while not self._stopping.wait(interval):
                try:
                    self.deliver_due()
                except Exception:
                    log.exception("webhook delivery pass failed")

        self._thread = threading.Thread(target=loop, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._senders.shutdown(wait=False, cancel_futures=True)

    def deliver_due(self) -> int:
        """Lease the due deliveries and send them (in parallel); how many were sent."""
        due = fair_share(self.store.due_deliveries(utcnow(), DUE_SCAN))
        leased = [d for d in (self._lease(d["taskId"]) for d in due) if d is not None]
        return sum(self._senders.map(self._attempt, leased))

    def _lease(self, task_id: str) -> DeliveryDoc | None:
        now = utcnow()

        def lease(
            delivery: DeliveryDoc | None,
        ) -> tuple[dict[str, Any] | None, DeliveryDoc | None]:
            if delivery is None or delivery["status"] != "pending":
                return None, None
            if delivery["nextAttemptAt"] > now:
                return None, None  # another instance has it, or it is not due yet
            attempts = delivery["attempts"] + 1
            lease_until = now + timedelta(seconds=LEASE_SECONDS)
            leased: DeliveryDoc = {**delivery, "attempts": attempts}
            return {"attempts": attempts, "nextAttemptAt": lease_until}, leased

        return self.store.change_delivery(task_id, lease)

    def _attempt(self, delivery: DeliveryDoc) -> int:
        task_id, attempt = delivery["taskId"], delivery["attempts"]
        task = self.store.get_task(task_id)
        if task is None:
            self._finish(task_id, "gone", None)
            return 0
        body = json.dumps(self.render_task(task)).encode()
        status_code, error = None, None
        try:
            status_code = webhook_http.post(
                delivery["url"],
                body,
                self._headers(delivery["owner"], task_id, body),
                allow_loopback=self.allow_loopback,
            )
        except webhook_http.WebhookRefused as refused:
            error = f"refused: {refused}"
        except OSError as failure:
            error = f"could not reach the receiver: {failure}"
        delivered = status_code is not None and 200 <= status_code < 300
        event: dict[str, Any] = {
            "statusCode": status_code,
            "attempt": attempt,
            "delivered": delivered,
        }
        if error:
            event["error"] = error[:500]
        self.store.append_task_event(task_id, "webhook", event, utcnow())
        if delivered:
            self._finish(task_id, "delivered", status_code)
        elif error and error.startswith("refused") or status_code == 410:
            self._finish(task_id, "refused" if error else "gone", status_code)
        else:
            self._retry_later(delivery, status_code)
        return 1

    def _headers(self, owner: str, task_id: str, body: bytes) -> dict[str, str]:
        from standardwebhooks import Webhook

        now = utcnow()
        record = self.secret(owner)
        keys = [record["secret"]]
        if record.get("previous") and record.get("previousUntil", now) > now:
            keys.append(record["previous"])
        message_id = f"msg_{task_id}"  # the same on every retry: receivers dedupe on it
        signatures = " ".join(Webhook(key).sign(message_id, now, body.decode()) for key in keys)
        return {
            "Content-Type": "application/json",
            "User-Agent": "agent-platform-webhooks",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signatures,
        }

    def _retry_later(self, delivery: DeliveryDoc, status_code: int | None) -> None:
        now = utcnow()
        backoff = min(MAX_BACKOFF_SECONDS, self.first_retry * 2 ** (delivery["attempts"] - 1))
        next_at = now + timedelta(seconds=backoff * (0.8 + 0.4 * random.random()))
        if next_at > delivery["createdAt"] + self.retry_for:
            self._finish(delivery["taskId"], "failed", status_code)
            return
        self.store.update_delivery(
            delivery["taskId"],
            {"nextAttemptAt": next_at, "lastStatusCode": status_code},
        )

    def _finish(self, task_id: str, status: str, status_code: int | None) -> None:
        self.store.update_delivery(
            task_id,
            {"status": status, "lastStatusCode": status_code, "finishedAt": utcnow()},
        )
