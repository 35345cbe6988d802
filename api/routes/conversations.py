"""Conversations (DESIGN section 6.4) and the old clients' `POST /api/conversation`
(6.5)."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request
from pydantic import Field, field_validator

from api.models import CompatConversationBody, ConversationCreate, MessageCreate
from api.models import responses as r
from api.routes.common import Query, current_user, json_body, parse_query, services, validate
from api.routes.operations import (
    AUTHED,
    BODY_ERRORS,
    CONVERSATIONS,
    IDEMPOTENCY_KEY,
    Reply,
    operation,
)
from api.services.conversations import MESSAGES_PAGE_DEFAULT, MESSAGES_PAGE_MAX

bp = Blueprint("conversations", __name__)

LIST_DEFAULT, LIST_MAX = 50, 100


class ConversationListQuery(Query):
    limit: int = Field(LIST_DEFAULT, ge=1, le=LIST_MAX, description="Page size.")


class MessagesQuery(Query):
    limit: int = Field(MESSAGES_PAGE_DEFAULT, ge=1, le=MESSAGES_PAGE_MAX, description="Page size.")
    after: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="A message id: `nextMessagesAfter` of the previous page.",
    )

    @field_validator("after")
    @classmethod
    def _message_id(cls, after: str | None) -> str | None:
        if after is not None and not after.replace("-", "").isalnum():
            raise ValueError("after must be a message id")
        return after


@operation(bp, "post", "/api/conversations", "createConversation", "Start a conversation",
           CONVERSATIONS, Reply(201, "The conversation.", r.Conversation),
           (*BODY_ERRORS, 404, *AUTHED), body=(ConversationCreate,))  # fmt: skip
def create() -> tuple[dict, int]:
    conversation = services().conversations.create(
        current_user(), validate(ConversationCreate, json_body())
    )
    return r.Conversation.of(conversation).body(), 201


@operation(bp, "get", "/api/conversations", "listConversations", "Your conversations",
           CONVERSATIONS, Reply(200, "Your conversations.", r.ConversationList),
           (400, *AUTHED), query=ConversationListQuery)  # fmt: skip
def list_conversations() -> dict:
    limit = parse_query(ConversationListQuery).limit
    conversations = services().conversations.list(current_user(), limit=limit)
    return r.ConversationList(conversations=[r.Conversation.of(c) for c in conversations]).body()


@operation(bp, "get", "/api/conversations/<conversation_id>", "getConversation",
           "A conversation with a page of its messages", CONVERSATIONS,
           Reply(200, "The conversation and its messages, oldest first.",
                 r.ConversationWithMessages), (400, 404, *AUTHED),
           query=MessagesQuery)  # fmt: skip
def get(conversation_id: str) -> dict:
    """The conversation with a page of its messages, oldest first; continue with
    `?after=<nextMessagesAfter>`."""
    service = services().conversations
    conversation = service.get(current_user(), conversation_id)
    page = parse_query(MessagesQuery)
    messages, next_after = service.messages(conversation, after=page.after, limit=page.limit)
    return r.ConversationWithMessages.of_page(conversation, messages, next_after).body()


@operation(bp, "delete", "/api/conversations/<conversation_id>", "deleteConversation",
           "Delete a conversation and its messages", CONVERSATIONS,
           Reply(204, "Deleted."), (404, *AUTHED))  # fmt: skip
def delete(conversation_id: str) -> tuple[str, int]:
    services().conversations.delete(current_user(), conversation_id)
    return "", 204


@operation(bp, "post", "/api/conversations/<conversation_id>/messages", "postMessage",
           "Send a message: starts the agent's turn", CONVERSATIONS,
           Reply(202, "The stored message and the turn's task.", r.MessageAccepted,
                 ("Location",)),
           (*BODY_ERRORS, 404, 409, 422, 429, *AUTHED), body=(MessageCreate,),
           params=(IDEMPOTENCY_KEY,))  # fmt: skip
def post_message(conversation_id: str) -> Response:
    """202 with the stored message and the turn's task; 409 while a turn is running."""
    body = validate(MessageCreate, json_body())
    message, task = services().conversations.post_message(
        current_user(), conversation_id, body.message, request.headers.get("Idempotency-Key")
    )
    accepted = r.MessageAccepted(message=r.Message.of(message), task=r.Task.of(task))
    response = Response(json.dumps(accepted.body()), 202, mimetype="application/json")
    response.headers["Location"] = f"/api/tasks/{task['id']}"
    return response


@operation(bp, "post", "/api/conversation", "compatConversation",
           "The old clients' call: send a message and wait (bounded) for the reply",
           CONVERSATIONS, Reply(200, "The reply, or its status if not ready.",
                                r.CompatConversationReply),
           (*BODY_ERRORS, 404, 409, 422, 429, *AUTHED),
           body=(CompatConversationBody,))  # fmt: skip
def compat_conversation() -> dict:
    """The old clients' call: create or continue a conversation and wait (bounded)
    for the reply. `text` is null and `status` not terminal if it is not ready."""
    body = validate(CompatConversationBody, json_body())
    reply = services().conversations.compat_conversation(current_user(), body)
    return r.CompatConversationReply.model_validate(reply).body()
