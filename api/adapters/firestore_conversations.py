"""Conversations in Firestore: the conversation, its messages and its turn claims, and
the transaction that starts a turn (the user's message with the turn's task)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from api.adapters.firestore_paths import (
    CONVERSATIONS,
    MESSAGES,
    TURNS,
    conversation_path,
    idempotency_path,
    message_path,
    messages_path,
    turn_path,
)
from api.adapters.firestore_tasks import new_task_writes
from api.models.documents import (
    ConversationDoc,
    IdempotencyDoc,
    MessageDoc,
    TaskDoc,
    TurnClaim,
)


class ConversationStore:
    # FirestoreStore's generic verbs
    get_doc: Callable[[str], dict[str, Any] | None]
    create_doc: Callable[[str, dict[str, Any]], None]
    create_doc_if_absent: Callable[[str, dict[str, Any]], bool]
    delete_doc: Callable[[str], None]
    delete_tree: Callable[[str, tuple[str, ...]], None]
    list_owned: Callable[..., list[dict[str, Any]]]
    list_children: Callable[..., list[dict[str, Any]]]
    list_children_before: Callable[..., list[dict[str, Any]]]
    run_transaction: Callable[..., Any]

    def create_conversation(self, conversation: ConversationDoc) -> None:
        self.create_doc(conversation_path(conversation["id"]), dict(conversation))

    def get_conversation(self, conversation_id: str) -> ConversationDoc | None:
        return cast(ConversationDoc | None, self.get_doc(conversation_path(conversation_id)))

    def list_conversations(self, owner: str, *, limit: int) -> list[ConversationDoc]:
        found = self.list_owned(CONVERSATIONS, owner, limit=limit, after_id=None)
        return cast(list[ConversationDoc], found)

    def delete_conversation(self, conversation_id: str) -> None:
        """The conversation with its messages and turn claims."""
        self.delete_tree(conversation_path(conversation_id), (MESSAGES, TURNS))

    def get_message(self, conversation_id: str, message_id: str) -> MessageDoc | None:
        return cast(MessageDoc | None, self.get_doc(message_path(conversation_id, message_id)))

    def list_messages(
        self, conversation_id: str, *, after_id: str | None, limit: int
    ) -> list[MessageDoc]:
        """Messages in id order (ids sort by time), after `after_id`."""
        found = self.list_children(messages_path(conversation_id), after_id=after_id, limit=limit)
        return cast(list[MessageDoc], found)

    def messages_before(
        self, conversation_id: str, *, before: datetime, limit: int
    ) -> list[MessageDoc]:
        """The last `limit` messages created before `before`, oldest first."""
        found = self.list_children_before(
            messages_path(conversation_id), before=before, limit=limit
        )
        return cast(list[MessageDoc], found)

    # -- turns ---------------------------------------------------------------------

    def claim_turn(self, conversation_id: str, turn: int, claim: TurnClaim) -> bool:
        """Create turn `turn`'s claim unless it exists: exactly one of any number of
        racing callers gets True."""
        return self.create_doc_if_absent(turn_path(conversation_id, turn), dict(claim))

    def get_turn_claim(self, conversation_id: str, turn: int) -> TurnClaim | None:
        return cast(TurnClaim | None, self.get_doc(turn_path(conversation_id, turn)))

    def release_turn(self, conversation_id: str, turn: int) -> None:
        self.delete_doc(turn_path(conversation_id, turn))

    def start_turn(
        self,
        conversation_id: str,
        check: Callable[[ConversationDoc | None], None],
        message: MessageDoc,
        task: TaskDoc,
        conversation_updates: dict[str, Any],
        idempotency: tuple[str, IdempotencyDoc] | None,
    ) -> None:
        """In one transaction: read the conversation and let `check` refuse it (by
        raising); then store the message, the turn's task (new_task_writes, as every
        new task), the conversation's updates and the Idempotency-Key record."""

        def work(read: Callable[[str], Any], write: Callable[..., None]) -> None:
            check(cast(ConversationDoc | None, read(conversation_path(conversation_id))))
            write(message_path(conversation_id, message["id"]), dict(message))
            for path, data in new_task_writes(task):
                write(path, data)
            write(conversation_path(conversation_id), conversation_updates, merge=True)
            if idempotency is not None:
                write(idempotency_path(idempotency[0]), dict(idempotency[1]))

        self.run_transaction(work)
