"""How a conversation turn ends: the writes that go into the transaction settling the
turn's agent task (see TaskStateMachine). Kept apart from the conversation routes'
rules so the state machine needs nothing else of them."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from api.adapters.firestore_paths import conversation_path, message_path
from api.models.documents import MessageDoc, MessageRole, TaskDoc

# Reads a document inside the settling transaction (firestore_store.Reader).
Reader = Callable[[str], Any]
# (path, data, merge): a write of that transaction (firestore_store.Change.writes)
Write = tuple[str, dict[str, Any], bool]

# Where snapshots live in the files bucket (not a Firestore collection).
SNAPSHOT_OBJECTS = "conversations"

__all__ = ["conversation_path", "conversation_turn_ended", "message_doc", "snapshot_object"]


def snapshot_object(conversation_id: str, task_id: str) -> str:
    """A turn's workspace snapshot in the files bucket (api/services/files.py)."""
    return f"{SNAPSHOT_OBJECTS}/{conversation_id}/snapshots/{task_id}.tar.gz"


def new_message_id(now: datetime) -> str:
    """Ids sort by creation time, so a conversation's messages list in order."""
    return f"{int(now.timestamp() * 1_000_000):017d}-{secrets.token_hex(4)}"


def message_doc(
    message_id: str, role: MessageRole, content: str, now: datetime, task_id: str | None
) -> MessageDoc:
    return {"id": message_id, "role": role, "content": content, "taskId": task_id, "createdAt": now}


def conversation_turn_ended(
    task: TaskDoc, status: str, result: dict[str, Any] | None, read: Reader, now: datetime
) -> list[Write]:
    """Free the conversation for its next message and, when the agent answered,
    append its reply (role "assistant", with the task id)."""
    conversation_id = task["conversationId"]
    conversation = read(conversation_path(conversation_id))
    if conversation is None:
        return []  # deleted meanwhile: nothing to append to
    writes: list[Write] = []
    updates: dict[str, Any] = {}
    if conversation.get("activeTaskId") == task["id"]:
        updates.update(activeTaskId=None, updatedAt=now)
    snapshot = (result or {}).get("workspace")
    if status == "completed" and snapshot:
        # The workspace pointer moves with the turn's settlement, or not at all: a
        # failed or cancelled turn leaves the conversation on its previous snapshot.
        previous = (conversation.get("workspace") or {}).get("object")
        updates["workspace"] = {
            "object": snapshot_object(conversation_id, task["id"]),
            "size": snapshot["size"],
            "sha256": snapshot["sha256"],
            "taskId": task["id"],
            "savedAt": now,
            "previous": previous,
        }
    if updates:
        writes.append((conversation_path(conversation_id), updates, True))
    text = (result or {}).get("text")
    if status == "completed" and isinstance(text, str):
        message_id = new_message_id(now)
        writes.append(
            (
                message_path(conversation_id, message_id),
                dict(message_doc(message_id, "assistant", text, now, task["id"])),
                False,
            )
        )
    return writes
