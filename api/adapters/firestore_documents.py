"""The store's verbs for the documents beside tasks and conversations: agents, API
keys, uploads, webhook deliveries and secrets, and the per-owner counters read
outside a transition (usage, tasks running). Each names its document through
firestore_paths.py, so the services never build a path."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, cast

from api.adapters.firestore_paths import (
    AGENTS,
    API_KEYS,
    EVENTS,
    agent_path,
    api_key_path,
    delivery_path,
    running_path,
    task_path,
    upload_path,
    usage_path,
    webhook_secrets_path,
)
from api.models.documents import (
    AgentDoc,
    ApiKeyDoc,
    DeliveryDoc,
    UploadDoc,
    UsageDoc,
    WebhookSecretsDoc,
)

Result = TypeVar("Result")
# Sees a document (None when absent) and returns (fields to merge into it, or None to
# write nothing; what the verb returns). Runs in a transaction and may be retried.
DocumentChange = Callable[[Any], tuple[dict[str, Any] | None, Result]]


class DocumentStore:
    # FirestoreStore's generic verbs
    get_doc: Callable[[str], Any]
    create_doc: Callable[[str, dict[str, Any]], None]
    create_doc_if_absent: Callable[[str, dict[str, Any]], bool]
    update_doc: Callable[[str, dict[str, Any]], None]
    delete_tree: Callable[[str, tuple[str, ...]], None]
    list_owned: Callable[..., list[Any]]
    run_transaction: Callable[..., Any]

    def _change(self, path: str, change: DocumentChange[Result]) -> Result:
        """Read one document and merge what `change` returns into it, in a transaction."""

        def work(read: Callable[[str], Any], write: Callable[..., None]) -> Result:
            updates, result = change(read(path))
            if updates is not None:
                write(path, updates, merge=True)
            return result

        return cast(Result, self.run_transaction(work))

    # -- agents ----------------------------------------------------------------------

    def create_agent(self, agent: AgentDoc) -> None:
        self.create_doc(agent_path(agent["id"]), dict(agent))

    def get_agent(self, agent_id: str) -> AgentDoc | None:
        return cast(AgentDoc | None, self.get_doc(agent_path(agent_id)))

    def list_agents(self, owner: str, *, limit: int) -> list[AgentDoc]:
        return self.list_owned(AGENTS, owner, limit=limit, after_id=None)

    def update_agent(self, agent_id: str, changes: dict[str, Any]) -> bool:
        """Apply `changes`; False when the agent is gone (a DELETE won the race)."""
        from google.api_core import exceptions as gexc

        try:
            self.update_doc(agent_path(agent_id), changes)
        except gexc.NotFound:
            return False
        return True

    def delete_agent(self, agent_id: str) -> None:
        self.delete_tree(agent_path(agent_id), ())

    def delete_task(self, task_id: str) -> None:
        """A task and its events."""
        self.delete_tree(task_path(task_id), (EVENTS,))

    # -- API keys --------------------------------------------------------------------

    def create_api_key(self, record: ApiKeyDoc) -> None:
        self.create_doc(api_key_path(record["id"]), dict(record))

    def get_api_key(self, key_id: str) -> ApiKeyDoc | None:
        return cast(ApiKeyDoc | None, self.get_doc(api_key_path(key_id)))

    def list_api_keys(self, owner: str, *, limit: int, after_id: str | None) -> list[ApiKeyDoc]:
        return self.list_owned(API_KEYS, owner, limit=limit, after_id=after_id)

    def update_api_key(self, key_id: str, changes: dict[str, Any]) -> None:
        self.update_doc(api_key_path(key_id), changes)

    # -- uploads ---------------------------------------------------------------------

    def create_upload(self, record: UploadDoc) -> None:
        self.create_doc(upload_path(record["id"]), dict(record))

    def get_upload(self, upload_id: str) -> UploadDoc | None:
        return cast(UploadDoc | None, self.get_doc(upload_path(upload_id)))

    def update_upload(self, upload_id: str, changes: dict[str, Any]) -> None:
        self.update_doc(upload_path(upload_id), changes)

    def change_upload(self, upload_id: str, change: DocumentChange[Result]) -> Result:
        return self._change(upload_path(upload_id), change)

    # -- webhooks --------------------------------------------------------------------

    def get_delivery(self, task_id: str) -> DeliveryDoc | None:
        return cast(DeliveryDoc | None, self.get_doc(delivery_path(task_id)))

    def update_delivery(self, task_id: str, changes: dict[str, Any]) -> None:
        self.update_doc(delivery_path(task_id), changes)

    def change_delivery(self, task_id: str, change: DocumentChange[Result]) -> Result:
        return self._change(delivery_path(task_id), change)

    def get_webhook_secrets(self, owner: str) -> WebhookSecretsDoc | None:
        return cast(WebhookSecretsDoc | None, self.get_doc(webhook_secrets_path(owner)))

    def create_webhook_secrets_if_absent(self, owner: str, record: WebhookSecretsDoc) -> bool:
        return self.create_doc_if_absent(webhook_secrets_path(owner), dict(record))

    def change_webhook_secrets(self, owner: str, change: DocumentChange[Result]) -> Result:
        return self._change(webhook_secrets_path(owner), change)

    # -- per-owner counters ------------------------------------------------------------

    def get_usage(self, owner: str, now: datetime) -> UsageDoc:
        """The owner's counters for `now`'s UTC day (empty before the first)."""
        return cast(UsageDoc, self.get_doc(usage_path(owner, now)) or {})

    def running_count(self, owner: str) -> int:
        """How many of the owner's tasks hold a dispatch slot (dispatched or running)."""
        return int((self.get_doc(running_path(owner)) or {}).get("running", 0))
