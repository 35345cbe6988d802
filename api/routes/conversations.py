"""Conversations (DESIGN section 6.4) and the old clients' `POST /api/conversation`
(6.5)."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request

from api.errors import ApiError
from api.models import CompatConversationBody, ConversationCreate, MessageCreate
from api.routes.common import current_user, json_body, services, validate
from api.services.conversations import (
    MESSAGES_PAGE_DEFAULT,
    MESSAGES_PAGE_MAX,
    render_conversation,
    render_message,
)
from api.services.tasks import render_task

bp = Blueprint("conversations", __name__)

LIST_DEFAULT, LIST_MAX = 50, 100


def _limit(default: int, maximum: int) -> int:
    raw = request.args.get("limit", str(default))
    if not raw.isdecimal() or not 1 <= int(raw) <= maximum:
        raise ApiError(400, "invalid_request", f"limit must be between 1 and {maximum}.")
    return int(raw)


@bp.post("/api/conversations")
def create():
    conversation = services().conversations.create(
        current_user(), validate(ConversationCreate, json_body())
    )
    return render_conversation(conversation), 201


@bp.get("/api/conversations")
def list_conversations():
    conversations = services().conversations.list(
        current_user(), limit=_limit(LIST_DEFAULT, LIST_MAX)
    )
    return {"conversations": [render_conversation(c) for c in conversations]}


@bp.get("/api/conversations/<conversation_id>")
def get(conversation_id: str):
    """The conversation with a page of its messages, oldest first; continue with
    `?after=<nextMessagesAfter>`."""
    service = services().conversations
    conversation = service.get(current_user(), conversation_id)
    after = request.args.get("after")
    if after is not None and not (0 < len(after) <= 64 and after.replace("-", "").isalnum()):
        raise ApiError(400, "invalid_request", "after must be a message id.")
    messages, next_after = service.messages(
        conversation, after=after, limit=_limit(MESSAGES_PAGE_DEFAULT, MESSAGES_PAGE_MAX)
    )
    return {
        **render_conversation(conversation),
        "messages": [render_message(m) for m in messages],
        "nextMessagesAfter": next_after,
    }


@bp.delete("/api/conversations/<conversation_id>")
def delete(conversation_id: str):
    services().conversations.delete(current_user(), conversation_id)
    return "", 204


@bp.post("/api/conversations/<conversation_id>/messages")
def post_message(conversation_id: str):
    """202 with the stored message and the turn's task; 409 while a turn is running."""
    body = validate(MessageCreate, json_body())
    message, task = services().conversations.post_message(
        current_user(), conversation_id, body.message, request.headers.get("Idempotency-Key")
    )
    payload = {"message": render_message(message), "task": render_task(task)}
    response = Response(json.dumps(payload), 202, mimetype="application/json")
    response.headers["Location"] = f"/api/tasks/{task['id']}"
    return response


@bp.post("/api/conversation")
def compat_conversation():
    """The old clients' call: create or continue a conversation and wait (bounded)
    for the reply. `text` is null and `status` not terminal if it is not ready."""
    body = validate(CompatConversationBody, json_body())
    return services().conversations.compat_conversation(current_user(), body)
